//! The embedded autoscaling engine's loop: decisions the moment a sample lands.
//!
//! ```text
//! ingest ─on_ingest(touched ids)─▶ index: series → policies reading it ─▶ mark dirty + wake
//!   evaluator task: for each dirty policy past its min_interval: queries over the cache (freshness rule)
//!     ─▶ engine (pure) ─▶ decision record (inputs, sample time, latency) ─▶ actuator ─▶ /api/v1/decisions
//! ```
//!
//! Polling is only the fallback: a policy with no new samples is re-evaluated every `fallback_interval`, so
//! stale inputs lead to the HPA's missing-metric rules or KEDA's fallback instead of silence.
//!
//! Architecture invariant: the ingest path only marks policies dirty (a map lookup and an atomic store per
//! touched series); it never evaluates, so a slow policy cannot slow ingest.

mod nodes;
pub mod policy;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use surge_engine::quantity::sample_milli;
use surge_engine::{
    ContainerRequests, Decision, HpaInput, HpaState, KedaInput, KedaState, MetricSample, PodInfo,
    PodMetric, TriggerValue,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use nodes::{HeadroomPolicy, HeadroomRecord, NodeDecisions, NodeRecord};
pub use policy::{
    EnginePolicy, InputSource, MetricInput, PolicyDef, RequestsInput, build_policies,
};
pub use surge_actuate::{
    Action, Actuator, NodeView, Observed, ScaleTarget, VirtualWorkloads, Workload,
};

use surge_promql::{self as promql, EvalOptions, Value};
use surge_store::{IngestObserver, SeriesCache, SeriesId, Touched};

/// Decisions kept per policy for `/api/v1/decisions` and `surge explain`.
const KEPT_DECISIONS: usize = 256;

/// What the value of one input was when the engine read it.
#[derive(Debug, Clone, Serialize)]
pub struct InputValue {
    pub metric: String,
    /// The query read; empty (and not serialized) for an input the engine reads itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The engine computed the value itself (a KEDA cron trigger, from the clock): nothing was read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_by_engine: bool,
    /// The summed value (External, Object, triggers), or the per-pod values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_pod: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One decision with everything needed to explain it and to measure how fast it came.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub policy: String,
    pub workload: String,
    pub mode: &'static str,
    /// When the engine decided (ms since the epoch).
    pub decided_at_ms: i64,
    /// `ingest` (a sample of an input landed) or `fallback` (periodic re-evaluation).
    pub trigger: &'static str,
    /// Timestamp of the newest sample that triggered this evaluation (the scrape's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_sample_ms: Option<i64>,
    /// When that sample was ingested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingested_at_ms: Option<i64>,
    pub replicas_before: i32,
    pub replicas_after: i32,
    pub inputs: Vec<InputValue>,
    /// What the actuator did: `dry-run: 3 → 5`, `patched /scale 3 → 5`, `not the leader`, …
    pub actuation: String,
    pub decision: Decision,
    /// The node decision made with it (capacity before Pending, consolidation), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeRecord>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

#[derive(Clone)]
struct EngineMetrics {
    scrape_to_decision: Histogram,
    ingest_to_decision: Histogram,
    evaluations: Family<TriggerLabel, Counter>,
    evaluation_seconds: Histogram,
    desired: Family<PolicyLabel, Gauge>,
    headroom: nodes::HeadroomMetrics,
}

impl EngineMetrics {
    fn new(registry: &mut Registry) -> Self {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 15.0, 60.0,
        ];
        let m = EngineMetrics {
            scrape_to_decision: Histogram::new(buckets),
            ingest_to_decision: Histogram::new(buckets),
            evaluations: Family::default(),
            evaluation_seconds: Histogram::new([
                1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1,
            ]),
            desired: Family::default(),
            headroom: nodes::HeadroomMetrics::default(),
        };
        registry.register(
            "surge_headroom_replicas",
            "Pause pods the headroom policy keeps (the last size applied)",
            m.headroom.replicas.clone(),
        );
        registry.register(
            "surge_headroom_cost_usd_per_hour",
            "USD per hour of the nodes the headroom's pause pods alone would launch",
            m.headroom.cost_per_hour.clone(),
        );
        registry.register(
            "surge_scrape_to_decision_seconds",
            "From the triggering sample's timestamp (its scrape) to the decision",
            m.scrape_to_decision.clone(),
        );
        registry.register(
            "surge_ingest_to_decision_seconds",
            "From the triggering sample's ingest to the decision",
            m.ingest_to_decision.clone(),
        );
        registry.register(
            "surge_engine_evaluations",
            "Policy evaluations by trigger",
            m.evaluations.clone(),
        );
        registry.register(
            "surge_engine_evaluation_seconds",
            "Time to evaluate one policy (queries + engine)",
            m.evaluation_seconds.clone(),
        );
        registry.register(
            "surge_engine_desired_replicas",
            "Replicas the latest decision asked for",
            m.desired.clone(),
        );
        m
    }
}

struct PolicySlot {
    def: PolicyDef,
    /// How much history its queries read ([`policy::history_needed_ms`]).
    history_ms: i64,
    dirty: AtomicBool,
    /// Newest triggering sample timestamp and its ingest time since the last evaluation (0 = none).
    trigger_sample_ms: AtomicI64,
    ingested_at_ms: AtomicI64,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    hpa: HpaState,
    keda: KedaState,
    last_eval_ms: i64,
    decisions: VecDeque<Arc<DecisionRecord>>,
}

/// The engine loop of one aggregator.
pub struct Autoscaler {
    cache: Arc<SeriesCache>,
    /// The autoscaling path's evaluation options (freshness rule on).
    opts: EvalOptions,
    slots: Vec<PolicySlot>,
    index: DashMap<SeriesId, Arc<[u32]>>,
    wake: Notify,
    actuator: Arc<dyn Actuator>,
    metrics: EngineMetrics,
    /// Until when (ms since the epoch) scale-downs are held after start; see [`policy::WarmUp`].
    warm_up: policy::WarmUp,
    /// Node decisions, when configured ([`Autoscaler::set_node_decisions`]).
    nodes: std::sync::OnceLock<nodes::NodeEngine>,
}

impl Autoscaler {
    /// Builds the loop for `policies` over `cache`, read with `opts` (the autoscaling path's options:
    /// `EvalOptions::autoscaling`); register it as an ingest observer and spawn [`Autoscaler::run`].
    pub fn new(
        cache: Arc<SeriesCache>,
        opts: EvalOptions,
        policies: Vec<PolicyDef>,
        actuator: Arc<dyn Actuator>,
        registry: &mut Registry,
    ) -> Arc<Self> {
        let slots = policies
            .into_iter()
            .map(|def| PolicySlot {
                history_ms: policy::history_needed_ms(&def, opts.freshness),
                def,
                dirty: AtomicBool::new(true),
                trigger_sample_ms: AtomicI64::new(0),
                ingested_at_ms: AtomicI64::new(0),
                state: Mutex::new(SlotState::default()),
            })
            .collect();
        Arc::new(Autoscaler {
            cache,
            opts,
            slots,
            index: DashMap::new(),
            wake: Notify::new(),
            actuator,
            metrics: EngineMetrics::new(registry),
            warm_up: policy::WarmUp::starting_now(now_ms()),
            nodes: std::sync::OnceLock::new(),
        })
    }

    /// Turns node decisions on: each scale-up also plans the nodes its pods need and hands the
    /// NodeClaims to the actuator, and a periodic pass consolidates. Set once, before [`Autoscaler::run`];
    /// a second call is ignored (returns false).
    pub fn set_node_decisions(&self, cfg: NodeDecisions) -> bool {
        self.nodes.set(nodes::NodeEngine::new(cfg)).is_ok()
    }

    /// Sets how long after start scale-downs are held while the cache warms up (default
    /// [`policy::DEFAULT_WARM_UP`]; zero turns the hold off).
    pub fn set_warm_up(&self, warm_up: std::time::Duration) {
        self.warm_up.set(warm_up);
    }

    pub fn policies(&self) -> impl Iterator<Item = &PolicyDef> + '_ {
        self.slots.iter().map(|s| &s.def)
    }

    /// The policies that read series `id` (computed once per series from its labels).
    fn policies_of(&self, id: SeriesId) -> Arc<[u32]> {
        if let Some(p) = self.index.get(&id) {
            return p.clone();
        }
        let found: Arc<[u32]> = match self.cache.get(id) {
            Some(series) => {
                let labels = series.labels();
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.def.inputs.iter().any(|i| {
                            i.selectors.iter().any(|sel| {
                                sel.iter()
                                    .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
                            })
                        })
                    })
                    .map(|(i, _)| i as u32)
                    .collect()
            }
            None => Arc::from([]),
        };
        // The index is a cache over live series: bound it by the cache's size.
        if self.index.len() > 2 * self.cache.len() + 1024 {
            self.index.clear();
        }
        self.index.insert(id, found.clone());
        found
    }

    /// The latest decisions, newest first, optionally for one policy or workload.
    pub fn decisions(&self, filter: Option<&str>, limit: usize) -> Vec<Arc<DecisionRecord>> {
        let mut all: Vec<Arc<DecisionRecord>> = self
            .slots
            .iter()
            .filter(|s| {
                filter.is_none_or(|f| {
                    s.def.name() == f
                        || s.def.target.workload.key() == f
                        || s.def.target.workload.name == f
                })
            })
            .flat_map(|s| s.state.lock().decisions.iter().cloned().collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|d| std::cmp::Reverse(d.decided_at_ms));
        all.truncate(limit);
        all
    }

    /// Evaluates dirty policies as they become due, and every policy at its fallback interval, until
    /// `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let now = now_ms();
            let mut next_due = now + 1000;
            for slot in &self.slots {
                let last = slot.state.lock().last_eval_ms;
                let dirty = slot.dirty.load(Ordering::Acquire);
                let due_dirty = last + slot.def.min_interval_ms;
                let due_fallback = last + slot.def.fallback_interval_ms;
                if dirty && now >= due_dirty {
                    self.evaluate(slot, "ingest", now);
                } else if now >= due_fallback {
                    self.evaluate(slot, "fallback", now);
                } else {
                    next_due = next_due.min(if dirty { due_dirty } else { due_fallback });
                }
            }
            let wait = (next_due - now_ms()).clamp(0, 1000) as u64;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            }
        }
    }

    /// Evaluates every policy once at `now` (benchmarks and tools; the loop in [`Autoscaler::run`] is what
    /// serves traffic).
    pub fn evaluate_all(&self, now: i64) {
        for slot in &self.slots {
            self.evaluate(slot, "fallback", now);
        }
    }

    /// Evaluates one policy now: read its inputs → observe the workload → decide → actuate → record.
    fn evaluate(&self, slot: &PolicySlot, trigger: &'static str, now: i64) {
        let started = std::time::Instant::now();
        let cause = slot.take_cause(trigger);
        let def = &slot.def;
        let (shown, samples) = self.read_inputs(def, now);
        let mut observed = self.observe(def, &samples);
        self.fill_requests(def, &mut observed.pods, now);
        let existing_pods =
            u32::try_from(observed.pods.iter().filter(|p| !p.deleting).count()).unwrap_or(u32::MAX);
        let mut st = slot.state.lock();
        let gap = policy::history_gap(self.cache.history_since(), slot.history_ms, now);
        let decision = match &gap {
            None => {
                let mut d = decide(def, &mut st, observed, samples, now);
                self.warm_up.hold_scale_down(&mut d, now);
                d
            }
            // Not covered yet: the engine decides on a copy of its memory, so what a partial window
            // proposes is shown but neither acted on nor remembered (stabilization, cooldowns).
            Some(why) => {
                let mut scratch = SlotState {
                    hpa: st.hpa.clone(),
                    keda: st.keda.clone(),
                    ..SlotState::default()
                };
                let mut d = decide(def, &mut scratch, observed, samples, now);
                policy::hold_uncovered(&mut d, why);
                d
            }
        };
        // Nodes first: the NodeClaims are queued before the /scale patch that creates the pods. A held
        // decision adds no replicas, so it asks for no nodes.
        let nodes = self.nodes.get().and_then(|n| {
            n.decide(
                self.actuator.as_ref(),
                &def.target,
                &decision,
                existing_pods,
                now,
                &self.metrics.headroom,
            )
        });
        let actuation = self.actuator.apply(Action::Scale {
            target: &def.target,
            decision: &decision,
        });
        let mut record = self.record(def, cause, shown, actuation, decision, started);
        if let Some(r) = Arc::get_mut(&mut record) {
            r.nodes = nodes;
        }
        st.last_eval_ms = now;
        if st.decisions.len() == KEPT_DECISIONS {
            st.decisions.pop_front();
        }
        st.decisions.push_back(record);
    }

    /// Every input's value now, as shown in the decision and as the engine takes it.
    fn read_inputs(&self, def: &PolicyDef, now: i64) -> (Vec<InputValue>, Vec<InputSample>) {
        def.inputs
            .iter()
            .map(|input| read_input(&self.cache, input, now, &self.opts))
            .unzip()
    }

    /// Gives each observed pod the requests kube-state-metrics reports for it, for every resource a
    /// Utilization target reads and the pod carries no request of (the dry-run actuator's pods carry
    /// none; a pod spec an actuator read wins). A pod the series do not name keeps what it had, and the
    /// HPA then reports it as missing the request.
    fn fill_requests(&self, def: &PolicyDef, pods: &mut [PodInfo], now: i64) {
        for r in &def.requests {
            let Ok(Value::Vector(series)) =
                promql::eval_instant(&self.cache, &r.expr, now, &self.opts)
            else {
                continue;
            };
            // pod → container → milli-units.
            let mut by_pod: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
            for s in &series {
                let (Some(pod), Ok(milli)) = (s.metric.get("pod"), sample_milli(s.value)) else {
                    continue;
                };
                let container = s.metric.get("container").unwrap_or_default();
                *by_pod.entry(pod).or_default().entry(container).or_insert(0) += milli;
            }
            for pod in pods.iter_mut() {
                let has_request = pod
                    .containers
                    .iter()
                    .any(|c| c.requests.get(&r.resource).is_some_and(|v| *v > 0));
                let Some(containers) = by_pod.get(pod.name.as_str()) else {
                    continue;
                };
                if has_request {
                    continue;
                }
                pod.containers
                    .retain(|c| c.requests.values().any(|v| *v > 0));
                for (name, milli) in containers {
                    match pod.containers.iter_mut().find(|c| c.name == *name) {
                        Some(c) => {
                            c.requests.insert(r.resource.clone(), *milli);
                        }
                        None => pod.containers.push(ContainerRequests {
                            name: (*name).to_owned(),
                            requests: BTreeMap::from([(r.resource.clone(), *milli)]),
                        }),
                    }
                }
            }
        }
    }

    /// The workload as the actuator sees it; the policy's initial count when it knows nothing.
    fn observe(&self, def: &PolicyDef, samples: &[InputSample]) -> Observed {
        let metric_pods = per_pod_names(samples);
        self.actuator
            .observe(&def.target, &metric_pods)
            .unwrap_or(Observed {
                spec_replicas: def.target.initial_replicas,
                status_replicas: def.target.initial_replicas,
                pods: Vec::new(),
            })
    }

    /// Counts the evaluation and builds its record; an ingest-triggered one also observes the latencies.
    fn record(
        &self,
        def: &PolicyDef,
        cause: Cause,
        inputs: Vec<InputValue>,
        actuation: String,
        decision: Decision,
        started: std::time::Instant,
    ) -> Arc<DecisionRecord> {
        let decided_at = now_ms();
        let m = &self.metrics;
        m.evaluations
            .get_or_create(&TriggerLabel {
                trigger: cause.trigger,
            })
            .inc();
        m.evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        m.desired
            .get_or_create(&PolicyLabel {
                policy: def.name().to_owned(),
            })
            .set(i64::from(decision.desired_replicas));
        if let Some(sample_ms) = cause.sample_ms {
            m.scrape_to_decision
                .observe(((decided_at - sample_ms) as f64 / 1000.0).max(0.0));
        }
        if let Some(ingested_ms) = cause.ingested_ms {
            m.ingest_to_decision
                .observe(((decided_at - ingested_ms) as f64 / 1000.0).max(0.0));
        }
        if decision.scale {
            tracing::info!(
                policy = %def.name(),
                from = decision.current_replicas,
                to = decision.desired_replicas,
                reason = %decision.reason,
                "scaling decision"
            );
        }
        Arc::new(DecisionRecord {
            policy: def.name().to_owned(),
            workload: def.target.workload.key(),
            mode: def.target.mode_name(),
            decided_at_ms: decided_at,
            trigger: cause.trigger,
            trigger_sample_ms: cause.sample_ms,
            ingested_at_ms: cause.ingested_ms,
            replicas_before: decision.current_replicas,
            replicas_after: if decision.scale {
                decision.desired_replicas
            } else {
                decision.current_replicas
            },
            inputs,
            actuation,
            decision,
            nodes: None,
        })
    }
}

