//! Whether the lockfile still describes the project's local packages, checked as pnpm 12 does
//! before it skips resolution: a `file:` directory's `package.json` against its snapshot, and
//! a `file:` tarball's bytes against its integrity. Registry packages never change under a
//! version, local ones do, so package.json alone cannot tell.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use nodejs_semver::{Range, Version};
use serde::Deserialize;

use crate::InstallError;
use crate::install::Rules;
use crate::integrity::{HashingReader, Integrity};
use crate::lockfile::{Lockfile, SnapshotEntry, package_key, split_dep_path};
use crate::overrides::Overrides;
use crate::package_extensions::PackageExtensions;

/// The fields of a local package's `package.json` its snapshot is compared with.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalManifest {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
    #[serde(default)]
    optional_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    peer_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    peer_dependencies_meta: BTreeMap<String, PeerMeta>,
}

#[derive(Default, Deserialize)]
struct PeerMeta {
    #[serde(default)]
    optional: bool,
}

/// Fails with [`InstallError::LockfileOutdated`] when a `file:` directory's dependencies no
/// longer match its snapshot, or when a `file:` tarball is not the one the lockfile verified.
/// Paths are relative to `lockfile_dir`.
///
/// The rules are pnpm's, observed against pnpm 12 (RESOLVE-ORACLE.md §13): every locked
/// dependency must still be declared (in `dependencies`, `optionalDependencies` or
/// `peerDependencies`) with a range its version satisfies, after overrides; every
/// `dependencies` entry and every required peer must be locked. A new optional dependency
/// and `devDependencies` do not count. A changed tarball fails `--frozen-lockfile` here, before
/// a no-op check could keep the old files (pnpm fails it too, verifying the tarball again).
pub(crate) fn check_local_packages(
    lockfile: &Lockfile,
    lockfile_dir: &Path,
    rules: &Rules,
) -> Result<(), InstallError> {
    for (dep_path, snapshot) in &lockfile.snapshots {
        let key = package_key(dep_path);
        let Some(package) = lockfile.packages.get(key) else {
            continue;
        };
        let resolution = &package.resolution;
        let name = split_dep_path(key).map_or(key, |(name, _)| name);
        let outdated = |place: &str, why: String| InstallError::LockfileOutdated {
            reason: format!("local dependency `{name}` at `{place}` is outdated: {why}"),
        };
        if let (Some("directory"), Some(directory)) =
            (resolution.kind.as_deref(), resolution.directory.as_deref())
        {
            let path = lockfile_dir.join(directory).join("package.json");
            let mut manifest = read_manifest(&path).map_err(|why| outdated(directory, why))?;
            extend(&mut manifest, name, &rules.package_extensions);
            compare(&manifest, snapshot, &rules.overrides, name)
                .map_err(|why| outdated(directory, why))?;
        } else if let Some(relative) = resolution
            .tarball
            .as_deref()
            .and_then(|t| t.strip_prefix("file:"))
            && let Some(integrity) = resolution.integrity.as_deref().and_then(Integrity::parse)
        {
            let path = lockfile_dir.join(relative);
            if !has_integrity(&path, &integrity) {
                return Err(outdated(
                    relative,
                    "the tarball is not the one the lockfile verified".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Result<LocalManifest, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|error| format!("{}: {error}", path.display()))
}

/// Adds what `packageExtensions` adds to `name`'s manifest, as resolution does (the package's
/// own entries win).
fn extend(manifest: &mut LocalManifest, name: &str, extensions: &PackageExtensions) {
    if extensions.is_empty() {
        return;
    }
    let version = manifest
        .version
        .clone()
        .unwrap_or_else(|| "0.0.0".to_owned());
    for extension in extensions.matching(name, &version) {
        for (ours, added) in [
            (&mut manifest.dependencies, &extension.dependencies),
            (
                &mut manifest.optional_dependencies,
                &extension.optional_dependencies,
            ),
            (
                &mut manifest.peer_dependencies,
                &extension.peer_dependencies,
            ),
        ] {
            for (alias, spec) in added.iter().flatten() {
                ours.entry(alias.clone()).or_insert_with(|| spec.clone());
            }
        }
        for (alias, meta) in extension.peer_dependencies_meta.iter().flatten() {
            manifest
                .peer_dependencies_meta
                .entry(alias.clone())
                .or_insert(PeerMeta {
                    optional: meta.optional == Some(true),
                });
        }
    }
}

/// Why `snapshot` no longer matches `manifest`, if it does not.
fn compare(
    manifest: &LocalManifest,
    snapshot: &SnapshotEntry,
    overrides: &Overrides,
    name: &str,
) -> Result<(), String> {
    let version = manifest.version.as_deref().unwrap_or("0.0.0");
    // What each dependency asks for, after overrides; `None` when an override drops it.
    let wanted = |alias: &str, spec: &str| -> Option<String> {
        overrides
            .apply(Some((name, version)), alias, spec)
            .map(Cow::into_owned)
    };
    let locked = snapshot
        .dependencies
        .iter()
        .chain(&snapshot.optional_dependencies);
    for (alias, reference) in locked {
        let declared = manifest
            .dependencies
            .get(alias)
            .or_else(|| manifest.optional_dependencies.get(alias))
            .or_else(|| manifest.peer_dependencies.get(alias));
        let Some(spec) = declared.and_then(|spec| wanted(alias, spec)) else {
            return Err(format!(
                "`{alias}` is in the lockfile but not in its package.json"
            ));
        };
        if !satisfies(reference, &spec) {
            return Err(format!(
                "`{alias}` is locked at {reference}, which `{spec}` does not allow"
            ));
        }
    }
    let required_peers = manifest.peer_dependencies.iter().filter(|(alias, _)| {
        !manifest
            .peer_dependencies_meta
            .get(*alias)
            .is_some_and(|meta| meta.optional)
    });
    for (alias, spec) in manifest.dependencies.iter().chain(required_peers) {
        let is_locked = snapshot.dependencies.contains_key(alias)
            || snapshot.optional_dependencies.contains_key(alias);
        if !is_locked && wanted(alias, spec).is_some() {
            return Err(format!(
                "`{alias}` is in its package.json but not in the lockfile"
            ));
        }
    }
    Ok(())
}

/// Whether a snapshot's reference (`1.2.0`, `1.2.0(peer@1.0.0)`, `real@1.2.0` for an alias,
/// `link:…`) satisfies `spec`. What is not a version or not a range (a tag, a URL, a path)
/// passes, as in pnpm.
fn satisfies(reference: &str, spec: &str) -> bool {
    let reference = package_key(reference);
    let version = split_dep_path(reference).map_or(reference, |(_, version)| version);
    let range = match spec.strip_prefix("npm:") {
        Some(target) => split_dep_path(target).map_or("*", |(_, range)| range),
        None => spec,
    };
    match (Version::parse(version), Range::parse(range)) {
        (Ok(version), Ok(range)) => range.satisfies(&version),
        _ => true,
    }
}

/// Whether the file at `path` hashes to `integrity` (false when it cannot be read).
fn has_integrity(path: &Path, integrity: &Integrity) -> bool {
    std::fs::File::open(path)
        .and_then(|file| {
            let buffered = std::io::BufReader::with_capacity(64 * 1024, file);
            HashingReader::new(buffered, Some(integrity.hasher())).finish()
        })
        .is_ok_and(|(digest, _)| digest.as_ref() == Some(integrity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_satisfy_ranges_as_pnpm_checks_them() {
        assert!(satisfies("1.2.0", "^1.1.0"));
        assert!(!satisfies("1.2.0", "^2.0.0"));
        assert!(satisfies("1.2.0(r-core@2.0.0)", "^1.0.0"));
        assert!(!satisfies("2.0.0(x@1.0.0)", "^1.0.0"));
        assert!(satisfies("r-lib@1.2.0", "npm:r-lib@^1.1.0"));
        assert!(!satisfies("@s/r-lib@1.2.0", "npm:@s/r-lib@^2"));
        assert!(satisfies("1.2.0", "latest"));
        assert!(satisfies("link:../x", "^1.0.0"));
        assert!(satisfies("1.2.0", "file:../x"));
    }

    fn manifest(json: &str) -> LocalManifest {
        serde_json::from_str(json).unwrap()
    }

    fn snapshot(dependencies: &[(&str, &str)], optional: &[(&str, &str)]) -> SnapshotEntry {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        SnapshotEntry {
            dependencies: map(dependencies),
            optional_dependencies: map(optional),
            ..SnapshotEntry::default()
        }
    }

    #[test]
    fn a_snapshot_is_compared_with_its_directory_manifest() {
        let none = Overrides::default();
        let locked = snapshot(&[("r-lib", "1.2.0")], &[("r-opt", "2.0.0")]);
        let check = |json: &str| compare(&manifest(json), &locked, &none, "d");
        let base = r#""dependencies":{"r-lib":"^1.1.0"},"optionalDependencies":{"r-opt":"*"}"#;
        assert!(check(&format!("{{{base}}}")).is_ok());
        // A new optional dependency or dev dependency does not count; an optional peer neither.
        assert!(check(&format!(r#"{{{base},"devDependencies":{{"x":"1"}}}}"#)).is_ok());
        assert!(
            check(&format!(
                r#"{{{base},"peerDependencies":{{"p":"*"}},"peerDependenciesMeta":{{"p":{{"optional":true}}}}}}"#
            ))
            .is_ok()
        );
        let added = check(
            r#"{"dependencies":{"r-lib":"^1.1.0","x":"1"},"optionalDependencies":{"r-opt":"*"}}"#,
        );
        assert!(added.unwrap_err().contains("`x` is in its package.json"));
        let peer = check(&format!(r#"{{{base},"peerDependencies":{{"p":"*"}}}}"#));
        assert!(peer.unwrap_err().contains("`p` is in its package.json"));
        let removed = check(r#"{"dependencies":{"r-lib":"^1.1.0"}}"#);
        assert!(removed.unwrap_err().contains("`r-opt` is in the lockfile"));
        let range =
            check(r#"{"dependencies":{"r-lib":"^2.0.0"},"optionalDependencies":{"r-opt":"*"}}"#);
        assert!(range.unwrap_err().contains("`^2.0.0` does not allow"));
    }

    #[test]
    fn overrides_apply_before_the_ranges_are_compared() {
        let root = crate::manifest::Manifest::default();
        let overrides =
            Overrides::parse(vec![("r-lib".to_owned(), "1.0.0".to_owned())], &root).unwrap();
        let locked = snapshot(&[("r-lib", "1.0.0")], &[]);
        let json = manifest(r#"{"dependencies":{"r-lib":"^1.1.0"}}"#);
        assert!(compare(&json, &locked, &overrides, "d").is_ok());
        assert!(compare(&json, &locked, &Overrides::default(), "d").is_err());
    }
}
