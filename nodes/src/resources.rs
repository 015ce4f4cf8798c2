//! Resource amounts (CPU, memory, pod slots) and Kubernetes quantity strings.

use std::fmt;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// CPU in millicores, memory in bytes, and pod slots: what a pod requests and a node offers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u64,
}

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        pods: 0,
    };

    pub fn new(cpu_millis: u64, memory_bytes: u64, pods: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
            pods,
        }
    }

    /// Whether every amount of `self` is at most the same amount of `capacity`.
    pub fn fits_in(&self, capacity: &Resources) -> bool {
        self.cpu_millis <= capacity.cpu_millis
            && self.memory_bytes <= capacity.memory_bytes
            && self.pods <= capacity.pods
    }

    /// `self - other`, each amount floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// `self` taken `n` times.
    pub fn times(&self, n: u64) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_mul(n),
            memory_bytes: self.memory_bytes.saturating_mul(n),
            pods: self.pods.saturating_mul(n),
        }
    }

    /// How many copies of `self` fit in `capacity` (u64::MAX when `self` is zero).
    pub fn copies_in(&self, capacity: &Resources) -> u64 {
        let per = |need: u64, have: u64| have.checked_div(need).unwrap_or(u64::MAX);
        per(self.cpu_millis, capacity.cpu_millis)
            .min(per(self.memory_bytes, capacity.memory_bytes))
            .min(per(self.pods, capacity.pods))
    }

    /// The largest share of `capacity` that `self` takes (CPU, memory or pods), 0 when capacity is 0.
    pub fn dominant_share(&self, capacity: &Resources) -> f64 {
        let share = |need: u64, have: u64| {
            if have == 0 {
                if need == 0 { 0.0 } else { f64::INFINITY }
            } else {
                need as f64 / have as f64
            }
        };
        share(self.cpu_millis, capacity.cpu_millis)
            .max(share(self.memory_bytes, capacity.memory_bytes))
            .max(share(self.pods, capacity.pods))
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            pods: self.pods.saturating_add(o.pods),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {}m, memory {}Mi, pods {}",
            self.cpu_millis,
            self.memory_bytes.div_ceil(MIB),
            self.pods
        )
    }
}

/// Parses a Kubernetes quantity (`500m`, `2`, `1.5`, `128Mi`, `1G`, `1e3`) into its value in base
/// units times `scale` (1000 for CPU millicores, 1 for bytes), rounded up as Kubernetes rounds
/// quantities to their smallest unit.
pub fn parse_quantity(text: &str, scale: u64) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp)
            if !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
        {
            (t, "")
        }
        _ => (number, suffix),
    };
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{text:?} is not a quantity (e.g. 500m, 2, 128Mi, 1Gi)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity (e.g. 500m, 2, 128Mi, 1Gi)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a non-negative quantity"));
    }
    let scaled = value * multiplier * scale as f64;
    // Parsing `0.1` and multiplying loses a hair (0.1 * 1000 = 100.00000000000001): round to 1e-6 of
    // the unit first so exact inputs stay exact, then round up as Kubernetes does.
    let cleaned = (scaled * 1e6).round() / 1e6;
    if cleaned > u64::MAX as f64 / 2.0 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(cleaned.ceil() as u64)
}

/// CPU millicores of a quantity (`250m` → 250, `2` → 2000).
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    parse_quantity(text, 1000)
}

/// Bytes of a quantity (`128Mi` → 134217728).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    parse_quantity(text, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        let cpu = [
            ("500m", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("0.1", 100),
            ("100m", 100),
            ("1e3", 1_000_000),
        ];
        for (text, want) in cpu {
            assert_eq!(parse_cpu(text), Ok(want), "{text}");
        }
        let mem = [
            ("128Mi", 128 * MIB),
            ("1Gi", GIB),
            ("1G", 1_000_000_000),
            ("1000", 1000),
            ("1.5Gi", 3 * GIB / 2),
        ];
        for (text, want) in mem {
            assert_eq!(parse_memory(text), Ok(want), "{text}");
        }
        for bad in ["", "x", "1Zi", "-1", "1.2.3"] {
            assert!(parse_memory(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn copies_and_shares() {
        let pod = Resources::new(500, GIB, 1);
        let node = Resources::new(1900, 3 * GIB + 1, 10);
        assert_eq!(pod.copies_in(&node), 3);
        // Memory is the dominant share: 1 GiB of 3 GiB + 1 byte.
        assert!((pod.dominant_share(&node) - 1.0 / 3.0).abs() < 1e-6);
    }
}
