//! The ready endpoints of a Service, from its EndpointSlices: where the agent writes when every replica
//! of the aggregator must receive every series (`remote_write[].kubernetes_endpoints`).
//!
//! A watch on `discovery.k8s.io/v1` EndpointSlices labelled `kubernetes.io/service-name=SERVICE` in
//! the Service's namespace keeps the complete list of `IP:PORT` of its endpoints that are not terminating
//! (the named or numbered port), published on a `watch` channel whenever it changes. A replica joins the
//! list as soon as it has an address, ready or not: a new aggregator replica is unready while it warms up
//! (until it holds the history its rules read) and must receive samples meanwhile. A replica that is
//! being deleted leaves the list at once.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use surge_config::KubernetesEndpointsConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The label EndpointSlices carry for their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Starts following `cfg`'s Service; the receiver holds the `IP:PORT`s of its endpoints that are not
/// terminating, sorted (empty until the first list). Stops on `cancel`.
pub fn live_endpoints(
    client: Client,
    cfg: &KubernetesEndpointsConfig,
    cancel: CancellationToken,
) -> watch::Receiver<Vec<String>> {
    let api: Api<EndpointSlice> = Api::namespaced(client, &cfg.namespace);
    let wc = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", cfg.service));
    let (tx, rx) = watch::channel(Vec::new());
    let port = cfg.port.clone();
    let service = format!("{}/{}", cfg.namespace, cfg.service);
    tokio::spawn(async move {
        let mut slices: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, Vec<String>>> = None;
        let mut events = watcher(api, wc).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.next() => match e {
                    Some(e) => e,
                    None => return,
                },
            };
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(s)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(slice_name(&s), addresses(&s, &port));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(l) = listing.take() {
                        slices = l;
                    }
                }
                Ok(watcher::Event::Apply(s)) => {
                    slices.insert(slice_name(&s), addresses(&s, &port));
                }
                Ok(watcher::Event::Delete(s)) => {
                    slices.remove(&slice_name(&s));
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "endpoint slice watch failed; keeping the last endpoints");
                    continue;
                }
            }
            if listing.is_some() {
                continue;
            }
            let all: Vec<String> = slices
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            tx.send_if_modified(|current| {
                if *current == all {
                    return false;
                }
                tracing::info!(%service, endpoints = ?all, "service endpoints changed");
                *current = all;
                true
            });
        }
    });
    rx
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// The `IP:PORT`s of one slice's endpoints that are not terminating, for `port` (a name or a number).
fn addresses(s: &EndpointSlice, port: &str) -> Vec<String> {
    let Some(number) = s.ports.iter().flatten().find_map(|p| {
        let named = p.name.as_deref() == Some(port);
        let numbered = p.port.is_some_and(|n| n.to_string() == port);
        (named || numbered).then_some(p.port).flatten()
    }) else {
        return Vec::new();
    };
    s.endpoints
        .iter()
        // Warming (not ready) endpoints are written to; terminating ones are leaving.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.terminating) != Some(true))
        .flat_map(|e| e.addresses.iter())
        .map(|ip| {
            if ip.contains(':') {
                format!("[{ip}]:{number}")
            } else {
                format!("{ip}:{number}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_named_port_except_terminating_ones() {
        let s: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "surge-aggregator-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": 6443}, {"name": "http", "port": 9091}],
            "endpoints": [
                {"addresses": ["127.0.0.5"], "conditions": {"ready": true}},
                {"addresses": ["127.0.0.6"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["127.0.0.7"]},
                {"addresses": ["127.0.0.8"], "conditions": {"ready": false, "terminating": false}}
            ]
        }))
        .unwrap();
        assert_eq!(
            addresses(&s, "http"),
            ["127.0.0.5:9091", "127.0.0.7:9091", "127.0.0.8:9091"]
        );
        assert_eq!(
            addresses(&s, "6443"),
            ["127.0.0.5:6443", "127.0.0.7:6443", "127.0.0.8:6443"]
        );
        assert!(addresses(&s, "grpc").is_empty());
    }
}
