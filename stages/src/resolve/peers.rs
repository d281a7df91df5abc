//! Peer dependencies, resolved the way pnpm does (fixtures/projects/RESOLVE-ORACLE.md §4–5):
//! a package's peer comes from its parent's scope (its siblings, then each ancestor level up
//! to the project). Every peer a package's subtree takes from outside the package becomes part
//! of its snapshot key, nested and sorted by name: `b@1.0.0(core@1.0.0)(dom@1.0.0(core@1.0.0))`.
//! One package therefore yields one snapshot per distinct set of outside peers. A member of a
//! peer cycle among the packages of one scope is named bare (`a@1.0.0`) in every key that
//! names it as a peer, from outside the cycle too (pnpm 12, RESOLVE-ORACLE §15).

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::fast_hash::{FastMap as HashMap, FastSet as HashSet};
use std::rc::Rc;

use nodejs_semver::{Range, Version};

use super::graph::{Edge, Node, NodeId};

const PEERS_SUFFIX_MAX_LENGTH: usize = 1000;

/// One snapshot (a package with its peers resolved).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node: NodeId,
    /// alias -> snapshot key of the target, for real dependencies and required peers.
    pub dependencies: BTreeMap<String, String>,
    /// alias -> snapshot key, for optional dependencies and resolved optional peers.
    pub optional_dependencies: BTreeMap<String, String>,
    pub transitive_peers: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct PeerResolution {
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Snapshot key of each direct dependency (index as in the `direct` given).
    pub direct: Vec<Option<String>>,
    /// Per project, required peers found nowhere in its scope: name -> (range, who needs it).
    pub missing: Vec<BTreeMap<String, Vec<(String, String)>>>,
}

/// A name in a project's scope: `(project, alias, node)`.
pub type ScopeEntry = (usize, String, Option<NodeId>);

/// Names in scope at one level: a package's dependencies (or the project's).
struct Frame<'f> {
    parent: Option<&'f Frame<'f>>,
    entries: HashMap<&'f str, NodeId>,
    /// The entries in a peer cycle with their siblings (computed on first lookup).
    cyclic: OnceCell<HashSet<NodeId>>,
}

impl<'f> Frame<'f> {
    fn lookup(&'f self, name: &str) -> Option<(NodeId, &'f Frame<'f>)> {
        let mut frame = Some(self);
        while let Some(current) = frame {
            if let Some(&node) = current.entries.get(name) {
                return Some((node, current));
            }
            frame = current.parent;
        }
        None
    }
}

/// The result of resolving one package in one scope.
struct Instance {
    key: String,
    /// Peers taken from outside the package: name -> key (None: unresolved).
    outside: BTreeMap<String, Option<String>>,
    /// Packages this resolution ran into while they were looking up their own peers (a peer
    /// cycle): they refer to this one by its bare `name@version`.
    cycles: BTreeSet<NodeId>,
}

struct Resolver<'g> {
    nodes: &'g [Node],
    /// Names each package's subtree may take from outside it.
    needed: Vec<BTreeSet<String>>,
    memo: HashMap<(NodeId, Vec<Option<String>>, Vec<bool>), Rc<Instance>>,
    /// Packages whose outside peers are being looked up.
    looking_up: HashSet<NodeId>,
    /// Packages being resolved, with their (already final) keys.
    in_progress: HashMap<NodeId, String>,
    /// Every package's versions in the graph, highest first (optional peers found elsewhere).
    versions_by_name: HashMap<&'g str, Vec<(Version, NodeId)>>,
    /// Names declared as optional peers somewhere, with one declaring range.
    optional_peer_ranges: HashMap<String, String>,
    /// First key computed per node (for optional peers found elsewhere in the graph).
    any_key: HashMap<NodeId, String>,
    /// The project whose dependencies are being resolved (missing peers are per project).
    project: usize,
    out: PeerResolution,
}

