//! `packageExtensions` in pnpm-workspace.yaml (dependencies and peers added to published
//! packages), and peer cycles, against pnpm 12's lockfiles and trees for the
//! `resolve-extensions` and `resolve-peer-cycles` fixtures.

use crate::common::{
    Sandbox, assert_resolves_as_pnpm, assert_resolves_to_recorded_edit, replace_in,
};

/// An added dependency, an added optional peer that closes a peer cycle, a rule whose range
/// matches nothing; pnpm's `packageExtensionsChecksum` written and accepted.
#[test]
fn package_extensions_install_and_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("resolve-extensions");
}

/// Packages peering on a member of a peer cycle from outside it (at the top, deeper, through
/// an alias) name it bare; one peering on such a package names that one in full.
#[test]
fn peer_cycles_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("resolve-peer-cycles");
}

/// A changed or removed setting makes the lockfile outdated (`--frozen-lockfile` fails, as in
/// pnpm); resolving again writes what pnpm 12.21.0 wrote for the same edit
/// (`resolve-extensions/after-edits/`).
#[test]
fn changed_package_extensions_are_resolved_again_as_pnpm_does() {
    for (edit, recorded, gone) in [
        (
            ("r-lib2: ^1.0.0", "r-lib2: 1.0.0"),
            "r-lib2-pinned.yaml",
            "r-lib2@1.2.0",
        ),
        (("", ""), "every-extension-removed.yaml", "r-lib2@1.2.0"),
    ] {
        let sandbox = Sandbox::new("resolve-extensions");
        let settings = sandbox.project().join("pnpm-workspace.yaml");
        if edit.0.is_empty() {
            // Keep the key, drop every rule.
            let text = std::fs::read_to_string(&settings).unwrap();
            let kept = &text[..text.find("packageExtensions:").unwrap()];
            std::fs::write(&settings, format!("{kept}packageExtensions:\n")).unwrap();
        } else {
            replace_in(&settings, edit.0, edit.1);
        }
        let frozen = sandbox.fails_keeping_lockfile(&["install", "--frozen-lockfile"]);
        assert!(
            frozen.contains("packageExtensions") && frozen.contains("packageExtensionsChecksum"),
            "{frozen}"
        );
        assert_resolves_to_recorded_edit(&sandbox, recorded);
        assert!(
            !sandbox
                .project()
                .join("node_modules/.pnpm")
                .join(gone)
                .exists(),
            "{recorded}: {gone} left in node_modules"
        );
        sandbox.install(&[]);
    }
}

#[test]
fn a_bad_package_extension_is_named() {
    for (from, to, cause) in [
        ("        optional: true", "        optional: 1", "optional"),
        (
            "  r-dom@2:",
            "  r-dom@not a range:",
            "`not a range` is not a version range",
        ),
    ] {
        let sandbox = Sandbox::new("resolve-extensions");
        let settings = sandbox.project().join("pnpm-workspace.yaml");
        replace_in(&settings, from, to);
        let error = sandbox.fails_keeping_lockfile(&["install"]);
        assert!(
            error.contains("pnpm-workspace.yaml") && error.contains(cause),
            "{error}"
        );
    }
}
