//! Building a git-hosted package before it is packed, as pnpm 12's `preparePackage` does
//! (fixtures/projects/RESOLVE-ORACLE.md §14):
//!
//! - A package "must be built" when its package.json has a `prepare` script, or a
//!   `prepublish`/`prepack`/`publish` script while its `main` (default `index.js`) is missing.
//! - Under `--ignore-scripts` it is taken as committed, with a warning. Otherwise it is built
//!   only if `allowBuilds` lists `name@<git id>` (the lockfile's version, e.g.
//!   `pkg@git+https://host/r.git#<commit>`: a bare name is not enough for a repository) or
//!   `dangerouslyAllowAllBuilds` is set; else the install fails.
//! - Building runs the repository's package manager (by its lockfile; npm without one) as
//!   `<pm> install` in the package's directory (which runs its `prepare`), then its
//!   `prepublish`, `prepack` and `publish` scripts, and removes `node_modules` before packing.
//!   Where pnpm would run `pnpm`, flowpm runs itself when it knows its own command.
//! - The built files are stored as `GitCopy::Prepared` in the index, so a later install
//!   takes them from the store instead of building again.

use std::ffi::OsString;
use std::path::Path;

use crate::InstallError;
use crate::config::NpmConfig;
use crate::git::GitSource;
use crate::lifecycle::{BuildSettings, ScriptRunner, Scripts};

/// Scripts run after the install, in this order (never `prepublishOnly`: neither npm nor
/// yarn run it for git dependencies).
const PREPUBLISH_SCRIPTS: [&str; 3] = ["prepublish", "prepack", "publish"];

/// Whether a git package with these scripts must be built before it is packed. `has_file`
/// answers for a path relative to the package (as written in `main`, without a leading `./`).
pub(crate) fn needs_build(scripts: &Scripts, has_file: impl Fn(&str) -> bool) -> bool {
    if scripts.get("prepare").is_some() {
        return true;
    }
    PREPUBLISH_SCRIPTS
        .iter()
        .any(|event| scripts.get(event).is_some())
        && !has_file(
            scripts
                .main()
                .unwrap_or("index.js")
                .trim_start_matches("./"),
        )
}

/// The package manager a repository is built with, by its lockfile (the `preferred-pm`
/// rules pnpm uses): npm when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manager {
    Npm,
    Yarn,
    Pnpm,
    Bun,
}

impl Manager {
    pub(crate) fn of(root: &Path) -> Self {
        let has = |name: &str| root.join(name).exists();
        if has("package-lock.json") {
            Manager::Npm
        } else if has("yarn.lock") {
            Manager::Yarn
        } else if has("pnpm-lock.yaml") || has("shrinkwrap.yaml") || has("pnpm-workspace.yaml") {
            Manager::Pnpm
        } else if has("bun.lockb") || has("bun.lock") {
            Manager::Bun
        } else {
            Manager::Npm
        }
    }

    fn name(self) -> &'static str {
        match self {
            Manager::Npm => "npm",
            Manager::Yarn => "yarn",
            Manager::Pnpm => "pnpm",
            Manager::Bun => "bun",
        }
    }
}

/// How one install builds git packages (only when scripts run).
#[derive(Clone)]
pub(crate) struct GitBuilds<'a> {
    settings: &'a BuildSettings,
    /// The command that runs this package manager, used where pnpm would run `pnpm`.
    own_command: Option<&'a Path>,
    /// Settings handed on to the nested install: the registry and the store.
    env: Vec<(&'static str, OsString)>,
}

/// What allows no build: for a fetcher no install configured.
static NOTHING_ALLOWED: BuildSettings = BuildSettings {
    allow: std::collections::BTreeMap::new(),
    allow_all: false,
    strict: true,
};

impl GitBuilds<'static> {
    /// Refuses every git package that must be built.
    pub(crate) fn refusing() -> Self {
        GitBuilds {
            settings: &NOTHING_ALLOWED,
            own_command: None,
            env: Vec::new(),
        }
    }
}

impl<'a> GitBuilds<'a> {
    pub(crate) fn new(
        settings: &'a BuildSettings,
        own_command: Option<&'a Path>,
        config: &NpmConfig,
        store_dir: &Path,
    ) -> Self {
        let mut env = vec![("npm_config_store_dir", store_dir.as_os_str().to_owned())];
        // Only a configured one: without it, the nested install finds the same default.
        if let Some(registry) = config.get("registry") {
            env.push(("npm_config_registry", registry.into()));
        }
        GitBuilds {
            settings,
            own_command,
            env,
        }
    }

    /// The `allowBuilds` key that allows building this package, as pnpm 12 wants it.
    pub(crate) fn allow_key(name: &str, git: &GitSource) -> String {
        format!("{name}@{}", git.id())
    }

    /// Whether `allowBuilds` lets this git package be built.
    pub(crate) fn allows(&self, name: &str, git: &GitSource) -> bool {
        self.settings.allows(name, &git.id())
    }

