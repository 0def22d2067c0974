//! Plain-text tables and human-readable ages.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Writes `rows` under `header`, columns padded to their widest cell; columns named in
/// `right` are right-aligned.
pub(crate) fn table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
    right: &[usize],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(c.chars().count());
            let last = i + 1 == cells.len();
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if !last {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                s.push_str("  ");
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `1.5s`, `12m`, `3.2h`, `4d`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

/// How long ago `t` was.
pub(crate) fn ago(t: DateTime<Utc>) -> String {
    (Utc::now() - t)
        .to_std()
        .map_or_else(|_| "just now".into(), |d| format!("{} ago", age(d)))
}

/// `-` for what the transport cannot tell.
pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The first `n` characters of `s` on one line, with `…` when cut.
pub(crate) fn excerpt(s: &str, n: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= n {
        flat
    } else {
        let mut cut: String = flat.chars().take(n.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["NAME", "N"],
            &[
                vec!["a".into(), "10".into()],
                vec!["long".into(), "2".into()],
            ],
            &[1],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME   N\na     10\nlong   2\n"
        );
    }

    #[test]
    fn ages_and_excerpts() {
        assert_eq!(age(Duration::from_millis(1500)), "1.5s");
        assert_eq!(age(Duration::from_secs(720)), "12m");
        assert_eq!(age(Duration::from_secs(2 * 86_400)), "2.0d");
        assert_eq!(excerpt("abc\ndef", 10), "abc def");
        assert_eq!(excerpt("abcdef", 4), "abc…");
    }
}
