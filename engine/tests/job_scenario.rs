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
    // 6 + 4 unfinished - 2 pending <= 10: 6 - 2 pending; then 9 + 4 > 10: 10 - 4 running. The 6 created
    // at 30s run from 60s on (start_after 0s): 9 + 10 > 10, 10 - 10 running, none more.
    assert_eq!(created(&steps), [(0.0, 4), (30.0, 6), (60.0, 0), (90.0, 0)]);
    assert_eq!(steps[2].jobs.running, 10);
    assert_eq!(steps[0].decision.pending_jobs, 2);
    assert_eq!(steps[0].decision.running_jobs, 4);
}

#[test]
fn a_trigger_without_a_value_fails_its_read() {
    let steps = replay(&scenario("default", "- at: 30s\n  metrics: {queue: 2}\n"));
    assert!(steps[0].decision.error);
    // The 2 created at 30s are running at 60s: 2 - 2.
    assert_eq!(created(&steps), [(0.0, 0), (30.0, 2), (60.0, 0), (90.0, 0)]);
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

#[test]
fn created_jobs_are_carried_forward_until_they_finish() {
    let text = scenario("default", "- at: 0s\n  metrics: {queue: 5}\n").replace(
        "end: 90s\n",
        "end: 150s\nnew_jobs: {start_after: 40s, complete_after: 100s}\n",
    );
    let steps = replay(&text);
    let counts: Vec<(u32, u32)> = steps
        .iter()
        .map(|s| (s.jobs.running, s.jobs.pending))
        .collect();
    // 5 created at 0s: pending at 30s, running at 60s and 90s, finished at 120s, when 5 more are created
    // (pending at 150s).
    assert_eq!(counts, [(0, 0), (0, 5), (5, 0), (5, 0), (0, 0), (0, 5)]);
    assert_eq!(
        created(&steps),
        [
            (0.0, 5),
            (30.0, 0),
            (60.0, 0),
            (90.0, 0),
            (120.0, 5),
            (150.0, 0)
        ]
    );
    // An observed count replaces everything created before it.
    let text = scenario(
        "default",
        "- at: 0s\n  metrics: {queue: 5}\n- at: 60s\n  jobs: {running: 1}\n",
    );
    let steps = replay(&text);
    assert_eq!(created(&steps), [(0.0, 5), (30.0, 0), (60.0, 4), (90.0, 0)]);
    // Bad timings are located.
    let bad = scenario("default", "").replace(
        "end: 90s\n",
        "end: 90s\nnew_jobs: {start_after: 1m, complete_after: 30s}\n",
    );
    let e = job::parse(&bad).err().unwrap();
    assert_eq!(e.problems[0].field, "new_jobs.complete_after", "{e}");
}
