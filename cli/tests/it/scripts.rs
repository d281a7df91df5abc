//! Lifecycle scripts: allowed dependency builds, ignored ones, and the project's own scripts
//! (fixture project `builds`; what pnpm 12 does with it is in RESOLVE-ORACLE.md §11).

use std::os::unix::fs::MetadataExt;

use crate::common::{Sandbox, path_with, pnpm_tree, text, write_script};

/// What the `builds` project's own scripts log, in order.
const ROOT_SCRIPTS: [&str; 4] = [
    "root preinstall",
    "root install",
    "root postinstall",
    "root prepare",
];

fn log(sandbox: &Sandbox) -> Vec<String> {
    let log = std::fs::read_to_string(sandbox.project().join("builds.log")).unwrap_or_default();
    let _ = std::fs::remove_file(sandbox.project().join("builds.log"));
    log.lines().map(str::to_owned).collect()
}

fn package_file(sandbox: &Sandbox, package: &str, file: &str) -> std::path::PathBuf {
    let name = package.rsplit_once('@').unwrap().0;
    sandbox.project().join(format!(
        "node_modules/.pnpm/{package}/node_modules/{name}/{file}"
    ))
}

#[test]
fn allowed_builds_run_dependencies_first_on_private_copies() {
    let sandbox = Sandbox::new("builds");
    sandbox.install(&[]);
    assert_eq!(
        log(&sandbox),
        [
            "root preinstall",
            "build-dep postinstall",
            "build-top preinstall",
            "build-top install",
            // A bin of its dependency, found on PATH.
            "extra ran",
            "root install",
            "root postinstall",
            "root prepare",
        ]
    );
    // What the scripts wrote is in the package; the store keeps what the tarball shipped.
    let index = package_file(&sandbox, "build-dep@1.0.0", "index.js");
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "rewritten\n");
    assert!(package_file(&sandbox, "build-dep@1.0.0", "built.txt").exists());
    for package in ["build-dep@1.0.0", "build-top@1.0.0", "build-gyp@1.0.0"] {
        let links = std::fs::metadata(package_file(&sandbox, package, "index.js"))
            .unwrap()
            .nlink();
        assert_eq!(links, 1, "{package} is a copy, as pnpm makes it");
    }
    let shared = std::fs::metadata(
        sandbox
            .project()
            .join("node_modules/.pnpm/bin-tool@1.0.0/node_modules/bin-tool/cli.js"),
    )
    .unwrap();
    assert!(
        shared.nlink() > 1,
        "packages without builds stay hardlinked"
    );
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_flowpm"))
        .args([
            "store",
            "verify",
            "--store-dir",
            sandbox.store().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(text(&verify).contains(": 0 bad"), "{}", text(&verify));
    // The tree is pnpm's for the same project, scripts run (recorded with them).
    assert_eq!(sandbox.manifest(), pnpm_tree("builds"));

    // Nothing to do: nothing runs.
    let noop = sandbox.install(&[]);
    assert!(
        text(&noop).contains("Already up to date"),
        "{}",
        text(&noop)
    );
    assert!(log(&sandbox).is_empty());

    // Another change: as pnpm, built packages are left as they are, only the projects' run.
    crate::common::replace_in(
        &sandbox.project().join("package.json"),
        "\"build-gyp\": \"1.0.0\",",
        "\"build-gyp\": \"1.0.0\",\n    \"left-pad-lite\": \"1.0.0\",",
    );
    let changed = sandbox.flowpm(&["install"]);
    assert!(changed.status.success(), "{}", text(&changed));
    assert_eq!(log(&sandbox), ROOT_SCRIPTS);
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "rewritten\n");
    assert!(package_file(&sandbox, "build-dep@1.0.0", "built.txt").exists());

    // Built packages in place need nothing from the store: with an empty one, a frozen
    // install that is not a no-op (allowBuilds gained an entry) downloads only the others.
    std::fs::remove_dir_all(sandbox.store()).unwrap();
    let settings = sandbox.project().join("pnpm-workspace.yaml");
    let mut text_now = std::fs::read_to_string(&settings).unwrap();
    text_now.push_str("  bin-tool: false\n");
    std::fs::write(&settings, text_now).unwrap();
    let refetched = sandbox.install(&[]);
    assert!(
        text(&refetched).contains("Installed 5 packages (3 downloaded"),
        "{}",
        text(&refetched)
    );
    assert_eq!(std::fs::read_to_string(&index).unwrap(), "rewritten\n");
}

