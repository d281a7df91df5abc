//! The link stage: the `node_modules` layout of pnpm's isolated linker.
//!
//! ```text
//! node_modules/<alias>                          -> .pnpm/<dir>/node_modules/<name>   (direct)
//! node_modules/.pnpm/<dir>/node_modules/<name>/  the package's files (imported from the CAS)
//! node_modules/.pnpm/<dir>/node_modules/<dep>   -> ../../<dep dir>/node_modules/<dep name>
//! node_modules/.pnpm/node_modules/<alias>       -> ../<dir>/node_modules/<name>      (hoisted)
//! ```
//!
//! Directories and symlinks depend only on the plan, so [`Layout::create_links`] runs as soon as
//! the plan exists, in parallel with downloads; files are imported per package as each one
//! becomes available ([`run_import_worker`]).

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use flowpm_pipeline::{Receiver, StageContext};
use flowpm_store::{Cas, FileEntry, PackageFiles};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::InstallError;
use crate::hoist::{Hoisted, hoisted_projects};
use crate::messages::StoredPackage;
use crate::plan::{DirectDependency, DirectTarget, InstallPlan, ROOT_IMPORTER, SnapshotPlan};
use crate::report::Reporter;

/// Paths of one project's `node_modules`.
pub struct Layout<'a> {
    pub project_dir: PathBuf,
    pub modules_dir: PathBuf,
    pub virtual_store_dir: PathBuf,
    pub plan: &'a InstallPlan,
}

impl<'a> Layout<'a> {
    pub fn new(project_dir: &Path, plan: &'a InstallPlan) -> Self {
        let modules_dir = project_dir.join("node_modules");
        let virtual_store_dir = modules_dir.join(".pnpm");
        Layout {
            project_dir: project_dir.to_path_buf(),
            modules_dir,
            virtual_store_dir,
            plan,
        }
    }

    /// `node_modules/.pnpm/<dir>/node_modules`: the directory a snapshot's code resolves from.
    pub fn snapshot_modules_dir(&self, snapshot: &SnapshotPlan) -> PathBuf {
        self.virtual_store_dir
            .join(&snapshot.dir_name)
            .join("node_modules")
    }

    /// `node_modules/.pnpm/<dir>/node_modules/<name>`: where a snapshot's files live.
    pub fn package_dir(&self, snapshot: &SnapshotPlan) -> PathBuf {
        self.snapshot_modules_dir(snapshot).join(&snapshot.name)
    }

