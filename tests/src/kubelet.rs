//! kubelet-play: a kubelet emulator for tests against the loopback control plane of [`crate::k8s`].
//!
//! [`Kubelet::start`] watches the pods bound to the nodes it plays (`spec.nodeName`, all namespaces) and
//! makes them run on this machine:
//! - every pod gets a loopback IP (`127.x.y.z` from the `cksum` of `ns/name`, as `ready-pods.sh` does, or
//!   its `test-pod-ip` annotation; never outside 127.0.0.0/8); `hostNetwork` pods get 127.0.0.1;
//! - a container whose image matches an [`ImageRule`] runs as a local process in its own mount namespace
//!   (`unshare --mount --propagation private`), with its volumes bind-mounted at their `mountPath`s, its
//!   environment built as a kubelet builds it, as `runAsUser`/`runAsGroup` (`setpriv`), stdout and
//!   stderr in a log file ([`Kubelet::log`]); it is restarted per `restartPolicy` with a short backoff;
//! - other containers (app images the test serves itself) are reported running and ready at once;
//! - the pod status is patched as a kubelet does (phase, IPs, container statuses, conditions), `Ready`
//!   following `readinessProbe`s (`httpGet`, `tcpSocket`; period capped at 1 s);
//! - a pod being deleted gets SIGTERM, then SIGKILL after its grace period (capped at 10 s), and is then
//!   deleted with grace 0, as the kubelet confirms.
//!
//! Pod networking is emulated with an `LD_PRELOAD` shim (compiled with `cc` at start): a run process's
//! `bind()` to `0.0.0.0`/`::` binds its pod IP instead, so two replicas listening on `0.0.0.0:9091` (as
//! the real manifests do) get one address each. Services (`KubeletConfig::services`, on by default)
//! get a loopback VIP (`127.251.x.y`) where the kubelet proxies TCP to the ready pods the selector
//! picks (`targetPort` by number or name), and every pod's `/etc/hosts` (bind-mounted, rewritten as
//! Services change) names them (`NAME.NS.svc[.cluster.local]`, `NAME.NS`, `NAME` in the same
//! namespace) beside the pod's own IP and hostname, `hostAliases` and [`KubeletConfig::extra_hosts`]:
//! enough for `http://surge-aggregator.surge.svc:9091` to reach an aggregator replica. The
//! EndpointSlice controller of this control plane refuses loopback pod IPs (`may not be in the
//! loopback range`), so for each selector Service the kubelet also publishes an FQDN-typed
//! EndpointSlice `NAME-kubelet-play` carrying the pod IPs (the trick of `expose-local.sh`): the API
//! server's aggregator routing dials it, so an APIService backed by such a Service reaches the pods.
//!
//! Not emulated: DNS servers (`resolv.conf` is the host's), UDP Services, liveness/startup probes,
//! resource limits, `readOnlyRootFilesystem`, capabilities and seccomp (ignored), token rotation
//! (tokens last about an hour), live ConfigMap/Secret volume updates. Secret files are 0644 (like
//! ConfigMaps) so any `runAsUser` reads them. Do not run `ready-pods.sh` (or
//! [`crate::k8s::ControlPlane::ready_pods`]) beside it: both would write the same pods' status.
//! Needs root (CI runs as root), util-linux (`unshare`, `setpriv`, `nsenter` for tests), `mount` and
//! `cc`.
//!
//! ```ignore
//! let plane = start_plane(47443, 54790, None)?;
//! plane.script("fake-node.sh", &["n1", "4", "16Gi", "110"]);
//! let cfg = KubeletConfig::for_plane(&plane, &["n1"]).image(ImageRule::surge()?);
//! let kubelet = Kubelet::start(admin_client, cfg)?;   // on a tokio runtime; stopped on drop
//! plane.kubectl(&["apply", "-k", "deploy/kustomize/base"], None);
//! kubelet.wait_ready("surge", "app.kubernetes.io/component=aggregator", 2, Duration::from_secs(60)).await?;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    KeyToPath, Node, Pod, PodSpec, ProjectedVolumeSource, Secret, Service, ServiceAccount,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a kubelet mounts the service account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The `PATH` of a container whose image sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Decides whether an image reference (`registry/repo:tag`) is run by a rule.
pub type ImageMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which containers run as local processes, and with what.
#[derive(Clone)]
pub struct ImageRule {
    matches: ImageMatcher,
    /// What the rule matches, for logs.
    pub description: String,
    /// The local executable playing the image's entrypoint (`command[0]` when `command` is set).
    pub exe: PathBuf,
    /// The image's `USER uid:gid`, used when neither the pod nor the container sets `runAsUser`
    /// (`None`: root).
    pub user: Option<(u32, u32)>,
    /// The image's `ENV` (before the container's `env`, which overrides it).
    pub env: Vec<(String, String)>,
}

impl fmt::Debug for ImageRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageRule")
            .field("description", &self.description)
            .field("exe", &self.exe)
            .field("user", &self.user)
            .field("env", &self.env)
            .finish()
    }
}

impl ImageRule {
    /// A rule from any predicate on the image reference.
    pub fn new(
        description: impl Into<String>,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        exe: impl Into<PathBuf>,
    ) -> Self {
        Self {
            matches: Arc::new(matches),
            description: description.into(),
            exe: exe.into(),
            user: None,
            env: Vec::new(),
        }
    }

    /// Images whose repository's last path segment is `name`, whatever the registry, tag or digest:
    /// `repository("surge", ..)` matches `surge:latest` and `registry.example.com/surge/surge:0.1.0`.
    pub fn repository(name: &str, exe: impl Into<PathBuf>) -> Self {
        let want = name.to_owned();
        Self::new(
            format!("repository */{name}"),
            move |image| repository_name(image) == want,
            exe,
        )
    }

    /// The surge image: this workspace's `surge` binary ([`surge_binary`]), user 65532:65532 as in
    /// `deploy/Dockerfile` (distroless `nonroot`).
    pub fn surge() -> Result<Self> {
        Ok(Self::repository("surge", surge_binary()?).user(65532, 65532))
    }

    /// Sets the image's default user.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Adds an image `ENV` entry.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Whether this rule runs `image`.
    pub fn matches(&self, image: &str) -> bool {
        (self.matches)(image)
    }
}

/// The last path segment of an image's repository: `registry:5000/a/b:tag@sha256:..` → `b`.
pub fn repository_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// What [`Kubelet::start`] plays.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The nodes whose pods run here (`spec.nodeName`), e.g. `["n1"]`.
    pub nodes: Vec<String>,
    /// Images run as local processes; the first matching rule wins. Other containers are only reported
    /// running and ready.
    pub images: Vec<ImageRule>,
    /// The API server URL processes reach through `KUBERNETES_SERVICE_HOST`/`_PORT` (the control plane's
    /// `K8S_API`, `https://127.0.0.1:PORT`; its serving certificate is valid for 127.0.0.1).
    pub api_server: String,
    /// Extra `/etc/hosts` entries for every pod (e.g. a Service name → a pod IP; there is no DNS).
    pub extra_hosts: Vec<(IpAddr, Vec<String>)>,
    /// Rewrite `bind()` to `0.0.0.0`/`::` into the pod IP (an `LD_PRELOAD` shim built with `cc`): the
    /// stand-in for pod network namespaces. On by default.
    pub pod_network_binds: bool,
    /// A kube-proxy and DNS stand-in (on by default): every Service with a cluster IP gets a loopback
    /// VIP (`127.251.x.y`) where this kubelet proxies each TCP port to the ready endpoints of its
    /// EndpointSlices (loopback addresses only), and every pod's `/etc/hosts` maps
    /// `NAME.NS.svc.cluster.local`, `NAME.NS.svc`, `NAME.NS` (and `NAME` in the same namespace) to it
    /// (headless Services: to the ready endpoints), kept up to date as Services come and go.
    pub services: bool,
    /// Readiness probes run at most this far apart (1 s).
    pub max_probe_period: Duration,
    /// Termination grace periods are capped at this (10 s).
    pub max_grace: Duration,
    /// Crash restarts wait this long first, doubling up to `restart_backoff_max` (0.5 s).
    pub restart_backoff: Duration,
    /// The longest restart backoff (5 s).
    pub restart_backoff_max: Duration,
    /// The work dir (pod volumes, logs, scripts). `None`: a fresh folder under `/var/tmp` (not under
    /// `/tmp`: containers often mount an `emptyDir` there), removed on drop unless `KEEP_K8S_LOGS` is set.
    pub work_dir: Option<PathBuf>,
}

impl KubeletConfig {
    /// Plays `nodes` against the API server at `api_server`, running no images yet ([`Self::image`]).
    pub fn new(api_server: impl Into<String>, nodes: &[&str]) -> Self {
        Self {
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            images: Vec::new(),
            api_server: api_server.into(),
            extra_hosts: Vec::new(),
            pod_network_binds: true,
            services: true,
            max_probe_period: Duration::from_secs(1),
            max_grace: Duration::from_secs(10),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(5),
            work_dir: None,
        }
    }

    /// [`Self::new`] with the control plane's `K8S_API`.
    pub fn for_plane(plane: &crate::k8s::ControlPlane, nodes: &[&str]) -> Self {
        Self::new(plane.env.get("K8S_API").cloned().unwrap_or_default(), nodes)
    }

    /// Adds an image rule.
    pub fn image(mut self, rule: ImageRule) -> Self {
        self.images.push(rule);
        self
    }

    /// Adds an `/etc/hosts` entry for every pod started from now on.
    pub fn host(mut self, ip: IpAddr, names: &[&str]) -> Self {
        self.extra_hosts
            .push((ip, names.iter().map(|n| (*n).to_owned()).collect()));
        self
    }
}

