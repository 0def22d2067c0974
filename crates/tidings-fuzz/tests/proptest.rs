//! The fuzz cases driven by proptest (CI's short run; the coverage-guided runs are the
//! cargo-fuzz targets in `fuzz/`): structured inputs — valid encodings, then mutated —
//! and raw bytes, plus every seed and regression input kept under `fuzz/`.
//! `PROPTEST_CASES` scales the run.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use proptest::prelude::*;
use tidings_core::Envelope;
use uuid::Uuid;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.\\-]{0,12}",
        any::<String>(),
        Just("line\r\nbreak".to_string()),
    ]
}

fn time() -> impl Strategy<Value = chrono::DateTime<Utc>> {
    // chrono's whole range, not only plausible dates
    (
        -8_000_000_000_000i64..250_000_000_000i64,
        0u32..2_000_000_000,
    )
        .prop_filter_map("a representable time", |(s, n)| {
            Utc.timestamp_opt(s, n).single()
        })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (text(), any::<u32>(), proptest::option::of(text())),
        (
            proptest::option::of(any::<u128>()),
            proptest::option::of(text()),
            time(),
            proptest::option::of(time()),
        ),
        (
            proptest::collection::btree_map(text(), text(), 0..4),
            text(),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |((t, v, corr), (cause, key, sent, due), (headers, ct, body))| {
                let mut e = Envelope::new(t, v, body);
                e.correlation_id = corr;
                e.causation_id = cause.map(Uuid::from_u128);
                e.partition_key = key;
                e.sent_at = sent;
                e.scheduled_for = due;
                e.headers = headers;
                e.content_type = ct;
                e
            },
        )
}

/// `bytes` with some bytes overwritten and maybe cut short.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..4),
        proptest::option::of(0..=len),
    )
        .prop_map(move |(flips, cut)| {
            let mut b = bytes.clone();
            for (i, v) in flips {
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
            }
            if let Some(c) = cut {
                b.truncate(c);
            }
            b
        })
}

fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    prop_oneof![
        text().prop_map(|s| AMQPValue::LongString(LongString::from(s))),
        proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        Just(AMQPValue::Void),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z\\-]{1,10}",
        "tidings\\.(version|sent-at|causation-id|conversation-id|source-endpoint|partition-key|scheduled-for|expires-at|delivery-count|due-at|dead-lettered-at|[a-z]{1,6})",
        Just("x-delivery-count".to_string()),
        Just("x-death".to_string()),
    ]
}

fn short(s: String) -> Option<ShortString> {
    ShortString::try_new(s).ok()
}

fn properties() -> impl Strategy<Value = BasicProperties> {
    (
        proptest::option::of(prop_oneof![
            any::<u128>().prop_map(|u| Uuid::from_u128(u).to_string()),
            text()
        ]),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::collection::btree_map(header_name(), amqp_value(), 0..8),
    )
        .prop_map(|(id, kind, ct, corr, headers)| {
            let mut p = BasicProperties::default();
            if let Some(v) = id.and_then(short) {
                p = p.with_message_id(v);
            }
            if let Some(v) = kind.and_then(short) {
                p = p.with_type(v);
            }
            if let Some(v) = ct.and_then(short) {
                p = p.with_content_type(v);
            }
            if let Some(v) = corr.and_then(short) {
                p = p.with_correlation_id(v);
            }
            let table: BTreeMap<ShortString, AMQPValue> = headers
                .into_iter()
                .filter_map(|(k, v)| short(k).map(|k| (k, v)))
                .collect();
            p.with_headers(FieldTable::from(table))
        })
}

const ORDER_KEYS: &[&str] = &[
    "customer_id",
    "lines",
    "notify_via",
    "ship_to",
    "product_id",
    "quantity",
    "extra",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[A-Za-z0-9 ._:@-]{0,70}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("P-001")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                proptest::sample::select(ORDER_KEYS).prop_map(String::from),
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn envelope_json_structured(bytes in envelope().prop_flat_map(|e| mutated(e.to_json().unwrap()))) {
        tidings_fuzz::envelope_json(&bytes);
    }

    #[test]
    fn envelope_json_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        tidings_fuzz::envelope_json(&bytes);
    }

    #[test]
    fn nats_envelope_structured(input in envelope().prop_flat_map(|e| {
        let (h, p) = tidings_nats::wire::encode(&e).unwrap();
        let header = h.get(tidings_nats::wire::ENVELOPE_HEADER).unwrap().as_str().to_string();
        let mut input = header.into_bytes();
        input.push(b'\n');
        input.extend_from_slice(&p);
        mutated(input)
    })) {
        tidings_fuzz::nats_envelope(&input);
    }

    #[test]
    fn rabbitmq_envelope_structured(
        props in properties(),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        tidings_fuzz::rabbitmq_properties(&props, &body);
    }

    #[test]
    fn rabbitmq_envelope_encoded(e in envelope()) {
        let (props, body) = tidings_rabbitmq::wire::encode(&e);
        tidings_fuzz::rabbitmq_properties(&props, &body);
    }

    #[test]
    fn rabbitmq_envelope_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        tidings_fuzz::rabbitmq_envelope(&bytes);
    }

    #[test]
    fn admin_request_structured(
        method in 0u8..3,
        route in proptest::sample::select(&["/dlq", "/dlq/summary", "/dlq/replay", "/messages", "/topology", "/queues", "/dlq/x"][..]),
        query in proptest::collection::vec((
            proptest::sample::select(&["endpoint", "type", "reason", "since", "limit", "ids", "correlation_id", "confirm", "format", "to", "dry_run"][..]),
            "[A-Za-z0-9%,:.+\\-]{0,40}",
        ), 0..5),
        body in json_value(),
    ) {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut input = vec![method];
        input.extend_from_slice(format!("{route}?{}\n", q.join("&")).as_bytes());
        input.extend_from_slice(body.to_string().as_bytes());
        tidings_fuzz::admin_request(&input);
    }

    #[test]
    fn orderflow_order_structured(body in json_value()) {
        tidings_fuzz::orderflow_order(body.to_string().as_bytes());
    }

    #[test]
    fn orderflow_order_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        tidings_fuzz::orderflow_order(&bytes);
    }
}

/// Every seed and regression input under `fuzz/` still passes its target.
#[test]
fn seeds_and_regressions_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 5] = [
        ("envelope_json", tidings_fuzz::envelope_json),
        ("nats_envelope", tidings_fuzz::nats_envelope),
        ("rabbitmq_envelope", tidings_fuzz::rabbitmq_envelope),
        ("admin_request", tidings_fuzz::admin_request),
        ("orderflow_order", tidings_fuzz::orderflow_order),
    ];
    let mut ran = 0;
    for (name, target) in targets {
        for dir in ["seeds", "regressions"] {
            let Ok(files) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for f in files {
                let path = f.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                ran += 1;
            }
        }
    }
    assert!(
        ran >= 10,
        "only {ran} inputs found under {}",
        root.display()
    );
}
