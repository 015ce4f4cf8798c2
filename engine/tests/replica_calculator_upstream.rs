//! Cases ported from kubernetes `pkg/controller/podautoscaler/replica_calculator_test.go` (v1.36: the
//! `TestReplicaCalcResourceScale` table, the single-case tests, `TestGroupPods`, `TestCalculateRequests`
//! and the overflow tests) and `metrics/utilization_test.go`, one row per upstream case with its name.
//!
//! The harness mirrors upstream's fakes: pods `test-pod-N` with containers `container1` and
//! `container2`, each requesting the pod's request; resource samples built the way the metrics client
//! builds them from the fake metrics API (a pod's value is the sum of its containers', a pod with a
//! container lacking the resource is left out; a container metric takes that container's value, a pod
//! without the container is left out); samples at the zero time with a 1 min window; `Ready`
//! transitions at the zero time; start times "hot" (1 min ago), "cool" (3 min ago) or the zero time; CPU
//! initialization period 2 min, initial readiness delay 10 s, tolerance 0.1. Every case runs through
//! `compute_replicas_for_metric`, the function `evaluate_hpa` (and so `surge simulate`) calls per metric;
//! the error cases assert that the message contains upstream's, as upstream's `ErrorContains` does.
//! Upstream also checks the returned sample timestamp, which surge does not return: not ported.

// Test helpers may unwrap (a panic is a failed test) and tables are wide by design.
#![allow(
    clippy::unwrap_used,
    clippy::too_many_arguments,
    clippy::type_complexity
)]

use std::collections::{BTreeMap, BTreeSet};

use surge_engine::hpa::calc::{self, PodSample, PodSamples};
use surge_engine::hpa::{
    ConditionStatus, ContainerRequests, ControllerConfig, HpaInput, InitContainerRequests,
    MetricSample, MetricSource, MetricSpec, MetricTarget, PodInfo, PodMetric, PodPhase, Tolerances,
};
use surge_engine::quantity::parse_milli;

const NOW: i64 = 1_700_000_000_000;
const ZERO: i64 = 0;
const HOT: i64 = NOW - 60_000;
const COOL: i64 = NOW - 3 * 60_000;
const T: ConditionStatus = ConditionStatus::True;
const F: ConditionStatus = ConditionStatus::False;
const R: PodPhase = PodPhase::Running;
const P: PodPhase = PodPhase::Pending;
const X: PodPhase = PodPhase::Failed;
const MAX64: i64 = i64::MAX;

fn config() -> ControllerConfig {
    ControllerConfig {
        tolerance: 0.1,
        cpu_initialization_period_ms: 2 * 60_000,
        delay_of_initial_readiness_status_ms: 10_000,
        ..ControllerConfig::default()
    }
}

fn tol(down: f64, up: f64) -> Tolerances {
    Tolerances {
        scale_down: down,
        scale_up: up,
    }
}

const DEFAULT_TOL: Tolerances = Tolerances {
    scale_down: 0.1,
    scale_up: 0.1,
};

/// `calcScenario`: the pods and what the fake metrics APIs return.
#[derive(Clone, Default)]
struct Fixture {
    current: i32,
    /// Per-pod CPU request of each container (quantity text); fewer than the pods leaves the rest
    /// without requests.
    requests: Vec<&'static str>,
    /// `levels[i][j]`: container `j+1` of pod `i` (resource metrics).
    levels: Vec<Vec<i64>>,
    /// Overrides the name of the metric for pod `i`.
    pod_names: Vec<&'static str>,
    container: Option<&'static str>,
    readiness: Vec<ConditionStatus>,
    start: Vec<i64>,
    phase: Vec<PodPhase>,
    deleting: Vec<bool>,
}

/// `newFakePodClient` / `buildFakePod`: `current` pods, or as many as `phase` lists.
fn pods(f: &Fixture) -> Vec<PodInfo> {
    let n = usize::try_from(f.current).unwrap().max(f.phase.len());
    (0..n)
        .map(|i| {
            let request = f.requests.get(i).map(|q| parse_milli(q).unwrap());
            let container = |name: &str| ContainerRequests {
                name: name.to_owned(),
                requests: request
                    .map(|r| BTreeMap::from([("cpu".to_owned(), r)]))
                    .unwrap_or_default(),
            };
            PodInfo {
                name: format!("test-pod-{i}"),
                phase: f.phase.get(i).copied().unwrap_or(R),
                ready: Some(f.readiness.get(i).copied().unwrap_or(T)),
                ready_transition_ms: ZERO,
                start_ms: Some(f.start.get(i).copied().unwrap_or(ZERO)),
                deleting: f.deleting.get(i).copied().unwrap_or(false),
                containers: vec![container("container1"), container("container2")],
                init_containers: Vec::new(),
                pod_requests: None,
                overhead: BTreeMap::new(),
            }
        })
        .collect()
}

/// The metrics client over the fake `metrics.k8s.io` answer (`getPodMetrics` / `getContainerMetrics`).
fn resource_sample(f: &Fixture) -> MetricSample {
    let mut m = BTreeMap::new();
    for (i, levels) in f.levels.iter().enumerate() {
        let name = f
            .pod_names
            .get(i)
            .map_or_else(|| format!("test-pod-{i}"), |n| (*n).to_owned());
        // The fake always reports two containers; a missing level is a container without usage.
        let value = match f.container {
            None if levels.len() == 2 => Some(levels.iter().sum()),
            None => None,
            Some("container1") => levels.first().copied(),
            Some("container2") => levels.get(1).copied(),
            Some(_) => None,
        };
        if let Some(milli) = value {
            let metric = PodMetric {
                milli,
                timestamp_ms: ZERO,
                window_ms: 60_000,
            };
            m.insert(name, metric);
        }
    }
    MetricSample::PerPod(m)
}

