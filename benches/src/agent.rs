//! `surge bench agent`: the agent end to end (scrape → parse → relabel → queue → remote-write) on
//! N synthetic targets × M series at 1 s, measured as a separate process (CPU from /proc, RSS), beside
//! the same targets scraped by Prometheus in agent mode and by vmagent in the same run.
//!
//! Each contender runs alone (one after the other) so they do not steal each other's cores; the targets and
//! the remote-write sink live in this process and are not counted.
//!
//! With `--outputs`, surge also runs with a second output beside the same remote-write: EMF on stdout
//! (a pipe this process drains and counts, as the CloudWatch agent or Fluent Bit would read it), and
//! OTLP over HTTP/protobuf to `/v1/metrics` on the sink, which only counts bytes (no decoding: the
//! figure is the agent's cost, not a receiver's).

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::json;
use surge_workload::BenchTargets;

use crate::proc::{Killed, cpu_seconds, free_port, rss_mib};

/// Options of `surge bench agent`.
pub struct AgentBenchArgs {
    pub targets: usize,
    pub series: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub peers: bool,
    /// Also run surge with EMF (stdout) and with OTLP (HTTP) beside remote-write.
    pub outputs: bool,
    pub json: bool,
    /// Also measure surge with `queue_config.durable` on (see [`durable_contender`]).
    pub durable: bool,
    /// Also measure this surge binary (e.g. the previous build), plain config: a before/after in one run.
    pub baseline_exe: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Sink {
    samples: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    /// Bytes of the second output (OTLP request bodies, EMF lines read from the agent's stdout).
    side_bytes: AtomicU64,
}

/// An OTLP/HTTP receiver that only counts the body's bytes; an empty 200 is an
/// `ExportMetricsServiceResponse` without a partial success.
async fn sink_otlp(State(s): State<Arc<Sink>>, body: Bytes) -> axum::http::StatusCode {
    s.side_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    axum::http::StatusCode::OK
}

async fn sink_write(State(s): State<Arc<Sink>>, body: Bytes) -> axum::http::StatusCode {
    let mut dec = snap::raw::Decoder::new();
    let mut buf = Vec::new();
    if surge_proto::remote_write::decompress(&body, 64 << 20, &mut dec, &mut buf).is_err() {
        return axum::http::StatusCode::BAD_REQUEST;
    }
    let mut n = 0u64;
    let r = surge_proto::remote_write::for_each_series(&buf, |s| {
        n += s.samples().count() as u64;
        Ok::<(), ()>(())
    });
    if r.is_err() {
        return axum::http::StatusCode::BAD_REQUEST;
    }
    s.samples.fetch_add(n, Ordering::Relaxed);
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    axum::http::StatusCode::NO_CONTENT
}

/// One contender's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Figures {
    name: String,
    cpu_cores: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    samples_per_s: f64,
    requests_per_s: f64,
    bytes_per_sample: f64,
    /// CPU seconds per million samples delivered: the floor is ≤ 0.5.
    cpu_s_per_m_samples: f64,
    /// Bytes per second of the second output, when there is one.
    side_output_bytes_per_s: f64,
}

