use std::process::Command;

use crate::common::{Sandbox, diff, node_available, pnpm_tree, replace_in, text};

#[test]
fn cold_warm_and_noop_installs_give_pnpms_tree() {
    let sandbox = Sandbox::new("graph");
    let expected = pnpm_tree("graph");

    let cold = sandbox.install(&[]);
    assert!(
        text(&cold).contains("Installed 58 packages"),
        "{}",
        text(&cold)
    );
    let tree = sandbox.manifest();
    assert!(
        tree == expected,
        "cold install differs from pnpm's tree:\n{}",
        diff(&expected, &tree)
    );
    let downloads = sandbox.registry.tarball_requests();
    assert_eq!(
        downloads, 57,
        "one download per tarball (peer variants share one)"
    );

    // Warm store: no download at all, same tree.
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let warm = sandbox.install(&[]);
    assert!(
        text(&warm).contains("0 downloaded, 57 from the store"),
        "{}",
        text(&warm)
    );
    assert_eq!(sandbox.registry.tarball_requests(), downloads);
    let tree = sandbox.manifest();
    assert!(
        tree == expected,
        "warm install differs from pnpm's tree:\n{}",
        diff(&expected, &tree)
    );

    // Nothing changed: a no-op.
    let noop = sandbox.install(&[]);
    assert!(
        text(&noop).contains("Already up to date"),
        "{}",
        text(&noop)
    );
    assert_eq!(sandbox.manifest(), expected);

    // A deleted package directory is noticed and restored from the store.
    std::fs::remove_dir_all(sandbox.project().join("node_modules/.pnpm/cycle-b@1.0.0")).unwrap();
    let repaired = sandbox.install(&[]);
    assert!(
        !text(&repaired).contains("Already up to date"),
        "{}",
        text(&repaired)
    );
    assert_eq!(sandbox.manifest(), expected);
    assert_eq!(sandbox.registry.tarball_requests(), downloads);
}

#[test]
fn every_import_method_gives_the_same_tree() {
    let expected = pnpm_tree("graph");
    for method in ["copy", "hardlink", "clone", "auto"] {
        let sandbox = Sandbox::new("graph");
        let output = sandbox.flowpm(&[
            "install",
            "--frozen-lockfile",
            &format!("--package-import-method={method}"),
        ]);
        if method == "clone" && !output.status.success() {
            // Reflinks need btrfs/xfs; elsewhere `clone` must fail clearly, not silently copy.
            assert!(text(&output).contains("import file"), "{}", text(&output));
            continue;
        }
        assert!(output.status.success(), "{method}: {}", text(&output));
        let tree = sandbox.manifest();
        assert!(
            tree == expected,
            "{method} differs:\n{}",
            diff(&expected, &tree)
        );
    }
}

#[test]
fn bins_and_requires_work() {
    let sandbox = Sandbox::new("graph");
    sandbox.install(&[]);
    let project = sandbox.project();
    let sh = |script: &str| {
        Command::new("sh")
            .arg(script)
            .current_dir(&project)
            .output()
            .unwrap()
    };
    // A shim runs under `sh`, whatever interpreter the target names.
    let extra = sh("node_modules/.bin/bt-extra");
    assert_eq!(
        String::from_utf8_lossy(&extra.stdout),
        "extra ran\n",
        "{}",
        text(&extra)
    );
    // A dependency's bin is linked inside the dependent package.
    assert!(
        project
            .join(
                "node_modules/.pnpm/bin-user@1.0.0/node_modules/bin-user/node_modules/.bin/bin-tool"
            )
            .is_file()
    );
    if !node_available() {
        eprintln!("node not found: skipping the node checks");
        return;
    }
    let tool = sh("node_modules/.bin/bin-tool");
    assert_eq!(
        String::from_utf8_lossy(&tool.stdout),
        "bin-tool ran\n",
        "{}",
        text(&tool)
    );
    let scoped = sh("node_modules/.bin/scoped-bin");
    assert_eq!(
        String::from_utf8_lossy(&scoped.stdout),
        "scoped-bin ran\n",
        "{}",
        text(&scoped)
    );
    let script = "console.log(require('@fixture/scoped'), require('peer-plugin'), require('peer-wrapper'), \
                  require('aliased')('y'), require('cycle-a').a, require('deep-0'), require('dup-entries/package.json').name)";
    let output = Command::new("node")
        .args(["-e", script])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "scoped: x plugin+host1 plugin+host2   y 1 0 dup-entries\n",
        "{}",
        text(&output)
    );
    let dup = std::fs::read_to_string(project.join("node_modules/dup-entries/a.txt")).unwrap();
    assert_eq!(dup, "second\n", "the last duplicate tarball entry wins");
}

