//! The `POST /orders` body: its type, the bounds the API enforces and states in its
//! OpenAPI schema, parsing ([`parse_order`]) and the request fingerprint the idempotency
//! check compares ([`PlaceOrder::fingerprint`]).
//!
//! Every bound here is a schema attribute (utoipa) *and* a check in [`parse_order`], so the
//! published schema and the handler cannot disagree; `tests/api_schema.rs` generates
//! requests from the served `/openapi.json` and holds the handler to it. Whether a product
//! is in the catalog is data, not a static bound: `/openapi.json` lists the catalog as the
//! `product_id` enum when it is served.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::problem::Problem;
use crate::contracts::{Channel, OrderLine};

/// Largest accepted request body (bytes); a bigger one is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most lines in one order.
pub const MAX_LINES: usize = 100;
/// Most units of one product in one line.
pub const MAX_QUANTITY: u32 = 1_000;
/// Longest customer id (characters).
pub const MAX_CUSTOMER_ID: usize = 64;
/// Longest product id (characters).
pub const MAX_PRODUCT_ID: usize = 32;

/// Characters of a customer id (the schema's `pattern` says the same).
fn customer_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
}

/// Characters of a product id (the schema's `pattern` says the same).
fn product_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// A new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Who orders: 1–64 characters out of `A-Z a-z 0-9 . _ : @ -`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._:@-]{1,64}$")]
    pub customer_id: String,
    /// What: 1–100 lines.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<NewOrderLine>,
    /// Where to send the confirmation (default `email`).
    #[serde(default)]
    pub notify_via: Option<Channel>,
    /// ISO 3166-1 alpha-2 country to ship to, upper case (default `US`).
    #[serde(default)]
    #[schema(min_length = 2, max_length = 2, pattern = r"^[A-Z]{2}$")]
    pub ship_to: Option<String>,
}

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    /// A catalog product id, e.g. `P-001` (the served document lists the catalog as this
    /// field's `enum`).
    #[schema(min_length = 1, max_length = 32, pattern = r"^[A-Za-z0-9._-]{1,32}$")]
    pub product_id: String,
    /// Units, 1–1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

impl From<NewOrderLine> for OrderLine {
    fn from(l: NewOrderLine) -> Self {
        OrderLine {
            product_id: l.product_id,
            quantity: l.quantity,
        }
    }
}

/// The parts of an order its fingerprint covers, defaults applied.
#[derive(Serialize)]
struct Canonical<'a> {
    customer_id: &'a str,
    lines: &'a [NewOrderLine],
    notify_via: Channel,
    ship_to: &'a str,
}

impl PlaceOrder {
    /// The notification channel, `email` when not given.
    pub fn channel(&self) -> Channel {
        self.notify_via.unwrap_or(Channel::Email)
    }

    /// The country to ship to, `US` when not given.
    pub fn country(&self) -> &str {
        self.ship_to.as_deref().unwrap_or("US")
    }

    /// SHA-256 of the order's canonical form: the parsed request with its defaults
    /// applied, serialized in the type's field order. A retry that encodes the same order
    /// differently (key order, white space, a default spelled out) has the same
    /// fingerprint; raw bytes would call it a different request.
    ///
    /// ```
    /// use orderflow::api::request::parse_order;
    /// let a = parse_order(br#"{"customer_id":"c","lines":[{"product_id":"P-001","quantity":1}]}"#).unwrap();
    /// let b = parse_order(br#"{ "lines": [{"quantity":1, "product_id":"P-001"}],
    ///                          "customer_id": "c", "notify_via": "email", "ship_to": "US" }"#).unwrap();
    /// assert_eq!(a.fingerprint(), b.fingerprint());
    /// ```
    pub fn fingerprint(&self) -> [u8; 32] {
        let canonical = Canonical {
            customer_id: &self.customer_id,
            lines: &self.lines,
            notify_via: self.channel(),
            ship_to: self.country(),
        };
        // Serializing strings, integers and a unit enum cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        Sha256::digest(&bytes).into()
    }

    /// Every bound of the schema this order breaks (empty: none).
    pub fn violations(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let c = &self.customer_id;
        if c.is_empty() || c.len() > MAX_CUSTOMER_ID || !c.bytes().all(customer_char) {
            errors.push(format!(
                "customer_id must be 1–{MAX_CUSTOMER_ID} characters out of A-Z a-z 0-9 . _ : @ -"
            ));
        }
        if self.lines.is_empty() {
            errors.push("lines must hold at least one line".to_string());
        }
        if self.lines.len() > MAX_LINES {
            errors.push(format!(
                "lines holds {} lines; at most {MAX_LINES} are allowed",
                self.lines.len()
            ));
        }
        for (i, l) in self.lines.iter().enumerate().take(MAX_LINES) {
            let p = &l.product_id;
            if p.is_empty() || p.len() > MAX_PRODUCT_ID || !p.bytes().all(product_char) {
                errors.push(format!(
                    "lines[{i}].product_id must be 1–{MAX_PRODUCT_ID} characters out of A-Z a-z 0-9 . _ -"
                ));
            }
            if l.quantity == 0 {
                errors.push(format!("lines[{i}].quantity must be at least 1"));
            } else if l.quantity > MAX_QUANTITY {
                errors.push(format!(
                    "lines[{i}].quantity must be at most {MAX_QUANTITY}"
                ));
            }
        }
        if let Some(c) = &self.ship_to {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                errors.push("ship_to must be a two-letter ISO country code (upper case)".into());
            }
        }
        errors
    }
}

/// Parses and checks a `POST /orders` body against every static bound (the catalog is
/// checked by the handler). Errors are 400 problems saying what is wrong; they quote no
/// more than a short prefix of what was sent.
///
/// ```
/// use orderflow::api::request::parse_order;
/// let err = parse_order(br#"{"customer_id":"c","lines":[{"product_id":"P-001","quantity":4294967295}]}"#)
///     .unwrap_err();
/// assert_eq!(err.status, 400);
/// assert!(err.detail.contains("at most 1000"));
/// ```
pub fn parse_order(body: &[u8]) -> Result<PlaceOrder, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid(format!("the body is not valid JSON: {e}"), vec![]))?;
    let order: PlaceOrder = serde_json::from_value(value).map_err(|e| {
        Problem::invalid(
            format!(
                "the body does not describe an order: {}",
                clip(&e.to_string())
            ),
            vec![],
        )
    })?;
    let errors = order.violations();
    if errors.is_empty() {
        Ok(order)
    } else {
        Err(Problem::invalid(errors.join("; "), errors))
    }
}

/// At most 200 characters of `s` (serde quotes the offending value in its messages).
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
