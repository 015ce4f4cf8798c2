//! The text of a config as parsed, and how to find positions in it.
//!
//! Loading goes: substitute `${VAR}` in the raw text ([`Source::substitute`]), index every node's
//! position by field path with yaml-rust2's event parser ([`PositionIndex`]), then let serde read the
//! typed config. Serde and validation report field paths; the index turns them into line and column,
//! and the source map turns positions in the substituted text back into positions in what the user
//! wrote.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::env::Env;
use crate::error::{ConfigError, ConfigErrorKind, Position};
use crate::path::{FieldPath, PathSegment};

/// A document's text after substitution, with the way back to the original positions.
#[derive(Debug)]
pub(crate) struct Source {
    pub origin: String,
    /// The text handed to the YAML parsers.
    pub text: String,
    /// For each character of `text` (and one past its end), the character offset in the original
    /// that produced it. A substituted value maps to its `${`.
    out_to_orig: Vec<usize>,
    /// Character offsets where lines start, in `text` and in the original.
    out_line_starts: Vec<usize>,
    orig_line_starts: Vec<usize>,
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, c) in text.chars().enumerate() {
        if c == '\n' {
            starts.push(i + 1);
        }
    }
    starts
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Source {
    /// The text as is: no substitution (target files).
    pub fn verbatim(origin: &str, text: &str) -> Self {
        let n = text.chars().count();
        let starts = line_starts(text);
        Source {
            origin: origin.to_owned(),
            text: text.to_owned(),
            out_to_orig: (0..=n).collect(),
            out_line_starts: starts.clone(),
            orig_line_starts: starts,
        }
    }

    /// Replaces `${NAME}` and `${NAME:-default}` with values from `env`, and `$$` with `$`.
    ///
    /// `${` followed by a digit (a regex group such as `${1}` in a relabel replacement) and `$` followed
    /// by anything else than `$` or `{` stay as written. Lines that are only a comment are left alone, so
    /// documentation in a config cannot fail to load. Every unset variable is reported, each at its
    /// position.
    pub fn substitute(
        origin: &str,
        original: &str,
        env: &dyn Env,
    ) -> Result<Self, Vec<ConfigError>> {
        let chars: Vec<char> = original.chars().collect();
        let orig_line_starts = line_starts(original);
        let mut text = String::with_capacity(original.len());
        let mut out_to_orig = Vec::with_capacity(chars.len() + 1);
        let mut errors = Vec::new();
        let mut i = 0;
        let mut line_is_comment = false;
        let mut at_line_start = true;
        while i < chars.len() {
            let c = chars[i];
            if c == '\n' {
                at_line_start = true;
                line_is_comment = false;
            } else if at_line_start && !c.is_whitespace() {
                at_line_start = false;
                line_is_comment = c == '#';
            }
            if c != '$' || line_is_comment {
                text.push(c);
                out_to_orig.push(i);
                i += 1;
                continue;
            }
            match chars.get(i + 1) {
                Some('$') => {
                    text.push('$');
                    out_to_orig.push(i);
                    i += 2;
                }
                Some('{') if chars.get(i + 2).copied().is_some_and(is_name_start) => {
                    let name_start = i + 2;
                    let mut j = name_start;
                    while j < chars.len() && is_name_char(chars[j]) {
                        j += 1;
                    }
                    let name: String = chars[name_start..j].iter().collect();
                    let (value, end) = if chars.get(j) == Some(&'}') {
                        (env.var(&name), j + 1)
                    } else if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&'-') {
                        let default_start = j + 2;
                        match chars[default_start..]
                            .iter()
                            .position(|&c| c == '}' || c == '\n')
                            .map(|p| default_start + p)
                            .filter(|&p| chars[p] == '}')
                        {
                            Some(close) => {
                                let default: String = chars[default_start..close].iter().collect();
                                let value = env.var(&name).filter(|v| !v.is_empty());
                                (Some(value.unwrap_or(default)), close + 1)
                            }
                            None => {
                                let text: String = chars[i..default_start].iter().collect();
                                errors.push(Self::error_at(
                                    origin,
                                    &orig_line_starts,
                                    i,
                                    ConfigErrorKind::MalformedVariable { text },
                                ));
                                (Some(String::new()), default_start)
                            }
                        }
                    } else {
                        let end = (j + 1).min(chars.len());
                        let text: String = chars[i..end].iter().collect();
                        errors.push(Self::error_at(
                            origin,
                            &orig_line_starts,
                            i,
                            ConfigErrorKind::MalformedVariable { text },
                        ));
                        (Some(String::new()), end)
                    };
                    match value {
                        Some(v) => {
                            for c in v.chars() {
                                text.push(c);
                                out_to_orig.push(i);
                            }
                        }
                        None => errors.push(Self::error_at(
                            origin,
                            &orig_line_starts,
                            i,
                            ConfigErrorKind::UnsetVariable { name },
                        )),
                    }
                    i = end;
                }
                _ => {
                    text.push('$');
                    out_to_orig.push(i);
                    i += 1;
                }
            }
        }
        out_to_orig.push(chars.len());
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Source {
            origin: origin.to_owned(),
            out_line_starts: line_starts(&text),
            text,
            out_to_orig,
            orig_line_starts,
        })
    }

    fn error_at(
        origin: &str,
        orig_line_starts: &[usize],
        orig_offset: usize,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        let mut e = ConfigError::new(origin, FieldPath::root(), kind);
        e.position = Some(offset_to_position(orig_line_starts, orig_offset));
        e
    }

    /// The original position of character offset `offset` of the substituted text.
    pub fn position_of_offset(&self, offset: usize) -> Position {
        let last = self.out_to_orig.len().saturating_sub(1);
        let orig = self.out_to_orig.get(offset.min(last)).copied().unwrap_or(0);
        offset_to_position(&self.orig_line_starts, orig)
    }

    /// The original position of a 1-based line and column of the substituted text.
    pub fn position_of_line_column(&self, line: usize, column: usize) -> Position {
        let start = self
            .out_line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        self.position_of_offset(start + column.saturating_sub(1))
    }

    /// An error at `path`, positioned with `index` (on the key when `on_key`, else on the value).
    pub fn error(
        &self,
        index: &PositionIndex,
        path: FieldPath,
        on_key: bool,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        let position = index
            .find(&path, on_key)
            .map(|offset| self.position_of_offset(offset));
        let mut e = ConfigError::new(&self.origin, path, kind);
        e.position = position;
        e
    }
}

