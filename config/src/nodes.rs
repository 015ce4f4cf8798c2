//! The `aggregator.nodes:` section: node decisions with the pod decisions (capacity before Pending).
//!
//! ```yaml
//! aggregator:
//!   nodes:
//!     node_pools_file: /etc/surge/nodepools.yaml   # karpenter.sh/v1 NodePools
//!     catalog_file: /etc/surge/catalog.yaml        # optional: the embedded AWS catalog otherwise
//!     interval: 5s
//!     launch_timeout: 15m
//!     headroom:                                    # optional: spare capacity kept warm
//!       namespace: default
//!       cpu: 500m
//!       memory: 1Gi
//!       replicas: 2
//!       window: 10m
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// When a policy (in `scale` or `hpa` mode) decides to add replicas, plan the nodes its new pods need
/// from the NodePools and the catalog and create Karpenter `NodeClaim`s at once (Lease leader only);
/// consolidation deletes the claims of nodes no longer needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesConfig {
    /// Turns node decisions off without removing the section. Default `true`.
    pub enabled: bool,
    /// A YAML stream of `karpenter.sh/v1` NodePools (required).
    pub node_pools_file: PathBuf,
    /// An instance-type catalog; absent: the catalog shipped with surge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<PathBuf>,
    /// How often Pending pods nothing covers are planned for and consolidation runs (scale-ups
    /// never wait for it). Default `5s`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A NodeClaim that is not a Ready node after this long is deleted and its offering avoided, so
    /// another type or capacity type is tried (Karpenter's registration TTL). Default `15m`.
    #[serde(with = "duration")]
    pub launch_timeout: Duration,
    /// Spare capacity kept warm as pause pods at a negative priority (any real pod preempts them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom: Option<HeadroomConfig>,
}

/// `aggregator.nodes.headroom`: a pause-pod Deployment `namespace/name` (and the PriorityClass
/// `surge-headroom`, value -10) sized to `replicas` pods of `cpu` and `memory`, or to the largest
/// scale-up (in pods) of the last `window` when larger. The Lease leader applies it when its size
/// changes; its price is `surge_headroom_cost_usd_per_hour` and in `/api/v1/decisions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadroomConfig {
    /// The pause Deployment's name. Default `surge-headroom`.
    pub name: String,
    /// Its namespace. Default `default`.
    pub namespace: String,
    /// One pause pod's CPU request, as Kubernetes writes it (`500m`, `2`). Default `1`.
    pub cpu: String,
    /// One pause pod's memory request (`512Mi`, `1Gi`). Default `1Gi`.
    pub memory: String,
    /// Pause pods kept at least. Default 1.
    pub replicas: u32,
    /// How far back scale-ups raise the size; `0s`: `replicas` alone. Default `10m`.
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for HeadroomConfig {
    fn default() -> Self {
        HeadroomConfig {
            name: "surge-headroom".into(),
            namespace: "default".into(),
            cpu: "1".into(),
            memory: "1Gi".into(),
            replicas: 1,
            window: Duration::from_secs(600),
        }
    }
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            enabled: true,
            node_pools_file: PathBuf::new(),
            catalog_file: None,
            interval: Duration::from_secs(5),
            launch_timeout: Duration::from_secs(15 * 60),
            headroom: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_nodes_section_reads_with_defaults() {
        let yaml = "aggregator:\n  nodes:\n    node_pools_file: pools.yaml\n    interval: 2s\n";
        let c = crate::load_str(yaml, "surge.yaml", &crate::MapEnv::default()).unwrap();
        let n = c.aggregator.nodes.unwrap();
        assert!(n.enabled);
        assert_eq!(n.node_pools_file.to_str(), Some("pools.yaml"));
        assert_eq!(n.catalog_file, None);
        assert_eq!(n.interval, Duration::from_secs(2));
        assert_eq!(n.launch_timeout, Duration::from_secs(900));
        assert_eq!(n.headroom, None);
        let with = "aggregator:\n  nodes:\n    node_pools_file: p.yaml\n    headroom:\n      namespace: shop\n      cpu: 500m\n      replicas: 3\n";
        let h = crate::load_str(with, "surge.yaml", &crate::MapEnv::default())
            .unwrap()
            .aggregator
            .nodes
            .unwrap()
            .headroom
            .unwrap();
        assert_eq!(
            (
                h.name.as_str(),
                h.namespace.as_str(),
                h.cpu.as_str(),
                h.memory.as_str()
            ),
            ("surge-headroom", "shop", "500m", "1Gi")
        );
        assert_eq!((h.replicas, h.window), (3, Duration::from_secs(600)));
        let bad = "aggregator:\n  nodes:\n    node_pool_file: pools.yaml\n";
        assert!(crate::load_str(bad, "surge.yaml", &crate::MapEnv::default()).is_err());
    }
}
