//! Where each field stands in a YAML file: an index from field path
//! (`llm_providers[0].keys[1].id`) to line and column, so that checks made after parsing can
//! still point at the line to fix.

use std::collections::HashMap;

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser};

use crate::error::Position;

/// Field paths of one YAML document and their positions (of the key, for mapping entries).
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    positions: HashMap<String, Position>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl SpanIndex {
    /// Indexes `yaml`; stops quietly at the first syntax error (parsing reports that one).
    pub fn build(yaml: &str) -> Self {
        let mut index = Self::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(yaml) {
            let Ok((event, span)) = item else { break };
            let position = Position {
                line: span.start.line() as u64,
                column: span.start.col() as u64 + 1,
            };
            match event {
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(..) => {
                    // A scalar in key position names the next value's path.
                    if let (Some(Frame::Map { path, key }), Event::Scalar(value, ..)) =
                        (stack.last_mut(), &event)
                        && key.is_none()
                    {
                        let child = join(path, value);
                        index.positions.entry(child).or_insert(position);
                        *key = Some(value.to_string());
                        continue;
                    }
                    let path = match stack.last_mut() {
                        Some(Frame::Map { path, key }) => {
                            join(path, &key.take().unwrap_or_default())
                        }
                        Some(Frame::Seq { path, next }) => {
                            *next += 1;
                            format!("{path}[{}]", *next - 1)
                        }
                        None => String::new(),
                    };
                    index.positions.entry(path.clone()).or_insert(position);
                    match event {
                        Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                        Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        index
    }

    /// The position of `path`, or of its nearest indexed parent.
    pub fn position(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// The string at `path` (`llm_providers[0].keys[1].id`) in a config turned into JSON, if
/// there is one. A map key holding `.` or `[` is not found.
pub fn string_at<'v>(value: &'v Value, path: &str) -> Option<&'v str> {
    let mut at = value;
    if path.is_empty() {
        return at.as_str();
    }
    for segment in path.split('.') {
        let (name, indices) = segment.split_at(segment.find('[').unwrap_or(segment.len()));
        if !name.is_empty() {
            at = at.get(name)?;
        }
        for index in indices.split('[').skip(1) {
            at = at.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    at.as_str()
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_line_and_column_of_their_key() {
        let yaml = "server:\n  listen: x\nllm_providers:\n  - id: a\n    keys:\n      - id: k1\n      - id: k2\n";
        let index = SpanIndex::build(yaml);
        let at = |p: &str| index.position(p).map(|p| (p.line, p.column));
        assert_eq!(at("server.listen"), Some((2, 3)));
        assert_eq!(at("llm_providers[0].id"), Some((4, 5)));
        assert_eq!(at("llm_providers[0].keys[1].id"), Some((7, 9)));
        assert_eq!(
            at("llm_providers[0].keys[1].secret"),
            at("llm_providers[0].keys[1]"),
            "falls back to the parent"
        );
        assert_eq!(at("nowhere"), None);
    }

    #[test]
    fn string_at_follows_fields_and_indices() {
        let value = serde_json::json!({"a": {"b": [{"c": "x"}, "y"]}, "m": {"k": ["t"]}});
        assert_eq!(string_at(&value, "a.b[0].c"), Some("x"));
        assert_eq!(string_at(&value, "a.b[1]"), Some("y"));
        assert_eq!(string_at(&value, "m.k[0]"), Some("t"));
        assert_eq!(string_at(&value, "a.b[2]"), None);
        assert_eq!(string_at(&value, "a.b"), None);
        assert_eq!(string_at(&value, "a.b[x]"), None);
    }
}
