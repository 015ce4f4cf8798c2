//! The instance-type catalog (shipped as data, loadable from a user's file) and allocatable capacity as
//! Karpenter computes it for EKS nodes.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::requirements::{self as req, CapacityType, Labels};
use crate::resources::{MIB, Resources};
use crate::source::{Document, LoadError, LoadErrors};

/// The catalog shipped with surge: current AWS families in us-east-1, prices a snapshot (see the file).
const EMBEDDED: &str = include_str!("../data/catalog.yaml");

/// Karpenter's default `vmMemoryOverheadPercent`: the share of memory the hypervisor keeps.
pub const VM_MEMORY_OVERHEAD_PERCENT: f64 = 0.075;
/// Karpenter's default hard eviction threshold for memory (`memory.available<100Mi`).
pub const EVICTION_THRESHOLD_MEMORY: u64 = 100 * MIB;

/// One instance type: shape, pod density, where it is offered and what it costs.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceType {
    /// `m7i.large`
    pub name: String,
    /// `m7i` (the part before the dot).
    pub family: String,
    /// `m` (the family's leading letters).
    pub category: String,
    /// `7` (the digits after the category), when the name has them.
    pub generation: String,
    /// `large` (the part after the dot).
    pub size: String,
    pub vcpu: u64,
    pub memory_mib: u64,
    /// ENI-limited max pods (the VPC CNI's pod density).
    pub max_pods: u64,
    /// `amd64` or `arm64`.
    pub arch: String,
    pub zones: Vec<String>,
    /// USD per hour.
    pub on_demand_price: f64,
    pub spot_price: f64,
    /// What the kubelet offers pods (capacity less VM overhead, kube-reserved and eviction threshold),
    /// before DaemonSets.
    pub allocatable: Resources,
    /// `vcpu` and `memory_mib` as label values (`karpenter.k8s.aws/instance-cpu`, `-memory`).
    cpu_label: String,
    memory_label: String,
}

impl InstanceType {
    pub fn price(&self, capacity_type: CapacityType) -> f64 {
        match capacity_type {
            CapacityType::Spot => self.spot_price,
            CapacityType::OnDemand => self.on_demand_price,
        }
    }

    /// Capacity as Karpenter counts it against NodePool limits (vCPU, memory less VM overhead).
    pub fn capacity(&self) -> Resources {
        Resources::new(
            self.vcpu * 1000,
            memory_capacity_mib(self.memory_mib, &self.arch) * MIB,
            self.max_pods,
        )
    }

    /// The value of a well-known instance label (`karpenter.k8s.aws/instance-cpu` → `"2"`); None for
    /// labels an instance type does not decide (zone, capacity type, pool, custom labels).
    pub fn label(&self, key: &str) -> Option<&str> {
        Some(match key {
            req::INSTANCE_TYPE => &self.name,
            req::INSTANCE_FAMILY => &self.family,
            req::INSTANCE_CATEGORY => &self.category,
            req::INSTANCE_GENERATION => &self.generation,
            req::INSTANCE_SIZE => &self.size,
            req::INSTANCE_CPU => &self.cpu_label,
            req::INSTANCE_MEMORY => &self.memory_label,
            req::ARCH => &self.arch,
            req::OS => "linux",
            _ => return None,
        })
    }
}

/// The labels of one offering: an instance type in a zone with a capacity type, launched by a pool.
pub struct OfferingLabels<'a> {
    pub instance_type: &'a InstanceType,
    pub zone: &'a str,
    pub capacity_type: CapacityType,
    pub pool: &'a str,
    /// The pool's template labels and single-valued custom requirements.
    pub extra: &'a std::collections::BTreeMap<String, String>,
}

impl Labels for OfferingLabels<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        match key {
            req::ZONE => Some(self.zone),
            req::CAPACITY_TYPE => Some(self.capacity_type.as_str()),
            req::NODEPOOL => Some(self.pool),
            _ => self
                .instance_type
                .label(key)
                .or_else(|| self.extra.get(key).map(String::as_str)),
        }
    }
}

