//! Prometheus relabeling: `relabel_configs` (targets), `metric_relabel_configs` (scraped series) and
//! `write_relabel_configs` (series leaving for one destination).
//!
//! A port of Prometheus's `model/relabel/relabel.go`, rule for rule. The rules arrive compiled and
//! validated from `surge-config`; [`Relabeler::new`] re-checks them so a rule built in code cannot
//! misbehave, and keeps the compiled regexes (cloning a `Regex` shares it).

use md5::{Digest, Md5};
use regex::Regex;
use surge_config::{RelabelAction, RelabelConfig};
use surge_model::{Label, Labels, LabelsBuilder, is_valid_label_name};

/// A list of relabeling rules, ready to apply. The default has no rules and keeps everything unchanged.
#[derive(Debug, Clone, Default)]
pub struct Relabeler {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    config: RelabelConfig,
    regex: Regex,
}

/// A rule that [`Relabeler::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelabelError {
    /// The rule at `index` fails the checks config loading applies; `field` is relative to the rule
    /// (empty for the rule as a whole).
    #[error("relabel rule [{index}]{}: {message}", if .field.is_empty() { String::new() } else { format!(".{}", .field) })]
    InvalidRule {
        index: usize,
        field: String,
        message: String,
    },
}

impl Relabeler {
    /// Prepares `rules`, applied in order.
    pub fn new(rules: &[RelabelConfig]) -> Result<Self, RelabelError> {
        let mut out = Vec::with_capacity(rules.len());
        for (index, config) in rules.iter().enumerate() {
            if let Some(p) = config.problems().into_iter().next() {
                return Err(RelabelError::InvalidRule {
                    index,
                    field: p.field.to_string(),
                    message: p.message,
                });
            }
            // `problems` covers a regex that does not compile; this is the same check, kept total.
            let regex = config
                .regex
                .compiled()
                .map_err(|_| RelabelError::InvalidRule {
                    index,
                    field: "regex".to_owned(),
                    message: format!("{:?} does not compile", config.regex.as_str()),
                })?
                .clone();
            out.push(Rule {
                config: config.clone(),
                regex,
            });
        }
        Ok(Relabeler { rules: out })
    }

    /// Whether there are no rules (everything passes unchanged).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Applies the rules to `labels` in order. Returns false as soon as a rule drops the target or
    /// series; `labels` is then left half-processed and should be discarded.
    pub fn process(&self, labels: &mut LabelsBuilder) -> bool {
        self.rules.iter().all(|rule| rule.apply(labels))
    }

    /// [`Self::process`] on a finished label set: `None` when dropped.
    pub fn process_labels(&self, labels: &Labels) -> Option<Labels> {
        if self.rules.is_empty() {
            return Some(labels.clone());
        }
        let mut b = labels.to_builder();
        self.process(&mut b).then(|| b.build())
    }
}

impl Rule {
    /// One rule, as Prometheus's `relabel()`; false drops.
    fn apply(&self, lb: &mut LabelsBuilder) -> bool {
        let c = &self.config;
        let val = joined_source_values(lb, &c.source_labels, &c.separator);
        match c.action {
            RelabelAction::Drop => {
                if self.regex.is_match(&val) {
                    return false;
                }
            }
            RelabelAction::Keep => {
                if !self.regex.is_match(&val) {
                    return false;
                }
            }
            RelabelAction::DropEqual => {
                if lb.get(&c.target_label).unwrap_or("") == val {
                    return false;
                }
            }
            RelabelAction::KeepEqual => {
                if lb.get(&c.target_label).unwrap_or("") != val {
                    return false;
                }
            }
            RelabelAction::Replace => self.replace(lb, &val),
            RelabelAction::Lowercase => {
                lb.set(c.target_label.as_str(), val.to_lowercase());
            }
            RelabelAction::Uppercase => {
                lb.set(c.target_label.as_str(), val.to_uppercase());
            }
            RelabelAction::HashMod => {
                let m = hash_mod(&val, c.modulus);
                lb.set(c.target_label.as_str(), m.to_string());
            }
            RelabelAction::LabelMap => {
                // Iterate over a snapshot: labels set here must not be matched again in this pass.
                let snapshot: Vec<Label> = lb.iter().cloned().collect();
                for l in snapshot {
                    if self.regex.is_match(&l.name) {
                        let name = self.regex.replace(&l.name, c.replacement.as_str());
                        // Prometheus sets whatever name results; an empty name cannot be a label at all.
                        if !name.is_empty() {
                            lb.set(name.into_owned(), l.value.clone());
                        }
                    }
                }
            }
            RelabelAction::LabelDrop => {
                lb.retain(|l| !self.regex.is_match(&l.name));
            }
            RelabelAction::LabelKeep => {
                lb.retain(|l| self.regex.is_match(&l.name));
            }
        }
        true
    }

