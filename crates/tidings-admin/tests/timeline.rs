//! `GET /messages?correlation_id=` (journal merged with dead letters) and `GET /topology`,
//! driven with tower `oneshot` against a real bus on the memory transport.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_admin::{router, AdminState, MessageJournal, Timeline, TimelineSource};
use tidings_core::transport::Transport;
use tidings_core::{
    Bus, ConsumeContext, Endpoint, FaultReason, HandlerError, Message, Redelivery, SendOptions,
};
use tower::ServiceExt;

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.reserve", kind = "command")]
struct Reserve {
    order_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.charge", kind = "command")]
struct Charge {
    order_id: u32,
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(bytes.to_vec()).unwrap())
}

/// `orders` handles Reserve and sends Charge; `payments` fails a charge of order 0 for good.
async fn bus(t: Arc<dyn Transport>, journal: &MessageJournal) -> Bus {
    Bus::builder(t)
        .endpoint(Endpoint::new("orders").sends::<Charge>().handle_fn(
            |m: Reserve, ctx: ConsumeContext| async move {
                ctx.send(&Charge {
                    order_id: m.order_id,
                })
                .await?;
                Ok(())
            },
        ))
        .endpoint(
            Endpoint::new("payments")
                .redelivery(Redelivery::none())
                .handle_fn(|m: Charge, _| async move {
                    if m.order_id == 0 {
                        return Err(HandlerError::permanent("card declined"));
                    }
                    Ok(())
                }),
        )
        .sends::<Reserve>()
        .observer(journal.observer())
        .start()
        .await
        .unwrap()
}

