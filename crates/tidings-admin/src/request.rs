//! What the mutating routes take, parsed by plain functions over bytes and strings (so
//! tests and fuzzers can call them without HTTP): [`ReplayRequest`] (the JSON body of
//! `POST /dlq/replay`) and [`PurgeRequest`] (the query of `DELETE /dlq`). Neither touches
//! every dead letter unless it says so: no filter requires `all: true` / `all=true`.

use serde::Deserialize;
use uuid::Uuid;

use crate::{AdminError, DlqFilter};

/// Body of `POST /dlq/replay`: `{endpoint, type, reason, since, ids: [..],
/// correlation_id, group, limit, to, dry_run, all}`. Unknown fields are refused (a misspelt
/// filter must not widen the selection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReplayRequest {
    /// Only from this endpoint queue.
    pub endpoint: Option<String>,
    /// Only of this message type.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// Only with this fault reason.
    pub reason: Option<String>,
    /// Only dead-lettered since (`1h` or an RFC 3339 time).
    pub since: Option<String>,
    /// Only these ids.
    pub ids: Vec<Uuid>,
    /// Only with this correlation id.
    pub correlation_id: Option<String>,
    /// Only the members of this failure group (a key from `GET /dlq/groups`).
    pub group: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Replay into this queue instead of the original one.
    pub to: Option<String>,
    /// Only say what would be replayed.
    pub dry_run: bool,
    /// Replay every dead letter: required when no filter is given.
    pub all: bool,
}

impl ReplayRequest {
    /// Parses and checks a request body (JSON; an empty body is `{}`).
    ///
    /// ```
    /// use tidings_admin::ReplayRequest;
    /// assert!(ReplayRequest::from_json(br#"{"endpoint":"orders"}"#).is_ok());
    /// assert!(ReplayRequest::from_json(b"{}").is_err()); // everything needs `all: true`
    /// assert!(ReplayRequest::from_json(br#"{"all":true}"#).is_ok());
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, AdminError> {
        let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ReplayRequest::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| AdminError::InvalidRequest(format!("invalid replay request: {e}")))?
        };
        if !req.dry_run && !req.all && req.filter().is_everything() && req.group().is_none() {
            return Err(AdminError::InvalidRequest(
                "no filter selects every dead letter: say so with `\"all\": true`, or narrow \
                 with endpoint, type, reason, since, ids or correlation_id"
                    .into(),
            ));
        }
        Ok(req)
    }

    /// The failure group asked for, if any (blank counts as none).
    pub fn group(&self) -> Option<&str> {
        self.group
            .as_deref()
            .map(str::trim)
            .filter(|g| !g.is_empty())
    }

    /// The selection as a [`DlqFilter`] (without the group).
    pub fn filter(&self) -> DlqFilter {
        DlqFilter {
            endpoint: self.endpoint.clone(),
            message_type: self.message_type.clone(),
            reason: self.reason.clone(),
            since: self.since.clone(),
            limit: self.limit,
            ids: (!self.ids.is_empty()).then(|| {
                self.ids
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

/// Query of `DELETE /dlq`: the [`DlqFilter`] fields plus `confirm=true` (always) and
/// `all=true` (when no filter is given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeRequest {
    /// Which dead letters.
    pub filter: DlqFilter,
    /// `all=true`: the caller means every dead letter.
    pub all: bool,
}

#[derive(Deserialize)]
struct Flags {
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    all: Option<String>,
}

impl PurgeRequest {
    /// Parses and checks a query string (without the `?`).
    ///
    /// ```
    /// use tidings_admin::PurgeRequest;
    /// assert!(PurgeRequest::from_query("endpoint=orders&confirm=true").is_ok());
    /// assert!(PurgeRequest::from_query("endpoint=orders").is_err()); // no confirm
    /// assert!(PurgeRequest::from_query("confirm=true").is_err()); // everything needs all=true
    /// assert!(PurgeRequest::from_query("confirm=true&all=true").is_ok());
    /// ```
    pub fn from_query(query: &str) -> Result<Self, AdminError> {
        let bad = |e: serde_urlencoded::de::Error| {
            AdminError::InvalidRequest(format!("invalid purge query: {e}"))
        };
        let filter: DlqFilter = serde_urlencoded::from_str(query).map_err(bad)?;
        let flags: Flags = serde_urlencoded::from_str(query).map_err(bad)?;
        if flags.confirm.as_deref() != Some("true") {
            return Err(AdminError::InvalidRequest(
                "purging deletes dead letters for good: add `confirm=true` to the query".into(),
            ));
        }
        let all = flags.all.as_deref() == Some("true");
        if !all && filter.is_everything() {
            return Err(AdminError::InvalidRequest(
                "no filter selects every dead letter: add `all=true` to purge them all, or \
                 narrow with endpoint, type, reason, since, ids or correlation_id"
                    .into(),
            ));
        }
        Ok(PurgeRequest { filter, all })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_bodies() {
        assert!(ReplayRequest::from_json(b"").is_err());
        assert!(ReplayRequest::from_json(b"  ").is_err());
        assert!(ReplayRequest::from_json(br#"{"limit":5}"#).is_err());
        assert!(ReplayRequest::from_json(br#"{"to":"elsewhere"}"#).is_err());
        assert!(ReplayRequest::from_json(br#"{"dry_run":true}"#).is_ok());
        assert!(ReplayRequest::from_json(br#"{"endpont":"typo"}"#).is_err());
        assert!(ReplayRequest::from_json(b"{not json").is_err());
        assert!(ReplayRequest::from_json(br#"{"ids":["nope"]}"#).is_err());
        let r = ReplayRequest::from_json(br#"{"correlation_id":"c","to":"q"}"#).unwrap();
        assert_eq!(r.to.as_deref(), Some("q"));
        assert!(!r.filter().is_everything());
        let g = ReplayRequest::from_json(br#"{"group":"00ff00ff00ff00ff"}"#).unwrap();
        assert_eq!(g.group(), Some("00ff00ff00ff00ff"));
        assert!(ReplayRequest::from_json(br#"{"group":"  "}"#).is_err());
    }

    #[test]
    fn purge_queries() {
        let p = PurgeRequest::from_query("type=a.b&limit=3&confirm=true").unwrap();
        assert_eq!(p.filter.message_type.as_deref(), Some("a.b"));
        assert_eq!(p.filter.limit, Some(3));
        assert!(PurgeRequest::from_query("confirm=true&endpoint=").is_err());
        assert!(PurgeRequest::from_query("confirm=yes&endpoint=o").is_err());
        assert!(PurgeRequest::from_query("limit=x&confirm=true&all=true").is_err());
        assert!(PurgeRequest::from_query("").is_err());
    }
}
