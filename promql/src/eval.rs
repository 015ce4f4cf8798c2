//! Evaluation of the AST over the series cache, with Prometheus 2.42 semantics.
//!
//! # Selection rules
//!
//! - Instant selectors take each series' newest sample at or before `t - offset`, if it is no older than
//!   the lookback delta (inclusive, as in 2.x) and not a staleness marker.
//! - Range selectors take the samples in `[t - offset - range, t - offset]` (both ends inclusive, as in
//!   2.x), skipping staleness markers.
//! - **Freshness (surge rule):** with [`EvalOptions::freshness`] set, an instant selector also drops a
//!   series whose newest sample is older than `t - freshness` (counted as a stale read). The autoscaling path
//!   sets it to `stale_after` so a scaling rule never acts on a value from a dead target; the Prometheus API
//!   leaves it unset, so Grafana and `query_range` see exactly what Prometheus would show. Range functions
//!   (`rate(x[30s])`, …) apply the same rule to the series they read: a target that stopped reporting
//!   `freshness` ago no longer adds its old rate to a sum.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use surge_model::{Labels, METRIC_NAME, Sample, is_stale_nan};

use super::ast::*;
use super::functions::{self as f, Bucket};
use super::value::*;
use crate::options::QueryOptions;
use surge_store::block::{SampleRing, Window};
use surge_store::cache::{IdBuildHasher, SelectError, Series, SeriesCache, range_without_markers};
use surge_store::{CacheOptions, millis};

/// Options of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    pub lookback_delta: Duration,
    /// The most series the selectors of one evaluation step may touch.
    pub max_series: usize,
    /// When set, instant selectors ignore series whose newest sample is older than this (surge rule, for the
    /// autoscaling path; see the module docs).
    pub freshness: Option<Duration>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions::prometheus(&QueryOptions::default())
    }
}

impl EvalOptions {
    /// Prometheus-compatible evaluation: lookback only.
    pub fn prometheus(q: &QueryOptions) -> EvalOptions {
        EvalOptions {
            lookback_delta: q.lookback_delta,
            max_series: q.max_series,
            freshness: None,
        }
    }

    /// The autoscaling path: also drop values older than `stale_after`.
    pub fn autoscaling(q: &QueryOptions, c: &CacheOptions) -> EvalOptions {
        EvalOptions {
            freshness: Some(c.stale_after),
            ..EvalOptions::prometheus(q)
        }
    }
}

/// Why an evaluation failed (an `execution` error on the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The selectors touched more than `max_series` series.
    #[error("query touches more than {limit} series (the aggregator's query max_series limit)")]
    TooManySeries { limit: usize },
    /// Dropping the metric name made two results identical.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    /// The right side of a one-to-one operation has two series for one match group.
    #[error(
        "found duplicate series for the match group {group} on the right hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    ManyToMany { group: String, a: String, b: String },
    /// The left side of a one-to-one operation has two series for one match group.
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOne,
    /// A range query over an expression that is not a scalar or instant vector.
    #[error("invalid expression type {0:?} for range query, must be Scalar or instant Vector")]
    RangeQueryType(&'static str),
}

impl From<SelectError> for EvalError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::TooManySeries { limit } => EvalError::TooManySeries { limit },
        }
    }
}

/// Evaluates `expr` at `t_ms`.
pub fn eval_instant(
    cache: &SeriesCache,
    expr: &Expr,
    t_ms: i64,
    opts: &EvalOptions,
) -> Result<Value, EvalError> {
    let mut ev = Evaluator::new(cache, opts);
    let v = ev.eval(expr, t_ms)?;
    ev.finish();
    Ok(match v {
        Value::Vector(mut v) => {
            v.sort_by_cached_key(|s| s.metric.to_labels());
            Value::Vector(v)
        }
        other => other,
    })
}

/// Evaluates `expr` at `start, start + step, … ≤ end`; the result is sorted by labels.
pub fn eval_range(
    cache: &SeriesCache,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &EvalOptions,
) -> Result<Vec<RangeSeries>, EvalError> {
    match expr.value_type() {
        ValueType::Scalar | ValueType::Vector => {}
        t => return Err(EvalError::RangeQueryType(t.name())),
    }
    let mut ev = Evaluator::new(cache, opts);
    let mut series: HashMap<Labels, Vec<Point>> = HashMap::new();
    let mut t = start_ms;
    let step = step_ms.max(1);
    while t <= end_ms {
        ev.touched = 0;
        match ev.eval(expr, t)? {
            Value::Scalar(v) => series.entry(Labels::default()).or_default().push(Point {
                timestamp_ms: t,
                value: v,
            }),
            Value::Vector(v) => {
                for s in v {
                    series.entry(s.metric.to_labels()).or_default().push(Point {
                        timestamp_ms: t,
                        value: s.value,
                    });
                }
            }
            Value::String(_) | Value::Matrix(_) => {
                return Err(EvalError::RangeQueryType(expr.value_type().name()));
            }
        }
        t += step;
    }
    ev.finish();
    let mut out: Vec<RangeSeries> = series
        .into_iter()
        .map(|(labels, points)| RangeSeries { labels, points })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

struct Evaluator<'a> {
    cache: &'a SeriesCache,
    opts: &'a EvalOptions,
    lookback_ms: i64,
    freshness_ms: Option<i64>,
    touched: usize,
    stale_reads: u64,
    buf: Vec<Sample>,
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let ExprKind::Paren(inner) = &e.kind {
        e = inner;
    }
    e
}

fn has_name_equality(sel: &VectorSelector) -> bool {
    sel.matchers
        .iter()
        .any(|m| m.name == METRIC_NAME && m.op == surge_store::MatchOp::Equal)
}

/// Errors when two samples have the same visible labels.
fn check_unique(v: &[VectorSample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(s.metric.hash64()) {
            return Err(EvalError::DuplicateLabelset);
        }
    }
    Ok(())
}

fn scalar_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Mod => (l % r, true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
    }
}

fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Labels of `m` kept or removed by a one-to-one matching clause.
fn signature(m: &Metric, matching: Option<&VectorMatching>) -> u64 {
    hash_labels(
        m.iter()
            .filter(|l| match matching {
                Some(VectorMatching { on: true, labels }) => labels.iter().any(|n| *n == *l.name),
                Some(VectorMatching { on: false, labels }) => {
                    &*l.name != METRIC_NAME && !labels.iter().any(|n| *n == *l.name)
                }
                None => &*l.name != METRIC_NAME,
            })
            .map(|l| (&*l.name, &*l.value)),
    )
}

impl<'a> Evaluator<'a> {
    fn new(cache: &'a SeriesCache, opts: &'a EvalOptions) -> Self {
        Evaluator {
            cache,
            opts,
            lookback_ms: millis(opts.lookback_delta),
            freshness_ms: opts.freshness.map(millis),
            touched: 0,
            stale_reads: 0,
            buf: Vec::with_capacity(512),
        }
    }

    fn finish(&mut self) {
        if self.stale_reads > 0 {
            self.cache.metrics().stale_reads.inc_by(self.stale_reads);
            self.stale_reads = 0;
        }
    }

    fn select(&mut self, sel: &VectorSelector) -> Result<Vec<Arc<Series>>, EvalError> {
        let limit = self.opts.max_series.saturating_sub(self.touched);
        let series =
            self.cache
                .select(&sel.matchers, limit)
                .map_err(|_| EvalError::TooManySeries {
                    limit: self.opts.max_series,
                })?;
        self.touched += series.len();
        Ok(series)
    }

    fn eval(&mut self, e: &Expr, t: i64) -> Result<Value, EvalError> {
        Ok(match &e.kind {
            ExprKind::Number(n) => Value::Scalar(*n),
            ExprKind::String(s) => Value::String(s.clone()),
            ExprKind::Paren(inner) => self.eval(inner, t)?,
            ExprKind::Selector(sel) => Value::Vector(self.instant_selector(sel, t)?),
            ExprKind::Matrix { sel, range_ms } => {
                let maxt = t - sel.offset_ms;
                let mint = maxt - range_ms;
                let mut out = Vec::new();
                for s in self.select(sel)? {
                    self.buf.clear();
                    s.range_into(mint, maxt, &mut self.buf);
                    if !self.buf.is_empty() {
                        out.push(RangeSeries {
                            labels: s.labels().clone(),
                            points: self
                                .buf
                                .iter()
                                .map(|p| Point {
                                    timestamp_ms: p.timestamp_ms,
                                    value: p.value,
                                })
                                .collect(),
                        });
                    }
                }
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
            ExprKind::Neg(inner) => match self.eval(inner, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(mut v) => {
                    for s in &mut v {
                        s.metric = s.metric.clone().without_name();
                        s.value = -s.value;
                    }
                    check_unique(&v)?;
                    Value::Vector(v)
                }
                other => other,
            },
            ExprKind::Call { func, args } => self.call(*func, args, t)?,
            ExprKind::Aggregate {
                op,
                expr,
                grouping,
                without,
            } => {
                if let Some(v) = self.aggregate_range_function(*op, expr, grouping, *without, t)? {
                    return Ok(Value::Vector(v));
                }
                let v = self.vector(expr, t)?;
                Value::Vector(aggregate(*op, v, grouping, *without))
            }
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                let l = self.eval(lhs, t)?;
                let r = self.eval(rhs, t)?;
                self.binary(*op, l, r, *return_bool, matching.as_ref())?
            }
        })
    }

