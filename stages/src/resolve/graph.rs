//! Version resolution: from package.json's ranges to one version per dependency edge, as pnpm
//! picks them (fixtures/projects/RESOLVE-ORACLE.md).
//!
//! [`GraphBuilder`] is a state machine fed with packuments as they arrive, in any order; it
//! never waits. It asks for packuments ([`Demand::Packument`]) and announces every version it
//! picks ([`Demand::Picked`]) so downloads start while the rest of the graph is still unknown.
//!
//! pnpm prefers versions already resolved *in scope*: a dependency of node N reuses a version
//! resolved for N's siblings or for any ancestor's siblings when it satisfies the range. So the
//! children of a group of siblings are only picked once the whole group is picked; packuments
//! for those children are requested as soon as each sibling is known, so the barrier costs no
//! network round trip.

use crate::fast_hash::{FastMap as HashMap, FastSet as HashSet};
use std::sync::Arc;

use nodejs_semver::{Range, Version};

use super::local::Local;
use crate::catalogs::{CatalogEntry, Catalogs};
use crate::lockfile::{Lockfile, package_key, reference_to_dep_path, split_dep_path};
use crate::overrides::Overrides;
use crate::package_extensions::PackageExtensions;
use crate::packument::{
    Packument, PickOptions, ReleaseAge, VersionManifest, VersionSpec, parse_version_spec,
    pick_version, pick_where,
};
use crate::plan::DependencyGroup;

pub type NodeId = usize;

/// One package version in the graph (shared by every place it is used).
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub manifest: Arc<VersionManifest>,
    /// Filled when the node is expanded; `None` for an optional dependency that failed.
    pub children: Vec<Option<Edge>>,
    /// A `file:` directory's `link:` dependencies: (alias, path from the lockfile's directory,
    /// optional).
    pub links: Vec<(String, String, bool)>,
    /// The hash of the patch applied to it (`patchedDependencies`).
    pub patch: Option<String>,
    pub expanded: bool,
    /// Who first needed it, for error messages.
    pub needed_by: Option<NodeId>,
}

impl Node {
    /// `name@version`, with `(patch_hash=…)` for a patched package: how every snapshot key
    /// of it begins, before any peer suffix (pnpm 12).
    pub fn base_key(&self) -> String {
        match &self.patch {
            Some(hash) => format!("{}@{}(patch_hash={hash})", self.name, self.version),
            None => format!("{}@{}", self.name, self.version),
        }
    }

    /// A `file:` directory's path (a package read from disk without a tarball).
    pub fn directory(&self) -> Option<&str> {
        self.version
            .strip_prefix("file:")
            .filter(|_| self.manifest.tarball.is_none())
    }
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub alias: String,
    pub node: NodeId,
    pub optional: bool,
}

/// A dependency of a project (an importer of the lockfile).
#[derive(Debug)]
pub struct DirectDependency {
    /// The project's index in the projects resolved.
    pub project: usize,
    pub group: DependencyGroup,
    pub alias: String,
    pub specifier: String,
    pub node: Option<NodeId>,
    /// `workspace:` dependencies: the workspace project linked to (no node).
    pub workspace: Option<usize>,
    /// `catalog:` dependencies: the entry whose range was resolved.
    pub catalog: Option<CatalogEntry>,
    /// `link:` dependencies outside the workspace: the path from the project (no node).
    pub link: Option<String>,
}

/// One project's dependencies, as given to [`GraphBuilder::start`].
pub struct ProjectDependencies {
    /// The importer id (`.` or the project's path from the workspace root).
    pub id: String,
    pub dependencies: Vec<ProjectDependency>,
}

/// A dependency as package.json gives it (overridden).
pub struct ProjectDependency {
    pub group: DependencyGroup,
    pub alias: String,
    /// As the importer records it (`catalog:` for a catalog entry).
    pub specifier: String,
    /// `workspace:` dependencies: the workspace project linked to.
    pub workspace: Option<usize>,
    /// `catalog:` dependencies: the entry, whose range is resolved instead of `specifier`.
    pub catalog: Option<CatalogEntry>,
    /// `link:`, `file:` and path dependencies, read from disk.
    pub local: Option<Local>,
}

/// An auto-installed peer: an invisible direct dependency of one project.
#[derive(Debug)]
pub struct HiddenPeer {
    pub project: usize,
    pub name: String,
    pub node: Option<NodeId>,
}

/// What the builder needs from its driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Demand {
    Packument(String),
    /// The packument again, from the registry: the cached copy is stale for some range.
    Refresh(String),
    Picked(NodeId),
    /// A tarball URL or git repository to read (download or clone) for a package's dependency;
    /// answered with [`GraphBuilder::on_exotic`].
    Exotic(String),
}

#[derive(Debug)]
pub struct ResolveFailure {
    pub message: String,
}

/// Knobs for picking.
#[derive(Debug, Default, Clone)]
pub struct ResolveOptions {
    /// `minimumReleaseAge` and its exclusions: versions too young are avoided.
    pub release_age: ReleaseAge,
    /// `flowpm update`: names whose locked versions are ignored (all when `update_all`).
    pub update: HashSet<String>,
    pub update_all: bool,
    /// `overrides` of pnpm-workspace.yaml (project dependencies are overridden by the caller).
    pub overrides: Overrides,
    /// `packageExtensions` of pnpm-workspace.yaml, applied to every package's manifest.
    pub package_extensions: PackageExtensions,
    /// The catalogs of pnpm-workspace.yaml, for `catalog:` dependencies.
    pub catalogs: Catalogs,
    /// The configured registries (ending in `/`): a tarball URL on one of them is that
    /// registry's version of the package, as pnpm resolves it.
    pub registries: Vec<String>,
    /// The workspace root, where `file:` and `link:` dependencies are read from (none in
    /// tests that resolve registry packages only).
    pub root: Option<std::path::PathBuf>,
    /// `blockExoticSubdeps: false` in pnpm-workspace.yaml: packages may depend on tarball URLs
    /// and git repositories.
    pub allow_exotic_subdeps: bool,
    /// `patchedDependencies`: `name@version` or `name` -> the sha256 of the patch.
    pub patches: std::collections::BTreeMap<String, String>,
    /// `allowUnusedPatches`: else a patch no package uses fails resolution, as in pnpm.
    pub allow_unused_patches: bool,
}

