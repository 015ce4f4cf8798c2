//! Real Kubernetes control planes for the tests (`../shared/k8s/up.sh`: etcd, kube-apiserver with the
//! aggregation layer, kube-controller-manager, kube-scheduler), plus `ready-pods.sh` playing the kubelet.
//!
//! [`start_plane`] starts one on the given ports in a fresh folder; a watchdog shell runs `down.sh` once
//! the test process exits (a static is never dropped), and dropping the [`ControlPlane`] stops it at once.
//! Each test binary uses ports of its own: cargo runs the binaries one after the other, but a previous
//! binary's watchdog may still be stopping its plane. A missing `etcd` is a failure with the install hint,
//! never a skip. `KEEP_K8S_LOGS=1` keeps the folders (state and logs) after the planes stop.
//!
//! [`control_plane`] is the shared one of `k8s_metrics_api` (`APISERVER_PORT=26443`, `ETCD_PORT=33790`,
//! 1 s HPA sync, `ready-pods.sh` running), started on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The API server port of the shared test control plane.
pub const APISERVER_PORT: u16 = 26443;
/// The etcd client port of the shared test control plane (the peer port is the next one).
pub const ETCD_PORT: u16 = 33790;

/// A running control plane, stopped (`down.sh`) when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    /// State, logs and pid files.
    pub dir: PathBuf,
    /// `../shared/k8s`: the scripts.
    pub scripts: PathBuf,
    /// `KUBECONFIG`, `PATH` (kubectl v1.36 first), `K8S_API`, `K8S_PKI`.
    pub env: HashMap<String, String>,
}

static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The shared scripts folder: `$SURGE_K8S_SCRIPTS`, or `shared/k8s` beside the workspace.
pub fn scripts_dir() -> PathBuf {
    std::env::var_os("SURGE_K8S_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/k8s"))
}

/// The shared control plane, started on first call (about 10-20 s) with `ready-pods.sh` running.
pub fn control_plane() -> Result<&'static ControlPlane> {
    PLANE
        .get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("control plane: {e}"))
}

fn start() -> Result<ControlPlane> {
    // 1 s keeps the HPA tests short; `SURGE_TEST_HPA_SYNC=15s` measures the default sync period.
    let hpa_sync = std::env::var("SURGE_TEST_HPA_SYNC").unwrap_or_else(|_| "1s".to_owned());
    let plane = start_plane(APISERVER_PORT, ETCD_PORT, Some(&hpa_sync))?;
    plane.ready_pods()?;
    Ok(plane)
}

/// Starts a control plane with `up.sh` in a fresh folder: the API server on `apiserver_port`, etcd on
/// `etcd_port` (and the next port), the HPA controller's sync period `hpa_sync` (`up.sh`'s 15 s when
/// `None`). Waits up to 60 s for the ports to be free first (a previous plane may still be stopping),
/// and leaves a watchdog that stops the plane once this process exits.
pub fn start_plane(
    apiserver_port: u16,
    etcd_port: u16,
    hpa_sync: Option<&str>,
) -> Result<ControlPlane> {
    crate::peer_binary("etcd", "etcd-server")?;
    let scripts = scripts_dir()
        .canonicalize()
        .context("shared/k8s not found beside the workspace")?;
    wait_ports_free(
        &[apiserver_port, etcd_port, etcd_port + 1],
        Duration::from_secs(60),
    )?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("surge-k8s-{apiserver_port}-"))
        .tempdir()?
        .keep();
    // The watchdog first, so a failed start is cleaned up too.
    watchdog(&scripts, &dir)?;
    let mut up = Command::new(scripts.join("up.sh"));
    up.arg(&dir)
        .env("APISERVER_PORT", apiserver_port.to_string())
        .env("ETCD_PORT", etcd_port.to_string())
        .stdin(Stdio::null());
    if let Some(sync) = hpa_sync {
        up.env("HPA_SYNC", sync);
    }
    let out = up.output().context("running up.sh")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("kube-apiserver.log")).unwrap_or_default();
        let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
        // Stop what did start now: the next plane on these ports should not wait for the watchdog.
        let _ = down(&scripts, &dir);
        bail!(
            "up.sh failed: {}{}\nkube-apiserver.log (last lines, newest first):\n{tail}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let env = read_env(&dir.join("env"))?;
    Ok(ControlPlane { dir, scripts, env })
}

/// Waits until every port in `ports` can be bound on 127.0.0.1, for at most `timeout`.
pub fn wait_ports_free(ports: &[u16], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let busy: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("ports {busy:?} are still in use (another control plane on the test ports?)");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A detached shell that waits for this process to exit, then runs `down.sh DIR` and removes DIR
/// (kept with `KEEP_K8S_LOGS`).
fn watchdog(scripts: &Path, dir: &Path) -> Result<()> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{down}' '{dir}' >/dev/null 2>&1; {rm}",
        pid = std::process::id(),
        down = scripts.join("down.sh").display(),
        dir = dir.display(),
        rm = if keep_logs() {
            String::new()
        } else {
            format!("rm -rf '{}'", dir.display())
        },
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the control plane watchdog")?;
    Ok(())
}

