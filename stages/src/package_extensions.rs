//! pnpm's `packageExtensions` (pnpm-workspace.yaml): dependencies, optional dependencies, peers
//! and peer metadata added to the manifests of published packages, for packages that forgot
//! to declare them.
//!
//! Keys are `name` or `name@range` (the version must satisfy the range). A field the package
//! declares itself wins over the extension's, name by name; the first matching extension wins
//! over later ones. The lockfile records `packageExtensionsChecksum`, which pnpm compares to
//! decide whether the lockfile is current. Observed against pnpm 12.21.0 (RESOLVE-ORACLE §15):
//! unknown fields are dropped before hashing, scalar ranges (`1`, `true`) are read as strings,
//! a null field is absent, and a non-boolean `optional` or a non-map extension is an error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::overrides::Selector;
use crate::packument::VersionManifest;

/// The setting as configured, parsed into rules.
#[derive(Debug, Clone)]
pub struct PackageExtensions {
    rules: Vec<(Selector, Extension)>,
    /// Indexes into `rules` by package name.
    by_name: HashMap<String, Vec<usize>>,
    /// `sha256-<base64>`, as pnpm writes `packageExtensionsChecksum`; `None` when the setting
    /// is absent or empty.
    pub checksum: Option<String>,
    /// Whether pnpm's compatibility database ([`compatibility_db`]) applies first, as it does
    /// unless `ignoreCompatibilityDb` is set. It is not part of the checksum.
    pub compatibility_db: bool,
}

impl Default for PackageExtensions {
    fn default() -> Self {
        PackageExtensions {
            rules: Vec::new(),
            by_name: HashMap::new(),
            checksum: None,
            compatibility_db: true,
        }
    }
}

/// pnpm's built-in compatibility database: the extensions of `@yarnpkg/extensions` 2.0.7 as
/// pnpm 12 embeds them (`stages/data/compat-db.json`, made by `scripts/compat-db.sh`; license
/// in `stages/data/NOTICE`). Peers and dependencies popular packages forgot to declare, such
/// as `supports-color` for `debug@<4.2.0`.
pub fn compatibility_db() -> &'static PackageExtensions {
    static DB: OnceLock<PackageExtensions> = OnceLock::new();
    DB.get_or_init(|| {
        let pairs: Vec<(String, Extension)> =
            serde_json::from_str(include_str!("../data/compat-db.json"))
                .expect("compat-db.json is valid (unit-tested)");
        let mut db =
            PackageExtensions::from_rules(pairs).expect("compat-db.json parses (unit-tested)");
        db.compatibility_db = false;
        db
    })
}

/// What one key adds. `BTreeMap`s: pnpm hashes them with sorted keys, and applies them by name.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    #[serde(default, deserialize_with = "ranges")]
    pub dependencies: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "ranges")]
    pub optional_dependencies: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "ranges")]
    pub peer_dependencies: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub peer_dependencies_meta: Option<BTreeMap<String, PeerMeta>>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct PeerMeta {
    #[serde(default)]
    pub optional: Option<bool>,
}

/// A map of names to ranges; pnpm reads an unquoted `1` or `true` as the string it spells.
fn ranges<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Flag(bool),
    }
    let map = Option::<BTreeMap<String, Scalar>>::deserialize(deserializer)?;
    Ok(map.map(|map| {
        map.into_iter()
            .map(|(name, value)| {
                let text = match value {
                    Scalar::Text(text) => text,
                    Scalar::Integer(number) => number.to_string(),
                    Scalar::Float(number) => number.to_string(),
                    Scalar::Flag(flag) => flag.to_string(),
                };
                (name, text)
            })
            .collect()
    }))
}

impl PackageExtensions {
    /// Parses the setting, in the file's order (`pairs`: key, extension), with its checksum.
    pub fn new(pairs: Vec<(String, Extension)>) -> Result<Self, String> {
        let checksum = (!pairs.is_empty()).then(|| checksum(&pairs));
        Ok(PackageExtensions {
            checksum,
            ..Self::from_rules(pairs)?
        })
    }