/// What a request resolves against.
#[derive(Debug, Clone)]
enum Wanted {
    Spec(VersionSpec),
    /// A version fixed by the old lockfile.
    Locked(String),
    /// An auto-installed peer: a version satisfying every requester's range.
    AllOf(Vec<String>),
    /// A package read from disk (`file:`): no packument, this exact manifest.
    Local {
        version: String,
        manifest: Arc<VersionManifest>,
    },
    /// A package's dependency on a tarball URL or git repository (`blockExoticSubdeps: false`):
    /// read by the driver ([`Demand::Exotic`]), keyed by the spec.
    Exotic(String),
}

#[derive(Debug, Clone)]
enum Slot {
    Direct(usize),
    Child(NodeId, usize),
    Hidden(usize),
}

#[derive(Debug, Clone)]
struct Request {
    slot: Slot,
    group: GroupId,
    alias: String,
    name: String,
    spec_text: String,
    wanted: Wanted,
    optional: bool,
}

type GroupId = usize;

/// Siblings resolved together; their children see `scope` plus the siblings' versions.
struct Group {
    outstanding: usize,
    members: Vec<NodeId>,
    scope: Arc<Scope>,
}

/// Versions visible to a group's requests: the versions of every ancestor level.
#[derive(Default)]
pub struct Scope {
    parent: Option<Arc<Scope>>,
    versions: HashMap<String, Vec<String>>,
}

impl Scope {
    fn preferred(&self, name: &str, into: &mut Vec<String>) {
        let mut scope = Some(self);
        while let Some(current) = scope {
            if let Some(versions) = current.versions.get(name) {
                into.extend(versions.iter().cloned());
            }
            scope = current.parent.as_deref();
        }
    }
}

pub struct GraphBuilder<'a> {
    pub nodes: Vec<Node>,
    pub direct: Vec<DirectDependency>,
    /// Auto-installed peers: invisible direct dependencies.
    pub hidden: Vec<HiddenPeer>,
    /// Importer ids, by project index.
    pub projects: Vec<String>,
    pub warnings: Vec<String>,
    old: Option<&'a Lockfile>,
    options: ResolveOptions,
    by_key: HashMap<(String, String), NodeId>,
    packuments: HashMap<String, PackumentState>,
    /// Packages' tarball-URL and git dependencies, by spec.
    exotics: HashMap<String, ExoticState>,
    groups: Vec<Group>,
    /// Per project, what its direct dependencies' children see (auto-installed peers too).
    root_scopes: Vec<Option<Arc<Scope>>>,
    /// The group of each project's direct dependencies: group -> project.
    root_groups: HashMap<GroupId, usize>,
    /// Old lockfile versions per name: preferred everywhere.
    locked_versions: HashMap<String, Vec<String>>,
    /// Packuments asked for again after an unrevalidated cached copy fell short.
    refreshed: HashSet<String>,
}

enum PackumentState {
    Loading(Vec<Request>),
    Ready(Arc<Packument>),
    Failed(String),
}

enum ExoticState {
    Loading(Vec<Request>),
    /// Its depPath version (the URL, `git+<repo>#<commit>`) and manifest.
    Ready(String, Arc<VersionManifest>),
    Failed(String),
}

impl<'a> GraphBuilder<'a> {
    pub fn new(old: Option<&'a Lockfile>, mut options: ResolveOptions) -> Self {
        let mut locked_versions: HashMap<String, Vec<String>> = HashMap::default();
        if let Some(old) = old {
            // A package whose own override changed is picked again as if updated.
            options.update.extend(crate::overrides::changed_names(
                &old.overrides,
                &options.overrides.pairs,
            ));
            for key in old.packages.keys() {
                if let Some((name, version)) = split_dep_path(key) {
                    locked_versions
                        .entry(name.to_owned())
                        .or_default()
                        .push(version.to_owned());
                }
            }
        }
        GraphBuilder {
            nodes: Vec::new(),
            direct: Vec::new(),
            hidden: Vec::new(),
            projects: Vec::new(),
            warnings: Vec::new(),
            old,
            options,
            by_key: HashMap::default(),
            packuments: HashMap::default(),
            exotics: HashMap::default(),
            groups: Vec::new(),
            root_scopes: Vec::new(),
            root_groups: HashMap::default(),
            locked_versions,
            refreshed: HashSet::default(),
        }
    }

    /// Starts with the projects' dependencies. Each project resolves in a scope of its own,
    /// as pnpm resolves each importer: a version picked for one project is not preferred in
    /// another (only the old lockfile's versions are preferred everywhere).
    pub fn start(
        &mut self,
        projects: Vec<ProjectDependencies>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let mut submissions = Vec::new();
        for (project, ProjectDependencies { id, dependencies }) in projects.into_iter().enumerate()
        {
            let group = self.new_group(Arc::new(Scope::default()));
            self.root_groups.insert(group, project);
            self.root_scopes.push(None);
            let mut requests = Vec::new();
            for dependency in dependencies {
                let ProjectDependency {
                    group: dep_group,
                    alias,
                    specifier,
                    workspace,
                    catalog,
                    local,
                } = dependency;
                let index = self.direct.len();
                // A catalog entry resolves its range; it stays locked while the range does.
                let locked = match &catalog {
                    Some(entry) if !self.locked_catalog_entry(entry, &alias) => None,
                    _ => self.locked_direct(&id, &alias, &specifier),
                };
                let written = specifier;
                let specifier = catalog
                    .as_ref()
                    .map_or_else(|| written.clone(), |entry| entry.range.clone());
                self.direct.push(DirectDependency {
                    project,
                    group: dep_group,
                    alias: alias.clone(),
                    specifier: written,
                    node: None,
                    workspace,
                    catalog,
                    link: None,
                });
                if workspace.is_some() {
                    continue;
                }
                let (name, wanted) = match (local, locked) {
                    (Some(Local::Link(path)), _) => {
                        self.direct[index].link = Some(path);
                        continue;
                    }
                    // A directory or tarball is read again: its manifest may have changed.
                    (Some(Local::Package { version, manifest }), _) => {
                        (manifest.name.clone(), Wanted::Local { version, manifest })
                    }
                    (None, Some(locked)) => locked,
                    (None, None) => parse_specifier(&alias, &specifier, &self.options.registries)
                        .map_err(|why| ResolveFailure {
                        message: format!(
                            "`{alias}@{specifier}` (in {}): {why}",
                            manifest_path(&id)
                        ),
                    })?,
                };
                requests.push(Request {
                    slot: Slot::Direct(index),
                    group,
                    alias,
                    name,
                    spec_text: specifier,
                    wanted,
                    optional: dep_group == DependencyGroup::Optional,
                });
            }
            self.projects.push(id);
            submissions.push((group, requests));
        }
        for (group, requests) in submissions {
            self.submit(group, requests, demands)?;
        }
        Ok(())
    }

