//! Karpenter `NodePool` (`karpenter.sh/v1`) as surge reads it: every field either honoured or refused
//! with its path and the reason, never silently ignored.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::cron::Schedule;
use crate::pod::{Taint, TaintEffect};
use crate::requirements::{self as req, Operator, Requirement};
use crate::resources::{parse_cpu, parse_memory};
use crate::source::{Document, LoadError, LoadErrors};

/// A NodePool, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePool {
    pub name: String,
    /// Higher first; no weight is 0.
    pub weight: i32,
    /// Requirements on the well-known labels (instance type, family, zone, capacity type, ...).
    pub requirements: Vec<Requirement>,
    /// Labels every node of the pool carries: the template's labels and the custom-key requirements
    /// (`key In [value]`).
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints the node starts with and loses once initialized: they do not decide where pods go.
    pub startup_taints: Vec<Taint>,
    pub limits: Limits,
    pub disruption: Disruption,
    /// Passed through to the NodeClaims surge creates (Karpenter's NodeClaim lifecycle enforces them).
    pub expire_after: Option<String>,
    pub termination_grace_period: Option<String>,
    pub node_class_ref: Option<NodeClassRef>,
}

/// `spec.limits`: caps on the total capacity of the pool's nodes (None: no cap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub nodes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClassRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// `spec.disruption`.
#[derive(Clone, Debug, PartialEq)]
pub struct Disruption {
    pub consolidation_policy: ConsolidationPolicy,
    /// How long a node must have had no pod scheduled or removed before it is consolidated; None is
    /// `Never` (no consolidation).
    pub consolidate_after: Option<SignedDuration>,
    /// Karpenter's default when none are written: one budget of 10 %.
    pub budgets: Vec<Budget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    WhenEmptyOrUnderutilized,
}

/// Why Karpenter disrupts a node; budgets may apply to some reasons only.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
pub enum DisruptionReason {
    Underutilized,
    Empty,
    Drifted,
}

/// How many nodes a budget lets be disrupted at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetNodes {
    Count(u64),
    Percent(u64),
}

/// One disruption budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub nodes: BudgetNodes,
    /// Active for `duration` after each hit of `schedule` (UTC); always active without a schedule.
    pub schedule: Option<(Schedule, SignedDuration)>,
    /// The reasons this budget applies to; None: all.
    pub reasons: Option<Vec<DisruptionReason>>,
}

impl Budget {
    /// Karpenter's `Budget.GetAllowedDisruptions`: the nodes this budget allows disrupted among
    /// `num_nodes` (a percent rounds up, like a PDB's maxUnavailable), u64::MAX when inactive.
    pub fn allowed(&self, now: Timestamp, num_nodes: u64) -> u64 {
        if let Some((schedule, duration)) = &self.schedule
            && !schedule.active(now, *duration)
        {
            return u64::MAX;
        }
        match self.nodes {
            BudgetNodes::Count(n) => n,
            BudgetNodes::Percent(p) => (p * num_nodes).div_ceil(100),
        }
    }
}

impl Disruption {
    /// Karpenter's `NodePool.GetAllowedDisruptionsByReason`: the most restrictive active budget that
    /// applies to `reason` (u64::MAX when none is active).
    pub fn allowed(&self, now: Timestamp, num_nodes: u64, reason: DisruptionReason) -> u64 {
        self.budgets
            .iter()
            .filter(|b| b.reasons.as_ref().is_none_or(|r| r.contains(&reason)))
            .map(|b| b.allowed(now, num_nodes))
            .min()
            .unwrap_or(u64::MAX)
    }
}

// The document as written. Unknown fields are refused by serde (deny_unknown_fields) with their path.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNodePool {
    api_version: String,
    kind: String,
    metadata: RawMetadata,
    spec: RawSpec,
    /// Written by Karpenter, read by nobody here.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_yaml_ng::Value>,
}