/// `makePodMetricLevels`: both containers report each value.
fn both(values: &[i64]) -> Vec<Vec<i64>> {
    values.iter().map(|v| vec![*v, *v]).collect()
}

/// One metric through `compute_replicas_for_metric`.
fn run(
    f: &Fixture,
    spec: MetricSpec,
    sample: MetricSample,
    tolerances: Tolerances,
) -> Result<(i32, Option<i32>, i64), String> {
    let input = HpaInput {
        current_replicas: f.current,
        status_replicas: f.current,
        pods: pods(f),
        metrics: vec![sample.clone()],
    };
    let (p, failure) =
        calc::compute_replicas_for_metric(&spec, Some(&sample), &input, &config(), tolerances, NOW);
    match failure {
        Some((error, _)) => Err(error),
        None => Ok((
            p.proposal.unwrap(),
            p.current_utilization,
            p.current_milli.unwrap(),
        )),
    }
}

fn cpu_utilization(
    f: &Fixture,
    target: i32,
    tolerances: Tolerances,
) -> Result<(i32, i32, i64), String> {
    let source = match f.container {
        Some(c) => MetricSource::ContainerResource {
            name: "cpu".to_owned(),
            container: c.to_owned(),
        },
        None => MetricSource::Resource {
            name: "cpu".to_owned(),
        },
    };
    let spec = MetricSpec {
        source,
        target: MetricTarget::Utilization(target),
    };
    run(f, spec, resource_sample(f), tolerances).map(|(r, u, v)| (r, u.unwrap(), v))
}

#[derive(Clone, Copy)]
enum Kind {
    Pods,
    Object,
    ObjectPerPod,
    External,
    ExternalPerPod,
}

/// A custom or external metric (`metricInfo`): its levels, target and type.
fn custom(
    f: &Fixture,
    kind: Kind,
    levels: &[i64],
    target: i64,
    tolerances: Tolerances,
) -> Result<(i32, i64), String> {
    let metric = "qps".to_owned();
    let (source, target, sample) = match kind {
        Kind::Pods => (
            MetricSource::Pods { metric },
            MetricTarget::AverageValue(target),
            MetricSample::PerPod(
                levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let m = PodMetric {
                            milli: *l,
                            timestamp_ms: ZERO,
                            window_ms: 60_000,
                        };
                        (format!("test-pod-{i}"), m)
                    })
                    .collect(),
            ),
        ),
        Kind::Object | Kind::ObjectPerPod => (
            MetricSource::Object {
                metric,
                kind: "Deployment".to_owned(),
                object: "some-deployment".to_owned(),
            },
            if matches!(kind, Kind::Object) {
                MetricTarget::Value(target)
            } else {
                MetricTarget::AverageValue(target)
            },
            MetricSample::Object(levels[0]),
        ),
        Kind::External | Kind::ExternalPerPod => (
            MetricSource::External { metric },
            if matches!(kind, Kind::External) {
                MetricTarget::Value(target)
            } else {
                MetricTarget::AverageValue(target)
            },
            MetricSample::External(levels.to_vec()),
        ),
    };
    run(f, MetricSpec { source, target }, sample, tolerances).map(|(r, _, v)| (r, v))
}

fn n_pods(current: i32) -> Fixture {
    Fixture {
        current,
        ..Fixture::default()
    }
}

