//! Process plumbing shared by the long-running subcommands: logging, config loading, signals.

use std::path::Path;
use std::process::ExitCode;

use surge_config::Config;

/// Installs the `tracing` subscriber: `RUST_LOG` or `info`, to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads and validates `path` before anything binds a port; prints every problem and returns the exit
/// code on failure.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    surge_config::load_file(path).map_err(|errors| {
        for line in errors.to_lines() {
            eprintln!("{line}");
        }
        eprintln!("surge: {} has {} problem(s)", path.display(), errors.len());
        ExitCode::FAILURE
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs a command's async body on a fresh runtime with logging set up: exit 0 on `Ok`, else the error
/// (with its causes) on stderr after `what: ` and exit 1.
pub fn block_on_main(
    what: &str,
    body: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    init_logging();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{what}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
