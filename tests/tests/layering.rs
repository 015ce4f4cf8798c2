//! The layering rules of ARCHITECTURE.md ("Rules CI checks"), checked on the real dependency graph from
//! `cargo metadata`. Cargo only forbids cycles; these rules keep the engine pure, the two processes apart
//! and the heavy crates (kube, the AWS SDK, tonic) where they belong. Each rule is written once, here.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Crates that run or serve: an async runtime, HTTP, gRPC.
const RUNTIME_AND_HTTP: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "hyper",
    "hyper-util",
    "http",
    "reqwest",
    "axum",
    "tower",
    "tonic",
    "rustls",
];

/// Crates that talk to Kubernetes or AWS.
const CLUSTER_AND_CLOUD: &[&str] = &["kube", "kube-client", "kube-runtime", "k8s-openapi"];

/// A crate name is a cloud SDK crate when it starts with one of these.
const CLOUD_PREFIXES: &[&str] = &["aws-", "opentelemetry"];

/// One rule: `subjects` must not reach any of `forbidden` through `scope`; `why` says what it protects.
struct Rule {
    name: &'static str,
    subjects: &'static [&'static str],
    forbidden: Forbidden,
    scope: Scope,
    why: &'static str,
}

enum Forbidden {
    /// These crates (and, with `cloud`, any crate with a cloud SDK prefix).
    Crates {
        names: &'static [&'static [&'static str]],
        cloud: bool,
    },
}

#[derive(Clone, Copy)]
enum Scope {
    /// What the crate's library links: its normal dependencies, transitively.
    Linked,
    /// Any direct dependency (normal, dev or build) and everything linked.
    Any,
}

const RULES: &[Rule] = &[
    Rule {
        name: "the engine is pure",
        subjects: &["surge-engine"],
        forbidden: Forbidden::Crates {
            names: &[RUNTIME_AND_HTTP, CLUSTER_AND_CLOUD],
            cloud: true,
        },
        scope: Scope::Linked,
        why: "the engine does no I/O and reads no clock: surge simulate and the aggregator run the same code",
    },
    Rule {
        name: "the store, PromQL and the actuation seam do no I/O",
        subjects: &[
            "surge-store",
            "surge-promql",
            "surge-actuate",
            "surge-model",
            "surge-nodes",
        ],
        forbidden: Forbidden::Crates {
            names: &[RUNTIME_AND_HTTP, CLUSTER_AND_CLOUD],
            cloud: true,
        },
        scope: Scope::Linked,
        why: "time and data are arguments; the processes own the runtime",
    },
    Rule {
        name: "the agent does not depend on the aggregator side",
        subjects: &["surge-agent"],
        forbidden: Forbidden::Crates {
            names: &[&[
                "surge-aggregator",
                "surge-store",
                "surge-promql",
                "surge-metrics-api",
                "surge-autoscaler",
            ]],
            cloud: false,
        },
        scope: Scope::Any,
        why: "the DaemonSet binary's path stays small; the two halves meet only on the wire",
    },
    Rule {
        name: "the aggregator does not depend on the agent",
        subjects: &[
            "surge-aggregator",
            "surge-store",
            "surge-promql",
            "surge-metrics-api",
            "surge-autoscaler",
            "surge-alb",
        ],
        forbidden: Forbidden::Crates {
            names: &[&["surge-agent"]],
            cloud: false,
        },
        scope: Scope::Any,
        why: "the two halves meet only on the wire (remote-write) and in the binary",
    },
    Rule {
        name: "model, proto and config sit below everything",
        subjects: &["surge-model", "surge-proto", "surge-config"],
        forbidden: Forbidden::Crates {
            names: &[&[
                "surge-agent",
                "surge-aggregator",
                "surge-engine",
                "surge-store",
                "surge-promql",
                "surge-metrics-api",
                "surge-autoscaler",
                "surge-actuate",
                "surge-sender",
                "surge-k8s",
            ]],
            cloud: false,
        },
        scope: Scope::Any,
        why: "every crate speaks these types; they must not pull a process in",
    },
    Rule {
        name: "the Kubernetes adapter straddles neither half",
        subjects: &["surge-k8s"],
        forbidden: Forbidden::Crates {
            names: &[&["surge-agent", "surge-aggregator"]],
            cloud: false,
        },
        scope: Scope::Any,
        why: "discovery and actuation plug into seams below the processes (surge-model, surge-actuate)",
    },
];

/// The dependency graph of the workspace: package name → (kind, dependency name) edges.
struct Graph {
    workspace: BTreeSet<String>,
    /// name → [(dependency name, whether it is a normal dependency)]
    edges: BTreeMap<String, Vec<(String, bool)>>,
}

impl Graph {
    fn from_metadata(m: &Value) -> Graph {
        let names: BTreeMap<&str, &str> = m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let workspace = m["workspace_members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| names[id.as_str().unwrap()].to_owned())
            .collect();
        let mut edges: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for node in m["resolve"]["nodes"].as_array().unwrap() {
            let from = names[node["id"].as_str().unwrap()].to_owned();
            let out = edges.entry(from).or_default();
            for dep in node["deps"].as_array().unwrap() {
                let to = names[dep["pkg"].as_str().unwrap()].to_owned();
                let normal = dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null());
                out.push((to, normal));
            }
        }
        Graph { workspace, edges }
    }

