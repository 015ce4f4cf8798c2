//! The aggregator's listener over real sockets: TLS with optional client certificates and a reloading
//! serving certificate, remote-write authentication, connection limits (slowloris, oversize heads,
//! floods, idle connections, trickled bodies), the query deadline, heavy work kept off the async
//! threads, and garbage sent to every endpoint. Each scenario runs its own server, in parallel.
//!
//! Tokens are checked by a fake `TokenAuthenticator` here (the policy, the cache and the 401s are the
//! aggregator's; the TokenReview itself is `tests/tests/token_review.rs`, against a real
//! kube-apiserver).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use surge_aggregator::auth::{BoxFuture, Identity, TokenAuthenticator, TokenRejected, WriteAuth};
use surge_aggregator::listener::{Limit, ListenerMetrics, ServerLimits, ServerTls};
use surge_aggregator::{
    AggregatorState, CacheOptions, IngestObserver, IngestOptions, QueryLimits, QueryOptions,
    Touched, now_ms, router,
};
use surge_metrics_api::TlsFiles;
use surge_proto::remote_write::{Label, ProtoSample, TimeSeries, WriteRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------------
// Certificates

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn test_ca(cn: &str) -> TestCa {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    TestCa {
        issuer: Issuer::new(p, key),
        pem: cert.pem(),
    }
}

impl TestCa {
    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Server certificate files (`tls.crt`, `tls.key`) for localhost from `ca`, in `dir`.
fn server_files(dir: &Path, ca: &TestCa) -> TlsFiles {
    let (c, k) = ca.leaf("surge-aggregator", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), c).unwrap();
    std::fs::write(dir.join("tls.key"), k).unwrap();
    TlsFiles {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
        reload_interval: Duration::from_millis(50),
    }
}

fn client(ca: &TestCa, identity: Option<(String, String)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.pem.as_bytes()).unwrap());
    if let Some((c, k)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{c}\n{k}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

// ---------------------------------------------------------------------------------------------------
// A server

/// Tokens `good` (user `agent`) and `down` (the authenticator is unreachable); every other is invalid.
struct FakeTokens;

impl TokenAuthenticator for FakeTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Identity, TokenRejected>> {
        Box::pin(async move {
            match token {
                "good" => Ok(Identity {
                    username: "agent".into(),
                }),
                "down" => Err(TokenRejected::Unavailable("connection refused".into())),
                _ => Err(TokenRejected::Invalid("unknown token".into())),
            }
        })
    }
}

struct Server {
    addr: SocketAddr,
    state: Arc<AggregatorState>,
    metrics: ListenerMetrics,
    auth: Option<Arc<WriteAuth>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Setup {
    limits: ServerLimits,
    ingest: IngestOptions,
    query: QueryLimits,
    tls: Option<ServerTls>,
    auth: Option<WriteAuth>,
}

async fn start(setup: Setup) -> Server {
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        setup.ingest,
    );
    state.set_query_limits(setup.query);
    let auth = setup.auth.map(Arc::new);
    if let Some(a) = &auth {
        state.set_write_auth(a.clone());
    }
    let metrics = ListenerMetrics::new(&mut Registry::default(), "aggregator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(surge_aggregator::listener::serve(
        listener,
        router(state.clone()),
        setup.limits,
        setup.tls,
        metrics.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        state,
        metrics,
        auth,
        _stop: stop,
    }
}

fn write_body(n_series: usize) -> Vec<u8> {
    let now = now_ms();
    let timeseries = (0..n_series)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                Label {
                    name: "instance".into(),
                    value: format!("pod-{i}"),
                },
            ],
            samples: vec![ProtoSample {
                value: 1.0,
                timestamp: now,
            }],
        })
        .collect();
    let raw = WriteRequest { timeseries }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn write(client: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let mut r = client
        .post(url)
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(write_body(3));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r
}

/// Sends `raw` bytes and reads until the server closes (or 20 s pass: a hung server fails the test).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the server neither answered nor closed");
    String::from_utf8_lossy(&out).into_owned()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------------------------------------------
// TLS and authentication

