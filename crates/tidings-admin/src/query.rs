//! Dead-letter filters as the CLI and the HTTP API take them (`endpoint`, `type`, `reason`,
//! `since=1h`, `limit`, `ids`, `correlation_id`), and `30s / 15m / 1h / 2d` durations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tidings_core::transport::{DeadLetter, DeadLetterQuery, Transport};
use uuid::Uuid;

use crate::AdminError;

/// Parses `30s`, `15m`, `1h`, `2d` (also `500ms`, `1w`).
pub fn parse_duration(s: &str) -> Result<Duration, AdminError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| AdminError::InvalidDuration(s.to_string()))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| AdminError::InvalidDuration(s.to_string()))?;
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "w" => secs(7 * 86_400),
        _ => None,
    }
    .ok_or_else(|| AdminError::InvalidDuration(s.to_string()))
}

/// `since` as a point in time: a duration ago (`1h`) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, AdminError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = parse_duration(s)?;
    let d = chrono::Duration::from_std(d).map_err(|_| AdminError::InvalidDuration(s.into()))?;
    Utc::now()
        .checked_sub_signed(d)
        .ok_or_else(|| AdminError::InvalidDuration(s.to_string()))
}

/// Parses a comma-separated list of message ids.
pub fn parse_ids(s: &str) -> Result<Vec<Uuid>, AdminError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Uuid::parse_str(p).map_err(|_| AdminError::InvalidId(p.to_string())))
        .collect()
}

/// Which dead letters: the filters shared by `tidings dlq` and `GET /dlq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DlqFilter {
    /// Only from this endpoint queue.
    pub endpoint: Option<String>,
    /// Only of this message type.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// Only with this fault reason (`handler-failed`, `undeserializable`, ...).
    pub reason: Option<String>,
    /// Only dead-lettered since: `1h` ago or an RFC 3339 time.
    pub since: Option<String>,
    /// At most this many (0 or absent: no limit).
    pub limit: Option<usize>,
    /// Only these ids, comma-separated.
    pub ids: Option<String>,
    /// Only with this correlation id (filtered here: transports cannot index it).
    pub correlation_id: Option<String>,
}

impl DlqFilter {
    /// The transport query (the correlation id aside, see [`DlqFilter::list`]).
    pub fn to_query(&self) -> Result<DeadLetterQuery, AdminError> {
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.trim().is_empty());
        Ok(DeadLetterQuery {
            queue: nonempty(&self.endpoint),
            message_type: nonempty(&self.message_type),
            reason: nonempty(&self.reason),
            since: nonempty(&self.since).map(|s| parse_since(&s)).transpose()?,
            ids: nonempty(&self.ids)
                .map(|s| parse_ids(&s))
                .transpose()?
                .unwrap_or_default(),
            limit: if self.correlation() {
                0
            } else {
                self.limit.unwrap_or(0)
            },
        })
    }

    fn correlation(&self) -> bool {
        self.correlation_id
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    }

    /// Whether nothing narrows the selection (every dead letter matches).
    pub fn is_everything(&self) -> bool {
        let blank = |o: &Option<String>| o.as_deref().is_none_or(|s| s.trim().is_empty());
        blank(&self.endpoint)
            && blank(&self.message_type)
            && blank(&self.reason)
            && blank(&self.since)
            && blank(&self.ids)
            && blank(&self.correlation_id)
    }

    /// Lists matching dead letters, oldest first.
    pub async fn list(&self, transport: &dyn Transport) -> Result<Vec<DeadLetter>, AdminError> {
        let query = self.to_query()?;
        let mut found = transport.dead_letters(&query).await?;
        if let Some(c) = self.correlation_id.as_deref().map(str::trim) {
            if !c.is_empty() {
                found.retain(|d| d.envelope.correlation_id.as_deref() == Some(c));
                if let Some(limit) = self.limit.filter(|l| *l > 0) {
                    found.truncate(limit);
                }
            }
        }
        Ok(found)
    }

    /// The transport query for a replay or purge: when a correlation id is given, the
    /// matching ids are resolved first (so only those are touched).
    pub async fn resolve(&self, transport: &dyn Transport) -> Result<DeadLetterQuery, AdminError> {
        let mut query = self.to_query()?;
        if self.correlation() {
            query.ids = self
                .list(transport)
                .await?
                .iter()
                .map(|d| d.envelope.id)
                .collect();
            if query.ids.is_empty() {
                // Nothing matches: make the query match nothing.
                query.ids.push(Uuid::nil());
            }
            query.limit = 0;
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "h", "1", "1y", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_accepts_durations_and_times() {
        let t = parse_since("1h").unwrap();
        let ago = Utc::now() - t;
        assert!(ago.num_minutes() >= 59 && ago.num_minutes() <= 61);
        let fixed = parse_since("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(fixed.to_rfc3339(), "2024-01-02T03:04:05+00:00");
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn filter_builds_query() {
        let id = Uuid::now_v7();
        let f = DlqFilter {
            endpoint: Some("orders".into()),
            message_type: Some("".into()),
            ids: Some(format!("{id}, ")),
            limit: Some(5),
            ..Default::default()
        };
        let q = f.to_query().unwrap();
        assert_eq!(q.queue.as_deref(), Some("orders"));
        assert_eq!(q.message_type, None);
        assert_eq!(q.ids, vec![id]);
        assert_eq!(q.limit, 5);
        assert!(!f.is_everything());
        assert!(DlqFilter::default().is_everything());
        let bad = DlqFilter {
            ids: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(bad.to_query(), Err(AdminError::InvalidId(_))));
    }
}
