//! Relabeling rules, exactly as Prometheus's `relabel_config`.
//!
//! The rules are compiled here, at load time (the regex lives in [`RelabelRegex`]); the agent's
//! `Relabeler` applies them.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use surge_model::is_valid_label_name;

use crate::path::FieldPath;

/// The default `regex`: matches anything and captures it as `$1`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// A target label or labelmap replacement that may hold `$1`, `${1}` or `$name` references
/// (Prometheus's `relabelTarget`).
static RELABEL_TARGET: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[a-zA-Z0-9_]+\}|[a-zA-Z0-9_]+))+[a-zA-Z0-9_]*)+$").ok()
});

fn is_valid_relabel_target(s: &str) -> bool {
    RELABEL_TARGET.as_ref().is_some_and(|re| re.is_match(s))
}

/// One relabeling rule, applied to a target's labels before scraping (`relabel_configs`), to each
/// scraped series (`metric_relabel_configs`) or to each series before it is sent
/// (`write_relabel_configs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` into the value the rule looks at.
    /// A missing label contributes an empty string.
    pub source_labels: Vec<String>,
    /// Placed between the source label values. Default `;`.
    pub separator: String,
    /// The label a `replace`, `hashmod`, `lowercase`, `uppercase`, `keepequal` or `dropequal` rule
    /// writes or compares; `replace` may use `$1`, `${1}` or `$name` here. Empty means unset.
    pub target_label: String,
    /// Matched against the whole joined value (it is anchored: `^(?:regex)$`). Default `(.*)`.
    pub regex: RelabelRegex,
    /// For `hashmod`: the hash of the joined value is taken modulo this. Must be above 0.
    pub modulus: u64,
    /// For `replace` and `labelmap`: what to write, with `$1`, `${1}` or `$name` expanded from the
    /// regex's groups. Default `$1`.
    pub replacement: String,
    /// What the rule does. Default `replace`.
    pub action: RelabelAction,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_owned(),
            target_label: String::new(),
            regex: RelabelRegex::default(),
            modulus: 0,
            replacement: DEFAULT_REPLACEMENT.to_owned(),
            action: RelabelAction::Replace,
        }
    }
}

/// What a relabeling rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Writes `replacement` (expanded) to `target_label` (expanded) when `regex` matches; an empty
    /// result deletes the label.
    #[default]
    Replace,
    /// Drops the target or series unless `regex` matches the joined source values.
    Keep,
    /// Drops the target or series when `regex` matches the joined source values.
    Drop,
    /// Drops the target or series unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drops the target or series when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to the MD5 hash of the joined source values modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches `regex` to the name `replacement` expands to.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the joined source values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined source values in upper case.
    Uppercase,
}

impl RelabelAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RelabelAction::Replace => "replace",
            RelabelAction::Keep => "keep",
            RelabelAction::Drop => "drop",
            RelabelAction::KeepEqual => "keepequal",
            RelabelAction::DropEqual => "dropequal",
            RelabelAction::HashMod => "hashmod",
            RelabelAction::LabelMap => "labelmap",
            RelabelAction::LabelDrop => "labeldrop",
            RelabelAction::LabelKeep => "labelkeep",
            RelabelAction::Lowercase => "lowercase",
            RelabelAction::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for RelabelAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relabeling regex: the text as written and its anchored compilation `^(?:text)$`.
///
/// Reading a config never fails on a bad regex, so that validation can report it together with every
/// other problem; configs from `load_*` hold only valid ones.
#[derive(Debug, Clone)]
pub struct RelabelRegex {
    source: String,
    compiled: Result<Regex, regex::Error>,
}

impl RelabelRegex {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: impl Into<String>) -> Result<Self, regex::Error> {
        let source = source.into();
        let compiled = Regex::new(&format!("^(?:{source})$"))?;
        Ok(RelabelRegex {
            source,
            compiled: Ok(compiled),
        })
    }

    fn lenient(source: String) -> Self {
        let compiled = Regex::new(&format!("^(?:{source})$"));
        RelabelRegex { source, compiled }
    }

    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The anchored regex, or why it does not compile.
    pub fn compiled(&self) -> Result<&Regex, &regex::Error> {
        self.compiled.as_ref()
    }

    /// Whether this is the default `(.*)`.
    pub fn is_default(&self) -> bool {
        self.source == DEFAULT_REGEX
    }
}

