//! Metric rules compiled at start-up, and their evaluation under the freshness rule.
//!
//! A request narrows a rule's query by adding label matchers to **every** vector selector (from the
//! request's selectors, its namespace and object name) and evaluates it at now with
//! `EvalOptions::autoscaling`. The evaluator itself drops series whose newest
//! sample is older than `stale_after` or is a staleness marker, for instant and range selectors alike, so
//! a result only ever holds fresh data. An empty result is then told apart:
//!
//! - the query's selectors match no series at all → the metric is known but idle (the caller decides:
//!   external metrics answer one item of value 0);
//! - they match series, all stale → [`ApiError::Unavailable`]: the metric is treated as missing, never
//!   answered with an old value.

use std::collections::HashSet;

use surge_model::Labels;

use super::options::{CustomMetricRule, ExternalMetricRule};
use super::status::ApiError;
use surge_promql::ast::{ExprKind, VectorSelector};
use surge_promql::{self as promql, EvalOptions, Expr, Value};
use surge_store::{Matcher, SeriesCache};

/// Why a rule could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The query does not parse (the parser's message names line and column).
    #[error("{api} metric {name:?}: query {query:?}: {message}")]
    Query {
        api: &'static str,
        name: String,
        query: String,
        message: String,
    },
    /// Two rules of one API with the same name (and resource).
    #[error("{api} metric {name:?} is defined twice")]
    Duplicate { api: &'static str, name: String },
    /// A name the API cannot serve (empty, or containing `/`).
    #[error("{api} metric name {name:?} is not a valid path segment")]
    BadName { api: &'static str, name: String },
}

/// What the API knows about a resource: how to describe its objects and which result label names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKind {
    /// As written in paths: `pods`, `deployments.apps`.
    pub resource: String,
    pub kind: String,
    /// `/v1` for the core group (as the reference implementations write it), else `group/v1`.
    pub api_version: String,
    pub namespaced: bool,
}

/// Cluster-scoped resources among the common ones; anything else is taken as namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "storageclasses.storage.k8s.io",
    "clusterroles.rbac.authorization.k8s.io",
    "customresourcedefinitions.apiextensions.k8s.io",
];

fn singular(plural: &str) -> String {
    if let Some(s) = plural.strip_suffix("sses") {
        format!("{s}ss")
    } else if let Some(s) = plural.strip_suffix("ies") {
        format!("{s}y")
    } else if let Some(s) = plural.strip_suffix('s') {
        s.to_owned()
    } else {
        plural.to_owned()
    }
}

impl ResourceKind {
    /// Describes a group-resource (`pods`, `deployments.apps`, `widgets.example.com`).
    pub fn of(resource: &str) -> ResourceKind {
        let (res, group) = resource.split_once('.').unwrap_or((resource, ""));
        let known = match res {
            "pods" => Some("Pod"),
            "namespaces" => Some("Namespace"),
            "nodes" => Some("Node"),
            "services" => Some("Service"),
            "persistentvolumeclaims" => Some("PersistentVolumeClaim"),
            "persistentvolumes" => Some("PersistentVolume"),
            "deployments" => Some("Deployment"),
            "statefulsets" => Some("StatefulSet"),
            "replicasets" => Some("ReplicaSet"),
            "daemonsets" => Some("DaemonSet"),
            "replicationcontrollers" => Some("ReplicationController"),
            "jobs" => Some("Job"),
            "cronjobs" => Some("CronJob"),
            "ingresses" => Some("Ingress"),
            _ => None,
        };
        let kind = known.map(str::to_owned).unwrap_or_else(|| {
            let s = singular(res);
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        });
        ResourceKind {
            resource: resource.to_owned(),
            kind,
            api_version: format!("{group}/v1"),
            namespaced: !CLUSTER_SCOPED.contains(&resource),
        }
    }

    /// The default result label naming an object of this resource (`deployments.apps` → `deployment`).
    pub fn default_object_label(&self) -> String {
        singular(self.resource.split('.').next().unwrap_or_default())
    }

    /// Whether a request's resource segment names this resource (`deployments` also names
    /// `deployments.apps`).
    pub fn matches(&self, requested: &str) -> bool {
        self.resource == requested
            || (!requested.contains('.') && self.resource.split('.').next() == Some(requested))
    }
}

/// A compiled external metric.
#[derive(Debug)]
pub struct ExternalRule {
    pub name: String,
    pub expr: Expr,
}

