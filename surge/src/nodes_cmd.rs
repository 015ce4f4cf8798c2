//! `surge nodes plan`: the one-shot planner for a batch of pending pods, and `surge simulate` on a node
//! scenario (`kind: NodeScenario`). The decisions are `surge-nodes`' pure functions; this reads files
//! and prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use surge_nodes::{Catalog, NodePool, NodeScenario, NodeStep, ProvisionInput, plan, replay};

use crate::Output;

fn read(path: &Path, what: &str) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("{}: cannot read the {what}: {e}", path.display());
        ExitCode::FAILURE
    })
}

fn catalog(path: Option<&Path>) -> Result<Catalog, ExitCode> {
    let Some(path) = path else {
        return Ok(Catalog::embedded());
    };
    let text = read(path, "catalog")?;
    Catalog::from_yaml(&text, &path.display().to_string()).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

fn finish(printed: std::io::Result<()>, what: &str) -> ExitCode {
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Plans nodes for the pods of `pods` (Pods, PodTemplates, or Deployments/StatefulSets/ReplicaSets
/// standing for `spec.replicas` pods) from the NodePools of `pools`, over `catalog` or the embedded
/// one; prints the plan as JSON (`{"nodes":[{"name","instance_type","capacity_type","pods"}...],
/// "unschedulable":[...],"cost_per_hour":...}`). Exit 1 on a bad file, 2 when a pod fits no pool.
pub fn plan_main(pods: &Path, pools: &Path, catalog_path: Option<&Path>) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let catalog = catalog(catalog_path)?;
        let pools_text = read(pools, "NodePools")?;
        let pools =
            NodePool::all_from_yaml(&pools_text, &pools.display().to_string()).map_err(|e| {
                eprintln!("{e}");
                ExitCode::FAILURE
            })?;
        let pods_text = read(pods, "pods")?;
        let pods = surge_nodes::pods_from_k8s_yaml(&pods_text, &pods.display().to_string())
            .map_err(|e| {
                eprintln!("{e}");
                ExitCode::FAILURE
            })?;
        let decided = plan(&ProvisionInput {
            catalog: &catalog,
            pools: &pools,
            pods: &pods,
            existing: &[],
            in_flight: &[],
            daemonsets: &[],
            unavailable: &[],
        });
        let json = serde_json::json!({
            "nodes": decided.nodes,
            "unschedulable": decided.unschedulable,
            "cost_per_hour": decided.cost_per_hour(),
        });
        let mut out = std::io::stdout().lock();
        let printed = serde_json::to_writer_pretty(&mut out, &json)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out));
        let code = finish(printed, "surge nodes plan");
        if code == ExitCode::SUCCESS && !decided.unschedulable.is_empty() {
            return Ok(ExitCode::from(2));
        }
        Ok(code)
    };
    run().unwrap_or_else(|code| code)
}

/// `surge simulate` on a node scenario: one line (or JSON object with a `nodes` array) per step.
pub fn simulate_main(path: &Path, text: &str, output: Output) -> ExitCode {
    let scenario = match NodeScenario::from_yaml(text, &path.display().to_string()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let steps = replay(&scenario, &Catalog::embedded());
    let printed = match output {
        Output::Json => print_json(&steps),
        Output::Table => print_table(&steps),
    };
    finish(printed, "surge simulate")
}

fn print_json(steps: &[NodeStep]) -> std::io::Result<()> {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "at": s.at,
                "replicas": s.replicas,
                "nodes": s.launches,
                "deletions": s.deletions,
                "node_count": s.nodes,
                "cost_per_hour": s.cost_per_hour,
                "new_pods": s.new_pods,
                "wait_ahead_mean_s": s.wait_ahead_mean,
                "wait_ahead_max_s": s.wait_ahead_max,
                "wait_pending_mean_s": s.wait_pending_mean,
                "wait_pending_max_s": s.wait_pending_max,
                "unschedulable": s.unschedulable,
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "steps": steps }))?;
    writeln!(out)
}

