//! Everything that talks to the Kubernetes API server, behind the `kube` crate.
//!
//! Architecture invariant: only this crate (and the binary that wires it) depends on `kube`; the agent,
//! aggregator and engine stay buildable and testable without it.
