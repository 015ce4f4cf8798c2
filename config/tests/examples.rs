//! Every example config loads, with and without the variables it references.

use std::path::Path;

use surge_config::{MapEnv, load_str};

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = path.display().to_string();
        for env in [MapEnv::new(), MapEnv::new().with("NODE_NAME", "node-1")] {
            if let Err(e) = load_str(&text, &origin, &env) {
                panic!("{e}");
            }
        }
    }
    assert!(
        seen >= 3,
        "expected the example configs in {}",
        dir.display()
    );
}

#[test]
fn node_name_reaches_external_labels() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = load_str(
        &text,
        "agent.yaml",
        &MapEnv::new().with("NODE_NAME", "node-7"),
    )
    .unwrap();
    assert_eq!(c.agent.external_labels["node"], "node-7");
    let node = &c.agent.scrape_configs[1];
    assert_eq!(node.relabel_configs[0].replacement, "${1}");
    assert_eq!(
        c.agent.remote_write[0].url,
        "http://surge-aggregator.surge.svc:9091/api/v1/write"
    );
}
