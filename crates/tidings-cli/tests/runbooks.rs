//! Walks every runbook in `docs/runbooks/`: seeds the incident it describes in a SQLite
//! database (dead letters, a poison message on an ordered endpoint, a backlog, a stuck
//! saga, a storm of redeliveries; PostgreSQL on a closed port), runs the runbook's checked
//! commands with the `tidings` binary, asserts the output it promises, applies the fix the
//! runbook stands for (the dependency comes back, the consumer scales up) and runs the
//! verification commands. See `tests/runbook/mod.rs` for the block format.

mod runbook;

use std::time::Duration;

use runbook::seed::*;
use runbook::{Runbook, Vars};
use tidings::{Bus, ConsumeContext, Endpoint, HandlerError, Redelivery};

/// Every runbook has a test below; a new one without a test fails here.
#[test]
fn every_runbook_is_walked_by_a_test() {
    let walked = [
        "broker-down.md",
        "consumer-falling-behind.md",
        "dead-letters-growing.md",
        "poison-message.md",
        "replay-after-fix.md",
        "retry-storm.md",
        "stuck-saga.md",
    ];
    let mut found: Vec<String> = std::fs::read_dir(runbook::dir())
        .expect("docs/runbooks")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    found.sort();
    assert_eq!(
        found, walked,
        "runbooks in docs/runbooks vs. the tests here"
    );
    for f in walked {
        let rb = Runbook::load(f);
        assert!(rb.blocks.iter().all(|b| !b.commands.is_empty()), "{f}");
        let index = std::fs::read_to_string(runbook::dir().join("README.md")).unwrap();
        assert!(index.contains(&format!("]({f})")), "README.md links {f}");
    }
}

