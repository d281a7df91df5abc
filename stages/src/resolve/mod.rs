//! Resolution without a (current) lockfile: package.json -> dependency graph -> peers ->
//! `pnpm-lock.yaml`, with every picked version announced as soon as it is known, so the
//! caller can start its download while resolution goes on.

pub mod early_link;
pub mod graph;
pub(crate) mod local;
mod lockfile_out;
pub mod metadata;
pub mod peers;
pub mod run;
mod workspace_link;

use std::collections::HashSet;
use std::sync::Arc;

use nodejs_semver::Range;

use crate::lockfile::Lockfile;
use crate::manifest::Manifest;
use crate::overrides::Overrides;
use crate::packument::Packument;
use crate::plan::DependencyGroup;

pub use graph::{Demand, Node, ResolveFailure, ResolveOptions};
use graph::{GraphBuilder, ProjectDependencies, ProjectDependency, satisfying_node};
use peers::resolve_peers;

/// Where packuments come from, and who hears about picked versions. `next` blocks until a
/// requested packument (or its failure) is available.
pub trait PackumentSource {
    fn request(&mut self, name: &str);
    fn next(&mut self) -> Option<(String, Result<Arc<Packument>, String>)>;
    /// Asks for `name` again from the registry itself (the copy given had no version for a
    /// range and came from the cache unrevalidated).
    fn refresh(&mut self, name: &str) {
        self.request(name);
    }
    /// A package version entered the graph (its tarball can be fetched now).
    fn picked(&mut self, _node: &Node) {}
    /// The bytes of a tarball at `url` (a dependency given as a URL off the registry).
    fn tarball(&mut self, url: &str) -> Result<Arc<Vec<u8>>, String> {
        Err(format!("{url} cannot be downloaded here"))
    }
    /// A git dependency, resolved to a commit and read from a checkout of it.
    fn git(&mut self, spec: &crate::git::GitSpec) -> Result<local::Local, String> {
        local::git(spec).map(|(local, _checkout)| local)
    }
}

pub struct Resolved {
    pub lockfile: Lockfile,
    pub warnings: Vec<String>,
    /// Packages in the graph (distinct name@version).
    pub packages: usize,
}

/// A project to resolve: the root (`.`) or a workspace project (its path from the root, as
/// the lockfile's importer id).
pub struct Project<'a> {
    pub id: String,
    pub manifest: &'a Manifest,
}

