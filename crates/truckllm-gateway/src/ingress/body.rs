//! A client's request body, read once without building a JSON tree.
//!
//! [`RequestBody::scan`] runs serde_json over the bytes into a struct of borrowed raw values:
//! the whole document is validated, the handful of fields the gateway reads (`model`,
//! `stream`, `stream_options`, the token caps, the prompt's fields) are located, and the
//! rest is skipped without allocating. A body sent to a provider of the client's own dialect
//! is then the client's bytes with the model's value spliced in (and, for OpenAI streams, the
//! usage chunk asked for). Only a translation to another dialect parses the body into a
//! [`Map`], once, on demand.
//!
//! A key the body repeats among those fields is refused: the gateway and the provider might
//! otherwise read different models from one request.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::not_an_object;
use crate::error::ApiError;

/// The fields the gateway reads, as raw JSON borrowed from the body. `null` is kept as a
/// raw `null` (present, not absent), so `"model": null` is an invalid model, not a missing one.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    max_tokens: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    system: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    input: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Where a field's raw value sits in the body.
type Located = Range<usize>;

/// A request body: the client's bytes, where its fields are, and a tree only if one was needed.
#[derive(Debug)]
pub struct RequestBody {
    raw: Bytes,
    model: Option<Located>,
    stream: Option<Located>,
    stream_options: Option<Located>,
    max_tokens: Option<Located>,
    max_completion_tokens: Option<Located>,
    messages: Option<Located>,
    system: Option<Located>,
    input: Option<Located>,
    /// The usage request to splice in, when [`RequestBody::ask_for_usage`] was called.
    usage_patch: Option<Patch>,
    tree: Option<Map<String, Value>>,
}

/// Bytes that replace a range of the body (an empty range inserts).
#[derive(Debug, Clone)]
struct Patch {
    span: Range<usize>,
    bytes: Bytes,
}