/// The debug (or release, as the running test was built) `surge` binary of this workspace:
/// `$CARGO_TARGET_DIR/<profile>/surge`, else the one beside this test executable's `deps` folder, else
/// `cargo metadata`'s target directory. `cargo test --workspace` builds it (the `surge` package has
/// integration tests); when it is missing (e.g. `cargo test -p surge-tests`) this runs
/// `cargo build -p surge` first.
pub fn surge_binary() -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = std::env::current_exe().ok();
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .as_deref()
        .and_then(Path::parent)
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let profile = profile_dir
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_absolute() {
            t
        } else {
            workspace.join(t)
        };
        candidates.push(t.join(&profile).join("surge"));
    }
    if let Some(d) = &profile_dir {
        candidates.push(d.join("surge"));
    }
    if candidates.is_empty() {
        let out = std::process::Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(&workspace)
            .output()
            .context("running cargo metadata")?;
        let v: Value = serde_json::from_slice(&out.stdout).context("cargo metadata output")?;
        let t = v["target_directory"]
            .as_str()
            .ok_or_else(|| anyhow!("cargo metadata has no target_directory"))?;
        candidates.push(Path::new(t).join(&profile).join("surge"));
    }
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    let mut build = std::process::Command::new(cargo());
    build.args(["build", "-p", "surge"]).current_dir(&workspace);
    if profile == "release" {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build -p surge")?;
    if !status.success() {
        bail!("cargo build -p surge failed ({status})");
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| anyhow!("surge binary not found after building; looked at {candidates:?}"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The emulated kubelet. Stopped on drop: its processes get SIGTERM, then SIGKILL after 3 s; the
/// mount points it created on this machine are removed; the pods stay in the API as they were.
pub struct Kubelet {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    services: Option<JoinHandle<()>>,
    remove_work_dir: bool,
    watchdog: Option<std::process::Child>,
}

impl fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubelet")
            .field("nodes", &self.shared.cfg.nodes)
            .field("work_dir", &self.shared.work)
            .finish()
    }
}

type PodKey = (String, String);

struct Shared {
    client: kube::Client,
    cfg: KubeletConfig,
    work: PathBuf,
    tools: Tools,
    api_host: String,
    api_port: u16,
    stop: CancellationToken,
    pods: Mutex<HashMap<PodKey, PodEntry>>,
    /// Every live process: pid → (namespace, pod, container).
    procs: Mutex<BTreeMap<u32, (String, String, String)>>,
    mounts: MountPoints,
    exes: Mutex<HashMap<PathBuf, PathBuf>>,
    log: Mutex<Option<std::fs::File>>,
    /// Service VIPs and the `/etc/hosts` lines they make.
    services: Mutex<ServiceTable>,
    /// Every pod's hosts file: (path, the pod's own lines).
    hosts_files: Mutex<HashMap<PodKey, (PathBuf, String)>>,
    http: reqwest::Client,
    https: reqwest::Client,
}

struct PodEntry {
    uid: String,
    node: String,
    tx: watch::Sender<PodUpdate>,
    task: Option<JoinHandle<()>>,
    ip: Option<Ipv4Addr>,
}

#[derive(Clone)]
enum PodUpdate {
    Present(Arc<Pod>),
    Gone,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kubelet {
    /// Starts playing `cfg.nodes` with `client` (an admin client of the control plane). Call it on a
    /// tokio runtime (the watch and the pods run as tasks on it). Fails when not root, when a tool is
    /// missing, or when the bind shim does not build.
    pub fn start(client: kube::Client, cfg: KubeletConfig) -> Result<Kubelet> {
        let rt = tokio::runtime::Handle::try_current()
            .context("Kubelet::start must be called on a tokio runtime")?;
        if !rustix::process::geteuid().is_root() {
            bail!(
                "kubelet-play needs root: it runs containers in mount namespaces of their own \
                 (unshare --mount, bind mounts) and switches users with setpriv; run the tests as \
                 root (CI does)"
            );
        }
        if cfg.nodes.is_empty() {
            bail!("KubeletConfig.nodes is empty: which nodes does this kubelet play?");
        }
        let url = reqwest::Url::parse(&cfg.api_server)
            .with_context(|| format!("api_server {:?} is not a URL", cfg.api_server))?;
        let api_host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .ok_or_else(|| anyhow!("api_server {:?} has no host", cfg.api_server))?;
        let api_port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow!("api_server {:?} has no port", cfg.api_server))?;
        let work = match &cfg.work_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating work dir {}", d.display()))?;
                d.clone()
            }
            None => tempfile::Builder::new()
                .prefix("surge-kubelet-")
                .tempdir_in("/var/tmp")
                .or_else(|_| tempfile::Builder::new().prefix("surge-kubelet-").tempdir())
                .context("creating the kubelet's work dir")?
                .keep(),
        };
        // Executables and the shim live here and must be reachable by any runAsUser.
        chmod(&work, 0o755)?;
        for sub in ["bin", "pods", "logs"] {
            mkdir(&work.join(sub), 0o755)?;
        }
        let mut tools = Tools::find()?;
        if cfg.pod_network_binds {
            tools.shim = Some(build_shim(&work.join("bin"))?);
        }
        let log = std::fs::File::create(work.join("kubelet.log")).ok();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the probe HTTP client")?;
        let https = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(true)
            .build()
            .context("building the probe HTTPS client")?;
        let shared = Arc::new(Shared {
            client,
            mounts: MountPoints::new(),
            cfg,
            work,
            tools,
            api_host,
            api_port,
            stop: CancellationToken::new(),
            pods: Mutex::new(HashMap::new()),
            procs: Mutex::new(BTreeMap::new()),
            exes: Mutex::new(HashMap::new()),
            log: Mutex::new(log),
            services: Mutex::new(ServiceTable::default()),
            hosts_files: Mutex::new(HashMap::new()),
            http,
            https,
        });
        shared.mounts.sweep_stale();
        shared.event(format!(
            "kubelet-play started: nodes {:?}, images {:?}, work dir {}",
            shared.cfg.nodes,
            shared
                .cfg
                .images
                .iter()
                .map(|r| format!("{} -> {}", r.description, r.exe.display()))
                .collect::<Vec<_>>(),
            shared.work.display()
        ));
        let watcher = rt.spawn(watch_pods(shared.clone()));
        let services = shared
            .cfg
            .services
            .then(|| rt.spawn(run_services(shared.clone())));
        let remove_work_dir = shared.cfg.work_dir.is_none();
        let watchdog = start_watchdog(&shared.work, remove_work_dir)?;
        Ok(Kubelet {
            watchdog: Some(watchdog),
            remove_work_dir,
            shared,
            watcher: Some(watcher),
            services,
        })
    }

    /// The loopback VIP of a Service (not headless) once this kubelet proxies it.
    pub fn service_ip(&self, ns: &str, name: &str) -> Option<Ipv4Addr> {
        lock(&self.shared.services)
            .vips
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
    }

    /// The pod's IP, once this kubelet took the pod.
    pub fn pod_ip(&self, ns: &str, name: &str) -> Option<Ipv4Addr> {
        lock(&self.shared.pods)
            .get(&(ns.to_owned(), name.to_owned()))
            .and_then(|e| e.ip)
    }

    /// The live processes of namespace `ns`: (pod, container, pid), sorted.
    pub fn running(&self, ns: &str) -> Vec<(String, String, u32)> {
        let mut v: Vec<(String, String, u32)> = lock(&self.shared.procs)
            .iter()
            .filter(|(_, (n, _, _))| n == ns)
            .map(|(pid, (_, p, c))| (p.clone(), c.clone(), *pid))
            .collect();
        v.sort();
        v
    }

    /// The output (stdout and stderr, every start) of a run container; empty when there is none.
    pub fn log(&self, ns: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(self.shared.log_path(ns, pod, container)).unwrap_or_default()
    }

    /// Every run container's log, for test failure diagnostics.
    pub fn all_logs(&self) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.shared.work.join("logs"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        let mut out = String::new();
        for p in names {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            out.push_str(&format!("==== {} ====\n{text}\n", name.unwrap_or_default()));
        }
        out
    }

    /// This kubelet's own log: pods taken, volumes, starts, exits, probes changing, deletions, errors.
    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.shared.work.join("kubelet.log")).unwrap_or_default()
    }

    /// The work dir (pods' volumes and start scripts under `pods/`, container logs under `logs/`).
    pub fn work_dir(&self) -> &Path {
        &self.shared.work
    }

    /// Waits until at least `n` pods of `ns` matching `selector` (a label selector, `""` for all) are
    /// Ready and not being deleted; returns their names, sorted.
    pub async fn wait_ready(
        &self,
        ns: &str,
        selector: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let deadline = Instant::now() + timeout;
        loop {
            let lp = ListParams::default().labels(selector);
            let mut ready: Vec<String> = match api.list(&lp).await {
                Ok(list) => list
                    .items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_is_ready(p))
                    .filter_map(|p| p.metadata.name.clone())
                    .collect(),
                Err(_) => Vec::new(),
            };
            if ready.len() >= n {
                ready.sort();
                return Ok(ready);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} pods ready in {ns} ({selector:?}) after {timeout:?}; ready: \
                     {ready:?}\nkubelet log:\n{}",
                    ready.len(),
                    self.kubelet_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.stop.cancel();
        for t in [self.watcher.take(), self.services.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        let pids: Vec<u32> = lock(&shared.procs).keys().copied().collect();
        for pid in &pids {
            signal(*pid, rustix::process::Signal::TERM, false);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in &pids {
            if alive(*pid) {
                signal(*pid, rustix::process::Signal::KILL, true);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for (_, e) in lock(&shared.pods).drain() {
            if let Some(t) = e.task {
                t.abort();
            }
        }
        shared.mounts.release_all();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        shared.event("kubelet-play stopped".to_owned());
        if self.remove_work_dir {
            if std::env::var_os("KEEP_K8S_LOGS").is_some() {
                eprintln!("kubelet-play work dir kept in {}", shared.work.display());
            } else {
                let _ = std::fs::remove_dir_all(&shared.work);
            }
        }
    }
}

/// Sends `sig` to `pid` (and its process group when `group`).
fn signal(pid: u32, sig: rustix::process::Signal, group: bool) {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if group {
        let _ = rustix::process::kill_process_group(p, sig);
    }
    let _ = rustix::process::kill_process(p, sig);
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A detached shell that waits for this test process to exit, then SIGKILLs the process groups listed
/// in `WORK/pids` (what a drop would have stopped) and removes the work dir when it is ours (unless
/// `KEEP_K8S_LOGS`): processes never outlive a test killed abruptly. Dropping the Kubelet kills it.
fn start_watchdog(work: &Path, remove: bool) -> Result<std::process::Child> {
    let work = path_str(work)?;
    let rm = if remove && std::env::var_os("KEEP_K8S_LOGS").is_none() {
        format!("rm -rf {}", sq(work))
    } else {
        String::new()
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         for p in $(cat {pids} 2>/dev/null); do kill -KILL -- -$p 2>/dev/null; \
         kill -KILL $p 2>/dev/null; done; {rm}",
        pid = std::process::id(),
        pids = sq(&format!("{work}/pids")),
    );
    std::process::Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the kubelet's watchdog (setsid)")
}

impl Shared {
    /// Writes the live pids for the watchdog.
    fn save_pids(&self) {
        let pids: Vec<String> = lock(&self.procs).keys().map(u32::to_string).collect();
        let _ = std::fs::write(self.work.join("pids"), pids.join("\n"));
    }

    fn event(&self, line: String) {
        let ts = now_ts();
        if let Some(f) = lock(&self.log).as_mut() {
            let _ = writeln!(f, "{ts} {line}");
        }
    }

    fn log_path(&self, ns: &str, pod: &str, container: &str) -> PathBuf {
        self.work
            .join("logs")
            .join(format!("{ns}_{pod}_{container}.log"))
    }

    /// `exe` as `uid` can execute it: itself when every folder up to it is world-searchable, else a
    /// copy in the work dir (e.g. kubectl under `/root/.cache`).
    fn exe_for(&self, exe: &Path, uid: u32) -> Result<PathBuf> {
        if uid == 0 || world_executable(exe) {
            return Ok(exe.to_path_buf());
        }
        let mut exes = lock(&self.exes);
        if let Some(copy) = exes.get(exe) {
            return Ok(copy.clone());
        }
        let name = exe
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", exe.display()))?;
        let dir = self.work.join("bin").join(format!("{}", exes.len()));
        mkdir(&dir, 0o755)?;
        let copy = dir.join(name);
        std::fs::copy(exe, &copy)
            .with_context(|| format!("copying {} for a non-root user", exe.display()))?;
        chmod(&copy, 0o755)?;
        exes.insert(exe.to_path_buf(), copy.clone());
        Ok(copy)
    }
}

fn world_executable(p: &Path) -> bool {
    let Ok(p) = p.canonicalize() else {
        return false;
    };
    p.ancestors().all(|a| {
        std::fs::metadata(a)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

// ---- the watch --------------------------------------------------------------------------------------

async fn watch_pods(shared: Arc<Shared>) {
    let streams = shared.cfg.nodes.iter().enumerate().map(|(i, node)| {
        let api: Api<Pod> = Api::all(shared.client.clone());
        let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        watcher(api, wc)
            .default_backoff()
            .map(move |e| (i, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    // Per node: the pods seen during a (re)list, to find those deleted while the watch was down.
    let mut relist: Vec<Option<HashSet<PodKey>>> = vec![None; shared.cfg.nodes.len()];
    while let Some((i, ev)) = events.next().await {
        let node = shared.cfg.nodes.get(i).cloned().unwrap_or_default();
        match ev {
            Ok(watcher::Event::Init) => relist[i] = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(key)) = (relist[i].as_mut(), pod_key(&pod)) {
                    seen.insert(key);
                }
                apply(&shared, &node, pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = relist[i].take() {
                    let gone: Vec<PodKey> = lock(&shared.pods)
                        .iter()
                        .filter(|(k, e)| e.node == node && !seen.contains(*k))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in gone {
                        forget(&shared, &k, None);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => apply(&shared, &node, pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(k) = pod_key(&pod) {
                    forget(&shared, &k, pod.metadata.uid.as_deref());
                }
            }
            Err(e) => shared.event(format!("watch of node {node}: {e}")),
        }
    }
}

fn pod_key(pod: &Pod) -> Option<PodKey> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}

/// A pod gone from the API: its task stops its processes (no API delete).
fn forget(shared: &Arc<Shared>, key: &PodKey, uid: Option<&str>) {
    let pods = lock(&shared.pods);
    if let Some(e) = pods.get(key)
        && uid.is_none_or(|u| u == e.uid)
    {
        e.tx.send_replace(PodUpdate::Gone);
    }
}

fn apply(shared: &Arc<Shared>, node: &str, pod: Pod) {
    let (Some(key), Some(uid)) = (pod_key(&pod), pod.metadata.uid.clone()) else {
        return;
    };
    let mut pods = lock(&shared.pods);
    if let Some(e) = pods.get(&key) {
        if e.uid == uid {
            e.tx.send_replace(PodUpdate::Present(Arc::new(pod)));
            return;
        }
        // Same name, new pod (e.g. a StatefulSet's): the old one's task winds down on its own.
        e.tx.send_replace(PodUpdate::Gone);
        pods.remove(&key);
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none() {
        return;
    }
    let (tx, rx) = watch::channel(PodUpdate::Present(Arc::new(pod)));
    let task = tokio::spawn(run_pod(shared.clone(), key.clone(), uid.clone(), rx));
    pods.insert(
        key,
        PodEntry {
            uid,
            node: node.to_owned(),
            tx,
            task: Some(task),
            ip: None,
        },
    );
}

// ---- Services: a kube-proxy and DNS stand-in ----------------------------------------------------------

#[derive(Default)]
struct ServiceTable {
    vips: BTreeMap<PodKey, Ipv4Addr>,
    hosts: Vec<ServiceHosts>,
    /// Ready backends per (Service, port).
    backends: HashMap<(PodKey, u16), Vec<SocketAddr>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceHosts {
    ns: String,
    name: String,
    ips: Vec<Ipv4Addr>,
}

/// A pod's hosts file: its own lines, then the Services' names.
fn render_hosts(base: &str, ns: &str, services: &[ServiceHosts]) -> String {
    let mut out = base.to_owned();
    if !services.is_empty() {
        out.push_str("# Services (kubelet-play).\n");
    }
    for s in services {
        let (n, sns) = (&s.name, &s.ns);
        let short = if sns == ns {
            format!(" {n}")
        } else {
            String::new()
        };
        for ip in &s.ips {
            out.push_str(&format!(
                "{ip}\t{n}.{sns}.svc.cluster.local {n}.{sns}.svc {n}.{sns}{short}\n"
            ));
        }
    }
    out
}

/// Rewrites every pod's hosts file in place (the pods' bind mounts hold the inode).
fn rewrite_hosts(shared: &Shared) {
    let services = lock(&shared.services).hosts.clone();
    for ((ns, _), (path, base)) in lock(&shared.hosts_files).iter() {
        let content = render_hosts(base, ns, &services);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
        {
            let _ = f.write_all(content.as_bytes());
        }
    }
}

/// Services, EndpointSlices and pods, as the reflectors hold them.
type ClusterState = (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>, Vec<Arc<Pod>>);

/// Who manages the EndpointSlices this kubelet publishes.
const SLICE_MANAGER: &str = "kubelet-play";

async fn run_services(shared: Arc<Shared>) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let c = &shared.client;
    let wc = watcher::Config::default;
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(Api::<Service>::all(c.clone()), wc()).default_backoff(),
    )
    .map(|_| ());
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(c.clone()), wc()).default_backoff(),
    )
    .map(|_| ());
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(c.clone()), wc()).default_backoff(),
    )
    .map(|_| ());
    let mut drive = std::pin::pin!(
        futures::stream::select(
            futures::stream::select(svc_events, slice_events),
            pod_events
        )
        .for_each(|()| futures::future::ready(()))
    );
    let mut listeners: HashMap<(PodKey, u16), JoinHandle<()>> = HashMap::new();
    let mut published: HashMap<PodKey, Value> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = &mut drive => break,
            _ = shared.stop.cancelled() => break,
            _ = tick.tick() => {
                let state = (services.state(), slices.state(), pods.state());
                reconcile_services(&shared, state, &mut listeners, &mut published).await;
            }
        }
    }
    for (_, h) in listeners {
        h.abort();
    }
}

/// A Service port's target on one pod: `targetPort` by number or by the pod's container port name.
fn target_port(sp: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<u16> {
    match &sp.target_port {
        None => u16::try_from(sp.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => name.parse().ok().or_else(|| {
            pod.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

/// The pods a Service selects that have a loopback IP: (pod, IP, ready).
fn selected_pods<'a>(
    svc: &Service,
    ns: &str,
    pods: &'a [Arc<Pod>],
) -> Vec<(&'a Arc<Pod>, Ipv4Addr, bool)> {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    if selector.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(&Arc<Pod>, Ipv4Addr, bool)> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| {
            let ip: Ipv4Addr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            // Traffic goes to loopback addresses only.
            ip.is_loopback().then(|| {
                let ready = p.metadata.deletion_timestamp.is_none() && pod_is_ready(p);
                (p, ip, ready)
            })
        })
        .collect();
    out.sort_by_key(|(p, _, _)| p.metadata.name.clone());
    out
}

/// The ready loopback endpoints of a selector-less Service's EndpointSlices (any address type, as
/// `expose-local.sh` writes them), with the port named `port_name`.
fn slice_backends(slices: &[Arc<EndpointSlice>], key: &PodKey, port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in slices {
        let labels = s.metadata.labels.as_ref();
        let ours = s.metadata.namespace.as_deref() == Some(key.0.as_str())
            && labels.and_then(|l| l.get("kubernetes.io/service-name")) == Some(&key.1);
        if !ours {
            continue;
        }
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in &s.endpoints {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<Ipv4Addr>()
                    && ip.is_loopback()
                {
                    out.push(SocketAddr::new(IpAddr::V4(ip), port));
                }
            }
        }
    }
    out
}

/// The EndpointSlice this kubelet publishes for a selector Service. The EndpointSlice controller
/// cannot (pod IPs are loopback, which IP-typed slices refuse); an FQDN-typed slice carrying the
/// addresses is accepted, and the API server's aggregator routing dials it (as for `expose-local.sh`).
fn desired_slice(
    svc: &Service,
    ns: &str,
    name: &str,
    selected: &[(&Arc<Pod>, Ipv4Addr, bool)],
) -> Option<Value> {
    let ports = svc.spec.as_ref()?.ports.clone().unwrap_or_default();
    let uid = svc.metadata.uid.clone()?;
    // One port mapping per slice: the first pod's (replicas of one workload share it).
    let mapping =
        |pod: &Pod| -> Option<Vec<u16>> { ports.iter().map(|sp| target_port(sp, pod)).collect() };
    let first = selected.iter().find_map(|(p, _, _)| mapping(p))?;
    let endpoints: Vec<Value> = selected
        .iter()
        .filter(|(p, _, _)| mapping(p).as_ref() == Some(&first))
        .map(|(p, ip, ready)| {
            json!({
                "addresses": [ip.to_string()],
                "conditions": {"ready": ready, "serving": ready,
                    "terminating": p.metadata.deletion_timestamp.is_some()},
                "nodeName": p.spec.as_ref().and_then(|s| s.node_name.clone()),
                "targetRef": {"kind": "Pod", "namespace": ns,
                    "name": p.metadata.name.clone(), "uid": p.metadata.uid.clone()},
            })
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .zip(first)
        .map(|(sp, port)| {
            json!({"name": sp.name.clone().unwrap_or_default(), "port": port,
                "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned())})
        })
        .collect();
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-{SLICE_MANAGER}"),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid}],
        },
        "addressType": "FQDN",
        "endpoints": endpoints,
        "ports": ports,
    }))
}

async fn reconcile_services(
    shared: &Arc<Shared>,
    state: ClusterState,
    listeners: &mut HashMap<(PodKey, u16), JoinHandle<()>>,
    published: &mut HashMap<PodKey, Value>,
) {
    let to_publish = update_services(shared, state, listeners, published);
    for (key, slice) in to_publish {
        let api: Api<EndpointSlice> = Api::namespaced(shared.client.clone(), &key.0);
        let name = format!("{}-{SLICE_MANAGER}", key.1);
        let pp = PatchParams::apply(SLICE_MANAGER).force();
        match api.patch(&name, &pp, &Patch::Apply(&slice)).await {
            Ok(_) => {
                published.insert(key, slice);
            }
            Err(e) => shared.event(format!(
                "service {}/{}: publishing EndpointSlice {name}: {e}",
                key.0, key.1
            )),
        }
    }
}

/// VIPs, backends, listeners and hosts files from the current state; returns the EndpointSlices to
/// publish.
fn update_services(
    shared: &Arc<Shared>,
    (mut services, slices, pods): ClusterState,
    listeners: &mut HashMap<(PodKey, u16), JoinHandle<()>>,
    published: &mut HashMap<PodKey, Value>,
) -> Vec<(PodKey, Value)> {
    let mut wanted: HashSet<(PodKey, u16)> = HashSet::new();
    let mut hosts: Vec<ServiceHosts> = Vec::new();
    let mut live: HashSet<PodKey> = HashSet::new();
    let mut backends: HashMap<(PodKey, u16), Vec<SocketAddr>> = HashMap::new();
    let mut to_publish: Vec<(PodKey, Value)> = Vec::new();
    services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    let mut table = lock(&shared.services);
    for svc in &services {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.clone(),
            svc.metadata.name.clone(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let key = (ns.clone(), name.clone());
        live.insert(key.clone());
        let selected = selected_pods(svc, &ns, &pods);
        let has_selector = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
        if has_selector
            && let Some(slice) = desired_slice(svc, &ns, &name, &selected)
            && published.get(&key) != Some(&slice)
        {
            to_publish.push((key.clone(), slice));
        }
        if spec.cluster_ip.as_deref() == Some("None") {
            let mut ips: Vec<Ipv4Addr> = if has_selector {
                selected.iter().filter(|s| s.2).map(|s| s.1).collect()
            } else {
                spec.ports
                    .iter()
                    .flatten()
                    .flat_map(|p| slice_backends(&slices, &key, p.name.as_deref().unwrap_or("")))
                    .filter_map(|a| match a.ip() {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect()
            };
            ips.sort();
            ips.dedup();
            hosts.push(ServiceHosts { ns, name, ips });
            continue;
        }
        let vip = match table.vips.get(&key) {
            Some(v) => *v,
            None => {
                let used: HashSet<Ipv4Addr> = table.vips.values().copied().collect();
                let mut c = posix_cksum(format!("svc/{}/{}", key.0, key.1).as_bytes());
                let mut vip;
                loop {
                    let b = u8::try_from(c / 250 % 250).unwrap_or(0);
                    let d = u8::try_from(c % 250 + 1).unwrap_or(1);
                    vip = Ipv4Addr::new(127, 251, b, d);
                    if !used.contains(&vip) {
                        break;
                    }
                    c = c.wrapping_add(1);
                }
                table.vips.insert(key.clone(), vip);
                vip
            }
        };
        hosts.push(ServiceHosts {
            ns,
            name,
            ips: vec![vip],
        });
        for sp in spec.ports.iter().flatten() {
            if sp.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(port) = u16::try_from(sp.port) else {
                continue;
            };
            let k = (key.clone(), port);
            let targets: Vec<SocketAddr> = if has_selector {
                selected
                    .iter()
                    .filter(|s| s.2)
                    .filter_map(|(p, ip, _)| {
                        target_port(sp, p).map(|tp| SocketAddr::new(IpAddr::V4(*ip), tp))
                    })
                    .collect()
            } else {
                slice_backends(&slices, &key, sp.name.as_deref().unwrap_or(""))
            };
            backends.insert(k.clone(), targets);
            wanted.insert(k.clone());
            if listeners.get(&k).is_none_or(|h| h.is_finished()) {
                let task = tokio::spawn(serve_service_port(
                    shared.clone(),
                    key.clone(),
                    SocketAddr::new(IpAddr::V4(vip), port),
                ));
                listeners.insert(k, task);
            }
        }
    }
    listeners.retain(|k, h| {
        let keep = wanted.contains(k);
        if !keep {
            h.abort();
        }
        keep
    });
    table.vips.retain(|k, _| live.contains(k));
    table.backends = backends;
    let hosts_changed = table.hosts != hosts;
    if hosts_changed {
        table.hosts = hosts;
    }
    drop(table);
    if hosts_changed {
        rewrite_hosts(shared);
    }
    published.retain(|k, _| live.contains(k));
    to_publish
}

/// Accepts on a Service's VIP:port and proxies each connection to a ready backend (round robin,
/// trying the next one when a connect fails).
async fn serve_service_port(shared: Arc<Shared>, key: PodKey, addr: SocketAddr) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            shared.event(format!(
                "service {}/{}: cannot listen on {addr}: {e} (retrying)",
                key.0, key.1
            ));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shared.stop.cancelled() => {}
            }
            return;
        }
    };
    let backend_key = (key, addr.port());
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let targets = lock(&shared.services)
            .backends
            .get(&backend_key)
            .cloned()
            .unwrap_or_default();
        next = next.wrapping_add(1);
        let start = next;
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            let relay = async {
                for i in 0..targets.len() {
                    let Some(t) = targets.get((start + i) % targets.len()) else {
                        break;
                    };
                    let connect = tokio::net::TcpStream::connect(t);
                    if let Ok(Ok(mut out)) =
                        tokio::time::timeout(Duration::from_secs(2), connect).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        return;
                    }
                }
            };
            tokio::select! {
                _ = relay => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

// ---- one pod ----------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Init(usize),
    Main(usize),
}

#[derive(Debug, Clone, Copy)]
enum Sig {
    Term,
    Kill,
}

struct Exit {
    which: Which,
    epoch: u64,
    code: i32,
}

struct ProbeResult {
    which: Which,
    epoch: u64,
    ok: bool,
}

#[derive(Debug, Clone)]
struct Term {
    exit_code: i32,
    reason: String,
    started_at: String,
    finished_at: String,
    container_id: String,
}

impl Term {
    fn json(&self) -> Value {
        json!({
            "exitCode": self.exit_code, "reason": self.reason, "startedAt": self.started_at,
            "finishedAt": self.finished_at, "containerID": self.container_id,
        })
    }
}

#[derive(Debug, Clone)]
enum CState {
    Waiting { reason: String, message: String },
    Running { started_at: String },
    Terminated(Term),
}

struct Ctr {
    spec: Container,
    sidecar: bool,
    rule: Option<usize>,
    state: CState,
    last_term: Option<Term>,
    restart_count: i32,
    starts: u32,
    ready: bool,
    started: bool,
    container_id: Option<String>,
    epoch: u64,
    pid: Option<u32>,
    ctl: Option<mpsc::UnboundedSender<Sig>>,
    started_instant: Option<Instant>,
    restart_at: Option<Instant>,
    backoff: Duration,
    probe: Option<ProbeSpec>,
    probe_next: Option<Instant>,
    probe_in_flight: bool,
    probe_ok_run: u32,
    probe_fail_run: u32,
}

#[derive(Debug, Clone)]
struct ProbeSpec {
    kind: ProbeKind,
    initial: Duration,
    period: Duration,
    timeout: Duration,
    success: u32,
    failure: u32,
}

#[derive(Debug, Clone)]
enum ProbeKind {
    Http {
        url: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp(SocketAddr),
    /// A probe this kubelet cannot run (exec, grpc, a non-loopback host): always failing, with why.
    Broken(String),
}

#[derive(Debug, Clone)]
struct VolSrc {
    path: PathBuf,
    host: bool,
}

#[derive(Debug, Clone)]
struct MountSpec {
    src: PathBuf,
    dst: PathBuf,
    ro: bool,
    dir: bool,
}

static CONTAINER_IDS: AtomicU64 = AtomicU64::new(1);

struct PodRun {
    shared: Arc<Shared>,
    key: PodKey,
    uid: String,
    pod: Arc<Pod>,
    spec: PodSpec,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    ip_error: Option<String>,
    start_time: String,
    volumes: Option<HashMap<String, VolSrc>>,
    setup_error: Option<String>,
    setup_retry: Option<Instant>,
    inits: Vec<Ctr>,
    mains: Vec<Ctr>,
    init_done: usize,
    conditions: BTreeMap<&'static str, (bool, String)>,
    last_patch: Option<Value>,
    patch_retry: Option<Instant>,
    terminating: bool,
    exit_tx: mpsc::UnboundedSender<Exit>,
    probe_tx: mpsc::UnboundedSender<ProbeResult>,
}

async fn run_pod(
    shared: Arc<Shared>,
    key: PodKey,
    uid: String,
    mut rx: watch::Receiver<PodUpdate>,
) {
    let PodUpdate::Present(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let mut run = PodRun::new(shared.clone(), key.clone(), uid, pod, exit_tx, probe_tx).await;
    let mut gone = false;
    loop {
        if gone || run.pod.metadata.deletion_timestamp.is_some() {
            break;
        }
        run.step().await;
        run.patch_status().await;
        let deadline = run.next_deadline();
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            changed = rx.changed() => match changed {
                Ok(()) => match rx.borrow_and_update().clone() {
                    PodUpdate::Present(p) => run.pod = p,
                    PodUpdate::Gone => gone = true,
                },
                Err(_) => gone = true,
            },
            Some(e) = exit_rx.recv() => run.on_exit(e),
            Some(p) = probe_rx.recv() => run.on_probe(p),
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    run.terminate(!gone, &mut exit_rx).await;
}

impl PodRun {
    async fn new(
        shared: Arc<Shared>,
        key: PodKey,
        uid: String,
        pod: Arc<Pod>,
        exit_tx: mpsc::UnboundedSender<Exit>,
        probe_tx: mpsc::UnboundedSender<ProbeResult>,
    ) -> Self {
        let mut spec = pod.spec.clone().unwrap_or_default();
        let short_uid: String = uid.chars().take(8).collect();
        let dir = shared
            .work
            .join("pods")
            .join(format!("{}_{}_{short_uid}", key.0, key.1));
        let (ip, ip_error) = match choose_ip(&shared, &key, &pod, &spec) {
            Ok(ip) => (Some(ip), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        if pod.metadata.deletion_timestamp.is_none() {
            emulate_service_account_mount(&shared, &key.0, &mut spec).await;
        }
        let mk = |c: &Container, sidecar: bool, first_reason: &str| Ctr {
            rule: c
                .image
                .as_deref()
                .and_then(|img| shared.cfg.images.iter().position(|r| r.matches(img))),
            spec: c.clone(),
            sidecar,
            state: CState::Waiting {
                reason: first_reason.to_owned(),
                message: String::new(),
            },
            last_term: None,
            restart_count: 0,
            starts: 0,
            ready: false,
            started: false,
            container_id: None,
            epoch: 0,
            pid: None,
            ctl: None,
            started_instant: None,
            restart_at: None,
            backoff: shared.cfg.restart_backoff,
            probe: None,
            probe_next: None,
            probe_in_flight: false,
            probe_ok_run: 0,
            probe_fail_run: 0,
        };
        let inits: Vec<Ctr> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                mk(
                    c,
                    c.restart_policy.as_deref() == Some("Always"),
                    "PodInitializing",
                )
            })
            .collect();
        let main_reason = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let mains: Vec<Ctr> = spec
            .containers
            .iter()
            .map(|c| mk(c, false, main_reason))
            .collect();
        let mut run = PodRun {
            shared: shared.clone(),
            key: key.clone(),
            uid,
            pod,
            spec,
            dir,
            ip,
            ip_error,
            start_time: now_ts(),
            volumes: None,
            setup_error: None,
            setup_retry: None,
            inits,
            mains,
            init_done: 0,
            conditions: BTreeMap::new(),
            last_patch: None,
            patch_retry: None,
            terminating: false,
            exit_tx,
            probe_tx,
        };
        if let Some(e) = &run.ip_error {
            shared.event(format!("pod {}/{}: {e}", key.0, key.1));
        } else {
            shared.event(format!(
                "pod {}/{}: taken, IP {}",
                key.0,
                key.1,
                run.ip.map(|i| i.to_string()).unwrap_or_default()
            ));
        }
        run.set_condition("PodScheduled", true);
        run
    }

    fn name(&self) -> String {
        format!("{}/{}", self.key.0, self.key.1)
    }

    fn ctr(&self, w: Which) -> Option<&Ctr> {
        match w {
            Which::Init(i) => self.inits.get(i),
            Which::Main(i) => self.mains.get(i),
        }
    }

    fn ctr_mut(&mut self, w: Which) -> Option<&mut Ctr> {
        match w {
            Which::Init(i) => self.inits.get_mut(i),
            Which::Main(i) => self.mains.get_mut(i),
        }
    }

    fn all_which(&self) -> Vec<Which> {
        (0..self.inits.len())
            .map(Which::Init)
            .chain((0..self.mains.len()).map(Which::Main))
            .collect()
    }

    fn set_condition(&mut self, ty: &'static str, status: bool) {
        match self.conditions.get(ty) {
            Some((s, _)) if *s == status => {}
            _ => {
                self.conditions.insert(ty, (status, now_ts()));
            }
        }
    }

    /// Prepares volumes, starts due containers and launches due probes.
    async fn step(&mut self) {
        if self.terminating || self.ip.is_none() {
            return;
        }
        let now = Instant::now();
        if self.volumes.is_none() {
            if self.setup_retry.is_some_and(|t| t > now) {
                return;
            }
            match self.setup().await {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.setup_error = None;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if self.setup_error.as_deref() != Some(msg.as_str()) {
                        self.shared
                            .event(format!("pod {}: volumes: {msg}", self.name()));
                    }
                    self.setup_error = Some(msg);
                    self.setup_retry = Some(now + Duration::from_secs(1));
                    return;
                }
            }
        }
        // Init containers, one after the other; a sidecar (restartPolicy Always) counts once started.
        while self.init_done < self.inits.len() {
            let i = self.init_done;
            let c = &self.inits[i];
            match &c.state {
                CState::Terminated(t) if t.exit_code == 0 => self.init_done += 1,
                CState::Terminated(_) => return,
                CState::Running { .. } if c.sidecar => self.init_done += 1,
                CState::Running { .. } => return,
                CState::Waiting { .. } => {
                    if c.restart_at.is_some_and(|t| t > now) {
                        return;
                    }
                    self.start(Which::Init(i)).await;
                    if matches!(self.inits[i].state, CState::Waiting { .. }) {
                        return;
                    }
                }
            }
        }
        for w in self.all_which() {
            let Some(c) = self.ctr(w) else { continue };
            let due =
                matches!(c.state, CState::Waiting { .. }) && c.restart_at.is_none_or(|t| t <= now);
            let eligible = match w {
                Which::Main(_) => true,
                Which::Init(_) => c.sidecar,
            };
            if due && eligible {
                self.start(w).await;
            }
        }
        for w in self.all_which() {
            let Some(c) = self.ctr(w) else { continue };
            let due = !c.probe_in_flight && c.probe_next.is_some_and(|t| t <= now);
            if let (true, Some(p)) = (due, c.probe.clone()) {
                self.launch_probe(w, p);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut next = Instant::now() + Duration::from_secs(3600);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t
                && t < next
            {
                next = t;
            }
        };
        consider(self.setup_retry.filter(|_| self.volumes.is_none()));
        consider(self.patch_retry);
        for w in self.all_which() {
            if let Some(c) = self.ctr(w) {
                if matches!(c.state, CState::Waiting { .. }) {
                    consider(c.restart_at);
                }
                if !c.probe_in_flight {
                    consider(c.probe_next);
                }
            }
        }
        next
    }

    // ---- volumes ----

    async fn setup(&mut self) -> Result<HashMap<String, VolSrc>> {
        let vdir = self.dir.join("volumes");
        if vdir.exists() {
            std::fs::remove_dir_all(&vdir)?;
        }
        mkdir(&self.dir, 0o755)?;
        mkdir(&vdir, 0o755)?;
        let mut out = HashMap::new();
        let volumes = self.spec.volumes.clone().unwrap_or_default();
        for v in &volumes {
            let src = self
                .volume(v, &vdir)
                .await
                .with_context(|| format!("volume {:?}", v.name))?;
            out.insert(v.name.clone(), src);
        }
        // The pod's /etc/hosts.
        let hostname = self
            .spec
            .hostname
            .clone()
            .or_else(|| self.pod.metadata.name.clone())
            .unwrap_or_default();
        let mut hosts = String::from(
            "# Kubernetes-managed hosts file (kubelet-play).\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        if let Some(ip) = self.ip {
            hosts.push_str(&format!("{ip}\t{hostname}\n"));
        }
        for a in self.spec.host_aliases.iter().flatten() {
            let names = a.hostnames.clone().unwrap_or_default().join(" ");
            hosts.push_str(&format!("{}\t{names}\n", a.ip));
        }
        for (ip, names) in &self.shared.cfg.extra_hosts {
            hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        let services = lock(&self.shared.services).hosts.clone();
        let content = render_hosts(&hosts, &self.key.0, &services);
        write_file(&self.dir, "etc-hosts", content.as_bytes(), 0o644, None)?;
        lock(&self.shared.hosts_files)
            .insert(self.key.clone(), (self.dir.join("etc-hosts"), hosts));
        self.shared.event(format!(
            "pod {}: {} volumes ready in {}",
            self.name(),
            out.len(),
            vdir.display()
        ));
        Ok(out)
    }

    fn fs_group(&self) -> Option<u32> {
        self.spec
            .security_context
            .as_ref()
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok())
    }

    async fn volume(&self, v: &Volume, vdir: &Path) -> Result<VolSrc> {
        let dir = vdir.join(&v.name);
        let gid = self.fs_group();
        let local = |path: PathBuf| VolSrc { path, host: false };
        if let Some(cm) = &v.config_map {
            mkdir(&dir, 0o755)?;
            let mode = cm.default_mode.unwrap_or(0o644);
            self.config_map_files(&dir, &cm.name, cm.items.as_deref(), cm.optional, mode, gid)
                .await?;
            return Ok(local(dir));
        }
        if let Some(s) = &v.secret {
            mkdir(&dir, 0o755)?;
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.unwrap_or(0o644);
            self.secret_files(&dir, &name, s.items.as_deref(), s.optional, mode, gid)
                .await?;
            return Ok(local(dir));
        }
        if v.empty_dir.is_some() {
            mkdir(&dir, 0o777)?;
            return Ok(local(dir));
        }
        if let Some(d) = &v.downward_api {
            mkdir(&dir, 0o755)?;
            let mode = d.default_mode.unwrap_or(0o644);
            self.downward_files(&dir, d.items.as_deref().unwrap_or_default(), mode, gid)
                .await?;
            return Ok(local(dir));
        }
        if let Some(p) = &v.projected {
            mkdir(&dir, 0o755)?;
            self.projected_files(&dir, p, gid).await?;
            return Ok(local(dir));
        }
        if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&path)?,
                "FileOrCreate" if !path.exists() => {
                    std::fs::File::create(&path)?;
                }
                "FileOrCreate" | "" => {}
                "Directory" if !path.is_dir() => bail!("hostPath {} is not a directory", h.path),
                "File" if !path.is_file() => bail!("hostPath {} is not a file", h.path),
                _ if !path.exists() => bail!("hostPath {} does not exist", h.path),
                _ => {}
            }
            return Ok(VolSrc { path, host: true });
        }
        bail!(
            "unsupported volume type (kubelet-play does configMap, secret, emptyDir, downwardAPI, \
             projected and hostPath)"
        )
    }

    async fn config_map_files(
        &self,
        dir: &Path,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: Option<bool>,
        mode: i32,
        gid: Option<u32>,
    ) -> Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        let Some(cm) = api.get_opt(name).await? else {
            if optional == Some(true) {
                return Ok(());
            }
            bail!("configmap {:?} not found", name);
        };
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        write_keys(dir, &data, items, optional, mode, gid)
            .with_context(|| format!("configmap {name:?}"))
    }

    async fn secret_files(
        &self,
        dir: &Path,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: Option<bool>,
        mode: i32,
        gid: Option<u32>,
    ) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        let Some(s) = api.get_opt(name).await? else {
            if optional == Some(true) {
                return Ok(());
            }
            bail!("secret {:?} not found", name);
        };
        let data: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        write_keys(dir, &data, items, optional, mode, gid)
            .with_context(|| format!("secret {name:?}"))
    }

    async fn downward_files(
        &self,
        dir: &Path,
        items: &[DownwardAPIVolumeFile],
        mode: i32,
        gid: Option<u32>,
    ) -> Result<()> {
        for item in items {
            let value = if let Some(f) = &item.field_ref {
                field_value(&self.pod, &f.field_path, self.ip)?
            } else if let Some(r) = &item.resource_field_ref {
                let cname = r.container_name.clone().unwrap_or_default();
                let c = self
                    .spec
                    .containers
                    .iter()
                    .find(|c| c.name == cname)
                    .ok_or_else(|| anyhow!("resourceFieldRef: no container {cname:?}"))?;
                self.resource_value(c, &r.resource, r.divisor.as_ref())
                    .await?
            } else {
                bail!(
                    "downwardAPI item {:?} has no fieldRef or resourceFieldRef",
                    item.path
                );
            };
            write_file(
                dir,
                &item.path,
                value.as_bytes(),
                item.mode.unwrap_or(mode),
                gid,
            )?;
        }
        Ok(())
    }

    async fn projected_files(
        &self,
        dir: &Path,
        p: &ProjectedVolumeSource,
        gid: Option<u32>,
    ) -> Result<()> {
        let mode = p.default_mode.unwrap_or(0o644);
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let token = self.token(t).await?;
                write_file(dir, &t.path, token.as_bytes(), mode, gid)?;
            }
            if let Some(cm) = &src.config_map {
                self.config_map_files(dir, &cm.name, cm.items.as_deref(), cm.optional, mode, gid)
                    .await?;
            }
            if let Some(s) = &src.secret {
                self.secret_files(dir, &s.name, s.items.as_deref(), s.optional, mode, gid)
                    .await?;
            }
            if let Some(d) = &src.downward_api {
                self.downward_files(dir, d.items.as_deref().unwrap_or_default(), mode, gid)
                    .await?;
            }
            if src.cluster_trust_bundle.is_some() || src.pod_certificate.is_some() {
                bail!("projected clusterTrustBundle/podCertificate sources are not supported");
            }
        }
        Ok(())
    }

    /// A real token from the TokenRequest API for the pod's ServiceAccount, bound to the pod.
    async fn token(&self, t: &ServiceAccountTokenProjection) -> Result<String> {
        let sa = self
            .spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: t.audience.clone().into_iter().collect(),
                expiration_seconds: Some(t.expiration_seconds.unwrap_or(3607)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: Some(self.key.1.clone()),
                    uid: Some(self.uid.clone()),
                }),
            },
            ..TokenRequest::default()
        };
        let resp = api
            .create_token_request(&sa, &PostParams::default(), &req)
            .await
            .with_context(|| format!("TokenRequest for serviceaccount {}/{sa}", self.key.0))?;
        resp.status
            .map(|s| s.token)
            .ok_or_else(|| anyhow!("TokenRequest for {}/{sa} returned no token", self.key.0))
    }

    /// `resourceFieldRef`: the container's limit or request (a limit falls back to the node's
    /// allocatable), divided by `divisor` and rounded up.
    async fn resource_value(
        &self,
        c: &Container,
        resource: &str,
        divisor: Option<&Quantity>,
    ) -> Result<String> {
        let (kind, name) = resource
            .split_once('.')
            .ok_or_else(|| anyhow!("resourceFieldRef {resource:?}"))?;
        let res = c.resources.as_ref();
        let from = match kind {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            "requests" => res.and_then(|r| r.requests.as_ref()),
            _ => bail!("resourceFieldRef {resource:?}"),
        };
        let mut value = from
            .and_then(|m| m.get(name))
            .and_then(|q| parse_quantity(&q.0));
        if value.is_none() && kind == "limits" {
            let node = self.spec.node_name.clone().unwrap_or_default();
            let api: Api<Node> = Api::all(self.shared.client.clone());
            value = api
                .get_opt(&node)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.status)
                .and_then(|s| s.allocatable)
                .and_then(|a| a.get(name).and_then(|q| parse_quantity(&q.0)));
        }
        let value = value.unwrap_or(0.0);
        let div = divisor
            .and_then(|d| parse_quantity(&d.0))
            .filter(|d| *d > 0.0)
            .unwrap_or(1.0);
        Ok(format!("{}", (value / div).ceil() as i64))
    }

    // ---- containers ----

    async fn start(&mut self, w: Which) {
        let Some(c) = self.ctr(w) else { return };
        let Some(rule_idx) = c.rule else {
            // An image the test plays itself: running (or, for an init container, done) at once.
            let now = now_ts();
            let id = format!(
                "kubelet-play://{}",
                CONTAINER_IDS.fetch_add(1, Ordering::Relaxed)
            );
            let init = matches!(w, Which::Init(_));
            if let Some(c) = self.ctr_mut(w) {
                c.container_id = Some(id.clone());
                if init && !c.sidecar {
                    c.state = CState::Terminated(Term {
                        exit_code: 0,
                        reason: "Completed".to_owned(),
                        started_at: now.clone(),
                        finished_at: now,
                        container_id: id,
                    });
                } else {
                    c.state = CState::Running { started_at: now };
                    c.ready = true;
                    c.started = true;
                }
            }
            return;
        };
        match self.spawn(w, rule_idx).await {
            Ok(()) => {}
            Err((reason, msg)) => {
                let name = self.name();
                let shared = self.shared.clone();
                if let Some(c) = self.ctr_mut(w) {
                    let same =
                        matches!(&c.state, CState::Waiting { message, .. } if *message == msg);
                    if !same {
                        shared.event(format!(
                            "pod {name} container {}: {reason}: {msg}",
                            c.spec.name
                        ));
                    }
                    c.state = CState::Waiting {
                        reason: reason.to_owned(),
                        message: msg,
                    };
                    c.restart_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// Starts a run container's process; on failure the waiting reason and message.
    async fn spawn(&mut self, w: Which, rule_idx: usize) -> Result<(), (&'static str, String)> {
        let cfg_err = |e: anyhow::Error| ("CreateContainerConfigError", format!("{e:#}"));
        let run_err = |e: anyhow::Error| ("RunContainerError", format!("{e:#}"));
        let shared = self.shared.clone();
        let rule = shared
            .cfg
            .images
            .get(rule_idx)
            .ok_or_else(|| ("RunContainerError", "no image rule".to_owned()))?;
        let spec = self
            .ctr(w)
            .map(|c| c.spec.clone())
            .ok_or_else(|| ("RunContainerError", "no container".to_owned()))?;
        let env = self.container_env(&spec, rule).await.map_err(cfg_err)?;
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let user = self.user(&spec, rule).map_err(cfg_err)?;
        let exe = shared.exe_for(&rule.exe, user.uid).map_err(run_err)?;
        let mut argv: Vec<String> = Vec::new();
        match &spec.command {
            Some(cmd) if !cmd.is_empty() => {
                argv.extend(cmd.iter().skip(1).map(|a| expand(a, lookup)));
            }
            _ => {}
        }
        argv.extend(spec.args.iter().flatten().map(|a| expand(a, lookup)));
        let mounts = self.container_mounts(&spec, &env).map_err(run_err)?;
        // The start script, run in a new mount namespace.
        let mut script = String::from("set -e\n");
        let mount = shared.tools.mount.display().to_string();
        for m in &mounts {
            let (src, dst) = (
                path_str(&m.src).map_err(run_err)?,
                path_str(&m.dst).map_err(run_err)?,
            );
            script.push_str(&format!("{} --rbind {} {}\n", sq(&mount), sq(src), sq(dst)));
            if m.ro {
                script.push_str(&format!("{} -o remount,bind,ro {}\n", sq(&mount), sq(dst)));
            }
        }
        if let Some(wd) = spec.working_dir.as_deref().filter(|d| !d.is_empty()) {
            script.push_str(&format!("mkdir -p {0}\ncd {0}\n", sq(wd)));
        }
        script.push_str("exec ");
        if user.uid != 0 || user.no_new_privs {
            script.push_str(&sq(&shared.tools.setpriv.display().to_string()));
            if user.uid != 0 || user.gid != 0 {
                script.push_str(&format!(" --reuid={} --regid={}", user.uid, user.gid));
                if user.groups.is_empty() {
                    script.push_str(" --clear-groups");
                } else {
                    let g: Vec<String> = user.groups.iter().map(|g| g.to_string()).collect();
                    script.push_str(&format!(" --groups={}", g.join(",")));
                }
            }
            if user.no_new_privs {
                script.push_str(" --no-new-privs");
            }
            script.push_str(" --");
        }
        script.push(' ');
        script.push_str(&sq(path_str(&exe).map_err(run_err)?));
        for a in &argv {
            script.push(' ');
            script.push_str(&sq(a));
        }
        script.push('\n');
        let cdir = self.dir.join("containers");
        mkdir(&cdir, 0o755).map_err(run_err)?;
        let script_path = cdir.join(format!("{}.sh", spec.name));
        std::fs::write(&script_path, &script)
            .context("writing the start script")
            .map_err(run_err)?;
        // The process's environment: the container's, plus the bind shim.
        let mut penv = env.clone();
        if let (Some(shim), false) = (&shared.tools.shim, self.host_network()) {
            let preload = match lookup("LD_PRELOAD") {
                Some(p) if !p.is_empty() => format!("{}:{p}", shim.display()),
                _ => shim.display().to_string(),
            };
            penv.push(("LD_PRELOAD".to_owned(), preload));
            if let Some(ip) = self.ip {
                penv.push(("KUBELET_PLAY_POD_IP".to_owned(), ip.to_string()));
            }
        }
        let log_path = shared.log_path(&self.key.0, &self.key.1, &spec.name);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("opening the container log")
            .map_err(run_err)?;
        let attempt = self.ctr(w).map(|c| c.starts + 1).unwrap_or(1);
        let _ = writeln!(
            log,
            "==== kubelet-play {}: start #{attempt} of {}: {} {} (uid {} gid {}) ====",
            now_ts(),
            spec.name,
            exe.display(),
            argv.join(" "),
            user.uid,
            user.gid
        );
        let stderr = log.try_clone().context("log file").map_err(run_err)?;
        let mut cmd = tokio::process::Command::new(&shared.tools.unshare);
        cmd.args(["--mount", "--propagation", "private", "--"])
            .arg(&shared.tools.sh)
            .arg(&script_path)
            .env_clear()
            .envs(penv.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", shared.tools.unshare.display()))
            .map_err(run_err)?;
        let pid = child.id().unwrap_or(0);
        let id = format!(
            "kubelet-play://{}",
            CONTAINER_IDS.fetch_add(1, Ordering::Relaxed)
        );
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let probe = self.probe_spec(&spec);
        let name = self.name();
        let Some(c) = self.ctr_mut(w) else {
            return Ok(());
        };
        c.epoch += 1;
        if c.starts > 0 {
            c.restart_count += 1;
        }
        c.starts += 1;
        c.pid = Some(pid);
        c.ctl = Some(ctl_tx);
        c.container_id = Some(id);
        c.state = CState::Running {
            started_at: now_ts(),
        };
        c.started = true;
        c.started_instant = Some(Instant::now());
        c.restart_at = None;
        c.probe_ok_run = 0;
        c.probe_fail_run = 0;
        c.probe_in_flight = false;
        // Without a readiness probe a container is ready once started.
        c.ready = probe.is_none();
        c.probe_next = probe.as_ref().map(|p| Instant::now() + p.initial);
        c.probe = probe;
        let epoch = c.epoch;
        lock(&shared.procs).insert(
            pid,
            (self.key.0.clone(), self.key.1.clone(), spec.name.clone()),
        );
        shared.save_pids();
        shared.event(format!(
            "pod {name} container {}: started pid {pid} (start #{attempt}, uid {})",
            spec.name, user.uid
        ));
        tokio::spawn(supervise(
            child,
            pid,
            ctl_rx,
            self.exit_tx.clone(),
            w,
            epoch,
            shared.stop.clone(),
        ));
        Ok(())
    }

    fn host_network(&self) -> bool {
        self.spec.host_network == Some(true)
    }

    fn user(&self, c: &Container, rule: &ImageRule) -> Result<RunUser> {
        let psc = self.spec.security_context.as_ref();
        let csc = c.security_context.as_ref();
        let to_u32 = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| anyhow!("{what} {v} is not a valid id"))
        };
        let uid = match csc
            .and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|s| s.run_as_user))
        {
            Some(u) => to_u32(u, "runAsUser")?,
            None => rule.user.map(|u| u.0).unwrap_or(0),
        };
        let gid = match csc
            .and_then(|s| s.run_as_group)
            .or_else(|| psc.and_then(|s| s.run_as_group))
        {
            Some(g) => to_u32(g, "runAsGroup")?,
            None => rule.user.map(|u| u.1).unwrap_or(0),
        };
        let non_root = csc
            .and_then(|s| s.run_as_non_root)
            .or_else(|| psc.and_then(|s| s.run_as_non_root))
            .unwrap_or(false);
        if non_root && uid == 0 {
            bail!("container has runAsNonRoot and image will run as root");
        }
        let mut groups = Vec::new();
        if let Some(g) = psc.and_then(|s| s.fs_group) {
            groups.push(to_u32(g, "fsGroup")?);
        }
        for g in psc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default()
        {
            groups.push(to_u32(g, "supplementalGroups")?);
        }
        Ok(RunUser {
            uid,
            gid,
            groups,
            no_new_privs: csc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        })
    }

    /// The container's environment as a kubelet builds it: image ENV, HOSTNAME, the `kubernetes`
    /// Service's variables, `envFrom`, then `env` in order (`$(VAR)` expanded against what came before).
    async fn container_env(
        &self,
        c: &Container,
        rule: &ImageRule,
    ) -> Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), "/".to_owned()),
        ];
        let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        };
        for (k, v) in &rule.env {
            set(&mut env, k.clone(), v.clone());
        }
        let hostname = self
            .spec
            .hostname
            .clone()
            .or_else(|| self.pod.metadata.name.clone())
            .unwrap_or_default();
        set(&mut env, "HOSTNAME".to_owned(), hostname);
        // What the kubelet injects for the `kubernetes` Service (here: the test API server itself).
        let host = self.shared.api_host.clone();
        let port = self.shared.api_port.to_string();
        let service_env = vec![
            ("KUBERNETES_SERVICE_HOST".to_owned(), host.clone()),
            ("KUBERNETES_SERVICE_PORT".to_owned(), port.clone()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".to_owned(), port.clone()),
            ("KUBERNETES_PORT".to_owned(), format!("tcp://{host}:{port}")),
        ];
        for (k, v) in &service_env {
            set(&mut env, k.clone(), v.clone());
        }
        // envFrom, then env; `tmp` is what $(VAR) in env values may refer to.
        let mut tmp: Vec<(String, String)> = Vec::new();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let data: BTreeMap<String, String> = if let Some(r) = &from.config_map_ref {
                let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.key.0);
                match api.get_opt(&r.name).await? {
                    Some(cm) => cm.data.unwrap_or_default(),
                    None if r.optional == Some(true) => BTreeMap::new(),
                    None => bail!("configmap {:?} not found", r.name),
                }
            } else if let Some(r) = &from.secret_ref {
                let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.key.0);
                match api.get_opt(&r.name).await? {
                    Some(s) => s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect(),
                    None if r.optional == Some(true) => BTreeMap::new(),
                    None => bail!("secret {:?} not found", r.name),
                }
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                set(&mut tmp, format!("{prefix}{k}"), v);
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = e.value.as_deref().filter(|v| !v.is_empty()) {
                expand(v, |name| {
                    tmp.iter()
                        .rev()
                        .chain(service_env.iter().rev())
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                })
            } else if let Some(from) = &e.value_from {
                match self.env_value_from(c, from).await {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(err) => return Err(err.context(format!("env {}", e.name))),
                }
            } else {
                String::new()
            };
            set(&mut tmp, e.name.clone(), value);
        }
        for (k, v) in tmp {
            set(&mut env, k, v);
        }
        Ok(env)
    }

    /// `valueFrom`; `None` for an optional key that is missing (the variable is not set).
    async fn env_value_from(
        &self,
        c: &Container,
        from: &k8s_openapi::api::core::v1::EnvVarSource,
    ) -> Result<Option<String>> {
        if let Some(f) = &from.field_ref {
            return field_value(&self.pod, &f.field_path, self.ip).map(Some);
        }
        if let Some(r) = &from.resource_field_ref {
            let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                Some(n) => self
                    .spec
                    .containers
                    .iter()
                    .chain(self.spec.init_containers.iter().flatten())
                    .find(|x| x.name == n)
                    .ok_or_else(|| anyhow!("resourceFieldRef: no container {n:?}"))?,
                None => c,
            };
            return self
                .resource_value(target, &r.resource, r.divisor.as_ref())
                .await
                .map(Some);
        }
        if let Some(r) = &from.config_map_key_ref {
            let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.key.0);
            let v = api
                .get_opt(&r.name)
                .await?
                .and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned()));
            return match v {
                Some(v) => Ok(Some(v)),
                None if r.optional == Some(true) => Ok(None),
                None => bail!("configmap {:?} key {:?} not found", r.name, r.key),
            };
        }
        if let Some(r) = &from.secret_key_ref {
            let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.key.0);
            let v = api.get_opt(&r.name).await?.and_then(|s| {
                s.data.and_then(|d| {
                    d.get(&r.key)
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                })
            });
            return match v {
                Some(v) => Ok(Some(v)),
                None if r.optional == Some(true) => Ok(None),
                None => bail!("secret {:?} key {:?} not found", r.name, r.key),
            };
        }
        bail!("unsupported valueFrom (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef)")
    }

    /// The container's bind mounts, parents first, with their mount points prepared.
    fn container_mounts(&self, c: &Container, env: &[(String, String)]) -> Result<Vec<MountSpec>> {
        let volumes = self
            .volumes
            .as_ref()
            .ok_or_else(|| anyhow!("volumes not ready"))?;
        let mut mounts = Vec::new();
        for vm in c.volume_mounts.iter().flatten() {
            let v = volumes
                .get(&vm.name)
                .ok_or_else(|| anyhow!("volumeMount {:?}: no such volume", vm.name))?;
            let mut src = v.path.clone();
            let sub = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => s.clone(),
                (_, Some(e)) if !e.is_empty() => expand(e, |name| {
                    env.iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                }),
                _ => String::new(),
            };
            if !sub.is_empty() {
                src = src.join(safe_rel(&sub)?);
                if !src.exists() && !v.host {
                    mkdirs(&v.path, &safe_rel(&sub)?, 0o755)?;
                }
            }
            let dst = normalize_abs(&vm.mount_path)
                .with_context(|| format!("volumeMount {:?}", vm.name))?;
            mounts.push(MountSpec {
                dir: src.is_dir(),
                src,
                dst,
                ro: vm.read_only == Some(true),
            });
        }
        let hosts_file = Path::new("/etc/hosts");
        if !self.host_network() && !mounts.iter().any(|m| m.dst == hosts_file) {
            mounts.push(MountSpec {
                src: self.dir.join("etc-hosts"),
                dst: hosts_file.to_path_buf(),
                ro: false,
                dir: false,
            });
        }
        // Parents first; a mount hiding the work dir (where the sources are) last.
        let work = &self.shared.work;
        mounts.sort_by_key(|m| (work.starts_with(&m.dst), m.dst.components().count()));
        for i in 0..mounts.len() {
            let m = &mounts[i];
            let enclosing = mounts[..i]
                .iter()
                .filter(|e| m.dst.starts_with(&e.dst) && m.dst != e.dst)
                .max_by_key(|e| e.dst.components().count());
            match enclosing {
                Some(e) => {
                    // The mount point lives in the enclosing volume, as a runtime creates it there.
                    let rel = m
                        .dst
                        .strip_prefix(&e.dst)
                        .map_err(|_| anyhow!("mount {}", m.dst.display()))?;
                    let inner = e.src.join(rel);
                    if !inner.exists() {
                        if !e.dir {
                            bail!(
                                "mount {} lies under the file mount {}",
                                m.dst.display(),
                                e.dst.display()
                            );
                        }
                        if m.dir {
                            std::fs::create_dir_all(&inner)?;
                        } else {
                            if let Some(p) = inner.parent() {
                                std::fs::create_dir_all(p)?;
                            }
                            std::fs::File::create(&inner)?;
                        }
                    }
                }
                None => self.shared.mounts.ensure(&m.dst, m.dir)?,
            }
            if m.dst.exists() && m.dst.is_dir() != m.dir && enclosing.is_none() {
                bail!(
                    "cannot mount {} {} onto {} {}",
                    if m.dir { "directory" } else { "file" },
                    m.src.display(),
                    if m.dst.is_dir() { "directory" } else { "file" },
                    m.dst.display()
                );
            }
        }
        Ok(mounts)
    }

    // ---- probes ----

    fn probe_spec(&self, c: &Container) -> Option<ProbeSpec> {
        let p = c.readiness_probe.as_ref()?;
        let ip = if self.host_network() {
            Ipv4Addr::LOCALHOST
        } else {
            self.ip?
        };
        let cap = self.shared.cfg.max_probe_period;
        let secs = |v: Option<i32>, default: i32| {
            Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
        };
        let port_of = |port: &IntOrString| -> Option<u16> {
            match port {
                IntOrString::Int(n) => u16::try_from(*n).ok(),
                IntOrString::String(s) => s.parse().ok().or_else(|| {
                    c.ports
                        .iter()
                        .flatten()
                        .find(|p| p.name.as_deref() == Some(s.as_str()))
                        .and_then(|p| u16::try_from(p.container_port).ok())
                }),
            }
        };
        let host_of = |h: Option<&String>| -> Result<Ipv4Addr, String> {
            match h.filter(|h| !h.is_empty()) {
                None => Ok(ip),
                Some(h) => match h.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_loopback() => Ok(a),
                    _ => Err(format!("probe host {h:?} is not a loopback address")),
                },
            }
        };
        let kind = if let Some(h) = &p.http_get {
            match (port_of(&h.port), host_of(h.host.as_ref())) {
                (Some(port), Ok(host)) => {
                    let https = h.scheme.as_deref() == Some("HTTPS");
                    let mut path = h.path.clone().unwrap_or_else(|| "/".to_owned());
                    if !path.starts_with('/') {
                        path.insert(0, '/');
                    }
                    ProbeKind::Http {
                        url: format!(
                            "{}://{host}:{port}{path}",
                            if https { "https" } else { "http" }
                        ),
                        https,
                        headers: h
                            .http_headers
                            .iter()
                            .flatten()
                            .map(|x| (x.name.clone(), x.value.clone()))
                            .collect(),
                    }
                }
                (None, _) => ProbeKind::Broken(format!("probe port {:?} not found", h.port)),
                (_, Err(e)) => ProbeKind::Broken(e),
            }
        } else if let Some(t) = &p.tcp_socket {
            match (port_of(&t.port), host_of(t.host.as_ref())) {
                (Some(port), Ok(host)) => ProbeKind::Tcp(SocketAddr::new(IpAddr::V4(host), port)),
                (None, _) => ProbeKind::Broken(format!("probe port {:?} not found", t.port)),
                (_, Err(e)) => ProbeKind::Broken(e),
            }
        } else {
            // exec and grpc probes are not run: the container counts as ready once started.
            self.shared.event(format!(
                "pod {} container {}: exec/grpc readiness probe not emulated; ready when started",
                self.name(),
                c.name
            ));
            return None;
        };
        Some(ProbeSpec {
            kind,
            initial: secs(p.initial_delay_seconds, 0).min(cap),
            period: secs(p.period_seconds, 10)
                .min(cap)
                .max(Duration::from_millis(100)),
            timeout: secs(p.timeout_seconds, 1)
                .min(Duration::from_secs(2))
                .max(Duration::from_millis(200)),
            success: u32::try_from(p.success_threshold.unwrap_or(1).max(1)).unwrap_or(1),
            failure: u32::try_from(p.failure_threshold.unwrap_or(3).max(1)).unwrap_or(3),
        })
    }

    fn launch_probe(&mut self, w: Which, p: ProbeSpec) {
        let shared = self.shared.clone();
        let tx = self.probe_tx.clone();
        let Some(c) = self.ctr_mut(w) else { return };
        c.probe_in_flight = true;
        let epoch = c.epoch;
        tokio::spawn(async move {
            let ok = run_probe(&shared, &p).await;
            let _ = tx.send(ProbeResult {
                which: w,
                epoch,
                ok,
            });
        });
    }

    fn on_probe(&mut self, r: ProbeResult) {
        let name = self.name();
        let shared = self.shared.clone();
        let Some(c) = self.ctr_mut(r.which) else {
            return;
        };
        if c.epoch != r.epoch || !matches!(c.state, CState::Running { .. }) {
            return;
        }
        c.probe_in_flight = false;
        let Some(p) = c.probe.clone() else { return };
        c.probe_next = Some(Instant::now() + p.period);
        let was = c.ready;
        if r.ok {
            c.probe_ok_run += 1;
            c.probe_fail_run = 0;
            if c.probe_ok_run >= p.success {
                c.ready = true;
            }
        } else {
            c.probe_fail_run += 1;
            c.probe_ok_run = 0;
            if c.probe_fail_run >= p.failure {
                c.ready = false;
            }
        }
        if was != c.ready {
            let why = match &p.kind {
                ProbeKind::Broken(e) => format!(" ({e})"),
                _ => String::new(),
            };
            shared.event(format!(
                "pod {name} container {}: readiness {}{why}",
                c.spec.name,
                if c.ready {
                    "succeeded: ready"
                } else {
                    "failed: not ready"
                }
            ));
        }
    }

    // ---- exits and termination ----

    fn on_exit(&mut self, e: Exit) {
        let name = self.name();
        let shared = self.shared.clone();
        let restart_policy = self
            .spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned());
        let terminating = self.terminating;
        let is_init = matches!(e.which, Which::Init(_));
        let Some(c) = self.ctr_mut(e.which) else {
            return;
        };
        if c.epoch != e.epoch {
            return;
        }
        if let Some(pid) = c.pid.take() {
            lock(&shared.procs).remove(&pid);
            shared.save_pids();
        }
        c.ctl = None;
        c.ready = false;
        c.started = false;
        c.probe_next = None;
        c.probe_in_flight = false;
        let started_at = match &c.state {
            CState::Running { started_at } => started_at.clone(),
            _ => String::new(),
        };
        let term = Term {
            exit_code: e.code,
            reason: if e.code == 0 { "Completed" } else { "Error" }.to_owned(),
            started_at,
            finished_at: now_ts(),
            container_id: c.container_id.clone().unwrap_or_default(),
        };
        let restart = !terminating
            && if c.sidecar {
                true
            } else if is_init {
                e.code != 0 && restart_policy != "Never"
            } else {
                match restart_policy.as_str() {
                    "Never" => false,
                    "OnFailure" => e.code != 0,
                    _ => true,
                }
            };
        shared.event(format!(
            "pod {name} container {}: exited with {}{}",
            c.spec.name,
            e.code,
            if restart { ", restarting" } else { "" }
        ));
        if restart {
            let ran = c.started_instant.map(|t| t.elapsed()).unwrap_or_default();
            if ran >= Duration::from_secs(10) {
                c.backoff = shared.cfg.restart_backoff;
            }
            c.restart_at = Some(Instant::now() + c.backoff);
            c.backoff = (c.backoff * 2).min(shared.cfg.restart_backoff_max);
            c.last_term = Some(term);
            c.state = CState::Waiting {
                reason: "CrashLoopBackOff".to_owned(),
                message: format!("back-off restarting container {}", c.spec.name),
            };
        } else {
            c.state = CState::Terminated(term);
        }
    }

    /// SIGTERM, the grace period (capped), SIGKILL; then the API delete with grace 0 when `delete`.
    async fn terminate(&mut self, delete: bool, exits: &mut mpsc::UnboundedReceiver<Exit>) {
        self.terminating = true;
        let grace_secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.spec.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = Duration::from_secs(u64::try_from(grace_secs.max(0)).unwrap_or(0))
            .min(self.shared.cfg.max_grace);
        let live = |run: &PodRun| {
            run.all_which()
                .into_iter()
                .filter(|w| run.ctr(*w).is_some_and(|c| c.pid.is_some()))
                .count()
        };
        if live(self) > 0 {
            self.shared.event(format!(
                "pod {}: stopping {} processes (grace {grace:?})",
                self.name(),
                live(self)
            ));
        }
        for w in self.all_which() {
            if let Some(ctl) = self.ctr(w).and_then(|c| c.ctl.as_ref()) {
                let _ = ctl.send(Sig::Term);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while live(self) > 0 {
            match tokio::time::timeout_at(deadline, exits.recv()).await {
                Ok(Some(e)) => self.on_exit(e),
                _ => break,
            }
        }
        if live(self) > 0 {
            for w in self.all_which() {
                if let Some(ctl) = self.ctr(w).and_then(|c| c.ctl.as_ref()) {
                    let _ = ctl.send(Sig::Kill);
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while live(self) > 0 {
                match tokio::time::timeout_at(deadline, exits.recv()).await {
                    Ok(Some(e)) => self.on_exit(e),
                    _ => break,
                }
            }
        }
        if delete {
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.0);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&self.key.1, &dp).await {
                Ok(_) => self
                    .shared
                    .event(format!("pod {}: deleted (grace 0)", self.name())),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => self
                    .shared
                    .event(format!("pod {}: delete failed: {e}", self.name())),
            }
        } else {
            self.shared
                .event(format!("pod {}: gone from the API; stopped", self.name()));
        }
        if std::env::var_os("KEEP_K8S_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let mut pods = lock(&self.shared.pods);
        if pods.get(&self.key).is_some_and(|e| e.uid == self.uid) {
            pods.remove(&self.key);
            lock(&self.shared.hosts_files).remove(&self.key);
        }
    }

    // ---- status ----

    fn container_status(&self, c: &Ctr) -> Value {
        let state = match &c.state {
            CState::Waiting { reason, message } if message.is_empty() => {
                json!({"waiting": {"reason": reason}})
            }
            CState::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            CState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            CState::Terminated(t) => json!({"terminated": t.json()}),
        };
        let mut v = json!({
            "name": c.spec.name,
            "image": c.spec.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": c.ready,
            "started": c.started,
            "restartCount": c.restart_count,
            "state": state,
            "lastState": c.last_term.as_ref().map(|t| json!({"terminated": t.json()})).unwrap_or_else(|| json!({})),
        });
        if let Some(id) = &c.container_id {
            v["containerID"] = json!(id);
        }
        v
    }

    fn status(&mut self) -> Value {
        let setup_msg = self.setup_error.clone().or_else(|| self.ip_error.clone());
        if let Some(msg) = &setup_msg {
            for c in self.inits.iter_mut().chain(self.mains.iter_mut()) {
                if let CState::Waiting { reason, message } = &mut c.state
                    && (reason == "ContainerCreating" || reason == "PodInitializing")
                {
                    *message = msg.clone();
                }
            }
        }
        let inits_done = self.init_done >= self.inits.len();
        let all_started = self
            .mains
            .iter()
            .all(|c| c.starts > 0 || c.container_id.is_some());
        let restart_never = self.spec.restart_policy.as_deref() == Some("Never");
        let init_failed = self
            .inits
            .iter()
            .any(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code != 0));
        let all_terminated = self
            .mains
            .iter()
            .all(|c| matches!(c.state, CState::Terminated(_)));
        let phase = if init_failed && restart_never {
            "Failed"
        } else if !inits_done || !all_started {
            "Pending"
        } else if all_terminated && !self.mains.is_empty() {
            if self
                .mains
                .iter()
                .all(|c| matches!(&c.state, CState::Terminated(t) if t.exit_code == 0))
            {
                "Succeeded"
            } else {
                "Failed"
            }
        } else {
            "Running"
        };
        let ready_all = inits_done && !self.mains.is_empty() && self.mains.iter().all(|c| c.ready);
        let unready: Vec<String> = self
            .mains
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.spec.name.clone())
            .collect();
        self.set_condition("Initialized", inits_done);
        self.set_condition("ContainersReady", ready_all);
        self.set_condition("Ready", ready_all);
        self.set_condition("PodReadyToStartContainers", self.ip.is_some());
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|(ty, (st, ts))| {
                let mut c = json!({
                    "type": ty, "status": if *st { "True" } else { "False" },
                    "lastTransitionTime": ts,
                });
                if !*st && (*ty == "Ready" || *ty == "ContainersReady") {
                    c["reason"] = json!("ContainersNotReady");
                    c["message"] = json!(format!(
                        "containers with unready status: [{}]",
                        unready.join(" ")
                    ));
                }
                if !*st && *ty == "Initialized" {
                    c["reason"] = json!("ContainersNotInitialized");
                }
                c
            })
            .collect();
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": self.mains.iter().map(|c| self.container_status(c)).collect::<Vec<_>>(),
        });
        if let Some(ip) = self.ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        if !self.inits.is_empty() {
            status["initContainerStatuses"] = json!(
                self.inits
                    .iter()
                    .map(|c| self.container_status(c))
                    .collect::<Vec<_>>()
            );
        }
        json!({ "status": status })
    }

    async fn patch_status(&mut self) {
        if self.terminating {
            return;
        }
        let status = self.status();
        if self.last_patch.as_ref() == Some(&status)
            && self.patch_retry.is_none_or(|t| t > Instant::now())
        {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.0);
        match api
            .patch_status(&self.key.1, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => {
                self.last_patch = Some(status);
                self.patch_retry = None;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.last_patch = Some(status);
                self.patch_retry = None;
            }
            Err(e) => {
                self.shared
                    .event(format!("pod {}: status patch failed: {e}", self.name()));
                self.last_patch = None;
                self.patch_retry = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

struct RunUser {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    no_new_privs: bool,
}

/// Owns a process: forwards signals, reports its exit (code, or 128 + signal).
async fn supervise(
    mut child: tokio::process::Child,
    pid: u32,
    mut ctl: mpsc::UnboundedReceiver<Sig>,
    exits: mpsc::UnboundedSender<Exit>,
    which: Which,
    epoch: u64,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            st = child.wait() => {
                let code = match st {
                    Ok(s) => s.code().unwrap_or_else(|| {
                        use std::os::unix::process::ExitStatusExt as _;
                        128 + s.signal().unwrap_or(0)
                    }),
                    Err(_) => -1,
                };
                let _ = exits.send(Exit { which, epoch, code });
                return;
            }
            Some(sig) = ctl.recv() => match sig {
                Sig::Term => signal(pid, rustix::process::Signal::TERM, false),
                Sig::Kill => signal(pid, rustix::process::Signal::KILL, true),
            },
            _ = stop.cancelled() => {
                // The Kubelet's drop signals the processes; reap this one.
                let _ = tokio::time::timeout(Duration::from_secs(6), child.wait()).await;
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        }
    }
}

async fn run_probe(shared: &Shared, p: &ProbeSpec) -> bool {
    match &p.kind {
        ProbeKind::Http {
            url,
            https,
            headers,
        } => {
            let client = if *https { &shared.https } else { &shared.http };
            let mut req = client
                .get(url)
                .timeout(p.timeout)
                .header("User-Agent", "kube-probe/1.36");
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match req.send().await {
                Ok(r) => (200..400).contains(&r.status().as_u16()),
                Err(_) => false,
            }
        }
        ProbeKind::Tcp(addr) => matches!(
            tokio::time::timeout(p.timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        ),
        ProbeKind::Broken(_) => false,
    }
}

/// The pod's IP: its `test-pod-ip` annotation (must be loopback), 127.0.0.1 with hostNetwork, else
/// `127.x.y.z` from the `cksum` of `ns/name` as `ready-pods.sh` computes it, moved on past addresses
/// this kubelet already gave to other pods.
fn choose_ip(shared: &Shared, key: &PodKey, pod: &Pod, spec: &PodSpec) -> Result<Ipv4Addr> {
    let mut pods = lock(&shared.pods);
    let ip = if spec.host_network == Some(true) {
        Ipv4Addr::LOCALHOST
    } else if let Some(a) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("test-pod-ip"))
    {
        let ip: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| anyhow!("annotation test-pod-ip {a:?} is not an IPv4 address"))?;
        if !ip.is_loopback() {
            bail!("annotation test-pod-ip {ip} is outside 127.0.0.0/8: refusing to use it");
        }
        ip
    } else {
        let used: HashSet<Ipv4Addr> = pods
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, e)| e.ip)
            .collect();
        let mut ip = loopback_ip_for(&key.0, &key.1);
        for _ in 0..1000 {
            if !used.contains(&ip) {
                break;
            }
            let [_, b, c, d] = ip.octets();
            ip = if d < 250 {
                Ipv4Addr::new(127, b, c, d + 1)
            } else if c < 249 {
                Ipv4Addr::new(127, b, c + 1, 1)
            } else {
                Ipv4Addr::new(127, b % 250 + 1, 0, 1)
            };
        }
        ip
    };
    if let Some(e) = pods.get_mut(key) {
        e.ip = Some(ip);
    }
    Ok(ip)
}

