//! Kubernetes label selectors (`app=web,tier in (a,b),!canary`) and their translation to PromQL
//! label matchers, so a request's `labelSelector` / `metricLabelSelector` narrows a rule's query.
//!
//! Grammar as `k8s.io/apimachinery/pkg/labels`: requirements separated by commas; each is `key`
//! (exists), `!key` (does not exist), `key=v`, `key==v`, `key!=v`, `key in (v1,v2)`, `key notin (v1,v2)`,
//! `key>n`, `key<n`. Keys are qualified names (`prefix/name`), values at most 63 characters. Label keys
//! that are not Prometheus label names are sanitized as Prometheus's Kubernetes discovery does
//! (`app.kubernetes.io/name` → `app_kubernetes_io_name`).

use surge_store::{MatchOp, Matcher};

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOp {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: SelectorOp,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Not,
    Gt,
    Lt,
    LParen,
    RParen,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '>' | '<' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ',' => Tok::Comma,
                    '>' => Tok::Gt,
                    _ => Tok::Lt,
                });
            }
            '=' => {
                chars.next();
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                    out.push(Tok::DoubleEq);
                } else {
                    out.push(Tok::Eq);
                }
            }
            '!' => {
                chars.next();
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                    out.push(Tok::NotEq);
                } else {
                    out.push(Tok::Not);
                }
            }
            _ => {
                let start = i;
                let mut end = s.len();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_whitespace() || "()=!,<>".contains(d) {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                out.push(Tok::Ident(s[start..end].to_owned()));
            }
        }
    }
    Ok(out)
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn check_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            })
    });
    if prefix_ok && is_name_part(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {k:?}: a qualified name is an optional DNS prefix and '/' followed by at most 63 characters of [-A-Za-z0-9_.], starting and ending alphanumeric"
        ))
    }
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: at most 63 characters of [-A-Za-z0-9_.], starting and ending alphanumeric"
        ))
    }
}

/// Parses a selector; the empty selector has no requirements (selects everything).
pub fn parse(s: &str) -> Result<Vec<Requirement>, String> {
    let toks = lex(s)?;
    let mut reqs = Vec::new();
    let mut i = 0;
    let describe = |t: Option<&Tok>| match t {
        None => "end of string".to_owned(),
        Some(Tok::Ident(s)) => format!("{s:?}"),
        Some(t) => format!("{t:?}"),
    };
    if toks.is_empty() {
        return Ok(reqs);
    }
    loop {
        let req = match toks.get(i) {
            Some(Tok::Not) => {
                i += 1;
                let Some(Tok::Ident(key)) = toks.get(i) else {
                    return Err(format!(
                        "unable to parse requirement: found {}, expected: identifier after '!'",
                        describe(toks.get(i))
                    ));
                };
                i += 1;
                Requirement {
                    key: key.clone(),
                    op: SelectorOp::DoesNotExist,
                    values: Vec::new(),
                }
            }
            Some(Tok::Ident(key)) => {
                i += 1;
                let op = match toks.get(i) {
                    None | Some(Tok::Comma) => None,
                    Some(Tok::Eq | Tok::DoubleEq) => Some(SelectorOp::Equals),
                    Some(Tok::NotEq) => Some(SelectorOp::NotEquals),
                    Some(Tok::Gt) => Some(SelectorOp::GreaterThan),
                    Some(Tok::Lt) => Some(SelectorOp::LessThan),
                    Some(Tok::Ident(w)) if w == "in" => Some(SelectorOp::In),
                    Some(Tok::Ident(w)) if w == "notin" => Some(SelectorOp::NotIn),
                    other => {
                        return Err(format!(
                            "unable to parse requirement: found {}, expected: in, notin, =, ==, !=, gt, lt",
                            describe(other)
                        ));
                    }
                };
                match op {
                    None => Requirement {
                        key: key.clone(),
                        op: SelectorOp::Exists,
                        values: Vec::new(),
                    },
                    Some(op @ (SelectorOp::In | SelectorOp::NotIn)) => {
                        i += 1;
                        if toks.get(i) != Some(&Tok::LParen) {
                            return Err(format!(
                                "found {}, expected: '(' after {key:?} {}",
                                describe(toks.get(i)),
                                if op == SelectorOp::In { "in" } else { "notin" }
                            ));
                        }
                        i += 1;
                        let mut values = Vec::new();
                        let mut expect_value = true;
                        loop {
                            match toks.get(i) {
                                Some(Tok::Ident(v)) if expect_value => {
                                    values.push(v.clone());
                                    expect_value = false;
                                }
                                Some(Tok::Comma) => {
                                    if expect_value {
                                        values.push(String::new());
                                    }
                                    expect_value = true;
                                }
                                Some(Tok::RParen) => {
                                    if expect_value {
                                        values.push(String::new());
                                    }
                                    break;
                                }
                                other => {
                                    return Err(format!(
                                        "found {}, expected: ',', ')' or a value in the set of {key:?}",
                                        describe(other)
                                    ));
                                }
                            }
                            i += 1;
                        }
                        i += 1;
                        Requirement {
                            key: key.clone(),
                            op,
                            values,
                        }
                    }
                    Some(op) => {
                        i += 1;
                        let value = match toks.get(i) {
                            Some(Tok::Ident(v)) => {
                                i += 1;
                                v.clone()
                            }
                            None | Some(Tok::Comma)
                                if matches!(op, SelectorOp::Equals | SelectorOp::NotEquals) =>
                            {
                                String::new()
                            }
                            other => {
                                return Err(format!(
                                    "found {}, expected: a value for {key:?}",
                                    describe(other)
                                ));
                            }
                        };
                        if matches!(op, SelectorOp::GreaterThan | SelectorOp::LessThan)
                            && value.parse::<i64>().is_err()
                        {
                            return Err(format!(
                                "for 'gt', 'lt' operators, exactly one value is required and it must be an integer, got {value:?}"
                            ));
                        }
                        Requirement {
                            key: key.clone(),
                            op,
                            values: vec![value],
                        }
                    }
                }
            }
            other => {
                return Err(format!(
                    "unable to parse requirement: found {}, expected: !, identifier",
                    describe(other)
                ));
            }
        };
        check_key(&req.key)?;
        for v in &req.values {
            if !matches!(req.op, SelectorOp::GreaterThan | SelectorOp::LessThan) {
                check_value(v)?;
            }
        }
        reqs.push(req);
        match toks.get(i) {
            None => return Ok(reqs),
            Some(Tok::Comma) => {
                i += 1;
                if toks.get(i).is_none() {
                    return Err("found end of string, expected: a requirement after ','".into());
                }
            }
            other => {
                return Err(format!(
                    "found {}, expected: ',' or end of string",
                    describe(other)
                ));
            }
        }
    }
}

