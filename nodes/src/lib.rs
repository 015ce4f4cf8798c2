//! surge's node decisions, as pure functions: which nodes to launch for pending pods and which to
//! remove or replace, with Karpenter v1's semantics and a cheaper packing.
//!
//! ```text
//! NodePool YAML ──NodePool::from_yaml──▶ NodePool ─┐
//! catalog YAML ───Catalog::from_yaml───▶ Catalog ──┼─▶ plan(&ProvisionInput) ──▶ Plan
//! pods, nodes, in-flight claims, DaemonSets ───────┤
//!                                                  └─▶ consolidate(&ConsolidationInput, now) ──▶ [Disruption]
//! ```
//!
//! Architecture invariant: no I/O, no clock, no runtime. Time is an argument (`now`), files are text
//! passed in, and the decisions are data; creating NodeClaims or deleting nodes is the actuator's job.

mod ahead;
mod buffer;
mod catalog;
mod claim;
mod consolidate;
pub mod cron;
mod nodepool;
mod packing;
mod pod;
mod provision;
pub mod requirements;
mod resources;
mod source;
mod template;
mod timeline;

pub use ahead::{ScaleUp, plan_ahead};
pub use buffer::{
    ACTIVE_CAPACITY, BufferLimits, BufferSource, CapacityBuffer, Headroom, PAUSE_IMAGE,
    PAUSE_PRIORITY, PAUSE_PRIORITY_CLASS, ScalableRef, limit_replicas, percentage_replicas,
};
pub use catalog::{
    Catalog, EVICTION_THRESHOLD_MEMORY, InstanceType, OfferingLabels, VM_MEMORY_OVERHEAD_PERCENT,
    allocatable, kube_reserved_cpu_millis, kube_reserved_memory_mib, memory_capacity_mib,
};
pub use consolidate::{
    Action, ClusterNode, ConsolidationInput, Disruption, MIN_SPOT_TO_SPOT_TYPES, consolidate,
};
pub use nodepool::{
    Budget, BudgetNodes, ConsolidationPolicy, Disruption as PoolDisruption, DisruptionReason,
    Limits, NodeClassRef, NodePool, parse_duration,
};
pub use pod::{Pod, Taint, TaintEffect, Toleration, TolerationOperator};
pub use provision::{
    Binding, ExistingNode, Plan, PlannedNode, ProvisionInput, Strategy, Unavailable, Unschedulable,
    plan, plan_with,
};
pub use requirements::{CapacityType, Operator, Requirement};
pub use resources::{GIB, MIB, Resources, parse_cpu, parse_memory};
pub use source::{LoadError, LoadErrors};
pub use template::pods_from_k8s_yaml;
pub use timeline::{Deletion, Launch, NodeScenario, NodeStep, replay};