    /// Everything `root` links (normal dependencies, transitively), with the path that reaches each.
    fn linked(&self, root: &str) -> BTreeMap<String, Vec<String>> {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![(root.to_owned(), vec![root.to_owned()])];
        while let Some((n, path)) = stack.pop() {
            for (to, normal) in self.edges.get(&n).into_iter().flatten() {
                if *normal && !seen.contains_key(to) {
                    let mut p = path.clone();
                    p.push(to.clone());
                    seen.insert(to.clone(), p.clone());
                    stack.push((to.clone(), p));
                }
            }
        }
        seen
    }

    /// What `root` reaches in `scope`, each with the path that reaches it.
    fn reached(&self, root: &str, scope: Scope) -> BTreeMap<String, Vec<String>> {
        let mut out = self.linked(root);
        if let Scope::Any = scope {
            for (to, _) in self.edges.get(root).into_iter().flatten() {
                out.entry(to.clone())
                    .or_insert_with(|| vec![root.to_owned(), to.clone()]);
                for (n, mut p) in self.linked(to) {
                    out.entry(n).or_insert_with(|| {
                        p.insert(0, root.to_owned());
                        p
                    });
                }
            }
        }
        out
    }
}

fn forbidden(f: &Forbidden, name: &str) -> bool {
    match f {
        Forbidden::Crates { names, cloud } => {
            names.iter().any(|list| list.contains(&name))
                || (*cloud && CLOUD_PREFIXES.iter().any(|p| name.starts_with(p)))
        }
    }
}

/// Every broken rule, one line each: rule, offending path, why the rule exists.
fn violations(g: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for rule in RULES {
        for subject in rule.subjects {
            assert!(
                g.workspace.contains(*subject),
                "rule {:?} names {subject}, which is not a workspace crate",
                rule.name
            );
            for (dep, path) in g.reached(subject, rule.scope) {
                if forbidden(&rule.forbidden, &dep) {
                    out.push(format!(
                        "{}: {} ({})",
                        rule.name,
                        path.join(" → "),
                        rule.why
                    ));
                }
            }
        }
    }
    // Nothing depends on the binary crate: it only parses arguments and wires.
    for (from, deps) in &g.edges {
        if deps.iter().any(|(to, _)| to == "surge") {
            out.push(format!(
                "nothing depends on the binary: {from} → surge (the binary parses arguments and wires)"
            ));
        }
    }
    // Only the OTLP output depends on opentelemetry* and tonic (gRPC's stack); processes reach them
    // through it: the binary builds OTLP outputs and hands them to the agent as `dyn Output`.
    let is_otlp_stack = |to: &str| to.starts_with("opentelemetry") || to == "tonic";
    for name in &g.workspace {
        if name == "surge-otlp" {
            continue;
        }
        let direct = g
            .edges
            .get(name)
            .into_iter()
            .flatten()
            .any(|(to, normal)| *normal && is_otlp_stack(to));
        if direct {
            out.push(format!(
                "only surge-otlp depends on opentelemetry and tonic: {name} has one as a normal dependency"
            ));
        }
        if ["surge", "surge-tests"].contains(&name.as_str()) {
            continue;
        }
        if let Some((_, path)) = g
            .linked(name)
            .into_iter()
            .find(|(dep, _)| is_otlp_stack(dep))
        {
            out.push(format!(
                "only surge-otlp and the binary link opentelemetry and tonic: {}",
                path.join(" → ")
            ));
        }
    }
    // Only the Kubernetes adapter links kube; the binary reaches it through the adapter. The test crate's
    // library is test infrastructure (kubelet-play drives a real control plane), never part of a process.
    for name in &g.workspace {
        if ["surge-k8s", "surge-tests"].contains(&name.as_str()) {
            continue;
        }
        let direct = g
            .edges
            .get(name)
            .into_iter()
            .flatten()
            .any(|(to, normal)| *normal && CLUSTER_AND_CLOUD.contains(&to.as_str()));
        if direct {
            out.push(format!(
                "only surge-k8s depends on kube: {name} has it as a normal dependency"
            ));
        }
        let linked = g.linked(name);
        if let Some(path) = CLUSTER_AND_CLOUD.iter().find_map(|k| linked.get(*k))
            && !["surge", "surge-tests"].contains(&name.as_str())
        {
            out.push(format!(
                "only surge-k8s and the binary link kube: {}",
                path.join(" → ")
            ));
        }
    }
    // Only the CloudWatch crates depend on the AWS SDK (its build is minutes); processes reach it
    // through them: the binary builds CloudWatch outputs and hands them to the agent as `dyn Output`.
    const AWS_CRATES: &[&str] = &["surge-cloudwatch", "surge-alb"];
    for name in &g.workspace {
        if AWS_CRATES.contains(&name.as_str()) {
            continue;
        }
        let is_aws = |to: &str| to.starts_with("aws-");
        let direct = g
            .edges
            .get(name)
            .into_iter()
            .flatten()
            .any(|(to, normal)| *normal && is_aws(to));
        if direct {
            out.push(format!(
                "only surge-cloudwatch and surge-alb depend on the AWS SDK: {name} has it as a normal dependency"
            ));
        }
        if ["surge", "surge-tests"].contains(&name.as_str()) {
            continue;
        }
        if let Some((_, path)) = g.linked(name).into_iter().find(|(dep, _)| is_aws(dep)) {
            out.push(format!(
                "only surge-cloudwatch, surge-alb and the binary link the AWS SDK: {}",
                path.join(" → ")
            ));
        }
    }
    out
}

fn metadata() -> Value {
    let host =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("-vV")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
            });
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"));
    if let Some(h) = host {
        // The graph this machine builds (no other platform's dependencies to fetch).
        cmd.args(["--filter-platform", &h]);
    }
    let out = cmd.output().expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_workspace_keeps_its_layering_rules() {
    let g = Graph::from_metadata(&metadata());
    let broken = violations(&g);
    assert!(
        broken.is_empty(),
        "layering rules broken:\n{}",
        broken.join("\n")
    );
}

