//! Evaluation of the AST over the series cache, with Prometheus 2.42 semantics (`promql/engine.go`,
//! `promql/functions.go` at v2.42.0).
//!
//! # Selection rules
//!
//! - Instant selectors take each series' newest sample at or before `t - offset`, if it is no older than
//!   the lookback delta (inclusive, as in 2.x) and not a staleness marker. With `@ T` the selection happens
//!   at `T - offset` instead of `t - offset`; `@ start()` and `@ end()` name the query's ends.
//! - Range selectors take the samples in `[t - offset - range, t - offset]` (both ends inclusive, as in
//!   2.x), skipping staleness markers.
//! - Subqueries `expr[range:step]` evaluate `expr` at the multiples of `step` (absolute time, as
//!   Prometheus aligns them) inside `[t - offset - range, t - offset]`; the step defaults to
//!   [`EvalOptions::default_subquery_step`] (Prometheus's `evaluation_interval`, 1 m by default).
//! - **Freshness (surge rule):** with [`EvalOptions::freshness`] set, an instant selector also drops a
//!   series whose newest sample is older than `t - freshness` (counted as a stale read). The autoscaling path
//!   sets it to `stale_after` so a scaling rule never acts on a value from a dead target; the Prometheus API
//!   leaves it unset, so Grafana and `query_range` see exactly what Prometheus would show. Range functions
//!   (`rate(x[30s])`, …) apply the same rule to the series they read: a target that stopped reporting
//!   `freshness` ago no longer adds its old rate to a sum.
//!
//! # Design
//!
//! A range query evaluates the expression once per step (no per-node matrices as Prometheus builds):
//! the steps of an autoscaling or dashboard query are few, and an instant evaluation reads the store's
//! compressed windows in place (zero-copy summaries for `rate` and friends, fused aggregation of
//! `sum(rate(…))` without materializing the inner vector). A subquery is the one place that builds a
//! matrix: its inner expression is evaluated at each of its own steps.

use std::collections::{HashMap, HashSet};
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
    /// The step of a subquery written without one (`x[5m:]`): Prometheus's `global.evaluation_interval`.
    pub default_subquery_step: Duration,
    /// The most samples one evaluation may hold: points read by range selectors plus the points of a range
    /// query's (or a subquery's) result, as Prometheus's `--query.max-samples` bounds what a query loads.
    /// `usize::MAX` (the presets' value): unbounded.
    pub max_samples: usize,
    /// Raised by the caller when the query's deadline passes; the evaluator checks it at every step and
    /// selector and stops with [`EvalError::Cancelled`]. The evaluator reads no clock: the caller owns
    /// the timer.
    pub cancel: Option<Cancel>,
}

/// A flag a caller raises to stop an evaluation (its deadline passed, its client went away).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops every evaluation holding this flag at its next check.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for Cancel {
    /// Two flags are equal when they are the same flag.
    fn eq(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions::prometheus(&QueryOptions::default())
    }
}

/// Prometheus's default `global.evaluation_interval`.
pub const DEFAULT_SUBQUERY_STEP: Duration = Duration::from_secs(60);

impl EvalOptions {
    /// Prometheus-compatible evaluation: lookback only.
    pub fn prometheus(q: &QueryOptions) -> EvalOptions {
        EvalOptions {
            lookback_delta: q.lookback_delta,
            max_series: q.max_series,
            freshness: None,
            default_subquery_step: DEFAULT_SUBQUERY_STEP,
            max_samples: usize::MAX,
            cancel: None,
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
    /// The caller's [`Cancel`] flag was raised (the query's deadline passed).
    #[error("query timed out in expression evaluation")]
    Cancelled,
    /// The evaluation held more than `max_samples` samples.
    #[error(
        "query processing would load too many samples into memory in query execution (limit {limit})"
    )]
    TooManySamples { limit: usize },
    /// Dropping the metric name (or relabeling) made two results identical.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    /// The "one" side of a vector operation has two series for one match group.
    #[error(
        "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    ManyToMany {
        group: String,
        side: &'static str,
        a: String,
        b: String,
    },
    /// The left side of a one-to-one operation has two series for one match group.
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOne,
    /// A `group_left`/`group_right` operation produced one label set twice.
    #[error("multiple matches for labels: grouping labels must ensure unique matches")]
    GroupingNotUnique,
    /// A range query over an expression that is not a scalar or instant vector.
    #[error("invalid expression type {0:?} for range query, must be Scalar or instant Vector")]
    RangeQueryType(&'static str),
    /// A function or aggregation refused its arguments (Prometheus's messages, e.g.
    /// `invalid regular expression in label_replace(): (`).
    #[error("{0}")]
    Argument(String),
}

impl From<SelectError> for EvalError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::TooManySeries { limit } => EvalError::TooManySeries { limit },
        }
    }
}

/// Whether the result's order is the function's (`sort`, `sort_desc`), not the label order.
fn keeps_order(e: &Expr) -> bool {
    matches!(
        &unwrap_parens(e).kind,
        ExprKind::Call {
            func: Func::Sort | Func::SortDesc,
            ..
        }
    )
}

