//! Field paths such as `agent.scrape_configs[0].interval`: how errors name the place of a problem.

use std::fmt;

/// The path of a field in a config document, from the root.
///
/// Displays as the user would point at it: mapping keys joined by `.`, sequence indexes in brackets,
/// e.g. `agent.scrape_configs[0].relabel_configs[2].regex`. The root displays as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath {
    segments: Vec<PathSegment>,
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A sequence index, from 0.
    Index(usize),
}

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        FieldPath::default()
    }

    /// The path of mapping key `key` under this path.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.segments.push(PathSegment::Key(key.into()));
        p
    }

    /// The path of sequence item `index` under this path.
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.segments.push(PathSegment::Index(index));
        p
    }

    /// The enclosing path, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.segments.pop()?;
        Some(p)
    }

    /// The last step, or `None` at the root.
    pub fn last(&self) -> Option<&PathSegment> {
        self.segments.last()
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// This path followed by `other`.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut p = self.clone();
        p.segments.extend(other.segments.iter().cloned());
        p
    }

    /// Converts the path serde_path_to_error recorded (relative to where deserialization started).
    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut p = FieldPath::root();
        for s in path.iter() {
            match s {
                Segment::Seq { index } => p.segments.push(PathSegment::Index(*index)),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    p.segments.push(PathSegment::Key(key.clone()))
                }
                Segment::Unknown => {}
            }
        }
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                PathSegment::Key(k) if i == 0 => f.write_str(k)?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_keys_and_indexes() {
        let p = FieldPath::root()
            .key("agent")
            .key("scrape_configs")
            .index(0)
            .key("interval");
        assert_eq!(p.to_string(), "agent.scrape_configs[0].interval");
        assert_eq!(FieldPath::root().to_string(), "");
        assert_eq!(
            p.parent().map(|p| p.to_string()).as_deref(),
            Some("agent.scrape_configs[0]")
        );
    }
}
