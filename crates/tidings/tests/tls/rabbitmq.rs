//! RabbitMQ over TLS: `stunnel` terminates TLS (an openssl-made certificate) on a free
//! port in front of the local broker (127.0.0.1:5672); `amqps://…?tls_ca=` must work, the
//! wrong CA or none (platform roots only) must be refused with a clear error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    answers, find_tool, free_port, make_certs, queue, round_trip, skip, tool, wait_listening, Guard,
};

/// The broker behind the TLS listener.
const BROKER_PORT: u16 = 5672;

fn start_stunnel(dir: &Path, port: u16) -> Guard {
    let bin = find_tool("stunnel4")
        .or_else(|| find_tool("stunnel"))
        .expect("stunnel");
    let log = dir.join("stunnel.log");
    let conf = dir.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\noutput = {log}\n\n[amqps]\naccept = 127.0.0.1:{port}\n\
             connect = 127.0.0.1:{BROKER_PORT}\ncert = {cert}\nkey = {key}\n",
            log = log.display(),
            cert = dir.join("cert.pem").display(),
            key = dir.join("key.pem").display(),
        ),
    )
    .expect("write stunnel.conf");
    let child = Command::new(bin)
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stunnel");
    let guard = Guard(child);
    wait_listening(port, "stunnel", Some(&log));
    guard
}

async fn connect(url: &str) -> Result<std::sync::Arc<dyn tidings::transport::Transport>, String> {
    match tokio::time::timeout(Duration::from_secs(30), tidings::connect(url)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("no answer within 30 s".into()),
    }
}

fn assert_certificate_error(err: &str) {
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "the error should say the certificate is not trusted: {err}"
    );
    assert!(!err.contains("guest:guest"), "credentials leaked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_over_tls_with_custom_ca_and_wrong_ca() {
    if !tool("openssl") || !(tool("stunnel4") || tool("stunnel")) {
        return;
    }
    if !answers(BROKER_PORT) {
        skip("RabbitMQ not answering on 127.0.0.1:5672");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let port = free_port();
    let _stunnel = start_stunnel(dir.path(), port);
    let base =
        format!("amqps://guest:guest@127.0.0.1:{port}/%2f?management=off&connect_timeout_ms=5000");

    let ca = dir.path().join("ca.pem");
    let t = connect(&format!("{base}&tls_ca={}", ca.display()))
        .await
        .expect("amqps:// with tls_ca = our CA");
    round_trip(&t, &queue("amqps")).await;
    t.close().await.expect("close");

    let wrong = dir.path().join("other-ca.pem");
    let err = connect(&format!("{base}&tls_ca={}", wrong.display()))
        .await
        .err()
        .expect("amqps:// with the wrong CA must be refused");
    eprintln!("wrong CA refused: {err}");
    assert_certificate_error(&err);

    let err = connect(&base)
        .await
        .err()
        .expect("amqps:// without tls_ca must not trust a private CA");
    eprintln!("no CA refused: {err}");
    assert_certificate_error(&err);

    // `tls_ca` that is not a certificate: a clear configuration error.
    let err = connect(&format!(
        "{base}&tls_ca={}",
        dir.path().join("stunnel.conf").display()
    ))
    .await
    .err()
    .expect("a tls_ca without a certificate is a configuration error");
    assert!(err.contains("tls_ca"), "{err}");
}
