//! Credentials never appear in errors or debug output.

mod common;

use std::time::Duration;

use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

const SECRET: &str = "Sup3r-s3cret-pw";

fn assert_hidden(text: &str) {
    assert!(!text.contains(SECRET), "password leaked: {text}");
}

#[tokio::test]
async fn connect_failure_hides_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RabbitMqConfig::from_url(&format!("amqp://app:{SECRET}@127.0.0.1:{port}/%2f"))
        .unwrap()
        .with_connect_timeout(Duration::from_millis(300));
    assert_hidden(&format!("{config:?}"));
    let err = RabbitMqTransport::connect(config).await.unwrap_err();
    assert_hidden(&err.to_string());
    assert_hidden(&format!("{err:?}"));
    assert!(err.is_retryable(), "connection refused is transient: {err}");
}

#[tokio::test]
async fn wrong_password_error_hides_it() {
    if common::unreachable().is_some() {
        return;
    }
    let mut u = url::Url::parse(&common::amqp_url()).unwrap();
    u.set_password(Some(SECRET)).unwrap();
    let config = RabbitMqConfig::from_url(u.as_str())
        .unwrap()
        .with_connect_timeout(Duration::from_millis(500));
    let err = RabbitMqTransport::connect(config).await.unwrap_err();
    assert_hidden(&err.to_string());
    assert_hidden(&format!("{err:?}"));
}
