//! `${VAR}` and `${VAR:-default}` in every string of a config, and `enc:v1:` decryption:
//! [`resolve`] turns the config as written into the in-memory config the gateway uses.
//!
//! Rules: `${VAR}` is the variable's value and an error naming it if unset; `${VAR:-default}`
//! falls back to `default` when the variable is unset or empty; `$${` is a literal `${`.
//! A string that is, after interpolation, an `enc:v1:` value is decrypted with the master key.
//! The resolved copy is never saved: stores keep the config as written, references and all.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{ConfigError, Problem};
use crate::schema::Config;
use crate::secret::{ENC_PREFIX, MasterKey};
use crate::spans::SpanIndex;

/// Where variables come from: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// One piece of a string: literal text, the `$${` escape, a `${…}` reference (its inside),
/// or an unterminated `${` and everything after it.
enum Piece<'a> {
    Literal(&'a str),
    Escape,
    Reference(&'a str),
    Unterminated(&'a str),
}

/// Splits `text` into [`Piece`]s, in order.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut literal_len = 0;
    while let Some(offset) = rest[literal_len..].find('$') {
        let start = literal_len + offset;
        let tail = &rest[start..];
        let (piece, used) = if tail.starts_with("$${") {
            (Piece::Escape, 3)
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                Some(end) => (Piece::Reference(&after[..end]), end + 3),
                None => (Piece::Unterminated(tail), tail.len()),
            }
        } else {
            literal_len = start + 1;
            continue;
        };
        if start > 0 {
            out.push(Piece::Literal(&rest[..start]));
        }
        out.push(piece);
        rest = &tail[used..];
        literal_len = 0;
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    out
}

/// Replaces every `${…}` in `text`. The error message names the variable or the fault, never
/// a value.
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Escape => out.push_str("${"),
            Piece::Reference(inner) => out.push_str(&expand(inner, env)?),
            Piece::Unterminated(_) => return Err("unterminated ${ (a closing } is missing)".into()),
        }
    }
    Ok(out)
}

/// `text` as written, with each reference's inside passed through `reference` and the rest
/// (literal text, `$${` escapes, an unterminated `${…`) through `literal`.
pub fn map_references(
    text: &str,
    reference: &mut dyn FnMut(&str) -> String,
    literal: &mut dyn FnMut(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Literal(s) | Piece::Unterminated(s) => out.push_str(&literal(s)),
            Piece::Escape => out.push_str(&literal("$${")),
            Piece::Reference(inner) => out.push_str(&reference(inner)),
        }
    }
    out
}

/// Whether `text` holds a `${…}` reference or is an `enc:` value: a value that only the
/// process that runs the config can know.
pub fn is_opaque(text: &str) -> bool {
    text.starts_with(ENC_PREFIX)
        || pieces(text)
            .iter()
            .any(|p| matches!(p, Piece::Reference(_)))
}

fn expand(inner: &str, env: &dyn Env) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!(
            "${{{name}}} is not a valid variable name (letters, digits, _)"
        ));
    }
    match (env.var(name).filter(|v| !v.is_empty()), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
        )),
    }
}

/// The in-memory config: every string interpolated, every `enc:v1:` value decrypted.
pub fn resolve(
    raw: &Config,
    env: &dyn Env,
    key: Option<&MasterKey>,
    spans: Option<&SpanIndex>,
) -> Result<Config, ConfigError> {
    let mut value = serde_json::to_value(raw)
        .map_err(|e| ConfigError::Other(format!("cannot walk the config: {e}")))?;
    walk(&mut value, String::new(), &mut |path, text| {
        let problem = |message: String| Problem {
            position: spans.and_then(|s| s.position(path)),
            path: path.to_owned(),
            message,
        };
        let expanded =
            interpolate(text, env).map_err(|m| ConfigError::Interpolation(problem(m)))?;
        if !expanded.starts_with(ENC_PREFIX) {
            return Ok(expanded);
        }
        let key = key.ok_or_else(|| {
            ConfigError::Interpolation(problem(format!(
                "value is encrypted but no master key is set: set {} or {}",
                crate::secret::MASTER_KEY_ENV,
                crate::secret::MASTER_KEY_FILE_ENV
            )))
        })?;
        key.decrypt(&expanded)
            .map(|plain| plain.to_string())
            .map_err(|e| ConfigError::Interpolation(problem(e.to_string())))
    })?;
    // The serde message would quote the resolved value; say only that it happened.
    serde_json::from_value(value).map_err(|_| {
        ConfigError::Other(
            "the config no longer fits the schema once references are resolved".into(),
        )
    })
}

/// Calls `f` on every string of `value`, with its field path, replacing it by the result.
pub(crate) fn walk(
    value: &mut Value,
    path: String,
    f: &mut dyn FnMut(&str, &str) -> Result<String, ConfigError>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => *s = f(&path, s)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), f)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, child, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn references_defaults_and_escapes() {
        let e = env(&[("A", "1"), ("EMPTY", ""), ("URL", "http://x")]);
        assert_eq!(interpolate("${A}", &e).as_deref(), Ok("1"));
        assert_eq!(interpolate("x${A}y${A}", &e).as_deref(), Ok("x1y1"));
        assert_eq!(interpolate("${B:-two}", &e).as_deref(), Ok("two"));
        assert_eq!(
            interpolate("${EMPTY:-fallback}", &e).as_deref(),
            Ok("fallback")
        );
        assert_eq!(interpolate("${B:-}", &e).as_deref(), Ok(""));
        assert_eq!(
            interpolate("${URL:-a:-b}/v1", &e).as_deref(),
            Ok("http://x/v1")
        );
        assert_eq!(interpolate("${B:-a:-b}", &e).as_deref(), Ok("a:-b"));
        assert_eq!(interpolate("$${A} $5 $", &e).as_deref(), Ok("${A} $5 $"));
        assert_eq!(interpolate("no refs", &e).as_deref(), Ok("no refs"));
    }

    #[test]
    fn bad_references_are_clear_errors() {
        let e = env(&[]);
        let unset = interpolate("${OPENAI_KEY_1}", &e).expect_err("unset");
        assert!(
            unset.contains("OPENAI_KEY_1") && unset.contains("not set"),
            "{unset}"
        );
        assert!(
            interpolate("${A", &e)
                .expect_err("open")
                .contains("unterminated")
        );
        assert!(
            interpolate("${}", &e)
                .expect_err("empty")
                .contains("not a valid")
        );
        assert!(
            interpolate("${1A}", &e)
                .expect_err("digit")
                .contains("not a valid")
        );
        assert!(
            interpolate("${A-B}", &e)
                .expect_err("dash")
                .contains("not a valid")
        );
    }
}
