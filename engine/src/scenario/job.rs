//! ScaledJob scenarios for `surge simulate`: a KEDA `ScaledJob` manifest and a timeline of its triggers'
//! values (queue lengths) and the Jobs the cluster runs, replayed one poll per `pollingInterval`; each
//! step says how many Jobs KEDA would create ([`evaluate_scaled_job`]).
//!
//! ```yaml
//! policy:
//!   scaledJob: |
//!     apiVersion: keda.sh/v1alpha1
//!     kind: ScaledJob
//!     ...
//! timeline:
//! - at: 0s
//!   metrics: {queue: 12}        # by trigger name or index
//!   jobs: {running: 2, pending: 1}
//! end: 2m
//! ```
//!
//! The Jobs a poll creates are carried forward: each is Pending until `new_jobs.start_after` has passed
//! since its poll (default `0s`: Running by the next poll), then Running until `new_jobs.complete_after`
//! (default: never; it then finishes and no longer counts, as KEDA counts only unfinished Jobs). A
//! timeline `jobs: {running, pending}` entry is the cluster observed at that time: it replaces every
//! count, the created Jobs included, and Jobs created after it are added to it. A running Job has one
//! Running pod with every condition True; a pending one has one Pending pod with none. Before its first
//! value a trigger's read fails.
//!
//! ```yaml
//! new_jobs: {start_after: 20s, complete_after: 2m}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    MAX_EVALUATIONS, Offset, Problem, ScenarioError, Timestamp, key, locate, serde_problem,
};
use crate::hpa::PodPhase;
use crate::keda::job::{
    JobDecision, JobInfo, JobPod, JobTriggerValue, ScaledJobSpec, evaluate_scaled_job,
};
use crate::keda::manifest::parse_scaled_job;
use crate::manifest::ManifestError;

/// A ScaledJob scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobScenarioFile {
    /// `scaledJob: |`, the manifest.
    pub policy: JobPolicyConfig,
    /// The wall-clock time of `0s` (default the Unix epoch).
    pub start: Option<Timestamp>,
    /// Trigger values and Job counts, applied at their time, in time order.
    #[serde(default)]
    pub timeline: Vec<JobTimelineEntry>,
    /// When the replay stops (inclusive).
    pub end: Offset,
    /// How the Jobs a poll creates behave.
    #[serde(default)]
    pub new_jobs: NewJobsConfig,
}

/// How the Jobs KEDA creates during the replay start and finish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJobsConfig {
    /// How long a created Job stays Pending (default `0s`).
    pub start_after: Option<Offset>,
    /// How long after its creation a Job finishes (default: it runs until a timeline `jobs` entry says
    /// otherwise).
    pub complete_after: Option<Offset>,
}

/// The policy of a ScaledJob scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPolicyConfig {
    /// A KEDA `ScaledJob` manifest as a YAML block string.
    #[serde(rename = "scaledJob", alias = "scaled_job")]
    pub scaled_job: String,
}

/// Changes at one time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobTimelineEntry {
    /// When the changes apply.
    pub at: Offset,
    /// Trigger values (queue lengths) by trigger name or index.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The Jobs the cluster runs from now on.
    pub jobs: Option<JobCounts>,
}

/// Unfinished Jobs of the ScaledJob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobCounts {
    /// Jobs whose pod runs.
    #[serde(default)]
    pub running: u32,
    /// Jobs whose pod has not started.
    #[serde(default)]
    pub pending: u32,
}

/// A validated ScaledJob scenario.
#[derive(Debug, Clone)]
pub struct JobScenario {
    /// The manifest, parsed.
    pub spec: ScaledJobSpec,
    /// The wall-clock time of `0s`, ms.
    pub start_ms: i64,
    /// The end, scenario ms.
    pub end_ms: i64,
    /// The timeline with keys resolved to trigger indices: (at, values by index, jobs).
    timeline: Vec<(i64, BTreeMap<usize, f64>, Option<JobCounts>)>,
    /// How created Jobs behave.
    pub new_jobs: NewJobsConfig,
}

