//! Own-node pod discovery: the agent's `kubernetes_sd_configs`.
//!
//! ```text
//! API server ──watch pods (spec.nodeName=<node>)──▶ kube watcher (relists on 410 Gone / desync)
//!   ──▶ backoff on errors ──▶ PodStore (one per namespace watched; relists swapped in whole)
//!   ──▶ complete list of target groups ──watch channel──▶ agent (re-syncs its scrape loops at once)
//! ```
//!
//! Each change is pushed by the API server and published at once: no polling. Errors never empty the
//! list: while the watch reconnects (API server restart, network loss, `410 Gone` relist), the last good
//! list stays published, and a relist replaces it only once it completed. Errors are logged and retried
//! with a jittered exponential backoff (0.5 s doubling to 5 s). A `410 Gone` (the resource version the
//! watch resumes from is older than the API server's window, as after an API server restart) is not an
//! error: the watcher relists at once, without backoff.
//!
//! Which pods become targets, and their labels, is [`pod`]'s business; see
//! [`surge_config::KubernetesSdConfig`] for the user-facing description.

mod backoff;
pub mod pod;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::utils::StreamBackoff;
use kube::runtime::watcher;
use kube::{Api, Client};
use surge_config::{KubernetesSdConfig, ScrapeConfig};
use surge_model::TargetGroup;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::backoff::WatchBackoff;
use self::pod::PodRules;
use self::store::{Applied, PodStore};

/// Why no Kubernetes client could be built for a `kubernetes_sd_configs` entry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file named in the config cannot be read or used.
    #[error("cannot use kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: KubeconfigError,
    },
    /// Not running in a pod (no service account) and no usable kubeconfig in `$KUBECONFIG` or
    /// `~/.kube/config` either.
    #[error(
        "no Kubernetes credentials: not in a cluster (no service account token) and no usable kubeconfig ($KUBECONFIG)"
    )]
    NoCredentials {
        #[source]
        source: KubeconfigError,
    },
    /// The credentials were found but the client could not be built from them (e.g. a bad CA).
    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Counters of one running discovery, for the agent's own metrics and for tests.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    relists: AtomicU64,
    expirations: AtomicU64,
    watch_errors: AtomicU64,
    events: AtomicU64,
    publishes: AtomicU64,
}

impl DiscoveryStats {
    /// Completed full lists: the initial one, then one per `410 Gone` or other desync.
    pub fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }
    /// `410 Gone` answers to a resumed watch, each followed at once by a relist.
    pub fn expirations(&self) -> u64 {
        self.expirations.load(Ordering::Relaxed)
    }
    /// Errors of the watch (each followed by a backoff and a retry).
    pub fn watch_errors(&self) -> u64 {
        self.watch_errors.load(Ordering::Relaxed)
    }
    /// Pod events received (added, modified, deleted, listed).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
    /// Times a changed list of target groups was published.
    pub fn publishes(&self) -> u64 {
        self.publishes.load(Ordering::Relaxed)
    }
}

/// A running pod discovery. Keep it for as long as the agent reads [`PodDiscovery::targets`]: the
/// channel stays open (holding the last list) while the handle lives, even after cancellation.
pub struct PodDiscovery {
    targets: watch::Receiver<Vec<TargetGroup>>,
    /// Held so that receivers never see a closed channel while the handle lives.
    _sender: Arc<watch::Sender<Vec<TargetGroup>>>,
    synced: watch::Receiver<bool>,
    stats: Arc<DiscoveryStats>,
    task: JoinHandle<()>,
}

impl PodDiscovery {
    /// The complete current list of target groups (one group per pod that is a target), updated on every
    /// change. Empty until the first list completed. Put it in the agent's `JobSpec::dynamic`.
    pub fn targets(&self) -> watch::Receiver<Vec<TargetGroup>> {
        self.targets.clone()
    }

    /// Waits until the first full list of pods is published (returns at once if it was).
    pub async fn synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether the first full list of pods was published.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Counters of this discovery.
    pub fn stats(&self) -> Arc<DiscoveryStats> {
        self.stats.clone()
    }

