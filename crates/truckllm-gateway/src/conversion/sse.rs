//! Reading one SSE event (its `event:` name and `data:` payload) and writing SSE frames.

use bytes::Bytes;
use serde_json::Value;

use super::Unsupported;

/// What one SSE event carries.
#[derive(Debug, PartialEq)]
pub(super) enum Payload {
    /// No `data:` line (a comment or keep-alive).
    Nothing,
    /// OpenAI's end-of-stream marker, `data: [DONE]`.
    Done,
    /// A JSON payload, with the `event:` name if there was one.
    Json(Option<String>, Value),
}

/// Parses one complete SSE event (terminator included or not, LF or CRLF line ends).
pub(super) fn parse(event: &[u8]) -> Result<Payload, Unsupported> {
    let text = String::from_utf8_lossy(event);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if let Some(value) = field(line, "event") {
            name = Some(value.to_owned());
        } else if let Some(value) = field(line, "data") {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    let Some(data) = data else {
        return Ok(Payload::Nothing);
    };
    if data.trim() == "[DONE]" {
        return Ok(Payload::Done);
    }
    serde_json::from_str(&data)
        .map(|value| Payload::Json(name, value))
        .map_err(|_| Unsupported::new("the provider sent a stream event that is not JSON"))
}

/// The value of `name:` on this line (one leading space removed), if it is that field.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

/// `data: {json}` and a blank line.
pub(super) fn data_frame(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// `data: [DONE]` and a blank line.
pub(super) const DONE_FRAME: &str = "data: [DONE]\n\n";

/// `event: {type}`, `data: {json}` and a blank line (the Anthropic framing).
pub(super) fn named_frame(kind: &str, value: &Value) -> String {
    format!("event: {kind}\ndata: {value}\n\n")
}

/// The frames written for one input event, as bytes.
pub(super) fn bytes(frames: String) -> Bytes {
    Bytes::from(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_parsed_with_either_line_end_and_comments_are_nothing() {
        assert_eq!(
            parse(b"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n"),
            Ok(Payload::Json(Some("ping".into()), json!({"type": "ping"})))
        );
        assert_eq!(
            parse(b"data:{\"a\":\ndata: 1}\n\n"),
            Ok(Payload::Json(None, json!({"a": 1}))),
            "data lines are joined; no space after the colon is fine"
        );
        assert_eq!(parse(b": keep-alive\n\n"), Ok(Payload::Nothing));
        assert_eq!(parse(b"data: [DONE]\n\n"), Ok(Payload::Done));
        assert!(parse(b"data: {not json\n\n").is_err());
    }
}
