//! KEDA's ScaledObject admission webhook, ported from kedacore/keda at
//! 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a: `apis/keda/v1alpha1/scaledobject_webhook_test.go` (the `It`
//! blocks surge can decide without a cluster; each named in a comment), `scaletriggers_types_test.go`
//! and `scaledjob_webhook_test.go`'s trigger checks. Each case builds upstream's fixture
//! (`createScaledObject`: name `test-so`, idle 1, min 5, max 10, one cron trigger) as YAML and runs it
//! through `parse_scaled_object`, which applies the webhook's checks.
//!
//! Upstream's cpu/memory fixtures give no `metricType`, which KEDA's cpu/memory scaler cannot build
//! ("unknown metric type"); surge refuses that at load, so those fixtures here say `Utilization` to test
//! what the webhook case is about. Several upstream `Should(HaveOccurred())` cases use `Eventually`, which
//! retries until the second `Create` fails with AlreadyExists: their expectation is vacuous, and the
//! webhook's code decides here (noted on each).
//!
//! The cases that need other objects in the cluster (an HPA or another ScaledObject on the workload, the
//! Deployment or StatefulSet with its requests, a LimitRange, a finalizer update) build upstream's
//! objects (`createHpa`, `createDeployment`, `createStatefulSet`, `createLimitRange`) as Kubernetes
//! manifests, read them into a `ClusterView`, and admit through `parse_scaled_object_in` /
//! `admit_scaled_object_update`: the section "cases that read the cluster" below.

// Test helpers may unwrap (a panic is a failed test).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use surge_engine::{
    ClusterView, ManifestError, admit_scaled_object_update, parse_scaled_job, parse_scaled_object,
    parse_scaled_object_in,
};

fn cron() -> Value {
    json!({"type": "cron", "metadata": {"timezone": "UTC", "start": "0 * * * *", "end": "1 * * * *", "desiredReplicas": "1"}})
}

fn cpu_memory() -> Vec<Value> {
    vec![
        json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": "10"}}),
        json!({"type": "memory", "metricType": "Utilization", "metadata": {"value": "10"}}),
    ]
}

fn workload(name: &str) -> Value {
    json!({"type": "kubernetes-workload", "name": name, "metadata": {"podSelector": "pod=workload-test", "value": "1"}})
}

/// `createScaledObject(name, ..., hasCPUAndMemory, annotations, hpaName)`.
fn fixture(name: &str, cpu_and_memory: bool, hpa_name: &str) -> Value {
    let mut triggers = vec![cron()];
    if cpu_and_memory {
        triggers.extend(cpu_memory());
    }
    let mut advanced = json!({});
    if !hpa_name.is_empty() {
        advanced = json!({"horizontalPodAutoscalerConfig": {"name": hpa_name}});
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"name": "deployment-name", "apiVersion": "apps/v1", "kind": "Deployment"},
            "idleReplicaCount": 1,
            "minReplicaCount": 5,
            "maxReplicaCount": 10,
            "triggers": triggers,
            "advanced": advanced,
        }
    })
}

/// `createScaledObjectSTZ(name, ..., min, max, hasExternalTrigger)`.
fn stz(min: i32, max: i32, external: bool) -> Value {
    let mut triggers =
        vec![json!({"type": "cpu", "metricType": "Utilization", "metadata": {"value": "10"}})];
    if external {
        triggers.push(json!({"type": "kubernetes-workload", "metadata": {"podSelector": "pod=workload-test", "value": "1"}}));
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "test-so"},
        "spec": {
            "scaleTargetRef": {"name": "deployment-name"},
            "minReplicaCount": min,
            "maxReplicaCount": max,
            "cooldownPeriod": 1,
            "triggers": triggers,
        }
    })
}

/// `createScaledObjectScalingModifiers(namespace, sm, triggers)`.
fn modifiers(sm: Value, triggers: Vec<Value>) -> Value {
    let mut so = fixture("test-so", false, "");
    so["spec"]["triggers"] = Value::Array(triggers);
    so["spec"]["advanced"] = json!({"scalingModifiers": sm});
    so
}

fn admit(so: &Value) -> Result<Vec<String>, Vec<String>> {
    let yaml = serde_yaml_ng::to_string(so).unwrap();
    match parse_scaled_object(&yaml) {
        Ok(spec) => Ok(spec.warnings),
        Err(ManifestError::Invalid(errors)) => Err(errors),
        Err(e) => Err(vec![e.to_string()]),
    }
}

#[track_caller]
fn admitted(so: &Value) -> Vec<String> {
    match admit(so) {
        Ok(w) => w,
        Err(e) => panic!("refused: {e:?}"),
    }
}

#[track_caller]
fn refused(so: &Value, containing: &str) {
    match admit(so) {
        Ok(_) => panic!("admitted; expected an error containing {containing:?}"),
        Err(errors) => assert!(
            errors.iter().any(|e| e.contains(containing)),
            "{errors:?} has no {containing:?}"
        ),
    }
}

