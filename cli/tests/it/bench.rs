use std::process::Command;

use crate::common::{Sandbox, text};

fn bench(args: &[&str], dir: &std::path::Path) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_flowpm"))
        .arg("bench")
        .arg("--json")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn stage<'a>(stages: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    stages
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} in {stages:?}"))
}

#[test]
fn each_stage_runs_alone_and_reports_throughput() {
    let registry = flowpm_fixtures::registry_dir();
    let tarballs = flowpm_stages::bench::find_tarballs(&registry)
        .unwrap()
        .len() as u64;
    let work = tempfile::tempdir().unwrap();

    let decode = bench(&["decode", registry.to_str().unwrap()], work.path());
    assert_eq!(stage(&decode, "decode")["items"], tarballs);

    let write = bench(&["write", registry.to_str().unwrap()], work.path());
    assert!(stage(&write, "write")["items"].as_u64().unwrap() > 5_000);

    let index = bench(&["index", "--packages", "200", "--files", "5"], work.path());
    assert_eq!(stage(&index, "index")["items"], 200);

    let sandbox = Sandbox::new("graph");
    let url = sandbox.registry.url();
    let fetch = bench(&["fetch", "--registry", &url], &sandbox.project());
    assert_eq!(stage(&fetch, "fetch")["items"], 57);

    let store = sandbox.store();
    let link = bench(
        &[
            "link",
            "--registry",
            &url,
            "--store-dir",
            store.to_str().unwrap(),
        ],
        &sandbox.project(),
    );
    assert_eq!(stage(&link, "import")["items"], 58);
    assert!(
        link.iter().all(|s| s["stage"] != "fetch"),
        "a warm store fetches nothing"
    );
}
