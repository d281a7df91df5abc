//! The plan stage: from `package.json` and the lockfile to the exact set of snapshots to install
//! and the edges between them. Everything the linker needs for directories and symlinks is known
//! here, before any tarball is fetched.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::InstallError;
use crate::catalogs::Catalogs;
use crate::dep_path::dep_path_to_filename;
use crate::hoist::HoistPatterns;
use crate::lockfile::{
    Importer, ImporterDependency, Lockfile, package_key, reference_to_dep_path, split_dep_path,
};
use crate::manifest::Manifest;
use crate::overrides::Overrides;
use crate::package_extensions::PackageExtensions;
use crate::platform::Platform;

/// Which group of the importer a direct dependency belongs to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DependencyGroup {
    Production,
    Development,
    Optional,
}

impl DependencyGroup {
    pub fn lockfile_key(self) -> &'static str {
        match self {
            DependencyGroup::Production => "dependencies",
            DependencyGroup::Development => "devDependencies",
            DependencyGroup::Optional => "optionalDependencies",
        }
    }
}

/// One package instance to install: a lockfile snapshot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnapshotPlan {
    /// The snapshot key, e.g. `react-dom@18.2.0(react@18.2.0)`.
    pub dep_path: String,
    pub name: String,
    /// The version without peer suffix (or the tarball URL for tarball dependencies).
    pub version: String,
    /// `node_modules/.pnpm/<dir_name>`.
    pub dir_name: String,
    pub integrity: Option<String>,
    /// `resolution.tarball` when the lockfile gives one; otherwise derived from the registry.
    pub tarball: Option<String>,
    /// A `file:` directory dependency: the directory, relative to the lockfile's.
    pub directory: Option<String>,
    /// A git dependency's repository and commit.
    pub git: Option<crate::git::GitSource>,
    /// Dependencies as (alias, index into [`InstallPlan::snapshots`]).
    pub dependencies: Vec<(String, usize)>,
    /// The patch applied to its files (`(patch_hash=…)` in its depPath).
    #[serde(default)]
    pub patch: Option<PatchPlan>,
    /// `link:<path>` dependencies (of a `file:` package) as (alias, path from the lockfile's
    /// directory): symlinks to directories of the project.
    #[serde(default)]
    pub links: Vec<(String, String)>,
    pub has_bin: bool,
    pub optional: bool,
    /// Names this package declares as peer dependencies.
    pub peer_names: Vec<String>,
}

impl SnapshotPlan {
    /// The version in its depPath, without the peer suffix: the registry version, else what
    /// says where the package comes from (`file:local/a`, a git id, a URL) even when the
    /// lockfile records a package.json `version:` too. `allowBuilds` keys and build names use it.
    pub fn id_version(&self) -> &str {
        crate::lockfile::package_key(&self.dep_path)
            .strip_prefix(self.name.as_str())
            .and_then(|rest| rest.strip_prefix('@'))
            .unwrap_or(&self.version)
    }

    /// The key of this package's files in the store index: snapshots that differ only by peer
    /// suffix share one tarball, hence one entry.
    pub fn index_key(&self) -> String {
        crate::messages::unit_key(
            self.directory.as_deref(),
            self.git.as_ref(),
            self.integrity.as_deref(),
            self.tarball.as_deref(),
        )
        .unwrap_or_else(|| format!("{}@{}", self.name, self.version))
    }
}

