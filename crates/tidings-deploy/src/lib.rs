//! Reads the files of `deploy/` (the compose file, the Kubernetes and KEDA manifests) as
//! JSON values, for the tests in `tests/` that hold them to the code they run: the
//! `orderflow serve` and `tidings dashboard` arguments parse with the real command-line
//! parsers, the metric names KEDA queries are the ones Tidings exports, every reference
//! (Secret, volume, scale target, selector) points at something that exists.
//!
//! YAML is read with `yaml-rust2` (YAML 1.2, plus the `<<` merge keys compose files use).

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// What went wrong reading a deploy file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{path}: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A YAML construct these checks do not take (a non-string key, an unresolved alias).
    #[error("{path}: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
}

/// The kind of a [`DeployError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`DeployError::Read`].
    Read,
    /// [`DeployError::Yaml`].
    Yaml,
    /// [`DeployError::Unsupported`].
    Unsupported,
}

impl DeployError {
    /// Which kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeployError::Read { .. } => ErrorKind::Read,
            DeployError::Yaml { .. } => ErrorKind::Yaml,
            DeployError::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }
}

/// The repository's root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every document of the YAML file at `path` (relative to the repository root), as JSON.
pub fn load(path: &str) -> Result<Vec<Value>, DeployError> {
    let full = repo_root().join(path);
    let text = std::fs::read_to_string(&full).map_err(|source| DeployError::Read {
        path: full.clone(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        Problem::Syntax(message) => DeployError::Yaml {
            path: full.clone(),
            message,
        },
        Problem::Unsupported(what) => DeployError::Unsupported {
            path: full.clone(),
            what,
        },
    })
}

/// `text` as `docker compose` interpolates it with none of its variables set: `${NAME:-x}`
/// and `${NAME-x}` become `x`, `${NAME}` and `$NAME` become empty, `$$` is `$`.
pub fn interpolate_unset(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').unwrap_or(body.len());
            let expr = &body[..end];
            if let Some(pos) = expr.find(['-', ':', '?']) {
                let default = expr[pos..].trim_start_matches(':');
                if let Some(d) = default.strip_prefix('-') {
                    out.push_str(d);
                }
            }
            rest = body.get(end + 1..).unwrap_or("");
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                out.push('$');
            }
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

enum Problem {
    Syntax(String),
    Unsupported(String),
}

fn parse(text: &str) -> Result<Vec<Value>, Problem> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| Problem::Syntax(e.to_string()))?;
    docs.iter().map(to_json).collect()
}

/// `y` as JSON: scalars as YAML 1.2 reads them, `<<` keys merged (explicit keys win).
fn to_json(y: &Yaml) -> Result<Value, Problem> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            let mut merged = Vec::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(Problem::Unsupported(format!("a mapping key {other:?}"))),
                };
                if key == "<<" {
                    merged.push(to_json(v)?);
                } else {
                    map.insert(key, to_json(v)?);
                }
            }
            for m in merged {
                let sources = match m {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                for source in sources {
                    let Value::Object(source) = source else {
                        return Err(Problem::Unsupported("`<<` of a non-mapping".into()));
                    };
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(Problem::Unsupported(format!("the value {y:?}")))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_scalars_and_errors() {
        let docs = parse(
            "x: &base {a: 1, b: [true, null, 1.5, '2']}\ny:\n  <<: *base\n  a: 9\n---\nz: 1\n",
        )
        .unwrap_or_else(|_| panic!("parses"));
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["y"]["a"], 9, "explicit keys win over merged ones");
        assert_eq!(docs[0]["y"]["b"], serde_json::json!([true, null, 1.5, "2"]));
        assert!(matches!(parse("a: [1"), Err(Problem::Syntax(_))));
        assert_eq!(
            interpolate_unset("a${X:-b:c}d${Y-}e${Z}f$$g$W."),
            "ab:cdef$g."
        );
        let e = load("deploy/no-such-file.yaml").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Read);
    }
}