    /// Adds auto-installed peers as invisible direct dependencies of `project`:
    /// `(name, ranges, who wants it)`; a peer no version satisfies is skipped with a warning.
    pub fn add_hidden(
        &mut self,
        project: usize,
        peers: Vec<(String, Vec<String>, String)>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        // Hidden peers are direct dependencies too: they see the project's versions.
        let scope = self.root_scopes[project].clone().unwrap_or_default();
        let group = self.new_group(scope);
        let mut requests = Vec::new();
        for (name, ranges, who) in peers {
            let index = self.hidden.len();
            self.hidden.push(HiddenPeer {
                project,
                name: name.clone(),
                node: None,
            });
            // An override making the peer an `npm:` alias installs the alias, as pnpm 12 does
            // (RESOLVE-ORACLE §9); other overrides are in the peer ranges already.
            let alias_target = ranges.first().and_then(|range| {
                let target = self.options.overrides.apply(None, &name, range)?;
                target.starts_with("npm:").then(|| target.into_owned())
            });
            let (real, wanted) = match alias_target
                .and_then(|target| parse_specifier(&name, &target, &self.options.registries).ok())
            {
                Some((real, wanted)) => (real, wanted),
                None => (name.clone(), Wanted::AllOf(ranges)),
            };
            requests.push(Request {
                slot: Slot::Hidden(index),
                group,
                alias: name,
                name: real,
                spec_text: who,
                wanted,
                optional: true,
            });
        }
        self.submit(group, requests, demands)
    }

    pub fn is_done(&self) -> bool {
        !self
            .packuments
            .values()
            .any(|state| matches!(state, PackumentState::Loading(_)))
            && !self
                .exotics
                .values()
                .any(|state| matches!(state, ExoticState::Loading(_)))
    }

    /// Feeds the package a [`Demand::Exotic`] named (or why it could not be read).
    pub fn on_exotic(
        &mut self,
        spec: &str,
        result: Result<Local, String>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let waiting = match self.exotics.get_mut(spec) {
            Some(ExoticState::Loading(waiting)) => std::mem::take(waiting),
            _ => Vec::new(),
        };
        let state = match result {
            Ok(Local::Package { version, manifest }) => ExoticState::Ready(version, manifest),
            Ok(Local::Link(_)) => ExoticState::Failed("a link is not a package".to_owned()),
            Err(message) => ExoticState::Failed(message),
        };
        self.exotics.insert(spec.to_owned(), state);
        for request in waiting {
            self.resolve(request, demands)?;
        }
        Ok(())
    }

    /// Feeds a packument (or why it could not be had) and continues as far as possible.
    pub fn on_packument(
        &mut self,
        name: &str,
        result: Result<Arc<Packument>, String>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let waiting = match self.packuments.get_mut(name) {
            Some(PackumentState::Loading(waiting)) => std::mem::take(waiting),
            _ => Vec::new(),
        };
        self.packuments.insert(
            name.to_owned(),
            match result {
                Ok(packument) => PackumentState::Ready(packument),
                Err(message) => PackumentState::Failed(message),
            },
        );
        for request in waiting {
            self.resolve(request, demands)?;
        }
        Ok(())
    }

    /// The packument of `name` if loaded (auto-installed peers are picked from it).
    pub fn packument(&self, name: &str) -> Option<&Arc<Packument>> {
        match self.packuments.get(name) {
            Some(PackumentState::Ready(packument)) => Some(packument),
            _ => None,
        }
    }

    /// `a@1 > b@2 > ...` from the project down to `node`, for error messages.
    pub fn chain(&self, mut node: Option<NodeId>) -> String {
        let mut names = Vec::new();
        while let Some(id) = node {
            if names.len() > 50 {
                break;
            }
            names.push(format!(
                "{}@{}",
                self.nodes[id].name, self.nodes[id].version
            ));
            node = self.nodes[id].needed_by;
        }
        names.push("the project".to_owned());
        names.reverse();
        names.join(" > ")
    }

    fn new_group(&mut self, scope: Arc<Scope>) -> GroupId {
        self.groups.push(Group {
            outstanding: 0,
            members: Vec::new(),
            scope,
        });
        self.groups.len() - 1
    }

    fn submit(
        &mut self,
        group: GroupId,
        requests: Vec<Request>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        self.groups[group].outstanding = requests.len();
        if requests.is_empty() {
            return self.group_done(group, demands);
        }
        for request in requests {
            self.resolve(request, demands)?;
        }
        Ok(())
    }

