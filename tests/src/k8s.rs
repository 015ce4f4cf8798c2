//! One real Kubernetes control plane per test binary (`../shared/k8s/up.sh`: etcd, kube-apiserver with the
//! aggregation layer, kube-controller-manager with a 1 s HPA sync, kube-scheduler), plus `ready-pods.sh`
//! playing the kubelet.
//!
//! Started on first use with its own ports (`APISERVER_PORT=26443`, `ETCD_PORT=33790`); stopped by a
//! watchdog shell that runs `down.sh` once the test process exits (a static is never dropped). A missing
//! `etcd` is a failure with the install hint, never a skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The API server port of the test control plane.
pub const APISERVER_PORT: u16 = 26443;
/// The etcd client port (the peer port is the next one).
pub const ETCD_PORT: u16 = 33790;

/// A running control plane.
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

/// The shared scripts folder (`shared/k8s` beside the workspace).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/k8s")
}

/// The control plane, started on first call (about 10-20 s).
pub fn control_plane() -> Result<&'static ControlPlane> {
    PLANE
        .get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("control plane: {e}"))
}

fn start() -> Result<ControlPlane> {
    crate::peer_binary("etcd", "etcd-server")?;
    let scripts = scripts_dir()
        .canonicalize()
        .context("shared/k8s not found beside the workspace")?;
    // A previous test binary's plane may still be stopping (its watchdog runs down.sh after it exits).
    wait_ports_free(
        &[APISERVER_PORT, ETCD_PORT, ETCD_PORT + 1],
        Duration::from_secs(60),
    )?;
    let dir = std::env::temp_dir().join(format!("surge-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = Command::new(scripts.join("up.sh"))
        .arg(&dir)
        .env("APISERVER_PORT", APISERVER_PORT.to_string())
        .env("ETCD_PORT", ETCD_PORT.to_string())
        // 1 s keeps the HPA tests short; `SURGE_TEST_HPA_SYNC=15s` measures the default sync period.
        .env(
            "HPA_SYNC",
            std::env::var("SURGE_TEST_HPA_SYNC").unwrap_or_else(|_| "1s".to_owned()),
        )
        .stdin(Stdio::null())
        .output()
        .context("running up.sh")?;
    // The watchdog first, so a failed start is cleaned up too.
    watchdog(&scripts, &dir)?;
    if !out.status.success() {
        bail!(
            "up.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let env = read_env(&dir.join("env"))?;
    let plane = ControlPlane { dir, scripts, env };
    // ready-pods.sh plays the kubelet; down.sh stops it through its pid file.
    let child = Command::new("setsid")
        .arg(plane.scripts.join("ready-pods.sh"))
        .arg("0")
        .envs(&plane.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ready-pods.sh")?;
    std::fs::write(plane.dir.join("ready-pods.pid"), child.id().to_string())?;
    Ok(plane)
}

fn wait_ports_free(ports: &[u16], timeout: Duration) -> Result<()> {
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

/// A detached shell that waits for this process to exit, then runs `down.sh DIR`.
fn watchdog(scripts: &Path, dir: &Path) -> Result<()> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{down}' '{dir}' >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        down = scripts.join("down.sh").display(),
        dir = dir.display(),
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

/// Parses the `export NAME="value"` lines of up.sh's env file (`$PATH` expanded from this process).
fn read_env(path: &Path) -> Result<HashMap<String, String>> {
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

impl ControlPlane {
    /// The PKI folder (`$K8S_PKI`).
    pub fn pki(&self) -> PathBuf {
        PathBuf::from(&self.env["K8S_PKI"])
    }

    /// Runs a command with the control plane's environment; returns stdout, or fails with stderr.
    pub fn run(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String> {
        let program = program.as_ref();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {program:?}"))?;
        if let Some(input) = stdin {
            use std::io::Write as _;
            if let Some(mut s) = child.stdin.take() {
                s.write_all(input.as_bytes())?;
            }
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{program:?} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl ARGS` (v1.36 from the bundle, admin kubeconfig).
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.run("kubectl", args, None)
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        self.run("kubectl", &["apply", "-f", "-"], Some(yaml))
    }

    /// Runs `shared/k8s/NAME ARGS` (fake-node.sh, expose-local.sh, ...).
    pub fn script(&self, name: &str, args: &[&str]) -> Result<String> {
        self.run(self.scripts.join(name), args, None)
    }
}
