//! Git dependencies, compared with what pnpm 12 wrote and installed for the `git-deps` fixture
//! (its repositories are built by the fixture's make-git-repos.sh with fixed dates, so their
//! commits are the ones pnpm locked).

use crate::common::{Sandbox, assert_sandbox_resolves_as_pnpm, replace_in, text};

#[test]
fn git_dependencies_install_and_resolve_as_pnpm_does() {
    // The recorded lockfile installs pnpm's tree; resolved from scratch, flowpm writes pnpm's
    // lockfile byte for byte: the remote's HEAD, a `semver:` range over version tags (an
    // annotated one peeled), a short commit, `path:` into a monorepo combined with a tag, an
    // scp-style ssh URL and a branch; peers, bins and `npm pack` rules as for any package.
    let sandbox = Sandbox::with_git("git-deps");
    assert_sandbox_resolves_as_pnpm(&sandbox, "git-deps");
}

#[test]
fn a_locked_git_dependency_needs_neither_a_clone_nor_the_repository() {
    let sandbox = Sandbox::with_git("git-deps");
    sandbox.install(&[]);
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    let locked = std::fs::read_to_string(&lockfile).unwrap();
    // The repositories gone, the store (which indexed each commit's files) serves them, and a
    // lockfile that still satisfies package.json is kept as it is, moved branch or not.
    std::fs::remove_dir_all(sandbox.git_repos()).unwrap();
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&lockfile).unwrap(), locked);
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    sandbox.install(&["--offline"]);
    assert!(
        sandbox
            .project()
            .join("node_modules/sub/lib/index.js")
            .is_file()
    );
}

#[test]
fn an_unknown_ref_names_the_dependency_and_writes_nothing() {
    let sandbox = Sandbox::with_git("git-deps");
    let manifest = sandbox.project().join("package.json");
    replace_in(
        &manifest,
        "multi.git#semver:^1.0.0",
        "multi.git#no-such-branch",
    );
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("multi@git://git.fixture.invalid/multi.git#no-such-branch"),
        "{error}"
    );
    assert!(error.contains("cannot resolve `no-such-branch`"), "{error}");
    assert!(!sandbox.project().join("node_modules").exists());
}

#[test]
fn a_git_dependency_that_needs_prepare_is_refused_unless_scripts_are_off() {
    // pnpm 12 refuses a git-hosted package with a `prepare` script unless builds are allowed
    // for it, and under --ignore-scripts installs it as committed with a warning. flowpm does
    // not run `prepare` yet, so it refuses whenever scripts would run.
    let sandbox = Sandbox::with_git("git-deps");
    let manifest = sandbox.project().join("package.json");
    replace_in(
        &manifest,
        "\"deep-18\": \"1.0.0\"",
        "\"deep-18\": \"1.0.0\",\n    \"prep\": \"git://git.fixture.invalid/prep.git\"",
    );
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let error = sandbox.flowpm_fails(&["install"]);
    assert!(error.contains("prep@1.0.0"), "{error}");
    assert!(error.contains("(`prepare`)"), "{error}");
    let output = sandbox.flowpm(&["install", "--ignore-scripts"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("has to be built but the build scripts were ignored"),
        "{}",
        text(&output)
    );
    assert!(
        sandbox
            .project()
            .join("node_modules/prep/package.json")
            .is_file()
    );
}

#[test]
fn hosted_shorthands_are_refused_with_the_form_to_use() {
    let sandbox = Sandbox::with_git("git-deps");
    let manifest = sandbox.project().join("package.json");
    replace_in(
        &manifest,
        "git://git.fixture.invalid/multi.git#semver:^1.0.0",
        "github:someone/multi#v1.2.0",
    );
    let error = sandbox.fails_keeping_lockfile(&["install"]);
    assert!(
        error.contains("`github:` git shorthands are not supported yet"),
        "{error}"
    );
    assert!(error.contains("git+https://"), "{error}");
}

#[test]
fn add_saves_a_git_url_as_given_under_the_packages_name() {
    // As pnpm 12 (checked with git+file:// URLs): a URL alone is saved under the name in the
    // repository's package.json, `alias@<url>` under the alias; both exactly as written.
    let sandbox = Sandbox::with_git("git-deps");
    let manifest = sandbox.project().join("package.json");
    std::fs::write(&manifest, "{\"name\":\"p\",\"version\":\"1.0.0\"}\n").unwrap();
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let output = sandbox.flowpm(&[
        "add",
        "git://git.fixture.invalid/multi.git#v1.0.0",
        "tool@git+ssh://git@git.fixture.invalid:team/withbin.git",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        "{\"name\":\"p\",\"version\":\"1.0.0\",\"dependencies\":{\"multi\":\
         \"git://git.fixture.invalid/multi.git#v1.0.0\",\"tool\":\
         \"git+ssh://git@git.fixture.invalid:team/withbin.git\"}}\n"
    );
    let lockfile = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert!(
        lockfile.contains(
            "version: git+git://git.fixture.invalid/multi.git#0bae744fd570aa755a297610c9b656c431b766df"
        ),
        "{lockfile}"
    );
    assert!(
        lockfile.contains(
            "version: withbin@git+ssh://git@git.fixture.invalid/team/withbin.git#98b9968af46fdb6e9c9135a457671de301391a9e"
        ),
        "{lockfile}"
    );
    assert!(sandbox.project().join("node_modules/.bin/withbin").exists());
}