#[test]
fn creation_without_conflicts() {
    // should validate the so creation when there isn't any hpa
    // should validate the so creation when there are other SO for other workloads
    // should validate the so creation when another SO targets the same name with a different Kind
    // should validate the so creation when there are other HPA for other workloads
    // should validate the so creation when it's own hpa is already generated
    // should validate the so update when it's own hpa is already generated
    admitted(&fixture("test-so", false, ""));
}

#[test]
fn replica_counts() {
    // shouldn't validate the so creation when the replica counts are wrong
    let mut so = fixture("test-so", false, "");
    so["spec"]["minReplicaCount"] = json!(10);
    so["spec"]["maxReplicaCount"] = json!(5);
    refused(
        &so,
        "MinReplicaCount=10 must be less than MaxReplicaCount=5",
    );
}

#[test]
fn fallback() {
    // shouldn't validate the so creation when the fallback is wrong
    let mut so = fixture("test-so", false, "");
    so["spec"]["fallback"] = json!({"failureThreshold": -1, "replicas": -3});
    refused(
        &so,
        "FailureThreshold=-1 & Replicas=-3 must both be greater than or equal to 0",
    );

    // shouldn't validate the so creation when the fallback is configured and only cpu/memory triggers are
    // used. (Vacuous upstream: the fixture keeps its cron trigger, so CheckFallbackValid admits it.)
    let mut so = fixture("test-so", true, "");
    so["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 6});
    admitted(&so);
    // The case the title means: only cpu/memory triggers.
    let mut only = stz(1, 5, false);
    only["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 6});
    refused(&only, "at least one trigger (that is not cpu or memory)");

    // should validate the so creation when the fallback is configured, and at least one trigger (besides
    // cpu/memory) is configured.
    let mut so = fixture("test-so", true, "");
    let mut t1 = workload("workload_trig_1");
    t1["metricType"] = json!("Value");
    let mut t2 = workload("workload_trig_2");
    t2["metricType"] = json!("AverageValue");
    so["spec"]["triggers"]
        .as_array_mut()
        .unwrap()
        .extend([t1.clone(), t2]);
    so["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 6});
    admitted(&so);

    // should validate the so creation when the fallback is configured, and so uses ScalingModifiers.
    // (Its Should(HaveOccurred()) is vacuous; the title and the webhook's code admit it.)
    let mut so = fixture("test-so", true, "");
    let mut t2 = workload("workload_trig_2");
    t2["metricType"] = json!("Value");
    so["spec"]["triggers"]
        .as_array_mut()
        .unwrap()
        .extend([t1, t2]);
    so["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 6});
    so["spec"]["advanced"] = json!({"scalingModifiers": {"target": "2", "formula": "workload_trig_1 + workload_trig_2", "metricType": "Value"}});
    admitted(&so);
}

#[test]
fn transfer_hpa_ownership_with_a_name() {
    // should validate the so creation when there is another unmanaged hpa and so has
    // transfer-hpa-ownership activated and the name is specified
    let mut so = fixture("test-so", false, "test-hpa");
    so["metadata"]["annotations"] = json!({"scaledobject.keda.sh/transfer-hpa-ownership": "true"});
    admitted(&so);
}

#[test]
fn cpu_and_memory() {
    // should validate the so creation with cpu and memory when deployment has requests
    // should validate the creation with cpu and memory when deployment is missing and dry-run is true
    // should validate the SO creation with CPU and memory when deployment doesn't have CPU and memory, but
    // LimitRange has the limits specified
    // should validate the so creation with cpu and memory when statefulset has requests
    // should validate the so creation without cpu and memory when custom resources
    admitted(&fixture("test-so", true, ""));
    let mut custom = fixture("test-so", true, "");
    custom["spec"]["scaleTargetRef"] =
        json!({"name": "deployment-name", "apiVersion": "custom-api", "kind": "StatefulSet"});
    admitted(&custom);
}

#[test]
fn scale_to_zero_with_cpu() {
    // should validate so creation when all requirements are met for scaling to zero with cpu scaler
    admitted(&stz(0, 5, true));
    // shouldn't validate so creation with cpu scaler requirements not being met for scaling to 0
    refused(
        &stz(0, 5, false),
        "scaledobject has only cpu/memory triggers AND minReplica is 0 (scale to zero doesn't work in this case)",
    );
    // should validate so creation when min replicas is > 0 with only cpu scaler given
    admitted(&stz(1, 5, false));
}

#[test]
fn names() {
    // shouldn't validate the so creation when the name exceeds the label value limit
    refused(
        &fixture(&"a".repeat(64), false, "short-hpa"),
        "is 64 characters long; must be no more than 63 characters because it is used as the \"scaledobject.keda.sh/name\" label value",
    );
    // should validate the so creation when the name is at the label value limit and a custom HPA name is set
    admitted(&fixture(&"a".repeat(63), false, "short-hpa"));
    // shouldn't validate the so creation when no custom HPA name is set and the generated HPA name would
    // exceed the label value limit
    refused(
        &fixture(&"a".repeat(63 - "keda-hpa-".len() + 1), false, ""),
        "derived from scaledobject is 64 characters long",
    );
    // should validate the so creation when no custom HPA name is set and the generated HPA name fits within
    // the label value limit
    admitted(&fixture(&"a".repeat(63 - "keda-hpa-".len()), false, ""));
    // shouldn't validate the so update when removing the custom HPA name would make the generated HPA name
    // exceed the label value limit (the updated object, as admitted on its own)
    admitted(&fixture(&"a".repeat(60), false, "short-hpa"));
    refused(
        &fixture(&"a".repeat(60), false, ""),
        "derived from scaledobject",
    );
}

#[test]
fn stabilization_window_limit() {
    // shouldn't create so when stabilizationWindowSeconds exceeds 3600
    let mut so = fixture("test-so", false, "");
    so["spec"]["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 3700}}}});
    refused(
        &so,
        "stabilizationWindowSeconds: 3700 must be between 0 and 3600",
    );
}

#[test]
fn empty_triggers() {
    // should validate empty triggers in ScaledObject (refused)
    let mut so = fixture("test-so", false, "");
    so["spec"]["triggers"] = json!([]);
    refused(&so, "no triggers defined in the ScaledObject/ScaledJob");
}

fn cron_named(name: &str) -> Value {
    let mut c = cron();
    c["name"] = json!(name);
    c
}

#[test]
fn scaling_modifiers_structure() {
    // should validate the so creation with ScalingModifiers.Formula
    admitted(&modifiers(
        json!({"target": "2", "formula": "workload_trig + cron_trig"}),
        vec![cron_named("cron_trig"), workload("workload_trig")],
    ));
    // shouldnt validate the so creation with scalingModifiers.Formula but no target
    refused(
        &modifiers(
            json!({"formula": "workload_trig + cron_trig"}),
            vec![cron_named("cron_trig"), workload("workload_trig")],
        ),
        "formula is given but target is empty",
    );
    // shouldnt validate the so creation with ScalingModifiers when triggers dont have names
    let mut unnamed = workload("x");
    unnamed.as_object_mut().unwrap().remove("name");
    refused(
        &modifiers(
            json!({"formula": "workload_trig + cron_trig"}),
            vec![cron(), unnamed],
        ),
        "scalingModifiers",
    );
    // should validate the so creation with ScalingModifiers when formula triggers do have names but not all
    // triggers
    admitted(&modifiers(
        json!({"target": "2", "formula": "workload_trig + 1"}),
        vec![cron(), workload("workload_trig")],
    ));
    // should validate the so creation with ScalingModifiers.Formula - ternary operator without casting float
    admitted(&modifiers(
        json!({"target": "2", "formula": "workload_trig < 5 ? cron_trig + workload_trig : 5"}),
        vec![cron_named("cron_trig"), workload("workload_trig")],
    ));
}

#[test]
fn scaling_modifiers_formula_language() {
    // should validate the so creation with ScalingModifiers when formula casts to float already
    admitted(&modifiers(
        json!({"target": "2", "formula": "float(workload_trig + 1)"}),
        vec![workload("workload_trig")],
    ));
    // should validate the so creation with ScalingModifiers.Formula - casting float from ternary operator
    admitted(&modifiers(
        json!({"target": "2", "formula": "float(workload_trig < 5 ? cron_trig + workload_trig : 5)"}),
        vec![cron_named("cron_trig"), workload("workload_trig")],
    ));
    // should validate the so creation with ScalingModifiers.Formula - count operator
    admitted(&modifiers(
        json!({"target": "2", "formula": "count([trig_one,trig_two],{#>1}) > 1 ? 5 : 0"}),
        vec![cron_named("trig_one"), workload("trig_two")],
    ));
    // should validate the so creation with ScalingModifiers.Formula - complex ternary
    admitted(&modifiers(
        json!({"target": "2", "formula": "float(trig_one < 2 ? trig_one+trig_two >= 2 ? 5 : 10 : 0)"}),
        vec![cron_named("trig_one"), workload("trig_two")],
    ));
    // should validate the so creation with ScalingModifiers.Formula - double float cast
    admitted(&modifiers(
        json!({"target": "2", "formula": "float(float(trig_two < 5 ? trig_one + trig_two : 5))"}),
        vec![cron_named("trig_one"), workload("trig_two")],
    ));
    // Not upstream: what the same language refuses, at the formula's field.
    refused(
        &modifiers(
            json!({"target": "2", "formula": "trig_one ? 1 : 0"}),
            vec![cron_named("trig_one"), workload("trig_two")],
        ),
        "spec.advanced.scalingModifiers.formula: error validating formula in ScalingModifiers",
    );
    refused(
        &modifiers(
            json!({"target": "0", "formula": "trig_one"}),
            vec![cron_named("trig_one"), workload("trig_two")],
        ),
        "spec.advanced.scalingModifiers.target: error validating target in ScalingModifiers",
    );
}

#[test]
fn scaling_modifiers_fallback_behavior() {
    // should validate the so creation with scalingModifiers fallback behavior
    let mut so = modifiers(
        json!({"target": "2", "formula": "trig_one ?? trig_two ?? 5"}),
        vec![cron_named("trig_one"), workload("trig_two")],
    );
    so["spec"]["fallback"] =
        json!({"failureThreshold": 3, "replicas": 5, "behavior": "scalingModifiers"});
    admitted(&so);
    // shouldn't validate the so creation with scalingModifiers fallback without formula
    let mut so = fixture("test-so", false, "");
    so["spec"]["fallback"] =
        json!({"failureThreshold": 3, "replicas": 6, "behavior": "scalingModifiers"});
    refused(
        &so,
        "scalingModifiers fallback behavior requires scalingModifiers.formula to be defined",
    );
}

const POLLING: &str = "PollingInterval is configured but is not relevant";
const COOLDOWN: &str = "CooldownPeriod is configured but is not relevant";

fn has(warnings: &[String], text: &str) -> bool {
    warnings.iter().any(|w| w.contains(text))
}

#[test]
fn polling_and_cooldown_warnings() {
    let with = |min: i32, idle: Option<i32>, polling: bool, cooldown: bool| {
        let mut so = fixture("test-so", false, "");
        so["spec"]["minReplicaCount"] = json!(min);
        match idle {
            Some(i) => so["spec"]["idleReplicaCount"] = json!(i),
            None => {
                so["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("idleReplicaCount");
            }
        }
        if polling {
            so["spec"]["pollingInterval"] = json!(30);
        }
        if cooldown {
            so["spec"]["cooldownPeriod"] = json!(300);
        }
        so
    };
    // should emit warning when PollingInterval is set with minReplicaCount > 0 and idleReplicaCount not set
    assert!(has(&admitted(&with(1, None, true, false)), POLLING));
    // should NOT emit warning when PollingInterval is set with minReplicaCount > 0 and idleReplicaCount > 0
    assert!(!has(&admitted(&with(2, Some(1), true, false)), POLLING));
    // should NOT emit warning when PollingInterval is set with idleReplicaCount = 0
    assert!(!has(&admitted(&with(1, Some(0), true, false)), POLLING));
    // should NOT emit warning when PollingInterval is set with useCachedMetrics enabled
    let mut cached = with(2, Some(1), true, false);
    let mut t = workload("workload_trig_1");
    t["useCachedMetrics"] = json!(true);
    t["metricType"] = json!("Value");
    cached["spec"]["triggers"] = json!([t]);
    assert!(!has(&admitted(&cached), POLLING));
    // should NOT emit warning when PollingInterval is not set
    assert!(!has(&admitted(&with(1, None, false, false)), POLLING));
    // should emit warning when CooldownPeriod is set with minReplicaCount > 0 and idleReplicaCount not set
    assert!(has(&admitted(&with(1, None, false, true)), COOLDOWN));
    // should NOT emit warning when CooldownPeriod is set with minReplicaCount > 0 and idleReplicaCount > 0
    assert!(!has(&admitted(&with(2, Some(1), false, true)), COOLDOWN));
    // should NOT emit warning when CooldownPeriod is set with idleReplicaCount = 0
    assert!(!has(&admitted(&with(1, Some(0), false, true)), COOLDOWN));
    // should NOT emit warning when CooldownPeriod is not set
    assert!(!has(&admitted(&with(1, None, false, false)), COOLDOWN));
    // should emit both warnings when both PollingInterval and CooldownPeriod are misconfigured
    let w = admitted(&with(1, None, true, true));
    assert!(has(&w, POLLING) && has(&w, COOLDOWN));
    // should emit no warnings when both are properly configured with idleReplicaCount = 0
    assert!(admitted(&with(1, Some(0), true, true)).is_empty());
}

#[test]
fn validate_triggers() {
    // scaletriggers_types_test.go TestValidateTriggers
    let base = |triggers: Value| {
        let mut so = fixture("test-so", false, "");
        so["spec"]["triggers"] = triggers;
        so
    };
    // "valid triggers"
    admitted(&base(json!([
        {"type": "prometheus", "name": "test1", "metadata": {"threshold": "1"}},
        {"type": "prometheus", "name": "test2", "metadata": {"threshold": "1"}}
    ])));
    // "duplicate trigger names"
    refused(
        &base(json!([
            {"type": "prometheus", "name": "test", "metadata": {"threshold": "1"}},
            {"type": "prometheus", "name": "test", "metadata": {"threshold": "1"}}
        ])),
        "triggerName \"test\" is defined multiple times in the ScaledObject/ScaledJob, but it must be unique",
    );
    // Not upstream: unnamed triggers are never duplicates.
    admitted(&base(json!([
        {"type": "prometheus", "metadata": {"threshold": "1"}},
        {"type": "prometheus", "metadata": {"threshold": "1"}}
    ])));
    // "unsupported useCachedMetrics property for cpu scaler" / "... memory scaler" / "... cron scaler"
    for kind in ["cpu", "memory"] {
        let mut so = base(json!([
            {"type": kind, "name": "t", "useCachedMetrics": true, "metricType": "Utilization", "metadata": {"value": "10"}},
            {"type": "prometheus", "metadata": {"threshold": "1"}}
        ]));
        so["spec"]["minReplicaCount"] = json!(1);
        so["spec"]
            .as_object_mut()
            .unwrap()
            .remove("idleReplicaCount");
        refused(
            &so,
            &format!("property \"useCachedMetrics\" is not supported for \"{kind}\" scaler"),
        );
    }
    let mut c = cron_named("t");
    c["useCachedMetrics"] = json!(true);
    refused(
        &base(json!([c])),
        "property \"useCachedMetrics\" is not supported for \"cron\" scaler",
    );
    // "supported useCachedMetrics property for kafka scaler"
    admitted(&base(json!([
        {"type": "kafka", "name": "t", "useCachedMetrics": true, "metadata": {"lagThreshold": "10"}}
    ])));
}

#[test]
fn scaled_job_triggers() {
    // scaledjob_webhook_test.go "should validate empty triggers in ScaledJob" (refused), and the shared
    // ValidateTriggers rules on a ScaledJob.
    let job = |triggers: Value| {
        serde_yaml_ng::to_string(&json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledJob",
            "metadata": {"name": "test-sj"},
            "spec": {"jobTargetRef": {"template": {}}, "triggers": triggers}
        }))
        .unwrap()
    };
    assert!(
        parse_scaled_job(&job(
            json!([{"type": "rabbitmq", "name": "a", "metadata": {"queueLength": "5"}}])
        ))
        .is_ok()
    );
    let Err(ManifestError::Invalid(errors)) = parse_scaled_job(&job(json!([
        {"type": "rabbitmq", "name": "a", "metadata": {"queueLength": "5"}},
        {"type": "rabbitmq", "name": "a", "metadata": {"queueLength": "5"}}
    ]))) else {
        panic!("expected a refusal");
    };
    assert!(
        errors.iter().any(|e| e.contains("defined multiple times")),
        "{errors:?}"
    );
    let Err(ManifestError::Invalid(errors)) = parse_scaled_job(&job(json!([]))) else {
        panic!("expected a refusal");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("no triggers defined in the ScaledObject/ScaledJob")),
        "{errors:?}"
    );
}

// ---- cases that read the cluster ----

/// `createHpa(name, namespace, workloadName, targetAPI, targetKind, owner)`.
fn hpa(name: &str, api: &str, kind: &str, owner: Option<&str>) -> Value {
    let mut h = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"name": "deployment-name", "apiVersion": api, "kind": kind},
            "minReplicas": 5,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageUtilization": 30}}}],
        }
    });
    if let Some(owner) = owner {
        h["metadata"]["ownerReferences"] = json!([{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": owner, "uid": "u"}]);
    }
    h
}

/// `createDeployment(namespace, hasCPU, hasMemory)` / `createStatefulSet(...)`: requests of 100m, or 0.
fn workload_object(kind: &str, cpu: bool, memory: bool) -> Value {
    let q = |set: bool| if set { "100m" } else { "0" };
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "deployment-name", "namespace": "ns"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"test": "test"}},
            "template": {
                "metadata": {"labels": {"test": "test"}},
                "spec": {"containers": [{"name": "test", "image": "test", "resources": {"requests": {"cpu": q(cpu), "memory": q(memory)}}}]},
            },
        }
    })
}

