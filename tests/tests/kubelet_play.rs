//! kubelet-play (`surge_tests::kubelet`) against a real control plane (`../shared/k8s`, v1.36): pods
//! of real Deployments, bound by the real scheduler to the fake node `n1`, run as local processes.
//!
//! One scenario on this file's own control plane:
//! - Deployment `agg`: an init container (`registry.k8s.io/kubectl`, played by the bundle's kubectl)
//!   running `kubectl auth whoami` with the in-cluster config (`KUBERNETES_SERVICE_*`, the projected
//!   token and CA); the surge aggregator (`registry.example.com/surge/surge:0.1.0` → this workspace's
//!   `surge` binary) as uid 65532 with its config from a ConfigMap `subPath` (`listen: "${POD_IP}:9091"`,
//!   `POD_IP` from `fieldRef status.podIP`), a Secret volume and `secretKeyRef`, `$(VAR)` expansion in
//!   env and args; an app container (`nginx`) only reported running. It becomes Ready through its
//!   `httpGet /readyz` probe; `/readyz` answers on the pod IP; the token in its mount namespace
//!   authenticates (TokenReview) as `system:serviceaccount:kp:kp-agg`;
//! - Deployment `agg-any`: two replicas listening on `0.0.0.0:9091` (as the real manifests do), which
//!   the bind shim turns into one pod IP each; one is SIGKILLed and restarts (restartCount 1);
//! - Service `agg` (port 80 → `http`): a loopback VIP proxying to the pod, named in the pod's
//!   `/etc/hosts` (`getent hosts agg.kp.svc` inside its mount namespace), and an FQDN-typed
//!   EndpointSlice carrying the pod IP (what the API server's aggregator routing reads);
//! - a `restartPolicy: Never` pod whose process exits 0 ends `Succeeded`; a pod whose ConfigMap does
//!   not exist yet waits in `ContainerCreating` (with the reason), then starts once it is created;
//! - deleting the `agg` pod SIGTERMs its process and removes the pod object; the Service follows the
//!   replacement pod;
//! - dropping the kubelet stops every process and removes the mount points it created.
//!
//! Needs root (CI runs as root), etcd (`apt-get install -y etcd-server`), util-linux and cc.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use surge_tests::k8s::{ControlPlane, start_plane};
use surge_tests::kubelet::{ImageRule, Kubelet, KubeletConfig, SERVICE_ACCOUNT_DIR, pod_is_ready};

/// This file's control plane ports (other suites use others).
const APISERVER_PORT: u16 = 47443;
const ETCD_PORT: u16 = 54790;
const NS: &str = "kp";

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kp}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kp-agg, namespace: kp}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kp-config, namespace: kp}
data:
  surge.yaml: |
    aggregator:
      listen: "${POD_IP}:9091"
  any.yaml: |
    aggregator:
      listen: "0.0.0.0:9091"
---
apiVersion: v1
kind: Secret
metadata: {name: kp-secret, namespace: kp}
stringData:
  token: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: agg, namespace: kp}
spec:
  replicas: 1
  selector: {matchLabels: {app: agg}}
  template:
    metadata: {labels: {app: agg}}
    spec:
      serviceAccountName: kp-agg
      terminationGracePeriodSeconds: 5
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
      initContainers:
        - name: whoami
          image: registry.k8s.io/kubectl:v1.36.1
          args: ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]
          env: [{name: HOME, value: /tmp}]
          volumeMounts: [{name: tmp, mountPath: /tmp}]
      containers:
        - name: aggregator
          image: registry.example.com/surge/surge:0.1.0
          args: ["aggregator", "-c", "$(CONFIG_DIR)/surge.yaml"]
          env:
            - {name: CONFIG_DIR, value: /etc/surge}
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: APP_LABEL
              valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}
            - name: SECRET_TOKEN
              valueFrom: {secretKeyRef: {name: kp-secret, key: token}}
            - {name: GREETING, value: "hello $(POD_NAME)"}
          ports: [{name: http, containerPort: 9091}]
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
          securityContext: {allowPrivilegeEscalation: false}
          volumeMounts:
            - {name: config, mountPath: /etc/surge/surge.yaml, subPath: surge.yaml, readOnly: true}
            - {name: secret, mountPath: /etc/surge/secret, readOnly: true}
            - {name: tmp, mountPath: /tmp}
        - name: app
          image: nginx:1.27
      volumes:
        - {name: config, configMap: {name: kp-config}}
        - {name: secret, secret: {secretName: kp-secret}}
        - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: agg, namespace: kp}
spec:
  selector: {app: agg}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: agg-any, namespace: kp}
