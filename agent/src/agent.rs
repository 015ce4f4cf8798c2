//! The agent as a process: wires discovery, the scrape loops, the outputs and the own HTTP server, and
//! shuts them down in order (stop scraping → write staleness markers → flush outputs within the deadline).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use surge_model::Labels;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::scrape::fetch::Fetcher;
use crate::scrape::manager::TargetManager;
use crate::scrape::run::ScrapeContext;
use crate::scrape::target::{ScrapeJob, ScrapeTarget, TargetGroup, targets_for_job};
use crate::server::{ServerState, agent_limits, serve};
use surge_sender::{
    EndpointFanOut, Output, Outputs, RemoteWriteSender, SenderMetrics, SenderOptions,
};

/// File-based target lists of one job.
#[derive(Debug, Clone)]
pub struct FileDiscovery {
    /// Paths or globs (`*` in the last component).
    pub patterns: Vec<String>,
    /// Full re-read period even without a change; changes are picked up within a second.
    pub refresh_interval: Duration,
}

/// One job and where its targets come from.
pub struct JobSpec {
    pub job: Arc<ScrapeJob>,
    pub static_groups: Vec<TargetGroup>,
    pub file_sd: Vec<FileDiscovery>,
    /// Target groups pushed by a live discovery (e.g. Kubernetes pods of this node); each receiver holds
    /// the complete current list of its source. The agent re-syncs as soon as one changes.
    pub dynamic: Vec<tokio::sync::watch::Receiver<Vec<TargetGroup>>>,
}

/// Everything the agent needs, resolved from the config.
pub struct AgentSpec {
    pub listen: Option<SocketAddr>,
    pub external_labels: Labels,
    pub shutdown_timeout: Duration,
    pub jobs: Vec<JobSpec>,
    /// Remote-write destinations; the agent starts one sender per entry.
    pub destinations: Vec<SenderOptions>,
    /// Outputs the caller built itself, fed exactly like the remote-write destinations (every batch goes
    /// to every output, and each is flushed at shutdown): where a destination that is not remote-write
    /// plugs in without an edit to the agent. Usually empty.
    pub outputs: Vec<Arc<dyn Output>>,
    /// The sender's metrics, when the caller registered them already to build `outputs` with (a
    /// registry holds each family once); `None` lets the agent register them.
    pub sender_metrics: Option<SenderMetrics>,
    /// Destinations (by name) written to every member of a changing set of `host:port` endpoints
    /// instead of their URL (e.g. every aggregator replica, from the Service's EndpointSlices); see
    /// [`surge_sender::EndpointFanOut`].
    pub endpoint_sets: BTreeMap<String, tokio::sync::watch::Receiver<Vec<String>>>,
    /// Destinations (by name) with a durable queue on disk in front of their sender
    /// (`queue_config.durable`); see [`surge_wal::DurableOutput`].
    pub durable: BTreeMap<String, surge_wal::DurableOptions>,
    /// The most series every target's cache may hold together (`agent.total_series_limit`; 0: no
    /// cap); see [`crate::scrape::total`].
    pub total_series_limit: usize,
}

impl AgentSpec {
    /// Adds live target sources (e.g. Kubernetes pod discovery) to the jobs: `sources[i]` belongs to
    /// `jobs[i]`, as `from_config::agent_spec` builds one job per scrape config, in order.
    pub fn add_live_sources(
        &mut self,
        sources: Vec<Vec<tokio::sync::watch::Receiver<Vec<TargetGroup>>>>,
    ) {
        for (job, live) in self.jobs.iter_mut().zip(sources) {
            job.dynamic.extend(live);
        }
    }
}

/// A running agent.
pub struct Agent {
    cancel: CancellationToken,
    discovery: JoinHandle<()>,
    server: Option<JoinHandle<()>>,
    manager: Arc<tokio::sync::Mutex<TargetManager>>,
    outputs: Outputs,
    shutdown_timeout: Duration,
    /// Address the own HTTP server is bound to, if any.
    pub local_addr: Option<SocketAddr>,
}

