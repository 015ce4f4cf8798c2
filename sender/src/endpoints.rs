//! Writing to every member of a changing set of receivers: each replica of a Deployment behind a Service
//! (the aggregator), so every replica holds every series and any of them answers the same.
//!
//! [`EndpointFanOut`] is one [`Output`]: it holds a [`RemoteWriteSender`] per current endpoint (its own
//! queue, shards and retries, named `NAME@ADDRESS`) and hands every batch to each. The set comes from a
//! `watch` channel that a discovery (the Kubernetes EndpointSlices of a Service, in `surge-k8s`) keeps
//! complete; while it is empty (not listed yet, or no endpoint ready) batches go to the fallback URL (the
//! Service itself), so nothing is lost while the set is unknown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::output::{Output, ShutdownFuture};
use crate::{
    Batch, InvalidSenderOptions, RemoteWriteSender, SenderMetrics, SenderOptions, ShutdownReport,
};

/// How long a removed endpoint's queue may still drain: a replica that left (scaled down, rolled) may
/// still answer for a moment; one that died does not, and its queue is then dropped and counted.
const REMOVED_DRAIN: Duration = Duration::from_secs(2);

/// Every current endpoint of a set, each with its own sender, plus the fallback.
pub struct EndpointFanOut {
    name: String,
    fallback: RemoteWriteSender,
    current: Arc<RwLock<Members>>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Members {
    /// `host:port` → its sender, in address order.
    by_address: BTreeMap<String, RemoteWriteSender>,
}

impl EndpointFanOut {
    /// Starts the fallback sender (`opts` as given) and follows `addresses` (complete lists of
    /// `host:port`), starting a sender per new address with `opts`' scheme, path and queue settings, and
    /// draining the senders of addresses that left. Must run inside a tokio runtime.
    pub fn start(
        opts: SenderOptions,
        mut addresses: watch::Receiver<Vec<String>>,
        client: reqwest::Client,
        metrics: &SenderMetrics,
    ) -> Result<Arc<EndpointFanOut>, InvalidSenderOptions> {
        let template = UrlTemplate::of(&opts.url);
        let fallback = RemoteWriteSender::try_start(opts.clone(), client.clone(), metrics)?;
        let out = Arc::new(EndpointFanOut {
            name: opts.name.clone(),
            fallback,
            current: Arc::default(),
            cancel: CancellationToken::new(),
        });
        let (current, cancel, metrics) = (out.current.clone(), out.cancel.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                let wanted = addresses.borrow_and_update().clone();
                sync(&current, &wanted, &opts, &template, &client, &metrics);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = addresses.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(out)
    }

    /// The addresses written to now (empty: the fallback is).
    pub fn addresses(&self) -> Vec<String> {
        self.current.read().by_address.keys().cloned().collect()
    }
}

/// Makes the running senders match `wanted`.
fn sync(
    current: &RwLock<Members>,
    wanted: &[String],
    opts: &SenderOptions,
    template: &UrlTemplate,
    client: &reqwest::Client,
    metrics: &SenderMetrics,
) {
    let mut members = current.write();
    let gone: Vec<String> = members
        .by_address
        .keys()
        .filter(|a| !wanted.contains(a))
        .cloned()
        .collect();
    for address in gone {
        if let Some(sender) = members.by_address.remove(&address) {
            tracing::info!(destination = %opts.name, %address, "remote-write endpoint left; draining its queue");
            tokio::spawn(async move {
                sender.close(REMOVED_DRAIN).await;
            });
        }
    }
    for address in wanted {
        if members.by_address.contains_key(address) {
            continue;
        }
        let mut o = opts.clone();
        o.name = format!("{}@{address}", opts.name);
        o.url = template.with_authority(address);
        match RemoteWriteSender::try_start(o, client.clone(), metrics) {
            Ok(sender) => {
                tracing::info!(destination = %opts.name, %address, "remote-write endpoint joined");
                members.by_address.insert(address.clone(), sender);
            }
            Err(e) => {
                tracing::warn!(destination = %opts.name, %address, error = %e, "remote-write endpoint refused")
            }
        }
    }
}

impl Output for EndpointFanOut {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(&self, batch: Arc<Batch>) {
        self.submit_with_health(batch, 0);
    }

    fn submit_with_health(&self, batch: Arc<Batch>, health: usize) {
        let members = self.current.read();
        if members.by_address.is_empty() {
            self.fallback.submit_with_health(batch, health);
            return;
        }
        for sender in members.by_address.values() {
            sender.submit_with_health(batch.clone(), health);
        }
    }

    /// Every member has the destination's `queue_config`, so the fallback's bound is theirs.
    fn max_scrape_samples(&self) -> Option<usize> {
        Some(self.fallback.max_scrape_samples())
    }

    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_> {
        self.cancel.cancel();
        let senders: Vec<RemoteWriteSender> = std::mem::take(&mut self.current.write().by_address)
            .into_values()
            .collect();
        Box::pin(async move {
            let flushes = senders
                .iter()
                .map(|s| s.close(deadline))
                .chain(std::iter::once(self.fallback.close(deadline)));
            let mut total = ShutdownReport {
                completed: true,
                ..ShutdownReport::default()
            };
            for r in futures::future::join_all(flushes).await {
                total.flushed_samples += r.flushed_samples;
                total.dropped_samples += r.dropped_samples;
                total.completed &= r.completed;
            }
            total
        })
    }
}

/// A URL split around its authority, so each endpoint's URL keeps the scheme and path.
struct UrlTemplate {
    scheme: String,
    rest: String,
}

impl UrlTemplate {
    fn of(url: &str) -> UrlTemplate {
        let (scheme, after) = url.split_once("://").unwrap_or(("http", url));
        let start = after.find(['/', '?', '#']).unwrap_or(after.len());
        UrlTemplate {
            scheme: scheme.to_owned(),
            rest: after[start..].to_owned(),
        }
    }

    fn with_authority(&self, authority: &str) -> String {
        format!("{}://{authority}{}", self.scheme, self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_keep_scheme_and_path() {
        let t = UrlTemplate::of("https://surge-aggregator.surge.svc:9091/api/v1/write?x=1");
        assert_eq!(
            t.with_authority("10.1.2.3:9091"),
            "https://10.1.2.3:9091/api/v1/write?x=1"
        );
        let t = UrlTemplate::of("http://svc");
        assert_eq!(t.with_authority("127.0.0.5:80"), "http://127.0.0.5:80");
    }
}
