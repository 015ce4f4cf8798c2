//! Runs the upstream OpenMetrics parser conformance cases through [`Parser`] in OpenMetrics mode.
//!
//! Usage: `cargo run -p surge-proto --example openmetrics_conformance -- <.../openmetrics/parsers>`
//!
//! Each case is a folder holding `metrics` (the exposition) and `test.json` (`shouldParse`). A case
//! passes when the parser accepts the whole body exactly when `shouldParse` is true. Prints
//! `openmetrics conformance: P/T passed`, then every disagreeing case; exits 1 if there is one.

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use surge_proto::exposition::{Format, Parser};

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: openmetrics_conformance <parsers dir>");
        return Ok(ExitCode::from(2));
    };
    let verbose = std::env::args().any(|a| a == "-v");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    cases.sort();
    let mut failed = Vec::new();
    let mut total = 0;
    for case in cases.iter().filter(|p| p.is_dir()) {
        total += 1;
        let (should_parse, outcome) = run_case(case)?;
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if should_parse != outcome.is_ok() {
            let detail = match outcome {
                Ok(()) => "accepted, should be rejected".to_owned(),
                Err(e) => format!("rejected ({e}), should parse"),
            };
            failed.push(format!("{name}: {detail}"));
        } else if verbose && let Err(e) = outcome {
            println!("ok {name}: {e}");
        }
    }
    println!(
        "openmetrics conformance: {}/{total} passed",
        total - failed.len()
    );
    for f in &failed {
        println!("FAIL {f}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The case's expectation and what the parser made of it.
fn run_case(case: &Path) -> Result<(bool, Result<(), String>), Box<dyn Error>> {
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(case.join("test.json"))?)?;
    let should_parse = spec["shouldParse"]
        .as_bool()
        .ok_or_else(|| format!("{}: test.json has no boolean shouldParse", case.display()))?;
    let file = spec["file"].as_str().unwrap_or("metrics");
    let body = std::fs::read(case.join(file))?;
    let outcome = Parser::new(&body, Format::OpenMetrics)
        .try_for_each(|entry| entry.map(drop))
        .map_err(|e| e.to_string());
    Ok((should_parse, outcome))
}
