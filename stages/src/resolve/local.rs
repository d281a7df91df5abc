//! Dependencies on the project's own disk, resolved as pnpm 12 resolves them
//! (fixtures/projects/RESOLVE-ORACLE.md §13):
//! - `link:<dir>` is a symlink; nothing of the directory is installed.
//! - `file:<dir>` is a package read from the directory (its dependencies are resolved and
//!   its files imported like a registry package's).
//! - `file:<tarball>` is a package read from the tarball, checked by its sha512.
//! - A bare path (`../dir`, `./pkg.tgz`) is `link:` for a directory and `file:` for a tarball.
//!
//! A tarball URL off the registry (`https://host/x-1.0.0.tgz`) is read the same way as a
//! `file:` tarball, from the bytes the resolve stage downloads ([`remote`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::decode::{DecodeLimits, DecodedEntry, SinkError, decode_tarball};
use crate::integrity::{Algorithm, IntegrityHasher};
use crate::link::{normalize, relative_path};
use crate::packument::VersionManifest;

/// A local dependency.
pub enum Local {
    /// The importer's `link:<path from the project's directory>`.
    Link(String),
    /// A package from disk: its depPath version (`file:<path from the lockfile's directory>`)
    /// and its manifest (with `integrity` and `tarball` for a tarball).
    Package {
        version: String,
        manifest: Arc<VersionManifest>,
    },
}

#[derive(PartialEq)]
enum Kind {
    Link,
    File,
    Bare,
}

/// What `specifier` of the project `project` (an importer id) names on disk; `None` when it is
/// not a local path. `root` is the lockfile's directory.
pub fn classify(specifier: &str, root: &Path, project: &str) -> Option<Result<Local, String>> {
    let (kind, path) = split(specifier)?;
    let project_dir = root.join(project);
    let absolute = absolute(path, &project_dir);
    if kind == Kind::Link {
        return Some(Ok(Local::Link(slashed(&relative_path(
            &normalize(&project_dir),
            &absolute,
        )))));
    }
    Some(read_local(kind, path, &absolute, root, &project_dir))
}

/// For `add <path or git URL>`: the package's name and the specifier to save (`link:` for a
/// directory given bare or as `link:`, `file:` otherwise, its path relative to
/// `project_dir`; a git URL as given).
pub fn named(specifier: &str, project_dir: &Path) -> Result<(String, String), String> {
    // A git URL is saved as written, under the name in the repository's package.json.
    if let Some(spec) = crate::git::parse(specifier) {
        return match git(&spec?)?.0 {
            Local::Package { manifest, .. } => Ok((manifest.name.clone(), specifier.to_owned())),
            Local::Link(_) => unreachable!("a git dependency is a package"),
        };
    }
    let (kind, path) = split(specifier).ok_or("not a local path")?;
    let absolute = absolute(path, project_dir);
    let name = match classify(specifier, project_dir, ".").ok_or("not a local path")?? {
        Local::Package { manifest, .. } => manifest.name.clone(),
        Local::Link(_) => read_dir_manifest(&absolute)?.name,
    };
    let protocol = match kind {
        Kind::Link => "link:",
        Kind::Bare if absolute.is_dir() => "link:",
        Kind::File | Kind::Bare => "file:",
    };
    let relative = relative_path(&normalize(project_dir), &absolute);
    Ok((name, format!("{protocol}{}", slashed(&relative))))
}

/// `path` (as written after the protocol) from `project_dir`, `~/` from the home directory.
fn absolute(path: &str, project_dir: &Path) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => normalize(&Path::new(&home).join(rest)),
        _ => normalize(&project_dir.join(path)),
    }
}

/// Whether `specifier` names a local path at all.
pub fn is_local(specifier: &str) -> bool {
    split(specifier).is_some()
}

fn split(specifier: &str) -> Option<(Kind, &str)> {
    if let Some(path) = specifier.strip_prefix("link:") {
        Some((Kind::Link, path))
    } else if let Some(path) = specifier.strip_prefix("file:") {
        Some((Kind::File, path))
    } else if is_bare_path(specifier) {
        Some((Kind::Bare, specifier))
    } else {
        None
    }
}

fn read_local(
    kind: Kind,
    written: &str,
    absolute: &Path,
    root: &Path,
    project_dir: &Path,
) -> Result<Local, String> {
    let metadata = std::fs::metadata(absolute)
        .map_err(|error| format!("cannot read `{written}` ({}): {error}", absolute.display()))?;
    let version = format!(
        "file:{}",
        slashed(&relative_path(&normalize(root), absolute))
    );
    if metadata.is_dir() {
        if kind == Kind::Bare {
            return Ok(Local::Link(slashed(&relative_path(
                &normalize(project_dir),
                absolute,
            ))));
        }
        return Ok(Local::Package {
            version,
            manifest: Arc::new(read_dir_manifest(absolute)?),
        });
    }
    let bytes = std::fs::read(absolute)
        .map_err(|error| format!("cannot read {}: {error}", absolute.display()))?;
    tarball_package(version, &bytes, &absolute.display().to_string())
}

/// A dependency given as a tarball URL, from the downloaded bytes: keyed by the URL, checked
/// by their sha512.
pub fn remote(url: &str, bytes: &[u8]) -> Result<Local, String> {
    tarball_package(url.to_owned(), bytes, url)
}

