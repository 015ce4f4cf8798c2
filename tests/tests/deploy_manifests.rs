//! The Kubernetes manifests in `deploy/` against a real kube-apiserver (v1.36, `../shared/k8s`).
//!
//! One control plane for the whole file (started once, stopped when the test ends, also on panic):
//! - `kubectl kustomize deploy/kustomize/base` renders, and `kubectl apply --dry-run=server` accepts
//!   every object (schema, defaulting and admission, Pod Security `restricted` warnings included);
//! - the rendered objects are the expected ones, with the settings the brief fixes (probes, hardening,
//!   NODE_NAME, TLS Secret, APIService priorities...);
//! - RBAC is least privilege: the exact rule set of every Role and ClusterRole, and, after a real
//!   apply of the RBAC objects, `kubectl auth can-i` as each ServiceAccount proves both the grants and
//!   what is refused;
//! - the kustomize copy of the agent's RBAC holds the same objects as `deploy/rbac-agent.yaml`;
//! - the cert-manager overlay renders and its Certificate is the one the APIServices name;
//! - the agent → aggregator path is secured as shipped: HTTPS with the serving Secret's CA (only its
//!   `ca.crt` mounted on the agents), a projected ServiceAccount token for the `surge-aggregator`
//!   audience as the agent's `bearer_token_file`, TokenReview auth for that audience in the aggregator's
//!   config, and the aggregator's probes over HTTPS.
//!
//! Needs etcd (`apt-get install -y etcd-server`; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use surge_tests::k8s::{ControlPlane, start_plane};

/// This file's control plane ports (other suites use others).
const APISERVER_PORT: u16 = 46443;
const ETCD_PORT: u16 = 53790;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs kubectl with `stdin`; returns (success, stdout, stderr).
fn kubectl_status(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    cp.status("kubectl", args, stdin).unwrap()
}

/// `kubectl auth can-i VERB RESOURCE... --as=system:serviceaccount:NS:NAME`: "yes" or "no".
fn can_i(cp: &ControlPlane, sa: &str, args: &[&str]) -> bool {
    let who = format!("--as=system:serviceaccount:{sa}");
    let mut all = vec!["auth", "can-i", who.as_str()];
    all.extend_from_slice(args);
    // can-i exits 1 for "no": read the answer, not the status.
    let (_, out, err) = kubectl_status(cp, &all, None);
    match out.as_str() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl {}: unexpected answer {other:?}\n{err}",
            all.join(" ")
        ),
    }
}

/// The items of a `kind: List` JSON document.
fn items(list_json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(list_json).unwrap();
    match v["kind"].as_str() {
        Some("List") => v["items"].as_array().unwrap().clone(),
        _ => vec![v],
    }
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// One RBAC rule as sets, so the order of lists does not matter.
type Rule = (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
);

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
    let set = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect();
    (set(groups), set(resources), set(verbs), BTreeSet::new())
}

fn rules_of(role: &Value) -> BTreeSet<Rule> {
    let name = role["metadata"]["name"].as_str().unwrap();
    role["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no rules"))
        .iter()
        .map(|r| {
            assert!(
                r.get("nonResourceURLs").is_none(),
                "{name}: no nonResourceURLs expected: {r}"
            );
            (
                strs(&r["apiGroups"]),
                strs(&r["resources"]),
                strs(&r["verbs"]),
                strs(&r["resourceNames"]),
            )
        })
        .collect()
}

/// (roleRef kind/name, subjects "kind/namespace/name") of a binding.
fn binding(b: &Value) -> (String, BTreeSet<String>) {
    let role = format!(
        "{}/{}",
        b["roleRef"]["kind"].as_str().unwrap(),
        b["roleRef"]["name"].as_str().unwrap()
    );
    let subjects = b["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}/{}",
                s["kind"].as_str().unwrap(),
                s["namespace"].as_str().unwrap_or(""),
                s["name"].as_str().unwrap()
            )
        })
        .collect();
    (role, subjects)
}

fn render(cp: &ControlPlane, dir: &str) -> String {
    cp.kubectl(
        &["kustomize", workspace().join(dir).to_str().unwrap()],
        None,
    )
}

