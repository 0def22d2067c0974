//! `tidings dlq list|show` on a dead letter of an undecodable delivery: reason
//! `undecodable`, a binary body that is not UTF-8 nor JSON. Listing and showing it must
//! work (text and JSON), and the raw bytes must be visible.

mod common;

use common::{exec, list_json, ok, transport};
use tidings::transport::undecodable::{Undecodable, UNDECODABLE_CONTENT_TYPE};
use tidings::transport::{Outgoing, ReceiveOptions};
use tidings::Envelope;
use tidings_admin::DeadLetterView;

#[tokio::test]
async fn dlq_lists_and_shows_an_undecodable_dead_letter() {
    let t = transport().await;
    // A delivery taken from the queue, dead-lettered the way every transport's receiver
    // does when it cannot decode what it took.
    t.send(vec![Outgoing::to_queue(
        "orders",
        Envelope::new("shop.x", 1, "{}"),
    )])
    .await
    .unwrap();
    let mut rx = t
        .receive("orders", ReceiveOptions::default())
        .await
        .unwrap();
    let d = rx.recv().await.unwrap().unwrap();
    let raw = b"\xff\xfe\x00raw {not json".to_vec();
    Undecodable::new("orders", raw, "expected value at line 1 column 1")
        .dead_letter(d.settle)
        .await
        .unwrap();
    rx.close().await.unwrap();

    let listed = list_json(&t, &["--reason", "undecodable"]).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0].id.to_string();
    let table = ok(&t, &["dlq", "list"]).await;
    assert!(table.contains("undecodable"), "{table}");
    let out = ok(&t, &["dlq", "show", &id]).await;
    for want in [
        "undecodable",
        "expected value at line 1 column 1",
        UNDECODABLE_CONTENT_TYPE,
        "raw {not json",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (r, json) = exec(&t, &["dlq", "show", &id, "--json"]).await;
    r.unwrap();
    let v: DeadLetterView = serde_json::from_str(&json).unwrap();
    assert!(v.body.as_str().is_some_and(|b| b.contains("raw {not json")));
}