/// A compiled custom metric.
#[derive(Debug)]
pub struct CustomRule {
    pub name: String,
    pub resource: ResourceKind,
    pub object_label: String,
    pub window_s: u64,
    pub expr: Expr,
    pub ignore_label_selector: bool,
}

fn check_name(api: &'static str, name: &str) -> Result<(), RuleError> {
    if name.is_empty() || name.contains(['/', '?', '#', ' ']) || name == "." || name == ".." {
        return Err(RuleError::BadName {
            api,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn parse(api: &'static str, name: &str, query: &str) -> Result<Expr, RuleError> {
    promql::parse(query).map_err(|e| RuleError::Query {
        api,
        name: name.to_owned(),
        query: query.to_owned(),
        message: e.to_string(),
    })
}

/// Which list a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    /// `external_metrics`.
    External,
    /// `custom_metrics`.
    Custom,
}

/// Which field of a rule a [`RuleProblem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    Name,
    Query,
}

/// One problem of one rule, located by its list and its index in that list.
#[derive(Debug)]
pub struct RuleProblem {
    pub list: RuleList,
    /// The rule's index in its list, from 0.
    pub index: usize,
    pub field: RuleField,
    pub error: RuleError,
}

impl RuleProblem {
    /// What is wrong, phrased for a reader already pointed at the field (so without the API, the rule's
    /// name or its query): `query does not parse: ...`.
    pub fn reason(&self) -> String {
        match &self.error {
            RuleError::Query { message, .. } => format!("query does not parse: {message}"),
            RuleError::Duplicate { name, .. } => format!("{name:?} is defined twice"),
            RuleError::BadName { name, .. } => {
                format!("{name:?} is not a valid path segment (no /, ?, #, spaces, . or ..)")
            }
        }
    }
}

/// The external rules that compile, and every problem of the others (in rule order; within a rule, its
/// name before its query).
fn external(rules: &[ExternalMetricRule]) -> (Vec<ExternalRule>, Vec<RuleProblem>) {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    let mut problems = Vec::new();
    for (index, r) in rules.iter().enumerate() {
        let problem = |field, error| RuleProblem {
            list: RuleList::External,
            index,
            field,
            error,
        };
        let named = match check_name("external", &r.name) {
            Err(e) => Err(e),
            Ok(()) if !seen.insert(r.name.as_str()) => Err(RuleError::Duplicate {
                api: "external",
                name: r.name.clone(),
            }),
            Ok(()) => Ok(()),
        };
        if let Err(e) = named {
            problems.push(problem(RuleField::Name, e));
        }
        match parse("external", &r.name, &r.query) {
            Ok(expr) => out.push(ExternalRule {
                name: r.name.clone(),
                expr,
            }),
            Err(e) => problems.push(problem(RuleField::Query, e)),
        }
    }
    (out, problems)
}

/// The custom rules that compile, and every problem of the others (ordered as [`external`]'s).
fn custom(rules: &[CustomMetricRule]) -> (Vec<CustomRule>, Vec<RuleProblem>) {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    let mut problems = Vec::new();
    for (index, r) in rules.iter().enumerate() {
        let problem = |field, error| RuleProblem {
            list: RuleList::Custom,
            index,
            field,
            error,
        };
        let named = match check_name("custom", &r.name) {
            Err(e) => Err(e),
            Ok(()) if !seen.insert((r.resource.as_str(), r.name.as_str())) => {
                Err(RuleError::Duplicate {
                    api: "custom",
                    name: format!("{}/{}", r.resource, r.name),
                })
            }
            Ok(()) => Ok(()),
        };
        if let Err(e) = named {
            problems.push(problem(RuleField::Name, e));
        }
        let expr = match parse("custom", &r.name, &r.query) {
            Ok(expr) => expr,
            Err(e) => {
                problems.push(problem(RuleField::Query, e));
                continue;
            }
        };
        let resource = ResourceKind::of(&r.resource);
        let window_s = match r.window {
            Some(w) => w.as_secs(),
            None => {
                let longest = longest_range_ms(&expr);
                if longest > 0 {
                    u64::try_from(longest / 1000).unwrap_or(60)
                } else {
                    60
                }
            }
        };
        out.push(CustomRule {
            name: r.name.clone(),
            object_label: r
                .object_label
                .clone()
                .unwrap_or_else(|| resource.default_object_label()),
            resource,
            window_s,
            expr,
            ignore_label_selector: r.ignore_label_selector,
        });
    }
    (out, problems)
}

/// Every problem [`compile_external`] and [`compile_custom`] would refuse, not just the first: external
/// rules first, then custom ones. Empty when both compile. Pure: no registry, no port, no file.
pub fn check(
    external_rules: &[ExternalMetricRule],
    custom_rules: &[CustomMetricRule],
) -> Vec<RuleProblem> {
    let mut problems = external(external_rules).1;
    problems.extend(custom(custom_rules).1);
    problems
}

/// Compiles the external rules; names are unique. Fails with the first problem [`check`] reports.
pub fn compile_external(rules: &[ExternalMetricRule]) -> Result<Vec<ExternalRule>, RuleError> {
    let (compiled, problems) = external(rules);
    match problems.into_iter().next() {
        Some(p) => Err(p.error),
        None => Ok(compiled),
    }
}

/// Compiles the custom rules; (resource, name) pairs are unique. Fails with the first problem [`check`]
/// reports.
pub fn compile_custom(rules: &[CustomMetricRule]) -> Result<Vec<CustomRule>, RuleError> {
    let (compiled, problems) = custom(rules);
    match problems.into_iter().next() {
        Some(p) => Err(p.error),
        None => Ok(compiled),
    }
}

fn walk<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a VectorSelector, i64)) {
    match &e.kind {
        ExprKind::Selector(s) => f(s, 0),
        ExprKind::Matrix { sel, range_ms } => f(sel, *range_ms),
        ExprKind::Call { args, .. } => args.iter().for_each(|a| walk(a, f)),
        ExprKind::Aggregate { expr, .. } | ExprKind::Subquery { expr, .. } => walk(expr, f),
        ExprKind::Binary { lhs, rhs, .. } => {
            walk(lhs, f);
            walk(rhs, f);
        }
        ExprKind::Neg(e) | ExprKind::Paren(e) => walk(e, f),
        ExprKind::Number(_) | ExprKind::String(_) => {}
    }
}