    /// Picks a version for one request now, or parks it until its packument arrives.
    fn resolve(
        &mut self,
        request: Request,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        if let Wanted::Local { version, manifest } = &request.wanted {
            let (version, manifest) = (version.clone(), manifest.clone());
            let node = self.node(&request.name, &version, manifest, &request, true);
            return self.settle(request, Some(node), demands);
        }
        if let Wanted::Exotic(spec) = &request.wanted {
            return match self.exotics.get_mut(spec) {
                // Named by its package.json, as a direct tarball or git dependency is.
                Some(ExoticState::Ready(version, manifest)) => {
                    let (version, manifest) = (version.clone(), manifest.clone());
                    let name = manifest.name.clone();
                    let node = self.node(&name, &version, manifest, &request, true);
                    self.settle(request, Some(node), demands)
                }
                Some(ExoticState::Loading(waiting)) => {
                    waiting.push(request);
                    Ok(())
                }
                Some(ExoticState::Failed(message)) => {
                    let message = message.clone();
                    self.fail(request, &message, demands)
                }
                None => {
                    demands.push(Demand::Exotic(spec.clone()));
                    let spec = spec.clone();
                    self.exotics
                        .insert(spec, ExoticState::Loading(vec![request]));
                    Ok(())
                }
            };
        }
        if let Wanted::Locked(version) = &request.wanted
            && let Some(node) = self.node_from_lockfile(&request.name, version, &request)
        {
            return self.settle(request, Some(node), demands);
        }
        // An auto-installed peer that a locked version satisfies takes it (as below, once the
        // packument is there) without asking the registry, as locked packages do.
        if let Wanted::AllOf(ranges) = &request.wanted
            && let Some(version) = self.locked_for_ranges(&request.name, ranges)
            && let Some(node) = self.node_from_lockfile(&request.name, &version, &request)
        {
            return self.settle(request, Some(node), demands);
        }
        let packument = match self.packuments.get_mut(&request.name) {
            Some(PackumentState::Ready(packument)) => packument.clone(),
            Some(PackumentState::Loading(waiting)) => {
                waiting.push(request);
                return Ok(());
            }
            Some(PackumentState::Failed(message)) => {
                let message = message.clone();
                return self.fail(request, &message, demands);
            }
            None => {
                demands.push(Demand::Packument(request.name.clone()));
                self.packuments
                    .insert(request.name.clone(), PackumentState::Loading(vec![request]));
                return Ok(());
            }
        };
        let spec = match &request.wanted {
            Wanted::Locked(version) => VersionSpec::Exact(version.clone()),
            Wanted::Spec(spec) => spec.clone(),
            Wanted::Local { .. } | Wanted::Exotic(_) => {
                unreachable!("local and exotic packages are settled above")
            }
            Wanted::AllOf(ranges) => {
                let locked = self.locked_for_ranges(&request.name, ranges);
                let ranges: Vec<Range> =
                    ranges.iter().filter_map(|r| Range::parse(r).ok()).collect();
                match locked
                    .or_else(|| pick_for_ranges(&packument, &ranges, &self.options.release_age))
                {
                    Some(version) => VersionSpec::Exact(version),
                    None => {
                        if self.refresh(&packument, &request, demands) {
                            return Ok(());
                        }
                        return self.fail(request, "no version satisfies every range", demands);
                    }
                }
            }
        };
        let mut preferred = Vec::new();
        self.groups[request.group]
            .scope
            .preferred(&request.name, &mut preferred);
        if !self.options.update_all
            && !self.options.update.contains(&request.name)
            && let Some(locked) = self.locked_versions.get(&request.name)
        {
            preferred.extend(locked.iter().cloned());
        }
        let picked = pick_version(
            &packument,
            &spec,
            &PickOptions {
                release_age: &self.options.release_age,
                preferred: &preferred,
            },
        );
        let Some(picked) = picked else {
            if self.refresh(&packument, &request, demands) {
                return Ok(());
            }
            let latest = packument
                .dist_tags
                .get("latest")
                .map(|v| format!(" (latest is {v})"))
                .unwrap_or_default();
            let message = format!(
                "no version of `{}` matches `{}`{latest}",
                request.name, request.spec_text
            );
            return self.fail(request, &message, demands);
        };
        let version = picked.version.to_string();
        let manifest = packument.manifest(picked);
        let node = self.node(&request.name, &version, manifest, &request, true);
        self.settle(request, Some(node), demands)
    }

    /// Parks `request` and asks for a fresh copy of a packument the cache served unrevalidated
    /// (`--prefer-offline`), once per name: the version it wants may be newer than the cache.
    fn refresh(
        &mut self,
        packument: &Packument,
        request: &Request,
        demands: &mut Vec<Demand>,
    ) -> bool {
        if !packument.unrevalidated || !self.refreshed.insert(request.name.clone()) {
            return false;
        }
        demands.push(Demand::Refresh(request.name.clone()));
        self.packuments.insert(
            request.name.clone(),
            PackumentState::Loading(vec![request.clone()]),
        );
        true
    }

    fn fail(
        &mut self,
        request: Request,
        message: &str,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let parent = match request.slot {
            Slot::Child(parent, _) => Some(parent),
            _ => None,
        };
        if let Slot::Hidden(_) = request.slot {
            self.warnings.push(format!(
                "peer dependency `{}` not installed: {message}; wanted {}",
                request.alias, request.spec_text
            ));
            return self.settle(request, None, demands);
        }
        if request.optional {
            self.warnings.push(format!(
                "skipping optional dependency `{}` ({}): {message}",
                request.alias,
                self.chain(parent)
            ));
            return self.settle(request, None, demands);
        }
        Err(ResolveFailure {
            message: format!(
                "{message} (needed by {} as `{}@{}`)",
                self.chain(parent),
                request.alias,
                request.spec_text
            ),
        })
    }

    /// Records the outcome of a request; when its group is complete, expands the group.
    fn settle(
        &mut self,
        request: Request,
        node: Option<NodeId>,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let edge = node.map(|node| Edge {
            alias: request.alias.clone(),
            node,
            optional: request.optional,
        });
        match request.slot {
            Slot::Direct(index) => self.direct[index].node = node,
            Slot::Hidden(index) => self.hidden[index].node = node,
            Slot::Child(parent, index) => self.nodes[parent].children[index] = edge,
        }
        if let Some(node) = node {
            if !self.nodes[node].expanded {
                // Children names are known now: fetch their packuments ahead of the barrier.
                for (alias, spec, _) in self.children_of(&self.nodes[node]) {
                    if let Ok((name, _)) = parse_specifier(&alias, &spec, &self.options.registries)
                    {
                        self.prefetch(&name, demands);
                    }
                }
            }
            self.groups[request.group].members.push(node);
        }
        let group = &mut self.groups[request.group];
        group.outstanding -= 1;
        if group.outstanding == 0 {
            self.group_done(request.group, demands)?;
        }
        Ok(())
    }