    /// The importer ids of the projects to link: the root, then each workspace project.
    pub fn importers(&self) -> impl Iterator<Item = &'a str> {
        std::iter::once(ROOT_IMPORTER).chain(
            self.plan
                .workspace_projects
                .iter()
                .map(|project| project.id.as_str()),
        )
    }

    /// A project's directory (the root's for `.`).
    pub fn importer_dir(&self, importer: &str) -> PathBuf {
        if importer == ROOT_IMPORTER {
            self.project_dir.clone()
        } else {
            self.project_dir.join(importer)
        }
    }

    /// A project's own `node_modules`, where its direct dependencies are linked.
    pub fn importer_modules_dir(&self, importer: &str) -> PathBuf {
        if importer == ROOT_IMPORTER {
            self.modules_dir.clone()
        } else {
            self.importer_dir(importer).join("node_modules")
        }
    }

    /// Where a direct dependency's symlink points.
    pub(crate) fn direct_target(&self, direct: &DirectDependency) -> PathBuf {
        match &direct.target {
            DirectTarget::Snapshot(index) => self.package_dir(&self.plan.snapshots[*index]),
            DirectTarget::Link(path) => normalize(&self.importer_dir(&direct.importer).join(path)),
        }
    }

    /// `node_modules/.pnpm/node_modules`: where everything is hoisted.
    pub fn hoist_dir(&self) -> PathBuf {
        self.virtual_store_dir.join("node_modules")
    }

    /// The package directories in `.pnpm` that an earlier install left and this plan does
    /// not have, to be deleted ([`Doomed::remove`]) while the install goes on (nothing it
    /// creates is under them): deleting a removed package's tree was the largest single cost
    /// of an edit (PERF.md).
    pub fn doomed(&self) -> Result<Doomed, InstallError> {
        let wanted_dirs: HashSet<&str> = self
            .plan
            .snapshots
            .iter()
            .map(|s| s.dir_name.as_str())
            .collect();
        Ok(Doomed {
            paths: list_dir(&self.virtual_store_dir)?
                .into_iter()
                .filter(|name| {
                    name != "node_modules"
                        && name != "lock.yaml"
                        && !wanted_dirs.contains(name.as_str())
                })
                .map(|name| self.virtual_store_dir.join(name))
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Removes the links and shims an earlier install left that this plan does not have
    /// (only inside `node_modules`), so switching lockfiles never leaves stale packages
    /// resolvable; with [`Layout::doomed`], everything it left.
    pub fn prune(&self, hoisted: &[Hoisted]) -> Result<(), InstallError> {
        let projects = hoisted_projects(self.plan, hoisted);
        for importer in self.importers() {
            let direct: HashSet<&str> = self
                .plan
                .direct
                .iter()
                .filter(|d| d.importer == importer)
                .map(|d| d.alias.as_str())
                .collect();
            let mut wanted = direct;
            if importer == ROOT_IMPORTER {
                wanted.extend(
                    hoisted
                        .iter()
                        .filter(|h| h.public)
                        .map(|h| h.alias.as_str()),
                );
                wanted.extend(projects.iter().filter(|p| p.public).map(|p| p.alias));
            }
            let modules_dir = self.importer_modules_dir(importer);
            prune_links(&modules_dir, &wanted)?;
            // Shims are regenerated from scratch.
            remove_any(&modules_dir.join(".bin"))?;
        }
        let mut hoisted_names: HashSet<&str> = hoisted
            .iter()
            .filter(|h| !h.public)
            .map(|h| h.alias.as_str())
            .collect();
        hoisted_names.extend(projects.iter().filter(|p| !p.public).map(|p| p.alias));
        prune_links(&self.hoist_dir(), &hoisted_names)?;
        remove_any(&self.hoist_dir().join(".bin"))
    }

    /// Removes the links that dependents have to the snapshots in `missing` (packages left out
    /// mid-install); [`Layout::prune`] and [`Layout::doomed`] on the reduced plan remove the
    /// rest.
    pub fn unlink_dependents(&self, missing: &HashSet<usize>) -> Result<(), InstallError> {
        for (index, snapshot) in self.plan.snapshots.iter().enumerate() {
            if missing.contains(&index) {
                continue;
            }
            for (alias, child) in &snapshot.dependencies {
                if missing.contains(child) {
                    remove_any(&self.snapshot_modules_dir(snapshot).join(alias))?;
                }
            }
        }
        Ok(())
    }

    /// Where hoisted packages are linked: `.pnpm/node_modules`, or the root project's
    /// `node_modules` when hoisted publicly.
    pub fn hoisted_dir(&self, public: bool) -> PathBuf {
        if public {
            self.importer_modules_dir(ROOT_IMPORTER)
        } else {
            self.hoist_dir()
        }
    }

    /// Links `alias` -> `target` where hoisting puts it. In the root `node_modules` a directory
    /// or file that is not a symlink is the user's: left in place, as pnpm leaves it.
    fn link_hoisted(&self, public: bool, alias: &str, target: &Path) -> Result<(), InstallError> {
        let link_path = self.hoisted_dir(public).join(alias);
        if public
            && link_path
                .symlink_metadata()
                .is_ok_and(|metadata| !metadata.file_type().is_symlink())
        {
            return Ok(());
        }
        link(&link_path, target, alias)
    }

    /// Links what is hoisted again (after the plan lost packages).
    pub fn relink_hoisted(&self, hoisted: &[Hoisted]) -> Result<(), InstallError> {
        for entry in hoisted {
            let link_path = self.hoisted_dir(entry.public).join(&entry.alias);
            if let Some(parent) = link_path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| InstallError::io("create directory", parent, e))?;
            }
            let target = self.package_dir(&self.plan.snapshots[entry.snapshot]);
            self.link_hoisted(entry.public, &entry.alias, &target)?;
        }
        Ok(())
    }

    /// Creates every directory and symlink of the layout but the dependency links of the
    /// snapshots in `linked` (in place from the last install). Snapshots in `in_place` (their
    /// directories left by the last install) lose the links they no longer have (an alias
    /// dropped under the same depPath). Needs only the plan.
    pub fn create_links(
        &self,
        hoisted: &[Hoisted],
        (linked, in_place): (&HashSet<usize>, &HashSet<usize>),
        context: &StageContext,
    ) -> Result<(), InstallError> {
        let mut created = HashSet::new();
        let mut mkdir = |dir: PathBuf| -> Result<(), InstallError> {
            if created.insert(dir.clone()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .create(&dir)
                    .map_err(|e| InstallError::io("create directory", &dir, e))?;
            }
            Ok(())
        };
        // pnpm creates `.pnpm/node_modules` only when something is hoisted, even if only
        // publicly (observed).
        let hoist_dir = self.hoist_dir();
        mkdir(self.virtual_store_dir.clone())?;
        let mut store = VirtualStoreDir::open(&self.virtual_store_dir)?;
        let projects = hoisted_projects(self.plan, hoisted);
        if !hoisted.is_empty() || !projects.is_empty() {
            mkdir(hoist_dir.clone())?;
        }
        for importer in self.importers() {
            // A workspace project without dependencies gets no `node_modules` (pnpm 12).
            if importer == ROOT_IMPORTER || self.plan.direct.iter().any(|d| d.importer == importer)
            {
                mkdir(self.importer_modules_dir(importer))?;
            }
        }
        for (index, snapshot) in self.plan.snapshots.iter().enumerate() {
            if context.is_cancelled() {
                return Ok(());
            }
            if linked.contains(&index) {
                continue;
            }
            let modules = format!("{}/node_modules", snapshot.dir_name);
            store.mkdir(&modules)?;
            if in_place.contains(&index) {
                let mut wanted: HashSet<&str> = snapshot
                    .dependencies
                    .iter()
                    .map(|(alias, _)| alias.as_str())
                    .chain(snapshot.links.iter().map(|(alias, _)| alias.as_str()))
                    .collect();
                wanted.insert(&snapshot.name);
                prune_links(&self.snapshot_modules_dir(snapshot), &wanted)?;
            }
            for (alias, child) in &snapshot.dependencies {
                if *alias == snapshot.name {
                    continue; // the package's own directory is there
                }
                if let Some(scope) = scope_of(alias) {
                    store.mkdir(&format!("{modules}/{scope}"))?;
                }
                let child = &self.plan.snapshots[*child];
                store.symlink(&format!("{modules}/{alias}"), child, &snapshot.name)?;
                context.record_item(0);
            }
            // A `file:` package's `link:` dependencies: paths from the lockfile's directory.
            for (alias, path) in &snapshot.links {
                let modules_dir = self.snapshot_modules_dir(snapshot);
                if let Some(scope) = scope_of(alias) {
                    mkdir(modules_dir.join(scope))?;
                }
                let target = normalize(&self.project_dir.join(path));
                link(&modules_dir.join(alias), &target, alias)?;
                context.record_item(0);
            }
        }
        for direct in &self.plan.direct {
            let modules_dir = self.importer_modules_dir(&direct.importer);
            if let Some(scope) = scope_of(&direct.alias) {
                mkdir(modules_dir.join(scope))?;
            }
            let target = self.direct_target(direct);
            link(&modules_dir.join(&direct.alias), &target, &direct.alias)?;
            context.record_item(0);
        }
        for entry in hoisted {
            if entry.public {
                if let Some(scope) = scope_of(&entry.alias) {
                    mkdir(self.hoisted_dir(true).join(scope))?;
                }
                let target = self.package_dir(&self.plan.snapshots[entry.snapshot]);
                self.link_hoisted(true, &entry.alias, &target)?;
                context.record_item(0);
                continue;
            }
            if let Some(scope) = scope_of(&entry.alias) {
                store.mkdir(&format!("node_modules/{scope}"))?;
            }
            let target = &self.plan.snapshots[entry.snapshot];
            store.symlink(
                &format!("node_modules/{}", entry.alias),
                target,
                &entry.alias,
            )?;
            context.record_item(0);
        }
        for project in projects {
            if let Some(scope) = scope_of(project.alias) {
                mkdir(self.hoisted_dir(project.public).join(scope))?;
            }
            let target = self.importer_dir(project.id);
            self.link_hoisted(project.public, project.alias, &target)?;
            context.record_item(0);
        }
        Ok(())
    }
}

