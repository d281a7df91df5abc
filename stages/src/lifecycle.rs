//! Lifecycle scripts, as pnpm 12 runs them.
//!
//! - A dependency "requires a build" when its package.json has a `preinstall`, `install` or
//!   `postinstall` script, or it ships a `binding.gyp` (implicit `node-gyp rebuild`) or
//!   `.hooks/`. This is decided when the package is stored and kept in the store's index.
//! - Such a package is imported by copy, never hardlinked, so its scripts cannot alter the
//!   store; its scripts run only when `allowBuilds` in pnpm-workspace.yaml allows it (or with
//!   `dangerouslyAllowAllBuilds`), dependencies before dependents, in the package directory.
//! - A build neither allowed nor denied is "ignored": recorded in `.modules.yaml`
//!   (`ignoredBuilds`), and with `strictDepBuilds` (pnpm 12's default) the install fails after
//!   the tree is complete, naming them.
//! - The projects' own `preinstall` runs before the tree is linked; `install`, `postinstall`,
//!   `preprepare`, `prepare` and `postprepare` after the dependencies' builds.
//! - `--ignore-scripts` (or `ignore-scripts=true` in .npmrc) runs none of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flowpm_pipeline::CancelToken;
use flowpm_store::{FileEntry, Store};
use serde::Deserialize;

use crate::InstallError;
use crate::link::Layout;
use crate::plan::{InstallPlan, ROOT_IMPORTER};

/// Whether a package.json has an install-time script (checked for every stored package, so
/// the common case, no such key anywhere, is a byte scan without parsing).
pub(crate) fn has_install_scripts(package_json: &[u8]) -> bool {
    if !package_json.windows(8).any(|w| w == b"install\"") {
        return false;
    }
    ScriptsManifest::parse(package_json).is_ok_and(|manifest| {
        let scripts = manifest.scripts();
        BUILD_EVENTS
            .iter()
            .any(|event| scripts.contains_key(*event))
    })
}

/// Whether a package with these files requires a build (pnpm's rule).
pub(crate) fn requires_build(has_install_scripts: bool, files: &[FileEntry]) -> bool {
    has_install_scripts
        || files
            .iter()
            .any(|file| file.path == "binding.gyp" || file.path.starts_with(".hooks/"))
}

/// What pnpm-workspace.yaml says about dependency builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSettings {
    /// `allowBuilds`: `name` or `name@version` (versions joined by `||`) to true or false.
    pub allow: BTreeMap<String, bool>,
    /// `dangerouslyAllowAllBuilds`.
    pub allow_all: bool,
    /// `strictDepBuilds` (default true, as in pnpm 12): ignored builds fail the install.
    pub strict: bool,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings::new(BTreeMap::new(), false, None)
    }
}

impl BuildSettings {
    pub(crate) fn new(
        allow: BTreeMap<String, bool>,
        allow_all: bool,
        strict: Option<bool>,
    ) -> Self {
        BuildSettings {
            allow,
            allow_all,
            strict: strict.unwrap_or(true),
        }
    }

    /// `Some(true)` allowed, `Some(false)` denied, `None` not listed (ignored). A package
    /// from elsewhere than a registry (its version a `file:` path, a git id or a URL) is
    /// decided only by its `name@version` entry, never by its bare name, as in pnpm 12: a
    /// name alone does not say which code is allowed to run.
    fn decision(&self, name: &str, version: &str) -> Option<bool> {
        if self.allow_all {
            return Some(true);
        }
        let from_registry = !version.contains(':');
        self.by_version(name, version)
            .or_else(|| self.allow.get(name).copied().filter(|_| from_registry))
    }

    /// Whether the build of `name@version` is allowed ([`Self::decision`]).
    pub(crate) fn allows(&self, name: &str, version: &str) -> bool {
        self.decision(name, version) == Some(true)
    }