fn walk_mut(e: &mut Expr, f: &mut dyn FnMut(&mut VectorSelector)) {
    match &mut e.kind {
        ExprKind::Selector(s) => f(s),
        ExprKind::Matrix { sel, .. } => f(sel),
        ExprKind::Call { args, .. } => args.iter_mut().for_each(|a| walk_mut(a, f)),
        ExprKind::Aggregate { expr, .. } | ExprKind::Subquery { expr, .. } => walk_mut(expr, f),
        ExprKind::Binary { lhs, rhs, .. } => {
            walk_mut(lhs, f);
            walk_mut(rhs, f);
        }
        ExprKind::Neg(e) | ExprKind::Paren(e) => walk_mut(e, f),
        ExprKind::Number(_) | ExprKind::String(_) => {}
    }
}

fn longest_range_ms(e: &Expr) -> i64 {
    let mut longest = 0;
    walk(e, &mut |_, r| longest = longest.max(r));
    longest
}

/// `expr` with `extra` added to every vector selector.
pub fn narrow(expr: &Expr, extra: &[Matcher]) -> Expr {
    let mut e = expr.clone();
    if !extra.is_empty() {
        walk_mut(&mut e, &mut |sel| {
            sel.matchers.extend(extra.iter().cloned())
        });
    }
    e
}

/// One result sample: its labels (without `__name__`) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSample {
    pub labels: Labels,
    pub value: f64,
}

/// The outcome of evaluating a narrowed query under the freshness rule.
#[derive(Debug)]
pub struct Evaluation {
    /// The fresh result samples.
    pub samples: Vec<ResultSample>,
    /// Whether the selectors matched any series at all.
    pub had_series: bool,
}