/// `createLimitRange(name, namespace, type, cpu, memory)`: `default` limits.
fn limit_range(kind: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "test-limit-range", "namespace": "ns"},
        "spec": {"limits": [{"type": kind, "default": {"cpu": cpu, "memory": memory}}]},
    })
}

fn view(objects: &[Value], dry_run: bool) -> ClusterView {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let mut v = ClusterView::from_manifests(&serde_yaml_ng::to_string(&list).unwrap()).unwrap();
    v.dry_run = dry_run;
    v
}

fn admit_in(so: &Value, cluster: &ClusterView) -> Result<Vec<String>, Vec<String>> {
    let yaml = serde_yaml_ng::to_string(so).unwrap();
    match parse_scaled_object_in(&yaml, Some(cluster)) {
        Ok(spec) => Ok(spec.warnings),
        Err(ManifestError::Invalid(errors)) => Err(errors),
        Err(e) => Err(vec![e.to_string()]),
    }
}

#[track_caller]
fn admitted_in(so: &Value, objects: &[Value]) {
    if let Err(e) = admit_in(so, &view(objects, false)) {
        panic!("refused: {e:?}");
    }
}

#[track_caller]
fn refused_in(so: &Value, objects: &[Value], containing: &str) {
    match admit_in(so, &view(objects, false)) {
        Ok(_) => panic!("admitted; expected an error containing {containing:?}"),
        Err(errors) => assert!(
            errors.iter().any(|e| e.contains(containing)),
            "{errors:?} has no {containing:?}"
        ),
    }
}

