//! The agent's own endpoints (`/metrics`, `/healthz`, `/readyz`, `/api/v1/targets`) under bad input, over
//! real sockets: garbage, a truncated head, an oversize head, wrong methods, bodies and content types, a
//! slowloris client, too many connections and an idle one. Each is refused without taking the listener
//! down (it answers `/healthz` afterwards), and each refusal is counted in the agent's own `/metrics`
//! (`surge_agent_http_limited_total{limit}`, `surge_agent_http_refused_total{reason}`). Every scenario has
//! its own listener, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use surge_agent::metrics::ScrapeMetrics;
use surge_agent::scrape::fetch::Fetcher;
use surge_agent::scrape::manager::TargetManager;
use surge_agent::scrape::run::ScrapeContext;
use surge_agent::server::{ServerState, agent_limits};
use surge_sender::listener::ServerLimits;
use surge_sender::output::Outputs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An agent listener with no targets, under `limits`; stopped when the test's runtime ends.
async fn start(limits: ServerLimits) -> SocketAddr {
    let mut registry = Registry::default();
    let ctx = Arc::new(ScrapeContext {
        fetcher: Fetcher::new(surge_agent::http_client().unwrap()),
        outputs: Outputs::new(Vec::new()),
        metrics: ScrapeMetrics::new(&mut registry),
        external_labels: Default::default(),
        max_scrape_samples: None,
        series_total: None,
    });
    let state = Arc::new(ServerState {
        registry: Arc::new(Mutex::new(registry)),
        targets: Arc::new(tokio::sync::Mutex::new(TargetManager::new(ctx))),
        ready: true.into(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(surge_agent::server::serve(
        listener,
        state,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Short deadlines, so the timeouts happen within a test.
fn tight() -> ServerLimits {
    ServerLimits {
        max_connections: 8,
        max_header_bytes: 8 << 10,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        ..agent_limits()
    }
}

/// Sends `raw` on a new connection, half-closes it, and reads until the agent closes: everything it
/// answered.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status line's code of a raw answer (0: none).
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One request on its own connection; its status.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> u16 {
    let mut raw = head.replace('\n', "\r\n").into_bytes();
    raw.extend_from_slice(body);
    status(&exchange(addr, &raw).await)
}

/// The value of a sample line of the agent's `/metrics` (0 when absent).
async fn counter(addr: SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `series` until it reaches `want` (counted after the connection task ends).
async fn wait_counter(addr: SocketAddr, series: &str, want: f64) -> f64 {
    for _ in 0..100 {
        let v = counter(addr, series).await;
        if v >= want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    counter(addr, series).await
}

async fn still_serves(addr: SocketAddr) {
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn limited(limit: &str) -> String {
    format!("surge_agent_http_limited_total{{limit=\"{limit}\"}}")
}

fn refused(reason: &str) -> String {
    format!("surge_agent_http_refused_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn garbage_and_truncated_requests_are_refused_and_counted() {
    let addr = start(tight()).await;
    // (what, bytes, the answer's status: 0 for none)
    let cases: &[(&str, &[u8], u16)] = &[
        ("binary garbage", b"\x00\xff\x13\x37garbage\r\n\r\n", 400),
        (
            "a request line without a version",
            b"GET /metrics\r\n\r\n",
            400,
        ),
        (
            "a header without a colon",
            b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
            400,
        ),
        (
            "a bad Content-Length",
            b"GET /metrics HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
            400,
        ),
        (
            "a TLS ClientHello on the plain port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
            400,
        ),
    ];
    for (what, raw, want) in cases {
        let answer = exchange(addr, raw).await;
        assert_eq!(status(&answer), *want, "{what}: {answer:?}");
    }
    let bad = wait_counter(addr, &limited("bad_request"), cases.len() as f64).await;
    assert_eq!(bad, cases.len() as f64);

    // Truncated: the head cut short, and a body shorter than its Content-Length.
    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\nAcc").await;
    assert_eq!(status(&answer), 0, "{answer:?}");
    assert!(wait_counter(addr, &limited("incomplete_request"), 1.0).await >= 1.0);
    assert_eq!(
        request(
            addr,
            "GET /metrics HTTP/1.1\nHost: a\nContent-Length: 100\n\n",
            b"short"
        )
        .await,
        413
    );
    still_serves(addr).await;
}

#[tokio::test]
async fn oversize_heads_answer_431_and_are_counted() {
    let addr = start(tight()).await;
    let big = format!(
        "GET /metrics HTTP/1.1\nHost: a\nX-Big: {}\n\n",
        "x".repeat(16 << 10)
    );
    assert_eq!(request(addr, &big, b"").await, 431);
    let many: String = (0..400).map(|i| format!("X-H{i}: {i:030}\n")).collect();
    assert_eq!(
        request(
            addr,
            &format!("GET /healthz HTTP/1.1\nHost: a\n{many}\n"),
            b""
        )
        .await,
        431
    );
    assert_eq!(
        wait_counter(addr, &limited("header_too_large"), 2.0).await,
        2.0
    );
    still_serves(addr).await;
}

#[tokio::test]
async fn wrong_methods_paths_bodies_and_content_types_are_refused_and_counted() {
    let addr = start(tight()).await;
    // (request head, body, status)
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "POST /metrics HTTP/1.1\nHost: a\nContent-Length: 0\n\n",
            b"",
            405,
        ),
        ("DELETE /healthz HTTP/1.1\nHost: a\n\n", b"", 405),
        ("PUT /api/v1/targets HTTP/1.1\nHost: a\n\n", b"", 405),
        ("GET /api/v1/write HTTP/1.1\nHost: a\n\n", b"", 404),
        ("GET /../../etc/passwd HTTP/1.1\nHost: a\n\n", b"", 404),
        // A remote-write body sent to the agent by mistake: refused before routing.
        (
            "POST /metrics HTTP/1.1\nHost: a\nContent-Type: application/x-protobuf\nContent-Encoding: snappy\nContent-Length: 4\n\n",
            b"\x00\x01\x02\x03",
            413,
        ),
        (
            "GET /readyz HTTP/1.1\nHost: a\nContent-Type: application/json\nContent-Length: 2\n\n",
            b"{}",
            413,
        ),
        (
            "GET /metrics HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            413,
        ),
        // A content type on a request without a body changes nothing.
        (
            "GET /healthz HTTP/1.1\nHost: a\nContent-Type: text/html\n\n",
            b"",
            200,
        ),
    ];
    for (head, body, want) in cases {
        assert_eq!(request(addr, head, body).await, *want, "{head}");
    }
    assert_eq!(counter(addr, &refused("method")).await, 3.0);
    assert_eq!(counter(addr, &refused("not_found")).await, 2.0);
    assert_eq!(counter(addr, &refused("body")).await, 3.0);
    still_serves(addr).await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_deadline() {
    let addr = start(tight()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    // One header byte every 50 ms: never a whole head within 300 ms. The agent closes the connection.
    let mut closed = false;
    for _ in 0..200 {
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the slow client was never cut off");
    assert_eq!(
        wait_counter(addr, &limited("header_read_timeout"), 1.0).await,
        1.0
    );
    still_serves(addr).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_answer_503_and_idle_ones_are_closed() {
    // The head deadline is longer than the idle timeout here: hyper also applies it to a kept-alive
    // connection waiting for its next request, and this test is about the idle timeout.
    let addr = start(ServerLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(60),
        ..tight()
    })
    .await;
    // Two kept-alive connections, each after one answered request, hold the two slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let answer = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status(&answer), 503, "{answer:?}");
    assert!(answer.contains("max_connections"), "{answer:?}");
    // The held connections go silent: each is closed at the idle timeout, freeing its slot.
    for s in &mut held {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
            .await
            .expect("an idle connection stays open")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    drop(held);
    assert_eq!(wait_counter(addr, &limited("idle_timeout"), 2.0).await, 2.0);
    assert_eq!(counter(addr, &limited("max_connections")).await, 1.0);
    still_serves(addr).await;
}

#[tokio::test]
async fn the_running_agent_serves_through_the_hardened_listener() {
    // The real wiring: `Agent::start` binds its own listener with the agent's limits and registry.
    let spec = surge_agent::agent::AgentSpec {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        external_labels: Default::default(),
        shutdown_timeout: Duration::from_secs(1),
        jobs: Vec::new(),
        destinations: Vec::new(),
        outputs: Vec::new(),
        sender_metrics: None,
        endpoint_sets: Default::default(),
        durable: Default::default(),
        total_series_limit: 0,
    };
    let agent = surge_agent::agent::Agent::start(
        spec,
        Arc::new(Mutex::new(Registry::default())),
        Arc::new(|_| Ok(Vec::new())),
        Arc::new(|_| Vec::new()),
    )
    .await
    .unwrap();
    let addr = agent.local_addr.unwrap();
    assert_eq!(
        status(&exchange(addr, b"\x00\x01garbage\r\n\r\n").await),
        400
    );
    assert_eq!(
        request(addr, "POST /metrics HTTP/1.1\nHost: a\n\n", b"").await,
        405
    );
    assert_eq!(wait_counter(addr, &limited("bad_request"), 1.0).await, 1.0);
    assert_eq!(counter(addr, &refused("method")).await, 1.0);
    still_serves(addr).await;
    agent.shutdown().await;
}