#[test]
fn builds_skipped_by_ignore_scripts_are_pending_and_run_later() {
    let sandbox = Sandbox::new("builds");
    sandbox.install(&["--ignore-scripts"]);
    assert!(log(&sandbox).is_empty());
    let modules =
        std::fs::read_to_string(sandbox.project().join("node_modules/.modules.yaml")).unwrap();
    assert!(
        modules.contains(
            "\"pendingBuilds\": [\n    \".\",\n    \"build-dep@1.0.0\",\n    \"build-gyp@1.0.0\",\n    \"build-top@1.0.0\"\n  ]"
        ),
        "{modules}"
    );
    assert!(!package_file(&sandbox, "build-dep@1.0.0", "built.txt").exists());
    // A later install that is not a no-op (here: the tree marked incomplete) builds them; the
    // copies were private all along.
    std::fs::remove_file(sandbox.project().join("node_modules/.pnpm/lock.yaml")).unwrap();
    sandbox.install(&[]);
    assert!(log(&sandbox).contains(&"build-dep postinstall".to_owned()));
    assert!(package_file(&sandbox, "build-dep@1.0.0", "built.txt").exists());
    assert_eq!(sandbox.manifest(), pnpm_tree("builds"));
}

/// As pnpm: a package left unbuilt in place (pending) is not imported again by a later install
/// that changes something else; one with scripts on builds the copy in place.
#[test]
fn unbuilt_packages_in_place_are_left_as_they_are_and_built_there() {
    let sandbox = Sandbox::new("builds");
    sandbox.install(&["--ignore-scripts"]);
    // A mark that only the copy left in place keeps.
    let mark = package_file(&sandbox, "build-dep@1.0.0", "left-in-place");
    std::fs::write(&mark, "").unwrap();
    let manifest = sandbox.project().join("package.json");
    let original = std::fs::read_to_string(&manifest).unwrap();
    crate::common::replace_in(
        &manifest,
        "\"build-gyp\": \"1.0.0\",",
        "\"build-gyp\": \"1.0.0\",\n    \"left-pad-lite\": \"1.0.0\",",
    );
    let output = sandbox.flowpm(&["install", "--ignore-scripts"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(mark.exists(), "build-dep was imported again");
    assert!(log(&sandbox).is_empty());

    std::fs::write(&manifest, original).unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(log(&sandbox).contains(&"build-dep postinstall".to_owned()));
    assert!(mark.exists(), "build-dep was imported again");
    assert!(package_file(&sandbox, "build-dep@1.0.0", "built.txt").exists());
    std::fs::remove_file(&mark).unwrap();
    assert_eq!(sandbox.manifest(), pnpm_tree("builds"));
}

#[test]
fn unlisted_builds_fail_the_install_after_the_tree_is_complete() {
    let sandbox = Sandbox::new("builds");
    std::fs::remove_file(sandbox.project().join("pnpm-workspace.yaml")).unwrap();
    let error = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        error.contains("ignored build scripts: build-dep@1.0.0, build-gyp@1.0.0, build-top@1.0.0"),
        "{error}"
    );
    assert!(error.contains("allowBuilds"), "{error}");
    // The tree is linked and the project's scripts ran; no dependency script did.
    assert_eq!(log(&sandbox), ROOT_SCRIPTS);
    assert!(package_file(&sandbox, "build-top@1.0.0", "index.js").exists());
    let modules =
        std::fs::read_to_string(sandbox.project().join("node_modules/.modules.yaml")).unwrap();
    assert!(
        modules.contains("\"ignoredBuilds\": [\n    \"build-dep@1.0.0\","),
        "{modules}"
    );
    // As pnpm: a no-op install fails again, and --ignore-scripts runs nothing and passes.
    let again = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(again.contains("ignored build scripts"), "{again}");
    sandbox.install(&["--ignore-scripts"]);
    assert!(log(&sandbox).is_empty());

    // Allowing them later is a change: they build without anything else to do.
    std::fs::write(
        sandbox.project().join("pnpm-workspace.yaml"),
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: false\n",
    )
    .unwrap();
    sandbox.install(&[]);
    let ran = log(&sandbox);
    assert!(ran.contains(&"build-dep postinstall".to_owned()), "{ran:?}");
    assert!(
        !std::fs::read_to_string(sandbox.project().join("node_modules/.modules.yaml"))
            .unwrap()
            .contains("ignoredBuilds")
    );

    // strictDepBuilds: false makes them a warning.
    std::fs::write(
        sandbox.project().join("pnpm-workspace.yaml"),
        "strictDepBuilds: false\n",
    )
    .unwrap();
    let warned = sandbox.install(&[]);
    assert!(
        text(&warned).contains("ignored build scripts"),
        "{}",
        text(&warned)
    );
}

#[test]
fn a_failing_build_names_the_package_script_and_output_and_is_retried() {
    let sandbox = Sandbox::new("builds");
    let project = sandbox.project();
    crate::common::replace_in(
        &project.join("package.json"),
        "\"build-gyp\": \"1.0.0\",",
        "\"build-fails\": \"1.0.0\",\n    \"build-gyp\": \"1.0.0\",",
    );
    std::fs::write(
        project.join("pnpm-workspace.yaml"),
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: false\n  build-fails: true\n",
    )
    .unwrap();
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains(
            "build-fails@1.0.0: the `postinstall` script (`echo compiling; echo 'no compiler here' >&2; exit 3`) exited with 3"
        ),
        "{error}"
    );
    assert!(error.contains("no compiler here"), "{error}");
    // As with pnpm, the lockfile is left as it was; the tree is not marked complete.
    assert!(!project.join("node_modules/.pnpm/lock.yaml").exists());
    // The retry imports the packages with builds afresh: what the failed run's builds left
    // does not survive into the next build.
    let stale = package_file(&sandbox, "build-top@1.0.0", "stale.node");
    std::fs::write(&stale, "from an earlier build").unwrap();
    let again = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(!stale.exists());

    // `add` of a package whose build fails leaves package.json and the lockfile as they were
    // (pnpm 12 the same); `add` of one whose build is only ignored keeps the edit.
    crate::common::replace_in(
        &project.join("package.json"),
        "\"build-fails\": \"1.0.0\",\n    ",
        "",
    );
    sandbox.install(&[]);
    let manifest = std::fs::read_to_string(project.join("package.json")).unwrap();
    let error = sandbox.fails_keeping_lockfile(&["add", "build-fails"]);
    assert!(error.contains("exited with 3"), "{error}");
    assert_eq!(
        std::fs::read_to_string(project.join("package.json")).unwrap(),
        manifest
    );
    std::fs::write(
        project.join("pnpm-workspace.yaml"),
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: false\n",
    )
    .unwrap();
    let error = sandbox.flowpm_fails(&["add", "build-fails"]);
    assert!(
        error.contains("ignored build scripts: build-fails@1.0.0"),
        "{error}"
    );
    let manifest = std::fs::read_to_string(project.join("package.json")).unwrap();
    assert!(
        manifest.contains("\"build-fails\": \"^1.0.0\""),
        "{manifest}"
    );
    assert!(again.contains("exited with 3"), "{again}");
}

