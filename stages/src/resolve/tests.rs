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
            Ok(text) => Packument::parse(text.replace("{{REGISTRY}}", REGISTRY).as_bytes())
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

/// Packuments written by the test, one version each.
struct MemorySource {
    packuments: std::collections::HashMap<String, String>,
    queue: VecDeque<String>,
}

impl PackumentSource for MemorySource {
    fn request(&mut self, name: &str) {
        self.queue.push_back(name.to_owned());
    }
    fn next(&mut self) -> Option<(String, Result<Arc<Packument>, String>)> {
        let name = self.queue.pop_front()?;
        let result = match self.packuments.get(&name) {
            Some(text) => Packument::parse(text.as_bytes())
                .map(Arc::new)
                .map_err(|e| e.0),
            None => Err("HTTP 404 Not Found".to_owned()),
        };
        Some((name, result))
    }
    fn picked(&mut self, _: &Node) {}
}

/// A registry package depending on a tarball URL, a git repository or a local path is refused
/// as pnpm 12 refuses it (ERR_PNPM_EXOTIC_SUBDEP, ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED; observed),
/// also as an optional dependency, naming the chain.
#[test]
fn exotic_and_local_subdependencies_are_refused_as_pnpm_refuses_them() {
    let packument = |name: &str, group: &str, alias: &str, spec: &str| {
        serde_json::json!({
            "name": name,
            "dist-tags": {"latest": "1.0.0"},
            "versions": {"1.0.0": {
                "name": name, "version": "1.0.0", group: {alias: spec},
                "dist": {"tarball": format!("{REGISTRY}{name}/-/{name}-1.0.0.tgz")}
            }}
        })
        .to_string()
    };
    let url = "https://files.example/dep-2.0.0.tgz";
    let cases = [
        ("dependencies", url, "resolved via url", false),
        ("optionalDependencies", url, "resolved via url", false),
        (
            "dependencies",
            "git+https://git.example/dep.git",
            "resolved via git",
            false,
        ),
        ("dependencies", "github:user/dep", "resolved via git", false),
        ("dependencies", "user/dep", "resolved via git", false),
        (
            "dependencies",
            "npm:dep@https://files.example/dep.tgz",
            "resolved via url",
            false,
        ),
        (
            "dependencies",
            "file:../dep",
            "ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED",
            false,
        ),
        (
            "dependencies",
            "link:../dep",
            "ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED",
            true,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package.json");
    let resolve_parent = |group: &str, spec: &str, allow_exotic: bool| {
        let manifest = Manifest::parse(
            br#"{"name":"app","dependencies":{"parent":"^1.0.0"}}"#,
            &path,
        )
        .unwrap();
        let mut source = MemorySource {
            packuments: [("parent".to_owned(), packument("parent", group, "dep", spec))].into(),
            queue: VecDeque::new(),
        };
        let options = ResolveOptions {
            allow_exotic_subdeps: allow_exotic,
            ..ResolveOptions::default()
        };
        resolve(
            &Project::all(&manifest, []),
            None,
            &options,
            &mut source,
            &default_tarball,
        )
    };
    for (group, spec, expected, allow_exotic) in cases {
        let failure = resolve_parent(group, spec, allow_exotic)
            .err()
            .unwrap_or_else(|| panic!("{group} {spec} was resolved"));
        assert!(
            failure.message.starts_with(&format!(
                "`dep@{spec}` (needed by the project > parent@1.0.0): "
            )) && failure.message.contains(expected),
            "{group} {spec}: {}",
            failure.message
        );
    }
    // Allowed, the URL is downloaded (here, refused by the source), and a git repository cloned.
    let failure = resolve_parent("dependencies", url, true).err().unwrap();
    assert!(
        failure.message.starts_with(&format!(
            "{url} cannot be downloaded here (needed by the project > parent@1.0.0 as `dep@{url}`)"
        )),
        "{}",
        failure.message
    );
    let failure = resolve_parent("dependencies", "git+file:///nonexistent/flowpm-repo", true);
    assert!(
        failure
            .err()
            .unwrap()
            .message
            .contains("ERR_PNPM_LOCAL_SUBDEP_NOT_ALLOWED")
    );
    // Not exotic, though flowpm cannot resolve them: optional ones are still skipped.
    for spec in [
        "npm:@scope/dep@workspace:*",
        "jsr:@std/path@^1",
        "workspace:../dep",
    ] {
        assert!(
            resolve_parent("optionalDependencies", spec, false).is_ok(),
            "optional `{spec}` was not skipped"
        );
    }
}