/// The objects as the client would send them (no server state), as JSON.
fn client_objects(cp: &ControlPlane, yaml: &str) -> Vec<Value> {
    items(&cp.kubectl(
        &["apply", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(yaml),
    ))
}

/// Kind, namespace, name and the content that matters (labels, rules, roleRef, subjects) of objects.
fn identity(o: &Value) -> Value {
    json!({
        "kind": o["kind"],
        "name": o["metadata"]["name"],
        "namespace": o["metadata"]["namespace"],
        "labels": o["metadata"]["labels"],
        "rules": o["rules"],
        "roleRef": o["roleRef"],
        "subjects": o["subjects"],
    })
}

#[test]
fn deploy_manifests_against_a_real_apiserver() {
    let cp = start_plane(APISERVER_PORT, ETCD_PORT, None).unwrap();
    let rendered = render(&cp, "deploy/kustomize/base");

    // RBAC (and its namespace) for real: server dry-run of namespaced objects needs the namespace, and
    // `auth can-i` needs the grants in place.
    let rbac_kinds = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let client = client_objects(&cp, &rendered);
    let rbac: Vec<Value> = client
        .iter()
        .filter(|o| rbac_kinds.contains(&o["kind"].as_str().unwrap()))
        .cloned()
        .collect();
    let rbac_list = json!({"apiVersion": "v1", "kind": "List", "items": rbac}).to_string();
    cp.kubectl(&["apply", "-f", "-"], Some(&rbac_list));

    // Everything, validated and admitted by the server.
    let (ok, out, err) = kubectl_status(
        &cp,
        &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&rendered),
    );
    assert!(ok, "server dry-run apply failed:\n{err}\n{out}");
    assert!(
        !err.contains("Warning"),
        "the server warned (Pod Security `restricted` or deprecations):\n{err}"
    );
    let objs = items(&out);

    let expected: &[(&str, &str)] = &[
        ("Namespace", "surge"),
        ("ServiceAccount", "surge-agent"),
        ("ServiceAccount", "surge-aggregator"),
        ("ClusterRole", "surge-agent"),
        ("ClusterRole", "surge-aggregator"),
        ("ClusterRole", "surge-metrics-reader"),
        ("ClusterRoleBinding", "surge-agent"),
        ("ClusterRoleBinding", "surge-aggregator"),
        (
            "ClusterRoleBinding",
            "surge-aggregator:system:auth-delegator",
        ),
        ("ClusterRoleBinding", "surge-hpa-metrics-reader"),
        ("Role", "surge-aggregator-leader-election"),
        ("RoleBinding", "surge-aggregator-leader-election"),
        ("Role", "surge-aggregator-peers"),
        ("RoleBinding", "surge-aggregator-peers"),
        ("Role", "surge-agent-endpoints"),
        ("RoleBinding", "surge-agent-endpoints"),
        ("RoleBinding", "surge-aggregator-auth-reader"),
        ("ConfigMap", "surge-agent-config"),
        ("ConfigMap", "surge-aggregator-config"),
        ("DaemonSet", "surge-agent"),
        ("Deployment", "surge-aggregator"),
        ("PodDisruptionBudget", "surge-aggregator"),
        ("Service", "surge-aggregator"),
        ("Service", "surge-agent"),
        ("APIService", "v1beta1.external.metrics.k8s.io"),
        ("APIService", "v1beta1.custom.metrics.k8s.io"),
        ("APIService", "v1beta2.custom.metrics.k8s.io"),
    ];
    let got: BTreeSet<(String, String)> = objs
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(got, want, "rendered objects");
    for o in &objs {
        let ns = o["metadata"]["namespace"].as_str();
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        match kind {
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "APIService" => {
                assert_eq!(ns, None, "{kind} {name}")
            }
            "RoleBinding" if name == "surge-aggregator-auth-reader" => {
                assert_eq!(ns, Some("kube-system"))
            }
            _ => assert_eq!(ns, Some("surge"), "{kind} {name}"),
        }
    }

    check_workloads(&objs);
    check_write_path(&objs);
    check_rbac_rules(&objs);
    check_grants(&cp);
    check_agent_rbac_copy(&cp);
    check_cert_manager_overlay(&cp);
}