impl RequestBody {
    /// Validates the JSON and locates the fields; a body that is not a JSON object, or that
    /// repeats one of the fields read, is the client's error.
    pub fn scan(raw: Bytes) -> Result<Self, ApiError> {
        // A derived struct also reads a JSON list (field by position): only `{` may open.
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(not_an_object("it does not start with `{`"));
        }
        let fields: Fields<'_> = serde_json::from_slice(&raw).map_err(not_an_object)?;
        let at = |value: Option<&RawValue>| value.map(|v| locate(&raw, v));
        let located = RequestBody {
            model: at(fields.model),
            stream: at(fields.stream),
            stream_options: at(fields.stream_options),
            max_tokens: at(fields.max_tokens),
            max_completion_tokens: at(fields.max_completion_tokens),
            messages: at(fields.messages),
            system: at(fields.system),
            input: at(fields.input),
            usage_patch: None,
            tree: None,
            raw: Bytes::new(),
        };
        Ok(RequestBody { raw, ..located })
    }

    fn text(&self, field: &Option<Located>) -> Option<&[u8]> {
        field.as_ref().map(|span| &self.raw[span.clone()])
    }

    /// A field's value as a JSON tree (small fields only: the model, the caps, the options,
    /// the embeddings input). A value the scan let through but a tree cannot hold (nested
    /// past serde_json's depth limit) is the client's error, never read as absent.
    fn value(&self, field: &Option<Located>) -> Result<Option<Value>, ApiError> {
        self.text(field)
            .map(|text| {
                serde_json::from_slice(text).map_err(|e| {
                    ApiError::bad_request(
                        "invalid_json",
                        format!("request body cannot be read: {e}"),
                    )
                })
            })
            .transpose()
    }

    pub fn model(&self) -> Result<Option<Value>, ApiError> {
        self.value(&self.model)
    }

    /// `stream: true` (anything else, or no `stream`, is not a stream).
    pub fn stream(&self) -> bool {
        self.text(&self.stream) == Some(b"true")
    }

    pub fn stream_options(&self) -> Result<Option<Value>, ApiError> {
        self.value(&self.stream_options)
    }

    /// The first of the named token caps present and not `null`, with its name.
    pub fn token_cap(
        &self,
        names: &[&'static str],
    ) -> Result<Option<(&'static str, Value)>, ApiError> {
        for name in names {
            let field = match *name {
                "max_tokens" => &self.max_tokens,
                "max_completion_tokens" => &self.max_completion_tokens,
                _ => continue,
            };
            if let Some(value) = self.value(field)?.filter(|v| !v.is_null()) {
                return Ok(Some((*name, value)));
            }
        }
        Ok(None)
    }

    /// `messages` is present and a list; `None` when absent.
    pub fn messages_is_list(&self) -> Option<bool> {
        self.text(&self.messages)
            .map(|text| text.first() == Some(&b'['))
    }

    /// One top-level field of the body, parsed from the whole body (for the few fields
    /// read only when translating, such as embeddings' `encoding_format`).
    pub fn field(&self, name: &str) -> Option<Value> {
        serde_json::from_slice::<Map<String, Value>>(&self.raw)
            .ok()
            .and_then(|mut body| body.remove(name))
    }

    /// The embeddings `input`, parsed (only it).
    pub fn input(&self) -> Result<Option<Value>, ApiError> {
        self.value(&self.input)
    }

    /// The prompt's fields (`system`, `messages`), kept for an estimate made only if one is
    /// needed (a stream left early): a reference to the body, not a copy.
    pub fn prompt(&self) -> Prompt {
        Prompt::Fields {
            raw: self.raw.clone(),
            fields: [self.system.clone(), self.messages.clone()],
        }
    }

    /// Makes the body sent upstream ask for OpenAI's usage chunk: `stream_options` is added
    /// (or put in place of a `null` one), or `include_usage: true` set in the client's own. A
    /// `stream_options` that is neither an object nor `null` is the client's error.
    pub fn ask_for_usage(&mut self) -> Result<(), ApiError> {
        let options = self.stream_options()?;
        let patch = match (&self.stream_options, options) {
            (Some(field), Some(Value::Null)) => Patch {
                span: field.clone(),
                bytes: Bytes::from_static(br#"{"include_usage":true}"#),
            },
            (None, _) | (_, None) => Patch {
                span: self.first_key_at()..self.first_key_at(),
                bytes: Bytes::from_static(br#""stream_options":{"include_usage":true},"#),
            },
            (Some(field), Some(options)) => {
                let mut options = match options {
                    Value::Object(map) => map,
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_stream_options",
                            "`stream_options` must be an object",
                        ));
                    }
                };
                options.insert("include_usage".into(), Value::Bool(true));
                Patch {
                    span: field.clone(),
                    bytes: Bytes::from(Value::Object(options).to_string()),
                }
            }
        };
        self.usage_patch = Some(patch);
        Ok(())
    }

    /// Just after the object's opening brace, the first byte [`RequestBody::scan`] let
    /// through (the body has a `model`, so the object is not empty).
    fn first_key_at(&self) -> usize {
        self.raw
            .iter()
            .position(|b| *b == b'{')
            .map_or(0, |at| at + 1)
    }

    /// The client's bytes with `model` as the model, and the usage request if asked for.
    pub fn with_model(&self, model: &str) -> Result<Bytes, ApiError> {
        let name = serde_json::to_vec(model).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut patches: Vec<Patch> = self.usage_patch.iter().cloned().collect();
        if let Some(field) = &self.model {
            patches.push(Patch {
                span: field.clone(),
                bytes: Bytes::from(name),
            });
        }
        patches.sort_by_key(|p| p.span.start);
        Ok(splice(&self.raw, &patches))
    }

    /// The body as a tree, parsed on first use (for translation to another dialect).
    pub fn tree(&mut self) -> Result<&Map<String, Value>, ApiError> {
        if self.tree.is_none() {
            let parsed = serde_json::from_slice(&self.raw).map_err(not_an_object)?;
            self.tree = Some(parsed);
        }
        Ok(self.tree.get_or_insert_default())
    }
}

/// A request's prompt, for an estimate of its tokens made only if one is needed.
#[derive(Debug)]
pub enum Prompt {
    /// Fields of a scanned body, measured on demand.
    Fields {
        raw: Bytes,
        fields: [Option<Located>; 2],
    },
    /// Characters of text already counted.
    Chars(usize),
}

impl Prompt {
    /// The prompt's size in tokens, roughly: characters of its text, four to a token.
    pub fn estimate_tokens(&self) -> f64 {
        let chars: usize = match self {
            Prompt::Chars(chars) => *chars,
            Prompt::Fields { raw, fields } => fields
                .iter()
                .flatten()
                .filter_map(|span| serde_json::from_slice::<Value>(&raw[span.clone()]).ok())
                .map(|value| super::text_len(Some(&value)))
                .sum(),
        };
        (chars as f64 / 4.0).ceil()
    }
}

/// Where `value`, borrowed from `raw`, sits in it.
fn locate(raw: &[u8], value: &RawValue) -> Located {
    let start = value.get().as_ptr() as usize - raw.as_ptr() as usize;
    start..start + value.get().len()
}

