//! Loading: text → substitution → position index → YAML value → typed config → defaults → validation.

use std::path::Path;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_yaml_ng::{Mapping, Value};

use crate::agent::{AgentConfig, ScrapeConfig};
use crate::aggregator::AggregatorConfig;
use crate::env::Env;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use crate::path::{FieldPath, PathSegment};
use crate::policy::PolicyConfig;
use crate::remote_write::RemoteWriteConfig;
use crate::source::{PositionIndex, Source};
use crate::validate::{self, Problem};
use crate::{Config, Locator};

/// The keys allowed at the top level; only read to report unknown ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The fields exist for serde's list of expected keys.
struct ConfigShape {
    #[serde(default)]
    agent: Option<IgnoredAny>,
    #[serde(default)]
    aggregator: Option<IgnoredAny>,
    #[serde(default)]
    policies: Option<IgnoredAny>,
}

/// A parsed document: its source, position index and YAML value.
pub(crate) struct Document {
    pub source: Source,
    pub index: PositionIndex,
    pub value: Value,
}

impl Document {
    /// Parses `source` as one YAML document (JSON is YAML too).
    pub fn parse(source: Source) -> Result<Self, ConfigError> {
        let index = PositionIndex::build(&source)?;
        let mut value: Value = match serde_yaml_ng::from_str(&source.text) {
            Ok(v) => v,
            Err(e) => {
                let mut err = ConfigError::new(
                    &source.origin,
                    FieldPath::root(),
                    ConfigErrorKind::Syntax {
                        reason: yaml_error_reason(&e),
                    },
                );
                err.position = e
                    .location()
                    .map(|l| source.position_of_line_column(l.line(), l.column()));
                return Err(err);
            }
        };
        if let Err(e) = value.apply_merge() {
            let err = ConfigError::new(
                &source.origin,
                FieldPath::root(),
                ConfigErrorKind::Syntax {
                    reason: yaml_error_reason(&e),
                },
            );
            return Err(err);
        }
        Ok(Document {
            source,
            index,
            value,
        })
    }

    /// An error at `path` with its position.
    pub fn error(&self, path: FieldPath, on_key: bool, kind: ConfigErrorKind) -> ConfigError {
        self.source.error(&self.index, path, on_key, kind)
    }

    /// Reads `value` (found at `at`) as a `T`; on failure records the error and returns `None`.
    pub fn read<T: DeserializeOwned>(
        &self,
        value: Value,
        at: &FieldPath,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = at.join(&FieldPath::from_serde(e.path()));
                errors.push(self.serde_error(path, &e.into_inner()));
                None
            }
        }
    }

    /// Reads a sequence item by item, so that one bad item does not hide problems in the others.
    fn read_list<T: DeserializeOwned>(
        &self,
        value: Option<Value>,
        at: &FieldPath,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<T> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| self.read(item, &at.index(i), errors))
                .collect(),
            Some(other) => self.read(other, at, errors).unwrap_or_default(),
        }
    }

    fn serde_error(&self, path: FieldPath, e: &serde_yaml_ng::Error) -> ConfigError {
        let message = yaml_error_reason(e);
        if let Some((field, expected)) = parse_unknown_field(&message) {
            let suggestion = closest(&field, &expected);
            // serde_path_to_error's path ends with the unknown key; the error belongs to the mapping.
            let (key_path, path) = match path.last() {
                Some(PathSegment::Key(k)) if *k == field => {
                    (path.clone(), path.parent().unwrap_or_default())
                }
                _ => (path.key(field.as_str()), path),
            };
            let mut err = self.error(
                key_path,
                true,
                ConfigErrorKind::UnknownField {
                    field,
                    expected,
                    suggestion,
                },
            );
            err.path = path;
            return err;
        }
        self.error(
            path,
            false,
            ConfigErrorKind::Schema {
                message: humanize_serde_message(&message),
            },
        )
    }

    fn problems(&self, problems: Vec<Problem>) -> Vec<ConfigError> {
        problems
            .into_iter()
            .map(|p| {
                self.error(
                    p.path,
                    p.on_key,
                    ConfigErrorKind::Invalid { message: p.message },
                )
            })
            .collect()
    }
}

/// serde_yaml_ng's message without its own " at line L column C" suffix (positions are ours).
fn yaml_error_reason(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.location().is_some() => text[..i].to_owned(),
        _ => text,
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into the field and the expected names.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field.to_owned(), expected))
}

/// Serde's messages with quotes a reader expects: `unknown variant "x"`, `invalid type: integer 5`.
fn humanize_serde_message(message: &str) -> String {
    let m = if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        message.replace('`', "")
    } else {
        message.replace('`', "\"")
    };
    m.replace("expected u64", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a mapping")
}