    fn prefetch(&mut self, name: &str, demands: &mut Vec<Demand>) {
        if !self.packuments.contains_key(name) {
            self.packuments
                .insert(name.to_owned(), PackumentState::Loading(Vec::new()));
            demands.push(Demand::Packument(name.to_owned()));
        }
    }

    /// All siblings are picked: expand each new one with a scope that includes them.
    fn group_done(
        &mut self,
        group: GroupId,
        demands: &mut Vec<Demand>,
    ) -> Result<(), ResolveFailure> {
        let members = std::mem::take(&mut self.groups[group].members);
        let mut versions: HashMap<String, Vec<String>> = HashMap::default();
        for &member in &members {
            let node = &self.nodes[member];
            versions
                .entry(node.name.clone())
                .or_default()
                .push(node.version.clone());
        }
        let scope = Arc::new(Scope {
            parent: Some(self.groups[group].scope.clone()),
            versions,
        });
        if let Some(&project) = self.root_groups.get(&group) {
            self.root_scopes[project] = Some(scope.clone());
        }
        for member in members {
            if self.nodes[member].expanded {
                continue;
            }
            self.nodes[member].expanded = true;
            let (requests, links) = self.child_requests_of(member)?;
            let child_group = self.new_group(scope.clone());
            self.nodes[member].children = vec![None; requests.len()];
            self.nodes[member].links = links;
            let requests = requests
                .into_iter()
                .enumerate()
                .map(
                    |(index, (alias, name, spec_text, wanted, optional))| Request {
                        slot: Slot::Child(member, index),
                        group: child_group,
                        alias,
                        name,
                        spec_text,
                        wanted,
                        optional,
                    },
                )
                .collect();
            self.submit(child_group, requests, demands)?;
        }
        Ok(())
    }

    /// A node's dependencies to resolve, and its `link:` dependencies (of a `file:` directory).
    #[allow(clippy::type_complexity)]
    fn child_requests_of(
        &mut self,
        id: NodeId,
    ) -> Result<
        (
            Vec<(String, String, String, Wanted, bool)>,
            Vec<(String, String, bool)>,
        ),
        ResolveFailure,
    > {
        let node = &self.nodes[id];
        if let Some(locked) = self.locked_children(node) {
            return Ok((locked, Vec::new()));
        }
        let mut requests = Vec::new();
        let mut links = Vec::new();
        for (alias, spec, optional) in self.children_of(node) {
            let why = match parse_specifier(&alias, &spec, &self.options.registries) {
                Ok((name, wanted)) => {
                    requests.push((alias, name, spec, wanted, optional));
                    continue;
                }
                Err(why) => why,
            };
            // A `file:` package's own local dependencies, from its directory, or for a
            // tarball from the directory of the project that depends on it (pnpm 12).
            if let (Some(Subdependency::Local), Some(base)) =
                (subdependency_kind(&spec), self.local_base(id))
            {
                let local = self.local_child(base, &spec);
                match local {
                    Ok(Local::Package { version, manifest }) => {
                        let name = manifest.name.clone();
                        let wanted = Wanted::Local { version, manifest };
                        requests.push((alias, name, spec, wanted, optional));
                    }
                    Ok(Local::Link(path)) => links.push((alias, path, optional)),
                    Err(why) if optional => {
                        let chain = self.chain(Some(id));
                        self.warnings.push(format!(
                            "skipping optional dependency `{alias}` ({chain}): {why}"
                        ));
                    }
                    Err(why) => {
                        return Err(ResolveFailure {
                            message: format!(
                                "`{alias}@{spec}` (needed by {}): {why}",
                                self.chain(Some(id))
                            ),
                        });
                    }
                }
                continue;
            }
            // pnpm 12 refuses these even as optional dependencies (observed).
            let refused = match subdependency_kind(&spec) {
                Some(Subdependency::Local) if !node.version.starts_with("file:") => Some(format!(
                    "a local dependency is not allowed in the non-local package `{}@{}` \
                     (pnpm refuses it too: ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED)",
                    node.name, node.version
                )),
                Some(Subdependency::Exotic { via, target }) => {
                    if self.options.allow_exotic_subdeps {
                        let wanted = Wanted::Exotic(target.to_owned());
                        requests.push((alias.clone(), alias, spec, wanted, optional));
                        continue;
                    }
                    Some(format!(
                        "an exotic dependency (resolved via {via}) is not allowed in \
                         subdependencies while `blockExoticSubdeps` is on, pnpm 12's default \
                         (pnpm refuses it too: ERR_PNPM_EXOTIC_SUBDEP)"
                    ))
                }
                _ => None,
            };
            if optional && refused.is_none() {
                // An optional dependency flowpm cannot resolve is skipped, as pnpm does.
                continue;
            }
            return Err(ResolveFailure {
                message: format!(
                    "`{alias}@{spec}` (needed by {}): {}",
                    self.chain(Some(id)),
                    refused.unwrap_or(why)
                ),
            });
        }
        Ok((requests, links))
    }

    /// Where the local dependencies of a `file:` package are read from, as a path from the
    /// root: a directory's own path; for a tarball, the directory of the project whose
    /// dependency brought it in (observed: `../x` in a tarball that `packages/p` depends on
    /// is `packages/x`). `None` for other packages.
    fn local_base(&self, id: NodeId) -> Option<&str> {
        let node = &self.nodes[id];
        if let Some(directory) = node.directory() {
            return Some(directory);
        }
        if !node.version.starts_with("file:") {
            return None;
        }
        let mut top = id;
        while let Some(parent) = self.nodes[top].needed_by {
            top = parent;
        }
        let direct = self.direct.iter().find(|d| d.node == Some(top))?;
        self.projects.get(direct.project).map(String::as_str)
    }

