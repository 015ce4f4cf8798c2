//! `surge`: one binary, one subcommand per job. Argument parsing and wiring only; the work lives in the
//! library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod agent_cmd;
mod aggregator_cmd;
mod aggregator_security;
mod check;
mod explain;
mod nodes_cmd;
mod peers;
mod process;
mod run;
mod scrape;
mod simulate;

use surge_benches::{agent, ingest, latency};

#[derive(Parser)]
#[command(
    name = "surge",
    version,
    about = "Metrics pipeline that makes Kubernetes scale before users feel a spike"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Agent + aggregator (+ engine) in one process; with no file, an embedded demo needing no cluster.
    Run {
        /// Config file; without it the embedded default scrapes the built-in demo workload.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print log lines instead of the live terminal view.
        #[arg(long)]
        no_view: bool,
    },
    /// The per-node agent (DaemonSet): discover, scrape, relabel, ship.
    Agent {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// The aggregator (Deployment): ingest, cache, query APIs.
    Aggregator {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Replay a scenario through the engine offline and print the decision timeline.
    Simulate {
        scenario: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Node decisions (`surge-nodes`): `surge nodes plan --pods FILE --pools FILE` prints the nodes a batch
    /// of pending pods needs, as JSON.
    Nodes {
        #[command(subcommand)]
        what: NodesCommand,
    },
    /// Scrape one URL (or read a file, `-` for stdin) once and print what the agent would ship.
    Scrape {
        /// `http(s)://` URL, file path, or `-` for stdin.
        target: String,
        /// Parser for files and stdin (URLs negotiate the format).
        #[arg(long, value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Explain the latest decisions for a workload or policy, from a running aggregator.
    Explain {
        /// Policy name, `namespace/name` of the workload, or the workload's name.
        workload: String,
        /// The aggregator's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:9091")]
        aggregator: String,
        /// How many decisions to show in the history.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Validate a config file offline: everything the agent and the aggregator would refuse at start
    /// (policies, metric rules, certificate files...), every problem with file, line, column and field.
    CheckConfig {
        file: PathBuf,
        /// Every file the config names must exist here (run it where the Secrets are mounted, e.g.
        /// inside the pod). Without it, a certificate, key or CA none of whose group exists here is
        /// listed as not checked.
        #[arg(long)]
        require_files: bool,
    },
    /// Benchmarks: with no subcommand, scrape → decision latency (`surge bench latency`);
    /// `surge bench agent` measures the agent beside Prometheus agent mode and vmagent.
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
    },
}

#[derive(Subcommand)]
enum NodesCommand {
    /// Plan new nodes for pods: Pods, PodTemplates or Deployments/StatefulSets/ReplicaSets (their
    /// `spec.replicas` pods) against karpenter.sh/v1 NodePools; exit 2 when a pod fits no pool.
    Plan {
        /// YAML stream of pod-carrying objects.
        #[arg(long)]
        pods: PathBuf,
        /// YAML stream of NodePools.
        #[arg(long)]
        pools: PathBuf,
        /// Instance-type catalog (default: the embedded us-east-1 catalog).
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Remote-write ingest over HTTP and instant-query latency: the aggregator beside VictoriaMetrics.
    Ingest {
        #[arg(long, default_value_t = 10_000)]
        series: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// N targets × M series, agent and aggregator as processes, load steps: scrape → decision and
    /// load step → decision percentiles, CPU and RSS.
    Latency {
        #[arg(long, default_value_t = 500)]
        targets: usize,
        #[arg(long, default_value_t = 200)]
        series: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// N targets × M series at 1 s through the agent; CPU and RSS beside Prometheus (agent mode) and vmagent.
    Agent {
        #[arg(long, default_value_t = 200)]
        targets: usize,
        #[arg(long, default_value_t = 1000)]
        series: usize,
        /// Seconds measured per contender (after the warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 10)]
        warmup_seconds: u64,
        /// Measure surge alone.
        #[arg(long)]
        no_peers: bool,
        /// Also measure surge with `queue_config.durable` on.
        #[arg(long)]
        durable: bool,
        /// Also measure this surge binary (plain config): a before/after in one run.
        #[arg(long)]
        baseline_exe: Option<PathBuf>,
        /// Also measure surge with EMF (stdout) and with OTLP (HTTP) beside remote-write.
        #[arg(long)]
        outputs: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Openmetrics,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scrape {
            target,
            format,
            output,
        } => scrape::main(&target, format, output),
        Command::Agent { config } => agent_cmd::main(&config),
        Command::Explain {
            workload,
            aggregator,
            limit,
        } => explain::main(&workload, &aggregator, limit),
        Command::CheckConfig {
            file,
            require_files,
        } => check::main(
            &file,
            if require_files {
                check::Files::Required
            } else {
                check::Files::WhenPresent
            },
        ),
        Command::Run { config, no_view } => run::main(config.as_deref(), no_view),
        Command::Aggregator { config } => aggregator_cmd::main(&config),
        Command::Nodes {
            what:
                NodesCommand::Plan {
                    pods,
                    pools,
                    catalog,
                },
        } => nodes_cmd::plan_main(&pods, &pools, catalog.as_deref()),
        Command::Simulate { scenario, output } => simulate::main(&scenario, output),
        Command::Bench { what: None } => bench(latency::run(latency::LatencyBenchArgs {
            targets: 500,
            series: 200,
            steps: 10,
            json: false,
        })),
        Command::Bench {
            what:
                Some(BenchCommand::Ingest {
                    series,
                    seconds,
                    connections,
                    queries,
                    output,
                }),
        } => bench(ingest::run(ingest::IngestBenchArgs {
            series,
            seconds,
            connections,
            queries,
            json: matches!(output, Output::Json),
        })),
        Command::Bench {
            what:
                Some(BenchCommand::Latency {
                    targets,
                    series,
                    steps,
                    output,
                }),
        } => bench(latency::run(latency::LatencyBenchArgs {
            targets,
            series,
            steps,
            json: matches!(output, Output::Json),
        })),
        Command::Bench {
            what:
                Some(BenchCommand::Agent {
                    targets,
                    series,
                    seconds,
                    warmup_seconds,
                    no_peers,
                    durable,
                    baseline_exe,
                    outputs,
                    output,
                }),
        } => bench(agent::run(agent::AgentBenchArgs {
            targets,
            series,
            duration: std::time::Duration::from_secs(seconds),
            warmup: std::time::Duration::from_secs(warmup_seconds),
            peers: !no_peers,
            outputs,
            json: matches!(output, Output::Json),
            durable,
            baseline_exe,
        })),
    }
}

/// Runs a `surge bench` harness (`surge-benches`) on a fresh runtime.
fn bench(run: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    process::block_on_main("surge bench", run)
}
