//! The Helm chart's optional features, rendered by the real Helm v4 SDK (`helm lint --strict` first).
//!
//! mTLS (`mtls.enabled`): off by default (the rendering has no client certificate anywhere); on, the
//! agents mount Secret `mtls.secretName` and present its certificate on their HTTPS remote-write instead
//! of the token, and the aggregator verifies client certificates against that Secret's `ca.crt`, takes
//! writes and peer copies only with one (`server.auth.client_certificates`, no token review), and
//! presents it to its own peers. Both configs as rendered load as surge configs. With cert-manager the
//! chart requests the client certificate from the serving certificate's issuer.
//!
//! Node decisions (`nodeDecisions.enabled`): off by default (no grant, no NodePools, no `nodes` in the
//! config); on, the NodePools ConfigMap is mounted where the rendered config's `node_pools_file` points,
//! the config loads, and the headroom Deployment's namespace is the one the chart's Role grants. That
//! those grants are enough for the node actuator is `k8s_nodes.rs`'s part (it acts through them).
//!
//! Needs helm-python-sdk (`$SURGE_HELM_PYTHON`, which `.ci/run` sets up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use surge_config::{MapEnv, load_str};
use surge_tests::helm::volume;

const CLIENT_DIR: &str = "/etc/surge/client-tls";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/surge")
}

/// The chart's objects for `values`.
fn render(values: Value) -> Vec<Value> {
    surge_tests::helm::render_objects(&chart(), "surge", &values).unwrap()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The `surge.yaml` of a ConfigMap: parsed, and checked as surge loads it in a pod.
fn config(objs: &[Value], name: &str) -> Value {
    let text = find(objs, "ConfigMap", name)["data"]["surge.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let env = MapEnv::default()
        .with("NODE_NAME", "n1")
        .with("POD_IP", "10.0.0.7")
        .with("POD_NAME", "surge-x")
        .with("POD_NAMESPACE", "surge");
    if let Err(e) = load_str(&text, name, &env) {
        panic!("{name} as rendered is not a valid surge config:\n{e}\n{text}");
    }
    serde_json::to_value(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).unwrap()).unwrap()
}

/// The pod spec of a workload.
fn pod<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &find(objs, kind, name)["spec"]["template"]["spec"]
}

/// The client-certificate volume's Secret and mount path in `pod`, if any (a volume that is not
/// mounted fails).
fn client_volume(pod: &Value) -> Option<(String, String)> {
    let declared = pod["volumes"]
        .as_array()
        .is_some_and(|vs| vs.iter().any(|v| v["name"] == "client-tls"));
    let Some((volume, mount)) = volume(pod, "client-tls") else {
        assert!(!declared, "a client-tls volume is mounted");
        return None;
    };
    Some((
        volume["secret"]["secretName"].as_str()?.to_owned(),
        mount["mountPath"].as_str()?.to_owned(),
    ))
}

