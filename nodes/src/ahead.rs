//! Capacity before Pending: nodes for the pods a pod decision is about to create.
//!
//! When the pod engine decides `current → desired` replicas of a workload, the pods it adds do not exist
//! yet; Karpenter would see them only once they are Pending (plus its batching window). [`plan_ahead`]
//! plans at once for the pods already pending *and* the `desired − existing` pods each scale-up will
//! create, from the workload's pod template (requests, nodeSelector, required node affinity,
//! tolerations), so the claims can be created at decision time. Existing capacity and in-flight claims
//! are used first, as in [`crate::plan`]: a scale-up that fits the free room of the cluster asks for no
//! node.

use crate::pod::Pod;
use crate::provision::{Plan, ProvisionInput, plan};

/// A pod decision that adds replicas: the workload (`namespace/name`), its pod template, how many of
/// its pods exist now in any phase (Pending included: those are already the input's pending pods), and
/// the replicas decided.
#[derive(Clone, Copy, Debug)]
pub struct ScaleUp<'a> {
    pub workload: &'a str,
    pub template: &'a Pod,
    pub existing_pods: u32,
    pub desired: u32,
}

impl ScaleUp<'_> {
    /// The pods the decision will create, named `<workload>-ahead-<i>` (none when it does not add).
    pub fn pods(&self) -> Vec<Pod> {
        (self.existing_pods..self.desired)
            .map(|i| {
                let mut p = self.template.clone();
                p.name = format!("{}-ahead-{i}", self.workload);
                p
            })
            .collect()
    }
}

/// Plans for the input's pending pods together with the pods `scale_ups` will create. The plan's pod
/// names tell the two apart (`-ahead-` for the pods to come).
pub fn plan_ahead(input: &ProvisionInput<'_>, scale_ups: &[ScaleUp<'_>]) -> Plan {
    let mut pods: Vec<Pod> = input.pods.to_vec();
    for s in scale_ups {
        pods.extend(s.pods());
    }
    plan(&ProvisionInput {
        pods: &pods,
        ..*input
    })
}
