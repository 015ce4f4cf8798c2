//! One pod in, one target group (or the reason it is not a target) out. Pure: no I/O, no clock.

use std::fmt;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod};
use surge_config::KubernetesSdConfig;
use surge_model::TargetGroup;

/// `prometheus.io/scrape: "true"` opts a pod in.
pub const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// The port to scrape on the pod IP.
pub const PORT_ANNOTATION: &str = "prometheus.io/port";
/// The path to scrape (`__metrics_path__`).
pub const PATH_ANNOTATION: &str = "prometheus.io/path";
/// `http` or `https` (`__scheme__`).
pub const SCHEME_ANNOTATION: &str = "prometheus.io/scheme";
/// `critical` or `standard` (`__meta_surge_tier`; `standard` when absent).
pub const TIER_ANNOTATION: &str = "surge.dev/tier";
/// Container port names scraped when the pod has no port annotation, in this order of preference
/// within each container.
pub const METRICS_PORT_NAMES: [&str; 2] = ["metrics", "http-metrics"];

/// What turns a pod into a target: the node watched and the pod labels copied onto targets.
#[derive(Debug, Clone)]
pub(crate) struct PodRules {
    /// `(pod label, target label)` pairs from `attach_labels`.
    attach: Vec<(String, String)>,
}

impl PodRules {
    pub(crate) fn new(cfg: &KubernetesSdConfig) -> Self {
        PodRules {
            attach: cfg.attached_labels(),
        }
    }
}

/// Why a pod is not a target. The first four are normal states of a pod; the others are mistakes in
/// its annotations, which are worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    NotAnnotated,
    NotRunning(String),
    Deleting,
    NoPodIp,
    NoPort,
    BadPort(String),
    BadPath(String),
    BadScheme(String),
    BadTier(String),
}

impl Skip {
    /// A mistake the pod's owner should hear about, rather than a normal state.
    pub(crate) fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            Skip::BadPort(_) | Skip::BadPath(_) | Skip::BadScheme(_) | Skip::BadTier(_)
        )
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotAnnotated => write!(f, "not annotated {SCRAPE_ANNOTATION}: \"true\""),
            Skip::NotRunning(phase) => write!(f, "phase is {phase:?}, not Running"),
            Skip::Deleting => f.write_str("being deleted"),
            Skip::NoPodIp => f.write_str("no pod IP yet"),
            Skip::NoPort => write!(
                f,
                "no {PORT_ANNOTATION} annotation and no container port named metrics or http-metrics"
            ),
            Skip::BadPort(v) => write!(f, "{PORT_ANNOTATION} {v:?} is not a port (1-65535)"),
            Skip::BadPath(v) => write!(
                f,
                "{PATH_ANNOTATION} {v:?} is not a path (it must start with /)"
            ),
            Skip::BadScheme(v) => write!(f, "{SCHEME_ANNOTATION} {v:?} is not http or https"),
            Skip::BadTier(v) => write!(f, "{TIER_ANNOTATION} {v:?} is not critical or standard"),
        }
    }
}

