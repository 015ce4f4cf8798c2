//! Kubernetes label selectors in their string form (`labels.Parse`), as the `kubernetes-workload` scaler's
//! `podSelector` is written: requirements joined by commas, each `key`, `!key`, `key=value`,
//! `key==value`, `key!=value`, `key in (a,b)` or `key notin (a,b)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector(Vec<Requirement>);

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requirement {
    /// `key` (the label exists).
    Exists(String),
    /// `!key`.
    NotExists(String),
    /// `key=value`, `key==value`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (a,b)` (also true when the label is absent).
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses the string form; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("{text:?}: empty requirement"));
            }
            out.push(requirement(part).map_err(|e| format!("{text:?}: {e}"))?);
        }
        Ok(Self(out))
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(k: &str) -> Result<String, String> {
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_owned())
    } else {
        Err(format!("{k:?} is not a label key"))
    }
}

fn valid_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!("{v:?} is not a label value"))
    }
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{rest:?}: expected a set like (a,b)"))?;
    inner.split(',').map(valid_value).collect()
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(k.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(
            valid_key(k.trim())?,
            vec![valid_value(v)?],
        ));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(valid_key(k.trim())?, vec![valid_value(v)?]));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or("").trim();
    let rest = words.next().unwrap_or("").trim();
    if rest.is_empty() {
        return Ok(Requirement::Exists(valid_key(key)?));
    }
    if let Some(s) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(valid_key(key)?, set(s)?));
    }
    if let Some(s) = rest.strip_prefix("in") {
        return Ok(Requirement::In(valid_key(key)?, set(s)?));
    }
    Err(format!(
        "{part:?} is not a requirement (key, !key, key=value, key!=value, key in (..), key notin (..))"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn check() {
        let app = labels(&[("app", "worker"), ("tier", "batch")]);
        for (selector, want) in [
            ("app=worker", true),
            ("app==worker", true),
            ("app!=worker", false),
            ("app=worker,tier=web", false),
            ("tier in (batch, web)", true),
            ("tier notin (batch)", false),
            ("app", true),
            ("!zone", true),
            ("!app", false),
            ("zone!=a", true),
        ] {
            let s = LabelSelector::parse(selector);
            assert_eq!(s.map(|s| s.matches(&app)), Ok(want), "{selector}");
        }
        for bad in ["", "a b c", "tier in batch", "a==b,,c", "app=x y"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