    /// Waits for the watch task to end after its cancellation token fired.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Builds the client for `cfg`: its `kubeconfig` file if set, else the in-cluster service account, else
/// `$KUBECONFIG` (or `~/.kube/config`).
pub async fn client(cfg: &KubernetesSdConfig) -> Result<Client, ClientError> {
    client_for(cfg.kubeconfig.as_deref()).await
}

/// A client from `kubeconfig` when given, else the in-cluster service account, else `$KUBECONFIG`.
pub async fn client_for(kubeconfig: Option<&str>) -> Result<Client, ClientError> {
    let options = KubeConfigOptions::default();
    let config = match kubeconfig {
        Some(path) => {
            let bad = |source| ClientError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(bad)?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(in_cluster) => {
                tracing::debug!(error = %in_cluster, "not in a cluster; trying $KUBECONFIG");
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|source| ClientError::NoCredentials { source })?
            }
        },
    };
    Client::try_from(config).map_err(ClientError::Client)
}

/// Starts watching the pods of `cfg.node_name` (in `cfg.namespaces`, or all) and publishing their target
/// groups. Runs until `cancel` fires; never ends on its own (errors are retried with backoff).
pub fn start(client: Client, cfg: &KubernetesSdConfig, cancel: CancellationToken) -> PodDiscovery {
    let rules = PodRules::new(cfg);
    // Only this node's pods: the API server filters, so a DaemonSet of N agents does not make each
    // agent receive every pod of the cluster.
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
    let apis: Vec<(String, Api<Pod>)> = if cfg.namespaces.is_empty() {
        vec![("*".to_owned(), Api::all(client))]
    } else {
        cfg.namespaces
            .iter()
            .map(|ns| (ns.clone(), Api::namespaced(client.clone(), ns)))
            .collect()
    };
    let (tx, rx) = watch::channel(Vec::new());
    let tx = Arc::new(tx);
    let (synced_tx, synced_rx) = watch::channel(false);
    let stats = Arc::new(DiscoveryStats::default());
    let run = Run {
        node: cfg.node_name.clone(),
        namespaces: apis.iter().map(|(ns, _)| ns.clone()).collect(),
        stores: apis.iter().map(|_| PodStore::default()).collect(),
        failing: vec![0; apis.len()],
        rules,
        tx: tx.clone(),
        synced: synced_tx,
        stats: stats.clone(),
    };
    let streams = apis.into_iter().enumerate().map(|(i, (_, api))| {
        // A 410 becomes an item before the backoff sees it: it proves the API server answers (so the
        // backoff resets) and the watcher relists right away.
        let items = watcher(api, wc.clone()).map(|r| match r {
            Ok(event) => Ok(WatchItem::Event(Box::new(event))),
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                Ok(WatchItem::Expired(status.message))
            }
            Err(e) => Err(e),
        });
        StreamBackoff::new(items, WatchBackoff::default())
            .map(move |r| (i, r))
            .boxed()
    });
    let events = futures::stream::select_all(streams);
    let task = tokio::spawn(run.run(events, cancel));
    PodDiscovery {
        targets: rx,
        _sender: tx,
        synced: synced_rx,
        stats,
        task,
    }
}

/// Pod discoveries shared by every scrape job with an equal `kubernetes_sd_configs` entry: the usual
/// config has two jobs (one per tier) over the same pods, and one watch serves both.
pub struct PodDiscoveries {
    cancel: CancellationToken,
    running: Vec<(KubernetesSdConfig, PodDiscovery)>,
}

impl PodDiscoveries {
    /// Discoveries started from here stop when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Self {
        PodDiscoveries {
            cancel,
            running: Vec::new(),
        }
    }

    /// The targets of `cfg`, starting its discovery (and building its client) unless an equal entry
    /// already runs.
    pub async fn targets(
        &mut self,
        cfg: &KubernetesSdConfig,
    ) -> Result<watch::Receiver<Vec<TargetGroup>>, ClientError> {
        if let Some((_, d)) = self.running.iter().find(|(c, _)| c == cfg) {
            return Ok(d.targets());
        }
        let client = client(cfg).await?;
        let d = start(client, cfg, self.cancel.child_token());
        let rx = d.targets();
        self.running.push((cfg.clone(), d));
        Ok(rx)
    }

    /// Starts the discovery of every `kubernetes_sd_configs` entry of `scrape_configs`; returns, per
    /// scrape config and in the same order, the live target sources of that job (one per entry), for the
    /// agent's `JobSpec::dynamic`.
    pub async fn sources(
        &mut self,
        scrape_configs: &[ScrapeConfig],
    ) -> Result<Vec<Vec<watch::Receiver<Vec<TargetGroup>>>>, ClientError> {
        let mut out = Vec::with_capacity(scrape_configs.len());
        for sc in scrape_configs {
            let mut job = Vec::with_capacity(sc.kubernetes_sd_configs.len());
            for k in &sc.kubernetes_sd_configs {
                job.push(self.targets(k).await?);
            }
            out.push(job);
        }
        Ok(out)
    }

    /// Waits until every discovery published its first full list, so the agent starts with its targets.
    pub async fn synced(&self) {
        for (_, d) in &self.running {
            d.synced().await;
        }
    }

    /// The running discoveries.
    pub fn iter(&self) -> impl Iterator<Item = (&KubernetesSdConfig, &PodDiscovery)> {
        self.running.iter().map(|(c, d)| (c, d))
    }
}