/// Object metadata: only the name decides anything; the rest (labels, annotations, uid, ...) is
/// metadata of the NodePool object itself, not of its nodes.
#[derive(Deserialize)]
struct RawMetadata {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    template: RawTemplate,
    #[serde(default)]
    disruption: Option<RawDisruption>,
    #[serde(default)]
    limits: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    #[serde(default)]
    weight: Option<i64>,
    #[serde(default)]
    replicas: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    metadata: Option<RawTemplateMetadata>,
    spec: RawTemplateSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTemplateMetadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Annotations go on the NodeClaim and node; they decide no placement.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTemplateSpec {
    #[serde(default)]
    node_class_ref: Option<NodeClassRef>,
    #[serde(default)]
    requirements: Vec<RawRequirement>,
    #[serde(default)]
    taints: Vec<Taint>,
    #[serde(default)]
    startup_taints: Vec<Taint>,
    #[serde(default)]
    expire_after: Option<String>,
    #[serde(default)]
    termination_grace_period: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRequirement {
    key: String,
    operator: Operator,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    min_values: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDisruption {
    #[serde(default)]
    consolidation_policy: Option<String>,
    #[serde(default)]
    consolidate_after: Option<String>,
    #[serde(default)]
    budgets: Option<Vec<RawBudget>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawBudget {
    nodes: String,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    reasons: Option<Vec<DisruptionReason>>,
}

impl NodePool {
    /// Reads and validates one NodePool document; every problem is reported with its field path, line
    /// and column.
    pub fn from_yaml(text: &str, source: &str) -> Result<NodePool, LoadErrors> {
        let doc = Document::index(text, source)?;
        let raw: RawNodePool = doc.parse(text)?;
        let mut v = Validator {
            doc: &doc,
            errors: Vec::new(),
        };
        let pool = v.pool(raw);
        if v.errors.is_empty() {
            Ok(pool)
        } else {
            Err(LoadErrors(v.errors))
        }
    }

    /// Reads every NodePool of a multi-document YAML stream (`---` separated).
    pub fn all_from_yaml(text: &str, source: &str) -> Result<Vec<NodePool>, LoadErrors> {
        let mut pools = Vec::new();
        let mut errors = Vec::new();
        for (i, part) in split_documents(text).into_iter().enumerate() {
            if part
                .trim()
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                continue;
            }
            match NodePool::from_yaml(part, &format!("{source} (document {})", i + 1)) {
                Ok(p) => pools.push(p),
                Err(mut e) => errors.append(&mut e.0),
            }
        }
        if errors.is_empty() {
            Ok(pools)
        } else {
            Err(LoadErrors(errors))
        }
    }
}

pub(crate) fn split_documents(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            parts.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    parts.push(&text[start..]);
    parts
}

struct Validator<'a> {
    doc: &'a Document,
    errors: Vec<LoadError>,
}

impl Validator<'_> {
    fn err(&mut self, path: &str, reason: impl Into<String>) {
        self.errors.push(self.doc.error(path, reason));
    }

    fn pool(&mut self, raw: RawNodePool) -> NodePool {
        if raw.api_version != "karpenter.sh/v1" {
            self.err(
                "apiVersion",
                format!("{:?} is not karpenter.sh/v1", raw.api_version),
            );
        }
        if raw.kind != "NodePool" {
            self.err("kind", format!("{:?} is not NodePool", raw.kind));
        }
        let name = raw.metadata.name.unwrap_or_default();
        if name.is_empty() {
            self.err("metadata.name", "a NodePool needs a name");
        }
        let spec = raw.spec;
        if spec.replicas.is_some() {
            self.err(
                "spec.replicas",
                "static NodePools (replicas, alpha) are not supported: surge sizes pools from pod demand",
            );
        }
        let weight = match spec.weight {
            None => 0,
            Some(w) if (1..=100).contains(&w) => w as i32,
            Some(w) => {
                self.err("spec.weight", format!("{w} is not between 1 and 100"));
                0
            }
        };
        let t = spec.template.spec;
        let mut labels = spec.template.metadata.map(|m| m.labels).unwrap_or_default();
        let requirements = self.requirements(t.requirements, &mut labels);
        self.taints("spec.template.spec.taints", &t.taints);
        self.taints("spec.template.spec.startupTaints", &t.startup_taints);
        NodePool {
            name,
            weight,
            requirements,
            labels,
            taints: t.taints,
            startup_taints: t.startup_taints,
            limits: self.limits(spec.limits.unwrap_or_default()),
            disruption: self.disruption(spec.disruption),
            expire_after: t.expire_after,
            termination_grace_period: t.termination_grace_period,
            node_class_ref: t.node_class_ref,
        }
    }

    fn requirements(
        &mut self,
        raw: Vec<RawRequirement>,
        labels: &mut BTreeMap<String, String>,
    ) -> Vec<Requirement> {
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let path = format!("spec.template.spec.requirements[{i}]");
            if r.min_values.is_some() {
                self.err(
                    &format!("{path}.minValues"),
                    "minValues is not honoured: surge plans one instance type per node, not a flexible set",
                );
            }
            let requirement = Requirement {
                key: r.key,
                operator: r.operator,
                values: r.values,
            };
            if let Some(e) = requirement.shape_error() {
                self.err(
                    &format!("{path}.values"),
                    format!("{}: {e}", requirement.key),
                );
                continue;
            }
            if req::WELL_KNOWN.contains(&requirement.key.as_str()) {
                if requirement.key == req::CAPACITY_TYPE
                    && let Some(bad) = requirement
                        .values
                        .iter()
                        .find(|v| !["spot", "on-demand"].contains(&v.as_str()))
                {
                    // reserved capacity (capacity blocks, ODCRs) is not in the catalog.
                    self.err(
                        &format!("{path}.values"),
                        format!("capacity type {bad:?} is not spot or on-demand"),
                    );
                }
                out.push(requirement);
            } else if requirement.operator == Operator::In && requirement.values.len() == 1 {
                labels.insert(requirement.key, requirement.values[0].clone());
            } else {
                self.err(
                    &format!("{path}.key"),
                    format!(
                        "{}: on a label the catalog does not carry only `In` with one value (the node's label) is supported",
                        requirement.key
                    ),
                );
            }
        }
        out
    }

