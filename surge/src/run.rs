//! `surge run`: agent + aggregator in one process. Without `-c` it runs the embedded default: the demo
//! workload, scraped at 1 s, shipped to the in-process aggregator, shown live in the terminal.

use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use surge_agent::agent::Agent;
use surge_agent::from_config::{agent_spec, file_sd_loader, glob_expander};
use surge_aggregator::{AggregatorState, IngestObserver, Touched};
use surge_promql::{self as promql, Value};

use crate::{aggregator_cmd, process};

const DEFAULT_CONFIG: &str = include_str!("default.yaml");
const DEMO_PORT: u16 = 9111;
const DEMO_PODS: usize = 3;

/// Counts what the aggregator ingests, for the live view.
#[derive(Default)]
struct IngestTally {
    series_touched: AtomicU64,
    newest_ms: AtomicI64,
}

impl IngestObserver for IngestTally {
    fn on_ingest(&self, touched: &[Touched]) {
        self.series_touched
            .fetch_add(touched.len() as u64, Ordering::Relaxed);
        let newest = touched.iter().map(|t| t.newest_ms).max().unwrap_or(0);
        self.newest_ms.fetch_max(newest, Ordering::Relaxed);
    }
}

pub fn main(config: Option<&Path>, no_view: bool) -> ExitCode {
    let cfg = match config {
        Some(path) => match process::load_config(path) {
            Ok(c) => c,
            Err(code) => return code,
        },
        None => match surge_config::from_str_default_env(DEFAULT_CONFIG, "<embedded default>") {
            Ok(c) => c,
            Err(e) => {
                eprintln!("surge: embedded default config is invalid (a bug):\n{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let view = !no_view && std::io::stdout().is_terminal();
    if !view {
        process::init_logging();
    }
    let spec = match agent_spec(&cfg.agent) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("surge: {e}");
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
    rt.block_on(async move {
        if config.is_none() {
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            if let Err(e) = surge_workload::DemoWorkload::start(ip, DEMO_PORT, DEMO_PODS).await {
                eprintln!("surge: cannot start the demo workload on 127.0.0.1:{DEMO_PORT}: {e}");
                return ExitCode::FAILURE;
            }
        }
        let agg = match aggregator_cmd::start(&cfg).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("surge: aggregator on {}: {e:#}", cfg.aggregator.listen);
                return ExitCode::FAILURE;
            }
        };
        let tally = Arc::new(IngestTally::default());
        agg.state.add_observer(tally.clone());
        let registry = Arc::new(Mutex::new(prometheus_client::registry::Registry::default()));
        let agent = match Agent::start(spec, registry, file_sd_loader(), glob_expander()).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("surge: agent on {}: {e}", cfg.agent.listen);
                return ExitCode::FAILURE;
            }
        };
        if !view {
            tracing::info!(
                aggregator = %agg.addr,
                agent = ?agent.local_addr,
                "surge run: agent and aggregator started (Ctrl-C to stop)"
            );
        }
        let state = agg.state.clone();
        let autoscaler = agg.autoscaler.clone();
        let started = Instant::now();
        let live = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let targets = agent.targets().await;
                let up = targets.iter().filter(|t| t.health == "up").count();
                let touched = tally.series_touched.load(Ordering::Relaxed);
                let rate = (touched - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
                last = (Instant::now(), touched);
                let newest = tally.newest_ms.load(Ordering::Relaxed);
                let frame = Frame {
                    uptime: started.elapsed(),
                    series: state.cache().len(),
                    ingest_per_s: rate,
                    freshness_s: (newest > 0)
                        .then(|| (surge_aggregator::now_ms() - newest) as f64 / 1000.0),
                    targets_up: up,
                    targets: targets.len(),
                    rows: key_series(&state),
                    decisions: shown_decisions(&autoscaler),
                };
                if view {
                    frame.draw();
                } else if frame.uptime.as_secs().is_multiple_of(10) {
                    tracing::info!("{}", frame.one_line());
                }
            }
        };
        tokio::select! {
            _ = process::shutdown_signal() => {}
            _ = live => {}
        }
        if view {
            println!("\nstopping: writing staleness markers and flushing queues…");
        }
        agent.shutdown().await;
        agg.shutdown(Duration::from_secs(5)).await;
        ExitCode::SUCCESS
    })
}

/// The queries the live view shows: what a scaling rule for the demo would read.
const KEY_QUERIES: [(&str, &str, &str); 4] = [
    (
        "request rate",
        "sum(rate(http_requests_total[30s]))",
        "req/s",
    ),
    (
        "p95 latency",
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[30s])))",
        "s",
    ),
    ("queue depth", "sum(queue_depth)", "jobs"),
    (
        "error ratio",
        "sum(rate(http_requests_total{code=\"500\"}[30s])) / sum(rate(http_requests_total[30s]))",
        "",
    ),
];

