//! The Grafana dashboard (deploy/grafana/planetmint-streams.json) shows every metric the code
//! registers: a metric added without a panel fails here. (deploy/check.sh checks the same and
//! more: every query's metric exists, counters only inside rate()/increase().)

use std::collections::BTreeSet;
use std::path::Path;

/// Every `"planetmint_streams_..."` string literal in the Rust sources of the node and its
/// crates: the metric names (each metric's name is such a literal, or a constant holding one).
fn metric_names_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                for piece in text.split("\"planetmint_streams_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        out.insert(format!("planetmint_streams_{name}"));
                    }
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    walk(&root.join("src"), &mut names);
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        let src = entry.path().join("src");
        // The benchmark tools read other processes' metrics; they register none of the node's.
        if src.is_dir() && !entry.path().ends_with("bench") {
            walk(&src, &mut names);
        }
    }
    names
}

#[test]
fn every_metric_in_the_code_is_on_the_grafana_dashboard() {
    let names = metric_names_in_code();
    assert!(names.len() >= 30, "found too few metric names: {names:?}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/planetmint-streams.json"
    );
    let board: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let queries: Vec<String> = board["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let shown = |name: &str| {
        queries.iter().any(|q| {
            q.match_indices(name).any(|(at, _)| {
                let rest = &q[at + name.len()..];
                // The name itself, or its histogram series, not a longer metric's name.
                !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| rest.starts_with(suffix))
            })
        })
    };
    let missing: Vec<&String> = names.iter().filter(|n| !shown(n)).collect();
    assert!(
        missing.is_empty(),
        "metrics with no panel on the dashboard: {missing:?}"
    );
}
