//! AWS's binary event-stream framing, as `/converse-stream` answers: each message is a
//! prelude (total length, headers length, prelude CRC32), headers, a JSON payload and a CRC32
//! of the whole message. [`FrameSplitter`] cuts a byte stream into whole messages however the
//! chunks fall; [`decode`] checks both CRCs and reads the headers (`aws-smithy-eventstream`,
//! AWS's own codec) into a [`Frame`]; [`encode`] writes one, for the mock upstream.
//!
//! A message's `:message-type` says what it is: `event` (named by `:event-type`: `messageStart`,
//! `contentBlockDelta`, …), `exception` (named by `:exception-type`: `throttlingException`,
//! `serviceUnavailableException`, …, with `{"message": …}` as payload) or `error`
//! (`:error-code`, `:error-message`).

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Bytes before a message's headers: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// The smallest message: a prelude and the message CRC.
const MIN_MESSAGE: usize = PRELUDE + 4;
/// AWS's limit on one event-stream message.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A stream that is not AWS event-stream framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an event-stream message claims {0} bytes, outside 16 bytes to {1}")]
    Length(usize, usize),
    #[error("the event stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
    #[error("a malformed event-stream message: {0}")]
    Malformed(String),
}

/// Cuts a byte stream into whole event-stream messages, holding a partial one between chunks.
#[derive(Debug)]
pub struct FrameSplitter {
    buffer: BytesMut,
    max: usize,
}

impl FrameSplitter {
    /// `max` bounds one message (at most [`MAX_MESSAGE`]).
    pub fn new(max: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max: max.clamp(MIN_MESSAGE, MAX_MESSAGE),
        }
    }

    /// The whole messages completed by `chunk`, in order (not yet checked: see [`decode`]).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while self.buffer.len() >= 4 {
            let claimed = (&self.buffer[..4]).get_u32() as usize;
            if !(MIN_MESSAGE..=self.max).contains(&claimed) {
                return Err(FrameError::Length(claimed, self.max));
            }
            if self.buffer.len() < claimed {
                break;
            }
            messages.push(self.buffer.split_to(claimed).freeze());
        }
        Ok(messages)
    }

    /// The stream ended: an error if a message was left incomplete.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        match self.buffer.len() {
            0 => Ok(()),
            left => Err(FrameError::Truncated(left)),
        }
    }
}

/// One decoded event-stream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `:message-type: event`: the `:event-type` and the JSON payload.
    Event { kind: String, payload: Bytes },
    /// `:message-type: exception`: the `:exception-type` and the payload (`{"message": …}`).
    Exception { kind: String, payload: Bytes },
    /// `:message-type: error`: `:error-code` and `:error-message`.
    Error { code: String, message: String },
}

impl Frame {
    /// An exception's or error's message, for errors shown to clients.
    pub fn message(&self) -> String {
        match self {
            Frame::Event { .. } => String::new(),
            Frame::Error { message, .. } => message.clone(),
            Frame::Exception { payload, .. } => {
                serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("Message"))
                            .and_then(|m| m.as_str().map(str::to_owned))
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// Checks a whole message's CRCs and reads it.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    let message = read_message_from(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let header = |name: &str| -> Option<String> {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_owned())
    };
    let required =
        |name: &str| header(name).ok_or_else(|| FrameError::Malformed(format!("no {name} header")));
    let payload = message.payload().clone();
    match required(":message-type")?.as_str() {
        "event" => Ok(Frame::Event {
            kind: required(":event-type")?,
            payload,
        }),
        "exception" => Ok(Frame::Exception {
            kind: required(":exception-type")?,
            payload,
        }),
        "error" => Ok(Frame::Error {
            code: required(":error-code")?,
            message: header(":error-message").unwrap_or_default(),
        }),
        other => Err(FrameError::Malformed(format!(
            "unknown :message-type {other:?}"
        ))),
    }
}

/// Writes `frame` as an event-stream message (with `:content-type: application/json`).
pub fn encode(frame: &Frame) -> Result<Bytes, FrameError> {
    let text = |name: &'static str, value: &str| {
        Header::new(name, HeaderValue::String(value.to_owned().into()))
    };
    let json = text(":content-type", "application/json");
    let (headers, payload) = match frame {
        Frame::Event { kind, payload } => (
            vec![
                text(":event-type", kind),
                json,
                text(":message-type", "event"),
            ],
            payload.clone(),
        ),
        Frame::Exception { kind, payload } => (
            vec![
                text(":exception-type", kind),
                json,
                text(":message-type", "exception"),
            ],
            payload.clone(),
        ),
        Frame::Error { code, message } => (
            vec![
                text(":error-code", code),
                text(":error-message", message),
                text(":message-type", "error"),
            ],
            Bytes::new(),
        ),
    };
    let mut out = Vec::new();
    write_message_to(&Message::new_from_parts(headers, payload), &mut out)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Frame {
        Frame::Event {
            kind: kind.to_owned(),
            payload: Bytes::from(payload.to_owned()),
        }
    }

