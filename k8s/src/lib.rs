//! Everything that talks to the Kubernetes API server, behind the `kube` crate.
//!
//! Architecture invariant: only this crate (and the binary that wires it) depends on `kube`; the agent,
//! aggregator and engine stay buildable and testable without it.
//!
//! - [`discovery`]: the agent's own-node pod discovery (`kubernetes_sd_configs`).
//! - [`lease`]: leader election with a `coordination.k8s.io/v1` Lease (only the leader actuates).
//! - [`scale`]: the `/scale` subresource of a workload: cached reads, serialized patches, Events.
//! - [`actuator`]: [`scale::KubeActuator`], the engine's `Actuator` on a real cluster.

pub mod actuator;
pub mod discovery;
pub mod lease;
pub mod scale;
