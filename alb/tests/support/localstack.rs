//! LocalStack for the ALB tests (`alb/tests/localstack.rs` and `tests/tests/alb.rs` include this file):
//! `../shared/aws/localstack-up.sh` (or `$SURGE_LOCALSTACK_UP`) on a free port, stopped on drop.

use std::path::PathBuf;
use std::process::Command;

/// LocalStack on a free port, stopped on drop.
pub struct LocalStack {
    dir: tempfile::TempDir,
    pub url: String,
}

impl LocalStack {
    pub fn start() -> LocalStack {
        let script = std::env::var_os("SURGE_LOCALSTACK_UP").map_or_else(
            || {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../shared/aws/localstack-up.sh"
                ))
            },
            PathBuf::from,
        );
        assert!(
            script.is_file(),
            "{} not found: set SURGE_LOCALSTACK_UP to localstack-up.sh (shared/aws/)",
            script.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .arg(port.to_string())
            // LocalStack keeps CloudWatch's sqlite store under $TMPDIR/localstack without PERSISTENCE:
            // its own TMPDIR, or parallel instances share one database ("disk I/O error").
            .env("TMPDIR", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "localstack-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        LocalStack { dir, url }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("localstack.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
