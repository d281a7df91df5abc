//! Git dependencies, compared with what pnpm 12 wrote and installed for the `git-deps` fixture
//! (its repositories are built by the fixture's make-git-repos.sh with fixed dates, so their
//! commits are the ones pnpm locked).

use std::process::Command;

use crate::common::{
    Sandbox, assert_sandbox_resolves_as_pnpm, path_with, replace_in, text, write_script,
};

/// No checkout is left in the temp directory, whether the install worked or not.
fn assert_no_checkout_left(sandbox: &Sandbox) {
    let left: Vec<_> = std::fs::read_dir(sandbox.temp_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the temp dir: {left:?}");
}

/// Moves `branch` of the bare repository `repo` one (empty) commit ahead; returns the commit.
fn advance(repo: &std::path::Path, branch: &str) -> String {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", text(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let tree = format!("{branch}^{{tree}}");
    let commit = git(&["commit-tree", &tree, "-p", branch, "-m", "next"]);
    git(&["update-ref", &format!("refs/heads/{branch}"), &commit]);
    commit
}

#[test]
fn git_dependencies_install_and_resolve_as_pnpm_does() {
    // The recorded lockfile installs pnpm's tree; resolved from scratch, flowpm writes pnpm's
    // lockfile byte for byte: the remote's HEAD, a `semver:` range over version tags (an
    // annotated one peeled), a short commit, `path:` into a monorepo combined with a tag, an
    // scp-style ssh URL and a branch; peers, bins and `npm pack` rules as for any package.
    let sandbox = Sandbox::with_git("git-deps");
    assert_sandbox_resolves_as_pnpm(&sandbox, "git-deps");
    assert_no_checkout_left(&sandbox);
}

#[test]
fn each_git_dependency_is_cloned_once_when_resolved_and_installed() {
    // Resolution reads each package.json from a checkout, which the fetch then packs, instead
    // of cloning the repository again. git's own trace counts the clones.
    let sandbox = Sandbox::with_git("git-deps");
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let trace = sandbox.temp_dir().join("../trace.txt");
    let output = sandbox.flowpm_with_env(&["install"], &[("GIT_TRACE", trace.to_str().unwrap())]);
    assert!(output.status.success(), "{}", text(&output));
    let trace = std::fs::read_to_string(trace).unwrap();
    let clones = trace
        .lines()
        .filter(|line| line.contains("built-in: git clone"));
    // Five dependencies, five commits (two of them in the same repository).
    assert_eq!(clones.count(), 5, "{trace}");
    assert!(
        sandbox
            .project()
            .join("node_modules/sub/lib/index.js")
            .is_file()
    );
    assert_no_checkout_left(&sandbox);
}

#[test]
fn a_moved_branch_is_followed_by_update_only() {
    let sandbox = Sandbox::with_git("git-deps");
    sandbox.install(&[]);
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    let locked = std::fs::read_to_string(&lockfile).unwrap();
    let moved = advance(&sandbox.git_repos().join("team/withbin.git"), "main");
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(std::fs::read_to_string(&lockfile).unwrap(), locked);
    let output = sandbox.flowpm(&["update", "withbin"]);
    assert!(output.status.success(), "{}", text(&output));
    let updated = std::fs::read_to_string(&lockfile).unwrap();
    assert!(
        updated.contains(&format!(
            "version: git+ssh://git@git.fixture.invalid/team/withbin.git#{moved}"
        )),
        "{updated}"
    );
    // The other git dependencies keep their commits.
    assert!(updated.contains("multi.git#ce42e603079653bc4d63a5fa02a75dccd4b09b2e"));
    // A package name reaches its aliases too (`head` and `short` are `multi@git+…`): they
    // are resolved again, not taken from the lockfile as if locked.
    let output = sandbox.flowpm(&["update", "multi"]);
    assert!(output.status.success(), "{}", text(&output));
    let updated = std::fs::read_to_string(&lockfile).unwrap();
    assert!(updated.contains("version: multi@git+git://git.fixture.invalid/multi.git#0bae744fd570aa755a297610c9b656c431b766df"));
    sandbox.install(&[]);
    assert_no_checkout_left(&sandbox);
}

#[test]
fn a_lockfile_commit_that_is_not_a_hash_is_refused() {
    // A branch name there would be stored as if it never moved (and reach git unchecked).
    let sandbox = Sandbox::with_git("git-deps");
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    replace_in(
        &lockfile,
        "{commit: 98b9968af46fdb6e9c9135a457671de301391a9e,",
        "{commit: main,",
    );
    let error = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(error.contains("withbin"), "{error}");
    assert!(
        error.contains("`main` is not a full commit hash"),
        "{error}"
    );
}

#[test]
fn an_unlocked_git_dependency_needs_the_network() {
    let sandbox = Sandbox::with_git("git-deps");
    sandbox.install(&[]);
    replace_in(
        &sandbox.project().join("package.json"),
        "multi.git#0bae744fd5",
        "multi.git#v2.0.0",
    );
    let error = sandbox.fails_keeping_lockfile(&["install", "--offline"]);
    assert!(
        error.contains("short@git://git.fixture.invalid/multi.git#v2.0.0"),
        "{error}"
    );
    assert!(error.contains("--offline"), "{error}");
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
    // A `path:` out of the repository and a ref git would read as an option are refused.
    for (bad, why) in [
        (
            "multi.git#path:../team",
            "must be a relative path inside the repository",
        ),
        (
            "multi.git#path:/etc",
            "must be a relative path inside the repository",
        ),
        ("multi.git#--upload-pack=touch", "is not a git ref"),
    ] {
        replace_in(&manifest, "multi.git#no-such-branch", bad);
        let error = sandbox.fails_keeping_lockfile(&["install"]);
        assert!(error.contains(why), "{bad}: {error}");
        replace_in(&manifest, bad, "multi.git#no-such-branch");
    }
    assert_no_checkout_left(&sandbox);
}

/// Adds `name` from the fixture's repository `repo.git` to the git-deps project, without its
/// lockfile (so the install resolves it).
fn add_git_dependency(sandbox: &Sandbox, name: &str, repo: &str) {
    replace_in(
        &sandbox.project().join("package.json"),
        "\"deep-18\": \"1.0.0\"",
        &format!(
            "\"deep-18\": \"1.0.0\",\n    \"{name}\": \"git://git.fixture.invalid/{repo}.git\""
        ),
    );
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
}

/// Writes pnpm-workspace.yaml allowing the build of `key` alone.
fn allow_build(sandbox: &Sandbox, key: &str) {
    std::fs::write(
        sandbox.project().join("pnpm-workspace.yaml"),
        format!("allowBuilds:\n  \"{key}\": true\n"),
    )
    .unwrap();
}

/// The git-deps project with `name` (from the fixture's `name.git`) added unlocked, its build
/// allowed by its full key.
fn with_allowed_git_build(name: &str) -> Sandbox {
    let sandbox = Sandbox::with_git("git-deps");
    add_git_dependency(&sandbox, name, name);
    allow_build(&sandbox, &allow_key(&sandbox, name, name));
    sandbox
}

/// The `allowBuilds` key pnpm 12 wants for a git package of the fixture: `name@<git id>`.
fn allow_key(sandbox: &Sandbox, name: &str, repo: &str) -> String {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(sandbox.git_repos().join(format!("{repo}.git")))
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    let commit = String::from_utf8(output.stdout).unwrap();
    format!(
        "{name}@git+git://git.fixture.invalid/{repo}.git#{}",
        commit.trim()
    )
}

#[test]
fn a_git_dependency_that_must_be_built_is_built_only_when_allowed_as_pnpm_does() {
    // pnpm 12: a git-hosted package with a `prepare` script is built (its dependencies
    // installed by its own package manager, which runs `prepare`) only if `allowBuilds` lists
    // it as `name@<git id>`, a bare name not being enough; otherwise the install fails.
    let sandbox = Sandbox::with_git("git-deps");
    add_git_dependency(&sandbox, "prep", "prep");
    let key = allow_key(&sandbox, "prep", "prep");
    let error = sandbox.flowpm_fails(&["install"]);
    assert!(error.contains("\"allowBuilds\" allowlist"), "{error}");
    assert!(error.contains(&format!("\"{key}\": true")), "{error}");
    assert!(!sandbox.project().join("pnpm-lock.yaml").exists());
    let workspace = sandbox.project().join("pnpm-workspace.yaml");
    std::fs::write(&workspace, "allowBuilds:\n  prep: true\n").unwrap();
    let error = sandbox.flowpm_fails(&["install"]);
    assert!(error.contains("\"allowBuilds\" allowlist"), "{error}");

    allow_build(&sandbox, &key);
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    // Built with flowpm itself (the repository is a pnpm project): `prepare` copied its dev
    // dependency's file (the project has the same package, through `withbin`) into `dist`;
    // the build's node_modules is not packed.
    let package = sandbox.project().join("node_modules/prep");
    let deep = "node_modules/.pnpm/deep-17@1.0.0/node_modules/deep-17/index.js";
    assert_eq!(
        std::fs::read_to_string(package.join("dist/index.js")).unwrap(),
        std::fs::read_to_string(sandbox.project().join(deep)).unwrap()
    );
    assert!(!package.join("node_modules").exists());
    assert_no_checkout_left(&sandbox);

    // Stored built: a later install takes it from the store, even without its repository.
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    std::fs::rename(
        sandbox.git_repos().join("prep.git"),
        sandbox.git_repos().join("gone.git"),
    )
    .unwrap();
    sandbox.install(&[]);
    assert!(package.join("dist/index.js").is_file());
    // Allowed no more, the built copy is not served: it is fetched again and refused.
    std::fs::rename(
        sandbox.git_repos().join("gone.git"),
        sandbox.git_repos().join("prep.git"),
    )
    .unwrap();
    std::fs::remove_file(&workspace).unwrap();
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let error = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(error.contains("\"allowBuilds\" allowlist"), "{error}");
    assert_no_checkout_left(&sandbox);
}

#[test]
fn an_optional_git_dependency_whose_build_is_refused_or_fails_is_left_out_as_pnpm_does() {
    // pnpm 12 on the same input: "is an optional dependency that could not be fetched.
    // Excluding it from installation.", then the refusal (or the failed build) as a warning;
    // the install succeeds and the lockfile keeps the package.
    let sandbox = Sandbox::with_git("git-deps");
    replace_in(
        &sandbox.project().join("package.json"),
        "\"deep-18\": \"1.0.0\"\n  }",
        "\"deep-18\": \"1.0.0\"\n  },\n  \"optionalDependencies\": {\n    \
         \"prepnpm\": \"git://git.fixture.invalid/prepnpm.git\"\n  }",
    );
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let key = allow_key(&sandbox, "prepnpm", "prepnpm");
    let lockfile = sandbox.project().join("pnpm-lock.yaml");
    let package = sandbox.project().join("node_modules/prepnpm");
    let assert_left_out = |output: &std::process::Output, cause: &str| {
        let log = text(output);
        assert!(output.status.success(), "{log}");
        assert!(
            log.contains("optional dependency that could not be fetched"),
            "{log}"
        );
        assert!(log.contains(cause), "{log}");
        assert!(!package.exists());
        assert!(sandbox.project().join("node_modules/deep-18").is_dir());
        let locked = std::fs::read_to_string(&lockfile).unwrap();
        assert!(locked.contains("  prepnpm@git+git://git.fixture.invalid/prepnpm.git#"));
        assert_no_checkout_left(&sandbox);
    };
    let output = sandbox.flowpm(&["install"]);
    assert_left_out(&output, &format!("\"{key}\": true"));
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert_left_out(&output, "\"allowBuilds\" allowlist");

    // Allowed, but its build fails (a stand-in `npm` that exits 7): left out, from the
    // lockfile and when resolving, the build run once.
    allow_build(&sandbox, &key);
    let failing = sandbox.temp_dir().join("../failing");
    let calls = sandbox.temp_dir().join("../calls.txt");
    write_script(
        &failing.join("npm"),
        &format!("echo called >>'{}'\nexit 7\n", calls.display()),
    );
    let path = path_with(&failing);
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let output = sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], &[("PATH", &path)]);
    assert_left_out(&output, "exited with 7");
    std::fs::remove_file(&lockfile).unwrap();
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let output = sandbox.flowpm_with_env(&["install"], &[("PATH", &path)]);
    assert_left_out(&output, "exited with 7");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "called\ncalled\n");
}