/// `down.sh DIR`: stops what `up.sh DIR` started (and `ready-pods.sh`, through its pid file).
fn down(scripts: &Path, dir: &Path) -> std::io::Result<std::process::ExitStatus> {
    Command::new(scripts.join("down.sh"))
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

fn keep_logs() -> bool {
    std::env::var_os("KEEP_K8S_LOGS").is_some()
}

/// Parses the `export NAME="value"` lines of up.sh's env file (`$PATH` expanded from this process).
pub fn read_env(path: &Path) -> Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut env = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        let v = v
            .trim_matches('"')
            .replace("$PATH", &std::env::var("PATH").unwrap_or_default());
        env.insert(k.to_owned(), v);
    }
    for k in ["KUBECONFIG", "PATH", "K8S_API", "K8S_PKI"] {
        if !env.contains_key(k) {
            bail!("{} does not set {k}", path.display());
        }
    }
    Ok(env)
}

impl Drop for ControlPlane {
    /// Stops the plane (`down.sh`) and removes its folder, unless `KEEP_K8S_LOGS` is set.
    fn drop(&mut self) {
        let _ = down(&self.scripts, &self.dir);
        if keep_logs() {
            eprintln!("control plane logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl ControlPlane {
    /// A `kube` client with the admin's certificate (the plane's kubeconfig).
    pub async fn admin_client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.admin_config().await?)?)
    }

    /// A client acting as ServiceAccount `ns/name` (the admin impersonating it, with the groups the
    /// API server gives a ServiceAccount token): what RBAC grants that account, and nothing else.
    pub async fn service_account_client(&self, ns: &str, name: &str) -> Result<kube::Client> {
        let mut config = self.admin_config().await?;
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{name}"));
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ]);
        Ok(kube::Client::try_from(config)?)
    }

    async fn admin_config(&self) -> Result<kube::Config> {
        let kc = kube::config::Kubeconfig::read_from(&self.env["KUBECONFIG"])?;
        let options = kube::config::KubeConfigOptions::default();
        Ok(kube::Config::from_custom_kubeconfig(kc, &options).await?)
    }

    /// The PKI folder (`$K8S_PKI`).
    pub fn pki(&self) -> PathBuf {
        PathBuf::from(&self.env["K8S_PKI"])
    }

    /// Starts `ready-pods.sh 0` (bound pods become Running and Ready; deleted pods go away), logging to
    /// `DIR/ready-pods.log`; `down.sh` stops it through `DIR/ready-pods.pid`.
    pub fn ready_pods(&self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("ready-pods.log"))?;
        let mut child = Command::new("setsid")
            .arg(self.scripts.join("ready-pods.sh"))
            .arg("0")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ready-pods.sh")?;
        std::fs::write(self.dir.join("ready-pods.pid"), child.id().to_string())?;
        // Reaped whenever it ends.
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    /// Runs a command with the control plane's environment, `stdin` piped in when given, whatever its
    /// exit status: (success, stdout, stderr), both trimmed.
    pub fn status(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(bool, String, String)> {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .envs(&self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("starting {program:?}"))?;
        if let Some(input) = stdin {
            use std::io::Write as _;
            if let Some(mut s) = child.stdin.take() {
                s.write_all(input.as_bytes())?;
            }
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }

    /// Runs a command with the control plane's environment; returns stdout (trimmed), or fails with
    /// stderr.
    pub fn try_run(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String> {
        let program = program.as_ref();
        let (ok, out, err) = self.status(program, args, stdin)?;
        if !ok {
            bail!("{program:?} {args:?} failed: {err}");
        }
        Ok(out)
    }

    /// [`ControlPlane::try_run`] that must succeed: panics with stderr otherwise.
    pub fn run(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> String {
        self.try_run(program, args, stdin)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `kubectl ARGS` (v1.36 from the bundle, admin kubeconfig), `stdin` piped in when given.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        self.try_run("kubectl", args, stdin)
    }

    /// [`ControlPlane::try_kubectl`] that must succeed: panics with stderr otherwise.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.run("kubectl", args, stdin)
    }

    /// Runs `shared/k8s/NAME ARGS` (fake-node.sh, expose-local.sh, ...).
    pub fn try_script(&self, name: &str, args: &[&str]) -> Result<String> {
        self.try_run(self.scripts.join(name), args, None)
    }

    /// [`ControlPlane::try_script`] that must succeed: panics with stderr otherwise.
    pub fn script(&self, name: &str, args: &[&str]) -> String {
        self.run(self.scripts.join(name), args, None)
    }
}