/// Reads one file-SD file. Provided by the caller so that only the config crate reads files.
pub type FileSdLoader =
    Arc<dyn Fn(&std::path::Path) -> Result<Vec<TargetGroup>, String> + Send + Sync>;
/// Expands a file-SD pattern to paths.
pub type GlobExpander = Arc<dyn Fn(&str) -> Vec<PathBuf> + Send + Sync>;

impl Agent {
    /// Starts everything; returns once the own server is bound and the first target set is running.
    pub async fn start(
        spec: AgentSpec,
        registry: Arc<Mutex<Registry>>,
        load_file_sd: FileSdLoader,
        expand: GlobExpander,
    ) -> std::io::Result<Agent> {
        let client = crate::http_client().map_err(std::io::Error::other)?;
        let (scrape_metrics, sender_metrics, wal_metrics, series_total) = {
            let mut r = registry.lock();
            let scrape = crate::metrics::ScrapeMetrics::new(&mut r);
            let total =
                crate::scrape::total::SeriesTotal::new(spec.total_series_limit, Some(&mut r));
            let sender = match spec.sender_metrics {
                Some(m) => m,
                None => SenderMetrics::new(&mut r),
            };
            (
                scrape,
                sender,
                surge_wal::WalMetrics::new(&mut r),
                Arc::new(total),
            )
        };
        let mut durable = spec.durable;
        let mut endpoint_sets = spec.endpoint_sets;
        let mut outputs: Vec<Arc<dyn Output>> = Vec::with_capacity(spec.destinations.len());
        for o in spec.destinations {
            outputs.push(match endpoint_sets.remove(&o.name) {
                Some(set) => EndpointFanOut::start(o, set, client.clone(), &sender_metrics)
                    .map_err(std::io::Error::other)?,
                None => match durable.remove(&o.name) {
                    Some(d) => {
                        let capacity = o.queue_config.capacity;
                        let sender = RemoteWriteSender::start(o, client.clone(), &sender_metrics);
                        surge_wal::DurableOutput::start(d, sender, capacity, &wal_metrics)?.0
                    }
                    None => Arc::new(RemoteWriteSender::start(o, client.clone(), &sender_metrics)),
                },
            });
        }
        let outputs: Outputs = outputs.into_iter().chain(spec.outputs).collect();
        let ctx = Arc::new(ScrapeContext {
            fetcher: Fetcher::new(client),
            max_scrape_samples: outputs.max_scrape_samples(),
            outputs: outputs.clone(),
            metrics: scrape_metrics,
            external_labels: spec.external_labels,
            series_total: Some(series_total),
        });
        let manager = Arc::new(tokio::sync::Mutex::new(TargetManager::new(ctx)));
        let cancel = CancellationToken::new();

        let mut discovery = Discovery {
            jobs: spec.jobs,
            file_state: Vec::new(),
            load_file_sd,
            expand,
        };
        let first = discovery.poll(true);
        manager.lock().await.sync(first);
        let discovery = tokio::spawn(discovery_loop(discovery, manager.clone(), cancel.clone()));

        let state = Arc::new(ServerState {
            registry,
            targets: manager.clone(),
            ready: Default::default(),
        });
        let (server, local_addr) = match spec.listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                let c = cancel.clone();
                let serving = state.clone();
                let h = tokio::spawn(async move {
                    let r = serve(listener, serving, agent_limits(), c.cancelled_owned()).await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "agent HTTP server failed");
                    }
                });
                (Some(h), Some(local))
            }
            None => (None, None),
        };
        state.ready.store(true, Ordering::Release);
        tracing::info!(addr = ?local_addr, "agent started");
        Ok(Agent {
            cancel,
            discovery,
            server,
            manager,
            outputs,
            shutdown_timeout: spec.shutdown_timeout,
            local_addr,
        })
    }

    /// The current target health, for views and tests.
    pub async fn targets(&self) -> Vec<crate::scrape::run::TargetHealth> {
        self.manager.lock().await.health()
    }

    /// Stops scraping and flushes the outputs within the configured `shutdown_timeout`. Writes no
    /// staleness markers: the targets did not go away, and a restarted agent continues their series.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.discovery.await;
        self.manager.lock().await.stop_all().await;
        for (destination, report) in self.outputs.shutdown(self.shutdown_timeout).await {
            tracing::info!(destination, ?report, "output flushed");
        }
        if let Some(s) = self.server {
            let _ = s.await;
        }
    }
}