    fn by_version(&self, name: &str, version: &str) -> Option<bool> {
        self.allow.iter().find_map(|(key, &allowed)| {
            let (key_name, versions) = split_name(key)?;
            (key_name == name && versions.split("||").any(|v| v.trim() == version))
                .then_some(allowed)
        })
    }
}

/// `name@versions` into its parts (`@scope/name@1.0.0` too); `None` without a version.
fn split_name(key: &str) -> Option<(&str, &str)> {
    let at = key.get(1..)?.find('@')? + 1;
    Some((&key[..at], &key[at + 1..]))
}

/// The dependency builds of one install, sorted into what runs and what is ignored.
#[derive(Debug, Default)]
pub(crate) struct Builds {
    /// Snapshot indices to build, dependencies before dependents.
    pub run: Vec<usize>,
    /// `name@version` of the builds neither allowed nor denied, sorted.
    pub ignored: Vec<String>,
}

/// Sorts the snapshots that require a build (`requires[i]` for snapshot `i`).
pub(crate) fn plan_builds(
    plan: &InstallPlan,
    requires: &[bool],
    settings: &BuildSettings,
) -> Builds {
    let mut builds = Builds::default();
    let mut allowed = HashSet::new();
    for (index, snapshot) in plan.snapshots.iter().enumerate() {
        if !requires[index] {
            continue;
        }
        match settings.decision(&snapshot.name, snapshot.id_version()) {
            Some(true) => {
                allowed.insert(index);
            }
            Some(false) => {}
            None => builds
                .ignored
                .push(format!("{}@{}", snapshot.name, snapshot.id_version())),
        }
    }
    builds.ignored.sort();
    builds.ignored.dedup();
    // Post-order over the dependency graph: a package's dependencies (built ones included,
    // through packages that are not built) come first; cycles are cut where they close.
    let mut visited = HashSet::new();
    for index in 0..plan.snapshots.len() {
        if allowed.contains(&index) {
            post_order(plan, index, &allowed, &mut visited, &mut builds.run);
        }
    }
    builds
}

fn post_order(
    plan: &InstallPlan,
    start: usize,
    allowed: &HashSet<usize>,
    visited: &mut HashSet<usize>,
    out: &mut Vec<usize>,
) {
    if !visited.insert(start) {
        return;
    }
    // Iterative, so a deep chain cannot overflow the stack: (node, next child position).
    let mut stack = vec![(start, 0)];
    while let Some((node, position)) = stack.last_mut() {
        let children = &plan.snapshots[*node].dependencies;
        if let Some((_, child)) = children.get(*position) {
            *position += 1;
            if visited.insert(*child) {
                stack.push((*child, 0));
            }
            continue;
        }
        if allowed.contains(node) {
            out.push(*node);
        }
        stack.pop();
    }
}

/// How many builds run at once, as pnpm 12 reads `childConcurrency`: by default the cores,
/// at most 4; a positive value as given; zero or a negative one the cores less that many
/// (at least 1).
pub(crate) fn child_concurrency(setting: Option<i64>, cores: usize) -> usize {
    match setting {
        None => cores.clamp(1, 4),
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            let less = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
            cores.saturating_sub(less).max(1)
        }
    }
}

