//! The dashboard's live parts in a real headless Chromium, mounted like OrderFlow mounts it
//! (`nest_service("/admin", ..)`, opened at `/admin/` with the slash): while a bus drains a
//! backlog the endpoint table shows a handled rate; the depth and handled charts draw
//! (checked twice: pixels of the series colour in the chart canvases via `getImageData`,
//! and in a real screenshot decoded from PNG); dead letters show up grouped by failure and
//! the group's "replay" button replays every member.
//!
//! Needs `chromium` and `chromium-driver` (Debian). Skipped with a reason when they are
//! absent, unless CI=true. The screenshot is kept in Cargo's test temp dir.

mod common;

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidings_admin::{install_recorder, router, AdminState, MessageJournal, SamplerConfig};
use tidings_core::{Bus, Endpoint, HandlerError, Message, Redelivery};

use common::chromium::{Browser, WebDriver};

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.work", kind = "command")]
struct Work {
    n: u32,
}

/// The first colour of the page's palette (`#2563eb`): the first series of each chart.
const BLUE: [u8; 3] = [0x25, 0x63, 0xeb];
const MESSAGES: u32 = 160;

fn near(p: [u8; 4], c: [u8; 3]) -> bool {
    p[3] > 200 && (0..3).all(|i| (p[i] as i16 - c[i] as i16).abs() <= 40)
}

async fn script(wd: &WebDriver, sid: &str, js: &str) -> Value {
    wd.call(
        reqwest::Method::POST,
        &format!("/session/{sid}/execute/sync"),
        Some(json!({ "script": js, "args": [] })),
    )
    .await["value"]
        .clone()
}

