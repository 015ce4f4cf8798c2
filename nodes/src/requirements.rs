//! Node requirements (`key operator values`), as NodePools, nodeSelectors and required node affinity
//! state them, and the well-known labels an offering carries.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `karpenter.sh/capacity-type`: `spot` or `on-demand`.
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
/// `karpenter.sh/nodepool`: the NodePool that launched the node.
pub const NODEPOOL: &str = "karpenter.sh/nodepool";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
/// vCPUs, an integer (so `Gt`/`Lt` apply).
pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
/// Memory in MiB, an integer.
pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";

/// The labels every offering carries, which requirements may name with any operator.
pub const WELL_KNOWN: &[&str] = &[
    CAPACITY_TYPE,
    NODEPOOL,
    INSTANCE_TYPE,
    INSTANCE_FAMILY,
    INSTANCE_CATEGORY,
    INSTANCE_GENERATION,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_MEMORY,
    ZONE,
    ARCH,
    OS,
];

/// `spot` or `on-demand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CapacityType {
    /// Ordered first: where a pool allows both, spot is launched before on-demand.
    #[serde(rename = "spot")]
    Spot,
    #[serde(rename = "on-demand")]
    OnDemand,
}

impl CapacityType {
    pub const ALL: [CapacityType; 2] = [CapacityType::Spot, CapacityType::OnDemand];

    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on-demand",
        }
    }
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

/// One `key operator values` requirement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

impl Requirement {
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> Self {
        Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    /// Whether a node whose label `key` is `value` (None: no such label) satisfies this requirement,
    /// as Kubernetes' node selector evaluates it (`Gt`/`Lt` compare integers; a non-integer fails).
    pub fn matches(&self, value: Option<&str>) -> bool {
        let int_cmp = |want: std::cmp::Ordering| {
            let (Some(v), Some(bound)) = (value, self.values.first()) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) => v.cmp(&b) == want,
                _ => false,
            }
        };
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt => int_cmp(std::cmp::Ordering::Greater),
            Operator::Lt => int_cmp(std::cmp::Ordering::Less),
        }
    }

    /// The operator's shape problems (values where there must be none, one integer for Gt/Lt), if any.
    pub fn shape_error(&self) -> Option<String> {
        match self.operator {
            Operator::In | Operator::NotIn if self.values.is_empty() => {
                Some(format!("{:?} needs at least one value", self.operator))
            }
            Operator::Exists | Operator::DoesNotExist if !self.values.is_empty() => {
                Some(format!("{:?} takes no values", self.operator))
            }
            Operator::Gt | Operator::Lt
                if self.values.len() != 1 || self.values[0].parse::<i64>().is_err() =>
            {
                Some(format!(
                    "{:?} needs exactly one integer value",
                    self.operator
                ))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists | Operator::DoesNotExist => {
                write!(f, "{} {:?}", self.key, self.operator)
            }
            _ => write!(
                f,
                "{} {:?} [{}]",
                self.key,
                self.operator,
                self.values.join(", ")
            ),
        }
    }
}

/// A node's labels, looked up by key.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Whether `labels` satisfy every requirement of `all`; the first that fails otherwise.
pub fn first_unmet<'r>(all: &'r [Requirement], labels: &dyn Labels) -> Option<&'r Requirement> {
    all.iter().find(|r| !r.matches(labels.label(&r.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_match_as_node_selectors_do() {
        let cases: &[(Requirement, Option<&str>, bool)] = &[
            (
                Requirement::new(ARCH, Operator::In, &["arm64"]),
                Some("arm64"),
                true,
            ),
            (
                Requirement::new(ARCH, Operator::In, &["arm64"]),
                Some("amd64"),
                false,
            ),
            (
                Requirement::new(ARCH, Operator::In, &["arm64"]),
                None,
                false,
            ),
            (
                Requirement::new(ARCH, Operator::NotIn, &["arm64"]),
                Some("amd64"),
                true,
            ),
            (
                Requirement::new(ARCH, Operator::NotIn, &["arm64"]),
                None,
                true,
            ),
            (
                Requirement::new(ARCH, Operator::NotIn, &["arm64"]),
                Some("arm64"),
                false,
            ),
            (
                Requirement::new("team", Operator::Exists, &[]),
                Some("a"),
                true,
            ),
            (Requirement::new("team", Operator::Exists, &[]), None, false),
            (
                Requirement::new("team", Operator::DoesNotExist, &[]),
                None,
                true,
            ),
            (
                Requirement::new("team", Operator::DoesNotExist, &[]),
                Some("a"),
                false,
            ),
            (
                Requirement::new(INSTANCE_CPU, Operator::Gt, &["4"]),
                Some("8"),
                true,
            ),
            (
                Requirement::new(INSTANCE_CPU, Operator::Gt, &["4"]),
                Some("4"),
                false,
            ),
            (
                Requirement::new(INSTANCE_CPU, Operator::Lt, &["4"]),
                Some("2"),
                true,
            ),
            (
                Requirement::new(INSTANCE_CPU, Operator::Lt, &["4"]),
                None,
                false,
            ),
            (
                Requirement::new(INSTANCE_CPU, Operator::Gt, &["4"]),
                Some("big"),
                false,
            ),
        ];
        for (r, v, want) in cases {
            assert_eq!(r.matches(*v), *want, "{r} against {v:?}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(
            Requirement::new(ARCH, Operator::In, &[])
                .shape_error()
                .is_some()
        );
        assert!(
            Requirement::new(ARCH, Operator::Exists, &["x"])
                .shape_error()
                .is_some()
        );
        assert!(
            Requirement::new(INSTANCE_CPU, Operator::Gt, &["x"])
                .shape_error()
                .is_some()
        );
        assert!(
            Requirement::new(INSTANCE_CPU, Operator::Gt, &["4"])
                .shape_error()
                .is_none()
        );
    }
}
