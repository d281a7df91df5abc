use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flowpm_fixtures::RegistryServer;

/// A project copied into a temp dir with its own store, and a registry serving `registry_dir`.
pub struct Sandbox {
    pub root: tempfile::TempDir,
    pub registry: RegistryServer,
    /// Environment given to every flowpm run (the git URL rewrites of [`Sandbox::with_git`]).
    env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(project: &str) -> Self {
        Self::with_registry(project, &flowpm_fixtures::registry_dir())
    }

    pub fn with_registry(project: &str, registry_dir: &Path) -> Self {
        let root = tempfile::tempdir().unwrap();
        copy_project(
            &flowpm_fixtures::project_dir(project),
            &root.path().join("project"),
        );
        let registry = RegistryServer::start(registry_dir).unwrap();
        Sandbox {
            root,
            registry,
            env: Vec::new(),
        }
    }

    /// A project whose `make-git-repos.sh` builds its git repositories: they are built under
    /// [`Sandbox::git_repos`], and the fixed URLs the project names
    /// (`git://git.fixture.invalid/…`, `ssh://git@git.fixture.invalid/…`) are rewritten to them
    /// for every git command flowpm runs, as scripts/record-fixtures.sh did for pnpm.
    pub fn with_git(project: &str) -> Self {
        Self::with_git_and_registry(project, &flowpm_fixtures::registry_dir())
    }

    /// As [`Sandbox::with_git`], with a registry serving `registry_dir`.
    pub fn with_git_and_registry(project: &str, registry_dir: &Path) -> Self {
        let mut sandbox = Self::with_registry(project, registry_dir);
        let repos = sandbox.git_repos();
        let status = Command::new(flowpm_fixtures::project_dir(project).join("make-git-repos.sh"))
            .arg(&repos)
            .status()
            .unwrap();
        assert!(status.success(), "make-git-repos.sh failed");
        let base = format!("url.file://{}/.insteadOf", repos.display());
        let temp = sandbox.temp_dir();
        std::fs::create_dir(&temp).unwrap();
        sandbox.env = [
            // No user or system git configuration; checkouts go to the sandbox's temp dir.
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("TMPDIR", temp.to_str().unwrap()),
            ("GIT_CONFIG_COUNT", "2"),
            ("GIT_CONFIG_KEY_0", &base),
            ("GIT_CONFIG_VALUE_0", "git://git.fixture.invalid/"),
            ("GIT_CONFIG_KEY_1", &base),
            ("GIT_CONFIG_VALUE_1", "ssh://git@git.fixture.invalid/"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .into();
        sandbox
    }

    pub fn git_repos(&self) -> PathBuf {
        self.root.path().join("git")
    }

    /// `TMPDIR` of [`Sandbox::with_git`]'s runs.
    pub fn temp_dir(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    pub fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }

    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }

    /// Runs `flowpm store <args> --store-dir <store>` in the project.
    pub fn store_command(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flowpm"))
            .args(["store"])
            .args(args)
            .args(["--store-dir", self.store().to_str().unwrap()])
            .current_dir(self.project())
            .output()
            .unwrap()
    }

    /// Runs `flowpm <args> --store-dir <store> --registry <url>` in the project, with an
    /// environment that cannot reach any other registry or configuration.
    pub fn flowpm(&self, args: &[&str]) -> Output {
        self.flowpm_with_env(args, &[])
    }

    /// As [`Sandbox::flowpm`], with extra environment variables (e.g. `npm_config_fetch_timeout`).
    pub fn flowpm_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.flowpm_in(&self.project(), args, env)
    }

    /// Runs `flowpm <args>` as [`Sandbox::flowpm`] does, asserts that it fails, and returns
    /// its output.
    pub fn flowpm_fails(&self, args: &[&str]) -> String {
        let output = self.flowpm(args);
        assert!(
            !output.status.success(),
            "flowpm {args:?} succeeded:\n{}",
            text(&output)
        );
        text(&output)
    }