/// In a workspace, pnpm 12 runs the root's `preinstall` first and every project's scripts once
/// the tree is linked, each project after the workspace projects it depends on (here lib, then
/// app, which links lib, then cli, which links app).
#[test]
fn workspace_projects_run_their_scripts_after_the_projects_they_depend_on() {
    let sandbox = Sandbox::new("workspace");
    let root = sandbox.project();
    for dir in [".", "packages/app", "packages/lib", "tools/cli"] {
        let path = root.join(dir).join("package.json");
        let mut manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = manifest["name"].as_str().unwrap().to_owned();
        let scripts: serde_json::Map<String, serde_json::Value> = ["preinstall", "postinstall"]
            .iter()
            .map(|event| {
                let log = format!("echo \"{name} {event}\" >> \"$INIT_CWD/builds.log\"");
                (event.to_string(), serde_json::Value::String(log))
            })
            .collect();
        manifest["scripts"] = serde_json::Value::Object(scripts);
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    }
    sandbox.install(&[]);
    assert_eq!(
        log(&sandbox),
        [
            "workspace-fixture preinstall",
            "workspace-fixture postinstall",
            "@ws/lib preinstall",
            "@ws/lib postinstall",
            "@ws/app preinstall",
            "@ws/app postinstall",
            "ws-cli preinstall",
            "ws-cli postinstall",
        ]
    );
}

/// The `builds` sandbox turned into a project with two `file:` dependencies whose builds take
/// a while, each logging its start and end; `workspace` is its pnpm-workspace.yaml.
fn slow_builds(workspace: &str) -> Sandbox {
    let sandbox = Sandbox::new("builds");
    let project = sandbox.project();
    for name in ["slow-a", "slow-b"] {
        let dir = project.join("local").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            format!(
                r#"{{"name":"{name}","version":"1.0.0","scripts":{{"postinstall":"echo start >> \"$INIT_CWD/builds.log\"; sleep 0.3; echo end >> \"$INIT_CWD/builds.log\""}}}}"#
            ),
        )
        .unwrap();
    }
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"c","version":"1.0.0","dependencies":{"slow-a":"file:local/slow-a","slow-b":"file:local/slow-b"}}"#,
    )
    .unwrap();
    std::fs::remove_file(project.join("pnpm-lock.yaml")).unwrap();
    std::fs::write(project.join("pnpm-workspace.yaml"), workspace).unwrap();
    sandbox
}