/// Runs the benchmark and prints its report (run from the `surge` binary: contenders are spawned from
/// `std::env::current_exe()`).
pub async fn run(args: AgentBenchArgs) -> anyhow::Result<()> {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let targets = BenchTargets::start(ip, args.targets, args.series).await?;
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let sink_addr = listener.local_addr()?;
    let app = Router::new()
        .route("/api/v1/write", post(sink_write))
        .route("/v1/metrics", post(sink_otlp))
        .with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let scrape = scrape_configs_yaml(&targets);
    let rw = format!("http://{sink_addr}/api/v1/write");

    let mut results = Vec::new();
    let exe = std::env::current_exe()?;
    let mut variants = vec![("surge agent", String::new())];
    if args.outputs {
        variants.push((
            "surge agent + EMF (stdout)",
            "  emf:\n    - namespace: surge\n      dimensions: [job, instance]\n      queue_config: {capacity: 1000000}\n".to_owned(),
        ));
        variants.push((
            "surge agent + OTLP (HTTP)",
            format!(
                "  otlp:\n    - endpoint: http://{sink_addr}\n      queue: {{capacity: 1000000}}\n"
            ),
        ));
    }
    for (i, (name, extra)) in variants.into_iter().enumerate() {
        let surge_cfg = dir.path().join(format!("surge-{i}.yaml"));
        std::fs::write(
            &surge_cfg,
            format!(
                "agent:\n  listen: 127.0.0.1:0\n  scrape_configs:\n{}\n  remote_write:\n    - url: {rw}\n      queue_config: {{capacity: 1000000}}\n{extra}",
                indent(&scrape, 4)
            ),
        )?;
        let counted = sink.clone();
        results.push(
            measure(name, &args, &sink, || {
                let mut child = Command::new(&exe)
                    .arg("agent")
                    .arg("-c")
                    .arg(&surge_cfg)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .spawn()?;
                if let Some(stdout) = child.stdout.take() {
                    drain(stdout, counted);
                }
                Ok(child)
            })
            .await?,
        );
    }
    let surge_cfg = dir.path().join("surge-0.yaml");
    if args.durable {
        results.push(durable_contender(&exe, &args, &sink, dir.path(), &scrape, &rw).await?);
    }
    if let Some(base) = &args.baseline_exe {
        results.push(baseline_contender(base, &args, &sink, &surge_cfg).await?);
    }
    if args.peers {
        let prom_cfg = dir.path().join("prometheus.yaml");
        std::fs::write(
            &prom_cfg,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 800ms}}\nscrape_configs:\n{}\nremote_write:\n  - url: {rw}\n",
                indent(&scrape, 2)
            ),
        )?;
        let data = dir.path().join("prom-agent");
        let port = free_port();
        results.push(
            measure("prometheus --enable-feature=agent", &args, &sink, || {
                Command::new("prometheus")
                    .arg("--enable-feature=agent")
                    .arg(format!("--config.file={}", prom_cfg.display()))
                    .arg(format!("--storage.agent.path={}", data.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--log.level=warn")
                    .stderr(Stdio::null())
                    .spawn()
            })
            .await?,
        );
        let vm_data = dir.path().join("vmagent");
        let port = free_port();
        results.push(
            measure("vmagent", &args, &sink, || {
                Command::new("vmagent")
                    .arg(format!("-promscrape.config={}", prom_cfg.display()))
                    .arg(format!("-remoteWrite.url={rw}"))
                    .arg(format!("-remoteWrite.tmpDataPath={}", vm_data.display()))
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .arg("-promscrape.config.strictParse=false")
                    .arg("-loggerLevel=ERROR")
                    .stdout(Stdio::null())
                    .spawn()
            })
            .await?,
        );
    }
    report(&args, &results)
}

/// surge with the durable queue on (`queue_config.durable`, default fsync `batch` every 1 s and 1 GiB
/// budget) on the same targets and sink.
async fn durable_contender(
    exe: &std::path::Path,
    args: &AgentBenchArgs,
    sink: &Sink,
    dir: &std::path::Path,
    scrape: &str,
    rw: &str,
) -> anyhow::Result<Figures> {
    let cfg = dir.join("surge-durable.yaml");
    let wal = dir.join("wal");
    std::fs::write(
        &cfg,
        format!(
            "agent:\n  listen: 127.0.0.1:0\n  scrape_configs:\n{}\n  remote_write:\n    - url: {rw}\n      queue_config: {{capacity: 1000000, durable: {{dir: {}}}}}\n",
            indent(scrape, 4),
            wal.display()
        ),
    )?;
    measure("surge agent (durable queue)", args, sink, || {
        Command::new(exe)
            .arg("agent")
            .arg("-c")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .spawn()
    })
    .await
}

/// Another surge binary on the plain config (e.g. the previous build): the before of a before/after.
async fn baseline_contender(
    exe: &std::path::Path,
    args: &AgentBenchArgs,
    sink: &Sink,
    cfg: &std::path::Path,
) -> anyhow::Result<Figures> {
    let name = format!("surge agent ({})", exe.display());
    measure(&name, args, sink, || {
        Command::new(exe)
            .arg("agent")
            .arg("-c")
            .arg(cfg)
            .env("RUST_LOG", "warn")
            .spawn()
    })
    .await
}

