//! surge's data model: label sets, samples, series identity and staleness, and the target groups
//! discovery produces.
//!
//! Architecture invariant: this crate does no I/O, starts no runtime and knows no wire format. Agent,
//! aggregator and engine all speak these types, so they stay small and cheap to clone.

use std::fmt;

pub mod discovery;
pub mod names;

pub use discovery::TargetGroup;
pub use names::{EscapingScheme, NameValidationScheme, UnknownScheme};

/// The string type of label names and values: a reference-counted string behind one thin pointer (8
/// bytes, where `Arc<str>` takes 16), so a label is 16 bytes and a series of 7 labels holds 112 bytes of
/// them instead of 224. Equal interned strings compare by pointer first.
pub use arcstr::ArcStr;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of Prometheus's staleness marker: a NaN that ends a series at once.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (and not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One value of a series at a point in time (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
}

/// One label: name and value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: ArcStr,
    pub value: ArcStr,
}

impl Label {
    pub fn new(name: impl Into<ArcStr>, value: impl Into<ArcStr>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set kept sorted by name with unique names and no empty values: the identity of a series.
///
/// Invariant: `labels` is sorted by name, names are unique, values are non-empty. Every constructor keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels {
    /// A boxed slice: no spare capacity, and 16 bytes where a `Vec` takes 24.
    labels: Box<[Label]>,
}

impl Labels {
    /// Builds a label set from pairs in any order. Later duplicates replace earlier ones; empty values are
    /// dropped, as Prometheus treats an empty value as an absent label.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<ArcStr>,
        V: Into<ArcStr>,
    {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.build()
    }

    /// The value of label `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.labels[i].value)
    }

    /// The metric name (`__name__`), if set.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Label> + '_ {
        self.labels.iter()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A stable 64-bit hash of the label set, used for sharding and series ids.
    pub fn hash64(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for l in &self.labels {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// A builder that starts from this label set.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.labels.to_vec(),
        }
    }
}

impl fmt::Display for Labels {
    /// Prints `name{a="b", c="d"}` as Prometheus does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.labels.iter().filter(|l| &*l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

/// Mutable label set used while relabeling; `build` restores the `Labels` invariant.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<ArcStr>, value: impl Into<ArcStr>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.labels.iter().position(|l| l.name == name) {
            Some(i) if value.is_empty() => {
                self.labels.remove(i);
            }
            Some(i) => self.labels[i].value = value,
            None if value.is_empty() => {}
            None => self.labels.push(Label { name, value }),
        }
        self
    }

    /// Removes label `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    /// The current value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| &*l.value)
    }

    /// Keeps only the labels for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) -> &mut Self {
        self.labels.retain(|l| keep(l));
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> + '_ {
        self.labels.iter()
    }

    pub fn build(mut self) -> Labels {
        self.labels.sort_by(|a, b| a.name.cmp(&b.name));
        self.labels
            .dedup_by(|later, earlier| later.name == earlier.name);
        Labels {
            labels: self.labels.into_boxed_slice(),
        }
    }
}

/// Whether `name` is a valid *legacy* Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`. Prometheus 3
/// takes any non-empty UTF-8 name by default: see [`NameValidationScheme`].
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `name` is a valid *legacy* Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`. Prometheus 3
/// takes any non-empty UTF-8 name by default: see [`NameValidationScheme`].
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// How urgently a series is scraped and shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Scraped every second by default and shipped the moment its scrape completes.
    Critical,
    /// Scraped every 15 s by default and batched before shipping.
    Standard,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::Standard => "standard",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_without_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let got: Vec<_> = l.iter().map(|l| (&*l.name, &*l.value)).collect();
        assert_eq!(got, vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }

    #[test]
    fn hash_differs_when_a_value_moves_between_labels() {
        let a = Labels::from_pairs([("a", "bc"), ("b", "d")]);
        let b = Labels::from_pairs([("a", "b"), ("b", "cd")]);
        assert_ne!(a.hash64(), b.hash64());
    }

    #[test]
    fn name_validation() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(!is_valid_metric_name(""));
    }
}