/// Why a policy is evaluated: the trigger, and for an ingest trigger the newest sample among the series
/// the policy reads that arrived since its last evaluation, and when the first of them was ingested.
struct Cause {
    trigger: &'static str,
    sample_ms: Option<i64>,
    ingested_ms: Option<i64>,
}

impl PolicySlot {
    /// Takes what marked the policy dirty since its last evaluation; a clean slot is a fallback.
    fn take_cause(&self, trigger: &'static str) -> Cause {
        let was_dirty = self.dirty.swap(false, Ordering::AcqRel);
        let sample_ms = self.trigger_sample_ms.swap(0, Ordering::AcqRel);
        let ingested_ms = self.ingested_at_ms.swap(0, Ordering::AcqRel);
        if was_dirty && sample_ms > 0 && trigger == "ingest" {
            Cause {
                trigger,
                sample_ms: Some(sample_ms),
                ingested_ms: (ingested_ms > 0).then_some(ingested_ms),
            }
        } else {
            Cause {
                trigger: "fallback",
                sample_ms: None,
                ingested_ms: None,
            }
        }
    }
}

/// The engine's decision for `def` from its inputs and the observed workload (schedules raise the floor).
fn decide(
    def: &PolicyDef,
    st: &mut SlotState,
    observed: Observed,
    samples: Vec<InputSample>,
    now: i64,
) -> Decision {
    let Observed {
        spec_replicas: current_replicas,
        status_replicas,
        pods,
    } = observed;
    match &def.engine {
        EnginePolicy::Hpa(spec) => {
            let input = HpaInput {
                current_replicas,
                status_replicas,
                pods,
                metrics: samples.into_iter().map(InputSample::into_hpa).collect(),
            };
            let min = surge_engine::Schedule::effective_min(&def.schedules, spec.min_replicas, now);
            surge_engine::evaluate_hpa_with_min(spec, &mut st.hpa, &input, now, min)
        }
        EnginePolicy::ScaledObject(spec) => {
            let input = KedaInput {
                current_replicas,
                status_replicas,
                pods,
                triggers: samples.into_iter().map(InputSample::into_trigger).collect(),
            };
            if def.schedules.is_empty() {
                surge_engine::evaluate_scaled_object(spec, &mut st.keda, &input, now)
            } else {
                let mut spec = (**spec).clone();
                spec.min_replica_count = surge_engine::Schedule::effective_min(
                    &def.schedules,
                    spec.min_replica_count,
                    now,
                );
                surge_engine::evaluate_scaled_object(&spec, &mut st.keda, &input, now)
            }
        }
    }
}

