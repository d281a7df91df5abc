//! Dependencies on the project's own disk (`link:`, `file:` directories and tarballs, bare
//! paths), compared with what pnpm 12 wrote and installed for the `local-deps` fixture.

use crate::common::{Sandbox, assert_resolves_as_pnpm, replace_in, text};

#[test]
fn local_dependencies_install_and_resolve_as_pnpm_does() {
    // The recorded lockfile installs pnpm's tree; resolved from scratch, flowpm writes pnpm's
    // lockfile byte for byte: `link:` to directories (their dependencies not installed),
    // `file:` directories packed as `npm pack` would (`files`, `.npmignore`, `main`, bins),
    // a tarball by path with its sha512, and a directory under an alias.
    assert_resolves_as_pnpm("local-deps");
}

/// A `file:` directory's own local dependencies are read from its directory, as pnpm 12.26
/// reads them (`local-nested`, RESOLVE-ORACLE.md §13): `file:` directories and tarballs
/// become packages keyed by their paths from the root, nested ones too; `link:` and bare
/// directory paths become `link:<path from the root>` in its snapshot, symlinks in its
/// `node_modules`; an optional one that is missing is left out. A `file:` tarball's are read
/// from the project's directory. Before, flowpm refused to resolve them, and left the `link:`
/// ones of pnpm's lockfile out of the tree.
#[test]
fn local_dependencies_of_local_packages_resolve_as_pnpm_does() {
    assert_resolves_as_pnpm("local-nested");
}

#[test]
fn pnpm_records_where_directories_were_imported() {
    let sandbox = Sandbox::new("local-deps");
    sandbox.install(&[]);
    let modules: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.project().join("node_modules/.modules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        modules["injectedDeps"],
        serde_json::json!({
            "local/dirdep": [
                "node_modules/.pnpm/dirdep@file+local+dirdep_r-core@2.0.0/node_modules/dirdep"
            ],
            "local/ext": ["node_modules/.pnpm/extpkg@file+local+ext/node_modules/extpkg"],
        })
    );
}

#[test]
fn a_directory_is_read_again_by_each_install_even_offline() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new("local-deps");
    sandbox.install(&[]);
    let registry_file = sandbox
        .project()
        .join("node_modules/.pnpm/r-core@2.0.0/node_modules/r-core/index.js");
    let inode = std::fs::metadata(&registry_file).unwrap().ino();
    let source = sandbox.project().join("local/dirdep/lib");
    std::fs::write(source.join("cli.js"), "changed\n").unwrap();
    std::fs::write(source.join("added.js"), "added\n").unwrap();
    std::fs::remove_file(sandbox.project().join("local/dirdep/README.md")).unwrap();
    // As pnpm: with node_modules in place, the install is not a no-op; the directory is
    // imported again (needing no network) and the registry packages are left as they are.
    sandbox.install(&["--offline"]);
    assert_eq!(std::fs::metadata(&registry_file).unwrap().ino(), inode);
    let tree = sandbox.manifest();
    assert!(tree.iter().any(|line| line.contains("dirdep/lib/added.js")));
    assert!(!tree.iter().any(|line| line.contains("dirdep/README.md")));
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    sandbox.install(&["--offline"]);
    let imported = sandbox.project().join("node_modules/dirdep/lib");
    assert_eq!(
        std::fs::read_to_string(imported.join("cli.js")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(imported.join("added.js")).unwrap(),
        "added\n"
    );
}

#[test]
fn a_missing_directory_names_the_dependency_and_writes_nothing() {
    let sandbox = Sandbox::new("local-deps");
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    std::fs::remove_file(&lockfile).unwrap();
    std::fs::remove_dir_all(sandbox.project().join("local/dirdep")).unwrap();
    let output = sandbox.flowpm(&["install"]);
    let message = text(&output);
    assert!(!output.status.success(), "{message}");
    assert!(
        message.contains("dirdep@file:./local/dirdep/") && message.contains("package.json"),
        "{message}"
    );
    assert!(message.contains("local/dirdep"), "{message}");
    assert!(!lockfile.exists(), "no lockfile is written");
    assert!(!sandbox.project().join("node_modules").exists());
}

