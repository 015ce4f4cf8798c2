//! The agent against real peers: Debian's node-exporter as a target and Debian's Prometheus as the
//! remote-write receiver; PromQL over Prometheus's API proves what landed (samples, labels, staleness).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use parking_lot::Mutex;
use surge_agent::agent::Agent;
use surge_agent::from_config::{agent_spec, file_sd_loader, glob_expander};
use surge_tests::{node_exporter, prometheus_receiver, query, single_value, unix_now};

async fn start_agent(yaml: &str) -> Agent {
    let cfg = surge_config::load_str(yaml, "test.yaml", &surge_config::MapEnv::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = agent_spec(&cfg.agent).unwrap();
    let registry = Arc::new(Mutex::new(prometheus_client::registry::Registry::default()));
    Agent::start(spec, registry, file_sd_loader(), glob_expander())
        .await
        .unwrap()
}

/// Serves `/metrics` with whatever body the test sets.
async fn scripted_target(body: Arc<Mutex<String>>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let b = body.lock().clone();
            async move { b }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_samples_land_in_prometheus_with_their_labels_and_staleness() {
    let ne = node_exporter().await.unwrap();
    let prom = prometheus_receiver().await.unwrap();
    let agent = start_agent(&format!(
        r#"
agent:
  listen: 127.0.0.1:0
  external_labels: {{cluster: ci}}
  scrape_configs:
    - job_name: node
      tier: critical
      static_configs: [{{targets: ["127.0.0.1:{}"], labels: {{zone: z1}}}}]
  remote_write:
    - url: {}/api/v1/write
"#,
        ne.port,
        prom.base_url()
    ))
    .await;
    let base = prom.base_url();
    let instance = format!("127.0.0.1:{}", ne.port);

    // Three scrapes at 1 s must be visible.
    let up = eventually(Duration::from_secs(15), "3 up samples", || async {
        let r = query(&base, "count_over_time(up[1m])", unix_now())
            .await
            .ok()?;
        (single_value(&r)? >= 3.0).then_some(r)
    })
    .await;
    let m = &up[0]["metric"];
    assert_eq!(m["job"], "node");
    assert_eq!(m["instance"], instance.as_str());
    assert_eq!(m["cluster"], "ci");
    assert_eq!(m["zone"], "z1");
    let t = unix_now() - 1.0;
    assert_eq!(
        single_value(&query(&base, "up", t).await.unwrap()),
        Some(1.0)
    );

    // Every sample the agent reported as shipped for the last scrape is in Prometheus, no more, no less.
    let scraped = single_value(
        &query(&base, "scrape_samples_post_metric_relabeling", t)
            .await
            .unwrap(),
    )
    .unwrap();
    let landed = single_value(
        &query(&base, r#"count({job="node", __name__!~"up|scrape_.*"})"#, t)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        scraped > 100.0,
        "node-exporter exposes hundreds of series, got {scraped}"
    );
    assert_eq!(landed, scraped);
    let build = query(&base, "node_exporter_build_info", t).await.unwrap();
    assert_eq!(single_value(&build), Some(1.0));
    assert_eq!(build[0]["metric"]["job"], "node");

    // The agent's own metrics count what it did.
    let own = surge_tests::client()
        .get(format!("http://{}/metrics", agent.local_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "surge_scrapes_total{job=\"node\"}",
        "surge_scrape_duration_seconds_bucket{",
        "surge_remote_write_samples_sent_total{destination=",
        "surge_remote_write_queue_samples{destination=",
        "surge_targets{job=\"node\",health=\"up\"} 1",
    ] {
        assert!(
            own.contains(needle),
            "agent /metrics lacks {needle}:\n{own}"
        );
    }
    let sent: f64 = own
        .lines()
        .find(|l| l.starts_with("surge_remote_write_samples_sent_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        sent >= 3.0 * scraped,
        "sent {sent} samples for 3+ scrapes of {scraped}"
    );

    // Stopping the agent (a restart, a DaemonSet rollout) ends no series: no staleness markers, so the
    // autoscaling inputs are not blanked until the restarted agent's first scrape. (A removed target's
    // series do end: `removed_targets_end_their_series` below.)
    agent.shutdown().await;
    let after = unix_now() + 0.5;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        single_value(&query(&base, "up", after).await.unwrap()),
        Some(1.0),
        "up must still be current after the agent stopped"
    );
    assert_eq!(
        single_value(&query(&base, "up", t).await.unwrap()),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_relabeling_and_exported_labels() {
    let body = Arc::new(Mutex::new(
        "# TYPE a counter\na_total{x=\"1\"} 1\nb 2\ndrop_me 7\nc{job=\"app\"} 4\n".to_string(),
    ));
    let addr = scripted_target(body.clone()).await;
    let prom = prometheus_receiver().await.unwrap();
    let base = prom.base_url();
    let agent = start_agent(&format!(
        r#"
agent:
  listen: 127.0.0.1:0
  scrape_configs:
    - job_name: app
      tier: critical
      static_configs: [{{targets: ["{addr}"]}}]
      metric_relabel_configs:
        - {{source_labels: [__name__], regex: drop_me, action: drop}}
  remote_write:
    - url: {base}/api/v1/write
"#
    ))
    .await;
    eventually(Duration::from_secs(15), "b", || async {
        single_value(&query(&base, "b", unix_now()).await.ok()?)
    })
    .await;
    let t1 = unix_now();
    assert_eq!(
        single_value(&query(&base, "scrape_samples_scraped", t1).await.unwrap()),
        Some(4.0)
    );
    assert_eq!(
        single_value(
            &query(&base, "scrape_samples_post_metric_relabeling", t1)
                .await
                .unwrap()
        ),
        Some(3.0)
    );
    assert!(
        query(&base, "drop_me", t1).await.unwrap().is_empty(),
        "relabeled away"
    );
    let c = query(&base, "c", t1).await.unwrap();
    assert_eq!(c[0]["metric"]["job"], "app");
    assert_eq!(c[0]["metric"]["exported_job"], "app");

    *body.lock() = "# TYPE a counter\na_total{x=\"1\"} 3\n".to_string();
    let gone_at = eventually(Duration::from_secs(10), "b to go stale", || async {
        let now = unix_now();
        query(&base, "b", now).await.ok()?.is_empty().then_some(now)
    })
    .await;
    assert_eq!(
        single_value(&query(&base, r#"a_total{x="1"}"#, gone_at).await.unwrap()),
        Some(3.0)
    );
    assert_eq!(
        single_value(&query(&base, "b", t1).await.unwrap()),
        Some(2.0),
        "history is kept"
    );
    assert_eq!(
        single_value(&query(&base, "scrape_series_added", gone_at).await.unwrap()),
        Some(0.0)
    );
    agent.shutdown().await;
}

/// A target that streams bytes forever: 1 GB would never fit; the body cap must cut it.
async fn endless_target() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/huge",
            get(|| async {
                let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
                let s =
                    futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                axum::body::Body::from_stream(s)
            }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                ""
            }),
        )
        .route(
            "/garbage",
            get(|| async { vec![0u8, 159, 146, 150, 255, 1, 2, 3, b'\n', 7] }),
        )
        .route("/malformed", get(|| async { "ok 1\nbad{le=\"1\" 2\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_are_down_with_a_reason_and_cost_bounded_time_and_memory() {
    let addr = endless_target().await;
    let prom = prometheus_receiver().await.unwrap();
    let base = prom.base_url();
    let mut jobs = String::new();
    for path in ["huge", "hang", "garbage", "malformed"] {
        jobs.push_str(&format!(
            r#"
    - job_name: {path}
      tier: critical
      timeout: 500ms
      body_size_limit: 1MiB
      metrics_path: /{path}
      static_configs: [{{targets: ["{addr}"]}}]"#
        ));
    }
    let agent = start_agent(&format!(
        "agent:\n  listen: 127.0.0.1:0\n  scrape_configs:{jobs}\n  remote_write:\n    - url: {base}/api/v1/write\n"
    ))
    .await;
    let health = eventually(
        Duration::from_secs(10),
        "all four targets scraped",
        || async {
            let h = agent.targets().await;
            h.iter().all(|t| t.health != "unknown").then_some(h)
        },
    )
    .await;
    let reason = |job: &str| {
        health
            .iter()
            .find(|t| t.job == job)
            .and_then(|t| t.last_error.clone())
            .unwrap_or_default()
    };
    assert!(health.iter().all(|t| t.health == "down"), "{health:?}");
    assert!(
        reason("huge").contains("body_size_limit"),
        "{}",
        reason("huge")
    );
    assert!(reason("hang").contains("timed out"), "{}", reason("hang"));
    assert!(
        reason("garbage").contains("line 1, column"),
        "{}",
        reason("garbage")
    );
    assert!(
        reason("malformed").contains("line 2, column 12"),
        "{}",
        reason("malformed")
    );
    for job in ["huge", "hang", "garbage", "malformed"] {
        let r = eventually(Duration::from_secs(10), "up=0 in Prometheus", || async {
            let r = query(&base, &format!("up{{job=\"{job}\"}}"), unix_now())
                .await
                .ok()?;
            (!r.is_empty()).then_some(r)
        })
        .await;
        assert_eq!(single_value(&r), Some(0.0), "{job}");
        // A failed scrape ships nothing but the synthetic series: the malformed body's first line is
        // not half-written.
        assert!(
            query(
                &base,
                &format!("{{job=\"{job}\", __name__!~\"up|scrape_.*\"}}"),
                unix_now()
            )
            .await
            .unwrap()
            .is_empty()
        );
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_changes_are_followed_within_seconds() {
    let a = scripted_target(Arc::new(Mutex::new("m 1\n".into()))).await;
    let b = scripted_target(Arc::new(Mutex::new("m 2\n".into()))).await;
    let prom = prometheus_receiver().await.unwrap();
    let base = prom.base_url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yaml");
    std::fs::write(
        &file,
        format!("- targets: ['{a}']\n  labels: {{team: x}}\n"),
    )
    .unwrap();
    let agent = start_agent(&format!(
        r#"
agent:
  listen: 127.0.0.1:0
  scrape_configs:
    - job_name: fsd
      tier: critical
      file_sd_configs: [{{files: ["{}/*.yaml"]}}]
  remote_write:
    - url: {base}/api/v1/write
"#,
        dir.path().display()
    ))
    .await;
    eventually(Duration::from_secs(10), "target a", || async {
        let r = query(&base, r#"m{team="x"}"#, unix_now()).await.ok()?;
        (single_value(&r)? == 1.0).then_some(())
    })
    .await;
    // Replace a by b: b appears, a's series end with a staleness marker.
    std::fs::write(
        &file,
        format!("- targets: ['{b}']\n  labels: {{team: x}}\n"),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "b replaces a", || async {
        let r = query(&base, r#"m{team="x"}"#, unix_now()).await.ok()?;
        (r.len() == 1 && single_value(&r)? == 2.0).then_some(())
    })
    .await;
    let r = query(&base, "up", unix_now()).await.unwrap();
    assert_eq!(r.len(), 1, "only b is scraped now: {r:?}");
    assert_eq!(r[0]["metric"]["instance"], b.to_string().as_str());
    agent.shutdown().await;
}