fn offset_to_position(line_starts: &[usize], offset: usize) -> Position {
    let line = line_starts.partition_point(|&s| s <= offset).max(1);
    let start = line_starts.get(line - 1).copied().unwrap_or(0);
    Position {
        line,
        column: offset - start + 1,
    }
}

/// Where each node of a document is, by field path.
#[derive(Debug, Default)]
pub(crate) struct PositionIndex {
    nodes: HashMap<String, NodePosition>,
}

/// Character offsets (in the substituted text) of a node and, for a mapping value, of its key.
#[derive(Debug, Clone, Copy)]
struct NodePosition {
    key: Option<usize>,
    value: usize,
}

/// Keys that mean the same field: a lookup for one also finds the other.
const ALIASES: [(&str, &str); 2] = [
    ("interval", "scrape_interval"),
    ("timeout", "scrape_timeout"),
];

impl PositionIndex {
    /// Indexes `source`, or reports the YAML syntax error the event parser found.
    pub fn build(source: &Source) -> Result<Self, ConfigError> {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(&source.text);
        match parser.load(&mut builder, false) {
            Ok(()) => match builder.duplicate {
                None => Ok(PositionIndex {
                    nodes: builder.nodes,
                }),
                Some((path, key, offset)) => {
                    let mut err = ConfigError::new(
                        &source.origin,
                        path,
                        ConfigErrorKind::Syntax {
                            reason: format!("{key:?} appears twice in this mapping"),
                        },
                    );
                    err.position = Some(source.position_of_offset(offset));
                    Err(err)
                }
            },
            Err(e) => {
                let mut err = ConfigError::new(
                    &source.origin,
                    FieldPath::root(),
                    ConfigErrorKind::Syntax {
                        reason: e.info().to_owned(),
                    },
                );
                err.position = Some(source.position_of_offset(e.marker().index()));
                Err(err)
            }
        }
    }

    /// The offset of `path` (its key when `on_key` and it has one), or of its nearest indexed ancestor.
    pub fn find(&self, path: &FieldPath, on_key: bool) -> Option<usize> {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(n) = self.lookup(&cur) {
                return Some(if on_key {
                    n.key.unwrap_or(n.value)
                } else {
                    n.value
                });
            }
            p = cur.parent();
        }
        None
    }

    fn lookup(&self, path: &FieldPath) -> Option<NodePosition> {
        if let Some(n) = self.nodes.get(&path.to_string()) {
            return Some(*n);
        }
        let parent = path.parent()?;
        let Some(PathSegment::Key(last)) = path.last() else {
            return None;
        };
        ALIASES.iter().find_map(|(a, b)| {
            let other = if last == a {
                b
            } else if last == b {
                a
            } else {
                return None;
            };
            self.nodes.get(&parent.key(*other).to_string()).copied()
        })
    }
}

#[derive(Default)]
struct IndexBuilder {
    nodes: HashMap<String, NodePosition>,
    stack: Vec<Frame>,
    /// The first key found twice in one mapping: its mapping, the key, and its second position.
    duplicate: Option<(FieldPath, String, usize)>,
}