impl<'a> Project<'a> {
    /// The projects of a workspace (or the lone project): the root first.
    pub fn all(
        root: &'a Manifest,
        members: impl IntoIterator<Item = (String, &'a Manifest)>,
    ) -> Vec<Self> {
        std::iter::once(Project {
            id: ".".to_owned(),
            manifest: root,
        })
        .chain(
            members
                .into_iter()
                .map(|(id, manifest)| Project { id, manifest }),
        )
        .collect()
    }
}

/// Resolves `projects` (keeping versions of `old` where they still satisfy) into a lockfile
/// with one importer per project.
pub fn resolve(
    projects: &[Project<'_>],
    old: Option<&Lockfile>,
    options: &ResolveOptions,
    source: &mut dyn PackumentSource,
    default_tarball: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Resolved, ResolveFailure> {
    let mut builder = GraphBuilder::new(old, options.clone());
    let mut demands = Vec::new();
    let mut announced = 0;
    let inputs = project_inputs(projects, &builder, options, source)?;
    builder.start(inputs, &mut demands)?;
    let mut attempted_peers = HashSet::new();
    loop {
        loop {
            let mut exotic = Vec::new();
            for demand in demands.drain(..) {
                match demand {
                    Demand::Packument(name) => source.request(&name),
                    Demand::Refresh(name) => source.refresh(&name),
                    Demand::Exotic(spec) => exotic.push(spec),
                    Demand::Picked(_) => {}
                }
            }
            for node in &builder.nodes[announced..] {
                source.picked(node);
            }
            announced = builder.nodes.len();
            // Rare (`blockExoticSubdeps: false`): read here, while packuments keep arriving.
            if !exotic.is_empty() {
                for spec in exotic {
                    let result = read_exotic(&spec, source);
                    builder.on_exotic(&spec, result, &mut demands)?;
                }
                continue;
            }
            if builder.is_done() {
                break;
            }
            let (name, result) = source.next().ok_or_else(|| ResolveFailure {
                message: "resolution stopped: the packument source closed".to_owned(),
            })?;
            builder.on_packument(&name, result, &mut demands)?;
        }
        let direct: Vec<peers::ScopeEntry> = builder
            .direct
            .iter()
            .map(|d| (d.project, d.alias.clone(), d.node))
            .collect();
        let hidden: Vec<peers::ScopeEntry> = builder
            .hidden
            .iter()
            .map(|h| (h.project, h.name.clone(), h.node))
            .collect();
        let peers = resolve_peers(&builder.nodes, projects.len(), &direct, &hidden);
        // autoInstallPeers: required peers missing from a project's scope become its hidden
        // direct dependencies, then peers are resolved again.
        let mut added = false;
        for (project, missing) in peers.missing.iter().enumerate() {
            let hidden = missing_peers(&builder, project, missing, &mut attempted_peers);
            if !hidden.is_empty() {
                builder.add_hidden(project, hidden, &mut demands)?;
                added = true;
            }
        }
        if !added {
            check_patches_used(&builder.nodes, options)?;
            let lockfile = lockfile_out::build_lockfile(
                &builder.nodes,
                &builder.projects,
                &builder.direct,
                &peers,
                default_tarball,
            );
            let lockfile = Lockfile {
                overrides: options.overrides.pairs.clone(),
                package_extensions_checksum: options.package_extensions.checksum.clone(),
                patched_dependencies: options.patches.clone(),
                ..lockfile
            };
            return Ok(Resolved {
                lockfile,
                warnings: builder.warnings,
                packages: builder.nodes.len(),
            });
        }
    }
}

/// pnpm's ERR_PNPM_UNUSED_PATCH: every configured patch must apply to some package
/// ([`crate::patch::matching_key`], whose conflicts fail here too), unless
/// `allowUnusedPatches`.
fn check_patches_used(nodes: &[Node], options: &ResolveOptions) -> Result<(), ResolveFailure> {
    let patches = &options.patches;
    if patches.is_empty() {
        return Ok(());
    }
    let mut used = HashSet::new();
    for node in nodes {
        match crate::patch::matching_key(patches, &node.name, &node.version) {
            Ok(Some((key, _))) => {
                used.insert(key.as_str());
            }
            Ok(None) => {}
            Err(message) => return Err(ResolveFailure { message }),
        }
    }
    let unused: Vec<&str> = patches
        .keys()
        .map(String::as_str)
        .filter(|key| !used.contains(key))
        .collect();
    if unused.is_empty() || options.allow_unused_patches {
        return Ok(());
    }
    Err(ResolveFailure {
        message: format!(
            "these patches (`patchedDependencies`) match no package: {}; remove them, fix \
             their keys, or set `allowUnusedPatches: true` (pnpm fails too: \
             ERR_PNPM_UNUSED_PATCH)",
            unused.join(", ")
        ),
    })
}

/// A package's dependency on a tarball URL or git repository, downloaded or cloned.
fn read_exotic(spec: &str, source: &mut dyn PackumentSource) -> Result<local::Local, String> {
    if spec.starts_with("http:") || spec.starts_with("https:") {
        return local::remote(spec, &source.tarball(spec)?);
    }
    match crate::git::parse(spec) {
        Some(parsed) => source.git(&parsed?),
        None => Err("not a git repository flowpm can read".to_owned()),
    }
}

/// The auto-installed peers a project still misses, as `(name, ranges, who wants it)`: a
/// version already in the graph that satisfies every range is used, as pnpm does.
fn missing_peers(
    builder: &GraphBuilder<'_>,
    project: usize,
    missing: &std::collections::BTreeMap<String, Vec<(String, String)>>,
    attempted: &mut HashSet<(usize, String)>,
) -> Vec<(String, Vec<String>, String)> {
    let mut hidden = Vec::new();
    for (name, wanted) in missing {
        if !attempted.insert((project, name.clone())) {
            continue;
        }
        let ranges: Vec<Range> = wanted
            .iter()
            .filter_map(|(range, _)| Range::parse(range).ok())
            .collect();
        let ranges_text = match satisfying_node(&builder.nodes, name, &ranges) {
            Some(id) => vec![builder.nodes[id].version.clone()],
            None => wanted.iter().map(|(range, _)| range.clone()).collect(),
        };
        let who = wanted
            .iter()
            .map(|(range, by)| format!("{range} by {by}"))
            .collect::<Vec<_>>()
            .join(", ");
        hidden.push((name.clone(), ranges_text, who));
    }
    hidden
}

/// Each project's dependencies, overridden (the lockfile's importers record the overridden
/// specifiers, as pnpm's do), with `workspace:` ones pointed at their projects and `catalog:`
/// ones at their catalog entries.
fn project_inputs(
    projects: &[Project<'_>],
    builder: &GraphBuilder<'_>,
    options: &ResolveOptions,
    source: &mut dyn PackumentSource,
) -> Result<Vec<ProjectDependencies>, ResolveFailure> {
    projects
        .iter()
        .enumerate()
        .map(|(index, project)| {
            let dependencies = project_dependencies(project.manifest, &options.overrides)
                .into_iter()
                .map(|(group, alias, specifier)| {
                    let failure = |why: String| ResolveFailure {
                        message: format!(
                            "`{alias}@{specifier}` (in {}): {why}",
                            graph::manifest_path(&project.id)
                        ),
                    };
                    let catalog = options
                        .catalogs
                        .lookup(&alias, &specifier)
                        .transpose()
                        .map_err(failure)?;
                    let target = workspace_link::link_target(projects, index, &alias, &specifier)
                        .map_err(failure)?;
                    let local = match (&target, &catalog) {
                        (None, None) => local_dependency(&specifier, options, &project.id)
                            .or_else(|| {
                                remote_tarball(&specifier, builder, options, &project.id, &alias)
                                    .map(|url| local::remote(url, &source.tarball(url)?))
                            })
                            .or_else(|| {
                                let spec = crate::git::parse(&specifier)?;
                                let locked = builder.locks_direct(&project.id, &alias, &specifier);
                                (!locked).then(|| source.git(&spec?))
                            })
                            .transpose()
                            .map_err(failure)?,
                        _ => None,
                    };
                    Ok(ProjectDependency {
                        group,
                        alias,
                        specifier,
                        workspace: target,
                        catalog,
                        local,
                    })
                })
                .collect::<Result<_, ResolveFailure>>()?;
            Ok(ProjectDependencies {
                id: project.id.clone(),
                dependencies,
            })
        })
        .collect()
}

/// A `link:`, `file:` or path dependency of `project`, read from disk.
fn local_dependency(
    specifier: &str,
    options: &ResolveOptions,
    project: &str,
) -> Option<Result<local::Local, String>> {
    match &options.root {
        Some(root) => local::classify(specifier, root, project),
        None => local::is_local(specifier)
            .then(|| Err("local dependencies need the project's directory".to_owned())),
    }
}

/// A tarball URL off the configured registries that the old lockfile does not lock for this
/// dependency (a locked one keeps its locked integrity and manifest, without a download).
fn remote_tarball<'s>(
    specifier: &'s str,
    builder: &GraphBuilder<'_>,
    options: &ResolveOptions,
    project: &str,
    alias: &str,
) -> Option<&'s str> {
    let is_url = specifier.starts_with("https://") || specifier.starts_with("http://");
    if !is_url || graph::registry_tarball(specifier, &options.registries).is_some() {
        return None;
    }
    (!builder.locks_direct(project, alias, specifier)).then_some(specifier)
}

/// package.json's dependencies as `(group, alias, specifier)`, grouped as pnpm reads them and
/// overridden (an override of `-` drops one).
pub fn project_dependencies(
    manifest: &Manifest,
    overrides: &Overrides,
) -> Vec<(DependencyGroup, String, String)> {
    crate::plan::manifest_groups(manifest)
        .into_iter()
        .flat_map(|(group, dependencies)| {
            dependencies.into_iter().filter_map(move |(alias, spec)| {
                let spec = overrides.apply(None, alias, spec)?;
                Some((group, alias.to_owned(), spec.into_owned()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