    /// Builds the package in `dir` (inside the checkout `root`), whose package.json has
    /// `scripts`: installs its dependencies with the repository's package manager (which runs
    /// `prepare`), runs its prepublish scripts, and removes `node_modules`. `label` names it in
    /// errors.
    pub(crate) fn prepare(
        &self,
        root: &Path,
        dir: &Path,
        scripts: &Scripts,
        label: &str,
    ) -> Result<(), InstallError> {
        let manager = Manager::of(root);
        let runner = ScriptRunner {
            init_cwd: dir,
            bin_dirs: vec![dir.join("node_modules/.bin")],
            env: self.env.clone(),
        };
        let command = match (manager, self.own_command) {
            (Manager::Pnpm, Some(own)) if reads_lockfile_of(root) => {
                shell_quote(&own.to_string_lossy())
            }
            _ => manager.name().to_owned(),
        };
        runner.run(
            dir,
            scripts,
            &format!("{}-install", manager.name()),
            &format!("{command} install"),
            label,
        )?;
        for event in PREPUBLISH_SCRIPTS {
            let Some(script) = scripts.get(event) else {
                continue;
            };
            if manager == Manager::Pnpm {
                runner.run(dir, scripts, event, script, label)?;
            } else {
                let pm = manager.name();
                let (event, run) = (format!("{pm}-run-{event}"), format!("{pm} run {event}"));
                runner.run(dir, scripts, &event, &run, label)?;
            }
        }
        crate::link::remove_any(&dir.join("node_modules"))
    }
}

/// Whether flowpm can install the repository at `root` itself: it has no pnpm-lock.yaml, or
/// one of version 9 (an older one is left to `pnpm`).
fn reads_lockfile_of(root: &Path) -> bool {
    std::fs::read_to_string(root.join("pnpm-lock.yaml")).map_or(true, |text| {
        text.lines()
            .find_map(|line| line.strip_prefix("lockfileVersion:"))
            .is_some_and(|version| {
                crate::lockfile::is_supported_version(version.trim().trim_matches(['\'', '"']))
            })
    })
}

/// `text` as one word for `/bin/sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The error for a git package that must be built but that `allowBuilds` does not list.
pub(crate) fn not_allowed(name: &str, git: &GitSource) -> InstallError {
    InstallError::GitBuildNotAllowed {
        package: name.to_owned(),
        key: crate::git::redact_credentials(&GitBuilds::allow_key(name, git)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`needs_build`] of package.json text (false when it does not parse, as for a package
    /// whose package.json cannot be read).
    fn needs_build(text: &[u8], has_file: impl Fn(&str) -> bool) -> bool {
        Scripts::parse(text, Path::new("package.json"))
            .is_ok_and(|scripts| super::needs_build(&scripts, has_file))
    }

    #[test]
    fn a_package_needs_building_for_prepare_or_for_prepublish_without_its_main() {
        let none = |_: &str| false;
        let all = |_: &str| true;
        assert!(needs_build(br#"{"scripts":{"prepare":"tsc"}}"#, all));
        assert!(!needs_build(br#"{"scripts":{"prepare":""}}"#, none));
        assert!(!needs_build(br#"{"scripts":{"test":"x"}}"#, none));
        assert!(needs_build(br#"{"scripts":{"prepack":"tsc"}}"#, none));
        assert!(!needs_build(br#"{"scripts":{"prepack":"tsc"}}"#, all));
        // `main` decides which file must be there (default index.js).
        let only_dist = |path: &str| path == "dist/main.js";
        assert!(!needs_build(
            br#"{"main":"./dist/main.js","scripts":{"publish":"x"}}"#,
            only_dist
        ));
        assert!(needs_build(br#"{"scripts":{"publish":"x"}}"#, only_dist));
        // Not run for git dependencies, so it does not count.
        assert!(!needs_build(br#"{"scripts":{"prepublishOnly":"x"}}"#, none));
        assert!(!needs_build(b"not json", none));
    }

    #[test]
    fn the_package_manager_is_the_one_whose_lockfile_the_repository_has() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manager::of(dir.path()), Manager::Npm);
        for (file, manager) in [
            ("bun.lock", Manager::Bun),
            ("pnpm-lock.yaml", Manager::Pnpm),
            ("yarn.lock", Manager::Yarn),
            ("package-lock.json", Manager::Npm),
        ] {
            std::fs::write(dir.path().join(file), "").unwrap();
            assert_eq!(Manager::of(dir.path()), manager, "with {file}");
        }
    }

    #[test]
    fn only_the_full_git_id_or_allowing_all_allows_a_build() {
        let git = GitSource {
            repo: "file:///r".into(),
            commit: "a".repeat(40),
            path: None,
        };
        let key = GitBuilds::allow_key("pkg", &git);
        assert_eq!(
            key,
            format!("git+file:///r#{}", "a".repeat(40)).replace("git+", "pkg@git+")
        );
        let config = NpmConfig::default();
        let check = |settings: BuildSettings| {
            GitBuilds::new(&settings, None, &config, Path::new("/s")).allows("pkg", &git)
        };
        let listed =
            |key: &str, value| BuildSettings::new([(key.to_owned(), value)].into(), false, None);
        assert!(check(listed(&key, true)));
        assert!(!check(listed(&key, false)));
        assert!(!check(listed("pkg", true)));
        assert!(!check(listed("pkg@1.0.0", true)));
        assert!(check(BuildSettings::new(Default::default(), true, None)));
    }

    #[test]
    fn a_pnpm_repository_with_an_older_lockfile_is_left_to_pnpm() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reads_lockfile_of(dir.path()));
        let lockfile = dir.path().join("pnpm-lock.yaml");
        std::fs::write(&lockfile, "lockfileVersion: '9.0'\n").unwrap();
        assert!(reads_lockfile_of(dir.path()));
        std::fs::write(&lockfile, "lockfileVersion: '6.0'\n").unwrap();
        assert!(!reads_lockfile_of(dir.path()));
    }

    #[test]
    fn a_path_is_one_shell_word() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