/// `.pnpm`, for creating the directories and symlinks inside it through one handle: each path
/// walked is 1-4 components from it instead of the project's absolute path, and directories
/// are made parent first instead of by `create_dir_all`'s deepest-first attempt that fails
/// (ENOENT) for every new package (PERF.md: p4).
struct VirtualStoreDir<'p> {
    fd: OwnedFd,
    path: &'p Path,
    /// Directories made (or found) by this run, relative to `.pnpm`.
    made: HashSet<String>,
}

impl<'p> VirtualStoreDir<'p> {
    fn open(path: &'p Path) -> Result<Self, InstallError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| InstallError::io("open directory", path, e.into()))?;
        Ok(VirtualStoreDir {
            fd,
            path,
            made: HashSet::new(),
        })
    }

    /// `mkdir -p` of `relative`.
    fn mkdir(&mut self, relative: &str) -> Result<(), InstallError> {
        if self.made.contains(relative) {
            return Ok(());
        }
        if let Some((parent, _)) = relative.rsplit_once('/') {
            self.mkdir(parent)?;
        }
        match rustix::fs::mkdirat(&self.fd, relative, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {
                self.made.insert(relative.to_owned());
                Ok(())
            }
            Err(e) => Err(InstallError::io(
                "create directory",
                self.path.join(relative),
                e.into(),
            )),
        }
    }