/// Runs `job` for each of `order` (a dependency post-order of the plan) on up to `concurrency`
/// threads, each only once the builds it depends on (through any path of the plan, and earlier
/// in `order`, which cuts cycles) are done. The first error (a panic, or `cancel`) stops new
/// jobs and is returned.
fn run_in_order(
    plan: &InstallPlan,
    order: &[usize],
    concurrency: usize,
    cancel: &CancelToken,
    job: impl Fn(usize) -> Result<(), InstallError> + Sync,
) -> Result<(), InstallError> {
    use std::sync::{Condvar, Mutex};
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    // For each job, the earlier jobs it waits for (positions in `order`).
    let waits: Vec<Vec<usize>> = order
        .iter()
        .enumerate()
        .map(|(at, &node)| {
            let mut found = Vec::new();
            let mut seen = HashSet::from([node]);
            let mut stack: Vec<usize> = plan.snapshots[node]
                .dependencies
                .iter()
                .map(|d| d.1)
                .collect();
            while let Some(next) = stack.pop() {
                if !seen.insert(next) {
                    continue;
                }
                match position.get(&next) {
                    // An earlier job waits for its own dependencies; a later one (a cycle back
                    // to this job) is not waited for, but what it needs is.
                    Some(&p) if p < at => found.push(p),
                    _ => stack.extend(plan.snapshots[next].dependencies.iter().map(|d| d.1)),
                }
            }
            found
        })
        .collect();
    struct State {
        started: Vec<bool>,
        done: Vec<bool>,
        failed: Option<InstallError>,
    }
    let state = Mutex::new(State {
        started: vec![false; order.len()],
        done: vec![false; order.len()],
        failed: None,
    });
    let changed = Condvar::new();
    let worker = || loop {
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        let next = loop {
            if guard.failed.is_some() || guard.started.iter().all(|&s| s) {
                return;
            }
            let ready = (0..order.len())
                .find(|&i| !guard.started[i] && waits[i].iter().all(|&w| guard.done[w]));
            match ready {
                Some(i) => break i,
                None => guard = changed.wait(guard).unwrap_or_else(|p| p.into_inner()),
            }
        };
        guard.started[next] = true;
        drop(guard);
        let result = if cancel.is_cancelled() {
            Err(InstallError::Cancelled)
        } else {
            // A panic still marks the job done, so no worker waits for it forever.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(order[next])))
                .unwrap_or_else(|_| Err(InstallError::Internal("a build panicked".to_owned())))
        };
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        guard.done[next] = true;
        if let Err(error) = result {
            guard.failed.get_or_insert(error);
        }
        changed.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(order.len()) {
            scope.spawn(worker);
        }
    });
    match state.into_inner().unwrap_or_else(|p| p.into_inner()).failed {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The events a dependency's build runs, with the implicit `node-gyp rebuild` of a package
/// that has a `binding.gyp` and neither an `install` nor a `preinstall` script.
const BUILD_EVENTS: [&str; 3] = ["preinstall", "install", "postinstall"];

/// A project's own install-time events, in order: a workspace project runs them all once the
/// tree is linked; the root runs `preinstall` before and the rest after.
const PROJECT_EVENTS: [&str; 6] = [
    "preinstall",
    "install",
    "postinstall",
    "preprepare",
    "prepare",
    "postprepare",
];

/// The projects, each after the workspace projects it depends on (`link:`), as pnpm orders
/// their scripts; the root first, then by id, where the order is free (a cycle included).
fn projects_in_order<'a>(layout: &Layout<'a>) -> Vec<&'a str> {
    let importers: Vec<&'a str> = layout.importers().collect();
    let dir_of: HashMap<PathBuf, &str> = importers
        .iter()
        .map(|&id| (layout.importer_dir(id), id))
        .collect();
    let mut needs: HashMap<&str, HashSet<&str>> = HashMap::new();
    for direct in &layout.plan.direct {
        if let crate::plan::DirectTarget::Link(_) = direct.target
            && let Some(&target) = dir_of.get(&layout.direct_target(direct))
            && target != direct.importer
        {
            needs
                .entry(direct.importer.as_str())
                .or_default()
                .insert(target);
        }
    }
    let mut done: Vec<&str> = Vec::with_capacity(importers.len());
    while done.len() < importers.len() {
        let ready = importers.iter().find(|&&id| {
            !done.contains(&id)
                && needs
                    .get(id)
                    .is_none_or(|wanted| wanted.iter().all(|w| done.contains(w)))
        });
        // In a cycle, the first project left goes next.
        let next = ready
            .or_else(|| importers.iter().find(|&&id| !done.contains(&id)))
            .copied()
            .expect("a project is left");
        done.push(next);
    }
    done
}

/// One package.json's scripts, read when they are about to run.
pub(crate) struct Scripts {
    manifest_path: PathBuf,
    name: String,
    version: String,
    main: Option<String>,
    scripts: HashMap<String, String>,
}

