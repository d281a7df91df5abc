//! `pnpm-lock.yaml` version 9 for registry packages: every field pnpm writes for them, so that
//! [`crate::lockfile_write::to_yaml`] can write the file back byte for byte.
//!
//! Maps are `BTreeMap`s where pnpm sorts keys (its `sortLockfileKeys` sorts every map below
//! `importers`, `packages` and `snapshots`); lists and `overrides` keep pnpm's order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::InstallError;

/// A parsed `pnpm-lock.yaml`, kept as pnpm wrote it (keys are depPaths).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lockfile {
    pub lockfile_version: LockfileVersion,
    #[serde(default)]
    pub settings: Option<LockfileSettings>,
    /// The catalog entries the projects use: catalog -> package -> range and version.
    #[serde(default)]
    pub catalogs: BTreeMap<String, BTreeMap<String, ImporterDependency>>,
    /// In the order of the project's configuration: pnpm does not sort this map.
    #[serde(default, deserialize_with = "ordered_pairs")]
    pub overrides: Vec<(String, String)>,
    #[serde(default)]
    pub package_extensions_checksum: Option<String>,
    /// `name@version` (or `name`) -> the sha256 of its patch file ([`crate::patch::hash`]).
    #[serde(default)]
    pub patched_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub pnpmfile_checksum: Option<String>,
    #[serde(default)]
    pub importers: BTreeMap<String, Importer>,
    #[serde(default)]
    pub packages: BTreeMap<String, PackageEntry>,
    #[serde(default)]
    pub snapshots: BTreeMap<String, SnapshotEntry>,
}

/// pnpm writes `'9.0'` (a string); older tools sometimes wrote a number.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum LockfileVersion {
    Text(String),
    Number(f64),
    #[default]
    Missing,
}

