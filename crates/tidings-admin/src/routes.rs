//! The admin [`router`]: queues, dead letters (list / show / replay / purge / summary),
//! a correlation id's messages, the topology, metrics, probes and the dashboard.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tidings_core::transport::DeadLetterQuery;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::query::DlqFilter;
use crate::request::{PurgeRequest, ReplayRequest};
use crate::view::{DeadLetterView, FaultSummary, QueueView};
use crate::{metrics, AdminState};

/// At most this many dead letters are counted for `GET /dlq/summary`.
const SUMMARY_LIMIT: usize = 10_000;
/// Dead letters `GET /dlq` returns when no `limit` is given (or `limit=0`).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `limit` `GET /dlq` honours.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// The admin API and dashboard, mountable into any axum app: `app.nest_service("/admin",
/// router(state))` answers at `/admin` and `/admin/` (axum's `nest` answers only at `/admin`).
///
/// | route | does |
/// | --- | --- |
/// | `GET /` | dashboard (HTML; its scripts and the bundled chart library under `/assets/`) |
/// | `GET /queues` | per-queue figures |
/// | `GET /endpoints` | per endpoint: received / handled / failed / retried per second, handler latency, critical time, depth, in flight ([`EndpointsView`](crate::EndpointsView)) |
/// | `GET /history` | the sampler's last minutes: rates per endpoint, depths per queue ([`HistoryView`](crate::HistoryView)) |
/// | `GET /dlq?endpoint=&type=&reason=&since=1h&limit=&ids=&correlation_id=` | dead letters, oldest first, [`DEFAULT_PAGE_SIZE`] unless `limit` (at most [`MAX_PAGE_SIZE`]) |
/// | `GET /dlq/summary?..` | dead letters counted by reason and endpoint |
/// | `GET /dlq/groups?..` | dead letters grouped by failure: type + reason + error text ([`FailureGroups`](crate::FailureGroups)) |
/// | `GET /dlq/{id}` | one dead letter |
/// | `POST /dlq/replay` | JSON [`ReplayRequest`](crate::ReplayRequest) `{endpoint, type, reason, since, ids: [..], correlation_id, group, limit, to, dry_run, all}` |
/// | `DELETE /dlq?..&confirm=true` | purge matching dead letters ([`PurgeRequest`](crate::PurgeRequest); no filter needs `all=true`) |
/// | `GET /messages?correlation_id=` | that conversation's messages in order: the [`MessageJournal`](crate::MessageJournal)'s deliveries merged with dead letters |
/// | `GET /sagas?saga=&state=&status=active\|completed&stuck_for=5m&limit=&offset=` | saga instances, least recently updated first (stuck ones lead; when given [`AdminState::sagas`]) |
/// | `GET /sagas/{saga}/{key}` | one saga instance: state, data, recorded compensations, armed timeouts |
/// | `GET /topology?format=json\|text\|mermaid\|dot` | the bus's topology (when given [`AdminState::topology`]) |
/// | `GET /metrics` | Prometheus text |
/// | `GET /healthz`, `GET /readyz` | liveness; readiness (`{"status":"ready"}` when the transport answers, else 503 `{"status":"unavailable"}`) |
///
/// Mutating requests (`POST`, `DELETE`) need `Content-Type: application/json`. With a
/// token set on the state, every route but `/`, `/healthz` and `/readyz` requires
/// `Authorization: Bearer <token>`; without one, only loopback hosts and same-origin
/// requests are answered (see [`guard`](crate::guard)). Errors are RFC 9457 problem
/// details (`application/problem+json`).
///
/// Building the router starts the state's sampler (see [`SamplerConfig`](crate::SamplerConfig)),
/// when called inside a tokio runtime.
pub fn router(state: AdminState) -> Router {
    crate::sampler::start(&state);
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/assets/{file}", get(crate::dashboard::serve_asset))
        .route("/queues", get(queues))
        .route("/endpoints", get(crate::live::endpoints))
        .route("/history", get(crate::live::history))
        .route("/dlq", get(list_dlq).delete(purge_dlq))
        .route("/dlq/summary", get(summary))
        .route("/dlq/groups", get(crate::groups::groups))
        .route("/dlq/replay", post(replay))
        .route("/dlq/{id}", get(show_dlq))
        .route("/messages", get(crate::timeline::messages))
        .route("/sagas", get(crate::sagas::list))
        .route("/sagas/{saga}/{key}", get(crate::sagas::show))
        .route("/topology", get(topology))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::protect,
        ))
        .with_state(state)
}

async fn queues(State(s): State<AdminState>) -> Result<Json<Vec<QueueView>>, ApiError> {
    let stats = s.transport.stats().await?;
    Ok(Json(stats.iter().map(QueueView::from).collect()))
}

async fn list_dlq(
    State(s): State<AdminState>,
    Query(mut filter): Query<DlqFilter>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    filter.limit = Some(match filter.limit {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n) => n.min(MAX_PAGE_SIZE),
    });
    let found = filter.list(s.transport.as_ref()).await?;
    Ok(Json(found.iter().map(DeadLetterView::from).collect()))
}