#[test]
fn a_changed_tarball_makes_the_lockfile_outdated() {
    let sandbox = Sandbox::new("local-deps");
    sandbox.install(&[]);
    let tarball = sandbox.project().join("vendor/tgzdep-3.1.0.tgz");
    let mut bytes = std::fs::read(&tarball).unwrap();
    // Same gzip stream, one more trailing byte: a different sha512.
    bytes.push(0);
    std::fs::write(&tarball, bytes).unwrap();
    // As pnpm 12.21.0: --frozen-lockfile fails even with node_modules in place (pnpm on the
    // tarball's integrity), and a plain install resolves it again, writing its new sha512.
    let message = sandbox.fails_keeping_lockfile(&["install", "--frozen-lockfile"]);
    assert!(
        message.contains("local dependency `tgzdep` at `vendor/tgzdep-3.1.0.tgz` is outdated"),
        "{message}"
    );
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    let before = std::fs::read_to_string(&lockfile).unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let after = std::fs::read_to_string(&lockfile).unwrap();
    let changed: Vec<_> = after
        .lines()
        .filter(|line| !before.contains(line))
        .collect();
    assert_eq!(changed.len(), 1, "{after}");
    assert!(
        changed[0].contains("tarball: file:vendor/tgzdep-3.1.0.tgz"),
        "{after}"
    );
    sandbox.install(&[]);
}

#[test]
fn a_tarball_changed_in_place_leaves_no_file_of_the_old_one() {
    // Same path, so the same depPath and directory: the new content replaces the old, and a
    // file only the old tarball had goes with it.
    let sandbox = Sandbox::new("local-deps");
    sandbox.install(&[]);
    let imported = sandbox
        .project()
        .join("node_modules/.pnpm/tgzdep@file+vendor+tgzdep-3.1.0.tgz/node_modules/tgzdep");
    assert!(imported.join("index.js").is_file());
    let changed = flowpm_fixtures::PackageSpec::new("tgzdep", "3.1.0")
        .dependency("r-lib", "1.0.0")
        .file("lib.js", "module.exports = 2;\n", 0o644);
    std::fs::write(
        sandbox.project().join("vendor/tgzdep-3.1.0.tgz"),
        flowpm_fixtures::build_tarball(&changed),
    )
    .unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(imported.join("lib.js")).unwrap(),
        "module.exports = 2;\n"
    );
    assert!(
        !imported.join("index.js").exists(),
        "the old tarball's index.js survived"
    );
}