    fn taints(&mut self, path: &str, taints: &[Taint]) {
        for (i, t) in taints.iter().enumerate() {
            if t.key.is_empty() {
                self.err(&format!("{path}[{i}].key"), "a taint needs a key");
            }
            if t.effect == TaintEffect::PreferNoSchedule {
                // Honoured as Kubernetes does for placement (a preference): nothing to refuse.
            }
        }
    }

    fn limits(&mut self, raw: BTreeMap<String, serde_yaml_ng::Value>) -> Limits {
        let mut limits = Limits::default();
        for (k, v) in raw {
            let path = format!("spec.limits.{k}");
            let text = match &v {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                _ => {
                    self.err(&path, "not a quantity");
                    continue;
                }
            };
            let parsed = match k.as_str() {
                "cpu" => parse_cpu(&text).map(|q| limits.cpu_millis = Some(q)),
                "memory" => parse_memory(&text).map(|q| limits.memory_bytes = Some(q)),
                "nodes" => text
                    .parse::<u64>()
                    .map(|q| limits.nodes = Some(q))
                    .map_err(|_| format!("{text:?} is not a whole number of nodes")),
                other => Err(format!(
                    "a limit on {other:?} is not supported (the catalog carries cpu, memory and nodes)"
                )),
            };
            if let Err(e) = parsed {
                self.err(&path, e);
            }
        }
        limits
    }