/// `ready-pods.sh`'s address for a pod: `cksum` of `ns/name` → `127.(c/62500%250+1).(c/250%250).(c%250+1)`.
pub fn loopback_ip_for(ns: &str, name: &str) -> Ipv4Addr {
    let c = posix_cksum(format!("{ns}/{name}").as_bytes());
    let b = u8::try_from(c / 62500 % 250 + 1).unwrap_or(1);
    let cc = u8::try_from(c / 250 % 250).unwrap_or(0);
    let d = u8::try_from(c % 250 + 1).unwrap_or(1);
    Ipv4Addr::new(127, b, cc, d)
}

/// The POSIX `cksum` CRC (polynomial 0x04C11DB7, length appended, complemented).
pub fn posix_cksum(data: &[u8]) -> u32 {
    fn update(mut crc: u32, byte: u8) -> u32 {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
        crc
    }
    let mut crc = data.iter().fold(0u32, |c, b| update(c, *b));
    let mut len = data.len();
    while len > 0 {
        crc = update(crc, (len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

/// When the ServiceAccount admission plugin did not add the `kube-api-access-*` volume (it is on in
/// this control plane, so normally a no-op), add the standard one, as long as automounting is not off
/// on the pod or its ServiceAccount.
async fn emulate_service_account_mount(shared: &Shared, ns: &str, spec: &mut PodSpec) {
    let has_token_volume = spec.volumes.iter().flatten().any(|v| {
        v.projected.as_ref().is_some_and(|p| {
            p.sources
                .iter()
                .flatten()
                .any(|s| s.service_account_token.is_some())
        })
    });
    let mounted = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_DIR)
        });
    if has_token_volume || mounted || spec.automount_service_account_token == Some(false) {
        return;
    }
    let sa_name = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let api: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), ns);
    if let Ok(Some(sa)) = api.get_opt(&sa_name).await
        && sa.automount_service_account_token == Some(false)
    {
        return;
    }
    let name = "kube-api-access-kubelet-play".to_owned();
    shared.event(format!(
        "pod namespace {ns}: no service account volume from admission; adding {name}"
    ));
    let volume = Volume {
        name: name.clone(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o644),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: None,
                        expiration_seconds: Some(3607),
                        path: "token".to_owned(),
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                                api_version: Some("v1".to_owned()),
                                field_path: "metadata.namespace".to_owned(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    };
    spec.volumes.get_or_insert_with(Vec::new).push(volume);
    let mount = VolumeMount {
        name,
        mount_path: SERVICE_ACCOUNT_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(mount.clone());
    }
}