    fn vector(&mut self, e: &Expr, t: i64) -> Result<Vec<VectorSample>, EvalError> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            // The parser's type checks make this unreachable; an empty vector is the safe answer.
            _ => Ok(Vec::new()),
        }
    }

    fn scalar(&mut self, e: &Expr, t: i64) -> Result<f64, EvalError> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            _ => Ok(f64::NAN),
        }
    }

    fn instant_selector(
        &mut self,
        sel: &VectorSelector,
        t: i64,
    ) -> Result<Vec<VectorSample>, EvalError> {
        let ref_t = t - sel.offset_ms;
        let series = self.select(sel)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let Some(p) = s.latest_at(ref_t) else {
                continue;
            };
            if p.timestamp_ms < ref_t - self.lookback_ms || is_stale_nan(p.value) {
                continue;
            }
            if let Some(fresh) = self.freshness_ms
                && p.timestamp_ms < ref_t - fresh
            {
                self.stale_reads += 1;
                continue;
            }
            out.push(VectorSample {
                metric: Metric::of_series(s),
                value: p.value,
            });
        }
        Ok(out)
    }

    fn call(&mut self, func: Func, args: &[Expr], t: i64) -> Result<Value, EvalError> {
        if func.signature().0.first() == Some(&ValueType::Matrix) {
            let arg = args.first().map(unwrap_parens);
            let Some(ExprKind::Matrix { sel, range_ms }) = arg.map(|a| &a.kind) else {
                return Ok(Value::Vector(Vec::new()));
            };
            return self.range_function(func, sel, *range_ms, t);
        }
        let vec_fn = |v: Vec<VectorSample>, g: &dyn Fn(f64) -> f64| -> Result<Value, EvalError> {
            let out: Vec<VectorSample> = v
                .into_iter()
                .map(|s| VectorSample {
                    metric: s.metric.without_name(),
                    value: g(s.value),
                })
                .collect();
            check_unique(&out)?;
            Ok(Value::Vector(out))
        };
        match func {
            Func::Time => Ok(Value::Scalar(t as f64 / 1000.0)),
            Func::Vector => {
                let v = self.scalar(&args[0], t)?;
                Ok(Value::Vector(vec![VectorSample {
                    metric: Metric::from_labels(Labels::default()),
                    value: v,
                }]))
            }
            Func::Scalar => {
                let v = self.vector(&args[0], t)?;
                Ok(Value::Scalar(if v.len() == 1 {
                    v[0].value
                } else {
                    f64::NAN
                }))
            }
            Func::Abs => vec_fn(self.vector(&args[0], t)?, &f64::abs),
            Func::Ceil => vec_fn(self.vector(&args[0], t)?, &f64::ceil),
            Func::Floor => vec_fn(self.vector(&args[0], t)?, &f64::floor),
            Func::Sqrt => vec_fn(self.vector(&args[0], t)?, &f64::sqrt),
            Func::Exp => vec_fn(self.vector(&args[0], t)?, &f64::exp),
            Func::Ln => vec_fn(self.vector(&args[0], t)?, &f64::ln),
            Func::Log2 => vec_fn(self.vector(&args[0], t)?, &f64::log2),
            Func::Log10 => vec_fn(self.vector(&args[0], t)?, &f64::log10),
            Func::ClampMin => {
                let v = self.vector(&args[0], t)?;
                let min = self.scalar(&args[1], t)?;
                vec_fn(v, &|x| f::go_max(min, x))
            }
            Func::ClampMax => {
                let v = self.vector(&args[0], t)?;
                let max = self.scalar(&args[1], t)?;
                vec_fn(v, &|x| f::go_min(max, x))
            }
            Func::Clamp => {
                let v = self.vector(&args[0], t)?;
                let min = self.scalar(&args[1], t)?;
                let max = self.scalar(&args[2], t)?;
                if max < min {
                    return Ok(Value::Vector(Vec::new()));
                }
                vec_fn(v, &|x| f::go_max(min, f::go_min(max, x)))
            }
            Func::HistogramQuantile => {
                let q = self.scalar(&args[0], t)?;
                let v = self.vector(&args[1], t)?;
                Ok(Value::Vector(histogram_quantile(q, v)))
            }
            // Range functions are handled above.
            _ => Ok(Value::Vector(Vec::new())),
        }
    }

    /// Touches the series `sel` selects with `f`, counting them against `max_series`.
    fn select_each(
        cache: &SeriesCache,
        opts: &EvalOptions,
        touched: &mut usize,
        sel: &VectorSelector,
        f: impl FnMut(&Arc<Series>),
    ) -> Result<(), EvalError> {
        let limit = opts.max_series.saturating_sub(*touched);
        let n =
            cache
                .select_each(&sel.matchers, limit, f)
                .map_err(|_| EvalError::TooManySeries {
                    limit: opts.max_series,
                })?;
        *touched += n;
        Ok(())
    }

    fn range_function(
        &mut self,
        func: Func,
        sel: &VectorSelector,
        range_ms: i64,
        t: i64,
    ) -> Result<Value, EvalError> {
        let maxt = t - sel.offset_ms;
        let mint = maxt - range_ms;
        let mut out = Vec::new();
        let buf = &mut self.buf;
        let fresh_after = self.freshness_ms.map(|f| maxt - f);
        let mut stale: u64 = 0;
        Self::select_each(self.cache, self.opts, &mut self.touched, sel, |s| {
            let value = s.read(|r| {
                if is_stale_at(r, maxt, fresh_after) {
                    stale += 1;
                    return None;
                }
                range_value(func, r, mint, maxt, range_ms, buf)
            });
            if let Some(value) = value {
                let metric = Metric::of_series(s.clone());
                let metric = if func == Func::LastOverTime {
                    metric
                } else {
                    metric.without_name()
                };
                out.push(VectorSample { metric, value });
            }
        })?;
        self.stale_reads += stale;
        if func != Func::LastOverTime && !has_name_equality(sel) {
            check_unique(&out)?;
        }
        Ok(Value::Vector(out))
    }

    /// `op(func(sel[range]))` without materializing the inner vector, when it cannot hold duplicate label
    /// sets (which would be an error): each series' value goes straight into its group. `None` when `expr` is
    /// not such a call.
    fn aggregate_range_function(
        &mut self,
        op: AggOp,
        expr: &Expr,
        grouping: &[String],
        without: bool,
        t: i64,
    ) -> Result<Option<Vec<VectorSample>>, EvalError> {
        let ExprKind::Call { func, args } = &unwrap_parens(expr).kind else {
            return Ok(None);
        };
        let func = *func;
        if func.signature().0.first() != Some(&ValueType::Matrix) {
            return Ok(None);
        }
        let Some(ExprKind::Matrix { sel, range_ms }) = args.first().map(|a| &unwrap_parens(a).kind)
        else {
            return Ok(None);
        };
        if func != Func::LastOverTime && !has_name_equality(sel) {
            return Ok(None);
        }
        let range_ms = *range_ms;
        let maxt = t - sel.offset_ms;
        let mint = maxt - range_ms;
        let drop_name = func != Func::LastOverTime;
        let fresh_after = self.freshness_ms.map(|f| maxt - f);
        let mut agg = Aggregation::new(op, grouping, without);
        // Large selections are scanned by two threads, each recording (group, value) in scan order, and
        // replayed here in that order: the same result as one thread, bit for bit.
        let limit = self.opts.max_series.saturating_sub(self.touched);
        let parts = self
            .cache
            .select_each_split(
                &sel.matchers,
                limit,
                PartialAggregation::new,
                |p: &mut PartialAggregation, s, ring| {
                    p.selected += 1;
                    if is_stale_at(ring, maxt, fresh_after) {
                        p.stale += 1;
                        return;
                    }
                    if let Some(value) = range_value(func, ring, mint, maxt, range_ms, &mut p.buf) {
                        p.push(&agg, s.labels(), drop_name, value);
                    }
                },
            )
            .map_err(|_| EvalError::TooManySeries {
                limit: self.opts.max_series,
            })?;
        for p in parts {
            self.touched += p.selected;
            self.stale_reads += p.stale;
            agg.replay(p);
        }
        Ok(Some(agg.finish()))
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: Value,
        r: Value,
        return_bool: bool,
        matching: Option<&VectorMatching>,
    ) -> Result<Value, EvalError> {
        let drop_name = !op.is_comparison() || return_bool;
        Ok(match (l, r) {
            (Value::Scalar(a), Value::Scalar(b)) => {
                let (v, keep) = scalar_binop(op, a, b);
                Value::Scalar(if op.is_comparison() { bool_f(keep) } else { v })
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Value::Vector(vector_scalar(op, v, s, false, return_bool)?)
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Value::Vector(vector_scalar(op, v, s, true, return_bool)?)
            }
            (Value::Vector(lv), Value::Vector(rv)) => {
                let mut right: HashMap<u64, &VectorSample> = HashMap::with_capacity(rv.len());
                for s in &rv {
                    let sig = signature(&s.metric, matching);
                    if let Some(prev) = right.insert(sig, s) {
                        return Err(EvalError::ManyToMany {
                            group: match_group(&s.metric, matching),
                            a: s.metric.to_labels().to_string(),
                            b: prev.metric.to_labels().to_string(),
                        });
                    }
                }
                let mut matched = std::collections::HashSet::new();
                let mut out = Vec::new();
                for ls in lv {
                    let sig = signature(&ls.metric, matching);
                    let Some(rs) = right.get(&sig) else { continue };
                    let (mut v, keep) = scalar_binop(op, ls.value, rs.value);
                    if return_bool {
                        v = bool_f(keep);
                    } else if !keep {
                        continue;
                    }
                    if !matched.insert(sig) {
                        return Err(EvalError::ManyToOne);
                    }
                    let mut metric = if drop_name {
                        ls.metric.without_name()
                    } else {
                        ls.metric
                    };
                    if let Some(m) = matching {
                        let labels = metric.to_labels();
                        let mut b = labels.to_builder();
                        if m.on {
                            b.retain(|l| m.labels.iter().any(|n| *n == *l.name));
                        } else {
                            for n in &m.labels {
                                b.del(n);
                            }
                        }
                        metric = Metric::from_labels(b.build());
                    }
                    out.push(VectorSample { metric, value: v });
                }
                if drop_name {
                    check_unique(&out)?;
                }
                Value::Vector(out)
            }
            // The parser allows only scalars and instant vectors as operands.
            _ => Value::Vector(Vec::new()),
        })
    }
}