fn checksum(objs: &[Value], kind: &str, name: &str) -> Value {
    find(objs, kind, name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
}

#[test]
fn mtls_is_off_by_default_and_on_it_replaces_the_token() {
    let off = render(json!({}));
    let on = render(json!({"mtls": {"enabled": true}}));

    // Off: no client certificate anywhere; the token authenticates.
    assert_eq!(client_volume(pod(&off, "DaemonSet", "surge-agent")), None);
    assert_eq!(
        client_volume(pod(&off, "Deployment", "surge-aggregator")),
        None
    );
    let agg = config(&off, "surge-aggregator-config");
    assert!(agg["aggregator"]["server"]["tls"]["client_ca_file"].is_null());
    assert!(agg["aggregator"]["server"]["auth"]["token_review"].is_object());
    let agent = config(&off, "surge-agent-config");
    assert!(agent["agent"]["remote_write"][0]["tls_config"]["cert_file"].is_null());

    // On: the agents present the Secret's certificate, without a token.
    let secret = "surge-client-tls".to_owned();
    let mount = CLIENT_DIR.to_owned();
    assert_eq!(
        client_volume(pod(&on, "DaemonSet", "surge-agent")),
        Some((secret.clone(), mount.clone()))
    );
    let agent = config(&on, "surge-agent-config");
    let rw = &agent["agent"]["remote_write"][0];
    assert_eq!(rw["tls_config"]["cert_file"], format!("{mount}/tls.crt"));
    assert_eq!(rw["tls_config"]["key_file"], format!("{mount}/tls.key"));
    assert_eq!(
        rw["tls_config"]["ca_file"], "/etc/surge/aggregator-ca/ca.crt",
        "the server is still verified against its own CA"
    );
    assert!(rw["bearer_token_file"].is_null(), "{rw}");

    // The aggregator verifies client certificates against the Secret's CA and requires one for writes
    // and peer copies; the handshake does not (the kubelet's HTTPS probes present none).
    assert_eq!(
        client_volume(pod(&on, "Deployment", "surge-aggregator")),
        Some((secret, mount.clone()))
    );
    let agg = config(&on, "surge-aggregator-config");
    let server = &agg["aggregator"]["server"];
    assert_eq!(server["tls"]["client_ca_file"], format!("{mount}/ca.crt"));
    assert!(server["tls"]["require_client_cert"].is_null(), "{server}");
    assert_eq!(server["auth"], json!({"client_certificates": true}));
    let peers = &agg["aggregator"]["peers"];
    assert_eq!(peers["tls_config"]["cert_file"], format!("{mount}/tls.crt"));
    assert_eq!(peers["tls_config"]["key_file"], format!("{mount}/tls.key"));
    assert_eq!(peers["tls_config"]["ca_file"], "/etc/surge/tls/ca.crt");
    assert!(peers["bearer_token_file"].is_null(), "{peers}");
    // Everything else is the default config, unchanged.
    assert_eq!(
        agg["aggregator"]["kubernetes_api"],
        config(&off, "surge-aggregator-config")["aggregator"]["kubernetes_api"]
    );

    // Turning it on or off restarts the pods (their config checksum changes).
    for (kind, name) in [
        ("DaemonSet", "surge-agent"),
        ("Deployment", "surge-aggregator"),
    ] {
        assert_ne!(
            checksum(&off, kind, name),
            checksum(&on, kind, name),
            "{kind}"
        );
    }
}

#[test]
fn with_cert_manager_the_client_certificate_is_requested_from_the_same_issuer() {
    let objs = render(json!({
        "tls": {"certManager": {"enabled": true}},
        "mtls": {"enabled": true, "secretName": "agents-mtls"},
    }));
    let client = find(&objs, "Certificate", "agents-mtls");
    let serving = find(&objs, "Certificate", "surge-aggregator-tls");
    assert_eq!(client["spec"]["secretName"], "agents-mtls");
    assert_eq!(client["spec"]["issuerRef"], serving["spec"]["issuerRef"]);
    let usages = client["spec"]["usages"].as_array().unwrap();
    assert!(usages.contains(&json!("client auth")), "{usages:?}");
    assert!(!usages.contains(&json!("server auth")), "{usages:?}");
    assert_eq!(
        client_volume(pod(&objs, "DaemonSet", "surge-agent")),
        Some(("agents-mtls".to_owned(), CLIENT_DIR.to_owned()))
    );
    // Without mTLS, no client certificate is requested.
    let objs = render(json!({"tls": {"certManager": {"enabled": true}}}));
    assert_eq!(
        objs.iter()
            .filter(|o| o["kind"] == "Certificate")
            .filter(|o| o["spec"]["usages"]
                .as_array()
                .is_some_and(|u| u.contains(&json!("client auth"))))
            .count(),
        0
    );
}

/// The NodePools shipped as `surge nodes plan`'s example (two pools).
fn node_pools() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nodes/scenarios/pools.yaml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn node_decisions_are_off_by_default_and_on_they_mount_their_pools_and_grant_their_namespace() {
    let off = render(json!({}));
    assert!(
        off.iter().all(|o| !o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.contains("nodepools")
                || n.ends_with("-nodes")
                || n.ends_with("-headroom"))),
        "node decisions render nothing when off"
    );
    assert_eq!(
        config(&off, "surge-aggregator-config")["aggregator"]["nodes"],
        Value::Null
    );

    let on = render(json!({"nodeDecisions": {
        "enabled": true,
        "nodePools": node_pools(),
        "settings": {"interval": "2s", "headroom": {"cpu": "500m", "memory": "512Mi", "replicas": 3}},
    }}));
    let cfg = config(&on, "surge-aggregator-config");
    let nodes = &cfg["aggregator"]["nodes"];
    assert_eq!(nodes["interval"], "2s");
    assert_eq!(nodes["headroom"]["replicas"], 3);
    // The rest of the config is as shipped.
    assert_eq!(
        cfg["aggregator"]["server"],
        config(&off, "surge-aggregator-config")["aggregator"]["server"]
    );
    // The pools file is the mounted ConfigMap's key, and it loads as surge reads NodePools.
    let file = Path::new(nodes["node_pools_file"].as_str().unwrap());
    let (volume, mount) = volume(pod(&on, "Deployment", "surge-aggregator"), "nodepools")
        .expect("a nodepools volume, mounted");
    let map_name = volume["configMap"]["name"].as_str().unwrap();
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()),
        file.parent().unwrap()
    );
    let key = file.file_name().unwrap().to_str().unwrap();
    let pools_text = find(&on, "ConfigMap", map_name)["data"][key]
        .as_str()
        .unwrap();
    let pools = surge_nodes::NodePool::all_from_yaml(pools_text, key).unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["graviton", "general"]);
    // The headroom Deployment goes where the Role grants it: the release namespace by default.
    let role = find(&on, "Role", "surge-aggregator-headroom");
    assert_eq!(
        role["metadata"]["namespace"],
        nodes["headroom"]["namespace"]
    );
    assert_eq!(nodes["headroom"]["namespace"], "surge");
    find(&on, "ClusterRole", "surge-aggregator-nodes");
    // A config change rolls the aggregator.
    assert_ne!(
        checksum(&on, "Deployment", "surge-aggregator"),
        checksum(&off, "Deployment", "surge-aggregator")
    );
    // A namespace named in the settings moves both.
    let elsewhere = render(json!({"nodeDecisions": {
        "enabled": true,
        "nodePools": node_pools(),
        "settings": {"headroom": {"namespace": "capacity"}},
    }}));
    assert_eq!(
        config(&elsewhere, "surge-aggregator-config")["aggregator"]["nodes"]["headroom"]["namespace"],
        "capacity"
    );
    assert_eq!(
        find(&elsewhere, "RoleBinding", "surge-aggregator-headroom")["metadata"]["namespace"],
        "capacity"
    );
    // Without headroom, no PriorityClass or Deployment grant.
    let plain = render(json!({"nodeDecisions": {"enabled": true, "nodePools": node_pools()}}));
    let rules = find(&plain, "ClusterRole", "surge-aggregator-nodes")["rules"].to_string();
    assert!(!rules.contains("priorityclasses"), "{rules}");
    assert!(
        plain
            .iter()
            .all(|o| o["kind"] != "Role" || o["metadata"]["name"] != "surge-aggregator-headroom")
    );
    // On without NodePools is refused at render, naming the value.
    let err = surge_tests::helm::render(
        &chart(),
        "surge",
        &json!({"nodeDecisions": {"enabled": true}}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nodeDecisions.nodePools"), "{err}");
}
