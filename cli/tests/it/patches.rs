//! `patchedDependencies` (pnpm-workspace.yaml), against pnpm 12.26's lockfile and tree for the
//! `patched` fixture: a patch for every version (`left-pad-lite`, written by
//! `pnpm patch-commit`) and one for a version (`r-tp-b@1.0.0`, a package with a peer), which
//! edit a file, add one and add an executable one.

use std::os::unix::fs::MetadataExt;

use crate::common::{Sandbox, assert_resolves_as_pnpm, text};

/// pnpm's lockfile (`(patch_hash=…)` keys before the peer suffix, the top-level hashes)
/// installs pnpm's patched tree, and resolving from scratch writes it byte for byte. Before,
/// flowpm installed the unpatched files under the patched directory names.
#[test]
fn patched_dependencies_install_and_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("patched");
}

/// A patched file is the package's own: the store keeps the tarball's content, which an
/// unpatched install of the same version (another project) links.
#[test]
fn a_patched_file_is_never_a_link_into_the_store() {
    let sandbox = Sandbox::new("patched");
    sandbox.install(&[]);
    let package = sandbox.project().join("node_modules/left-pad-lite");
    let patched = std::fs::metadata(package.join("index.js")).unwrap();
    assert_eq!(patched.nlink(), 1);
    assert_eq!(
        std::fs::read_to_string(package.join("index.js")).unwrap(),
        "module.exports = (s) => '    ' + s;\n// patched\n"
    );
    // Untouched by the patch: linked from the store as usual.
    assert!(
        std::fs::metadata(package.join("package.json"))
            .unwrap()
            .nlink()
            > 1
    );
    let output = sandbox.store_command(&["verify"]);
    assert!(output.status.success(), "{}", text(&output));
}

/// An edited patch makes the lockfile outdated (`--frozen-lockfile` fails naming it, as pnpm's
/// does); a plain install writes the new hash and applies the new patch. A patch that does not
/// fit fails the install naming the patch, the package and the hunk, and writes no lockfile.
#[test]
fn a_changed_patch_is_noticed_and_a_bad_one_names_itself() {
    let sandbox = Sandbox::new("patched");
    sandbox.install(&[]);
    let patch = sandbox.project().join("patches/r-tp-b.patch");
    let text_before = std::fs::read_to_string(&patch).unwrap();
    std::fs::write(
        &patch,
        text_before.replace("// second line", "// edited line"),
    )
    .unwrap();
    let error = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(error.contains("the patch of `r-tp-b@1.0.0`"), "{error}");
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let hash = flowpm_stages::patch::hash(&std::fs::read_to_string(&patch).unwrap());
    assert!(
        lockfile.contains(&format!("  r-tp-b@1.0.0: {hash}\n")),
        "{lockfile}"
    );
    let index = sandbox.project().join("node_modules/r-tp-b/index.js");
    assert!(
        std::fs::read_to_string(index)
            .unwrap()
            .contains("// edited line")
    );

    std::fs::write(
        &patch,
        text_before.replace("-module.exports = 'r-tp-b@1.0.0';", "-nope"),
    )
    .unwrap();
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("r-tp-b.patch")
            && error.contains("does not apply to `r-tp-b@1.0.0")
            && error.contains("index.js: hunk 1"),
        "{error}"
    );
}

/// A patch that matches no package fails resolution as pnpm's ERR_PNPM_UNUSED_PATCH does,
/// unless `allowUnusedPatches: true`; then it is in the lockfile as pnpm writes it.
#[test]
fn an_unused_patch_fails_unless_allowed() {
    let sandbox = Sandbox::new("patched");
    let workspace = sandbox.project().join("pnpm-workspace.yaml");
    crate::common::replace_in(
        &workspace,
        "  r-tp-b@1.0.0: patches/r-tp-b.patch\n",
        "  r-tp-b@1.0.0: patches/r-tp-b.patch\n  nothere@1.0.0: patches/r-tp-b.patch\n",
    );
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("match no package: nothere@1.0.0")
            && error.contains("ERR_PNPM_UNUSED_PATCH"),
        "{error}"
    );
    crate::common::replace_in(
        &workspace,
        "patchedDependencies:",
        "allowUnusedPatches: true\npatchedDependencies:",
    );
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert!(
        lockfile.contains("\n  nothere@1.0.0: 913cbf63"),
        "{lockfile}"
    );
}
