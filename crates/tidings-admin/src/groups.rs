//! Dead letters grouped by failure, as ServicePulse does: one group per message type,
//! fault reason and error text, with the error's numbers and UUIDs masked so that
//! "order 17 not found" and "order 42 not found" fall in one group. `GET /dlq/groups`
//! lists them, biggest first; `POST /dlq/replay {"group": ".."}` replays one.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::envelope::headers as h;
use tidings_core::transport::DeadLetter;

use crate::api_error::{ApiError, Problem};
use crate::{AdminState, DlqFilter};

/// At most this many dead letters are read to build the groups (and to replay one).
pub const GROUP_SCAN_LIMIT: usize = 10_000;

/// The error text of a group is cut to this many characters.
const MAX_GROUP_ERROR: usize = 300;

/// One failure group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailureGroup {
    /// The group's key (16 hex digits): pass it as `group` to `POST /dlq/replay`.
    pub group: String,
    /// Contract name.
    pub message_type: String,
    /// Fault reason (`unknown` when the header is missing).
    pub reason: String,
    /// The error text with numbers shown as `<n>` and UUIDs as `<uuid>`.
    pub error: String,
    /// One member's error text as written.
    pub example_error: String,
    /// Dead letters in the group.
    pub count: u64,
    /// Count per endpoint.
    pub endpoints: BTreeMap<String, u64>,
    /// The oldest member's dead-lettering time.
    pub first: DateTime<Utc>,
    /// The newest member's dead-lettering time.
    pub last: DateTime<Utc>,
}

/// `GET /dlq/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailureGroups {
    /// Dead letters read.
    pub counted: u64,
    /// Whether more dead letters match than were read ([`GROUP_SCAN_LIMIT`]).
    pub truncated: bool,
    /// The groups, biggest first.
    pub groups: Vec<FailureGroup>,
}

/// `error` with digit runs (not glued to a letter) as `<n>` and UUIDs as `<uuid>`, cut
/// to 300 bytes.
pub fn normalize_error(error: &str) -> String {
    let b = error.as_bytes();
    let mut i = 0;
    let mut out = String::with_capacity(error.len().min(MAX_GROUP_ERROR));
    while i < b.len() && out.len() < MAX_GROUP_ERROR {
        let after_word = i > 0 && (b[i - 1].is_ascii_alphabetic() || b[i - 1] == b'_');
        if !after_word && is_uuid(&b[i..]) {
            out.push_str("<uuid>");
            i += 36;
        } else if !after_word && b[i].is_ascii_digit() {
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            out.push_str("<n>");
        } else if b[i].is_ascii_alphanumeric() || b[i] == b'_' {
            // A word (digits in it included, as in `sha256`) is copied whole.
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push_str(&error[start..i]);
        } else {
            // Copy one whole character.
            let c = error[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    if out.len() > MAX_GROUP_ERROR {
        let mut end = MAX_GROUP_ERROR;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() >= 36
        && b[..36].iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// FNV-1a (64 bit): stable across processes and versions, unlike `DefaultHasher`.
fn fnv1a(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A dead letter's group key, type, reason and normalized error.
fn key_of(d: &DeadLetter) -> (String, String, String) {
    let reason = d.envelope.header(h::FAULT_REASON).unwrap_or("unknown");
    let error = normalize_error(d.envelope.header(h::FAULT_ERROR).unwrap_or(""));
    let key = fnv1a(&[&d.envelope.message_type, reason, &error]);
    (key, reason.to_string(), error)
}

/// The group key of `d` (what `POST /dlq/replay {"group": ..}` selects by).
pub fn group_key(d: &DeadLetter) -> String {
    key_of(d).0
}

/// `letters` grouped by failure, biggest group first (then the most recent).
pub fn group(letters: &[DeadLetter]) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<String, FailureGroup> = BTreeMap::new();
    for d in letters {
        let (key, reason, error) = key_of(d);
        let at = d.dead_lettered_at;
        let g = groups.entry(key.clone()).or_insert_with(|| FailureGroup {
            group: key,
            message_type: d.envelope.message_type.clone(),
            reason,
            error,
            example_error: d
                .envelope
                .header(h::FAULT_ERROR)
                .unwrap_or("")
                .chars()
                .take(crate::MAX_ERROR_CHARS)
                .collect(),
            count: 0,
            endpoints: BTreeMap::new(),
            first: at,
            last: at,
        });
        g.count += 1;
        *g.endpoints.entry(d.queue.clone()).or_default() += 1;
        g.first = g.first.min(at);
        g.last = g.last.max(at);
    }
    let mut out: Vec<FailureGroup> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(b.last.cmp(&a.last)));
    out
}

/// Reads the dead letters `filter` selects, up to [`GROUP_SCAN_LIMIT`] (its own limit
/// is ignored: a group is made of every member), and whether there were more.
pub(crate) async fn scan(
    filter: &DlqFilter,
    s: &AdminState,
) -> Result<(Vec<DeadLetter>, bool), ApiError> {
    let mut f = filter.clone();
    f.limit = Some(GROUP_SCAN_LIMIT + 1);
    let mut found = f.list(s.transport.as_ref()).await?;
    let truncated = found.len() > GROUP_SCAN_LIMIT;
    found.truncate(GROUP_SCAN_LIMIT);
    Ok((found, truncated))
}

/// Dead letters grouped by failure (type + reason + error text), biggest group first.
#[utoipa::path(get, path = "/dlq/groups", tag = "dead letters", params(DlqFilter),
    responses(
        (status = 200, description = "The failure groups", body = FailureGroups),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
pub(crate) async fn groups(
    State(s): State<AdminState>,
    Query(filter): Query<DlqFilter>,
) -> Result<Json<FailureGroups>, ApiError> {
    let (found, truncated) = scan(&filter, &s).await?;
    Ok(Json(FailureGroups {
        counted: found.len() as u64,
        truncated,
        groups: group(&found),
    }))
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