    /// The rules alone (the compatibility database is not checksummed).
    fn from_rules(pairs: Vec<(String, Extension)>) -> Result<Self, String> {
        let rules: Vec<(Selector, Extension)> = pairs
            .into_iter()
            .map(|(key, extension)| {
                let selector = Selector::parse(&key)
                    .map_err(|error| format!("packageExtensions `{key}`: {error}"))?;
                Ok((selector, extension))
            })
            .collect::<Result<_, String>>()?;
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, (selector, _)) in rules.iter().enumerate() {
            by_name
                .entry(selector.name.clone())
                .or_default()
                .push(index);
        }
        Ok(PackageExtensions {
            rules,
            by_name,
            ..PackageExtensions::default()
        })
    }

    /// Whether nothing applies (neither the setting nor the compatibility database): only
    /// under `ignoreCompatibilityDb` with no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.compatibility_db
    }

    /// The extensions for `name@version`: the compatibility database's first (pnpm applies it
    /// first, so its entries win), then the setting's, each in its order.
    pub fn matching<'s>(
        &'s self,
        name: &'s str,
        version: &'s str,
    ) -> impl Iterator<Item = &'s Extension> + 's {
        let db = self.compatibility_db.then(compatibility_db);
        db.into_iter()
            .flat_map(move |db| db.own_matching(name, version))
            .chain(self.own_matching(name, version))
    }

    /// This set's own rules for `name@version`.
    fn own_matching<'s>(
        &'s self,
        name: &'s str,
        version: &'s str,
    ) -> impl Iterator<Item = &'s Extension> + 's {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&index| &self.rules[index])
            .filter(move |(selector, _)| selector.allows_version(version))
            .map(|(_, extension)| extension)
    }

    /// `manifest` with what the extensions for it add, or `None` when none applies.
    pub fn extend(&self, manifest: &VersionManifest) -> Option<VersionManifest> {
        let mut matching = self.matching(&manifest.name, &manifest.version).peekable();
        matching.peek()?;
        let mut extended = manifest.clone();
        // A peer named only in peerDependenciesMeta is given `*` (packument.rs): a range an
        // extension adds replaces it, as in pnpm, where `peerDependencies` has no entry for it.
        // (A package declaring an optional peer as `*` explicitly looks the same.)
        let mut meta_only: HashSet<String> = manifest
            .peer_dependencies
            .iter()
            .filter(|(name, range)| range == "*" && manifest.optional_peers.contains(name))
            .map(|(name, _)| name.clone())
            .collect();
        for extension in matching {
            add_missing(&mut extended.dependencies, &extension.dependencies);
            add_missing(
                &mut extended.optional_dependencies,
                &extension.optional_dependencies,
            );
            for (name, range) in extension.peer_dependencies.iter().flatten() {
                let existing = extended
                    .peer_dependencies
                    .iter_mut()
                    .find(|(peer, _)| peer == name);
                match existing {
                    Some(entry) if meta_only.remove(name) => entry.1 = range.clone(),
                    Some(_) => {}
                    None => extended
                        .peer_dependencies
                        .push((name.clone(), range.clone())),
                }
            }
            for (name, meta) in extension.peer_dependencies_meta.iter().flatten() {
                if meta.optional != Some(true) || extended.optional_peers.contains(name) {
                    continue;
                }
                extended.optional_peers.push(name.clone());
                if !extended
                    .peer_dependencies
                    .iter()
                    .any(|(peer, _)| peer == name)
                {
                    extended
                        .peer_dependencies
                        .push((name.clone(), "*".to_owned()));
                    meta_only.insert(name.clone());
                }
            }
        }
        Some(extended)
    }
}

fn add_missing(pairs: &mut Vec<(String, String)>, added: &Option<BTreeMap<String, String>>) {
    for (name, range) in added.iter().flatten() {
        if !pairs.iter().any(|(existing, _)| existing == name) {
            pairs.push((name.clone(), range.clone()));
        }
    }
}

