//! The `batch/v1` Job objects KEDA creates for a ScaledJob (`createJobs` and `generateJobs` in
//! kedacore/keda `8b4f083c` `pkg/scaling/executor/scale_jobs.go`), built from the manifest: what an
//! actuator would submit once [`super::job::evaluate_scaled_job`] has said how many.
//!
//! Each Job gets `generateName: <scaledjob>-` (the API server appends the random suffix), the
//! ScaledJob's namespace, KEDA's labels (`app.kubernetes.io/*`, `scaledjob.keda.sh/name`) plus the
//! ScaledJob's own labels except those listed in `scaledjob.keda.sh/job-excluded-labels`, the
//! annotation `scaledjob.keda.sh/generation` plus the ScaledJob's annotations, `jobTargetRef` as its
//! spec (the pod template labelled `scaledjob.keda.sh/name` and named `<scaledjob>-`), `restartPolicy`
//! `OnFailure` when the template sets none, and the ScaledJob as its controlling owner.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::manifest::ManifestError;

/// `ScaledJobExcludedLabelsAnnotation`.
pub const EXCLUDED_LABELS: &str = "scaledjob.keda.sh/job-excluded-labels";

/// What of a ScaledJob the Jobs are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplate {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid` (empty when the manifest has none).
    pub uid: String,
    /// `metadata.generation` (0 when the manifest has none).
    pub generation: i64,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.jobTargetRef`, a `batch/v1` JobSpec.
    pub job_target_ref: Value,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    generation: i64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    job_target_ref: Option<Value>,
}

impl JobTemplate {
    /// Reads the Job template of a ScaledJob manifest (validate the manifest with
    /// [`crate::parse_scaled_job`]; this reads only what the Jobs are made from).
    pub fn from_manifest(yaml: &str) -> Result<Self, ManifestError> {
        let doc: Doc = serde_yaml_ng::from_str(yaml).map_err(|e| ManifestError::yaml(&e))?;
        let Some(job_target_ref) = doc.spec.job_target_ref.filter(Value::is_object) else {
            return Err(ManifestError::Invalid(vec![
                "spec.jobTargetRef: missing (the Job spec KEDA creates Jobs from)".to_owned(),
            ]));
        };
        // The fields the Jobs' generation writes into must be objects where present.
        for (path, at) in [
            ("spec.jobTargetRef.template", "/template"),
            ("spec.jobTargetRef.template.metadata", "/template/metadata"),
            (
                "spec.jobTargetRef.template.metadata.labels",
                "/template/metadata/labels",
            ),
            ("spec.jobTargetRef.template.spec", "/template/spec"),
        ] {
            if job_target_ref
                .pointer(at)
                .is_some_and(|v| !v.is_object() && !v.is_null())
            {
                return Err(ManifestError::Invalid(vec![format!(
                    "{path}: must be an object"
                )]));
            }
        }
        let m = doc.metadata;
        Ok(JobTemplate {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            generation: m.generation,
            labels: m.labels,
            annotations: m.annotations,
            job_target_ref,
        })
    }

    /// `createJobs(scaleTo, maxScale)`: nothing when `max_scale` is 0 or less, else `min(scale_to,
    /// max_scale)` Jobs. `keda_version` is the `app.kubernetes.io/version` label (KEDA's build version).
    pub fn create_jobs(&self, scale_to: i64, max_scale: i64, keda_version: &str) -> Vec<Value> {
        if max_scale <= 0 {
            return Vec::new();
        }
        self.generate_jobs(scale_to.min(max_scale), keda_version)
    }

    /// `generateJobs(scaleTo)`: `scale_to` identical Jobs (none for 0 or less).
    pub fn generate_jobs(&self, scale_to: i64, keda_version: &str) -> Vec<Value> {
        let name = &self.name;
        let mut labels: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", name.as_str()),
            ("app.kubernetes.io/version", keda_version),
            ("app.kubernetes.io/part-of", name.as_str()),
            ("app.kubernetes.io/managed-by", "keda-operator"),
            ("scaledjob.keda.sh/name", name.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let excluded: Vec<&str> = self
            .annotations
            .get(EXCLUDED_LABELS)
            .map(|l| l.split(',').collect())
            .unwrap_or_default();
        for (k, v) in &self.labels {
            if !excluded.contains(&k.as_str()) {
                labels.insert(k.clone(), v.clone());
            }
        }
        let mut annotations = BTreeMap::from([(
            "scaledjob.keda.sh/generation".to_owned(),
            self.generation.to_string(),
        )]);
        annotations.extend(self.annotations.clone());
        let mut spec = self.job_target_ref.clone();
        let template = &mut spec["template"];
        template["metadata"]["generateName"] = json!(format!("{name}-"));
        template["metadata"]["labels"]["scaledjob.keda.sh/name"] = json!(name);
        let restart = &mut template["spec"]["restartPolicy"];
        if restart.as_str().is_none_or(str::is_empty) {
            *restart = json!("OnFailure");
        }
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "generateName": format!("{name}-"),
                "namespace": self.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [{
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "ScaledJob",
                    "name": name,
                    "uid": self.uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": spec,
        });
        let n = usize::try_from(scale_to).unwrap_or(0);
        vec![job; n]
    }
}
