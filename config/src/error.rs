//! Config errors: each names the file, line, column and field, and reads as a phrase carrying the input.

use std::fmt;

use crate::path::FieldPath;

/// A line and column in the text the user wrote (before `${VAR}` substitution), both from 1.
/// Columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem in a config or target file.
///
/// Displays as `origin:line:column: field.path: message`, e.g.
/// `surge.yaml:14:7: agent.scrape_configs[0].interval: "1x" is not a duration (e.g. 1s, 500ms)`.
/// The position is left out when unknown (an unreadable file), the path when the problem is not
/// in one field (a YAML syntax error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name (or another label for where the text came from).
    pub origin: String,
    /// Where the offending input starts.
    pub position: Option<Position>,
    /// The field the problem is in.
    pub path: FieldPath,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// What is wrong with a config. Each variant's message carries the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The file could not be read. The OS's reason is part of the message (and not a `source`),
    /// so the chain prints it once.
    #[error("cannot read the file: {reason}")]
    Read { reason: String },
    /// The text is not well-formed YAML (or JSON, for target files).
    #[error("{reason}")]
    Syntax { reason: String },
    /// `${NAME}` names an environment variable that is not set and the reference has no default.
    #[error(
        "environment variable {name:?} is not set (use ${{{name}:-default}} for a default, or $${{{name}}} for a literal)"
    )]
    UnsetVariable { name: String },
    /// A `${` that does not form a variable reference.
    #[error(
        "{text:?} is not a variable reference (expected ${{NAME}} or ${{NAME:-default}}; $$ is a literal $)"
    )]
    MalformedVariable { text: String },
    /// A mapping key that is not part of the schema.
    #[error("unknown field {field:?}{}{}", expected_list(.expected), did_you_mean(.suggestion))]
    UnknownField {
        field: String,
        expected: Vec<String>,
        suggestion: Option<String>,
    },
    /// A value of the wrong type or form for its field, as found while reading the document.
    #[error("{message}")]
    Schema { message: String },
    /// A well-formed value that is not acceptable, as found by validation.
    #[error("{message}")]
    Invalid { message: String },
}

fn expected_list(expected: &[String]) -> String {
    if expected.is_empty() {
        return ", there are no fields here".to_owned();
    }
    let quoted: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
    if quoted.len() == 1 {
        format!(", expected {}", quoted[0])
    } else {
        format!(", expected one of {}", quoted.join(", "))
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

impl ConfigError {
    /// An error without a position yet.
    pub(crate) fn new(origin: &str, path: FieldPath, kind: ConfigErrorKind) -> Self {
        ConfigError {
            origin: origin.to_owned(),
            position: None,
            path,
            kind,
        }
    }

    /// The message without origin, position and path.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.path.is_root() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Every problem found in one config, in document order. Never empty.
///
/// Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps a non-empty list; `None` when there is nothing to report.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            None
        } else {
            Some(ConfigErrors { errors })
        }
    }

    /// Wraps a list in document order (by position; errors without one last; ties keep their order), as
    /// loading reports them: for callers that add problems found after loading. `None` when it is empty.
    pub fn in_document_order(mut errors: Vec<ConfigError>) -> Option<Self> {
        sort_in_document_order(&mut errors);
        Self::from_vec(errors)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ConfigError> + '_ {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Each error's display, one string per error (handy in tests).
    pub fn to_lines(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

/// Sorts by position, errors without one last. The sort is stable, so ties keep check order.
pub(crate) fn sort_in_document_order(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| {
        e.position
            .map_or((usize::MAX, usize::MAX), |p| (p.line, p.column))
    });
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors { errors: vec![e] }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}