fn check_hardening(what: &str, pod: &Value) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}");
    assert_eq!(psc["runAsUser"], 65532, "{what}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
    assert!(sc["capabilities"].get("add").is_none(), "{what}");
    assert!(
        sc.get("privileged").is_none() || sc["privileged"] == false,
        "{what}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"][k][r].is_string(),
                "{what}: resources.{k}.{r}"
            );
        }
    }
    // The config is mounted from the ConfigMap at the path the args name.
    assert_eq!(c["args"][1], "-c", "{what}");
    assert_eq!(c["args"][2], "/etc/surge/surge.yaml", "{what}");
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/etc/surge/surge.yaml" && m["subPath"] == "surge.yaml"),
        "{what}: config mount"
    );
}

fn check_workloads(objs: &[Value]) {
    // Agent DaemonSet.
    let ds = find(objs, "DaemonSet", "surge-agent");
    let pod = &ds["spec"]["template"]["spec"];
    check_hardening("agent", pod);
    assert_eq!(pod["serviceAccountName"], "surge-agent");
    assert!(pod["hostNetwork"].is_null() || pod["hostNetwork"] == false);
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "the agent tolerates every taint"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "agent");
    let node_name = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME in the agent's env");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(c["ports"][0]["containerPort"], 9092);
    assert_eq!(c["resources"]["requests"]["cpu"], "250m");
    assert_eq!(c["resources"]["requests"]["memory"], "64Mi");
    let cm = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(cm["configMap"]["name"], "surge-agent-config");

    // Aggregator Deployment.
    let dep = find(objs, "Deployment", "surge-aggregator");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    check_hardening("aggregator", pod);
    assert_eq!(pod["serviceAccountName"], "surge-aggregator");
    assert!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .is_array(),
        "preferred anti-affinity"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["args"][0], "aggregator");
    let ports: BTreeMap<String, i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("http".to_owned(), 9091), ("https".to_owned(), 6443)])
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let tls = volumes.iter().find(|v| v["name"] == "tls").unwrap();
    assert_eq!(tls["secret"]["secretName"], "surge-aggregator-tls");
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "tls" && m["readOnly"] == true),
        "TLS secret mounted read-only"
    );
    let cm = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(cm["configMap"]["name"], "surge-aggregator-config");

    // Disruption budget over the aggregator's pods.
    let pdb = find(objs, "PodDisruptionBudget", "surge-aggregator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );

    // Services.
    let svc = find(objs, "Service", "surge-aggregator");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    let ports: BTreeSet<(String, i64, String)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            ("http".to_owned(), 9091, "http".to_owned()),
            ("https".to_owned(), 443, "https".to_owned()),
        ])
    );
    let agent_svc = find(objs, "Service", "surge-agent");
    assert_eq!(agent_svc["spec"]["clusterIP"], "None");
    assert_eq!(
        agent_svc["spec"]["selector"],
        ds["spec"]["selector"]["matchLabels"]
    );

    // APIServices.
    for (name, group, version, priority) in [
        (
            "v1beta1.external.metrics.k8s.io",
            "external.metrics.k8s.io",
            "v1beta1",
            100,
        ),
        (
            "v1beta1.custom.metrics.k8s.io",
            "custom.metrics.k8s.io",
            "v1beta1",
            100,
        ),
        (
            "v1beta2.custom.metrics.k8s.io",
            "custom.metrics.k8s.io",
            "v1beta2",
            200,
        ),
    ] {
        let a = find(objs, "APIService", name);
        let s = &a["spec"];
        assert_eq!(s["group"], group, "{name}");
        assert_eq!(s["version"], version, "{name}");
        assert_eq!(s["groupPriorityMinimum"], 100, "{name}");
        assert_eq!(s["versionPriority"], priority, "{name}");
        assert_eq!(
            s["service"],
            json!({"namespace": "surge", "name": "surge-aggregator", "port": 443}),
            "{name}"
        );
        assert!(
            s["insecureSkipTLSVerify"].is_null() || s["insecureSkipTLSVerify"] == false,
            "{name}: TLS must be verified"
        );
        assert_eq!(
            a["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "surge/surge-aggregator-tls",
            "{name}"
        );
    }
}

/// The volume named `name` of a pod spec, and the container's mount of it (both must be there).
fn volume<'a>(pod: &'a Value, name: &str) -> (&'a Value, &'a Value) {
    surge_tests::helm::volume(pod, name).unwrap_or_else(|| panic!("volume {name}, mounted"))
}