/// The target group of `pod`: one address, `<pod IP>:<port>`, with its target and meta labels.
pub(crate) fn pod_target(pod: &Pod, rules: &PodRules) -> Result<TargetGroup, Skip> {
    let meta = &pod.metadata;
    let annotations = meta.annotations.as_ref();
    let annotation = |name: &str| annotations.and_then(|a| a.get(name)).map(String::as_str);
    if annotation(SCRAPE_ANNOTATION) != Some("true") {
        return Err(Skip::NotAnnotated);
    }
    if meta.deletion_timestamp.is_some() {
        return Err(Skip::Deleting);
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Err(Skip::NotRunning(phase.to_owned()));
    }
    let ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .ok_or(Skip::NoPodIp)?;
    let containers: &[Container] = pod.spec.as_ref().map_or(&[], |s| &s.containers);

    // The port: the annotation wins; else the first container port with a metrics name.
    let (port, named) = match annotation(PORT_ANNOTATION) {
        Some(v) => {
            let port = v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Skip::BadPort(v.to_owned()))?;
            (port, None)
        }
        None => named_metrics_port(containers).ok_or(Skip::NoPort)?,
    };
    let path = match annotation(PATH_ANNOTATION) {
        Some(p) if !p.starts_with('/') => return Err(Skip::BadPath(p.to_owned())),
        p => p,
    };
    let scheme = match annotation(SCHEME_ANNOTATION) {
        Some(s @ ("http" | "https")) => Some(s),
        Some(s) => return Err(Skip::BadScheme(s.to_owned())),
        None => None,
    };
    let tier = match annotation(TIER_ANNOTATION) {
        None => "standard",
        Some(t @ ("critical" | "standard")) => t,
        Some(t) => return Err(Skip::BadTier(t.to_owned())),
    };

    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let pod_labels = meta.labels.as_ref();

    let mut labels: Vec<(String, String)> = Vec::with_capacity(32);
    let mut set = |k: &str, v: &str| labels.push((k.to_owned(), v.to_owned()));
    set("namespace", namespace);
    set("pod", name);
    set("node", node);
    // The container a port annotation points at, when a declared port matches it; only for meta labels.
    let container = named.or_else(|| container_with_port(containers, port));
    if let Some((c, _)) = named {
        set("container", c.name.as_str());
    }
    for (pod_label, target_label) in &rules.attach {
        if let Some(v) = pod_labels.and_then(|l| l.get(pod_label)) {
            set(target_label, v);
        }
    }
    if let Some(p) = path {
        set("__metrics_path__", p);
    }
    if let Some(s) = scheme {
        set("__scheme__", s);
    }
    set("__meta_surge_tier", tier);
    set("__meta_kubernetes_namespace", namespace);
    set("__meta_kubernetes_pod_name", name);
    set("__meta_kubernetes_pod_ip", ip);
    set("__meta_kubernetes_pod_node_name", node);
    set("__meta_kubernetes_pod_phase", phase);
    set("__meta_kubernetes_pod_ready", ready(pod));
    set(
        "__meta_kubernetes_pod_uid",
        meta.uid.as_deref().unwrap_or_default(),
    );
    set(
        "__meta_kubernetes_pod_host_ip",
        status
            .and_then(|s| s.host_ip.as_deref())
            .unwrap_or_default(),
    );
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        set("__meta_kubernetes_pod_controller_kind", &owner.kind);
        set("__meta_kubernetes_pod_controller_name", &owner.name);
    }
    if let Some((c, p)) = container {
        set("__meta_kubernetes_pod_container_name", &c.name);
        set(
            "__meta_kubernetes_pod_container_port_name",
            p.name.as_deref().unwrap_or_default(),
        );
        set(
            "__meta_kubernetes_pod_container_port_number",
            &p.container_port.to_string(),
        );
        set(
            "__meta_kubernetes_pod_container_port_protocol",
            p.protocol.as_deref().unwrap_or("TCP"),
        );
    }
    for (k, v) in pod_labels.into_iter().flatten() {
        let k = sanitize(k);
        set(&format!("__meta_kubernetes_pod_label_{k}"), v);
        set(&format!("__meta_kubernetes_pod_labelpresent_{k}"), "true");
    }
    for (k, v) in annotations.into_iter().flatten() {
        let k = sanitize(k);
        set(&format!("__meta_kubernetes_pod_annotation_{k}"), v);
        set(
            &format!("__meta_kubernetes_pod_annotationpresent_{k}"),
            "true",
        );
    }

    let address = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    Ok(TargetGroup {
        targets: vec![address],
        labels,
        source: format!("kubernetes pod {namespace}/{name}"),
    })
}

/// The first container port named `metrics` (else `http-metrics`), searching containers in order.
fn named_metrics_port(
    containers: &[Container],
) -> Option<(u16, Option<(&Container, &ContainerPort)>)> {
    METRICS_PORT_NAMES.iter().find_map(|wanted| {
        containers.iter().find_map(|c| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(wanted))
                .and_then(|p| {
                    let port = u16::try_from(p.container_port).ok().filter(|p| *p > 0)?;
                    Some((port, Some((c, p))))
                })
        })
    })
}

