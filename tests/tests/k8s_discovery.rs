//! Own-node pod discovery against a real control plane (`../shared/k8s`: etcd, kube-apiserver,
//! controller-manager, scheduler; `fake-node.sh` nodes; `ready-pods.sh` marks bound pods Running with the
//! loopback IP of their `test-pod-ip` annotation). Each pod's `/metrics` is served by the test on that
//! IP, and the real agent scrapes it, with targets from `surge_k8s::discovery` reading the API as the
//! DaemonSet would: a ServiceAccount token bound to exactly `deploy/rbac-agent.yaml`.
//!
//! Every test starts its own control plane on this file's ports (the API server is killed in one of
//! them), so the tests run one at a time.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use parking_lot::Mutex;
use serde_json::json;
use surge_agent::agent::Agent;
use surge_agent::from_config::{agent_spec, file_sd_loader, glob_expander};
use surge_k8s::discovery::PodDiscoveries;
use surge_tests::k8s::{ControlPlane, start_plane};
use tokio_util::sync::CancellationToken;

/// This file's control plane ports (other test files use others).
const APISERVER_PORT: u16 = 36443;
const ETCD_PORT: u16 = 43790;
/// A second API server on the same etcd, for the restart test: the cluster keeps changing while the
/// agent's API server is down.
const SECOND_APISERVER_PORT: u16 = 36444;

/// One control plane at a time: they share the ports above.
static PLANE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------------------

/// A control plane started by `up.sh`, with `fake-node.sh n1` and `n2` and `ready-pods.sh 0` running;
/// stopped (with `down.sh`) when dropped.
struct Plane {
    plane: ControlPlane,
    /// API servers started by [`Plane::start_apiserver`].
    extra: Vec<Child>,
}

impl Deref for Plane {
    type Target = ControlPlane;

    fn deref(&self) -> &ControlPlane {
        &self.plane
    }
}

impl Plane {
    fn up() -> Plane {
        let plane = start_plane(APISERVER_PORT, ETCD_PORT, None).unwrap();
        for node in ["n1", "n2"] {
            plane.script("fake-node.sh", &[node, "4", "16Gi", "110"]);
        }
        plane.ready_pods().unwrap();
        Plane {
            plane,
            extra: Vec::new(),
        }
    }

    /// A client with the admin's certificate: for test setup only.
    async fn admin_client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.env["KUBECONFIG"]).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Applies `deploy/rbac-agent.yaml`, mints a token for its ServiceAccount, and writes a kubeconfig
    /// with that token and the cluster CA: what the DaemonSet's agent has, and nothing more.
    fn agent_kubeconfig(&self) -> PathBuf {
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac-agent.yaml");
        let (ok, _, err) = self
            .status("kubectl", &["create", "namespace", "surge"], None)
            .unwrap();
        assert!(ok || err.contains("AlreadyExists"), "{err}");
        self.kubectl(&["apply", "-f", rbac.to_str().unwrap()], None);
        let token = self.kubectl(
            &[
                "create",
                "token",
                "surge-agent",
                "-n",
                "surge",
                "--duration",
                "1h",
            ],
            None,
        );
        let path = self.dir.join("agent.kubeconfig");
        std::fs::write(
            &path,
            format!(
                r#"apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{}", certificate-authority: "{}/ca.crt"}}
users:
- name: surge-agent
  user: {{token: "{token}"}}
contexts:
- name: local
  context: {{cluster: local, user: surge-agent}}
current-context: local
"#,
                self.env["K8S_API"], self.env["K8S_PKI"]
            ),
        )
        .unwrap();
        path
    }

    /// Whether the API server on `port` answers `/readyz`.
    fn api_ready(&self, port: u16) -> bool {
        let pki = &self.env["K8S_PKI"];
        Command::new("curl")
            .args(["-fs", "-o", "/dev/null", "--max-time", "2", "--cacert"])
            .arg(format!("{pki}/ca.crt"))
            .arg("--cert")
            .arg(format!("{pki}/admin.crt"))
            .arg("--key")
            .arg(format!("{pki}/admin.key"))
            .arg(format!("https://127.0.0.1:{port}/readyz"))
            .status()
            .is_ok_and(|s| s.success())
    }

    async fn wait_api_ready(&self, port: u16) {
        let start = Instant::now();
        while !self.api_ready(port) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "API server on {port} not ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills kube-apiserver (its pid is in `DIR/kube-apiserver.pid`) and returns its command line.
    fn kill_apiserver(&self) -> Vec<String> {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // up.sh started it with setsid: its pid is its process group.
        let status = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "apiserver did not die"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        args
    }

    /// Starts an API server with `args` (a command line from [`Plane::kill_apiserver`]), with the secure
    /// port replaced by `port`, its pid in `DIR/<pid_name>.pid`; stopped on drop.
    fn start_apiserver(&mut self, args: &[String], port: u16, pid_name: &str) {
        let mut args = args.to_vec();
        let i = args.iter().position(|a| a == "--secure-port").unwrap();
        args[i + 1] = port.to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{pid_name}.log")))
            .unwrap();
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        std::fs::write(
            self.dir.join(format!("{pid_name}.pid")),
            child.id().to_string(),
        )
        .unwrap();
        self.extra.push(child);
    }
}