/// Resolves peers for the whole graph. Each of the `projects` projects has a scope of its own:
/// its `direct` dependencies and its `hidden` ones (auto-installed peers, visible to peers but
/// not linked). Snapshots are shared: a key says everything its package was resolved with.
pub fn resolve_peers(
    nodes: &[Node],
    projects: usize,
    direct: &[ScopeEntry],
    hidden: &[ScopeEntry],
) -> PeerResolution {
    let mut resolver = Resolver {
        nodes,
        needed: needed_from_outside(nodes),
        memo: HashMap::default(),
        looking_up: HashSet::default(),
        versions_by_name: versions_by_name(nodes),
        in_progress: HashMap::default(),
        optional_peer_ranges: nodes
            .iter()
            .flat_map(|node| {
                node.manifest
                    .peer_dependencies
                    .iter()
                    .filter(|(name, _)| node.manifest.optional_peers.contains(name))
                    .map(|(name, range)| (name.clone(), range.clone()))
            })
            .collect(),
        any_key: HashMap::default(),
        project: 0,
        out: PeerResolution {
            direct: vec![None; direct.len()],
            missing: vec![BTreeMap::new(); projects],
            ..PeerResolution::default()
        },
    };
    for project in 0..projects {
        let (project_direct, project_hidden) =
            (in_project(direct, project), in_project(hidden, project));
        // Direct dependencies shadow auto-installed peers of the same name.
        let entries: HashMap<&str, NodeId> = project_hidden
            .iter()
            .chain(&project_direct)
            .map(|&(_, alias, node)| (alias, node))
            .collect();
        let root = Frame {
            parent: None,
            entries,
            cyclic: OnceCell::new(),
        };
        // What a project misses is found again for each project, not taken from the memo.
        resolver.project = project;
        resolver.memo.clear();
        for &(index, _, node) in &project_direct {
            resolver.out.direct[index] = Some(resolver.resolve(node, &root).key.clone());
        }
        for &(_, _, node) in &project_hidden {
            resolver.resolve(node, &root);
        }
    }
    let mut out = resolver.out;
    link_cycle_references(&mut out);
    out
}

/// `(index in entries, alias, node)` of one project's resolved entries.
fn in_project(entries: &[ScopeEntry], project: usize) -> Vec<(usize, &str, NodeId)> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, (p, _, _))| *p == project)
        .filter_map(|(index, (_, alias, node))| Some((index, alias.as_str(), (*node)?)))
        .collect()
}

/// Inside a peer cycle a package is referred to by its bare `name@version`, which may have no
/// snapshot of its own: such references link to the package's resolved snapshot instead, so
/// every reference in the lockfile has an entry.
fn link_cycle_references(out: &mut PeerResolution) {
    let mut resolved: HashMap<String, String> = HashMap::default();
    for key in out.snapshots.keys() {
        resolved
            .entry(crate::lockfile::package_key(key).to_owned())
            .or_insert_with(|| key.clone());
    }
    let known: HashSet<String> = out.snapshots.keys().cloned().collect();
    let relink = |target: &mut String| {
        if !known.contains(target.as_str())
            && let Some(key) = resolved.get(crate::lockfile::package_key(target))
        {
            *target = key.clone();
        }
    };
    for snapshot in out.snapshots.values_mut() {
        snapshot.dependencies.values_mut().for_each(relink);
        snapshot.optional_dependencies.values_mut().for_each(relink);
    }
    out.direct.iter_mut().flatten().for_each(relink);
}

