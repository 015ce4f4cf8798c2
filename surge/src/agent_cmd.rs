//! `surge agent -c FILE`: the DaemonSet process.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use parking_lot::Mutex;
use surge_agent::agent::Agent;
use surge_agent::from_config::{agent_spec, file_sd_loader, glob_expander};

use crate::process;

pub fn main(config: &Path) -> ExitCode {
    process::init_logging();
    let cfg = match process::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut spec = match agent_spec(&cfg.agent) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surge: {}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let rt = match process::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        // Kubernetes pod discovery feeds the jobs that ask for it; it lives as long as the agent.
        let discovery_cancel = tokio_util::sync::CancellationToken::new();
        let mut k8s = surge_k8s::discovery::PodDiscoveries::new(discovery_cancel.clone());
        match k8s.sources(&cfg.agent.scrape_configs).await {
            Ok(sources) => spec.add_live_sources(sources),
            Err(e) => {
                eprintln!("surge: kubernetes_sd_configs: {e}");
                return ExitCode::FAILURE;
            }
        }
        // Destinations written to every endpoint of a Service (each aggregator replica, warming or ready).
        for rw in &cfg.agent.remote_write {
            let Some(ep) = &rw.kubernetes_endpoints else {
                continue;
            };
            match surge_k8s::discovery::client_for(ep.kubeconfig.as_deref()).await {
                Ok(client) => {
                    let set =
                        surge_k8s::endpoints::live_endpoints(client, ep, discovery_cancel.clone());
                    spec.endpoint_sets.insert(rw.name.clone(), set);
                }
                Err(e) => {
                    eprintln!("surge: remote_write {}: kubernetes_endpoints: {e}", rw.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        // Start with the complete target list when discovery answers quickly; never wait forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), k8s.synced()).await;
        let registry = Arc::new(Mutex::new(prometheus_client::registry::Registry::default()));
        // CloudWatch outputs (EMF, PutMetricData): built here so the agent never links the AWS SDK.
        if !cfg.agent.emf.is_empty() || !cfg.agent.cloudwatch.is_empty() {
            let metrics = spec
                .sender_metrics
                .get_or_insert_with(|| surge_sender::SenderMetrics::new(&mut registry.lock()))
                .clone();
            match surge_cloudwatch::start_outputs(&cfg.agent, &metrics).await {
                Ok(outputs) => spec.outputs.extend(outputs),
                Err(e) => {
                    eprintln!("surge: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        // OTLP outputs: built here so the agent never links tonic or opentelemetry.
        if !cfg.agent.otlp.is_empty() {
            let mut r = registry.lock();
            let metrics = spec
                .sender_metrics
                .get_or_insert_with(|| surge_sender::SenderMetrics::new(&mut r))
                .clone();
            let otlp_metrics = surge_otlp::OtlpMetrics::new(&mut r);
            for o in &cfg.agent.otlp {
                let started = surge_otlp::OtlpOptions::from_config(o)
                    .and_then(|opts| surge_otlp::start(&opts, &metrics, &otlp_metrics));
                match started {
                    Ok(output) => spec.outputs.push(output),
                    Err(e) => {
                        eprintln!("surge: otlp {}: {e}", o.name);
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        let agent = match Agent::start(spec, registry, file_sd_loader(), glob_expander()).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("surge: agent: {e}");
                return ExitCode::FAILURE;
            }
        };
        process::shutdown_signal().await;
        // No staleness markers: the targets live on, and the restarted agent continues their series.
        tracing::info!("shutting down: flushing queues");
        agent.shutdown().await;
        discovery_cancel.cancel();
        drop(k8s);
        ExitCode::SUCCESS
    })
}