struct Row {
    label: &'static str,
    query: &'static str,
    unit: &'static str,
    value: Result<Option<f64>, String>,
}

fn key_series(state: &AggregatorState) -> Vec<Row> {
    let opts = state.autoscaling_eval_options();
    KEY_QUERIES
        .iter()
        .map(|(label, query, unit)| {
            let value = promql::parse(query)
                .map_err(|e| e.to_string())
                .and_then(|expr| {
                    promql::eval_instant(state.cache(), &expr, surge_aggregator::now_ms(), &opts)
                        .map_err(|e| e.to_string())
                })
                .map(|v| match v {
                    Value::Scalar(x) => Some(x),
                    Value::Vector(v) => v.first().map(|s| s.value),
                    _ => None,
                });
            Row {
                label,
                query,
                unit,
                value,
            }
        })
        .collect()
}

struct Frame {
    uptime: Duration,
    series: usize,
    ingest_per_s: f64,
    freshness_s: Option<f64>,
    targets_up: usize,
    targets: usize,
    rows: Vec<Row>,
    decisions: Vec<Arc<surge_autoscaler::DecisionRecord>>,
}

impl Frame {
    fn value(r: &Row) -> String {
        match &r.value {
            Ok(Some(v)) if v.is_nan() => "NaN".into(),
            Ok(Some(v)) => format!("{v:.3} {}", r.unit),
            Ok(None) => "(no fresh data)".into(),
            Err(e) => format!("error: {e}"),
        }
    }

    fn one_line(&self) -> String {
        let vals: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{}={}", r.label, Self::value(r)))
            .collect();
        let last = self
            .decisions
            .first()
            .map(|d| {
                format!(
                    "; decision {}: {} → {} ({})",
                    d.policy, d.replicas_before, d.replicas_after, d.decision.reason
                )
            })
            .unwrap_or_default();
        format!(
            "targets {}/{} up, {} series, {:.0} series/s ingested, {}{last}",
            self.targets_up,
            self.targets,
            self.series,
            self.ingest_per_s,
            vals.join(", ")
        )
    }

    fn draw(&self) {
        let mut out = String::new();
        out.push_str("\x1b[2J\x1b[H");
        out.push_str(&format!(
            "\x1b[1msurge run\x1b[0m  demo workload → agent :9092 (1 s scrapes) → aggregator :9091   up {}s   Ctrl-C to stop\n\n",
            self.uptime.as_secs()
        ));
        let fresh = self
            .freshness_s
            .map(|f| format!("{f:.2} s"))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "targets {}/{} up   series {}   ingest {:.0} series/s   newest sample age {}\n\n",
            self.targets_up, self.targets, self.series, self.ingest_per_s, fresh
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "  {:<14} {:>20}   {}\n",
                r.label,
                Self::value(r),
                r.query
            ));
        }
        out.push_str("\n\x1b[1mdecisions\x1b[0m (the latest, then the latest changes; sample → decision latency)\n");
        if self.decisions.is_empty() {
            out.push_str("  (none yet: the engine decides when the first samples land)\n");
        }
        for d in &self.decisions {
            let latency = d
                .trigger_sample_ms
                .map(|t| format!("{:>5} ms", d.decided_at_ms - t))
                .unwrap_or_else(|| "    -   ".into());
            let inputs: Vec<String> = d
                .inputs
                .iter()
                .map(|i| match (i.value, &i.error) {
                    (Some(v), _) => format!("{}={v:.1}", i.metric),
                    (None, Some(e)) => format!("{}: {e}", i.metric),
                    _ => format!("{}: {} pods", i.metric, i.per_pod.len()),
                })
                .collect();
            out.push_str(&format!(
                "  {} {:<6} {:>2} → {:<2} {latency}  {}  [{}]\n",
                format_clock(d.decided_at_ms),
                d.policy,
                d.replicas_before,
                d.replicas_after,
                d.decision.reason,
                inputs.join(", ")
            ));
        }
        out.push_str("\nPrometheus API: http://127.0.0.1:9091/api/v1/query   own metrics: :9091/metrics, :9092/metrics\n");
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// `HH:MM:SS` (UTC) of a Unix-ms timestamp.
fn format_clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The latest decision, then the five latest that changed the replica count: every sample triggers an
/// evaluation, so most decisions only confirm the current count.
fn shown_decisions(a: &surge_autoscaler::Autoscaler) -> Vec<Arc<surge_autoscaler::DecisionRecord>> {
    let all = a.decisions(None, 256);
    let mut shown: Vec<_> = all.first().cloned().into_iter().collect();
    shown.extend(
        all.iter()
            .skip(1)
            .filter(|d| d.replicas_before != d.replicas_after)
            .take(5)
            .cloned(),
    );
    shown
}
