//! Maps the validated config onto the agent's resolved types. Config loading already checked every field,
//! so the only failure left here is a relabel rule the config crate accepted but the relabeler refuses,
//! which would be a bug; it is still reported, never unwrapped.

use std::sync::Arc;

use surge_config::{AgentConfig, RemoteWriteConfig, ScrapeConfig};
use surge_model::Labels;

use crate::agent::{AgentSpec, FileDiscovery, JobSpec};
use crate::relabel::Relabeler;
use crate::scrape::processor::ScrapeLimits;
use crate::scrape::target::{ScrapeJob, TargetGroup};
use surge_sender::{QueueOptions, SenderOptions};

/// A config that passed validation but cannot be turned into a running agent.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct SpecError {
    pub what: String,
    pub detail: String,
}

/// Resolves `cfg` into the agent's spec.
pub fn agent_spec(cfg: &AgentConfig) -> Result<AgentSpec, SpecError> {
    let jobs = cfg
        .scrape_configs
        .iter()
        .map(job_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let destinations = cfg
        .remote_write
        .iter()
        .map(sender_options)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AgentSpec {
        listen: Some(cfg.listen),
        external_labels: Labels::from_pairs(
            cfg.external_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ),
        shutdown_timeout: cfg.shutdown_timeout,
        jobs,
        destinations,
        outputs: Vec::new(),
        sender_metrics: None,
        endpoint_sets: Default::default(),
        durable: cfg
            .remote_write
            .iter()
            .filter_map(|rw| Some((rw.name.clone(), durable_options(rw)?)))
            .collect(),
        total_series_limit: usize::try_from(cfg.total_series_limit).unwrap_or(usize::MAX),
    })
}

/// Maps `queue_config.durable` of one `remote_write` entry onto the durable queue's options (used by
/// the aggregator's onward write too); `None` when the destination has no durable queue.
pub fn durable_options(rw: &RemoteWriteConfig) -> Option<surge_wal::DurableOptions> {
    use surge_config::{FsyncMode, WhenFullMode};
    let d = rw.queue_config.durable.as_ref()?;
    Some(surge_wal::DurableOptions {
        max_bytes: d.max_bytes,
        fsync: match d.fsync {
            FsyncMode::Always => surge_wal::FsyncPolicy::Always,
            FsyncMode::Batch => surge_wal::FsyncPolicy::Batch(d.fsync_interval),
            FsyncMode::Never => surge_wal::FsyncPolicy::Never,
        },
        when_full: match d.when_full {
            WhenFullMode::DropOldest => surge_wal::WhenFull::DropOldest,
            WhenFullMode::Backpressure => surge_wal::WhenFull::Backpressure,
        },
        memory_samples: rw.queue_config.capacity,
        ..surge_wal::DurableOptions::new(&d.dir)
    })
}

fn relabeler(
    rules: &[surge_config::RelabelConfig],
    what: String,
) -> Result<Arc<Relabeler>, SpecError> {
    Relabeler::new(rules).map(Arc::new).map_err(|e| SpecError {
        what,
        detail: e.to_string(),
    })
}

fn job_spec(sc: &ScrapeConfig) -> Result<JobSpec, SpecError> {
    let job = ScrapeJob {
        name: Arc::from(sc.job_name.as_str()),
        tier: sc.tier,
        interval: sc.interval(),
        timeout: sc.timeout(),
        scheme: sc.scheme.as_str().to_owned(),
        metrics_path: sc.metrics_path.clone(),
        params: sc
            .params
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
            .collect(),
        honor_labels: sc.honor_labels,
        honor_timestamps: sc.honor_timestamps,
        limits: ScrapeLimits {
            sample_limit: to_usize(sc.sample_limit),
            label_limit: to_usize(sc.label_limit),
            label_name_length_limit: to_usize(sc.label_name_length_limit),
            label_value_length_limit: to_usize(sc.label_value_length_limit),
            series_memory_limit: to_usize(sc.series_memory_limit),
            // Set by each scrape loop from the agent's outputs.
            queue_share: 0,
        },
        body_size_limit: to_usize(sc.body_size_limit),
        name_validation: sc.metric_name_validation_scheme,
        name_escaping: sc.name_escaping(),
        relabel: relabeler(
            &sc.relabel_configs,
            format!("job {}: relabel_configs", sc.job_name),
        )?,
        metric_relabel: relabeler(
            &sc.metric_relabel_configs,
            format!("job {}: metric_relabel_configs", sc.job_name),
        )?,
    };
    Ok(JobSpec {
        job: Arc::new(job),
        static_groups: sc
            .static_configs
            .iter()
            .map(|g| TargetGroup {
                targets: g.targets.clone(),
                labels: g
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                source: "static".into(),
            })
            .collect(),
        file_sd: sc
            .file_sd_configs
            .iter()
            .map(|f| FileDiscovery {
                patterns: f.files.clone(),
                refresh_interval: f.refresh_interval,
            })
            .collect(),
        dynamic: Vec::new(),
    })
}

/// Maps one `remote_write` entry onto the sender's options (used by the aggregator's onward write too).
pub fn sender_options(rw: &RemoteWriteConfig) -> Result<SenderOptions, SpecError> {
    let q = &rw.queue_config;
    let write_relabel = if rw.write_relabel_configs.is_empty() {
        None
    } else {
        let r = relabeler(
            &rw.write_relabel_configs,
            format!("remote_write {}: write_relabel_configs", rw.name),
        )?;
        let f: surge_sender::RelabelFn = Arc::new(move |l: &Labels| r.process_labels(l));
        Some(f)
    };
    Ok(SenderOptions {
        name: rw.name.clone(),
        url: rw.url.clone(),
        remote_timeout: rw.remote_timeout,
        headers: rw.headers.clone(),
        queue_config: QueueOptions {
            capacity: q.capacity,
            max_shards: q.max_shards,
            max_samples_per_send: q.max_samples_per_send,
            batch_send_deadline: q.batch_send_deadline,
            min_backoff: q.min_backoff,
            max_backoff: q.max_backoff,
            retry_on_http_429: q.retry_on_http_429,
        },
        write_relabel,
        tls: rw.tls_config.as_ref().map(|t| surge_sender::ClientTls {
            ca_file: t.ca_file.clone(),
            client_cert: t.cert_file.clone().zip(t.key_file.clone()),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
        bearer_token_file: rw.bearer_token_file.clone(),
    })
}

/// Reads one file-SD file through the config crate.
pub fn file_sd_loader() -> crate::agent::FileSdLoader {
    Arc::new(|p: &std::path::Path| {
        surge_config::load_file_sd(p)
            .map(|groups| {
                groups
                    .into_iter()
                    .map(|g| TargetGroup {
                        targets: g.targets,
                        labels: g.labels.into_iter().collect(),
                        source: p.display().to_string(),
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    })
}

/// Expands file-SD patterns through the config crate.
pub fn glob_expander() -> crate::agent::GlobExpander {
    Arc::new(|pattern: &str| surge_config::expand_file_sd_globs(&[pattern.to_owned()]))
}

/// 0 means "unlimited" in the config; `u64` sizes beyond the address space saturate.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