spec:
  replicas: 2
  selector: {matchLabels: {app: agg-any}}
  template:
    metadata: {labels: {app: agg-any}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: aggregator
          image: surge:latest
          args: ["aggregator", "-c", "/etc/surge/surge.yaml"]
          readinessProbe: {httpGet: {path: /readyz, port: 9091}, periodSeconds: 1}
          volumeMounts:
            - {name: config, mountPath: /etc/surge/surge.yaml, subPath: any.yaml, readOnly: true}
      volumes:
        - {name: config, configMap: {name: kp-config}}
---
apiVersion: v1
kind: Pod
metadata: {name: once, namespace: kp}
spec:
  restartPolicy: Never
  containers:
    - {name: version, image: surge:latest, args: ["--version"]}
---
apiVersion: v1
kind: Pod
metadata: {name: late, namespace: kp}
spec:
  containers:
    - name: aggregator
      image: surge:latest
      args: ["aggregator", "-c", "/etc/surge/surge.yaml"]
      volumeMounts: [{name: config, mountPath: /etc/surge}]
  volumes:
    - {name: config, configMap: {name: late-config}}
"#;

/// The bundle's kubectl (first on the plane's PATH).
fn plane_kubectl(plane: &ControlPlane) -> PathBuf {
    plane.env["PATH"]
        .split(':')
        .map(|d| Path::new(d).join("kubectl"))
        .find(|p| p.is_file())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_run_as_local_processes() {
    let t0 = Instant::now();
    let etc_surge_existed = Path::new("/etc/surge").exists();
    let surge = ImageRule::surge().unwrap();
    let plane = tokio::task::spawn_blocking(|| start_plane(APISERVER_PORT, ETCD_PORT, None))
        .await
        .unwrap()
        .unwrap();
    let t_plane = t0.elapsed();
    plane.script("fake-node.sh", &["n1", "4", "16Gi", "110"]);
    let client = plane.admin_client().await.unwrap();
    let cfg = KubeletConfig::for_plane(&plane, &["n1"])
        .image(surge)
        .image(ImageRule::repository("kubectl", plane_kubectl(&plane)));
    let kubelet = Kubelet::start(client.clone(), cfg).unwrap();
    plane.kubectl(&["apply", "-f", "-"], Some(MANIFESTS));

    let result = scenario(&plane, &client, &kubelet).await;
    if let Err(e) = &result {
        eprintln!(
            "==== kubelet log ====\n{}\n{}\n==== pods ====\n{}",
            kubelet.kubelet_log(),
            kubelet.all_logs(),
            plane
                .try_kubectl(&["get", "pods", "-n", NS, "-o", "yaml"], None)
                .unwrap_or_default()
        );
        panic!("{e:#}");
    }

    // Stopping the kubelet stops its processes and removes the mount points it created.
    let pids: Vec<u32> = kubelet.running(NS).iter().map(|r| r.2).collect();
    assert!(!pids.is_empty());
    drop(kubelet);
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the kubelet");
    }
    if !etc_surge_existed {
        assert!(
            !Path::new("/etc/surge").exists(),
            "/etc/surge (a mount point) was left behind"
        );
    }
    eprintln!(
        "kubelet_play: control plane {:.1}s, total {:.1}s",
        t_plane.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

async fn scenario(plane: &ControlPlane, client: &kube::Client, kubelet: &Kubelet) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let http = surge_tests::client();

    // ---- agg: ready through its probe, reachable on its pod IP ----
    let ready = kubelet
        .wait_ready(NS, "app=agg", 1, Duration::from_secs(90))
        .await?;
    let name = ready[0].clone();
    let ip = kubelet.pod_ip(NS, &name).context("no pod IP")?;
    ensure!(ip.is_loopback(), "pod IP {ip} is not loopback");
    let pod = pods.get(&name).await?;
    let status = pod.status.clone().unwrap_or_default();
    ensure!(
        status.phase.as_deref() == Some("Running"),
        "phase {:?}",
        status.phase
    );
    ensure!(status.pod_ip.as_deref() == Some(ip.to_string().as_str()));
    ensure!(status.host_ip.as_deref() == Some("127.0.0.1"));
    let init = &status.init_container_statuses.clone().unwrap_or_default()[0];
    let init_term = init.state.as_ref().and_then(|s| s.terminated.clone());
    ensure!(
        init_term.as_ref().map(|t| t.exit_code) == Some(0),
        "init container: {init:?}"
    );
    let cs = status.container_statuses.clone().unwrap_or_default();
    ensure!(
        cs.len() == 2 && cs.iter().all(|c| c.ready),
        "containers: {cs:?}"
    );

    let body = http
        .get(format!("http://{ip}:9091/readyz"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    ensure!(body.trim() == "ready", "/readyz answered {body:?}");

    // ---- the init container used the in-cluster config ----
    let whoami = kubelet.log(NS, &name, "whoami");
    ensure!(
        whoami.contains("system:serviceaccount:kp:kp-agg"),
        "kubectl auth whoami in the pod said:\n{whoami}"
    );

    // ---- the process: uid, argv, environment ----
    let running = kubelet.running(NS);
    let pid = running
        .iter()
        .find(|(p, c, _)| *p == name && c == "aggregator")
        .map(|r| r.2)
        .context("aggregator process not running")?;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |k: &str| {
        proc_status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    ensure!(field("Uid:") == ["65532"; 4], "Uid: {:?}", field("Uid:"));
    ensure!(field("Gid:") == ["65532"; 4], "Gid: {:?}", field("Gid:"));
    ensure!(
        field("NoNewPrivs:") == ["1"],
        "NoNewPrivs: {:?}",
        field("NoNewPrivs:")
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ensure!(
        argv[1..] == ["aggregator", "-c", "/etc/surge/surge.yaml"],
        "argv {argv:?}"
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    for want in [
        format!("POD_IP={ip}"),
        format!("POD_NAME={name}"),
        format!("HOSTNAME={name}"),
        format!("GREETING=hello {name}"),
        "APP_LABEL=agg".to_owned(),
        "SECRET_TOKEN=s3cret".to_owned(),
        "KUBERNETES_SERVICE_HOST=127.0.0.1".to_owned(),
        format!("KUBERNETES_SERVICE_PORT={APISERVER_PORT}"),
    ] {
        ensure!(
            env.contains(&want),
            "{want} not in the environment: {env:?}"
        );
    }
    ensure!(
        !env.iter().any(|e| e.starts_with("KUBECONFIG=")),
        "the test's environment leaked into the pod"
    );

    // ---- the mount namespace: token, CA, namespace, secret, config ----
    let in_pod = |path: &str| {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "cat", path])
            .output()?;
        if !out.status.success() {
            bail!(
                "nsenter cat {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let token = in_pod(&format!("{SERVICE_ACCOUNT_DIR}/token"))?;
    ensure!(
        !Path::new(&format!("{SERVICE_ACCOUNT_DIR}/token")).exists(),
        "the token is visible outside the pod's mount namespace"
    );
    let ca = in_pod(&format!("{SERVICE_ACCOUNT_DIR}/ca.crt"))?;
    ensure!(ca == std::fs::read_to_string(plane.pki().join("ca.crt"))?);
    ensure!(in_pod(&format!("{SERVICE_ACCOUNT_DIR}/namespace"))? == NS);
    ensure!(in_pod("/etc/surge/secret/token")? == "s3cret");
    ensure!(in_pod("/etc/surge/surge.yaml")?.contains("${POD_IP}:9091"));
    ensure!(in_pod("/etc/hosts")?.contains(&format!("{ip}\t{name}")));
    // ---- Service agg: a VIP, its port mapped to the pod's, its name in the pod's /etc/hosts ----
    let vip = wait_for("the Service VIP", || async {
        Ok(kubelet.service_ip(NS, "agg"))
    })
    .await?;
    let in_pod_cmd = |args: &[&str]| {
        let pid = pid.to_string();
        let mut all = vec!["-t", pid.as_str(), "-m"];
        all.extend_from_slice(args);
        std::process::Command::new("nsenter").args(&all).output()
    };
    wait_for("agg.kp.svc in the pod's /etc/hosts", || async {
        let out = in_pod_cmd(&["getent", "hosts", "agg.kp.svc"])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(text.starts_with(&vip.to_string()).then_some(()))
    })
    .await?;
    let via_service = wait_for("the Service answering", || async {
        Ok(
            match http.get(format!("http://{vip}:80/readyz")).send().await {
                Ok(r) if r.status().is_success() => Some(r.text().await?),
                _ => None,
            },
        )
    })
    .await?;
    ensure!(
        via_service.trim() == "ready",
        "via the Service: {via_service:?}"
    );
    // Published for the API server's aggregator routing: an FQDN slice with the pod IP and the
    // resolved target port (the EndpointSlice controller refuses loopback pod IPs).
    let slice = plane.kubectl(
        &[
            "get",
            "endpointslice",
            "-n",
            NS,
            "agg-kubelet-play",
            "-o",
            "jsonpath={.addressType} {.endpoints[0].addresses[0]} {.ports[0].port}",
        ],
        None,
    );
    ensure!(
        slice == format!("FQDN {ip} 9091"),
        "EndpointSlice: {slice:?}"
    );

    let review = Api::<TokenReview>::all(client.clone())
        .create(
            &PostParams::default(),
            &TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.trim().to_owned()),
                    audiences: None,
                },
                ..TokenReview::default()
            },
        )
        .await?;
    let rs = review.status.unwrap_or_default();
    ensure!(rs.authenticated == Some(true), "TokenReview: {rs:?}");
    let user = rs.user.unwrap_or_default();
    ensure!(
        user.username.as_deref() == Some("system:serviceaccount:kp:kp-agg"),
        "token user {user:?}"
    );
    // Bound to the pod, as a kubelet's token is.
    let extra = user.extra.unwrap_or_default();
    ensure!(
        extra.get("authentication.kubernetes.io/pod-name") == Some(&vec![name.clone()]),
        "token not bound to the pod: {extra:?}"
    );

    // ---- agg-any: two replicas on 0.0.0.0:9091, one pod IP each; a crash restarts ----
    let any = kubelet
        .wait_ready(NS, "app=agg-any", 2, Duration::from_secs(60))
        .await?;
    let ips: Vec<_> = any
        .iter()
        .map(|p| kubelet.pod_ip(NS, p).context("no IP"))
        .collect::<Result<_>>()?;
    ensure!(
        ips[0] != ips[1] && !ips.contains(&ip),
        "pod IPs {ips:?} / {ip}"
    );
    for a in &ips {
        let r = http.get(format!("http://{a}:9091/readyz")).send().await?;
        ensure!(r.status().is_success(), "agg-any {a}: {}", r.status());
    }
    let victim = &any[0];
    let vpid = kubelet
        .running(NS)
        .iter()
        .find(|(p, _, _)| p == victim)
        .map(|r| r.2)
        .context("agg-any process")?;
    std::process::Command::new("kill")
        .args(["-KILL", &vpid.to_string()])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = pods.get(victim).await?;
        let c = &p
            .status
            .clone()
            .unwrap_or_default()
            .container_statuses
            .unwrap_or_default()[0];
        let new_pid = kubelet
            .running(NS)
            .iter()
            .find(|(p, _, _)| p == victim)
            .map(|r| r.2);
        if c.restart_count == 1 && c.ready && new_pid.is_some_and(|p| p != vpid) {
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            ensure!(last.map(|t| t.exit_code) == Some(137), "lastState {last:?}");
            break;
        }
        if Instant::now() > deadline {
            bail!("agg-any {victim} did not restart: {c:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ---- a pod that runs to completion; a pod waiting for its ConfigMap ----
    wait_for("pod once Succeeded", || async {
        let p = pods.get("once").await?;
        Ok((p.status.and_then(|s| s.phase).as_deref() == Some("Succeeded")).then_some(()))
    })
    .await?;
    ensure!(kubelet.log(NS, "once", "version").contains("surge 0.1"));
    let waiting = wait_for("pod late waiting for its ConfigMap", || async {
        let p = pods.get("late").await?;
        let w = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|cs| cs.into_iter().next())
            .and_then(|c| c.state)
            .and_then(|s| s.waiting);
        Ok(w.filter(|w| w.message.as_deref().unwrap_or("").contains("late-config")))
    })
    .await?;
    ensure!(
        waiting.reason.as_deref() == Some("ContainerCreating"),
        "{waiting:?}"
    );
    plane.kubectl(
        &[
            "create",
            "configmap",
            "-n",
            NS,
            "late-config",
            "--from-literal=surge.yaml=aggregator: {listen: \"0.0.0.0:9091\"}",
        ],
        None,
    );
    wait_for("pod late ready", || async {
        Ok(pod_is_ready(&pods.get("late").await?).then_some(()))
    })
    .await?;

    // ---- deleting the agg pod: SIGTERM, then the pod object goes ----
    plane.kubectl(&["delete", "pod", "-n", NS, &name, "--wait=false"], None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) || pods.get_opt(&name).await?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "pod {name} still there after delete (process alive: {})",
                alive(pid)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = kubelet.log(NS, &name, "aggregator");
    ensure!(
        log.contains("shutting down"),
        "the aggregator did not shut down gracefully:\n{log}"
    );
    // The ReplicaSet's replacement runs too, and the Service follows it.
    let replacement = kubelet
        .wait_ready(NS, "app=agg", 1, Duration::from_secs(60))
        .await?;
    ensure!(replacement[0] != name);
    wait_for("the Service answering from the replacement", || async {
        Ok(
            match http.get(format!("http://{vip}:80/readyz")).send().await {
                Ok(r) if r.status().is_success() => Some(()),
                _ => None,
            },
        )
    })
    .await?;
    Ok(())
}

/// Polls `f` every 200 ms until it returns `Some`, for at most 30 s.
async fn wait_for<T, F, Fut>(what: &str, f: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with(['Z', 'X']))
}
