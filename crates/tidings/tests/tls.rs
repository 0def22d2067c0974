//! TLS end to end with NATS: a throw-away `nats-server` that only speaks TLS (certificate
//! made here by `openssl`), reached through `tidings::connect("tls://…?tls_ca=…")` — a
//! message sent over TLS is received and acked; a plain `nats://` connection is refused.
//! (RabbitMQ's `amqps://` and PostgreSQL's `sslmode` are not covered: the services on our
//! machines listen without TLS.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology};
use tidings_core::Envelope;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} || test -x /usr/sbin/{name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is needed for the TLS test (CI=true)"
        );
        eprintln!("skipped: {name} not installed");
    }
    found
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it (`cert.pem`,
/// `key.pem`).
fn make_cert(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tidings-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    ];
    for args in steps {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?} failed");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_server(dir: &Path, port: u16) -> Server {
    let bin = if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    };
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .arg("--tls")
        .arg("--tlscert")
        .arg(dir.join("cert.pem"))
        .arg("--tlskey")
        .arg(dir.join("key.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let server = Server(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nats-server did not listen on {port}");
}

#[tokio::test]
async fn nats_over_tls_sends_and_receives() {
    if !tool("openssl") || !tool("nats-server") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    make_cert(dir.path());
    let port = free_port();
    let _server = start_server(dir.path(), port);
    let ca = dir.path().join("ca.pem");

    let url = format!("tls://127.0.0.1:{port}?tls_ca={}", ca.display());
    let transport = tidings::connect(&url).await.expect("connect over TLS");
    let topology = Topology {
        queues: vec![QueueSpec {
            name: "tls_q".into(),
            ..QueueSpec::default()
        }],
    };
    transport.declare(&topology).await.expect("declare");
    let env = Envelope::new("tls-test.ping", 1, &b"{}"[..]);
    let id = env.id;
    transport
        .send(vec![Outgoing::to_queue("tls_q", env)])
        .await
        .expect("send over TLS");
    let mut rx = transport
        .receive("tls_q", ReceiveOptions::default())
        .await
        .expect("receive");
    let delivery = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("recv")
        .expect("not closed");
    assert_eq!(delivery.envelope.id, id);
    delivery.ack().await.expect("ack over TLS");

    // The server requires TLS: a plain connection must not get through.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        tidings::connect(&format!("nats://127.0.0.1:{port}")),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain nats:// connection to a TLS-only server succeeded"
    );
}