/// Evaluates `expr` at `t_ms`. A vector is sorted by labels, except the result of `sort` and `sort_desc`.
pub fn eval_instant(
    cache: &SeriesCache,
    expr: &Expr,
    t_ms: i64,
    opts: &EvalOptions,
) -> Result<Value, EvalError> {
    let mut ev = Evaluator::new(cache, opts, t_ms, t_ms);
    let v = ev.eval(expr, t_ms)?;
    ev.finish();
    Ok(match v {
        Value::Vector(mut v) if !keeps_order(expr) => {
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
    let mut ev = Evaluator::new(cache, opts, start_ms, end_ms);
    let mut series: HashMap<Labels, Vec<Point>> = HashMap::new();
    let mut t = start_ms;
    let step = step_ms.max(1);
    while t <= end_ms {
        ev.touched = 0;
        ev.check_cancel()?;
        match ev.eval(expr, t)? {
            Value::Scalar(v) => {
                ev.count_samples(1)?;
                series.entry(Labels::default()).or_default().push(Point {
                    timestamp_ms: t,
                    value: v,
                })
            }
            Value::Vector(v) => {
                ev.count_samples(v.len())?;
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
    /// The query's first and last evaluation time, for `@ start()` and `@ end()`.
    start_ms: i64,
    end_ms: i64,
    touched: usize,
    stale_reads: u64,
    buf: Vec<Sample>,
    /// Samples held so far, against `max_samples`: a range query's and its subqueries' result points
    /// and the points range selectors returned. Never reset within an evaluation, so it bounds the whole
    /// query, not a step.
    samples: usize,
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
    let mut seen = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(s.metric.hash64()) {
            return Err(EvalError::DuplicateLabelset);
        }
    }
    Ok(())
}

/// `l op r` of two numbers: the value and, for comparisons, whether the element is kept.
fn scalar_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Mod => (l % r, true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        // Set operators never reach numbers (the parser refuses them on scalars).
        BinOp::And | BinOp::Or | BinOp::Unless => (f64::NAN, false),
    }
}

fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Prometheus's `shouldDropMetricName`: arithmetic drops the name; comparisons, set operators and (in
/// 2.42, which the differential test runs against) `atan2` keep it.
fn drops_name(op: BinOp) -> bool {
    !op.is_comparison() && !op.is_set() && op != BinOp::Atan2
}

/// The match-group signature of `m` under `on(...)` / `ignoring(...)` (none: all labels but the name).
fn signature(m: &Metric, matching: Option<&VectorMatching>) -> u64 {
    hash_labels(
        m.iter()
            .filter(|l| match matching {
                Some(VectorMatching {
                    on: true, labels, ..
                }) => labels.iter().any(|n| *n == *l.name),
                Some(VectorMatching {
                    on: false, labels, ..
                }) => &*l.name != METRIC_NAME && !labels.iter().any(|n| *n == *l.name),
                None => &*l.name != METRIC_NAME,
            })
            .map(|l| (&*l.name, &*l.value)),
    )
}

/// A string argument (the parser guarantees its type).
fn string_arg(e: &Expr) -> &str {
    match &unwrap_parens(e).kind {
        ExprKind::String(s) => s,
        _ => "",
    }
}

impl<'a> Evaluator<'a> {
    fn new(cache: &'a SeriesCache, opts: &'a EvalOptions, start_ms: i64, end_ms: i64) -> Self {
        Evaluator {
            cache,
            opts,
            lookback_ms: millis(opts.lookback_delta),
            freshness_ms: opts.freshness.map(millis),
            start_ms,
            end_ms,
            touched: 0,
            stale_reads: 0,
            buf: Vec::with_capacity(512),
            samples: 0,
        }
    }

    /// Fails once the caller raised the cancel flag.
    fn check_cancel(&self) -> Result<(), EvalError> {
        match &self.opts.cancel {
            Some(c) if c.is_cancelled() => Err(EvalError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Counts `n` more samples held, against `max_samples`.
    fn count_samples(&mut self, n: usize) -> Result<(), EvalError> {
        self.samples = self.samples.saturating_add(n);
        if self.samples > self.opts.max_samples {
            return Err(EvalError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }

    fn finish(&mut self) {
        if self.stale_reads > 0 {
            self.cache.metrics().stale_reads.inc_by(self.stale_reads);
            self.stale_reads = 0;
        }
    }

    /// The time a selector or subquery is evaluated at: `t`, or what its `@` says.
    fn at_time(&self, at: Option<At>, t: i64) -> i64 {
        match at {
            None => t,
            Some(At::Time(ms)) => ms,
            Some(At::Start) => self.start_ms,
            Some(At::End) => self.end_ms,
        }
    }

    fn select(&mut self, sel: &VectorSelector) -> Result<Vec<Arc<Series>>, EvalError> {
        self.check_cancel()?;
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
                Value::Matrix(self.matrix_selector(sel, *range_ms, t)?)
            }
            ExprKind::Subquery {
                expr,
                range_ms,
                step_ms,
                offset_ms,
                at,
            } => Value::Matrix(self.subquery(expr, *range_ms, *step_ms, *offset_ms, *at, t)?),
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
                param,
                grouping,
                without,
            } => {
                if param.is_none()
                    && op.is_streaming()
                    && let Some(v) =
                        self.aggregate_range_function(*op, expr, grouping, *without, t)?
                {
                    return Ok(Value::Vector(v));
                }
                let param = match param {
                    Some(p) => Some(self.eval(p, t)?),
                    None => None,
                };
                let v = self.vector(expr, t)?;
                Value::Vector(aggregate(*op, v, param, grouping, *without)?)
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

    fn matrix(&mut self, e: &Expr, t: i64) -> Result<Vec<RangeSeries>, EvalError> {
        match self.eval(e, t)? {
            Value::Matrix(m) => Ok(m),
            _ => Ok(Vec::new()),
        }
    }

    /// The instant selector's samples at `t`.
    fn instant_selector(
        &mut self,
        sel: &VectorSelector,
        t: i64,
    ) -> Result<Vec<VectorSample>, EvalError> {
        self.instant_samples(sel, t, |s, p| VectorSample {
            metric: Metric::of_series(s),
            value: p.value,
        })
    }

    /// `f` of each selected series and its sample at `t` (newest within the lookback, not a staleness
    /// marker, fresh under the freshness rule).
    fn instant_samples<T>(
        &mut self,
        sel: &VectorSelector,
        t: i64,
        mut f: impl FnMut(Arc<Series>, Sample) -> T,
    ) -> Result<Vec<T>, EvalError> {
        let ref_t = self.at_time(sel.at, t) - sel.offset_ms;
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
            out.push(f(s, p));
        }
        Ok(out)
    }

    fn matrix_selector(
        &mut self,
        sel: &VectorSelector,
        range_ms: i64,
        t: i64,
    ) -> Result<Vec<RangeSeries>, EvalError> {
        let maxt = self.at_time(sel.at, t) - sel.offset_ms;
        let mint = maxt - range_ms;
        let mut out = Vec::new();
        for s in self.select(sel)? {
            self.buf.clear();
            s.range_into(mint, maxt, &mut self.buf);
            self.count_samples(self.buf.len())?;
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
        Ok(out)
    }

    /// `expr[range:step] offset o @ T` at `t`: `expr` at every multiple of `step` in
    /// `[T - o - range, T - o]`, as Prometheus's `evalSubquery` aligns its steps.
    fn subquery(
        &mut self,
        expr: &Expr,
        range_ms: i64,
        step_ms: Option<i64>,
        offset_ms: i64,
        at: Option<At>,
        t: i64,
    ) -> Result<Vec<RangeSeries>, EvalError> {
        let step = step_ms
            .unwrap_or_else(|| millis(self.opts.default_subquery_step))
            .max(1);
        let maxt = self.at_time(at, t) - offset_ms;
        let mint = maxt - range_ms;
        // Go's integer division truncates toward zero; then the first step inside the range.
        let mut ts = step * (mint / step);
        if ts < mint {
            ts += step;
        }
        let mut series: HashMap<Labels, Vec<Point>> = HashMap::new();
        let base_touched = self.touched;
        let mut most_touched = base_touched;
        while ts <= maxt {
            // Each inner step is one evaluation's worth of series for `max_series`.
            self.touched = base_touched;
            self.check_cancel()?;
            if let Value::Vector(v) = self.eval(expr, ts)? {
                self.count_samples(v.len())?;
                for s in v {
                    series.entry(s.metric.to_labels()).or_default().push(Point {
                        timestamp_ms: ts,
                        value: s.value,
                    });
                }
            }
            most_touched = most_touched.max(self.touched);
            ts += step;
        }
        self.touched = most_touched;
        let mut out: Vec<RangeSeries> = series
            .into_iter()
            .map(|(labels, points)| RangeSeries { labels, points })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn call(&mut self, func: Func, args: &[Expr], t: i64) -> Result<Value, EvalError> {
        if let Some(mi) = func.matrix_arg() {
            return self.window_call(func, args, mi, t);
        }
        let out = match func {
            Func::Time => return Ok(Value::Scalar(t as f64 / 1000.0)),
            Func::Pi => return Ok(Value::Scalar(std::f64::consts::PI)),
            Func::Scalar => {
                let v = self.vector(&args[0], t)?;
                return Ok(Value::Scalar(if v.len() == 1 {
                    v[0].value
                } else {
                    f64::NAN
                }));
            }
            Func::Vector => {
                let v = self.scalar(&args[0], t)?;
                vec![VectorSample {
                    metric: Metric::from_labels(Labels::default()),
                    value: v,
                }]
            }
            Func::Timestamp => self.timestamp(&args[0], t)?,
            Func::Absent => {
                if self.vector(&args[0], t)?.is_empty() {
                    vec![absent_sample(&args[0])]
                } else {
                    Vec::new()
                }
            }
            Func::Sort | Func::SortDesc => {
                let mut v = self.vector(&args[0], t)?;
                sort_by_value(&mut v, func == Func::SortDesc);
                v
            }
            Func::LabelReplace => {
                let v = self.vector(&args[0], t)?;
                let [dst, repl, src, re] = [1, 2, 3, 4].map(|i| string_arg(&args[i]));
                label_replace(v, dst, repl, src, re)?
            }
            Func::LabelJoin => {
                let v = self.vector(&args[0], t)?;
                let srcs: Vec<&str> = args[3..].iter().map(string_arg).collect();
                label_join(v, string_arg(&args[1]), string_arg(&args[2]), &srcs)?
            }
            Func::HistogramQuantile => {
                let q = self.scalar(&args[0], t)?;
                let v = self.vector(&args[1], t)?;
                histogram_quantile(q, v)
            }
            // Native histograms only: surge's store holds float samples, which these functions skip, so
            // the answer is Prometheus's for float series: nothing. The arguments are still evaluated.
            Func::HistogramAvg
            | Func::HistogramCount
            | Func::HistogramSum
            | Func::HistogramFraction
            | Func::HistogramStddev
            | Func::HistogramStdvar => {
                for a in args {
                    self.eval(a, t)?;
                }
                Vec::new()
            }
            Func::Clamp | Func::ClampMin | Func::ClampMax | Func::Round => {
                let v = self.vector(&args[0], t)?;
                let a = match args.get(1) {
                    Some(e) => self.scalar(e, t)?,
                    None => 1.0,
                };
                let b = match args.get(2) {
                    Some(e) => self.scalar(e, t)?,
                    None => f64::NAN,
                };
                match func {
                    Func::Clamp if b < a => Vec::new(),
                    Func::Clamp => map_values(v, |x| f::go_max(a, f::go_min(b, x))),
                    Func::ClampMin => map_values(v, |x| f::go_max(a, x)),
                    Func::ClampMax => map_values(v, |x| f::go_min(a, x)),
                    _ => {
                        // Prometheus inverts first: fewer floating-point surprises.
                        let inv = 1.0 / a;
                        map_values(v, |x| (x * inv + 0.5).floor() / inv)
                    }
                }
            }
            Func::DaysInMonth
            | Func::DayOfMonth
            | Func::DayOfWeek
            | Func::DayOfYear
            | Func::Hour
            | Func::Minute
            | Func::Month
            | Func::Year => {
                let part = f::DatePart::of(func);
                match args.first() {
                    None => vec![VectorSample {
                        metric: Metric::from_labels(Labels::default()),
                        value: part.of_unix_seconds(t.div_euclid(1000)),
                    }],
                    Some(a) => {
                        let v = self.vector(a, t)?;
                        map_values(v, |x| part.of_unix_seconds(f::go_float_to_i64(x)))
                    }
                }
            }
            _ => {
                let g = f::simple(func);
                let v = self.vector(&args[0], t)?;
                map_values(v, g)
            }
        };
        check_unique(&out)?;
        Ok(Value::Vector(out))
    }

    /// `timestamp(v)`: a plain selector's samples give their own timestamps, anything else the
    /// evaluation time (as Prometheus's engine special-cases it).
    fn timestamp(&mut self, arg: &Expr, t: i64) -> Result<Vec<VectorSample>, EvalError> {
        if let ExprKind::Selector(sel) = &unwrap_parens(arg).kind {
            return self.instant_samples(sel, t, |s, p| VectorSample {
                metric: Metric::of_series(s).without_name(),
                value: p.timestamp_ms as f64 / 1000.0,
            });
        }
        let v = self.vector(arg, t)?;
        Ok(map_values(v, |_| t as f64 / 1000.0))
    }

    /// A function over a window (`rate`, `*_over_time`, `predict_linear`, …); argument `mi` is the range.
    fn window_call(
        &mut self,
        func: Func,
        args: &[Expr],
        mi: usize,
        t: i64,
    ) -> Result<Value, EvalError> {
        let mut params = [f64::NAN; 2];
        let mut k = 0;
        for (i, a) in args.iter().enumerate() {
            if i != mi {
                if let Some(slot) = params.get_mut(k) {
                    *slot = self.scalar(a, t)?;
                }
                k += 1;
            }
        }
        let wargs = WindowArgs::new(func, params, t)?;
        let Some(arg) = args.get(mi).map(unwrap_parens) else {
            return Ok(Value::Vector(Vec::new()));
        };
        let mut out = match &arg.kind {
            ExprKind::Matrix { sel, range_ms } => {
                self.range_function(func, sel, *range_ms, t, wargs)?
            }
            _ => {
                // A subquery: its points are exactly the window.
                let (range_ms, maxt) = match &arg.kind {
                    ExprKind::Subquery {
                        range_ms,
                        offset_ms,
                        at,
                        ..
                    } => (*range_ms, self.at_time(*at, t) - offset_ms),
                    _ => (0, t),
                };
                let m = self.matrix(arg, t)?;
                let mut out = Vec::with_capacity(m.len());
                for s in m {
                    let samples: Vec<Sample> = s
                        .points
                        .iter()
                        .map(|p| Sample {
                            timestamp_ms: p.timestamp_ms,
                            value: p.value,
                        })
                        .collect();
                    let mint = maxt - range_ms;
                    if let Some(value) = window_value(func, &samples, mint, maxt, range_ms, wargs) {
                        let metric = Metric::from_labels(s.labels);
                        let metric = if func == Func::LastOverTime {
                            metric
                        } else {
                            metric.without_name()
                        };
                        out.push(VectorSample { metric, value });
                    }
                }
                if func != Func::AbsentOverTime {
                    check_unique(&out)?;
                }
                out
            }
        };
        if func == Func::AbsentOverTime {
            out = if out.is_empty() {
                vec![absent_sample(arg)]
            } else {
                Vec::new()
            };
        }
        Ok(Value::Vector(out))
    }

    /// Touches the series `sel` selects with `f`, counting them against `max_series`.
    fn select_each(
        cache: &SeriesCache,
        opts: &EvalOptions,
        touched: &mut usize,
        sel: &VectorSelector,
        f: impl FnMut(&Arc<Series>),
    ) -> Result<(), EvalError> {
        if opts.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(EvalError::Cancelled);
        }
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
        wargs: WindowArgs,
    ) -> Result<Vec<VectorSample>, EvalError> {
        let maxt = self.at_time(sel.at, t) - sel.offset_ms;
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
                range_value(func, r, mint, maxt, range_ms, wargs, buf)
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
        // absent_over_time only asks whether anything is there: Prometheus answers before its
        // duplicate check.
        if !matches!(func, Func::LastOverTime | Func::AbsentOverTime) && !has_name_equality(sel) {
            check_unique(&out)?;
        }
        Ok(out)
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
        // Only the one-argument window functions (no scalar parameters to evaluate per step).
        if func.signature().0 != [ValueType::Matrix] || func == Func::AbsentOverTime {
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
        let maxt = self.at_time(sel.at, t) - sel.offset_ms;
        let mint = maxt - range_ms;
        let drop_name = func != Func::LastOverTime;
        let fresh_after = self.freshness_ms.map(|f| maxt - f);
        let wargs = WindowArgs::new(func, [f64::NAN; 2], t)?;
        let mut agg = Aggregation::new(op, grouping, without);
        // Large selections are scanned by two threads, each recording (group, value) in scan order, and
        // replayed here in that order: the same result as one thread, bit for bit.
        self.check_cancel()?;
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
                    if let Some(value) =
                        range_value(func, ring, mint, maxt, range_ms, wargs, &mut p.buf)
                    {
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
                let out = if op.is_set() {
                    set_operation(op, lv, rv, matching)
                } else {
                    vector_binop(op, lv, rv, matching, return_bool)?
                };
                check_unique(&out)?;
                Value::Vector(out)
            }
            // The parser allows only scalars and instant vectors as operands.
            _ => Value::Vector(Vec::new()),
        })
    }
}

/// `v` with `g` applied to every value and the metric name dropped (Prometheus's `simpleFunc`).
fn map_values(v: Vec<VectorSample>, g: impl Fn(f64) -> f64) -> Vec<VectorSample> {
    v.into_iter()
        .map(|s| VectorSample {
            metric: s.metric.without_name(),
            value: g(s.value),
        })
        .collect()
}

/// `sort` (ascending) and `sort_desc`: NaN last either way, as Prometheus's heap sorts put it.
fn sort_by_value(v: &mut [VectorSample], desc: bool) {
    v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
}

/// The sample `absent(…)` / `absent_over_time(…)` answers: 1, labelled with the argument selector's
/// equality matchers (except `__name__`, and except names matched twice), as Prometheus's
/// `createLabelsForAbsentFunction`.
fn absent_sample(arg: &Expr) -> VectorSample {
    let sel = match &unwrap_parens(arg).kind {
        ExprKind::Selector(s) | ExprKind::Matrix { sel: s, .. } => Some(s),
        _ => None,
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut repeated: HashSet<&str> = HashSet::new();
    for m in sel.iter().flat_map(|s| &s.matchers) {
        if m.name == METRIC_NAME {
            continue;
        }
        if pairs.iter().any(|(n, _)| *n == m.name) || repeated.contains(m.name.as_str()) {
            repeated.insert(&m.name);
            pairs.retain(|(n, _)| *n != m.name);
            continue;
        }
        if m.op == surge_store::MatchOp::Equal {
            pairs.push((m.name.clone(), m.value.clone()));
        } else {
            // A non-equality matcher still counts as a use of the name.
            repeated.insert(&m.name);
        }
    }
    VectorSample {
        metric: Metric::from_labels(Labels::from_pairs(pairs)),
        value: 1.0,
    }
}

/// Scalar arguments of the window functions that take them, checked once per evaluation.
#[derive(Debug, Clone, Copy)]
struct WindowArgs {
    /// In argument order without the range: `quantile_over_time`'s φ, `predict_linear`'s seconds,
    /// `holt_winters`' smoothing and trend factors.
    params: [f64; 2],
    /// The evaluation time (`predict_linear` predicts from it).
    t: i64,
}

impl WindowArgs {
    fn new(func: Func, params: [f64; 2], t: i64) -> Result<WindowArgs, EvalError> {
        if matches!(func, Func::HoltWinters | Func::DoubleExponentialSmoothing) {
            let [sf, tf] = params;
            // Prometheus panics with these (an execution error), formatting the factor with `%f`.
            if !(sf > 0.0 && sf < 1.0) {
                return Err(EvalError::Argument(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(EvalError::Argument(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
        }
        Ok(WindowArgs { params, t })
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

/// The value of window function `func` over the samples of `s` in `[mint, maxt]`, if any: from the
/// window's summary when the function needs no more, else from the decoded samples (into `buf`).
fn range_value(
    func: Func,
    ring: &SampleRing,
    mint: i64,
    maxt: i64,
    range_ms: i64,
    wargs: WindowArgs,
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
            | Func::PresentOverTime
            | Func::AbsentOverTime
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
                        Func::PresentOverTime | Func::AbsentOverTime => Some(1.0),
                        _ => None,
                    };
                }
            }
            Window::Unsupported => {}
        }
    }
    buf.clear();
    range_without_markers(ring, mint, maxt, buf);
    window_value(func, buf, mint, maxt, range_ms, wargs)
}

/// The value of window function `func` over the non-stale samples `p` of `[mint, maxt]`.
fn window_value(
    func: Func,
    p: &[Sample],
    mint: i64,
    maxt: i64,
    range_ms: i64,
    wargs: WindowArgs,
) -> Option<f64> {
    if p.is_empty() {
        return None;
    }
    let [a, b] = wargs.params;
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
        Func::PresentOverTime | Func::AbsentOverTime => Some(1.0),
        Func::StddevOverTime => Some(f::stdvar_over_time(p).sqrt()),
        Func::StdvarOverTime => Some(f::stdvar_over_time(p)),
        Func::QuantileOverTime => {
            let mut values: Vec<f64> = p.iter().map(|s| s.value).collect();
            Some(f::quantile(a, &mut values))
        }
        Func::Changes => Some(f::changes(p)),
        Func::Resets => Some(f::resets(p)),
        Func::Deriv => (p.len() >= 2).then(|| f::linear_regression(p, p[0].timestamp_ms).0),
        Func::PredictLinear => (p.len() >= 2).then(|| {
            let (slope, intercept) = f::linear_regression(p, wargs.t);
            slope * a + intercept
        }),
        Func::HoltWinters | Func::DoubleExponentialSmoothing => f::holt_winters(p, a, b),
        _ => None,
    }
}

/// The match group's labels, for error messages (Prometheus's `MatchLabels`).
fn match_group(m: &Metric, matching: Option<&VectorMatching>) -> String {
    let labels = m.to_labels();
    let mut b = labels.to_builder();
    match matching {
        Some(VectorMatching {
            on: true, labels, ..
        }) => {
            b.retain(|l| labels.iter().any(|n| *n == *l.name));
        }
        Some(VectorMatching {
            on: false, labels, ..
        }) => {
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

/// `and`, `or`, `unless` (Prometheus's `VectorAnd`, `VectorOr`, `VectorUnless`): label sets are matched
/// by signature, values and labels pass through unchanged.
fn set_operation(
    op: BinOp,
    lhs: Vec<VectorSample>,
    rhs: Vec<VectorSample>,
    matching: Option<&VectorMatching>,
) -> Vec<VectorSample> {
    match op {
        BinOp::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: HashSet<u64> = rhs.iter().map(|s| signature(&s.metric, matching)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&signature(&s.metric, matching)))
                .collect()
        }
        BinOp::Or => {
            let left: HashSet<u64> = lhs.iter().map(|s| signature(&s.metric, matching)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.metric, matching))),
            );
            out
        }
        _ => {
            if rhs.is_empty() {
                return lhs;
            }
            let right: HashSet<u64> = rhs.iter().map(|s| signature(&s.metric, matching)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&signature(&s.metric, matching)))
                .collect()
        }
    }
}

/// Arithmetic and comparisons between two vectors, one-to-one or with `group_left`/`group_right`
/// (Prometheus's `VectorBinop` and `resultMetric`).
fn vector_binop(
    op: BinOp,
    lhs: Vec<VectorSample>,
    rhs: Vec<VectorSample>,
    matching: Option<&VectorMatching>,
    return_bool: bool,
) -> Result<Vec<VectorSample>, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let card = matching.map_or(Cardinality::OneToOne, |m| m.card);
    // One-to-many is many-to-one with the sides swapped (and swapped back for the arithmetic).
    let swapped = card == Cardinality::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<u64, &VectorSample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = signature(&s.metric, matching);
        if let Some(prev) = right.insert(sig, s) {
            return Err(EvalError::ManyToMany {
                group: match_group(&s.metric, matching),
                side: if swapped { "left" } else { "right" },
                a: s.metric.to_labels().to_string(),
                b: prev.metric.to_labels().to_string(),
            });
        }
    }
    let mut matched: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = signature(&ls.metric, matching);
        let Some(rs) = right.get(&sig) else { continue };
        let (vl, vr) = if swapped {
            (rs.value, ls.value)
        } else {
            (ls.value, rs.value)
        };
        let (mut v, keep) = scalar_binop(op, vl, vr);
        if return_bool {
            v = bool_f(keep);
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(ls.metric, &rs.metric, op, matching, card);
        if return_bool {
            metric = metric.without_name();
        }
        if card == Cardinality::OneToOne {
            if matched.insert(sig, HashSet::new()).is_some() {
                return Err(EvalError::ManyToOne);
            }
        } else if !matched.entry(sig).or_default().insert(metric.hash64()) {
            return Err(EvalError::GroupingNotUnique);
        }
        out.push(VectorSample { metric, value: v });
    }
    Ok(out)
}

/// The labels of a vector/vector result: the "many" side's, without the name for arithmetic, reduced to
/// the matching labels (`on`) or without them (`ignoring`) when one-to-one, plus `group_x(...)`'s labels
/// from the "one" side.
fn result_metric(
    many: Metric,
    one: &Metric,
    op: BinOp,
    matching: Option<&VectorMatching>,
    card: Cardinality,
) -> Metric {
    let metric = if drops_name(op) {
        many.without_name()
    } else {
        many
    };
    let Some(m) = matching else {
        return metric;
    };
    if card != Cardinality::OneToOne && m.include.is_empty() {
        return metric;
    }
    let labels = metric.to_labels();
    let mut b = labels.to_builder();
    if card == Cardinality::OneToOne {
        if m.on {
            b.retain(|l| m.labels.iter().any(|n| *n == *l.name));
        } else {
            for n in &m.labels {
                b.del(n);
            }
        }
    }
    for n in &m.include {
        match one.get(n) {
            Some(v) if !v.is_empty() => {
                b.set(n.as_str(), v);
            }
            _ => {
                b.del(n);
            }
        }
    }
    Metric::from_labels(b.build())
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
    let drop_name = drops_name(op) || return_bool;
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

/// `label_replace(v, dst, replacement, src, regex)`: where the anchored regex matches `src`'s value, `dst`
/// becomes the expanded replacement (deleted when empty); elsewhere the series passes unchanged.
fn label_replace(
    v: Vec<VectorSample>,
    dst: &str,
    repl: &str,
    src: &str,
    re: &str,
) -> Result<Vec<VectorSample>, EvalError> {
    let regex = regex::Regex::new(&format!("^(?:{re})$")).map_err(|_| {
        EvalError::Argument(format!(
            "invalid regular expression in label_replace(): {re}"
        ))
    })?;
    if !surge_model::is_valid_label_name(dst) {
        return Err(EvalError::Argument(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|s| {
            let value = s.metric.get(src).unwrap_or("");
            let Some(caps) = regex.captures(value) else {
                return s;
            };
            let mut res = String::new();
            caps.expand(repl, &mut res);
            let labels = s.metric.to_labels();
            let mut b = labels.to_builder();
            b.del(dst);
            if !res.is_empty() {
                b.set(dst, res.as_str());
            }
            VectorSample {
                metric: Metric::from_labels(b.build()),
                value: s.value,
            }
        })
        .collect())
}

/// `label_join(v, dst, separator, src…)`: `dst` becomes the sources' values joined (deleted when empty).
fn label_join(
    v: Vec<VectorSample>,
    dst: &str,
    sep: &str,
    srcs: &[&str],
) -> Result<Vec<VectorSample>, EvalError> {
    if let Some(bad) = srcs.iter().find(|s| !surge_model::is_valid_label_name(s)) {
        return Err(EvalError::Argument(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    if !surge_model::is_valid_label_name(dst) {
        return Err(EvalError::Argument(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|s| {
            let joined = srcs
                .iter()
                .map(|n| s.metric.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            let labels = s.metric.to_labels();
            let mut b = labels.to_builder();
            if joined.is_empty() {
                b.del(dst);
            } else {
                b.set(dst, joined.as_str());
            }
            VectorSample {
                metric: Metric::from_labels(b.build()),
                value: s.value,
            }
        })
        .collect())
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
            AggOp::Max if g.value < value || g.value.is_nan() => g.value = value,
            AggOp::Min if g.value > value || g.value.is_nan() => g.value = value,
            AggOp::Count => g.count += 1.0,
            // Max and Min that keep their value; the rest are not streaming (handled by `aggregate`).
            _ => {}
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

/// An aggregation over an evaluated vector: the streaming ones through [`Aggregation`], the others
/// (`topk`, `bottomk`, `quantile`, `count_values`, `stddev`, `stdvar`, `group`) group by group, as
/// Prometheus's `aggregation` does.
fn aggregate(
    op: AggOp,
    v: Vec<VectorSample>,
    param: Option<Value>,
    grouping: &[String],
    without: bool,
) -> Result<Vec<VectorSample>, EvalError> {
    if op.is_streaming() {
        let mut agg = Aggregation::new(op, grouping, without);
        for s in &v {
            let (labels, drop_name) = s.metric.parts();
            agg.push(labels, drop_name, s.value);
        }
        return Ok(agg.finish());
    }
    let scalar = match &param {
        Some(Value::Scalar(x)) => *x,
        _ => f64::NAN,
    };
    let k = match op {
        AggOp::Topk | AggOp::Bottomk => {
            // Go's int64 conversion range, as Prometheus's `convertibleToInt64`.
            const TWO_63: f64 = 9_223_372_036_854_775_808.0;
            if !(-TWO_63..=TWO_63).contains(&scalar) {
                return Err(EvalError::Argument(format!(
                    "Scalar value {} overflows int64",
                    format_value(scalar)
                )));
            }
            let k = scalar as i64;
            if k < 1 {
                return Ok(Vec::new());
            }
            usize::try_from(k).unwrap_or(usize::MAX)
        }
        _ => 0,
    };
    // count_values: the value becomes a label, which then takes part in the grouping.
    let value_label = match (&param, op) {
        (Some(Value::String(l)), AggOp::CountValues) => {
            if !surge_model::is_valid_label_name(l) {
                return Err(EvalError::Argument(format!("invalid label name {l:?}")));
            }
            Some(l.as_str())
        }
        _ => None,
    };
    let mut by: Vec<String> = grouping.to_vec();
    if let Some(l) = value_label
        && !without
    {
        by.push(l.to_string());
    }
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<(Metric, Vec<VectorSample>)> = Vec::new();
    for mut s in v {
        if let Some(l) = value_label {
            let labels = s.metric.to_labels();
            let mut b = labels.to_builder();
            b.set(l, format_value(s.value).as_str());
            s.metric = Metric::from_labels(b.build());
        }
        let (labels, drop_name) = s.metric.parts();
        let sig =
            hash_labels(grouped(labels, drop_name, &by, without).map(|l| (&*l.name, &*l.value)));
        let gi = *index.entry(sig).or_insert_with(|| {
            let pairs =
                grouped(labels, drop_name, &by, without).map(|l| (l.name.clone(), l.value.clone()));
            groups.push((Metric::from_labels(Labels::from_pairs(pairs)), Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push(s);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (metric, mut members) in groups {
        let value = match op {
            AggOp::Topk | AggOp::Bottomk => {
                sort_by_value(&mut members, op == AggOp::Topk);
                members.truncate(k);
                out.extend(members);
                continue;
            }
            AggOp::Group => 1.0,
            AggOp::CountValues => members.len() as f64,
            AggOp::Quantile => {
                let mut values: Vec<f64> = members.iter().map(|s| s.value).collect();
                f::quantile(scalar, &mut values)
            }
            AggOp::Stddev | AggOp::Stdvar => {
                // Prometheus's running form: the first element seeds the mean, then Welford's update.
                let (mut count, mut mean, mut var) = (1.0f64, members[0].value, 0.0f64);
                for s in &members[1..] {
                    count += 1.0;
                    let delta = s.value - mean;
                    mean += delta / count;
                    var += delta * (s.value - mean);
                }
                if op == AggOp::Stddev {
                    (var / count).sqrt()
                } else {
                    var / count
                }
            }
            _ => f64::NAN,
        };
        out.push(VectorSample { metric, value });
    }
    Ok(out)
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

    #[test]
    fn a_raised_cancel_flag_stops_every_kind_of_evaluation() {
        let c = dataset();
        let cancel = Cancel::new();
        let o = EvalOptions {
            cancel: Some(cancel.clone()),
            ..EvalOptions::default()
        };
        // Not raised: evaluations run as usual.
        assert_eq!(run(&c, "sum(c)", 120.0, &o), "{} 165");
        cancel.cancel();
        for q in [
            "c",
            "sum(c)",
            "rate(c[1m])",
            "sum(rate(c[1m]))",
            "c[1m]",
            "max_over_time(sum(c)[1m:10s])",
        ] {
            assert_eq!(
                run(&c, q, 120.0, &o),
                "error: query timed out in expression evaluation",
                "{q}"
            );
        }
        let e = parse("vector(1)").unwrap();
        assert_eq!(
            eval_range(&c, &e, 0, 60_000, 10_000, &o).err(),
            Some(EvalError::Cancelled)
        );
    }

    #[test]
    fn max_samples_bounds_range_selectors_subqueries_and_range_results() {
        let c = dataset();
        let o = |max_samples| EvalOptions {
            max_samples,
            ..EvalOptions::default()
        };
        // `c[30s]` at 120 s: each of the two `c` series holds the 4 samples at 90, 100, 110 and 120 s.
        let matrix_points = 8;
        assert!(run(&c, "c[30s]", 120.0, &o(matrix_points)).starts_with("Matrix"));
        assert_eq!(
            run(&c, "c[30s]", 120.0, &o(matrix_points - 1)),
            format!(
                "error: query processing would load too many samples into memory in query execution (limit {})",
                matrix_points - 1
            )
        );
        // A range query of `vector(1)` over 7 steps holds 7 points.
        let e = parse("vector(1)").unwrap();
        assert!(eval_range(&c, &e, 0, 60_000, 10_000, &o(7)).is_ok());
        assert_eq!(
            eval_range(&c, &e, 0, 60_000, 10_000, &o(6)).err(),
            Some(EvalError::TooManySamples { limit: 6 })
        );
        // A subquery's points count too.
        assert!(
            run(&c, "max_over_time(vector(1)[1m:10s])", 120.0, &o(6))
                .starts_with("error: query processing")
        );
        assert_eq!(
            run(&c, "max_over_time(vector(1)[1m:10s])", 120.0, &o(7)),
            "{} 1"
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

    /// What Prometheus 2.42 cannot be asked (so the differential test cannot cover it): Prometheus 3's
    /// `double_exponential_smoothing` (the new name of `holt_winters`) and the quoted UTF-8 selectors.
    #[test]
    fn prometheus_3_only_syntax() {
        let c = dataset();
        let o = EvalOptions::default();
        let hw = run(&c, "holt_winters(g[2m], 0.5, 0.3)", 120.0, &o);
        assert!(hw.starts_with("{job=\"a\"} "), "{hw}");
        assert_eq!(
            run(
                &c,
                "double_exponential_smoothing(g[2m], 0.5, 0.3)",
                120.0,
                &o
            ),
            hw
        );
        assert_eq!(
            run(&c, "double_exponential_smoothing(g[2m], 1, 0.3)", 120.0, &o),
            "error: invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"
        );
        // Prometheus 3's native-histogram functions skip float samples, the only kind the store holds.
        for q in [
            "histogram_avg(h_bucket)",
            "histogram_stddev(h_bucket)",
            "histogram_stdvar(g)",
        ] {
            assert_eq!(run(&c, q, 120.0, &o), "", "{q}");
        }
        let l = Labels::from_pairs([("__name__", "my.metric"), ("k.8s", "v"), ("job", "a")]);
        for (t, v) in [(0, 1.0), (10_000, 4.0)] {
            c.append(
                &l,
                Sample {
                    timestamp_ms: t,
                    value: v,
                },
                0,
            )
            .unwrap();
        }
        let table = [
            ("{\"my.metric\"}", "my.metric{job=\"a\", k.8s=\"v\"} 4"),
            (
                "{\"my.metric\", \"k.8s\"=\"v\"}",
                "my.metric{job=\"a\", k.8s=\"v\"} 4",
            ),
            ("{\"my.metric\", \"k.8s\"=\"w\"}", ""),
            ("sum by (\"k.8s\") ({\"my.metric\"})", "{k.8s=\"v\"} 4"),
            (
                "increase({\"my.metric\"}[10s])",
                "{job=\"a\", k.8s=\"v\"} 3",
            ),
            (
                "{\"my.metric\"} * on(job) group_left g",
                "{job=\"a\", k.8s=\"v\"} 4",
            ),
        ];
        for (q, want) in table {
            let got = run(&c, q, 10.0, &o)
                .replace(",k", ", k")
                .replace(",j", ", j");
            assert_eq!(got, want, "{q}");
        }
    }

    /// The autoscaling preset's freshness rule holds through the constructs added beside it: a series
    /// that stopped reporting is absent from subqueries, set operations, `absent` and the new
    /// aggregations alike, while the Prometheus preset still sees it within the lookback.
    #[test]
    fn freshness_applies_to_every_construct() {
        let c = dataset();
        let strict = EvalOptions {
            freshness: Some(Duration::from_secs(5)),
            ..EvalOptions::default()
        };
        let lenient = EvalOptions::default();
        let table: &[(&str, &str, &str)] = &[
            // (query, at 126 s with freshness, at 126 s without)
            ("absent(g)", "{} 1", ""),
            ("g or vector(0)", "{} 0", "{} 0; g{job=\"a\"} 9"),
            ("topk(1, g)", "", "g{job=\"a\"} 9"),
            ("g and on(job) c", "", "g{job=\"a\"} 9"),
            ("quantile(0.5, g)", "", "{} 9"),
            ("count_values(\"v\", g)", "", "{v=\"9\"} 1"),
        ];
        for (q, want_strict, want_lenient) in table {
            assert_eq!(
                run(&c, q, 126.0, &strict),
                *want_strict,
                "{q} (autoscaling)"
            );
            assert_eq!(
                run(&c, q, 126.0, &lenient),
                *want_lenient,
                "{q} (prometheus)"
            );
        }
        // A subquery's inner steps each apply the rule at their own time: at 126 s the steps up to 125 s
        // still see the 120 s sample as fresh; by 160 s every step of the window sees it stale.
        let sub = "max_over_time(g[30s:5s])";
        assert_eq!(run(&c, sub, 126.0, &strict), "{job=\"a\"} 9");
        assert_eq!(run(&c, sub, 160.0, &strict), "");
        assert_eq!(run(&c, sub, 160.0, &lenient), "{job=\"a\"} 9");
        // Fresh data is read the same way by both presets.
        for q in ["topk(1, g)", "max_over_time(g[30s:5s])", "g or vector(0)"] {
            assert_eq!(
                run(&c, q, 121.0, &strict),
                run(&c, q, 121.0, &lenient),
                "{q}"
            );
        }
    }

    /// Semantics worked out by hand on the small dataset (the differential test covers them against
    /// Prometheus on a larger one).
    #[test]
    fn new_functions_and_operators() {
        let c = dataset();
        let o = EvalOptions::default();
        let table: &[(&str, f64, &str)] = &[
            ("resets(c{job=\"a\"}[2m])", 120.0, "{job=\"a\"} 1"),
            ("changes(g[30s])", 120.0, "{job=\"a\"} 3"),
            ("deriv(c{job=\"b\"}[1m])", 120.0, "{job=\"b\"} 0"),
            ("deriv(c{job=\"a\"}[30s])", 120.0, "{job=\"a\"} 1"),
            (
                "predict_linear(c{job=\"a\"}[30s], 10)",
                120.0,
                "{job=\"a\"} 75",
            ),
            ("quantile_over_time(0.5, g[30s])", 120.0, "{job=\"a\"} 6.5"),
            ("stdvar_over_time(c{job=\"b\"}[1m])", 120.0, "{job=\"b\"} 0"),
            ("present_over_time(g[10s])", 120.0, "{job=\"a\"} 1"),
            ("absent_over_time(g[10s])", 120.0, ""),
            (
                "absent_over_time(nope{job=\"x\"}[10s])",
                120.0,
                "{job=\"x\"} 1",
            ),
            ("timestamp(g)", 125.0, "{job=\"a\"} 120"),
            ("timestamp(g offset 10s)", 125.0, "{job=\"a\"} 110"),
            ("timestamp(-g)", 125.0, "{job=\"a\"} 125"),
            ("g @ 50", 120.0, "g{job=\"a\"} 9"),
            ("g @ end() offset 10s", 120.0, "g{job=\"a\"} 8"),
            ("sum_over_time(g[20s:10s])", 120.0, "{job=\"a\"} 22"),
            ("count_over_time(vector(1)[1m:15s])", 120.0, "{} 5"),
            ("topk(1, c)", 120.0, "c{job=\"b\"} 100"),
            ("bottomk(1, c)", 120.0, "c{job=\"a\"} 65"),
            ("quantile(0.5, c)", 120.0, "{} 82.5"),
            ("stddev(c)", 120.0, "{} 17.5"),
            ("group by (job) (c)", 120.0, "{job=\"a\"} 1; {job=\"b\"} 1"),
            (
                "count_values(\"v\", c)",
                120.0,
                "{v=\"100\"} 1; {v=\"65\"} 1",
            ),
            ("c and on(job) g", 120.0, "c{job=\"a\"} 65"),
            ("c unless on(job) g", 120.0, "c{job=\"b\"} 100"),
            ("g or c", 120.0, "c{job=\"b\"} 100; g{job=\"a\"} 9"),
            (
                "c * on(job) group_left(le) h_bucket{le=\"0.1\"}",
                120.0,
                "{job=\"a\", le=\"0.1\"} 650",
            ),
            (
                "label_replace(g, \"x\", \"<$1>\", \"job\", \"(.)\")",
                120.0,
                "g{job=\"a\", x=\"<a>\"} 9",
            ),
            (
                "label_join(c, \"j\", \"-\", \"job\", \"job\")",
                120.0,
                "c{j=\"a-a\", job=\"a\"} 65; c{j=\"b-b\", job=\"b\"} 100",
            ),
            ("sgn(-g)", 120.0, "{job=\"a\"} -1"),
            ("round(g / 4)", 120.0, "{job=\"a\"} 2"),
            ("hour(vector(7200 + 59))", 0.0, "{} 2"),
            ("day_of_week(vector(0))", 0.0, "{} 4"),
            ("days_in_month(vector(951782400))", 0.0, "{} 29"),
            ("day_of_year(vector(951868800))", 0.0, "{} 61"),
            ("year()", 0.0, "{} 1970"),
            ("pi()", 0.0, "scalar 3.141592653589793"),
            ("sort_desc(c)", 120.0, "c{job=\"b\"} 100; c{job=\"a\"} 65"),
            ("sort(c)", 120.0, "c{job=\"a\"} 65; c{job=\"b\"} 100"),
        ];
        let mut failures = Vec::new();
        for (q, t, want) in table {
            let got = run(&c, q, *t, &o).replace(",l", ", l").replace(",x", ", x");
            let got = got.replace(",j", ", j");
            if got != *want {
                failures.push(format!("{q} @ {t}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    /// A window holding only the first sample of a compressed block (the store's blocks hold 64): once a
    /// subtraction overflow in the store's window summary (found by the differential test).
    #[test]
    fn window_with_one_sample_at_a_block_start() {
        let c = SeriesCache::new(CacheOptions {
            retention: Duration::from_secs(3600),
            ..CacheOptions::default()
        });
        let l = Labels::from_pairs([("__name__", "x"), ("job", "a")]);
        for i in 0..200i64 {
            c.append(
                &l,
                Sample {
                    timestamp_ms: i * 1000,
                    value: i as f64,
                },
                0,
            )
            .unwrap();
        }
        let o = EvalOptions::default();
        for t in [64.0, 128.0] {
            assert_eq!(run(&c, "sum(rate(x[500ms]))", t, &o), "");
            assert_eq!(run(&c, "sum(count_over_time(x[500ms]))", t, &o), "{} 1");
            assert_eq!(run(&c, "sum(irate(x[1500ms]))", t, &o), "{} 1");
        }
    }
}