    /// A message with its CRCs worked out by hand from the format's definition, to check the
    /// codec against something other than itself: no headers, payload `{}`.
    #[test]
    fn a_hand_built_message_decodes_and_encodes_the_same() {
        let payload = b"{}";
        let total = (PRELUDE + payload.len() + 4) as u32;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&total.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        let prelude_crc = crc32(&bytes);
        bytes.extend_from_slice(&prelude_crc.to_be_bytes());
        bytes.extend_from_slice(payload);
        let message_crc = crc32(&bytes);
        bytes.extend_from_slice(&message_crc.to_be_bytes());
        let message = read_message_from(&bytes[..]).expect("valid by construction");
        assert_eq!(&message.payload()[..], payload);
        assert!(matches!(decode(&bytes), Err(FrameError::Malformed(_))));
        let mut written = Vec::new();
        write_message_to(&message, &mut written).expect("written");
        assert_eq!(written, bytes);
    }

    /// CRC-32 (IEEE), bit by bit: the check value of "123456789" is 0xCBF43926.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn the_reference_crc_has_its_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
            ),
            Frame::Exception {
                kind: "throttlingException".into(),
                payload: Bytes::from_static(br#"{"message":"Too many requests"}"#),
            },
            Frame::Error {
                code: "InternalFailure".into(),
                message: "boom".into(),
            },
        ];
        for frame in frames {
            let bytes = encode(&frame).expect("encoded");
            assert_eq!(decode(&bytes).expect("decoded"), frame);
        }
    }

    #[test]
    fn messages_split_across_chunks_come_out_whole() {
        let mut stream = Vec::new();
        for i in 0..3 {
            let payload = format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{i}"}}}}"#);
            stream.extend_from_slice(&encode(&event("contentBlockDelta", &payload)).expect("e"));
        }
        for size in [1, 3, 7, 50, stream.len()] {
            let mut splitter = FrameSplitter::new(MAX_MESSAGE);
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend(splitter.push(chunk).expect("framed"));
            }
            splitter.finish().expect("nothing left");
            let texts: Vec<Frame> = out.iter().map(|m| decode(m).expect("decoded")).collect();
            assert_eq!(texts.len(), 3, "chunk size {size}");
            assert_eq!(
                texts[2],
                event(
                    "contentBlockDelta",
                    r#"{"contentBlockIndex":0,"delta":{"text":"2"}}"#
                )
            );
        }
    }

    #[test]
    fn corrupt_and_cut_streams_are_errors() {
        let good = encode(&event("messageStop", r#"{"stopReason":"end_turn"}"#)).expect("e");
        let mut flipped = good.to_vec();
        let at = flipped.len() - 6;
        flipped[at] ^= 1;
        assert!(matches!(decode(&flipped), Err(FrameError::Malformed(_))));
        let mut prelude = good.to_vec();
        prelude[5] ^= 1;
        assert!(matches!(decode(&prelude), Err(FrameError::Malformed(_))));

        let mut splitter = FrameSplitter::new(MAX_MESSAGE);
        assert!(
            splitter
                .push(&good[..good.len() - 1])
                .expect("ok")
                .is_empty()
        );
        assert_eq!(
            splitter.finish(),
            Err(FrameError::Truncated(good.len() - 1))
        );

        let mut small = FrameSplitter::new(64);
        let mut huge = (1u32 << 30).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 12]);
        assert!(matches!(small.push(&huge), Err(FrameError::Length(..))));
        let mut tiny = FrameSplitter::new(64);
        assert!(matches!(
            tiny.push(&[0, 0, 0, 3]),
            Err(FrameError::Length(3, 64))
        ));
    }

    #[test]
    fn exceptions_carry_their_message() {
        let frame = Frame::Exception {
            kind: "serviceUnavailableException".into(),
            payload: Bytes::from_static(
                br#"{"message":"Bedrock is unable to process your request."}"#,
            ),
        };
        assert_eq!(
            frame.message(),
            "Bedrock is unable to process your request."
        );
    }
}