    /// Makes `relative` a symlink to `target`'s package directory, written relative to the
    /// link's directory as pnpm does (`../../<dir>/node_modules/<name>`, or just `<name>` for a
    /// package's alias of itself).
    fn symlink(
        &self,
        relative: &str,
        target: &SnapshotPlan,
        package: &str,
    ) -> Result<(), InstallError> {
        let parent = relative.rsplit_once('/').map_or("", |(parent, _)| parent);
        let target = format!("{}/node_modules/{}", target.dir_name, target.name);
        let contents = relative_path(Path::new(parent), Path::new(&target));
        let contents = contents.as_os_str();
        let error = |action, source: rustix::io::Errno| InstallError::Link {
            package: package.to_owned(),
            action,
            path: self.path.join(relative),
            source: source.into(),
        };
        match rustix::fs::symlinkat(contents, &self.fd, relative) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let existing = rustix::fs::readlinkat(&self.fd, relative, Vec::new());
                if existing.is_ok_and(|existing| existing.as_bytes() == contents.as_encoded_bytes())
                {
                    return Ok(());
                }
                remove_any(&self.path.join(relative))?;
                rustix::fs::symlinkat(contents, &self.fd, relative)
                    .map_err(|e| error("create symlink", e))
            }
            Err(e) => Err(error("create symlink", e)),
        }
    }
}

fn scope_of(alias: &str) -> Option<&str> {
    alias
        .starts_with('@')
        .then(|| alias.split_once('/').map(|(scope, _)| scope))
        .flatten()
}

/// Makes `link_path` a symlink to `target` (given as a path; stored relative, as pnpm does).
fn link(link_path: &Path, target: &Path, package: &str) -> Result<(), InstallError> {
    let parent = link_path.parent().unwrap_or(Path::new("."));
    let relative = relative_path(parent, target);
    let error = |action, source| InstallError::Link {
        package: package.to_owned(),
        action,
        path: link_path.to_path_buf(),
        source,
    };
    match std::os::unix::fs::symlink(&relative, link_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read_link(link_path).is_ok_and(|existing| existing == relative) {
                return Ok(());
            }
            remove_any(link_path)?;
            std::os::unix::fs::symlink(&relative, link_path).map_err(|e| error("create symlink", e))
        }
        Err(e) => Err(error("create symlink", e)),
    }
}

/// `to` relative to the directory `from` (both absolute or both relative to one base).
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for component in &to[common..] {
        relative.push(component.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// Resolves `.` and `..` lexically (for `link:` targets, which may not exist yet).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn list_dir(dir: &Path) -> Result<Vec<String>, InstallError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(InstallError::io("read directory", dir, e)),
    }
}

/// Removes symlinks in `dir` (and in its `@scope` subdirectories) whose alias is not wanted.
fn prune_links(dir: &Path, wanted: &HashSet<&str>) -> Result<(), InstallError> {
    for name in list_dir(dir)? {
        let path = dir.join(&name);
        if name.starts_with('.') {
            // `.bin`, `.pnpm`, `.modules.yaml` are not links; a killed install's temp file goes.
            if crate::replace::is_stale_temp(&name) {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if name.starts_with('@') && !path.is_symlink() {
            for inner in list_dir(&path)? {
                if !wanted.contains(format!("{name}/{inner}").as_str()) {
                    remove_any(&path.join(inner))?;
                }
            }
        } else if path.is_symlink() && !wanted.contains(name.as_str()) {
            remove_any(&path)?;
        }
    }
    Ok(())
}

/// Entries of `.pnpm` that the plan no longer has, listed by [`Layout::doomed`].
#[derive(Debug, Default)]
#[must_use = "the directories are only listed: remove them"]
pub struct Doomed {
    paths: Vec<PathBuf>,
    /// The next one to claim: several threads delete them together.
    next: AtomicUsize,
}

impl Doomed {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Deletes them (sharing the list with whichever other threads call this), stopping
    /// early if the install is cancelled.
    pub fn remove(&self, context: Option<&StageContext>) -> Result<(), InstallError> {
        while let Some(path) = self.paths.get(self.next.fetch_add(1, Ordering::Relaxed)) {
            if context.is_some_and(StageContext::is_cancelled) {
                break;
            }
            remove_any(path)?;
            if let Some(context) = context {
                context.record_item(0);
            }
        }
        Ok(())
    }
}

/// Removes a file, symlink or directory tree; one that is not there is already removed.
pub(crate) fn remove_any(path: &Path) -> Result<(), InstallError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| InstallError::io("remove", path, e))
}

