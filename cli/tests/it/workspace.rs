//! pnpm workspaces: installed from an up-to-date lockfile, from the root or any project.

use crate::common::{
    Sandbox, assert_resolves_from_scratch, diff, node_available, pnpm_tree, replace_in, text,
};

#[test]
fn a_workspace_installs_as_pnpm_lays_it_out_from_any_project() {
    let sandbox = Sandbox::new("workspace");
    let expected = pnpm_tree("workspace");

    // Run from a nested project: the whole workspace is installed from its root.
    let app = sandbox.project().join("packages/app");
    let cold = sandbox.flowpm_in(&app, &["install", "--frozen-lockfile"], &[]);
    assert!(cold.status.success(), "{}", text(&cold));
    let tree = sandbox.manifest();
    assert!(
        tree == expected,
        "workspace install differs from pnpm's tree:\n{}",
        diff(&expected, &tree)
    );
    let modules: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sandbox.project().join("node_modules/.modules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        modules["hoistedDependencies"]["tools/cli"],
        serde_json::json!({"ws-cli": "private"}),
        "workspace projects are recorded as hoisted under their importer id"
    );

    let again = sandbox.install(&[]);
    assert!(
        text(&again).contains("Already up to date"),
        "{}",
        text(&again)
    );

    // A project's links are repaired like the root's.
    std::fs::remove_dir_all(sandbox.project().join("tools/cli/node_modules")).unwrap();
    sandbox.install(&[]);
    assert_eq!(sandbox.manifest(), expected);

    if node_available() {
        let output = std::process::Command::new("node")
            .args([
                "-e",
                "require('@ws/lib/package.json'); require('@fixture/scoped-bin/package.json'); require('peer-plugin')",
            ])
            .current_dir(&app)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
}

/// Without a lockfile, each project resolves in its own scope (`r-lib` is 1.2.0 at the root
/// next to `packages/a`'s pin of 1.1.0), auto-installed peers are per project (`packages/a`
/// gets `r-core` for `r-dom`), `workspace:` specifiers (`~`, `^1.0.0`, `name@*` for the root)
/// become `link:` entries, a registry range is not linked to a workspace project of that name
/// (`r-lib3`), and an empty project gets an empty importer: the lockfile is byte for byte
/// pnpm 12's and the tree is pnpm's.
#[test]
fn a_workspace_without_a_lockfile_resolves_to_pnpms_lockfile_and_tree() {
    for (project, nested) in [
        ("workspace", "packages/app"),
        ("workspace-resolve", "packages/b"),
    ] {
        let sandbox = Sandbox::new(project);
        assert_resolves_from_scratch(&sandbox, project, &sandbox.project().join(nested));
        let again = sandbox.install(&[]);
        assert!(
            text(&again).contains("Already up to date"),
            "{}",
            text(&again)
        );
    }
}

#[test]
fn a_workspace_project_out_of_sync_with_the_lockfile_is_resolved_again() {
    let sandbox = Sandbox::new("workspace");
    let lib = sandbox.project().join("packages/lib/package.json");
    replace_in(&lib, "\"r-lib\": \"^1.0.0\"", "\"r-lib\": \"~1.1.0\"");
    let lockfile_path = sandbox.project().join("pnpm-lock.yaml");
    let before = std::fs::read_to_string(&lockfile_path).unwrap();

    let frozen = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        frozen.contains("is `~1.1.0` in package.json of workspace project `packages/lib`"),
        "{frozen}"
    );
    assert_eq!(std::fs::read_to_string(&lockfile_path).unwrap(), before);
    assert!(!sandbox.project().join("node_modules").exists());

    // Only what changed moves (checked against pnpm 12 on the same edit: identical lockfile).
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let after = std::fs::read_to_string(&lockfile_path).unwrap();
    let expected = before
        .replace(
            "      r-lib:\n        specifier: ^1.0.0\n        version: 1.2.0",
            "      r-lib:\n        specifier: ~1.1.0\n        version: 1.1.1",
        )
        .replace("r-lib@1.2.0", "r-lib@1.1.1")
        .replace(
            "jI7OPJBv1WunxXXZu4KR2LyIBNvLsOdfdPavswz4sY+tyzZabegnlpoyx8eT9xuxLX56QWDVXtA//KSB917AQA==",
            "jet6hCZRf9/yDS1mZ/B97FCp00Ws/KEXPdYfNZO6EkPcC4fekZulrQCZ+vUiZi7LpKvXUoQmWL0JcZJHtr0Lgg==",
        );
    assert_eq!(after, expected);
    let installed = std::fs::read_to_string(
        sandbox
            .project()
            .join("packages/lib/node_modules/r-lib/package.json"),
    )
    .unwrap();
    assert!(installed.contains("\"version\": \"1.1.1\""), "{installed}");
}

