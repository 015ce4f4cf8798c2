//! Keeps one scrape loop running per discovered target: diffs the wanted set against the running set,
//! starts loops for new targets and stops loops of removed ones (which then write staleness markers).
//! Stopping the agent stops every loop without markers: the targets did not go away.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::run::{ScrapeContext, Stop, TargetHealth, run_target};
use super::target::ScrapeTarget;

struct Running {
    stop: Stop,
    handle: JoinHandle<()>,
    health: Arc<Mutex<TargetHealth>>,
}

/// The set of running scrape loops.
pub struct TargetManager {
    ctx: Arc<ScrapeContext>,
    running: HashMap<u64, Running>,
}

impl TargetManager {
    pub fn new(ctx: Arc<ScrapeContext>) -> Self {
        TargetManager {
            ctx,
            running: HashMap::new(),
        }
    }

    /// Makes the running loops match `wanted`. Returns (started, stopped).
    pub fn sync(&mut self, wanted: Vec<ScrapeTarget>) -> (usize, usize) {
        let mut keep: HashMap<u64, ScrapeTarget> = wanted.into_iter().map(|t| (t.key, t)).collect();
        let before = self.running.len();
        self.running.retain(|key, r| {
            if keep.contains_key(key) {
                true
            } else {
                r.stop.target_gone();
                false
            }
        });
        let stopped = before - self.running.len();
        keep.retain(|k, _| !self.running.contains_key(k));
        let started = keep.len();
        for (key, target) in keep {
            let health = Arc::new(Mutex::new(TargetHealth {
                job: target.job.name.to_string(),
                url: target.url.clone(),
                labels: target
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
                health: "unknown",
                ..Default::default()
            }));
            let stop = Stop::new();
            let handle = tokio::spawn(run_target(
                target,
                self.ctx.clone(),
                health.clone(),
                stop.clone(),
            ));
            self.running.insert(
                key,
                Running {
                    stop,
                    handle,
                    health,
                },
            );
        }
        self.update_gauges();
        (started, stopped)
    }

    /// A snapshot of every target's health.
    pub fn health(&self) -> Vec<TargetHealth> {
        let mut v: Vec<_> = self
            .running
            .values()
            .map(|r| r.health.lock().clone())
            .collect();
        v.sort_by(|a, b| (&a.job, &a.url).cmp(&(&b.job, &b.url)));
        v
    }

    pub fn update_gauges(&self) {
        let m = &self.ctx.metrics;
        m.targets.clear();
        for r in self.running.values() {
            let h = r.health.lock();
            m.targets
                .get_or_create(&crate::metrics::JobHealth {
                    job: h.job.clone(),
                    health: h.health,
                })
                .inc();
        }
    }

    /// Stops every loop because the agent stops (no staleness markers: the targets live on) and waits
    /// for them to end.
    pub async fn stop_all(&mut self) {
        for r in self.running.values() {
            r.stop.agent_stopping();
        }
        for (_, r) in self.running.drain() {
            let _ = r.handle.await;
        }
    }
}
