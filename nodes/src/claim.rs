//! The `karpenter.sh/v1` NodeClaim a planned node becomes: what an actuator creates so that Karpenter
//! (or any NodeClaim provider) launches exactly that node.
//!
//! The claim pins the planned offering (`node.kubernetes.io/instance-type`, `karpenter.sh/capacity-type`,
//! `topology.kubernetes.io/zone` each `In` the one value) on top of its pool's requirements, carries the
//! pool's taints, startup taints, labels, `nodeClassRef`, `expireAfter` and `terminationGracePeriod`, is
//! labelled `karpenter.sh/nodepool`, and requests the resources its pods asked for.

use serde_yaml_ng::{Mapping, Value};

use crate::nodepool::NodePool;
use crate::pod::Taint;
use crate::provision::PlannedNode;
use crate::requirements::Requirement;

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::from(k), v);
    }
    Value::Mapping(m)
}

fn requirement(r: &Requirement) -> Value {
    map(vec![
        ("key", r.key.as_str().into()),
        ("operator", format!("{:?}", r.operator).into()),
        (
            "values",
            Value::Sequence(r.values.iter().map(|v| v.as_str().into()).collect()),
        ),
    ])
}

fn taints(ts: &[Taint]) -> Value {
    Value::Sequence(
        ts.iter()
            .map(|t| {
                let mut e = vec![("key", t.key.as_str().into())];
                if let Some(v) = &t.value {
                    e.push(("value", v.as_str().into()));
                }
                e.push(("effect", format!("{:?}", t.effect).into()));
                map(e)
            })
            .collect(),
    )
}

impl PlannedNode {
    /// The NodeClaim for this node of `pool` (the pool it was planned from), with `cpu_millis` and
    /// `memory_bytes` as the resources its pods request.
    pub fn node_claim(&self, pool: &NodePool, cpu_millis: u64, memory_bytes: u64) -> Value {
        let pinned = [
            (
                "node.kubernetes.io/instance-type",
                self.instance_type.as_str(),
            ),
            ("karpenter.sh/capacity-type", self.capacity_type.as_str()),
            ("topology.kubernetes.io/zone", self.zone.as_str()),
        ];
        let mut reqs: Vec<Value> = pool
            .requirements
            .iter()
            .filter(|r| !pinned.iter().any(|(k, _)| *k == r.key))
            .map(requirement)
            .collect();
        for (k, v) in pinned {
            reqs.push(requirement(&Requirement::new(
                k,
                crate::requirements::Operator::In,
                &[v],
            )));
        }
        let mut labels = Mapping::new();
        labels.insert("karpenter.sh/nodepool".into(), pool.name.as_str().into());
        labels.insert("app.kubernetes.io/managed-by".into(), "surge".into());
        for (k, v) in &pool.labels {
            labels.insert(k.as_str().into(), v.as_str().into());
        }
        let mut spec = vec![
            ("requirements", Value::Sequence(reqs)),
            (
                "resources",
                map(vec![(
                    "requests",
                    map(vec![
                        ("cpu", format!("{cpu_millis}m").into()),
                        ("memory", memory_bytes.to_string().into()),
                        ("pods", (self.pods.len() as u64).into()),
                    ]),
                )]),
            ),
        ];
        if let Some(r) = &pool.node_class_ref {
            spec.push((
                "nodeClassRef",
                map(vec![
                    ("group", r.group.as_str().into()),
                    ("kind", r.kind.as_str().into()),
                    ("name", r.name.as_str().into()),
                ]),
            ));
        }
        if !pool.taints.is_empty() {
            spec.push(("taints", taints(&pool.taints)));
        }
        if !pool.startup_taints.is_empty() {
            spec.push(("startupTaints", taints(&pool.startup_taints)));
        }
        if let Some(e) = &pool.expire_after {
            spec.push(("expireAfter", e.as_str().into()));
        }
        if let Some(t) = &pool.termination_grace_period {
            spec.push(("terminationGracePeriod", t.as_str().into()));
        }
        map(vec![
            ("apiVersion", "karpenter.sh/v1".into()),
            ("kind", "NodeClaim".into()),
            (
                "metadata",
                map(vec![
                    ("name", self.name.as_str().into()),
                    ("labels", Value::Mapping(labels)),
                ]),
            ),
            ("spec", map(spec)),
        ])
    }
}
