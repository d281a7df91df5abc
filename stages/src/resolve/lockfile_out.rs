//! The resolved graph as a `pnpm-lock.yaml` v9 model ([`crate::lockfile::Lockfile`]).

use std::collections::{BTreeMap, HashSet};

use crate::lockfile::{
    BundledDependencies, Importer, ImporterDependency, Lockfile, LockfileSettings, LockfileVersion,
    PackageEntry, PeerDependencyMeta, Resolution, SnapshotEntry,
};

use super::graph::{DirectDependency, Node};
use super::peers::PeerResolution;
use super::workspace_link::relative_link;

/// `projects` are the importer ids; `default_tarball(name, version)` is the URL the registry
/// layout implies (pnpm writes `resolution.tarball` only when the real URL differs from it).
pub fn build_lockfile(
    nodes: &[Node],
    projects: &[String],
    direct: &[DirectDependency],
    peers: &PeerResolution,
    default_tarball: &dyn Fn(&str, &str) -> Option<String>,
) -> Lockfile {
    // Every project has an importer, empty ones too (pnpm writes `packages/c: {}`).
    let mut importers: BTreeMap<String, Importer> = projects
        .iter()
        .map(|id| (id.clone(), Importer::default()))
        .collect();
    let mut catalogs: BTreeMap<String, BTreeMap<String, ImporterDependency>> = BTreeMap::new();
    for (dependency, key) in direct.iter().zip(&peers.direct) {
        let id = &projects[dependency.project];
        let version = match (dependency.workspace, &dependency.link, dependency.node, key) {
            (Some(target), ..) => format!("link:{}", relative_link(id, &projects[target])),
            (None, Some(path), ..) => format!("link:{path}"),
            (None, None, Some(node), Some(key)) => {
                reference(&dependency.alias, &nodes[node].name, key)
            }
            _ => continue,
        };
        if let (Some(entry), Some(node)) = (&dependency.catalog, dependency.node) {
            // The bare version (no alias, no peer suffix); the first project to use it wins.
            catalogs
                .entry(entry.catalog.clone())
                .or_default()
                .entry(dependency.alias.clone())
                .or_insert(ImporterDependency {
                    specifier: entry.range.clone(),
                    version: nodes[node].version.clone(),
                });
        }
        importers
            .get_mut(id)
            .expect("every project has an importer")
            .group_mut(dependency.group)
            .insert(
                dependency.alias.clone(),
                ImporterDependency {
                    specifier: dependency.specifier.clone(),
                    version,
                },
            );
    }

    let required = required_snapshots(importers.values(), peers);
    let mut packages = BTreeMap::new();
    let mut snapshots = BTreeMap::new();
    for (key, snapshot) in &peers.snapshots {
        let node = &nodes[snapshot.node];
        let references = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            map.iter()
                .map(|(alias, target)| {
                    let name = crate::lockfile::split_dep_path(target).map_or("", |(n, _)| n);
                    (alias.clone(), reference(alias, name, target))
                })
                .collect()
        };
        let (mut dependencies, mut optional_dependencies) = (
            references(&snapshot.dependencies),
            references(&snapshot.optional_dependencies),
        );
        for (alias, path, optional) in &node.links {
            let group = if *optional {
                &mut optional_dependencies
            } else {
                &mut dependencies
            };
            group.insert(alias.clone(), format!("link:{path}"));
        }
        snapshots.insert(
            key.clone(),
            SnapshotEntry {
                dependencies,
                optional_dependencies,
                transitive_peer_dependencies: snapshot.transitive_peers.iter().cloned().collect(),
                optional: !required.contains(key.as_str()),
            },
        );
        packages
            .entry(format!("{}@{}", node.name, node.version))
            .or_insert_with(|| package_entry(node, default_tarball));
    }
    Lockfile {
        lockfile_version: LockfileVersion::Text("9.0".to_owned()),
        settings: Some(LockfileSettings {
            auto_install_peers: Some(true),
            exclude_links_from_lockfile: Some(false),
            ..LockfileSettings::default()
        }),
        catalogs,
        importers,
        packages,
        snapshots,
        ..Lockfile::default()
    }
}

/// How a dependency points at a snapshot: `1.0.0(peer@2.0.0)` under its own name,
/// `real-name@1.0.0` under an alias.
fn reference(alias: &str, name: &str, key: &str) -> String {
    if alias == name {
        key[name.len() + 1..].to_owned()
    } else {
        key.to_owned()
    }
}

/// Snapshots reachable from the projects' non-optional dependencies through non-optional
/// edges; every other snapshot is `optional: true`.
fn required_snapshots<'i, 'p>(
    importers: impl Iterator<Item = &'i Importer>,
    peers: &'p PeerResolution,
) -> HashSet<&'p str> {
    let mut required: HashSet<&str> = HashSet::new();
    let mut pending: Vec<&str> = Vec::new();
    let roots = importers
        .flat_map(|importer| {
            importer
                .dependencies
                .iter()
                .chain(&importer.dev_dependencies)
        })
        .map(|(alias, dependency)| {
            crate::lockfile::reference_to_dep_path(alias, &dependency.version)
        });
    for root in roots.flatten() {
        if let Some((key, _)) = peers.snapshots.get_key_value(root.as_str()) {
            pending.push(key.as_str());
        }
    }
    while let Some(key) = pending.pop() {
        if !required.insert(key) {
            continue;
        }
        for target in peers.snapshots[key].dependencies.values() {
            if let Some((target, _)) = peers.snapshots.get_key_value(target.as_str()) {
                pending.push(target.as_str());
            }
        }
    }
    required
}

fn package_entry(
    node: &Node,
    default_tarball: &dyn Fn(&str, &str) -> Option<String>,
) -> PackageEntry {
    let manifest = &node.manifest;
    // A `file:` directory has no tarball; a tarball keyed by its path or URL has its version
    // apart.
    let directory = node.directory();
    let tarball = manifest
        .tarball
        .clone()
        .filter(|url| default_tarball(&node.name, &node.version).as_deref() != Some(url.as_str()));
    let git = manifest.git.as_ref();
    let kind = match (directory, git) {
        (Some(_), _) => Some("directory".to_owned()),
        (None, Some(_)) => Some("git".to_owned()),
        (None, None) => None,
    };
    PackageEntry {
        resolution: Resolution {
            integrity: manifest.integrity.clone(),
            tarball,
            kind,
            directory: directory.map(str::to_owned),
            commit: git.map(|git| git.commit.clone()),
            repo: git.map(|git| git.repo.clone()),
            path: git.and_then(|git| git.path.clone()),
        },
        version: (node.version != manifest.version && directory.is_none())
            .then(|| manifest.version.clone()),
        engines: manifest.engines.iter().cloned().collect(),
        os: manifest.os.clone(),
        cpu: manifest.cpu.clone(),
        libc: manifest.libc.clone(),
        deprecated: manifest.deprecated.clone(),
        has_bin: manifest.has_bin,
        bundled_dependencies: (!manifest.bundled_dependencies.is_empty())
            .then(|| BundledDependencies::Names(manifest.bundled_dependencies.clone())),
        peer_dependencies: manifest.peer_dependencies.iter().cloned().collect(),
        peer_dependencies_meta: manifest
            .optional_peers
            .iter()
            .map(|name| (name.clone(), PeerDependencyMeta { optional: true }))
            .collect(),
        ..PackageEntry::default()
    }
}
