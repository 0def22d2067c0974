//! What the TLS tests share: finding tools (skip, or fail under `CI=true`), making
//! certificates with `openssl`, free ports, child processes stopped on drop, and a
//! declare/send/receive/ack round trip through any transport.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;

/// Whether we run under CI (`CI=true`): a missing tool or service fails instead of skipping.
pub(crate) fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips (prints why, returns false) or, under CI, fails.
pub(crate) fn skip(why: &str) -> bool {
    assert!(!ci(), "{why} (CI=true: the TLS tests need it)");
    eprintln!("skipped: {why}");
    false
}

/// The path of tool `name` (on PATH or in /usr/sbin), if installed.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v {name} || (test -x /usr/sbin/{name} && echo /usr/sbin/{name})"
        ))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Whether tool `name` is installed; if not, skips (or fails under CI).
pub(crate) fn tool(name: &str) -> bool {
    find_tool(name).is_some() || skip(&format!("{name} is not installed"))
}

/// Runs a command in `dir`, panicking with its output if it fails.
pub(crate) fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(
        Command::new("openssl").args(args).current_dir(dir),
        &format!("openssl {}", args.join(" ")),
    );
}

/// In `dir`: a CA (`ca.pem`, `ca.key`), a server certificate for 127.0.0.1 and
/// localhost signed by it (`cert.pem`, `key.pem`), and an unrelated CA (`other-ca.pem`).
pub(crate) fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    for (name, cn) in [("ca", "tidings-test-ca"), ("other-ca", "tidings-wrong-ca")] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &pem,
            ],
        );
    }
    openssl(
        dir,
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
    );
    openssl(
        dir,
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
    );
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something listens on `port`, or panics naming `what` (with its log).
pub(crate) fn wait_listening(port: u16, what: &str, log: Option<&Path>) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    panic!("{what} did not listen on {port} within 10 s\n{log}");
}

/// A child process killed (and reaped) on drop.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a TCP service answers on 127.0.0.1:`port`.
pub(crate) fn answers(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Declares `queue`, sends one message, receives and acks it (and deletes the queue):
/// the data path works over this connection.
pub(crate) async fn round_trip(t: &Arc<dyn Transport>, queue: &str) {
    let topology = Topology {
        queues: vec![QueueSpec {
            name: queue.into(),
            ..QueueSpec::default()
        }],
    };
    t.declare(&topology).await.expect("declare over TLS");
    let env = Envelope::new("tls-test.ping", 1, &b"{}"[..]);
    let id = env.id;
    t.send(vec![Outgoing::to_queue(queue, env)])
        .await
        .expect("send over TLS");
    let mut rx = t
        .receive(queue, ReceiveOptions::default())
        .await
        .expect("receive over TLS");
    let d = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a delivery within 15 s")
        .expect("recv")
        .expect("not closed");
    assert_eq!(d.envelope.id, id);
    d.ack().await.expect("ack over TLS");
    rx.close().await.expect("close receiver");
    t.delete_queue(queue).await.expect("delete queue");
}

/// A unique queue name.
pub(crate) fn queue(what: &str) -> String {
    format!(
        "tls_{what}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
