//! file_sd target files (`[{"targets": ["host:port"], "labels": {"k": "v"}}]`) and their glob patterns.

use std::path::{Path, PathBuf};

use crate::agent::TargetGroupConfig;
use crate::error::{ConfigError, ConfigErrors};
use crate::load::{Document, read_text};
use crate::path::FieldPath;
use crate::source::Source;
use crate::validate::{self, Problems};

/// Reads one file_sd file, JSON or YAML (JSON is read as YAML, so both give the same error quality).
/// Returns the first problem; [`parse_file_sd`] returns all of them.
pub fn load_file_sd(path: &Path) -> Result<Vec<TargetGroupConfig>, ConfigError> {
    let text = read_text(path)?;
    parse_file_sd(&text, &path.display().to_string()).map_err(|e| {
        // `ConfigErrors` is never empty.
        let mut errors = e.into_vec();
        errors.swap_remove(0)
    })
}

/// Parses the text of a file_sd file. No `${VAR}` substitution happens in target files.
pub fn parse_file_sd(text: &str, origin: &str) -> Result<Vec<TargetGroupConfig>, ConfigErrors> {
    let doc = Document::parse(Source::verbatim(origin, text))?;
    let mut errors = Vec::new();
    let value = match &doc.value {
        serde_yaml_ng::Value::Null => return Ok(Vec::new()),
        v => v.clone(),
    };
    let groups: Vec<TargetGroupConfig> = match value {
        serde_yaml_ng::Value::Sequence(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| doc.read(item, &FieldPath::root().index(i), &mut errors))
            .collect(),
        other => doc
            .read(other, &FieldPath::root(), &mut errors)
            .unwrap_or_default(),
    };
    if errors.is_empty() {
        let mut p = Problems::default();
        for (i, g) in groups.iter().enumerate() {
            validate::target_group(&mut p, &FieldPath::root().index(i), g);
        }
        errors = p
            .list
            .into_iter()
            .map(|p| {
                doc.error(
                    p.path,
                    p.on_key,
                    crate::error::ConfigErrorKind::Invalid { message: p.message },
                )
            })
            .collect();
    }
    match ConfigErrors::from_vec(errors) {
        Some(e) => Err(e),
        None => Ok(groups),
    }
}

/// The files matching `patterns`, sorted and without duplicates. Wildcards `*` (any run of characters)
/// and `?` (one character) work in the last path component; a pattern whose directory does not exist
/// matches nothing, as a file that is not there yet is normal for file_sd.
pub fn expand_file_sd_globs(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            if path.is_file() {
                out.push(path.to_path_buf());
            }
            continue;
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            // Hidden files are editors' temporaries, not target files.
            if file_name.starts_with('.') || !wildcard_match(&name, file_name) {
                continue;
            }
            let p = dir.join(file_name);
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `name` matches `pattern` with `*` and `?` wildcards.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic greedy matching with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.json", "a.json"));
        assert!(wildcard_match("*.json", ".json"));
        assert!(!wildcard_match("*.json", "a.yaml"));
        assert!(wildcard_match("t?-*.y*ml", "t1-web.yaml"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(!wildcard_match("a*b*c", "aXbYbZ"));
        assert!(wildcard_match("exact.json", "exact.json"));
    }

    #[test]
    fn expands_globs_in_the_last_component() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.json", "a.json", "c.yaml", ".hidden.json"] {
            std::fs::write(dir.path().join(f), "[]").unwrap();
        }
        let d = dir.path().display();
        let got = expand_file_sd_globs(&[
            format!("{d}/*.json"),
            format!("{d}/c.yaml"),
            format!("{d}/a.json"),
            format!("{d}/missing/*.json"),
        ]);
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "c.yaml"]);
    }

    #[test]
    fn reads_json_and_yaml_target_files() {
        let groups = parse_file_sd(
            r#"[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "dev"}}]"#,
            "t.json",
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets, ["10.0.0.1:9100", "10.0.0.2:9100"]);
        assert_eq!(groups[0].labels.get("env").map(String::as_str), Some("dev"));
        let groups = parse_file_sd("- targets: [a:1]\n", "t.yaml").unwrap();
        assert_eq!(groups[0].targets, ["a:1"]);
        assert!(parse_file_sd("", "empty.json").unwrap().is_empty());
    }

    #[test]
    fn target_file_errors_have_positions() {
        let text = "[\n  {\"targets\": [\"http://a:1/x\"], \"labels\": {\"bad-name\": \"v\"}},\n  {\"targets\": [\"b:1\"], \"lables\": {}}\n]\n";
        let errs = parse_file_sd(text, "t.json").unwrap_err();
        assert_eq!(
            errs.to_lines(),
            [
                r#"t.json:3:24: [1]: unknown field "lables", expected one of "targets", "labels" (did you mean "labels"?)"#
            ]
        );
        let text = "[\n  {\"targets\": [\"http://a:1/x\"], \"labels\": {\"bad-name\": \"v\"}}\n]\n";
        let errs = parse_file_sd(text, "t.json").unwrap_err();
        assert_eq!(
            errs.to_lines(),
            [
                r#"t.json:2:16: [0].targets[0]: "http://a:1/x" is not host:port (set the scheme with scheme: and the path with metrics_path:)"#,
                r#"t.json:2:44: [0].labels.bad-name: "bad-name" is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"#,
            ]
        );
        let e = load_file_sd(Path::new("/nonexistent/t.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/t.json: cannot read the file: "),
            "{e}"
        );
    }
}