/// One poll of a ScaledJob scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStep {
    /// Scenario time, seconds.
    pub time_s: f64,
    /// The Jobs the cluster ran at the poll: the last observed counts plus the Jobs created since that
    /// are still unfinished.
    pub jobs: JobCounts,
    /// Jobs KEDA creates at this poll.
    pub jobs_to_create: i64,
    /// The engine's full decision.
    pub decision: JobDecision,
}

/// Whether `text` is a ScaledJob scenario (its policy is `scaledJob`), so a caller can pick the parser.
pub fn is_job_scenario(text: &str) -> bool {
    let doc: Option<serde_yaml_ng::Value> = serde_yaml_ng::from_str(text).ok();
    doc.as_ref()
        .and_then(|d| d.get("policy"))
        .is_some_and(|p| p.get("scaledJob").is_some() || p.get("scaled_job").is_some())
}

/// Parses and validates a ScaledJob scenario; every problem is located in the file.
pub fn parse(text: &str) -> Result<JobScenario, ScenarioError> {
    let file: JobScenarioFile = serde_yaml_ng::from_str(text).map_err(|e| ScenarioError {
        problems: vec![serde_problem(&e)],
    })?;
    let mut problems = Vec::new();
    let problem = |path: &[super::Seg], field: String, message: String| {
        let pos = locate(text, path);
        Problem {
            line: pos.as_ref().map_or(0, |p| p.line),
            column: pos.as_ref().map_or(0, |p| p.column),
            field,
            message,
        }
    };
    let manifest_key = if text.contains("scaled_job:") {
        "scaled_job"
    } else {
        "scaledJob"
    };
    let manifest_path = [key("policy"), key(manifest_key)];
    let spec = match parse_scaled_job(&file.policy.scaled_job) {
        Ok(spec) => Some(spec),
        Err(ManifestError::Invalid(errors)) => {
            for e in errors {
                problems.push(problem(&manifest_path, format!("policy.{manifest_key}"), e));
            }
            None
        }
        Err(e) => {
            problems.push(problem(
                &manifest_path,
                format!("policy.{manifest_key}"),
                e.to_string(),
            ));
            None
        }
    };
    let end_ms = file.end.0;
    if end_ms < 0 {
        problems.push(problem(
            &[key("end")],
            "end".to_owned(),
            format!("{} is before the start", super::format_offset(end_ms)),
        ));
    }
    let mut timeline = Vec::new();
    let mut last_at = i64::MIN;
    for (i, entry) in file.timeline.iter().enumerate() {
        let entry_path = [key("timeline"), super::Seg::Index(i)];
        if entry.at.0 < last_at {
            problems.push(problem(
                &[&entry_path[..], &[key("at")]].concat(),
                format!("timeline[{i}].at"),
                "entries must be in time order".to_owned(),
            ));
        }
        last_at = entry.at.0;
        let mut values = BTreeMap::new();
        for (k, v) in &entry.metrics {
            let index = spec.as_ref().and_then(|s| {
                s.triggers
                    .iter()
                    .position(|t| &t.name == k)
                    .or_else(|| k.parse::<usize>().ok().filter(|n| *n < s.triggers.len()))
            });
            match index {
                Some(n) => {
                    values.insert(n, *v);
                }
                None if spec.is_some() => problems.push(problem(
                    &[&entry_path[..], &[key("metrics"), key(k)]].concat(),
                    format!("timeline[{i}].metrics.{k}"),
                    "names no trigger of the ScaledJob (give a trigger's name or index)".to_owned(),
                )),
                None => {}
            }
        }
        timeline.push((entry.at.0, values, entry.jobs));
    }
    let Some(spec) = spec else {
        return Err(ScenarioError { problems });
    };
    let poll_ms = i64::from(spec.polling_interval_seconds.max(1)) * 1000;
    if end_ms / poll_ms > MAX_EVALUATIONS {
        problems.push(problem(
            &[key("end")],
            "end".to_owned(),
            format!(
                "{} polls every {}s is more than {MAX_EVALUATIONS}",
                end_ms / poll_ms,
                spec.polling_interval_seconds
            ),
        ));
    }
    for (name, offset) in [
        ("start_after", file.new_jobs.start_after),
        ("complete_after", file.new_jobs.complete_after),
    ] {
        if offset.is_some_and(|o| o.0 < 0) {
            problems.push(problem(
                &[key("new_jobs"), key(name)],
                format!("new_jobs.{name}"),
                "must not be negative".to_owned(),
            ));
        }
    }
    if let (Some(start), Some(done)) = (file.new_jobs.start_after, file.new_jobs.complete_after)
        && done.0 < start.0
    {
        problems.push(problem(
            &[key("new_jobs"), key("complete_after")],
            "new_jobs.complete_after".to_owned(),
            "must not come before start_after".to_owned(),
        ));
    }
    if !problems.is_empty() {
        return Err(ScenarioError { problems });
    }
    Ok(JobScenario {
        new_jobs: file.new_jobs,
        spec,
        start_ms: file.start.map_or(0, |t| t.0),
        end_ms,
        timeline,
    })
}