impl LockfileVersion {
    pub fn as_text(&self) -> String {
        match self {
            LockfileVersion::Text(text) => text.clone(),
            LockfileVersion::Number(number) => number.to_string(),
            LockfileVersion::Missing => "(missing)".to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockfileSettings {
    #[serde(default)]
    pub auto_install_peers: Option<bool>,
    #[serde(default)]
    pub exclude_links_from_lockfile: Option<bool>,
    /// Written only when enabled.
    #[serde(default)]
    pub inject_workspace_packages: Option<bool>,
    /// Written only when not pnpm's default (1000).
    #[serde(default)]
    pub peers_suffix_max_length: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Importer {
    #[serde(default)]
    pub dependencies: BTreeMap<String, ImporterDependency>,
    #[serde(default)]
    pub dev_dependencies: BTreeMap<String, ImporterDependency>,
    #[serde(default)]
    pub optional_dependencies: BTreeMap<String, ImporterDependency>,
}

#[derive(Debug, Deserialize)]
pub struct ImporterDependency {
    pub specifier: String,
    pub version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageEntry {
    #[serde(default)]
    pub resolution: Resolution,
    /// Present when the key is not `name@version` (tarball and git dependencies).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub engines: BTreeMap<String, String>,
    /// `os` / `cpu` / `libc` keep the manifest's order.
    #[serde(default)]
    pub os: Option<Vec<String>>,
    #[serde(default)]
    pub cpu: Option<Vec<String>>,
    #[serde(default)]
    pub libc: Option<Vec<String>>,
    /// The registry's deprecation message.
    #[serde(default)]
    pub deprecated: Option<String>,
    #[serde(default)]
    pub has_bin: bool,
    #[serde(default)]
    pub bundled_dependencies: Option<BundledDependencies>,
    /// Only the names matter to the installer (a snapshot's peers are already resolved).
    #[serde(default)]
    pub peer_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub peer_dependencies_meta: BTreeMap<String, PeerDependencyMeta>,
}

/// A manifest's `bundledDependencies`: a list of names (kept in its order) or `true` for all.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BundledDependencies {
    Names(Vec<String>),
    All(bool),
}

#[derive(Debug, Default, Deserialize)]
pub struct PeerDependencyMeta {
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resolution {
    #[serde(default)]
    pub integrity: Option<String>,
    #[serde(default)]
    pub tarball: Option<String>,
    /// `type: directory` (a `file:` directory dependency) or `git`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A directory resolution's path, relative to the lockfile's directory.
    #[serde(default)]
    pub directory: Option<String>,
    /// A git resolution's commit, repository and directory inside it.
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}

impl Resolution {
    /// The git repository and commit of a `type: git` resolution (`None` for other types),
    /// refused when incomplete or unsafe to hand to git ([`crate::git::GitSource::validate`]).
    pub fn git(&self) -> Result<Option<crate::git::GitSource>, String> {
        if self.kind.as_deref() != Some("git") {
            return Ok(None);
        }
        let (Some(repo), Some(commit)) = (&self.repo, &self.commit) else {
            return Err("a git resolution needs its `repo` and `commit`".to_owned());
        };
        let source = crate::git::GitSource {
            repo: repo.clone(),
            commit: commit.clone(),
            path: self.path.clone(),
        };
        source.validate()?;
        Ok(Some(source))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotEntry {
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub optional_dependencies: BTreeMap<String, String>,
    /// Peers left unresolved below this snapshot; pnpm sorts them.
    #[serde(default)]
    pub transitive_peer_dependencies: Vec<String>,
    #[serde(default)]
    pub optional: bool,
}

/// Reads a map keeping its order (`overrides`, `packageExtensions`).
pub(crate) fn ordered_pairs<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<(String, V)>, D::Error> {
    struct Pairs<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_map(Pairs(std::marker::PhantomData))
}

/// Large lockfiles exceed serde-saphyr's default event budget (1M events): a 5,000-package
/// lockfile is ~400k events, so allow ample headroom while still bounding hostile input.
const MAX_EVENTS: usize = 50_000_000;

impl Lockfile {
    pub fn parse(text: &str, path: &Path) -> Result<Self, InstallError> {
        // The fast reader takes what pnpm writes; anything else, errors included, is read by
        // serde-saphyr, whose reading is authoritative.
        let lockfile = match crate::lockfile_read::parse(text) {
            Some(lockfile) => lockfile,
            None => Self::parse_yaml(text, path)?,
        };
        Self::check_version(lockfile, path)
    }

    /// Reads `text` with serde-saphyr only (the fuzz target compares the two readers).
    pub fn parse_yaml(text: &str, path: &Path) -> Result<Self, InstallError> {
        let mut budget = serde_saphyr::Budget::default();
        budget.max_events = MAX_EVENTS;
        budget.max_nodes = MAX_EVENTS;
        // A depPath key with a long peer suffix exceeds YAML's 1,024-character simple key.
        budget.simple_key_max_lookahead = 64 << 10;
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        serde_saphyr::from_str_with_options(text, options).map_err(|error| {
            InstallError::InvalidFile {
                path: path.to_path_buf(),
                message: error.to_string(),
            }
        })
    }

    fn check_version(lockfile: Self, path: &Path) -> Result<Self, InstallError> {
        let version = lockfile.lockfile_version.as_text();
        if !is_supported_version(&version) {
            return Err(InstallError::UnsupportedLockfileVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Ok(lockfile)
    }

    pub fn read(path: &Path) -> Result<Option<(Self, String)>, InstallError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(InstallError::io("read", path, error)),
        };
        let lockfile = Self::parse(&text, path)?;
        Ok(Some((lockfile, text)))
    }
}

/// Splits a depPath like `@scope/name@1.0.0(peer@2.0.0)` into name and version-with-peers.
/// A `lockfileVersion` flowpm reads: 9 or 9.x.
pub fn is_supported_version(version: &str) -> bool {
    version == "9" || version.starts_with("9.")
}

pub fn split_dep_path(dep_path: &str) -> Option<(&str, &str)> {
    let at = dep_path.get(1..)?.find('@')? + 1;
    Some((&dep_path[..at], &dep_path[at + 1..]))
}

/// The `packages:` key of a snapshot: its depPath without the peer suffix.
pub fn package_key(dep_path: &str) -> &str {
    // The version part never contains '(' except as the peer suffix; names cannot contain it.
    match dep_path.find('(') {
        Some(paren) => &dep_path[..paren],
        None => dep_path,
    }
}

/// Resolves a dependency reference found under `alias` (a snapshot's or importer's
/// `dependencies`) to the snapshot key it points to, following pnpm's `refToRelative`:
/// a bare version `1.0.0(peer@2)` belongs to `alias`; `name@1.0.0` is an alias target.
/// `link:` references have no snapshot.
pub fn reference_to_dep_path(alias: &str, reference: &str) -> Option<String> {
    if reference.starts_with("link:") {
        return None;
    }
    if reference.starts_with('@') {
        return Some(reference.to_owned());
    }
    let Some(at) = reference.find('@') else {
        return Some(format!("{alias}@{reference}"));
    };
    let before = |c: char| reference.find(c).is_none_or(|index| at < index);
    if before(':') && before('(') {
        Some(reference.to_owned())
    } else {
        Some(format!("{alias}@{reference}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_resolves_dep_paths() {
        assert_eq!(
            split_dep_path("@babel/core@7.0.0"),
            Some(("@babel/core", "7.0.0"))
        );
        assert_eq!(
            split_dep_path("a@1.0.0(b@2.0.0)"),
            Some(("a", "1.0.0(b@2.0.0)"))
        );
        assert_eq!(package_key("a@1.0.0(b@2.0.0)(c@1.0.0)"), "a@1.0.0");
        assert_eq!(
            reference_to_dep_path("a", "1.0.0").as_deref(),
            Some("a@1.0.0")
        );
        assert_eq!(
            reference_to_dep_path("a", "1.0.0(b@2.0.0)").as_deref(),
            Some("a@1.0.0(b@2.0.0)")
        );
        assert_eq!(
            reference_to_dep_path("foo", "lodash@4.17.21").as_deref(),
            Some("lodash@4.17.21")
        );
        assert_eq!(
            reference_to_dep_path("foo", "@s/x@1.0.0").as_deref(),
            Some("@s/x@1.0.0")
        );
        assert_eq!(
            reference_to_dep_path("x", "https://h.invalid/x.tgz").as_deref(),
            Some("x@https://h.invalid/x.tgz")
        );
        assert_eq!(reference_to_dep_path("x", "link:../x"), None);
    }

    #[test]
    fn parses_a_v9_lockfile_and_rejects_other_versions() {
        let text = r#"lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

importers:

  .:
    dependencies:
      react-dom:
        specifier: ^18.2.0
        version: 18.2.0(react@18.2.0)

packages:

  react-dom@18.2.0:
    resolution: {integrity: sha512-abc}
    peerDependencies:
      react: ^18.2.0

  '@esbuild/linux-x64@0.20.0':
    resolution: {integrity: sha512-def}
    engines: {node: '>=12'}
    cpu: [x64]
    os: [linux]

snapshots:

  react-dom@18.2.0(react@18.2.0):
    dependencies:
      react: 18.2.0

  '@esbuild/linux-x64@0.20.0':
    optional: true
"#;
        let lockfile = Lockfile::parse(text, Path::new("pnpm-lock.yaml")).unwrap();
        let importer = &lockfile.importers["."];
        assert_eq!(
            importer.dependencies["react-dom"].version,
            "18.2.0(react@18.2.0)"
        );
        let esbuild = &lockfile.packages["@esbuild/linux-x64@0.20.0"];
        assert_eq!(esbuild.cpu.as_deref(), Some(&["x64".to_owned()][..]));
        assert!(lockfile.snapshots["@esbuild/linux-x64@0.20.0"].optional);

        let error =
            Lockfile::parse("lockfileVersion: '6.0'\n", Path::new("x/pnpm-lock.yaml")).unwrap_err();
        assert!(error.to_string().contains("x/pnpm-lock.yaml"), "{error}");
        let error =
            Lockfile::parse("lockfileVersion: [\n", Path::new("pnpm-lock.yaml")).unwrap_err();
        assert!(error.to_string().contains("pnpm-lock.yaml"), "{error}");
    }
}
