//! `surge scrape TARGET`: one scrape, printed as the agent would ship it.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};
use surge_proto::exposition::{self, Entry, Format, Parser};

use crate::{FormatArg, Output};

/// Bodies larger than this are refused, as the agent's default `body_size_limit` does.
const BODY_LIMIT: usize = 64 << 20;

pub fn main(target: &str, format: FormatArg, output: Output) -> ExitCode {
    let fetched = if target.starts_with("http://") || target.starts_with("https://") {
        fetch_url(target)
    } else {
        read_file(target, format)
    };
    let (body, format) = match fetched {
        Ok(x) => x,
        Err(e) => {
            eprintln!("surge scrape: {target}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut samples = Vec::new();
    for entry in Parser::new(&body, format) {
        match entry {
            Ok(Entry::Sample(s)) => samples.push(s),
            Ok(_) => {}
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let written = match output {
        Output::Json => {
            let arr: Vec<Value> = samples
                .iter()
                .map(|s| {
                    let labels: Map<String, Value> = s
                        .labels()
                        .map(|(n, v)| (n.to_cow().into_owned(), Value::String(v.into_owned())))
                        .collect();
                    json!({
                        "name": s.name.to_cow(),
                        "labels": labels,
                        "value": json_value(s.value),
                        "timestamp_ms": s.timestamp_ms,
                    })
                })
                .collect();
            serde_json::to_writer(&mut out, &arr)
                .map_err(std::io::Error::other)
                .and_then(|_| writeln!(out))
        }
        Output::Table => samples.iter().try_for_each(|s| {
            let labels: Vec<String> = s.labels().map(|(n, v)| format!("{n}={v:?}")).collect();
            let ts = s.timestamp_ms.map(|t| format!(" @{t}")).unwrap_or_default();
            writeln!(
                out,
                "{}{{{}}} {}{ts}",
                s.name,
                labels.join(", "),
                fmt_value(s.value)
            )
        }),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge scrape: {e}");
            ExitCode::FAILURE
        }
    }
}

/// JSON has no NaN or infinities: those become the strings Prometheus prints.
fn json_value(v: f64) -> Value {
    if v.is_finite() {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    } else {
        Value::String(fmt_value(v))
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn fetch_url(url: &str) -> anyhow::Result<(Vec<u8>, Format)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let fetcher = surge_agent::scrape::fetch::Fetcher::new(surge_agent::http_client()?);
        let f = fetcher
            .fetch(
                url,
                Duration::from_secs(10),
                BODY_LIMIT,
                surge_model::EscapingScheme::AllowUtf8,
            )
            .await?;
        Ok((f.body, f.format))
    })
}

fn read_file(path: &str, format: FormatArg) -> anyhow::Result<(Vec<u8>, Format)> {
    let mut raw = Vec::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(BODY_LIMIT as u64 + 1)
            .read_to_end(&mut raw)?;
    } else {
        std::fs::File::open(path)?
            .take(BODY_LIMIT as u64 + 1)
            .read_to_end(&mut raw)?;
    }
    if raw.len() > BODY_LIMIT {
        anyhow::bail!("larger than {BODY_LIMIT} bytes");
    }
    // A gzip file (magic 1f 8b) is decoded as a gzip response body would be.
    let encoding = raw.starts_with(&[0x1f, 0x8b]).then_some("gzip");
    let body = exposition::decode_body(&raw, encoding, BODY_LIMIT)?.into_owned();
    let format = match format {
        FormatArg::Text => Format::Text,
        FormatArg::Openmetrics => Format::OpenMetrics,
    };
    Ok((body, format))
}
