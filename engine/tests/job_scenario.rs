//! KEDA ScaledJobs through `surge simulate`'s ScaledJob scenarios: queue lengths and the cluster's Jobs
//! over time, the Jobs to create at each poll, with the default and accurate strategies.

// Test helpers may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use surge_engine::scenario::job::{self, JobStep};

fn scenario(strategy: &str, timeline: &str) -> String {
    format!(
        "policy:
  scaledJob: |
    apiVersion: keda.sh/v1alpha1
    kind: ScaledJob
    metadata: {{name: worker}}
    spec:
      jobTargetRef: {{template: {{}}}}
      pollingInterval: 30
      maxReplicaCount: 10
      scalingStrategy: {{strategy: {strategy}}}
      triggers:
      - type: rabbitmq
        name: queue
        metadata: {{queueLength: '1'}}
timeline:
{timeline}end: 90s
"
    )
}

fn replay(text: &str) -> Vec<JobStep> {
    assert!(job::is_job_scenario(text));
    let s = job::parse(text).unwrap_or_else(|e| panic!("scenario rejected:\n{e}"));
    job::simulate(&s)
}

fn created(steps: &[JobStep]) -> Vec<(f64, i64)> {
    steps.iter().map(|s| (s.time_s, s.jobs_to_create)).collect()
}

#[test]
fn default_strategy_subtracts_the_running_jobs() {
    let steps = replay(&scenario(
        "default",
        "- at: 0s
  metrics: {queue: 3}
- at: 30s
  metrics: {queue: 8}
  jobs: {running: 3}
- at: 60s
  metrics: {queue: 20}
  jobs: {running: 8}
- at: 90s
  metrics: {queue: 0}
  jobs: {running: 10}
",
    ));
    // 3 of 3; 8 - 3 running; min(20, max 10) - 8 running; an empty queue is inactive.
    assert_eq!(created(&steps), [(0.0, 3), (30.0, 5), (60.0, 2), (90.0, 0)]);
    assert!(!steps[3].decision.active);
    assert_eq!(steps[2].decision.max_scale, 10);
}

#[test]
fn accurate_strategy_counts_pending_jobs() {
    let steps = replay(&scenario(
        "accurate",
        "- at: 0s
  metrics: {queue: 6}
  jobs: {running: 2, pending: 2}
- at: 30s
  metrics: {0: 9}
  jobs: {running: 4, pending: 0}
",
    ));
    // 6 + 4 unfinished - 2 pending <= 10: 6 - 2 pending; then 9 + 4 > 10: 10 - 4 running. The counts hold
    // after their last entry.
    assert_eq!(created(&steps), [(0.0, 4), (30.0, 6), (60.0, 6), (90.0, 6)]);
    assert_eq!(steps[0].decision.pending_jobs, 2);
    assert_eq!(steps[0].decision.running_jobs, 4);
}

#[test]
fn a_trigger_without_a_value_fails_its_read() {
    let steps = replay(&scenario("default", "- at: 30s\n  metrics: {queue: 2}\n"));
    assert!(steps[0].decision.error);
    assert_eq!(created(&steps), [(0.0, 0), (30.0, 2), (60.0, 2), (90.0, 2)]);
}

#[test]
fn bad_input_is_located() {
    let text = scenario("default", "- at: 0s\n  metrics: {queeu: 2}\n");
    let e = job::parse(&text).err().unwrap();
    let p = &e.problems[0];
    assert_eq!(p.field, "timeline[0].metrics.queeu");
    assert!(p.message.contains("names no trigger"), "{p}");
    assert_eq!(p.line, 17, "{p}");
    let text = scenario("default", "").replace("maxReplicaCount: 10", "maxReplicaCount: -1");
    let e = job::parse(&text).err().unwrap();
    assert!(
        e.problems.iter().all(|p| p.field == "policy.scaledJob"),
        "{e}"
    );
}
