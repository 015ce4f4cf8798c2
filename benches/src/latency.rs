//! `surge bench` (latency): N synthetic targets × M series, the agent and the aggregator as separate
//! processes with one HPA policy on the targets' `bench_load` gauge, and load steps at known instants.
//!
//! Reported, as p50/p95/p99:
//! - scrape → decision: for every decision triggered by ingest, decision time − the triggering sample's
//!   timestamp (the scrape's start, as Prometheus stamps samples; it includes the scrape itself);
//! - load step → decision: from the instant the targets' value changed to the first decision whose input
//!   shows the change (first reaction), and to the first decision that has seen every target's new value
//!   (fully reflected: bounded by the scrape interval, since targets are spread over it);
//!
//! plus CPU (cores) and RSS of each process.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use surge_workload::BenchTargets;

use crate::proc::{Killed, cpu_seconds, free_port, rss_mib};

pub struct LatencyBenchArgs {
    pub targets: usize,
    pub series: usize,
    pub steps: usize,
    pub json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.total_cmp(b));
    json!({"n": v.len(), "p50_ms": percentile(&v, 50.0), "p95_ms": percentile(&v, 95.0),
           "p99_ms": percentile(&v, 99.0), "max_ms": v.last().copied().unwrap_or(f64::NAN)})
}

/// Runs the benchmark and prints its report (run from the `surge` binary: contenders are spawned from
/// `std::env::current_exe()`).
pub async fn run(args: LatencyBenchArgs) -> anyhow::Result<()> {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let targets = BenchTargets::start(ip, args.targets, args.series).await?;
    targets.step(10.0);
    let dir = tempfile::tempdir()?;
    let agg_port = free_port();
    let mut groups = String::new();
    for i in 0..args.targets {
        groups.push_str(&format!(
            "        - targets: ['{}']\n          labels: {{__metrics_path__: /t/{i}/metrics}}\n",
            targets.addr
        ));
    }
    let cfg = format!(
        r#"agent:
  listen: 127.0.0.1:{agent_port}
  scrape_configs:
    - job_name: bench
      tier: critical
      static_configs:
{groups}  remote_write:
    - url: http://127.0.0.1:{agg_port}/api/v1/write
      queue_config: {{capacity: 2000000}}
aggregator:
  listen: 127.0.0.1:{agg_port}
policies:
  - name: bench
    initial_replicas: 10
    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {{name: bench, namespace: bench}}
      spec:
        scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: bench}}
        minReplicas: 1
        maxReplicas: 1000
        metrics:
          - type: External
            external:
              metric: {{name: load}}
              target: {{type: AverageValue, averageValue: "100"}}
    metrics:
      load: sum(bench_load)