async fn summary(
    State(s): State<AdminState>,
    Query(mut filter): Query<DlqFilter>,
) -> Result<Json<FaultSummary>, ApiError> {
    filter.limit = Some(filter.limit.unwrap_or(SUMMARY_LIMIT).min(SUMMARY_LIMIT));
    let found = filter.list(s.transport.as_ref()).await?;
    Ok(Json(FaultSummary::of(&found)))
}

async fn show_dlq(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterView>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("`{id}` is not a UUID")))?;
    let query = DeadLetterQuery {
        ids: vec![id],
        ..Default::default()
    };
    let found = s.transport.dead_letters(&query).await?;
    found
        .first()
        .map(|d| Json(DeadLetterView::from(d)))
        .ok_or_else(|| tidings_core::Error::NotFound(id.to_string()).into())
}

#[derive(Debug, Serialize)]
struct ReplayResponse {
    replayed: u64,
    dry_run: bool,
    ids: Vec<Uuid>,
}

async fn replay(
    State(s): State<AdminState>,
    body: axum::body::Bytes,
) -> Result<Json<ReplayResponse>, ApiError> {
    let req = ReplayRequest::from_json(&body)?;
    let filter = req.filter();
    let t = s.transport.as_ref();
    if let Some(group) = req.group() {
        return replay_group(&s, &req, group).await.map(Json);
    }
    if req.dry_run {
        let found = filter.list(t).await?;
        return Ok(Json(ReplayResponse {
            replayed: 0,
            dry_run: true,
            ids: found.iter().map(|d| d.envelope.id).collect(),
        }));
    }
    let query = filter.resolve(t).await?;
    let to = req.to.as_deref().filter(|q| !q.is_empty());
    let n = t.replay(&query, to).await?;
    tracing::info!(replayed = n, ?to, "admin: dead letters replayed");
    Ok(Json(ReplayResponse {
        replayed: n,
        dry_run: false,
        ids: query.ids,
    }))
}

/// Replays the members of one failure group (within the request's other filters), by id.
async fn replay_group(
    s: &AdminState,
    req: &ReplayRequest,
    group: &str,
) -> Result<ReplayResponse, ApiError> {
    let (found, _) = crate::groups::scan(&req.filter(), s).await?;
    let mut ids: Vec<Uuid> = found
        .iter()
        .filter(|d| crate::groups::group_key(d) == group)
        .map(|d| d.envelope.id)
        .collect();
    if let Some(limit) = req.limit.filter(|l| *l > 0) {
        ids.truncate(limit);
    }
    // No member: replay nothing (an empty id list would select every dead letter).
    if req.dry_run || ids.is_empty() {
        return Ok(ReplayResponse {
            replayed: 0,
            dry_run: req.dry_run,
            ids,
        });
    }
    let query = DeadLetterQuery {
        ids: ids.clone(),
        ..Default::default()
    };
    let to = req.to.as_deref().filter(|q| !q.is_empty());
    let n = s.transport.replay(&query, to).await?;
    tracing::info!(replayed = n, group, ?to, "admin: failure group replayed");
    Ok(ReplayResponse {
        replayed: n,
        dry_run: false,
        ids,
    })
}

async fn purge_dlq(
    State(s): State<AdminState>,
    uri: axum::http::Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req = PurgeRequest::from_query(uri.query().unwrap_or(""))?;
    let t = s.transport.as_ref();
    let query = req.filter.resolve(t).await?;
    let n = t.purge(&query).await?;
    tracing::info!(purged = n, "admin: dead letters purged");
    Ok(Json(serde_json::json!({ "purged": n })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TopologyQuery {
    format: Option<String>,
}

async fn topology(
    State(s): State<AdminState>,
    Query(q): Query<TopologyQuery>,
) -> Result<Response, ApiError> {
    let Some(report) = s.topology.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no topology: pass the bus's report to AdminState::topology(bus.topology().clone())",
        ));
    };
    let text = match q.format.as_deref().unwrap_or("json") {
        "json" => return Ok(Json(report).into_response()),
        "text" => report.to_text(),
        "mermaid" => report.to_mermaid(),
        "dot" => report.to_dot(),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown topology format `{other}`: use json, text, mermaid or dot"),
            ))
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn render_metrics(State(s): State<AdminState>) -> Result<Response, ApiError> {
    let Some(handle) = s.metrics.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no Prometheus recorder: call tidings_admin::install_recorder() and pass the handle to AdminState::metrics",
        ));
    };
    let stats = s.transport.stats().await?;
    metrics::record_queue_stats(&stats);
    handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// Ready or not, nothing more: the probe is public, so the reason (which may name hosts
/// and errors) goes to the log only.
async fn ready(State(s): State<AdminState>) -> Response {
    match s.transport.stats().await {
        Ok(_) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(transport = s.transport.name(), error = %e, "admin: not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}
