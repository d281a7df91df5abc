//! Installing without a (current) lockfile: resolution against the fixture registry, compared
//! with what pnpm 12 resolved and installed from the same packuments, and the commands that
//! change package.json.

use std::path::Path;

use crate::common::{Sandbox, assert_pnpm_tree, pnpm_tree, replace_in, text};

/// A sandbox for `project` with its lockfile removed (or package.json replaced by `manifest`).
fn without_lockfile(project: &str) -> Sandbox {
    let sandbox = Sandbox::new(project);
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    sandbox
}

fn with_manifest(manifest: &str) -> Sandbox {
    let sandbox = without_lockfile("graph");
    std::fs::write(sandbox.project().join("package.json"), manifest).unwrap();
    sandbox
}

fn run_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let output = sandbox.flowpm(args);
    assert!(
        output.status.success(),
        "flowpm {args:?} failed:\n{}",
        text(&output)
    );
    text(&output)
}

/// The written lockfile with the sandbox's registry URL put back as the fixture placeholder.
fn lockfile(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml"))
        .unwrap()
        .replace(&sandbox.registry.url(), "{{REGISTRY}}")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn resolves_and_installs_exactly_as_pnpm_does() {
    for project in [
        "graph",
        "resolve-ranges",
        "resolve-dedupe",
        "resolve-peers",
        "resolve-peers-missing",
        "resolve-peers-auto",
    ] {
        let sandbox = without_lockfile(project);
        run_ok(&sandbox, &["install", "--reporter", "silent"]);
        let recorded = read(&flowpm_fixtures::project_dir(project).join("pnpm-lock.yaml"));
        assert_eq!(
            lockfile(&sandbox),
            recorded,
            "{project}: lockfile differs from pnpm's"
        );
        assert_pnpm_tree(&sandbox, project);
        // The written lockfile is accepted as is.
        run_ok(
            &sandbox,
            &["install", "--frozen-lockfile", "--reporter", "silent"],
        );
    }
}

#[test]
fn gzip_compressed_packuments_resolve_the_same_graph() {
    let sandbox = without_lockfile("resolve-peers");
    sandbox.registry.serve_gzip();
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    // Every packument came compressed (flowpm asked), and the result is pnpm's.
    let packuments = sandbox.registry.packument_requests();
    assert_eq!(sandbox.registry.gzip_responses(), packuments);
    assert!(packuments > 0);
    let recorded = read(&flowpm_fixtures::project_dir("resolve-peers").join("pnpm-lock.yaml"));
    assert_eq!(lockfile(&sandbox), recorded);
    assert_pnpm_tree(&sandbox, "resolve-peers");
    // The cache holds the documents themselves: an offline resolution reads them back.
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    run_ok(&sandbox, &["install", "--offline", "--reporter", "silent"]);
    assert_eq!(lockfile(&sandbox), recorded);
}

/// The ndjson `summary` event of `output`.
fn summary(output: &str) -> serde_json::Value {
    let line = output
        .lines()
        .find(|line| line.contains("\"event\":\"summary\""))
        .unwrap_or_else(|| panic!("no summary in:\n{output}"));
    serde_json::from_str(line).unwrap()
}

/// The stage names of an ndjson summary, in order.
fn summary_stages(output: &str) -> Vec<String> {
    summary(output)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["stage"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn resolution_fetches_and_links_in_one_run() {
    let sandbox = without_lockfile("resolve-peers");
    let output = run_ok(&sandbox, &["install", "--reporter", "ndjson"]);
    // One run: tarballs download while resolution goes on, and the layout is linked and
    // filled as soon as the graph is final; no second pipeline follows.
    assert_eq!(
        summary_stages(&output),
        [
            "resolve", "metadata", "fetch", "write", "index", "link", "prune", "dispatch", "import"
        ],
        "{output}"
    );
    let tarballs = sandbox.registry.tarball_requests();
    assert!(tarballs > 0);
    assert_eq!(sandbox.manifest(), pnpm_tree("resolve-peers"));
    // Every package's tarball was fetched exactly once.
    let packages = lockfile(&sandbox).matches("    resolution: {").count();
    assert_eq!(tarballs as usize, packages);
    assert!(
        output.contains(&format!("\"fetched\":{packages},\"reused\":0")),
        "{output}"
    );

    // Resolved again with every package already in the store: all imported from it.
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let output = run_ok(&sandbox, &["install", "--reporter", "ndjson"]);
    assert_eq!(sandbox.registry.tarball_requests(), tarballs);
    assert!(
        output.contains(&format!("\"fetched\":0,\"reused\":{packages}")),
        "{output}"
    );
    assert_eq!(sandbox.manifest(), pnpm_tree("resolve-peers"));
    assert!(
        sandbox
            .project()
            .join("node_modules/.pnpm/lock.yaml")
            .exists()
    );
}

#[test]
fn lockfile_only_installs_nothing() {
    let sandbox = without_lockfile("resolve-peers");
    run_ok(
        &sandbox,
        &["install", "--lockfile-only", "--reporter", "silent"],
    );
    assert!(sandbox.project().join("pnpm-lock.yaml").exists());
    assert!(!sandbox.project().join("node_modules").exists());
    assert_eq!(sandbox.registry.tarball_requests(), 0);
    assert_eq!(
        lockfile(&sandbox),
        read(&flowpm_fixtures::project_dir("resolve-peers").join("pnpm-lock.yaml"))
    );
}

#[test]
fn locked_versions_are_kept_until_updated() {
    let sandbox = with_manifest("{\n  \"dependencies\": {\n    \"r-lib\": \"1.1.0\"\n  }\n}\n");
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    // A new range that the locked version still satisfies keeps it (pnpm does too)...
    std::fs::write(
        sandbox.project().join("package.json"),
        "{\n  \"dependencies\": {\n    \"r-lib\": \"^1.0.0\",\n    \"r-wants-caret\": \"1.0.0\"\n  }\n}\n",
    )
    .unwrap();
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    let lock = lockfile(&sandbox);
    assert!(
        lock.contains("r-lib:\n        specifier: ^1.0.0\n        version: 1.1.0"),
        "{lock}"
    );
    // ...and a new dependency's range prefers the version already locked.
    assert!(
        lock.contains("r-wants-caret@1.0.0:\n    dependencies:\n      r-lib: 1.1.0"),
        "{lock}"
    );
    assert!(sandbox.project().join("node_modules/r-lib").exists());

    // `update` moves within the range and saves the version in the range's style (pnpm
    // 12.21.0 did the same for this project).
    run_ok(&sandbox, &["update", "r-lib", "--reporter", "silent"]);
    let lock = lockfile(&sandbox);
    assert!(
        lock.contains("specifier: ^1.2.0\n        version: 1.2.0"),
        "{lock}"
    );
    assert_eq!(
        read(&sandbox.project().join("package.json")),
        "{\n  \"dependencies\": {\n    \"r-lib\": \"^1.2.0\",\n    \"r-wants-caret\": \"1.0.0\"\n  }\n}\n"
    );
    let installed = read(&sandbox.project().join("node_modules/r-lib/package.json"));
    assert!(installed.contains("\"version\": \"1.2.0\""), "{installed}");
}

/// `update` within ranges, against pnpm 12.21.0 on the same project (RESOLVE-ORACLE.md §7):
/// each range is rewritten in its own style, or kept when it pins nothing simple.
#[test]
fn update_saves_what_it_picked_in_each_range_style() {
    let pins = [
        ("r-caret", "1.0.0", "^1.0.0", "^1.2.0"),
        ("r-tilde", "1.1.0", "~1.1.0", "~1.1.2"),
        ("r-xrange", "1.0.0", "1.x", "~1.2.0"),
        ("r-star", "1.0.0", "*", "^1.2.0"),
        ("r-gte", "1.0.0", ">=1.0.0", ">=1.0.0"),
        ("r-lib", "1.0.0", "1", "^1.2.0"),
        ("r-lib2", "1.0.0", "1.0.0", "1.0.0"),
        ("r-lib3", "1.0.0", "latest", "latest"),
        ("r-lib4", "1.0.0", "1.0", "~1.0.0"),
        ("r-pre", "1.0.0", "^1.0.0 <2", "^1.0.0 <2"),
        (
            "al",
            "npm:r-lib2@1.0.0",
            "npm:r-lib2@^1.0.0",
            "npm:r-lib2@^1.2.0",
        ),
        ("r-core", "1.0.0", "1.0.x", "1.0.0"),
    ];
    let manifest =
        |pick: fn(&(&'static str, &'static str, &'static str, &'static str)) -> &'static str| {
            let entries: Vec<String> = pins
                .iter()
                .map(|pin| format!("    \"{}\": \"{}\"", pin.0, pick(pin)))
                .collect();
            format!(
                "{{\n  \"dependencies\": {{\n{}\n  }}\n}}\n",
                entries.join(",\n")
            )
        };
    let sandbox = with_manifest(&manifest(|pin| pin.1));
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    // The old versions stay locked under the ranges until `update`.
    std::fs::write(
        sandbox.project().join("package.json"),
        manifest(|pin| pin.2),
    )
    .unwrap();
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    run_ok(&sandbox, &["update", "--reporter", "silent"]);
    assert_eq!(
        read(&sandbox.project().join("package.json")),
        manifest(|pin| pin.3)
    );
    let lock = lockfile(&sandbox);
    for (name, version) in [("r-gte", "2.1.0"), ("r-lib3", "1.2.0"), ("r-pre", "1.2.0")] {
        assert!(
            lock.contains(&format!("      {name}:\n        specifier: ")),
            "{lock}"
        );
        assert!(lock.contains(&format!("\n  {name}@{version}:")), "{lock}");
    }
    run_ok(
        &sandbox,
        &["install", "--frozen-lockfile", "--reporter", "silent"],
    );
}

#[test]
fn add_remove_and_update_latest_keep_package_json_formatting() {
    let original = "{\n    \"name\": \"x\",\n    \"dependencies\": {\n        \"r-core\": \"1.0.0\"\n    },\n    \"scripts\": {}\n}";
    let sandbox = with_manifest(original);
    run_ok(
        &sandbox,
        &["add", "r-lib", "r-tags@next", "--reporter", "silent"],
    );
    run_ok(
        &sandbox,
        &[
            "add",
            "-D",
            "-E",
            "r-caret@~1.1.0",
            "r-star",
            "--reporter",
            "silent",
        ],
    );
    let manifest = read(&sandbox.project().join("package.json"));
    // A new group goes after the last dependency group; nothing else moves. As pnpm 12 does,
    // the version resolved is saved with the prefix the specifier pins (`~1.1.0` -> `~1.1.2`,
    // even with -E), a prerelease exactly (`next` -> `2.0.0-alpha.1`), and -E applies when
    // the specifier pins nothing (`r-star`).
    assert_eq!(
        manifest,
        "{\n    \"name\": \"x\",\n    \"dependencies\": {\n        \"r-core\": \"1.0.0\",\n        \"r-lib\": \"^1.2.0\",\n        \"r-tags\": \"2.0.0-alpha.1\"\n    },\n    \"devDependencies\": {\n        \"r-caret\": \"~1.1.2\",\n        \"r-star\": \"1.2.0\"\n    },\n    \"scripts\": {}\n}"
    );
    for name in ["r-core", "r-lib", "r-tags", "r-caret", "r-star"] {
        assert!(
            sandbox.project().join("node_modules").join(name).exists(),
            "{name}"
        );
    }
    run_ok(
        &sandbox,
        &["install", "--frozen-lockfile", "--reporter", "silent"],
    );

    run_ok(
        &sandbox,
        &["remove", "r-lib", "r-star", "--reporter", "silent"],
    );
    let manifest = read(&sandbox.project().join("package.json"));
    assert!(
        !manifest.contains("r-lib") && !manifest.contains("r-star"),
        "{manifest}"
    );
    assert!(!sandbox.project().join("node_modules/r-lib").exists());
    assert!(!lockfile(&sandbox).contains("r-lib"));
    // Their package directories are deleted too (by the `prune` stage, beside the others).
    let virtual_store = sandbox.project().join("node_modules/.pnpm");
    let entries: Vec<String> = std::fs::read_dir(&virtual_store)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !entries
            .iter()
            .any(|name| name.starts_with("r-lib@") || name.starts_with("r-star@")),
        "{entries:?}"
    );
    assert!(entries.iter().any(|name| name.starts_with("r-core@")));

    // --latest moves ranges to the latest version, keeping the prefix style.
    run_ok(
        &sandbox,
        &[
            "update",
            "--latest",
            "r-caret",
            "r-core",
            "--reporter",
            "silent",
        ],
    );
    let manifest = read(&sandbox.project().join("package.json"));
    assert!(manifest.contains("\"r-caret\": \"~2.1.0\""), "{manifest}");
    assert!(manifest.contains("\"r-core\": \"2.0.0\""), "{manifest}");
    run_ok(
        &sandbox,
        &["install", "--frozen-lockfile", "--reporter", "silent"],
    );

    let message = sandbox.flowpm_fails(&["remove", "not-there"]);
    assert!(
        message.contains("`not-there` is not in dependencies"),
        "{message}"
    );
}

#[test]
fn packuments_are_cached_and_revalidated() {
    let sandbox = without_lockfile("resolve-peers");
    run_ok(
        &sandbox,
        &["install", "--lockfile-only", "--reporter", "silent"],
    );
    let first = sandbox.registry.packument_requests();
    assert_eq!(first, 10, "{:?}", sandbox.registry.request_counts());
    assert_eq!(sandbox.registry.not_modified_responses(), 0);

    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    run_ok(
        &sandbox,
        &["install", "--lockfile-only", "--reporter", "silent"],
    );
    // Every cached packument was revalidated, and none was sent again.
    let cached = std::fs::read_dir(sandbox.store().join("v1/metadata"))
        .unwrap()
        .count() as u32;
    assert_eq!(cached, 10, "one compressed packument per package name");
    assert_eq!(sandbox.registry.not_modified_responses(), cached);
    assert_eq!(sandbox.registry.packument_requests(), first + cached);

    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    run_ok(
        &sandbox,
        &[
            "install",
            "--lockfile-only",
            "--prefer-offline",
            "--reporter",
            "silent",
        ],
    );
    assert_eq!(sandbox.registry.packument_requests(), first + cached);

    // --offline resolves from the cache alone, and the store has the tarballs.
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let before = sandbox.registry.packument_requests() + sandbox.registry.tarball_requests();
    run_ok(&sandbox, &["install", "--offline", "--reporter", "silent"]);
    assert_eq!(
        sandbox.registry.packument_requests() + sandbox.registry.tarball_requests(),
        before
    );
    assert_eq!(sandbox.manifest(), pnpm_tree("resolve-peers"));

    let fresh = without_lockfile("resolve-peers");
    let output = fresh.flowpm(&["install", "--offline"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not in the metadata cache"),
        "{}",
        text(&output)
    );
}

/// `--prefer-offline` trusts the cache, but a range that the cached copy cannot satisfy gets
/// the packument fetched again (as pnpm does), instead of failing on a stale cache.
#[test]
fn prefer_offline_refetches_a_packument_too_old_for_a_range() {
    let registry = tempfile::tempdir().unwrap();
    copy_dir(&flowpm_fixtures::registry_dir(), registry.path());
    let packument = registry.path().join("r-lib/packument.json");
    let current = read(&packument);
    // The registry as it was before r-lib 1.2.0 (here renamed 0.9.0) was published.
    std::fs::write(&packument, current.replace("1.2.0", "0.9.0")).unwrap();
    let sandbox = Sandbox::with_registry("graph", registry.path());
    let manifest = sandbox.project().join("package.json");
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    std::fs::write(&manifest, "{\"dependencies\": {\"r-lib\": \"^1.0.0\"}}").unwrap();
    run_ok(&sandbox, &["install", "--lockfile-only"]);
    assert!(read(&sandbox.project().join("pnpm-lock.yaml")).contains("r-lib@1.1.1:"));

    std::fs::write(&packument, current).unwrap();
    std::fs::write(&manifest, "{\"dependencies\": {\"r-lib\": \"^1.2.0\"}}").unwrap();
    let before = sandbox.registry.requests("/r-lib");
    run_ok(
        &sandbox,
        &["install", "--lockfile-only", "--prefer-offline"],
    );
    assert_eq!(sandbox.registry.requests("/r-lib"), before + 1);
    assert!(read(&sandbox.project().join("pnpm-lock.yaml")).contains("r-lib@1.2.0:"));
    // A range no version satisfies is still an error after the one refetch.
    std::fs::write(&manifest, "{\"dependencies\": {\"r-lib\": \"^7.0.0\"}}").unwrap();
    let message = sandbox.flowpm_fails(&["install", "--lockfile-only", "--prefer-offline"]);
    assert!(
        message.contains("no version of `r-lib` matches `^7.0.0`"),
        "{message}"
    );
    assert_eq!(sandbox.registry.requests("/r-lib"), before + 2);
}

/// Packuments are asked for abbreviated, as npm and pnpm ask; with `minimumReleaseAge` (pnpm 12
/// defaults to a day), one modified since the cutoff is fetched again in full for its versions'
/// publish times, as pnpm 12 does (observed with pnpm 12.26 against a registry that logs its
/// requests: an abbreviated request, then an `application/json` one only when `modified` is
/// recent; the version picked is the newest one old enough).
#[test]
fn minimum_release_age_fetches_full_packuments_only_when_needed() {
    let registry = tempfile::tempdir().unwrap();
    copy_dir(&flowpm_fixtures::registry_dir(), registry.path());
    let packument = registry.path().join("r-lib/packument.json");
    let mut document: serde_json::Value = serde_json::from_str(&read(&packument)).unwrap();
    // r-lib 1.2.0 is published in the future: younger than any minimumReleaseAge.
    document["time"]["1.2.0"] = "2099-01-01T00:00:00.000Z".into();
    document["time"]["modified"] = "2099-01-01T00:00:00.000Z".into();
    std::fs::write(&packument, document.to_string()).unwrap();
    let sandbox = Sandbox::with_registry("graph", registry.path());
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let manifest = "{\"dependencies\": {\"r-lib\": \"^1.0.0\", \"r-deprecated\": \"^1.0.0\"}}";
    std::fs::write(sandbox.project().join("package.json"), manifest).unwrap();

    run_ok(&sandbox, &["install", "--lockfile-only"]);
    let written = lockfile(&sandbox);
    assert!(written.contains("r-lib@1.1.1:"), "{written}");
    // Abbreviated for both; r-lib again in full; r-deprecated (all of it old) not.
    assert_eq!(sandbox.registry.abbreviated_responses(), 2);
    assert_eq!(sandbox.registry.requests("/r-lib"), 2);
    assert_eq!(sandbox.registry.requests("/r-deprecated"), 1);
    let full = sandbox.store().join("v1/metadata-full");
    assert!(full.join("r-lib.zst").is_file());
    assert!(!full.join("r-deprecated.zst").exists());

    // From the cache: both kinds revalidated (304), the same pick.
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let not_modified = sandbox.registry.not_modified_responses();
    run_ok(&sandbox, &["install", "--lockfile-only"]);
    assert_eq!(lockfile(&sandbox), written);
    assert_eq!(sandbox.registry.not_modified_responses(), not_modified + 3);
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    run_ok(&sandbox, &["install", "--lockfile-only", "--offline"]);
    assert_eq!(lockfile(&sandbox), written);
    // Offline without the full copy, the ages are unknown: said, and not applied.
    std::fs::remove_dir_all(&full).unwrap();
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let output = run_ok(&sandbox, &["install", "--lockfile-only", "--offline"]);
    assert!(
        output.contains("r-lib: its publish times are not in the metadata cache"),
        "{output}"
    );
    assert!(lockfile(&sandbox).contains("r-lib@1.2.0:"));

    // pnpm 12 reads the setting from pnpm-workspace.yaml, not .npmrc (observed).
    let resolve_with = |npmrc: &str, workspace: &str| {
        std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
        std::fs::write(sandbox.project().join(".npmrc"), npmrc).unwrap();
        std::fs::write(sandbox.project().join("pnpm-workspace.yaml"), workspace).unwrap();
        let (abbreviated, before) = (
            sandbox.registry.abbreviated_responses(),
            sandbox.registry.requests("/r-lib"),
        );
        run_ok(&sandbox, &["install", "--lockfile-only"]);
        // One abbreviated request for each package (revalidations), and the full documents.
        assert_eq!(sandbox.registry.abbreviated_responses(), abbreviated + 2);
        let full = sandbox.registry.requests("/r-lib") - before - 1;
        let picked = ["1.1.1", "1.2.0"]
            .into_iter()
            .find(|version| lockfile(&sandbox).contains(&format!("r-lib@{version}:")));
        (picked.unwrap(), full)
    };
    assert_eq!(resolve_with("minimum-release-age=0\n", ""), ("1.1.1", 1));
    // Without a minimum age, the abbreviated document is enough and 1.2.0 is taken; so with
    // r-lib excluded by name or by a pattern. Excluding 1.2.0 alone still needs the times of
    // the others, as pnpm 12 does it.
    assert_eq!(resolve_with("", "minimumReleaseAge: 0\n"), ("1.2.0", 0));
    let exclude = |entry: &str| format!("minimumReleaseAgeExclude:\n  - '{entry}'\n");
    assert_eq!(resolve_with("", &exclude("r-lib")), ("1.2.0", 0));
    assert_eq!(resolve_with("", &exclude("r-l*")), ("1.2.0", 0));
    assert_eq!(resolve_with("", &exclude("r-lib@1.2.0")), ("1.2.0", 1));
    assert_eq!(
        resolve_with("", &exclude("r-lib@1.0.0 || 1.2.0")),
        ("1.2.0", 1)
    );
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    std::fs::write(
        sandbox.project().join("pnpm-workspace.yaml"),
        exclude("r-lib@^1"),
    )
    .unwrap();
    let message = sandbox.flowpm_fails(&["install", "--lockfile-only"]);
    assert!(message.contains("pnpm-workspace.yaml"), "{message}");
    assert!(message.contains("`r-lib@^1`"), "{message}");

    // A registry that answers with full documents whatever is asked: one request each, and
    // the publish times it has are used.
    let sandbox = Sandbox::with_registry("graph", registry.path());
    sandbox.registry.ignore_abbreviated_accept();
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    std::fs::write(sandbox.project().join("package.json"), manifest).unwrap();
    run_ok(&sandbox, &["install", "--lockfile-only"]);
    assert!(lockfile(&sandbox).contains("r-lib@1.1.1:"));
    assert_eq!(sandbox.registry.abbreviated_responses(), 0);
    assert_eq!(sandbox.registry.requests("/r-lib"), 1);
}

/// Bad input fails with the dependency chain and leaves package.json and the lockfile as
/// they were.
#[test]
fn resolution_errors_name_the_chain_and_write_nothing() {
    let manifest = "{\"dependencies\": {\"r-wants-caret\": \"1.0.0\", \"r-lib\": \"^9.0.0\"}}";
    let sandbox = with_manifest(manifest);
    let output = sandbox.flowpm(&["install"]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("no version of `r-lib` matches `^9.0.0` (latest is 1.2.0)"),
        "{message}"
    );
    assert!(message.contains("needed by the project"), "{message}");
    assert!(!sandbox.project().join("pnpm-lock.yaml").exists());

    // An unknown package deep in the graph: the chain names every step.
    let registry = tempfile::tempdir().unwrap();
    copy_dir(&flowpm_fixtures::registry_dir(), registry.path());
    std::fs::remove_dir_all(registry.path().join("r-lib")).unwrap();
    std::fs::write(
        registry.path().join("r-core/packument.json"),
        "{\"versions\": {",
    )
    .unwrap();
    let sandbox = Sandbox::with_registry("graph", registry.path());
    let lock_before = read(&sandbox.project().join("pnpm-lock.yaml"));
    std::fs::write(
        sandbox.project().join("package.json"),
        "{\"dependencies\": {\"r-wants-caret\": \"1.0.0\"}}",
    )
    .unwrap();
    let output = sandbox.flowpm(&["add", "r-wants-lib2"]);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("HTTP 404"), "{message}");
    assert!(
        message.contains("the project > r-wants-caret@1.0.0"),
        "{message}"
    );
    assert_eq!(read(&sandbox.project().join("pnpm-lock.yaml")), lock_before);
    assert_eq!(
        read(&sandbox.project().join("package.json")),
        "{\"dependencies\": {\"r-wants-caret\": \"1.0.0\"}}"
    );

    // A malformed packument names its URL.
    std::fs::write(
        sandbox.project().join("package.json"),
        "{\"dependencies\": {\"r-core\": \"1.0.0\"}}",
    )
    .unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("malformed packument from"),
        "{}",
        text(&output)
    );

    // 401 from the registry.
    let sandbox = without_lockfile("resolve-peers");
    sandbox.registry.require_token("secret");
    let output = sandbox.flowpm(&["install"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("HTTP 401"), "{}", text(&output));
    assert!(text(&output).contains("auth token"), "{}", text(&output));
}

#[test]
fn transient_packument_failures_are_retried() {
    let sandbox = without_lockfile("resolve-peers");
    sandbox.registry.inject(
        "/r-core",
        flowpm_fixtures::Fault::Status {
            status: 503,
            retry_after: None,
            times: 2,
        },
    );
    sandbox
        .registry
        .inject("/r-dom", flowpm_fixtures::Fault::Reset { times: 1 });
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    assert_eq!(sandbox.registry.requests("/r-core"), 3);
    assert_eq!(sandbox.manifest(), pnpm_tree("resolve-peers"));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `files_imported` of an ndjson summary.
fn files_imported(output: &str) -> u64 {
    summary(output)["files_imported"].as_u64().unwrap()
}

#[test]
fn a_changed_lockfile_imports_only_the_packages_not_already_in_place() {
    // As pnpm: a package left in place by the last complete install, with the same depPath
    // and source, is not imported again when the lockfile changes around it.
    let sandbox = Sandbox::new("graph");
    let first = run_ok(&sandbox, &["install", "--reporter", "ndjson"]);
    assert!(files_imported(&first) > 0);
    let manifest = sandbox.project().join("package.json");
    // A new lockfile (as from a pull), installed frozen: only r-core's two files are new.
    let other = Sandbox::new("graph");
    replace_in(
        &other.project().join("package.json"),
        "\"many-files\": \"1.0.0\"",
        "\"r-core\": \"1.0.0\"",
    );
    run_ok(&other, &["install", "--lockfile-only"]);
    for file in ["package.json", "pnpm-lock.yaml"] {
        std::fs::copy(other.project().join(file), sandbox.project().join(file)).unwrap();
    }
    let output = run_ok(
        &sandbox,
        &["install", "--frozen-lockfile", "--reporter", "ndjson"],
    );
    assert_eq!(files_imported(&output), 2, "{output}");
    assert_same_tree_as_fresh_install(&sandbox);

    // Resolved again (r-core removed), with a package directory deleted meanwhile: that one
    // alone is imported again (cycle-a's two files).
    let cycle = sandbox.project().join("node_modules/.pnpm/cycle-a@1.0.0");
    std::fs::remove_dir_all(&cycle).unwrap();
    replace_in(&manifest, "\"r-core\": \"1.0.0\",", "");
    let output = run_ok(&sandbox, &["install", "--reporter", "ndjson"]);
    assert_eq!(files_imported(&output), 2, "{output}");
    assert!(cycle.join("node_modules/cycle-a/package.json").is_file());
    assert_same_tree_as_fresh_install(&sandbox);
}

/// The sandbox's tree is what a fresh install of its lockfile lays out.
fn assert_same_tree_as_fresh_install(sandbox: &Sandbox) {
    let fresh = Sandbox::new("graph");
    for file in ["package.json", "pnpm-lock.yaml"] {
        std::fs::copy(sandbox.project().join(file), fresh.project().join(file)).unwrap();
    }
    run_ok(&fresh, &["install", "--frozen-lockfile"]);
    assert_eq!(sandbox.manifest(), fresh.manifest());
}

#[test]
fn a_locked_auto_installed_peer_needs_no_packument() {
    // Dependencies removed from package.json: the rest stays locked, including the peer
    // r-missing3 that pnpm auto-installed, so the registry is not asked for anything. pnpm
    // 12.21.0 wrote the same lockfile from the same edit.
    let sandbox = Sandbox::new("resolve-peers-auto");
    let manifest = sandbox.project().join("package.json");
    replace_in(
        &manifest,
        "\"r-needs-missing3\": \"1.0.0\",",
        "\"r-needs-missing3\": \"1.0.0\"",
    );
    replace_in(&manifest, "\n    \"r-needs-missing4a\": \"1.0.0\",", "");
    replace_in(&manifest, "\n    \"r-needs-missing4b\": \"1.0.0\"", "");
    run_ok(&sandbox, &["install"]);
    assert_eq!(sandbox.registry.packument_requests(), 0);
    let lockfile = lockfile(&sandbox);
    assert!(
        lockfile.contains("  r-needs-missing3@1.0.0(r-missing3@1.0.0):\n"),
        "{lockfile}"
    );
    assert!(!lockfile.contains("r-needs-missing4"), "{lockfile}");
}

#[test]
fn conflicting_peers_are_a_warning_naming_every_requester() {
    let sandbox = without_lockfile("resolve-peers-auto");
    let output = run_ok(&sandbox, &["install", "--reporter", "ndjson"]);
    assert!(
        output.contains(
            "peer dependency `r-missing4` not installed: no version satisfies every range"
        ),
        "{output}"
    );
    assert!(
        output.contains("^1.0.0 by r-needs-missing4a@1.0.0"),
        "{output}"
    );
    assert!(
        output.contains("^2.0.0 by r-needs-missing4b@1.0.0"),
        "{output}"
    );
    assert_eq!(sandbox.manifest(), pnpm_tree("resolve-peers-auto"));
}

#[test]
fn update_reaches_transitive_dependencies() {
    // r-wants-caret's `r-lib ^1.0.0` reuses the project's pinned 1.0.0 (in scope)...
    let sandbox =
        with_manifest("{\"dependencies\": {\"r-lib\": \"1.0.0\", \"r-wants-caret\": \"1.0.0\"}}");
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    // ...and stays locked there once the pin is gone.
    std::fs::write(
        sandbox.project().join("package.json"),
        "{\"dependencies\": {\"r-wants-caret\": \"1.0.0\"}}",
    )
    .unwrap();
    run_ok(&sandbox, &["install", "--reporter", "silent"]);
    let wants = "r-wants-caret@1.0.0:\n    dependencies:\n      r-lib:";
    assert!(
        lockfile(&sandbox).contains(&format!("{wants} 1.0.0")),
        "{}",
        lockfile(&sandbox)
    );
    // `update r-lib` re-picks it under its parent.
    run_ok(&sandbox, &["update", "r-lib", "--reporter", "silent"]);
    assert!(
        lockfile(&sandbox).contains(&format!("{wants} 1.2.0")),
        "{}",
        lockfile(&sandbox)
    );
}

/// A tarball URL on the configured registry is that registry's version, as pnpm 12 resolves
/// it (the importer keeps the URL as its specifier; the lockfile below is pnpm's for the same
/// package.json, the registry URL put back as the placeholder). A tarball elsewhere is named as
/// unsupported.
#[test]
fn a_registry_tarball_url_resolves_to_the_registry_version() {
    let sandbox = with_manifest("{}");
    let url = format!(
        "{}left-pad-lite/-/left-pad-lite-2.0.0.tgz",
        sandbox.registry.url()
    );
    let manifest = format!(
        "{{\"dependencies\": {{\"left-pad-lite\": \"{url}\", \"scoped-user\": \"npm:@fixture/scoped@1.0.0\"}}}}"
    );
    std::fs::write(sandbox.project().join("package.json"), manifest).unwrap();
    run_ok(&sandbox, &["install"]);
    let expected = "lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

importers:

  .:
    dependencies:
      left-pad-lite:
        specifier: {{REGISTRY}}left-pad-lite/-/left-pad-lite-2.0.0.tgz
        version: 2.0.0
      scoped-user:
        specifier: npm:@fixture/scoped@1.0.0
        version: '@fixture/scoped@1.0.0'

packages:
";
    let written = lockfile(&sandbox);
    assert!(written.starts_with(expected), "{written}");
    assert!(
        written.contains("\n  left-pad-lite@2.0.0:\n    resolution: {integrity: sha512-"),
        "{written}"
    );
    // Up to date with its own package.json.
    run_ok(&sandbox, &["install", "--frozen-lockfile"]);

    let elsewhere =
        "{\"dependencies\": {\"left-pad-lite\": \"http://127.0.0.1:9/left-pad-lite-2.0.0.tgz\"}}";
    std::fs::write(sandbox.project().join("package.json"), elsewhere).unwrap();
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    // Off the registry it is a remote tarball, downloaded while resolving: this one cannot be.
    assert!(
        error.contains("`left-pad-lite@http://127.0.0.1:9/left-pad-lite-2.0.0.tgz`")
            && error.contains("refused"),
        "{error}"
    );
}

/// A peer met by an `npm:` alias is named in the peer suffix by the package it is, as pnpm
/// 12.26 wrote it (`1.0.0(r-lib@1.2.0)` for `r-core: npm:r-lib@^1`; RESOLVE-ORACLE §4);
/// flowpm wrote `(r-core@1.2.0)` before, a key pnpm's lockfile never has.
#[test]
fn a_peer_met_by_an_alias_is_named_by_its_package() {
    let sandbox = with_manifest(
        r#"{"name":"app","version":"1.0.0","dependencies":{"r-tp-b":"1.0.0","r-core":"npm:r-lib@^1"}}"#,
    );
    run_ok(&sandbox, &["install"]);
    let written = lockfile(&sandbox);
    for expected in [
        "      r-core:\n        specifier: npm:r-lib@^1\n        version: r-lib@1.2.0\n",
        "      r-tp-b:\n        specifier: 1.0.0\n        version: 1.0.0(r-lib@1.2.0)\n",
        "  r-tp-b@1.0.0(r-lib@1.2.0):\n    dependencies:\n      r-core: r-lib@1.2.0\n",
    ] {
        assert!(written.contains(expected), "{expected}\nnot in:\n{written}");
    }
    let link = sandbox
        .project()
        .join("node_modules/.pnpm/r-tp-b@1.0.0_r-lib@1.2.0/node_modules/r-core");
    assert!(link.join("package.json").is_file(), "{}", link.display());
}