/// Polls `js` until it returns true (15 s at most).
async fn wait_js(wd: &WebDriver, sid: &str, js: &str) {
    for _ in 0..150 {
        if script(wd, sid, js).await == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = script(wd, sid, "return document.querySelector('main').innerText").await;
    panic!("never true: {js}\npage:\n{page}");
}

const PIXELS_JS: &str = "
  const out = {};
  for (const id of ['chart-depth', 'chart-handled']) {
    const canvas = document.querySelector('#' + id + ' canvas');
    if (!canvas) { out[id] = -1; continue; }
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 200 && Math.abs(d[i] - 0x25) <= 40 && Math.abs(d[i + 1] - 0x63) <= 40 && Math.abs(d[i + 2] - 0xeb) <= 40) n++;
    }
    out[id] = n;
  }
  return out;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_draw_and_failure_groups_replay_in_chromium() {
    if !common::chromium::available() {
        return;
    }
    let handle = install_recorder().unwrap();
    let t = common::transport().await;
    let journal = MessageJournal::new();
    // One at a time, 25 ms each: the backlog takes about 4 s to drain. Every tenth fails for good.
    let bus = Bus::builder(t.clone())
        .endpoint(
            Endpoint::new("orders")
                .concurrency(1)
                .redelivery(Redelivery::none())
                .handle_fn(|m: Work, _| async move {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    if m.n.is_multiple_of(10) {
                        return Err(HandlerError::permanent(format!("order {} not found", m.n)));
                    }
                    Ok(())
                }),
        )
        .sends::<Work>()
        .observer(journal.observer())
        .start()
        .await
        .unwrap();
    let state = AdminState::new(t.clone())
        .journal(journal.clone())
        .metrics(handle)
        .sampler(
            SamplerConfig::default()
                .tick(Duration::from_millis(250))
                .stats_every(Duration::from_millis(250)),
        );
    let app = axum::Router::new().nest_service("/admin", router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start(1280, 1600).await;
    let (wd, sid) = (browser.wd.clone(), browser.sid.clone());
    let checks = {
        let (wd, sid, t, journal) = (wd.clone(), sid.clone(), t.clone(), journal.clone());
        tokio::spawn(async move {
            wd.call(
                reqwest::Method::POST,
                &format!("/session/{sid}/url"),
                Some(json!({ "url": format!("http://{addr}/admin/") })),
            )
            .await;
            wait_js(
                &wd,
                &sid,
                "return typeof uPlot === 'function' && typeof loadCharts === 'function'",
            )
            .await;
            // A backlog, drained one at a time by the bus.
            for n in 1..=MESSAGES {
                t.send(vec![tidings_core::transport::Outgoing::to_queue(
                    "orders",
                    tidings_core::Envelope::new("shop.work", 1, format!("{{\"n\":{n}}}")),
                )])
                .await
                .unwrap();
            }
            // While it drains: a handled rate in the endpoint table.
            wait_js(&wd, &sid, "const c = document.querySelector('#endpoints tr[data-endpoint=\"orders\"] td.handled'); return !!c && parseFloat(c.textContent) > 0").await;
            for _ in 0..300 {
                if journal.len() as u32 >= MESSAGES {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                journal.len() as u32,
                MESSAGES,
                "the bus drained the backlog"
            );
            // The charts hold the whole run (the page redraws every 2 s).
            tokio::time::sleep(Duration::from_millis(2500)).await;
            wait_js(&wd, &sid, "const d = document.getElementById('chart-depth').dataset, h = document.getElementById('chart-handled').dataset; return +d.points >= 8 && +d.series >= 1 && +h.series >= 1").await;

            // 1. The canvases hold the series' colour.
            let counts = script(&wd, &sid, PIXELS_JS).await;
            eprintln!("series-colour pixels in the canvases: {counts}");
            for id in ["chart-depth", "chart-handled"] {
                assert!(counts[id].as_i64().unwrap_or(-1) > 100, "{id}: {counts}");
            }
            // 2. So does a real screenshot, inside each chart's box.
            let shot = wd
                .call(
                    reqwest::Method::GET,
                    &format!("/session/{sid}/screenshot"),
                    None,
                )
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["value"].as_str().unwrap())
                .unwrap();
            let path =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-charts.png");
            std::fs::write(&path, &png).unwrap();
            eprintln!("screenshot: {}", path.display());
            let img = common::png::decode(&png);
            let rects = script(&wd, &sid, "const r = {}; for (const id of ['chart-depth', 'chart-handled']) { const b = document.querySelector('#' + id + ' canvas').getBoundingClientRect(); r[id] = [b.left, b.top, b.right, b.bottom].map(Math.round); } r.dpr = window.devicePixelRatio; return r;").await;
            let dpr = rects["dpr"].as_f64().unwrap_or(1.0);
            for id in ["chart-depth", "chart-handled"] {
                let r: Vec<f64> = serde_json::from_value(rects[id].clone()).unwrap();
                let (x0, y0) = ((r[0] * dpr) as usize, (r[1] * dpr) as usize);
                let x1 = ((r[2] * dpr) as usize).min(img.width);
                let y1 = ((r[3] * dpr) as usize).min(img.height);
                assert!(x1 > x0 && y1 > y0, "{id} is on screen: {rects}");
                let blue = (y0..y1)
                    .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                    .filter(|&(x, y)| near(img.pixel(x, y), BLUE))
                    .count();
                eprintln!("{id}: {blue} series-colour pixels in the screenshot");
                assert!(
                    blue > 100,
                    "{id}: {blue} pixels of the series colour in the screenshot"
                );
                // Outside the charts (the page's margin left of them) there is none of it.
                let margin = (y0..y1)
                    .filter(|&y| near(img.pixel(x0.saturating_sub(8), y), BLUE))
                    .count();
                assert_eq!(margin, 0, "{id}'s colour leaks outside the chart");
            }

            // Failures grouped: 16 dead letters, one group; its button replays all of them.
            wait_js(&wd, &sid, "const c = document.querySelector('#groups tbody tr td.count'); return !!c && c.textContent === '16'").await;
            let row = script(
                &wd,
                &sid,
                "return document.querySelector('#groups tbody tr').innerText",
            )
            .await;
            let row = row.as_str().unwrap_or_default();
            assert!(
                row.contains("order <n> not found") && row.contains("handler-failed"),
                "{row}"
            );
            wd.click_now(&sid, "button.replay-group").await;
            wd.wait_text(&sid, "#status", |s| s.contains("replayed 16"))
                .await;
        })
    };
    let result = checks.await;
    browser.quit().await;
    serving.abort();
    bus.shutdown(Duration::from_secs(5)).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