fn so_on(api: &str, kind: &str) -> Value {
    let mut so = fixture("test-so", false, "");
    so["spec"]["scaleTargetRef"] =
        json!({"name": "deployment-name", "apiVersion": api, "kind": kind});
    so
}

#[test]
fn cluster_hpas_and_scaled_objects() {
    let dep = || workload_object("Deployment", true, true);
    // should validate the so creation when there isn't any hpa
    admitted_in(&fixture("test-so", false, ""), &[]);
    // should validate the so creation when there are other SO for other workloads
    let mut other = fixture("other-so", false, "");
    other["spec"]["scaleTargetRef"]["name"] = json!("other-workload");
    admitted_in(&fixture("test-so", false, ""), &[other]);
    // should validate the so creation when another SO targets the same name with a different Kind
    let mut sts = fixture("other-so", false, "");
    sts["spec"]["scaleTargetRef"]["kind"] = json!("StatefulSet");
    admitted_in(&fixture("test-so", false, ""), &[sts]);
    // should validate the so creation when there are other HPA for other workloads
    let mut other_hpa = hpa("other-hpa", "apps/v1", "Deployment", None);
    other_hpa["spec"]["scaleTargetRef"]["name"] = json!("other-workload");
    admitted_in(&fixture("test-so", false, ""), &[other_hpa, dep()]);
    // should validate the so creation when it's own hpa is already generated
    let own = hpa("test-so-hpa", "apps/v1", "Deployment", Some("test-so"));
    admitted_in(&fixture("test-so", false, ""), std::slice::from_ref(&own));
    // should validate the so update when it's own hpa is already generated (maxReplicaCount 10 -> 7)
    let mut updated = fixture("test-so", false, "");
    updated["spec"]["maxReplicaCount"] = json!(7);
    let old = serde_yaml_ng::to_string(&fixture("test-so", false, "")).unwrap();
    let new = serde_yaml_ng::to_string(&updated).unwrap();
    let me = fixture("test-so", false, "");
    let spec = admit_scaled_object_update(&old, &new, &view(&[own, me], false)).unwrap();
    assert_eq!(spec.max_replica_count, 7);

    // shouldn't validate the so creation when there is another unmanaged hpa
    let unmanaged = || hpa("test-unmanaged-hpa", "apps/v1", "Deployment", None);
    refused_in(
        &fixture("test-so", false, ""),
        &[unmanaged()],
        "spec.scaleTargetRef: the workload 'deployment-name' of type 'apps/v1.Deployment' is already managed by the hpa 'test-unmanaged-hpa'",
    );
    // An HPA owned by another ScaledObject is still another's.
    refused_in(
        &fixture("test-so", false, ""),
        &[hpa("keda-hpa-x", "apps/v1", "Deployment", Some("x"))],
        "is already managed by the hpa 'keda-hpa-x'",
    );
    // should validate the so creation when there is another unmanaged hpa and so has
    // transfer-hpa-ownership activated and the name is specified
    let transfer = |hpa_name: &str| {
        let mut so = fixture("test-so", false, hpa_name);
        so["metadata"]["annotations"] =
            json!({"scaledobject.keda.sh/transfer-hpa-ownership": "true"});
        so
    };
    admitted_in(&transfer("test-unmanaged-hpa"), &[unmanaged()]);
    // shouldn't validate the so creation when there is another unmanaged hpa and so has
    // transfer-hpa-ownership activated but no name specified
    refused_in(
        &transfer(""),
        &[unmanaged()],
        "spec.advanced.horizontalPodAutoscalerConfig.name: the existing hpa 'test-unmanaged-hpa' for workload 'deployment-name' of type 'apps/v1.Deployment' must be specified by name in advanced settings to enable ownership transfer",
    );
    // shouldn't validate the so creation when hpa has shared-ownership unactivated (its expectation is
    // ShouldNot(HaveOccurred()): the HPA's validations.keda.sh/hpa-ownership "false" turns the check off)
    let mut shared = hpa(
        "test-hpa-disabled-validation-by-hpa-ownership",
        "apps/v1",
        "Deployment",
        None,
    );
    shared["metadata"]["annotations"] = json!({"validations.keda.sh/hpa-ownership": "false"});
    let mut so = fixture(
        "test-so",
        false,
        "test-hpa-disabled-validation-by-hpa-ownership",
    );
    so["metadata"]["annotations"] = json!({"scaledobject.keda.sh/transfer-hpa-ownership": "false"});
    admitted_in(&so, &[shared]);
    // shouldn't validate the so creation when there is another so
    refused_in(
        &fixture("test-so", false, ""),
        &[fixture("test-so2", false, "")],
        "spec.scaleTargetRef: the workload 'deployment-name' of type 'apps/v1.Deployment' is already managed by the ScaledObject 'test-so2'",
    );
    // Not upstream: the other check of verifyScaledObjects, the generated HPA's name already taken.
    let mut same_hpa = fixture("test-so2", false, "shared-hpa");
    same_hpa["spec"]["scaleTargetRef"]["name"] = json!("other-workload");
    refused_in(
        &fixture("test-so", false, "shared-hpa"),
        &[same_hpa],
        "spec.advanced.horizontalPodAutoscalerConfig.name: the HPA 'shared-hpa' is already managed by the ScaledObject 'test-so2'",
    );
    // shouldn't validate the so creation when there is another hpa with custom apis: the kind is one the
    // REST mapper must know; with its CRD the HPA conflicts, without it ParseGVKR fails first.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "custom-kinds.custom-api"},
        "spec": {"group": "custom-api", "names": {"kind": "custom-kind"}, "versions": [{"name": "v1"}]},
    });
    let custom_hpa = hpa("test-custom-hpa", "custom-api/v1", "custom-kind", None);
    refused_in(
        &so_on("custom-api/v1", "custom-kind"),
        &[custom_hpa.clone(), crd],
        "is already managed by the hpa 'test-custom-hpa'",
    );
    refused_in(
        &so_on("custom-api/v1", "custom-kind"),
        &[custom_hpa],
        "spec.scaleTargetRef: no matches for kind \"custom-kind\"",
    );
}

