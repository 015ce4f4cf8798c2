//! Every surge config shipped in `deploy/` is valid: the `surge.yaml` key of each ConfigMap in the
//! plain-YAML manifests, and the configs embedded in the Helm chart's values.yaml. Also checks the Helm
//! chart as far as it can be without `helm`: its plain-YAML files parse, and every `.Values.x.y` a
//! template reads exists in values.yaml.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;
use surge_config::{MapEnv, load_str};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `.yaml`/`.yml` file under `dir`, sorted; Helm templates (Go templates, not YAML) left out.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().and_then(|n| n.to_str()) != Some("templates") {
                yaml_files(&p, out);
            }
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            Value::deserialize(d).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

/// What the manifests' pods get from the downward API: the configs must need nothing else (a plain
/// `env` value of a pod spec is not what a config checked where it is rendered sees).
fn env() -> MapEnv {
    MapEnv::default()
        .with("NODE_NAME", "n1")
        .with("POD_IP", "10.0.0.7")
        .with("POD_NAME", "surge-x")
        .with("POD_NAMESPACE", "surge")
}

fn check(text: &str, origin: &str) {
    if let Err(e) = load_str(text, origin, &env()) {
        panic!("{origin} is not a valid surge config:\n{e}");
    }
}

/// The configs in the chart's values.yaml: every string under a key named `config`.
fn values_configs(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            let key = k.as_str().unwrap_or_default();
            let p = format!("{path}.{key}");
            match child {
                Value::String(s) if key == "config" => out.push((p, s.clone())),
                _ => values_configs(child, &p, out),
            }
        }
    }
}

#[test]
fn every_config_in_deploy_is_valid() {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    let mut seen = BTreeSet::new();
    for path in &files {
        let name = path.display().to_string();
        for doc in documents(path) {
            if doc.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
                let cm = doc["metadata"]["name"].as_str().unwrap().to_owned();
                if let Some(text) = doc
                    .get("data")
                    .and_then(|d| d.get("surge.yaml"))
                    .and_then(Value::as_str)
                {
                    check(text, &format!("{name}: ConfigMap {cm}: surge.yaml"));
                    seen.insert(format!("ConfigMap {cm}"));
                }
            }
        }
        if path.file_name().and_then(|n| n.to_str()) == Some("values.yaml") {
            let docs = documents(path);
            let mut configs = Vec::new();
            values_configs(&docs[0], "", &mut configs);
            for (key, text) in configs {
                check(&text, &format!("{name}: {key}"));
                seen.insert(format!("values{key}"));
            }
        }
    }
    for want in [
        "ConfigMap surge-agent-config",
        "ConfigMap surge-aggregator-config",
        "values.agent.config",
        "values.aggregator.config",
    ] {
        assert!(seen.contains(want), "{want} not found in deploy/: {seen:?}");
    }
}

#[test]
fn the_agent_config_takes_the_node_name_from_the_environment() {
    let path = deploy_dir().join("kustomize/base/configmap-agent.yaml");
    let doc = documents(&path).remove(0);
    let text = doc["data"]["surge.yaml"].as_str().unwrap();
    let c = load_str(text, "surge.yaml", &env()).unwrap();
    assert_eq!(c.agent.external_labels["node"], "n1");
    let tiers: BTreeSet<String> = c
        .agent
        .scrape_configs
        .iter()
        .map(|s| format!("{:?}", s.tier).to_lowercase())
        .collect();
    assert_eq!(
        tiers,
        BTreeSet::from(["critical".to_owned(), "standard".to_owned()])
    );
    // HTTPS, verified under the Service's name also when writing to a replica's pod IP, with the
    // projected token.
    let rw = &c.agent.remote_write[0];
    assert_eq!(
        rw.url,
        "https://surge-aggregator.surge.svc:9091/api/v1/write"
    );
    let tls = rw
        .tls_config
        .as_ref()
        .expect("the agent verifies the aggregator");
    assert_eq!(
        tls.server_name.as_deref(),
        Some("surge-aggregator.surge.svc")
    );
    assert!(!tls.insecure_skip_verify);
    assert_eq!(
        rw.bearer_token_file.as_deref(),
        Some(std::path::Path::new("/var/run/secrets/surge/token"))
    );
    // Every aggregator replica, from the Service's EndpointSlices.
    let k = c.agent.remote_write[0]
        .kubernetes_endpoints
        .as_ref()
        .expect("the agent writes to every aggregator replica");
    assert_eq!(
        (k.namespace.as_str(), k.service.as_str(), k.port.as_str()),
        ("surge", "surge-aggregator", "http")
    );
    assert_eq!(c.agent.listen.to_string(), "10.0.0.7:9092");
    // Without NODE_NAME the agent must not start with a made-up node label.
    let no_node = MapEnv::default()
        .with("POD_IP", "10.0.0.7")
        .with("POD_NAMESPACE", "surge");
    assert!(load_str(text, "surge.yaml", &no_node).is_err());
}

