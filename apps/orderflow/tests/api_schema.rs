//! Schema-driven property test of `POST /orders`: the constraints are read from the
//! served `/openapi.json` (lengths, patterns, item counts, bounds, enums, required fields,
//! `additionalProperties`, the `Idempotency-Key` header), proptest strategies are built
//! from them, and the handler is held to the document:
//!
//! - every schema-valid request is accepted (202);
//! - every request breaking exactly one constraint is refused with 4xx problem+json and
//!   stores nothing — never a 5xx.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use orderflow::api::{app, AppState};
use orderflow::system::{Config, System};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use tidings_core::transport::memory::MemoryTransport;
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// A string field's constraints.
#[derive(Debug, Clone)]
struct Text {
    min: usize,
    max: usize,
    /// The pattern without its anchors (proptest generates from it).
    pattern: String,
}

impl Text {
    fn of(schema: &Value) -> Text {
        let pattern = schema["pattern"].as_str().expect("a pattern");
        let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
        let pattern = pattern.strip_suffix('$').unwrap_or(pattern);
        Text {
            min: schema["minLength"].as_u64().expect("minLength") as usize,
            max: schema["maxLength"].as_u64().expect("maxLength") as usize,
            pattern: pattern.to_string(),
        }
    }

    fn valid(&self) -> BoxedStrategy<String> {
        let (min, max) = (self.min, self.max);
        proptest::string::string_regex(&self.pattern)
            .expect("the schema's pattern is a regex proptest can generate from")
            .prop_filter("within the schema's lengths", move |s| {
                (min..=max).contains(&s.chars().count())
            })
            .boxed()
    }
}

/// Every constraint of `POST /orders` the document states.
#[derive(Debug, Clone)]
struct Rules {
    order_fields: Vec<String>,
    order_required: Vec<String>,
    line_fields: Vec<String>,
    line_required: Vec<String>,
    customer: Text,
    lines: (usize, usize),
    products: Vec<String>,
    product: Text,
    quantity: (i64, i64),
    channels: Vec<String>,
    ship_to: Text,
    key: Text,
}

fn names(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    names(v)
}