#[test]
fn cluster_cpu_and_memory_requests() {
    let so = || fixture("test-so", true, "");
    let sts_so = || so_with_kind(so(), "StatefulSet");
    // should validate the so creation with cpu and memory when deployment has requests
    admitted_in(&so(), &[workload_object("Deployment", true, true)]);
    // shouldn't validate the creation with cpu and memory when deployment is missing
    refused_in(
        &so(),
        &[],
        "spec.scaleTargetRef: Deployment \"deployment-name\" not found",
    );
    // should validate the creation with cpu and memory when deployment is missing and dry-run is true
    assert!(admit_in(&so(), &view(&[], true)).is_ok());
    // shouldn't validate the so creation with cpu and memory when deployment hasn't got memory request
    // (trigger 2 of the fixture is memory)
    refused_in(
        &so(),
        &[workload_object("Deployment", true, false)],
        "spec.triggers[2]: the scaledobject has a memory trigger but the container test doesn't have the memory request defined",
    );
    // shouldn't validate the SO creation with CPU and memory when deployment doesn't have CPU and memory
    refused_in(
        &so(),
        &[workload_object("Deployment", false, false)],
        "spec.triggers[1]: the scaledobject has a cpu trigger but the container test doesn't have the cpu request defined",
    );
    // should validate the SO creation with CPU and memory when deployment doesn't have CPU and memory, but
    // LimitRange has the limits specified (NewMilliQuantity(100): 100m)
    admitted_in(
        &so(),
        &[
            workload_object("Deployment", false, false),
            limit_range("Container", "100m", "100m"),
        ],
    );
    // Not upstream: only a Container LimitRange counts, and a zero default does not.
    refused_in(
        &so(),
        &[
            workload_object("Deployment", false, false),
            limit_range("Pod", "100m", "100m"),
        ],
        "doesn't have the cpu request defined",
    );
    refused_in(
        &so(),
        &[
            workload_object("Deployment", false, false),
            limit_range("Container", "100m", "0"),
        ],
        "doesn't have the memory request defined",
    );
    // shouldn't validate the so creation with cpu and memory when deployment hasn't got cpu request
    refused_in(
        &so(),
        &[workload_object("Deployment", false, true)],
        "doesn't have the cpu request defined",
    );
    // should validate the so creation with cpu and memory when statefulset has requests
    admitted_in(&sts_so(), &[workload_object("StatefulSet", true, true)]);
    // shouldn't validate the so creation with cpu and memory when statefulset hasn't got memory request
    refused_in(
        &sts_so(),
        &[workload_object("StatefulSet", true, false)],
        "doesn't have the memory request defined",
    );
    // shouldn't validate the so creation with cpu and memory when statefulset hasn't got cpu request
    refused_in(
        &sts_so(),
        &[workload_object("StatefulSet", false, true)],
        "doesn't have the cpu request defined",
    );
    // A StatefulSet does not stand in for the Deployment of the same name.
    refused_in(
        &so(),
        &[workload_object("StatefulSet", true, true)],
        "Deployment \"deployment-name\" not found",
    );
    // should validate the so creation without cpu and memory when custom resources (apiVersion
    // "custom-api" with kind StatefulSet: resolved without the mapper, not apps/v1, so not read)
    admitted_in(&so_on_cpu("custom-api", "StatefulSet"), &[]);
    // Not upstream: containerName narrows the check to that container.
    let mut named = so();
    named["spec"]["triggers"][1]["metadata"]["containerName"] = json!("sidecar");
    named["spec"]["triggers"][2]["metadata"]["containerName"] = json!("sidecar");
    admitted_in(&named, &[workload_object("Deployment", false, false)]);
}

