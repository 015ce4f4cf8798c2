//! The target's `/scale` subresource as the controller reads and writes it, and the selectors of the
//! other HPAs of the namespace: the inputs of upstream's `FailedGetScale`, `InvalidSelector`,
//! `AmbiguousSelector` and `FailedUpdateScale` conditions (`horizontal.go`: `reconcileAutoscaler` and
//! `validateAndParseSelector`).
//!
//! The engine does no I/O: the caller says what its reads and its write returned. The default
//! [`ScaleAccess`] is a caller that resolved the target itself (no selector check, no failure), which
//! is what [`super::evaluate_hpa`] assumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keda::selector::LabelSelector;

/// What the caller's `/scale` read and write returned, and what it knows of the namespace's HPAs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleAccess {
    /// The `/scale` GET failed with this error: `AbleToScale` False `FailedGetScale`, nothing else is
    /// evaluated (upstream returns before `recordInitialRecommendation`).
    pub get_error: Option<String>,
    /// `scale.status.selector` as read. `None`: not checked (the caller selected `HpaInput::pods`
    /// itself); `Some("")`: the target has no selector (`InvalidSelector`, "selector is required").
    pub selector: Option<String>,
    /// This HPA's key as the `AmbiguousSelector` message shows it (upstream: `namespace/name`).
    pub hpa_key: String,
    /// The other HPAs of the namespace, with the selectors of their targets (upstream's
    /// `hpaSelectors`). One whose selector does not parse selects nothing (upstream never registers it).
    pub other_hpas: Vec<OtherHpa>,
    /// The labels of `HpaInput::pods`, by pod name (a pod not listed has no labels).
    pub pod_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The `/scale` UPDATE fails with this error: when the decision scales, `AbleToScale` False
    /// `FailedUpdateScale`, the replicas stay and no scale event is recorded.
    pub update_error: Option<String>,
}

/// Another HPA of the namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherHpa {
    /// Its key as the `AmbiguousSelector` message shows it (upstream: `namespace/name`).
    pub key: String,
    /// Its target's selector, in string form.
    pub selector: String,
}

/// Why the target's selector cannot be used: the `ScalingActive` False reason and its message, and
/// the error upstream returns.
pub(crate) struct SelectorProblem {
    pub reason: &'static str,
    pub message: String,
    pub error: String,
}

impl ScaleAccess {
    /// Upstream `validateAndParseSelector`, once the scale was read; `Ok` when nothing is checked.
    pub(crate) fn validate_selector(&self, pod_names: &[&str]) -> Result<(), SelectorProblem> {
        let Some(selector) = &self.selector else {
            return Ok(());
        };
        if selector.is_empty() {
            return Err(SelectorProblem {
                reason: "InvalidSelector",
                message: "the HPA target's scale is missing a selector".to_owned(),
                error: "selector is required".to_owned(),
            });
        }
        if let Err(e) = LabelSelector::parse(selector) {
            let message = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            return Err(SelectorProblem {
                reason: "InvalidSelector",
                error: message.clone(),
                message,
            });
        }
        let no_labels = BTreeMap::new();
        let mut selecting: Vec<&str> = self
            .other_hpas
            .iter()
            .filter(|other| {
                LabelSelector::parse(&other.selector).is_ok_and(|s| {
                    pod_names
                        .iter()
                        .any(|p| s.matches(self.pod_labels.get(*p).unwrap_or(&no_labels)))
                })
            })
            .map(|other| other.key.as_str())
            .collect();
        if selecting.is_empty() {
            return Ok(());
        }
        selecting.push(&self.hpa_key);
        selecting.sort_unstable();
        selecting.dedup();
        let message = format!(
            "pods by selector {selector} are controlled by multiple HPAs: [{}]",
            selecting.join(" ")
        );
        Err(SelectorProblem {
            reason: "AmbiguousSelector",
            error: message.clone(),
            message,
        })
    }
}