/// The package in a tarball's `bytes`, keyed by `source` (its `file:` path or URL, which is
/// also where it is fetched from), with the sha512 of the bytes as its integrity.
fn tarball_package(source: String, bytes: &[u8], described: &str) -> Result<Local, String> {
    let mut manifest = tarball_manifest(bytes)
        .map_err(|why| format!("{described} is not a package tarball: {why}"))?;
    let mut hasher = IntegrityHasher::new(Algorithm::Sha512);
    hasher.update(bytes);
    manifest.integrity = Some(hasher.finish().to_sri());
    manifest.tarball = Some(source.clone());
    Ok(Local::Package {
        version: source,
        manifest: Arc::new(manifest),
    })
}

/// The manifest of a package directory's `package.json`.
fn read_dir_manifest(dir: &Path) -> Result<VersionManifest, String> {
    let manifest_path = dir.join("package.json");
    let bytes = std::fs::read(&manifest_path)
        .map_err(|error| format!("cannot read {}: {error}", manifest_path.display()))?;
    VersionManifest::from_package_json(&bytes)
        .map_err(|why| format!("{}: {why}", manifest_path.display()))
}

/// A git dependency: its ref resolved to a commit, its manifest read from a checkout of it
/// (returned too, for the fetch). Keyed by pnpm's id for it (`git+<repo>#<commit>`).
pub fn git(spec: &crate::git::GitSpec) -> Result<(Local, crate::git::Checkout), String> {
    let source = crate::git::GitSource {
        repo: spec.repo.clone(),
        commit: crate::git::resolve_commit(spec)?,
        path: spec.path.clone(),
    };
    let checkout = crate::git::Checkout::new(&source)?;
    let mut manifest = read_dir_manifest(checkout.package_dir())
        .map_err(|why| format!("{why} (at commit {})", source.commit))?;
    let version = source.id();
    manifest.git = Some(source);
    let local = Local::Package {
        version,
        manifest: Arc::new(manifest),
    };
    Ok((local, checkout))
}

/// The manifest of the `package.json` at the root of a package tarball.
fn tarball_manifest(bytes: &[u8]) -> Result<VersionManifest, String> {
    let mut found: Option<Vec<u8>> = None;
    let result = decode_tarball(bytes, None, &DecodeLimits::default(), |entry| {
        match entry {
            DecodedEntry::Buffered(file) if file.path == "package.json" => found = Some(file.data),
            DecodedEntry::Buffered(_) => {}
            // Only package.json is kept; other large entries are read through, not buffered.
            DecodedEntry::Streamed { path, content, .. } if path == "package.json" => {
                let mut data = Vec::new();
                content.read_to_end(&mut data).map_err(SinkError::Read)?;
                found = Some(data);
            }
            DecodedEntry::Streamed { content, .. } => {
                std::io::copy(content, &mut std::io::sink()).map_err(SinkError::Read)?;
            }
        }
        Ok::<(), SinkError<String>>(())
    });
    match result {
        Ok(_) => {}
        Err(crate::decode::DecodeError::Io(error)) => return Err(error.to_string()),
        Err(crate::decode::DecodeError::BadEntry(why)) => return Err(why),
        Err(_) => return Err("it could not be read".to_owned()),
    }
    let bytes = found.ok_or("it has no package.json")?;
    VersionManifest::from_package_json(&bytes)
}

/// npm-package-arg's file specs: a path (`.`, `/`, `~/`), or a name ending like a tarball
/// that is not a URL or another protocol's spec (`https:`, `npm:`).
fn is_bare_path(specifier: &str) -> bool {
    let lower = specifier.to_ascii_lowercase();
    specifier.starts_with('.')
        || specifier.starts_with('/')
        || specifier.starts_with("~/")
        || (!specifier.contains(':')
            && [".tgz", ".tar.gz", ".tar"]
                .iter()
                .any(|extension| lower.ends_with(extension)))
}

fn slashed(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_as_pnpm_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("sub/inner")).unwrap();
        std::fs::create_dir_all(dir.path().join("ext")).unwrap();
        std::fs::write(
            root.join("sub/inner/package.json"),
            r#"{"name":"inner","version":"0.1.0","dependencies":{"a":"^1"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("ext/package.json"), r#"{"name":"extpkg"}"#).unwrap();
        let link = |specifier: &str| match classify(specifier, &root, ".") {
            Some(Ok(Local::Link(path))) => path,
            _ => panic!("{specifier} is not a link"),
        };
        let package = |specifier: &str, project: &str| match classify(specifier, &root, project) {
            Some(Ok(Local::Package { version, manifest })) => (version, manifest.name.clone()),
            _ => panic!("{specifier} is not a package"),
        };
        assert_eq!(link("link:./sub/inner"), "sub/inner");
        assert_eq!(link("link:../ext/"), "../ext");
        assert_eq!(link("../ext"), "../ext");
        assert_eq!(
            package("file:./sub/inner/", "."),
            ("file:sub/inner".to_owned(), "inner".to_owned())
        );
        assert_eq!(
            package("file:../../../ext", "sub/inner"),
            ("file:../ext".to_owned(), "extpkg".to_owned())
        );
        assert!(classify("^1.0.0", &root, ".").is_none());
        assert!(classify("latest", &root, ".").is_none());
        assert!(classify("https://registry.example/a/-/a-1.0.0.tgz", &root, ".").is_none());
        assert!(matches!(
            classify("file:../missing", &root, "."),
            Some(Err(_))
        ));
    }
}
