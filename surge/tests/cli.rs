//! The `surge` binary as a user runs it: `surge scrape` and `surge check-config`.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn surge(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn write_temp(name: &str, content: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    (dir, p.display().to_string())
}

#[test]
fn scrape_file_prints_the_json_contract() {
    let body = b"# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n\
g{a=\"x\\\"y\"} NaN 1700000000000\ni -Inf\n";
    let (_d, path) = write_temp("m.prom", body);
    let out = surge(&["scrape", &path, "--output", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"name": "h_bucket", "labels": {"le": "0.5"}, "value": 1.0, "timestamp_ms": null},
            {"name": "h_bucket", "labels": {"le": "+Inf"}, "value": 2.0, "timestamp_ms": null},
            {"name": "h_sum", "labels": {}, "value": 0.7, "timestamp_ms": null},
            {"name": "h_count", "labels": {}, "value": 2.0, "timestamp_ms": null},
            {"name": "g", "labels": {"a": "x\"y"}, "value": "NaN", "timestamp_ms": 1700000000000i64},
            {"name": "i", "labels": {}, "value": "-Inf", "timestamp_ms": null},
        ])
    );
}

#[test]
fn scrape_parse_error_names_line_and_column_and_exits_1() {
    let out = surge(
        &["scrape", "-", "--output", "json"],
        Some(b"ok 1\nbad{x=\"1\"} zz\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("line 2, column 12: invalid value \"zz\""),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn scrape_openmetrics_from_stdin_requires_eof() {
    let good = surge(
        &["scrape", "-", "--format", "openmetrics", "--output", "json"],
        Some(b"# TYPE c counter\nc_total 3 1700000000.5\n# EOF\n"),
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(v[0]["name"], "c_total");
    assert_eq!(v[0]["timestamp_ms"], 1700000000500i64);
    let bad = surge(
        &["scrape", "-", "--format", "openmetrics"],
        Some(b"# TYPE c counter\nc_total 3\n"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line"),
        "{:?}",
        bad
    );
}

#[test]
fn check_config_lists_every_problem_with_position() {
    let (_d, path) = write_temp(
        "surge.yaml",
        b"agent:\n  scrape_configs:\n    - job_name: a\n      interval: 1x\n    - job_name: a\n      intervall: 1s\n",
    );
    let out = surge(&["check-config", &path], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{path}:4:17: agent.scrape_configs[0].interval: \"1x\" is not a duration"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{path}:6:7: agent.scrape_configs[1]: unknown field \"intervall\""
        )),
        "{err}"
    );
    let (_d2, ok) = write_temp("ok.yaml", b"agent:\n  scrape_configs:\n    - job_name: a\n      static_configs: [{targets: ['127.0.0.1:1']}]\n");
    let out = surge(&["check-config", &ok], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