#[derive(Deserialize)]
struct ScriptsManifest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    main: Option<serde_json::Value>,
    #[serde(default)]
    scripts: HashMap<String, serde_json::Value>,
}

impl ScriptsManifest {
    fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        // A byte order mark is valid in a package.json (npm strips it).
        serde_json::from_slice(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
    }

    /// The scripts that run something (non-empty strings).
    fn scripts(self) -> HashMap<String, String> {
        self.scripts
            .into_iter()
            .filter_map(|(event, script)| match script {
                serde_json::Value::String(script) if !script.is_empty() => Some((event, script)),
                _ => None,
            })
            .collect()
    }
}

impl Scripts {
    pub(crate) fn read(dir: &Path) -> Result<Self, InstallError> {
        let manifest_path = dir.join("package.json");
        let bytes = std::fs::read(&manifest_path)
            .map_err(|e| InstallError::io("read", &manifest_path, e))?;
        Self::parse(&bytes, &manifest_path).map_err(|e| InstallError::InvalidFile {
            path: manifest_path.clone(),
            message: e.to_string(),
        })
    }

    /// The scripts of package.json text read from `manifest_path`.
    pub(crate) fn parse(bytes: &[u8], manifest_path: &Path) -> serde_json::Result<Self> {
        let mut manifest = ScriptsManifest::parse(bytes)?;
        let (name, version) = (manifest.name.take(), manifest.version.take());
        let main = match manifest.main.take() {
            Some(serde_json::Value::String(main)) => Some(main),
            _ => None,
        };
        Ok(Scripts {
            manifest_path: manifest_path.to_path_buf(),
            name: name.unwrap_or_default(),
            version: version.unwrap_or_default(),
            main,
            scripts: manifest.scripts(),
        })
    }

    /// The script for `event`, if it runs something.
    pub(crate) fn get(&self, event: &str) -> Option<&str> {
        self.scripts.get(event).map(String::as_str)
    }

    /// package.json's `main`, when it is a string.
    pub(crate) fn main(&self) -> Option<&str> {
        self.main.as_deref()
    }
}

/// Where scripts run and what they see.
pub(crate) struct ScriptRunner<'a> {
    /// The directory `pnpm install` was started in (`INIT_CWD`).
    pub init_cwd: &'a Path,
    /// `node_modules/.bin` directories to put first on `PATH`, most specific first.
    pub bin_dirs: Vec<PathBuf>,
    /// More variables for the scripts (settings handed on to a nested install).
    pub env: Vec<(&'static str, OsString)>,
}

