//! `tidings sagas list|show` on a SQLite database where a saga ran: one instance waiting
//! (its timeout armed), one completed; filters by status, state and age; `show` prints the
//! record as JSON; a database without sagas lists none; a broker URL is refused with a hint.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::saga::{Completion, Saga, SagaQueries, SagaState};
use tidings::sqlite::{SqliteConfig, SqliteSagaStore, SqliteTransport};
use tidings::{Bus, Endpoint, Message};

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "c.opened", version = 1, kind = "event")]
struct Opened {
    id: u32,
}
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "c.closed", version = 1, kind = "event")]
struct Closed {
    id: u32,
}
#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "c.expired", version = 1, kind = "command")]
struct Expired {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Ticket {
    Open,
    Closed,
}

impl SagaState for Ticket {
    fn name(&self) -> &str {
        match self {
            Ticket::Open => "open",
            Ticket::Closed => "closed",
        }
    }
}

fn tidings(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env_remove("TIDINGS_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sagas_list_and_show_read_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let t = SqliteTransport::connect(SqliteConfig::new(path.clone()))
        .await
        .unwrap();
    let store = Arc::new(SqliteSagaStore::on_transport(&t).await.unwrap());
    let saga = Saga::<Ticket>::new("ticket")
        .completion(Completion::Keep)
        .starts_with(
            |m: &Opened| m.id,
            |m, step| {
                step.request_timeout(&Expired { id: m.id }, Duration::from_secs(3600))?;
                Ok(Ticket::Open)
            },
        )
        .on(
            |m: &Closed| m.id,
            |_, _, step| {
                step.complete();
                Ok(Ticket::Closed)
            },
        )
        .on(|m: &Expired| m.id, |s, _, _| Ok(s));
    let bus = Bus::builder(Arc::new(t.clone()))
        .endpoint(saga.attach(Endpoint::new("tickets").sends::<Expired>(), store.clone()))
        .sends::<Opened>()
        .sends::<Closed>()
        .start()
        .await
        .unwrap();
    bus.publish(&Opened { id: 1 }).await.unwrap();
    bus.publish(&Opened { id: 2 }).await.unwrap();
    let mut closed = false;
    for _ in 0..200 {
        if !closed && store.show("ticket", "2").await.unwrap().is_some() {
            bus.publish(&Closed { id: 2 }).await.unwrap();
            closed = true;
        }
        let one = store.show("ticket", "1").await.unwrap();
        let two = store.show("ticket", "2").await.unwrap();
        if one.is_some() && two.is_some_and(|r| r.state == "closed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bus.shutdown(Duration::from_secs(5)).await;

    let db = format!("sqlite://{}", path.display());
    let (ok, out, err) = tidings(&["sagas", "--db", &db, "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("saga"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(out.contains("open") && out.contains("closed"), "{out}");

    let (ok, out, err) = tidings(&["sagas", "--db", &db, "list", "--status", "active", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["key"], "1");
    assert_eq!(rows[0]["state"], "open");
    assert_eq!(rows[0]["armed_timeouts"], 1);

    // Nothing has been idle for an hour yet.
    let (ok, out, _) = tidings(&["sagas", "--db", &db, "list", "--stuck-for", "1h"]);
    assert!(ok);
    assert_eq!(out.trim(), "no sagas match");

    let (ok, out, err) = tidings(&["sagas", "--db", &db, "show", "ticket", "1"]);
    assert!(ok, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["state"], "open");
    assert_eq!(rec["data"], "Open");

    let (ok, _, err) = tidings(&["sagas", "--db", &db, "show", "ticket", "9"]);
    assert!(!ok);
    assert!(err.contains("no saga ticket with key 9"), "{err}");

    let (ok, _, err) = tidings(&["sagas", "--db", &db, "list", "--status", "stuck"]);
    assert!(!ok);
    assert!(err.contains("expected active or completed"), "{err}");
}

#[test]
fn a_database_without_sagas_lists_none_and_a_broker_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap();
    let db = format!("sqlite://{}", path.display());
    let (ok, out, err) = tidings(&["sagas", "--db", &db, "list"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "no sagas match");

    let (ok, _, err) = tidings(&[
        "sagas",
        "--db",
        "amqp://guest:s3cret@127.0.0.1:5672/%2f",
        "list",
    ]);
    assert!(!ok);
    assert!(err.contains("--db sqlite://FILE"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