impl Rules {
    fn of(doc: &Value) -> Rules {
        let schemas = &doc["components"]["schemas"];
        let order = &schemas["PlaceOrder"];
        let line = &schemas["NewOrderLine"];
        assert_eq!(order["additionalProperties"], false, "{order}");
        assert_eq!(line["additionalProperties"], false, "{line}");
        assert_eq!(
            order["properties"]["lines"]["items"]["$ref"],
            "#/components/schemas/NewOrderLine"
        );
        let p = &order["properties"];
        let q = &line["properties"]["quantity"];
        let key = doc["paths"]["/orders"]["post"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .expect("the Idempotency-Key parameter");
        Rules {
            order_fields: names(p),
            order_required: strings(&order["required"]),
            line_fields: names(&line["properties"]),
            line_required: strings(&line["required"]),
            customer: Text::of(&p["customer_id"]),
            lines: (
                p["lines"]["minItems"].as_u64().expect("minItems") as usize,
                p["lines"]["maxItems"].as_u64().expect("maxItems") as usize,
            ),
            products: strings(&line["properties"]["product_id"]["enum"]),
            product: Text::of(&line["properties"]["product_id"]),
            quantity: (
                q["minimum"].as_i64().expect("minimum"),
                q["maximum"].as_i64().expect("maximum"),
            ),
            channels: strings(&schemas["Channel"]["enum"]),
            ship_to: Text::of(&p["ship_to"]),
            key: Text::of(&key["schema"]),
        }
    }
}

/// A request: the body and the Idempotency-Key.
#[derive(Debug, Clone)]
struct Req {
    body: Value,
    key: Option<String>,
}

/// An optional field: left out, `null`, or a value.
fn optional(value: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![Just(None), Just(Some(Value::Null)), value.prop_map(Some)].boxed()
}

fn valid_line(r: &Rules) -> BoxedStrategy<Value> {
    (
        proptest::sample::select(r.products.clone()),
        r.quantity.0..=r.quantity.1,
    )
        .prop_map(|(p, q)| json!({"product_id": p, "quantity": q}))
        .boxed()
}

fn valid(r: &Rules) -> BoxedStrategy<Req> {
    let channel = proptest::sample::select(r.channels.clone())
        .prop_map(Value::from)
        .boxed();
    let ship_to = r.ship_to.valid().prop_map(Value::from).boxed();
    (
        r.customer.valid(),
        proptest::collection::vec(valid_line(r), r.lines.0..=r.lines.1),
        optional(channel),
        optional(ship_to),
        proptest::option::of(r.key.valid()),
    )
        .prop_map(|(customer, lines, channel, ship_to, key)| {
            let mut body = Map::new();
            body.insert("customer_id".into(), customer.into());
            body.insert("lines".into(), lines.into());
            if let Some(c) = channel {
                body.insert("notify_via".into(), c);
            }
            if let Some(s) = ship_to {
                body.insert("ship_to".into(), s);
            }
            Req {
                body: Value::Object(body),
                key,
            }
        })
        .boxed()
}

/// One way to break exactly one constraint, each derived from the document.
#[derive(Debug, Clone)]
enum Break {
    CustomerShort,
    CustomerLong,
    CustomerChar(usize),
    LinesFew,
    LinesMany,
    ProductNotInCatalog(String),
    ProductLong,
    QuantityLow(i64),
    QuantityHigh(i64),
    QuantityFraction,
    ChannelUnknown(String),
    ShipToChars(String),
    ShipToLength(usize),
    UnknownOrderField(String),
    UnknownLineField(String),
    MissingOrderField(usize),
    MissingLineField(usize),
    WrongType(usize),
    KeyLong,
    KeyEmpty,
    KeyChar(usize),
}

fn breaks(r: &Rules) -> BoxedStrategy<Break> {
    let (lo, hi) = r.quantity;
    let products = r.products.clone();
    let order_fields = r.order_fields.clone();
    let line_fields = r.line_fields.clone();
    let field = "[a-z_]{1,12}";
    prop_oneof![
        Just(Break::CustomerShort),
        Just(Break::CustomerLong),
        any::<usize>().prop_map(Break::CustomerChar),
        Just(Break::LinesFew),
        Just(Break::LinesMany),
        r.product
            .valid()
            .prop_filter("not in the catalog", move |p| !products.contains(p))
            .prop_map(Break::ProductNotInCatalog),
        Just(Break::ProductLong),
        (i64::MIN..lo).prop_map(Break::QuantityLow),
        prop_oneof![hi + 1..=i64::from(u32::MAX), hi + 1..=i64::MAX].prop_map(Break::QuantityHigh),
        Just(Break::QuantityFraction),
        "[a-z]{1,8}".prop_map(Break::ChannelUnknown),
        "[a-z0-9]{2}".prop_map(Break::ShipToChars),
        prop_oneof![Just(0usize), 3usize..8].prop_map(Break::ShipToLength),
        field
            .prop_filter("not a field", move |f| !order_fields.contains(f))
            .prop_map(Break::UnknownOrderField),
        field
            .prop_filter("not a field", move |f| !line_fields.contains(f))
            .prop_map(Break::UnknownLineField),
        any::<usize>().prop_map(Break::MissingOrderField),
        any::<usize>().prop_map(Break::MissingLineField),
        any::<usize>().prop_map(Break::WrongType),
        Just(Break::KeyLong),
        Just(Break::KeyEmpty),
        any::<usize>().prop_map(Break::KeyChar),
    ]
    .boxed()
}

/// `s` with one character replaced by one its pattern does not allow.
fn bad_char(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let i = at % chars.len().max(1);
    if chars.is_empty() {
        chars.push(' ');
    } else {
        chars[i] = ' ';
    }
    chars.into_iter().collect()
}

fn apply(r: &Rules, mut req: Req, b: &Break) -> Req {
    let body = req.body.as_object_mut().expect("an object");
    let first_line = |body: &mut Map<String, Value>| -> Map<String, Value> {
        body["lines"][0].as_object().cloned().expect("a line")
    };
    match b {
        Break::CustomerShort => {
            body.insert("customer_id".into(), "x".repeat(r.customer.min - 1).into());
        }
        Break::CustomerLong => {
            body.insert("customer_id".into(), "x".repeat(r.customer.max + 1).into());
        }
        Break::CustomerChar(at) => {
            let c = body["customer_id"].as_str().unwrap_or_default().to_string();
            body.insert("customer_id".into(), bad_char(&c, *at).into());
        }
        Break::LinesFew => {
            let line = first_line(body);
            body.insert(
                "lines".into(),
                vec![Value::Object(line); r.lines.0 - 1].into(),
            );
        }
        Break::LinesMany => {
            let line = first_line(body);
            body.insert(
                "lines".into(),
                vec![Value::Object(line); r.lines.1 + 1].into(),
            );
        }
        Break::ProductNotInCatalog(p) => body["lines"][0]["product_id"] = p.clone().into(),
        Break::ProductLong => {
            body["lines"][0]["product_id"] = "P".repeat(r.product.max + 1).into();
        }
        Break::QuantityLow(q) | Break::QuantityHigh(q) => {
            body["lines"][0]["quantity"] = (*q).into();
        }
        Break::QuantityFraction => body["lines"][0]["quantity"] = json!(1.5),
        Break::ChannelUnknown(c) => {
            let c = if r.channels.contains(c) {
                format!("{c}x")
            } else {
                c.clone()
            };
            body.insert("notify_via".into(), c.into());
        }
        Break::ShipToChars(s) => {
            let s = if s.bytes().all(|b| b.is_ascii_uppercase()) {
                "1A".to_string()
            } else {
                s.clone()
            };
            body.insert("ship_to".into(), s.into());
        }
        Break::ShipToLength(n) => {
            body.insert("ship_to".into(), "A".repeat(*n).into());
        }
        Break::UnknownOrderField(f) => {
            body.insert(f.clone(), json!("x"));
        }
        Break::UnknownLineField(f) => body["lines"][0][f.as_str()] = json!(1),
        Break::MissingOrderField(i) => {
            body.remove(&r.order_required[i % r.order_required.len()]);
        }
        Break::MissingLineField(i) => {
            let f = &r.line_required[i % r.line_required.len()];
            if let Some(l) = body["lines"][0].as_object_mut() {
                l.remove(f);
            }
        }
        Break::WrongType(i) => {
            let f = &r.order_fields[i % r.order_fields.len()];
            let wrong = match f.as_str() {
                "lines" => json!({"product_id": "P-001"}),
                _ => json!([1, 2]),
            };
            body.insert(f.clone(), wrong);
        }
        Break::KeyLong => req.key = Some("k".repeat(r.key.max + 1)),
        Break::KeyEmpty => req.key = Some("x".repeat(r.key.min - 1)),
        Break::KeyChar(at) => {
            let k = req.key.clone().unwrap_or_else(|| "key".into());
            req.key = Some(bad_char(&k, *at));
        }
    }
    req
}

struct Harness {
    rt: Runtime,
    router: Router,
    system: System,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let system = rt
            .block_on(System::start(
                Config::new(dir.path()),
                Arc::new(MemoryTransport::new()),
            ))
            .unwrap();
        let router = app(AppState::new(
            system.db.clone(),
            system.bus.producer().clone(),
        ));
        Harness {
            rt,
            router,
            system,
            _dir: dir,
        }
    }