impl ScriptRunner<'_> {
    /// Runs a dependency's build in `dir`, as pnpm does for an allowed package.
    pub(crate) fn build(&self, dir: &Path, label: &str) -> Result<(), InstallError> {
        let scripts = Scripts::read(dir)?;
        let gyp = dir.join("binding.gyp").is_file()
            && scripts.get("install").is_none()
            && scripts.get("preinstall").is_none();
        for event in BUILD_EVENTS {
            let script = match scripts.get(event) {
                Some(script) => script,
                None if event == "install" && gyp => "node-gyp rebuild",
                None => continue,
            };
            self.run(dir, &scripts, event, script, label)?;
        }
        Ok(())
    }

    /// Runs `events` of a project's own package.json, those it has, in order.
    pub(crate) fn project(&self, dir: &Path, events: &[&str]) -> Result<(), InstallError> {
        let scripts = Scripts::read(dir)?;
        let label = scripts.manifest_path.display().to_string();
        for event in events {
            if let Some(script) = scripts.get(event) {
                self.run(dir, &scripts, event, script, &label)?;
            }
        }
        Ok(())
    }

    /// Runs `script` in `dir` as lifecycle `event` of the package whose `scripts` these are.
    pub(crate) fn run(
        &self,
        dir: &Path,
        scripts: &Scripts,
        event: &str,
        script: &str,
        label: &str,
    ) -> Result<(), InstallError> {
        let mut path = std::env::join_paths(self.bin_dirs.iter().chain(node_gyp_bin()))
            .map_err(|e| InstallError::Internal(e.to_string()))?;
        if let Some(inherited) = std::env::var_os("PATH") {
            path.push(":");
            path.push(inherited);
        }
        // pnpm gives scripts their own TMPDIR, `node_modules/.tmp` beside them (and leaves it).
        let temp = dir.join("node_modules/.tmp");
        std::fs::create_dir_all(&temp)
            .map_err(|e| InstallError::io("create directory", &temp, e))?;
        // An absolute path: `PATH` starts with `.bin` directories, where a package could
        // provide a command named `sh`.
        let output = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("PATH", path)
            .env("TMPDIR", &temp)
            .env("INIT_CWD", self.init_cwd)
            .env("npm_command", "install")
            .env("npm_lifecycle_event", event)
            .env("npm_lifecycle_script", script)
            .env("npm_package_name", &scripts.name)
            .env("npm_package_version", &scripts.version)
            .env("npm_package_json", &scripts.manifest_path)
            .env(
                "npm_config_user_agent",
                concat!("flowpm/", env!("CARGO_PKG_VERSION")),
            )
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| InstallError::Script {
                package: label.to_owned(),
                event: event.to_owned(),
                script: script.to_owned(),
                outcome: format!("could not start `/bin/sh`: {e}"),
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(InstallError::Script {
            package: label.to_owned(),
            event: event.to_owned(),
            script: script.to_owned(),
            outcome: match output.status.code() {
                Some(code) => format!("exited with {code}\n{}", tail.join("\n")),
                None => format!("was killed by a signal\n{}", tail.join("\n")),
            },
        })
    }
}

/// The `node-gyp-bin` directory of the npm on `PATH` (npm ships node-gyp and a `node-gyp`
/// command there), put on the scripts' `PATH` as npm and pnpm put their own: a `binding.gyp`
/// package's `node-gyp rebuild` then works without a global node-gyp. Looked up once.
fn node_gyp_bin() -> Option<&'static PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::var_os("PATH")?;
        let npm = std::env::split_paths(&path)
            .map(|dir| dir.join("npm"))
            .find(|npm| npm.is_file())?;
        // `bin/npm` links to `lib/node_modules/npm/bin/npm-cli.js`, beside `node-gyp-bin`.
        let dir = npm.canonicalize().ok()?.parent()?.join("node-gyp-bin");
        dir.join("node-gyp").is_file().then_some(dir)
    })
    .as_ref()
}

/// The packages that the last complete install built (allowed by the `allowBuilds` it
/// recorded, not pending) and whose directories are still there, from the same source
/// (`in_place.files`, [`crate::metadata::in_place`]; `file:` directories by their path): like
/// pnpm, a later install leaves them as they are instead of importing and building them again.
/// As depPaths. Never git packages: the copy in place may be one stored unbuilt.
pub(crate) fn already_built(
    layout: &Layout<'_>,
    in_place: &crate::metadata::InPlace,
) -> HashSet<String> {
    let Some(recorded) = &in_place.recorded else {
        return HashSet::new();
    };
    if recorded.allow.is_empty() && !recorded.allow_all {
        return HashSet::new();
    }
    let settings = BuildSettings::new(recorded.allow.clone(), recorded.allow_all, None);
    layout
        .plan
        .snapshots
        .iter()
        .enumerate()
        .filter(|&(index, s)| {
            settings.allows(&s.name, s.id_version())
                && !recorded.pending.contains(&s.dep_path)
                && s.git.is_none()
                && match s.directory {
                    Some(_) => layout.package_dir(s).is_dir(),
                    None => in_place.files.contains(&index),
                }
        })
        .map(|(_, s)| s.dep_path.clone())
        .collect()
}