"#,
        agent_port = free_port(),
    );
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, cfg)?;
    let exe = std::env::current_exe()?;
    let aggregator = Killed(
        Command::new(&exe)
            .args(["aggregator", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .spawn()?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = Killed(
        Command::new(&exe)
            .args(["agent", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .spawn()?,
    );
    let client = surge_agent::http_client()?;
    let base = format!("http://127.0.0.1:{agg_port}");
    eprintln!(
        "bench: {} targets × {} series at 1 s; warming up",
        args.targets, args.series
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (agg_cpu0, agent_cpu0) = (cpu_seconds(aggregator.0.id())?, cpu_seconds(agent.0.id())?);
    let t0 = std::time::Instant::now();

    // Decisions by time, gathered by polling (each record carries its own timestamps, so polling adds no
    // error to the figures).
    let mut seen: BTreeMap<i64, Value> = BTreeMap::new();
    let mut steps = Vec::new();
    let n = args.targets as f64;
    for k in 0..args.steps {
        let before = if k == 0 {
            10.0
        } else {
            100.0 + 50.0 * (k as f64 - 1.0)
        };
        let after = 100.0 + 50.0 * k as f64;
        let at = targets.step(after) as i64;
        steps.push((at, before * n, after * n));
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            poll(&client, &base, &mut seen).await;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let agg_cpu = (cpu_seconds(aggregator.0.id())? - agg_cpu0) / wall;
    let agent_cpu = (cpu_seconds(agent.0.id())? - agent_cpu0) / wall;
    let (agg_rss, _) = rss_mib(aggregator.0.id())?;
    let (agent_rss, _) = rss_mib(agent.0.id())?;
    let first_ts = steps.first().map(|s| s.0).unwrap_or(0);

    let scrape_to_decision: Vec<f64> = seen
        .values()
        .filter(|d| {
            d["trigger"] == "ingest" && d["decided_at_ms"].as_i64().unwrap_or(0) >= first_ts
        })
        .filter_map(|d| {
            Some((d["decided_at_ms"].as_i64()? - d["trigger_sample_ms"].as_i64()?) as f64)
        })
        .collect();
    let mut first_reaction = Vec::new();
    let mut fully = Vec::new();
    for &(at, before, after) in &steps {
        let after_step = seen.range(at..).map(|(_, d)| d);
        let mut got_first = false;
        for d in after_step {
            let Some(v) = d["inputs"][0]["value"].as_f64() else {
                continue;
            };
            let t = d["decided_at_ms"].as_i64().unwrap_or(at);
            if !got_first && (v - before).abs() > 1e-6 {
                first_reaction.push((t - at) as f64);
                got_first = true;
            }
            if (v - after).abs() < 1e-6 {
                fully.push((t - at) as f64);
                break;
            }
        }
    }
    let report = json!({
        "targets": args.targets, "series_per_target": args.series, "interval_s": 1, "steps": args.steps,
        "decisions": seen.len(),
        "scrape_to_decision": stats(scrape_to_decision),
        "load_step_to_first_decision": stats(first_reaction),
        "load_step_to_fully_reflected_decision": stats(fully),
        "processes": {
            "agent": {"cpu_cores": agent_cpu, "rss_mib": agent_rss},
            "aggregator": {"cpu_cores": agg_cpu, "rss_mib": agg_rss},
        },
        "reference": {"hpa_sync_period_s": 15, "keda_default_polling_interval_s": 30},
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{report}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} targets × {} series at 1 s, {} load steps, {} decisions",
        args.targets,
        args.series,
        args.steps,
        seen.len()
    )?;
    writeln!(
        out,
        "{:<38} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "n", "p50", "p95", "p99", "max"
    )?;
    for key in [
        "scrape_to_decision",
        "load_step_to_first_decision",
        "load_step_to_fully_reflected_decision",
    ] {
        let s = &report[key];
        writeln!(
            out,
            "{:<38} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            key.replace('_', " "),
            s["n"],
            s["p50_ms"].as_f64().unwrap_or(f64::NAN),
            s["p95_ms"].as_f64().unwrap_or(f64::NAN),
            s["p99_ms"].as_f64().unwrap_or(f64::NAN),
            s["max_ms"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    writeln!(
        out,
        "agent:      {agent_cpu:.3} cores, {agent_rss:.1} MiB RSS"
    )?;
    writeln!(out, "aggregator: {agg_cpu:.3} cores, {agg_rss:.1} MiB RSS")?;
    writeln!(
        out,
        "for reference: the HPA syncs every 15 s, KEDA polls every 30 s by default"
    )?;
    Ok(())
}

async fn poll(client: &reqwest::Client, base: &str, seen: &mut BTreeMap<i64, Value>) {
    let Ok(resp) = client
        .get(format!("{base}/api/v1/decisions?policy=bench&limit=1000"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return;
    };
    let Ok(bytes) = resp.bytes().await else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return;
    };
    for d in v["data"].as_array().into_iter().flatten() {
        if let Some(t) = d["decided_at_ms"].as_i64() {
            seen.insert(t, d.clone());
        }
    }
}
