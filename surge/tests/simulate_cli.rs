//! `surge simulate` as a user runs it: the JSON contract on an example scenario, the table, and the exit
//! code and `file:line:column` messages of an invalid scenario.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn surge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .output()
        .unwrap()
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/scenarios")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn json_output_keeps_the_contract() {
    let out = surge(&[
        "simulate",
        &example("keda-queue-worker.yaml"),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    // One step per 15 s sync from 0 s to 10 m inclusive.
    assert_eq!(steps.len(), 41);
    for s in steps {
        assert!(s["time_s"].is_f64(), "{s}");
        assert_eq!(s["workload"], "billing/invoice-worker");
        assert!(s["replicas"].is_i64(), "{s}");
        assert!(s["desired"].is_i64(), "{s}");
        assert!(s["reason"].is_string(), "{s}");
    }
    let changes: Vec<(f64, i64)> = steps
        .iter()
        .filter(|s| s["replicas"] != s["replicas_before"])
        .map(|s| {
            (
                s["time_s"].as_f64().unwrap(),
                s["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    // 0 → 1 on activation (KEDA), 1 → 4 → 8 → 10 (the generated HPA's scale-up limit, then
    // ceil(200 / 20)), and back to 0 two minutes after the last active poll (5m45s).
    assert_eq!(
        changes,
        [(60.0, 1), (75.0, 4), (90.0, 8), (105.0, 10), (480.0, 0)]
    );
    let activation = &steps[4];
    assert_eq!(activation["time_s"], 60.0);
    assert_eq!(activation["desired"], 1);
    assert_eq!(
        activation["reason"],
        "scale 0→1: ScaleFromZero (from 0 to 1, triggered by invoices)"
    );
    assert_eq!(activation["decision"]["keda"]["executor"], "ScaleFromZero");
    let limited = &steps[5];
    assert_eq!(
        (limited["replicas"].as_i64(), limited["desired"].as_i64()),
        (Some(4), Some(10))
    );
}

#[test]
fn table_output_is_for_people() {
    let out = surge(&["simulate", &example("cronhpa-prescale.yaml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("workload shop/storefront\n"), "{text}");
    // 08:50 (5 m in): the schedule's floor; 09:00 (15 m in): the rush.
    let line = |time: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(time))
            .unwrap_or_else(|| panic!("no {time} line in\n{text}"))
            .to_owned()
    };
    assert!(
        line("5m").contains("2→12") && line("5m").contains("below Spec.MinReplicas"),
        "{}",
        line("5m")
    );
    assert!(line("15m").contains("12→15"), "{}", line("15m"));
    assert!(
        line("15m").contains("http_requests_per_second 125/100 per pod→15"),
        "{}",
        line("15m")
    );
}

#[test]
fn invalid_scenario_names_file_line_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "policy:
  hpa: |
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    spec:
      scaleTargetRef: {name: web}
      maxReplicas: 5
initial: {replicas: 2}
timeline:
  - at: 0s
    metrics: {cpu: 500m, memroy: 1Gi}
end: 1m
",
    )
    .unwrap();
    let out = surge(&["simulate", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "{}:11:34: timeline[0].metrics.memroy: the policy has no metric \"memroy\" (its metrics: cpu)\n",
            path.display()
        )
    );
}

#[test]
fn unreadable_scenario_exits_1() {
    let out = surge(&["simulate", "/nonexistent/scenario.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("/nonexistent/scenario.yaml: cannot read the scenario"),
    );
}

#[test]
fn scaled_job_scenarios_print_the_jobs_to_create() {
    let path = example("keda-scaledjob-queue.yaml");
    let out = surge(&["simulate", &path, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let created: Vec<(f64, i64)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time_s"].as_f64().unwrap(),
                s["jobs_to_create"].as_i64().unwrap(),
            )
        })
        .collect();
    // Accurate: 6 + 4 unfinished - 2 pending <= 10, so 6 - 2 pending; then 9 + 4 > 10, so 10 - 4; then the
    // queue is empty (inactive) and stays so.
    assert_eq!(created, [(0.0, 4), (30.0, 6), (60.0, 0), (90.0, 0)]);
    let table = surge(&["simulate", &path]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("scaledjob invoice-export\n"), "{text}");
    assert!(text.contains("create 6 job(s)"), "{text}");
}

fn nodes_example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../nodes/scenarios")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn a_node_scenario_prints_launches_deletions_and_waits() {
    let out = surge(&[
        "simulate",
        &nodes_example("web-burst.yaml"),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6);
    let burst = &steps[1];
    assert!(!burst["nodes"].as_array().unwrap().is_empty());
    assert!(burst["nodes"][0]["instance_type"].is_string());
    assert!(burst["wait_ahead_max_s"].as_u64() < burst["wait_pending_max_s"].as_u64());
    let table = surge(&["simulate", &nodes_example("web-burst.yaml")]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("wait ahead") && text.contains("+"), "{text}");
}

#[test]
fn nodes_plan_prints_the_nodes_and_flags_what_fits_nowhere() {
    let out = surge(&[
        "nodes",
        "plan",
        "--pods",
        &nodes_example("pods.yaml"),
        "--pools",
        &nodes_example("pools.yaml"),
    ]);
    // The `huge` pod fits no instance type: exit 2, the rest planned.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    let pods: Vec<&str> = nodes
        .iter()
        .flat_map(|n| {
            n["pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
        })
        .collect();
    assert_eq!(pods.len(), 7, "{pods:?}");
    assert!(pods.contains(&"shop/legacy") && pods.contains(&"shop/web-5"));
    for n in nodes {
        for key in ["name", "instance_type", "capacity_type"] {
            assert!(n[key].is_string(), "{key} in {n}");
        }
    }
    assert_eq!(v["unschedulable"][0]["pod"], "shop/huge");
    // A bad NodePool is refused with its field.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("pools.yaml");
    std::fs::write(&bad, "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: x}\nspec:\n  weight: heavy\n  template: {spec: {requirements: []}}\n").unwrap();
    let out = surge(&[
        "nodes",
        "plan",
        "--pods",
        &nodes_example("pods.yaml"),
        "--pools",
        &bad.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight"));
}
