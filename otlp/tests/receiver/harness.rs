//! The Python OTLP receiver (`otlp_receiver.py`, the official `opentelemetry-proto` package + `grpcio`)
//! as a child process: started per test on free ports, its decoded points read back as JSON.
//!
//! The venv lives at `$HOME/.cache/surge-otlp-venv`; when it is missing or lacks the packages, the first
//! test creates it (`python3 -m venv` + `pip install` of [`PIP_PACKAGES`]), so CI needs only PyPI.
//! Shared with `tests/tests/otlp_agent.rs` (included by path).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the receiver needs from PyPI (pinned: the versions this test was written against).
pub const PIP_PACKAGES: &[&str] = &["opentelemetry-proto==1.45.2", "grpcio==1.85.4"];

/// The receiver script, beside this file.
pub fn script() -> PathBuf {
    Path::new(file!())
        .parent()
        .map(|d| d.join("otlp_receiver.py"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("otlp/tests/receiver/otlp_receiver.py")
        })
}

/// The venv's python, created (once per test process) when missing.
pub fn python() -> PathBuf {
    static READY: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = &*ready {
        return p.clone();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = PathBuf::from(home).join(".cache/surge-otlp-venv");
    let py = venv.join("bin/python");
    let works = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works(&py) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv {venv:?} failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(PIP_PACKAGES)
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install {PIP_PACKAGES:?} failed");
        assert!(
            works(&py),
            "the venv at {venv:?} cannot import grpc and opentelemetry.proto"
        );
    }
    *ready = Some(py.clone());
    py
}

/// A running receiver; killed when dropped.
pub struct Receiver {
    child: Child,
    _stdin: ChildStdin,
    pub http_port: u16,
    pub grpc_port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// Options of a receiver.
#[derive(Default)]
pub struct ReceiverOptions {
    /// Serve TLS on both ports with this PEM certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Answer the first N requests of each transport with 503 / UNAVAILABLE.
    pub fail_first: u32,
    /// Refuse compressed gRPC requests (UNIMPLEMENTED): proves a client compresses.
    pub grpc_identity_only: bool,
}

impl Receiver {
    pub fn start(opts: ReceiverOptions) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("points.jsonl");
        let mut cmd = Command::new(python());
        cmd.arg(script()).arg("--out").arg(&out);
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        cmd.args(["--fail-first", &opts.fail_first.to_string()]);
        if opts.grpc_identity_only {
            cmd.arg("--grpc-identity-only");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the receiver starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receiver prints READY");
        let port = |key: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in the receiver's line {line:?}"))
        };
        let (http_port, grpc_port) = (port("http="), port("grpc="));
        Receiver {
            child,
            _stdin: stdin,
            http_port,
            grpc_port,
            out,
            _dir: dir,
        }
    }

    /// Every line the receiver wrote so far (points and request records).
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("the receiver writes JSON lines"))
            .collect()
    }

    /// The data points received so far.
    pub fn points(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v.get("metric").is_some())
            .collect()
    }

    /// The request records received so far (`{request, points, headers}`).
    pub fn requests(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v.get("request").is_some())
            .collect()
    }

    /// Waits (up to `within`) until `pred` holds for the points received.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let until = Instant::now() + within;
        loop {
            let points = self.points();
            if pred(&points) || Instant::now() > until {
                return points;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
