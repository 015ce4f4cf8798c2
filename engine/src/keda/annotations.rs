//! The annotations KEDA reads on a ScaledObject (`apis/keda/v1alpha1/scaledobject_types.go`), parsed once
//! per evaluation so that a change takes effect at the very next one.
//!
//! Honoured: `autoscaling.keda.sh/paused`, `autoscaling.keda.sh/paused-replicas`,
//! `autoscaling.keda.sh/paused-scale-in`, `autoscaling.keda.sh/paused-scale-out` and
//! `autoscaling.keda.sh/force-activation`. The boolean ones follow KEDA's `getBoolAnnotation`: absent is
//! false, `strconv.ParseBool` decides, and any value it cannot parse counts as true.
//!
//! Accepted because they change nothing a decision depends on (each acts on API objects, not on the
//! replica arithmetic):
//! - `scaledobject.keda.sh/transfer-hpa-ownership`: KEDA adopts an existing HPA and rewrites its spec into
//!   the one it would generate, which is the HPA surge computes anyway;
//! - `validations.keda.sh/hpa-ownership`: turns off the webhook's check that no other HPA targets the
//!   workload, a check that needs the cluster's HPAs and that surge's admission does not make;
//! - `scaledobject.keda.sh/hpa-excluded-labels`: labels not copied onto the generated HPA.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `autoscaling.keda.sh/paused`.
pub const PAUSED: &str = "autoscaling.keda.sh/paused";
/// `autoscaling.keda.sh/paused-replicas`.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// `autoscaling.keda.sh/paused-scale-in`.
pub const PAUSED_SCALE_IN: &str = "autoscaling.keda.sh/paused-scale-in";
/// `autoscaling.keda.sh/paused-scale-out`.
pub const PAUSED_SCALE_OUT: &str = "autoscaling.keda.sh/paused-scale-out";
/// `autoscaling.keda.sh/force-activation`.
pub const FORCE_ACTIVATION: &str = "autoscaling.keda.sh/force-activation";
/// `scaledobject.keda.sh/transfer-hpa-ownership`.
pub const TRANSFER_HPA_OWNERSHIP: &str = "scaledobject.keda.sh/transfer-hpa-ownership";
/// `validations.keda.sh/hpa-ownership`.
pub const VALIDATIONS_HPA_OWNERSHIP: &str = "validations.keda.sh/hpa-ownership";
/// `scaledobject.keda.sh/hpa-excluded-labels`.
pub const HPA_EXCLUDED_LABELS: &str = "scaledobject.keda.sh/hpa-excluded-labels";

/// The annotations of a ScaledObject that change what KEDA does, as KEDA reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// `paused` read as KEDA's `getBoolAnnotation` reads it.
    pub paused: bool,
    /// `paused-replicas`, when present (its presence alone pauses the ScaledObject).
    pub paused_replicas: Option<i32>,
    /// `paused-scale-in`.
    pub paused_scale_in: bool,
    /// `paused-scale-out`.
    pub paused_scale_out: bool,
    /// `force-activation`.
    pub force_activation: bool,
}

/// `HasPausedAnnotation`: `paused` or `paused-replicas` present, whatever its value.
pub fn has_paused_annotation(raw: &BTreeMap<String, String>) -> bool {
    raw.contains_key(PAUSED) || raw.contains_key(PAUSED_REPLICAS)
}

/// KEDA's `getBoolAnnotation`: `strconv.ParseBool`, with an unparsable value counting as true.
fn bool_annotation(value: Option<&String>) -> bool {
    match value.map(String::as_str) {
        None => false,
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
        Some(_) => true,
    }
}

impl Annotations {
    /// Reads the annotations KEDA acts on. Errors (naming the annotation) for a `paused-replicas` that is
    /// not an int32: KEDA fails the reconcile then, so the ScaledObject could never run.
    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let paused_replicas = raw.get(PAUSED_REPLICAS).and_then(|v| match v.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(format!(
                    "metadata.annotations.{PAUSED_REPLICAS}: {v:?} is not an integer (KEDA's ParseInt(val, 10, 32) fails)"
                ));
                None
            }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            paused: bool_annotation(raw.get(PAUSED)),
            paused_replicas,
            paused_scale_in: bool_annotation(raw.get(PAUSED_SCALE_IN)),
            paused_scale_out: bool_annotation(raw.get(PAUSED_SCALE_OUT)),
            force_activation: bool_annotation(raw.get(FORCE_ACTIVATION)),
        })
    }

    /// `NeedToBePausedByAnnotation`: `paused-replicas` present, or `paused` true.
    pub fn paused_by_annotation(&self) -> bool {
        self.paused_replicas.is_some() || self.paused
    }

    /// The annotation that freezes the target entirely, if any (`paused-replicas` wins: it also sets the
    /// count).
    pub fn freezing_annotation(&self) -> Option<&'static str> {
        if self.paused_replicas.is_some() {
            Some(PAUSED_REPLICAS)
        } else if self.paused {
            Some(PAUSED)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Annotations, Vec<String>> {
        Annotations::parse(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn bool_annotations_follow_parse_bool_and_default_to_true() {
        for (value, want) in [
            ("true", true),
            ("1", true),
            ("T", true),
            ("false", false),
            ("0", false),
            ("F", false),
            ("yes", true),
            ("", true),
        ] {
            let a = parse(&[(PAUSED, value)]).unwrap_or_default();
            assert_eq!(a.paused, want, "{value:?}");
        }
    }

    #[test]
    fn paused_replicas_alone_pauses_and_must_be_an_integer() {
        let a = parse(&[(PAUSED_REPLICAS, "0")]).unwrap_or_default();
        assert!(a.paused_by_annotation());
        assert_eq!(a.freezing_annotation(), Some(PAUSED_REPLICAS));
        let errors = parse(&[(PAUSED_REPLICAS, "two")]).err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains(PAUSED_REPLICAS), "{errors:?}");
    }

    #[test]
    fn ownership_and_label_annotations_change_nothing() {
        let ok = parse(&[
            (TRANSFER_HPA_OWNERSHIP, "true"),
            (VALIDATIONS_HPA_OWNERSHIP, "false"),
            (HPA_EXCLUDED_LABELS, "a,b"),
            ("team", "x"),
        ]);
        assert_eq!(ok, Ok(Annotations::default()));
    }
}