/// The Prometheus label name for a Kubernetes label key: every character outside `[a-zA-Z0-9_]`
/// becomes `_` (as `__meta_kubernetes_pod_label_<name>` does).
pub fn prometheus_label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn alternation(values: &[String]) -> String {
    values
        .iter()
        .map(|v| regex::escape(v))
        .collect::<Vec<_>>()
        .join("|")
}

/// Matchers equivalent to `reqs` on series labels. `gt`/`lt` have no PromQL matcher and are refused.
pub fn to_matchers(reqs: &[Requirement]) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        let name = prometheus_label_name(&r.key);
        let first = r.values.first().cloned().unwrap_or_default();
        let (op, value) = match r.op {
            SelectorOp::Equals => (MatchOp::Equal, first),
            SelectorOp::NotEquals => (MatchOp::NotEqual, first),
            SelectorOp::In => (MatchOp::Regex, alternation(&r.values)),
            SelectorOp::NotIn => (MatchOp::NotRegex, alternation(&r.values)),
            SelectorOp::Exists => (MatchOp::Regex, ".+".to_owned()),
            SelectorOp::DoesNotExist => (MatchOp::Equal, String::new()),
            SelectorOp::GreaterThan | SelectorOp::LessThan => {
                return Err(format!(
                    "the 'gt' and 'lt' operators (on {:?}) are not supported on metric labels",
                    r.key
                ));
            }
        };
        out.push(
            Matcher::new(op, name, value)
                .map_err(|e| format!("label selector on {:?}: {e}", r.key))?,
        );
    }
    Ok(out)
}

/// Parses and translates in one step (the request path).
pub fn selector_matchers(s: &str) -> Result<Vec<Matcher>, String> {
    to_matchers(&parse(s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(input, expected)`: the matchers as `name op "value"` joined by `, `, or `ERR: <prefix>`.
    fn check(input: &str, expect: &str) {
        let got = match selector_matchers(input) {
            Ok(ms) => ms
                .iter()
                .map(|m| format!("{}{}{:?}", m.name, m.op.as_str(), m.value))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("ERR: {e}"),
        };
        if let Some(prefix) = expect.strip_prefix("ERR: ") {
            assert!(
                got.starts_with("ERR: ") && got.contains(prefix),
                "{input:?}: got {got:?}, want an error containing {prefix:?}"
            );
        } else {
            assert_eq!(got, expect, "{input:?}");
        }
    }

    #[test]
    fn selector_table() {
        // Rows follow k8s.io/apimachinery/pkg/labels TestSelectorParse / TestLexer where they apply.
        check("", "");
        check("x=a", r#"x="a""#);
        check("x==a", r#"x="a""#);
        check("x = a , y != b", r#"x="a", y!="b""#);
        check("x=", r#"x="""#);
        check("x!=", r#"x!="""#);
        check("x in (a, b)", r#"x=~"a|b""#);
        check("x in (a,)", r#"x=~"a|""#);
        check("x notin (a.b)", r#"x!~"a\\.b""#);
        check("x", r#"x=~".+""#);
        check("!x", r#"x="""#);
        check("x,!y,z=1", r#"x=~".+", y="", z="1""#);
        check(
            "app.kubernetes.io/name=web",
            r#"app_kubernetes_io_name="web""#,
        );
        check("x>1", "ERR: not supported");
        check("x>a", "ERR: must be an integer");
        check("x=a,", "ERR: a requirement after ','");
        check("x=a b", "ERR: expected: ',' or end of string");
        check("x in a", "ERR: expected: '('");
        check("x in (a", "ERR: expected: ',', ')'");
        check("=a", "ERR: expected: !, identifier");
        check("!", "ERR: identifier after '!'");
        check("x=a$", "ERR: invalid label value");
        check("-x=a", "ERR: invalid label key");
        check("x y", "ERR: expected: in, notin");
        check(&format!("x={}", "a".repeat(64)), "ERR: invalid label value");
    }
}