struct FileState {
    path: PathBuf,
    modified: Option<SystemTime>,
    groups: Vec<TargetGroup>,
}

struct Discovery {
    jobs: Vec<JobSpec>,
    /// Per job, per file: the last read state.
    file_state: Vec<Vec<FileState>>,
    load_file_sd: FileSdLoader,
    expand: GlobExpander,
}

impl Discovery {
    /// Re-reads changed files (all of them when `force`) and returns the wanted targets of every job.
    fn poll(&mut self, force: bool) -> Vec<ScrapeTarget> {
        self.file_state.resize_with(self.jobs.len(), Vec::new);
        let mut all = Vec::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let mut paths: Vec<PathBuf> = job
                .file_sd
                .iter()
                .flat_map(|f| f.patterns.iter().flat_map(|p| (self.expand)(p)))
                .collect();
            paths.sort();
            paths.dedup();
            let state = &mut self.file_state[i];
            state.retain(|s| paths.contains(&s.path));
            for p in paths {
                let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                let pos = state.iter().position(|s| s.path == p);
                let changed = match pos {
                    Some(j) => force || state[j].modified != modified,
                    None => true,
                };
                if !changed {
                    continue;
                }
                match (self.load_file_sd)(&p) {
                    Ok(groups) => {
                        let fresh = FileState {
                            path: p.clone(),
                            modified,
                            groups,
                        };
                        match pos {
                            Some(j) => state[j] = fresh,
                            None => state.push(fresh),
                        }
                    }
                    // A broken file keeps its last good targets: losing targets on a half-written file
                    // would write staleness markers for healthy series.
                    Err(e) => {
                        tracing::warn!(file = %p.display(), error = %e, "file_sd: cannot read targets; keeping the last good list")
                    }
                }
            }
            let mut groups = job.static_groups.clone();
            groups.extend(state.iter().flat_map(|s| s.groups.iter().cloned()));
            for rx in &job.dynamic {
                groups.extend(rx.borrow().iter().cloned());
            }
            all.extend(targets_for_job(&job.job, &groups));
        }
        all
    }

    fn refresh_every(&self) -> Duration {
        self.jobs
            .iter()
            .flat_map(|j| j.file_sd.iter().map(|f| f.refresh_interval))
            .min()
            .unwrap_or(Duration::from_secs(300))
    }
}

async fn discovery_loop(
    mut d: Discovery,
    manager: Arc<tokio::sync::Mutex<TargetManager>>,
    cancel: CancellationToken,
) {
    if d.jobs
        .iter()
        .all(|j| j.file_sd.is_empty() && j.dynamic.is_empty())
    {
        return;
    }
    let full_every = d.refresh_every();
    let mut last_full = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dynamic: Vec<_> = d
        .jobs
        .iter()
        .flat_map(|j| j.dynamic.iter().cloned())
        .collect();
    loop {
        // A live source's change is applied at once (pod churn is followed within a second), files are
        // polled every second.
        let changed = async {
            if dynamic.is_empty() {
                return std::future::pending::<Option<usize>>().await;
            }
            let waits = dynamic.iter_mut().map(|rx| Box::pin(rx.changed()));
            match futures::future::select_all(waits).await {
                (Ok(()), _, _) => None,
                // The source is gone: keep its last list (the receiver still holds it) but stop waiting
                // on it, or this loop would spin.
                (Err(_), i, _) => Some(i),
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            closed = changed => {
                if let Some(i) = closed {
                    dynamic.swap_remove(i);
                    tracing::warn!("a live target source closed; keeping its last target list");
                }
            }
        }
        let force = last_full.elapsed() >= full_every;
        if force {
            last_full = tokio::time::Instant::now();
        }
        let wanted = d.poll(force);
        let (started, stopped) = manager.lock().await.sync(wanted);
        if started + stopped > 0 {
            tracing::info!(started, stopped, "targets changed");
        }
    }
}
