//! The admin [`router`]: queues, dead letters (list / show / replay / purge / summary),
//! a correlation id's messages, the topology, metrics, probes and the dashboard.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tidings_core::transport::DeadLetterQuery;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api_error::{ApiError, Problem};
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
/// | `GET /openapi.json` | this table as an OpenAPI 3.1 document (see [`openapi`](crate::openapi())) |
///
/// Mutating requests (`POST`, `DELETE`) need `Content-Type: application/json`. With a
/// token set on the state, every route but `/` (and its `/assets/`), `/healthz`, `/readyz`
/// and `/openapi.json` requires `Authorization: Bearer <token>`; without one, only
/// loopback hosts and same-origin requests are answered (see [`guard`](crate::guard)).
/// Every error, a path no route serves and a method a route does not take included, is
/// RFC 9457 problem details (`application/problem+json`, [`Problem`](crate::Problem)).
///
/// Building the router starts the state's sampler (see [`SamplerConfig`](crate::SamplerConfig)),
/// when called inside a tokio runtime.
pub fn router(state: AdminState) -> Router {
    crate::sampler::start(&state);
    let (routes, _) = api().split_for_parts();
    routes
        .fallback(crate::api_error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::protect,
        ))
        .layer(axum::middleware::map_response(
            crate::api_error::bare_errors_as_problems,
        ))
        .with_state(state)
}

/// Every route with its OpenAPI description: the one list both the router and the
/// document are built from (paths come from each handler's `#[utoipa::path]`).
pub(crate) fn api() -> OpenApiRouter<AdminState> {
    use crate::{dashboard, groups, live, sagas, timeline};
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::serve_asset))
        .routes(routes!(queues))
        .routes(routes!(live::endpoints))
        .routes(routes!(live::history))
        .routes(routes!(list_dlq, purge_dlq))
        .routes(routes!(summary))
        .routes(routes!(groups::groups))
        .routes(routes!(replay))
        .routes(routes!(show_dlq))
        .routes(routes!(timeline::messages))
        .routes(routes!(sagas::list))
        .routes(routes!(sagas::show))
        .routes(routes!(topology))
        .routes(routes!(render_metrics))
        .routes(routes!(healthz))
        .routes(routes!(ready))
        .routes(routes!(crate::openapi::openapi_json))
}

/// Per-queue figures.
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses(
        (status = 200, description = "One entry per queue", body = [QueueView]),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
async fn queues(State(s): State<AdminState>) -> Result<Json<Vec<QueueView>>, ApiError> {
    let stats = s.transport.stats().await?;
    Ok(Json(stats.iter().map(QueueView::from).collect()))
}

/// Dead letters, oldest first: [`DEFAULT_PAGE_SIZE`] unless `limit` (at most [`MAX_PAGE_SIZE`]).
#[utoipa::path(get, path = "/dlq", tag = "dead letters", params(DlqFilter),
    responses(
        (status = 200, description = "Matching dead letters, oldest first", body = [DeadLetterView]),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
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

/// Dead letters counted by reason and endpoint.
#[utoipa::path(get, path = "/dlq/summary", tag = "dead letters", params(DlqFilter),
    responses(
        (status = 200, description = "Counts of the matching dead letters", body = FaultSummary),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
async fn summary(
    State(s): State<AdminState>,
    Query(mut filter): Query<DlqFilter>,
) -> Result<Json<FaultSummary>, ApiError> {
    filter.limit = Some(filter.limit.unwrap_or(SUMMARY_LIMIT).min(SUMMARY_LIMIT));
    let found = filter.list(s.transport.as_ref()).await?;
    Ok(Json(FaultSummary::of(&found)))
}

/// One dead letter.
#[utoipa::path(get, path = "/dlq/{id}", tag = "dead letters",
    params(("id" = Uuid, Path, description = "The message id")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterView),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
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

/// The answer of `POST /dlq/replay`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReplayResponse {
    /// Dead letters sent back (0 on a dry run).
    replayed: u64,
    /// Whether nothing was replayed, only listed.
    dry_run: bool,
    /// The ids selected.
    ids: Vec<Uuid>,
}

/// The answer of `DELETE /dlq`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PurgeResponse {
    /// Dead letters deleted.
    purged: u64,
}

/// Sends matching dead letters back to their queue (or `to`). No filter needs `all: true`.
#[utoipa::path(post, path = "/dlq/replay", tag = "dead letters",
    request_body(content = ReplayRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What was (or, on a dry run, would be) replayed", body = ReplayResponse),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
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

/// Deletes matching dead letters: needs `confirm=true`, and `all=true` when no filter is given.
#[utoipa::path(delete, path = "/dlq", tag = "dead letters",
    params(
        DlqFilter,
        ("confirm" = bool, Query, description = "Must be `true`"),
        ("all" = Option<bool>, Query, description = "`true` to purge every dead letter when no filter is given"),
    ),
    responses(
        (status = 200, description = "How many were deleted", body = PurgeResponse),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
async fn purge_dlq(
    State(s): State<AdminState>,
    uri: axum::http::Uri,
) -> Result<Json<PurgeResponse>, ApiError> {
    let req = PurgeRequest::from_query(uri.query().unwrap_or(""))?;
    let t = s.transport.as_ref();
    let query = req.filter.resolve(t).await?;
    let n = t.purge(&query).await?;
    tracing::info!(purged = n, "admin: dead letters purged");
    Ok(Json(PurgeResponse { purged: n }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct TopologyQuery {
    /// `json` (default), `text`, `mermaid` or `dot`.
    format: Option<String>,
}

/// The bus's topology (when given [`AdminState::topology`]).
#[utoipa::path(get, path = "/topology", tag = "operations", params(TopologyQuery),
    responses(
        (status = 200, description = "The topology report (tidings-core's `TopologyReport`) as JSON, \
            or as text, Mermaid or Graphviz dot", content(
            (Object = "application/json"),
            (String = "text/plain"),
        )),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
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

/// Prometheus metrics (when given [`AdminState::metrics`]).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
            content_type = "text/plain"),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
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

/// The readiness probe's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Ready or not, nothing more: the probe is public, so the reason (which may name hosts
/// and errors) goes to the log only.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The transport answers", body = Readiness,
            example = json!({"status": "ready"})),
        (status = 503, description = "The transport does not answer (the reason is logged)",
            body = Readiness, example = json!({"status": "unavailable"})),
    ))]
async fn ready(State(s): State<AdminState>) -> Response {
    match s.transport.stats().await {
        Ok(_) => Json(Readiness { status: "ready" }).into_response(),
        Err(e) => {
            tracing::warn!(transport = s.transport.name(), error = %e, "admin: not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Readiness {
                    status: "unavailable",
                }),
            )
                .into_response()
        }
    }
}