/// The checker itself catches each kind of break (on a copy of the real graph with one edge added), so a
/// green run above means the rules hold, not that the checker sees nothing.
#[test]
fn the_checker_reports_each_kind_of_break() {
    let real = Graph::from_metadata(&metadata());
    let with_edge = |from: &str, to: &str, normal: bool| {
        let mut g = Graph {
            workspace: real.workspace.clone(),
            edges: real.edges.clone(),
        };
        g.edges
            .entry(from.to_owned())
            .or_default()
            .push((to.to_owned(), normal));
        violations(&g)
    };
    let cases: &[(&str, &str, bool, &str)] = &[
        (
            "surge-engine",
            "tokio",
            true,
            "the engine is pure: surge-engine → tokio",
        ),
        (
            "surge-engine",
            "surge-sender",
            true,
            "the engine is pure: surge-engine → surge-sender → ",
        ),
        (
            "surge-promql",
            "aws-sdk-cloudwatch",
            true,
            "do no I/O: surge-promql → aws-sdk-cloudwatch",
        ),
        (
            "surge-agent",
            "surge-cloudwatch",
            true,
            "only surge-cloudwatch, surge-alb and the binary link the AWS SDK: surge-agent → surge-cloudwatch → aws-",
        ),
        (
            "surge-agent",
            "surge-store",
            false,
            "the agent does not depend on the aggregator side",
        ),
        (
            "surge-aggregator",
            "surge-agent",
            true,
            "the aggregator does not depend on the agent",
        ),
        (
            "surge-config",
            "surge-engine",
            false,
            "model, proto and config sit below everything",
        ),
        (
            "surge-k8s",
            "surge-agent",
            true,
            "the Kubernetes adapter straddles neither half",
        ),
        (
            "surge-aggregator",
            "aws-sdk-cloudwatch",
            true,
            "link the AWS SDK: surge-aggregator → aws-sdk-cloudwatch",
        ),
        (
            "surge-benches",
            "surge",
            false,
            "nothing depends on the binary: surge-benches → surge",
        ),
        (
            "surge-autoscaler",
            "kube",
            true,
            "only surge-k8s depends on kube: surge-autoscaler",
        ),
        (
            "surge-aggregator",
            "surge-k8s",
            true,
            "only surge-k8s and the binary link kube: surge-aggregator → surge-k8s",
        ),
        (
            "surge-agent",
            "surge-otlp",
            true,
            "only surge-otlp and the binary link opentelemetry and tonic: surge-agent → surge-otlp → ",
        ),
        (
            "surge-aggregator",
            "tonic",
            true,
            "only surge-otlp depends on opentelemetry and tonic: surge-aggregator",
        ),
    ];
    for (from, to, normal, expect) in cases {
        let v = with_edge(from, to, *normal);
        assert!(
            v.iter().any(|l| l.contains(expect)),
            "adding {from} → {to} should break {expect:?}; got {v:#?}"
        );
    }
}