fn so_with_kind(mut so: Value, kind: &str) -> Value {
    so["spec"]["scaleTargetRef"]["kind"] = json!(kind);
    so
}

fn so_on_cpu(api: &str, kind: &str) -> Value {
    let mut so = fixture("test-so", true, "");
    so["spec"]["scaleTargetRef"] =
        json!({"name": "deployment-name", "apiVersion": api, "kind": kind});
    so
}

#[test]
fn cluster_scale_to_zero_and_limits_only() {
    let cpu_only = || workload_object("Deployment", true, false);
    // should validate so creation when all requirements are met for scaling to zero with cpu scaler
    admitted_in(&with_target(stz(0, 5, true)), &[cpu_only()]);
    // shouldn't validate so creation with cpu scaler requirements not being met for scaling to 0
    refused_in(
        &with_target(stz(0, 5, false)),
        &[cpu_only()],
        "scale to zero doesn't work in this case",
    );
    // should validate so creation when min replicas is > 0 with only cpu scaler given
    admitted_in(&with_target(stz(1, 5, false)), &[cpu_only()]);
    // Not upstream: on a dry run verifyCPUMemoryScalers checks nothing, the scale-to-zero rule included.
    assert!(admit_in(&with_target(stz(0, 5, false)), &view(&[], true)).is_ok());

    // should not validate ScaledObject creation when deployment only provides cpu resource limits (its
    // expectation is ShouldNot(HaveOccurred()): a limit above 0 counts as set)
    let limits_only = |resource: &str, limit: &str| {
        let mut w = workload_object("Deployment", false, false);
        w["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] =
            json!({resource: limit});
        w
    };
    let mut so = fixture("test-so", false, "");
    so["spec"]["triggers"] =
        json!([{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "10"}}]);
    admitted_in(&so, &[limits_only("cpu", "100m")]);
    // should not validate ScaledObject creation when deployment only provides memory resource limits
    // (NewMilliQuantity(1024): 1024m; value 512Mi is an AverageValue target)
    so["spec"]["triggers"] =
        json!([{"type": "memory", "metricType": "AverageValue", "metadata": {"value": "512Mi"}}]);
    admitted_in(&so, &[limits_only("memory", "1024m")]);
    refused_in(
        &so,
        &[limits_only("cpu", "100m")],
        "doesn't have the memory request defined",
    );
}

