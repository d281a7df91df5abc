//! Resolution without a (current) lockfile: package.json -> dependency graph -> peers ->
//! `pnpm-lock.yaml`, with every picked version announced as soon as it is known, so the
//! caller can start its download while resolution goes on.

pub mod early_link;
pub mod graph;
mod lockfile_out;
pub mod metadata;
pub mod peers;
pub mod run;

use std::collections::HashSet;
use std::sync::Arc;

use nodejs_semver::Range;

use crate::lockfile::Lockfile;
use crate::manifest::Manifest;
use crate::packument::Packument;
use crate::plan::DependencyGroup;

pub use graph::{Demand, Node, ResolveFailure, ResolveOptions};
use graph::{GraphBuilder, satisfying_node};
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
}

pub struct Resolved {
    pub lockfile: Lockfile,
    pub warnings: Vec<String>,
    /// Packages in the graph (distinct name@version).
    pub packages: usize,
}

/// Resolves `manifest` (keeping versions of `old` where they still satisfy) into a lockfile.
pub fn resolve(
    manifest: &Manifest,
    old: Option<&Lockfile>,
    options: &ResolveOptions,
    source: &mut dyn PackumentSource,
    default_tarball: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Resolved, ResolveFailure> {
    let mut builder = GraphBuilder::new(old, options.clone());
    let mut demands = Vec::new();
    let mut announced = 0;
    builder.start(project_dependencies(manifest), &mut demands)?;
    let mut attempted_peers = HashSet::new();
    loop {
        loop {
            for demand in demands.drain(..) {
                match demand {
                    Demand::Packument(name) => source.request(&name),
                    Demand::Refresh(name) => source.refresh(&name),
                    Demand::Picked(_) => {}
                }
            }
            for node in &builder.nodes[announced..] {
                source.picked(node);
            }
            announced = builder.nodes.len();
            if builder.is_done() {
                break;
            }
            let (name, result) = source.next().ok_or_else(|| ResolveFailure {
                message: "resolution stopped: the packument source closed".to_owned(),
            })?;
            builder.on_packument(&name, result, &mut demands)?;
        }
        let direct: Vec<(String, Option<usize>)> = builder
            .direct
            .iter()
            .map(|d| (d.alias.clone(), d.node))
            .collect();
        let peers = resolve_peers(&builder.nodes, &direct, &builder.hidden);
        // autoInstallPeers: required peers missing from scope become hidden direct
        // dependencies, then peers are resolved again.
        let mut hidden = Vec::new();
        for (name, wanted) in &peers.missing {
            if !attempted_peers.insert(name.clone()) {
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
        if hidden.is_empty() {
            let lockfile = lockfile_out::build_lockfile(
                &builder.nodes,
                &builder.direct,
                &peers,
                default_tarball,
            );
            return Ok(Resolved {
                lockfile,
                warnings: builder.warnings,
                packages: builder.nodes.len(),
            });
        }
        builder.add_hidden(hidden, &mut demands)?;
    }
}

/// package.json's dependencies as `(group, alias, specifier)`, grouped as pnpm reads them.
pub fn project_dependencies(manifest: &Manifest) -> Vec<(DependencyGroup, String, String)> {
    crate::plan::manifest_groups(manifest)
        .into_iter()
        .flat_map(|(group, dependencies)| {
            dependencies
                .into_iter()
                .map(move |(alias, spec)| (group, alias.to_owned(), spec.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