#[tokio::test]
async fn https_with_tokens_refuses_every_unauthenticated_write() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("surge-ca");
    let files = server_files(dir.path(), &ca);
    let tls = ServerTls::from_files(&files, None, false).unwrap();
    let auth = WriteAuth::new(
        Some(Arc::new(FakeTokens)),
        false,
        Duration::from_secs(10),
        &mut Registry::default(),
    );
    let srv = start(Setup {
        tls: Some(tls),
        auth: Some(auth),
        ..Setup::default()
    })
    .await;
    let url = format!("https://localhost:{}/api/v1/write", srv.addr.port());
    let c = client(&ca, None);
    let r = write(&c, &url, Some("good")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(srv.state.cache().len(), 3);
    for (token, header_value, status, reason) in [
        (None, None, 401, "missing"),
        (Some("bad"), None, 401, "invalid_token"),
        (None, Some("Basic dXNlcjpwYXNz"), 401, "malformed"),
        (Some("down"), None, 503, "unavailable"),
    ] {
        let mut req = write(&c, &url, token);
        if let Some(h) = header_value {
            req = req.header(header::AUTHORIZATION, h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{token:?} {header_value:?}");
        if status == 401 {
            assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        assert!(!r.text().await.unwrap().is_empty(), "the refusal says why");
        assert_eq!(srv.auth.as_ref().unwrap().refused(reason), 1, "{reason}");
    }
    // Nothing refused reached the store; queries stay open (only writes need credentials).
    assert_eq!(srv.state.cache().len(), 3);
    let q = c
        .get(format!(
            "https://localhost:{}/api/v1/query?query=up",
            srv.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), StatusCode::OK);
    // Plain HTTP to the TLS port, and a client that does not trust the server, get nothing.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        plain
            .get(format!("http://127.0.0.1:{}/healthz", srv.addr.port()))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    let stranger = client(&test_ca("other-ca"), None);
    assert!(write(&stranger, &url, Some("good")).send().await.is_err());
    wait_until("the TLS failures to be counted", || {
        srv.metrics.hits(Limit::TlsHandshakeFailed) >= 2
    })
    .await;
}

#[tokio::test]
async fn client_certificates_authenticate_when_allowed_and_are_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca("surge-ca");
    let clients = test_ca("agents-ca");
    std::fs::write(dir.path().join("clients.crt"), &clients.pem).unwrap();
    let files = server_files(dir.path(), &ca);
    let tls = ServerTls::from_files(&files, Some(&dir.path().join("clients.crt")), true).unwrap();
    let auth = WriteAuth::new(
        None,
        true,
        Duration::from_secs(10),
        &mut Registry::default(),
    );
    let srv = start(Setup {
        tls: Some(tls),
        auth: Some(auth),
        ..Setup::default()
    })
    .await;
    let url = format!("https://localhost:{}/api/v1/write", srv.addr.port());
    let agent = client(&ca, Some(clients.leaf("surge-agent", &["surge-agent"])));
    assert_eq!(
        write(&agent, &url, None).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // No certificate: the handshake is refused (required); a certificate of another CA too.
    assert!(write(&client(&ca, None), &url, None).send().await.is_err());
    let forged = client(
        &ca,
        Some(test_ca("evil").leaf("surge-agent", &["surge-agent"])),
    );
    assert!(write(&forged, &url, None).send().await.is_err());
    // With a certificate, a token is still checked when sent (and refused: no authenticator).
    assert_eq!(
        write(&agent, &url, Some("good"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(srv.state.cache().len(), 3);
}

#[tokio::test]
async fn the_serving_certificate_reloads_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (test_ca("old-ca"), test_ca("new-ca"));
    let files = server_files(dir.path(), &old_ca);
    let srv = start(Setup {
        tls: Some(ServerTls::from_files(&files, None, false).unwrap()),
        ..Setup::default()
    })
    .await;
    let health = format!("https://localhost:{}/healthz", srv.addr.port());
    assert!(client(&old_ca, None).get(&health).send().await.is_ok());
    // A broken pair is refused and the old certificate kept.
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client(&old_ca, None).get(&health).send().await.is_ok());
    // A new pair is served without a restart.
    server_files(dir.path(), &new_ca);
    let mut served = false;
    for _ in 0..200 {
        if client(&new_ca, None).get(&health).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the new certificate was never served");
    assert!(client(&old_ca, None).get(&health).send().await.is_err());
}

// ---------------------------------------------------------------------------------------------------
// Connection limits

fn tight() -> ServerLimits {
    ServerLimits {
        max_connections: 4,
        max_header_bytes: 8192,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        tls_handshake_timeout: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off() {
    let srv = start(Setup {
        limits: tight(),
        ..Setup::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // One more byte now and then, never the end of the head.
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            let _ = s.write_all(b"a").await;
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => return,
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("a slow head was never cut off");
    wait_until("the header read timeout to be counted", || {
        srv.metrics.hits(Limit::HeaderReadTimeout) == 1
    })
    .await;
}

#[tokio::test]
async fn an_oversized_head_answers_431() {
    let srv = start(Setup {
        limits: tight(),
        ..Setup::default()
    })
    .await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = exchange(srv.addr, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    wait_until("the oversized head to be counted", || {
        srv.metrics.hits(Limit::HeaderTooLarge) == 1
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_idle_ones_closed() {
    let srv = start(Setup {
        limits: ServerLimits {
            idle_timeout: Duration::from_secs(3600),
            header_read_timeout: Duration::from_secs(3600),
            ..tight()
        },
        ..Setup::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    wait_until("four connections to be served", || {
        srv.metrics.connections.get() == 4
    })
    .await;
    let answer = exchange(srv.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("max_connections"), "{answer}");
    assert_eq!(srv.metrics.hits(Limit::MaxConnections), 1);
    drop(held);
    wait_until("the held connections to close", || {
        srv.metrics.connections.get() == 0
    })
    .await;
    let answer = exchange(
        srv.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Idle keep-alive connections are closed after idle_timeout.
    let srv = start(Setup {
        limits: tight(),
        ..Setup::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("an idle connection was never closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    wait_until("the idle close to be counted", || {
        srv.metrics.hits(Limit::IdleTimeout) + srv.metrics.hits(Limit::HeaderReadTimeout) >= 1
    })
    .await;
}

#[tokio::test]
async fn a_trickled_body_answers_408() {
    let srv = start(Setup {
        limits: ServerLimits {
            idle_timeout: Duration::from_secs(3600),
            ..tight()
        },
        ingest: IngestOptions {
            body_timeout: Duration::from_millis(300),
            ..IngestOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut out))
        .await
        .expect("a trickled body was never cut off")
        .unwrap();
    let answer = String::from_utf8_lossy(&out[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let text = metrics_text(&srv.state).await;
    assert!(
        text.contains(r#"surge_aggregator_ingest_rejected_requests_total{sender="other",reason="body_timeout"} 1"#),
        "{text}"
    );
}

async fn metrics_text(st: &Arc<AggregatorState>) -> String {
    let resp = router(st.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Bad input on every endpoint

#[tokio::test]
async fn garbage_on_every_endpoint_is_refused_and_nothing_is_kept() {
    let srv = start(Setup {
        limits: tight(),
        ingest: IngestOptions {
            max_body_bytes: 1 << 20,
            ..IngestOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let valid = write_body(2);
    let truncated = valid[..valid.len() / 2].to_vec();
    // A snappy header announcing 1 GiB, then nothing.
    let bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04, 0, 0, 0];
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let oversize = vec![0u8; 2 << 20];
    let rw = |ct: &str, ce: &str, body: &[u8]| {
        let mut r = format!(
            "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        )
        .into_bytes();
        if !ct.is_empty() {
            r.extend(format!("Content-Type: {ct}\r\n").bytes());
        }
        if !ce.is_empty() {
            r.extend(format!("Content-Encoding: {ce}\r\n").bytes());
        }
        r.extend(b"\r\n");
        r.extend(body);
        r
    };
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage body",
            rw("application/x-protobuf", "snappy", &garbage),
            "400",
        ),
        (
            "truncated snappy",
            rw("application/x-protobuf", "snappy", &truncated),
            "400",
        ),
        (
            "decompression bomb",
            rw("application/x-protobuf", "snappy", &bomb),
            "413",
        ),
        (
            "oversize body",
            rw("application/x-protobuf", "snappy", &oversize),
            "413",
        ),
        (
            "wrong content type",
            rw("application/json", "snappy", &valid),
            "415",
        ),
        (
            "wrong encoding",
            rw("application/x-protobuf", "gzip", &valid),
            "400",
        ),
        (
            "empty body",
            rw("application/x-protobuf", "snappy", &[]),
            "400",
        ),
        ("GET on write", get("/api/v1/write"), "405"),
        ("query garbage", get("/api/v1/query?query=%29%29%28"), "400"),
        (
            "query bad time",
            get("/api/v1/query?query=up&time=yesterday"),
            "400",
        ),
        (
            "query_range no step",
            get("/api/v1/query_range?query=up&start=0&end=10"),
            "400",
        ),
        (
            "query_range too many points",
            get("/api/v1/query_range?query=up&start=0&end=100000000&step=1"),
            "400",
        ),
        ("series no match", get("/api/v1/series"), "400"),
        ("series bad match", get("/api/v1/series?match[]=%7B"), "400"),
        (
            "label values bad name",
            get("/api/v1/label/%FF%FE/values"),
            "400",
        ),
        ("unknown path", get("/api/v2/write"), "404"),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "bad request line",
            b"FROB / HTTP/9.9\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "bad content length",
            b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            "400",
        ),
    ];
    for (name, raw, want) in &cases {
        let answer = exchange(srv.addr, raw).await;
        let status = answer.split(' ').nth(1).unwrap_or("(closed)");
        // hyper closes on a head it cannot parse, after answering 400 when it can.
        let ok = status == *want || (*want == "400" && answer.is_empty());
        assert!(ok, "{name}: wanted {want}, got {answer:.200}");
    }
    // Nothing was accepted.
    assert_eq!(srv.state.cache().len(), 0);
    let answer = exchange(srv.addr, &get("/healthz")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_until("every connection to close", || {
        srv.metrics.connections.get() == 0
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Heavy work off the async threads

/// Holds the large write's apply until the small write has been applied: if applying ran on the async
/// thread (a one-thread runtime here), the small write could never be served meanwhile and the wait
/// would time out, recording the large one first.
struct HoldLarge {
    order: Mutex<Vec<&'static str>>,
    small_done: Mutex<mpsc::Sender<()>>,
    wait_small: Mutex<mpsc::Receiver<()>>,
}

impl IngestObserver for HoldLarge {
    fn on_ingest(&self, touched: &[Touched]) {
        if touched.len() > 1000 {
            let waited = self
                .wait_small
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30));
            let name = if waited.is_ok() {
                "large"
            } else {
                "large (small never ran)"
            };
            self.order.lock().unwrap().push(name);
        } else {
            self.order.lock().unwrap().push("small");
            let _ = self.small_done.lock().unwrap().send(());
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_large_write_does_not_stall_a_small_one() {
    let st = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let (tx, rx) = mpsc::channel();
    let hold = Arc::new(HoldLarge {
        order: Mutex::new(Vec::new()),
        small_done: Mutex::new(tx),
        wait_small: Mutex::new(rx),
    });
    st.add_observer(hold.clone());
    let req = |body: Vec<u8>| {
        Request::post("/api/v1/write")
            .header(header::CONTENT_ENCODING, "snappy")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Body::from(body))
            .unwrap()
    };
    let large = tokio::spawn(router(st.clone()).oneshot(req(write_body(50_000))));
    // Let the large request reach the blocking pool before the small one starts.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let small = tokio::spawn(router(st.clone()).oneshot(req(write_body(10))));
    assert_eq!(
        small.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        large.await.unwrap().unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(*hold.order.lock().unwrap(), ["small", "large"]);
    assert_eq!(st.cache().len(), 50_000);
}

// ---------------------------------------------------------------------------------------------------
// Query limits

async fn query_status(srv: &Server, path: &str) -> (u16, String) {
    let answer = exchange(
        srv.addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn queries_past_their_deadline_or_sample_limit_are_stopped_and_counted() {
    let srv = start(Setup {
        query: QueryLimits {
            max_concurrent: 2,
            timeout: Duration::from_millis(50),
            ..QueryLimits::default()
        },
        ..Setup::default()
    })
    .await;
    // 2 000 series with a sample every second for 5 minutes.
    let now = now_ms();
    let cache = srv.state.cache();
    for i in 0..2_000 {
        let l = surge_model::Labels::from_pairs([("__name__", "x"), ("i", &*i.to_string())]);
        for k in 0..300 {
            cache
                .append(
                    &l,
                    surge_model::Sample {
                        timestamp_ms: now - 300_000 + k * 1000,
                        value: k as f64,
                    },
                    now,
                )
                .unwrap();
        }
    }
    let end = now / 1000;
    // A range query of 10 000 steps over every series (2·10⁷ windows) cannot finish in 50 ms.
    let (status, body) = query_status(
        &srv,
        &format!(
            "/api/v1/query_range?query=sum(rate(x%5B5m%5D))&start={}&end={end}&step=0.001&",
            end - 10
        ),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""errorType":"timeout""#), "{body}");
    // Reading more than 1000 samples into a matrix fails with the limit's message.
    let srv2 = start(Setup {
        query: QueryLimits {
            max_samples: 1000,
            ..QueryLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let l = surge_model::Labels::from_pairs([("__name__", "y")]);
    for k in 0..2000 {
        srv2.state
            .cache()
            .append(
                &l,
                surge_model::Sample {
                    timestamp_ms: now - 200_000 + k * 100,
                    value: 1.0,
                },
                now,
            )
            .unwrap();
    }
    let (status, body) = query_status(&srv2, "/api/v1/query?query=y%5B5m%5D").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("too many samples"), "{body}");
    let m1 = metrics_text(&srv.state).await;
    let m2 = metrics_text(&srv2.state).await;
    assert!(
        m1.contains(r#"surge_aggregator_queries_refused_total{reason="timeout"} 1"#),
        "{m1}"
    );
    assert!(
        m2.contains(r#"surge_aggregator_queries_refused_total{reason="too_many_samples"} 1"#),
        "{m2}"
    );
}