/// `.Values.a.b.c` paths read by the chart's templates.
fn values_paths(text: &str) -> BTreeSet<Vec<String>> {
    let re = regex::Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    re.captures_iter(text)
        .map(|c| {
            c[1].trim_start_matches('.')
                .split('.')
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn helm_chart_is_consistent() {
    let chart = deploy_dir().join("helm/surge");
    let meta = documents(&chart.join("Chart.yaml")).remove(0);
    assert_eq!(meta["apiVersion"].as_str(), Some("v2"));
    assert_eq!(meta["name"].as_str(), Some("surge"));
    assert!(meta["version"].as_str().is_some());
    assert!(meta["appVersion"].as_str().is_some());
    let values = documents(&chart.join("values.yaml")).remove(0);

    let mut templates: Vec<PathBuf> = std::fs::read_dir(chart.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    templates.sort();
    assert!(templates.len() >= 8, "templates: {templates:?}");
    let mut used = BTreeSet::new();
    let action = regex::Regex::new(r"\{\{-?\s*(if|range|with|define|end)\b").unwrap();
    for t in &templates {
        let text = std::fs::read_to_string(t).unwrap();
        let name = t.display();
        // Every action is closed, and every block (if/range/with/define) has its end.
        assert_eq!(
            text.matches("{{").count(),
            text.matches("}}").count(),
            "{name}: unbalanced {{{{ }}}}"
        );
        let (mut open, mut end) = (0, 0);
        for c in action.captures_iter(&text) {
            if &c[1] == "end" {
                end += 1;
            } else {
                open += 1;
            }
        }
        assert_eq!(open, end, "{name}: {open} blocks opened, {end} ended");
        for p in values_paths(&text) {
            let mut v = &values;
            for (i, key) in p.iter().enumerate() {
                v = v.get(key.as_str()).unwrap_or_else(|| {
                    panic!(
                        "{name}: .Values.{} is not in values.yaml",
                        p[..=i].join(".")
                    )
                });
            }
            used.insert(p.join("."));
        }
    }
    // The knobs the chart promises.
    for want in [
        "image.repository",
        "image.tag",
        "aggregator.replicas",
        "agent.resources",
        "aggregator.resources",
        "agent.config",
        "aggregator.config",
        "tls.secretName",
        "agent.nodeSelector",
        "agent.tolerations",
        "agent.affinity",
        "aggregator.nodeSelector",
        "aggregator.tolerations",
        "aggregator.affinity",
    ] {
        assert!(
            used.contains(want),
            "no template reads .Values.{want}: {used:?}"
        );
    }
}

/// The chart's default configs are the kustomize base's, verbatim: one text to review and to test.
#[test]
fn helm_defaults_are_the_kustomize_configs() {
    let values = documents(&deploy_dir().join("helm/surge/values.yaml")).remove(0);
    for (component, file) in [
        ("agent", "configmap-agent.yaml"),
        ("aggregator", "configmap-aggregator.yaml"),
    ] {
        let cm = documents(&deploy_dir().join("kustomize/base").join(file)).remove(0);
        assert_eq!(
            values[component]["config"].as_str(),
            cm["data"]["surge.yaml"].as_str(),
            "helm values {component}.config differs from kustomize/base/{file}"
        );
    }
}