/// Memory capacity in MiB as Karpenter's AWS provider reports it: Graviton (arm64) keeps 64 MiB of CMA
/// memory, and `vmMemoryOverheadPercent` of the rest is taken off, rounded up to a MiB
/// (karpenter-provider-aws `pkg/providers/instancetype/types.go`, `memory()`).
pub fn memory_capacity_mib(memory_mib: u64, arch: &str) -> u64 {
    let mib = if arch == "arm64" {
        memory_mib.saturating_sub(64)
    } else {
        memory_mib
    };
    let overhead = (mib as f64 * VM_MEMORY_OVERHEAD_PERCENT).ceil() as u64;
    mib - overhead.min(mib)
}

/// kube-reserved CPU in millicores for `vcpu` cores: 6 % of the first core, 1 % of the second, 0.5 % of
/// cores 3-4 and 0.25 % above, each range's share truncated to a millicore (karpenter-provider-aws
/// `kubeReservedResources`).
pub fn kube_reserved_cpu_millis(vcpu: u64) -> u64 {
    const RANGES: [(u64, u64, f64); 4] = [
        (0, 1000, 0.06),
        (1000, 2000, 0.01),
        (2000, 4000, 0.005),
        (4000, 1 << 31, 0.0025),
    ];
    let cpu = vcpu * 1000;
    RANGES
        .iter()
        .filter(|(start, _, _)| cpu >= *start)
        .map(|&(start, end, pct)| {
            let r = if cpu < end { cpu - start } else { end - start };
            (r as f64 * pct) as u64
        })
        .sum()
}

/// kube-reserved memory in MiB: `11 MiB × max pods + 255 MiB`.
pub fn kube_reserved_memory_mib(max_pods: u64) -> u64 {
    11 * max_pods + 255
}

/// Allocatable for an EKS node of this shape: capacity (memory less VM overhead) minus kube-reserved
/// (CPU by core ranges, memory by max pods) minus the 100 Mi hard eviction threshold; no system-reserved
/// (Karpenter's default is none).
pub fn allocatable(vcpu: u64, memory_mib: u64, max_pods: u64, arch: &str) -> Resources {
    let cpu = (vcpu * 1000).saturating_sub(kube_reserved_cpu_millis(vcpu));
    let memory = (memory_capacity_mib(memory_mib, arch) * MIB)
        .saturating_sub(kube_reserved_memory_mib(max_pods) * MIB)
        .saturating_sub(EVICTION_THRESHOLD_MEMORY);
    Resources::new(cpu, memory, max_pods)
}

