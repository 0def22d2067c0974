//! Plain-text tables, human-readable ages, and [`printable`]: what a broker or a message
//! supplies is printed with its control characters escaped, so it cannot drive the
//! terminal (escape sequences) or fake lines.

use std::borrow::Cow;
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
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c, false).into_owned()).collect())
        .collect();
    let rows = &rows;
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

/// Whether `c` must not reach a terminal raw: control characters (C0, DEL, C1: escape
/// sequences start with ESC or CSI) and the invisible direction and line-separator
/// marks that make text display other than it reads.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with every unsafe character (see `is_unsafe`) written as a JSON-style `\u001b`
/// escape; with `keep_newlines`, `\n` and `\t` stay (multi-line bodies, pretty JSON,
/// whose own escapes are left as they are).
pub(crate) fn printable(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_newlines && (c == '\n' || c == '\t');
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The first `n` characters of `s` on one line (line breaks and tabs as spaces, other
/// unsafe characters escaped), with `…` when cut.
pub(crate) fn excerpt(s: &str, n: usize) -> String {
    let spaced: String = s
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let flat = printable(&spaced, false).into_owned();
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
        assert_eq!(excerpt("a\x1b[2Jb", 20), "a\\u001b[2Jb");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain", false), "plain");
        assert_eq!(
            printable("a\x1b]0;pwned\x07b", false),
            "a\\u001b]0;pwned\\u0007b"
        );
        assert_eq!(printable("\u{9b}31m", false), "\\u009b31m");
        assert_eq!(printable("x\u{202e}y\u{7f}", false), "x\\u202ey\\u007f");
        assert_eq!(printable("l1\nl2\r", false), "l1\\u000al2\\u000d");
        assert_eq!(printable("l1\n\tl2\r", true), "l1\n\tl2\\u000d");
        let mut out = Vec::new();
        table(&mut out, &["H"], &[vec!["\x1b[31mred".into()]], &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "H\n\\u001b[31mred\n");
    }
}