impl<'g> Resolver<'g> {
    fn resolve(&mut self, id: NodeId, frame: &Frame<'_>) -> Rc<Instance> {
        let node = &self.nodes[id];
        if let Some(key) = self.in_progress.get(&id) {
            // A cycle back to a package being resolved: its key is already final.
            return Rc::new(Instance {
                key: key.clone(),
                outside: BTreeMap::new(),
                cycles: BTreeSet::new(),
            });
        }
        // Everything the subtree takes from outside is known before descending, so the key is
        // final before any descendant (even a cyclic one) refers to it.
        // Peers that peer on each other (a on b, b on a) would look each other up forever:
        // the inner occurrence goes without its suffix.
        // pnpm writes both sides of such a cycle without suffix.
        if !self.looking_up.insert(id) {
            return Rc::new(Instance {
                key: node.base_key(),
                outside: BTreeMap::new(),
                cycles: BTreeSet::from([id]),
            });
        }
        let needed: Vec<String> = self.needed[id].iter().cloned().collect();
        let mut found = Vec::with_capacity(needed.len());
        // Which found peers the key names bare (`name@version`, without their own peers).
        let mut bare = Vec::with_capacity(needed.len());
        let mut cycles = BTreeSet::new();
        for name in &needed {
            let mut is_bare = false;
            let key = match frame.lookup(name) {
                Some((entry, entry_frame)) => {
                    let peer = self.resolve(entry, entry_frame);
                    cycles.extend(peer.cycles.iter().copied());
                    // pnpm 12 refers to a member of a peer cycle among its siblings by its
                    // bare name everywhere, from outside the cycle too (RESOLVE-ORACLE §15).
                    is_bare = self.cyclic(entry_frame).contains(&entry);
                    if peer.cycles.contains(&id) {
                        Some(self.nodes[entry].base_key())
                    } else {
                        Some(peer.key.clone())
                    }
                }
                None => {
                    let own = node
                        .manifest
                        .peer_dependencies
                        .iter()
                        .find(|(p, _)| p == name);
                    match own {
                        // The package's own required peer is missing, not found elsewhere.
                        Some(_) if !node.manifest.optional_peers.contains(name) => None,
                        Some((_, range)) => self.elsewhere(name, Some(range)),
                        None => self.elsewhere(name, None),
                    }
                }
            };
            found.push(key);
            bare.push(is_bare);
        }
        cycles.remove(&id);
        self.looking_up.remove(&id);
        let memo_key = (id, found.clone(), bare.clone());
        if let Some(instance) = self.memo.get(&memo_key) {
            if cycles.is_subset(&instance.cycles) {
                return instance.clone();
            }
            // Same peers, but reached inside a cycle this time: say so to the caller.
            return Rc::new(Instance {
                key: instance.key.clone(),
                outside: instance.outside.clone(),
                cycles: instance.cycles.union(&cycles).copied().collect(),
            });
        }
        // pnpm sorts the `name@version` strings, so `react-dom@…` precedes `react@…`. A peer
        // met by an alias (`react: npm:@preact/compat@…`) is named by the package it is, as
        // pnpm 12 names it (RESOLVE-ORACLE §4).
        let mut suffix: Vec<String> = found
            .iter()
            .zip(&bare)
            .filter_map(|(peer_key, &is_bare)| {
                let peer_key = peer_key.as_deref()?;
                Some(if is_bare {
                    crate::lockfile::package_key(peer_key).to_owned()
                } else {
                    peer_key.to_owned()
                })
            })
            .collect();
        suffix.sort();
        let mut key = node.base_key();
        let joined = suffix.join(")(");
        if !suffix.is_empty() {
            // pnpm's `peersSuffixMaxLength` (1000): longer suffixes become a hash, which also
            // keeps every lockfile key under YAML's 1024-character limit for plain keys.
            if joined.len() > PEERS_SUFFIX_MAX_LENGTH {
                key.push_str(&format!("({})", crate::dep_path::short_hash(&joined)));
            } else {
                key.push_str(&format!("({joined})"));
            }
        }
        self.in_progress.insert(id, key.clone());
        let child_aliases: HashSet<&str> = children(node).map(|e| e.alias.as_str()).collect();
        let looked_up: BTreeMap<String, Option<String>> =
            needed.iter().cloned().zip(found.iter().cloned()).collect();
        // What this package takes from outside, for its ancestors: its own peers (a peer that
        // is also a dependency only when found in scope) and what its children take from
        // outside and it does not provide.
        let mut outside: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut peer_wins = HashSet::default();
        let mut dependencies = BTreeMap::new();
        let mut optional_dependencies = BTreeMap::new();
        // Own peers, from the parent's scope (a dependency of the same name wins).
        for (name, range) in &node.manifest.peer_dependencies {
            if *name == node.name {
                continue;
            }
            if child_aliases.contains(name.as_str()) {
                if looked_up.get(name).is_none_or(Option::is_none) {
                    continue;
                }
                peer_wins.insert(name.clone());
            }
            outside.insert(name.clone(), looked_up.get(name).cloned().flatten());
            let optional = node.manifest.optional_peers.contains(name);
            let found = looked_up.get(name).cloned().flatten();
            match found {
                Some(key) if optional => {
                    optional_dependencies.insert(name.clone(), key);
                }
                Some(key) => {
                    dependencies.insert(name.clone(), key);
                }
                None if optional => {}
                None => self.out.missing[self.project]
                    .entry(name.clone())
                    .or_default()
                    .push((range.clone(), format!("{}@{}", node.name, node.version))),
            }
        }

        // Children, in a frame of this package's dependencies.
        let child_frame = Frame {
            parent: Some(frame),
            entries: children(node).map(|e| (e.alias.as_str(), e.node)).collect(),
            cyclic: OnceCell::new(),
        };
        let mut transitive = BTreeSet::new();
        let edges: Vec<Edge> = children(node).cloned().collect();
        for edge in edges {
            if peer_wins.contains(&edge.alias) {
                continue;
            }
            let child = self.resolve(edge.node, &child_frame);
            let target = if edge.optional {
                &mut optional_dependencies
            } else {
                &mut dependencies
            };
            target.insert(edge.alias.clone(), child.key.clone());
            // The package's own peers are not listed, even when a dependency shares them.
            for name in child.outside.keys() {
                if child_aliases.contains(name.as_str()) || *name == node.name {
                    continue;
                }
                let own_peer = node
                    .manifest
                    .peer_dependencies
                    .iter()
                    .any(|(p, _)| p == name);
                if !own_peer {
                    transitive.insert(name.clone());
                }
                outside
                    .entry(name.clone())
                    .or_insert_with(|| looked_up.get(name).cloned().flatten());
            }
        }
        let instance = Rc::new(Instance {
            key: key.clone(),
            outside,
            cycles,
        });
        self.any_key.entry(id).or_insert_with(|| key.clone());
        self.out.snapshots.entry(key).or_insert(Snapshot {
            node: id,
            dependencies,
            optional_dependencies,
            transitive_peers: transitive,
        });
        self.memo.insert(memo_key, instance.clone());
        self.in_progress.remove(&id);
        instance
    }

