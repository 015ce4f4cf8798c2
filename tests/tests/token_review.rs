//! Agent → aggregator transport security with real processes and a real kube-apiserver
//! (`../shared/k8s`, API server on 57443, etcd on 64790: ports of this file only).
//!
//! The `surge aggregator` process serves HTTPS with a certificate signed by the cluster CA and reviews
//! bearer tokens with TokenReview (audience `surge-aggregator`, one allowed ServiceAccount). The `surge
//! agent` process scrapes Debian's node-exporter and writes over HTTPS, verifying the aggregator against
//! the CA, with a token read from a file. The test then rotates the file's token: a token for another
//! audience, then another ServiceAccount's, then the right one again, and checks the aggregator refused
//! (401, counted by reason, logged) and accepted exactly as it should. Garbage, wrong credentials and
//! oversize bodies go to both processes' endpoints; both stay up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use surge_tests::k8s::{ControlPlane, start_plane};

const APISERVER_PORT: u16 = 57443;
const ETCD_PORT: u16 = 64790;
const AUDIENCE: &str = "surge-aggregator";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl")
        .args(args)
        .envs(&plane.env)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn surge(args: &[&str], dir: &Path, log: &str) -> Result<Proc> {
    let bin = surge_tests::kubelet::surge_binary()?;
    let child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log))?)
        .spawn()?;
    Ok(Proc(child))
}

fn https_client(ca: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap()
}

