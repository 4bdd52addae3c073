//! From YAML text to a checked config: parse (schema errors with path, line, column and a
//! did-you-mean), resolve (`${ENV}`, `enc:v1:`), validate (values that must hold together).
//! [`check_written`] checks a config without resolving it, for a store that keeps configs for
//! others.
//!
//! A problem names the field and shows its value as written, redacted ([`Config::redacted`]):
//! never a resolved or decrypted value.

use serde_json::Value;

use crate::error::{ConfigError, Position, Problem};
use crate::interpolate::{Env, interpolate, resolve, walk};
use crate::schema::Config;
use crate::secret::MasterKey;
use crate::spans::{SpanIndex, string_at};
use crate::validate::{placeholders, validate, validate_written};

/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// A config as written (what is saved back) and as resolved (what runs).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub raw: Config,
    pub resolved: Config,
}

/// Parses, resolves and validates YAML text.
pub fn load_str(
    yaml: &str,
    env: &dyn Env,
    key: Option<&MasterKey>,
) -> Result<LoadedConfig, ConfigError> {
    let raw = parse(yaml)?;
    let context = Context::of(yaml, &raw);
    context.fail_on(placeholders(&raw))?;
    let resolved = resolve(&raw, env, key, Some(&context.spans))?;
    context.fail_on(validate(&resolved))?;
    Ok(LoadedConfig { raw, resolved })
}

/// Parses and checks YAML text as written, never reading the environment or decrypting:
/// `${…}` references must be well formed, and fields holding a reference or an `enc:` value are
/// not checked further (see [`validate_written`]).
pub fn check_written(yaml: &str) -> Result<Config, ConfigError> {
    let raw = parse(yaml)?;
    let context = Context::of(yaml, &raw);
    context.fail_on(placeholders(&raw))?;
    check_reference_syntax(&raw, &context.spans)?;
    context.fail_on(validate_written(&raw))?;
    Ok(raw)
}

/// Interpolates every string with a stand-in value for every variable: only malformed
/// references fail.
fn check_reference_syntax(raw: &Config, spans: &SpanIndex) -> Result<(), ConfigError> {
    struct AnyVariable;
    impl Env for AnyVariable {
        fn var(&self, _: &str) -> Option<String> {
            Some("set".into())
        }
    }
    let mut value = serde_json::to_value(raw)
        .map_err(|_| ConfigError::Other("cannot walk the config".into()))?;
    walk(&mut value, String::new(), &mut |path, text| {
        interpolate(text, &AnyVariable).map_err(|message| {
            ConfigError::Interpolation(Problem {
                position: spans.position(path),
                path: path.to_owned(),
                message,
            })
        })?;
        Ok(text.to_owned())
    })
}

/// What turns `(path, message)` pairs into problems: positions, and the redacted config as
/// written, whose values the problems show.
struct Context {
    spans: SpanIndex,
    shown: Value,
}

impl Context {
    fn of(yaml: &str, raw: &Config) -> Self {
        Self {
            spans: SpanIndex::build(yaml),
            shown: serde_json::to_value(raw.redacted()).unwrap_or(Value::Null),
        }
    }

    fn fail_on(&self, found: Vec<(String, String)>) -> Result<(), ConfigError> {
        if found.is_empty() {
            return Ok(());
        }
        let problems = found
            .into_iter()
            .map(|(path, message)| Problem {
                position: self.spans.position(&path),
                message: match string_at(&self.shown, &path) {
                    Some(written) => format!("{message} (as written: {written:?})"),
                    None => message,
                },
                path,
            })
            .collect();
        Err(ConfigError::Invalid(problems))
    }
}

/// Parses YAML into the schema only (no interpolation, no validation).
pub fn parse(yaml: &str) -> Result<Config, ConfigError> {
    if yaml.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Parse(Problem {
            path: String::new(),
            position: None,
            message: format!(
                "config is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                yaml.len()
            ),
        }));
    }
    if yaml.trim().is_empty() {
        return Ok(Config::default());
    }
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str(yaml, |de| {
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| {
        let position = e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        ConfigError::Parse(Problem {
            path: if path == "." { String::new() } else { path },
            position,
            message: suggest(&headline(&e.to_string())),
        })
    })
}

/// The first line of a serde-saphyr error, without its own `error: line N column M:` prefix.
fn headline(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once(": ") {
        Some((location, rest)) if location.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    }
}

/// Adds "did you mean `x`?" to unknown-field and unknown-variant messages.
fn suggest(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_owned();
    };
    let Some((given, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let candidates = expected
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(", ")
        .map(|c| c.trim_matches('`'));
    let best = candidates
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, name)) => format!("{message}; did you mean `{name}`?"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    #[test]
    fn unknown_fields_get_a_suggestion_with_path_and_position() {
        let yaml = "llm_providers:\n  - id: openai\n    base_url: https://x/v1\n    keys:\n      - id: k\n        secrte: s\n";
        let err = load_str(yaml, &no_env(), None).expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("llm_providers[0].keys[0].secrte"), "{text}");
        assert!(text.contains("line 6, column 9"), "{text}");
        assert!(text.contains("did you mean `secret`?"), "{text}");
        let variant =
            load_str("policy:\n  algorithm: hybird\n", &no_env(), None).expect_err("typo");
        assert!(
            variant.to_string().contains("did you mean `hybrid`?"),
            "{variant}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = load_str("server: [\n", &no_env(), None).expect_err("unclosed");
        assert!(err.to_string().contains("line 1"), "{err}");
        let ok = load_str("", &no_env(), None).expect("empty file is the default config");
        assert_eq!(ok.raw, Config::default());
    }
}