fn print_table(steps: &[NodeStep]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>6}  {:<28} {:>6} {:>8} {:>9}  {:>15}  {:>15}  changes",
        "t(s)", "replicas", "nodes", "$/h", "new pods", "wait ahead", "wait pending"
    )?;
    for s in steps {
        let replicas: Vec<String> = s.replicas.iter().map(|(w, n)| format!("{w}={n}")).collect();
        let mut changes: Vec<String> = s
            .launches
            .iter()
            .map(|l| format!("+{} {} ({} pods)", l.instance_type, l.capacity_type, l.pods))
            .collect();
        changes.extend(
            s.deletions
                .iter()
                .map(|d| format!("-{} {} ({})", d.name, d.instance_type, d.action)),
        );
        if s.unschedulable > 0 {
            changes.push(format!("{} pods unschedulable", s.unschedulable));
        }
        writeln!(
            out,
            "{:>6}  {:<28} {:>6} {:>8.4} {:>9}  {:>6.1}s / {:>3}s  {:>6.1}s / {:>3}s  {}",
            s.at,
            replicas.join(" "),
            s.nodes,
            s.cost_per_hour,
            s.new_pods,
            s.wait_ahead_mean,
            s.wait_ahead_max,
            s.wait_pending_mean,
            s.wait_pending_max,
            changes.join(", ")
        )?;
    }
    Ok(())
}

/// `aggregator.nodes`: reads the NodePools and the catalog, starts node actuation on `kube`'s client
/// (the same Lease leader acts) and turns node decisions on in `autoscaler`. Without Kubernetes
/// actuation (no policy in `scale` mode) there is no cluster to read: a warning, and no node decisions.
pub async fn start_node_decisions(
    cfg: &surge_config::NodesConfig,
    autoscaler: &surge_autoscaler::Autoscaler,
    kube: Option<&std::sync::Arc<surge_k8s::actuator::KubeActuator>>,
    registry: &mut prometheus_client::registry::Registry,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let path = &cfg.node_pools_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("aggregator.nodes.node_pools_file: {}: {e}", path.display())
    })?;
    let pools = NodePool::all_from_yaml(&text, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("aggregator.nodes.node_pools_file: {e}"))?;
    let catalog = match &cfg.catalog_file {
        None => Catalog::embedded(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                anyhow::anyhow!("aggregator.nodes.catalog_file: {}: {e}", p.display())
            })?;
            Catalog::from_yaml(&text, &p.display().to_string())
                .map_err(|e| anyhow::anyhow!("aggregator.nodes.catalog_file: {e}"))?
        }
    };
    let headroom = cfg.headroom.as_ref().map(headroom_policy).transpose()?;
    let Some(kube) = kube else {
        tracing::warn!(
            "aggregator.nodes is set but no policy actuates on Kubernetes (mode: scale): no node decisions"
        );
        return Ok(());
    };
    let actuator_cfg = surge_k8s::nodes::NodeActuatorConfig {
        launch_timeout: cfg.launch_timeout,
        ..Default::default()
    };
    let nodes = surge_k8s::nodes::NodeActuator::start(
        kube.client().clone(),
        kube.leader().clone(),
        actuator_cfg,
        pools.clone(),
        registry,
        std::time::Duration::from_secs(10),
        cancel,
    )
    .await;
    kube.set_nodes(nodes);
    autoscaler.set_node_decisions(surge_autoscaler::NodeDecisions {
        pools,
        catalog,
        daemonsets: Vec::new(),
        interval_ms: i64::try_from(cfg.interval.as_millis()).unwrap_or(i64::MAX),
        headroom,
    });
    Ok(())
}

/// `aggregator.nodes.headroom` as the engine takes it; a request that is not a quantity is refused
/// with its field.
fn headroom_policy(
    h: &surge_config::HeadroomConfig,
) -> anyhow::Result<surge_autoscaler::HeadroomPolicy> {
    let cpu = surge_nodes::parse_cpu(&h.cpu).map_err(|e| {
        anyhow::anyhow!(
            "aggregator.nodes.headroom.cpu: {:?} is not a CPU quantity (e.g. 500m, 2): {e}",
            h.cpu
        )
    })?;
    let memory = surge_nodes::parse_memory(&h.memory).map_err(|e| {
        anyhow::anyhow!("aggregator.nodes.headroom.memory: {:?} is not a memory quantity (e.g. 512Mi, 1Gi): {e}", h.memory)
    })?;
    Ok(surge_autoscaler::HeadroomPolicy {
        name: h.name.clone(),
        namespace: h.namespace.clone(),
        chunk: surge_nodes::Pod::new(&format!("{}/{}", h.namespace, h.name), cpu, memory),
        min_replicas: h.replicas,
        window_ms: i64::try_from(h.window.as_millis()).unwrap_or(i64::MAX),
    })
}