fn req(n: usize, q: &'static str) -> Vec<&'static str> {
    vec![q; n]
}

/// `TestReplicaCalcResourceScale` and the single-case resource tests:
/// (name, fixture, target utilization, tolerances, expected replicas, utilization, raw value).
#[test]
fn resource_rows() {
    let nc = 2; // numContainersPerPod
    let rows: Vec<(&str, Fixture, i32, Tolerances, i32, i32, i64)> = vec![
        (
            "scale up",
            Fixture {
                current: 3,
                requests: req(3, "1.0"),
                levels: both(&[300, 500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            5,
            50,
            nc * 500,
        ),
        (
            "scale up: container metric",
            Fixture {
                current: 3,
                container: Some("container2"),
                requests: req(3, "1.0"),
                levels: vec![vec![1000, 300], vec![1000, 500], vec![1000, 700]],
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            5,
            50,
            500,
        ),
        (
            "scale up: unready pod scales less",
            Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: req(3, "1.0"),
                levels: both(&[300, 500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            nc * 600,
        ),
        (
            "scale up: hot-CPU container scales less",
            Fixture {
                current: 3,
                start: vec![HOT, COOL, COOL],
                container: Some("container2"),
                requests: req(3, "1.0"),
                levels: vec![vec![0, 300], vec![0, 500], vec![0, 700]],
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            600,
        ),
        (
            "scale up: hot-CPU pod scales less",
            Fixture {
                current: 3,
                start: vec![HOT, COOL, COOL],
                requests: req(3, "1.0"),
                levels: both(&[300, 500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            nc * 600,
        ),
        (
            "no scale: unready pods ignored",
            Fixture {
                current: 3,
                readiness: vec![T, F, F],
                requests: req(3, "1.0"),
                levels: both(&[400, 500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            3,
            40,
            nc * 400,
        ),
        (
            "no scale: hot-CPU pods ignored",
            Fixture {
                current: 3,
                readiness: vec![T, F, F],
                start: vec![COOL, HOT, HOT],
                requests: req(3, "1.0"),
                levels: both(&[400, 500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            3,
            40,
            nc * 400,
        ),
        (
            "scale up: failed pods ignored",
            Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![R, R, X, X],
                requests: req(4, "1.0"),
                levels: both(&[500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            nc * 600,
        ),
        (
            "scale up: failed pods ignored with missing container metric",
            Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![R, R, X, X],
                container: Some("container2"),
                requests: req(4, "1.0"),
                levels: vec![vec![1000, 500], vec![9000, 700], vec![1000], vec![9000]],
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            600,
        ),
        (
            "scale up: container metrics with failed pods ignored",
            Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![R, R, X, X],
                container: Some("container2"),
                requests: req(4, "1.0"),
                levels: vec![vec![1000, 500], vec![9000, 700]],
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            600,
        ),
        (
            "scale up: pods being deleted are ignored",
            Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![R, R, R, R],
                deleting: vec![false, false, true, true],
                requests: req(4, "1.0"),
                levels: both(&[500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            nc * 600,
        ),
        (
            "scale up: container metrics with pods being deleted ignored",
            Fixture {
                current: 2,
                readiness: vec![T, T, F, F],
                phase: vec![R, R, R, R],
                deleting: vec![false, false, true, true],
                container: Some("container1"),
                requests: req(4, "1.0"),
                levels: both(&[500, 700]),
                ..Fixture::default()
            },
            30,
            DEFAULT_TOL,
            4,
            60,
            600,
        ),
        (
            "scale down",
            Fixture {
                current: 5,
                requests: req(5, "1.0"),
                levels: both(&[100, 300, 500, 250, 250]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            nc * 280,
        ),
        (
            "scale down: container metric",
            Fixture {
                current: 5,
                container: Some("container2"),
                requests: req(5, "1.0"),
                levels: [100, 300, 500, 250, 250]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            280,
        ),
        (
            "scale down: exclude unready pods",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, F, F],
                requests: req(5, "1.0"),
                levels: both(&[100, 300, 500, 250, 250]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            2,
            30,
            nc * 300,
        ),
        (
            "scale down: container metric excludes unready pods",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, F, F],
                container: Some("container2"),
                requests: req(5, "1.0"),
                levels: [100, 300, 500, 250, 250]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            2,
            30,
            300,
        ),
        (
            "scale down: exclude unscheduled pods",
            Fixture {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![R, P, P, P, P],
                requests: req(5, "1.0"),
                levels: both(&[100]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            1,
            10,
            nc * 100,
        ),
        (
            "scale down: container metric excludes unscheduled pods",
            Fixture {
                current: 5,
                readiness: vec![T, F, F, F, F],
                phase: vec![R, P, P, P, P],
                container: Some("container2"),
                requests: req(5, "1.0"),
                levels: [100, 300, 500, 250, 250]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            1,
            10,
            100,
        ),
        (
            "scale down: ignore hot-CPU pods",
            Fixture {
                current: 5,
                start: vec![COOL, COOL, COOL, HOT, HOT],
                requests: req(5, "1.0"),
                levels: both(&[100, 300, 500, 250, 250]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            2,
            30,
            nc * 300,
        ),
        (
            "scale down: container metric ignores hot-CPU pods",
            Fixture {
                current: 5,
                start: vec![COOL, COOL, COOL, HOT, HOT],
                container: Some("container2"),
                requests: req(5, "1.0"),
                levels: [100, 300, 500, 1000, 1000]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            2,
            30,
            300,
        ),
        (
            "scale down: failed pods ignored",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![R, R, R, R, R, X, X],
                requests: req(7, "1.0"),
                levels: both(&[100, 300, 500, 250, 250]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            nc * 280,
        ),
        (
            "scale down: container metric with failed pods ignored",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![R, R, R, R, R, X, X],
                container: Some("container2"),
                requests: req(7, "1.0"),
                levels: [100, 300, 500, 250, 250]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            280,
        ),
        (
            "scale down: pods being deleted are ignored",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![R; 7],
                deleting: vec![false, false, false, false, false, true, true],
                requests: req(7, "1.0"),
                levels: both(&[100, 300, 500, 250, 250]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            nc * 280,
        ),
        (
            "scale down: still-running pods being deleted are ignored",
            Fixture {
                current: 5,
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![R; 7],
                deleting: vec![false, false, false, false, false, true, true],
                container: Some("container2"),
                requests: req(7, "1.0"),
                levels: [100, 300, 500, 250, 250]
                    .iter()
                    .map(|v| vec![1000, *v])
                    .collect(),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            28,
            280,
        ),
        (
            "TestReplicaCalcTolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[1010, 1030, 1020]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            3,
            102,
            nc * 1020,
        ),
        (
            "TestReplicaCalcConfigurableTolerance: Outside of a 0% tolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[909, 1010, 1111]),
                ..Fixture::default()
            },
            100,
            tol(0.0, 0.0),
            4,
            101,
            nc * 1010,
        ),
        (
            "TestReplicaCalcConfigurableTolerance: Within a 200% scale-up tolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[1890, 1910, 1900]),
                ..Fixture::default()
            },
            100,
            tol(0.1, 2.0),
            3,
            190,
            nc * 1900,
        ),
        (
            "TestReplicaCalcConfigurableTolerance: Outside 8% scale-up tolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[1100, 1080, 1090]),
                ..Fixture::default()
            },
            100,
            tol(2.0, 0.08),
            4,
            109,
            nc * 1090,
        ),
        (
            "TestReplicaCalcConfigurableTolerance: Within a 36% scale-down tolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[660, 640, 650]),
                ..Fixture::default()
            },
            100,
            tol(0.36, 0.1),
            3,
            65,
            nc * 650,
        ),
        (
            "TestReplicaCalcConfigurableTolerance: Outside a 34% scale-down tolerance",
            Fixture {
                current: 3,
                requests: vec!["0.9", "1.0", "1.1"],
                levels: both(&[660, 640, 650]),
                ..Fixture::default()
            },
            100,
            tol(0.34, 0.1),
            2,
            65,
            nc * 650,
        ),
        (
            "TestReplicaCalcSuperfluousMetrics",
            Fixture {
                current: 4,
                requests: req(4, "1.0"),
                levels: both(&[4000, 9500, 3000, 7000, 3200, 2000]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            24,
            587,
            nc * 5875,
        ),
        (
            "TestReplicaCalcMissingMetrics",
            Fixture {
                current: 4,
                requests: req(4, "1.0"),
                levels: both(&[400, 95]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            3,
            24,
            495,
        ),
        (
            "TestReplicaCalcMissingMetricsNoChangeEq",
            Fixture {
                current: 2,
                requests: req(2, "1.0"),
                levels: both(&[1000]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            2,
            100,
            nc * 1000,
        ),
        (
            "TestReplicaCalcMissingMetricsNoChangeGt",
            Fixture {
                current: 2,
                requests: req(2, "1.0"),
                levels: both(&[1900]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            2,
            190,
            nc * 1900,
        ),
        (
            "TestReplicaCalcMissingMetricsNoChangeLt",
            Fixture {
                current: 2,
                requests: req(2, "1.0"),
                levels: both(&[600]),
                ..Fixture::default()
            },
            100,
            DEFAULT_TOL,
            2,
            60,
            nc * 600,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyChange",
            Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: req(3, "1.0"),
                levels: both(&[100, 450]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            45,
            nc * 450,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuNoChange",
            Fixture {
                current: 3,
                start: vec![HOT, COOL, COOL],
                requests: req(3, "1.0"),
                levels: both(&[100, 450]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            45,
            nc * 450,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            Fixture {
                current: 3,
                readiness: vec![F, T, T],
                requests: req(3, "1.0"),
                levels: both(&[100, 2000]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            4,
            200,
            nc * 2000,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuScaleUp",
            Fixture {
                current: 3,
                readiness: vec![F, T, T],
                start: vec![HOT, COOL, COOL],
                requests: req(3, "1.0"),
                levels: both(&[100, 2000]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            4,
            200,
            nc * 2000,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            Fixture {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: req(4, "1.0"),
                levels: both(&[100, 100, 100]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            3,
            10,
            nc * 100,
        ),
        (
            "TestReplicaCalcMissingMetricsScaleDownTargetOver100",
            Fixture {
                current: 4,
                readiness: vec![F, T, T, T],
                requests: vec!["1.0", "1.0", "2.0", "2.0"],
                levels: both(&[200, 100, 100]),
                ..Fixture::default()
            },
            300,
            DEFAULT_TOL,
            2,
            6,
            nc * 100,
        ),
        (
            "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
            Fixture {
                current: 2,
                phase: vec![R, R, R],
                requests: req(3, "1.0"),
                levels: both(&[100, 100]),
                ..Fixture::default()
            },
            50,
            DEFAULT_TOL,
            2,
            10,
            nc * 100,
        ),
    ];
    let total = rows.len();
    let mut failed = Vec::new();
    for (name, f, target, tolerances, replicas, utilization, raw) in rows {
        let got = cpu_utilization(&f, target, tolerances);
        if got != Ok((replicas, utilization, raw)) {
            failed.push(format!(
                "{name}: {got:?} != {:?}",
                (replicas, utilization, raw)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_eq!(total, 42);
}

/// `TestReplicaCalcComputedToleranceAlgImplementation`, with upstream's arithmetic.
#[test]
fn computed_tolerance_alg_implementation() {
    let start_pods: i32 = 10;
    let total_used: i64 = i64::from(start_pods) * 150;
    let total_requested = (2 * total_used) as i32;
    let requested_to_used = f64::from(total_requested / total_used as i32);
    let per_pod = total_requested / start_pods;
    let requests: Vec<&'static str> = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
        .iter()
        .map(|d| &*Box::leak(format!("{}m", per_pod + d).into_boxed_str()))
        .collect();
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let percent = (target * 100.0) as i32;
    let used_ratio = total_used as f64 / (f64::from(total_requested) * target);
    let final_pods = (used_ratio * f64::from(start_pods)).ceil() as i32;
    let f = Fixture {
        current: start_pods,
        requests,
        levels: both(&[total_used / 10; 10]),
        ..Fixture::default()
    };
    let utilization = (total_used * 100) as i32 / total_requested;
    assert_eq!(
        cpu_utilization(&f, percent, DEFAULT_TOL),
        Ok((final_pods, utilization, 2 * total_used / 10))
    );
    // Within a very close margin of the tolerance: no scaling.
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    let percent = (target * 100.0) as i32;
    assert_eq!(
        cpu_utilization(&f, percent, DEFAULT_TOL),
        Ok((start_pods, utilization, 2 * total_used / 10))
    );
}

/// The resource error cases: (name, fixture, expected error text).
#[test]
fn resource_errors() {
    let rows: Vec<(&str, Fixture, &str)> = vec![
        (
            "TestReplicaCalcDisjointResourcesMetrics",
            Fixture {
                current: 1,
                requests: vec!["1.0"],
                levels: both(&[100]),
                pod_names: vec!["an-older-pod-name"],
                ..Fixture::default()
            },
            "no metrics returned matched known pods",
        ),
        (
            "TestReplicaCalcEmptyMetrics",
            Fixture {
                current: 4,
                requests: req(3, "1.0"),
                levels: both(&[]),
                ..Fixture::default()
            },
            "unable to get metrics for resource cpu: no metrics returned from resource metrics API",
        ),
        (
            "TestReplicaCalcEmptyCPURequest",
            Fixture {
                current: 1,
                requests: vec![],
                levels: both(&[200]),
                ..Fixture::default()
            },
            "missing request for",
        ),
    ];
    for (name, f, error) in rows {
        let got = cpu_utilization(&f, 100, DEFAULT_TOL);
        assert!(
            matches!(&got, Err(e) if e.contains(error)),
            "{name}: {got:?} should contain {error:?}"
        );
    }
}

/// The custom, object and external metric tests, and upstream's overflow tests:
/// (name, current pods, readiness, start, type, levels, target, tolerances, replicas, usage).
#[test]
fn metric_rows() {
    let up1 = tol(0.1, 0.01);
    let rows: Vec<(&str, Fixture, Kind, Vec<i64>, i64, Tolerances, i32, i64)> = vec![
        (
            "TestReplicaCalcScaleUpOverflow",
            n_pods(3),
            Kind::Object,
            vec![MAX64],
            1,
            DEFAULT_TOL,
            i32::MAX,
            MAX64,
        ),
        (
            "TestExternalPerPodMetricReplicaOverflow",
            n_pods(1),
            Kind::ExternalPerPod,
            vec![MAX64],
            1,
            DEFAULT_TOL,
            i32::MAX,
            MAX64,
        ),
        (
            "TestExternalPerPodMetricUsageOverflow",
            n_pods(1),
            Kind::ExternalPerPod,
            vec![MAX64],
            MAX64,
            DEFAULT_TOL,
            1,
            MAX64,
        ),
        (
            "TestReplicaCalcExternalMetricUsageOverflow",
            n_pods(3),
            Kind::External,
            vec![MAX64 / 2 + 1, MAX64 / 2 + 1],
            MAX64,
            DEFAULT_TOL,
            3,
            MAX64,
        ),
        (
            "TestReplicaCalcScaleUpCM",
            n_pods(3),
            Kind::Pods,
            vec![20000, 10000, 30000],
            15000,
            DEFAULT_TOL,
            4,
            20000,
        ),
        (
            "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
            Fixture {
                current: 3,
                readiness: vec![T, T, F],
                start: vec![COOL, COOL, HOT],
                ..Fixture::default()
            },
            Kind::Pods,
            vec![50000, 10000, 30000],
            15000,
            DEFAULT_TOL,
            6,
            30000,
        ),
        (
            "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
            Fixture {
                current: 3,
                readiness: vec![F, T, F],
                start: vec![HOT, COOL, HOT],
                ..Fixture::default()
            },
            Kind::Pods,
            vec![50000, 15000, 30000],
            15000,
            DEFAULT_TOL,
            7,
            31666,
        ),
        (
            "TestReplicaCalcScaleUpCMObject",
            n_pods(3),
            Kind::Object,
            vec![20000],
            15000,
            DEFAULT_TOL,
            4,
            20000,
        ),
        (
            "TestReplicaCalcScaleUpCMPerPodObject",
            n_pods(3),
            Kind::ObjectPerPod,
            vec![20000],
            5000,
            DEFAULT_TOL,
            4,
            6667,
        ),
        (
            "TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
            Fixture {
                current: 3,
                readiness: vec![F, T, F],
                ..Fixture::default()
            },
            Kind::Object,
            vec![50000],
            10000,
            DEFAULT_TOL,
            5,
            50000,
        ),
        (
            "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
            Fixture {
                current: 3,
                readiness: vec![F, T, F],
                ..Fixture::default()
            },
            Kind::External,
            vec![8600],
            4400,
            DEFAULT_TOL,
            2,
            8600,
        ),
        (
            "TestReplicaCalcScaleUpPerPodCMExternal",
            n_pods(3),
            Kind::ExternalPerPod,
            vec![8600],
            2150,
            DEFAULT_TOL,
            4,
            2867,
        ),
        (
            "TestReplicaCalcScaleDownCM",
            n_pods(5),
            Kind::Pods,
            vec![12000; 5],
            20000,
            DEFAULT_TOL,
            3,
            12000,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMObject",
            n_pods(5),
            Kind::ObjectPerPod,
            vec![6000],
            2000,
            DEFAULT_TOL,
            3,
            1200,
        ),
        (
            "TestReplicaCalcScaleDownCMObject",
            n_pods(5),
            Kind::Object,
            vec![12000],
            20000,
            DEFAULT_TOL,
            3,
            12000,
        ),
        (
            "TestReplicaCalcScaleDownCMExternal",
            n_pods(5),
            Kind::External,
            vec![8600],
            14334,
            DEFAULT_TOL,
            3,
            8600,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMExternal",
            n_pods(5),
            Kind::ExternalPerPod,
            vec![8600],
            2867,
            DEFAULT_TOL,
            3,
            1720,
        ),
        (
            "TestReplicaCalcToleranceCM",
            n_pods(3),
            Kind::Pods,
            vec![20000, 21000, 21000],
            20000,
            DEFAULT_TOL,
            3,
            20666,
        ),
        (
            "TestReplicaCalcToleranceCMObject",
            n_pods(3),
            Kind::Object,
            vec![20666],
            20000,
            DEFAULT_TOL,
            3,
            20666,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMObject",
            n_pods(4),
            Kind::ObjectPerPod,
            vec![20166],
            5000,
            DEFAULT_TOL,
            4,
            5042,
        ),
        (
            "TestReplicaCalcToleranceCMExternal",
            n_pods(3),
            Kind::External,
            vec![8600],
            8888,
            DEFAULT_TOL,
            3,
            8600,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMExternal",
            n_pods(3),
            Kind::ExternalPerPod,
            vec![8600],
            2900,
            DEFAULT_TOL,
            3,
            2867,
        ),
        (
            "TestReplicaCalcConfigurableToleranceCM",
            n_pods(3),
            Kind::Pods,
            vec![20000, 21000, 21000],
            20000,
            up1,
            4,
            20666,
        ),
        (
            "TestReplicaCalcConfigurableToleranceCMObject",
            n_pods(3),
            Kind::Object,
            vec![20666],
            20000,
            up1,
            4,
            20666,
        ),
        (
            "TestReplicaCalcConfigurableTolerancePerPodCMObject",
            n_pods(4),
            Kind::ObjectPerPod,
            vec![20208],
            5000,
            up1,
            5,
            5052,
        ),
        (
            "TestReplicaCalcConfigurableToleranceCMExternal",
            n_pods(3),
            Kind::External,
            vec![8900],
            8800,
            up1,
            4,
            8900,
        ),
        (
            "TestReplicaCalcConfigurableTolerancePerPodCMExternal",
            n_pods(3),
            Kind::ExternalPerPod,
            vec![8600],
            2800,
            up1,
            4,
            2867,
        ),
        (
            "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
            n_pods(5),
            Kind::Pods,
            vec![20000, 19000, 21000],
            20000,
            DEFAULT_TOL,
            5,
            20000,
        ),
        (
            "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM",
            Fixture {
                current: 2,
                phase: vec![R, R, R],
                ..Fixture::default()
            },
            Kind::Pods,
            vec![10000, 10000],
            17000,
            DEFAULT_TOL,
            2,
            10000,
        ),
    ];
    let total = rows.len();
    let mut failed = Vec::new();
    for (name, f, kind, levels, target, tolerances, replicas, usage) in rows {
        let got = custom(&f, kind, &levels, target, tolerances);
        if got != Ok((replicas, usage)) {
            failed.push(format!("{name}: {got:?} != {:?}", (replicas, usage)));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_eq!(total, 29);
}

/// Object and External AverageValue read `scale.status.replicas`; from zero replicas an Object Value
/// metric uses the ratio without tolerance (`getUsageRatioReplicaCount`).
#[test]
fn usage_ratio_from_zero_replicas() {
    assert_eq!(
        custom(&n_pods(0), Kind::Object, &[1050], 1000, DEFAULT_TOL),
        Ok((2, 1050))
    );
    assert_eq!(
        custom(&n_pods(0), Kind::Object, &[MAX64], 1, DEFAULT_TOL),
        Ok((i32::MAX, MAX64))
    );
}

/// The sums upstream caps (`GetExternalMetricReplicas`, `GetExternalPerPodMetricReplicas`), at the edges.
#[test]
fn external_sums_cap_as_upstream() {
    assert_eq!(calc::external_usage(&[MAX64, 1]), MAX64);
    assert_eq!(calc::external_usage(&[MAX64 - 1, 1]), MAX64);
    assert_eq!(calc::external_usage(&[MAX64, -1, 5]), MAX64);
    assert_eq!(calc::external_usage(&[5, -7]), -2);
    // A negative overflow wraps, as Go's int64 addition does.
    assert_eq!(calc::external_usage(&[i64::MIN, -1]), MAX64);
    assert_eq!(calc::external_per_pod_usage(&[MAX64, 1]), MAX64);
    assert_eq!(calc::external_per_pod_usage(&[-1]), MAX64);
    assert_eq!(calc::external_per_pod_usage(&[2, 3]), 5);
}

fn pod(name: &str, phase: PodPhase) -> PodInfo {
    PodInfo {
        name: name.to_owned(),
        phase,
        ready: None,
        ready_transition_ms: 0,
        start_ms: None,
        deleting: false,
        containers: Vec::new(),
        init_containers: Vec::new(),
        pod_requests: None,
        overhead: BTreeMap::new(),
    }
}

fn value(v: i64, timestamp_ms: i64, window_ms: i64) -> PodSample {
    PodSample {
        value: v,
        timestamp_ms,
        window_ms,
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// `TestGroupPods`: (name, pods, metrics, resource, ready count, unready, missing, ignored).
#[test]
fn group_pods_rows() {
    let s = 1000;
    let m = 60 * s;
    let with = |name: &str, start: Option<i64>, ready: Option<(ConditionStatus, i64)>| {
        let mut p = pod(name, PodPhase::Succeeded);
        p.start_ms = start;
        if let Some((status, at)) = ready {
            p.ready = Some(status);
            p.ready_transition_ms = at;
        }
        p
    };
    let one = |name: &str, v: PodSample| PodSamples::from([(name.to_owned(), v)]);
    let bare = value(1, 0, 0);
    let mut deleted = pod("deleted", PodPhase::Pending);
    deleted.deleting = true;
    type Row<'a> = (
        &'a str,
        Vec<PodInfo>,
        PodSamples,
        &'a str,
        usize,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let rows: Vec<Row> = vec![
        (
            "void",
            vec![],
            PodSamples::new(),
            "cpu",
            0,
            vec![],
            vec![],
            vec![],
        ),
        (
            "count in a ready pod - memory",
            vec![pod("bentham", PodPhase::Succeeded)],
            one("bentham", value(1, NOW, m)),
            "memory",
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready a pod without ready condition - CPU",
            vec![with("lucretius", Some(NOW), None)],
            one("lucretius", bare),
            "cpu",
            0,
            vec!["lucretius"],
            vec![],
            vec![],
        ),
        (
            "count in a ready pod with fresh metrics during initialization period - CPU",
            vec![with("bentham", Some(NOW - m), Some((T, NOW - 30 * s)))],
            one("bentham", value(1, NOW, 30 * s)),
            "cpu",
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready a ready pod without fresh metrics during initialization period - CPU",
            vec![with("bentham", Some(NOW - m), Some((T, NOW - 30 * s)))],
            one("bentham", value(1, NOW, 60 * s)),
            "cpu",
            0,
            vec!["bentham"],
            vec![],
            vec![],
        ),
        (
            "unready an unready pod during initialization period - CPU",
            vec![with(
                "lucretius",
                Some(NOW - 10 * m),
                Some((F, NOW - 9 * m - 54 * s)),
            )],
            one("lucretius", bare),
            "cpu",
            0,
            vec!["lucretius"],
            vec![],
            vec![],
        ),
        (
            "count in a ready pod without fresh metrics after initialization period - CPU",
            vec![with("bentham", Some(NOW - 3 * m), Some((T, NOW - 3 * m)))],
            one("bentham", value(1, NOW - 2 * m, m)),
            "cpu",
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "count in an unready pod that was ready after initialization period - CPU",
            vec![with(
                "lucretius",
                Some(NOW - 10 * m),
                Some((F, NOW - 9 * m)),
            )],
            one("lucretius", bare),
            "cpu",
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "unready pod that has never been ready after initialization period - CPU",
            vec![with(
                "lucretius",
                Some(NOW - 10 * m),
                Some((F, NOW - 9 * m - 50 * s)),
            )],
            one("lucretius", bare),
            "cpu",
            1,
            vec![],
            vec![],
            vec![],
        ),
        (
            "a missing pod",
            vec![with("epicurus", Some(NOW - 3 * m), None)],
            PodSamples::new(),
            "cpu",
            0,
            vec![],
            vec!["epicurus"],
            vec![],
        ),
        (
            "several pods",
            vec![
                with("lucretius", Some(NOW), None),
                with("niccolo", Some(NOW - 3 * m), Some((T, NOW - 3 * m))),
                with("epicurus", Some(NOW - 3 * m), None),
            ],
            PodSamples::from([("lucretius".to_owned(), bare), ("niccolo".to_owned(), bare)]),
            "cpu",
            1,
            vec!["lucretius"],
            vec!["epicurus"],
            vec![],
        ),
        (
            "pending pods are unreadied",
            vec![pod("unscheduled", PodPhase::Pending)],
            PodSamples::new(),
            "cpu",
            0,
            vec!["unscheduled"],
            vec![],
            vec![],
        ),
        (
            "ignore pods with deletion timestamps",
            vec![deleted],
            one("deleted", bare),
            "cpu",
            0,
            vec![],
            vec![],
            vec!["deleted"],
        ),
        (
            "ignore pods in a failed state",
            vec![pod("failed", PodPhase::Failed)],
            one("failed", bare),
            "cpu",
            0,
            vec![],
            vec![],
            vec!["failed"],
        ),
    ];
    assert_eq!(rows.len(), 14);
    for (name, pods, metrics, resource, ready, unready, missing, ignored) in rows {
        let g = calc::group_pods(&pods, &metrics, Some(resource), &config(), NOW);
        assert_eq!(g.ready_count, ready, "{name}: ready");
        assert_eq!(g.unready, set(&unready), "{name}: unready");
        assert_eq!(g.missing, set(&missing), "{name}: missing");
        assert_eq!(g.ignored, set(&ignored), "{name}: ignored");
    }
}

fn requests(cpu: &[(&str, Option<i64>)]) -> Vec<ContainerRequests> {
    cpu.iter()
        .map(|(name, r)| ContainerRequests {
            name: (*name).to_owned(),
            requests: r
                .map(|r| BTreeMap::from([("cpu".to_owned(), r)]))
                .unwrap_or_default(),
        })
        .collect()
}

fn test_pod(
    containers: Vec<ContainerRequests>,
    init: Vec<InitContainerRequests>,
    pod_cpu: Option<i64>,
) -> PodInfo {
    let mut p = pod("test-pod", PodPhase::Running);
    p.containers = containers;
    p.init_containers = init;
    p.pod_requests = pod_cpu.map(|r| BTreeMap::from([("cpu".to_owned(), r)]));
    p
}

/// `TestCalculateRequests` (surge has `PodLevelResources` on, its default since 1.34: the rows with
/// the gate off set no pod-level requests, so they read the same either way) and
/// `TestCalculatePodRequestsFromContainers_NonExistentContainer`.
#[test]
fn calculate_requests_rows() {
    let two = requests(&[("container1", Some(100)), ("container2", Some(50))]);
    let one_missing = requests(&[("container1", None), ("container2", Some(50))]);
    let init = vec![
        InitContainerRequests {
            name: "init-container1".to_owned(),
            requests: BTreeMap::from([("cpu".to_owned(), 20)]),
            restartable: false,
        },
        InitContainerRequests {
            name: "restartable-container1".to_owned(),
            requests: BTreeMap::from([("cpu".to_owned(), 50)]),
            restartable: true,
        },
    ];
    let ok = |v: i64| Ok(BTreeMap::from([("test-pod".to_owned(), v)]));
    let rows: Vec<(
        &str,
        Vec<PodInfo>,
        Option<&str>,
        Result<BTreeMap<String, i64>, String>,
    )> = vec![
        ("void", vec![], None, Ok(BTreeMap::new())),
        (
            "Sum container requests if pod-level feature is disabled",
            vec![test_pod(two.clone(), vec![], None)],
            None,
            ok(150),
        ),
        (
            "Pod-level resources are enabled, but not set: fallback to sum container requests",
            vec![test_pod(two.clone(), vec![], None)],
            None,
            ok(150),
        ),
        (
            "Pod-level resources override container requests when feature enabled and pod resources specified",
            vec![test_pod(two.clone(), vec![], Some(800))],
            None,
            ok(800),
        ),
        (
            "Fail if at least one of the containers is missing requests and pod-level feature/requests are not set",
            vec![test_pod(one_missing.clone(), vec![], None)],
            None,
            Err("missing request for cpu in container container1 of Pod test-pod".to_owned()),
        ),
        (
            "Pod-level resources override missing container requests when feature enabled and pod resources specified",
            vec![test_pod(one_missing, vec![], Some(800))],
            None,
            ok(800),
        ),
        (
            "Container: if a container name is specified, calculate requests only for that container",
            vec![test_pod(two.clone(), vec![], None)],
            Some("container1"),
            ok(100),
        ),
        (
            "Container: if a container name is specified, calculate requests only for that container and ignore pod-level requests",
            vec![test_pod(two.clone(), vec![], Some(800))],
            Some("container1"),
            ok(100),
        ),
        (
            "pod with restartable init containers",
            vec![test_pod(requests(&[("container1", Some(100))]), init, None)],
            None,
            ok(150),
        ),
        (
            "TestCalculatePodRequestsFromContainers_NonExistentContainer",
            vec![test_pod(
                requests(&[("container1", Some(100))]),
                vec![],
                None,
            )],
            Some("non-existent-container"),
            Err("container non-existent-container not found in Pod test-pod".to_owned()),
        ),
    ];
    assert_eq!(rows.len(), 10);
    for (name, pods, container, expect) in rows {
        assert_eq!(
            calc::calculate_requests(&pods, container, "cpu"),
            expect,
            "{name}"
        );
    }
}

/// Beyond upstream's table: `resourcehelpers.PodRequests` when pod-level requests are set but not for
/// the metric's resource (the containers' aggregate, init containers as their maximum, plus overhead).
#[test]
fn pod_level_aggregate_for_other_resources() {
    let mut p = test_pod(
        requests(&[("app", Some(100))]),
        vec![
            InitContainerRequests {
                name: "sidecar".to_owned(),
                requests: BTreeMap::from([("cpu".to_owned(), 50)]),
                restartable: true,
            },
            InitContainerRequests {
                name: "migrate".to_owned(),
                requests: BTreeMap::from([("cpu".to_owned(), 500)]),
                restartable: false,
            },
        ],
        None,
    );
    p.pod_requests = Some(BTreeMap::from([("memory".to_owned(), 1_000)]));
    // Sidecar 50 started before `migrate` 500: the pod needs 550 while it runs, 150 after.
    assert_eq!(calc::pod_request(&p, None, "cpu"), Ok(550));
    p.overhead = BTreeMap::from([("cpu".to_owned(), 10)]);
    assert_eq!(calc::pod_request(&p, None, "cpu"), Ok(560));
    // The container path ignores plain init containers and overhead.
    assert_eq!(calc::pod_request(&p, Some("sidecar"), "cpu"), Ok(50));
    assert_eq!(
        calc::pod_request(&p, None, "ephemeral-storage"),
        Err("missing pod-level request for ephemeral-storage in Pod test-pod".to_owned())
    );
}

// ---- metrics/utilization_test.go ----

fn pod_samples(values: &[(&str, i64)]) -> PodSamples {
    values
        .iter()
        .map(|(n, v)| ((*n).to_owned(), value(*v, 0, 0)))
        .collect()
}

fn pod_requests(values: &[(&str, i64)]) -> BTreeMap<String, i64> {
    values.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
}

/// `TestGetResourceUtilizationRatio*` and `TestResourceUtilizationWithLargeMetrics`:
/// (name, metrics, requests, target, expected (ratio, utilization, raw) or error text).
#[test]
fn resource_utilization_ratio_rows() {
    let base = [("test-pod-0", 50), ("test-pod-1", 76)];
    let rows: Vec<(
        &str,
        PodSamples,
        BTreeMap<String, i64>,
        i32,
        Result<(f64, i32, i64), &str>,
    )> = vec![
        (
            "BaseCase",
            pod_samples(&base),
            pod_requests(&[("test-pod-0", 100), ("test-pod-1", 100)]),
            50,
            Ok((1.26, 63, 63)),
        ),
        (
            "IgnorePodsWithNoRequest",
            pod_samples(&[
                ("test-pod-0", 50),
                ("test-pod-1", 76),
                ("test-pod-no-request", 100),
            ]),
            pod_requests(&[("test-pod-0", 100), ("test-pod-1", 100)]),
            50,
            Ok((1.26, 63, 63)),
        ),
        (
            "ExtraRequest",
            pod_samples(&base),
            pod_requests(&[
                ("test-pod-0", 100),
                ("test-pod-1", 100),
                ("test-pod-extra-request", 500),
            ]),
            50,
            Ok((1.26, 63, 63)),
        ),
        (
            "NoRequests",
            pod_samples(&base),
            BTreeMap::new(),
            50,
            Err("no metrics returned matched known pods"),
        ),
        (
            "percentage multiplication",
            pod_samples(&[("pod", 1 << 60)]),
            pod_requests(&[("pod", 1 << 61)]),
            50,
            Ok((1.0, 50, 1 << 60)),
        ),
        (
            "metric and request totals",
            pod_samples(&[("first", MAX64), ("second", MAX64)]),
            pod_requests(&[("first", MAX64), ("second", MAX64)]),
            50,
            Ok((2.0, 100, MAX64)),
        ),
        (
            "request total alone",
            pod_samples(&[("first", 1 << 60), ("second", 1 << 60)]),
            pod_requests(&[("first", MAX64), ("second", MAX64)]),
            50,
            Ok((0.24, 12, 1 << 60)),
        ),
        (
            "unrepresentable utilization",
            pod_samples(&[("pod", MAX64)]),
            pod_requests(&[("pod", 1)]),
            50,
            Err("int32"),
        ),
    ];
    for (name, metrics, requests, target, expect) in rows {
        let got = calc::resource_utilization_ratio(&metrics, &requests, target);
        match expect {
            Ok(want) => assert_eq!(got, Ok(want), "{name}"),
            Err(text) => assert!(
                matches!(&got, Err(e) if e.contains(text)),
                "{name}: {got:?}"
            ),
        }
    }
}

/// `TestGetMetricUsageRatioBaseCase` and `TestMetricUsageAverageDoesNotOverflow`.
#[test]
fn metric_usage_ratio_rows() {
    let m = pod_samples(&[("test-pod-0", 5000), ("test-pod-1", 10000)]);
    assert_eq!(calc::metric_usage_ratio(&m, 10000), (0.75, 7500));
    for v in [MAX64, i64::MIN] {
        let m = pod_samples(&[("first", v), ("second", v)]);
        assert_eq!(calc::metric_usage_ratio(&m, v), (1.0, v), "{v}");
    }
}
