use flowpm_fixtures::Fault;

use crate::common::{Sandbox, pnpm_tree, text};

#[test]
fn transient_registry_failures_are_retried() {
    let sandbox = Sandbox::new("graph");
    let flaky = "/cycle-b/-/cycle-b-1.0.0.tgz";
    let truncated = "/many-files/-/many-files-1.0.0.tgz";
    sandbox.registry.inject(
        flaky,
        Fault::Status {
            status: 503,
            times: 2,
        },
    );
    sandbox
        .registry
        .inject(truncated, Fault::Truncate { times: 1 });
    sandbox.install(&[]);
    assert_eq!(sandbox.registry.requests(flaky), 3);
    assert_eq!(sandbox.registry.requests(truncated), 2);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_missing_tarball_is_an_error_naming_package_and_url() {
    let sandbox = Sandbox::new("graph");
    sandbox.registry.inject(
        "/deep-7/-/deep-7-1.0.0.tgz",
        Fault::Status {
            status: 404,
            times: 1,
        },
    );
    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("deep-7@1.0.0: failed to download"),
        "{message}"
    );
    assert!(
        message.contains("/deep-7/-/deep-7-1.0.0.tgz: HTTP 404"),
        "{message}"
    );
}

#[test]
fn a_tampered_tarball_leaves_nothing_in_the_store() {
    // A registry copy whose left-pad-lite@1.0.0 tarball is replaced by another valid tarball.
    let registry = tempfile::tempdir().unwrap();
    copy_dir(&flowpm_fixtures::registry_dir(), registry.path());
    let tampered = flowpm_fixtures::PackageSpec::new("left-pad-lite", "1.0.0").file(
        "index.js",
        "module.exports = 'tampered content, unique to this test';\n",
        0o644,
    );
    let bytes = flowpm_fixtures::build_tarball(&tampered);
    std::fs::write(
        registry
            .path()
            .join("left-pad-lite/-/left-pad-lite-1.0.0.tgz"),
        &bytes,
    )
    .unwrap();
    let sandbox = Sandbox::with_registry("graph", registry.path());

    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("left-pad-lite@1.0.0: integrity check failed"),
        "{message}"
    );
    assert!(
        message.contains(&flowpm_fixtures::sha512_integrity(&bytes)),
        "the message gives the actual hash: {message}"
    );

    let store = flowpm_store::Store::open(&sandbox.store()).unwrap();
    let tampered_file =
        flowpm_store::FileHash::of(b"module.exports = 'tampered content, unique to this test';\n");
    assert!(
        !store.cas().contains(&tampered_file, false),
        "no CAS file from the tampered tarball"
    );
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let integrity = lockfile
        .lines()
        .skip_while(|line| !line.starts_with("  left-pad-lite@1.0.0:"))
        .nth(1)
        .and_then(|line| line.split("integrity: ").nth(1))
        .map(|rest| rest.trim_end_matches('}'))
        .unwrap();
    assert_eq!(
        store.index().get(integrity).unwrap(),
        None,
        "no index entry for it"
    );
    let temp_files = std::fs::read_dir(sandbox.store().join("v1/tmp"))
        .unwrap()
        .count();
    assert_eq!(temp_files, 0, "no temp files left");
    assert!(
        !sandbox
            .project()
            .join("node_modules/.pnpm/lock.yaml")
            .exists(),
        "the tree is not marked complete"
    );
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
