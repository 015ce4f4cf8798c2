//! OpenMetrics 1.0 text: line syntax and the cross-line rules (families, grouping, histogram
//! consistency, name clashes) that the upstream conformance suite checks.
//!
//! The rules mirror the reference parser (`prometheus_client/openmetrics/parser.py`), applied as lines
//! arrive: a family's end-of-family checks run when the next family (or `# EOF`) starts, so such an
//! error points at that line.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::scan::{self, Dialect, LabelIter, NameInBraces, ScanError, Shape};
use super::{Entry, MetricType, Name, Sample};

type LineResult<T> = Result<T, ScanError>;

/// Longest exemplar label set, counted in characters over names and values.
const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Validation state carried from line to line.
#[derive(Default)]
pub(super) struct Validator<'a> {
    /// Only what Prometheus's own parser checks (line syntax), not the conformance suite's cross-line
    /// rules.
    prometheus: bool,
    eof: bool,
    family: Option<Family<'a>>,
    /// Every sample name claimed by a finished family (`family` + each suffix its type allows).
    seen_names: HashSet<JoinedName<'a>>,
    /// Groups of the current family already finished, by hash (a hash collision can only hide an error,
    /// never invent one: equality is checked on the labels themselves).
    seen_groups: HashMap<u64, Group<'a>>,
}

/// The family being read.
struct Family<'a> {
    name: Cow<'a, str>,
    /// The name as written (without quotes, escapes kept): what label names read raw from a line
    /// compare with (a stateset's own label).
    raw_name: &'a str,
    kind: MetricType,
    /// A `# TYPE` line was seen (or the family was opened by an untyped sample).
    typed: bool,
    help: bool,
    unit: Option<&'a str>,
    has_samples: bool,
    /// The group of the previous sample, and its timestamp in seconds.
    group: Option<(Group<'a>, Option<f64>)>,
    histogram: Option<HistogramGroup<'a>>,
}

impl<'a> Family<'a> {
    fn new(name: Cow<'a, str>, raw_name: &'a str) -> Self {
        Self {
            name,
            raw_name,
            kind: MetricType::Unknown,
            typed: false,
            help: false,
            unit: None,
            has_samples: false,
            group: None,
            histogram: None,
        }
    }

    /// The suffix `sample_name` has as a member of this family, if it is one.
    fn member_suffix(&self, sample_name: &str) -> Option<&'static str> {
        let rest = sample_name.strip_prefix(self.name.as_ref())?;
        suffixes(self.kind).iter().find(|s| **s == rest).copied()
    }
}

/// The sample names a family of each type owns, as suffixes of the family name.
fn suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

/// `family` + `suffix`, compared and hashed as the joined string without building it.
#[derive(Clone)]
struct JoinedName<'a>(Cow<'a, str>, &'static str);

impl JoinedName<'_> {
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.bytes().chain(self.1.bytes())
    }
}

impl PartialEq for JoinedName<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() + self.1.len() == other.0.len() + other.1.len()
            && self.bytes().eq(other.bytes())
    }
}

impl Eq for JoinedName<'_> {}

impl Hash for JoinedName<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.bytes() {
            state.write_u8(b);
        }
    }
}

/// A sample's group: its labels minus the one that tells group members apart (`le`, `quantile`, the
/// stateset's own label). Compared as a set, order-insensitive.
#[derive(Clone, Copy)]
struct Group<'a> {
    hash: u64,
    raw_labels: &'a str,
    skip: Option<&'a str>,
}

impl<'a> Group<'a> {
    fn new(raw_labels: &'a str, skip: Option<&'a str>) -> Self {
        let mut hash = 0u64;
        let mut labels = LabelIter::new(raw_labels);
        while let Some((name, value, _)) = labels.next_raw() {
            if Some(name) != skip {
                hash = hash.wrapping_add(pair_hash(name, value));
            }
        }
        Self {
            hash,
            raw_labels,
            skip,
        }
    }

