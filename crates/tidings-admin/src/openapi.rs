//! The admin API's OpenAPI 3.1 document, generated (utoipa) from the same list of annotated
//! handlers the [`router`](crate::router) is built from, so a route cannot be served
//! without being described. Served at `GET /openapi.json`, public like the dashboard's
//! shell: it describes the API and holds no data. Paths are relative to where the router
//! is mounted.

use std::sync::LazyLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

use crate::api_error::{ApiError, Problem};

/// What the generated paths are added to: title, tags, the problem response and the
/// bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings admin API",
        description = "Queues, dead letters (list, show, replay, purge, group), a \
            conversation's messages, sagas, the bus's topology, metrics and probes. Every \
            error is RFC 9457 problem details (`application/problem+json`). With a token \
            set, every route but `/`, `/assets/{file}`, `/healthz`, `/readyz` and \
            `/openapi.json` needs `Authorization: Bearer <token>`; without one, only \
            loopback hosts and same-origin requests are answered. Mutating requests \
            (`POST`, `DELETE`) need `Content-Type: application/json`."
    ),
    components(schemas(Problem), responses(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "queues", description = "Queue and endpoint figures"),
        (name = "dead letters", description = "Error queues: list, show, group, replay, purge"),
        (name = "messages", description = "A conversation's messages"),
        (name = "sagas", description = "Saga instances"),
        (name = "operations", description = "Topology, metrics, probes"),
        (name = "dashboard", description = "The HTML dashboard and its assets"),
        (name = "meta", description = "This document"),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the `bearer` security scheme (the token of [`AdminState::token`](crate::AdminState::token)).
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The admin API's OpenAPI document (what `GET /openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::routes::api().into_openapi()
}

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| openapi().to_json().map_err(|e| e.to_string()));

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
            body = Object),
        (status = 500, response = Problem),
    ))]
pub(crate) async fn openapi_json() -> Response {
    match DOCUMENT.as_ref() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the OpenAPI document could not be serialized: {e}"),
        )
        .into_response(),
    }
}