/// `add` and `remove` run in a workspace project edit that project's package.json and resolve
/// the whole workspace (pnpm 12 wrote the same lockfiles for the same commands).
#[test]
fn add_and_remove_in_a_workspace_project_edit_that_project() {
    let sandbox = Sandbox::new("workspace");
    let app = sandbox.project().join("packages/app");
    let root_manifest = std::fs::read_to_string(sandbox.project().join("package.json")).unwrap();
    let output = sandbox.flowpm_in(&app, &["add", "r-tilde@~1.1.0"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let manifest = std::fs::read_to_string(app.join("package.json")).unwrap();
    assert!(manifest.contains("\"r-tilde\": \"~1.1.2\""), "{manifest}");
    assert_eq!(
        std::fs::read_to_string(sandbox.project().join("package.json")).unwrap(),
        root_manifest
    );
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let app_importer = &lockfile
        [lockfile.find("  packages/app:").unwrap()..lockfile.find("  packages/lib:").unwrap()];
    assert!(
        app_importer.contains("      r-tilde:\n        specifier: ~1.1.2\n        version: 1.1.2"),
        "{app_importer}"
    );
    assert!(app.join("node_modules/r-tilde").exists());
    assert!(!sandbox.project().join("node_modules/r-tilde").exists());

    let output = sandbox.flowpm_in(&app, &["remove", "peer-plugin"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        !std::fs::read_to_string(app.join("package.json"))
            .unwrap()
            .contains("peer-plugin")
    );
    assert!(!app.join("node_modules/peer-plugin").exists());
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert!(!lockfile.contains("peer-plugin"), "{lockfile}");
    sandbox.install(&[]);
}

/// `update` resolves every project again but rewrites only the package.json of the project it
/// runs in, as pnpm 12.21.0 did in a scratch workspace (RESOLVE-ORACLE.md §8).
#[test]
fn update_in_a_workspace_saves_only_the_current_projects_ranges() {
    let sandbox = Sandbox::new("workspace");
    let app = sandbox.project().join("packages/app");
    let output = sandbox.flowpm_in(&app, &["add", "r-caret@1.0.0"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    replace_in(
        &app.join("package.json"),
        "\"r-caret\": \"1.0.0\"",
        "\"r-caret\": \"^1.0.0\"",
    );
    sandbox.flowpm(&["install"]);
    let app_manifest = std::fs::read_to_string(app.join("package.json")).unwrap();
    let importer = || {
        let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
        let start = lockfile.find("  packages/app:").unwrap();
        let end = lockfile.find("  packages/lib:").unwrap();
        lockfile[start..end].to_owned()
    };
    assert!(
        importer().contains("      r-caret:\n        specifier: ^1.0.0\n        version: 1.0.0")
    );

    let output = sandbox.flowpm(&["update"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(app.join("package.json")).unwrap(),
        app_manifest
    );
    assert!(
        importer().contains("      r-caret:\n        specifier: ^1.0.0\n        version: 1.2.0")
    );

    let output = sandbox.flowpm_in(&app, &["update", "r-caret"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(app.join("package.json")).unwrap(),
        app_manifest.replace("\"r-caret\": \"^1.0.0\"", "\"r-caret\": \"^1.2.0\"")
    );
    assert!(
        importer().contains("      r-caret:\n        specifier: ^1.2.0\n        version: 1.2.0")
    );
    sandbox.install(&[]);
}

#[test]
fn a_workspace_specifier_no_project_matches_is_named_and_nothing_is_written() {
    let sandbox = Sandbox::new("workspace");
    let cli = sandbox.project().join("tools/cli/package.json");
    replace_in(&cli, "\"workspace:^\"", "\"workspace:^2.0.0\"");
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("`@ws/app@workspace:^2.0.0` (in tools/cli/package.json)")
            && error.contains(
                "no version of workspace project `@ws/app` matches `^2.0.0` (it is 1.0.0)"
            ),
        "{error}"
    );
    assert!(!sandbox.project().join("node_modules").exists());
}
