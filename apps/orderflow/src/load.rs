//! The load generator: places orders through the real HTTP API with a concurrent reqwest
//! client, repeating some requests with the same Idempotency-Key, and checks each answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use crate::api::OrderAccepted;
use crate::system::CATALOG;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://127.0.0.1:port`.
    pub base_url: String,
    /// Orders to place.
    pub orders: usize,
    /// Requests in flight.
    pub clients: usize,
    /// Fraction shipped to a country shipping does not serve.
    pub undeliverable_rate: f64,
    /// Fraction of requests repeated with the same Idempotency-Key.
    pub retry_rate: f64,
}

/// What happened.
#[derive(Debug)]
pub struct LoadResult {
    /// Ids of the orders placed.
    pub placed: Vec<Uuid>,
    /// `POST /orders` latency, µs.
    pub post_latency: Histogram<u64>,
    /// Requests that failed (not 202, or a bad answer).
    pub errors: u64,
    /// Repeated requests (same key).
    pub repeats: u64,
    /// Repeats that answered with a different order (must be 0).
    pub idempotency_violations: u64,
    /// Time to place them all.
    pub elapsed: Duration,
}

/// A random order for `POST /orders` (client `i`; a fraction shipped where shipping does
/// not deliver).
pub fn order_body(i: usize, undeliverable_rate: f64) -> serde_json::Value {
    let mut rng = rand::rng();
    let n = rng.random_range(1..=3);
    let mut lines = Vec::new();
    let mut used = Vec::new();
    for _ in 0..n {
        let p = CATALOG[rng.random_range(0..CATALOG.len())].0;
        if used.contains(&p) {
            continue;
        }
        used.push(p);
        lines.push(json!({"product_id": p, "quantity": rng.random_range(1..=3)}));
    }
    let ship_to = if rng.random_bool(undeliverable_rate.clamp(0.0, 1.0)) {
        "AQ"
    } else {
        ["US", "DE", "FR", "NL", "JP"][i % 5]
    };
    let channel = ["email", "sms", "push"][rng.random_range(0..3)];
    json!({
        "customer_id": format!("c-{}", rng.random_range(0..2000)),
        "lines": lines,
        "notify_via": channel,
        "ship_to": ship_to,
    })
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    corr: &str,
    body: &serde_json::Value,
) -> anyhow::Result<Uuid> {
    let resp = client
        .post(url)
        .header("idempotency-key", key)
        .header("x-correlation-id", corr)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let echoed = resp
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        == Some(corr);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status.as_u16() != 202 {
        anyhow::bail!(
            "POST /orders answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let accepted: OrderAccepted = resp.json().await?;
    if !echoed || location.as_deref() != Some(&format!("/orders/{}", accepted.id)) {
        anyhow::bail!(
            "order {}: missing Location or correlation echo",
            accepted.id
        );
    }
    Ok(accepted.id)
}

/// Places `config.orders` orders; `bar` ticks once per order.
pub async fn place_orders(config: &LoadConfig, bar: &ProgressBar) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.clients)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{}/orders", config.base_url);
    let errors = Arc::new(AtomicU64::new(0));
    let repeats = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let results: Vec<Option<(Uuid, u64)>> = futures::stream::iter(0..config.orders)
        .map(|i| {
            let (client, url, errors, repeats, violations) = (
                client.clone(),
                url.clone(),
                errors.clone(),
                repeats.clone(),
                violations.clone(),
            );
            let body = order_body(i, config.undeliverable_rate);
            let repeat = rand::rng().random_bool(config.retry_rate.clamp(0.0, 1.0));
            let bar = bar.clone();
            async move {
                let key = Uuid::new_v4().to_string();
                let corr = format!("load-{i}");
                let t = Instant::now();
                let first = post(&client, &url, &key, &corr, &body).await;
                let micros = t.elapsed().as_micros() as u64;
                bar.inc(1);
                match first {
                    Ok(id) => {
                        if repeat {
                            repeats.fetch_add(1, Ordering::Relaxed);
                            match post(&client, &url, &key, &corr, &body).await {
                                Ok(again) if again == id => {}
                                _ => {
                                    violations.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Some((id, micros))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "placing an order failed");
                        errors.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        })
        .buffer_unordered(config.clients.max(1))
        .collect()
        .await;
    let mut post_latency = Histogram::new_with_bounds(1, 600_000_000, 3)?;
    let mut placed = Vec::with_capacity(results.len());
    for (id, micros) in results.into_iter().flatten() {
        let _ = post_latency.record(micros.max(1));
        placed.push(id);
    }
    Ok(LoadResult {
        placed,
        post_latency,
        errors: errors.load(Ordering::Relaxed),
        repeats: repeats.load(Ordering::Relaxed),
        idempotency_violations: violations.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}