/// A downward API field of the pod.
fn field_value(pod: &Pod, path: &str, ip: Option<Ipv4Addr>) -> Result<String> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?;
        let inner = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(inner.to_owned())
    };
    if let Some(k) = keyed("metadata.labels") {
        return Ok(md
            .labels
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    if let Some(k) = keyed("metadata.annotations") {
        return Ok(md
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    let all = |m: Option<&BTreeMap<String, String>>| {
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(md.labels.as_ref()),
        "metadata.annotations" => all(md.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" | "status.podIPs" => ip.map(|i| i.to_string()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".to_owned(),
        _ => bail!("unsupported fieldRef {path:?}"),
    })
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` → its value when `lookup` knows it (else left as is),
/// `$$` → `$`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(end) => {
                    let name = &r[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes quantity as a number (`500m` → 0.5, `64Mi` → 67108864).
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    SUFFIXES.iter().find_map(|(suffix, mult)| {
        s.strip_suffix(suffix)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n * mult)
    })
}

// ---- files ------------------------------------------------------------------------------------------

struct Tools {
    unshare: PathBuf,
    sh: PathBuf,
    mount: PathBuf,
    setpriv: PathBuf,
    shim: Option<PathBuf>,
}

impl Tools {
    fn find() -> Result<Self> {
        Ok(Self {
            unshare: find_tool("unshare", "util-linux")?,
            sh: find_tool("sh", "dash")?,
            mount: find_tool("mount", "mount")?,
            setpriv: find_tool("setpriv", "util-linux")?,
            shim: None,
        })
    }
}

fn find_tool(name: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("{name} not found: install it with `apt-get install -y {package}`"))
}

const BIND_SHIM: &str = r#"
/* kubelet-play: bind() to 0.0.0.0 or :: binds the pod IP ($KUBELET_PLAY_POD_IP) instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real;
    if (!real) real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    const char *ip = getenv("KUBELET_PLAY_POD_IP");
    struct in_addr pod;
    if (ip && addr && inet_pton(AF_INET, ip, &pod) == 1) {
        if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
            struct sockaddr_in a;
            memcpy(&a, addr, sizeof a);
            if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
                a.sin_addr = pod;
                return real(fd, (const struct sockaddr *)&a, sizeof a);
            }
        } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
            struct sockaddr_in6 a;
            memcpy(&a, addr, sizeof a);
            if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) {
                int off = 0;
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
                memset(&a.sin6_addr, 0, sizeof a.sin6_addr);
                a.sin6_addr.s6_addr[10] = 0xff;
                a.sin6_addr.s6_addr[11] = 0xff;
                memcpy(&a.sin6_addr.s6_addr[12], &pod, 4);
                return real(fd, (const struct sockaddr *)&a, sizeof a);
            }
        }
    }
    return real(fd, addr, len);
}
"#;

/// Builds the bind shim into `dir` with `cc`.
fn build_shim(dir: &Path) -> Result<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let src = dir.join("kubelet-play-bind.c");
    let out = dir.join("kubelet-play-bind.so");
    std::fs::write(&src, BIND_SHIM)?;
    let res = std::process::Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .output()
        .with_context(|| {
            format!(
                "running {cc} to build the bind shim (install gcc, or set \
                 KubeletConfig.pod_network_binds = false)"
            )
        })?;
    if !res.status.success() {
        bail!(
            "building the bind shim failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    chmod(&out, 0o755)?;
    Ok(out)
}

fn chmod(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}

/// Creates `p` (and missing parents) with `mode`, whatever the umask.
fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
        .with_context(|| format!("mkdir {}", p.display()))?;
    chmod(p, mode)
}

/// Creates `root/rel` folder by folder with `mode`.
fn mkdirs(root: &Path, rel: &Path, mode: u32) -> Result<()> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if !p.exists() {
            mkdir(&p, mode)?;
        }
    }
    Ok(())
}

/// A relative path that stays inside its folder.
fn safe_rel(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if p.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("path {p:?} must be relative, without '..'");
    }
    Ok(path.to_path_buf())
}

fn normalize_abs(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        bail!("mountPath {p:?} must be absolute, without '..'");
    }
    Ok(path.components().collect())
}

fn write_file(root: &Path, rel: &str, data: &[u8], mode: i32, gid: Option<u32>) -> Result<()> {
    let rel = safe_rel(rel)?;
    if let Some(parent) = rel.parent() {
        mkdirs(root, parent, 0o755)?;
    }
    let path = root.join(&rel);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    chmod(&path, u32::try_from(mode).unwrap_or(0o644) & 0o777)?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(&path, None, Some(g))
            .with_context(|| format!("chown :{g} {}", path.display()))?;
    }
    Ok(())
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    gid: Option<u32>,
) -> Result<()> {
    match items {
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => write_file(dir, &item.path, v, item.mode.unwrap_or(mode), gid)?,
                    None if optional == Some(true) => {}
                    None => bail!("key {:?} not found", item.key),
                }
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, mode, gid)?;
            }
        }
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}

/// Single-quotes `s` for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn now_ts() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

// ---- mount points on this machine -------------------------------------------------------------------

static KUBELET_IDS: AtomicU64 = AtomicU64::new(1);

/// Mount points created on this machine (a bind mount needs its target to exist, and the mount
/// namespace shares the host's file system). A ledger under `/run/surge-kubelet-play` records who
/// uses each one, so a kubelet (of this or another test process) removes a created mount point only
/// when no live kubelet uses it any more.
struct MountPoints {
    root: PathBuf,
    owner: String,
    mine: Mutex<BTreeSet<PathBuf>>,
}

impl MountPoints {
    fn new() -> Self {
        let base = if Path::new("/run").is_dir() {
            PathBuf::from("/run")
        } else {
            std::env::temp_dir()
        };
        Self {
            root: base.join("surge-kubelet-play").join("mountpoints"),
            owner: format!(
                "owner-{}-{}",
                std::process::id(),
                KUBELET_IDS.fetch_add(1, Ordering::Relaxed)
            ),
            mine: Mutex::new(BTreeSet::new()),
        }
    }

    fn entry(&self, p: &Path) -> PathBuf {
        // FNV-1a of the path: a short, stable folder name.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in p.as_os_str().as_encoded_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.root.join(format!("{h:016x}"))
    }

    /// Makes sure `path` exists (a folder when `dir`, else a file), creating and recording what is
    /// missing.
    fn ensure(&self, path: &Path, dir: bool) -> Result<()> {
        let mut mine = lock(&self.mine);
        let mut cur = PathBuf::new();
        let n = path.components().count();
        for (i, comp) in path.components().enumerate() {
            cur.push(comp);
            if i == 0 {
                continue;
            }
            let entry = self.entry(&cur);
            if cur.exists() && !entry.exists() {
                continue;
            }
            // Interest first, then creation: a kubelet releasing concurrently sees us.
            std::fs::create_dir_all(&entry)?;
            std::fs::write(entry.join(&self.owner), b"")?;
            std::fs::write(entry.join("path"), cur.as_os_str().as_encoded_bytes())?;
            mine.insert(cur.clone());
            if !cur.exists() {
                if i + 1 == n && !dir {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&cur)
                        .with_context(|| format!("creating mount point {}", cur.display()))?;
                    chmod(&cur, 0o644)?;
                } else {
                    match std::fs::create_dir(&cur) {
                        Ok(()) => chmod(&cur, 0o755)?,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("creating mount point {}", cur.display())
                            });
                        }
                    }
                }
                std::fs::write(entry.join("created"), b"")?;
            }
        }
        Ok(())
    }

    /// Drops this kubelet's interest; removes created mount points nobody else uses (deepest first).
    fn release_all(&self) {
        let mut mine: Vec<PathBuf> = std::mem::take(&mut *lock(&self.mine)).into_iter().collect();
        mine.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in mine {
            let entry = self.entry(&p);
            let _ = std::fs::remove_file(entry.join(&self.owner));
            if !has_live_owner(&entry) {
                remove_created(&entry, &p);
            }
        }
    }

    /// Removes what kubelets that died without stopping (a killed test process) left behind.
    fn sweep_stale(&self) {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut stale: Vec<(PathBuf, PathBuf)> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|entry| !has_live_owner(entry))
            .filter_map(|entry| {
                let bytes = std::fs::read(entry.join("path")).ok()?;
                let path = PathBuf::from(std::ffi::OsString::from(String::from_utf8(bytes).ok()?));
                Some((entry, path))
            })
            .collect();
        stale.sort_by_key(|(_, p)| std::cmp::Reverse(p.components().count()));
        for (entry, p) in stale {
            remove_created(&entry, &p);
        }
    }
}

/// Whether a live process holds an interest in a mount point record.
fn has_live_owner(entry: &Path) -> bool {
    std::fs::read_dir(entry)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter_map(|n| {
                    n.strip_prefix("owner-")
                        .and_then(|r| r.split('-').next())
                        .and_then(|pid| pid.parse::<u32>().ok())
                })
                .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        })
        .unwrap_or(false)
}

/// Removes a mount point a kubelet created (an empty folder or an empty file) and its record; keeps
/// both when someone put something in it.
fn remove_created(entry: &Path, p: &Path) {
    if entry.join("created").exists() {
        let removed = if p.is_dir() {
            std::fs::remove_dir(p).is_ok()
        } else {
            std::fs::metadata(p).is_ok_and(|m| m.len() == 0) && std::fs::remove_file(p).is_ok()
        };
        if !removed && p.exists() {
            return;
        }
    }
    let _ = std::fs::remove_dir_all(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cksum_matches_posix() {
        // `printf '' | cksum`, `printf 'a' | cksum`, `printf 'default/web-0' | cksum`
        assert_eq!(posix_cksum(b""), 4294967295);
        assert_eq!(posix_cksum(b"a"), 1220704766);
        assert_eq!(posix_cksum(b"default/web-0"), 3872951550);
        let c = 3872951550u32;
        assert_eq!(
            loopback_ip_for("default", "web-0"),
            Ipv4Addr::new(
                127,
                (c / 62500 % 250 + 1) as u8,
                (c / 250 % 250) as u8,
                (c % 250 + 1) as u8
            )
        );
    }

    #[test]
    fn expansion_like_kubernetes() {
        let env = |n: &str| match n {
            "A" => Some("x".to_owned()),
            "B" => Some("$(A)".to_owned()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", env), "x-$(A)");
        assert_eq!(expand("$$(A)", env), "$(A)");
        assert_eq!(expand("$(C)", env), "$(C)");
        assert_eq!(expand("a$b$", env), "a$b$");
        assert_eq!(expand("$(A", env), "$(A");
        assert_eq!(expand("$$$(A)", env), "$x");
    }

    #[test]
    fn image_repository_names() {
        assert_eq!(repository_name("surge:latest"), "surge");
        assert_eq!(
            repository_name("registry.example.com/surge/surge:0.1.0"),
            "surge"
        );
        assert_eq!(repository_name("localhost:5000/surge"), "surge");
        assert_eq!(repository_name("a/b@sha256:abc"), "b");
        assert_eq!(repository_name("nginx"), "nginx");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("64Mi"), Some(67108864.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
    }
}