    /// The entries of `frame` that are in a peer cycle with their siblings: following what
    /// each sibling's subtree takes from outside it to the sibling of that name leads back.
    fn cyclic<'f>(&self, frame: &'f Frame<'_>) -> &'f HashSet<NodeId> {
        frame.cyclic.get_or_init(|| {
            let edges = |from: NodeId| {
                self.needed[from]
                    .iter()
                    .filter_map(|name| frame.entries.get(name.as_str()).copied())
                    .filter(move |&to| to != from)
            };
            // A walk from each entry that has outside names (few do); scopes are small next to
            // the graph, and this runs once per scope a peer is found in.
            let mut cyclic = HashSet::default();
            for &start in frame.entries.values() {
                if self.needed[start].is_empty() {
                    continue;
                }
                let mut seen = HashSet::default();
                let mut stack: Vec<NodeId> = edges(start).collect();
                while let Some(next) = stack.pop() {
                    if next == start {
                        cyclic.insert(start);
                        break;
                    }
                    if seen.insert(next) {
                        stack.extend(edges(next));
                    }
                }
            }
            cyclic
        })
    }

    /// A peer not in scope that some package declares optional uses a version that is
    /// anywhere in the graph (the highest satisfying that declaration's range).
    fn elsewhere(&self, name: &str, own_range: Option<&str>) -> Option<String> {
        let range =
            own_range.or_else(|| self.optional_peer_ranges.get(name).map(String::as_str))?;
        let range = Range::parse(range).ok()?;
        let &(_, id) = self
            .versions_by_name
            .get(name)?
            .iter()
            .find(|(version, _)| range.satisfies(version))?;
        let node = &self.nodes[id];
        Some(
            self.any_key
                .get(&id)
                .cloned()
                .unwrap_or_else(|| node.base_key()),
        )
    }
}

