use std::process::Command;

use flowpm_fixtures::Fault;

use crate::common::{Sandbox, pnpm_tree, text};

#[test]
fn transient_registry_failures_are_retried() {
    let sandbox = Sandbox::new("graph");
    let flaky = "/cycle-b/-/cycle-b-1.0.0.tgz";
    let reset = "/deep-13/-/deep-13-1.0.0.tgz";
    sandbox.registry.inject(reset, Fault::Reset { times: 1 });
    let broken = "/deep-12/-/deep-12-1.0.0.tgz";
    sandbox.registry.inject(
        broken,
        Fault::Status {
            status: 500,
            retry_after: None,
            times: 1,
        },
    );
    let truncated = "/many-files/-/many-files-1.0.0.tgz";
    sandbox.registry.inject(
        flaky,
        Fault::Status {
            status: 503,
            retry_after: None,
            times: 2,
        },
    );
    sandbox
        .registry
        .inject(truncated, Fault::Truncate { times: 1 });
    sandbox.install(&[]);
    assert_eq!(sandbox.registry.requests(flaky), 3);
    assert_eq!(sandbox.registry.requests(truncated), 2);
    assert_eq!(sandbox.registry.requests(broken), 2);
    assert_eq!(sandbox.registry.requests(reset), 2);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_missing_tarball_is_an_error_naming_package_and_url() {
    let sandbox = Sandbox::new("graph");
    sandbox.registry.inject(
        "/deep-7/-/deep-7-1.0.0.tgz",
        Fault::Status {
            status: 404,
            retry_after: None,
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

const OPTIONAL_TARBALL: &str = "/native-thing-linux-x64/-/native-thing-linux-x64-1.0.0.tgz";

/// The graph fixture, its registry answering 404 for an optional package's tarball `times`
/// times.
fn with_unavailable_optional(times: u32) -> Sandbox {
    let sandbox = Sandbox::new("graph");
    sandbox.registry.inject(
        OPTIONAL_TARBALL,
        Fault::Status {
            status: 404,
            retry_after: None,
            times,
        },
    );
    sandbox
}

/// What pnpm 12 installs then, checked by hand (this registry, the tarball deleted): its
/// recorded tree without that package, the link to it and its hoisting.
fn tree_without_optional() -> Vec<String> {
    pnpm_tree("graph")
        .into_iter()
        .filter(|line| !line.contains("native-thing-linux-x64@"))
        .collect()
}

/// An optional package whose tarball cannot be had is left out with a warning, as pnpm does.
#[test]
fn an_optional_package_that_cannot_be_fetched_is_left_out() {
    let sandbox = with_unavailable_optional(1);
    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    let message = text(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("optional dependency that could not be fetched is left out")
            && message.contains("native-thing-linux-x64@1.0.0: failed to download"),
        "{message}"
    );
    assert_eq!(sandbox.manifest(), tree_without_optional());

    // The next install tries again, and the registry has it now.
    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.registry.requests(OPTIONAL_TARBALL), 2);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

/// The same while resolving: the download started during resolution fails, and the install
/// of the final graph retries it, finds it optional and leaves it out.
#[test]
fn an_optional_package_that_cannot_be_fetched_is_left_out_when_resolving() {
    let sandbox = with_unavailable_optional(2);
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let output = sandbox.flowpm(&["install"]);
    let message = text(&output);
    assert!(output.status.success(), "{message}");
    assert_eq!(
        message
            .matches("optional dependency that could not be fetched is left out")
            .count(),
        1,
        "{message}"
    );
    assert_eq!(sandbox.registry.requests(OPTIONAL_TARBALL), 2);
    assert_eq!(sandbox.manifest(), tree_without_optional());
    // The lockfile keeps it, as pnpm's does.
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert!(
        lockfile.contains("native-thing-linux-x64@1.0.0:"),
        "{lockfile}"
    );
}

#[test]
fn a_tampered_tarball_is_never_indexed_or_linked() {
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

    // Files are written under their content hash as they stream in, so the tampered file may
    // sit in the CAS, holding exactly what its name says; nothing references or links it.
    let tampered_file =
        flowpm_store::FileHash::of(b"module.exports = 'tampered content, unique to this test';\n");
    let linked = sandbox
        .project()
        .join("node_modules/.pnpm/left-pad-lite@1.0.0/node_modules/left-pad-lite/index.js");
    assert!(
        std::fs::read(&linked).map_or(true, |content| !content
            .starts_with(b"module.exports = 'tampered")),
        "the tampered file is not in node_modules"
    );
    let store = flowpm_store::Store::open(&sandbox.store()).unwrap();
    assert!(
        store.verify(false).unwrap().bad_files.is_empty(),
        "every CAS file holds what its name says"
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
    drop(store);
    let store = flowpm_store::Store::open_exclusive(&sandbox.store()).unwrap();
    store.prune().unwrap();
    assert!(
        !store.cas().contains(&tampered_file, false),
        "prune removes what no index entry references"
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

fn install_with(sandbox: &Sandbox, env: &[(&str, &str)]) -> std::process::Output {
    sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], env)
}

#[test]
fn connection_refused_is_retried_a_bounded_number_of_times() {
    let sandbox = Sandbox::new("graph");
    // A loopback port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowpm"))
        .args([
            "install",
            "--frozen-lockfile",
            "--store-dir",
            sandbox.store().to_str().unwrap(),
        ])
        .args(["--registry", &format!("http://{closed}/")])
        .current_dir(sandbox.project())
        .env("HOME", sandbox.root.path())
        .env("npm_config_fetch_retries", "2")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("failed to download"), "{message}");
    assert!(
        message.contains(&format!("http://{closed}/")),
        "the URL is named: {message}"
    );
    assert!(message.contains("after 3 attempts"), "{message}");
}

#[test]
fn a_stalled_body_times_out_and_is_retried() {
    let sandbox = Sandbox::new("graph");
    let path = "/deep-3/-/deep-3-1.0.0.tgz";
    sandbox.registry.inject(
        path,
        Fault::Stall {
            millis: 5_000,
            times: 1,
        },
    );
    let output = install_with(&sandbox, &[("npm_config_fetch_timeout", "500")]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.registry.requests(path), 2);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn retry_after_and_429_are_honoured() {
    let sandbox = Sandbox::new("graph");
    let busy = "/deep-4/-/deep-4-1.0.0.tgz";
    let limited = "/deep-5/-/deep-5-1.0.0.tgz";
    sandbox.registry.inject(
        busy,
        Fault::Status {
            status: 503,
            retry_after: Some(1),
            times: 1,
        },
    );
    sandbox.registry.inject(
        limited,
        Fault::Status {
            status: 429,
            retry_after: None,
            times: 2,
        },
    );
    let started = std::time::Instant::now();
    let output = install_with(&sandbox, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(
        (
            sandbox.registry.requests(busy),
            sandbox.registry.requests(limited)
        ),
        (2, 3)
    );
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_truncated_gzip_fails_after_bounded_retries_naming_package_and_url() {
    let sandbox = Sandbox::new("graph");
    let path = "/many-files/-/many-files-1.0.0.tgz";
    sandbox
        .registry
        .inject(path, Fault::ShortContent { times: 100 });
    let output = install_with(&sandbox, &[("npm_config_fetch_retries", "2")]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("many-files@1.0.0"), "{message}");
    assert!(message.contains(path), "{message}");
    assert_eq!(
        sandbox.registry.requests(path),
        3,
        "1 + fetch-retries attempts"
    );
    let store = flowpm_store::Store::open(&sandbox.store()).unwrap();
    assert_eq!(
        store.status().unwrap().temp_files,
        0,
        "no partial files left"
    );
}

#[test]
fn redirects_to_another_loopback_server_are_followed() {
    let sandbox = Sandbox::new("graph");
    let mirror = flowpm_fixtures::RegistryServer::start(&flowpm_fixtures::registry_dir()).unwrap();
    let path = "/cycle-a/-/cycle-a-1.0.0.tgz";
    let location = format!("{}{}", mirror.url().trim_end_matches('/'), path);
    sandbox.registry.inject(
        path,
        Fault::Redirect {
            status: 302,
            location: location.clone(),
            times: 1,
        },
    );
    sandbox.registry.inject(
        "/deep-9/-/deep-9-1.0.0.tgz",
        Fault::Redirect {
            status: 301,
            location: format!(
                "{}/deep-9/-/deep-9-1.0.0.tgz",
                mirror.url().trim_end_matches('/')
            ),
            times: 1,
        },
    );
    let output = install_with(&sandbox, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(mirror.requests(path), 1);
    assert_eq!(mirror.requests("/deep-9/-/deep-9-1.0.0.tgz"), 1);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_slow_download_does_not_hold_up_the_others() {
    let sandbox = Sandbox::new("graph");
    let slow = "/many-files/-/many-files-1.0.0.tgz";
    let size =
        std::fs::metadata(flowpm_fixtures::registry_dir().join(slow.trim_start_matches('/')))
            .unwrap()
            .len();
    // About three seconds for this tarball.
    let rate = (size / 3).max(1) as u32;
    sandbox.registry.inject(
        slow,
        Fault::Drip {
            bytes_per_second: rate,
            times: 1,
        },
    );
    let started = std::time::Instant::now();
    let output = install_with(&sandbox, &[]);
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
    // Everything else downloads and installs while the slow one drips.
    assert!(
        elapsed < std::time::Duration::from_secs(3 + 6),
        "took {elapsed:?}"
    );
}