/// The expected name within a small edit distance of `field`, if any: the likely typo.
fn closest(field: &str, expected: &[String]) -> Option<String> {
    let max = (field.chars().count() / 3).clamp(1, 3);
    expected
        .iter()
        .map(|e| (edit_distance(field, e), e))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e.clone())
}

/// Edit distance where swapping two neighbouring characters counts as one edit (a common typo).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// Takes `key` out of `value` if it is a mapping.
fn take(value: &mut Value, key: &str) -> Option<Value> {
    match value {
        Value::Mapping(m) => m.remove(key),
        _ => None,
    }
}

fn or_empty(value: Option<Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Mapping(Mapping::new()),
        Some(v) => v,
    }
}

/// Loads a config from text. `origin` names the text in errors (usually the file name).
pub(crate) fn load_str(text: &str, origin: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let source = Source::substitute(origin, text, env).map_err(|errs| {
        ConfigErrors::from_vec(errs).unwrap_or_else(|| {
            ConfigError::new(
                origin,
                FieldPath::root(),
                ConfigErrorKind::Syntax {
                    reason: "substitution failed".to_owned(),
                },
            )
            .into()
        })
    })?;
    let doc = Document::parse(source)?;
    let mut errors = Vec::new();
    let root = FieldPath::root();
    let mut value = or_empty(Some(doc.value.clone()));
    if !matches!(value, Value::Mapping(_)) {
        return Err(doc
            .error(
                root,
                false,
                ConfigErrorKind::Schema {
                    message: "a config is a mapping with agent: and aggregator: sections"
                        .to_owned(),
                },
            )
            .into());
    }
    doc.read::<ConfigShape>(value.clone(), &root, &mut errors);

    let at = root.key("agent");
    let mut agent_value = or_empty(take(&mut value, "agent"));
    let scrape_configs = take(&mut agent_value, "scrape_configs");
    let agent_rw = take(&mut agent_value, "remote_write");
    let mut agent: AgentConfig = doc.read(agent_value, &at, &mut errors).unwrap_or_default();
    agent.scrape_configs =
        doc.read_list::<ScrapeConfig>(scrape_configs, &at.key("scrape_configs"), &mut errors);
    agent.remote_write =
        doc.read_list::<RemoteWriteConfig>(agent_rw, &at.key("remote_write"), &mut errors);

    let at = root.key("aggregator");
    let mut aggregator_value = or_empty(take(&mut value, "aggregator"));
    let aggregator_rw = take(&mut aggregator_value, "remote_write");
    let mut aggregator: AggregatorConfig = doc
        .read(aggregator_value, &at, &mut errors)
        .unwrap_or_default();
    aggregator.remote_write =
        doc.read_list::<RemoteWriteConfig>(aggregator_rw, &at.key("remote_write"), &mut errors);

    let policies_value = take(&mut value, "policies");
    let policies =
        doc.read_list::<PolicyConfig>(policies_value, &root.key("policies"), &mut errors);

    // Validation needs every item: with reading errors, an item is missing and indexes would shift.
    if !errors.is_empty() {
        return Err(finish(errors));
    }
    let mut config = Config {
        agent,
        aggregator,
        policies,
        locator: Locator::default(),
    };
    config.resolve_defaults();
    let errors = doc.problems(validate::validate(&config));
    let doc = std::sync::Arc::new(doc);
    config.locator = Locator::new(move |path, message| {
        doc.error(path, false, ConfigErrorKind::Invalid { message })
    });
    match ConfigErrors::from_vec(sorted(errors)) {
        Some(e) => Err(e),
        None => Ok(config),
    }
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    crate::error::sort_in_document_order(&mut errors);
    errors
}

fn finish(errors: Vec<ConfigError>) -> ConfigErrors {
    let errors = sorted(errors);
    match ConfigErrors::from_vec(errors) {
        Some(e) => e,
        // Unreachable: callers pass a non-empty list. Kept total rather than panicking.
        None => ConfigError::new(
            "",
            FieldPath::root(),
            ConfigErrorKind::Syntax {
                reason: "unknown error".to_owned(),
            },
        )
        .into(),
    }
}

/// Reads a file as UTF-8 text, or the error that names it.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            &path.display().to_string(),
            FieldPath::root(),
            ConfigErrorKind::Read {
                reason: e.to_string(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serde_unknown_field_messages() {
        assert_eq!(
            parse_unknown_field("unknown field `intervall`, expected one of `a`, `b`"),
            Some(("intervall".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, there are no fields"),
            Some(("x".into(), vec![]))
        );
        assert_eq!(parse_unknown_field("missing field `x`"), None);
    }

    #[test]
    fn suggests_close_names() {
        let expected = vec!["interval".to_owned(), "timeout".to_owned()];
        assert_eq!(closest("intervall", &expected).as_deref(), Some("interval"));
        assert_eq!(closest("zzz", &expected), None);
    }
}