/// The `surge.yaml` of a ConfigMap, parsed.
fn surge_config(objs: &[Value], name: &str) -> Value {
    let cm = find(objs, "ConfigMap", name);
    let text = cm["data"]["surge.yaml"].as_str().unwrap();
    serde_json::to_value(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).unwrap()).unwrap()
}

fn check_write_path(objs: &[Value]) {
    // The agent: a projected token for the aggregator's audience, and the CA alone.
    let agent = &find(objs, "DaemonSet", "surge-agent")["spec"]["template"]["spec"];
    let (token, token_mount) = volume(agent, "aggregator-token");
    let sources = token["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{token}");
    let sat = &sources[0]["serviceAccountToken"];
    assert_eq!(sat["audience"], "surge-aggregator");
    assert_eq!(sat["expirationSeconds"], 3600);
    let token_file = format!(
        "{}/{}",
        token_mount["mountPath"].as_str().unwrap(),
        sat["path"].as_str().unwrap()
    );
    let (ca, ca_mount) = volume(agent, "aggregator-ca");
    assert_eq!(ca["secret"]["secretName"], "surge-aggregator-tls");
    assert_eq!(
        ca["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "only the CA reaches the agents, never tls.key"
    );
    let ca_file = format!("{}/ca.crt", ca_mount["mountPath"].as_str().unwrap());

    let cfg = surge_config(objs, "surge-agent-config");
    let rw = &cfg["agent"]["remote_write"][0];
    assert!(rw["url"].as_str().unwrap().starts_with("https://"), "{rw}");
    assert_eq!(rw["bearer_token_file"], token_file.as_str());
    assert_eq!(rw["tls_config"]["ca_file"], ca_file.as_str());
    assert!(rw["tls_config"]["insecure_skip_verify"].is_null(), "{rw}");
    assert_eq!(
        rw["tls_config"]["server_name"],
        "${AGGREGATOR_SERVICE:-surge-aggregator}.${POD_NAMESPACE}.svc"
    );

    // The aggregator: HTTPS with the mounted Secret, TokenReview for the agents' audience, HTTPS probes.
    let cfg = surge_config(objs, "surge-aggregator-config");
    let server = &cfg["aggregator"]["server"];
    assert_eq!(server["tls"]["cert_file"], "/etc/surge/tls/tls.crt");
    assert_eq!(server["tls"]["key_file"], "/etc/surge/tls/tls.key");
    let review = &server["auth"]["token_review"];
    assert_eq!(review["audiences"], json!(["surge-aggregator"]));
    assert_eq!(
        review["allowed_users"],
        json!([
            "system:serviceaccount:${POD_NAMESPACE}:${AGENT_SERVICE_ACCOUNT:-surge-agent}",
            "system:serviceaccount:${POD_NAMESPACE}:${AGGREGATOR_SERVICE_ACCOUNT:-surge-aggregator}"
        ])
    );
    let dep = &find(objs, "Deployment", "surge-aggregator")["spec"]["template"]["spec"];
    let c = &dep["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    let sa = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "AGENT_SERVICE_ACCOUNT")
        .expect("AGENT_SERVICE_ACCOUNT in the aggregator's env");
    assert_eq!(sa["value"], "surge-agent");
    check_peers(objs, &cfg, dep);
}

/// `aggregator.peers`: the replicas are the Service's endpoints, reached as the agents reach them
/// (HTTPS verified against the Secret's CA under the Service's name, a projected token for the
/// aggregator's audience), and the replicas' own account may pass the TokenReview.
fn check_peers(objs: &[Value], cfg: &Value, dep: &Value) {
    let peers = &cfg["aggregator"]["peers"];
    assert_eq!(
        peers["kubernetes_endpoints"],
        json!({"namespace": "${POD_NAMESPACE}", "service": "${AGGREGATOR_SERVICE:-surge-aggregator}", "port": "http"}),
        "{peers}"
    );
    assert_eq!(peers["scheme"], "https");
    let (tls, tls_mount) = volume(dep, "tls");
    assert_eq!(tls["secret"]["secretName"], "surge-aggregator-tls");
    assert_eq!(
        peers["tls_config"]["ca_file"],
        format!("{}/ca.crt", tls_mount["mountPath"].as_str().unwrap()).as_str()
    );
    assert_eq!(
        peers["tls_config"]["server_name"],
        "${AGGREGATOR_SERVICE:-surge-aggregator}.${POD_NAMESPACE}.svc"
    );
    let (token, token_mount) = volume(dep, "peer-token");
    let sat = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(sat["audience"], "surge-aggregator", "{token}");
    assert_eq!(
        peers["bearer_token_file"],
        format!(
            "{}/{}",
            token_mount["mountPath"].as_str().unwrap(),
            sat["path"].as_str().unwrap()
        )
        .as_str()
    );
    // The Service the config names is the one the agents write to.
    let service = find(objs, "Service", "surge-aggregator");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "http"),
        "{service}"
    );
}

