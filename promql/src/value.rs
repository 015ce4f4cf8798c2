//! Values an expression evaluates to, and Prometheus's number and timestamp formatting.

use std::sync::Arc;

use surge_model::{Label, Labels, METRIC_NAME};

use surge_store::cache::Series;

#[derive(Debug, Clone)]
enum Source {
    Series(Arc<Series>),
    Owned(Arc<Labels>),
}

/// A series' labels during evaluation: shared with the cache, with the metric name dropped lazily, so that
/// `sum(rate(x[1m]))` over many series allocates no label sets.
#[derive(Debug, Clone)]
pub struct Metric {
    src: Source,
    drop_name: bool,
}

impl Metric {
    /// The labels of a cached series, without copying them.
    pub fn of_series(s: Arc<Series>) -> Metric {
        Metric {
            src: Source::Series(s),
            drop_name: false,
        }
    }

    pub fn from_labels(labels: Labels) -> Metric {
        Metric {
            src: Source::Owned(Arc::new(labels)),
            drop_name: false,
        }
    }

    fn labels(&self) -> &Labels {
        match &self.src {
            Source::Series(s) => s.labels(),
            Source::Owned(l) => l,
        }
    }

    /// The underlying labels and whether `__name__` is hidden.
    pub(crate) fn parts(&self) -> (&Labels, bool) {
        (self.labels(), self.drop_name)
    }

    /// The same labels without `__name__`.
    pub fn without_name(mut self) -> Metric {
        self.drop_name = true;
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> + '_ {
        let drop = self.drop_name;
        self.labels()
            .iter()
            .filter(move |l| !(drop && &*l.name == METRIC_NAME))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        if self.drop_name && name == METRIC_NAME {
            return None;
        }
        self.labels().get(name)
    }

    /// Materializes the label set.
    pub fn to_labels(&self) -> Labels {
        if !self.drop_name || self.labels().metric_name().is_none() {
            return self.labels().clone();
        }
        Labels::from_pairs(self.iter().map(|l| (l.name.clone(), l.value.clone())))
    }

    /// Hash of the visible labels (as [`Labels::hash64`] would hash them).
    pub fn hash64(&self) -> u64 {
        hash_labels(self.iter().map(|l| (&*l.name, &*l.value)))
    }
}

pub use surge_store::hash_labels;

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct VectorSample {
    pub metric: Metric,
    pub value: f64,
}

/// One point of a range result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub timestamp_ms: i64,
    pub value: f64,
}

/// One series of a range result.
#[derive(Debug, Clone)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<Point>,
}

/// What an expression evaluates to.
#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<VectorSample>),
    Matrix(Vec<RangeSeries>),
}

/// Formats a value as Go's `strconv.FormatFloat(v, 'f', -1, 64)` plus Prometheus's `+Inf`/`-Inf`/`NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's `Display` for f64 prints the shortest round-tripping digits without an exponent, as 'f', -1.
        format!("{v}")
    }
}

/// Formats a millisecond timestamp as Prometheus's JSON does: seconds with up to three decimals
/// (`1700000000`, `1700000000.5` is written `1700000000.500`).
pub fn format_timestamp(ms: i64) -> String {
    let neg = ms < 0;
    let a = ms.unsigned_abs();
    let (s, frac) = (a / 1000, a % 1000);
    let sign = if neg { "-" } else { "" };
    if frac == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}.{frac:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_matches_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1.5e-7), "0.00000015");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(-f64::INFINITY), "-Inf");
        assert_eq!(format_timestamp(1_700_000_000_000), "1700000000");
        assert_eq!(format_timestamp(1_700_000_000_500), "1700000000.500");
        assert_eq!(format_timestamp(1_700_000_000_007), "1700000000.007");
    }

    #[test]
    fn lazy_name_drop() {
        let m = Metric::from_labels(Labels::from_pairs([("__name__", "x"), ("a", "1")]));
        let d = m.clone().without_name();
        assert_eq!(d.get("__name__"), None);
        assert_eq!(d.to_labels(), Labels::from_pairs([("a", "1")]));
        assert_eq!(d.hash64(), Labels::from_pairs([("a", "1")]).hash64());
    }
}