#[test]
fn production_install_leaves_out_dev_dependencies() {
    let sandbox = Sandbox::new("graph");
    sandbox.install(&["--prod"]);
    let project = sandbox.project();
    assert!(!project.join("node_modules/bin-tool").exists());
    assert!(!project.join("node_modules/.bin/bin-tool").exists());
    // Still installed where a production dependency needs it.
    assert!(
        project
            .join("node_modules/.pnpm/bin-tool@1.0.0/node_modules/bin-tool/cli.js")
            .is_file()
    );
    // Switching to a full install adds it back.
    sandbox.install(&[]);
    assert!(project.join("node_modules/bin-tool").exists());
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn frozen_lockfile_mismatch_names_the_dependency() {
    let sandbox = Sandbox::new("graph");
    let manifest_path = sandbox.project().join("package.json");
    replace_in(
        &manifest_path,
        "\"cycle-a\": \"1.0.0\"",
        "\"cycle-a\": \"^1.0.0\"",
    );
    let message = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        message.contains(
            "`cycle-a` (dependencies) is `^1.0.0` in package.json but `1.0.0` in the lockfile"
        ),
        "{message}"
    );
    assert!(
        !sandbox.project().join("node_modules").exists(),
        "nothing is written"
    );
}

#[test]
fn offline_install_needs_a_warm_store() {
    let sandbox = Sandbox::new("graph");
    let output = sandbox.flowpm(&["install", "--frozen-lockfile", "--offline"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("--offline"), "{}", text(&output));
    sandbox.install(&[]);
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let requests = sandbox.registry.tarball_requests();
    sandbox.install(&["--offline"]);
    assert_eq!(sandbox.registry.tarball_requests(), requests);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn ndjson_reporter_emits_stage_metrics() {
    let sandbox = Sandbox::new("graph");
    let output = sandbox.install(&["--reporter=ndjson"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["event"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["packages"], 58);
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for stage in ["link", "fetch", "write", "index", "import"] {
        assert!(stages.contains(&stage), "{stage} missing from {stages:?}");
    }
    let write = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "write")
        .unwrap();
    assert!(
        write["items"].as_u64().unwrap() >= 5_000,
        "the 5,000-file package went through the writers"
    );
}

#[test]
fn auth_tokens_come_from_the_project_npmrc() {
    let sandbox = Sandbox::new("graph");
    sandbox.registry.require_token("s3cret");
    let denied = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert!(!denied.status.success());
    assert!(text(&denied).contains("HTTP 401"), "{}", text(&denied));
    let host = sandbox
        .registry
        .url()
        .trim_start_matches("http:")
        .to_owned();
    std::fs::write(
        sandbox.project().join(".npmrc"),
        format!("{host}:_authToken=${{FIXTURE_TOKEN}}\n"),
    )
    .unwrap();
    let output = sandbox.install_with(&sandbox.store(), &[("FIXTURE_TOKEN", "s3cret")]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn tarball_urls_in_the_lockfile_are_used() {
    // Serve one tarball from a non-registry path and point the lockfile at it.
    let registry = tempfile::tempdir().unwrap();
    crate::faults::copy_dir(&flowpm_fixtures::registry_dir(), registry.path());
    std::fs::create_dir_all(registry.path().join("custom")).unwrap();
    std::fs::rename(
        registry.path().join("cycle-b/-/cycle-b-1.0.0.tgz"),
        registry.path().join("custom/cycle-b.tgz"),
    )
    .unwrap();
    let sandbox = Sandbox::with_registry("graph", registry.path());
    let lockfile_path = sandbox.project().join("pnpm-lock.yaml");
    let lockfile = std::fs::read_to_string(&lockfile_path).unwrap();
    let entry = lockfile
        .lines()
        .skip_while(|l| !l.starts_with("  cycle-b@1.0.0:"))
        .nth(1)
        .unwrap()
        .to_owned();
    let with_tarball = entry.replace(
        '}',
        &format!(", tarball: {}custom/cycle-b.tgz}}", sandbox.registry.url()),
    );
    std::fs::write(&lockfile_path, lockfile.replace(&entry, &with_tarball)).unwrap();
    sandbox.install(&[]);
    assert_eq!(sandbox.registry.requests("/custom/cycle-b.tgz"), 1);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_store_on_another_filesystem_falls_back_to_copies() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new("graph");
    let shm = std::path::Path::new("/dev/shm");
    let other_device = shm
        .metadata()
        .ok()
        .zip(sandbox.project().metadata().ok())
        .is_some_and(|(a, b)| a.dev() != b.dev());
    if !other_device {
        eprintln!("/dev/shm is missing or on the same filesystem: skipping");
        return;
    }
    let store = tempfile::tempdir_in(shm).unwrap();
    let output = sandbox.install_with(store.path(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
    let file = sandbox
        .project()
        .join("node_modules/.pnpm/cycle-a@1.0.0/node_modules/cycle-a/index.js");
    assert_eq!(
        file.metadata().unwrap().nlink(),
        1,
        "a copy, not a hardlink"
    );
}