fn report(args: &AgentBenchArgs, results: &[Figures]) -> anyhow::Result<()> {
    let expected = (args.targets * (args.series + 5)) as f64;
    let vmagent = results.iter().find(|r| r.name == "vmagent");
    let mut out = std::io::stdout().lock();
    if args.json {
        let base = results.first();
        let ratios: Vec<_> = results
            .iter()
            .skip(1)
            .map(|r| {
                json!({
                    "peer": r.name,
                    "cpu_ratio_peer_over_surge": base.map(|b| r.cpu_cores / b.cpu_cores.max(1e-9)),
                    "rss_ratio_peer_over_surge": base.map(|b| r.rss_mib / b.rss_mib.max(1e-9)),
                })
            })
            .collect();
        let over_vmagent: Vec<_> = vmagent
            .map(|v| {
                results
                    .iter()
                    .filter(|r| r.name != v.name)
                    .map(|r| {
                        json!({
                            "contender": r.name,
                            "cpu_ratio_over_vmagent": r.cpu_cores / v.cpu_cores.max(1e-9),
                            "rss_ratio_over_vmagent": r.rss_mib / v.rss_mib.max(1e-9),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{}",
            json!({"targets": args.targets, "series_per_target": args.series, "interval_s": 1,
                   "expected_samples_per_s": expected, "results": results, "ratios": ratios,
                   "over_vmagent": over_vmagent})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} targets × {} series at 1 s (expected ≈ {expected:.0} samples/s incl. synthetic series), {}s measured",
        args.targets,
        args.series,
        args.duration.as_secs()
    )?;
    writeln!(
        out,
        "{:<36} {:>9} {:>9} {:>10} {:>12} {:>10} {:>8} {:>9} {:>12}",
        "contender",
        "cpu",
        "rss MiB",
        "peak MiB",
        "samples/s",
        "requests/s",
        "B/sample",
        "CPU-s/M",
        "2nd out B/s"
    )?;
    for r in results {
        writeln!(
            out,
            "{:<36} {:>9.3} {:>9.1} {:>10.1} {:>12.0} {:>10.1} {:>8.2} {:>9.3} {:>12.0}",
            r.name,
            r.cpu_cores,
            r.rss_mib,
            r.peak_rss_mib,
            r.samples_per_s,
            r.requests_per_s,
            r.bytes_per_sample,
            r.cpu_s_per_m_samples,
            r.side_output_bytes_per_s
        )?;
    }
    if let Some(v) = vmagent {
        for r in results.iter().filter(|r| r.name != v.name) {
            writeln!(
                out,
                "{} / vmagent: cpu ×{:.2}, rss ×{:.2}",
                r.name,
                r.cpu_cores / v.cpu_cores.max(1e-9),
                r.rss_mib / v.rss_mib.max(1e-9)
            )?;
        }
    }
    if let Some(base) = results.first() {
        for r in results.iter().skip(1) {
            writeln!(
                out,
                "{} / surge: cpu ×{:.2}, rss ×{:.2}",
                r.name,
                r.cpu_cores / base.cpu_cores.max(1e-9),
                r.rss_mib / base.rss_mib.max(1e-9)
            )?;
        }
    }
    Ok(())
}

/// The same scrape config for all contenders: one group per target, the path set through
/// `__metrics_path__` as Prometheus allows.
fn scrape_configs_yaml(t: &BenchTargets) -> String {
    let mut s = String::from(
        "- job_name: bench\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  static_configs:\n",
    );
    for i in 0..t.targets {
        s.push_str(&format!(
            "    - targets: ['{}']\n      labels: {{__metrics_path__: /t/{i}/metrics}}\n",
            t.addr
        ));
    }
    s
}

/// Reads a child's stdout to its end on a thread of its own, counting the bytes as the second output's.
fn drain(mut stdout: std::process::ChildStdout, sink: Arc<Sink>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            sink.side_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| format!("{pad}{l}\n")).collect()
}

async fn measure(
    name: &str,
    args: &AgentBenchArgs,
    sink: &Sink,
    spawn: impl FnOnce() -> std::io::Result<Child>,
) -> anyhow::Result<Figures> {
    let mut child = Killed(spawn().map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?);
    let pid = child.0.id();
    eprintln!("bench: {name} (pid {pid}): warming up {:?}", args.warmup);
    tokio::time::sleep(args.warmup).await;
    let cpu0 = cpu_seconds(pid)?;
    let (s0, r0, b0, x0) = (
        sink.samples.load(Ordering::Relaxed),
        sink.requests.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed),
        sink.side_bytes.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    tokio::time::sleep(args.duration).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let (s1, r1, b1, x1) = (
        sink.samples.load(Ordering::Relaxed),
        sink.requests.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed),
        sink.side_bytes.load(Ordering::Relaxed),
    );
    let (rss, peak) = rss_mib(pid)?;
    if let Ok(Some(status)) = child.0.try_wait() {
        anyhow::bail!("{name} exited during the measurement ({status})");
    }
    drop(child);
    // Let the sink drain what the stopped process had in flight before the next contender.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = (s1 - s0) as f64;
    Ok(Figures {
        name: name.to_owned(),
        cpu_cores: cpu / wall,
        rss_mib: rss,
        peak_rss_mib: peak,
        samples_per_s: samples / wall,
        requests_per_s: (r1 - r0) as f64 / wall,
        bytes_per_sample: (b1 - b0) as f64 / samples.max(1.0),
        cpu_s_per_m_samples: cpu / (samples / 1e6).max(1e-9),
        side_output_bytes_per_s: (x1 - x0) as f64 / wall,
    })
}
