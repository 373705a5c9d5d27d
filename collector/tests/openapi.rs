//! `openapi.yaml` describes exactly the routes the router serves.

use std::collections::BTreeSet;

use driftwatch_collector::api::route_table;

/// `(method, path)` pairs under `paths:` (two-space path keys, four-space method keys).
fn documented() -> BTreeSet<(String, String)> {
    let text = include_str!("../openapi.yaml");
    let mut in_paths = false;
    let mut path = None;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            path = Some(key.trim_end_matches(':').to_owned());
        } else if let Some(key) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let method = key.split(':').next().unwrap_or_default();
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                found.insert((
                    method.to_owned(),
                    path.clone().expect("a method under a path"),
                ));
            }
        }
    }
    found
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let served: BTreeSet<(String, String)> = route_table()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect();
    let documented = documented();
    assert!(!documented.is_empty());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "openapi.yaml describes routes the router lacks: {missing:?}"
    );
}
