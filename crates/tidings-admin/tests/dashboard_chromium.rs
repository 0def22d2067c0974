//! The dashboard in a real headless Chromium, driven over chromedriver's WebDriver HTTP API:
//! the page shows an endpoint's error depth, "replay" moves the dead letter back, a bus
//! endpoint handles it (and sends a follow-up command to another), the page shows the error
//! queue empty, and the correlation id search lists the conversation's messages in order:
//! first the dead letter, after the replay the two consumed messages from the journal.
//!
//! Needs `chromium` and `chromium-driver` (Debian). Skipped with a reason when they are
//! absent, unless CI=true.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tidings_admin::{AdminConfig, AdminServer, AdminState, MessageJournal};
use tidings_core::{Bus, ConsumeContext, Endpoint, FaultReason, Message};

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.reserve", kind = "command")]
struct Reserve {
    order_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.charge", kind = "command")]
struct Charge {
    order_id: u32,
}

#[tokio::test]
async fn dashboard_shows_depth_and_replays_in_chromium() {
    if !common::chromium::available() {
        return;
    }

    // A transport with one dead letter in `orders`.
    let t = common::transport().await;
    let id = common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "corr-9",
    )
    .await;
    // The bus consumes `orders` (sending a charge to `payments`), recorded in a journal.
    let handled = Arc::new(AtomicU64::new(0));
    let journal = MessageJournal::new();
    let bus = {
        let handled = handled.clone();
        Bus::builder(t.clone())
            .endpoint(Endpoint::new("orders").sends::<Charge>().handle_fn(
                move |m: Reserve, ctx: ConsumeContext| {
                    let handled = handled.clone();
                    async move {
                        assert_eq!(ctx.message_id(), id);
                        ctx.send(&Charge {
                            order_id: m.order_id,
                        })
                        .await?;
                        handled.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                },
            ))
            .endpoint(Endpoint::new("payments").handle_fn(|_: Charge, _| async { Ok(()) }))
            .observer(journal.observer())
            .start()
            .await
            .unwrap()
    };

    let server = AdminServer::bind(
        AdminConfig::new(([127, 0, 0, 1], 0).into()),
        AdminState::new(t.clone()).journal(journal.clone()),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let browser = common::chromium::Browser::start(1280, 1000).await;
    let (wd, sid) = (browser.wd.clone(), browser.sid.clone());

    // The checks run in a task so that a failed assertion still ends the browser session.
    let checks = {
        let (wd, sid, handled, journal) =
            (wd.clone(), sid.clone(), handled.clone(), journal.clone());
        tokio::spawn(async move {
            wd.call(
                reqwest::Method::POST,
                &format!("/session/{sid}/url"),
                Some(json!({ "url": format!("http://{addr}/") })),
            )
            .await;
            // The endpoint's error depth and the dead letter's row.
            let depth = wd
                .wait_text(&sid, r#"#queues tr[data-queue="orders"] td.err"#, |t| {
                    t == "1"
                })
                .await;
            assert_eq!(depth, "1");
            let row = wd
                .wait_text(&sid, &format!(r#"#dlq tr[data-id="{id}"]"#), |t| {
                    t.contains("handler-failed")
                })
                .await;
            assert!(
                row.contains("shop.reserve v1") && row.contains("corr-9"),
                "{row}"
            );
            let summary = wd
                .wait_text(&sid, "#summary", |t| t.contains("handler-failed: 1"))
                .await;
            assert!(summary.contains("handler-failed: 1"));

            // The correlation id search finds it in the error queue.
            wd.type_into(&sid, "#corr", "corr-9").await;
            wd.click(&sid, "#corr-form button").await;
            let found = wd
                .wait_text(&sid, "#corr-results tbody", |t| t.contains("shop.reserve"))
                .await;
            assert!(
                found.contains("dead-lettered (in error queue)")
                    && found.contains("handler-failed"),
                "{found}"
            );

            // Replay it from the page.
            wd.click_now(&sid, &format!(r#"button.replay[data-id="{id}"]"#))
                .await;
            wd.wait_text(&sid, "#status", |t| t.contains("replayed 1"))
                .await;
            wd.wait_text(&sid, r#"#queues tr[data-queue="orders"] td.err"#, |t| {
                t == "0"
            })
            .await;
            wd.wait_text(&sid, "#dlq tbody", |t| t.contains("no dead letters match"))
                .await;
            for _ in 0..100 {
                if handled.load(Ordering::SeqCst) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                handled.load(Ordering::SeqCst),
                1,
                "the consumer handled the replayed message"
            );

            // Searched again: the journal's two consumed messages, in order, and no dead letter.
            for _ in 0..100 {
                if journal.len() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                journal.len(),
                2,
                "the journal saw the reserve and the charge"
            );
            wd.click(&sid, "#corr-form button").await;
            let found = wd
                .wait_text(&sid, "#corr-results tbody", |t| {
                    t.contains("shop.charge") && !t.contains("dead-lettered")
                })
                .await;
            let rows: Vec<&str> = found.lines().collect();
            assert_eq!(rows.len(), 2, "{found}");
            assert!(
                rows[0].contains("orders") && rows[0].contains("shop.reserve v1"),
                "{found}"
            );
            assert!(rows[0].contains(&id.to_string()), "{found}");
            assert!(
                rows[1].contains("payments") && rows[1].contains("shop.charge v1"),
                "{found}"
            );
            assert!(rows.iter().all(|r| r.contains("consumed")), "{found}");
            let note = wd.text(&sid, "#corr-note").await.unwrap_or_default();
            assert!(note.contains("the last 10000 deliveries"), "{note}");
        })
    };
    let result = checks.await;

    browser.quit().await;
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    bus.shutdown(Duration::from_secs(5)).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
