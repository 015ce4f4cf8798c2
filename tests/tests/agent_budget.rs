//! One target cannot starve the others, and the agent's memory stays bounded whatever a target exposes
//! (issue 22, item 6), measured from outside: the `surge agent` process scrapes a target exposing
//! 2 million series (~54 MB, inside the default 64 MiB `body_size_limit`) beside a normal one and writes
//! to Debian's Prometheus (`--web.enable-remote-write-receiver`).
//!
//! Before the per-target budgets, this drove the agent to a ~619 MiB peak, dropped the huge target's
//! samples *and its `up`* at the queue on every scrape, and dropped the normal target's samples with
//! them. Now the huge scrape is refused whole while it is parsed (it would take more than its quarter of
//! the queue), its `up` = 0 with the reason reaches Prometheus on every scrape, and the normal target
//! loses nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::get;
use serde_json::Value;
use surge_tests::{free_port, prometheus_receiver, query, single_value, unix_now};

/// Series the huge target exposes.
const HUGE_SERIES: usize = 2_000_000;
/// Series the normal target exposes.
const NORMAL_SERIES: usize = 100;
/// The agent's peak resident set must stay under this. What the defaults allow one pathological target
/// to cost: its body (here 54 MB; at most `body_size_limit`, 64 MiB) and its series up to the queue
/// share (25 000 series, ~8 MiB; `series_memory_limit` caps it at 16 MiB) over the agent's own ~20 MiB
/// (a debug build: ~30 MiB). Before the budgets: 619 MiB.
const PEAK_RSS_BOUND_MIB: f64 = 128.0;

/// The `surge` binary: `SURGE_BINARY` when set, else this workspace's (built on demand).
fn surge() -> std::path::PathBuf {
    std::env::var_os("SURGE_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| surge_tests::kubelet::surge_binary().expect("the surge binary"))
}

/// `/huge` (2 M series, built once) and `/normal` (100 series) on one loopback server.
async fn targets() -> std::net::SocketAddr {
    let mut huge = String::with_capacity(HUGE_SERIES * 28);
    for i in 0..HUGE_SERIES {
        huge.push_str(&format!("huge_series{{i=\"{i:07}\"}} {i}\n"));
    }
    let huge = Bytes::from(huge);
    let normal: String = (0..NORMAL_SERIES)
        .map(|i| format!("normal_series{{i=\"{i}\"}} {i}\n"))
        .collect();
    let app = Router::new()
        .route("/huge", get(move || std::future::ready(huge.clone())))
        .route("/normal", get(move || std::future::ready(normal.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Peak and current resident set of `pid` in MiB, from `/proc/PID/status` (`VmHWM`, `VmRSS`).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0)
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_target_is_refused_whole_and_starves_no_one() {
    let prom = prometheus_receiver().await.unwrap();
    let addr = targets().await;
    let agent_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("surge.yaml");
    // Every default that matters here is left alone: body_size_limit (64 MiB), series_memory_limit
    // (16 MiB) and the queue's capacity (100 000, so one scrape may ship 25 000 samples).
    std::fs::write(
        &config,
        format!(
            r#"
agent:
  listen: 127.0.0.1:{agent_port}
  scrape_configs:
    - job_name: huge
      interval: 2s
      timeout: 2s
      metrics_path: /huge
      static_configs: [{{targets: ["{addr}"]}}]
    - job_name: normal
      tier: critical
      metrics_path: /normal
      static_configs: [{{targets: ["{addr}"]}}]
  remote_write:
    - url: {}/api/v1/write
"#,
            prom.base_url()
        ),
    )
    .unwrap();
    let mut agent = tokio::process::Command::new(surge())
        .arg("agent")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = agent.id().unwrap();
    let started = unix_now();
    // Long enough for five scrapes of the huge target.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(agent.try_wait().unwrap().is_none(), "the agent exited");

    // The agent says why the huge target is down; the normal one is up.
    let targets: Value = serde_json::from_str(
        &get_text(&format!("http://127.0.0.1:{agent_port}/api/v1/targets")).await,
    )
    .unwrap();
    let by_job = |job: &str| -> Value {
        targets["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["job"] == job)
            .cloned()
            .unwrap()
    };
    let huge = by_job("huge");
    assert_eq!(huge["health"], "down", "{huge}");
    let reason = huge["last_error"].as_str().unwrap();
    assert!(
        reason.contains("more than 25000 samples")
            && reason.contains("share of the remote-write queue"),
        "{reason}"
    );
    assert_eq!(by_job("normal")["health"], "up");

    // Prometheus learnt it too: the huge target's up = 0 on every scrape, and nothing of its series.
    let base = prom.base_url();
    let t = unix_now() - 1.0;
    let window = format!("{}s", (t - started - 1.0) as u64);
    let one = |q: String| {
        let base = base.clone();
        async move { single_value(&query(&base, &q, t).await.unwrap()) }
    };
    assert_eq!(one(r#"up{job="huge"}"#.into()).await, Some(0.0));
    let huge_ups = one(format!(r#"count_over_time(up{{job="huge"}}[{window}])"#))
        .await
        .unwrap();
    assert!(huge_ups >= 4.0, "{huge_ups} up samples of the huge target");
    assert_eq!(
        one(format!(r#"max_over_time(up{{job="huge"}}[{window}])"#)).await,
        Some(0.0)
    );
    assert_eq!(
        one(format!(r#"count(count_over_time(huge_series[{window}]))"#)).await,
        None,
        "no sample of the refused target lands"
    );

    // The normal target lost nothing: every scrape that succeeded has a sample of every series. (A
    // scrape may still time out on a loaded machine, the huge body being parsed beside it: that is
    // `up` = 0, counted, and not a loss at the queue.)
    let scrapes = one(format!(r#"count_over_time(up{{job="normal"}}[{window}])"#))
        .await
        .unwrap();
    let good = one(format!(r#"sum_over_time(up{{job="normal"}}[{window}])"#))
        .await
        .unwrap();
    assert!(
        scrapes >= 8.0 && good >= 6.0,
        "{good} of {scrapes} scrapes of the normal target up"
    );
    let samples = one(format!(
        r#"sum(count_over_time(normal_series{{job="normal"}}[{window}]))"#
    ))
    .await
    .unwrap();
    assert_eq!(samples, good * NORMAL_SERIES as f64);

    // Nothing was dropped at the queue, and the refusals are counted by reason.
    let metrics = get_text(&format!("http://127.0.0.1:{agent_port}/metrics")).await;
    let dropped: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("surge_remote_write_samples_dropped_total{"))
        .collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    let refused = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"surge_scrape_failures_total{job="huge",reason="queue_share"} "#)
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 4.0, "{refused} refusals counted");

    let (peak, now) = rss_mib(pid);
    eprintln!("agent resident set: peak {peak:.1} MiB, now {now:.1} MiB");
    assert!(
        peak < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak:.1} MiB ≥ {PEAK_RSS_BOUND_MIB} MiB"
    );
    assert!(agent.try_wait().unwrap().is_none(), "the agent exited");
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
}