    /// All samples of an info family form one group.
    fn everything() -> Self {
        Self {
            hash: 0,
            raw_labels: "",
            skip: None,
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let mut labels = LabelIter::new(self.raw_labels);
        std::iter::from_fn(move || labels.next_raw().map(|(n, v, _)| (n, v)))
            .filter(|(n, _)| Some(*n) != self.skip)
    }

    fn same(&self, other: &Group<'_>) -> bool {
        if self.hash != other.hash {
            return false;
        }
        // Label names are unique within a set, so equal counts plus inclusion is equality.
        self.pairs().count() == other.pairs().count()
            && self.pairs().all(|pair| other.pairs().any(|p| p == pair))
    }
}

/// FNV-1a over `name`, a separator and `value`, then a 64-bit finalizer, so that summing pairs (which
/// makes the group hash order-insensitive) still spreads well.
fn pair_hash(name: &str, value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0xff]).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Running state of one histogram group (a label set and timestamp), checked when the group ends.
struct HistogramGroup<'a> {
    group: Group<'a>,
    timestamp: Option<f64>,
    count: Option<f64>,
    /// Bound and value of the last bucket.
    bucket: Option<f64>,
    value: f64,
    negative_buckets: bool,
    sum: bool,
    gsum: bool,
    negative_gsum: bool,
}

impl<'a> HistogramGroup<'a> {
    fn new(group: Group<'a>, timestamp: Option<f64>) -> Self {
        Self {
            group,
            timestamp,
            count: None,
            bucket: None,
            value: 0.0,
            negative_buckets: false,
            sum: false,
            gsum: false,
            negative_gsum: false,
        }
    }

    fn check(&self, family: &str) -> Result<(), String> {
        let problem = if self.bucket != Some(f64::INFINITY) {
            "has no +Inf bucket"
        } else if self.count.is_some_and(|c| c != self.value) {
            "has a count that differs from its +Inf bucket"
        } else if self.sum && self.count.is_none() {
            "has _sum without _count"
        } else if self.gsum && self.count.is_none() {
            "has _gsum without _gcount"
        } else if !(self.sum || self.gsum) && self.count.is_some() {
            "has a count without a sum"
        } else if self.negative_buckets && self.sum {
            "has _sum despite negative buckets"
        } else if !self.negative_buckets && self.negative_gsum {
            "has a negative _gsum without negative buckets"
        } else {
            return Ok(());
        };
        Err(format!("histogram {family} {problem}"))
    }
}

/// The syntax of one sample line.
struct SampleLine<'a> {
    sample: Sample<'a>,
    timestamp_s: Option<f64>,
    exemplar_at: Option<usize>,
}

impl<'a> Validator<'a> {
    /// A validator that checks only what Prometheus's parser (`model/textparse/openmetricsparse.go`)
    /// checks: each line's syntax, metric types and that a unit is a suffix of its metric's name.
    pub(super) fn prometheus() -> Self {
        Self {
            prometheus: true,
            ..Self::default()
        }
    }

    pub(super) fn saw_eof(&self) -> bool {
        self.eof
    }