fn versions_by_name(nodes: &[Node]) -> HashMap<&str, Vec<(Version, NodeId)>> {
    let mut by_name: HashMap<&str, Vec<(Version, NodeId)>> = HashMap::default();
    for (id, node) in nodes.iter().enumerate() {
        if let Ok(version) = Version::parse(&node.version) {
            by_name.entry(&node.name).or_default().push((version, id));
        }
    }
    for versions in by_name.values_mut() {
        versions.sort_by(|a, b| b.0.cmp(&a.0));
    }
    by_name
}

fn children(node: &Node) -> impl Iterator<Item = &Edge> {
    node.children.iter().flatten()
}

/// For each package, the names its subtree may need from outside it: its own peers plus its
/// descendants' outside names, minus what it depends on itself. A fixpoint, for cycles.
fn needed_from_outside(nodes: &[Node]) -> Vec<BTreeSet<String>> {
    let mut needed: Vec<BTreeSet<String>> = nodes
        .iter()
        .map(|node| {
            // A peer that is also a dependency is looked up too: found in scope, the peer wins.
            node.manifest
                .peer_dependencies
                .iter()
                .map(|(name, _)| name)
                .filter(|name| **name != node.name)
                .cloned()
                .collect()
        })
        .collect();
    let mut parents: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
    for (id, node) in nodes.iter().enumerate() {
        for edge in children(node) {
            parents[edge.node].push(id);
        }
    }
    let mut queue: Vec<NodeId> = (0..nodes.len())
        .filter(|&id| !needed[id].is_empty())
        .collect();
    while let Some(child) = queue.pop() {
        for &parent in &parents[child] {
            let aliases: HashSet<&str> =
                children(&nodes[parent]).map(|e| e.alias.as_str()).collect();
            let additions: Vec<String> = needed[child]
                .iter()
                .filter(|name| {
                    !aliases.contains(name.as_str())
                        && **name != nodes[parent].name
                        && !needed[parent].contains(*name)
                })
                .cloned()
                .collect();
            if !additions.is_empty() {
                needed[parent].extend(additions);
                queue.push(parent);
            }
        }
    }
    needed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::packument::VersionManifest;

    fn node(name: &str, peers: &[&str], children: &[(usize, &str)]) -> Node {
        Node {
            name: name.to_owned(),
            version: "1.0.0".to_owned(),
            manifest: Arc::new(VersionManifest {
                name: name.to_owned(),
                version: "1.0.0".to_owned(),
                peer_dependencies: peers
                    .iter()
                    .map(|p| (p.to_string(), "*".to_owned()))
                    .collect(),
                ..VersionManifest::default()
            }),
            links: Vec::new(),
            patch: None,
            children: children
                .iter()
                .map(|(node, alias)| {
                    Some(Edge {
                        alias: alias.to_string(),
                        node: *node,
                        optional: false,
                    })
                })
                .collect(),
            expanded: true,
            needed_by: None,
        }
    }

    /// `a` and `b` peer on each other; `user` depends on both. pnpm writes each side of the
    /// cycle bare in the other's key, and every reference must have a snapshot.
    #[test]
    fn mutual_peers_get_bare_keys_and_no_dangling_references() {
        let nodes = vec![
            node("a", &["b"], &[]),
            node("b", &["a"], &[]),
            node("user", &[], &[(0, "a"), (1, "b")]),
        ];
        let direct = vec![(0, "user".to_owned(), Some(2))];
        let out = resolve_peers(&nodes, 1, &direct, &[]);
        let keys: Vec<&str> = out.snapshots.keys().map(String::as_str).collect();
        assert!(keys.contains(&"a@1.0.0(b@1.0.0)"), "{keys:?}");
        assert!(keys.contains(&"b@1.0.0(a@1.0.0)"), "{keys:?}");
        for snapshot in out.snapshots.values() {
            for target in snapshot.dependencies.values() {
                assert!(
                    out.snapshots.contains_key(target),
                    "{target} has no snapshot: {keys:?}"
                );
            }
        }
        assert_eq!(out.direct, [Some("user@1.0.0".to_owned())]);
    }
}
