//! `surge aggregator -c FILE`: the Deployment process. Also used by `surge run`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use surge_aggregator::onward::Onward;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions};
use surge_autoscaler::{Actuator, Autoscaler, ScaleTarget, VirtualWorkloads, build_policies};
use surge_config::{AggregatorConfig, Config, KubernetesApiConfig};
use surge_metrics_api::{self as k8s_api, MetricsApi, MetricsApiOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::process;

/// A running aggregator: HTTP server, idle-series sweeper and onward senders.
pub struct RunningAggregator {
    pub state: Arc<AggregatorState>,
    pub autoscaler: Arc<Autoscaler>,
    leader: Option<surge_k8s::lease::LeaderHandle>,
    pub addr: std::net::SocketAddr,
    onward: Arc<Onward>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    engine: JoinHandle<()>,
    cancel: CancellationToken,
}

/// Maps the config onto the aggregator's options.
fn options(cfg: &AggregatorConfig) -> (CacheOptions, QueryOptions, IngestOptions) {
    let cache = CacheOptions {
        retention: cfg.cache.retention,
        idle_ttl: cfg.cache.idle_ttl,
        stale_after: cfg.cache.stale_after,
        max_series: cfg.cache.max_series,
    };
    let query = QueryOptions {
        max_series: cfg.query.max_series,
        lookback_delta: cfg.query.lookback_delta,
    };
    let ingest = IngestOptions {
        max_body_bytes: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
        body_timeout: cfg.server.body_timeout,
        ..IngestOptions::default()
    };
    (cache, query, ingest)
}

/// Maps `aggregator.kubernetes_api` onto the metrics APIs' options (the one mapping: `check-config`
/// uses it too). `requestheader.from_cluster` is resolved at start by [`front_proxy_from_cluster`].
pub(crate) fn k8s_api_options(k: &KubernetesApiConfig) -> MetricsApiOptions {
    let t = &k.forward_external_tls;
    MetricsApiOptions {
        listen: k.listen,
        tls: k.tls.as_ref().map(|t| k8s_api::TlsFiles {
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            reload_interval: t.reload_interval,
        }),
        requestheader: k.requestheader.as_ref().and_then(|r| {
            r.client_ca_file
                .as_ref()
                .map(|file| k8s_api::RequestHeaderOptions {
                    client_ca: k8s_api::ClientCa::File(file.clone()),
                    allowed_names: r.allowed_names.clone(),
                })
        }),
        insecure_dev_no_auth: k.insecure_dev_no_auth,
        forward_external: k
            .forward_external_url
            .as_ref()
            .map(|url| k8s_api::ForwardOptions {
                url: url.clone(),
                ca_file: t.ca_file.clone(),
                client_cert: t.cert_file.clone().zip(t.key_file.clone()),
                insecure_skip_verify: t.insecure_skip_verify,
                timeout: t.timeout,
            }),
        external_metrics: k
            .external_metrics
            .iter()
            .map(|m| k8s_api::ExternalMetricRule {
                name: m.name.clone(),
                query: m.query.clone(),
            })
            .collect(),
        custom_metrics: k
            .custom_metrics
            .iter()
            .map(|m| k8s_api::CustomMetricRule {
                name: m.name.clone(),
                resource: m.resource.clone(),
                query: m.query.clone(),
                object_label: m.object_label.clone(),
                window: m.window,
                ignore_label_selector: m.ignore_label_selector,
            })
            .collect(),
    }
}

/// `requestheader.from_cluster`: kube-apiserver's front-proxy CA (and, unless the config names them,
/// the allowed names) as the cluster publishes them.
async fn front_proxy_from_cluster(
    configured_names: &[String],
) -> anyhow::Result<k8s_api::RequestHeaderOptions> {
    let client = surge_k8s::discovery::client_for(None).await?;
    let fp = surge_k8s::auth::front_proxy(client).await?;
    tracing::info!(allowed_names = ?fp.allowed_names, "front-proxy CA read from kube-system/extension-apiserver-authentication");
    Ok(k8s_api::RequestHeaderOptions {
        client_ca: k8s_api::ClientCa::Pem {
            pem: fp.client_ca_pem,
            origin: "kube-system/extension-apiserver-authentication requestheader-client-ca-file"
                .into(),
        },
        allowed_names: if configured_names.is_empty() {
            fp.allowed_names
        } else {
            configured_names.to_vec()
        },
    })
}

/// Binds and starts the aggregator described by `config` (its `aggregator` section and its policies).
pub async fn start(config: &Config) -> anyhow::Result<RunningAggregator> {
    let cfg = &config.aggregator;
    let policies = build_policies(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (cache, query, ingest) = options(cfg);
    let mut registry = Registry::default();
    let state = Arc::new(AggregatorState::new(cache, query, ingest, &mut registry));
    let start_ms = surge_aggregator::now_ms();
    // Restart hygiene: the store holds every sample from now on (earlier once a peer's copy lands).
    state.cache().set_history_since(start_ms);
    let listener_security = crate::aggregator_security::setup(cfg, &state, &mut registry).await?;
    let client = surge_agent::http_client()?;
    let sender_metrics = surge_sender::SenderMetrics::new(&mut registry);
    let wal_metrics = surge_wal::WalMetrics::new(&mut registry);
    let mut outputs: Vec<Arc<dyn surge_sender::Output>> = Vec::new();
    for rw in &cfg.remote_write {
        let opts = surge_agent::from_config::sender_options(rw)?;
        let capacity = opts.queue_config.capacity;
        let sender =
            surge_sender::RemoteWriteSender::try_start(opts, client.clone(), &sender_metrics)?;
        outputs.push(match surge_agent::from_config::durable_options(rw) {
            Some(d) => surge_wal::DurableOutput::start(d, sender, capacity, &wal_metrics)?.0,
            None => Arc::new(sender),
        });
    }
    let onward = Arc::new(Onward::new(surge_sender::Outputs::new(outputs)));
    state.add_observer(onward.clone());
    let cancel = CancellationToken::new();
    let peers = match cfg.peers.as_ref().filter(|p| !p.is_empty()) {
        Some(p) => Some((p, crate::peers::addresses(p, cancel.clone()).await?)),
        None => None,
    };
    // A policy in `scale` mode needs the cluster: a Lease elects the one replica that patches `/scale`.
    // Without one, decisions drive a virtual replica count (dry-run).
    let targets: Vec<ScaleTarget> = policies.iter().map(|p| p.target.clone()).collect();
    let kube = surge_k8s::actuator::start_for_policies(&targets, &mut registry, cancel.clone())
        .await
        .map_err(|e| anyhow::anyhow!("kubernetes actuation: {e}"))?;
    let leader = kube.as_ref().map(|k| k.leader().clone());
    let kube_nodes = kube.clone();
    let actuator: Arc<dyn Actuator> = match kube {
        Some(k) => k,
        None => Arc::new(VirtualWorkloads::default()),
    };
    let autoscaler = Autoscaler::new(
        state.cache().clone(),
        state.autoscaling_eval_options(),
        policies,
        actuator,
        &mut registry,
    );
    state.add_observer(autoscaler.clone());
    if let Some(n) = cfg.nodes.as_ref().filter(|n| n.enabled) {
        crate::nodes_cmd::start_node_decisions(
            n,
            &autoscaler,
            kube_nodes.as_ref(),
            &mut registry,
            cancel.clone(),
        )
        .await?;
    }
    // ALB request metrics: CloudWatch's on the leader only (every replica when there is no election),
    // the target-side 1 s rate on every replica. Tasks end with `cancel`.
    if let Some(alb) = cfg.alb.as_ref().filter(|a| !a.is_empty()) {
        let leading = leader.as_ref().map(|l| l.subscribe());
        let replicate = peers
            .as_ref()
            .filter(|(p, _)| p.replicate_alb)
            .map(|(p, set)| {
                crate::peers::writer(p, set.clone(), cfg.listen.port(), &client, &sender_metrics)
            })
            .transpose()?;
        surge_alb::start(
            alb,
            state.clone(),
            leading,
            replicate,
            &mut registry,
            cancel.clone(),
        )
        .await?;
    }
    // The Kubernetes metrics APIs: rules and certificates are checked before any port is bound.
    let metrics_api = match &cfg.kubernetes_api {
        Some(k) => {
            let mut opts = k8s_api_options(k);
            if let Some(r) = k.requestheader.as_ref().filter(|r| r.from_cluster) {
                opts.requestheader = Some(
                    front_proxy_from_cluster(&r.allowed_names)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!("kubernetes_api.requestheader.from_cluster: {e:#}")
                        })?,
                );
            }
            Some(MetricsApi::new(
                state.cache().clone(),
                state.query_options(),
                &opts,
                &mut registry,
            )?)
        }
        None => None,
    };
    state.publish_registry(Arc::new(registry));

    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let app = surge_aggregator::api::router(state.clone())
        .merge(surge_autoscaler::decisions_router(autoscaler.clone()));
    let engine = tokio::spawn(autoscaler.clone().run(cancel.clone()));
    if let Some(api) = metrics_api {
        let listener = tokio::net::TcpListener::bind(api.listen()).await?;
        let c = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = k8s_api::serve_https(listener, Arc::new(api), c.cancelled_owned()).await
            {
                tracing::error!(error = %e, "kubernetes metrics API server failed");
            }
        });
    }
    let c = cancel.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = listener_security
            .serve(listener, app, c.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "aggregator HTTP server failed");
        }
    });
    // Idle series are evicted by a periodic sweep; a tenth of the idle TTL keeps memory close to the bound.
    let sweep_every =
        (cfg.cache.idle_ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let (st, c) = (state.clone(), cancel.clone());
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        loop {
            tokio::select! {
                _ = c.cancelled() => return,
                _ = tick.tick() => {}
            }
            let stats = st.cache().sweep(surge_aggregator::now_ms());
            if stats.evicted > 0 {
                tracing::debug!(
                    evicted = stats.evicted,
                    remaining = stats.remaining,
                    "swept idle series"
                );
            }
        }
    });
    // Warm from a peer before taking writes (see surge_aggregator::peers); bounded by its timeout.
    let mut warm_from_peer = false;
    if let Some((p, set)) = &peers {
        warm_from_peer =
            crate::peers::warm_up(&state, p, set.clone(), addr.port(), start_ms, cfg.warmup).await;
    }
    // Ready once warm: queries wait for the history the rules read; ingest does not.
    if cfg.warmup.is_zero() || warm_from_peer {
        state.set_ready(true);
    } else {
        let (st, c, warmup) = (state.clone(), cancel.clone(), cfg.warmup);
        tokio::spawn(async move {
            tokio::select! {
                _ = c.cancelled() => {}
                _ = tokio::time::sleep(warmup) => {
                    st.set_ready(true);
                    tracing::info!(?warmup, "warmed up: ready");
                }
            }
        });
    }
    tracing::info!(%addr, warmup = ?cfg.warmup, "aggregator started");
    Ok(RunningAggregator {
        state,
        autoscaler,
        leader,
        engine,
        addr,
        onward,
        server,
        sweeper,
        cancel,
    })
}

impl RunningAggregator {
    /// Stops serving and flushes the onward queues within `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        self.state.set_ready(false);
        self.cancel.cancel();
        let _ = self.server.await;
        let _ = self.sweeper.await;
        let _ = self.engine.await;
        // Release the Lease so a successor takes over at once rather than after the lease duration.
        if let Some(l) = &self.leader {
            l.stopped().await;
        }
        for (destination, report) in self.onward.outputs().shutdown(deadline).await {
            tracing::info!(destination, ?report, "onward output flushed");
        }
    }
}

pub fn main(config: &Path) -> ExitCode {
    process::init_logging();
    let cfg = match process::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match process::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let agg = match start(&cfg).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("surge: aggregator: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        process::shutdown_signal().await;
        // Lame duck: unready first, so kube-apiserver, Services and agents move to the other replicas
        // while this one still answers what is already on its way.
        agg.state.set_ready(false);
        tracing::info!(delay = ?cfg.aggregator.shutdown_delay, "shutting down: not ready, still serving");
        tokio::time::sleep(cfg.aggregator.shutdown_delay).await;
        tracing::info!("shutting down: flushing onward queues");
        agg.shutdown(Duration::from_secs(5)).await;
        ExitCode::SUCCESS
    })
}
