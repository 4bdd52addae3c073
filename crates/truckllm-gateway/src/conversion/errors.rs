//! Error bodies translated between the dialects, and each dialect's error `type` for an HTTP
//! status. The message the provider wrote is kept, so clients see what really happened.

use serde_json::{Value, json};

/// The Anthropic error `type` for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The HTTP status an Anthropic error `type` comes with (for error events inside a stream).
pub(super) fn anthropic_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The OpenAI error `type` for an HTTP status (the names this gateway's own errors use).
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The longest provider text kept when an error body is not JSON.
const MAX_RAW_MESSAGE: usize = 1000;

/// The message of an error body in either dialect (`error.message`, a string `error`, a
/// top-level `message`), else its text (shortened), else a sentence naming the status.
fn message_of(status: u16, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = value.get("error");
        let found = error
            .and_then(|e| e.get("message"))
            .or(error.filter(|e| e.is_string()))
            .or(value.get("message"))
            .and_then(Value::as_str);
        if let Some(message) = found {
            return message.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("the provider answered HTTP {status}");
    }
    match text.char_indices().nth(MAX_RAW_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An upstream OpenAI-style error body → the Anthropic error body.
pub fn openai_error_to_anthropic(status: u16, body: &[u8]) -> Value {
    json!({
        "type": "error",
        "error": { "type": anthropic_error_type(status), "message": message_of(status, body) },
    })
}

/// An upstream Anthropic error body → the OpenAI error body; `code` keeps Anthropic's type.
pub fn anthropic_error_to_openai(status: u16, body: &[u8]) -> Value {
    let kind = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let kind = v.get("error")?.get("type")?.as_str()?;
        Some(kind.to_owned())
    });
    json!({ "error": {
        "message": message_of(status, body),
        "type": openai_error_type(status),
        "param": null,
        "code": kind.unwrap_or_else(|| anthropic_error_type(status).to_owned()),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_has_its_anthropic_type() {
        let table = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (529, "overloaded_error"),
            (422, "invalid_request_error"),
            (502, "api_error"),
        ];
        for (status, kind) in table {
            assert_eq!(anthropic_error_type(status), kind, "{status}");
            assert_eq!(anthropic_status(kind) / 100, status / 100, "{kind}");
        }
        assert_eq!(openai_error_type(404), "invalid_request_error");
        assert_eq!(openai_error_type(503), "server_error");
    }

    #[test]
    fn error_bodies_keep_the_provider_message_both_ways() {
        let openai = br#"{"error":{"message":"Rate limit reached for gpt-x","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            openai_error_to_anthropic(429, openai),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-x"}})
        );
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            anthropic_error_to_openai(529, anthropic),
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
        );
    }

    #[test]
    fn bodies_that_are_not_json_are_quoted_or_named_by_status() {
        let html = openai_error_to_anthropic(502, b"<html>Bad gateway</html>");
        assert_eq!(html["error"]["message"], "<html>Bad gateway</html>");
        assert_eq!(html["error"]["type"], "api_error");
        let empty = anthropic_error_to_openai(404, b"");
        assert_eq!(empty["error"]["message"], "the provider answered HTTP 404");
        assert_eq!(empty["error"]["code"], "not_found_error");
        let long = "é".repeat(MAX_RAW_MESSAGE + 10);
        let cut = openai_error_to_anthropic(500, long.as_bytes());
        let message = cut["error"]["message"].as_str().expect("a string");
        assert_eq!(
            message.chars().count(),
            MAX_RAW_MESSAGE + 1,
            "cut on a char boundary, with …"
        );
        let plain = br#"{"error":"model not loaded"}"#;
        assert_eq!(
            openai_error_to_anthropic(400, plain)["error"]["message"],
            "model not loaded"
        );
    }
}
