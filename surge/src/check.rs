//! `surge check-config FILE`: everything `surge agent` and `surge aggregator` would refuse at start that
//! needs neither the network nor a cluster, every problem at once, each at the field it is about:
//!
//! ```text
//! load + validate (surge-config) ─▶ agent spec (surge-agent; its errors carry no position)
//!   ─▶ remote-write destinations, agent and aggregator (surge-agent sender_options, surge-sender validate)
//!   ─▶ policies (surge-autoscaler build_policies)
//!   ─▶ kubernetes_api: metric rules (rules::check), serving pair, requestheader CA, forward files (surge-metrics-api)
//! ```
//!
//! The checks are the crates' own; this module only maps what they find onto config positions. Not
//! checked: what needs a cluster (Kubernetes discovery, the Lease and `/scale` of `scale`-mode policies)
//! or the network (binding ports, reaching receivers and the forward target).
//!
//! Files the config names (certificates, keys, CAs) usually come from Secrets mounted into the pod, so
//! a config checked where it is rendered (CI, a laptop) names files that are not there. By default a
//! group of files none of which exists here (a certificate and its key, a CA, the forward target's
//! files) is listed as not checked; a group some of which exists is checked in full (a half-present pair
//! is a mistake anywhere). [`Files::Required`] (`--require-files`, for where the files are: inside the
//! pod) makes every missing file an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use surge_agent::from_config::{agent_spec, sender_options};
use surge_config::{
    Config, ConfigError, ConfigErrors, FieldPath, KubernetesApiConfig, RemoteWriteConfig,
};
use surge_metrics_api::ClientCa;
use surge_metrics_api::forward::{self, ForwardFile};
use surge_metrics_api::rules::{self, RuleField, RuleList};
use surge_metrics_api::tls::{self, PairFile};
use surge_sender::{SenderOptionError, SenderOptions};

use crate::process;

/// How files the config names are treated (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Groups of files none of which exists here are listed as not checked.
    WhenPresent,
    /// Every file must exist and load.
    Required,
}

/// What a config that passes every check sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    pub scrape_jobs: usize,
    /// The agent's destinations and the aggregator's onward ones.
    pub remote_writes: usize,
    pub policies: usize,
    /// External and custom metrics of `aggregator.kubernetes_api`.
    pub metric_rules: usize,
    /// Files not checked because none of their group exists here ([`Files::WhenPresent`]).
    pub unchecked_files: Vec<PathBuf>,
}

