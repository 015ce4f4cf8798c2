//! `surge simulate SCENARIO [--output table|json]`: read a scenario file, replay it through the engine
//! (`surge_engine::scenario`), print one line (table) or one object (JSON) per evaluation.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use surge_engine::scenario::job::{self, JobStep};
use surge_engine::scenario::{self, Step};

use crate::Output;

/// Runs the subcommand: exit 0 after printing the steps, 1 when the file cannot be read or is invalid
/// (every problem printed as `file:line:column: field: message`).
pub fn main(path: &Path, output: Output) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read the scenario: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if surge_nodes::NodeScenario::is_node_scenario(&text) {
        return crate::nodes_cmd::simulate_main(path, &text, output);
    }
    if job::is_job_scenario(&text) {
        return main_jobs(path, &text, output);
    }
    let scenario = match scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{}:{p}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let steps = scenario::simulate(&scenario);
    let printed = match output {
        Output::Json => print_json(&steps),
        Output::Table => print_table(&steps),
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A ScaledJob scenario: one line (or object) per poll with the Jobs KEDA creates.
fn main_jobs(path: &Path, text: &str, output: Output) -> ExitCode {
    let scenario = match job::parse(text) {
        Ok(s) => s,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{}:{p}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let steps = job::simulate(&scenario);
    let printed = match output {
        Output::Json => print_json_jobs(&steps),
        Output::Table => print_table_jobs(&scenario.spec.name, &steps),
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_json_jobs(steps: &[JobStep]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &serde_json::json!({ "steps": steps }))?;
    writeln!(out)
}

fn print_table_jobs(name: &str, steps: &[JobStep]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "scaledjob {name}")?;
    writeln!(
        out,
        "{:>9}  {:>7}  {:>7}  {:>6}  reason",
        "time", "running", "pending", "create"
    )?;
    for s in steps {
        let time = scenario::format_offset((s.time_s * 1000.0).round() as i64);
        writeln!(
            out,
            "{time:>9}  {:>7}  {:>7}  {:>6}  {}",
            s.decision.running_jobs, s.decision.pending_jobs, s.jobs_to_create, s.decision.reason
        )?;
    }
    Ok(())
}

fn print_json(steps: &[Step]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &serde_json::json!({ "steps": steps }))?;
    writeln!(out)
}

fn print_table(steps: &[Step]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if let Some(first) = steps.first() {
        writeln!(out, "workload {}", first.workload)?;
    }
    writeln!(
        out,
        "{:>9}  {:>9}  {:>7}  {:<32}  reason",
        "time", "replicas", "desired", "metrics (current/target→proposal)"
    )?;
    for s in steps {
        let replicas = if s.replicas == s.replicas_before {
            format!("{}", s.replicas)
        } else {
            format!("{}→{}", s.replicas_before, s.replicas)
        };
        let metrics = s
            .metrics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // Times are whole milliseconds, so the rounding is exact.
        let time = scenario::format_offset((s.time_s * 1000.0).round() as i64);
        writeln!(
            out,
            "{time:>9}  {replicas:>9}  {:>7}  {metrics:<32}  {}",
            s.desired, s.reason
        )?;
        if !s.seeded_history.is_empty() {
            let read = s.seeded_history.join(", ");
            writeln!(out, "{:>9}  {:>9}  {:>7}  history read: {read}", "", "", "")?;
        }
        // How the pods were grouped, when a per-pod metric left some out (also when no proposal was
        // made): the first thing to look at when a proposal surprises.
        for (m, p) in s.metrics.iter().zip(&s.decision.metrics) {
            let left_out = p
                .pods
                .is_some_and(|c| c.unready + c.missing + c.ignored > 0);
            if let (Some(pods), true) = (&m.pods, left_out) {
                writeln!(
                    out,
                    "{:>9}  {:>9}  {:>7}  pods[{}]: {pods}",
                    "", "", "", m.metric
                )?;
            }
        }
    }
    Ok(())
}
