//! Start-up failures are clear errors, never panics: missing directory, read-only file,
//! corrupt file, a schema written by a newer version; and a URL opens what it says.

use tidings_sqlite::{Durability, SqliteConfig, SqliteError, SqliteTransport, SCHEMA_VERSION};

fn msg(e: &SqliteError) -> String {
    e.to_string()
}

#[tokio::test]
async fn missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/x.db");
    let err = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
    assert!(msg(&err).contains("does not exist"), "{err}");
    assert!(!path.exists());
}

#[tokio::test]
async fn corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let err = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
    assert!(msg(&err).contains("not a SQLite database"), "{err}");
}

#[tokio::test]
async fn directory_as_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteTransport::connect(SqliteConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(msg(&err).contains("is a directory"), "{err}");
}

#[tokio::test]
async fn newer_schema_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let t = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    sqlx::query("UPDATE tidings_schema SET version = ?")
        .bind(SCHEMA_VERSION + 1)
        .execute(t.pool())
        .await
        .unwrap();
    tidings_core::transport::Transport::close(&t).await.unwrap();
    let err = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    match &err {
        SqliteError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(msg(&err).contains("upgrade tidings-sqlite"), "{err}");
    // Converted for the bus: a permanent transport error with the same text.
    let core: tidings_core::Error = err.into();
    assert!(!core.is_retryable());
    assert!(core.to_string().contains("newer") || core.to_string().contains("schema version"));
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("re.db");
    let t = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE app (x INTEGER)")
        .execute(t.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO app VALUES (7)")
        .execute(t.pool())
        .await
        .unwrap();
    tidings_core::transport::Transport::close(&t).await.unwrap();
    let t = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    let x: i64 = sqlx::query_scalar("SELECT x FROM app")
        .fetch_one(t.pool())
        .await
        .unwrap();
    assert_eq!(x, 7);
    let v: i64 = sqlx::query_scalar("SELECT version FROM tidings_schema")
        .fetch_one(t.pool())
        .await
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[tokio::test]
async fn read_only_file_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    let t = SqliteTransport::connect(SqliteConfig::new(&path))
        .await
        .unwrap();
    tidings_core::transport::Transport::close(&t).await.unwrap();
    drop(t);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for f in ["ro.db", "ro.db-wal", "ro.db-shm"] {
        let p = dir.path().join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    let mut immutable = false;
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        // root ignores file modes: make the file immutable instead, where chattr works.
        immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            eprintln!("skipped: read-only check: cannot make a file read-only for this user");
            return;
        }
    }
    let result = SqliteTransport::connect(SqliteConfig::new(&path)).await;
    if immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&path)
            .status();
    }
    let err = result.unwrap_err();
    assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
    assert!(msg(&err).contains("read-only"), "{err}");
}

#[tokio::test]
async fn url_sets_path_and_durability() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}/u.db?durability=os-buffered&poll_ms=20",
        dir.path().display()
    );
    let t = SqliteTransport::open(&url).await.unwrap();
    assert_eq!(t.config().durability, Durability::OsBuffered);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(t.pool())
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(t.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(dir.path().join("u.db").exists());
    let t2 = SqliteTransport::open(&format!("sqlite://{}/f.db", dir.path().display()))
        .await
        .unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(t2.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}
