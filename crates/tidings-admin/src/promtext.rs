//! Reads the handler-latency histogram back out of the Prometheus text the recorder
//! renders: its `_sum` and `_count` per endpoint (summed over message types), which the
//! sampler turns into a mean latency per interval.

use std::collections::BTreeMap;

use tidings_core::telemetry::names;

/// Seconds spent in handlers and deliveries counted, per endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    pub(crate) seconds: f64,
    pub(crate) count: f64,
}

/// The `tidings_handler_duration_seconds` sum and count of every endpoint in `text`.
pub(crate) fn handler_latency(text: &str) -> BTreeMap<String, Latency> {
    let mut out: BTreeMap<String, Latency> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(names::HANDLER_SECONDS) else {
            continue;
        };
        let (is_sum, rest) = if let Some(r) = rest.strip_prefix("_sum{") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("_count{") {
            (false, r)
        } else {
            continue;
        };
        let Some((labels, value)) = split_labels(rest) else {
            continue;
        };
        let Some(endpoint) = label(labels, "endpoint") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let e = out.entry(endpoint).or_default();
        if is_sum {
            e.seconds += v;
        } else {
            e.count += v;
        }
    }
    out
}

/// Splits `a="x",b="y"} 1.5` into the label text and the value, minding quoted `}`.
fn split_labels(s: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The unescaped value of label `name` in `a="x",b="y"`.
fn label(labels: &str, name: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let eq = rest.find("=\"")?;
        let key = rest[..eq].trim_start_matches(',').trim();
        let mut value = String::new();
        let mut end = None;
        let mut chars = rest[eq + 2..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        if key == name {
            return Some(value);
        }
        rest = &rest[end?..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_endpoint_over_message_types() {
        let text = "\
# HELP tidings_handler_duration_seconds Time spent
# TYPE tidings_handler_duration_seconds histogram
tidings_handler_duration_seconds_bucket{endpoint=\"orders\",message_type=\"a\",le=\"0.5\"} 3
tidings_handler_duration_seconds_sum{endpoint=\"orders\",message_type=\"a\"} 0.25
tidings_handler_duration_seconds_count{endpoint=\"orders\",message_type=\"a\"} 3
tidings_handler_duration_seconds_sum{message_type=\"b}\\\"x\",endpoint=\"orders\"} 0.75
tidings_handler_duration_seconds_count{message_type=\"b}\\\"x\",endpoint=\"orders\"} 1
tidings_handler_duration_seconds_sum{endpoint=\"pay\\\"ments\",message_type=\"c\"} 2
tidings_handler_duration_seconds_count{endpoint=\"pay\\\"ments\",message_type=\"c\"} 4
tidings_handler_duration_seconds_count{message_type=\"no endpoint\"} 9
tidings_messages_consumed_total{endpoint=\"orders\",message_type=\"a\"} 3
";
        let l = handler_latency(text);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(
            l["orders"],
            Latency {
                seconds: 1.0,
                count: 4.0
            }
        );
        assert_eq!(
            l["pay\"ments"],
            Latency {
                seconds: 2.0,
                count: 4.0
            }
        );
        assert!(handler_latency("tidings_handler_duration_seconds_sum{endpoint=\"x\"").is_empty());
    }
}