/// What an install with scripts off leaves to build: the projects that have install-time
/// scripts (`.` or their ids) and the packages that require a build (depPaths), sorted.
pub(crate) fn pending_builds(
    layout: &Layout<'_>,
    requires_build: &HashSet<String>,
    kept: &HashSet<String>,
) -> Result<Vec<String>, InstallError> {
    let mut pending = Vec::new();
    for importer in layout.importers() {
        let scripts = Scripts::read(&layout.importer_dir(importer))?;
        if PROJECT_EVENTS
            .iter()
            .any(|event| scripts.get(event).is_some())
        {
            pending.push(importer.to_owned());
        }
    }
    pending.extend(
        layout
            .plan
            .snapshots
            .iter()
            .filter(|s| requires_build.contains(&s.dep_path) && !kept.contains(&s.dep_path))
            .map(|s| s.dep_path.clone()),
    );
    pending.sort();
    pending.dedup();
    Ok(pending)
}

/// How one install treats scripts: `None` when they are off (`--ignore-scripts`).
pub(crate) struct Lifecycle<'a> {
    pub settings: &'a BuildSettings,
    /// Checked before each build starts.
    pub cancel: &'a CancelToken,
    /// Where the command was started (`INIT_CWD`).
    pub init_cwd: &'a Path,
    /// Builds at once at most ([`child_concurrency`]).
    pub concurrency: usize,
    /// Builds are taken from and kept in the store ([`crate::side_effects`]).
    pub side_effects_cache: bool,
}