    /// As [`Sandbox::flowpm_fails`], and asserts that the lockfile is left as it was.
    pub fn fails_keeping_lockfile(&self, args: &[&str]) -> String {
        let path = self.project().join("pnpm-lock.yaml");
        let before = std::fs::read(&path).unwrap();
        let error = self.flowpm_fails(args);
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the lockfile changed"
        );
        error
    }

    /// As [`Sandbox::flowpm_with_env`], run in `dir` (e.g. a workspace project).
    pub fn flowpm_in(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowpm"));
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.envs(env.iter().copied());
        command
            .args(args)
            .args([
                "--store-dir",
                self.store().to_str().unwrap(),
                "--registry",
                &self.registry.url(),
            ])
            .current_dir(dir)
            .env("HOME", self.root.path())
            .env("NPM_CONFIG_USERCONFIG", self.root.path().join("no-npmrc"))
            .env("NPM_CONFIG_GLOBALCONFIG", self.root.path().join("no-npmrc"))
            .env_remove("npm_config_registry");
        command.output().unwrap()
    }

    /// `flowpm install --frozen-lockfile` into the store at `store` (instead of the sandbox's),
    /// with only `HOME` isolated and the given environment (for `.npmrc` and store tests).
    pub fn install_with(&self, store: &Path, env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flowpm"))
            .args([
                "install",
                "--frozen-lockfile",
                "--store-dir",
                store.to_str().unwrap(),
            ])
            .args(["--registry", &self.registry.url()])
            .current_dir(self.project())
            .env("HOME", self.root.path())
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    pub fn install(&self, extra: &[&str]) -> Output {
        let mut args = vec!["install", "--frozen-lockfile"];
        args.extend_from_slice(extra);
        let output = self.flowpm(&args);
        assert!(output.status.success(), "flowpm failed:\n{}", text(&output));
        output
    }

    pub fn manifest(&self) -> Vec<String> {
        flowpm_fixtures::tree_manifest(&self.project())
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Replaces `from` (which must be there) with `to` in the file at `path`.
pub fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "`{from}` is not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// The fixture project's files (a workspace's projects included), without pnpm's recorded
/// tree.
pub fn copy_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if name != "node_modules" {
                copy_project(&entry.path(), &to.join(&name));
            }
        } else if name != "pnpm-tree.txt" {
            // Everything else is the project's: manifests, lockfile, workspace projects' files
            // (bins, for one).
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// pnpm 12's tree for a fixture project, recorded by scripts/record-fixtures.sh.
pub fn pnpm_tree(project: &str) -> Vec<String> {
    let text = std::fs::read_to_string(flowpm_fixtures::project_dir(project).join("pnpm-tree.txt"))
        .unwrap();
    text.lines().map(str::to_owned).collect()
}

/// Lines that differ between two manifests, for a readable failure.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    let expected_set: std::collections::BTreeSet<_> = expected.iter().collect();
    let actual_set: std::collections::BTreeSet<_> = actual.iter().collect();
    let mut out = String::new();
    for line in expected_set.difference(&actual_set).take(20) {
        out.push_str(&format!("- {line}\n"));
    }
    for line in actual_set.difference(&expected_set).take(20) {
        out.push_str(&format!("+ {line}\n"));
    }
    out
}

pub fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pnpm's recorded lockfile for `project` installs pnpm's tree as is, and resolving the project
/// from scratch writes that lockfile byte for byte and the same tree.
pub fn assert_resolves_as_pnpm(project: &str) {
    assert_sandbox_resolves_as_pnpm(&Sandbox::new(project), project);
}

/// [`assert_resolves_as_pnpm`] in a sandbox made for `project`.
pub fn assert_sandbox_resolves_as_pnpm(sandbox: &Sandbox, project: &str) {
    let expected = pnpm_tree(project);
    sandbox.install(&[]);
    let tree = sandbox.manifest();
    assert!(tree == expected, "{}", diff(&expected, &tree));
    assert_resolves_from_scratch(sandbox, project, &sandbox.project());
}

/// With pnpm's recorded lockfile removed, `flowpm install` run in `dir` writes it again byte
/// for byte and lays out pnpm's tree.
pub fn assert_resolves_from_scratch(sandbox: &Sandbox, project: &str, dir: &Path) {
    let lockfile_path = sandbox.project().join("pnpm-lock.yaml");
    let recorded = std::fs::read_to_string(&lockfile_path).unwrap();
    std::fs::remove_file(&lockfile_path).unwrap();
    let output = sandbox.flowpm_in(dir, &["install"], &[]);
    assert!(output.status.success(), "{project}: {}", text(&output));
    let written = std::fs::read_to_string(&lockfile_path).unwrap();
    let label = format!("{project}: the lockfile differs from pnpm's:\n");
    assert_same_lines(&label, &recorded, &written);
    assert_pnpm_tree(sandbox, project);
}

/// `flowpm install` (resolving: the sandbox's settings were edited) writes the lockfile pnpm
/// wrote for the same edit, recorded in the fixture's `after-edits/<recorded>`.
pub fn assert_resolves_to_recorded_edit(sandbox: &Sandbox, recorded: &str) {
    let output = sandbox.flowpm(&["install"]);
    assert!(output.status.success(), "{}", text(&output));
    let expected =
        std::fs::read_to_string(sandbox.project().join("after-edits").join(recorded)).unwrap();
    let written = std::fs::read_to_string(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    assert_same_lines(&format!("{recorded}: "), &expected, &written);
}

/// `written == expected`, else fails with `label` and the lines that differ.
pub fn assert_same_lines(label: &str, expected: &str, written: &str) {
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(
        written == expected,
        "{label}{}",
        diff(&lines(expected), &lines(written))
    );
}

/// The sandbox's `node_modules` is the tree pnpm recorded for `project`.
pub fn assert_pnpm_tree(sandbox: &Sandbox, project: &str) {
    let expected = pnpm_tree(project);
    let tree = sandbox.manifest();
    assert!(
        tree == expected,
        "{project}: the tree differs from pnpm's:\n{}",
        diff(&expected, &tree)
    );
}

/// An executable `/bin/sh` script at `path`.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `PATH` with `dir` in front (for stand-in commands).
pub fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}