    /// A local dependency read relative to `directory` (a path from the workspace root); a
    /// `link:` becomes a path from the root, as pnpm writes it.
    fn local_child(&self, directory: &str, spec: &str) -> Result<Local, String> {
        let root = self
            .options
            .root
            .as_deref()
            .ok_or("local dependencies need the project's directory")?;
        let local = super::local::classify(spec, root, directory)
            .unwrap_or_else(|| Err("not a local path".to_owned()))?;
        Ok(match local {
            Local::Link(path) => {
                let target = crate::link::normalize(&root.join(directory).join(path));
                let relative = crate::link::relative_path(&crate::link::normalize(root), &target);
                Local::Link(relative.to_string_lossy().into_owned())
            }
            package => package,
        })
    }

    /// A package's dependencies as `(alias, spec, optional)`, overridden.
    fn children_of(&self, node: &Node) -> Vec<(String, String, bool)> {
        let mut children = child_requests(&node.manifest);
        if self.options.overrides.is_empty() {
            return children;
        }
        let parent = Some((node.name.as_str(), node.version.as_str()));
        children.retain_mut(|(alias, spec, _)| {
            match self.options.overrides.apply(parent, alias, spec) {
                Some(std::borrow::Cow::Owned(overridden)) => *spec = overridden,
                Some(std::borrow::Cow::Borrowed(_)) => {}
                None => return false,
            }
            true
        });
        children
    }

