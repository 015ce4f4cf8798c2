//! Everything that talks to the Kubernetes API server, behind the `kube` crate.
//!
//! Architecture invariant: only this crate (and the binary that wires it) depends on `kube`; the agent,
//! aggregator and engine stay buildable and testable without it.
//!
//! - [`auth`]: kube-apiserver's front-proxy CA for the metrics APIs (`requestheader.from_cluster`).
//! - [`discovery`]: the agent's own-node pod discovery (`kubernetes_sd_configs`).
//! - [`endpoints`]: the ready endpoints of a Service (`remote_write[].kubernetes_endpoints`).
//! - [`lease`]: leader election with a `coordination.k8s.io/v1` Lease (only the leader actuates).
//! - [`nodes`]: node decisions on the cluster: NodeClaims created and deleted, the headroom Deployment.
//! - [`scale`]: the `/scale` subresource of a workload: cached reads, serialized patches, Events.
//! - [`token_review`]: bearer tokens checked with a TokenReview (the aggregator's write authentication).
//! - [`actuator`]: [`scale::KubeActuator`], the engine's `Actuator` on a real cluster.

pub mod actuator;
pub mod auth;
pub mod discovery;
pub mod endpoints;
pub mod lease;
pub mod nodes;
pub mod scale;
pub mod token_review;
