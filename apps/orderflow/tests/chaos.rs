//! `orderflow chaos` end to end: the real binary as parent and child, five SIGKILLs while
//! orders are placed over HTTP, then every invariant (exit code 0 only if all hold).

use std::process::Command;

#[test]
fn five_kill_cycles_on_sqlite_keep_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args([
            "chaos", "--cycles", "5", "--seed", "5", "--min-ms", "500", "--max-ms", "1500",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("TIDINGS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("all 13 invariants hold after 5 kills"),
        "{stdout}"
    );
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    // five restarts after the first start: six starts in the child's log
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert_eq!(log.matches("OrderFlow API on").count(), 6, "{log}");
}
