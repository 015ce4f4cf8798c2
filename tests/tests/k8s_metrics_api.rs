//! The aggregator's Kubernetes metrics APIs on a real control plane (kube-apiserver v1.36 with the
//! aggregation layer and front-proxy auth, the real HPA controller at a 1 s sync, kubectl).
//!
//! One control plane and one in-process HTTPS metrics server for the whole binary (on a runtime of its own,
//! so it outlives each test's runtime); scenarios are serialized with a mutex because they share the
//! APIService registrations. A feeder writes the current value of every fed series every 250 ms, so the
//! data stays fresh (`stale_after` 5 s) for as long as a scenario runs.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::Value as Json;
use surge_aggregator::{AggregatorState, CacheOptions, IngestOptions, QueryOptions};
use surge_metrics_api::{
    self as k8s_api, ClientCa, CustomMetricRule, ExternalMetricRule, MetricsApi, MetricsApiOptions,
    RequestHeaderOptions, TlsFiles,
};
use surge_model::{Labels, Sample};
use surge_tests::k8s::{ControlPlane, control_plane};

const GROUP_VERSIONS: [&str; 3] = [
    "external.metrics.k8s.io/v1beta1",
    "custom.metrics.k8s.io/v1beta1",
    "custom.metrics.k8s.io/v1beta2",
];

/// Scenarios share the control plane and the APIServices.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    plane: &'static ControlPlane,
    state: Arc<AggregatorState>,
    port: u16,
    /// Series written every 250 ms with the current time: key → (labels, value).
    feed: Arc<Mutex<HashMap<String, (Labels, f64)>>>,
}

static ENV: OnceLock<Result<Env, String>> = OnceLock::new();

fn env() -> &'static Env {
    match ENV.get_or_init(|| setup().map_err(|e| format!("{e:#}"))) {
        Ok(e) => e,
        Err(e) => panic!("setup failed: {e}"),
    }
}

fn ext(name: &str, query: &str) -> ExternalMetricRule {
    ExternalMetricRule {
        name: name.into(),
        query: query.into(),
    }
}

fn custom(name: &str, resource: &str, query: &str) -> CustomMetricRule {
    CustomMetricRule {
        name: name.into(),
        resource: resource.into(),
        query: query.into(),
        object_label: None,
        window: None,
        ignore_label_selector: false,
    }
}