    fn document(&self) -> Value {
        let req = Request::get("/openapi.json").body(Body::empty()).unwrap();
        let (status, _, body) = self.call(req);
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&body).unwrap()
    }

    fn call(&self, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        self.rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let ct = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, ct, body.to_vec())
        })
    }

    fn place(&self, req: &Req) -> (StatusCode, Option<String>, Vec<u8>) {
        let mut r = Request::post("/orders").header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = &req.key {
            r = r.header("idempotency-key", k.as_str());
        }
        self.call(r.body(Body::from(req.body.to_string())).unwrap())
    }

    fn orders(&self) -> i64 {
        self.rt.block_on(async {
            sqlx::query_scalar("SELECT COUNT(*) FROM api_orders")
                .fetch_one(self.system.db.read.sqlite().unwrap())
                .await
                .unwrap()
        })
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_schema_valid_order_is_accepted_and_every_single_violation_is_a_4xx_problem() {
    let h = Harness::start();
    let rules = Rules::of(&h.document());
    assert!(!rules.products.is_empty(), "the document lists the catalog");
    let used_keys = Mutex::new(HashSet::new());

    let mut runner = TestRunner::new(RunConfig::with_cases(cases(256)));
    runner
        .run(&valid(&rules), |req| {
            if let Some(k) = &req.key {
                // a key used before with another order is a 422 by design: one order per key
                prop_assume!(used_keys.lock().unwrap().insert(k.clone()));
            }
            let before = h.orders();
            let (status, _, body) = h.place(&req);
            prop_assert_eq!(
                status,
                StatusCode::ACCEPTED,
                "{} -> {}",
                req.body,
                String::from_utf8_lossy(&body)
            );
            prop_assert_eq!(h.orders(), before + 1);
            Ok(())
        })
        .unwrap();

    let mut runner = TestRunner::new(RunConfig::with_cases(cases(512)));
    let broken = (valid(&rules), breaks(&rules)).prop_map(|(req, b)| {
        let req = apply(&rules, req, &b);
        (req, b)
    });
    runner
        .run(&broken, |(req, b)| {
            let before = h.orders();
            let (status, ct, body) = h.place(&req);
            let text = String::from_utf8_lossy(&body);
            if !status.is_client_error() {
                return Err(TestCaseError::fail(format!(
                    "{b:?}: {} with key {:?} -> {status} {text}",
                    req.body, req.key
                )));
            }
            prop_assert_eq!(ct.as_deref(), Some("application/problem+json"), "{:?}", b);
            let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            prop_assert_eq!(&problem["status"], &json!(status.as_u16()), "{:?}", b);
            prop_assert_eq!(h.orders(), before, "{:?} stored an order", b);
            Ok(())
        })
        .unwrap();
    let Harness { rt, system, .. } = h;
    rt.block_on(system.shutdown());
}