/// pnpm 12.21.0 checks a `file:` directory's package.json against its snapshot before it
/// skips resolution (RESOLVE-ORACLE.md §13): a dependency added, removed or out of range makes
/// the lockfile outdated; a range the locked version still satisfies, or a dev dependency,
/// does not.
#[test]
fn a_directory_whose_dependencies_changed_is_resolved_again() {
    let sandbox = Sandbox::new("local-deps");
    sandbox.install(&[]);
    let manifest = sandbox.project().join("local/dirdep/package.json");
    replace_in(&manifest, r#""r-lib": "^1.0.0""#, r#""r-lib": "^1.2.0""#);
    replace_in(
        &manifest,
        r#""peerDependencies""#,
        r#""devDependencies": { "left-pad-lite": "2" }, "peerDependencies""#,
    );
    sandbox.install(&[]);

    replace_in(
        &manifest,
        r#""bin-tool": "*""#,
        r#""bin-tool": "*", "left-pad-lite": "^1.0.0""#,
    );
    let message = sandbox.fails_keeping_lockfile(&["install", "--frozen-lockfile"]);
    assert!(
        message.contains(
            "local dependency `dirdep` at `local/dirdep` is outdated: `left-pad-lite` is in its package.json but not in the lockfile"
        ),
        "{message}"
    );
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    // pnpm 12.21.0 wrote exactly these additions to the fixture's lockfile for this change.
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    for added in [
        "  left-pad-lite@1.0.0:\n    resolution: {integrity: sha512-6VpxxsnxaZf2rjF7N6xiQkn+Q7PSf9xt43WWUn6KedQWt4Ad5NXa1ZqJ/1OzXNBH8GMboWDXdYA6C3Bmoa69kQ==}\n",
        "      bin-tool: 1.0.0\n      left-pad-lite: 1.0.0\n      r-core: 2.0.0\n",
        "  left-pad-lite@1.0.0: {}\n",
    ] {
        assert!(lockfile.contains(added), "{added} not in:\n{lockfile}");
    }
    let dirdep = "node_modules/.pnpm/dirdep@file+local+dirdep_r-core@2.0.0/node_modules";
    assert!(
        sandbox
            .project()
            .join(dirdep)
            .join("left-pad-lite/package.json")
            .exists()
    );
    sandbox.install(&[]);

    replace_in(&manifest, r#""r-lib": "^1.2.0""#, r#""r-lib": "^2.0.0""#);
    let message = sandbox.fails_keeping_lockfile(&["install", "--frozen-lockfile"]);
    assert!(
        message.contains("`r-lib` is locked at 1.2.0, which `^2.0.0` does not allow"),
        "{message}"
    );
}

/// pnpm 12 names a linked bin outside the workspace by its absolute path on the shim's
/// comment line; inside, by its relative path (RESOLVE-ORACLE.md §13).
#[test]
fn a_linked_bin_outside_the_project_is_named_absolutely_on_the_comment_line() {
    let sandbox = Sandbox::new("local-deps");
    let outside = sandbox.project().parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("package.json"),
        r#"{"name": "outside", "version": "1.0.0", "bin": {"out-cmd": "cli.js"}}"#,
    )
    .unwrap();
    std::fs::write(outside.join("cli.js"), "#!/usr/bin/env node\n").unwrap();
    replace_in(
        &sandbox.project().join("package.json"),
        r#""loc": "link:./local/loc","#,
        r#""loc": "link:./local/loc", "outside": "link:../outside","#,
    );
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let bin = sandbox.project().join("node_modules/.bin");
    let shim = std::fs::read_to_string(bin.join("out-cmd")).unwrap();
    let target = outside.canonicalize().unwrap().join("cli.js");
    assert!(
        shim.ends_with(&format!("# cmd-shim-target={}\n", target.display())),
        "{shim}"
    );
    assert!(
        shim.contains("\"$basedir_abs\"/'../../../outside/cli.js'"),
        "{shim}"
    );
    let inside = std::fs::read_to_string(bin.join("loc")).unwrap();
    assert!(
        inside.ends_with("# cmd-shim-target=../../local/loc/cli.js\n"),
        "{inside}"
    );
}

#[test]
fn add_saves_paths_as_pnpm_does() {
    let sandbox = Sandbox::new("local-deps");
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let manifest = sandbox.project().join("package.json");
    std::fs::write(
        &manifest,
        "{\n  \"name\": \"local-deps\",\n  \"dependencies\": {\n    \"r-core\": \"*\"\n  }\n}\n",
    )
    .unwrap();
    let output = sandbox.flowpm(&[
        "add",
        "./local/ext",
        "file:./local/dirdep",
        "named@./local/loc",
        "./vendor/tgzdep-3.1.0.tgz",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    // pnpm 12.21.0 saved exactly this for the same command (RESOLVE-ORACLE.md §13): a bare
    // directory is `link:`, a path with an alias stays as written, paths are normalized.
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        r#"{
  "name": "local-deps",
  "dependencies": {
    "dirdep": "file:local/dirdep",
    "extpkg": "link:local/ext",
    "named": "./local/loc",
    "r-core": "*",
    "tgzdep": "file:vendor/tgzdep-3.1.0.tgz"
  }
}
"#
    );
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    for line in [
        "      extpkg:\n        specifier: link:local/ext\n        version: link:local/ext\n",
        "      named:\n        specifier: ./local/loc\n        version: link:local/loc\n",
        "  dirdep@file:local/dirdep:\n    resolution: {directory: local/dirdep, type: directory}\n",
    ] {
        assert!(lockfile.contains(line), "{line} not in:\n{lockfile}");
    }
}

/// A tarball URL on another host (a second loopback server) is downloaded during resolution
/// and keyed by its URL, as pnpm 12.21.0 wrote for the same package.json
/// (RESOLVE-ORACLE.md §12); a later resolution keeps it locked without downloading it again.
#[test]
fn tarball_urls_off_the_registry_resolve_as_pnpm_does() {
    let sandbox = Sandbox::new("local-deps");
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let other = flowpm_fixtures::RegistryServer::start(&flowpm_fixtures::registry_dir()).unwrap();
    let host = other.url();
    std::fs::write(
        sandbox.project().join("package.json"),
        format!(
            r#"{{"name":"app","dependencies":{{"r-lib":"{host}r-lib/-/r-lib-1.2.0.tgz","aliased":"{host}r-caret/-/r-caret-2.1.0.tgz","r-tp-a":"{host}r-tp-a/-/r-tp-a-1.0.0.tgz"}}}}"#
        ),
    )
    .unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let expected = "importers:

  .:
    dependencies:
      aliased:
        specifier: {host}r-caret/-/r-caret-2.1.0.tgz
        version: r-caret@{host}r-caret/-/r-caret-2.1.0.tgz
      r-lib:
        specifier: {host}r-lib/-/r-lib-1.2.0.tgz
        version: {host}r-lib/-/r-lib-1.2.0.tgz
      r-tp-a:
        specifier: {host}r-tp-a/-/r-tp-a-1.0.0.tgz
        version: {host}r-tp-a/-/r-tp-a-1.0.0.tgz(r-core@1.1.0)

packages:

  r-caret@{host}r-caret/-/r-caret-2.1.0.tgz:
    resolution: {integrity: sha512-KhaAGLsuPLj9FZmstW/33Bqf+9Y9qdOUfZSVDN0DEGdzkm1OMLsG7QM1Xe+inDyQt5SXjAO4uP3aJnk0xGnRYw==, tarball: {host}r-caret/-/r-caret-2.1.0.tgz}
    version: 2.1.0
"
    .replace("{host}", &host);
    assert!(lockfile.contains(&expected), "{lockfile}");
    assert!(
        lockfile.contains(&format!(
            "  r-tp-a@{host}r-tp-a/-/r-tp-a-1.0.0.tgz(r-core@1.1.0):\n    dependencies:\n      r-tp-b: 1.0.0(r-core@1.1.0)\n"
        )),
        "{lockfile}"
    );
    assert!(
        sandbox
            .project()
            .join("node_modules/aliased/package.json")
            .exists()
    );
    // Each downloaded once: the fetch takes the bytes resolution read the manifest from.
    let tarballs = other.tarball_requests();
    assert_eq!(tarballs, 3, "{:?}", other.request_counts());
    // Locked: resolving again (another dependency added) asks nothing of the other host.
    let manifest = std::fs::read_to_string(sandbox.project().join("package.json")).unwrap();
    std::fs::write(
        sandbox.project().join("package.json"),
        manifest.replace(r#""dependencies":{"#, r#""dependencies":{"r-core":"^1","#),
    )
    .unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(other.tarball_requests(), tarballs);
}

/// With `blockExoticSubdeps: false`, a registry package's dependencies on tarball URLs (one
/// under an alias, one with a peer) and on a git repository are downloaded and cloned during
/// resolution, and written as pnpm 12.26 wrote them for the same registry content
/// (RESOLVE-ORACLE.md §17; pnpm's whole tree was the same too). Two packages asking for the
/// same URL share one package; an optional URL that fails is left out.
#[test]
fn exotic_subdependencies_resolve_as_pnpm_does_when_allowed() {
    let other = flowpm_fixtures::RegistryServer::start(&flowpm_fixtures::registry_dir()).unwrap();
    let host = other.url();
    let registry = tempfile::tempdir().unwrap();
    crate::common::copy_project(&flowpm_fixtures::registry_dir(), registry.path());
    let parent = flowpm_fixtures::PackageSpec::new("exo-parent", "1.0.0")
        .dependency("r-lib", &format!("{host}r-lib/-/r-lib-1.2.0.tgz"))
        .dependency("aliased", &format!("{host}r-caret/-/r-caret-2.1.0.tgz"))
        .dependency("multi", "git://git.fixture.invalid/multi.git#semver:^1.0.0")
        .dependency("r-tp-a", &format!("{host}r-tp-a/-/r-tp-a-1.0.0.tgz"));
    let other_parent = flowpm_fixtures::PackageSpec::new("exo-other", "1.0.0")
        .dependency("r-lib", &format!("{host}r-lib/-/r-lib-1.2.0.tgz"))
        .optional_dependency("gone", &format!("{host}nope/-/nope-1.0.0.tgz"));
    flowpm_fixtures::write_registry_dir(registry.path(), &[parent, other_parent]).unwrap();
    let sandbox = Sandbox::with_git_and_registry("git-deps", registry.path());
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    std::fs::write(
        sandbox.project().join("package.json"),
        r#"{"name":"app","version":"1.0.0","dependencies":{"exo-parent":"^1.0.0","exo-other":"1.0.0","r-core":"^1"}}"#,
    )
    .unwrap();
    let workspace = sandbox.project().join("pnpm-workspace.yaml");
    // Blocked by default, as pnpm 12 blocks them.
    let error = sandbox.flowpm_fails(&["install"]);
    assert!(error.contains("ERR_PNPM_EXOTIC_SUBDEP"), "{error}");
    std::fs::write(&workspace, "blockExoticSubdeps: false\n").unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let commit = "ce42e603079653bc4d63a5fa02a75dccd4b09b2e";
    for expected in [
        "      exo-parent:\n        specifier: ^1.0.0\n        version: 1.0.0(deep-18@1.0.0)(r-core@1.1.0)\n",
        "  multi@git+git://git.fixture.invalid/multi.git#{commit}:\n    resolution: {commit: {commit}, repo: git://git.fixture.invalid/multi.git, type: git}\n    version: 1.2.0\n    peerDependencies:\n      deep-18: ^1.0.0\n",
        "  r-caret@{host}r-caret/-/r-caret-2.1.0.tgz:\n    resolution: {integrity: sha512-KhaAGLsuPLj9FZmstW/33Bqf+9Y9qdOUfZSVDN0DEGdzkm1OMLsG7QM1Xe+inDyQt5SXjAO4uP3aJnk0xGnRYw==, tarball: {host}r-caret/-/r-caret-2.1.0.tgz}\n    version: 2.1.0\n",
        "  exo-other@1.0.0:\n    dependencies:\n      r-lib: {host}r-lib/-/r-lib-1.2.0.tgz\n\n",
        "  exo-parent@1.0.0(deep-18@1.0.0)(r-core@1.1.0):\n    dependencies:\n      aliased: r-caret@{host}r-caret/-/r-caret-2.1.0.tgz\n      multi: git+git://git.fixture.invalid/multi.git#{commit}(deep-18@1.0.0)\n      r-lib: {host}r-lib/-/r-lib-1.2.0.tgz\n      r-tp-a: {host}r-tp-a/-/r-tp-a-1.0.0.tgz(r-core@1.1.0)\n    transitivePeerDependencies:\n      - deep-18\n      - r-core\n",
        "  r-tp-a@{host}r-tp-a/-/r-tp-a-1.0.0.tgz(r-core@1.1.0):\n    dependencies:\n      r-tp-b: 1.0.0(r-core@1.1.0)\n",
    ] {
        let expected = expected
            .replace("{host}", &host)
            .replace("{commit}", commit);
        assert!(
            lockfile.contains(&expected),
            "{expected}\nnot in:\n{lockfile}"
        );
    }
    assert!(!lockfile.contains("nope"), "{lockfile}");
    let modules = sandbox.project().join("node_modules/.pnpm");
    let parent_modules = modules.join("exo-parent@1.0.0_deep-18@1.0.0_r-core@1.1.0/node_modules");
    for (alias, name) in [
        ("aliased", "r-caret"),
        ("multi", "multi"),
        ("r-lib", "r-lib"),
    ] {
        let manifest = std::fs::read_to_string(parent_modules.join(alias).join("package.json"))
            .unwrap_or_else(|error| panic!("{alias}: {error}"));
        assert!(manifest.contains(&format!("\"{name}\"")), "{manifest}");
    }
    // Each tarball downloaded once (the install takes resolution's bytes), the failed one once.
    let downloads = other.tarball_requests();
    assert_eq!(downloads, 4, "{:?}", other.request_counts());
    // Locked: another dependency added, nothing is asked of the other host again, and the
    // lockfile installs frozen into an empty node_modules.
    replace_in(
        &sandbox.project().join("package.json"),
        r#""r-core":"^1""#,
        r#""r-core":"^1","left-pad-lite":"^2""#,
    );
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(other.tarball_requests(), downloads);
    let relocked = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert!(relocked.contains(&format!(
        "  multi@git+git://git.fixture.invalid/multi.git#{commit}:"
    )));
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    sandbox.install(&[]);
    assert!(parent_modules.join("multi/package.json").is_file());
}