#[test]
fn a_git_package_left_unbuilt_is_built_once_its_build_runs() {
    // Installed under --ignore-scripts (as committed), then the lockfile changes around it and
    // an install with scripts runs: the copy in place is not taken as built.
    let sandbox = with_allowed_git_build("prepnpm");
    let bin = sandbox.temp_dir().join("../bin");
    write_script(&bin.join("npm"), "echo \"npm $*\" >>calls.txt\n");
    let path = path_with(&bin);
    let output = sandbox.flowpm_with_env(&["install", "--ignore-scripts"], &[("PATH", &path)]);
    assert!(output.status.success(), "{}", text(&output));
    let package = sandbox.project().join("node_modules/prepnpm");
    assert!(!package.join("calls.txt").exists());
    replace_in(
        &sandbox.project().join("package.json"),
        "\"deep-18\": \"1.0.0\",",
        "\"deep-18\": \"1.0.0\",\n    \"r-core\": \"1.0.0\",",
    );
    for args in [
        &["install", "--lockfile-only"][..],
        &["install", "--frozen-lockfile"],
    ] {
        let output = sandbox.flowpm_with_env(args, &[("PATH", &path)]);
        assert!(output.status.success(), "{}", text(&output));
    }
    assert!(package.join("calls.txt").is_file());
}

