//! The chaos run's clients: place orders over HTTP while the service is killed and
//! restarted. Each order has a fresh Idempotency-Key; a request that gets no answer (the
//! service is down, or died mid-request) is repeated with the same key until it is
//! answered, so an order the service accepted is never placed twice.

use std::sync::Arc;
use std::time::Duration;

use tidings_chaos::Stop;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::api::OrderAccepted;
use crate::load::order_body;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Placed {
    /// Orders answered 202: their id, and the URL that accepted them.
    pub accepted: Vec<(Uuid, String)>,
    /// Orders refused by back-pressure (503 with `Retry-After`; not repeated).
    pub shed: u64,
    /// The first refusal's problem detail.
    pub first_shed: Option<String>,
    /// Requests repeated (same key) because the previous one got no answer.
    pub repeats: u64,
    /// Answers other than 202 (each repeated too; a 4xx is a failure of the run).
    pub refused: Vec<String>,
}

/// Runs `clients` clients against `base_url` until `stop`, placing `rate` orders per second
/// in all (0: no pause), each finishing the order it is placing (answered) before it
/// returns.
pub async fn place_until_stopped(
    base_url: String,
    clients: usize,
    rate: f64,
    stop: Stop,
) -> Placed {
    place_while(vec![base_url], clients, rate, move || !stop.is_stopped()).await
}

/// Runs `clients` clients while `go()` says so, spreading orders over `bases` (client
/// `c`'s `n`-th order goes to `bases[(c + n) % len]`), `rate` orders per second in all.
/// A `503` with `Retry-After` (back-pressure) refuses the order: counted in
/// [`Placed::shed`], and the client waits as told before its next order.
pub async fn place_while<G>(bases: Vec<String>, clients: usize, rate: f64, go: G) -> Placed
where
    G: Fn() -> bool + Clone + Send + 'static,
{
    let placed = Arc::new(Mutex::new(Placed::default()));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            placed
                .lock()
                .await
                .refused
                .push(format!("no HTTP client: {e}"));
            return Arc::try_unwrap(placed)
                .map(|m| m.into_inner())
                .unwrap_or_default();
        }
    };
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}/orders")).collect();
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let (client, urls, go, placed) = (client.clone(), urls.clone(), go.clone(), placed.clone());
        // Each client places one order per `every`; a slow answer delays its next order.
        let every = (rate > 0.0).then(|| Duration::from_secs_f64(clients.max(1) as f64 / rate));
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            let mut tick = every.map(|d| {
                let mut t = tokio::time::interval(d);
                // after a stretch without answers, resume the pace (no burst)
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut n = 0;
            while go() {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let url = &urls[(c + n) % urls.len().max(1)];
                if let Some(wait) = place_one(&client, url, i, &placed).await {
                    tokio::time::sleep(wait).await;
                }
                i += clients.max(1);
                n += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = placed.lock().await;
    std::mem::take(&mut *out)
}

/// Places one order, repeating the request with the same key until it is answered 202
/// (or refused with a 4xx, which the run reports, or shed with a 503 + `Retry-After`:
/// then returns how long to wait).
async fn place_one(
    client: &reqwest::Client,
    url: &str,
    i: usize,
    placed: &Mutex<Placed>,
) -> Option<Duration> {
    let key = Uuid::new_v4().to_string();
    let body = order_body(i, 0.02);
    let mut first = true;
    loop {
        if !first {
            placed.lock().await.repeats += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first = false;
        let resp = match client
            .post(url)
            .header("idempotency-key", &key)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => continue, // no answer: the service is down or died mid-request
        };
        let status = resp.status();
        if status.as_u16() == 202 {
            match resp.json::<OrderAccepted>().await {
                Ok(a) => {
                    placed.lock().await.accepted.push((a.id, url.to_string()));
                    return None;
                }
                Err(_) => continue, // the answer was cut off
            }
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (503, Some(secs)) = (status.as_u16(), retry_after) {
            let text = resp.text().await.unwrap_or_default();
            let mut p = placed.lock().await;
            p.shed += 1;
            p.first_shed.get_or_insert(text);
            return Some(Duration::from_secs(secs));
        }
        if status.is_client_error() {
            let text = resp.text().await.unwrap_or_default();
            placed
                .lock()
                .await
                .refused
                .push(format!("{status}: {text}"));
            return None;
        }
        // other 5xx (e.g. the database went away under a dying process): repeat
    }
}