enum Frame {
    Mapping {
        path: FieldPath,
        /// The key just read, waiting for its value.
        key: Option<(String, usize)>,
    },
    Sequence {
        path: FieldPath,
        next: usize,
    },
    /// A mapping or sequence used as a key: its content has no field path.
    ComplexKey,
}

impl IndexBuilder {
    /// Called for every node: records it and returns its path (`None` inside a complex key, or when the
    /// node is a mapping key).
    fn node(&mut self, offset: usize, key_text: Option<&str>) -> Option<FieldPath> {
        let (path, key) = match self.stack.last_mut() {
            None => (FieldPath::root(), None),
            Some(Frame::ComplexKey) => return None,
            Some(Frame::Sequence { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                (p, None)
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some((k, key_offset)) => (path.key(k), Some(key_offset)),
                None => {
                    *key = Some((key_text.unwrap_or("?").to_owned(), offset));
                    // A block mapping's start event is marked at its first `:`; the mapping really
                    // starts at its first key.
                    let map_path = path.to_string();
                    if let Some(n) = self.nodes.get_mut(&map_path) {
                        n.value = n.value.min(offset);
                    }
                    return None;
                }
            },
        };
        let previous = self
            .nodes
            .insert(path.to_string(), NodePosition { key, value: offset });
        if let (Some(_), Some(key_offset), None) = (previous, key, &self.duplicate)
            && let Some(PathSegment::Key(k)) = path.last()
        {
            self.duplicate = Some((path.parent().unwrap_or_default(), k.clone(), key_offset));
        }
        Some(path)
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let offset = mark.index();
        match ev {
            Event::Scalar(value, ..) => {
                self.node(offset, Some(&value));
            }
            Event::Alias(_) => {
                self.node(offset, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                if self.in_key_position() || matches!(self.stack.last(), Some(Frame::ComplexKey)) {
                    // Record a placeholder key so the value after it still gets indexed.
                    if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some(("?".to_owned(), offset));
                    }
                    self.stack.push(Frame::ComplexKey);
                    return;
                }
                let path = self.node(offset, None).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn pos(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn substitutes_variables_defaults_and_dollars() {
        let env = MapEnv::new().with("NODE", "n1").with("EMPTY", "");
        let s = Source::substitute(
            "t",
            "a: ${NODE}\nb: ${MISSING:-x y}\nc: $$HOME ${1} $1 a$\nd: ${EMPTY:-dflt}\n# ${NOT_SET}\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            s.text,
            "a: n1\nb: x y\nc: $HOME ${1} $1 a$\nd: dflt\n# ${NOT_SET}\n"
        );
        // "x y" came from the reference at line 2, column 4.
        assert_eq!(s.position_of_line_column(2, 6), pos(2, 4));
        // After `$$` became `$`, columns shift back to the original.
        assert_eq!(s.position_of_line_column(3, 10), pos(3, 11));
    }

    #[test]
    fn reports_every_unset_variable_at_its_position() {
        let errs = Source::substitute(
            "f.yaml",
            "a: ${A}\nb:\n  c: x${B}\n  d: ${C\n",
            &MapEnv::new(),
        )
        .unwrap_err();
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                r#"f.yaml:1:4: environment variable "A" is not set (use ${A:-default} for a default, or $${A} for a literal)"#,
                r#"f.yaml:3:7: environment variable "B" is not set (use ${B:-default} for a default, or $${B} for a literal)"#,
                r#"f.yaml:4:6: "${C\n" is not a variable reference (expected ${NAME} or ${NAME:-default}; $$ is a literal $)"#,
            ]
        );
    }

    #[test]
    fn indexes_keys_and_values() {
        let s = Source::verbatim(
            "t",
            "agent:\n  scrape_configs:\n    - job_name: web\n      scrape_interval: 1x\n  listen: \"a\"\n",
        );
        let idx = PositionIndex::build(&s).unwrap();
        let at = |p: FieldPath, key: bool| idx.find(&p, key).map(|o| s.position_of_offset(o));
        let sc = FieldPath::root()
            .key("agent")
            .key("scrape_configs")
            .index(0);
        assert_eq!(at(sc.key("job_name"), false), Some(pos(3, 17)));
        assert_eq!(at(sc.key("job_name"), true), Some(pos(3, 7)));
        // Found through its alias.
        assert_eq!(at(sc.key("interval"), false), Some(pos(4, 24)));
        // A field that is not written falls back to its parent.
        assert_eq!(at(sc.key("timeout"), false), Some(pos(3, 7)));
        assert_eq!(
            at(FieldPath::root().key("agent").key("listen"), false),
            Some(pos(5, 11))
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let s = Source::verbatim("t.yaml", "a:\n  b: [1, 2\n");
        let e = PositionIndex::build(&s).unwrap_err();
        assert!(e.to_string().starts_with("t.yaml:"), "{e}");
        assert!(e.position.is_some());
    }
}