#[test]
fn a_git_dependency_is_built_with_its_repositorys_package_manager() {
    // No lockfile in the repository: npm, as pnpm's preferred-pm decides. A stand-in `npm` on
    // PATH records its calls: `npm install` (which would run `prepare`), then `npm run` for
    // the prepublish scripts (not `prepublishOnly`), with the configured registry.
    let sandbox = with_allowed_git_build("prepnpm");
    let bin = sandbox.temp_dir().join("../bin");
    let failing = sandbox.temp_dir().join("../failing");
    let (path, failing_path) = (path_with(&bin), path_with(&failing));
    write_script(
        &bin.join("npm"),
        "echo \"npm $* ($npm_lifecycle_event) $npm_config_registry\" >>calls.txt\n\
         mkdir -p node_modules/dep\n",
    );
    // A failed build fails the install, naming the package and the step, and writes nothing;
    // it is not run a second time by the install that follows resolution.
    let failed_calls = sandbox.temp_dir().join("../failed-calls.txt");
    write_script(
        &failing.join("npm"),
        &format!(
            "echo called >>'{}'\necho no network >&2\nexit 7\n",
            failed_calls.display()
        ),
    );
    let output = sandbox.flowpm_with_env(&["install"], &[("PATH", &failing_path)]);
    assert!(!output.status.success());
    let error = text(&output);
    assert!(error.contains("prepnpm"), "{error}");
    assert!(
        error.contains("`npm-install` script (`npm install`) exited with 7"),
        "{error}"
    );
    assert!(error.contains("no network"), "{error}");
    assert_eq!(std::fs::read_to_string(&failed_calls).unwrap(), "called\n");
    assert!(!sandbox.project().join("pnpm-lock.yaml").exists());
    assert_no_checkout_left(&sandbox);

    let output = sandbox.flowpm_with_env(&["install"], &[("PATH", &path)]);
    assert!(output.status.success(), "{}", text(&output));
    let package = sandbox.project().join("node_modules/prepnpm");
    let registry = sandbox.registry.url();
    assert_eq!(
        std::fs::read_to_string(package.join("calls.txt")).unwrap(),
        format!(
            "npm install (npm-install) {registry}\nnpm run prepack (npm-run-prepack) {registry}\n"
        )
    );
    assert!(!package.join("node_modules").exists());

    // Under --ignore-scripts nothing runs; pnpm's warning says it is installed as committed.
    let sandbox = Sandbox::with_git("git-deps");
    add_git_dependency(&sandbox, "prepnpm", "prepnpm");
    let output = sandbox.flowpm_with_env(&["install", "--ignore-scripts"], &[("PATH", &path)]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("has to be built but the build scripts were ignored"),
        "{}",
        text(&output)
    );
    let package = sandbox.project().join("node_modules/prepnpm");
    assert!(package.join("package.json").is_file());
    assert!(!package.join("calls.txt").exists());
    // Stored unbuilt, it is not taken from the store by an install that runs scripts, which
    // refuses it (not allowed here).
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let error = sandbox.flowpm_fails(&["install", "--frozen-lockfile"]);
    assert!(error.contains("\"allowBuilds\" allowlist"), "{error}");
    assert_no_checkout_left(&sandbox);
}

#[test]
fn a_git_dependencys_build_is_allowed_only_by_its_full_key() {
    // As pnpm 12 decides a `file:` package's build (RESOLVE-ORACLE.md §11): the key is the
    // depPath's `name@<git id>`, not the bare name nor the package.json version the lockfile
    // also records; an ignored build is named by that key.
    let sandbox = Sandbox::with_git("git-deps");
    add_git_dependency(&sandbox, "buildgit", "buildgit");
    let key = allow_key(&sandbox, "buildgit", "buildgit");
    for allowed in ["buildgit", "buildgit@1.0.0"] {
        allow_build(&sandbox, allowed);
        let error = sandbox.flowpm_fails(&["install"]);
        assert!(error.contains(&key), "{allowed}: {error}");
        assert!(
            !sandbox
                .project()
                .join("node_modules/buildgit/built.txt")
                .exists()
        );
    }
    allow_build(&sandbox, &key);
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        sandbox
            .project()
            .join("node_modules/buildgit/built.txt")
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
