//! pnpm catalogs (`catalog:` and `catalog:<name>` specifiers, ranges in pnpm-workspace.yaml),
//! against pnpm 12's lockfile and tree for the `workspace-catalogs` fixture.

use crate::common::{Sandbox, assert_resolves_as_pnpm, replace_in, text};

/// pnpm's lockfile (importers say `catalog:`, the `catalogs` section has the ranges) is up to
/// date as recorded; resolved from scratch (the default and a named catalog, `catalog:default`,
/// a tag as a catalog range, one range used by two projects) it is written again byte for byte.
#[test]
fn catalogs_install_and_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("workspace-catalogs");
}

#[test]
fn a_changed_catalog_range_makes_the_lockfile_outdated() {
    let sandbox = Sandbox::new("workspace-catalogs");
    let settings = sandbox.project().join("pnpm-workspace.yaml");
    replace_in(&settings, "    r-tilde: ~1.0.0\n", "    r-tilde: ~1.1.0\n");
    let frozen = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(
        frozen.contains(
            "the `legacy` catalog entry for `r-tilde` is `~1.1.0` in pnpm-workspace.yaml but `~1.0.0` in the lockfile"
        ),
        "{frozen}"
    );
    // pnpm 12 wrote the same entries for this edit: the entry is resolved again, its users follow.
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    for expected in [
        "  legacy:\n    r-lib:\n      specifier: 1.0.0\n      version: 1.0.0\n    r-tilde:\n      specifier: ~1.1.0\n      version: 1.1.2\n",
        "      r-tilde:\n        specifier: catalog:legacy\n        version: 1.1.2\n",
    ] {
        assert!(
            lockfile.contains(expected),
            "{expected}\nnot in\n{lockfile}"
        );
    }
    assert!(!lockfile.contains("r-tilde@1.0.5"), "{lockfile}");
    sandbox.install(&["--frozen-lockfile"]);
}

#[test]
fn a_missing_catalog_entry_is_named() {
    let sandbox = Sandbox::new("workspace-catalogs");
    replace_in(
        &sandbox.project().join("packages/old/package.json"),
        "\"r-caret\": \"catalog:\"",
        "\"r-caret\": \"catalog:legacy\"",
    );
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("`r-caret@catalog:legacy` (in packages/old/package.json)")
            && error.contains("no catalog entry `r-caret` in the `legacy` catalog"),
        "{error}"
    );
}

#[test]
fn add_saves_a_catalog_reference_as_given() {
    let sandbox = Sandbox::new("workspace-catalogs");
    let app = sandbox.project().join("packages/app");
    let output = sandbox.flowpm_in(&app, &["add", "r-caret@catalog:"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    // What pnpm 12 wrote for `pnpm add r-caret@catalog:` in packages/app.
    let manifest = std::fs::read_to_string(app.join("package.json")).unwrap();
    assert!(
        manifest.contains("\"r-caret\": \"catalog:\","),
        "{manifest}"
    );
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let app_importer = &lockfile
        [lockfile.find("  packages/app:").unwrap()..lockfile.find("  packages/old:").unwrap()];
    assert!(
        app_importer
            .contains("      r-caret:\n        specifier: 'catalog:'\n        version: 1.2.0\n"),
        "{app_importer}"
    );
}