#[test]
fn the_block_format() {
    let md = "x\n```console check=s/a\n$ tidings queues\nQUEUE ...\n  inventory  0 ... 4\n```\n```console\n$ ignored\n```\n";
    let blocks = runbook::parse(md);
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0].scenario.as_str(), blocks[0].step.as_str()),
        ("s", "a")
    );
    assert_eq!(blocks[0].commands[0].expect.len(), 2);
    assert!(runbook::matches(
        "inventory 0 ... 4",
        "inventory   0  0 0  4"
    ));
    assert!(!runbook::matches(
        "inventory 0 ... 4",
        "inventory 0 0 0 4 0"
    ));
    assert!(runbook::matches(
        "... v1 handler-failed ...",
        "0190 3s ago inventory x v1 handler-failed 1 boom"
    ));
    assert!(!runbook::matches(
        "payments 0 0 0 - 0 0",
        "payments 0 0 0 - 1 0"
    ));
    assert_eq!(
        runbook::words("tidings --url 'a b' \"c\""),
        ["tidings", "--url", "a b", "c"]
    );
    let v = Vars::new("u").set("id", 7);
    assert_eq!(v.fill("show <id> <not a name>", "t"), "show 7 <not a name>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_growing() {
    let inc = Incident::new().await;
    let db = Switch::default();
    let handled = Counter::default();
    let (d, h) = (db.clone(), handled.clone());
    let bus = Bus::builder(inc.arc())
        .endpoint(
            Endpoint::new("inventory")
                .redelivery(Redelivery::none())
                .handle_fn(move |_: ReserveStock, _: ConsumeContext| {
                    let (d, h) = (d.clone(), h.clone());
                    async move {
                        if !d.up() {
                            return Err(HandlerError::transient(
                                "stock database unavailable: connection reset by peer",
                            ));
                        }
                        h.add();
                        Ok(())
                    }
                }),
        )
        .start()
        .await
        .expect("bus");
    for order in 1..=3 {
        let body = format!(r#"{{"order":{order}}}"#);
        inc.send_raw("inventory", "orderflow.reserve-stock", 1, &body, None)
            .await;
    }
    let v3 = inc
        .send_raw(
            "inventory",
            "orderflow.reserve-stock",
            3,
            r#"{"order":4,"lines":[]}"#,
            None,
        )
        .await;
    inc.wait("inventory", "4 dead letters", |s| {
        s.error_depth == 4 && idle(s)
    })
    .await;

    let mut rb = Runbook::load("dead-letters-growing.md");
    let vars = Vars::new(&inc.url).set("unknown-type-id", v3);
    rb.run("inspect", &vars);
    db.set(true); // the stock database is back
    rb.run("fix", &vars);
    until("3 replayed messages handled", || handled.get() == 3).await;
    inc.wait("inventory", "an idle queue", idle).await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message() {
    let inc = Incident::new().await;
    let handled = Counter::default();
    let h = handled.clone();
    let bus = Bus::builder(inc.arc())
        .endpoint(
            Endpoint::new("payments")
                .ordered(true)
                .park_on_dead_letter(true)
                .handle_fn(move |_: CapturePayment, _: ConsumeContext| {
                    let h = h.clone();
                    async move {
                        h.add();
                        Ok(())
                    }
                }),
        )
        .start()
        .await
        .expect("bus");
    let ty = "orderflow.capture-payment";
    let poison = inc
        .send_raw(
            "payments",
            ty,
            1,
            r#"{"order":7,"amount_cents":"12.50"}"#,
            Some("order-7"),
        )
        .await;
    inc.wait("payments", "the poison message dead-lettered", |s| {
        s.error_depth == 1
    })
    .await;
    // Behind it, the same key waits; another key passes.
    inc.send_raw(
        "payments",
        ty,
        1,
        r#"{"order":7,"amount_cents":1250}"#,
        Some("order-7"),
    )
    .await;
    inc.send_raw(
        "payments",
        ty,
        1,
        r#"{"order":8,"amount_cents":990}"#,
        Some("order-8"),
    )
    .await;
    until("order 8 captured", || handled.get() == 1).await;
    inc.wait("payments", "order 7 parked", |s| {
        s.parked_keys == Some(1) && s.ready == 1
    })
    .await;

    let mut rb = Runbook::load("poison-message.md");
    let vars = Vars::new(&inc.url).set("poison-id", poison);
    rb.run("inspect", &vars);
    rb.run("fix", &vars);
    until("order 7 captured after the purge", || handled.get() == 2).await;
    inc.wait("payments", "an idle queue", idle).await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_falling_behind() {
    let inc = Incident::new().await;
    inc.declare(&["shipping"]).await;
    for order in 0..40 {
        let body = format!(r#"{{"order":{order}}}"#);
        inc.send_raw("shipping", "orderflow.create-shipment", 1, &body, None)
            .await;
    }
    let mut rb = Runbook::load("consumer-falling-behind.md");
    let vars = Vars::new(&inc.url);
    rb.run("inspect", &vars);
    // Scale out: a consumer starts.
    let handled = Counter::default();
    let h = handled.clone();
    let bus = Bus::builder(inc.arc())
        .endpoint(Endpoint::new("shipping").handle_fn(
            move |_: CreateShipment, _: ConsumeContext| {
                let h = h.clone();
                async move {
                    h.add();
                    Ok(())
                }
            },
        ))
        .start()
        .await
        .expect("bus");
    until("the backlog handled", || handled.get() == 40).await;
    inc.wait("shipping", "an idle queue", idle).await;
    rb.run("verify", &vars);
    rb.finish();
    bus.shutdown(Duration::from_secs(5)).await;
}

#[path = "runbook/incidents.rs"]
mod incidents;

/// Every `tidings_*` metric a runbook or deploy/ names is one the code records (a string
/// literal in some crate's sources; `_bucket`/`_sum`/`_count` series of histograms too).
#[test]
fn metric_names_in_the_runbooks_exist() {
    fn sources(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let root = runbook::dir().join("../..");
    let mut code = String::new();
    for krate in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        sources(&krate.path().join("src"), &mut code);
    }
    let mut docs: Vec<std::path::PathBuf> = std::fs::read_dir(runbook::dir())
        .expect("docs/runbooks")
        .flatten()
        .map(|e| e.path())
        .collect();
    docs.push(root.join("deploy/README.md"));
    docs.push(root.join("deploy/k8s/keda.yaml"));
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("doc");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("tidings_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            rest = &tail[end..];
            if matches!(name, "tidings_core" | "tidings_sqlite" | "tidings_postgres") {
                continue; // crate paths
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                code.contains(&format!("\"{base}\"")),
                "{}: `{name}` is not a metric the code records",
                doc.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked} metric names checked");
}
