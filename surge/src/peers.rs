//! `aggregator.peers`: where the other replicas are, the warm-up from one of them at start, and the
//! writer that replicates the leader's ALB series (see `surge_aggregator::peers`).

use std::sync::Arc;
use std::time::Duration;

use surge_aggregator::AggregatorState;
use surge_aggregator::peers::{PeerClient, PeerWriter, WarmUpOptions};
use surge_config::PeersConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The peers' addresses: the configured list, joined by the Service's endpoints when configured.
pub async fn addresses(
    p: &PeersConfig,
    cancel: CancellationToken,
) -> anyhow::Result<watch::Receiver<Vec<String>>> {
    let fixed = p.addresses.clone();
    let Some(ep) = &p.kubernetes_endpoints else {
        let (tx, rx) = watch::channel(fixed);
        // The list never changes: keep the sender for the process's life so readers see no close.
        tokio::spawn(async move {
            cancel.cancelled().await;
            drop(tx);
        });
        return Ok(rx);
    };
    let client = surge_k8s::discovery::client_for(ep.kubeconfig.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("aggregator.peers.kubernetes_endpoints: {e}"))?;
    let mut live = surge_k8s::endpoints::live_endpoints(client, ep, cancel.clone());
    let (tx, rx) = watch::channel(fixed.clone());
    tokio::spawn(async move {
        loop {
            let mut all = fixed.clone();
            all.extend(live.borrow_and_update().iter().cloned());
            all.sort();
            all.dedup();
            tx.send_replace(all);
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = live.changed() => if changed.is_err() { return },
            }
        }
    });
    Ok(rx)
}

fn client_tls(p: &PeersConfig) -> Option<surge_sender::ClientTls> {
    p.tls_config.as_ref().map(|t| surge_sender::ClientTls {
        ca_file: t.ca_file.clone(),
        client_cert: t.cert_file.clone().zip(t.key_file.clone()),
        server_name: t.server_name.clone(),
        insecure_skip_verify: t.insecure_skip_verify,
    })
}

/// The writer that sends the leader's ALB series to every peer's `/api/v1/write` (retries, TLS and
/// token as a remote-write destination).
pub fn writer(
    p: &PeersConfig,
    peers: watch::Receiver<Vec<String>>,
    own_port: u16,
    client: &reqwest::Client,
    metrics: &surge_sender::SenderMetrics,
) -> anyhow::Result<Arc<PeerWriter>> {
    let template = surge_sender::SenderOptions {
        name: "peers".into(),
        url: format!("{}://peer/api/v1/write", p.scheme.as_str()),
        remote_timeout: Duration::from_secs(5),
        headers: Default::default(),
        queue_config: surge_sender::QueueOptions::default(),
        write_relabel: None,
        tls: client_tls(p),
        bearer_token_file: p.bearer_token_file.clone(),
    };
    Ok(PeerWriter::start(
        template,
        peers,
        own_port,
        client.clone(),
        metrics,
    ))
}

/// Copies the recent window from a peer while writes are refused, then declares the store's history
/// and takes writes again. Returns whether the copy covers `warmup` (the replica may be ready at once).
pub async fn warm_up(
    state: &Arc<AggregatorState>,
    p: &PeersConfig,
    peers: watch::Receiver<Vec<String>>,
    own_port: u16,
    start_ms: i64,
    warmup: Duration,
) -> bool {
    let cache = state.cache();
    state.set_accepting_writes(false);
    cache.set_history_since(surge_store::HISTORY_PENDING);
    let client = PeerClient {
        scheme: p.scheme.as_str().to_owned(),
        tls: client_tls(p),
        bearer_token_file: p.bearer_token_file.clone(),
    };
    let opts = WarmUpOptions {
        timeout: p.warmup_timeout,
        max_bytes: p.warmup_max_bytes,
        window: cache.options().retention,
        own_port,
    };
    let report = surge_aggregator::peers::warm_up_from_peers(state, peers, &client, &opts).await;
    let since = report
        .history_since_ms
        .map_or(start_ms, |s| s.min(start_ms));
    cache.set_history_since(since);
    state.set_accepting_writes(true);
    match &report.peer {
        Some(peer) => tracing::info!(
            %peer,
            samples = report.samples,
            bytes = report.bytes,
            history_s = (start_ms - since) / 1000,
            "warmed from a peer replica"
        ),
        None => {
            tracing::warn!(attempts = ?report.attempts, "no peer replica gave its recent window: starting cold")
        }
    }
    let warmup_ms = i64::try_from(warmup.as_millis()).unwrap_or(i64::MAX);
    report.peer.is_some() && since <= start_ms.saturating_sub(warmup_ms)
}
