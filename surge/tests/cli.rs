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

/// PEM files for the TLS checks, in a temporary directory: a CA (`ca.crt`), a serving pair it signed
/// (`tls.crt`, `tls.key`), a client pair (`client.crt`, `client.key`) and a key of neither (`other.key`).
fn pki() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    write("ca.crt", &ca.self_signed(&ca_key).unwrap().pem());
    let issuer = Issuer::new(ca, ca_key);
    for (name, cn, sans) in [
        ("tls", "surge-aggregator", vec!["localhost".to_owned()]),
        ("client", "front-proxy-client", vec![]),
    ] {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        write(
            &format!("{name}.crt"),
            &p.signed_by(&key, &issuer).unwrap().pem(),
        );
        write(&format!("{name}.key"), &key.serialize_pem());
    }
    write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    dir
}

const HPA: &str = "    hpa: |
      apiVersion: autoscaling/v2
      kind: HorizontalPodAutoscaler
      metadata: {name: web, namespace: demo}
      spec:
        scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
        maxReplicas: 10
        metrics:
          - type: External
            external:
              metric: {name: rps}
              target: {type: AverageValue, averageValue: \"50\"}
";

/// The acceptance test: one problem of each kind the processes would only find at start, all listed,
/// each at its field.
#[test]
fn check_config_runs_every_start_time_check() {
    let pki = pki();
    let d = pki.path().display().to_string();
    let text = format!(
        "aggregator:
  remote_write:
    - url: http://mimir:9009/api/v1/push
      headers: {{User-Agent: me}}
  kubernetes_api:
    tls:
      cert_file: {d}/tls.crt
      key_file: {d}/other.key
    requestheader:
      client_ca_file: {d}/missing-ca.crt
    external_metrics:
      - name: queue
        query: sum(rate(queue_total[1m])
policies:
  - name: web
{HPA}    metrics:
      rps: sum(rate(http_requests_total[30s])) by
  - name: worker
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {{name: worker}}
      spec:
        scaleTargetRef: {{name: worker}}
        triggers: 3
"
    );
    let (_d, path) = write_temp("surge.yaml", text.as_bytes());
    let out = surge(&["check-config", "--require-files", &path], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = [
        format!(
            "{path}:4:29: aggregator.remote_write[0].headers.User-Agent: \"User-Agent\" is set by the remote-write protocol and cannot be overridden"
        ),
        format!(
            "{path}:8:17: aggregator.kubernetes_api.tls.key_file: {d}/other.key: the key does not match the certificate in {d}/tls.crt"
        ),
        format!(
            "{path}:10:23: aggregator.kubernetes_api.requestheader.client_ca_file: {d}/missing-ca.crt: I/O error: No such file or directory (os error 2)"
        ),
        format!(
            "{path}:13:16: aggregator.kubernetes_api.external_metrics[0].query: query does not parse: 1:4: parse error: unclosed left parenthesis"
        ),
        format!(
            "{path}:29:12: policies[0].metrics.rps: query does not parse: 1:39: parse error: unexpected end of input in grouping opts"
        ),
        format!(
            "{path}:32:7: policies[1].scaled_object: invalid ScaledObject: 6:13: spec.triggers: invalid type: integer `3`, expected a sequence"
        ),
        format!("surge: {path} has 6 problem(s)"),
    ];
    assert_eq!(err.lines().collect::<Vec<_>>(), want, "{err}");
}

/// A destination's client TLS files that are not on this machine (a Secret mounted in the pod) are listed
/// as not checked; with `--require-files` they must exist.
#[test]
fn check_config_lists_remote_write_tls_files_that_are_not_here() {
    let text = "agent:
  remote_write:
    - url: https://surge-aggregator:9091/api/v1/write
      tls_config: {ca_file: /nonexistent/surge/ca.crt}
";
    let (_d, path) = write_temp("surge.yaml", text.as_bytes());
    let out = surge(&["check-config", &path], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not checked: /nonexistent/surge/ca.crt"),
        "{stdout}"
    );
    let out = surge(&["check-config", "--require-files", &path], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{path}:4:19: agent.remote_write[0].tls_config: ca_file /nonexistent/surge/ca.crt:"
        )),
        "{err}"
    );
}

#[test]
fn check_config_accepts_policies_metric_rules_and_real_certificates() {
    let pki = pki();
    let d = pki.path().display().to_string();
    let text = format!(
        "agent:
  scrape_configs:
    - job_name: web
      static_configs: [{{targets: ['127.0.0.1:9100']}}]
  remote_write:
    - url: http://127.0.0.1:9091/api/v1/write
aggregator:
  remote_write:
    - url: http://mimir:9009/api/v1/push
      headers: {{X-Scope-OrgID: team-a}}
  kubernetes_api:
    tls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key}}
    requestheader: {{client_ca_file: {d}/ca.crt, allowed_names: [front-proxy-client]}}
    forward_external_url: https://keda-metrics-apiserver.keda:443
    forward_external_tls: {{ca_file: {d}/ca.crt, cert_file: {d}/client.crt, key_file: {d}/client.key}}
    external_metrics:
      - name: rps
        query: sum(rate(http_requests_total[30s]))
    custom_metrics:
      - name: http_requests_per_second
        query: sum by (namespace, pod) (rate(http_requests_total[30s]))
      - name: queue_depth
        resource: deployments.apps
        query: sum by (namespace, deployment) (queue_depth)
policies:
  - name: web
{HPA}    metrics:
      rps: sum(rate(http_requests_total[30s]))
  - name: worker
    scaled_object: |
      apiVersion: keda.sh/v1alpha1
      kind: ScaledObject
      metadata: {{name: worker, namespace: demo}}
      spec:
        scaleTargetRef: {{name: worker}}
        triggers:
          - type: prometheus
            name: queue
            metadata: {{query: sum(queue_depth), threshold: '10'}}
"
    );
    let (_d, path) = write_temp("surge.yaml", text.as_bytes());
    let out = surge(&["check-config", &path], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{path}: ok (1 scrape job, 2 remote-write destinations, 2 policies, 3 metric rules)\n"
        )
    );
}