/// The container declaring `port`, if any.
fn container_with_port(
    containers: &[Container],
    port: u16,
) -> Option<(&Container, &ContainerPort)> {
    containers.iter().find_map(|c| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.container_port == i32::from(port))
            .map(|p| (c, p))
    })
}

/// The pod's `Ready` condition: `true`, `false` or `unknown`, as Prometheus reports it.
fn ready(pod: &Pod) -> &'static str {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    match status {
        Some("True") => "true",
        Some("False") => "false",
        _ => "unknown",
    }
}

/// Every character outside `[a-zA-Z0-9_]` becomes `_`, as Prometheus does for Kubernetes names.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: map(&[("app", "web"), ("app.kubernetes.io/name", "web-app")]),
                annotations: map(annotations),
                owner_references: Some(vec![OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: "web-6d4".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![
                    Container {
                        name: "sidecar".into(),
                        ports: Some(vec![ContainerPort {
                            name: Some("http-metrics".into()),
                            container_port: 9102,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    Container {
                        name: "app".into(),
                        ports: Some(vec![
                            ContainerPort {
                                name: Some("http".into()),
                                container_port: 8080,
                                protocol: Some("TCP".into()),
                                ..Default::default()
                            },
                            ContainerPort {
                                name: Some("metrics".into()),
                                container_port: 9100,
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("127.0.0.2".into()),
                host_ip: Some("127.0.0.1".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn rules() -> PodRules {
        PodRules::new(&KubernetesSdConfig {
            node_name: "n1".into(),
            attach_labels: vec![
                "app".into(),
                "app.kubernetes.io/name".into(),
                "missing".into(),
            ],
            ..Default::default()
        })
    }

    fn labels(g: &TargetGroup) -> BTreeMap<&str, &str> {
        g.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn annotated_port_path_scheme_and_tier() {
        let p = pod(&[
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "8080"),
            ("prometheus.io/path", "/stats"),
            ("prometheus.io/scheme", "https"),
            ("surge.dev/tier", "critical"),
        ]);
        let g = pod_target(&p, &rules()).unwrap();
        assert_eq!(g.targets, ["127.0.0.2:8080"]);
        assert_eq!(g.source, "kubernetes pod shop/web-1");
        let l = labels(&g);
        let expect: BTreeMap<&str, &str> = [
            ("namespace", "shop"),
            ("pod", "web-1"),
            ("node", "n1"),
            ("app", "web"),
            ("app_kubernetes_io_name", "web-app"),
            ("__metrics_path__", "/stats"),
            ("__scheme__", "https"),
            ("__meta_surge_tier", "critical"),
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_pod_name", "web-1"),
            ("__meta_kubernetes_pod_ip", "127.0.0.2"),
            ("__meta_kubernetes_pod_node_name", "n1"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_ready", "true"),
            ("__meta_kubernetes_pod_uid", "u-1"),
            ("__meta_kubernetes_pod_host_ip", "127.0.0.1"),
            ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
            ("__meta_kubernetes_pod_controller_name", "web-6d4"),
            // Port 8080 is declared by container `app`: meta labels, but no `container` target label.
            ("__meta_kubernetes_pod_container_name", "app"),
            ("__meta_kubernetes_pod_container_port_name", "http"),
            ("__meta_kubernetes_pod_container_port_number", "8080"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_kubernetes_pod_labelpresent_app", "true"),
            (
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "web-app",
            ),
            (
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
                "8080",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_port",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_path",
                "/stats",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_path",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_scheme",
                "https",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_scheme",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotation_surge_dev_tier",
                "critical",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_surge_dev_tier",
                "true",
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(l, expect);
        // No label is set twice.
        assert_eq!(g.labels.len(), expect.len());
    }

    #[test]
    fn named_port_sets_container_and_defaults() {
        let g = pod_target(&pod(&[("prometheus.io/scrape", "true")]), &rules()).unwrap();
        // `metrics` is preferred over `http-metrics`, even in a later container.
        assert_eq!(g.targets, ["127.0.0.2:9100"]);
        let l = labels(&g);
        assert_eq!(l["container"], "app");
        assert_eq!(l["__meta_surge_tier"], "standard");
        assert_eq!(l["__meta_kubernetes_pod_container_port_name"], "metrics");
        assert_eq!(l["__meta_kubernetes_pod_container_port_protocol"], "TCP");
        assert!(
            !l.contains_key("__metrics_path__"),
            "the job's metrics_path applies"
        );
        assert!(!l.contains_key("__scheme__"));

        let mut p = pod(&[("prometheus.io/scrape", "true")]);
        if let Some(spec) = p.spec.as_mut() {
            spec.containers.remove(1);
        }
        let g = pod_target(&p, &rules()).unwrap();
        assert_eq!(g.targets, ["127.0.0.2:9102"]);
        assert_eq!(labels(&g)["container"], "sidecar");
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let mut p = pod(&[
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "80"),
        ]);
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some("fd00::5".into());
        }
        assert_eq!(pod_target(&p, &rules()).unwrap().targets, ["[fd00::5]:80"]);
    }

    #[test]
    fn skipped_pods_say_why() {
        let on = ("prometheus.io/scrape", "true");
        let r = rules();
        let check = |p: Pod, want: Skip| assert_eq!(pod_target(&p, &r), Err(want));

        check(pod(&[]), Skip::NotAnnotated);
        check(pod(&[("prometheus.io/scrape", "True")]), Skip::NotAnnotated);
        check(
            pod(&[("prometheus.io/scrape", "false")]),
            Skip::NotAnnotated,
        );
        for phase in ["Pending", "Succeeded", "Failed"] {
            let mut p = pod(&[on]);
            if let Some(s) = p.status.as_mut() {
                s.phase = Some(phase.into());
            }
            check(p, Skip::NotRunning(phase.into()));
        }
        let mut p = pod(&[on]);
        p.status = None;
        check(p, Skip::NotRunning("Unknown".into()));
        let mut p = pod(&[on]);
        p.metadata.deletion_timestamp = Some(Time(Default::default()));
        check(p, Skip::Deleting);
        let mut p = pod(&[on]);
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = Some(String::new());
        }
        check(p, Skip::NoPodIp);
        let mut p = pod(&[on]);
        if let Some(s) = p.spec.as_mut() {
            s.containers.clear();
        }
        check(p, Skip::NoPort);
        for bad in ["0", "65536", "http", "-1", ""] {
            check(
                pod(&[on, ("prometheus.io/port", bad)]),
                Skip::BadPort(bad.into()),
            );
        }
        check(
            pod(&[on, ("prometheus.io/path", "metrics")]),
            Skip::BadPath("metrics".into()),
        );
        check(
            pod(&[on, ("prometheus.io/scheme", "HTTPS")]),
            Skip::BadScheme("HTTPS".into()),
        );
        check(
            pod(&[on, ("surge.dev/tier", "urgent")]),
            Skip::BadTier("urgent".into()),
        );
        assert!(Skip::BadTier("x".into()).is_misconfiguration());
        assert!(!Skip::NoPort.is_misconfiguration());
        assert_eq!(
            Skip::BadPort("x".into()).to_string(),
            r#"prometheus.io/port "x" is not a port (1-65535)"#
        );
    }

    #[test]
    fn readiness_and_sanitizing() {
        let mut p = pod(&[("prometheus.io/scrape", "true"), ("a.b/c-d", "v")]);
        if let Some(s) = p.status.as_mut() {
            s.conditions = None;
        }
        let g = pod_target(&p, &rules()).unwrap();
        let l = labels(&g);
        assert_eq!(l["__meta_kubernetes_pod_ready"], "unknown");
        assert_eq!(l["__meta_kubernetes_pod_annotation_a_b_c_d"], "v");
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
    }
}