/// `createScaledObjectSTZ`'s `scaleTargetRef` names only the workload (KEDA's defaults apply).
fn with_target(mut so: Value) -> Value {
    so["metadata"]["namespace"] = json!("ns");
    so
}

#[test]
fn cluster_finalizer_removal() {
    // should validate the so update if it's removing the finalizer even if it's invalid: created with
    // requests, the Deployment then loses them, and the update removing the finalizer is admitted.
    let mut so = fixture("test-so", true, "");
    so["metadata"]["finalizers"] = json!(["finalizer"]);
    admitted_in(&so, &[workload_object("Deployment", true, true)]);
    let mut no_requests = workload_object("Deployment", true, true);
    no_requests["spec"]["template"]["spec"]["containers"][0]["resources"]
        .as_object_mut()
        .unwrap()
        .remove("requests");
    let cluster = view(&[no_requests], false);
    let old = serde_yaml_ng::to_string(&so).unwrap();
    let mut removed = so.clone();
    removed["metadata"]["finalizers"] = json!([]);
    let new = serde_yaml_ng::to_string(&removed).unwrap();
    assert!(admit_scaled_object_update(&old, &new, &cluster).is_ok());
    // The same update that also edits the spec is checked in full, and the missing requests refuse it.
    removed["spec"]["maxReplicaCount"] = json!(9);
    let edited = serde_yaml_ng::to_string(&removed).unwrap();
    let Err(ManifestError::Invalid(errors)) = admit_scaled_object_update(&old, &edited, &cluster)
    else {
        panic!("admitted an update that edits the spec");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("doesn't have the cpu request defined")),
        "{errors:?}"
    );
    // Adding a finalizer is no removal.
    let added = {
        let mut a = so.clone();
        a["metadata"]["finalizers"] = json!(["finalizer", "another"]);
        serde_yaml_ng::to_string(&a).unwrap()
    };
    assert!(admit_scaled_object_update(&old, &added, &cluster).is_err());
}

#[test]
fn cluster_objects_refused_when_unread() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
    let Err(ManifestError::Invalid(errors)) = ClusterView::from_manifests(yaml) else {
        panic!("a Service was accepted into the cluster view");
    };
    assert!(
        errors[0].starts_with("objects[0].kind: \"Service\" is not an object"),
        "{errors:?}"
    );
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: c, resources: {requests: {cpu: lots}}}]\n";
    let Err(ManifestError::Invalid(errors)) = ClusterView::from_manifests(bad) else {
        panic!("a bad quantity was accepted");
    };
    assert!(
        errors[0]
            .starts_with("objects[0].spec.template.spec.containers[0].resources.requests.cpu:"),
        "{errors:?}"
    );
}
