//! Shared helpers for the integration tests: real peers (Prometheus, node-exporter, VictoriaMetrics)
//! started as child processes on loopback, killed when dropped.
//!
//! A missing peer binary is a test failure with an install hint, never a skip: `.ci/run` installs them.

pub mod helm;
pub mod k8s;
pub mod kubelet;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Finds `name` on PATH or fails with the package to install.
pub fn peer_binary(name: &str, package: &str) -> Result<PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found on PATH: install it with `apt-get install -y {package}` (.ci/run does)")
}

/// A child process killed on drop, with its own temporary directory.
pub struct Peer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn spawn(bin: PathBuf, args: &[String], dir: tempfile::TempDir, port: u16) -> Result<Peer> {
    let log = std::fs::File::create(dir.path().join("peer.log"))?;
    let child = Command::new(&bin)
        .args(args)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Peer { child, port, dir })
}

/// An HTTP client for tests (rustls with the ring provider, as surge itself uses).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Waits until `url` answers 200 (blocking; call from a blocking context or `spawn_blocking`).
pub async fn wait_ready(url: &str, timeout: Duration) -> Result<()> {
    let client = client();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("{url} not ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Debian's Prometheus as a remote-write receiver (and PromQL oracle), no scrape configs.
pub async fn prometheus_receiver() -> Result<Peer> {
    let bin = peer_binary("prometheus", "prometheus")?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("prometheus.yml"), "global: {}\n")?;
    let port = free_port();
    let args = vec![
        format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        "--web.enable-remote-write-receiver".into(),
    ];
    let peer = spawn(bin, &args, dir, port)?;
    wait_ready(
        &format!("{}/-/ready", peer.base_url()),
        Duration::from_secs(30),
    )
    .await?;
    Ok(peer)
}

/// Debian's node-exporter: real exposition.
pub async fn node_exporter() -> Result<Peer> {
    let bin = peer_binary("prometheus-node-exporter", "prometheus-node-exporter")?;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let args = vec![format!("--web.listen-address=127.0.0.1:{port}")];
    let peer = spawn(bin, &args, dir, port)?;
    wait_ready(
        &format!("{}/metrics", peer.base_url()),
        Duration::from_secs(30),
    )
    .await?;
    Ok(peer)
}

/// Runs an instant PromQL query at `time` (Unix seconds) against a Prometheus-compatible API and returns
/// the `data.result` array.
pub async fn query(base: &str, promql: &str, time: f64) -> Result<Vec<Value>> {
    let v: Value = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql), ("time", &format!("{time:.3}"))])
        .send()
        .await?
        .json()
        .await?;
    if v["status"] != "success" {
        bail!("query {promql:?} failed: {v}");
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The scalar value of a one-element instant vector result.
pub fn single_value(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str().and_then(|s| s.parse().ok()),
        _ => None,
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Debian's VictoriaMetrics single-node: a second remote-write receiver (and the ingest/query peer).
pub async fn victoria_metrics() -> Result<Peer> {
    let bin = peer_binary("victoria-metrics", "victoria-metrics")?;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let args = vec![
        format!("-httpListenAddr=127.0.0.1:{port}"),
        format!("-storageDataPath={}", dir.path().join("data").display()),
        "-retentionPeriod=1d".into(),
        "-search.latencyOffset=0s".into(),
    ];
    let peer = spawn(bin, &args, dir, port)?;
    wait_ready(
        &format!("{}/health", peer.base_url()),
        Duration::from_secs(30),
    )
    .await?;
    Ok(peer)
}
