//! pnpm workspaces: installed from an up-to-date lockfile, from the root or any project.

use crate::common::{Sandbox, diff, node_available, pnpm_tree, replace_in, text};

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

#[test]
fn a_workspace_project_out_of_sync_with_the_lockfile_is_named_and_nothing_is_written() {
    let sandbox = Sandbox::new("workspace");
    replace_in(
        &sandbox.project().join("packages/lib/package.json"),
        "\"r-lib\": \"^1.0.0\"",
        "\"r-lib\": \"^1.1.0\"",
    );
    let lockfile = std::fs::read(sandbox.project().join("pnpm-lock.yaml")).unwrap();

    let frozen = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        frozen.contains("is `^1.1.0` in package.json of workspace project `packages/lib`"),
        "{frozen}"
    );
    // Without --frozen-lockfile the workspace would need resolving, which is refused clearly.
    let install = sandbox.flowpm_fails(&["install"]);
    assert!(install.contains("cannot resolve one yet"), "{install}");
    let add = sandbox.flowpm_fails(&["add", "r-tilde"]);
    assert!(add.contains("pnpm-workspace.yaml"), "{add}");

    assert_eq!(
        std::fs::read(sandbox.project().join("pnpm-lock.yaml")).unwrap(),
        lockfile
    );
    assert!(!sandbox.project().join("node_modules").exists());
    assert!(
        std::fs::read_to_string(sandbox.project().join("package.json"))
            .unwrap()
            .contains("bin-tool")
    );
}