impl Default for RelabelRegex {
    fn default() -> Self {
        RelabelRegex::lenient(DEFAULT_REGEX.to_owned())
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RelabelRegex;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RelabelRegex, E> {
                Ok(RelabelRegex::lenient(v.to_owned()))
            }
            // YAML reads `regex: 200` as a number; Prometheus takes it as the text "200".
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RelabelRegex, E> {
                Ok(RelabelRegex::lenient(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RelabelRegex, E> {
                Ok(RelabelRegex::lenient(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One problem with a relabeling rule: which field, and a phrase carrying the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelabelProblem {
    /// The field the problem is in, relative to the rule (root for the rule as a whole).
    pub field: FieldPath,
    pub message: String,
}

/// The last line of the regex crate's (multi-line) error: the reason without the echo of the pattern.
pub(crate) fn regex_error_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_owned()
}

impl RelabelConfig {
    /// Every problem with this rule, checked as Prometheus checks it (`relabel.Config.Validate`),
    /// plus label name checks on `source_labels` and a regex that compiles.
    pub fn problems(&self) -> Vec<RelabelProblem> {
        use RelabelAction::*;
        let mut out = Vec::new();
        let mut add = |field: FieldPath, message: String| {
            out.push(RelabelProblem { field, message });
        };
        let f = |name: &str| FieldPath::root().key(name);
        let a = self.action;

        for (i, name) in self.source_labels.iter().enumerate() {
            if !is_valid_label_name(name) {
                add(
                    f("source_labels").index(i),
                    format!("{name:?} is not a valid label name"),
                );
            }
        }
        if let Err(e) = self.regex.compiled() {
            add(
                f("regex"),
                format!(
                    "{:?} is not a valid regular expression: {}",
                    self.regex.as_str(),
                    regex_error_reason(e)
                ),
            );
        }
        if a == HashMod && self.modulus == 0 {
            add(
                f("modulus"),
                "action hashmod requires a modulus above 0".to_owned(),
            );
        }
        let needs_target = matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            add(
                FieldPath::root(),
                format!("action {a} requires a target_label"),
            );
        } else if needs_target {
            let t = &self.target_label;
            let valid = if a == Replace && t.contains('$') {
                is_valid_relabel_target(t)
            } else {
                is_valid_label_name(t)
            };
            if !valid {
                add(
                    f("target_label"),
                    format!("{t:?} is not a valid target_label for action {a}"),
                );
            }
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            add(
                f("replacement"),
                format!("replacement cannot be set for action {a}"),
            );
        }
        if a == LabelMap && !is_valid_relabel_target(&self.replacement) {
            add(
                f("replacement"),
                format!(
                    "{:?} is not a valid replacement for action labelmap (a label name, may use $1 or ${{1}})",
                    self.replacement
                ),
            );
        }
        if matches!(a, KeepEqual | DropEqual)
            && (!self.regex.is_default()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            add(
                FieldPath::root(),
                format!(
                    "action {a} takes only source_labels and target_label, and no other fields"
                ),
            );
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            add(
                FieldPath::root(),
                format!("action {a} takes only regex, and no other fields"),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RelabelAction) -> RelabelConfig {
        RelabelConfig {
            action,
            ..RelabelConfig::default()
        }
    }

    fn messages(c: &RelabelConfig) -> Vec<String> {
        c.problems()
            .into_iter()
            .map(|p| {
                if p.field.is_root() {
                    p.message
                } else {
                    format!("{}: {}", p.field, p.message)
                }
            })
            .collect()
    }

    // Upstream TestRelabelValidate, one row per case.
    #[test]
    fn validates_as_prometheus() {
        use RelabelAction::*;
        let some = |target: &str| RelabelConfig {
            source_labels: vec!["a".into()],
            regex: RelabelRegex::new("some-([^-]+)-([^,]+)").unwrap(),
            replacement: "${1}".into(),
            target_label: target.into(),
            ..rule(Replace)
        };
        let cases: Vec<(RelabelConfig, Vec<&str>)> = vec![
            // Config{Action: Replace}: requires 'target_label' value
            (
                rule(Replace),
                vec!["action replace requires a target_label"],
            ),
            // Config{Action: Lowercase}: requires 'target_label' value
            (
                rule(Lowercase),
                vec!["action lowercase requires a target_label"],
            ),
            // Lowercase with TargetLabel "${3}": is invalid 'target_label'
            (
                RelabelConfig {
                    target_label: "${3}".into(),
                    ..rule(Lowercase)
                },
                vec![r#"target_label: "${3}" is not a valid target_label for action lowercase"#],
            ),
            // Replace with TargetLabel "${3}": valid
            (some("${3}"), vec![]),
            // Replace with TargetLabel "0${3}": invalid
            (
                some("0${3}"),
                vec![r#"target_label: "0${3}" is not a valid target_label for action replace"#],
            ),
            // Replace with TargetLabel "-${3}": invalid
            (
                some("-${3}"),
                vec![r#"target_label: "-${3}" is not a valid target_label for action replace"#],
            ),
        ];
        for (i, (c, expect)) in cases.iter().enumerate() {
            assert_eq!(messages(c), *expect, "case {i}");
        }
    }

    #[test]
    fn surge_specific_checks() {
        use RelabelAction::*;
        let c = RelabelConfig {
            source_labels: vec!["ok".into(), "not-ok".into()],
            regex: RelabelRegex::lenient("a(b".into()),
            ..rule(HashMod)
        };
        assert_eq!(
            messages(&c),
            [
                r#"source_labels[1]: "not-ok" is not a valid label name"#,
                r#"regex: "a(b" is not a valid regular expression: unclosed group"#,
                "modulus: action hashmod requires a modulus above 0",
                "action hashmod requires a target_label",
            ]
        );
        let c = RelabelConfig {
            source_labels: vec!["a".into()],
            ..rule(LabelDrop)
        };
        assert_eq!(
            messages(&c),
            ["action labeldrop takes only regex, and no other fields"]
        );
        let c = RelabelConfig {
            target_label: "x".into(),
            separator: ",".into(),
            ..rule(KeepEqual)
        };
        assert_eq!(
            messages(&c),
            ["action keepequal takes only source_labels and target_label, and no other fields"]
        );
        let c = RelabelConfig {
            replacement: "a-b".into(),
            ..rule(LabelMap)
        };
        assert_eq!(
            messages(&c),
            [
                r#"replacement: "a-b" is not a valid replacement for action labelmap (a label name, may use $1 or ${1})"#
            ]
        );
    }

    // Upstream TestTargetLabelValidity.
    #[test]
    fn target_label_validity() {
        for (s, valid) in [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
        ] {
            assert_eq!(is_valid_relabel_target(s), valid, "{s:?}");
        }
    }
}