/// A set of instance types with prices for one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Catalog {
    pub region: String,
    /// When the prices were taken (free text, e.g. `2025`).
    pub prices_as_of: String,
    pub types: Vec<InstanceType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCatalog {
    region: String,
    #[serde(default)]
    prices_as_of: String,
    instance_types: Vec<RawInstanceType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInstanceType {
    name: String,
    vcpu: u64,
    #[serde(rename = "memoryMiB")]
    memory_mib: u64,
    max_pods: u64,
    arch: String,
    zones: Vec<String>,
    on_demand_price: Option<f64>,
    spot_price: Option<f64>,
}

impl Catalog {
    /// The catalog shipped with surge.
    pub fn embedded() -> Catalog {
        // The embedded file is tested to load (catalog::tests): failing here is a build defect.
        #[allow(clippy::expect_used)]
        Catalog::from_yaml(EMBEDDED, "embedded catalog").expect("the embedded catalog loads")
    }

    /// Reads a catalog; an entry with a missing or non-positive price, zero capacity, an unknown
    /// architecture, no zones or a duplicate name is refused, naming the entry.
    pub fn from_yaml(text: &str, source: &str) -> Result<Catalog, LoadErrors> {
        let doc = Document::index(text, source)?;
        let raw: RawCatalog = doc.parse(text)?;
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        let mut types = Vec::new();
        for (i, t) in raw.instance_types.into_iter().enumerate() {
            let path = format!("instanceTypes[{i}]");
            match check_entry(&doc, &path, t, &mut seen) {
                Ok(t) => types.push(t),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if types.is_empty() && errors.is_empty() {
            errors.push(doc.error("instanceTypes", "the catalog lists no instance types"));
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Ok(Catalog {
            region: raw.region,
            prices_as_of: raw.prices_as_of,
            types,
        })
    }

    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.types.iter().find(|t| t.name == name)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }
}

fn check_entry(
    doc: &Document,
    path: &str,
    t: RawInstanceType,
    seen: &mut BTreeSet<String>,
) -> Result<InstanceType, Vec<LoadError>> {
    let mut errors = Vec::new();
    let name = t.name.clone();
    let mut err = |field: &str, reason: String| {
        errors.push(doc.error(&format!("{path}.{field}"), format!("{name}: {reason}")))
    };
    let (family, size) = match name.split_once('.') {
        Some((f, s)) if !f.is_empty() && !s.is_empty() => (f.to_owned(), s.to_owned()),
        _ => {
            err(
                "name",
                "not an instance type name (family.size, e.g. m7i.large)".to_owned(),
            );
            (String::new(), String::new())
        }
    };
    if !seen.insert(name.clone()) {
        err("name", "listed twice".to_owned());
    }
    for (field, v) in [
        ("vcpu", t.vcpu),
        ("memoryMiB", t.memory_mib),
        ("maxPods", t.max_pods),
    ] {
        if v == 0 {
            err(field, "zero capacity".to_owned());
        }
    }
    if !["amd64", "arm64"].contains(&t.arch.as_str()) {
        err(
            "arch",
            format!("architecture {:?} is not amd64 or arm64", t.arch),
        );
    }
    if t.zones.is_empty() {
        err("zones", "offered in no zone".to_owned());
    }
    let mut price = |field: &str, p: Option<f64>| match p {
        Some(p) if p.is_finite() && p > 0.0 => p,
        Some(p) => {
            err(field, format!("price {p} is not a positive number"));
            0.0
        }
        None => {
            err(field, "no price".to_owned());
            0.0
        }
    };
    let on_demand_price = price("onDemandPrice", t.on_demand_price);
    let spot_price = price("spotPrice", t.spot_price);
    let alloc = allocatable(t.vcpu, t.memory_mib, t.max_pods, &t.arch);
    if errors.is_empty() && (alloc.cpu_millis == 0 || alloc.memory_bytes == 0) {
        errors.push(doc.error(
            path,
            format!(
                "{name}: no allocatable capacity left after kube-reserved and eviction threshold"
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let category: String = family
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let generation: String = family[category.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Ok(InstanceType {
        name,
        family,
        category,
        generation,
        size,
        vcpu: t.vcpu,
        memory_mib: t.memory_mib,
        max_pods: t.max_pods,
        arch: t.arch,
        zones: t.zones,
        on_demand_price,
        spot_price,
        allocatable: alloc,
        cpu_label: t.vcpu.to_string(),
        memory_label: t.memory_mib.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_loads_with_the_families_it_promises() {
        let c = Catalog::from_yaml(EMBEDDED, "embedded").unwrap();
        for family in [
            "m7i", "m7g", "c7i", "c7g", "r7i", "r7g", "m6i", "c6i", "r6i", "t3", "m5",
        ] {
            assert!(
                c.types.iter().filter(|t| t.family == family).count() >= 3,
                "{family}"
            );
        }
        let m7g = c.get("m7g.large").unwrap();
        assert_eq!(
            (
                m7g.category.as_str(),
                m7g.generation.as_str(),
                m7g.size.as_str()
            ),
            ("m", "7", "large")
        );
        assert_eq!(m7g.label(req::INSTANCE_MEMORY), Some("8192"));
        assert!(c.types.iter().all(|t| t.spot_price < t.on_demand_price));
    }

    /// kube-reserved as karpenter-provider-aws computes it; expected values by hand from the formula,
    /// and the m5.xlarge / t3.large cases of `pkg/providers/instancetype/suite_test.go` at
    /// 1d927085dd81a9df9301e613f371dac5b4d16bfe ("80m", "893Mi"; "640Mi" = 11 × 35 + 255).
    #[test]
    fn kube_reserved_follows_the_core_ranges() {
        // 1 core: 6 % of 1000m = 60. 2: + 1 % of 1000m = 70. 4: + 0.5 % of 2000m = 80.
        // 8: + 0.25 % of 4000m = 90. 16: + 0.25 % of 12000m = 30 → 110. 64: 80 + 150 = 230.
        for (vcpu, want) in [
            (1, 60),
            (2, 70),
            (4, 80),
            (8, 90),
            (16, 110),
            (48, 190),
            (64, 230),
            (96, 310),
        ] {
            assert_eq!(kube_reserved_cpu_millis(vcpu), want, "{vcpu} vCPU");
        }
        assert_eq!(kube_reserved_memory_mib(58), 893, "m5.xlarge (58 ENI pods)");
        assert_eq!(kube_reserved_memory_mib(35), 640, "t3.large (35 ENI pods)");
        assert_eq!(kube_reserved_memory_mib(110), 1465, "110 pods");
    }

    #[test]
    fn allocatable_is_capacity_less_overheads() {
        // m5.xlarge: 4 vCPU, 16384 MiB, 58 pods, amd64.
        // memory capacity: 16384 - ceil(16384 × 0.075 = 1228.8) = 16384 - 1229 = 15155 MiB
        // allocatable: 15155 - 893 - 100 = 14162 MiB; CPU 4000 - 80 = 3920m.
        assert_eq!(
            allocatable(4, 16384, 58, "amd64"),
            Resources::new(3920, 14162 * MIB, 58)
        );
        // m7g.large: 2 vCPU, 8192 MiB, 29 pods, arm64: 8192 - 64 = 8128; ceil(8128 × 0.075 = 609.6) = 610
        // → 7518; 7518 - (11 × 29 + 255 = 574) - 100 = 6844 MiB; CPU 2000 - 70 = 1930m.
        assert_eq!(
            allocatable(2, 8192, 29, "arm64"),
            Resources::new(1930, 6844 * MIB, 29)
        );
        // t3.micro: 2 vCPU, 1024 MiB, 4 pods: 1024 - 77 = 947; 947 - 299 - 100 = 548 MiB.
        assert_eq!(
            allocatable(2, 1024, 4, "amd64"),
            Resources::new(1930, 548 * MIB, 4)
        );
        let c = Catalog::embedded();
        assert_eq!(
            c.get("m5.xlarge").unwrap().allocatable,
            Resources::new(3920, 14162 * MIB, 58)
        );
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let text = "region: us-east-1\ninstanceTypes:\n  - {name: m7i.large, vcpu: 2, memoryMiB: 8192, maxPods: 29, arch: amd64, zones: [a], onDemandPrice: 0.1}\n  - {name: x9.huge, vcpu: 0, memoryMiB: 8192, maxPods: 29, arch: amd64, zones: [a], onDemandPrice: 0.1, spotPrice: 0.05}\n";
        let errs = Catalog::from_yaml(text, "cat.yaml").unwrap_err();
        let lines: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            lines,
            [
                "cat.yaml:3:5: instanceTypes[0].spotPrice: m7i.large: no price",
                "cat.yaml:4:21: instanceTypes[1].vcpu: x9.huge: zero capacity",
            ]
        );
        let typo = "region: r\ninstanceTypes:\n  - name: a.b\n    vcpus: 2\n";
        let e = Catalog::from_yaml(typo, "t.yaml").unwrap_err();
        assert_eq!(e.0[0].path, "instanceTypes[0].vcpus");
        assert_eq!(e.0[0].line, Some(4));
    }
}