/// Whether the freshness rule drops this series at `maxt`: its newest sample at or before `maxt` is older
/// than `fresh_after`, is a staleness marker (the target went away), or does not exist. Always false
/// without the rule.
fn is_stale_at(ring: &SampleRing, maxt: i64, fresh_after: Option<i64>) -> bool {
    fresh_after.is_some_and(|cut| {
        ring.latest_at(maxt)
            .is_none_or(|s| s.timestamp_ms < cut || is_stale_nan(s.value))
    })
}

/// The value of range function `func` over the samples of `s` in `[mint, maxt]`, if any: from the window's
/// summary when the function needs no more, else from the decoded samples (into `buf`).
fn range_value(
    func: Func,
    ring: &SampleRing,
    mint: i64,
    maxt: i64,
    range_ms: i64,
    buf: &mut Vec<Sample>,
) -> Option<f64> {
    let summarized = matches!(
        func,
        Func::Rate
            | Func::Increase
            | Func::Delta
            | Func::Irate
            | Func::Idelta
            | Func::CountOverTime
            | Func::LastOverTime
    );
    if summarized {
        match ring.summarize_with(mint, maxt, matches!(func, Func::Irate | Func::Idelta)) {
            Window::Empty => return None,
            Window::Summary(w) => {
                let counter = matches!(func, Func::Rate | Func::Increase);
                // Counter resets must be added one by one, in order: decode those windows.
                if !(counter && w.decreases) {
                    return match func {
                        Func::Rate | Func::Increase | Func::Delta => (w.count >= 2).then(|| {
                            f::extrapolate(
                                w.last.value - w.first.value,
                                w.first,
                                w.last,
                                w.count,
                                mint,
                                maxt,
                                range_ms,
                                counter,
                                func == Func::Rate,
                            )
                        }),
                        Func::Irate | Func::Idelta if w.count >= 2 => {
                            f::instant_value_of(w.penultimate, w.last, func == Func::Irate)
                        }
                        Func::CountOverTime => Some(w.count as f64),
                        Func::LastOverTime => Some(w.last.value),
                        _ => None,
                    };
                }
            }
            Window::Unsupported => {}
        }
    }
    buf.clear();
    range_without_markers(ring, mint, maxt, buf);
    let p = &buf[..];
    if p.is_empty() {
        return None;
    }
    match func {
        Func::Rate => f::extrapolated_rate(p, mint, maxt, range_ms, true, true),
        Func::Increase => f::extrapolated_rate(p, mint, maxt, range_ms, true, false),
        Func::Delta => f::extrapolated_rate(p, mint, maxt, range_ms, false, false),
        Func::Irate => f::instant_value(p, true),
        Func::Idelta => f::instant_value(p, false),
        Func::AvgOverTime => Some(f::avg_over_time(p)),
        Func::SumOverTime => Some(f::sum_over_time(p)),
        Func::MaxOverTime => Some(f::max_over_time(p)),
        Func::MinOverTime => Some(f::min_over_time(p)),
        Func::CountOverTime => Some(p.len() as f64),
        Func::LastOverTime => p.last().map(|s| s.value),
        _ => None,
    }
}

fn match_group(m: &Metric, matching: Option<&VectorMatching>) -> String {
    let labels = m.to_labels();
    let mut b = labels.to_builder();
    match matching {
        Some(VectorMatching { on: true, labels }) => {
            b.retain(|l| labels.iter().any(|n| *n == *l.name));
        }
        Some(VectorMatching { on: false, labels }) => {
            b.del(METRIC_NAME);
            for n in labels {
                b.del(n);
            }
        }
        None => {
            b.del(METRIC_NAME);
        }
    }
    b.build().to_string()
}