/// Evaluates `expr` at `now_ms` and applies the freshness rule (module docs). `what` names the metric in
/// the stale error.
pub fn evaluate(
    cache: &SeriesCache,
    opts: &EvalOptions,
    expr: &Expr,
    now_ms: i64,
    what: &str,
) -> Result<Evaluation, ApiError> {
    let value = promql::eval_instant(cache, expr, now_ms, opts)
        .map_err(|e| ApiError::Internal(format!("evaluating {what}: {e}")))?;
    let samples: Vec<ResultSample> = match value {
        Value::Scalar(v) => vec![ResultSample {
            labels: Labels::default(),
            value: v,
        }],
        Value::Vector(v) => v
            .into_iter()
            .map(|s| ResultSample {
                labels: s.metric.without_name().to_labels(),
                value: s.value,
            })
            .collect(),
        Value::String(_) | Value::Matrix(_) => Vec::new(),
    };
    // The evaluator already applies the freshness rule to every selector (instant and range), so a
    // non-empty result holds only fresh data. Only an empty result needs a look at the inputs, to tell an
    // idle metric (no series: value 0) from one whose data went stale (an error, never an old value).
    if !samples.is_empty() {
        return Ok(Evaluation {
            samples,
            had_series: true,
        });
    }
    let stale_after = cache.options().stale_after;
    let mut had_series = false;
    let mut select_error = None;
    walk(
        expr,
        &mut |sel, _| match cache.select(&sel.matchers, opts.max_series) {
            Ok(series) => had_series |= !series.is_empty(),
            Err(e) => select_error = Some(e),
        },
    );
    if let Some(e) = select_error {
        return Err(ApiError::Internal(format!("evaluating {what}: {e}")));
    }
    if had_series {
        return Err(ApiError::Unavailable(format!(
            "the data for {what} is stale: no sample newer than {}s (aggregator.cache.stale_after); the metric is missing, not old",
            stale_after.as_secs_f64()
        )));
    }
    Ok(Evaluation {
        samples,
        had_series: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_kinds() {
        let p = ResourceKind::of("pods");
        assert_eq!(
            (p.kind.as_str(), p.api_version.as_str(), p.namespaced),
            ("Pod", "/v1", true)
        );
        assert_eq!(p.default_object_label(), "pod");
        let d = ResourceKind::of("deployments.apps");
        assert_eq!(
            (d.kind.as_str(), d.api_version.as_str()),
            ("Deployment", "apps/v1")
        );
        assert_eq!(d.default_object_label(), "deployment");
        assert!(d.matches("deployments") && d.matches("deployments.apps"));
        assert!(!ResourceKind::of("namespaces").namespaced);
        assert_eq!(
            ResourceKind::of("ingresses.networking.k8s.io").default_object_label(),
            "ingress"
        );
        let w = ResourceKind::of("widgets.example.com");
        assert_eq!(
            (w.kind.as_str(), w.api_version.as_str()),
            ("Widget", "example.com/v1")
        );
    }

    fn ext(name: &str, query: &str) -> ExternalMetricRule {
        ExternalMetricRule {
            name: name.into(),
            query: query.into(),
        }
    }

    fn cus(name: &str, resource: &str, query: &str) -> CustomMetricRule {
        CustomMetricRule {
            name: name.into(),
            resource: resource.into(),
            query: query.into(),
            object_label: None,
            window: None,
            ignore_label_selector: false,
        }
    }

    #[test]
    fn check_reports_every_problem_with_its_rule() {
        let external = [ext("ok", "sum(a)"), ext("ok", "sum(b"), ext("..", "c")];
        let custom = [
            cus("x", "pods", "sum by (pod) (x)"),
            cus("x", "nodes", "x"),
            cus("x", "pods", "rate(x[1m]"),
        ];
        let got: Vec<(RuleList, usize, RuleField, String)> = check(&external, &custom)
            .iter()
            .map(|p| (p.list, p.index, p.field, p.reason()))
            .collect();
        let want = [
            (
                RuleList::External,
                1,
                RuleField::Name,
                "\"ok\" is defined twice",
            ),
            (
                RuleList::External,
                1,
                RuleField::Query,
                "query does not parse",
            ),
            (
                RuleList::External,
                2,
                RuleField::Name,
                "\"..\" is not a valid path segment",
            ),
            (
                RuleList::Custom,
                2,
                RuleField::Name,
                "\"pods/x\" is defined twice",
            ),
            (
                RuleList::Custom,
                2,
                RuleField::Query,
                "query does not parse",
            ),
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2), "{got:#?}");
            assert!(
                g.3.starts_with(w.3),
                "{:?} does not start with {:?}",
                g.3,
                w.3
            );
        }
        // The compilers stop at the first of them, and accept what check accepts.
        assert!(matches!(
            compile_external(&external),
            Err(RuleError::Duplicate { .. })
        ));
        assert!(check(&external[..1], &custom[..2]).is_empty());
        assert_eq!(compile_custom(&custom[..2]).unwrap().len(), 2);
    }

    #[test]
    fn narrowing_reaches_every_selector() {
        let e = promql::parse("sum(rate(a[1m])) / on() max(b) + c").unwrap();
        let m = Matcher::new(surge_store::MatchOp::Equal, "x", "1").unwrap();
        let n = narrow(&e, &[m]);
        let mut count = 0;
        walk(&n, &mut |sel, _| {
            assert!(sel.matchers.iter().any(|m| m.name == "x"));
            count += 1;
        });
        assert_eq!(count, 3);
        assert_eq!(longest_range_ms(&n), 60_000);
    }
}
