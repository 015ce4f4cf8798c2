//! `surge bench ingest`: remote-write ingest over real HTTP on loopback and instant-query latency, surge's
//! aggregator beside VictoriaMetrics (single-node) in the same run, each as its own process.
//!
//! Clients send the agent's batch shape (2,000 samples per request, one sample per series, fresh
//! timestamps every round) with K connections for D seconds; then `sum(rate(bench_metric[30s]))` over all
//! series is asked N times through each one's Prometheus API.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};

use crate::proc::{Killed, cpu_seconds, free_port, rss_mib};

pub struct IngestBenchArgs {
    pub series: usize,
    pub seconds: u64,
    pub connections: usize,
    pub queries: usize,
    pub json: bool,
}

const BATCH: usize = 2000;

/// Runs the benchmark and prints its report (run from the `surge` binary: contenders are spawned from
/// `std::env::current_exe()`).
pub async fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let blocks: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.series)
            .map(|i| {
                let s = i.to_string();
                encode_label_block(&Labels::from_pairs([
                    ("__name__", "bench_metric"),
                    ("job", "bench"),
                    ("instance", "10.0.0.1:8080"),
                    ("series", s.as_str()),
                ]))
            })
            .collect(),
    );
    let mut results = Vec::new();

    let port = free_port();
    let cfg = dir.path().join("agg.yaml");
    // The clients write up to 6 hours of history in seconds: the cache must hold it (the default keeps
    // 5 minutes and would reject the older samples as too old, which is a different, cheaper path).
    std::fs::write(
        &cfg,
        format!("aggregator:\n  listen: 127.0.0.1:{port}\n  cache: {{retention: 7h}}\n"),
    )?;
    let exe = std::env::current_exe()?;
    let surge = Killed(
        Command::new(&exe)
            .args(["aggregator", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .spawn()?,
    );
    results.push(
        contend(
            "surge aggregator",
            &surge,
            port,
            "/api/v1/write",
            &args,
            &blocks,
        )
        .await?,
    );
    drop(surge);

    let port = free_port();
    let vm = Killed(
        Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg("-retentionPeriod=1d")
            .arg("-search.latencyOffset=0s")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("starting victoria-metrics (apt-get install victoria-metrics): {e}")
            })?,
    );
    results.push(
        contend(
            "victoria-metrics",
            &vm,
            port,
            "/api/v1/write",
            &args,
            &blocks,
        )
        .await?,
    );
    drop(vm);

    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            json!({"series": args.series, "seconds": args.seconds, "connections": args.connections, "results": results})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} series, {} samples per request, {} connections, {} s; query sum(rate(bench_metric[30s])) × {}",
        args.series, BATCH, args.connections, args.seconds, args.queries
    )?;
    writeln!(
        out,
        "{:<18} {:>14} {:>10} {:>9} {:>12} {:>12}",
        "contender", "samples/s", "cpu", "rss MiB", "query p50 ms", "query p99 ms"
    )?;
    for r in &results {
        writeln!(
            out,
            "{:<18} {:>14.0} {:>10.2} {:>9.1} {:>12.3} {:>12.3}",
            r["name"].as_str().unwrap_or(""),
            r["samples_per_s"].as_f64().unwrap_or(0.0),
            r["cpu_cores"].as_f64().unwrap_or(0.0),
            r["rss_mib"].as_f64().unwrap_or(0.0),
            r["query_p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["query_p99_ms"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    if let [s, v] = &results[..] {
        let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        writeln!(
            out,
            "surge / victoria-metrics: ingest ×{:.2}, query p99 ×{:.2} faster",
            f(s, "samples_per_s") / f(v, "samples_per_s"),
            f(v, "query_p99_ms") / f(s, "query_p99_ms")
        )?;
    }
    Ok(())
}

async fn contend(
    name: &str,
    proc_: &Killed,
    port: u16,
    path: &str,
    args: &IngestBenchArgs,
    blocks: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<serde_json::Value> {
    let client = surge_agent::http_client()?;
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if client
            .get(format!("{base}/api/v1/labels"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("bench: {name}: ingesting for {} s", args.seconds);
    let pid = proc_.0.id();
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Round r writes every series once with timestamp start + r s, split into requests of BATCH series;
    // connections take requests from a shared counter so each series' samples arrive in order.
    let next = Arc::new(AtomicU64::new(0));
    // Rounds are 1 s apart and run far faster than real time: start 6 h back so every round stays in the
    // past (both stores refuse samples from the future) for 21,600 rounds, e.g. 10k series at 3 M
    // samples/s for over a minute. (Starting 23 h back, VictoriaMetrics answered the query with nothing.)
    let start_ms = surge_aggregator::now_ms() - 6 * 3_600_000;
    let per_round = blocks.len().div_ceil(BATCH) as u64;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, url, blocks) = (client.clone(), format!("{base}{path}"), blocks.clone());
        let (sent, failed, stop, next) = (sent.clone(), failed.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut enc = snap::raw::Encoder::new();
            let mut raw = Vec::with_capacity(BATCH * 80);
            while !stop.load(Ordering::Relaxed) {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let (round, part) = (k / per_round, (k % per_round) as usize);
                raw.clear();
                let lo = part * BATCH;
                let hi = (lo + BATCH).min(blocks.len());
                for (i, b) in blocks[lo..hi].iter().enumerate() {
                    let s = Sample {
                        timestamp_ms: start_ms + round as i64 * 1000,
                        value: (round * 10 + (i % 7) as u64) as f64,
                    };
                    encode_series(&mut raw, b, &[s]);
                }
                let body = compress(&raw, &mut enc);
                let r = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        sent.fetch_add((hi - lo) as u64, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid)? - cpu0) / wall;
    let (rss, _) = rss_mib(pid)?;
    let samples_per_s = sent.load(Ordering::Relaxed) as f64 / wall;
    let rounds = next.load(Ordering::Relaxed) / per_round.max(1);

    // Query at the last fully written round's time, so both answer over the same data.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = (start_ms + rounds.saturating_sub(1) as i64 * 1000) as f64 / 1000.0;
    let mut lat = Vec::new();
    let mut answer = None;
    for _ in 0..args.queries {
        let q0 = Instant::now();
        let r = client
            .get(format!("{base}/api/v1/query"))
            .query(&[
                ("query", "sum(rate(bench_metric[30s]))"),
                ("time", &format!("{at:.3}")),
            ])
            .send()
            .await?;
        let body = r.bytes().await?;
        lat.push(q0.elapsed().as_secs_f64() * 1000.0);
        if answer.is_none() {
            answer = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .map(|v| v["data"]["result"][0]["value"][1].clone());
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((p / 100.0) * (lat.len().max(1) - 1) as f64).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(json!({
        "name": name, "samples_per_s": samples_per_s, "failed_requests": failed.load(Ordering::Relaxed),
        "cpu_cores": cpu, "rss_mib": rss, "rounds": rounds,
        "query_p50_ms": pct(50.0), "query_p99_ms": pct(99.0), "query_answer": answer,
    }))
}