/// `vector op scalar` (or `scalar op vector` with `swap`), as Prometheus's `VectorscalarBinop`.
pub(crate) fn vector_scalar(
    op: BinOp,
    v: Vec<VectorSample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<VectorSample>, EvalError> {
    let mut out = Vec::with_capacity(v.len());
    let drop_name = !op.is_comparison() || return_bool;
    for mut x in v {
        let (lv, rv) = if swap { (s, x.value) } else { (x.value, s) };
        let (mut value, mut keep) = scalar_binop(op, lv, rv);
        // A comparison keeps the vector element's value even when the scalar is on the left.
        if op.is_comparison() && swap {
            value = rv;
        }
        if return_bool {
            value = bool_f(keep);
            keep = true;
        }
        if keep {
            x.value = value;
            if drop_name {
                x.metric = x.metric.without_name();
            }
            out.push(x);
        }
    }
    if drop_name {
        check_unique(&out)?;
    }
    Ok(out)
}

#[derive(Debug)]
struct Group {
    metric: Metric,
    value: f64,
    mean: f64,
    count: f64,
}

/// The labels of a metric (`labels`, with `__name__` hidden when `drop_name`) that a grouping keeps: `by`
/// keeps the listed labels, `without` drops them and `__name__`.
fn grouped<'m>(
    labels: &'m Labels,
    drop_name: bool,
    grouping: &'m [String],
    without: bool,
) -> impl Iterator<Item = &'m surge_model::Label> + 'm {
    labels.iter().filter(move |l| {
        if drop_name && &*l.name == METRIC_NAME {
            return false;
        }
        let listed = grouping.iter().any(|g| *g == *l.name);
        if without {
            !listed && &*l.name != METRIC_NAME
        } else {
            listed
        }
    })
}

/// An aggregation fed one element at a time.
struct Aggregation<'g> {
    op: AggOp,
    grouping: &'g [String],
    without: bool,
    single: bool,
    index: HashMap<u64, usize>,
    groups: Vec<Group>,
}