fn check_rbac_rules(objs: &[Value]) {
    // Exactly these roles, with exactly these rules.
    let expected_roles: BTreeMap<(&str, &str), BTreeSet<Rule>> = BTreeMap::from([
        (
            ("ClusterRole", "surge-agent"),
            BTreeSet::from([rule(&[""], &["pods"], &["get", "list", "watch"])]),
        ),
        (
            ("ClusterRole", "surge-aggregator"),
            BTreeSet::from([
                rule(
                    &["apps"],
                    &["deployments/scale", "statefulsets/scale"],
                    &["get", "patch", "update"],
                ),
                rule(&[""], &["pods"], &["get", "list", "watch"]),
                rule(
                    &["apps"],
                    &["deployments", "statefulsets"],
                    &["get", "list", "watch"],
                ),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
            ]),
        ),
        (
            ("ClusterRole", "surge-metrics-reader"),
            BTreeSet::from([rule(
                &["custom.metrics.k8s.io", "external.metrics.k8s.io"],
                &["*"],
                &["get", "list"],
            )]),
        ),
        (
            ("Role", "surge-aggregator-leader-election"),
            BTreeSet::from([rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "create", "update"],
            )]),
        ),
        (
            ("Role", "surge-aggregator-peers"),
            BTreeSet::from([rule(
                &["discovery.k8s.io"],
                &["endpointslices"],
                &["get", "list", "watch"],
            )]),
        ),
        (
            ("Role", "surge-agent-endpoints"),
            BTreeSet::from([rule(
                &["discovery.k8s.io"],
                &["endpointslices"],
                &["get", "list", "watch"],
            )]),
        ),
    ]);
    let roles: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .collect();
    assert_eq!(roles.len(), expected_roles.len(), "number of roles");
    for role in roles {
        let key = (
            role["kind"].as_str().unwrap(),
            role["metadata"]["name"].as_str().unwrap(),
        );
        let want = expected_roles
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected {key:?}"));
        let got = rules_of(role);
        assert_eq!(&got, want, "rules of {key:?}");
        for (groups, resources, verbs, _) in &got {
            assert!(!verbs.contains("*"), "{key:?}: `*` verb");
            assert!(!groups.contains("*"), "{key:?}: `*` apiGroup");
            if key.1 != "surge-metrics-reader" {
                assert!(!resources.contains("*"), "{key:?}: `*` resource");
            }
        }
    }

    // Exactly these bindings.
    let sa = |ns: &str, n: &str| format!("ServiceAccount/{ns}/{n}");
    let expected_bindings: BTreeMap<(&str, &str), (String, BTreeSet<String>)> = BTreeMap::from([
        (
            ("ClusterRoleBinding", "surge-agent"),
            (
                "ClusterRole/surge-agent".to_owned(),
                BTreeSet::from([sa("surge", "surge-agent")]),
            ),
        ),
        (
            ("ClusterRoleBinding", "surge-aggregator"),
            (
                "ClusterRole/surge-aggregator".to_owned(),
                BTreeSet::from([sa("surge", "surge-aggregator")]),
            ),
        ),
        (
            (
                "ClusterRoleBinding",
                "surge-aggregator:system:auth-delegator",
            ),
            (
                "ClusterRole/system:auth-delegator".to_owned(),
                BTreeSet::from([sa("surge", "surge-aggregator")]),
            ),
        ),
        (
            ("ClusterRoleBinding", "surge-hpa-metrics-reader"),
            (
                "ClusterRole/surge-metrics-reader".to_owned(),
                BTreeSet::from([sa("kube-system", "horizontal-pod-autoscaler")]),
            ),
        ),
        (
            ("RoleBinding", "surge-aggregator-auth-reader"),
            (
                "Role/extension-apiserver-authentication-reader".to_owned(),
                BTreeSet::from([sa("surge", "surge-aggregator")]),
            ),
        ),
        (
            ("RoleBinding", "surge-aggregator-leader-election"),
            (
                "Role/surge-aggregator-leader-election".to_owned(),
                BTreeSet::from([sa("surge", "surge-aggregator")]),
            ),
        ),
        (
            ("RoleBinding", "surge-aggregator-peers"),
            (
                "Role/surge-aggregator-peers".to_owned(),
                BTreeSet::from([sa("surge", "surge-aggregator")]),
            ),
        ),
        (
            ("RoleBinding", "surge-agent-endpoints"),
            (
                "Role/surge-agent-endpoints".to_owned(),
                BTreeSet::from([sa("surge", "surge-agent")]),
            ),
        ),
    ]);
    let bindings: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
        .collect();
    assert_eq!(
        bindings.len(),
        expected_bindings.len(),
        "number of bindings"
    );
    for b in bindings {
        let key = (
            b["kind"].as_str().unwrap(),
            b["metadata"]["name"].as_str().unwrap(),
        );
        let want = expected_bindings
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected {key:?}"));
        assert_eq!(&binding(b), want, "{key:?}");
    }
}

