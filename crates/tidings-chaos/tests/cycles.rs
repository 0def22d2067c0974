//! The chaos runner against a tiny child: this test binary itself, re-run as an HTTP
//! server (`child_server`, active only with `CHAOS_CHILD_PORT` set) that appends a line to
//! a file at every start.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tidings_chaos::{Chaos, ChaosConfig, ChaosError, Ready, Schedule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The child: serves `200 ok` to everything on `CHAOS_CHILD_PORT` until killed.
#[tokio::test]
async fn child_server() {
    let (Ok(port), Ok(log)) = (
        std::env::var("CHAOS_CHILD_PORT"),
        std::env::var("CHAOS_CHILD_LOG"),
    ) else {
        return; // only as a child
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::io::Write::write_all(&mut f, b"start\n").unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .unwrap();
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        });
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn child(addr: SocketAddr, log: std::path::PathBuf) -> impl Fn() -> tokio::process::Command {
    move || {
        let mut c = tokio::process::Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
            .env("CHAOS_CHILD_PORT", addr.port().to_string())
            .env("CHAOS_CHILD_LOG", &log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    }
}

async fn get(addr: SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.is_ok() && out.ends_with(b"ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_restarts_the_child_while_the_load_runs() {
    let dir = tempfile_dir();
    let log = dir.join("starts.log");
    let addr = free_addr();
    let config = ChaosConfig::new(7, 4)
        .kill_between(Duration::from_millis(100), Duration::from_millis(300))
        .ready_timeout(Duration::from_secs(30));
    let chaos = Chaos::new(
        config,
        child(addr, log.clone()),
        Ready::http(addr, "/health"),
    );
    let outcome = chaos
        .run(move |stop| async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.is_stopped() {
                if get(addr).await {
                    ok += 1;
                } else {
                    failed += 1; // the child is down: a real load repeats the request
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        })
        .await
        .unwrap();
    assert_eq!(outcome.cycles, 4);
    assert_eq!(outcome.seed, 7);
    assert_eq!(
        outcome.child.cycle(),
        4,
        "the child after the 4th kill runs"
    );
    let (ok, _) = outcome.load;
    assert!(ok > 0, "the load reached the child");
    // one start + four restarts, each a new process that got as far as its first line
    let starts = std::fs::read_to_string(&log).unwrap();
    assert_eq!(starts.lines().count(), 5, "{starts}");
    assert!(get(addr).await, "the last child still serves");
    outcome.child.kill().await.unwrap();
    assert!(!get(addr).await, "killed at the end");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_same_seed_gives_the_same_kill_moments_within_bounds() {
    let (min, max) = (Duration::from_millis(1000), Duration::from_millis(4000));
    let a: Vec<_> = Schedule::new(42, min, max).take(50).collect();
    let b: Vec<_> = Schedule::new(42, min, max).take(50).collect();
    let c: Vec<_> = Schedule::new(43, min, max).take(50).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|d| *d >= min && *d <= max));
}

#[tokio::test]
async fn a_child_that_exits_by_itself_fails_the_run() {
    let config =
        ChaosConfig::new(1, 3).kill_between(Duration::from_millis(200), Duration::from_millis(300));
    let chaos = Chaos::new(
        config,
        || {
            let mut c = tokio::process::Command::new("sh");
            c.args(["-c", "sleep 0.05; exit 3"]);
            c
        },
        Ready::Started,
    );
    let err = chaos.run(|_| async {}).await.unwrap_err();
    assert!(matches!(err, ChaosError::Exited { cycle: 1, .. }), "{err}");
    assert_eq!(err.kind(), "exited");
}

#[tokio::test]
async fn a_child_that_never_gets_ready_fails_the_run() {
    let addr = free_addr(); // nobody listens there
    let config = ChaosConfig::new(1, 1).ready_timeout(Duration::from_millis(300));
    let chaos = Chaos::new(
        config,
        || {
            let mut c = tokio::process::Command::new("sleep");
            c.arg("30");
            c
        },
        Ready::Tcp(addr),
    );
    let err = chaos.run(|_| async {}).await.unwrap_err();
    assert!(
        matches!(err, ChaosError::NotReady { cycle: 0, .. }),
        "{err}"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tidings-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