impl<'g> Aggregation<'g> {
    fn new(op: AggOp, grouping: &'g [String], without: bool) -> Self {
        Aggregation {
            op,
            grouping,
            without,
            single: grouping.is_empty() && !without,
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// Adds an element whose labels are `labels` (with `__name__` hidden when `drop_name`).
    fn push(&mut self, labels: &Labels, drop_name: bool, value: f64) {
        let sig = self.signature(labels, drop_name);
        match self.group_of(sig) {
            Some(gi) => self.accumulate(gi, value),
            None => {
                let metric = self.group_metric(labels, drop_name);
                self.new_group(sig, metric, value);
            }
        }
    }

    /// The group signature of an element (0 when there is a single group).
    fn signature(&self, labels: &Labels, drop_name: bool) -> u64 {
        if self.single {
            return 0;
        }
        hash_labels(
            grouped(labels, drop_name, self.grouping, self.without).map(|l| (&*l.name, &*l.value)),
        )
    }

    /// The labels of the group of an element.
    fn group_metric(&self, labels: &Labels, drop_name: bool) -> Metric {
        if self.single {
            return Metric::from_labels(Labels::default());
        }
        let pairs = grouped(labels, drop_name, self.grouping, self.without)
            .map(|l| (l.name.clone(), l.value.clone()));
        Metric::from_labels(Labels::from_pairs(pairs))
    }

    fn group_of(&self, sig: u64) -> Option<usize> {
        if self.single {
            (!self.groups.is_empty()).then_some(0)
        } else {
            self.index.get(&sig).copied()
        }
    }

    /// Starts a group with its first element.
    fn new_group(&mut self, sig: u64, metric: Metric, value: f64) -> usize {
        if !self.single {
            self.index.insert(sig, self.groups.len());
        }
        self.groups.push(Group {
            metric,
            value,
            mean: value,
            count: 1.0,
        });
        self.groups.len() - 1
    }

    /// Adds a further element to group `gi`.
    fn accumulate(&mut self, gi: usize, value: f64) {
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        match self.op {
            AggOp::Sum => g.value += value,
            AggOp::Avg => {
                g.count += 1.0;
                if g.mean.is_infinite() {
                    if value.is_infinite() && (g.mean > 0.0) == (value > 0.0) {
                        return;
                    }
                    if !value.is_infinite() && !value.is_nan() {
                        return;
                    }
                }
                g.mean += value / g.count - g.mean / g.count;
            }
            AggOp::Max => {
                if g.value < value || g.value.is_nan() {
                    g.value = value;
                }
            }
            AggOp::Min => {
                if g.value > value || g.value.is_nan() {
                    g.value = value;
                }
            }
            AggOp::Count => g.count += 1.0,
        }
    }

    /// Replays a [`PartialAggregation`]'s elements in order, exactly as if they had been pushed here.
    fn replay(&mut self, p: PartialAggregation) {
        let mut global: Vec<Option<usize>> = vec![None; p.groups.len()];
        let mut metrics: Vec<Option<Metric>> = p.groups.iter().map(|_| None).collect();
        let mut sigs = Vec::with_capacity(p.groups.len());
        for (i, (sig, metric)) in p.groups.into_iter().enumerate() {
            sigs.push(sig);
            metrics[i] = Some(metric);
        }
        for (local, value) in p.values {
            let local = local as usize;
            match global.get(local).copied().flatten() {
                Some(gi) => self.accumulate(gi, value),
                None => {
                    let sig = sigs.get(local).copied().unwrap_or(0);
                    let gi = match self.group_of(sig) {
                        Some(gi) => {
                            self.accumulate(gi, value);
                            gi
                        }
                        None => {
                            let metric = metrics
                                .get_mut(local)
                                .and_then(Option::take)
                                .unwrap_or_else(|| Metric::from_labels(Labels::default()));
                            self.new_group(sig, metric, value)
                        }
                    };
                    if let Some(slot) = global.get_mut(local) {
                        *slot = Some(gi);
                    }
                }
            }
        }
    }

    fn finish(self) -> Vec<VectorSample> {
        let op = self.op;
        self.groups
            .into_iter()
            .map(|g| VectorSample {
                value: match op {
                    AggOp::Avg => g.mean,
                    AggOp::Count => g.count,
                    _ => g.value,
                },
                metric: g.metric,
            })
            .collect()
    }
}

/// One thread's share of a split aggregation: each element's value and group, in scan order, to be
/// replayed into an [`Aggregation`] (so the result is the sequential one bit for bit).
struct PartialAggregation {
    /// Signature and labels of each group, in order of first appearance.
    groups: Vec<(u64, Metric)>,
    /// Signatures are hashes already: the identity hasher.
    index: HashMap<u64, u32, IdBuildHasher>,
    /// The last element's signature and group: consecutive elements usually share a group (always,
    /// without grouping), and this skips the lookup.
    last: Option<(u64, u32)>,
    /// (index into `groups`, value) per element.
    values: Vec<(u32, f64)>,
    /// Series scanned (with a value or not), for `max_series`.
    selected: usize,
    /// Series skipped by the freshness rule.
    stale: u64,
    buf: Vec<Sample>,
}

impl PartialAggregation {
    fn new() -> Self {
        PartialAggregation {
            groups: Vec::new(),
            index: HashMap::default(),
            last: None,
            values: Vec::new(),
            selected: 0,
            stale: 0,
            buf: Vec::new(),
        }
    }

    fn push(&mut self, agg: &Aggregation<'_>, labels: &Labels, drop_name: bool, value: f64) {
        let sig = agg.signature(labels, drop_name);
        let local = match self.last {
            Some((last, i)) if last == sig => i,
            _ => {
                let i = match self.index.get(&sig) {
                    Some(i) => *i,
                    None => {
                        let i = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
                        self.groups.push((sig, agg.group_metric(labels, drop_name)));
                        self.index.insert(sig, i);
                        i
                    }
                };
                self.last = Some((sig, i));
                i
            }
        };
        self.values.push((local, value));
    }
}

fn aggregate(
    op: AggOp,
    v: Vec<VectorSample>,
    grouping: &[String],
    without: bool,
) -> Vec<VectorSample> {
    let mut agg = Aggregation::new(op, grouping, without);
    for s in &v {
        let (labels, drop_name) = s.metric.parts();
        agg.push(labels, drop_name, s.value);
    }
    agg.finish()
}

fn histogram_quantile(q: f64, v: Vec<VectorSample>) -> Vec<VectorSample> {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<(Metric, Vec<Bucket>)> = Vec::new();
    for s in v {
        let Some(upper_bound) = s.metric.get("le").and_then(f::parse_go_float) else {
            continue;
        };
        // Grouped by all labels but `le` (the metric name included, as in 2.42); the output drops both.
        let sig = hash_labels(
            s.metric
                .iter()
                .filter(|l| &*l.name != "le")
                .map(|l| (&*l.name, &*l.value)),
        );
        let gi = *index.entry(sig).or_insert_with(|| {
            let labels = s.metric.to_labels();
            let mut b = labels.to_builder();
            b.del("le");
            b.del(METRIC_NAME);
            groups.push((Metric::from_labels(b.build()), Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push(Bucket {
            upper_bound,
            count: s.value,
        });
    }
    groups
        .into_iter()
        .map(|(metric, mut buckets)| VectorSample {
            metric,
            value: f::bucket_quantile(q, &mut buckets),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use surge_model::stale_nan;

    /// A small fixed dataset, samples every 10 s from t = 0 to 120 s:
    /// - `c{job="a"}` a counter 0, 10, …, 50, reset to 5 at 60 s, then +10 per step up to 65;
    /// - `c{job="b"}` a constant counter at 100;
    /// - `g{job="a"}` a gauge 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9;
    /// - `h_bucket{le}` a histogram with buckets 0.1: 10, 0.5: 50, +Inf: 100 at every step;
    /// - `gone` a series ended by a staleness marker at 60 s.
    fn dataset() -> SeriesCache {
        let c = SeriesCache::new(CacheOptions {
            retention: Duration::from_secs(3600),
            ..CacheOptions::default()
        });
        let put = |pairs: &[(&str, &str)], vals: &dyn Fn(i64) -> f64| {
            let l = Labels::from_pairs(pairs.iter().copied());
            for i in 0..=12i64 {
                c.append(
                    &l,
                    Sample {
                        timestamp_ms: i * 10_000,
                        value: vals(i),
                    },
                    0,
                )
                .unwrap();
            }
        };
        put(&[("__name__", "c"), ("job", "a")], &|i| {
            if i < 6 {
                (i * 10) as f64
            } else {
                (5 + (i - 6) * 10) as f64
            }
        });
        put(&[("__name__", "c"), ("job", "b")], &|_| 100.0);
        let g = [3., 1., 4., 1., 5., 9., 2., 6., 5., 3., 5., 8., 9.];
        put(&[("__name__", "g"), ("job", "a")], &|i| g[i as usize]);
        for (le, n) in [("0.1", 10.0), ("0.5", 50.0), ("+Inf", 100.0)] {
            put(
                &[("__name__", "h_bucket"), ("le", le), ("job", "a")],
                &move |_| n,
            );
        }
        let gone = Labels::from_pairs([("__name__", "gone")]);
        for (t, v) in [(0, 1.0), (50_000, 1.0), (60_000, stale_nan())] {
            c.append(
                &gone,
                Sample {
                    timestamp_ms: t,
                    value: v,
                },
                0,
            )
            .unwrap();
        }
        c
    }

    fn run(c: &SeriesCache, q: &str, t_s: f64, opts: &EvalOptions) -> String {
        let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        match eval_instant(c, &e, (t_s * 1000.0) as i64, opts) {
            Ok(Value::Scalar(v)) => format!("scalar {}", format_value(v)),
            Ok(Value::Vector(v)) => v
                .iter()
                .map(|s| format!("{} {}", s.metric.to_labels(), format_value(s.value)))
                .collect::<Vec<_>>()
                .join("; "),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn evaluates_like_prometheus() {
        let c = dataset();
        let o = EvalOptions::default();
        // (query, eval time in s, expected rendering); values worked out by hand from Prometheus 2.42's
        // extrapolatedRate / instantValue / bucketQuantile.
        let table: &[(&str, f64, &str)] = &[
            // Window [60, 120] holds 5..65 with no reset: increase 60 over exactly 60 s.
            ("rate(c{job=\"a\"}[60s])", 120.0, "{job=\"a\"} 1"),
            // Window [30, 90] holds 30, 40, 50, 5, …, 35: one reset, increase 5 + 50 = 55.
            ("increase(c{job=\"a\"}[60s])", 90.0, "{job=\"a\"} 55"),
            // Window [35, 95]: samples 40..90, 5 s from each edge (< 1.1 × 10 s): 45 × 60/50.
            ("increase(c{job=\"a\"}[60s])", 95.0, "{job=\"a\"} 54"),
            ("rate(c{job=\"a\"}[60s])", 95.0, "{job=\"a\"} 0.9"),
            // Series starts inside the window at value 0: the zero point clamps the start extrapolation.
            ("rate(c{job=\"a\"}[60s])", 30.0, "{job=\"a\"} 0.5"),
            // Window [-25, 35]: samples 0..30 ending 5 s before the edge: 30 × 35/30.
            ("increase(c{job=\"a\"}[60s])", 35.0, "{job=\"a\"} 35"),
            // A single sample is not enough.
            ("rate(c{job=\"a\"}[5s])", 120.0, ""),
            ("irate(c{job=\"a\"}[60s])", 95.0, "{job=\"a\"} 1"),
            // irate across the reset: 50 → 5 counts 5 over 10 s.
            ("irate(c{job=\"a\"}[60s])", 65.0, "{job=\"a\"} 0.5"),
            ("delta(g[60s])", 120.0, "{job=\"a\"} 7"),
            ("idelta(g[60s])", 120.0, "{job=\"a\"} 1"),
            (
                "sum by (job) (rate(c[60s]))",
                120.0,
                "{job=\"a\"} 1; {job=\"b\"} 0",
            ),
            (
                "sum(rate(c[60s])) by (job)",
                120.0,
                "{job=\"a\"} 1; {job=\"b\"} 0",
            ),
            ("sum(c)", 120.0, "{} 165"),
            ("sum without (job) (c)", 120.0, "{} 165"),
            ("avg(c)", 120.0, "{} 82.5"),
            ("count(c)", 120.0, "{} 2"),
            ("max(c)", 120.0, "{} 100"),
            ("min(c)", 120.0, "{} 65"),
            ("avg_over_time(g[30s])", 120.0, "{job=\"a\"} 6.25"),
            ("max_over_time(g[30s])", 120.0, "{job=\"a\"} 9"),
            ("min_over_time(g[30s])", 120.0, "{job=\"a\"} 3"),
            ("sum_over_time(g[30s])", 120.0, "{job=\"a\"} 25"),
            ("count_over_time(g[30s])", 120.0, "{job=\"a\"} 4"),
            ("last_over_time(g[30s])", 120.0, "g{job=\"a\"} 9"),
            ("g offset 10s", 120.0, "g{job=\"a\"} 8"),
            (
                "rate(c{job=\"a\"}[60s] offset 30s)",
                120.0,
                "{job=\"a\"} 55/60",
            ),
            (
                "histogram_quantile(0.5, h_bucket)",
                120.0,
                "{job=\"a\"} 0.5",
            ),
            (
                "histogram_quantile(0.05, sum by (le) (h_bucket))",
                120.0,
                "{} 0.05",
            ),
            (
                "histogram_quantile(0.99, h_bucket)",
                120.0,
                "{job=\"a\"} 0.5",
            ),
            ("abs(-g)", 120.0, "{job=\"a\"} 9"),
            ("clamp_max(g, 4)", 120.0, "{job=\"a\"} 4"),
            ("clamp_min(g, 10)", 120.0, "{job=\"a\"} 10"),
            ("g * 2 + 1", 120.0, "{job=\"a\"} 19"),
            ("2 ^ 3 ^ 2", 0.0, "scalar 512"),
            ("-2 ^ 2", 0.0, "scalar -4"),
            ("7 % 3", 0.0, "scalar 1"),
            ("1 / 0", 0.0, "scalar +Inf"),
            ("NaN", 0.0, "scalar NaN"),
            ("g > 5", 120.0, "g{job=\"a\"} 9"),
            ("g > 10", 120.0, ""),
            ("g > bool 10", 120.0, "{job=\"a\"} 0"),
            ("10 > g", 110.0, "g{job=\"a\"} 8"),
            ("1 < bool 2", 0.0, "scalar 1"),
            ("g - on(job) c", 120.0, "{job=\"a\"} -56"),
            ("g + ignoring(le) c{job=\"a\"}", 120.0, "{job=\"a\"} 74"),
            ("g == on(job) c", 120.0, ""),
            ("scalar(g)", 120.0, "scalar 9"),
            ("scalar(c)", 120.0, "scalar NaN"),
            ("vector(time())", 120.0, "{} 120"),
            ("time()", 42.5, "scalar 42.5"),
            // Lookback: the newest sample is 120 s; at 420 s (exactly 5 min later) it is still seen, later not.
            ("g", 420.0, "g{job=\"a\"} 9"),
            ("g", 420.001, ""),
            // The staleness marker ends `gone` at once; before it the series is visible.
            ("gone", 59.0, "gone{} 1"),
            ("gone", 61.0, ""),
            ("count_over_time(gone[2m])", 100.0, "{} 2"),
            (
                "rate({__name__=~\"c|g\"}[60s])",
                120.0,
                "error: vector cannot contain metrics with the same labelset",
            ),
            ("c - g", 120.0, "{job=\"a\"} 56"),
            (
                "c{job=\"a\"} + on() c",
                120.0,
                "error: found duplicate series for the match group {} on the right hand-side of the operation: [c{job=\"b\"}, c{job=\"a\"}];many-to-many matching not allowed: matching labels must be unique on one side",
            ),
        ];
        let mut failures = Vec::new();
        for (q, t, want) in table {
            let want = want.replace("55/60", &format_value(55.0 / 60.0));
            let got = run(&c, q, *t, &o);
            if got != want {
                failures.push(format!("{q} @ {t}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn freshness_is_opt_in() {
        let c = dataset();
        let strict = EvalOptions {
            freshness: Some(Duration::from_secs(5)),
            ..EvalOptions::default()
        };
        assert_eq!(run(&c, "g", 124.0, &strict), "g{job=\"a\"} 9");
        assert_eq!(run(&c, "g", 126.0, &strict), "");
        assert_eq!(
            run(&c, "g", 126.0, &EvalOptions::default()),
            "g{job=\"a\"} 9"
        );
        assert!(c.metrics().stale_reads.get() >= 1);
        // Range functions too: a series that stopped reporting no longer adds its old rate, in both the
        // plain and the aggregating paths; without the rule Prometheus's answer is kept.
        let lenient = run(&c, "rate(g[60s])", 126.0, &EvalOptions::default());
        assert!(!lenient.is_empty());
        assert_eq!(run(&c, "rate(g[60s])", 126.0, &strict), "");
        assert_eq!(run(&c, "sum(rate(g[60s]))", 126.0, &strict), "");
        assert_ne!(run(&c, "sum(rate(g[60s]))", 124.0, &strict), "");
    }

    #[test]
    fn max_series_fails_clearly() {
        let c = dataset();
        let o = EvalOptions {
            max_series: 2,
            ..EvalOptions::default()
        };
        assert_eq!(run(&c, "sum(c)", 120.0, &o), "{} 165");
        assert_eq!(
            run(&c, "sum(c) + sum(g)", 120.0, &o),
            "error: query touches more than 2 series (the aggregator's query max_series limit)"
        );
    }

    /// Aggregations of range functions over large selections are fused, summarized and split across two
    /// threads; they must equal the plain path (here forced by a no-op `+ 0`) bit for bit.
    #[test]
    fn fused_split_aggregation_matches_plain_path() {
        let c = SeriesCache::new(CacheOptions {
            retention: Duration::from_secs(3600),
            ..CacheOptions::default()
        });
        let n = surge_store::cache::SPLIT_MIN_SERIES + 500;
        for k in 0..n {
            let l = Labels::from_pairs([
                ("__name__", "x".to_string()),
                ("job", format!("j{}", k % 7)),
                ("pod", format!("p{k}")),
            ]);
            let mut v = 0.0;
            for i in 0..200i64 {
                v += ((i as usize * 31 + k * 17) % 13) as f64 * 0.25;
                // Some series reset, some end with a staleness marker, some are float gauges.
                let value = if k % 11 == 0 && i == 150 {
                    0.0
                } else if k % 13 == 0 && i == 190 {
                    stale_nan()
                } else if k % 17 == 0 {
                    (i as f64 * 0.37 + k as f64).sin()
                } else {
                    v
                };
                if k % 11 == 0 && i == 150 {
                    v = 0.0;
                }
                c.append(
                    &l,
                    Sample {
                        timestamp_ms: i * 1000 + (i * 7 % 5),
                        value,
                    },
                    0,
                )
                .unwrap();
            }
        }
        let o = EvalOptions::default();
        // Two scan threads where the machine has two cores (one otherwise), then one.
        for threads in [2, 1] {
            c.set_scan_threads(threads);
            check_fused(&c, &o);
        }
        let limited = EvalOptions {
            max_series: n - 1,
            ..EvalOptions::default()
        };
        for threads in [2, 1] {
            c.set_scan_threads(threads);
            assert!(matches!(
                eval_instant(&c, &parse("sum(rate(x[1m]))").unwrap(), 199_000, &limited),
                Err(EvalError::TooManySeries { .. })
            ));
        }
    }

    fn check_fused(c: &SeriesCache, o: &EvalOptions) {
        let bits = |q: &str, t: i64| -> Vec<(String, u64)> {
            match eval_instant(c, &parse(q).unwrap(), t, o).unwrap() {
                Value::Vector(v) => v
                    .iter()
                    .map(|s| (s.metric.to_labels().to_string(), s.value.to_bits()))
                    .collect(),
                other => panic!("{q}: {other:?}"),
            }
        };
        for f in [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "count_over_time",
        ] {
            for agg in [
                "sum",
                "avg",
                "max",
                "min",
                "count",
                "sum by (job)",
                "avg by (job)",
            ] {
                for (range, t) in [("30s", 199_000), ("1m", 195_500), ("10s", 150_000)] {
                    let fused = format!("{agg} ({f}(x[{range}]))");
                    let plain = format!("{agg} ({f}(x[{range}]) + 0)");
                    let (a, b) = (bits(&fused, t), bits(&plain, t));
                    assert!(!a.is_empty(), "{fused}");
                    assert_eq!(a, b, "{fused} @ {t}");
                }
            }
        }
    }

    #[test]
    fn range_evaluation() {
        let c = dataset();
        let e = parse("sum(c)").unwrap();
        let m = eval_range(&c, &e, 100_000, 120_000, 10_000, &EvalOptions::default()).unwrap();
        assert_eq!(m.len(), 1);
        let v: Vec<f64> = m[0].points.iter().map(|p| p.value).collect();
        assert_eq!(v, [145.0, 155.0, 165.0]);
        let e = parse("c[1m]").unwrap();
        assert!(eval_range(&c, &e, 0, 1, 1, &EvalOptions::default()).is_err());
    }
}