/// Every example config and the embedded default of `surge run` pass every check.
#[test]
fn check_config_accepts_every_example_and_the_embedded_default() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("../config/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    files.push(root.join("src/default.yaml"));
    for file in files {
        let out = surge(&["check-config", file.to_str().unwrap()], None);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": ok ("),
            "{out:?}"
        );
    }
}

/// The configs `deploy/` ships, checked where they are rendered (CI, a laptop): with only what the
/// downward API gives a pod, they pass, and the Secret-mounted certificate is listed as not checked;
/// with `--require-files` (as inside the pod) that missing file is an error.
#[test]
fn check_config_accepts_the_shipped_configs_where_they_are_rendered() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let read = |p: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy.join(p)).unwrap()).unwrap()
    };
    let values = read("helm/surge/values.yaml");
    let configs = [
        (
            "agent",
            read("kustomize/base/configmap-agent.yaml")["data"]["surge.yaml"].clone(),
        ),
        (
            "aggregator",
            read("kustomize/base/configmap-aggregator.yaml")["data"]["surge.yaml"].clone(),
        ),
        ("agent", values["agent"]["config"].clone()),
        ("aggregator", values["aggregator"]["config"].clone()),
    ];
    for (component, text) in configs {
        let (_d, path) = write_temp("surge.yaml", text.as_str().unwrap().as_bytes());
        let run = |extra: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_surge"))
                .arg("check-config")
                .args(extra)
                .arg(&path)
                .env_clear()
                .envs([
                    ("NODE_NAME", "n1"),
                    ("POD_NAME", "surge-x"),
                    ("POD_NAMESPACE", "surge"),
                    ("POD_IP", "10.0.0.7"),
                ])
                .output()
                .unwrap()
        };
        let out = run(&[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{component}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if component == "aggregator" {
            assert!(
                stdout.contains("not checked: /etc/surge/tls/tls.crt"),
                "{stdout}"
            );
            let strict = run(&["--require-files"]);
            assert_eq!(strict.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&strict.stderr)
                    .contains("aggregator.kubernetes_api.tls.cert_file: /etc/surge/tls/tls.crt"),
                "{strict:?}"
            );
        }
    }
}