impl Lifecycle<'_> {
    /// The root project's `preinstall`, before the tree is linked (a workspace project's runs
    /// with its other scripts, after: pnpm 12's order).
    pub(crate) fn before_link(&self, root: &Path) -> Result<(), InstallError> {
        self.project(root, ROOT_IMPORTER, &PROJECT_EVENTS[..1])
    }

    /// Once the tree is linked: the allowed dependency builds (dependencies first), then the
    /// projects' own install-time scripts. Returns the ignored builds.
    /// `requires_build`: the snapshots whose package requires a build (depPaths); `kept` are
    /// the packages [`already_built`] (left as they were).
    pub(crate) fn after_link(
        &self,
        layout: &Layout<'_>,
        store: &Store,
        requires_build: &HashSet<String>,
        kept: &HashSet<String>,
    ) -> Result<Vec<String>, InstallError> {
        let plan = layout.plan;
        let requires: Vec<bool> = plan
            .snapshots
            .iter()
            .map(|s| requires_build.contains(&s.dep_path))
            .collect();
        let mut builds = plan_builds(plan, &requires, self.settings);
        builds
            .run
            .retain(|&index| !kept.contains(&plan.snapshots[index].dep_path));
        let project_bins = layout.importer_modules_dir(ROOT_IMPORTER).join(".bin");
        let cache = (self.side_effects_cache && !builds.run.is_empty())
            .then(|| crate::side_effects::SideEffects::new(store));
        run_in_order(plan, &builds.run, self.concurrency, self.cancel, |index| {
            let snapshot = &plan.snapshots[index];
            let dir = layout.package_dir(snapshot);
            let cached = cache
                .as_ref()
                .and_then(|cache| Some((cache, cache.key(plan, index)?)));
            if let Some((cache, key)) = &cached
                && cache.restore(key, &dir)?
            {
                return Ok(());
            }
            let runner = ScriptRunner {
                init_cwd: self.init_cwd,
                bin_dirs: vec![
                    dir.join("node_modules/.bin"),
                    layout.hoist_dir().join(".bin"),
                    project_bins.clone(),
                ],
                env: Vec::new(),
            };
            runner.build(&dir, &snapshot.dep_path)?;
            if let Some((cache, key)) = &cached {
                cache.save(key, &dir);
            }
            Ok(())
        })?;
        for importer in projects_in_order(layout) {
            let events = if importer == ROOT_IMPORTER {
                &PROJECT_EVENTS[1..]
            } else {
                &PROJECT_EVENTS[..]
            };
            self.project(&layout.project_dir, importer, events)?;
        }
        Ok(builds.ignored)
    }

    /// Runs `events` of one project (the workspace root's bins come after its own).
    fn project(&self, root: &Path, importer: &str, events: &[&str]) -> Result<(), InstallError> {
        let dir = if importer == ROOT_IMPORTER {
            root.to_path_buf()
        } else {
            root.join(importer)
        };
        let mut bin_dirs = vec![dir.join("node_modules/.bin")];
        if importer != ROOT_IMPORTER {
            bin_dirs.push(root.join("node_modules/.bin"));
        }
        let runner = ScriptRunner {
            init_cwd: self.init_cwd,
            bin_dirs,
            env: Vec::new(),
        };
        runner.project(&dir, events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_from_elsewhere_than_a_registry_is_allowed_only_by_its_full_key() {
        let settings = BuildSettings::new(
            [("a".to_owned(), true), ("b@file:x".to_owned(), true)].into(),
            false,
            None,
        );
        assert_eq!(settings.decision("a", "1.0.0"), Some(true));
        assert_eq!(settings.decision("a", "file:local/a"), None);
        assert_eq!(settings.decision("a", "git+https://h/r.git#c"), None);
        assert_eq!(settings.decision("b", "file:x"), Some(true));
        assert_eq!(settings.decision("b", "file:y"), None);
        let all = BuildSettings::new(BTreeMap::new(), true, None);
        assert!(all.allows("a", "file:local/a"));
    }

    #[test]
    fn child_concurrency_is_read_as_pnpm_12_reads_it() {
        assert_eq!(child_concurrency(None, 2), 2);
        assert_eq!(child_concurrency(None, 16), 4);
        assert_eq!(child_concurrency(Some(1), 16), 1);
        assert_eq!(child_concurrency(Some(9), 2), 9);
        assert_eq!(child_concurrency(Some(0), 8), 8);
        assert_eq!(child_concurrency(Some(-1), 8), 7);
        assert_eq!(child_concurrency(Some(-9999), 8), 1);
        assert_eq!(child_concurrency(Some(i64::MIN), 8), 1);
    }

    #[test]
    fn install_scripts_are_found_only_where_they_are() {
        assert!(has_install_scripts(
            br#"{"scripts":{"postinstall":"node x"}}"#
        ));
        assert!(has_install_scripts(
            br#"{"scripts":{"install":"node-gyp rebuild"}}"#
        ));
        assert!(!has_install_scripts(
            br#"{"scripts":{"prepare":"husky","test":"x"}}"#
        ));
        assert!(!has_install_scripts(br#"{"scripts":{"postinstall":""}}"#));
        // Mentioned, but not as a script.
        assert!(!has_install_scripts(
            br#"{"description":"no \"install\" here"}"#
        ));
        assert!(!has_install_scripts(b"not json install\""));
    }

    /// `top` needs `mid-a` and `mid-b` (not built), which need `leaf`; `x` and `y` need each
    /// other. Built: top, leaf, x, y, and `solo`.
    const GRAPH: &str = r#"lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      top: {specifier: 1.0.0, version: 1.0.0}
      x: {specifier: 1.0.0, version: 1.0.0}
      solo: {specifier: 1.0.0, version: 1.0.0}
packages:
  top@1.0.0: {resolution: {integrity: sha512-top}}
  mid-a@1.0.0: {resolution: {integrity: sha512-mida}}
  mid-b@1.0.0: {resolution: {integrity: sha512-midb}}
  leaf@1.0.0: {resolution: {integrity: sha512-leaf}}
  x@1.0.0: {resolution: {integrity: sha512-x}}
  y@1.0.0: {resolution: {integrity: sha512-y}}
  solo@1.0.0: {resolution: {integrity: sha512-solo}}
snapshots:
  top@1.0.0: {dependencies: {mid-a: 1.0.0, mid-b: 1.0.0}}
  mid-a@1.0.0: {dependencies: {leaf: 1.0.0}}
  mid-b@1.0.0: {dependencies: {leaf: 1.0.0}}
  leaf@1.0.0: {}
  x@1.0.0: {dependencies: {y: 1.0.0}}
  y@1.0.0: {dependencies: {x: 1.0.0}}
  solo@1.0.0: {}
"#;

    #[test]
    fn builds_run_after_what_they_depend_on_and_cycles_do_not_deadlock() {
        let lockfile =
            crate::lockfile::Lockfile::parse(GRAPH, Path::new("pnpm-lock.yaml")).unwrap();
        let options = crate::plan::PlanOptions {
            production_only: false,
            platform: crate::platform::Platform::host(),
            virtual_store_dir_max_length: 120,
            hoisting: Default::default(),
            patches: Default::default(),
        };
        let plan = crate::plan::plan(&lockfile, &options).unwrap();
        let built = ["top", "leaf", "x", "y", "solo"];
        let requires: Vec<bool> = plan
            .snapshots
            .iter()
            .map(|s| built.contains(&s.name.as_str()))
            .collect();
        let all = BuildSettings::new(BTreeMap::new(), true, None);
        let builds = plan_builds(&plan, &requires, &all);
        let names: Vec<&str> = builds
            .run
            .iter()
            .map(|&i| plan.snapshots[i].name.as_str())
            .collect();
        assert_eq!(names.len(), 5);
        let at = |name| names.iter().position(|n| *n == name).unwrap();
        assert!(at("leaf") < at("top"), "{names:?}");

        for concurrency in [1, 5] {
            let finished = std::sync::Mutex::new(Vec::new());
            run_in_order(
                &plan,
                &builds.run,
                concurrency,
                &CancelToken::new(),
                |index| {
                    let name = plan.snapshots[index].name.clone();
                    if name == "top" {
                        assert!(finished.lock().unwrap().contains(&"leaf".to_owned()));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    finished.lock().unwrap().push(name);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(finished.into_inner().unwrap().len(), 5);
        }

        // A failure stops what has not started and is returned.
        let started = std::sync::Mutex::new(0);
        let error = run_in_order(&plan, &builds.run, 1, &CancelToken::new(), |_| {
            *started.lock().unwrap() += 1;
            Err(InstallError::Internal("boom".to_owned()))
        })
        .unwrap_err();
        assert!(error.to_string().contains("boom"));
        assert_eq!(*started.lock().unwrap(), 1);

        // A panicking build is an error, not a hang of the builds waiting for it.
        let error = run_in_order(&plan, &builds.run, 5, &CancelToken::new(), |index| {
            assert_ne!(plan.snapshots[index].name, "leaf", "leaf fails");
            Ok(())
        })
        .unwrap_err();
        assert!(error.to_string().contains("a build panicked"), "{error}");
        let cancel = CancelToken::new();
        cancel.cancel();
        let error = run_in_order(&plan, &builds.run, 2, &cancel, |_| Ok(())).unwrap_err();
        assert!(matches!(error, InstallError::Cancelled), "{error}");
    }

    #[test]
    fn allow_builds_by_name_and_by_version() {
        let settings = BuildSettings::new(
            [
                ("esbuild".to_owned(), true),
                ("core-js".to_owned(), false),
                ("@scope/native@1.0.0 || 2.0.0".to_owned(), true),
                ("sharp@0.33.0".to_owned(), false),
                ("sharp".to_owned(), true),
            ]
            .into(),
            false,
            None,
        );
        assert!(settings.strict);
        assert_eq!(settings.decision("esbuild", "0.25.0"), Some(true));
        assert_eq!(settings.decision("core-js", "3.0.0"), Some(false));
        assert_eq!(settings.decision("@scope/native", "2.0.0"), Some(true));
        assert_eq!(settings.decision("@scope/native", "3.0.0"), None);
        assert_eq!(settings.decision("sharp", "0.33.0"), Some(false));
        assert_eq!(settings.decision("sharp", "0.34.0"), Some(true));
        assert_eq!(settings.decision("other", "1.0.0"), None);
        let all = BuildSettings::new(BTreeMap::new(), true, Some(false));
        assert_eq!(all.decision("other", "1.0.0"), Some(true));
    }
}
