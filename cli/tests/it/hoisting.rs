//! Public and private hoisting by pnpm-workspace.yaml's `publicHoistPattern`,
//! `shamefullyHoist`, `hoistPattern` and `hoist`, compared with the trees pnpm 12 recorded.

use crate::common::{
    Sandbox, assert_resolves_as_pnpm, assert_sandbox_resolves_as_pnpm, diff, pnpm_tree, text,
};

fn modules_yaml(sandbox: &Sandbox) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(sandbox.project().join("node_modules/.modules.yaml")).unwrap(),
    )
    .unwrap()
}

/// Patterns with negations, a private pattern that hoists only some packages, bins of a
/// publicly hoisted package in the root `.bin`: pnpm's tree from its lockfile and from scratch.
#[test]
fn packages_are_hoisted_publicly_and_privately_by_pattern_as_pnpm_hoists_them() {
    assert_resolves_as_pnpm("hoist-public");
}

/// Every package and workspace project hoisted into the root `node_modules`, bins of the
/// projects included, as pnpm lays a workspace out under `shamefullyHoist: true`.
#[test]
fn shamefully_hoisting_a_workspace_matches_pnpm() {
    assert_resolves_as_pnpm("workspace-hoisted");
}

/// A changed pattern is not a no-op: the links move as pnpm 12 moves them, and back.
#[test]
fn changing_the_patterns_moves_the_links() {
    let sandbox = Sandbox::new("hoist-public");
    let expected = pnpm_tree("hoist-public");
    sandbox.install(&[]);
    let settings = sandbox.project().join("pnpm-workspace.yaml");
    let saved = std::fs::read(&settings).unwrap();
    let modules = sandbox.project().join("node_modules");

    std::fs::remove_file(&settings).unwrap();
    let output = sandbox.install(&[]);
    assert!(
        !text(&output).contains("Already up to date"),
        "{}",
        text(&output)
    );
    for public in [
        "deep-1",
        "deep-15",
        "left-pad-lite",
        "bin-tool",
        ".bin/bin-tool",
    ] {
        assert!(
            modules.join(public).symlink_metadata().is_err(),
            "{public} still in the root node_modules"
        );
    }
    for private in [
        "deep-1",
        "deep-16",
        "deep-3",
        "bin-tool",
        "native-thing-linux-x64",
    ] {
        assert!(
            modules.join(".pnpm/node_modules").join(private).is_dir(),
            "{private} not hoisted privately"
        );
    }
    let recorded = modules_yaml(&sandbox);
    assert_eq!(recorded["publicHoistPattern"], serde_json::json!([]));
    assert_eq!(recorded["hoistPattern"], serde_json::json!(["*"]));
    assert_eq!(
        recorded["hoistedDependencies"]["deep-1@1.0.0"],
        serde_json::json!({"deep-1": "private"})
    );

    std::fs::write(&settings, &saved).unwrap();
    sandbox.install(&[]);
    let tree = sandbox.manifest();
    assert!(tree == expected, "{}", diff(&expected, &tree));
    assert_eq!(
        modules_yaml(&sandbox)["hoistedDependencies"]["deep-1@1.0.0"],
        serde_json::json!({"deep-1": "public"})
    );

    // `hoist: false`: nothing private; pnpm then records no `hoistPattern`.
    std::fs::write(&settings, "hoist: false\n").unwrap();
    sandbox.install(&[]);
    let private_links =
        std::fs::read_dir(modules.join(".pnpm/node_modules")).map_or(0, Iterator::count);
    assert_eq!(private_links, 0, "links left in .pnpm/node_modules");
    assert!(modules.join("deep-1").symlink_metadata().is_err());
    assert!(modules_yaml(&sandbox).get("hoistPattern").is_none());
}

/// A directory of the user's own in the root `node_modules` under a name hoisted publicly is
/// left as it is (pnpm leaves it too).
#[test]
fn public_hoisting_never_replaces_what_is_not_a_link() {
    let sandbox = Sandbox::new("hoist-public");
    let mine = sandbox.project().join("node_modules/deep-17");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("patched.js"), "mine").unwrap();
    sandbox.install(&[]);
    assert_eq!(
        std::fs::read_to_string(mine.join("patched.js")).unwrap(),
        "mine"
    );
    assert!(!mine.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(
        sandbox
            .project()
            .join("node_modules/deep-18")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A workspace project takes its name among the hoisted before packages further down do (a
/// project named like a transitive dependency wins), and a project without dependencies gets
/// no `node_modules`, as pnpm 12 lays it out.
#[test]
fn workspace_projects_are_hoisted_before_deeper_packages() {
    let sandbox = Sandbox::new("workspace-hoist-names");
    assert_sandbox_resolves_as_pnpm(&sandbox, "workspace-hoist-names");
    for project in ["bt", "empty"] {
        let modules = sandbox
            .project()
            .join("packages")
            .join(project)
            .join("node_modules");
        assert!(!modules.exists(), "{} was made", modules.display());
    }
}
