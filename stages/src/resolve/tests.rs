//! Resolution against the fixture registry, compared with the lockfiles pnpm 12 wrote for the
//! same packuments (fixtures/projects/*/pnpm-lock.yaml, recorded by scripts/record-fixtures.sh).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::lockfile_write::to_yaml;

const REGISTRY: &str = "http://registry.test/";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Packuments read from fixtures/registry, answered in request order.
struct FixtureSource {
    queue: VecDeque<String>,
    picked: Vec<String>,
}

impl PackumentSource for FixtureSource {
    fn request(&mut self, name: &str) {
        self.queue.push_back(name.to_owned());
    }
    fn next(&mut self) -> Option<(String, Result<Arc<Packument>, String>)> {
        let name = self.queue.pop_front()?;
        let path = repo()
            .join("fixtures/registry")
            .join(&name)
            .join("packument.json");
        let result = match std::fs::read_to_string(&path) {
            Ok(text) => Packument::parse(text.replace("{{REGISTRY}}", REGISTRY).into_bytes())
                .map(Arc::new)
                .map_err(|e| e.0),
            Err(_) => Err("HTTP 404 Not Found".to_owned()),
        };
        Some((name, result))
    }
    fn picked(&mut self, node: &Node) {
        self.picked.push(format!("{}@{}", node.name, node.version));
    }
}

fn default_tarball(name: &str, version: &str) -> Option<String> {
    let basename = name.rsplit('/').next().unwrap();
    Some(format!("{REGISTRY}{name}/-/{basename}-{version}.tgz"))
}

fn resolve_project(
    project: &str,
    old: Option<&Lockfile>,
) -> Result<(String, Resolved), ResolveFailure> {
    let dir = repo().join("fixtures/projects").join(project);
    let manifest = Manifest::read(&dir.join("package.json")).unwrap();
    let mut source = FixtureSource {
        queue: VecDeque::new(),
        picked: Vec::new(),
    };
    let resolved = resolve(
        &Project::all(&manifest, []),
        old,
        &ResolveOptions::default(),
        &mut source,
        &default_tarball,
    )?;
    Ok((to_yaml(&resolved.lockfile), resolved))
}

fn recorded(project: &str) -> String {
    std::fs::read_to_string(
        repo()
            .join("fixtures/projects")
            .join(project)
            .join("pnpm-lock.yaml"),
    )
    .unwrap()
}

fn assert_same_as_pnpm(project: &str) {
    let (ours, _) = resolve_project(project, None).unwrap();
    let theirs = recorded(project);
    if ours != theirs {
        let diff: Vec<String> = ours
            .lines()
            .zip(theirs.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(8)
            .map(|(i, (a, b))| format!("line {}: ours `{a}` pnpm `{b}`", i + 1))
            .collect();
        panic!(
            "{project}: lockfile differs from pnpm's ({} vs {} lines)\n{}\n--- ours ---\n{ours}",
            ours.lines().count(),
            theirs.lines().count(),
            diff.join("\n")
        );
    }
}

/// A project's own peers that no dependency group has are installed as dependencies (pnpm 12,
/// autoInstallPeers; optional ones too), and pnpm's lockfile for it passes the frozen check.
#[test]
fn project_peers_match_pnpm() {
    assert_same_as_pnpm("resolve-project-peers");
    let dir = repo().join("fixtures/projects/resolve-project-peers");
    let manifest = Manifest::read(&dir.join("package.json")).unwrap();
    let lockfile = Lockfile::parse(&recorded("resolve-project-peers"), &dir).unwrap();
    crate::plan::check_up_to_date(
        &manifest,
        &lockfile,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
}

#[test]
fn graph_matches_pnpm() {
    assert_same_as_pnpm("graph");
}

#[test]
fn ranges_tags_and_aliases_match_pnpm() {
    assert_same_as_pnpm("resolve-ranges");
}

#[test]
fn scoped_dedupe_matches_pnpm() {
    assert_same_as_pnpm("resolve-dedupe");
}

#[test]
fn peer_suffixes_match_pnpm() {
    assert_same_as_pnpm("resolve-peers");
}

#[test]
fn missing_and_optional_peers_match_pnpm() {
    assert_same_as_pnpm("resolve-peers-missing");
}

#[test]
fn auto_installed_peers_match_pnpm() {
    assert_same_as_pnpm("resolve-peers-auto");
}
