//! `surge explain WORKLOAD`: the latest decisions of a policy from a running aggregator, laid out like a far
//! clearer `kubectl describe hpa`: inputs, per-metric proposals, tolerance, the stabilization window's
//! effect, the limit that clamped it, and how fast the decision followed its sample.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

pub fn main(workload: &str, aggregator: &str, limit: usize) -> ExitCode {
    let url = format!("{}/api/v1/decisions", aggregator.trim_end_matches('/'));
    let fetched = (|| -> anyhow::Result<Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = surge_agent::http_client()?;
            let resp = client
                .get(&url)
                .query(&[("policy", workload), ("limit", &limit.max(1).to_string())])
                .timeout(Duration::from_secs(5))
                .send()
                .await?
                .error_for_status()?;
            let bytes = resp.bytes().await?;
            Ok(serde_json::from_slice::<Value>(&bytes)?)
        })
    })();
    let body = match fetched {
        Ok(v) => v,
        Err(e) => {
            eprintln!("surge explain: {url}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let decisions = body["data"].as_array().cloned().unwrap_or_default();
    if decisions.is_empty() {
        eprintln!(
            "surge explain: no decisions for {workload:?} (a policy name, namespace/name or workload name)"
        );
        return ExitCode::FAILURE;
    }
    print!("{}", render(&decisions));
    ExitCode::SUCCESS
}

fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

fn milli(v: &Value) -> String {
    v.as_i64()
        .map(|m| {
            if m % 1000 == 0 {
                format!("{}", m / 1000)
            } else {
                format!("{:.3}", m as f64 / 1000.0)
            }
        })
        .unwrap_or_else(|| "-".into())
}

/// A cron window's bound (ms since the epoch) as an RFC 3339 UTC time, `never` when it does not fire.
fn when(ms: &Value) -> String {
    ms.as_i64()
        .and_then(surge_engine::decision::rfc3339_ms)
        .unwrap_or_else(|| "never".to_owned())
}

/// The KEDA layer of a ScaledObject decision: what the executor did, which annotation froze the target,
/// which fallback applied.
fn render_keda(o: &mut String, k: &Value) {
    if !k.is_object() {
        return;
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let polled = if k["polled"].as_bool() == Some(true) {
        "poll"
    } else {
        "HPA read between polls"
    };
    let _ = writeln!(
        o,
        "KEDA:            executor {} ({polled})",
        s(&k["executor"])
    );
    if let Some(a) = k["frozen_by"].as_str() {
        let _ = writeln!(o, "  frozen by:     {a}");
    }
    let fallback: Vec<String> = k["fallback_triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    if !fallback.is_empty() {
        let _ = writeln!(
            o,
            "  fallback:      {} ({} → {} replicas)",
            fallback.join(", "),
            s(&k["fallback_behavior"]),
            k["fallback_replicas"]
        );
    }
    if let Some(windows) = k["cron_windows"].as_object() {
        for (t, w) in windows {
            let open = if w["active"].as_bool() == Some(true) {
                format!("open until {}", when(&w["next_end_ms"]))
            } else {
                format!("closed, opens {}", when(&w["next_start_ms"]))
            };
            let _ = writeln!(
                o,
                "  cron {t}:  {open} ({} to {} {}, {} replicas)",
                s(&w["start"]),
                s(&w["end"]),
                s(&w["timezone"]),
                w["desired_replicas"]
            );
        }
    }
    if let Some(errors) = k["trigger_errors"].as_object() {
        for (t, e) in errors {
            let _ = writeln!(o, "  {t} failed:  {}", e.as_str().unwrap_or(""));
        }
    }
    for c in k["conditions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<15} {:<7} {:<28} {}",
            s(&c["type"]),
            s(&c["status"]),
            s(&c["reason"]),
            s(&c["message"])
        );
    }
}

/// `ready 3, unready 1 (web-3), missing 0, ignored 0`: how `groupPods` classified the pods of a per-pod
/// metric, with the names of those it left out.
fn pod_groups(m: &Value) -> String {
    let class = |key: &str| {
        let n = m["pods"][key].as_u64().unwrap_or(0);
        let names: Vec<&str> = m["pod_groups"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if names.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({})", names.join(", "))
        }
    };
    format!(
        "ready {}, unready {}, missing {}, ignored {}",
        m["pods"]["ready"].as_u64().unwrap_or(0),
        class("unready"),
        class("missing"),
        class("ignored")
    )
}

/// Renders the newest decision in full and the rest as a history table.
pub fn render(decisions: &[Value]) -> String {
    let mut o = String::new();
    let d = &decisions[0];
    let dec = &d["decision"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let _ = writeln!(
        o,
        "Policy:          {} ({})",
        s(&d["policy"]),
        s(&d["mode"])
    );
    let _ = writeln!(o, "Workload:        {}", s(&d["workload"]));
    let _ = writeln!(
        o,
        "Replicas:        {} → {}   (min {}, max {})",
        d["replicas_before"],
        d["replicas_after"],
        dec["inputs"]["min_replicas"],
        dec["inputs"]["max_replicas"]
    );
    let decided = d["decided_at_ms"].as_i64().unwrap_or(0);
    let mut when = format!("{} (trigger: {})", clock(decided), s(&d["trigger"]));
    if let Some(t) = d["trigger_sample_ms"].as_i64() {
        let _ = write!(when, ", {} ms after the sample's scrape", decided - t);
    }
    if let Some(t) = d["ingested_at_ms"].as_i64() {
        let _ = write!(when, ", {} ms after its ingest", decided - t);
    }
    let _ = writeln!(o, "Decided:         {when}");
    let _ = writeln!(o, "Reason:          {}", s(&dec["reason"]));
    let _ = writeln!(o, "Actuation:       {}", s(&d["actuation"]));
    if let Some(e) = dec["error"].as_str() {
        let _ = writeln!(o, "Error:           {e}");
    }
    let _ = writeln!(o, "Inputs:");
    for i in d["inputs"].as_array().into_iter().flatten() {
        if i["read_by_engine"].as_bool() == Some(true) {
            // A cron trigger: the engine computed it from the clock; there is no query to show.
            let _ = writeln!(o, "  {:<22} = (from the clock)", s(&i["metric"]));
            continue;
        }
        let value = if let Some(e) = i["error"].as_str() {
            format!("unavailable: {e}")
        } else if let Some(v) = i["value"].as_f64() {
            format!("{v}")
        } else {
            let pods = i["per_pod"].as_object().map(|m| m.len()).unwrap_or(0);
            format!("{pods} pods")
        };
        let _ = writeln!(
            o,
            "  {:<22} = {value}\n  {:<22}   from {}",
            s(&i["metric"]),
            "",
            s(&i["query"])
        );
    }
    let tol_up = dec["inputs"]["scale_up_tolerance"].as_f64().unwrap_or(0.1);
    let tol_down = dec["inputs"]["scale_down_tolerance"]
        .as_f64()
        .unwrap_or(0.1);
    let _ = writeln!(
        o,
        "Metrics:         (tolerance: keep when {:.2} ≤ ratio ≤ {:.2})",
        1.0 - tol_down,
        1.0 + tol_up
    );
    for m in dec["metrics"].as_array().into_iter().flatten() {
        let target = &m["target"];
        let ratio = m["ratio"]
            .as_f64()
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "-".into());
        let proposal = m["proposal"]
            .as_i64()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "  {}: current {} / target {} {} → ratio {ratio}{} → proposes {proposal}",
            s(&m["name"]),
            milli(&m["current_milli"]),
            milli(&target["value"]),
            s(&target["type"]),
            if m["within_tolerance"].as_bool() == Some(true) {
                " (within tolerance: keep)"
            } else {
                ""
            },
        );
        if m["pods"].is_object() {
            let _ = writeln!(o, "    pods: {}", pod_groups(m));
        }
        if let Some(e) = m["error"].as_str() {
            let _ = writeln!(o, "    error: {e}");
        }
    }
    if let Some(r) = dec["recommendation"].as_i64() {
        let _ = writeln!(
            o,
            "Recommendation:  {r} (highest proposal, from {})",
            s(&dec["recommended_by"])
        );
    }
    for (label, key) in [
        ("Stabilization:", "stabilization"),
        ("Limited by:", "limit"),
    ] {
        let a = &dec[key];
        if a.is_object() {
            let _ = writeln!(
                o,
                "{label:<16} {} {} → {}: {}",
                s(&a["rule"]),
                a["from"],
                a["to"],
                s(&a["message"])
            );
        }
    }
    render_keda(&mut o, &dec["keda"]);
    let h = &dec["history"];
    if h.is_object() {
        let _ = writeln!(
            o,
            "Read history:    (what the windows and rate policies saw)"
        );
        for (label, key) in [
            ("recommendations", "recommendations"),
            ("scale-ups", "scale_up_events"),
            ("scale-downs", "scale_down_events"),
        ] {
            let entries: Vec<String> = h[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("{} at {}", e[0], clock(e[1].as_i64().unwrap_or(0))))
                .collect();
            if !entries.is_empty() {
                let _ = writeln!(o, "  {label:<15} {}", entries.join(", "));
            }
        }
    }
    let _ = writeln!(o, "Conditions:");
    for c in dec["conditions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<15} {:<6} {:<28} {}",
            s(&c["type"]),
            if c["status"].as_bool() == Some(true) {
                "True"
            } else {
                "False"
            },
            s(&c["reason"]),
            s(&c["message"])
        );
    }
    if decisions.len() > 1 {
        let _ = writeln!(o, "History:         (newest first)");
        for h in decisions {
            let _ = writeln!(
                o,
                "  {}  {:>3} → {:<3} {}",
                clock(h["decided_at_ms"].as_i64().unwrap_or(0)),
                h["replicas_before"],
                h["replicas_after"],
                s(&h["decision"]["reason"])
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render;

    /// The pod groups of a metric that could not propose, and the history the rules read, are shown.
    #[test]
    fn shows_pod_groups_and_the_history_read() {
        let d = json!({
            "policy": "shop/web", "mode": "dry-run", "workload": "shop/web",
            "replicas_before": 3, "replicas_after": 3, "decided_at_ms": 60_000,
            "trigger": "sync", "actuation": "none", "inputs": [],
            "decision": {
                "inputs": {"min_replicas": 1, "max_replicas": 10,
                           "scale_up_tolerance": 0.1, "scale_down_tolerance": 0.1},
                "metrics": [{
                    "name": "cpu resource utilization (percentage of request)",
                    "current_milli": null, "target": {"type": "Utilization", "value": 50},
                    "ratio": null, "proposal": null, "within_tolerance": false,
                    "pods": {"ready": 0, "unready": 2, "missing": 0, "ignored": 1},
                    "pod_groups": {"unready": ["web-0", "web-1"], "missing": [], "ignored": ["web-2"]},
                    "error": "failed to get cpu resource metric value: did not receive metrics for targeted pods (pods might be unready)"
                }],
                "history": {"recommendations": [[5, 0], [3, 15_000]], "scale_up_events": [],
                            "scale_down_events": [[2, 30_000]]},
                "conditions": [], "reason": "not scaling"
            }
        });
        let text = render(&[d]);
        assert!(
            text.contains(
                "    pods: ready 0, unready 2 (web-0, web-1), missing 0, ignored 1 (web-2)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  recommendations 5 at 00:00:00.000, 3 at 00:00:15.000\n"),
            "{text}"
        );
        assert!(
            text.contains("  scale-downs     2 at 00:00:30.000\n"),
            "{text}"
        );
        assert!(!text.contains("scale-ups"), "{text}");
    }
}