impl IngestObserver for Autoscaler {
    fn on_ingest(&self, touched: &[Touched]) {
        let now = now_ms();
        let mut woke = false;
        for t in touched {
            for &p in self.policies_of(t.id).iter() {
                let Some(slot) = self.slots.get(p as usize) else {
                    continue;
                };
                // The newest sample among the series this policy reads, not of the whole request.
                slot.trigger_sample_ms
                    .fetch_max(t.newest_ms, Ordering::AcqRel);
                let _ = slot.ingested_at_ms.compare_exchange(
                    0,
                    now,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                if !slot.dirty.swap(true, Ordering::AcqRel) {
                    woke = true;
                }
            }
        }
        if woke {
            self.wake.notify_one();
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch: the loop's clock (the engine itself reads none).
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// One input's value as read from the cache.
enum InputSample {
    PerPod(BTreeMap<String, f64>, i64),
    Total(f64),
    Object(f64),
    Failed(String),
    /// Nothing read: the engine computes the value (a cron trigger).
    NotRead,
}

impl InputSample {
    fn into_hpa(self) -> MetricSample {
        match self {
            // The HPA reads quantities (`MilliValue()`): a NaN or an infinity from a query has no
            // quantity and fails the metric, naming the pod; a huge value saturates as MilliValue does.
            InputSample::PerPod(m, ts) => match pod_metrics(m, ts) {
                Ok(samples) => MetricSample::PerPod(samples),
                Err(e) => MetricSample::Failed(e),
            },
            InputSample::Total(v) => MetricSample::external_f64(v),
            InputSample::Object(v) => match sample_milli(v) {
                Ok(milli) => MetricSample::Object(milli),
                Err(e) => MetricSample::Failed(format!("object metric value {e}")),
            },
            InputSample::Failed(e) => MetricSample::Failed(e),
            InputSample::NotRead => MetricSample::Failed("no query for this metric".to_owned()),
        }
    }

    fn into_trigger(self) -> TriggerValue {
        match self {
            // Only cpu/memory triggers read per-pod values: a Resource metric of the generated HPA.
            InputSample::PerPod(m, ts) => match pod_metrics(m, ts) {
                Ok(samples) => TriggerValue::PerPod(samples),
                Err(e) => TriggerValue::Failed(e),
            },
            InputSample::Total(v) | InputSample::Object(v) => TriggerValue::Value(v),
            InputSample::Failed(e) => TriggerValue::Failed(e),
            InputSample::NotRead => TriggerValue::NotRead,
        }
    }
}

/// Per-pod values as the HPA reads them: quantities, so a NaN or an infinity fails the metric naming the pod.
fn pod_metrics(m: BTreeMap<String, f64>, ts: i64) -> Result<BTreeMap<String, PodMetric>, String> {
    m.into_iter()
        .map(|(pod, v)| {
            let milli = sample_milli(v).map_err(|e| format!("value for pod {pod}: {e}"))?;
            let metric = PodMetric {
                milli,
                timestamp_ms: ts,
                window_ms: 30_000,
            };
            Ok((pod, metric))
        })
        .collect()
}

/// The pods the first per-pod input names (borrowed: most evaluations never turn them into pods).
fn per_pod_names(samples: &[InputSample]) -> Vec<&str> {
    samples
        .iter()
        .find_map(|s| match s {
            InputSample::PerPod(m, _) if !m.is_empty() => {
                Some(m.keys().map(String::as_str).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn read_input(
    cache: &SeriesCache,
    input: &MetricInput,
    now: i64,
    opts: &EvalOptions,
) -> (InputValue, InputSample) {
    let mut shown = InputValue {
        metric: input.key.clone(),
        query: input.query().unwrap_or_default().to_owned(),
        read_by_engine: false,
        value: None,
        per_pod: BTreeMap::new(),
        error: None,
    };
    let expr = match &input.source {
        InputSource::Query { expr, .. } => expr,
        InputSource::Engine => {
            shown.read_by_engine = true;
            return (shown, InputSample::NotRead);
        }
    };
    let sample = match promql::eval_instant(cache, expr, now, opts) {
        Err(e) => InputSample::Failed(e.to_string()),
        Ok(Value::Scalar(v)) if input.per_pod => InputSample::Failed(format!(
            "per-pod metric needs one series per pod, got the scalar {v}"
        )),
        Ok(Value::Scalar(v)) => InputSample::Total(v),
        Ok(Value::Vector(v)) if v.is_empty() => InputSample::Failed(
            "no fresh samples (stale or absent): treated as a missing metric".into(),
        ),
        Ok(Value::Vector(v)) if input.per_pod => {
            let mut m = BTreeMap::new();
            for s in &v {
                if let Some(pod) = s.metric.get("pod") {
                    *m.entry(pod.to_owned()).or_insert(0.0) += s.value;
                }
            }
            if m.is_empty() {
                InputSample::Failed("per-pod metric: no series has a `pod` label".into())
            } else {
                InputSample::PerPod(m, now)
            }
        }
        Ok(Value::Vector(v)) => {
            let total: f64 = v.iter().map(|s| s.value).sum();
            if input.object {
                InputSample::Object(total)
            } else {
                InputSample::Total(total)
            }
        }
        Ok(other) => InputSample::Failed(format!(
            "query must return a vector or scalar, got {other:?}"
        )),
    };
    match &sample {
        InputSample::PerPod(m, _) => shown.per_pod = m.clone(),
        InputSample::Total(v) | InputSample::Object(v) => shown.value = Some(*v),
        InputSample::Failed(e) => shown.error = Some(e.clone()),
        InputSample::NotRead => {}
    }
    (shown, sample)
}

#[derive(Debug, serde::Deserialize)]
struct DecisionsQuery {
    /// A policy name, a workload `namespace/name`, or a workload name.
    policy: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/decisions?policy=<policy or ns/workload>&limit=N`: the latest decisions, newest first.
pub fn decisions_router(autoscaler: Arc<Autoscaler>) -> axum::Router {
    use axum::extract::{Query, State};
    axum::Router::new()
        .route(
            "/api/v1/decisions",
            axum::routing::get(
                |State(a): State<Arc<Autoscaler>>, Query(q): Query<DecisionsQuery>| async move {
                    let limit = q.limit.unwrap_or(20).min(1000);
                    let decisions = a.decisions(q.policy.as_deref(), limit);
                    axum::Json(serde_json::json!({"status": "success", "data": decisions}))
                },
            ),
        )
        .with_state(autoscaler)
}