#[test]
fn child_concurrency_limits_how_many_builds_run_at_once() {
    // As pnpm 12: with `childConcurrency: 1` the two builds never overlap (with 2, the
    // default on two cores, both pnpm and flowpm ran them together).
    let sandbox = slow_builds(
        "allowBuilds:\n  \"slow-a@file:local/slow-a\": true\n  \"slow-b@file:local/slow-b\": true\n\
         childConcurrency: 1\n",
    );
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(log(&sandbox), ["start", "end", "start", "end"]);
}

#[test]
fn a_local_package_is_allowed_to_build_only_by_its_full_key() {
    // pnpm 12 ignores the build of a `file:` package allowed by its bare name or by its
    // package.json version: only `name@file:<path>` decides (a name alone does not say which
    // code may run).
    let sandbox =
        slow_builds("allowBuilds:\n  slow-a: true\n  \"slow-b@file:local/slow-b\": true\n");
    let error = sandbox.flowpm_fails(&["install"]);
    assert!(error.contains("slow-a@file:local/slow-a"), "{error}");
    assert!(!error.contains("slow-b@"), "{error}");
    assert_eq!(log(&sandbox), ["start", "end"]);
}

#[test]
fn a_binding_gyp_package_builds_with_the_node_gyp_that_npm_ships() {
    // pnpm 12 runs a `binding.gyp` package's implicit `node-gyp rebuild` with the node-gyp it
    // ships. flowpm ships none: it puts the `node-gyp-bin` of the npm on PATH on the scripts'
    // PATH, as npm does. A stand-in npm installation (laid out as npm's) records the call.
    let sandbox = Sandbox::new("builds");
    let npm = sandbox.project().join("../npm-prefix");
    let package = npm.join("lib/node_modules/npm");
    let gyp_bin = package.join("bin/node-gyp-bin");
    std::fs::create_dir_all(&gyp_bin).unwrap();
    std::fs::create_dir_all(npm.join("bin")).unwrap();
    std::fs::write(package.join("bin/npm-cli.js"), "").unwrap();
    std::os::unix::fs::symlink(
        "../lib/node_modules/npm/bin/npm-cli.js",
        npm.join("bin/npm"),
    )
    .unwrap();
    write_script(
        &gyp_bin.join("node-gyp"),
        "echo \"node-gyp $* for $npm_package_name\" >> \"$INIT_CWD/builds.log\"\n",
    );
    std::fs::write(
        sandbox.project().join("pnpm-workspace.yaml"),
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: true\n",
    )
    .unwrap();
    let path = path_with(&npm.join("bin"));
    let output = sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], &[("PATH", &path)]);
    assert!(output.status.success(), "{}", text(&output));
    let ran = log(&sandbox);
    assert!(
        ran.contains(&"node-gyp rebuild for build-gyp".to_owned()),
        "{ran:?}"
    );
}

#[test]
fn a_build_that_changed_its_package_is_restored_from_the_store_instead_of_run_again() {
    // pnpm 12's side-effects cache, on the same fixture: after `rm -rf node_modules`, build-dep
    // (whose postinstall rewrote its files) is copied as built from the store and not run;
    // build-top (whose scripts change nothing in its package) runs again.
    let sandbox = Sandbox::new("builds");
    let workspace = sandbox.project().join("pnpm-workspace.yaml");
    std::fs::write(
        &workspace,
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: false\n",
    )
    .unwrap();
    sandbox.install(&[]);
    assert!(log(&sandbox).contains(&"build-dep postinstall".to_owned()));
    let built = package_file(&sandbox, "build-dep@1.0.0", "index.js");
    // The cached build is an index entry of its own, not counted as a package.
    let status = text(&sandbox.store_command(&["status"]));
    assert!(status.contains("cached builds: 1"), "{status}");
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    sandbox.install(&[]);
    assert_eq!(
        log(&sandbox),
        [
            "root preinstall",
            "build-top preinstall",
            "build-top install",
            "extra ran",
            "root install",
            "root postinstall",
            "root prepare",
        ]
    );
    assert_eq!(std::fs::read_to_string(&built).unwrap(), "rewritten\n");
    assert!(package_file(&sandbox, "build-dep@1.0.0", "built.txt").is_file());
    // Still a copy of its own: the store keeps the package as shipped.
    assert_eq!(std::fs::metadata(&built).unwrap().nlink(), 1);

    // `sideEffectsCache: false` builds every time.
    std::fs::write(
        &workspace,
        "allowBuilds:\n  build-top: true\n  build-dep: true\n  build-gyp: false\n\
         sideEffectsCache: false\n",
    )
    .unwrap();
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    sandbox.install(&[]);
    assert!(log(&sandbox).contains(&"build-dep postinstall".to_owned()));
}
