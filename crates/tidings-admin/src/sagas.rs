//! Saga routes: `GET /sagas` lists saga instances (oldest update first, so stuck ones lead),
//! `GET /sagas/{saga}/{key}` shows one — from the [`SagaQueries`] given to
//! [`AdminState::sagas`](crate::AdminState::sagas). Without one both answer 404.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use tidings_core::saga::{SagaQuery, SagaRecord, SagaStatus, SagaSummary};

use crate::api_error::{ApiError, Problem};
use crate::query::parse_duration;
use crate::routes::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::AdminState;

/// The query string of `GET /sagas`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SagaFilter {
    /// Only this saga (definition name).
    saga: Option<String>,
    /// Only instances in this state.
    state: Option<String>,
    /// `active` or `completed`.
    status: Option<String>,
    /// Only instances not updated for at least this long (`30s`, `5m`, `1h`): stuck ones.
    stuck_for: Option<String>,
    /// Page size (default [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`]).
    limit: Option<usize>,
    /// Rows to skip.
    offset: Option<u64>,
}

impl SagaFilter {
    fn query(&self) -> Result<SagaQuery, ApiError> {
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
        let status =
            match self.status.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => Some(SagaStatus::parse(s).ok_or_else(|| {
                    bad(format!("status `{s}`: expected `active` or `completed`"))
                })?),
            };
        let updated_before = match self.stuck_for.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let d = parse_duration(s).map_err(|e| bad(e.to_string()))?;
                let d = chrono::Duration::from_std(d)
                    .map_err(|_| bad(format!("stuck_for `{s}` is too long")))?;
                Some(Utc::now() - d)
            }
        };
        Ok(SagaQuery {
            saga: self.saga.clone().filter(|s| !s.is_empty()),
            state: self.state.clone().filter(|s| !s.is_empty()),
            status,
            updated_before,
            offset: self.offset.unwrap_or(0),
            limit: match self.limit {
                None | Some(0) => DEFAULT_PAGE_SIZE,
                Some(n) => n.min(MAX_PAGE_SIZE),
            },
        })
    }
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no saga store is configured for this admin API (AdminState::sagas)",
    )
}

/// Saga instances, least recently updated first (stuck ones lead).
#[utoipa::path(get, path = "/sagas", tag = "sagas", params(SagaFilter),
    responses(
        (status = 200, description = "Saga summaries (tidings-core's `SagaSummary`)", body = [Object]),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
pub(crate) async fn list(
    State(s): State<AdminState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<SagaSummary>>, ApiError> {
    let sagas = s.sagas.as_ref().ok_or_else(not_configured)?;
    // Parsed here, not by axum's `Query`, so a bad query string is a problem+json 400.
    let filter: SagaFilter = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("query string: {e}")))?;
    Ok(Json(sagas.list(&filter.query()?).await?))
}

/// One saga instance: state, data, recorded compensations, armed timeouts.
#[utoipa::path(get, path = "/sagas/{saga}/{key}", tag = "sagas",
    params(
        ("saga" = String, Path, description = "The saga's (definition's) name"),
        ("key" = String, Path, description = "The instance's correlation key"),
    ),
    responses(
        (status = 200, description = "The instance (tidings-core's `SagaRecord`)", body = Object),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
pub(crate) async fn show(
    State(s): State<AdminState>,
    Path((saga, key)): Path<(String, String)>,
) -> Result<Json<SagaRecord>, ApiError> {
    let sagas = s.sagas.as_ref().ok_or_else(not_configured)?;
    sagas
        .show(&saga, &key)
        .await?
        .map(Json)
        .ok_or_else(|| tidings_core::Error::NotFound(format!("saga {saga}/{key}")).into())
}