async fn wait_for(journal: &MessageJournal, n: usize) {
    for _ in 0..500 {
        if journal.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the journal holds {} entries, not {n}", journal.len());
}

/// The journal sees a dead-lettering just before the transport settles it.
async fn wait_for_dead_letters(t: &Arc<dyn Transport>, n: usize) {
    for _ in 0..500 {
        if t.dead_letters(&Default::default()).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} dead letters");
}

#[tokio::test]
async fn messages_of_a_correlation_id_in_order_with_dead_letters() {
    let t = common::transport().await;
    // Dead-lettered by "another process" before this one started: only the error queue has it.
    let elsewhere = common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::Panicked,
        "order-0",
    )
    .await;
    let journal = MessageJournal::with_capacity(100);
    let bus = bus(t.clone(), &journal).await;
    let send = |order_id, corr: &str| {
        let opts = SendOptions::default().correlation_id(corr);
        let bus = &bus;
        async move { bus.send_with(&Reserve { order_id }, opts).await.unwrap() }
    };
    let reserve_ok = send(1, "order-1").await;
    send(2, "order-2").await;
    let reserve_bad = send(0, "order-0").await;
    wait_for(&journal, 6).await;
    wait_for_dead_letters(&t, 2).await;

    let app = router(AdminState::new(t.clone()).journal(journal.clone()));
    let (s, _, body) = get(&app, "/messages?correlation_id=order-1", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    assert!(tl.journal && tl.dead_letters_error.is_none());
    assert_eq!(
        (tl.journal_capacity, tl.journal_dropped),
        (Some(100), Some(0))
    );
    let steps: Vec<_> = tl
        .messages
        .iter()
        .map(|m| {
            (
                m.endpoint.as_str(),
                m.message_type.as_str(),
                m.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("orders", "shop.reserve", "consumed"),
            ("payments", "shop.charge", "consumed")
        ]
    );
    assert_eq!(tl.messages[0].id, reserve_ok);
    assert_eq!(tl.messages[1].causation_id, Some(reserve_ok));
    assert_eq!(tl.messages[0].delivery_count, Some(1));

    // order-0: the old dead letter (error queue only), then this process's deliveries, the
    // charge's dead-lettering shown once, marked as in the error queue.
    let (_, _, body) = get(&app, "/messages?correlation_id=%20order-0%20", None).await;
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    assert_eq!(tl.correlation_id, "order-0");
    let steps: Vec<_> = tl
        .messages
        .iter()
        .map(|m| {
            (
                m.source,
                m.endpoint.as_str(),
                m.outcome.as_str(),
                m.in_error_queue,
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (TimelineSource::ErrorQueue, "orders", "dead-lettered", true),
            (TimelineSource::Journal, "orders", "consumed", false),
            (TimelineSource::Journal, "payments", "dead-lettered", true),
        ],
        "{body}"
    );
    assert_eq!(tl.messages[0].id, elsewhere);
    assert_eq!(tl.messages[0].reason.as_deref(), Some("panicked"));
    assert_eq!(tl.messages[1].id, reserve_bad);
    assert_eq!(tl.messages[2].reason.as_deref(), Some("handler-failed"));
    assert_eq!(tl.messages[2].error.as_deref(), Some("card declined"));
    assert!(tl.messages.windows(2).all(|w| w[0].at <= w[1].at));

    // Replayed, the charge fails again: both endings are in the journal, only the last
    // one is what the error queue holds now.
    let charge = tl.messages[2].id;
    let replay = tidings_core::transport::DeadLetterQuery {
        ids: vec![charge],
        ..Default::default()
    };
    assert_eq!(t.replay(&replay, None).await.unwrap(), 1);
    wait_for(&journal, 7).await;
    wait_for_dead_letters(&t, 2).await;
    let (_, _, body) = get(&app, "/messages?correlation_id=order-0", None).await;
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    let charges: Vec<_> = tl
        .messages
        .iter()
        .filter(|m| m.id == charge)
        .map(|m| (m.outcome.as_str(), m.delivery_count, m.in_error_queue))
        .collect();
    assert_eq!(
        charges,
        [
            ("dead-lettered", Some(1), false),
            ("dead-lettered", Some(1), true)
        ],
        "{body}"
    );
    let (_, _, body) = get(&app, "/messages?correlation_id=nobody", None).await;
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    assert!(tl.messages.is_empty());

    // Without a journal: only dead letters; without a correlation id: 400.
    let bare = router(AdminState::new(t.clone()));
    let (_, _, body) = get(&bare, "/messages?correlation_id=order-0", None).await;
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    assert!(!tl.journal && tl.journal_capacity.is_none());
    assert!(tl
        .messages
        .iter()
        .all(|m| m.source == TimelineSource::ErrorQueue && m.in_error_queue));
    assert_eq!(tl.messages.len(), 2, "{body}");
    let (s, _, body) = get(&bare, "/messages", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("correlation_id"), "{body}");
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn messages_survive_a_broken_transport() {
    let journal = MessageJournal::new();
    let app = router(AdminState::new(Arc::new(common::DownTransport)).journal(journal));
    let (s, _, body) = get(&app, "/messages?correlation_id=x", None).await;
    assert_eq!(s, StatusCode::OK);
    let tl: Timeline = serde_json::from_str(&body).unwrap();
    assert!(tl
        .dead_letters_error
        .as_deref()
        .is_some_and(|e| e.contains("connection refused")));
}

#[tokio::test]
async fn topology_as_json_and_text_formats() {
    let t = common::transport().await;
    let journal = MessageJournal::new();
    let bus = bus(t.clone(), &journal).await;
    let report = bus.topology().clone();
    let app = router(
        AdminState::new(t.clone())
            .topology(report.clone())
            .token(Some("tok".into())),
    );

    let (s, _, _) = get(&app, "/topology", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, ctype, body) = get(&app, "/topology", Some("tok")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json, serde_json::to_value(&report).unwrap());
    assert_eq!(json["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(json["routes"]["shop.charge"], "payments");
    for (format, expected) in [
        ("json", None),
        ("text", Some(report.to_text())),
        ("mermaid", Some(report.to_mermaid())),
        ("dot", Some(report.to_dot())),
    ] {
        let (s, ctype, body) = get(&app, &format!("/topology?format={format}"), Some("tok")).await;
        assert_eq!(s, StatusCode::OK, "{format}");
        if let Some(expected) = expected {
            assert!(ctype.starts_with("text/plain"), "{format}: {ctype}");
            assert_eq!(body, expected, "{format}");
        }
    }
    assert!(report.to_mermaid().contains("orders"));
    let (s, _, body) = get(&app, "/topology?format=svg", Some("tok")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown topology format `svg`"), "{body}");

    let without = router(AdminState::new(t.clone()));
    let (s, _, body) = get(&without, "/topology", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("AdminState::topology"), "{body}");
    bus.shutdown(Duration::from_secs(5)).await;
}
