//! The OpenAPI document, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::OpenApi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OrderFlow",
        description = "Place orders and follow them through stock, payment and shipping."
    ),
    paths(super::orders::place_order, super::orders::get_order, openapi_json),
    components(schemas(
        super::orders::PlaceOrder,
        super::orders::OrderAccepted,
        super::orders::OrderStatus,
        super::orders::Status,
        super::problem::Problem,
        crate::contracts::OrderLine,
        crate::contracts::Channel,
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