/// What a watch stream yields once `410 Gone` is told apart from errors.
enum WatchItem {
    /// Boxed: a pod is large and most items are events.
    Event(Box<watcher::Event<Pod>>),
    /// The API server's message, e.g. `too old resource version: 282 (290)`.
    Expired(String),
}

/// The watch task's state.
struct Run {
    node: String,
    /// Per watched stream: its namespace (`*` for all), store, and count of consecutive errors.
    namespaces: Vec<String>,
    stores: Vec<PodStore>,
    failing: Vec<u64>,
    rules: PodRules,
    tx: Arc<watch::Sender<Vec<TargetGroup>>>,
    synced: watch::Sender<bool>,
    stats: Arc<DiscoveryStats>,
}

impl Run {
    async fn run<S>(mut self, mut events: S, cancel: CancellationToken)
    where
        S: futures::Stream<Item = (usize, Result<WatchItem, watcher::Error>)> + Unpin,
    {
        tracing::info!(node = %self.node, namespaces = ?self.namespaces, "kubernetes pod discovery started");
        loop {
            let (i, item) = tokio::select! {
                _ = cancel.cancelled() => break,
                next = events.next() => match next {
                    Some(next) => next,
                    // The watcher retries forever; an end means every stream was given up on.
                    None => break,
                },
            };
            match item {
                Ok(WatchItem::Event(event)) => self.on_event(i, *event),
                Ok(WatchItem::Expired(message)) => {
                    self.stats.expirations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        node = %self.node,
                        namespace = %self.namespaces[i],
                        reason = %message,
                        "kubernetes pod watch expired (410 Gone); relisting, keeping the last targets meanwhile"
                    );
                }
                Err(e) => self.on_error(i, &e),
            }
        }
        tracing::info!(node = %self.node, "kubernetes pod discovery stopped");
    }

    fn on_event(&mut self, i: usize, event: watcher::Event<Pod>) {
        if self.failing[i] > 0 {
            tracing::info!(
                node = %self.node,
                namespace = %self.namespaces[i],
                errors = self.failing[i],
                "kubernetes pod watch recovered"
            );
            self.failing[i] = 0;
        }
        if matches!(
            event,
            watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitApply(_)
        ) {
            self.stats.events.fetch_add(1, Ordering::Relaxed);
        }
        match self.stores[i].apply(event, &self.rules) {
            Applied::Unchanged => {}
            Applied::TargetsChanged => self.publish(),
            Applied::Relisted => {
                self.stats.relists.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %self.node, namespace = %self.namespaces[i], "pods listed");
                self.publish();
                if self.stores.iter().all(PodStore::is_synced) {
                    self.synced.send_replace(true);
                }
            }
        }
    }

    fn on_error(&mut self, i: usize, e: &watcher::Error) {
        self.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
        self.failing[i] += 1;
        // The backoff spaces these out (at most one per 5 s per stream while the API server is away);
        // the last good list stays published meanwhile.
        tracing::warn!(
            node = %self.node,
            namespace = %self.namespaces[i],
            consecutive = self.failing[i],
            // kube's watcher errors carry their cause's text in their own message.
            error = %e,
            "kubernetes pod watch failed; keeping the last targets and retrying with backoff"
        );
    }

    /// Publishes the complete list if it differs from the last one.
    fn publish(&self) {
        let list: Vec<TargetGroup> = self
            .stores
            .iter()
            .flat_map(|s| s.targets().cloned())
            .collect();
        let changed = self.tx.send_if_modified(|current| {
            if *current == list {
                return false;
            }
            *current = list;
            true
        });
        if changed {
            self.stats.publishes.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(node = %self.node, targets = self.tx.borrow().len(), "pod targets published");
        }
    }
}
