//! The OpenAPI document, generated from the handlers' annotations (utoipa). Served, it
//! also lists the catalog as the `product_id` enum, so the document states every check
//! the handler makes.

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use utoipa::OpenApi;

use super::problem::Problem;
use super::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OrderFlow",
        description = "Place orders and follow them through stock, payment and shipping."
    ),
    paths(super::orders::place_order, super::orders::get_order, openapi_json),
    components(schemas(
        super::request::PlaceOrder,
        super::request::NewOrderLine,
        super::orders::OrderAccepted,
        super::orders::OrderStatus,
        super::orders::Status,
        super::problem::Problem,
        crate::contracts::Channel,
    ))
)]
pub struct ApiDoc;

/// Where the catalog goes in the document.
const PRODUCT_ID: &str = "/components/schemas/NewOrderLine/properties/product_id";

/// This document, with the catalog's product ids as `NewOrderLine.product_id`'s enum.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn openapi_json(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).map_err(Problem::internal)?;
    let products: Vec<(String,)> = state
        .db
        .read
        .all(
            "SELECT product_id FROM api_catalog ORDER BY product_id",
            crate::args![],
        )
        .await
        .map_err(Problem::internal)?;
    let products: Vec<String> = products.into_iter().map(|(p,)| p).collect();
    let Some(Value::Object(field)) = doc.pointer_mut(PRODUCT_ID) else {
        return Err(Problem::internal(
            "the document has no NewOrderLine.product_id",
        ));
    };
    field.insert("enum".into(), products.into());
    Ok(Json(doc))
}