/// pnpm's checksum of the setting: sha256, in base64, of the `object-hash` serialisation of
/// the normalised setting (objects with their keys sorted, `string:<length>:<text>`,
/// `bool:true`, each entry `key:value,`), prefixed `sha256-`.
fn checksum(pairs: &[(String, Extension)]) -> String {
    let mut out = String::new();
    let mut keys: Vec<&(String, Extension)> = pairs.iter().collect();
    keys.sort_by(|a, b| js_order(&a.0, &b.0));
    let _ = write!(out, "object:{}:", keys.len());
    for (key, extension) in keys {
        string(&mut out, key);
        out.push(':');
        let fields: [(&str, Option<&BTreeMap<String, String>>); 3] = [
            ("dependencies", extension.dependencies.as_ref()),
            (
                "optionalDependencies",
                extension.optional_dependencies.as_ref(),
            ),
            ("peerDependencies", extension.peer_dependencies.as_ref()),
        ];
        let present = fields.iter().filter(|(_, map)| map.is_some()).count()
            + usize::from(extension.peer_dependencies_meta.is_some());
        let _ = write!(out, "object:{present}:");
        // The field names sort as listed, with `peerDependenciesMeta` last.
        for (field, map) in fields {
            if let Some(map) = map {
                string(&mut out, field);
                out.push(':');
                object(&mut out, map.iter(), |out, range| string(out, range));
                out.push(',');
            }
        }
        if let Some(meta) = &extension.peer_dependencies_meta {
            string(&mut out, "peerDependenciesMeta");
            out.push(':');
            object(&mut out, meta.iter(), |out, meta| match meta.optional {
                Some(optional) => {
                    out.push_str("object:1:");
                    string(out, "optional");
                    let _ = write!(out, ":bool:{optional},");
                }
                None => out.push_str("object:0:"),
            });
            out.push(',');
        }
        out.push(',');
    }
    let digest = Sha256::digest(out.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// An object whose keys are already sorted (a `BTreeMap`: byte order, which is JavaScript's
/// order for the names npm allows).
fn object<'v, V: 'v>(
    out: &mut String,
    entries: impl ExactSizeIterator<Item = (&'v String, &'v V)>,
    value: impl Fn(&mut String, &V),
) {
    let _ = write!(out, "object:{}:", entries.len());
    for (key, item) in entries {
        string(out, key);
        out.push(':');
        value(out, item);
        out.push(',');
    }
}

/// `string:<length in UTF-16 units, as JavaScript counts>:<text>`.
fn string(out: &mut String, text: &str) {
    let _ = write!(out, "string:{}:{text}", text.encode_utf16().count());
}

/// JavaScript's default sort order (UTF-16 code units).
fn js_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Setting(
        #[serde(deserialize_with = "crate::lockfile::ordered_pairs")] Vec<(String, Extension)>,
    );

    fn parse(yaml: &str) -> PackageExtensions {
        PackageExtensions::new(serde_saphyr::from_str::<Setting>(yaml).unwrap().0).unwrap()
    }

    /// Checksums pnpm 12.21.0 wrote for these settings (RESOLVE-ORACLE §15).
    #[test]
    fn checksums_are_pnpms() {
        let cases = [
            (
                "r-lib:\n  dependencies:\n    r-lib2: ^1.0.0\nr-core@1:\n  peerDependencies:\n    r-dom: ^1.0.0\n  peerDependenciesMeta:\n    r-dom:\n      optional: true\nr-dom@2:\n  dependencies:\n    r-lib: 1.0.0\n",
                "sha256-1Xt2wFWKi29FUrSFet+2l3Zv6fOueErw92+iFXT0Ygs=",
            ),
            (
                "r-lib:\n  dependencies:\n    r-lib2: 1\n  foo: [1, 2.5, x, null]\n",
                "sha256-yuZD0RAbBcnRto/q460Xq2XBLloaBGUWaDJzCl5haqc=",
            ),
            (
                "r-lib:\n  peerDependenciesMeta:\n    r-x:\n      optional: true\n      foo: 1\n    r-y: {}\n  dependencies: {}\n",
                "sha256-iG/HH+1hTvXuiTOECe/6ErLrjALhqwRHDvhqneSaaJw=",
            ),
            (
                "r-lib: {}\nr-core:\n  dependencies: null\n  peerDependenciesMeta:\n    r-x:\n      optional: true\n",
                "sha256-75GA02xbJAC2GXg7ShZ+CihFBSbO6GzD189mfrMSRCo=",
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(parse(yaml).checksum.as_deref(), Some(expected), "{yaml}");
        }
        assert_eq!(parse("{}").checksum, None);
    }

    #[test]
    fn the_package_and_earlier_extensions_win() {
        let extensions = parse(
            "a@1:\n  dependencies:\n    x: ^1\n    own: ^9\n  peerDependencies:\n    p: ^2\n  peerDependenciesMeta:\n    p:\n      optional: true\n    q:\n      optional: true\na:\n  dependencies:\n    x: ^2\n    y: ^3\n",
        );
        let manifest = VersionManifest {
            name: "a".to_owned(),
            version: "1.2.0".to_owned(),
            dependencies: vec![("own".to_owned(), "^1".to_owned())],
            ..VersionManifest::default()
        };
        let extended = extensions.extend(&manifest).unwrap();
        assert_eq!(
            extended.dependencies,
            [("own", "^1"), ("x", "^1"), ("y", "^3")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(
            extended.peer_dependencies,
            [("p", "^2"), ("q", "*")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(extended.optional_peers, ["p", "q"]);
        // `a@1` no longer matches version 2; `a` alone still does.
        let two = VersionManifest {
            version: "2.0.0".to_owned(),
            ..manifest
        };
        let extended = extensions.extend(&two).unwrap();
        assert_eq!(extended.dependencies.len(), 3);
        assert!(extended.peer_dependencies.is_empty());
        let other = VersionManifest {
            name: "b".to_owned(),
            ..two
        };
        assert!(extensions.extend(&other).is_none());
    }

    /// The database as pnpm 12.21.0 embeds it: 158 selectors, all of which parse. It applies
    /// before the setting: `debug@<4.2.0` gains an optional `supports-color` peer
    /// (metadata only), to which a configured peer range then applies.
    #[test]
    fn the_compatibility_db_applies_first_unless_ignored() {
        assert_eq!(compatibility_db().rules.len(), 158);
        let debug = |version: &str| VersionManifest {
            name: "debug".to_owned(),
            version: version.to_owned(),
            ..VersionManifest::default()
        };
        let peer = |range: &str| [("supports-color".to_owned(), range.to_owned())];
        let extended = PackageExtensions::default()
            .extend(&debug("2.6.9"))
            .unwrap();
        assert_eq!(extended.peer_dependencies, peer("*"));
        assert_eq!(extended.optional_peers, ["supports-color"]);
        let configured = parse("debug:\n  peerDependencies:\n    supports-color: ^9\n");
        let extended = configured.extend(&debug("2.6.9")).unwrap();
        assert_eq!(extended.peer_dependencies, peer("^9"));
        assert_eq!(extended.optional_peers, ["supports-color"]);
        let newer = configured.extend(&debug("4.3.0")).unwrap();
        assert_eq!(newer.peer_dependencies, peer("^9"));
        assert!(newer.optional_peers.is_empty());
        let ignored = PackageExtensions {
            compatibility_db: false,
            ..PackageExtensions::default()
        };
        assert!(ignored.extend(&debug("2.6.9")).is_none());
    }

    #[test]
    fn a_peer_named_only_in_its_metadata_takes_the_extensions_range() {
        let extensions = parse("a:\n  peerDependencies:\n    p: ^2\n");
        let manifest = VersionManifest {
            name: "a".to_owned(),
            version: "1.0.0".to_owned(),
            peer_dependencies: vec![("p".to_owned(), "*".to_owned())],
            optional_peers: vec!["p".to_owned()],
            ..VersionManifest::default()
        };
        let extended = extensions.extend(&manifest).unwrap();
        assert_eq!(
            extended.peer_dependencies,
            [("p".to_owned(), "^2".to_owned())]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for bad in [
            "a:\n  peerDependenciesMeta:\n    p:\n      optional: 1\n",
            "a: null\n",
            "a: [x]\n",
        ] {
            assert!(serde_saphyr::from_str::<Setting>(bad).is_err(), "{bad}");
        }
        let error =
            PackageExtensions::new(vec![("a@not a range!".to_owned(), Extension::default())])
                .unwrap_err();
        assert!(
            error.contains("packageExtensions `a@not a range!`"),
            "{error}"
        );
    }
}