/// A `patchedDependencies` patch of one package.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PatchPlan {
    /// The sha256 its depPath names.
    pub hash: String,
    /// The patch file, from the lockfile's directory.
    pub path: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum DirectTarget {
    Snapshot(usize),
    /// `link:<path>`: a symlink to a directory of the project.
    Link(String),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DirectDependency {
    /// The lockfile importer id of the project that depends on it: `.` for the root,
    /// `packages/a` for a workspace project.
    pub importer: String,
    pub alias: String,
    pub group: DependencyGroup,
    pub target: DirectTarget,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct InstallPlan {
    pub snapshots: Vec<SnapshotPlan>,
    pub direct: Vec<DirectDependency>,
    /// Optional snapshots left out because they do not support this platform.
    pub skipped: Vec<String>,
    /// The workspace's projects besides the root (empty outside a workspace).
    pub workspace_projects: Vec<WorkspaceProject>,
    /// Where [`crate::hoist::hoist`] links what it hoists (from [`PlanOptions`]).
    pub hoisting: HoistPatterns,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceProject {
    /// The importer id: the project's directory relative to the root, `/`-separated.
    pub id: String,
    /// Its package.json `name`, if any.
    pub name: Option<String>,
}

impl InstallPlan {
    /// Whether a snapshot comes from the project itself (a `file:` directory or tarball), or
    /// is patched by a file of the project: such plans are checked afresh by every install.
    pub fn has_local_packages(&self) -> bool {
        self.snapshots.iter().any(|snapshot| {
            snapshot.directory.is_some()
                || snapshot.patch.is_some()
                || snapshot
                    .tarball
                    .as_deref()
                    .is_some_and(|tarball| tarball.starts_with("file:"))
        })
    }

    /// This plan without the snapshots in `missing` and every dependency on them.
    pub fn without(&self, missing: &HashSet<usize>) -> InstallPlan {
        let mut new_index = vec![usize::MAX; self.snapshots.len()];
        let mut snapshots = Vec::new();
        for (index, snapshot) in self.snapshots.iter().enumerate() {
            if !missing.contains(&index) {
                new_index[index] = snapshots.len();
                snapshots.push(snapshot.clone());
            }
        }
        for snapshot in &mut snapshots {
            snapshot
                .dependencies
                .retain(|(_, child)| !missing.contains(child));
            for (_, child) in &mut snapshot.dependencies {
                *child = new_index[*child];
            }
        }
        let direct = self
            .direct
            .iter()
            .filter_map(|direct| match direct.target {
                DirectTarget::Snapshot(index) if missing.contains(&index) => None,
                DirectTarget::Snapshot(index) => Some(DirectDependency {
                    target: DirectTarget::Snapshot(new_index[index]),
                    ..direct.clone()
                }),
                DirectTarget::Link(_) => Some(direct.clone()),
            })
            .collect();
        InstallPlan {
            snapshots,
            direct,
            skipped: self.skipped.clone(),
            workspace_projects: self.workspace_projects.clone(),
            hoisting: self.hoisting.clone(),
        }
    }
}

/// The root project's importer id.
pub const ROOT_IMPORTER: &str = ".";

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub production_only: bool,
    pub platform: Platform,
    pub virtual_store_dir_max_length: usize,
    /// `publicHoistPattern` and `hoistPattern` of pnpm-workspace.yaml.
    pub hoisting: HoistPatterns,
    /// `patchedDependencies` of pnpm-workspace.yaml: key -> patch file.
    pub patches: BTreeMap<String, String>,
}

/// Checks that the lockfile's importer matches `package.json` exactly (pnpm's frozen check):
/// same dependency names in each group with the same specifiers.
pub fn check_up_to_date(
    manifest: &Manifest,
    lockfile: &Lockfile,
    overrides: &Overrides,
    catalogs: &Catalogs,
) -> Result<(), InstallError> {
    check_overrides(lockfile, overrides)?;
    check_catalogs(lockfile, catalogs)?;
    check_importer(manifest, lockfile, ROOT_IMPORTER, overrides, catalogs)
}

/// Every catalog entry the lockfile resolved still has the same range (pnpm: "The current
/// catalogs configuration doesn't match the value found in the lockfile").
fn check_catalogs(lockfile: &Lockfile, catalogs: &Catalogs) -> Result<(), InstallError> {
    for (catalog, entries) in &lockfile.catalogs {
        for (name, locked) in entries {
            let range = catalogs
                .0
                .get(catalog)
                .and_then(|entries| entries.get(name));
            if range != Some(&locked.specifier) {
                return Err(InstallError::LockfileOutdated {
                    reason: format!(
                        "the `{catalog}` catalog entry for `{name}` is {} in pnpm-workspace.yaml but `{}` in the lockfile",
                        range.map_or_else(|| "missing".to_owned(), |range| format!("`{range}`")),
                        locked.specifier
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The lockfile was resolved with the configured overrides (pnpm compares the maps as written).
fn check_overrides(lockfile: &Lockfile, overrides: &Overrides) -> Result<(), InstallError> {
    if lockfile.overrides == overrides.pairs {
        return Ok(());
    }
    Err(InstallError::LockfileOutdated {
        reason: "the overrides in pnpm-workspace.yaml are not the ones in the lockfile".to_owned(),
    })
}

/// The lockfile was resolved with the configured `packageExtensions` (pnpm compares
/// checksums: "The current packageExtensionsChecksum configuration doesn't match the value
/// found in the lockfile").
pub fn check_package_extensions(
    lockfile: &Lockfile,
    extensions: &PackageExtensions,
) -> Result<(), InstallError> {
    if lockfile.package_extensions_checksum == extensions.checksum {
        return Ok(());
    }
    Err(InstallError::LockfileOutdated {
        reason: "the packageExtensions in pnpm-workspace.yaml are not the ones the lockfile was resolved with (packageExtensionsChecksum differs)".to_owned(),
    })
}

/// The frozen check for a workspace: the lockfile has exactly the workspace's projects as
/// importers, and each matches its `package.json`.
pub fn check_workspace_up_to_date(
    lockfile: &Lockfile,
    projects: &[(&str, &Manifest)],
    overrides: &Overrides,
    catalogs: &Catalogs,
) -> Result<(), InstallError> {
    check_overrides(lockfile, overrides)?;
    check_catalogs(lockfile, catalogs)?;
    for (id, manifest) in projects {
        if *id != ROOT_IMPORTER && !lockfile.importers.contains_key(*id) {
            return Err(InstallError::LockfileOutdated {
                reason: format!("workspace project `{id}` has no importer in the lockfile"),
            });
        }
        check_importer(manifest, lockfile, id, overrides, catalogs)?;
    }
    if let Some(id) = lockfile
        .importers
        .keys()
        .find(|id| !projects.iter().any(|(project, _)| project == id))
    {
        return Err(InstallError::LockfileOutdated {
            reason: format!("the lockfile has an importer `{id}` that is not a workspace project"),
        });
    }
    Ok(())
}

/// Every dependency of the project is in its importer with the same specifier (overridden, as
/// pnpm records it), and nothing else is.
fn check_importer(
    manifest: &Manifest,
    lockfile: &Lockfile,
    id: &str,
    overrides: &Overrides,
    catalogs: &Catalogs,
) -> Result<(), InstallError> {
    let empty = Importer::default();
    let importer = lockfile.importers.get(id).unwrap_or(&empty);
    let project = if id == ROOT_IMPORTER {
        String::new()
    } else {
        format!(" of workspace project `{id}`")
    };
    for (group, wanted) in manifest_groups(manifest) {
        let locked = importer.group(group);
        let wanted: BTreeMap<&str, std::borrow::Cow<'_, str>> = wanted
            .into_iter()
            .filter_map(|(name, spec)| Some((name, overrides.apply(None, name, spec)?)))
            .collect();
        for (name, specifier) in &wanted {
            match locked.get(*name) {
                None => {
                    return Err(InstallError::LockfileOutdated {
                        reason: format!(
                            "`{name}` ({}) is in package.json{project} but not in the lockfile",
                            group.lockfile_key()
                        ),
                    });
                }
                Some(entry) if entry.specifier != *specifier => {
                    return Err(InstallError::LockfileOutdated {
                        reason: format!(
                            "`{name}` ({}) is `{specifier}` in package.json{project} but `{}` in the lockfile",
                            group.lockfile_key(),
                            entry.specifier
                        ),
                    });
                }
                Some(_) => {}
            }
            // A catalog dependency needs its entry resolved in the lockfile (checked above).
            if let Some(entry) = catalogs.lookup(name, specifier) {
                let entry = entry.map_err(|why| InstallError::LockfileOutdated {
                    reason: format!("`{name}@{specifier}` in package.json{project}: {why}"),
                })?;
                if !lockfile
                    .catalogs
                    .get(&entry.catalog)
                    .is_some_and(|entries| entries.contains_key(*name))
                {
                    return Err(InstallError::LockfileOutdated {
                        reason: format!(
                            "the `{}` catalog entry for `{name}` is not in the lockfile",
                            entry.catalog
                        ),
                    });
                }
            }
        }
        if let Some(name) = locked
            .keys()
            .find(|name| !wanted.contains_key(name.as_str()))
        {
            return Err(InstallError::LockfileOutdated {
                reason: format!(
                    "`{name}` ({}) is in the lockfile but not in package.json{project}",
                    group.lockfile_key()
                ),
            });
        }
    }
    Ok(())
}

/// package.json groups as pnpm sees them: a name in `optionalDependencies` is optional only,
/// one in `dependencies` is not also a dev dependency, and a peer of the project that no group
/// has is a dependency with the peer's range (`autoInstallPeers`; optional peers too).
pub(crate) fn manifest_groups(
    manifest: &Manifest,
) -> Vec<(DependencyGroup, BTreeMap<&str, &String>)> {
    let optional: BTreeMap<&str, &String> = manifest
        .optional_dependencies
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let peers = manifest.peer_dependencies.iter().filter(|(name, _)| {
        !manifest.dependencies.contains_key(*name) && !manifest.dev_dependencies.contains_key(*name)
    });
    let production: BTreeMap<&str, &String> = manifest
        .dependencies
        .iter()
        .chain(peers)
        .filter(|(name, _)| !optional.contains_key(name.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let development: BTreeMap<&str, &String> = manifest
        .dev_dependencies
        .iter()
        .filter(|(name, _)| {
            !optional.contains_key(name.as_str()) && !production.contains_key(name.as_str())
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    vec![
        (DependencyGroup::Production, production),
        (DependencyGroup::Development, development),
        (DependencyGroup::Optional, optional),
    ]
}

impl Importer {
    /// The lockfile section of one dependency group.
    pub fn group(&self, group: DependencyGroup) -> &BTreeMap<String, ImporterDependency> {
        match group {
            DependencyGroup::Production => &self.dependencies,
            DependencyGroup::Development => &self.dev_dependencies,
            DependencyGroup::Optional => &self.optional_dependencies,
        }
    }

    /// The entry of the dependency `alias`, in whichever group has it.
    pub fn dependency(&self, alias: &str) -> Option<&ImporterDependency> {
        [
            &self.dependencies,
            &self.dev_dependencies,
            &self.optional_dependencies,
        ]
        .into_iter()
        .find_map(|group| group.get(alias))
    }

    pub fn group_mut(
        &mut self,
        group: DependencyGroup,
    ) -> &mut BTreeMap<String, ImporterDependency> {
        match group {
            DependencyGroup::Production => &mut self.dependencies,
            DependencyGroup::Development => &mut self.dev_dependencies,
            DependencyGroup::Optional => &mut self.optional_dependencies,
        }
    }
}

/// Builds the install plan: every snapshot reachable from the importers' (filtered) direct
/// dependencies, minus optional ones this platform cannot run.
pub fn plan(lockfile: &Lockfile, options: &PlanOptions) -> Result<InstallPlan, InstallError> {
    let empty = Importer::default();
    let mut importers: Vec<(&str, &Importer)> = lockfile
        .importers
        .iter()
        .map(|(id, importer)| (id.as_str(), importer))
        .collect();
    if !lockfile.importers.contains_key(ROOT_IMPORTER) {
        importers.insert(0, (ROOT_IMPORTER, &empty));
    }
    let mut builder = PlanBuilder {
        lockfile,
        options,
        plan: InstallPlan::default(),
        index: HashMap::new(),
    };

    let mut groups = vec![DependencyGroup::Production, DependencyGroup::Optional];
    if !options.production_only {
        groups.insert(1, DependencyGroup::Development);
    }
    for (id, importer) in importers {
        validate_importer_id(id)?;
        let needed_by = if id == ROOT_IMPORTER {
            "the project".to_owned()
        } else {
            format!("workspace project `{id}`")
        };
        for &group in &groups {
            for (alias, dependency) in importer.group(group) {
                validate_package_name(alias)?;
                let target = match reference_to_dep_path(alias, &dependency.version) {
                    None => DirectTarget::Link(
                        dependency.version.trim_start_matches("link:").to_owned(),
                    ),
                    Some(dep_path) => match builder.visit(&dep_path, &needed_by)? {
                        Some(index) => DirectTarget::Snapshot(index),
                        None => continue,
                    },
                };
                builder.plan.direct.push(DirectDependency {
                    importer: id.to_owned(),
                    alias: alias.clone(),
                    group,
                    target,
                });
            }
        }
    }
    builder.plan.hoisting = options.hoisting.clone();
    Ok(builder.plan)
}

/// An importer id is a relative path inside the workspace; anything else (absolute, `..`,
/// empty segments) could place links outside it.
fn validate_importer_id(id: &str) -> Result<(), InstallError> {
    let valid = id == ROOT_IMPORTER
        || (!id.starts_with('/')
            && id
                .split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != ".."));
    if valid {
        Ok(())
    } else {
        Err(InstallError::LockfileOutdated {
            reason: format!("importer `{id}` is not a path inside the workspace"),
        })
    }
}

struct PlanBuilder<'a> {
    lockfile: &'a Lockfile,
    options: &'a PlanOptions,
    plan: InstallPlan,
    /// depPath -> index in `plan.snapshots`, or `None` when skipped for the platform.
    index: HashMap<String, Option<usize>>,
}

impl PlanBuilder<'_> {
    /// Adds `dep_path` and everything it depends on (iteratively: graphs can be deep and cyclic).
    fn visit(&mut self, dep_path: &str, needed_by: &str) -> Result<Option<usize>, InstallError> {
        let root = self.add(dep_path, needed_by)?;
        let mut pending: Vec<usize> = root.into_iter().collect();
        while let Some(index) = pending.pop() {
            let dep_path = self.plan.snapshots[index].dep_path.clone();
            let snapshot = &self.lockfile.snapshots[&dep_path];
            let mut dependencies = Vec::new();
            let mut links = Vec::new();
            for (alias, reference) in snapshot
                .dependencies
                .iter()
                .chain(&snapshot.optional_dependencies)
            {
                validate_package_name(alias)?;
                let Some(child) = reference_to_dep_path(alias, reference) else {
                    if let Some(path) = reference.strip_prefix("link:") {
                        links.push((alias.clone(), path.to_owned()));
                    }
                    continue;
                };
                let known = self.index.contains_key(&child);
                if let Some(child_index) = self.add(&child, &dep_path)? {
                    if !known {
                        pending.push(child_index);
                    }
                    dependencies.push((alias.clone(), child_index));
                }
            }
            self.plan.snapshots[index].dependencies = dependencies;
            self.plan.snapshots[index].links = links;
        }
        Ok(root)
    }

    /// Registers one snapshot without its edges; `None` if skipped for the platform.
    fn add(&mut self, dep_path: &str, needed_by: &str) -> Result<Option<usize>, InstallError> {
        if let Some(known) = self.index.get(dep_path) {
            return Ok(*known);
        }
        let missing = |section| InstallError::LockfileMissingEntry {
            dep_path: dep_path.to_owned(),
            needed_by: needed_by.to_owned(),
            section,
        };
        let snapshot = self
            .lockfile
            .snapshots
            .get(dep_path)
            .ok_or_else(|| missing("snapshots"))?;
        let key = package_key(dep_path);
        let package = self
            .lockfile
            .packages
            .get(key)
            .ok_or_else(|| missing("packages"))?;
        let (key_name, key_version) =
            split_dep_path(key).ok_or_else(|| InstallError::UnsupportedReference {
                package: needed_by.to_owned(),
                reference: dep_path.to_owned(),
                why: "a depPath must look like name@version".to_owned(),
            })?;
        let name = package.name.clone().unwrap_or_else(|| key_name.to_owned());
        validate_package_name(&name)?;
        let unsupported = |why: String| InstallError::UnsupportedReference {
            package: name.clone(),
            reference: dep_path.to_owned(),
            why,
        };
        let git = package.resolution.git().map_err(unsupported)?;
        let directory = match (&package.resolution.kind, &package.resolution.directory) {
            (None, _) => None,
            (Some(kind), Some(directory)) if kind == "directory" => Some(directory.clone()),
            (Some(kind), _) if kind == "git" => None,
            (Some(kind), _) => {
                return Err(unsupported(match kind.as_str() {
                    "directory" => "a directory resolution needs its `directory`".to_owned(),
                    _ => format!("unknown resolution type `{kind}`"),
                }));
            }
        };
        let patch = match patch_hash(dep_path) {
            None => None,
            Some(hash) => {
                // As resolution matched it: by the depPath's version.
                let (_, path) =
                    crate::patch::matching_key(&self.options.patches, &name, key_version)
                        .map_err(unsupported)?
                        .ok_or_else(|| {
                            unsupported(
                                "it is patched, but pnpm-workspace.yaml has no \
                                 `patchedDependencies` entry for it"
                                    .to_owned(),
                            )
                        })?;
                Some(PatchPlan {
                    hash: hash.to_owned(),
                    path: path.clone(),
                })
            }
        };
        let supported = self.options.platform.supports(
            package.os.as_deref(),
            package.cpu.as_deref(),
            package.libc.as_deref(),
        );
        if !supported && snapshot.optional {
            self.index.insert(dep_path.to_owned(), None);
            self.plan.skipped.push(dep_path.to_owned());
            return Ok(None);
        }
        let index = self.plan.snapshots.len();
        self.plan.snapshots.push(SnapshotPlan {
            dep_path: dep_path.to_owned(),
            dir_name: dep_path_to_filename(dep_path, self.options.virtual_store_dir_max_length),
            name,
            version: package
                .version
                .clone()
                .unwrap_or_else(|| key_version.to_owned()),
            integrity: package.resolution.integrity.clone(),
            tarball: package.resolution.tarball.clone(),
            directory,
            git,
            dependencies: Vec::new(),
            links: Vec::new(),
            patch,
            has_bin: package.has_bin,
            optional: snapshot.optional,
            peer_names: package.peer_dependencies.keys().cloned().collect(),
        });
        self.index.insert(dep_path.to_owned(), Some(index));
        Ok(Some(index))
    }
}

/// The `patch_hash` a depPath names (`a@1.0.0(patch_hash=<hex>)(peer@2.0.0)`).
pub fn patch_hash(dep_path: &str) -> Option<&str> {
    let rest = &dep_path[dep_path.find("(patch_hash=")? + "(patch_hash=".len()..];
    rest.split_once(')').map(|(hash, _)| hash)
}

/// Rejects names that could escape `node_modules` or are not valid npm names, before any
/// filesystem call uses them.
pub fn validate_package_name(name: &str) -> Result<(), InstallError> {
    let invalid = |why| {
        Err(InstallError::InvalidPackageName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 214 {
        return invalid("a name must be 1 to 214 characters long");
    }
    let parts: Vec<&str> = match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, base)) => vec![scope, base],
            None => return invalid("a scoped name must look like @scope/name"),
        },
        None => vec![name],
    };
    for part in parts {
        if part.is_empty() || part.starts_with('.') || part.starts_with('_') && part == name {
            return invalid("a name part cannot be empty or start with `.` or `_`");
        }
        if part.chars().any(|c| {
            matches!(
                c,
                '/' | '\\' | '%' | ':' | '*' | '?' | '"' | '<' | '>' | '|'
            ) || c.is_control()
                || c.is_whitespace()
        }) {
            return invalid("a name cannot contain path separators, `%` or special characters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_id_version_is_the_depaths_without_its_peer_suffix() {
        let snapshot = |dep_path: &str, name: &str, version: &str| SnapshotPlan {
            dep_path: dep_path.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            dir_name: String::new(),
            integrity: None,
            tarball: None,
            directory: None,
            git: None,
            dependencies: Vec::new(),
            links: Vec::new(),
            patch: None,
            has_bin: false,
            optional: false,
            peer_names: Vec::new(),
        };
        let id =
            |dep_path, name, version| snapshot(dep_path, name, version).id_version().to_owned();
        assert_eq!(id("a@1.0.0(b@2.0.0)", "a", "1.0.0"), "1.0.0");
        assert_eq!(id("@s/a@1.0.0", "@s/a", "1.0.0"), "1.0.0");
        // The lockfile's `version:` of a git or tarball package is its package.json's.
        assert_eq!(
            id("m@git+https://h/r.git#abc(p@1.0.0)", "m", "1.2.0"),
            "git+https://h/r.git#abc"
        );
        assert_eq!(id("t@file:t.tgz", "t", "3.1.0"), "file:t.tgz");
    }

    const LOCKFILE: &str = r#"lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      a:
        specifier: ^1.0.0
        version: 1.0.0
      alias:
        specifier: npm:c@^3.0.0
        version: c@3.0.0
    devDependencies:
      d:
        specifier: 1.0.0
        version: 1.0.0
packages:
  a@1.0.0:
    resolution: {integrity: sha512-a}
  b@2.0.0:
    resolution: {integrity: sha512-b}
  c@3.0.0:
    resolution: {integrity: sha512-c}
    hasBin: true
  d@1.0.0:
    resolution: {integrity: sha512-d}
  win@1.0.0:
    resolution: {integrity: sha512-w}
    os: [win32]
snapshots:
  a@1.0.0:
    dependencies:
      b: 2.0.0
    optionalDependencies:
      win: 1.0.0
  b@2.0.0:
    dependencies:
      a: 1.0.0
  c@3.0.0: {}
  d@1.0.0: {}
  win@1.0.0:
    optional: true
"#;

    fn options(production_only: bool) -> PlanOptions {
        PlanOptions {
            production_only,
            platform: Platform {
                os: "linux".into(),
                cpu: "x64".into(),
                libc: Some("glibc".into()),
            },
            virtual_store_dir_max_length: 120,
            hoisting: Default::default(),
            patches: Default::default(),
        }
    }

    #[test]
    fn plans_cycles_aliases_and_skips_foreign_optional_packages() {
        let lockfile = Lockfile::parse(LOCKFILE, Path::new("pnpm-lock.yaml")).unwrap();
        let plan = plan(&lockfile, &options(false)).unwrap();
        let names: Vec<_> = plan.snapshots.iter().map(|s| s.dep_path.as_str()).collect();
        assert_eq!(names, ["a@1.0.0", "b@2.0.0", "c@3.0.0", "d@1.0.0"]);
        assert_eq!(plan.skipped, ["win@1.0.0"]);
        assert_eq!(plan.snapshots[0].dependencies, [("b".to_owned(), 1)]);
        assert_eq!(plan.snapshots[1].dependencies, [("a".to_owned(), 0)]);
        let alias = plan.direct.iter().find(|d| d.alias == "alias").unwrap();
        assert!(matches!(alias.target, DirectTarget::Snapshot(2)));

        let production = super::plan(&lockfile, &options(true)).unwrap();
        assert!(production.snapshots.iter().all(|s| s.name != "d"));
    }

    #[test]
    fn frozen_check_names_the_mismatching_dependency() {
        let lockfile = Lockfile::parse(LOCKFILE, Path::new("pnpm-lock.yaml")).unwrap();
        let mut manifest = Manifest::default();
        manifest.dependencies.insert("a".into(), "^1.0.0".into());
        manifest
            .dependencies
            .insert("alias".into(), "npm:c@^3.0.0".into());
        manifest.dev_dependencies.insert("d".into(), "1.0.0".into());
        check_up_to_date(
            &manifest,
            &lockfile,
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        manifest.dependencies.insert("a".into(), "^1.1.0".into());
        let error = check_up_to_date(
            &manifest,
            &lockfile,
            &Default::default(),
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("`a` (dependencies) is `^1.1.0` in package.json but `^1.0.0`"),
            "{error}"
        );
    }

    #[test]
    fn rejects_path_tricks_in_names() {
        for bad in [
            "..", "../x", "@s/..", "a/b", "%2e%2e", "@scope", ".hidden", "",
        ] {
            assert!(validate_package_name(bad).is_err(), "{bad}");
        }
        for good in ["lodash", "@babel/core", "JSONStream", "a.b-c_d"] {
            validate_package_name(good).unwrap();
        }
    }
}