/// `surge check-config FILE`: prints every problem (exit 1) or a one-line summary.
pub fn main(file: &Path, files: Files) -> ExitCode {
    let cfg = match process::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match check(&cfg, files) {
        Ok(s) => {
            println!(
                "{}: ok ({}, {}, {}, {})",
                file.display(),
                count(s.scrape_jobs, "scrape job", "scrape jobs"),
                count(
                    s.remote_writes,
                    "remote-write destination",
                    "remote-write destinations"
                ),
                count(s.policies, "policy", "policies"),
                count(s.metric_rules, "metric rule", "metric rules"),
            );
            for f in &s.unchecked_files {
                println!(
                    "  not checked: {} is not here (a mounted Secret? check where it is with --require-files)",
                    f.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for line in errors.to_lines() {
                eprintln!("{line}");
            }
            eprintln!("surge: {} has {} problem(s)", file.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs every offline start-time check on a loaded config; the problems come in document order.
pub fn check(cfg: &Config, files: Files) -> Result<CheckSummary, ConfigErrors> {
    let mut errors = Vec::new();
    let mut unchecked_files = Vec::new();
    let root = FieldPath::root();
    // The agent spec fails on its first problem, with no position: reported as it is.
    let scrape_jobs = match agent_spec(&cfg.agent) {
        Ok(spec) => spec.jobs.len(),
        Err(e) => {
            errors.push(ConfigError {
                position: None,
                path: FieldPath::root(),
                ..cfg.error_at(FieldPath::root(), e.to_string())
            });
            0
        }
    };
    // The agent spec already maps (and reports) the agent's destinations; the aggregator's are new here.
    let agent_rw = root.key("agent").key("remote_write");
    let mut destinations = Destinations {
        files,
        unchecked: &mut unchecked_files,
        errors: &mut errors,
    };
    destinations.check(cfg, &agent_rw, &cfg.agent.remote_write, false);
    let aggregator_rw = root.key("aggregator").key("remote_write");
    destinations.check(cfg, &aggregator_rw, &cfg.aggregator.remote_write, true);
    let policies = match surge_autoscaler::build_policies(cfg) {
        Ok(p) => p.len(),
        Err(e) => {
            errors.extend(e);
            0
        }
    };
    let metric_rules = match &cfg.aggregator.kubernetes_api {
        Some(k) => {
            let mut present = |group: &[&Path]| checked_here(files, group, &mut unchecked_files);
            metrics_api(cfg, k, &mut present, &mut errors);
            k.external_metrics.len() + k.custom_metrics.len()
        }
        None => 0,
    };
    match ConfigErrors::in_document_order(errors) {
        Some(e) => Err(e),
        None => Ok(CheckSummary {
            scrape_jobs,
            remote_writes: cfg.agent.remote_write.len() + cfg.aggregator.remote_write.len(),
            policies,
            metric_rules,
            unchecked_files,
        }),
    }
}

/// Whether a group of files is checked here: always with [`Files::Required`], else when any of them is
/// on this machine; a group that is not is added to `unchecked`.
fn checked_here(files: Files, group: &[&Path], unchecked: &mut Vec<PathBuf>) -> bool {
    let here = files == Files::Required || group.iter().any(|f| f.exists());
    if !here {
        unchecked.extend(group.iter().map(|f| f.to_path_buf()));
    }
    here
}

/// Where the remote-write destinations' problems and unchecked files go.
struct Destinations<'a> {
    files: Files,
    unchecked: &'a mut Vec<PathBuf>,
    errors: &'a mut Vec<ConfigError>,
}

impl Destinations<'_> {
    /// Each destination as its sender would start it (the aggregator refuses invalid options; the agent
    /// would disable the destination and drop everything sent to it). `report_mapping`: whether a
    /// destination that cannot be mapped onto sender options is reported here (or already was). A
    /// `tls_config` none of whose files is on this machine (a mounted Secret) is listed as not checked,
    /// unless every file is required.
    fn check(
        &mut self,
        cfg: &Config,
        at: &FieldPath,
        rws: &[RemoteWriteConfig],
        report_mapping: bool,
    ) {
        for (i, rw) in rws.iter().enumerate() {
            let at = at.index(i);
            let opts: SenderOptions = match sender_options(rw) {
                Ok(o) => o,
                Err(e) => {
                    if report_mapping {
                        self.errors
                            .push(cfg.error_at(at.key("write_relabel_configs"), e.detail));
                    }
                    continue;
                }
            };
            let tls_files: Vec<&Path> = rw
                .tls_config
                .iter()
                .flat_map(|t| [&t.ca_file, &t.cert_file, &t.key_file])
                .flatten()
                .map(PathBuf::as_path)
                .collect();
            let tls_absent =
                !tls_files.is_empty() && !checked_here(self.files, &tls_files, self.unchecked);
            if let Err(invalid) = opts.validate() {
                for problem in &invalid.problems {
                    if tls_absent && matches!(problem, SenderOptionError::Tls(_)) {
                        continue;
                    }
                    let (field, message) = sender_problem(problem);
                    self.errors.push(cfg.error_at(at.join(&field), message));
                }
            }
        }
    }
}

/// The field of a `remote_write` entry a sender option problem is about, and what it says there.
fn sender_problem(p: &SenderOptionError) -> (FieldPath, String) {
    let at = FieldPath::root();
    let field = match p {
        SenderOptionError::Url { .. } => at.key("url"),
        SenderOptionError::Header { name } | SenderOptionError::ReservedHeader { name } => {
            at.key("headers").key(name.as_str())
        }
        SenderOptionError::Zero { field } => field.split('.').fold(at, |p, k| p.key(k)),
        SenderOptionError::Backoff { .. } => at.key("queue_config").key("min_backoff"),
        SenderOptionError::Tls(_) => at.key("tls_config"),
    };
    // The sender's messages start with the field they are about, which the position already names.
    let text = p.to_string();
    let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
    (field, message.to_owned())
}

/// `aggregator.kubernetes_api` as `MetricsApi::new` loads it: the metric rules, the serving certificate,
/// the requestheader CA and, when forwarding, the forward target's files. `present` says whether a group
/// of files is to be checked here.
fn metrics_api(
    cfg: &Config,
    k: &KubernetesApiConfig,
    present: &mut dyn FnMut(&[&Path]) -> bool,
    errors: &mut Vec<ConfigError>,
) {
    let at = FieldPath::root().key("aggregator").key("kubernetes_api");
    // The options exactly as the aggregator maps them at start.
    let opts = crate::aggregator_cmd::k8s_api_options(k);
    let (external, custom) = (&opts.external_metrics, &opts.custom_metrics);
    for p in rules::check(external, custom) {
        let list = match p.list {
            RuleList::External => "external_metrics",
            RuleList::Custom => "custom_metrics",
        };
        let field = match p.field {
            RuleField::Name => "name",
            RuleField::Query => "query",
        };
        errors.push(cfg.error_at(at.key(list).index(p.index).key(field), p.reason()));
    }
    if let Some(t) = k
        .tls
        .as_ref()
        .filter(|t| present(&[&t.cert_file, &t.key_file]))
    {
        for (file, e) in tls::check_pair(&t.cert_file, &t.key_file) {
            let field = match file {
                PairFile::Cert => "cert_file",
                PairFile::Key => "key_file",
            };
            errors.push(cfg.error_at(at.key("tls").key(field), e.to_string()));
        }
    }
    // `from_cluster` is read from the cluster at start: nothing to check offline.
    if let Some(r) = &opts.requestheader
        && let ClientCa::File(ca) = &r.client_ca
        && present(&[ca])
        && let Err(e) = tls::read_roots(ca)
    {
        errors.push(cfg.error_at(at.key("requestheader").key("client_ca_file"), e.to_string()));
    }
    // The forward client is built only when there is somewhere to forward to.
    if let Some(forward) = &opts.forward_external {
        let named: Vec<&Path> = forward
            .ca_file
            .iter()
            .map(PathBuf::as_path)
            .chain(
                forward
                    .client_cert
                    .iter()
                    .flat_map(|(c, k)| [c.as_path(), k.as_path()]),
            )
            .collect();
        if !named.is_empty() && !present(&named) {
            return;
        }
        for (file, e) in forward::check_files(forward) {
            let field = match file {
                ForwardFile::Ca => "ca_file",
                ForwardFile::ClientCert => "cert_file",
                ForwardFile::ClientKey => "key_file",
            };
            errors.push(cfg.error_at(at.key("forward_external_tls").key(field), e.to_string()));
        }
    }
}