/// How files get from the store into `node_modules` (`--package-import-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMethod {
    /// Clone if the filesystem supports it, else hardlink, else copy (pnpm's default).
    Auto,
    Clone,
    Hardlink,
    Copy,
}

const METHOD_UNDECIDED: u8 = 0;
const METHOD_CLONE: u8 = 1;
const METHOD_HARDLINK: u8 = 2;
const METHOD_COPY: u8 = 3;

/// Imports packages' files, shared by the import threads.
pub struct Importer<'a> {
    pub layout: &'a Layout<'a>,
    pub cas: &'a Cas,
    pub reporter: &'a dyn Reporter,
    requested: ImportMethod,
    /// For `Auto`: the method that worked, found on the first file and then reused.
    decided: AtomicU8,
    pub files_imported: AtomicU64,
    pub bytes_imported: AtomicU64,
    /// Built packages left as an earlier install built them (depPaths): not imported again.
    kept: HashSet<String>,
    /// Packages that require a build left unbuilt in place by the last install (indexes,
    /// [`crate::metadata::InPlace::unbuilt`]): not imported again.
    unbuilt: HashSet<usize>,
    /// Snapshots (indexes) already in place from the last complete install, unchanged
    /// ([`crate::metadata::in_place`]): not imported again (unless their package requires a
    /// build).
    present: HashSet<usize>,
    /// Snapshots whose package requires a build (depPaths), as the index entries or the
    /// finaliser said: what the build step needs, without reading the index again.
    builds: Mutex<Vec<String>>,
}

impl<'a> Importer<'a> {
    /// Leaves the packages in `kept` alone when they require a build (see
    /// [`crate::lifecycle::already_built`]).
    pub fn keeping(mut self, kept: HashSet<String>) -> Self {
        self.kept = kept;
        self
    }

    /// Leaves the unbuilt packages in `unbuilt` as they are ([`Importer::unbuilt`]).
    pub fn leaving_unbuilt(mut self, unbuilt: HashSet<usize>) -> Self {
        self.unbuilt = unbuilt;
        self
    }

    /// Leaves the snapshots in `present` as they are ([`Importer::present`]).
    pub fn skipping(mut self, present: HashSet<usize>) -> Self {
        self.present = present;
        self
    }

    pub fn new(
        layout: &'a Layout<'a>,
        cas: &'a Cas,
        reporter: &'a dyn Reporter,
        method: ImportMethod,
    ) -> Self {
        let decided = match method {
            ImportMethod::Auto => METHOD_UNDECIDED,
            ImportMethod::Clone => METHOD_CLONE,
            ImportMethod::Hardlink => METHOD_HARDLINK,
            ImportMethod::Copy => METHOD_COPY,
        };
        Importer {
            layout,
            cas,
            reporter,
            requested: method,
            decided: AtomicU8::new(decided),
            files_imported: AtomicU64::new(0),
            bytes_imported: AtomicU64::new(0),
            kept: HashSet::new(),
            unbuilt: HashSet::new(),
            present: HashSet::new(),
            builds: Mutex::new(Vec::new()),
        }
    }

    /// The snapshots left in place, not imported ([`Importer::skipping`]).
    pub fn present(&self) -> &HashSet<usize> {
        &self.present
    }

