//! Shared by the integration tests: where NATS is, whether it answers, unique prefixes.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tidings_nats::{NatsConfig, NatsTransport};

/// The server URL: `TIDINGS_NATS_URL` or the local default.
pub fn nats_url() -> String {
    std::env::var("TIDINGS_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// `host:port` of the server URL.
pub fn nats_addr() -> String {
    let cfg = NatsConfig::from_url(&nats_url()).expect("TIDINGS_NATS_URL must parse");
    cfg.server
        .split("://")
        .nth(1)
        .unwrap_or("127.0.0.1:4222")
        .to_string()
}

/// `None` if NATS answers; else the reason to skip. Panics when CI=true.
pub fn unreachable() -> Option<String> {
    let addr = nats_addr();
    let ok = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if ok {
        return None;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("NATS is not reachable at {addr} (CI=true: the service must be running)");
    }
    Some(format!("NATS not reachable at {addr}"))
}

/// A unique prefix for one test (`tt_<what>_<8 hex>`).
pub fn unique_prefix(what: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("tt_{what}_{}", &id[..8])
}

/// The config for `prefix` on the test server.
pub fn config(prefix: &str) -> NatsConfig {
    NatsConfig::from_url(&nats_url())
        .expect("TIDINGS_NATS_URL must parse")
        .with_prefix(prefix)
}

/// Deletes every stream under `prefix` (best effort), from inside a multi-thread runtime.
pub fn cleanup_blocking(prefix: &str) {
    let cfg = config(prefix);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            if let Ok(t) = NatsTransport::connect(cfg).await {
                let _ = t.delete_all().await;
            }
        })
    });
}