    fn disruption(&mut self, raw: Option<RawDisruption>) -> Disruption {
        let raw = raw.unwrap_or(RawDisruption {
            consolidation_policy: None,
            consolidate_after: None,
            budgets: None,
        });
        let p = "spec.disruption";
        let consolidation_policy = match raw.consolidation_policy.as_deref() {
            None | Some("WhenEmptyOrUnderutilized") => {
                ConsolidationPolicy::WhenEmptyOrUnderutilized
            }
            Some("WhenEmpty") => ConsolidationPolicy::WhenEmpty,
            Some(other) => {
                self.err(
                    &format!("{p}.consolidationPolicy"),
                    format!("{other:?} is not supported (WhenEmpty or WhenEmptyOrUnderutilized)"),
                );
                ConsolidationPolicy::WhenEmptyOrUnderutilized
            }
        };
        let consolidate_after = match raw.consolidate_after.as_deref() {
            None => Some(SignedDuration::ZERO),
            Some("Never") => None,
            Some(text) => match parse_duration(text, "hms") {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(&format!("{p}.consolidateAfter"), e);
                    Some(SignedDuration::ZERO)
                }
            },
        };
        let budgets = match raw.budgets {
            None => vec![Budget {
                nodes: BudgetNodes::Percent(10),
                schedule: None,
                reasons: None,
            }],
            Some(list) => {
                let mut out = Vec::new();
                for (i, b) in list.into_iter().enumerate() {
                    if let Some(b) = self.budget(&format!("{p}.budgets[{i}]"), b) {
                        out.push(b);
                    }
                }
                out
            }
        };
        Disruption {
            consolidation_policy,
            consolidate_after,
            budgets,
        }
    }

    fn budget(&mut self, path: &str, b: RawBudget) -> Option<Budget> {
        let nodes = match b.nodes.strip_suffix('%') {
            Some(p) => p
                .parse::<u64>()
                .ok()
                .filter(|p| *p <= 100)
                .map(BudgetNodes::Percent),
            None => b.nodes.parse::<u64>().ok().map(BudgetNodes::Count),
        };
        let Some(nodes) = nodes else {
            self.err(
                &format!("{path}.nodes"),
                format!("{:?} is not a node count or a percent up to 100%", b.nodes),
            );
            return None;
        };
        let schedule = match (b.schedule, b.duration) {
            (None, None) => None,
            (Some(s), Some(d)) => {
                let schedule = Schedule::parse(&s)
                    .map_err(|e| self.err(&format!("{path}.schedule"), e))
                    .ok();
                let duration = parse_duration(&d, "hm")
                    .map_err(|e| self.err(&format!("{path}.duration"), e))
                    .ok();
                Some((schedule?, duration?))
            }
            (Some(_), None) => {
                self.err(
                    &format!("{path}.duration"),
                    "'schedule' must be set with 'duration'",
                );
                return None;
            }
            (None, Some(_)) => {
                self.err(
                    &format!("{path}.schedule"),
                    "'schedule' must be set with 'duration'",
                );
                return None;
            }
        };
        Some(Budget {
            nodes,
            schedule,
            reasons: b.reasons,
        })
    }
}

/// A Go-style duration of whole units (`30s`, `5m`, `1h30m`); `units` lists the letters allowed.
pub fn parse_duration(text: &str, units: &str) -> Result<SignedDuration, String> {
    let bad = || {
        let allowed: Vec<String> = units.chars().map(|u| format!("1{u}")).collect();
        format!("{text:?} is not a duration (e.g. {})", allowed.join(", "))
    };
    // Budget durations may end in the `0s` Go's Duration.String writes (`1h0m0s`).
    let body = if units.contains('s') {
        text
    } else {
        text.strip_suffix("0s")
            .filter(|t| !t.is_empty())
            .unwrap_or(text)
    };
    let mut total = 0i64;
    let mut digits = String::new();
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() || !units.contains(c) {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let secs = match c {
            'h' => 3600,
            'm' => 60,
            _ => 1,
        };
        total = n
            .checked_mul(secs)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || body.is_empty() {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}