/// Replays a ScaledJob scenario: one [`JobStep`] per poll (`0s`, then every `pollingInterval`).
pub fn simulate(s: &JobScenario) -> Vec<JobStep> {
    let poll_ms = i64::from(s.spec.polling_interval_seconds.max(1)) * 1000;
    let mut values: BTreeMap<usize, f64> = BTreeMap::new();
    let mut observed = JobCounts::default();
    // The Jobs created since the last observed counts: (poll, scenario ms; how many).
    let mut created: Vec<(i64, u32)> = Vec::new();
    let mut next = 0;
    let mut steps = Vec::new();
    let mut t = 0;
    while t <= s.end_ms {
        while let Some((_, v, jobs)) = s.timeline.get(next).filter(|(at, _, _)| *at <= t) {
            values.extend(v.iter().map(|(k, v)| (*k, *v)));
            if let Some(j) = jobs {
                observed = *j;
                created.clear();
            }
            next += 1;
        }
        let reads: Vec<JobTriggerValue> = (0..s.spec.triggers.len())
            .map(|i| match values.get(&i) {
                Some(v) => JobTriggerValue::Value(*v),
                None => JobTriggerValue::Failed("no value in the scenario yet".to_owned()),
            })
            .collect();
        let counts = with_created(observed, &created, t, s.new_jobs);
        let decision =
            evaluate_scaled_job(&s.spec, &reads, &jobs(counts), s.start_ms.saturating_add(t));
        let to_create = u32::try_from(decision.jobs_to_create.max(0)).unwrap_or(u32::MAX);
        if to_create > 0 {
            created.push((t, to_create));
        }
        steps.push(JobStep {
            time_s: t as f64 / 1000.0,
            jobs: counts,
            jobs_to_create: decision.jobs_to_create,
            decision,
        });
        t += poll_ms;
    }
    steps
}

/// The observed counts plus the created Jobs unfinished at `t`, each Pending or Running by its age.
fn with_created(
    observed: JobCounts,
    created: &[(i64, u32)],
    t: i64,
    new_jobs: NewJobsConfig,
) -> JobCounts {
    let start = new_jobs.start_after.map_or(0, |o| o.0);
    let mut counts = observed;
    for (age, n) in created.iter().map(|(at, n)| (t - at, *n)) {
        if new_jobs.complete_after.is_some_and(|done| age >= done.0) {
            continue;
        }
        let slot = if age >= start {
            &mut counts.running
        } else {
            &mut counts.pending
        };
        *slot = slot.saturating_add(n);
    }
    counts
}

/// The Jobs the counts stand for: running ones with a Running pod (every condition True), pending ones
/// with a Pending pod.
fn jobs(counts: JobCounts) -> Vec<JobInfo> {
    let job = |name: String, phase: PodPhase, conditions: &[&str]| JobInfo {
        name,
        outcome: None,
        completion_ms: None,
        pods: vec![JobPod {
            phase,
            true_conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
        }],
    };
    let running = (0..counts.running).map(|i| {
        job(
            format!("running-{i}"),
            PodPhase::Running,
            &["PodScheduled", "Initialized", "ContainersReady", "Ready"],
        )
    });
    let pending = (0..counts.pending).map(|i| job(format!("pending-{i}"), PodPhase::Pending, &[]));
    running.chain(pending).collect()
}