fn check_grants(cp: &ControlPlane) {
    let agent = "surge:surge-agent";
    for (args, allowed) in [
        (&["list", "pods"][..], true),
        (&["watch", "pods", "--all-namespaces"], true),
        (&["get", "pods", "-n", "default"], true),
        (&["get", "secrets"], false),
        (&["get", "secrets", "-n", "surge"], false),
        (&["list", "nodes"], false),
        (&["create", "pods"], false),
        (&["delete", "pods"], false),
        (&["get", "configmaps", "-n", "surge"], false),
        (&["patch", "deployments.apps", "--subresource=scale"], false),
        // Every aggregator replica: the EndpointSlices of its own namespace only.
        (
            &["watch", "endpointslices.discovery.k8s.io", "-n", "surge"],
            true,
        ),
        (
            &["list", "endpointslices.discovery.k8s.io", "-n", "default"],
            false,
        ),
        (
            &["create", "endpointslices.discovery.k8s.io", "-n", "surge"],
            false,
        ),
    ] {
        assert_eq!(can_i(cp, agent, args), allowed, "agent: {args:?}");
    }

    let agg = "surge:surge-aggregator";
    for (args, allowed) in [
        (
            &[
                "patch",
                "deployments.apps",
                "--subresource=scale",
                "-n",
                "app",
            ][..],
            true,
        ),
        (
            &[
                "get",
                "statefulsets.apps",
                "--subresource=scale",
                "-n",
                "app",
            ],
            true,
        ),
        (
            &[
                "update",
                "statefulsets.apps",
                "--subresource=scale",
                "-n",
                "app",
            ],
            true,
        ),
        (&["patch", "deployments.apps", "-n", "app"], false),
        (&["get", "deployments.apps", "-n", "app"], true),
        (&["watch", "deployments.apps", "-n", "app"], true),
        (&["delete", "deployments.apps", "-n", "app"], false),
        (
            &["create", "leases.coordination.k8s.io", "-n", "surge"],
            true,
        ),
        (
            &["update", "leases.coordination.k8s.io", "-n", "surge"],
            true,
        ),
        (
            &["create", "leases.coordination.k8s.io", "-n", "default"],
            false,
        ),
        (
            &["delete", "leases.coordination.k8s.io", "-n", "surge"],
            false,
        ),
        (
            &[
                "get",
                "configmaps/extension-apiserver-authentication",
                "-n",
                "kube-system",
            ],
            true,
        ),
        (&["get", "configmaps", "-n", "surge"], false),
        // Its peers: the EndpointSlices of its own namespace only, read-only.
        (
            &["watch", "endpointslices.discovery.k8s.io", "-n", "surge"],
            true,
        ),
        (
            &["list", "endpointslices.discovery.k8s.io", "-n", "default"],
            false,
        ),
        (
            &["update", "endpointslices.discovery.k8s.io", "-n", "surge"],
            false,
        ),
        (&["create", "tokenreviews.authentication.k8s.io"], true),
        (
            &["create", "subjectaccessreviews.authorization.k8s.io"],
            true,
        ),
        (&["create", "events", "-n", "app"], true),
        (&["create", "events.events.k8s.io", "-n", "app"], true),
        (&["delete", "events", "-n", "app"], false),
        (&["get", "secrets", "-n", "surge"], false),
        (&["list", "pods"], true),
        (&["delete", "pods"], false),
        (&["create", "pods"], false),
    ] {
        assert_eq!(can_i(cp, agg, args), allowed, "aggregator: {args:?}");
    }

    // The HPA controller may read the metrics APIs. kubectl cannot name a resource of an APIService
    // that is not served yet, so ask the server directly.
    for group in ["external.metrics.k8s.io", "custom.metrics.k8s.io"] {
        let sar = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                "resourceAttributes": {"group": group, "resource": "http_requests", "verb": "get", "namespace": "default"},
            },
        });
        let out = cp.kubectl(&["create", "-o", "json", "-f", "-"], Some(&sar.to_string()));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["allowed"], true, "HPA reads {group}: {v}");
    }
}

