//! Pods as placement sees them: requests, node selection and tolerations; taints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::requirements::{Labels, Operator, Requirement};
use crate::resources::Resources;

/// A pod to place (or placed): what it requests and where it may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// `namespace/name`, as the plan reports it.
    pub name: String,
    /// CPU and memory requests (the pod slot is implied).
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`: any one term must hold (the
    /// expressions of a term all hold).
    #[serde(default)]
    pub required_node_affinity: Vec<Vec<Requirement>>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// `karpenter.sh/do-not-disrupt: "true"`: consolidation leaves the pod's node alone.
    #[serde(default)]
    pub do_not_disrupt: bool,
}

impl Pod {
    /// A pod with requests only.
    pub fn new(name: &str, cpu_millis: u64, memory_bytes: u64) -> Pod {
        Pod {
            name: name.to_owned(),
            cpu_millis,
            memory_bytes,
            ..Pod::default()
        }
    }

    /// Requests including the pod slot.
    pub fn requests(&self) -> Resources {
        Resources::new(self.cpu_millis, self.memory_bytes, 1)
    }

    /// The alternatives a node must satisfy one of: the nodeSelector (as `In` requirements) joined with
    /// each node affinity term.
    pub fn terms(&self) -> Vec<Vec<Requirement>> {
        let selector: Vec<Requirement> = self
            .node_selector
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::In,
                values: vec![v.clone()],
            })
            .collect();
        if self.required_node_affinity.is_empty() {
            return vec![selector];
        }
        self.required_node_affinity
            .iter()
            .map(|term| selector.iter().chain(term).cloned().collect())
            .collect()
    }

    /// Whether the pod tolerates every taint that keeps pods off (NoSchedule, NoExecute); the first it
    /// does not tolerate otherwise.
    pub fn untolerated<'t>(&self, taints: &'t [Taint]) -> Option<&'t Taint> {
        taints
            .iter()
            .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
            .find(|t| !self.tolerations.iter().any(|tol| tol.tolerates(t)))
    }

    /// Whether `labels` satisfy one of the pod's terms.
    pub fn selects(&self, labels: &dyn Labels) -> bool {
        self.terms()
            .iter()
            .any(|term| term.iter().all(|r| r.matches(labels.label(&r.key))))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}:{:?}",
            self.key,
            self.value.as_deref().unwrap_or(""),
            self.effect
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

/// A pod's toleration, as Kubernetes matches it against a taint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Empty with `Exists`: every key.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: String,
    /// None: every effect.
    #[serde(default)]
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => {
                self.key == taint.key && self.value == taint.value.as_deref().unwrap_or("")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.to_owned(),
            value: value.map(str::to_owned),
            effect,
        }
    }

    #[test]
    fn tolerations_match_as_kubernetes_matches_them() {
        let gpu = taint("gpu", Some("true"), TaintEffect::NoSchedule);
        let tol = |key: &str, op, value: &str, effect| Toleration {
            key: key.to_owned(),
            operator: op,
            value: value.to_owned(),
            effect,
        };
        use TolerationOperator::*;
        let cases = [
            (tol("gpu", Equal, "true", None), true),
            (tol("gpu", Equal, "false", None), false),
            (tol("gpu", Exists, "", None), true),
            (tol("", Exists, "", None), true),
            (tol("gpu", Exists, "", Some(TaintEffect::NoExecute)), false),
            (
                tol("gpu", Equal, "true", Some(TaintEffect::NoSchedule)),
                true,
            ),
            (tol("other", Exists, "", None), false),
        ];
        for (t, want) in cases {
            assert_eq!(t.tolerates(&gpu), want, "{t:?}");
        }
        let mut pod = Pod::new("p", 100, 100);
        assert_eq!(pod.untolerated(std::slice::from_ref(&gpu)), Some(&gpu));
        assert_eq!(
            pod.untolerated(&[taint("soft", None, TaintEffect::PreferNoSchedule)]),
            None
        );
        pod.tolerations.push(tol("gpu", Exists, "", None));
        assert_eq!(pod.untolerated(&[gpu]), None);
    }

    #[test]
    fn terms_join_the_selector_with_each_affinity_term() {
        let mut pod = Pod::new("p", 1, 1);
        pod.node_selector
            .insert("kubernetes.io/arch".into(), "arm64".into());
        assert_eq!(pod.terms().len(), 1);
        pod.required_node_affinity = vec![
            vec![Requirement::new(
                "topology.kubernetes.io/zone",
                Operator::In,
                &["a"],
            )],
            vec![Requirement::new(
                "topology.kubernetes.io/zone",
                Operator::In,
                &["b"],
            )],
        ];
        let terms = pod.terms();
        assert_eq!(terms.len(), 2);
        assert!(terms.iter().all(|t| t.len() == 2));
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/arch".to_owned(), "arm64".to_owned());
        labels.insert("topology.kubernetes.io/zone".to_owned(), "b".to_owned());
        assert!(pod.selects(&labels));
        labels.insert("topology.kubernetes.io/zone".to_owned(), "c".to_owned());
        assert!(!pod.selects(&labels));
    }
}