    fn replace(&self, lb: &mut LabelsBuilder, val: &str) {
        let c = &self.config;
        // Prometheus's fast path for adding or deleting a fixed label; same result as the slow path.
        if val.is_empty()
            && c.regex.is_default()
            && !c.target_label.contains('$')
            && !c.replacement.contains('$')
        {
            lb.set(c.target_label.as_str(), c.replacement.as_str());
            return;
        }
        // No match: no replacement takes place.
        let Some(caps) = self.regex.captures(val) else {
            return;
        };
        let mut target = String::new();
        caps.expand(&c.target_label, &mut target);
        // An expanded target that is not a label name skips the rule.
        if !is_valid_label_name(&target) {
            return;
        }
        let mut value = String::new();
        caps.expand(&c.replacement, &mut value);
        if value.is_empty() {
            lb.del(&target);
        } else {
            lb.set(target, value);
        }
    }
}

/// The values of `names` (empty for a missing label) joined with `separator`.
fn joined_source_values(lb: &LabelsBuilder, names: &[String], separator: &str) -> String {
    let mut out = String::new();
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(lb.get(n).unwrap_or(""));
    }
    out
}

/// Prometheus's hashmod: the MD5 of `val`, its last 8 bytes read big-endian, modulo `modulus`.
fn hash_mod(val: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(val.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[8..16]);
    // `problems()` rejects a zero modulus; the guard keeps this total for any caller.
    u64::from_be_bytes(low) % modulus.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn rules(yaml: &str) -> Relabeler {
        let configs: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).expect("rules parse");
        Relabeler::new(&configs).expect("rules are valid")
    }

    #[track_caller]
    fn check(input: &[(&str, &str)], yaml: &str, expect: Option<&[(&str, &str)]>) {
        let got = rules(yaml).process_labels(&labels(input));
        assert_eq!(got, expect.map(labels), "rules:\n{yaml}");
    }

    // Upstream TestRelabel, one row per case, in upstream order. Upstream cases have no names: each
    // comment says what the case covers.
    #[test]
    fn upstream_relabel_cases() {
        // 1. replace with ${1} twice in the replacement.
        check(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            r#"[{source_labels: [a], regex: "f(.*)", target_label: d, separator: ";", replacement: "ch${1}-ch${1}", action: replace}]"#,
            Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]),
        );
        // 2. two replaces over joined source labels; the second sees the first's result.
        check(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            r#"
- {source_labels: [a, b], regex: "f(.*);(.*)r", target_label: a, separator: ";", replacement: "b${1}${2}m"}
- {source_labels: [c, a], regex: "(b).*b(.*)ba(.*)", target_label: d, separator: ";", replacement: "$1$2$2$3"}
"#,
            Some(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")]),
        );
        // 3. drop before a replace: dropped.
        check(
            &[("a", "foo")],
            r#"
- {source_labels: [a], regex: ".*o.*", action: drop}
- {source_labels: [a], regex: "f(.*)", target_label: d, replacement: "ch$1-ch$1"}
"#,
            None,
        );
        // 4. drop matching one of two labels.
        check(
            &[("a", "foo"), ("b", "bar")],
            r#"[{source_labels: [a], regex: ".*o.*", action: drop}]"#,
            None,
        );
        // 5. replace with one group in the middle.
        check(
            &[("a", "abc")],
            r#"[{source_labels: [a], regex: ".*(b).*", target_label: d, replacement: "$1"}]"#,
            Some(&[("a", "abc"), ("d", "b")]),
        );
        // 6. drop that does not match.
        check(
            &[("a", "foo")],
            r#"[{source_labels: [a], regex: "no-match", action: drop}]"#,
            Some(&[("a", "foo")]),
        );
        // 7. drop regex is anchored: "f|o" does not match "foo".
        check(
            &[("a", "foo")],
            r#"[{source_labels: [a], regex: "f|o", action: drop}]"#,
            Some(&[("a", "foo")]),
        );
        // 8. keep that does not match: dropped.
        check(
            &[("a", "foo")],
            r#"[{source_labels: [a], regex: "no-match", action: keep}]"#,
            None,
        );
        // 9. keep that matches.
        check(
            &[("a", "foo")],
            r#"[{source_labels: [a], regex: "f.*", action: keep}]"#,
            Some(&[("a", "foo")]),
        );
        // 10. "No replacement must be applied if there is no match."
        check(
            &[("a", "boo")],
            r#"[{source_labels: [a], regex: "f", target_label: b, replacement: bar}]"#,
            Some(&[("a", "boo")]),
        );
        // 11. hashmod of "baz" modulo 1000.
        check(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            r#"[{source_labels: [c], target_label: d, separator: ";", action: hashmod, modulus: 1000}]"#,
            Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
        );
        // 12. hashmod of a value with a newline.
        check(
            &[("a", "foo\nbar")],
            r#"[{source_labels: [a], target_label: b, separator: ";", action: hashmod, modulus: 1000}]"#,
            Some(&[("a", "foo\nbar"), ("b", "734")]),
        );
        // 13. labelmap copying b* labels to bar_b*.
        check(
            &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
            r#"[{regex: "(b.*)", replacement: "bar_${1}", action: labelmap}]"#,
            Some(&[
                ("a", "foo"),
                ("b1", "bar"),
                ("b2", "baz"),
                ("bar_b1", "bar"),
                ("bar_b2", "baz"),
            ]),
        );
        // 14. labelmap stripping a __meta_ prefix.
        check(
            &[
                ("a", "foo"),
                ("__meta_my_bar", "aaa"),
                ("__meta_my_baz", "bbb"),
                ("__meta_other", "ccc"),
            ],
            r#"[{regex: "__meta_(my.*)", replacement: "${1}", action: labelmap}]"#,
            Some(&[
                ("a", "foo"),
                ("__meta_my_bar", "aaa"),
                ("__meta_my_baz", "bbb"),
                ("__meta_other", "ccc"),
                ("my_bar", "aaa"),
                ("my_baz", "bbb"),
            ]),
        );
        // 15. "valid case": target label from a group.
        check(
            &[("a", "some-name-value")],
            r#"[{source_labels: [a], regex: "some-([^-]+)-([^,]+)", action: replace, replacement: "${2}", target_label: "${1}"}]"#,
            Some(&[("a", "some-name-value"), ("name", "value")]),
        );
        // 16. "invalid replacement """: a missing group expands to nothing, which deletes `name`.
        check(
            &[("a", "some-name-value")],
            r#"[{source_labels: [a], regex: "some-([^-]+)-([^,]+)", action: replace, replacement: "${3}", target_label: "${1}"}]"#,
            Some(&[("a", "some-name-value")]),
        );
        // 17. "invalid target_labels": targets expanding to "" or "0" skip the rule.
        check(
            &[("a", "some-name-0")],
            r#"
- {source_labels: [a], regex: "some-([^-]+)-([^,]+)", action: replace, replacement: "${1}", target_label: "${3}"}
- {source_labels: [a], regex: "some-([^-]+)-([^,]+)", action: replace, replacement: "${1}", target_label: "${3}"}
- {source_labels: [a], regex: "some-([^-]+)(-[^,]+)", action: replace, replacement: "${1}", target_label: "${3}"}
"#,
            Some(&[("a", "some-name-0")]),
        );
        // 18. "more complex real-life like usecase".
        check(
            &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
            r#"
- {source_labels: [__meta_sd_tags], regex: "(?:.+,|^)path:(/[^,]+).*", action: replace, replacement: "${1}", target_label: __metrics_path__}
- {source_labels: [__meta_sd_tags], regex: "(?:.+,|^)job:([^,]+).*", action: replace, replacement: "${1}", target_label: job}
- {source_labels: [__meta_sd_tags], regex: "(?:.+,|^)label:([^=]+)=([^,]+).*", action: replace, replacement: "${2}", target_label: "${1}"}
"#,
            Some(&[
                ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
                ("__metrics_path__", "/secret"),
                ("job", "some-job"),
                ("foo", "bar"),
            ]),
        );
        // 19. "From https://github.com/prometheus/prometheus/issues/12283": labeldrop, then set the
        // dropped label again, then keep on it.
        check(
            &[
                ("__meta_kubernetes_pod_container_port_name", "foo"),
                ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ],
            r#"
- {regex: "^__meta_kubernetes_pod_container_port_name$", action: labeldrop}
- {source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port], regex: "(.+)", action: replace, replacement: metrics, target_label: __meta_kubernetes_pod_container_port_name}
- {source_labels: [__meta_kubernetes_pod_container_port_name], regex: "^metrics$", action: keep}
"#,
            Some(&[
                ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
                ("__meta_kubernetes_pod_container_port_name", "metrics"),
            ]),
        );
        // 20. labelkeep.
        check(
            &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
            r#"[{regex: "(b.*)", action: labelkeep}]"#,
            Some(&[("b1", "bar"), ("b2", "baz")]),
        );
        // 21. labeldrop.
        check(
            &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
            r#"[{regex: "(b.*)", action: labeldrop}]"#,
            Some(&[("a", "foo")]),
        );
        // 22. uppercase and lowercase.
        check(
            &[("foo", "bAr123Foo")],
            r#"
- {source_labels: [foo], action: uppercase, target_label: foo_uppercase}
- {source_labels: [foo], action: lowercase, target_label: foo_lowercase}
"#,
            Some(&[
                ("foo", "bAr123Foo"),
                ("foo_lowercase", "bar123foo"),
                ("foo_uppercase", "BAR123FOO"),
            ]),
        );
        let ports = [
            ("__tmp_port", "1234"),
            ("__port1", "1234"),
            ("__port2", "5678"),
        ];
        // 23. keepequal with an equal label: kept.
        check(
            &ports,
            r#"[{source_labels: [__tmp_port], action: keepequal, target_label: __port1}]"#,
            Some(&ports),
        );
        // 24. dropequal with an equal label: dropped.
        check(
            &ports,
            r#"[{source_labels: [__tmp_port], action: dropequal, target_label: __port1}]"#,
            None,
        );
        // 25. dropequal with a different label: kept.
        check(
            &ports,
            r#"[{source_labels: [__tmp_port], action: dropequal, target_label: __port2}]"#,
            Some(&ports),
        );
        // 26. keepequal with a different label: dropped.
        check(
            &ports,
            r#"[{source_labels: [__tmp_port], action: keepequal, target_label: __port2}]"#,
            None,
        );
    }

    #[test]
    fn hashmod_uses_the_low_eight_bytes_big_endian() {
        // Values from upstream TestRelabel.
        assert_eq!(hash_mod("baz", 1000), 976);
        assert_eq!(hash_mod("foo\nbar", 1000), 734);
        // Modulus 1 always gives 0; the full value mod 2^64 is the low 8 bytes themselves.
        assert_eq!(hash_mod("anything", 1), 0);
        let d = Md5::digest(b"baz");
        let low = u64::from_be_bytes(d[8..16].try_into().unwrap());
        assert_eq!(hash_mod("baz", u64::MAX), low % u64::MAX);
    }

    #[test]
    fn surge_extra_cases() {
        // Missing source labels join as empty strings; the fast path adds a fixed label.
        check(
            &[("a", "x")],
            r#"[{source_labels: [missing], target_label: env, replacement: prod}]"#,
            Some(&[("a", "x"), ("env", "prod")]),
        );
        // An empty replacement deletes the target label.
        check(
            &[("a", "x"), ("b", "y")],
            r#"[{source_labels: [a], target_label: b, replacement: ""}]"#,
            Some(&[("a", "x")]),
        );
        // Named groups, and `$1x` naming group "1x" (empty) as Go's regexp does.
        check(
            &[("addr", "10.0.0.1:9100")],
            r#"
- {source_labels: [addr], regex: "(?P<host>[^:]+):(\\d+)", target_label: host, replacement: "$host"}
- {source_labels: [addr], regex: "([^:]+):(\\d+)", target_label: odd, replacement: "$1x"}
- {source_labels: [addr], regex: "([^:]+):(\\d+)", target_label: port, replacement: "${2}"}
"#,
            Some(&[
                ("addr", "10.0.0.1:9100"),
                ("host", "10.0.0.1"),
                ("port", "9100"),
            ]),
        );
        // Separator and multiple sources.
        check(
            &[("a", "1"), ("b", "2")],
            r#"[{source_labels: [a, b], separator: "-", target_label: c}]"#,
            Some(&[("a", "1"), ("b", "2"), ("c", "1-2")]),
        );
        // No rules: unchanged.
        assert_eq!(
            Relabeler::default().process_labels(&labels(&[("a", "1")])),
            Some(labels(&[("a", "1")]))
        );
    }

    #[test]
    fn invalid_rules_are_refused() {
        let configs: Vec<RelabelConfig> =
            serde_yaml_ng::from_str("[{action: keep}, {action: hashmod, target_label: x}]")
                .unwrap();
        let e = Relabeler::new(&configs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "relabel rule [1].modulus: action hashmod requires a modulus above 0"
        );
        let configs: Vec<RelabelConfig> =
            serde_yaml_ng::from_str("[{regex: 'a(', target_label: x}]").unwrap();
        assert!(Relabeler::new(&configs).is_err());
    }
}