impl Drop for Plane {
    /// Kills the extra API servers; then the [`ControlPlane`] runs `down.sh` as it drops.
    fn drop(&mut self) {
        for child in &mut self.extra {
            // Each was started in its own process group: kill the group.
            let _ = Command::new("kill")
                .args(["--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Pods and their /metrics
// ---------------------------------------------------------------------------------------------------

/// A pod's `/metrics` (any path), served on its loopback pod IP; remembers when it was scraped.
#[derive(Clone)]
struct MetricsServer {
    ip: String,
    port: u16,
    hits: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl MetricsServer {
    async fn start(ip: &str) -> MetricsServer {
        let hits: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let h = hits.clone();
        let app = Router::new().fallback(move |req: Request| {
            let h = h.clone();
            async move {
                h.lock().push((Instant::now(), req.uri().path().to_owned()));
                "# TYPE demo_requests_total counter\ndemo_requests_total 7\n"
            }
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MetricsServer {
            ip: ip.to_owned(),
            port,
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.lock().len()
    }

    fn first_hit(&self) -> Option<Instant> {
        self.hits.lock().first().map(|h| h.0)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

/// A pod bound to `node` whose IP will be `ip` (ready-pods.sh reads `test-pod-ip`).
fn pod(
    name: &str,
    node: &str,
    ip: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    ports: serde_json::Value,
) -> Pod {
    let mut a: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    a.insert("test-pod-ip".into(), ip.into());
    let l: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": l, "annotations": a},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "ports": ports}],
        },
    }))
    .unwrap()
}

/// The annotations of a pod scraped on `port`, in `tier`.
fn scrape(port: u16, tier: &str) -> Vec<(&'static str, String)> {
    vec![
        ("prometheus.io/scrape", "true".into()),
        ("prometheus.io/port", port.to_string()),
        ("surge.dev/tier", tier.into()),
    ]
}

fn refs<'a>(a: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    a.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn create(api: &Api<Pod>, p: &Pod) {
    api.create(&PostParams::default(), p).await.unwrap();
}

// ---------------------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------------------

/// The agent with the two-tier pod jobs of `config/examples/kubernetes-agent.yaml`, its targets from
/// pod discovery on node n1 as the ServiceAccount of `deploy/rbac-agent.yaml`.
struct Scraper {
    agent: Agent,
    discoveries: PodDiscoveries,
    cancel: CancellationToken,
}

impl Scraper {
    async fn start(kubeconfig: &Path) -> Scraper {
        let yaml = format!(
            r#"
agent:
  listen: 127.0.0.1:0
  scrape_configs:
    - job_name: pods-critical
      tier: critical
      kubernetes_sd_configs:
        - {{role: pod, node_name: "${{NODE_NAME}}", attach_labels: [app, app.kubernetes.io/name], kubeconfig: "{k}"}}
      relabel_configs:
        - {{source_labels: [__meta_surge_tier], regex: critical, action: keep}}
    - job_name: pods-standard
      tier: standard
      interval: 1s
      kubernetes_sd_configs:
        - {{role: pod, node_name: "${{NODE_NAME}}", attach_labels: [app, app.kubernetes.io/name], kubeconfig: "{k}"}}
      relabel_configs:
        - {{source_labels: [__meta_surge_tier], regex: standard, action: keep}}
"#,
            k = kubeconfig.display()
        );
        let env = surge_config::MapEnv::new().with("NODE_NAME", "n1");
        let cfg =
            surge_config::load_str(&yaml, "test.yaml", &env).unwrap_or_else(|e| panic!("{e}"));
        let cancel = CancellationToken::new();
        let mut discoveries = PodDiscoveries::new(cancel.clone());
        let mut spec = agent_spec(&cfg.agent).unwrap();
        // What the binary does: each kubernetes_sd_configs entry's targets in its job's `dynamic`.
        let sources = discoveries
            .sources(&cfg.agent.scrape_configs)
            .await
            .unwrap();
        spec.add_live_sources(sources);
        assert_eq!(
            discoveries.iter().count(),
            1,
            "equal entries share one watch"
        );
        tokio::time::timeout(Duration::from_secs(20), discoveries.synced())
            .await
            .expect("discovery synced");
        let registry = Arc::new(Mutex::new(prometheus_client::registry::Registry::default()));
        let agent = Agent::start(spec, registry, file_sd_loader(), glob_expander())
            .await
            .unwrap();
        Scraper {
            agent,
            discoveries,
            cancel,
        }
    }

    fn stats(&self) -> Arc<surge_k8s::discovery::DiscoveryStats> {
        self.discoveries.iter().next().unwrap().1.stats()
    }

    /// The published target groups' addresses, sorted.
    fn published(&self) -> Vec<String> {
        let rx = self.discoveries.iter().next().unwrap().1.targets();
        let mut v: Vec<String> = rx.borrow().iter().flat_map(|g| g.targets.clone()).collect();
        v.sort();
        v
    }

    /// `(job, url, labels)` of every target, with its health.
    async fn targets(
        &self,
    ) -> BTreeMap<(String, String), (BTreeMap<String, String>, &'static str)> {
        self.agent
            .targets()
            .await
            .into_iter()
            .map(|t| ((t.job, t.url), (t.labels, t.health)))
            .collect()
    }

    async fn stop(self) {
        self.agent.shutdown().await;
        self.cancel.cancel();
    }
}

/// The labels the agent gives a pod target.
fn target_labels(
    job: &str,
    s: &MetricsServer,
    ns: &str,
    pod: &str,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = [
        ("job", job.to_owned()),
        ("instance", format!("{}:{}", s.ip, s.port)),
        ("namespace", ns.to_owned()),
        ("pod", pod.to_owned()),
        ("node", "n1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "surge_k8s=info".into()),
        )
        .with_test_writer()
        .try_init();
}

type Expected = BTreeMap<(String, String), BTreeMap<String, String>>;

/// Waits until the agent's targets are exactly `want`, all up.
async fn wait_targets(s: &Scraper, want: &Expected, timeout: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let got = s.targets().await;
        let labels: Expected = got
            .iter()
            .map(|(k, (l, _))| (k.clone(), l.clone()))
            .collect();
        if labels == *want && got.values().all(|(_, h)| *h == "up") {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}:\n got {got:#?}\nwant {want:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_pods_of_this_node_are_scraped_on_their_pod_ips_with_least_privilege() {
    let _one = PLANE.lock().await;
    init_logs();
    let plane = Plane::up();
    let kubeconfig = plane.agent_kubeconfig();

    // The ServiceAccount may read pods and nothing else.
    let sa = "system:serviceaccount:surge:surge-agent";
    for (verb, resource, allowed) in [
        ("get", "pods", "yes"),
        ("list", "pods", "yes"),
        ("watch", "pods", "yes"),
        ("create", "pods", "no"),
        ("delete", "pods", "no"),
        ("list", "nodes", "no"),
        ("get", "secrets", "no"),
        ("list", "services", "no"),
    ] {
        let (_, out, _) = plane
            .status(
                "kubectl",
                &["auth", "can-i", verb, resource, "-A", "--as", sa],
                None,
            )
            .unwrap();
        assert_eq!(out, allowed, "{sa} {verb} {resource}");
    }
    // ... and discovery uses that identity: the same client cannot list nodes.
    let cfg = surge_config::KubernetesSdConfig {
        node_name: "n1".into(),
        kubeconfig: Some(kubeconfig.display().to_string()),
        ..Default::default()
    };
    let sa_client = surge_k8s::discovery::client(&cfg).await.unwrap();
    let denied = Api::<Node>::all(sa_client).list(&Default::default()).await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "{denied:?}"
    );

    plane.kubectl(&["create", "namespace", "shop"], None);
    let admin = plane.admin_client().await;
    let default: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let shop: Api<Pod> = Api::namespaced(admin.clone(), "shop");
    let web = MetricsServer::start("127.0.0.2").await;
    let api = MetricsServer::start("127.0.0.3").await;
    let named = MetricsServer::start("127.0.0.4").await;
    let quiet = MetricsServer::start("127.0.0.5").await;
    let other_node = MetricsServer::start("127.0.0.6").await;
    let no_port = MetricsServer::start("127.0.0.7").await;

    // A critical pod with both attached labels.
    let a = scrape(web.port, "critical");
    create(
        &default,
        &pod(
            "web-1",
            "n1",
            &web.ip,
            &[("app", "web"), ("app.kubernetes.io/name", "web-app")],
            &refs(&a),
            json!([]),
        ),
    )
    .await;
    // A standard pod (no tier annotation) in another namespace, with its own path.
    let port = api.port.to_string();
    create(
        &shop,
        &pod(
            "api-1",
            "n1",
            &api.ip,
            &[("app", "api")],
            &[
                ("prometheus.io/scrape", "true"),
                ("prometheus.io/port", &port),
                ("prometheus.io/path", "/custom/metrics"),
            ],
            json!([]),
        ),
    )
    .await;
    // No port annotation: the container port named `metrics`.
    create(
        &default,
        &pod(
            "named-1",
            "n1",
            &named.ip,
            &[],
            &[("prometheus.io/scrape", "true"), ("surge.dev/tier", "critical")],
            json!([{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": named.port}]),
        ),
    )
    .await;
    // Not annotated; on the other node; annotated without any port: none is a target.
    create(
        &default,
        &pod(
            "quiet-1",
            "n1",
            &quiet.ip,
            &[("app", "quiet")],
            &[],
            json!([]),
        ),
    )
    .await;
    let b = scrape(other_node.port, "critical");
    create(
        &default,
        &pod(
            "elsewhere-1",
            "n2",
            &other_node.ip,
            &[],
            &refs(&b),
            json!([]),
        ),
    )
    .await;
    create(
        &default,
        &pod(
            "noport-1",
            "n1",
            &no_port.ip,
            &[],
            &[("prometheus.io/scrape", "true")],
            json!([]),
        ),
    )
    .await;

    let scraper = Scraper::start(&kubeconfig).await;
    let want: Expected = [
        (
            ("pods-critical".to_owned(), web.url("/metrics")),
            target_labels(
                "pods-critical",
                &web,
                "default",
                "web-1",
                &[("app", "web"), ("app_kubernetes_io_name", "web-app")],
            ),
        ),
        (
            ("pods-standard".to_owned(), api.url("/custom/metrics")),
            target_labels("pods-standard", &api, "shop", "api-1", &[("app", "api")]),
        ),
        (
            ("pods-critical".to_owned(), named.url("/metrics")),
            target_labels(
                "pods-critical",
                &named,
                "default",
                "named-1",
                &[("container", "app")],
            ),
        ),
    ]
    .into_iter()
    .collect();
    wait_targets(
        &scraper,
        &want,
        Duration::from_secs(15),
        "the three targets, up",
    )
    .await;
    assert_eq!(
        scraper.published(),
        [
            format!("127.0.0.2:{}", web.port),
            format!("127.0.0.3:{}", api.port),
            format!("127.0.0.4:{}", named.port)
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert!(api.hits.lock().iter().all(|(_, p)| p == "/custom/metrics"));

    // Three more scrape intervals change nothing, and the other pods are never scraped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_targets(&scraper, &want, Duration::ZERO, "the same three targets").await;
    assert!(web.hits() >= 3, "web scraped every second: {}", web.hits());
    assert_eq!((quiet.hits(), other_node.hits(), no_port.hits()), (0, 0, 0));
    let stats = scraper.stats();
    assert_eq!(stats.relists(), 1);
    assert_eq!(stats.watch_errors(), 0);
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_pods_are_scraped_within_two_seconds() {
    let _one = PLANE.lock().await;
    init_logs();
    let plane = Plane::up();
    let kubeconfig = plane.agent_kubeconfig();
    let admin = plane.admin_client().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let scraper = Scraper::start(&kubeconfig).await;
    assert_eq!(scraper.published(), Vec::<String>::new());

    // When the test's own watch sees each pod Running: the fake kubelet's share of the latency.
    let running: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let watch_task = {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let running = running.clone();
        let stream = watcher(pods.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(p)) = stream.next().await {
                let up = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if up {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    running.lock().entry(name).or_insert_with(Instant::now);
                }
            }
        })
    };

    // When discovery publishes each address: its own share.
    let published: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let publish_task = {
        let published = published.clone();
        let mut rx = scraper.discoveries.iter().next().unwrap().1.targets();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let now = Instant::now();
                for g in rx.borrow_and_update().iter() {
                    for t in &g.targets {
                        published.lock().entry(t.clone()).or_insert(now);
                    }
                }
            }
        })
    };
    let mut running_to_published = Vec::new();
    let mut to_scrape = Vec::new();
    let mut from_running = Vec::new();
    let mut servers = Vec::new();
    for i in 0..6 {
        let s = MetricsServer::start(&format!("127.0.1.{}", i + 1)).await;
        let name = format!("burst-{i}");
        let a = scrape(s.port, "critical");
        let created = Instant::now();
        create(&pods, &pod(&name, "n1", &s.ip, &[], &refs(&a), json!([]))).await;
        let first = eventually(Duration::from_secs(10), "first scrape", || async {
            s.first_hit()
        })
        .await;
        let up = eventually(Duration::from_secs(2), "Running seen", || async {
            running.lock().get(&name).copied()
        })
        .await;
        let at = published.lock()[&format!("{}:{}", s.ip, s.port)];
        running_to_published.push(at.saturating_duration_since(up));
        to_scrape.push(first - created);
        from_running.push(first.saturating_duration_since(up));
        servers.push(s);
    }
    watch_task.abort();
    publish_task.abort();
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (p50, max) = stats(&mut to_scrape);
    let (rp50, rmax) = stats(&mut from_running);
    let (dp50, dmax) = stats(&mut running_to_published);
    eprintln!(
        "pod Running (seen by the test's own watch) -> published by discovery: p50 {dp50:?} max {dmax:?}"
    );
    eprintln!(
        "pod created -> first scrape over {} pods: p50 {:?} max {:?}; pod Running -> first scrape: p50 {:?} max {:?}",
        to_scrape.len(),
        p50,
        max,
        rp50,
        rmax
    );
    // A critical target is scraped at its slot within its 1 s interval; ready-pods.sh polls every 0.5 s.
    assert!(p50 <= Duration::from_secs(2), "p50 {p50:?}");
    assert!(max <= Duration::from_millis(2500), "max {max:?}");
    assert!(
        rmax <= Duration::from_millis(1500),
        "Running -> scrape max {rmax:?}"
    );
    // Both watches get the same event from the API server: discovery adds no delay of its own.
    assert!(
        dmax <= Duration::from_millis(200),
        "Running -> published max {dmax:?}"
    );
    assert_eq!(scraper.published().len(), 6);
    assert_eq!(scraper.stats().watch_errors(), 0);
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_stop_being_scraped() {
    let _one = PLANE.lock().await;
    init_logs();
    let plane = Plane::up();
    let kubeconfig = plane.agent_kubeconfig();
    let admin = plane.admin_client().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let keep = MetricsServer::start("127.0.2.1").await;
    let gone = MetricsServer::start("127.0.2.2").await;
    for (name, s) in [("keep-1", &keep), ("gone-1", &gone)] {
        let a = scrape(s.port, "critical");
        create(&pods, &pod(name, "n1", &s.ip, &[], &refs(&a), json!([]))).await;
    }
    let scraper = Scraper::start(&kubeconfig).await;
    let both: Expected = [("keep-1", &keep), ("gone-1", &gone)]
        .into_iter()
        .map(|(name, s)| {
            (
                ("pods-critical".to_owned(), s.url("/metrics")),
                target_labels("pods-critical", s, "default", name, &[]),
            )
        })
        .collect();
    wait_targets(&scraper, &both, Duration::from_secs(15), "both targets up").await;

    // A graceful delete: the pod is terminating (deletionTimestamp set) before it is gone; it stops
    // being a target at once.
    let deleted = Instant::now();
    pods.delete("gone-1", &DeleteParams::default())
        .await
        .unwrap();
    let mut one = both.clone();
    one.retain(|(_, url), _| *url == keep.url("/metrics"));
    wait_targets(&scraper, &one, Duration::from_secs(2), "gone-1 removed").await;
    eprintln!("pod deleted -> target removed: {:?}", deleted.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = gone.hits();
    let kept = keep.hits();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gone.hits(), hits, "no scrape after the target was removed");
    assert!(keep.hits() >= kept + 2, "the other pod is still scraped");
    wait_targets(&scraper, &one, Duration::ZERO, "keep-1 only").await;
    // ready-pods.sh plays the kubelet and removes the pod object; nothing changes for the agent.
    eventually(Duration::from_secs(10), "pod object gone", || async {
        pods.get_opt("gone-1")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(scraper.published(), [format!("127.0.2.1:{}", keep.port)]);
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabeled_pods_are_followed() {
    let _one = PLANE.lock().await;
    init_logs();
    let plane = Plane::up();
    let kubeconfig = plane.agent_kubeconfig();
    let admin = plane.admin_client().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let s = MetricsServer::start("127.0.3.1").await;
    let a = scrape(s.port, "critical");
    create(
        &pods,
        &pod(
            "web-1",
            "n1",
            &s.ip,
            &[("app", "web")],
            &refs(&a),
            json!([]),
        ),
    )
    .await;
    let scraper = Scraper::start(&kubeconfig).await;
    let expect = |job: &str, url: String, extra: &[(&str, &str)]| -> Expected {
        [(
            (job.to_owned(), url),
            target_labels(job, &s, "default", "web-1", extra),
        )]
        .into_iter()
        .collect()
    };
    wait_targets(
        &scraper,
        &expect("pods-critical", s.url("/metrics"), &[("app", "web")]),
        Duration::from_secs(15),
        "web-1 critical",
    )
    .await;
    let patch = |body: serde_json::Value| {
        let pods = pods.clone();
        async move {
            pods.patch("web-1", &PatchParams::default(), &Patch::Merge(body))
                .await
                .unwrap();
            Instant::now()
        }
    };

    // A pod label listed in attach_labels changes: the target label follows.
    let t = patch(json!({"metadata": {"labels": {"app": "shop"}}})).await;
    wait_targets(
        &scraper,
        &expect("pods-critical", s.url("/metrics"), &[("app", "shop")]),
        Duration::from_secs(3),
        "app=shop",
    )
    .await;
    eprintln!(
        "label changed -> target relabeled and up: {:?}",
        t.elapsed()
    );

    // The tier annotation changes: the target moves from the critical job to the standard one.
    let t = patch(json!({"metadata": {"annotations": {"surge.dev/tier": "standard"}}})).await;
    wait_targets(
        &scraper,
        &expect("pods-standard", s.url("/metrics"), &[("app", "shop")]),
        Duration::from_secs(3),
        "tier standard",
    )
    .await;
    eprintln!("tier changed -> target moved: {:?}", t.elapsed());

    // The path annotation appears: the URL follows.
    patch(json!({"metadata": {"annotations": {"prometheus.io/path": "/v2/metrics"}}})).await;
    wait_targets(
        &scraper,
        &expect("pods-standard", s.url("/v2/metrics"), &[("app", "shop")]),
        Duration::from_secs(3),
        "path /v2/metrics",
    )
    .await;
    assert_eq!(
        s.hits.lock().last().map(|h| h.1.clone()).as_deref(),
        Some("/v2/metrics")
    );

    // The label is removed: so is the target label.
    patch(json!({"metadata": {"labels": {"app": null}}})).await;
    wait_targets(
        &scraper,
        &expect("pods-standard", s.url("/v2/metrics"), &[]),
        Duration::from_secs(3),
        "no app label",
    )
    .await;

    // Opting out: the target goes.
    patch(json!({"metadata": {"annotations": {"prometheus.io/scrape": "false"}}})).await;
    wait_targets(
        &scraper,
        &Expected::new(),
        Duration::from_secs(3),
        "no target",
    )
    .await;
    assert_eq!(scraper.published(), Vec::<String>::new());
    assert_eq!(scraper.stats().watch_errors(), 0);
    scraper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_loses_no_target_and_recovers() {
    let _one = PLANE.lock().await;
    init_logs();
    let mut plane = Plane::up();
    let kubeconfig = plane.agent_kubeconfig();
    let admin = plane.admin_client().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let a = MetricsServer::start("127.0.4.1").await;
    let b = MetricsServer::start("127.0.4.2").await;
    let c = MetricsServer::start("127.0.4.3").await;
    for (name, s, tier) in [("a-1", &a, "critical"), ("b-1", &b, "standard")] {
        let ann = scrape(s.port, tier);
        create(&pods, &pod(name, "n1", &s.ip, &[], &refs(&ann), json!([]))).await;
    }
    let scraper = Arc::new(Scraper::start(&kubeconfig).await);
    let two: Expected = [("a-1", &a, "pods-critical"), ("b-1", &b, "pods-standard")]
        .into_iter()
        .map(|(name, s, job)| {
            (
                (job.to_owned(), s.url("/metrics")),
                target_labels(job, s, "default", name, &[]),
            )
        })
        .collect();
    wait_targets(&scraper, &two, Duration::from_secs(15), "a and b up").await;
    let stats = scraper.stats();
    let (publishes, relists) = (stats.publishes(), stats.relists());

    // From here on, any moment a or b is missing from the published list or the agent's targets is a
    // lost target.
    let stop_watching = CancellationToken::new();
    let lost: Arc<Mutex<Vec<String>>> = Arc::default();
    let monitor = {
        let (scraper, lost, stop) = (scraper.clone(), lost.clone(), stop_watching.clone());
        let (a_url, b_url) = (a.url("/metrics"), b.url("/metrics"));
        let (a_addr, b_addr) = (
            format!("{}:{}", a.ip, a.port),
            format!("{}:{}", b.ip, b.port),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let published = scraper.published();
                let targets = scraper.targets().await;
                let urls: Vec<&String> = targets.keys().map(|(_, u)| u).collect();
                if !published.contains(&a_addr) || !published.contains(&b_addr) {
                    lost.lock().push(format!("published {published:?}"));
                }
                if !urls.contains(&&a_url) || !urls.contains(&&b_url) {
                    lost.lock().push(format!("agent targets {urls:?}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let cmdline = plane.kill_apiserver();
    let killed = Instant::now();
    // The watch notices at once (the connection is reset) and retries with backoff.
    eventually(Duration::from_secs(5), "a watch error", || async {
        (stats.watch_errors() > 0).then_some(())
    })
    .await;
    let (a_hits, b_hits) = (a.hits(), b.hits());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        a.hits() >= a_hits + 2 && b.hits() >= b_hits + 2,
        "targets are still scraped while the API server is down"
    );

    // The cluster goes on without the agent's API server: a pod created on n1 through another one.
    plane.start_apiserver(&cmdline, SECOND_APISERVER_PORT, "kube-apiserver-2");
    plane.wait_api_ready(SECOND_APISERVER_PORT).await;
    let mut config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&plane.env["KUBECONFIG"]).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.cluster_url = format!("https://127.0.0.1:{SECOND_APISERVER_PORT}")
        .parse()
        .unwrap();
    let second: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let ann = scrape(c.port, "critical");
    create(
        &second,
        &pod("c-1", "n1", &c.ip, &[], &refs(&ann), json!([])),
    )
    .await;
    // ready-pods.sh talks to the API server that is down: play its part through the second one.
    second
        .patch_status(
            "c-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Running", "podIP": c.ip, "podIPs": [{"ip": c.ip}],
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.hits(), 0, "c cannot be known before the watch is back");
    assert_eq!(stats.publishes(), publishes, "nothing published while down");

    // The agent's API server comes back with the same command line.
    plane.start_apiserver(&cmdline, APISERVER_PORT, "kube-apiserver");
    plane.wait_api_ready(APISERVER_PORT).await;
    let back = Instant::now();
    eprintln!("API server down for {:?}", back - killed);
    let first = eventually(
        Duration::from_secs(20),
        "c scraped after recovery",
        || async { c.first_hit() },
    )
    .await;
    eprintln!(
        "API server ready -> pod created while it was down is scraped: {:?}; watch errors {}, 410s {}, relists {} -> {}",
        first - back,
        stats.watch_errors(),
        stats.expirations(),
        relists,
        stats.relists()
    );
    let three: Expected = two
        .clone()
        .into_iter()
        .chain([(
            ("pods-critical".to_owned(), c.url("/metrics")),
            target_labels("pods-critical", &c, "default", "c-1", &[]),
        )])
        .collect();
    wait_targets(&scraper, &three, Duration::from_secs(3), "a, b and c up").await;

    // Until here no target was lost; b now goes on purpose.
    stop_watching.cancel();
    monitor.await.unwrap();
    // Churn is followed again through the restarted API server.
    pods.delete("b-1", &DeleteParams::default()).await.unwrap();
    let mut two_after = three.clone();
    two_after.retain(|(_, url), _| *url != b.url("/metrics"));
    wait_targets(&scraper, &two_after, Duration::from_secs(3), "b removed").await;

    assert_eq!(
        lost.lock().as_slice(),
        &[] as &[String],
        "targets lost meanwhile"
    );
    // The restarted API server's watch cache starts after the resource version the watch resumes from
    // (c was written meanwhile), so it answers 410 Gone: exactly one relist, which found c.
    assert_eq!(stats.expirations(), 1);
    assert_eq!(stats.relists(), relists + 1);
    // Exactly two publishes since the restart: c added (by the relist), b removed.
    assert_eq!(stats.publishes(), publishes + 2);
    assert!(stats.watch_errors() >= 1);
    Arc::try_unwrap(scraper).ok().unwrap().stop().await;
}
