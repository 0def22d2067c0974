//! The refuse-to-start rule and a real bind on loopback.

mod common;

use tidings_admin::{AdminConfig, AdminError, AdminServer, AdminState};

#[tokio::test]
async fn refuses_public_bind_without_token() {
    let t = common::transport().await;
    let cfg = AdminConfig::new(([0, 0, 0, 0], 0).into());
    let err = AdminServer::bind(cfg.clone(), AdminState::new(t.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::InsecureBind { .. }), "{err}");
    assert!(err.to_string().contains("without a token"), "{err}");
    let err = tidings_admin::serve(cfg.clone(), AdminState::new(t.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::InsecureBind { .. }));
    let core: tidings_core::Error = err.into();
    assert!(!core.is_retryable());
    // An empty token is no token.
    assert!(cfg.clone().token("").check().is_err());
    // With a token (on the config or on the state) it starts.
    assert!(cfg.clone().token("t").check().is_ok());
    let s = AdminServer::bind(cfg, AdminState::new(t.clone()).token(Some("t".into())))
        .await
        .unwrap();
    assert_ne!(s.local_addr().port(), 0);
    // Loopback needs none.
    assert!(AdminConfig::new(([127, 0, 0, 1], 0).into()).check().is_ok());
    assert!(AdminConfig::new("[::1]:0".parse().unwrap()).check().is_ok());
}

#[tokio::test]
async fn serves_over_tcp_with_token() {
    let t = common::transport().await;
    let cfg = AdminConfig::new(([127, 0, 0, 1], 0).into()).token("tok");
    let server = AdminServer::bind(cfg, AdminState::new(t)).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("http://{addr}/queues"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
