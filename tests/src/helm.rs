//! The Helm chart rendered by the real Helm v4 SDK (`helm-python-sdk`, `$SURGE_HELM_PYTHON`, which
//! `.ci/run` sets up): `helm lint --strict`, then `helm template`.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

/// The Python with helm-python-sdk: `$SURGE_HELM_PYTHON` (`.ci/run`), else `python3` if it has it.
pub fn helm_python() -> Result<String> {
    if let Ok(p) = std::env::var("SURGE_HELM_PYTHON") {
        return Ok(p);
    }
    let ok = std::process::Command::new("python3")
        .args(["-c", "import helm_python"])
        .output()
        .is_ok_and(|o| o.status.success());
    ensure!(
        ok,
        "helm-python-sdk is needed to render the chart: run `bash .ci/run`, or `pip install helm-python-sdk` \
         in a virtualenv and set SURGE_HELM_PYTHON to its python"
    );
    Ok("python3".into())
}

/// `helm lint --strict` and `helm template` through the Helm v4 SDK: the chart's manifests as one YAML
/// stream.
pub fn render(chart: &Path, ns: &str, values: &Value) -> Result<String> {
    const SCRIPT: &str = r#"
import json, sys
import helm_python as helm
chart_dir, ns, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
report = helm.lint(chart_dir, strict=True)
bad = [m for m in report["messages"] if m["severity"] >= 2] + list(report["errors"])
if bad:
    sys.exit("helm lint --strict: %s" % bad)
with helm.Chart.load(chart_dir) as chart:
    out = chart.render(values=values, name="surge", namespace=ns, is_install=True)
docs = [text for name, text in sorted(out.items()) if name.endswith((".yaml", ".yml")) and text.strip()]
print("\n---\n".join(docs))
"#;
    let out = std::process::Command::new(helm_python()?)
        .args(["-c", SCRIPT])
        .arg(chart)
        .arg(ns)
        .arg(values.to_string())
        .output()
        .context("running the Helm SDK")?;
    ensure!(
        out.status.success(),
        "helm render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`render`], parsed: one JSON value per manifest (documents are separated by `---` lines, the SDK's
/// join and the templates' own; empty ones dropped).
pub fn render_objects(chart: &Path, ns: &str, values: &Value) -> Result<Vec<Value>> {
    let yaml = render(chart, ns, values)?;
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    let mut objects = Vec::new();
    for d in &docs {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(d).context("a rendered manifest")?;
        if !v.is_null() {
            objects.push(serde_json::to_value(v)?);
        }
    }
    Ok(objects)
}

/// The volume named `name` of a pod spec and its first container's mount of it, if both are there.
pub fn volume<'a>(pod: &'a Value, name: &str) -> Option<(&'a Value, &'a Value)> {
    let v = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?;
    let m = pod["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)?;
    Some((v, m))
}
