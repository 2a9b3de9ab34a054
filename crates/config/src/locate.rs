//! Maps field paths (`routes[2].matches[0].path.type`) to where they stand in the YAML
//! source, so semantic errors found after parsing can still point at file:line:col.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Path → (line, column), both 1-based, of each node's value.
pub(crate) struct PathIndex {
    at: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PathIndex {
    pub(crate) fn build(src: &str) -> Self {
        let mut at = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(src) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map {
                        key: key @ None, ..
                    }) = stack.last_mut()
                    {
                        *key = Some(value.into_owned());
                        continue;
                    }
                    if let Some(path) = Self::child_path(&mut stack) {
                        at.entry(path).or_insert(pos);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = Self::child_path(&mut stack).unwrap_or_default();
                    at.entry(path.clone()).or_insert(pos);
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(..) => {
                    Self::child_path(&mut stack);
                }
                _ => {}
            }
        }
        Self { at }
    }

    /// The path of the node now starting, consuming the pending key or sequence slot.
    fn child_path(stack: &mut [Frame]) -> Option<String> {
        match stack.last_mut()? {
            Frame::Map { path, key } => {
                let key = key.take()?;
                Some(if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                })
            }
            Frame::Seq { path, next } => {
                *next += 1;
                Some(format!("{path}[{}]", *next - 1))
            }
        }
    }

    /// Where `path` stands; falls back to the nearest ancestor that exists in the
    /// source (a missing field is reported at its parent).
    pub(crate) fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.at.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.at.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "listeners:\n  - name: a\n    address: 127.0.0.1:1\nroutes:\n  - name: r\n    matches:\n      - path: {type: Exact, value: /x}\n";

    #[test]
    fn finds_nested_values() {
        let idx = PathIndex::build(DOC);
        assert_eq!(idx.locate("listeners[0].address"), (3, 14));
        assert_eq!(idx.locate("routes[0].matches[0].path.type"), (7, 22));
        assert_eq!(idx.locate("routes[0].name"), (5, 11));
    }

    #[test]
    fn missing_fields_fall_back_to_parent() {
        let idx = PathIndex::build(DOC);
        assert_eq!(
            idx.locate("routes[0].backendRefs[0].name"),
            idx.locate("routes[0]")
        );
        assert_eq!(idx.locate("routes[0]"), (5, 5));
    }
}