/// `raw` with each patch's range replaced by its bytes; patches are sorted and do not overlap.
fn splice(raw: &Bytes, patches: &[Patch]) -> Bytes {
    let added: usize = patches.iter().map(|p| p.bytes.len()).sum();
    let mut out = BytesMut::with_capacity(raw.len() + added);
    let mut at = 0;
    for patch in patches {
        out.put_slice(&raw[at..patch.span.start]);
        out.put_slice(&patch.bytes);
        at = patch.span.end;
    }
    out.put_slice(&raw[at..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scan(text: &str) -> RequestBody {
        RequestBody::scan(Bytes::from(text.to_owned())).expect("scans")
    }

    fn parsed(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).expect("still JSON")
    }

    #[test]
    fn only_the_model_changes_and_every_other_byte_is_the_clients() {
        let text = r#"{ "messages": [{"role":"user","content":"hi \"there\""}],
            "model" : "gpt-4o", "temperature": 0.50, "x": {"model": "inner"} }"#;
        let out = scan(text).with_model("mock:m\"1").expect("spliced");
        let expected = text.replace(r#""gpt-4o""#, r#""mock:m\"1""#);
        assert_eq!(std::str::from_utf8(&out).expect("utf8"), expected);
        assert_eq!(
            parsed(&out)["x"]["model"],
            "inner",
            "nested keys are left alone"
        );
    }

    #[test]
    fn fields_are_read_without_a_tree() {
        let body = scan(
            r#"{"model":"m","stream":true,"max_tokens":null,"max_completion_tokens":7,
                "system":"sys","messages":[1,2]}"#,
        );
        assert_eq!(body.model().ok(), Some(Some(json!("m"))));
        assert!(body.stream());
        assert_eq!(
            body.token_cap(&["max_completion_tokens", "max_tokens"])
                .ok(),
            Some(Some(("max_completion_tokens", json!(7))))
        );
        assert_eq!(
            body.token_cap(&["max_tokens"]).ok(),
            Some(None),
            "null is absent"
        );
        assert_eq!(body.messages_is_list(), Some(true));
        assert_eq!(
            body.prompt().estimate_tokens(),
            2.0,
            "`sys`, `1`, `2`: five characters"
        );
        assert!(!scan(r#"{"model":"m","stream":"yes"}"#).stream());
        assert_eq!(
            scan(r#"{"model":null}"#).model().ok(),
            Some(Some(Value::Null))
        );
        let deep = format!(
            r#"{{"model":"m","input":{}"x"{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            scan(&deep).input().map_err(|e| e.code).err(),
            Some("invalid_json"),
            "too deep for a tree: refused, not read as absent"
        );
    }

    #[test]
    fn the_usage_chunk_is_asked_for_whether_or_not_options_were_sent() {
        let mut bare = scan(r#"  {"model":"a","stream":true}"#);
        bare.ask_for_usage().expect("added");
        let out = parsed(&bare.with_model("b").expect("spliced"));
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert_eq!(out["model"], "b");

        let mut own = scan(r#"{"stream_options":{"include_usage":false,"x":1},"model":"a"}"#);
        own.ask_for_usage().expect("set");
        let out = parsed(&own.with_model("b").expect("spliced"));
        assert_eq!(
            out["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
        assert_eq!(out["model"], "b");

        let mut null = scan(r#"{"model":"a","stream_options":null,"stream":true}"#);
        null.ask_for_usage().expect("a null is replaced");
        let out = parsed(&null.with_model("b").expect("spliced"));
        assert_eq!(out["stream_options"], json!({"include_usage": true}));

        let mut wrong = scan(r#"{"model":"a","stream_options":3}"#);
        assert_eq!(
            wrong.ask_for_usage().map_err(|e| e.code),
            Err("invalid_stream_options")
        );
    }

    #[test]
    fn a_body_that_is_not_one_object_or_repeats_a_read_field_is_refused() {
        for bad in [
            "{not json",
            "[1,2]",
            " [\"m\"]",
            "7",
            r#"{"model":"a","model":"b"}"#,
            r#"{"model":"a"} trailing"#,
            r#"{"model":"a","n":NaN}"#,
        ] {
            let refused = RequestBody::scan(Bytes::from(bad)).map_err(|e| e.code);
            assert_eq!(refused.err(), Some("invalid_json"), "{bad}");
        }
        let dup = RequestBody::scan(Bytes::from(r#"{"model":"a","model":"b"}"#))
            .err()
            .map(|e| e.message);
        assert!(
            dup.is_some_and(|m| m.contains("duplicate field `model`")),
            "says which field"
        );
    }

    #[test]
    fn the_tree_is_parsed_on_demand() {
        let mut body = scan(r#"{"model":"a","messages":[]}"#);
        assert!(body.tree.is_none());
        assert_eq!(body.tree().expect("parses").get("model"), Some(&json!("a")));
    }
}
