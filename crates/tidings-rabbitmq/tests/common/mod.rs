//! Shared by the integration tests: where RabbitMQ is and whether it answers.
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

/// The broker URL (`TIDINGS_AMQP_URL` overrides).
pub fn amqp_url() -> String {
    std::env::var("TIDINGS_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// `host:port` of the broker.
pub fn broker_addr() -> String {
    let url = url_parts(&amqp_url());
    format!("{}:{}", url.0, url.1)
}

fn url_parts(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or("127.0.0.1:5672");
    let authority = rest.split('/').next().unwrap_or(rest);
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if url.starts_with("amqps") { 5671 } else { 5672 };
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (hostport.to_string(), default_port),
    }
}

/// `None` if RabbitMQ answers; else the skip reason (panics when `CI=true`).
pub fn unreachable() -> Option<&'static str> {
    let addr = broker_addr();
    let ok = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if ok {
        return None;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("RabbitMQ not reachable at {addr} (CI=true: the service must be up)");
    }
    eprintln!("skipped: RabbitMQ not reachable at {addr}");
    Some("RabbitMQ not reachable")
}

/// A connected transport.
pub async fn transport() -> RabbitMqTransport {
    let config = RabbitMqConfig::from_url(&amqp_url()).unwrap();
    RabbitMqTransport::connect(config).await.unwrap()
}

/// Deletes `queue` and its error queue (test cleanup; errors ignored).
pub async fn delete_queue(queue: &str) {
    use lapin::options::QueueDeleteOptions;
    let Ok(conn) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in [queue.to_string(), format!("{queue}_error")] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    let _ = conn.close(200, "OK".into()).await;
}

/// `None` if the management HTTP API (the broker's host, port 15672, the transport's
/// default) answers on its TCP port; else the skip reason (panics when
/// `CI=true`: `.ci/run` enables the plugin).
pub fn management_unreachable() -> Option<&'static str> {
    let addr = format!("{}:15672", url_parts(&amqp_url()).0);
    let ok = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if ok {
        return None;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "RabbitMQ management API not reachable at {addr} (CI=true: enable it with \
             rabbitmq-plugins enable rabbitmq_management)"
        );
    }
    eprintln!("skipped: RabbitMQ management API not reachable at {addr}");
    Some("RabbitMQ management API not reachable")
}
