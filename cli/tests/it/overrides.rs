//! `overrides` in pnpm-workspace.yaml, against pnpm 12's lockfile and tree for the
//! `resolve-overrides` fixture: by name, by name and range, under a parent (with a range), `-`
//! (dropped), `$name` (the root's own specifier) and an `npm:` alias.

use crate::common::{
    Sandbox, assert_resolves_as_pnpm, assert_resolves_to_recorded_edit, replace_in, text,
};

/// pnpm's lockfile records overridden importer specifiers (`r-lib: 1.0.0` where package.json
/// says `^1.0.0`): with the same overrides configured it is up to date, and resolving from
/// scratch writes it again.
#[test]
fn overrides_install_and_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("resolve-overrides");
}

#[test]
fn changed_overrides_make_the_lockfile_outdated_and_are_resolved_again() {
    let sandbox = Sandbox::new("resolve-overrides");
    let settings = sandbox.project().join("pnpm-workspace.yaml");
    replace_in(&settings, "  r-lib: 1.0.0\n", "  r-lib: 1.1.1\n");
    replace_in(&settings, "  r-tilde: npm:r-aliased@^1\n", "");

    let frozen = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        frozen.contains("the overrides in pnpm-workspace.yaml are not the ones in the lockfile"),
        "{frozen}"
    );
    // pnpm 12 wrote the same lockfile for this edit.
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    for expected in [
        "overrides:\n  r-lib: 1.1.1\n  r-wants-tilde>r-lib: 1.1.0\n  r-lib2@^1.0.0: 1.1.0\n  r-pins-lib3@1>r-lib3: '-'\n  r-caret: ~1.1.0\n\n",
        "      r-lib:\n        specifier: 1.1.1\n        version: 1.1.1\n",
        "      r-tilde:\n        specifier: ~1.1.0\n        version: 1.1.2\n",
        "  r-wants-caret@1.0.0:\n    dependencies:\n      r-lib: 1.1.1\n",
        "  r-wants-tilde@1.0.0:\n    dependencies:\n      r-lib: 1.1.0\n",
        "  r-pins-lib3@1.0.0: {}\n",
    ] {
        assert!(
            lockfile.contains(expected),
            "{expected}\nnot in\n{lockfile}"
        );
    }
    assert!(!lockfile.contains("r-aliased"), "{lockfile}");
    sandbox.install(&[]);
}

/// An install over an earlier tree relinks a package whose dependencies changed under the
/// same depPath (`r-wants-caret@1.0.0` gets `r-lib` 1.1.1 for 1.0.0; `r-pins-lib3@1.0.0`
/// gets `r-lib3`, then loses it again), and leaves the tree
/// equal to a fresh install's: resolving (the links made inside the resolution run) and then
/// from a lockfile put back by hand (`--frozen-lockfile`).
#[test]
fn an_install_over_an_earlier_tree_relinks_what_changed() {
    let sandbox = Sandbox::new("resolve-overrides");
    sandbox.install(&[]);
    let original_tree = sandbox.manifest();
    let project = sandbox.project();
    let (settings, lockfile) = (
        project.join("pnpm-workspace.yaml"),
        project.join("pnpm-lock.yaml"),
    );
    let (original_settings, original_lockfile) = (
        std::fs::read_to_string(&settings).unwrap(),
        std::fs::read_to_string(&lockfile).unwrap(),
    );
    let link = project.join("node_modules/.pnpm/r-wants-caret@1.0.0/node_modules/r-lib");
    let target = || std::fs::read_link(&link).unwrap();
    assert!(
        target().ends_with("r-lib@1.0.0/node_modules/r-lib"),
        "{:?}",
        target()
    );

    replace_in(&settings, "  r-lib: 1.0.0\n", "  r-lib: 1.1.1\n");
    // `r-pins-lib3@1.0.0` gets its dependency back, to lose it again below.
    replace_in(&settings, "  r-pins-lib3@1>r-lib3: '-'\n", "");
    let dropped = project.join("node_modules/.pnpm/r-pins-lib3@1.0.0/node_modules/r-lib3");
    assert!(dropped.symlink_metadata().is_err());
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        target().ends_with("r-lib@1.1.1/node_modules/r-lib"),
        "{:?}",
        target()
    );
    assert!(dropped.symlink_metadata().is_ok());
    let fresh = Sandbox::new("resolve-overrides");
    for path in ["pnpm-workspace.yaml", "pnpm-lock.yaml"] {
        std::fs::copy(project.join(path), fresh.project().join(path)).unwrap();
    }
    fresh.install(&[]);
    assert_eq!(sandbox.manifest(), fresh.manifest());

    std::fs::write(&settings, original_settings).unwrap();
    std::fs::write(&lockfile, original_lockfile).unwrap();
    sandbox.install(&[]);
    assert!(
        target().ends_with("r-lib@1.0.0/node_modules/r-lib"),
        "{:?}",
        target()
    );
    assert!(
        dropped.symlink_metadata().is_err(),
        "a link no longer wanted stayed"
    );
    assert_eq!(sandbox.manifest(), original_tree);
}