fn setup() -> Result<Env> {
    let plane = control_plane()?;
    let pki = plane.pki();
    let state = AggregatorState::standalone(
        CacheOptions::default(),
        QueryOptions::default(),
        IngestOptions::default(),
    );
    let opts = MetricsApiOptions {
        tls: Some(TlsFiles {
            cert_file: pki.join("extension-server.crt"),
            key_file: pki.join("extension-server.key"),
            reload_interval: Duration::from_secs(5),
        }),
        requestheader: Some(RequestHeaderOptions {
            client_ca: ClientCa::File(pki.join("front-proxy-ca.crt")),
            allowed_names: vec!["front-proxy-client".into()],
        }),
        external_metrics: vec![
            ext("queue_total", "sum(queue_depth)"),
            ext("ext_avg", "sum(hpa_ext_avg_source)"),
            ext("ext_value", "sum(hpa_ext_value_source)"),
            ext("stale_metric", "sum(stale_source)"),
        ],
        custom_metrics: vec![
            custom(
                "queue_depth",
                "pods",
                "sum by (namespace, pod) (queue_depth)",
            ),
            custom(
                "queue_depth",
                "deployments.apps",
                "sum by (namespace, deployment) (queue_depth)",
            ),
            custom(
                "queue_depth",
                "namespaces",
                "sum by (namespace) (queue_depth)",
            ),
            custom(
                "hpa_pod_load",
                "pods",
                "sum by (namespace, pod) (hpa_pod_load)",
            ),
        ],
        ..MetricsApiOptions::default()
    };
    let api = Arc::new(MetricsApi::new(
        state.cache().clone(),
        state.query_options(),
        &opts,
        &mut Registry::default(),
    )?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let feed: Arc<Mutex<HashMap<String, (Labels, f64)>>> = Arc::default();
    let (st, fd) = (state.clone(), feed.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("server runtime");
        rt.block_on(async move {
            tokio::spawn(async move {
                loop {
                    let now = surge_aggregator::now_ms();
                    let rows: Vec<(Labels, f64)> = fd.lock().values().cloned().collect();
                    for (labels, v) in rows {
                        let _ = st.cache().append(
                            &labels,
                            Sample {
                                timestamp_ms: now,
                                value: v,
                            },
                            now,
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = k8s_api::serve_https(listener, api, std::future::pending()).await;
        });
    });
    let env = Env {
        plane,
        state,
        port,
        feed,
    };
    register(&env)?;
    plane.try_script(
        "fake-node.sh",
        &[
            "n1",
            "64",
            "256Gi",
            "500",
            "node.kubernetes.io/instance-type=m5.xlarge",
        ],
    )?;
    Ok(env)
}

/// Registers the three APIServices and waits until they are Available.
fn register(env: &Env) -> Result<()> {
    let port = env.port.to_string();
    let mut args = vec![port.as_str()];
    args.extend(GROUP_VERSIONS);
    env.plane.try_script("expose-local.sh", &args)?;
    for gv in GROUP_VERSIONS {
        let (group, version) = gv.split_once('/').unwrap_or_default();
        env.plane.try_kubectl(
            &[
                "wait",
                "--for=condition=Available",
                &format!("apiservice/{version}.{group}"),
                "--timeout=90s",
            ],
            None,
        )?;
    }
    Ok(())
}

impl Env {
    fn set(&self, key: &str, pairs: &[(&str, &str)], value: f64) {
        self.feed.lock().insert(
            key.to_owned(),
            (Labels::from_pairs(pairs.iter().copied()), value),
        );
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.plane.try_kubectl(args, None)
    }

    /// `kubectl apply -f -` with `yaml`.
    fn apply(&self, yaml: &str) -> Result<String> {
        self.plane.try_kubectl(&["apply", "-f", "-"], Some(yaml))
    }

    /// `kubectl get --raw PATH` through kube-apiserver, parsed.
    fn raw(&self, path: &str) -> Result<Json> {
        let out = self.kubectl(&["get", "--raw", path])?;
        serde_json::from_str(&out).with_context(|| format!("parsing {out:?}"))
    }

    fn replicas(&self, ns: &str, name: &str) -> Result<(i64, i64)> {
        let out = self.kubectl(&[
            "get",
            "deploy",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas} {.status.readyReplicas}",
        ])?;
        let mut it = out
            .split_whitespace()
            .map(|s| s.parse::<i64>().unwrap_or(0));
        Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
    }

    /// Waits until the Deployment wants `want` replicas and all are ready.
    fn wait_ready(&self, ns: &str, name: &str, want: i64, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let (spec, ready) = self.replicas(ns, name)?;
            if spec == want && ready == want {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("{ns}/{name}: {spec} replicas ({ready} ready), want {want}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `.spec.replicas` until it differs from `from`; returns the new value and how long it took.
    fn first_change(
        &self,
        ns: &str,
        name: &str,
        from: i64,
        timeout: Duration,
    ) -> Result<(i64, Duration)> {
        let start = Instant::now();
        loop {
            let (spec, _) = self.replicas(ns, name)?;
            if spec != from {
                return Ok((spec, start.elapsed()));
            }
            if start.elapsed() > timeout {
                bail!("{ns}/{name}: still {from} replicas after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts the Deployment keeps `want` replicas for `d`.
    fn stays(&self, ns: &str, name: &str, want: i64, d: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < d {
            let (spec, _) = self.replicas(ns, name)?;
            if spec != want {
                bail!("{ns}/{name}: moved to {spec} replicas, want to stay at {want}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn deployment(&self, ns: &str, name: &str, replicas: i64) -> Result<()> {
        let _ = self.kubectl(&["create", "namespace", ns]);
        self.apply(&format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: registry.k8s.io/pause:3.10, resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}]
"#
        ))?;
        self.wait_ready(ns, name, replicas, Duration::from_secs(60))
    }

    /// An HPA with immediate scale-up and scale-down (no stabilization, generous 1 s policies).
    fn hpa(&self, ns: &str, name: &str, max: i64, metric: &str) -> Result<()> {
        self.apply(&format!(
            r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: {max}
  metrics: [{metric}]
  behavior:
    scaleUp: {{stabilizationWindowSeconds: 0, selectPolicy: Max, policies: [{{type: Pods, value: 100, periodSeconds: 1}}]}}
    scaleDown: {{stabilizationWindowSeconds: 0, selectPolicy: Max, policies: [{{type: Percent, value: 100, periodSeconds: 1}}]}}
"#
        ))?;
        Ok(())
    }

    /// Waits until the HPA has read its metric successfully (ScalingActive=True).
    fn wait_hpa_active(&self, ns: &str, name: &str) -> Result<()> {
        self.kubectl(&[
            "wait",
            "-n",
            ns,
            "--for=condition=ScalingActive",
            &format!("hpa/{name}"),
            "--timeout=60s",
        ])
        .map(|_| ())
    }
}

fn items(v: &Json) -> Vec<Json> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn demo_data(env: &Env) {
    for (pod, v, app) in [
        ("web-0", 1.5, "web"),
        ("web-1", 4.0, "web"),
        ("web-2", 7.0, "canary"),
    ] {
        env.set(
            &format!("demo/{pod}"),
            &[
                ("__name__", "queue_depth"),
                ("namespace", "demo"),
                ("pod", pod),
                ("app", app),
                ("deployment", app),
            ],
            v,
        );
    }
}

#[tokio::test]
async fn a_values_through_kube_apiserver() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    demo_data(env);
    std::thread::sleep(Duration::from_millis(600));
    for gv in GROUP_VERSIONS {
        let (group, version) = gv.split_once('/').unwrap_or_default();
        let status = env.kubectl(&[
            "get",
            "apiservice",
            &format!("{version}.{group}"),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ])?;
        assert_eq!(status, "True", "{gv}");
        let list = env.raw(&format!("/apis/{gv}"))?;
        assert_eq!(list["kind"], "APIResourceList");
        assert!(!list["resources"].as_array().unwrap().is_empty());
    }
    // External, narrowed by the label selector: 1.5 + 4.
    let v = env.raw(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=app%3Dweb",
    )?;
    assert_eq!(v["kind"], "ExternalMetricValueList");
    assert_eq!(items(&v).len(), 1);
    assert_eq!(items(&v)[0]["value"], "5500m");
    assert_eq!(items(&v)[0]["metricName"], "queue_total");
    // Pods by selector, both versions.
    let v = env.raw("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/queue_depth?labelSelector=app%3Dweb")?;
    let got: Vec<(String, String)> = items(&v)
        .iter()
        .map(|i| {
            assert_eq!(i["describedObject"]["kind"], "Pod");
            assert_eq!(i["describedObject"]["namespace"], "demo");
            (
                i["describedObject"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                i["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("web-0".to_owned(), "1500m".to_owned()),
            ("web-1".to_owned(), "4".to_owned())
        ]
    );
    let v = env.raw("/apis/custom.metrics.k8s.io/v1beta1/namespaces/demo/pods/*/queue_depth?metricLabelSelector=app%20in%20(canary)")?;
    assert_eq!(items(&v).len(), 1);
    assert_eq!(items(&v)[0]["metricName"], "queue_depth");
    assert_eq!(items(&v)[0]["value"], "7");
    assert_eq!(items(&v)[0]["window"], 60);
    // One object, and the namespace itself.
    let v = env.raw(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/deployments.apps/web/queue_depth",
    )?;
    assert_eq!(items(&v).len(), 1);
    assert_eq!(items(&v)[0]["describedObject"]["kind"], "Deployment");
    assert_eq!(items(&v)[0]["describedObject"]["apiVersion"], "apps/v1");
    assert_eq!(items(&v)[0]["value"], "5500m");
    let v = env.raw("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/metrics/queue_depth")?;
    assert_eq!(items(&v)[0]["describedObject"]["kind"], "Namespace");
    assert_eq!(items(&v)[0]["value"], "12500m");
    // kubectl straight at surge, with the front-proxy client certificate.
    let pki = env.plane.pki();
    let out = env.kubectl(&[
        "--kubeconfig=/dev/null",
        &format!("--server=https://127.0.0.1:{}", env.port),
        "--insecure-skip-tls-verify",
        &format!(
            "--client-certificate={}",
            pki.join("front-proxy-client.crt").display()
        ),
        &format!(
            "--client-key={}",
            pki.join("front-proxy-client.key").display()
        ),
        "get",
        "--raw",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=app%3Dweb",
    ])?;
    let v: Json = serde_json::from_str(&out)?;
    assert_eq!(items(&v)[0]["value"], "5500m");
    Ok(())
}

/// curl's HTTP status for GET `path` straight at surge (000 when TLS fails).
fn curl_status(env: &Env, path: &str, cert: Option<(&str, &str)>) -> Result<String> {
    let url = format!("https://127.0.0.1:{}{path}", env.port);
    let cacert = env.plane.pki().join("ca.crt");
    let cacert = cacert.display().to_string();
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &cacert,
    ];
    if let Some((c, k)) = cert {
        args.extend(["--cert", c, "--key", k]);
    }
    args.push(&url);
    let out = std::process::Command::new("curl").args(&args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn b_only_the_front_proxy_is_served() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    let path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total";
    let pki = env.plane.pki();
    let p = |f: &str| pki.join(f).display().to_string();
    assert_eq!(curl_status(env, path, None)?, "401");
    assert_eq!(curl_status(env, "/healthz", None)?, "200");
    let (c, k) = (p("front-proxy-client.crt"), p("front-proxy-client.key"));
    assert_eq!(curl_status(env, path, Some((&c, &k)))?, "200");
    // The admin certificate is signed by the cluster CA, not the front-proxy CA: the handshake fails.
    let (c, k) = (p("admin.crt"), p("admin.key"));
    assert_eq!(curl_status(env, path, Some((&c, &k)))?, "000");
    // A certificate named front-proxy-client from a CA of our own: refused too.
    let dir = tempfile::tempdir()?;
    let d = |f: &str| dir.path().join(f).display().to_string();
    let sh = format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout {ca_key} -out {ca} -days 1 -subj /CN=evil-ca && \
         openssl req -newkey rsa:2048 -nodes -keyout {key} -out {csr} -subj /CN=front-proxy-client && \
         printf 'extendedKeyUsage=clientAuth\\n' > {ext} && \
         openssl x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {crt} -days 1 -extfile {ext}",
        ca_key = d("ca.key"),
        ca = d("ca.crt"),
        key = d("c.key"),
        csr = d("c.csr"),
        ext = d("c.ext"),
        crt = d("c.crt"),
    );
    let ok = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()?
        .status
        .success();
    assert!(ok, "openssl failed");
    assert_eq!(
        curl_status(env, path, Some((&d("c.crt"), &d("c.key"))))?,
        "000"
    );
    Ok(())
}

#[tokio::test]
async fn c1_external_average_value_hpa() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    let (ns, name) = ("hpa-avg", "worker");
    let src = [("__name__", "hpa_ext_avg_source")];
    env.set("avg", &src, 5.0);
    env.deployment(ns, name, 1)?;
    env.hpa(
        ns,
        name,
        10,
        "{type: External, external: {metric: {name: ext_avg}, target: {type: AverageValue, averageValue: '10'}}}",
    )?;
    env.wait_hpa_active(ns, name)?;
    env.stays(ns, name, 1, Duration::from_secs(3))?;
    // 45 / 10 → ceil(4.5) = 5, from any replica count.
    env.set("avg", &src, 45.0);
    let (to, took) = env.first_change(ns, name, 1, Duration::from_secs(30))?;
    eprintln!(
        "FIGURE external AverageValue: metric step 5 -> 45 to replica change 1 -> {to}: {took:?}"
    );
    assert_eq!(to, 5);
    env.wait_ready(ns, name, 5, Duration::from_secs(30))?;
    env.stays(ns, name, 5, Duration::from_secs(4))?;
    // 12 / 10 → ceil(1.2) = 2.
    env.set("avg", &src, 12.0);
    let (to, took) = env.first_change(ns, name, 5, Duration::from_secs(30))?;
    eprintln!(
        "FIGURE external AverageValue: metric step 45 -> 12 to replica change 5 -> {to}: {took:?}"
    );
    assert_eq!(to, 2);
    env.stays(ns, name, 2, Duration::from_secs(4))?;
    env.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

#[tokio::test]
async fn c2_external_value_hpa() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    let (ns, name) = ("hpa-value", "worker");
    let src = [("__name__", "hpa_ext_value_source")];
    env.set("value", &src, 10.0);
    env.deployment(ns, name, 2)?;
    env.hpa(
        ns,
        name,
        6,
        "{type: External, external: {metric: {name: ext_value}, target: {type: Value, value: '10'}}}",
    )?;
    env.wait_hpa_active(ns, name)?;
    // ratio 1 with 2 ready pods: within tolerance.
    env.stays(ns, name, 2, Duration::from_secs(3))?;
    // Value targets scale the ready pods: ceil(20/10 · 2) = 4 (and on, as the value does not fall, to max 6).
    env.set("value", &src, 20.0);
    let (to, took) = env.first_change(ns, name, 2, Duration::from_secs(30))?;
    eprintln!("FIGURE external Value: metric step 10 -> 20 to replica change 2 -> {to}: {took:?}");
    assert_eq!(to, 4);
    env.wait_ready(ns, name, 6, Duration::from_secs(30))?;
    // ratio 1 again with 6 ready: stays; then ceil(5/10 · 6) = 3.
    env.set("value", &src, 10.0);
    env.stays(ns, name, 6, Duration::from_secs(3))?;
    env.set("value", &src, 5.0);
    let (to, took) = env.first_change(ns, name, 6, Duration::from_secs(30))?;
    eprintln!("FIGURE external Value: metric step 10 -> 5 to replica change 6 -> {to}: {took:?}");
    assert_eq!(to, 3);
    env.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

#[tokio::test]
async fn c3_pods_custom_metric_hpa() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    let (ns, name) = ("hpa-pods", "web");
    env.deployment(ns, name, 2)?;
    let pods = env.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let pods: Vec<String> = pods.split_whitespace().map(str::to_owned).collect();
    assert_eq!(pods.len(), 2);
    // Only the two original pods report; pods the HPA adds stay without a metric ("missing").
    let feed = |v: f64| {
        for p in &pods {
            env.set(
                &format!("pods/{p}"),
                &[
                    ("__name__", "hpa_pod_load"),
                    ("namespace", ns),
                    ("pod", p),
                    ("app", "web"),
                ],
                v,
            );
        }
    };
    feed(10.0);
    env.hpa(
        ns,
        name,
        10,
        "{type: Pods, pods: {metric: {name: hpa_pod_load}, target: {type: AverageValue, averageValue: '10'}}}",
    )?;
    env.wait_hpa_active(ns, name)?;
    env.stays(ns, name, 2, Duration::from_secs(3))?;
    // avg 25 over 2 pods: ceil(2.5 · 2) = 5; then 3 missing pods count 0 on scale-up: 50/50 → stays.
    feed(25.0);
    let (to, took) = env.first_change(ns, name, 2, Duration::from_secs(30))?;
    eprintln!(
        "FIGURE Pods AverageValue: metric step 10 -> 25 to replica change 2 -> {to}: {took:?}"
    );
    assert_eq!(to, 5);
    env.wait_ready(ns, name, 5, Duration::from_secs(30))?;
    env.stays(ns, name, 5, Duration::from_secs(4))?;
    // avg 5: scale-down counts the 3 missing pods at the target: (5+5+30)/50 = 0.8 → ceil(0.8 · 5) = 4.
    feed(5.0);
    let (to, took) = env.first_change(ns, name, 5, Duration::from_secs(30))?;
    eprintln!(
        "FIGURE Pods AverageValue: metric step 25 -> 5 to replica change 5 -> {to}: {took:?}"
    );
    assert_eq!(to, 4);
    env.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

#[tokio::test]
async fn d_unknown_stale_and_deleted_apiservice() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let env = env();
    demo_data(env);
    // Unknown metric: 404 NotFound through kube-apiserver.
    let err = env
        .raw("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/no_such_metric")
        .unwrap_err()
        .to_string();
    assert!(err.contains("NotFound"), "{err}");
    // Stale data: the last sample is 30 s old → 503, never the old value.
    let now = surge_aggregator::now_ms();
    env.state
        .cache()
        .append(
            &Labels::from_pairs([("__name__", "stale_source")]),
            Sample {
                timestamp_ms: now - 30_000,
                value: 7.0,
            },
            now,
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let err = env
        .raw("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/stale_metric")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ServiceUnavailable") && err.contains("stale"),
        "{err}"
    );
    // Malformed selector: 400.
    let err = env
        .raw("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total?labelSelector=app%20in%20web")
        .unwrap_err()
        .to_string();
    assert!(err.contains("BadRequest"), "{err}");
    // A deleted APIService: the group is gone from kube-apiserver; registering again brings it back.
    env.kubectl(&["delete", "apiservice", "v1beta1.external.metrics.k8s.io"])?;
    let start = Instant::now();
    loop {
        match env.raw("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total") {
            Err(e) if e.to_string().contains("NotFound") || e.to_string().contains("not find") => {
                break;
            }
            other => {
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("still served after deleting the APIService: {other:?}");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
    register(env)?;
    let v = env.raw("/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_total")?;
    assert_eq!(items(&v)[0]["value"], "12500m");
    Ok(())
}