    /// The snapshots seen so far whose package requires a build (depPaths).
    pub fn take_builds(&self) -> Vec<String> {
        std::mem::take(&mut *self.builds.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Fills `.pnpm/<dir>/node_modules/<name>/` with the package's files.
    pub fn import(
        &self,
        snapshot: &SnapshotPlan,
        files: &PackageFiles,
    ) -> Result<(), InstallError> {
        let package_dir = self.layout.package_dir(snapshot);
        let io_error = |action, path: &Path, source: std::io::Error| InstallError::Link {
            package: snapshot.dep_path.clone(),
            action,
            path: path.to_path_buf(),
            source,
        };
        let patch_error = |why: String| {
            let path = snapshot
                .patch
                .as_ref()
                .map_or("", |plan| plan.path.as_str());
            InstallError::InvalidFile {
                path: self.layout.project_dir.join(path),
                message: format!(
                    "this patch does not apply to `{}`: {why}",
                    snapshot.dep_path
                ),
            }
        };
        prepare_package_dir(&package_dir)
            .map_err(|(action, e)| io_error(action, &package_dir, e))?;
        let dir = rustix::fs::open(
            &package_dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error("open directory", &package_dir, e.into()))?;
        let mut made_dirs: HashSet<&str> = HashSet::new();
        let patch = match &snapshot.patch {
            Some(plan) => Some(Patched::read(self.layout, snapshot, plan)?),
            None => None,
        };
        for file in &files.files {
            if let Some((parent, _)) = file.path.rsplit_once('/') {
                make_parents(&dir, parent, &mut made_dirs).map_err(|e| {
                    io_error("create directory", &package_dir.join(parent), e.into())
                })?;
            }
            if let Some(change) = patch.as_ref().and_then(|patch| patch.change(&file.path)) {
                let bytes = self.patched_file(file, change).map_err(&patch_error)?;
                let executable = change.executable.unwrap_or(file.is_executable());
                if let Some(bytes) = bytes {
                    write_new(&dir, &file.path, &bytes, executable).map_err(|e| {
                        io_error("write patched file", &package_dir.join(&file.path), e)
                    })?;
                }
            } else {
                self.import_file(&dir, file, files.requires_build)
                    .map_err(|e| {
                        io_error("import file", &package_dir.join(&file.path), e.into())
                    })?;
            }
            self.bytes_imported.fetch_add(file.size, Ordering::Relaxed);
        }
        if let Some(patch) = &patch {
            // Files the patch creates; one it changes must be in the package.
            for change in &patch.files {
                let present = files.files.iter().any(|file| file.path == change.path);
                match (&change.change, present) {
                    (crate::patch::Change::Create(hunks), false) => {
                        let bytes = crate::patch::apply(None, hunks)
                            .map_err(|why| patch_error(format!("{}: {why}", change.path)))?;
                        if let Some((parent, _)) = change.path.rsplit_once('/') {
                            make_parents(&dir, parent, &mut made_dirs).map_err(|e| {
                                io_error("create directory", &package_dir.join(parent), e.into())
                            })?;
                        }
                        write_new(&dir, &change.path, &bytes, change.executable == Some(true))
                            .map_err(|e| {
                                io_error("write patched file", &package_dir.join(&change.path), e)
                            })?;
                    }
                    (_, true) => {}
                    (_, false) => {
                        return Err(patch_error(format!(
                            "it changes `{}`, which the package does not have",
                            change.path
                        )));
                    }
                }
            }
        }
        self.files_imported
            .fetch_add(files.files.len() as u64, Ordering::Relaxed);
        self.reporter.on_imported(&snapshot.name);
        Ok(())
    }

    /// A file of the package as `change` leaves it: `None` when it deletes it.
    fn patched_file(
        &self,
        file: &FileEntry,
        change: &crate::patch::FilePatch,
    ) -> Result<Option<Vec<u8>>, String> {
        let hunks = match &change.change {
            crate::patch::Change::Delete => return Ok(None),
            crate::patch::Change::Modify(hunks) => hunks,
            crate::patch::Change::Create(_) => {
                return Err(format!("it creates `{}`, which the package has", file.path));
            }
        };
        let name = Cas::relative_path(&file.hash, file.is_executable());
        let read = || -> rustix::io::Result<Vec<u8>> {
            let shard = self.cas.shard_fd(&file.hash)?;
            let fd = rustix::fs::openat(
                shard,
                name.file_name(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            Ok(bytes)
        };
        let original =
            read().map_err(|e| format!("reading `{}` from the store: {e}", file.path))?;
        crate::patch::apply(Some(&original), hunks)
            .map(Some)
            .map_err(|why| format!("{}: {why}", file.path))
    }

    /// Imports one file; `private` (a package whose build scripts may rewrite its files) gets
    /// a copy of its own, never a hardlink into the store, as pnpm does.
    fn import_file(
        &self,
        dir: &OwnedFd,
        file: &FileEntry,
        private: bool,
    ) -> rustix::io::Result<()> {
        let name = Cas::relative_path(&file.hash, file.is_executable());
        let source = (self.cas.shard_fd(&file.hash)?, name.file_name());
        let destination = file.path.as_str();
        let mut replaced = 0;
        loop {
            let method = match self.decided.load(Ordering::Relaxed) {
                METHOD_HARDLINK if private => METHOD_COPY,
                method => method,
            };
            let result = match method {
                METHOD_UNDECIDED | METHOD_CLONE => {
                    self.clone_file(source, dir, destination, file.mode)
                }
                METHOD_HARDLINK => {
                    rustix::fs::linkat(source.0, source.1, dir, destination, AtFlags::empty())
                }
                _ => self.copy_file(source, dir, destination, file.mode),
            };
            match result {
                Ok(()) => {
                    if method == METHOD_UNDECIDED {
                        self.decided.store(METHOD_CLONE, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                // A file left by an earlier install: replace it. Another install of the same
                // project may be doing the same at this moment; its unlink beating ours
                // (ENOENT) leaves the name free, which is all we need.
                Err(Errno::EXIST) => match rustix::fs::unlinkat(dir, destination, AtFlags::empty())
                {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(error) => return Err(error),
                },
                // The store file was replaced while being linked: another writer found it
                // short (still being written) and put a whole copy under its name, leaving the
                // inode it had looked up unlinked. The name holds a whole copy: link that.
                Err(Errno::NOENT)
                    if method == METHOD_HARDLINK
                        && replaced < 3
                        && rustix::fs::statat(source.0, source.1, AtFlags::empty()).is_ok() =>
                {
                    replaced += 1;
                }
                // Reflinks unsupported here: fall back to hardlinks (only when allowed).
                Err(
                    Errno::OPNOTSUPP
                    | Errno::XDEV
                    | Errno::INVAL
                    | Errno::NOTTY
                    | Errno::NOSYS
                    | Errno::PERM,
                ) if method == METHOD_UNDECIDED => {
                    let _ = rustix::fs::unlinkat(dir, destination, AtFlags::empty());
                    self.decided.store(METHOD_HARDLINK, Ordering::Relaxed);
                }
                // Store on another filesystem, or the file has too many links: copy.
                Err(Errno::XDEV | Errno::MLINK)
                    if method == METHOD_HARDLINK && self.requested != ImportMethod::Hardlink =>
                {
                    self.decided.store(METHOD_COPY, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn clone_file(
        &self,
        source: Source<'_>,
        dir: &OwnedFd,
        destination: &str,
        mode: u32,
    ) -> rustix::io::Result<()> {
        let (source, target) = self.open_pair(source, dir, destination, mode)?;
        rustix::fs::ioctl_ficlone(&target, &source)
    }

    fn copy_file(
        &self,
        source: Source<'_>,
        dir: &OwnedFd,
        destination: &str,
        mode: u32,
    ) -> rustix::io::Result<()> {
        let (source, target) = self.open_pair(source, dir, destination, mode)?;
        let (mut reader, mut writer) = (std::fs::File::from(source), std::fs::File::from(target));
        std::io::copy(&mut reader, &mut writer)
            .map(|_| ())
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
    }

    /// The CAS file to read and a new file (created with `O_EXCL`) to fill.
    fn open_pair(
        &self,
        (shard, source): Source<'_>,
        dir: &OwnedFd,
        destination: &str,
        mode: u32,
    ) -> rustix::io::Result<(OwnedFd, OwnedFd)> {
        let source = rustix::fs::openat(
            shard,
            source,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let target = rustix::fs::openat(
            dir,
            destination,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok((source, target))
    }
}

/// A package's patch, read and checked against the hash its depPath names.
struct Patched {
    files: Vec<crate::patch::FilePatch>,
}

impl Patched {
    fn read(
        layout: &Layout<'_>,
        snapshot: &SnapshotPlan,
        plan: &crate::plan::PatchPlan,
    ) -> Result<Self, InstallError> {
        let text = crate::patch::read(&layout.project_dir, &plan.path)?;
        let invalid = |message: String| InstallError::InvalidFile {
            path: layout.project_dir.join(&plan.path),
            message,
        };
        if crate::patch::hash(&text) != plan.hash {
            return Err(invalid(format!(
                "this patch is not the one `{}` in the lockfile names (its hash changed)",
                snapshot.dep_path
            )));
        }
        let files = crate::patch::parse(&text).map_err(invalid)?;
        Ok(Patched { files })
    }

    fn change(&self, path: &str) -> Option<&crate::patch::FilePatch> {
        self.files.iter().find(|file| file.path == path)
    }
}

/// Writes a file of the package's own (a patched one: never a link into the store).
fn write_new(dir: &OwnedFd, path: &str, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    let mode = if executable { 0o755 } else { 0o644 };
    let fd = rustix::fs::openat(
        dir,
        path,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    std::io::Write::write_all(&mut std::fs::File::from(fd), bytes)
}

/// Makes `dir` an empty directory but for `node_modules/.bin` (the shims of the package's
/// own dependencies' bins, which the install writes). A directory already there holds an
/// earlier import, and none of it may survive this one: the same depPath from another source
/// (a `file:` tarball changed in place, its bundled dependencies included), an interrupted
/// install's mix of two versions, an earlier build's output (a stale binary would make the
/// build skip compiling), a file since deleted from a `file:` directory. A fresh directory,
/// the cold-install case, costs no syscall more than `mkdir`.
fn prepare_package_dir(dir: &Path) -> Result<(), (&'static str, std::io::Error)> {
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Never clear through a symlink: its target may be the user's own files.
            let metadata = std::fs::symlink_metadata(dir).map_err(|e| ("inspect", e))?;
            if metadata.is_dir() {
                let clear_modules = |modules: &Path| clear_but(modules, ".bin", &|_| Ok(()));
                return clear_but(dir, "node_modules", &clear_modules).map_err(|e| ("clear", e));
            }
            std::fs::remove_file(dir).map_err(|e| ("remove", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(("create directory", e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(|e| ("create directory", e))
}

/// Removes everything in `dir` but its subdirectory `kept` (a real directory, not a symlink),
/// which `inside_kept` clears as it sees fit; a missing `dir` is already clear.
fn clear_but(
    dir: &Path,
    kept: &str,
    inside_kept: &dyn Fn(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() && entry.file_name() == kept {
            inside_kept(&entry.path())?;
        } else if file_type.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// `mkdir -p` of `relative` under `dir`, remembering what exists to save syscalls.
fn make_parents<'p>(
    dir: &OwnedFd,
    relative: &'p str,
    made: &mut HashSet<&'p str>,
) -> rustix::io::Result<()> {
    if made.contains(relative) {
        return Ok(());
    }
    if let Some((parent, _)) = relative.rsplit_once('/') {
        make_parents(dir, parent, made)?;
    }
    match rustix::fs::mkdirat(dir.as_fd(), relative, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {
            made.insert(relative);
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Packages known to be stored before the import threads start (index hits), which the
/// threads claim one by one with an atomic counter. Handing each over a bounded channel
/// instead cost ~3k futex calls per 1,000 packages on a warm install (PERF.md).
#[derive(Default)]
pub struct Preloaded {
    packages: Vec<StoredPackage>,
    next: AtomicUsize,
}

impl Preloaded {
    pub fn new(packages: Vec<StoredPackage>) -> Self {
        Preloaded {
            packages,
            next: AtomicUsize::new(0),
        }
    }

    fn claim(&self) -> Option<&StoredPackage> {
        self.packages.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// One import thread: imports stored packages (the preloaded ones, then each one `input`
/// delivers) into every snapshot that uses them.
pub fn run_import_worker(
    context: &StageContext,
    (preloaded, input): (&Preloaded, &Receiver<StoredPackage>),
    importer: &Importer<'_>,
) -> Result<(), InstallError> {
    while !context.is_cancelled()
        && let Some(stored) = preloaded.claim()
    {
        import_stored(context, stored, importer)?;
    }
    while let Some(stored) = context.recv(input) {
        import_stored(context, &stored, importer)?;
    }
    Ok(())
}

fn import_stored(
    context: &StageContext,
    stored: &StoredPackage,
    importer: &Importer<'_>,
) -> Result<(), InstallError> {
    for &index in &stored.unit.snapshots {
        let snapshot = &importer.layout.plan.snapshots[index];
        if stored.files.requires_build {
            // Rare (a few packages per thousand): the lock is off the common path.
            let mut builds = importer.builds.lock().unwrap_or_else(|p| p.into_inner());
            builds.push(snapshot.dep_path.clone());
            drop(builds);
            if importer.kept.contains(&snapshot.dep_path) || importer.unbuilt.contains(&index) {
                continue;
            }
        } else if importer.present.contains(&index) {
            continue;
        }
        importer.import(snapshot, &stored.files)?;
        context.record_item(stored.files.total_size());
    }
    Ok(())
}

/// A CAS file to import: its shard's directory handle and its name there.
type Source<'a> = (BorrowedFd<'a>, &'a str);