/// After an override is removed or changed, pnpm 12.21.0 picks a package whose rule is keyed
/// by its bare name again without preferring its old version, and keeps the old versions of
/// the rest (rules keyed by `name@range` or `parent>name` included). Its lockfiles for two
/// edits of the fixture are recorded in `after-edits/`.
#[test]
fn removed_and_changed_overrides_resolve_as_pnpm_does() {
    for (edits, recorded) in [
        (
            &[
                ("  r-lib: 1.0.0\n", ""),
                ("  r-wants-tilde>r-lib: 1.1.0\n", ""),
                ("  r-lib2@^1.0.0: 1.1.0\n", ""),
                ("  r-pins-lib3@1>r-lib3: '-'\n", ""),
                ("  r-caret: $r-caret\n", ""),
                ("  r-tilde: npm:r-aliased@^1\n", ""),
            ][..],
            "every-override-removed.yaml",
        ),
        (
            &[
                ("  r-lib2@^1.0.0: 1.1.0\n", ""),
                ("r-wants-tilde>r-lib: 1.1.0", "r-wants-tilde>r-lib: 1.0.0"),
            ][..],
            "range-and-parent-rules-changed.yaml",
        ),
    ] {
        let sandbox = Sandbox::new("resolve-overrides");
        let settings = sandbox.project().join("pnpm-workspace.yaml");
        for (from, to) in edits {
            replace_in(&settings, from, to);
        }
        assert_resolves_to_recorded_edit(&sandbox, recorded);
        sandbox.install(&[]);
    }
}

#[test]
fn an_override_referring_to_no_root_dependency_is_named() {
    let sandbox = Sandbox::new("resolve-overrides");
    let settings = sandbox.project().join("pnpm-workspace.yaml");
    replace_in(&settings, "$r-caret", "$r-nothing");
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("pnpm-workspace.yaml")
            && error.contains(
                "refers to `r-nothing`, which is not a dependency of the root package.json"
            ),
        "{error}"
    );
}

/// Overrides rewrite packages' peer ranges too, as pnpm 12.26 does (RESOLVE-ORACLE §9; each
/// case observed for `r-tp-b`, whose peer is `r-core: ^1.0.0`): the lockfile's
/// `peerDependencies` and the auto-installed peer follow the rule; a range rule the peer's
/// range is outside of leaves it; `-` drops the peer; an `npm:` alias leaves the range and
/// makes the auto-installed peer the alias.
#[test]
fn overrides_apply_to_peer_ranges_as_pnpm_applies_them() {
    let cases = [
        ("r-core: 1.0.0", Some("1.0.0"), "1.0.0(r-core@1.0.0)"),
        (
            "'r-tp-b>r-core': 1.1.0",
            Some("1.1.0"),
            "1.0.0(r-core@1.1.0)",
        ),
        ("'r-core@^1': 1.0.0", Some("1.0.0"), "1.0.0(r-core@1.0.0)"),
        ("'r-core@^2': 2.0.0", Some("^1.0.0"), "1.0.0(r-core@1.1.0)"),
        ("r-core: ^1.1.0", Some("^1.1.0"), "1.0.0(r-core@1.1.0)"),
        ("r-core: '-'", None, "1.0.0\n"),
        // The range stays; the auto-installed peer is the alias, named by its package.
        ("r-core: npm:r-lib@^1", Some("^1.0.0"), "1.0.0(r-lib@1.2.0)"),
    ];
    for (rule, peer_range, version) in cases {
        let sandbox = Sandbox::new("resolve-overrides");
        std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
        std::fs::write(
            sandbox.project().join("package.json"),
            r#"{"name":"app","version":"1.0.0","dependencies":{"r-tp-b":"1.0.0"}}"#,
        )
        .unwrap();
        std::fs::write(
            sandbox.project().join("pnpm-workspace.yaml"),
            format!("overrides:\n  {rule}\n"),
        )
        .unwrap();
        let output = sandbox.flowpm(&["install"]);
        assert!(output.status.success(), "{rule}: {}", text(&output));
        let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
        assert!(
            lockfile.contains(&format!(
                "      r-tp-b:\n        specifier: 1.0.0\n        version: {version}"
            )),
            "{rule}:\n{lockfile}"
        );
        let entry = lockfile.split("\n  r-tp-b@1.0.0:\n").nth(1).unwrap();
        let entry = entry.split("\n\n").next().unwrap();
        match peer_range {
            Some(range) => assert!(
                entry.contains(&format!("    peerDependencies:\n      r-core: {range}")),
                "{rule}:\n{lockfile}"
            ),
            None => assert!(!entry.contains("peerDependencies"), "{rule}:\n{lockfile}"),
        }
    }
}