    fn node(
        &mut self,
        name: &str,
        version: &str,
        manifest: Arc<VersionManifest>,
        request: &Request,
        extend: bool,
    ) -> NodeId {
        let key = (name.to_owned(), version.to_owned());
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        // A manifest read from a packument or from disk (`extend`) gets what `packageExtensions`
        // and the compatibility database add; one rebuilt from the old lockfile has it already.
        let extended = extend
            .then(|| self.options.package_extensions.extend(&manifest))
            .flatten();
        let manifest = extended.map_or(manifest, Arc::new);
        let manifest = match extend {
            true => self.override_peers(name, version, manifest),
            false => manifest,
        };
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_owned(),
            version: version.to_owned(),
            manifest,
            children: Vec::new(),
            links: Vec::new(),
            patch: self.patch_of(name, version),
            expanded: false,
            needed_by: match request.slot {
                Slot::Child(parent, _) => Some(parent),
                _ => None,
            },
        });
        self.by_key.insert(key, id);
        id
    }

    /// The package's peer ranges as `overrides` rewrite them (pnpm 12, RESOLVE-ORACLE §9): a
    /// rule for the peer's name (under this parent, or for a range the peer's covers) replaces
    /// the range, `-` drops the peer; an `npm:` alias leaves the range as it is.
    fn override_peers(
        &self,
        name: &str,
        version: &str,
        manifest: Arc<VersionManifest>,
    ) -> Arc<VersionManifest> {
        if self.options.overrides.is_empty() || manifest.peer_dependencies.is_empty() {
            return manifest;
        }
        let overrides = &self.options.overrides;
        let parent = Some((name, version));
        let changed = manifest.peer_dependencies.iter().any(|(peer, range)| {
            match overrides.apply(parent, peer, range) {
                None => true,
                Some(new) => *new != **range && !new.starts_with("npm:"),
            }
        });
        if !changed {
            return manifest;
        }
        let mut rewritten = (*manifest).clone();
        rewritten.peer_dependencies.retain_mut(|(peer, range)| {
            let new = overrides
                .apply(parent, peer, range)
                .map(std::borrow::Cow::into_owned);
            match new {
                None => false,
                Some(new) => {
                    if !new.starts_with("npm:") {
                        *range = new;
                    }
                    true
                }
            }
        });
        let peers = &rewritten.peer_dependencies;
        rewritten
            .optional_peers
            .retain(|optional| peers.iter().any(|(peer, _)| peer == optional));
        Arc::new(rewritten)
    }

    /// The hash of the patch for `name@version` ([`crate::patch::matching_key`]; a conflict
    /// fails resolution once the graph is built).
    fn patch_of(&self, name: &str, version: &str) -> Option<String> {
        if self.options.patches.is_empty() {
            return None;
        }
        let found = crate::patch::matching_key(&self.options.patches, name, version);
        found.ok().flatten().map(|(_, hash)| hash.clone())
    }

    // --- the old lockfile ---------------------------------------------------------------

    /// Whether `name`'s locked versions (and locked subtrees) are kept. Not when the overrides
    /// or the package extensions changed: any subtree may be affected, so everything is picked
    /// again (the old versions stay preferred, but for the packages
    /// [`crate::overrides::changed_names`] gives), as pnpm does.
    fn keeps_locked(&self, name: &str) -> bool {
        self.old.is_some_and(|old| {
            old.overrides == self.options.overrides.pairs
                && old.package_extensions_checksum == self.options.package_extensions.checksum
        }) && !self.options.update_all
            && !self.options.update.contains(name)
    }

    /// True when `flowpm update` names a dependency of this locked package: the package then
    /// comes from its packument, so that dependency is picked again from its range.
    fn updates_a_child(&self, name: &str, version: &str) -> bool {
        if self.options.update.is_empty() {
            return false;
        }
        let Some(old) = self.old else {
            return false;
        };
        let key = format!("{name}@{version}");
        old.snapshots
            .range(key.clone()..)
            .take_while(|(k, _)| package_key(k) == key)
            .any(|(_, snapshot)| {
                snapshot
                    .dependencies
                    .iter()
                    .chain(&snapshot.optional_dependencies)
                    .filter_map(|(alias, reference)| reference_to_dep_path(alias, reference))
                    .any(|dep_path| {
                        split_dep_path(package_key(&dep_path))
                            .is_some_and(|(child, _)| self.options.update.contains(child))
                    })
            })
    }

    /// Whether the old lockfile resolved this catalog entry from the same range.
    fn locked_catalog_entry(&self, entry: &CatalogEntry, alias: &str) -> bool {
        self.old.is_some_and(|old| {
            old.catalogs
                .get(&entry.catalog)
                .and_then(|entries| entries.get(alias))
                .is_some_and(|locked| locked.specifier == entry.range)
        })
    }

    /// Whether the old lockfile locks `alias` of `project` at this very specifier and the graph
    /// keeps that lock: a tarball URL or git dependency locked there is then taken from the
    /// lockfile without a download or a clone.
    pub(super) fn locks_direct(&self, project: &str, alias: &str, specifier: &str) -> bool {
        self.locked_direct(project, alias, specifier).is_some()
    }

    /// A direct dependency whose specifier did not change keeps its locked version.
    fn locked_direct(
        &self,
        project: &str,
        alias: &str,
        specifier: &str,
    ) -> Option<(String, Wanted)> {
        let entry = self.old?.importers.get(project)?.dependency(alias)?;
        if entry.specifier != specifier {
            return None;
        }
        let dep_path = reference_to_dep_path(alias, &entry.version)?;
        let (name, version) = split_dep_path(package_key(&dep_path))?;
        self.keeps_locked(name)
            .then(|| (name.to_owned(), Wanted::Locked(version.to_owned())))
    }

    /// The highest locked version of `name` satisfying every range (an auto-installed peer
    /// keeps it), unless `name` is being updated.
    fn locked_for_ranges(&self, name: &str, ranges: &[String]) -> Option<String> {
        if self.options.update_all || self.options.update.contains(name) {
            return None;
        }
        let ranges: Vec<Range> = ranges.iter().filter_map(|r| Range::parse(r).ok()).collect();
        self.locked_versions
            .get(name)?
            .iter()
            .filter_map(|v| Version::parse(v).ok())
            .filter(|v| ranges.iter().all(|range| range.satisfies(v)))
            .max()
            .map(|v| v.to_string())
    }

    /// A node known to the old lockfile keeps its locked children (pnpm keeps whole subtrees).
    #[allow(clippy::type_complexity)]
    fn locked_children(&self, node: &Node) -> Option<Vec<(String, String, String, Wanted, bool)>> {
        // A package from disk takes its dependencies from its manifest as it is now.
        if node.version.starts_with("file:") {
            return None;
        }
        if !self.keeps_locked(&node.name) || self.updates_a_child(&node.name, &node.version) {
            return None;
        }
        let old = self.old?;
        let key = format!("{}@{}", node.name, node.version);
        let package = old.packages.get(&key)?;
        // Any peer variant carries the same real dependencies.
        let snapshot = old
            .snapshots
            .range(key.clone()..)
            .take_while(|(k, _)| package_key(k) == key)
            .map(|(_, snapshot)| snapshot)
            .next()?;
        let mut requests = Vec::new();
        let groups = [
            (&snapshot.dependencies, false),
            (&snapshot.optional_dependencies, true),
        ];
        for (dependencies, optional) in groups {
            for (alias, reference) in dependencies {
                if package.peer_dependencies.contains_key(alias) {
                    continue;
                }
                let dep_path = reference_to_dep_path(alias, reference)?;
                let (name, version) = split_dep_path(package_key(&dep_path))?;
                requests.push((
                    alias.clone(),
                    name.to_owned(),
                    version.to_owned(),
                    Wanted::Locked(version.to_owned()),
                    optional,
                ));
            }
        }
        Some(requests)
    }

    /// Builds a node for `name@version` from the old lockfile's `packages` entry, with no
    /// packument, if the lockfile has it (and the name is not being updated).
    fn node_from_lockfile(
        &mut self,
        name: &str,
        version: &str,
        request: &Request,
    ) -> Option<NodeId> {
        if let Some(&id) = self.by_key.get(&(name.to_owned(), version.to_owned())) {
            return Some(id);
        }
        if !self.keeps_locked(name) || self.updates_a_child(name, version) {
            return None;
        }
        let key = format!("{name}@{version}");
        let entry = self.old?.packages.get(&key)?;
        let manifest = VersionManifest {
            name: name.to_owned(),
            // A tarball's key has its URL; the package's own version is `version:`.
            version: entry.version.clone().unwrap_or_else(|| version.to_owned()),
            peer_dependencies: entry
                .peer_dependencies
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            optional_peers: entry
                .peer_dependencies_meta
                .iter()
                .filter(|(_, meta)| meta.optional)
                .map(|(k, _)| k.clone())
                .collect(),
            tarball: entry.resolution.tarball.clone(),
            integrity: entry.resolution.integrity.clone(),
            engines: entry
                .engines
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            os: entry.os.clone(),
            cpu: entry.cpu.clone(),
            libc: entry.libc.clone(),
            deprecated: entry.deprecated.clone(),
            has_bin: entry.has_bin,
            bundled_dependencies: match &entry.bundled_dependencies {
                Some(crate::lockfile::BundledDependencies::Names(names)) => names.clone(),
                _ => Vec::new(),
            },
            // An unusable one is reported by the install plan, which reads the same entry.
            git: entry.resolution.git().ok().flatten(),
            ..VersionManifest::default()
        };
        Some(self.node(name, version, Arc::new(manifest), request, false))
    }
}

/// A manifest's dependencies as `(alias, spec, optional)`: optional ones win over regular ones
/// of the same name (npm publishes them in both maps), bundled ones are inside the tarball.
pub fn child_requests(manifest: &VersionManifest) -> Vec<(String, String, bool)> {
    let optional: HashSet<&str> = manifest
        .optional_dependencies
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let bundled: HashSet<&str> = manifest
        .bundled_dependencies
        .iter()
        .map(String::as_str)
        .collect();
    let mut seen = HashSet::default();
    let mut requests = Vec::new();
    for (alias, spec) in &manifest.dependencies {
        if optional.contains(alias.as_str()) || bundled.contains(alias.as_str()) {
            continue;
        }
        if seen.insert(alias.clone()) {
            requests.push((alias.clone(), spec.clone(), false));
        }
    }
    for (alias, spec) in &manifest.optional_dependencies {
        if bundled.contains(alias.as_str()) {
            continue;
        }
        if seen.insert(alias.clone()) {
            requests.push((alias.clone(), spec.clone(), true));
        }
    }
    requests
}

/// Where a project's dependencies are declared, for messages.
pub(super) fn manifest_path(project: &str) -> String {
    if project == "." {
        "package.json".to_owned()
    } else {
        format!("{project}/package.json")
    }
}

