//! Peer dependencies, resolved the way pnpm does (fixtures/projects/RESOLVE-ORACLE.md §4–5):
//! a package's peer comes from its parent's scope (its siblings, then each ancestor level up
//! to the project). Every peer a package's subtree takes from outside the package becomes part
//! of its snapshot key, nested and sorted by name: `b@1.0.0(core@1.0.0)(dom@1.0.0(core@1.0.0))`.
//! One package therefore yields one snapshot per distinct set of outside peers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use nodejs_semver::{Range, Version};

use super::graph::{Edge, Node, NodeId};

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
    /// Snapshot key of each direct dependency (index as in the graph's `direct`).
    pub direct: Vec<Option<String>>,
    /// Required peers found nowhere in scope: name -> (range, who needs it).
    pub missing: BTreeMap<String, Vec<(String, String)>>,
}

/// Names in scope at one level: a package's dependencies (or the project's).
struct Frame<'f> {
    parent: Option<&'f Frame<'f>>,
    entries: HashMap<&'f str, NodeId>,
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
}

struct Resolver<'g> {
    nodes: &'g [Node],
    /// Names each package's subtree may take from outside it.
    needed: Vec<BTreeSet<String>>,
    memo: HashMap<(NodeId, Vec<Option<String>>), Rc<Instance>>,
    in_progress: HashSet<NodeId>,
    /// First key computed per node (for optional peers found elsewhere in the graph).
    any_key: HashMap<NodeId, String>,
    out: PeerResolution,
}

/// Resolves peers for the whole graph. `direct` and `hidden` form the project's scope
/// (hidden: auto-installed peers, visible to peers but not linked).
pub fn resolve_peers(
    nodes: &[Node],
    direct: &[(String, Option<NodeId>)],
    hidden: &[(String, Option<NodeId>)],
) -> PeerResolution {
    let mut resolver = Resolver {
        nodes,
        needed: needed_from_outside(nodes),
        memo: HashMap::new(),
        in_progress: HashSet::new(),
        any_key: HashMap::new(),
        out: PeerResolution::default(),
    };
    let mut entries: HashMap<&str, NodeId> = HashMap::new();
    for (name, node) in hidden {
        if let Some(node) = node {
            entries.insert(name.as_str(), *node);
        }
    }
    for (alias, node) in direct {
        if let Some(node) = node {
            entries.insert(alias.as_str(), *node);
        }
    }
    let root = Frame {
        parent: None,
        entries,
    };
    for (_, node) in direct {
        let key = node.map(|node| resolver.resolve(node, &root).key.clone());
        resolver.out.direct.push(key);
    }
    for (_, node) in hidden {
        if let Some(node) = node {
            resolver.resolve(*node, &root);
        }
    }
    resolver.out
}

impl<'g> Resolver<'g> {
    fn resolve(&mut self, id: NodeId, frame: &Frame<'_>) -> Rc<Instance> {
        let node = &self.nodes[id];
        let bare = format!("{}@{}", node.name, node.version);
        if !self.in_progress.insert(id) {
            // A peer cycle (a peers on b, b on a): the inner occurrence goes without suffix.
            return Rc::new(Instance {
                key: bare,
                outside: BTreeMap::new(),
            });
        }
        let needed: Vec<String> = self.needed[id].iter().cloned().collect();
        let mut found = Vec::with_capacity(needed.len());
        for name in &needed {
            let key = match frame.lookup(name) {
                Some((entry, entry_frame)) => Some(self.resolve(entry, entry_frame).key.clone()),
                None => None,
            };
            found.push(key);
        }
        let memo_key = (id, found.clone());
        if let Some(instance) = self.memo.get(&memo_key) {
            self.in_progress.remove(&id);
            return instance.clone();
        }

        let child_aliases: HashSet<&str> = children(node).map(|e| e.alias.as_str()).collect();
        let mut outside: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut dependencies = BTreeMap::new();
        let mut optional_dependencies = BTreeMap::new();
        // Own peers, from the parent's scope.
        for (name, range) in &node.manifest.peer_dependencies {
            if child_aliases.contains(name.as_str()) {
                continue;
            }
            let optional = node.manifest.optional_peers.contains(name);
            let index = needed.iter().position(|n| n == name);
            let mut key = index.and_then(|index| found[index].clone());
            if key.is_none() && optional {
                key = self.elsewhere(name, range);
            }
            match &key {
                Some(key) if optional => {
                    optional_dependencies.insert(name.clone(), key.clone());
                }
                Some(key) => {
                    dependencies.insert(name.clone(), key.clone());
                }
                None if optional => {}
                None => self
                    .out
                    .missing
                    .entry(name.clone())
                    .or_default()
                    .push((range.clone(), bare.clone())),
            }
            // Unresolved ones too: ancestors list them in transitivePeerDependencies.
            outside.insert(name.clone(), key);
        }
        let own_peers: BTreeSet<String> = outside.keys().cloned().collect();

        // Children, in a frame of this package's dependencies.
        let child_frame = Frame {
            parent: Some(frame),
            entries: children(node).map(|e| (e.alias.as_str(), e.node)).collect(),
        };
        let mut transitive = BTreeSet::new();
        let edges: Vec<Edge> = children(node).cloned().collect();
        for edge in edges {
            let child = self.resolve(edge.node, &child_frame);
            let target = if edge.optional {
                &mut optional_dependencies
            } else {
                &mut dependencies
            };
            target.insert(edge.alias.clone(), child.key.clone());
            for (name, key) in &child.outside {
                if child_aliases.contains(name.as_str()) {
                    continue;
                }
                transitive.insert(name.clone());
                if !own_peers.contains(name) {
                    outside.insert(name.clone(), key.clone());
                }
            }
        }

        let mut key = bare;
        for (name, peer_key) in &outside {
            if let Some(peer_key) = peer_key {
                let version = peer_key
                    .get(1..)
                    .and_then(|rest| rest.find('@'))
                    .map_or(peer_key.as_str(), |at| &peer_key[at + 2..]);
                key.push_str(&format!("({name}@{version})"));
            }
        }
        let instance = Rc::new(Instance {
            key: key.clone(),
            outside,
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

    /// An optional peer not in scope uses a version that is anywhere in the graph.
    fn elsewhere(&self, name: &str, range: &str) -> Option<String> {
        let range = Range::parse(range).ok();
        let (id, node) = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.name == name)
            .filter(|(_, node)| {
                let version = Version::parse(&node.version).ok();
                match (&range, version) {
                    (Some(range), Some(version)) => range.satisfies(&version),
                    _ => false,
                }
            })
            .max_by(|a, b| {
                let va = Version::parse(&a.1.version).ok();
                let vb = Version::parse(&b.1.version).ok();
                va.cmp(&vb)
            })?;
        Some(
            self.any_key
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("{}@{}", node.name, node.version)),
        )
    }
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
            let aliases: HashSet<&str> = children(node).map(|e| e.alias.as_str()).collect();
            node.manifest
                .peer_dependencies
                .iter()
                .map(|(name, _)| name)
                .filter(|name| !aliases.contains(name.as_str()))
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
                .filter(|name| !aliases.contains(name.as_str()) && !needed[parent].contains(*name))
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