/// A counter's value in a Prometheus text page (0 when absent).
fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_writes_over_https_with_reviewed_tokens_and_nothing_else_gets_in() {
    let plane = start_plane(APISERVER_PORT, ETCD_PORT, None).expect("control plane");
    let pki = Path::new(&plane.env["K8S_PKI"]).to_path_buf();
    let kubeconfig = plane.env["KUBECONFIG"].clone();
    kubectl(&plane, &["create", "namespace", "monitoring"]).unwrap();
    for sa in ["surge-agent", "someone-else"] {
        kubectl(
            &plane,
            &["-n", "monitoring", "create", "serviceaccount", sa],
        )
        .unwrap();
    }
    let token = |sa: &str, audience: &str| {
        kubectl(
            &plane,
            &[
                "-n",
                "monitoring",
                "create",
                "token",
                sa,
                "--audience",
                audience,
            ],
        )
        .unwrap()
    };
    let good = token("surge-agent", AUDIENCE);
    let wrong_audience = token("surge-agent", "https://kubernetes.default.svc");
    let other_user = token("someone-else", AUDIENCE);

    let node = surge_tests::node_exporter().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token_file = d.join("token");
    std::fs::write(&token_file, &good).unwrap();
    let (agg_port, agent_port) = (surge_tests::free_port(), surge_tests::free_port());
    let ca = pki.join("ca.crt");
    std::fs::write(
        d.join("surge.yaml"),
        format!(
            r#"
agent:
  listen: 127.0.0.1:{agent_port}
  scrape_configs:
    - job_name: node
      scrape_interval: 1s
      static_configs: [{{targets: ["127.0.0.1:{node_port}"]}}]
  remote_write:
    - name: aggregator
      url: https://127.0.0.1:{agg_port}/api/v1/write
      tls_config: {{ca_file: {ca}}}
      bearer_token_file: {token_file}
aggregator:
  listen: 127.0.0.1:{agg_port}
  max_request_body_size: 1MiB
  server:
    tls: {{cert_file: {pki}/extension-server.crt, key_file: {pki}/extension-server.key}}
    auth:
      token_review:
        audiences: [{AUDIENCE}]
        allowed_users: ["system:serviceaccount:monitoring:surge-agent"]
        kubeconfig: {kubeconfig}
      cache_ttl: 1s
"#,
            node_port = node.port,
            ca = ca.display(),
            token_file = token_file.display(),
            pki = pki.display(),
        ),
    )
    .unwrap();
    let config = d.join("surge.yaml");
    let config = config.to_str().unwrap();
    let out = Command::new(surge_tests::kubelet::surge_binary().unwrap())
        .args(["check-config", config])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _agg = surge(&["aggregator", "-c", config], d, "aggregator.log").unwrap();
    let _agent = surge(&["agent", "-c", config], d, "agent.log").unwrap();
    let http = https_client(&ca);
    let base = format!("https://127.0.0.1:{agg_port}");
    let metrics = async || -> Option<String> {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let accepted = async || -> f64 {
        let text = metrics().await.unwrap_or_default();
        counter(
            &text,
            r#"surge_aggregator_ingest_samples_total{sender="surge-agent"}"#,
        )
    };
    // 1. The reviewed token: node-exporter's samples arrive.
    let first = eventually("the agent's samples over HTTPS", async || {
        let n = accepted().await;
        (n > 0.0).then_some(n)
    })
    .await;
    let up: serde_json::Value = http
        .get(format!("{base}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // 2. Each wrong token, once the cached answer expires, is refused (401) with its reason counted.
    for (token, reason) in [
        (&wrong_audience, "invalid_token"),
        (&other_user, "forbidden_user"),
    ] {
        std::fs::write(&token_file, token).unwrap();
        eventually(&format!("refusals for {reason}"), async || {
            let text = metrics().await?;
            (counter(
                &text,
                &format!(r#"surge_aggregator_auth_refused_total{{reason="{reason}"}}"#),
            ) > 0.0)
                .then_some(())
        })
        .await;
    }
    // While refused, nothing more is accepted (give the last accepted request time to land first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = accepted().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        accepted().await,
        stalled,
        "samples got in with a refused token"
    );
    assert!(stalled >= first);
    // 3. The right token again: the agent's retried batches get in.
    std::fs::write(&token_file, &good).unwrap();
    eventually("writes accepted again", async || {
        (accepted().await > stalled).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(d.join("aggregator.log")).unwrap();
    assert!(
        log.contains("not authenticated"),
        "the refusals are logged with their reason"
    );
    assert!(!log.contains(&good), "a token never reaches the log");

    // 4. Wrong credentials and garbage straight at the aggregator.
    let write = |body: Vec<u8>| {
        http.post(format!("{base}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
    };
    for (auth, want) in [
        (None, 401),
        (Some("Bearer not-a-token".to_owned()), 401),
        (Some(format!("Bearer {wrong_audience}")), 401),
        (Some(format!("Basic {good}")), 401),
    ] {
        let mut r = write(b"garbage".to_vec());
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        assert_eq!(r.send().await.unwrap().status().as_u16(), want);
    }
    // Authenticated garbage, truncation and oversize are refused as such (an oversize body may also
    // see its connection closed once the server has answered 413 without reading the rest).
    for (body, want) in [
        (b"garbage".to_vec(), 400),
        (vec![0xff; 16], 400),
        (vec![0u8; 2 << 20], 413),
    ] {
        match write(body).bearer_auth(&good).send().await {
            Ok(r) => assert_eq!(r.status().as_u16(), want),
            Err(e) => assert!(want == 413 && e.is_request(), "{e}"),
        }
    }
    // Plain HTTP on the HTTPS port answers nothing useful.
    let plain = surge_tests::client();
    assert!(
        plain
            .get(format!("http://127.0.0.1:{agg_port}/api/v1/query?query=up"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    // 5. The agent's own endpoints: garbage paths, methods and heads; it stays up.
    let agent = format!("http://127.0.0.1:{agent_port}");
    // No endpoint reads a body: one is refused with 413 before routing, whatever the method.
    for (method, path, body, want) in [
        ("GET", "/api/v1/targets?state=%FF", 0, 200),
        ("POST", "/metrics", 1 << 20, 413),
        ("POST", "/metrics", 0, 405),
        ("GET", "/../../etc/passwd", 0, 404),
        ("PUT", "/healthz", 1 << 20, 413),
        ("GET", "/healthz", 1 << 20, 413),
    ] {
        let r = plain
            .request(method.parse().unwrap(), format!("{agent}{path}"))
            .body(vec![0u8; body])
            .send()
            .await;
        match r {
            Ok(r) => assert_eq!(r.status().as_u16(), want, "{method} {path}"),
            // The 413 is sent before the body is read and the connection closed after it: where the
            // client is still sending, the close's reset can overtake the answer (hyper does not
            // linger), as with the aggregator above. Either way nothing of the body was taken.
            Err(e) => assert!(want == 413 && e.is_request(), "{method} {path}: {e}"),
        }
    }
    let r = plain
        .get(format!("{agent}/healthz"))
        // Beyond hyper's default head buffer (about 400 KiB), which bounds the agent's own endpoints.
        .header("X-Huge", "a".repeat(1 << 20))
        .send()
        .await;
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
    assert!(
        plain
            .get(format!("{agent}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}