/// kustomize cannot load `deploy/rbac-agent.yaml` from the base, so the base keeps a copy: same objects.
fn check_agent_rbac_copy(cp: &ControlPlane) {
    let canonical = workspace().join("deploy/rbac-agent.yaml");
    let copy = workspace().join("deploy/kustomize/base/rbac-agent.yaml");
    let load = |p: &Path| -> Vec<Value> {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut v: Vec<Value> = client_objects(cp, &text).iter().map(identity).collect();
        v.sort_by_key(|o| o.to_string());
        v
    };
    assert_eq!(
        load(&canonical),
        load(&copy),
        "deploy/kustomize/base/rbac-agent.yaml must hold the same objects as deploy/rbac-agent.yaml"
    );
}

fn check_cert_manager_overlay(cp: &ControlPlane) {
    let rendered = render(cp, "deploy/kustomize/cert-manager");
    // cert-manager's CRDs are not installed here: check the rendering, not the server's view.
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let cert = docs
        .iter()
        .find(|d| d.contains("kind: Certificate") && d.contains("name: surge-aggregator-tls"))
        .expect("a Certificate surge-aggregator-tls in the cert-manager overlay");
    assert!(cert.contains("namespace: surge"), "{cert}");
    assert!(cert.contains("secretName: surge-aggregator-tls"), "{cert}");
    assert!(cert.contains("- surge-aggregator.surge.svc\n"), "{cert}");
    for kind in ["DaemonSet", "Deployment", "APIService"] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "the overlay keeps the base's {kind}"
        );
    }
}

/// Identifiers starting with `surge_` in `text` (metric names).
fn surge_names(text: &str, quoted: bool) -> BTreeSet<String> {
    let pat = if quoted { "\"surge_" } else { "surge_" };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(pat) {
        let start = i + pat.len() - "surge_".len();
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let end = start + name.len();
        if !quoted || rest[end..].starts_with('"') {
            out.insert(name);
        }
        rest = &rest[end..];
    }
    out
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(p);
        }
    }
}

/// The dashboard is valid JSON, takes its data source as an input, and reads only metrics surge
/// registers (counters exposed with `_total`, histograms with `_bucket`/`_count`/`_sum`).
#[test]
fn grafana_dashboard_reads_metrics_surge_exports() {
    let path = workspace().join("deploy/grafana/surge-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");

    let mut registered = BTreeSet::new();
    for krate in [
        "agent",
        "sender",
        "aggregator",
        "store",
        "promql",
        "metrics-api",
        "autoscaler",
        "k8s",
    ] {
        let mut files = Vec::new();
        rust_sources(&workspace().join(krate).join("src"), &mut files);
        for f in files {
            registered.extend(surge_names(&std::fs::read_to_string(f).unwrap(), true));
        }
    }
    assert!(registered.contains("surge_scrapes"), "{registered:?}");

    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {title}"
        );
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            for name in surge_names(expr, false) {
                let base = ["_total", "_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| registered.contains(*b)))
                    .unwrap_or(&name);
                assert!(
                    registered.contains(base),
                    "panel {title:?}: {name} is not a metric surge registers"
                );
            }
        }
    }
    assert!(exprs >= 30, "{exprs} queries");
}
