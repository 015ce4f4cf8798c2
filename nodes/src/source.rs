//! Located load errors: every NodePool or catalog problem names its file, line, column and field path.
//!
//! Loading goes: index every node's position by field path with yaml-rust2's event parser, let serde
//! read the typed document (serde_path_to_error names the field a type error is in), then validate;
//! serde and validation report field paths and the index turns them into line and column.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One problem in a loaded document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file (or other origin) the document came from.
    pub file: String,
    /// 1-based line and column of the offending node, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field path, e.g. `spec.disruption.budgets[0].nodes` (empty for the whole document).
    pub path: String,
    /// What is wrong, as a phrase carrying the offending input.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in one document (validation collects them all, not just the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A document's text with the position of each node by field path.
pub(crate) struct Document {
    origin: String,
    positions: HashMap<String, (usize, usize)>,
}

impl Document {
    /// Indexes `text`, or reports the YAML syntax error found.
    pub fn index(text: &str, origin: &str) -> Result<Self, LoadErrors> {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        match parser.load(&mut builder, false) {
            Ok(()) => Ok(Document {
                origin: origin.to_owned(),
                positions: builder.positions,
            }),
            Err(e) => Err(LoadErrors(vec![LoadError {
                file: origin.to_owned(),
                line: Some(e.marker().line()),
                column: Some(e.marker().col() + 1),
                path: String::new(),
                reason: format!("not YAML: {}", e.info()),
            }])),
        }
    }

    /// Reads the typed document, reporting a type error at its field.
    pub fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, LoadErrors> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner().to_string();
            // serde_yaml_ng appends " at line L column C": the index gives positions.
            let reason = match inner.find(" at line ") {
                Some(i) => inner[..i].to_owned(),
                None => inner,
            };
            LoadErrors(vec![self.error(&path, reason)])
        })
    }

    /// An error at `path` (or its nearest indexed ancestor).
    pub fn error(&self, path: &str, reason: impl Into<String>) -> LoadError {
        let mut p = path;
        let pos = loop {
            if let Some(pos) = self.positions.get(p) {
                break Some(*pos);
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break self.positions.get("").copied(),
            }
        };
        LoadError {
            file: self.origin.clone(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

#[derive(Default)]
struct IndexBuilder {
    positions: HashMap<String, (usize, usize)>,
    stack: Vec<Frame>,
}

enum Frame {
    /// A mapping at `path`; `key` is the key just read, waiting for its value.
    Mapping {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        next: usize,
    },
    /// A mapping or sequence used as a key: its content has no field path.
    ComplexKey,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl IndexBuilder {
    /// Records a node and returns its path; `None` when the node is a mapping key or inside one.
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::ComplexKey) => return None,
            Some(Frame::Sequence { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                p
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(k) => join(path, &k),
                None => {
                    let k = scalar.unwrap_or("?").to_owned();
                    // A block mapping's start event is marked at its first `:`; it really starts at
                    // its first key.
                    let here = (mark.line(), mark.col() + 1);
                    if let Some(pos) = self.positions.get_mut(path.as_str())
                        && here < *pos
                    {
                        *pos = here;
                    }
                    // Errors about a key point at the key: record it now, the value may overwrite.
                    self.positions
                        .insert(join(path, &k), (mark.line(), mark.col() + 1));
                    *key = Some(k);
                    return None;
                }
            },
        };
        self.positions
            .entry(path.clone())
            .or_insert((mark.line(), mark.col() + 1));
        Some(path)
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref value, ..) => {
                self.node(mark, Some(value));
            }
            Event::Alias(_) => {
                self.node(mark, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let as_key = matches!(
                    self.stack.last(),
                    Some(Frame::Mapping { key: None, .. }) | Some(Frame::ComplexKey)
                );
                if as_key {
                    if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some("?".to_owned());
                    }
                    self.stack.push(Frame::ComplexKey);
                    return;
                }
                let path = self.node(mark, None).unwrap_or_default();
                self.stack.push(if is_map {
                    Frame::Mapping { path, key: None }
                } else {
                    Frame::Sequence { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}