/// `^1.0.0`, `latest`, `npm:real@^2`, a tarball URL of a configured registry -> (package
/// name, what to pick).
fn parse_specifier(
    alias: &str,
    specifier: &str,
    registries: &[String],
) -> Result<(String, Wanted), String> {
    if let Some((name, version)) = registry_tarball(specifier, registries) {
        crate::plan::validate_package_name(&name).map_err(|error| error.to_string())?;
        let spec = parse_version_spec(&version)
            .ok_or_else(|| format!("`{version}` is not a valid version"))?;
        return Ok((name, Wanted::Spec(spec)));
    }
    let (name, spec) = match specifier.strip_prefix("npm:") {
        Some(target) => {
            let at = target
                .get(1..)
                .and_then(|rest| rest.find('@'))
                .map(|at| at + 1);
            match at {
                Some(at) => (target[..at].to_owned(), &target[at + 1..]),
                None => (target.to_owned(), "latest"),
            }
        }
        None => (alias.to_owned(), specifier),
    };
    crate::plan::validate_package_name(&name).map_err(|error| error.to_string())?;
    let unsupported = [
        "workspace:",
        "file:",
        "link:",
        "git+",
        "git:",
        "github:",
        "http:",
        "https:",
        "catalog:",
    ];
    if let Some(protocol) = unsupported.iter().find(|p| spec.starts_with(**p)) {
        return Err(format!(
            "`{protocol}` dependencies are not supported yet (registry versions, ranges, tags and `npm:` aliases are)"
        ));
    }
    if spec.contains('/') && !spec.contains(' ') {
        return Err("git/GitHub dependencies are not supported yet".to_owned());
    }
    let spec = parse_version_spec(spec)
        .ok_or_else(|| format!("`{spec}` is not a valid version range or tag"))?;
    Ok((name, Wanted::Spec(spec)))
}

/// A package's dependency that is no registry version, as pnpm 12 tells them apart.
enum Subdependency<'s> {
    /// `file:`, `link:`, a path, `git+file:`: refused outside a local package
    /// (ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED).
    Local,
    /// A tarball URL or git repository (`via` is pnpm's word for it), `target` the spec without
    /// an `npm:` alias: refused under `blockExoticSubdeps` (its default,
    /// ERR_PNPM_EXOTIC_SUBDEP), resolved without it.
    Exotic { via: &'static str, target: &'s str },
}

fn subdependency_kind(spec: &str) -> Option<Subdependency<'_>> {
    // An alias's target: `npm:<name>@<spec>`.
    let spec = match spec.strip_prefix("npm:") {
        Some(target) => &target[target.get(1..)?.find('@')? + 2..],
        None => spec,
    };
    let local = ["file:", "link:", "git+file:", "./", "../", "/", "~/"]
        .iter()
        .any(|prefix| spec.starts_with(prefix));
    if local {
        return Some(Subdependency::Local);
    }
    let via = if spec.starts_with("http:") || spec.starts_with("https:") {
        "url"
    } else if ["git+", "git:", "github:", "gitlab:", "bitbucket:", "ssh:"]
        .iter()
        .any(|prefix| spec.starts_with(prefix))
        || spec.split_once('/').is_some_and(|(owner, _)| {
            // `owner/repo`: not a scoped name, a protocol (`jsr:`, `workspace:`) or a range.
            !owner.is_empty() && !owner.contains([':', '@', ' '])
        })
    {
        "git"
    } else {
        return None;
    };
    Some(Subdependency::Exotic { via, target: spec })
}

/// `<registry><name>/-/<basename>-<version>.tgz` on one of `registries` -> (name, version).
pub(super) fn registry_tarball(url: &str, registries: &[String]) -> Option<(String, String)> {
    let path = registries
        .iter()
        .find_map(|registry| url.strip_prefix(registry.as_str()))?;
    let (name, file) = path.split_once("/-/")?;
    let basename = name.rsplit('/').next()?;
    let version = file
        .strip_prefix(basename)?
        .strip_prefix('-')?
        .strip_suffix(".tgz")?;
    Version::parse(version).ok()?;
    Some((name.to_owned(), version.to_owned()))
}

/// For auto-installed peers: a version already in the graph that satisfies every range.
pub fn satisfying_node(nodes: &[Node], name: &str, ranges: &[Range]) -> Option<NodeId> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.name == name)
        .filter_map(|(id, node)| Some((id, Version::parse(&node.version).ok()?)))
        .filter(|(_, version)| ranges.iter().all(|range| range.satisfies(version)))
        .max_by(|a, b| a.1.cmp(&b.1))
        .map(|(id, _)| id)
}

/// For auto-installed peers: the version pnpm would pick for all ranges at once.
pub fn pick_for_ranges(
    packument: &Packument,
    ranges: &[Range],
    release_age: &ReleaseAge,
) -> Option<String> {
    pick_where(packument, release_age, |version| {
        ranges.iter().all(|range| range.satisfies(version))
    })
    .map(|picked| picked.version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_tarball_urls_name_a_version() {
        let registries = [
            "https://r.example/npm/".to_owned(),
            "https://s.example/".to_owned(),
        ];
        let parsed = |url: &str| registry_tarball(url, &registries);
        assert_eq!(
            parsed("https://r.example/npm/left-pad/-/left-pad-1.3.0.tgz"),
            Some(("left-pad".to_owned(), "1.3.0".to_owned()))
        );
        assert_eq!(
            parsed("https://s.example/@scope/name/-/name-2.0.0-beta.1.tgz"),
            Some(("@scope/name".to_owned(), "2.0.0-beta.1".to_owned()))
        );
        for other in [
            "https://elsewhere.example/left-pad/-/left-pad-1.3.0.tgz",
            "https://r.example/npm/left-pad/-/other-1.3.0.tgz",
            "https://r.example/npm/left-pad/-/left-pad-latest.tgz",
            "https://r.example/npm/left-pad/left-pad-1.3.0.tgz",
        ] {
            assert_eq!(parsed(other), None, "{other}");
        }
    }
}