    /// Validates one line (without its `\n`). `Ok(None)` is `# EOF`.
    pub(super) fn line(&mut self, line: &'a str) -> LineResult<Option<Entry<'a>>> {
        match line.as_bytes().first() {
            None => Err(ScanError::new(0, "blank line")),
            Some(b'#') => self.metadata(line),
            Some(_) => self.sample(line).map(|s| Some(Entry::Sample(s))),
        }
    }

    fn metadata(&mut self, line: &'a str) -> LineResult<Option<Entry<'a>>> {
        if line == "# EOF" {
            if !self.prometheus {
                self.close_family()?;
            }
            self.eof = true;
            return Ok(None);
        }
        // `# KEYWORD name text`: exactly single spaces, and the text (possibly empty) is mandatory.
        let Some(rest) = line.strip_prefix("# ") else {
            return Err(ScanError::new(
                0,
                "expected '# HELP', '# TYPE', '# UNIT' or '# EOF'",
            ));
        };
        let (keyword, after) = rest.split_once(' ').unwrap_or((rest, ""));
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return Err(ScanError::new(
                2,
                format!("unknown metadata keyword {keyword:?}"),
            ));
        }
        let name_at = 2 + keyword.len() + 1;
        // The name is bare, or quoted (`# TYPE "my.metric" gauge`) as Prometheus 3 writes it.
        let token = scan::metric_name_token(line, name_at);
        let name_end = token.as_ref().map(|(_, end)| *end);
        let Some(entry_name) = token
            .map(|(name, _)| name)
            .filter(|_| name_end.is_some_and(|end| line.as_bytes().get(end) == Some(&b' ')))
        else {
            if !after.contains(' ') {
                return Err(ScanError::new(
                    name_at.min(line.len()),
                    format!("expected metric name and text after {keyword}"),
                ));
            }
            let word = after.split(' ').next().unwrap_or_default();
            return Err(ScanError::new(
                name_at,
                format!("invalid metric name {word:?}"),
            ));
        };
        let name = entry_name.to_cow();
        let name_end = name_end.unwrap_or(name_at);
        let text_at = name_end + 1;
        let text = &line[text_at..];
        match &self.family {
            Some(f) if f.name == name => {
                if f.has_samples && !self.prometheus {
                    return Err(ScanError::new(
                        0,
                        format!("{keyword} for {name} after its samples"),
                    ));
                }
            }
            _ => {
                if !self.prometheus {
                    self.close_family()?;
                }
                self.family = Some(Family::new(name.clone(), entry_name.raw()));
            }
        }
        let Some(family) = self.family.as_mut() else {
            return Err(ScanError::new(0, "internal: no open family"));
        };
        let entry = match keyword {
            "HELP" => {
                if family.help && !self.prometheus {
                    return Err(ScanError::new(0, format!("more than one HELP for {name}")));
                }
                family.help = true;
                // OpenMetrics escapes `\"` in HELP too (the text format does not).
                let text = if text.contains('\\') {
                    Cow::Owned(scan::unescape_label(text))
                } else {
                    Cow::Borrowed(text)
                };
                Entry::Help {
                    family: entry_name,
                    text,
                }
            }
            "TYPE" => {
                if family.typed && !self.prometheus {
                    return Err(ScanError::new(0, format!("more than one TYPE for {name}")));
                }
                let Some(kind) = MetricType::from_openmetrics(text) else {
                    return Err(ScanError::new(
                        text_at,
                        format!("invalid metric type {text:?}"),
                    ));
                };
                family.kind = kind;
                family.typed = true;
                Entry::Type {
                    family: entry_name,
                    kind,
                }
            }
            _ => {
                if family.unit.is_some() && !self.prometheus {
                    return Err(ScanError::new(0, format!("more than one UNIT for {name}")));
                }
                let matches_name = name
                    .strip_suffix(text)
                    .is_some_and(|stem| stem.ends_with('_'));
                if !text.is_empty() && !matches_name {
                    return Err(ScanError::new(
                        text_at,
                        format!("unit {text:?} is not a suffix of the metric name {name}"),
                    ));
                }
                family.unit = Some(text);
                Entry::Unit {
                    family: entry_name,
                    unit: text,
                }
            }
        };
        if !self.prometheus
            && family.unit.is_some_and(|u| !u.is_empty())
            && matches!(family.kind, MetricType::Info | MetricType::StateSet)
        {
            return Err(ScanError::new(
                0,
                format!(
                    "{} {} cannot have a unit",
                    family.kind.as_str(),
                    family.name
                ),
            ));
        }
        Ok(Some(entry))
    }

    /// Runs the end-of-family checks and claims the family's sample names.
    fn close_family(&mut self) -> LineResult<()> {
        let Some(family) = self.family.take() else {
            return Ok(());
        };
        if let Some(h) = &family.histogram {
            h.check(&family.name).map_err(|e| ScanError::new(0, e))?;
        }
        let own = suffixes(family.kind);
        let extra: &[&'static str] = if own.contains(&"") { &[] } else { &[""] };
        for suffix in own.iter().chain(extra) {
            if !self
                .seen_names
                .insert(JoinedName(family.name.clone(), suffix))
            {
                return Err(ScanError::new(
                    0,
                    format!(
                        "metric name {}{suffix} clashes with an earlier family",
                        family.name
                    ),
                ));
            }
        }
        self.seen_groups.clear();
        Ok(())
    }

    fn sample(&mut self, line: &'a str) -> LineResult<Sample<'a>> {
        let parsed = parse_sample_line(line)?;
        let SampleLine {
            mut sample,
            timestamp_s,
            exemplar_at,
        } = parsed;
        if self.prometheus {
            // A sample has its family's type when it is one of the family's samples; Prometheus checks
            // nothing across lines.
            sample.kind = self
                .family
                .as_ref()
                .filter(|f| f.member_suffix(&sample.name.to_cow()).is_some())
                .map_or(MetricType::Unknown, |f| f.kind);
            return Ok(sample);
        }
        let suffix = match self
            .family
            .as_ref()
            .and_then(|f| f.member_suffix(&sample.name.to_cow()))
        {
            Some(suffix) => suffix,
            None => {
                // A sample outside the current family starts an untyped one of its own.
                self.close_family()?;
                // Only a stateset reads `raw_name`, and this family is untyped.
                let raw_name = sample.name.as_str().unwrap_or_default();
                let mut family = Family::new(sample.name.to_cow(), raw_name);
                family.typed = true;
                self.family = Some(family);
                ""
            }
        };
        let Some(family) = self.family.as_mut() else {
            return Err(ScanError::new(0, "internal: no open family"));
        };
        family.has_samples = true;
        let kind = family.kind;
        let fam = family.raw_name;
        sample.kind = kind;
        let value = sample.value;
        let err = |reason: String| Err(ScanError::new(0, reason));

        // Labels with a meaning for this type.
        let mut le = None;
        let mut quantile = None;
        let mut state = false;
        if !sample.raw_labels.is_empty() {
            let mut labels = LabelIter::new(sample.raw_labels);
            while let Some((n, v, _)) = labels.next_raw() {
                match n {
                    "le" => le = Some(v),
                    "quantile" => quantile = Some(v),
                    _ => {}
                }
                state |= n == fam;
            }
        }
        if kind == MetricType::StateSet && !state {
            return err(format!("stateset sample has no {fam:?} label"));
        }
        let mut bucket_bound = None;
        if suffix == "_bucket" {
            let bound = le.and_then(|le| scan::parse_number(le).map(|b| (le, b)));
            match bound {
                Some((text, b)) if b.is_finite() || text == "+Inf" || text == "-Inf" => {
                    bucket_bound = Some(b);
                }
                _ => return err(format!("bucket needs a numeric le label, got {le:?}")),
            }
            if !is_integer(value) {
                return err(format!("bucket value {value} is not an integer"));
            }
        }
        if matches!(suffix, "_count" | "_gcount") && !is_integer(value) {
            return err(format!("count value {value} is not an integer"));
        }
        if kind == MetricType::Summary && suffix.is_empty() {
            let q = quantile.and_then(scan::parse_number);
            if !q.is_some_and(|q| (0.0..=1.0).contains(&q)) {
                return err(format!(
                    "summary quantile needs a quantile label in [0, 1], got {quantile:?}"
                ));
            }
        }

        // Grouping: a group's samples are contiguous, and within a group timestamps are all present or
        // all absent, and never go backwards.
        let skip = match kind {
            MetricType::Summary if suffix.is_empty() => Some("quantile"),
            MetricType::StateSet => Some(fam),
            MetricType::Histogram | MetricType::GaugeHistogram if suffix == "_bucket" => Some("le"),
            _ => None,
        };
        let group = if kind == MetricType::Info {
            Group::everything()
        } else {
            Group::new(sample.raw_labels, skip)
        };
        match &family.group {
            Some((current, previous_ts)) if current.same(&group) => {
                if previous_ts.is_some() != timestamp_s.is_some() {
                    return err("mix of samples with and without timestamp in a group".to_owned());
                }
                if let (Some(p), Some(t)) = (previous_ts, timestamp_s)
                    && *p > t
                    && kind != MetricType::Info
                {
                    return err("timestamps went backwards within a group".to_owned());
                }
            }
            previous => {
                if previous.is_some()
                    && self
                        .seen_groups
                        .get(&group.hash)
                        .is_some_and(|g| g.same(&group))
                {
                    return err(format!("samples of one group of {fam} are not contiguous"));
                }
                self.seen_groups.insert(group.hash, group);
            }
        }
        family.group = Some((group, timestamp_s));

        // Values.
        if kind == MetricType::StateSet && value != 0.0 && value != 1.0 {
            return err(format!("stateset value must be 0 or 1, got {value}"));
        }
        if kind == MetricType::Info && value != 1.0 {
            return err(format!("info value must be 1, got {value}"));
        }
        if kind == MetricType::Summary && suffix.is_empty() && value < 0.0 {
            return err(format!("quantile value cannot be negative, got {value}"));
        }
        let counter_like = matches!(
            suffix,
            "_total" | "_sum" | "_count" | "_bucket" | "_gcount" | "_gsum"
        );
        if counter_like && value.is_nan() {
            return err(format!("{} cannot be NaN", sample.name));
        }
        if counter_like && suffix != "_gsum" && value < 0.0 {
            return err(format!("{} cannot be negative, got {value}", sample.name));
        }
        if let Some(at) = exemplar_at {
            let allowed = match kind {
                MetricType::Histogram | MetricType::GaugeHistogram => suffix == "_bucket",
                MetricType::Counter => suffix == "_total",
                _ => false,
            };
            if !allowed {
                return Err(ScanError::new(
                    at,
                    "exemplars are only allowed on histogram buckets and counter totals",
                ));
            }
        }

        // Histogram consistency, per group and timestamp.
        if matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram) && !suffix.is_empty()
        {
            let same = family
                .histogram
                .as_ref()
                .is_some_and(|h| h.group.same(&group) && h.timestamp == timestamp_s);
            if !same {
                if let Some(h) = family.histogram.take() {
                    h.check(fam).map_err(|e| ScanError::new(0, e))?;
                }
                family.histogram = Some(HistogramGroup::new(group, timestamp_s));
            }
            if let Some(h) = family.histogram.as_mut() {
                match suffix {
                    "_bucket" => {
                        let b = bucket_bound.unwrap_or(f64::NAN);
                        h.negative_buckets |= b < 0.0;
                        if h.bucket.is_some_and(|prev| b <= prev) {
                            return err(format!("buckets of {fam} are out of order"));
                        }
                        if value < h.value {
                            return err(format!("bucket values of {fam} decrease"));
                        }
                        h.bucket = Some(b);
                        h.value = value;
                    }
                    "_count" | "_gcount" => h.count = Some(value),
                    "_sum" => h.sum = true,
                    "_gsum" => {
                        h.gsum = true;
                        h.negative_gsum |= value < 0.0;
                    }
                    _ => {}
                }
            }
        }
        Ok(sample)
    }
}

fn is_integer(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0
}

/// `name[{labels}] SP value [SP timestamp] [SP # SP {labels} SP value [SP timestamp]]`.
fn parse_sample_line(line: &str) -> LineResult<SampleLine<'_>> {
    let b = line.as_bytes();
    let name_end = scan::metric_name_end(b, 0);
    if name_end == 0 && b.first() != Some(&b'{') {
        return Err(ScanError::new(0, "expected metric name"));
    }
    let mut name = (name_end > 0).then(|| Name::plain(&line[..name_end]));
    let mut key_end = name_end;
    let mut raw_labels = "";
    let mut shape = Shape::EMPTY;
    if b.get(name_end) == Some(&b'{') {
        // Without a name before the braces, it is the quoted one inside (`{"my.metric",a="b"}`).
        let names = if name.is_none() {
            NameInBraces::Allowed
        } else {
            NameInBraces::Forbidden
        };
        let set = scan::scan_labels(b, name_end, Dialect::OpenMetrics, names)?;
        if let Some(q) = set.name {
            name = Some(q.name(line));
        }
        let close = set.close;
        shape = set.shape;
        raw_labels = &line[name_end + 1..close];
        key_end = close + 1;
    }
    let Some(name) = name else {
        return Err(ScanError::new(0, "metric name not set"));
    };
    if b.get(key_end) != Some(&b' ') {
        return Err(ScanError::new(key_end, "expected ' ' and a value"));
    }
    let (value, mut i) = number_token(line, key_end + 1, "value")?;
    let mut timestamp_s = None;
    let mut exemplar_at = None;
    if i < b.len() {
        // `i` is at a space.
        i += 1;
        if b.get(i) != Some(&b'#') {
            let (t, end) = timestamp_token(line, i)?;
            timestamp_s = Some(t);
            i = end;
            if i < b.len() {
                i += 1;
                if b.get(i) != Some(&b'#') {
                    return Err(ScanError::new(i, "expected '#' to start an exemplar"));
                }
            }
        }
        if i < b.len() {
            exemplar(line, i)?;
            exemplar_at = Some(i);
        }
    }
    Ok(SampleLine {
        sample: Sample {
            name,
            series_key: &line[..key_end],
            value,
            timestamp_ms: timestamp_s.map(scan::seconds_to_millis),
            kind: MetricType::Unknown,
            raw_labels,
            shape,
        },
        timestamp_s,
        exemplar_at,
    })
}

/// A number running from `at` to the next space (or the end); returns it and where it ends.
fn number_token(line: &str, at: usize, what: &str) -> LineResult<(f64, usize)> {
    let end = line
        .as_bytes()
        .get(at..)
        .and_then(|rest| memchr::memchr(b' ', rest))
        .map_or(line.len(), |p| at + p);
    let token = line.get(at..end).unwrap_or_default();
    match scan::parse_number(token) {
        Some(v) => Ok((v, end)),
        None => Err(ScanError::new(at, format!("invalid {what} {token:?}"))),
    }
}

/// A timestamp in seconds: any finite number.
fn timestamp_token(line: &str, at: usize) -> LineResult<(f64, usize)> {
    let (t, end) = number_token(line, at, "timestamp")?;
    if !t.is_finite() {
        return Err(ScanError::new(at, "timestamp must be finite"));
    }
    Ok((t, end))
}

/// Validates an exemplar ` # {labels} value [timestamp]` whose `#` is at `at`; it is then dropped.
fn exemplar(line: &str, at: usize) -> LineResult<()> {
    let b = line.as_bytes();
    if b.get(at + 1) != Some(&b' ') || b.get(at + 2) != Some(&b'{') {
        return Err(ScanError::new(at, "expected '# {' to start an exemplar"));
    }
    let open = at + 2;
    let close = scan::scan_labels(b, open, Dialect::OpenMetrics, NameInBraces::Forbidden)?.close;
    let chars: usize = LabelIter::new(&line[open + 1..close])
        .map(|(n, v)| n.to_cow().chars().count() + v.chars().count())
        .sum();
    if chars > MAX_EXEMPLAR_LABEL_CHARS {
        return Err(ScanError::new(
            open,
            format!(
                "exemplar labels are {chars} characters long, over the limit of {MAX_EXEMPLAR_LABEL_CHARS}"
            ),
        ));
    }
    if b.get(close + 1) != Some(&b' ') {
        return Err(ScanError::new(
            close + 1,
            "expected ' ' and an exemplar value",
        ));
    }
    let (_, end) = number_token(line, close + 2, "exemplar value")?;
    if end < b.len() {
        let (_, end) = timestamp_token(line, end + 1)?;
        if end < b.len() {
            return Err(ScanError::new(end, "unexpected data after the exemplar"));
        }
    }
    Ok(())
}
