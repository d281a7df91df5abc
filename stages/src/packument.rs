//! npm packuments (a package's registry document): typed, borrowed parsing of the fields
//! resolution reads, and the version picking rules of npm and pnpm.
//!
//! Real registries often ignore the abbreviated-metadata `Accept` header, so full documents of
//! 10+ MB arrive (`next` is ~20 MB). Parsing borrows from the body wherever the JSON has no
//! escapes and skips every field not listed here, so the cost is one pass over the bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use nodejs_semver::{Range, Version};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use crate::release_age::ReleaseAge;

/// One package's registry document, reduced to what resolution needs.
///
/// Only the version list is parsed up front; a version's manifest is parsed from its span of
/// the kept body when first asked for. Resolution needs one or two versions of each package,
/// and building all 75k manifests of a 1,000-package graph (then freeing them) cost more than
/// the whole JSON scan (PERF.md).
#[derive(Debug)]
pub struct Packument {
    pub name: String,
    pub dist_tags: BTreeMap<String, String>,
    /// Every published version, ascending.
    pub versions: Vec<PublishedVersion>,
    /// Served from the metadata cache without asking the registry (`--prefer-offline`): a
    /// range it cannot satisfy is worth a fresh copy before it is an error.
    pub unrevalidated: bool,
    /// An abbreviated packument's top-level `modified` (seconds since the epoch): the last
    /// publish, all it says of time.
    pub modified: Option<i64>,
    /// Served as npm's abbreviated packument, which has no `time` map.
    pub abbreviated: bool,
    body: Vec<u8>,
}

#[derive(Debug)]
pub struct PublishedVersion {
    pub version: Version,
    /// Seconds since the epoch, from the `time` map (absent in some registries).
    pub published: Option<i64>,
    /// Whether the manifest carries a non-empty `deprecated`, looked up on first use: only
    /// versions a range accepts are ever asked (next's 2,600 versions were all scanned before).
    deprecated: std::sync::OnceLock<bool>,
    /// This version's object in the body.
    span: std::ops::Range<usize>,
    manifest: std::sync::OnceLock<Arc<VersionManifest>>,
}

/// The parts of one version's manifest that resolution and the lockfile need.
#[derive(Debug, Default, Clone)]
pub struct VersionManifest {
    pub name: String,
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    pub optional_dependencies: Vec<(String, String)>,
    pub peer_dependencies: Vec<(String, String)>,
    /// Peers marked `peerDependenciesMeta.<name>.optional`.
    pub optional_peers: Vec<String>,
    pub tarball: Option<String>,
    /// `dist.integrity`, else the sha1 `dist.shasum` as an SRI string.
    pub integrity: Option<String>,
    pub engines: Vec<(String, String)>,
    pub os: Option<Vec<String>>,
    pub cpu: Option<Vec<String>>,
    pub libc: Option<Vec<String>>,
    pub deprecated: Option<String>,
    pub has_bin: bool,
    pub bundled_dependencies: Vec<String>,
    /// A git dependency's repository and commit (`resolution: {commit, repo, type: git}`).
    pub git: Option<crate::git::GitSource>,
}

impl VersionManifest {
    /// A package.json from disk (a `file:` dependency) read as a registry version would be.
    pub fn from_package_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Identity<'a> {
            #[serde(borrow, default)]
            name: MaybeStr<'a>,
            #[serde(borrow, default)]
            version: MaybeStr<'a>,
        }
        let raw: RawVersion<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let identity: Identity<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let name = identity
            .name
            .0
            .filter(|name| !name.is_empty())
            .ok_or("its package.json has no `name`")?;
        // The name becomes directory names under node_modules.
        crate::plan::validate_package_name(&name).map_err(|error| error.to_string())?;
        let version = identity.version.0.unwrap_or(Cow::Borrowed("0.0.0"));
        Ok(raw.to_manifest(&name, &version))
    }

    /// One version's object of a registry document, read as [`Packument::manifest`] reads the
    /// compact copy (the `packument` fuzz target compares the two).
    #[doc(hidden)]
    pub fn from_version_json(text: &[u8], name: &str, version: &str) -> Self {
        // Only an object has fields (serde would read an array's items as the fields, in order).
        let raw: RawVersion<'_> = match text.trim_ascii_start().first() {
            Some(b'{') => serde_json::from_slice(text).unwrap_or_default(),
            _ => RawVersion::default(),
        };
        raw.to_manifest(name, version)
    }
}

/// Why a packument could not be used.
#[derive(Debug)]
pub struct PackumentError(pub String);

impl Packument {
    /// Parses a registry document and keeps a compact copy of it: the top-level fields read
    /// here and, of each version, only the fields [`RawVersion`] reads (`dist` cut to its
    /// tarball and hashes). A full document is mostly what installs never read (realworld's
    /// 145 MB of packuments keep 36.7 MB: no `scripts`, `devDependencies`, `contributors`,
    /// signatures), and the copy is what stays in memory and goes to the metadata cache.
    /// Compacting a compact document changes nothing.
    pub fn parse(body: &[u8]) -> Result<Self, PackumentError> {
        Self::read(body, true)
    }

    /// Parses a document [`Packument::parse`] compacted (the metadata cache's) and keeps it
    /// as it is: one pass that only notes where each version is, instead of rewriting them.
    /// Any other document reads the same too, only kept whole.
    pub fn parse_compacted(body: &[u8]) -> Result<Self, PackumentError> {
        Self::read(body, false)
    }

    fn read(body: &[u8], compact: bool) -> Result<Self, PackumentError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let seed = TopLevel {
            size: body.len(),
            // Spans into `body` itself when it is kept as it is.
            base: (!compact).then_some(body.as_ptr() as usize),
        };
        let raw = serde::de::DeserializeSeed::deserialize(seed, &mut deserializer)
            .and_then(|raw| deserializer.end().map(|()| raw))
            .map_err(|error| PackumentError(error.to_string()))?;
        let time_pairs: Pairs<'_> = typed(raw.time);
        let time: crate::fast_hash::FastMap<&str, i64> = time_pairs
            .0
            .iter()
            .filter_map(|(key, value)| Some((key.as_ref(), parse_iso_time(value)?)))
            .collect();
        let name = typed::<MaybeStr<'_>>(raw.name)
            .0
            .as_deref()
            .unwrap_or_default()
            .to_owned();
        let modified = typed::<MaybeStr<'_>>(raw.modified)
            .0
            .as_deref()
            .and_then(parse_iso_time);
        // Abbreviated whatever its media type says: a `modified` and no `time` map.
        let abbreviated = time_pairs.0.is_empty() && modified.is_some();
        let dist_tags = typed::<Pairs<'_>>(raw.dist_tags)
            .0
            .iter()
            .map(|(tag, value)| (tag.to_string(), value.to_string()))
            .collect();

        let compact = match raw.text.is_empty() {
            // Kept as it is (the spans are into `body`).
            true => body.to_vec(),
            // The versions came first; the other kept fields follow them.
            false => {
                let mut compact = raw.text;
                let top = [
                    ("name", raw.name),
                    ("dist-tags", raw.dist_tags),
                    ("modified", raw.modified),
                    ("time", raw.time),
                ];
                for (key, value) in top {
                    if let Some(value) = value {
                        compact.push(b',');
                        write_key(&mut compact, &Cow::Borrowed(key));
                        compact.extend_from_slice(value.get().as_bytes());
                    }
                }
                compact.push(b'}');
                compact.shrink_to_fit();
                compact
            }
        };

        let mut versions = Vec::with_capacity(raw.entries.len());
        for (key, version, span) in raw.entries {
            versions.push(PublishedVersion {
                published: time.get(key.as_ref()).copied(),
                deprecated: std::sync::OnceLock::new(),
                span,
                manifest: std::sync::OnceLock::new(),
                version,
            });
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        // A key given twice: the last one counts, as in a JSON object read into a map.
        versions.dedup_by(|later, earlier| {
            let same = later.version == earlier.version;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        Ok(Packument {
            name,
            dist_tags,
            versions,
            unrevalidated: false,
            modified,
            abbreviated,
            body: compact,
        })
    }

    /// Whether picking versions older than `cutoff` (see [`ReleaseAge::cutoff_for`]) needs the
    /// full document: this is an abbreviated one, modified after the cutoff (or not saying
    /// when), as pnpm 12 decides.
    pub fn needs_publish_times(&self, cutoff: Option<i64>) -> bool {
        cutoff.is_some_and(|cutoff| {
            self.abbreviated && self.modified.is_none_or(|modified| modified > cutoff)
        })
    }

    /// The manifest of one of this packument's versions (parsed on first use).
    pub fn manifest(&self, published: &PublishedVersion) -> Arc<VersionManifest> {
        published
            .manifest
            .get_or_init(|| {
                let text = &self.body[published.span.clone()];
                let version = published.version.to_string();
                Arc::new(VersionManifest::from_version_json(
                    text, &self.name, &version,
                ))
            })
            .clone()
    }

    pub fn is_deprecated(&self, published: &PublishedVersion) -> bool {
        *published.deprecated.get_or_init(|| {
            let text = &self.body[published.span.clone()];
            // Most versions never mention deprecation: a byte search spares them a parse.
            text.windows(12).any(|window| window == b"\"deprecated\"")
                && serde_json::from_slice::<DeprecationOnly<'_>>(text)
                    .is_ok_and(|v| v.deprecated.0.is_some_and(|text| !text.is_empty()))
        })
    }

    /// The compact document (written to the metadata cache).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn version(&self, text: &str) -> Option<&PublishedVersion> {
        self.published(&Version::parse(text).ok()?)
    }

    fn published(&self, wanted: &Version) -> Option<&PublishedVersion> {
        self.versions
            .binary_search_by(|candidate| candidate.version.cmp(wanted))
            .ok()
            .map(|index| &self.versions[index])
    }
}

/// What a dependency asks for, after `npm:` aliases are unwrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    Exact(String),
    Range(String),
    Tag(String),
}

/// Parses the version part of a registry specifier (`^1.2.0`, `1.2.3`, `latest`, `*`, ``).
pub fn parse_version_spec(spec: &str) -> Option<VersionSpec> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "*" || spec == "x" {
        return Some(VersionSpec::Range("*".to_owned()));
    }
    let bare = spec.trim_start_matches(['=', 'v']);
    // nodejs-semver parses a version prefix of `1.0.0 - 2.0.0`: an exact version is one token.
    if !bare.contains([' ', '|', '<', '>']) && Version::parse(bare).is_ok() {
        return Some(VersionSpec::Exact(bare.to_owned()));
    }
    if Range::parse(spec).is_ok() {
        return Some(VersionSpec::Range(spec.to_owned()));
    }
    // npm's tag names: anything URL-safe that is not a range.
    let tag_like = spec
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    tag_like.then(|| VersionSpec::Tag(spec.to_owned()))
}

/// How to choose among published versions.
#[derive(Debug, Clone)]
pub struct PickOptions<'a> {
    /// Versions younger than pnpm's `minimumReleaseAge` are only used when nothing older
    /// matches.
    pub release_age: &'a ReleaseAge,
    /// Versions already locked or chosen for this name: the highest one that satisfies wins.
    pub preferred: &'a [String],
}

impl Default for PickOptions<'_> {
    fn default() -> Self {
        PickOptions {
            release_age: ReleaseAge::none(),
            preferred: &[],
        }
    }
}

/// Picks the version `spec` resolves to, as pnpm does: an exact version as is; a tag through
/// `dist-tags`; for a range, a preferred version if one satisfies, else `latest` if it
/// satisfies, else the highest satisfying version that is not deprecated, else the highest.
pub fn pick_version<'p>(
    packument: &'p Packument,
    spec: &VersionSpec,
    options: &PickOptions<'_>,
) -> Option<&'p PublishedVersion> {
    match spec {
        VersionSpec::Exact(version) => packument.version(version),
        VersionSpec::Tag(tag) => {
            let tagged = packument.version(packument.dist_tags.get(tag)?)?;
            let mature = |candidate: &PublishedVersion| {
                let (version, published) = (&candidate.version, candidate.published);
                options
                    .release_age
                    .is_mature(&packument.name, version, published)
            };
            if mature(tagged) {
                return Some(tagged);
            }
            // A tag on a version too young: the highest old enough, whatever its major, as
            // pnpm 12 does (observed for `latest` and `next`); the tagged one if none is.
            let any = Range::any();
            pick_among(packument, &|c| any.satisfies(&c.version) && mature(c)).or(Some(tagged))
        }
        VersionSpec::Range(range) => {
            let range = Range::parse(range).ok()?;
            let preferred = options
                .preferred
                .iter()
                .filter_map(|text| Version::parse(text).ok())
                .filter(|version| range.satisfies(version))
                .max();
            if let Some(preferred) = preferred.and_then(|v| packument.published(&v)) {
                return Some(preferred);
            }
            pick_where(packument, options.release_age, |version| {
                range.satisfies(version)
            })
        }
    }
}

/// pnpm's choice among the versions `satisfies` accepts: `latest` if accepted, else the highest
/// one that is not deprecated, else the highest. Versions too young for `release_age` are only
/// considered when no older one is accepted.
pub fn pick_where<'p>(
    packument: &'p Packument,
    release_age: &ReleaseAge,
    satisfies: impl Fn(&Version) -> bool,
) -> Option<&'p PublishedVersion> {
    let mature = |candidate: &PublishedVersion| {
        release_age.is_mature(&packument.name, &candidate.version, candidate.published)
    };
    pick_among(packument, &|c| satisfies(&c.version) && mature(c))
        .or_else(|| pick_among(packument, &|c| satisfies(&c.version)))
}

fn pick_among<'p>(
    packument: &'p Packument,
    accepted: &dyn Fn(&PublishedVersion) -> bool,
) -> Option<&'p PublishedVersion> {
    let latest = packument
        .dist_tags
        .get("latest")
        .and_then(|text| packument.version(text))
        .filter(|latest| accepted(latest));
    // Deprecated versions only when nothing else matches (`@types/x` stubs are deprecated
    // `latest`s, and pnpm keeps the last real release).
    let live = |candidate: &&PublishedVersion| !packument.is_deprecated(candidate);
    latest
        .filter(live)
        .or_else(|| {
            packument
                .versions
                .iter()
                .rev()
                .filter(|c| accepted(c))
                .find(live)
        })
        .or(latest)
        .or_else(|| packument.versions.iter().rev().find(|c| accepted(c)))
}

/// `2020-01-01T00:00:00.000Z` -> seconds since the epoch (UTC only, as registries write it).
pub fn parse_iso_time(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A packument's top level: the fields kept, unparsed, and `versions` compacted as it is read
/// into `text`, which starts the compact document (`{"versions":{..}`; the rest is appended).
struct RawPackument<'a> {
    name: Option<&'a serde_json::value::RawValue>,
    dist_tags: Option<&'a serde_json::value::RawValue>,
    time: Option<&'a serde_json::value::RawValue>,
    modified: Option<&'a serde_json::value::RawValue>,
    text: Vec<u8>,
    /// Each parsable version's key, and its span in `text`, in document order.
    entries: Vec<(Cow<'a, str>, Version, std::ops::Range<usize>)>,
}

/// Reads a [`RawPackument`] from a document of `size` bytes.
struct TopLevel {
    size: usize,
    /// Where the document starts, when it is kept as it is: versions are not rewritten then,
    /// only their spans in it noted.
    base: Option<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel {
    type Value = RawPackument<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = RawPackument<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a packument object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        // Room for the whole document: only the pages written are ever touched, and the
        // text never moves while it grows.
        let mut text = Vec::new();
        if self.base.is_none() {
            text.reserve(self.size + 32);
            text.extend_from_slice(b"{\"versions\":");
        }
        let mut raw = RawPackument {
            name: None,
            dist_tags: None,
            time: None,
            modified: None,
            text,
            entries: Vec::new(),
        };
        let mut versions = false;
        while let Some(key) = map.next_key::<MaybeStr<'de>>()? {
            let slot = match key.0.as_deref() {
                Some("name") => &mut raw.name,
                Some("dist-tags") => &mut raw.dist_tags,
                Some("time") => &mut raw.time,
                Some("modified") => &mut raw.modified,
                Some("versions") => {
                    if std::mem::replace(&mut versions, true) {
                        return Err(A::Error::duplicate_field("versions"));
                    }
                    map.next_value_seed(VersionsSeed {
                        text: &mut raw.text,
                        entries: &mut raw.entries,
                        base: self.base,
                    })?;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(A::Error::custom(format!(
                    "duplicate field `{}`",
                    key.0.unwrap_or_default()
                )));
            }
            *slot = map.next_value::<Option<&'de serde_json::value::RawValue>>()?;
        }
        if !versions && self.base.is_none() {
            raw.text.extend_from_slice(b"{}");
        }
        Ok(raw)
    }
}

/// The fields of a version's manifest that [`RawVersion`] reads (`dist` is cut to its own).
fn is_version_field(key: &str) -> bool {
    matches!(
        key,
        "dependencies"
            | "optionalDependencies"
            | "peerDependencies"
            | "peerDependenciesMeta"
            | "engines"
            | "os"
            | "cpu"
            | "libc"
            | "deprecated"
            | "bin"
            | "directories"
            | "bundleDependencies"
            | "bundledDependencies"
    )
}

/// The fields of `dist` that [`RawDist`] reads.
fn is_dist_field(key: &str) -> bool {
    matches!(key, "tarball" | "integrity" | "shasum")
}

/// A kept top-level value read as `T` (its default when absent).
fn typed<'a, T: Deserialize<'a> + Default>(raw: Option<&'a serde_json::value::RawValue>) -> T {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default()
}

/// `"key":`, escaped as JSON needs. A key borrowed from the document had no escapes, so its
/// text is already a valid JSON string's.
#[allow(clippy::ptr_arg)] // Borrowed or owned is what says whether to escape.
fn write_key(out: &mut Vec<u8>, key: &Cow<'_, str>) {
    match key {
        Cow::Borrowed(key) => {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.push(b'"');
        }
        // Writing a `str` to a `Vec` cannot fail.
        Cow::Owned(key) => drop(serde_json::to_writer(&mut *out, key)),
    }
    out.push(b':');
}

/// Writes the `versions` object to `text`, each version cut to the fields
/// [`is_version_field`] names, and notes each parsable version's span in it.
struct VersionsSeed<'t, 'a> {
    text: &'t mut Vec<u8>,
    entries: &'t mut Vec<(Cow<'a, str>, Version, std::ops::Range<usize>)>,
    /// Set: nothing is written, spans are into the document that starts here.
    base: Option<usize>,
}

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for VersionsSeed<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for VersionsSeed<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.entries.reserve(map.size_hint().unwrap_or(0));
        let write = self.base.is_none();
        if write {
            self.text.push(b'{');
        }
        while let Some(key) = map.next_key::<MaybeStr<'a>>()? {
            // Unparsable versions (ancient packages) can never match a range: dropped.
            let version = key.0.as_deref().and_then(|key| Version::parse(key).ok());
            let (Some(key), Some(version)) = (key.0, version) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let span = match self.base {
                Some(base) => {
                    let value = map.next_value::<&'de serde_json::value::RawValue>()?.get();
                    let start = value.as_ptr() as usize - base;
                    start..start + value.len()
                }
                None => {
                    if !self.entries.is_empty() {
                        self.text.push(b',');
                    }
                    write_key(self.text, &key);
                    let start = self.text.len();
                    map.next_value_seed(Kept {
                        version: true,
                        out: &mut *self.text,
                    })?;
                    start..self.text.len()
                }
            };
            self.entries.push((key, version, span));
        }
        if write {
            self.text.push(b'}');
        }
        Ok(())
    }
}

/// Writes an object's listed fields (and `dist`'s, when listed among a version's) to `out` as
/// an object, values as they are in the document. Any other value becomes `{}`, which the
/// readers take as they took the value itself: as no fields.
struct Kept<'o> {
    /// A version's manifest, else its `dist`.
    version: bool,
    out: &'o mut Vec<u8>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Kept<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key::<MaybeStr<'de>>()? {
            let Some(key) = key.0 else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let dist = self.version && key == "dist";
            let kept = match self.version {
                true => dist || is_version_field(&key),
                false => is_dist_field(&key),
            };
            if !kept {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_key(self.out, &key);
            if dist {
                map.next_value_seed(Kept {
                    version: false,
                    out: &mut *self.out,
                })?;
            } else {
                let value = map.next_value::<&'de serde_json::value::RawValue>()?;
                self.out.extend_from_slice(value.get().as_bytes());
            }
        }
        self.out.push(b'}');
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.visit_unit()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"{}");
        Ok(())
    }
}

#[derive(Deserialize)]
struct DeprecationOnly<'a> {
    #[serde(borrow, default)]
    deprecated: MaybeStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawVersion<'a> {
    #[serde(borrow, default)]
    dependencies: Pairs<'a>,
    #[serde(borrow, default)]
    optional_dependencies: Pairs<'a>,
    #[serde(borrow, default)]
    peer_dependencies: Pairs<'a>,
    #[serde(borrow, default)]
    // Ordered, so that peers named only here are added in the same order every run.
    peer_dependencies_meta: Loose<BTreeMap<Cow<'a, str>, Loose<PeerMeta>>>,
    #[serde(borrow, default)]
    dist: Loose<RawDist<'a>>,
    #[serde(borrow, default)]
    engines: Pairs<'a>,
    #[serde(borrow, default)]
    os: StrList<'a>,
    #[serde(borrow, default)]
    cpu: StrList<'a>,
    #[serde(borrow, default)]
    libc: StrList<'a>,
    #[serde(borrow, default)]
    deprecated: MaybeStr<'a>,
    #[serde(default)]
    bin: Option<IgnoredAny>,
    #[serde(borrow, default)]
    directories: Loose<RawDirectories<'a>>,
    #[serde(borrow, default)]
    bundle_dependencies: StrList<'a>,
    #[serde(borrow, default)]
    bundled_dependencies: StrList<'a>,
}

#[derive(Deserialize, Default)]
struct PeerMeta {
    #[serde(default)]
    optional: Option<IgnoredBool>,
}

#[derive(Deserialize, Default)]
struct RawDist<'a> {
    #[serde(borrow, default)]
    tarball: MaybeStr<'a>,
    #[serde(borrow, default)]
    integrity: MaybeStr<'a>,
    #[serde(borrow, default)]
    shasum: MaybeStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawDirectories<'a> {
    #[serde(borrow, default)]
    bin: MaybeStr<'a>,
}

// Old packuments carry `engines` arrays, `"deprecated": false`, `"os": "linux"`, dependency maps
// with non-string values. The types below accept any JSON value and keep only the expected
// shape, so one odd field never rejects a whole document.

/// A string, borrowed when the JSON has no escapes; `None` for any other value.
#[derive(Default)]
struct MaybeStr<'a>(Option<Cow<'a, str>>);

/// String-to-string pairs of an object, in document order; empty for any other value.
#[derive(Default)]
struct Pairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// A list of strings (or one string); `All` for `true` (bundleDependencies).
#[derive(Default)]
enum StrList<'a> {
    #[default]
    Absent,
    Items(Vec<Cow<'a, str>>),
    All,
}

/// An object deserialized as `T`; `None` for any other value.
#[derive(Default)]
struct Loose<T>(Option<T>);

/// `true` only for the JSON value `true`.
struct IgnoredBool(bool);

macro_rules! ignore_scalars {
    ($value:ty, $default:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<$value, E> {
            Ok($default)
        }
    };
}

macro_rules! ignore_containers {
    ($value:ty, $default:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($default)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($default)
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for MaybeStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MaybeStr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            ignore_scalars!(MaybeStr<'a>, MaybeStr(None));
            ignore_containers!(MaybeStr<'a>, MaybeStr(None));
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<MaybeStr<'a>, MaybeStr<'a>>()? {
                    if let (Some(key), Some(value)) = (key.0, value.0) {
                        pairs.push((key, value));
                    }
                }
                Ok(Pairs(pairs))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Pairs::default())
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Pairs::default())
            }
            ignore_scalars!(Pairs<'a>, Pairs::default());
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrList<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = StrList<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<MaybeStr<'a>>()? {
                    items.extend(item.0);
                }
                Ok(StrList::Items(items))
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(StrList::Items(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrList::Items(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v { StrList::All } else { StrList::Absent })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(StrList::Absent)
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(StrList::Absent)
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(StrList::Absent)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StrList::Absent)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrList::Absent)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrList::Absent)
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Loose<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|v| Loose(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose(None))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Loose(None))
            }
            ignore_scalars!(Loose<T>, Loose(None));
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for IgnoredBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IgnoredBool;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(IgnoredBool(v))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(IgnoredBool(false))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IgnoredBool(false))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(IgnoredBool(false))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IgnoredBool(false))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(IgnoredBool(false))
            }
            ignore_containers!(IgnoredBool, IgnoredBool(false));
        }
        deserializer.deserialize_any(V)
    }
}

impl RawVersion<'_> {
    fn to_manifest(&self, name: &str, version: &str) -> VersionManifest {
        let pairs = |pairs: &Pairs<'_>| -> Vec<(String, String)> {
            pairs
                .0
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let list = |list: &StrList<'_>| -> Option<Vec<String>> {
            match list {
                StrList::Items(items) => Some(items.iter().map(|s| s.to_string()).collect()),
                _ => None,
            }
        };
        let text = |value: &MaybeStr<'_>| value.0.as_ref().map(|s| s.to_string());
        let dist = self.dist.0.as_ref();
        let integrity = dist.and_then(|dist| {
            text(&dist.integrity).or_else(|| dist.shasum.0.as_deref().and_then(sha1_hex_to_sri))
        });
        let bundled = match (&self.bundle_dependencies, &self.bundled_dependencies) {
            (StrList::Absent, other) | (other, _) => other,
        };
        let dependencies = pairs(&self.dependencies);
        let mut peer_dependencies = pairs(&self.peer_dependencies);
        let optional_peers: Vec<String> = self
            .peer_dependencies_meta
            .0
            .iter()
            .flatten()
            .filter(|(_, meta)| {
                meta.0
                    .as_ref()
                    .and_then(|meta| meta.optional.as_ref())
                    .is_some_and(|flag| flag.0)
            })
            .map(|(name, _)| name.to_string())
            .collect();
        // A peer named only in peerDependenciesMeta is a peer on any version (pnpm: `*`).
        for name in &optional_peers {
            if !peer_dependencies.iter().any(|(peer, _)| peer == name) {
                peer_dependencies.push((name.clone(), "*".to_owned()));
            }
        }
        VersionManifest {
            name: name.to_owned(),
            version: version.to_owned(),
            optional_dependencies: pairs(&self.optional_dependencies),
            peer_dependencies,
            optional_peers,
            tarball: dist.and_then(|dist| text(&dist.tarball)),
            integrity,
            // pnpm leaves out `engines` entries that allow anything.
            engines: pairs(&self.engines)
                .into_iter()
                .filter(|(_, range)| range != "*")
                .collect(),
            os: list(&self.os),
            cpu: list(&self.cpu),
            libc: list(&self.libc),
            deprecated: text(&self.deprecated).filter(|text| !text.is_empty()),
            has_bin: self.bin.is_some()
                || self
                    .directories
                    .0
                    .as_ref()
                    .is_some_and(|dirs| dirs.bin.0.is_some()),
            bundled_dependencies: match bundled {
                StrList::Items(names) => names.iter().map(|s| s.to_string()).collect(),
                StrList::All => dependencies.iter().map(|(k, _)| k.clone()).collect(),
                StrList::Absent => Vec::new(),
            },
            dependencies,
            git: None,
        }
    }
}

fn sha1_hex_to_sri(hex: &str) -> Option<String> {
    if hex.len() != 40 {
        return None;
    }
    let digest: Option<Vec<u8>> = (0..20)
        .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    let integrity = crate::integrity::Integrity {
        algorithm: crate::integrity::Algorithm::Sha1,
        digest: digest?,
    };
    Some(integrity.to_sri())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packument(latest: &str, versions: &[&str]) -> Packument {
        let versions: serde_json::Map<_, _> = versions
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    serde_json::json!({"version": v, "dist": {"integrity": format!("sha512-{v}")}}),
                )
            })
            .collect();
        let body = serde_json::json!({
            "name": "p", "dist-tags": {"latest": latest, "next": "3.0.0-rc.1"}, "versions": versions,
            "time": {"created": "2020-01-01T00:00:00.000Z", "unpublished": {"time": "x"}}
        });
        Packument::parse(body.to_string().as_bytes()).unwrap()
    }

    fn pick(p: &Packument, spec: &str) -> Option<String> {
        let spec = parse_version_spec(spec)?;
        pick_version(p, &spec, &PickOptions::default()).map(|v| v.version.to_string())
    }

    #[test]
    fn picks_like_pnpm() {
        let p = packument(
            "1.1.0",
            &[
                "1.0.0",
                "1.1.0",
                "1.2.0",
                "2.0.0-beta.1",
                "2.0.0",
                "3.0.0-rc.1",
            ],
        );
        // latest wins when it satisfies, even below the highest match.
        assert_eq!(pick(&p, "^1.0.0").as_deref(), Some("1.1.0"));
        assert_eq!(pick(&p, ">=1.1.0").as_deref(), Some("1.1.0"));
        assert_eq!(pick(&p, "~1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(pick(&p, "^2.0.0-beta.1").as_deref(), Some("2.0.0"));
        assert_eq!(pick(&p, "2.0.0-beta.1").as_deref(), Some("2.0.0-beta.1"));
        assert_eq!(pick(&p, "next").as_deref(), Some("3.0.0-rc.1"));
        assert_eq!(pick(&p, "1.0.0 - 1.2.0").as_deref(), Some("1.1.0"));
        assert_eq!(pick(&p, "<1.1.0 || >=2.0.0").as_deref(), Some("2.0.0"));
        assert_eq!(pick(&p, "^4.0.0"), None);
        assert_eq!(pick(&p, "nope"), None);
        let preferred = ["1.0.0".to_owned()];
        let options = PickOptions {
            preferred: &preferred,
            ..Default::default()
        };
        let spec = parse_version_spec("^1.0.0").unwrap();
        assert_eq!(
            pick_version(&p, &spec, &options)
                .unwrap()
                .version
                .to_string(),
            "1.0.0"
        );
    }

    #[test]
    fn reads_times_deprecation_and_duplicate_versions() {
        let body = br#"{"name":"d","dist-tags":{"latest":"1.1.0"},
            "versions":{"1.0.0":{"dist":{"tarball":"first"}},"1.1.0":{"deprecated":"use 2"},
                "1.0.0":{"dist":{"tarball":"second"}},"1.2.0":{"deprecated":""}},
            "time":{"created":"2019-01-01T00:00:00.000Z","1.0.0":"1970-01-02T00:00:01.000Z"}}"#;
        let p = Packument::parse(body).unwrap();
        let listed: Vec<_> = p.versions.iter().map(|v| v.version.to_string()).collect();
        assert_eq!(listed, ["1.0.0", "1.1.0", "1.2.0"]);
        // A key given twice: the last one counts, as in a map.
        let first = p.manifest(&p.versions[0]);
        assert_eq!(first.tarball.as_deref(), Some("second"));
        assert_eq!(p.versions[0].published, Some(86_401));
        assert_eq!(p.versions[1].published, None);
        assert!(!p.is_deprecated(&p.versions[0]));
        assert!(p.is_deprecated(&p.versions[1]));
        // An empty message is no deprecation (npm's un-deprecate).
        assert!(!p.is_deprecated(&p.versions[2]));
        // The deprecated latest is passed over for the highest live version.
        assert_eq!(pick(&p, "^1.0.0").as_deref(), Some("1.2.0"));
        // Versions published after the limit only when nothing older matches: 1.0.0 is too
        // young, so even the deprecated 1.1.0 goes first.
        let young = |p: &Packument, satisfies: fn(&Version) -> bool| {
            let age = ReleaseAge::new(Some(50_000), &[]).unwrap();
            pick_where(p, &age, satisfies).map(|v| v.version.to_string())
        };
        assert_eq!(young(&p, |v| v.minor() <= 1).as_deref(), Some("1.1.0"));
        assert_eq!(young(&p, |v| v.minor() == 0).as_deref(), Some("1.0.0"));
    }

    /// pnpm 12 (observed): a dist-tag on a version younger than `minimumReleaseAge` resolves to
    /// the highest version old enough, whatever its major; an exact version is taken as is.
    #[test]
    fn a_tag_on_a_young_version_falls_back_to_the_highest_old_enough() {
        let body = br#"{"name":"t","dist-tags":{"latest":"2.0.0","next":"3.0.0-rc.1"},
            "versions":{"1.0.0":{},"1.1.0":{},"2.0.0":{},"3.0.0-rc.1":{}},
            "time":{"1.0.0":"1970-01-01T00:00:10.000Z","1.1.0":"1970-01-01T00:00:20.000Z",
                "2.0.0":"1970-01-01T01:00:00.000Z","3.0.0-rc.1":"1970-01-01T02:00:00.000Z"}}"#;
        let p = Packument::parse(body).unwrap();
        let pick_aged = |spec: &str, cutoff: i64, exclude: &[String]| {
            let release_age = ReleaseAge::new(Some(cutoff), exclude).unwrap();
            let options = PickOptions {
                release_age: &release_age,
                preferred: &[],
            };
            let spec = parse_version_spec(spec).unwrap();
            pick_version(&p, &spec, &options).map(|v| v.version.to_string())
        };
        assert_eq!(pick_aged("latest", 100, &[]).as_deref(), Some("1.1.0"));
        assert_eq!(pick_aged("next", 100, &[]).as_deref(), Some("1.1.0"));
        assert_eq!(pick_aged("next", 5_000, &[]).as_deref(), Some("2.0.0"));
        assert_eq!(pick_aged("latest", 5_000, &[]).as_deref(), Some("2.0.0"));
        assert_eq!(pick_aged("2.0.0", 100, &[]).as_deref(), Some("2.0.0"));
        // Nothing old enough: the tagged version.
        assert_eq!(pick_aged("latest", 1, &[]).as_deref(), Some("2.0.0"));
        let excluded = ["t".to_owned()];
        assert_eq!(
            pick_aged("latest", 100, &excluded).as_deref(),
            Some("2.0.0")
        );
    }

    /// The compact copy reads as the document did, without the fields nothing reads, and
    /// compacting it again changes nothing.
    #[test]
    fn keeps_a_compact_document_that_reads_the_same() {
        let body = br#"{"_id":"c","name":"c","readme":"long text","dist-tags":{"latest":"1.0.0"},
            "versions":{"1.0.0":{"name":"c","version":"1.0.0","scripts":{"postinstall":"x"},
                "devDependencies":{"d":"1"},"dependencies":{"a":"^1","a\"b":"2"},
                "peerDependencies":{"p":"2"},"peerDependenciesMeta":{"p":{"optional":true}},
                "dist":{"tarball":"t.tgz","integrity":"sha512-x","signatures":[{"sig":"s"}],
                    "fileCount":3},"engines":{"node":">=18"},"os":["linux"],"cpu":"x64",
                "bin":{"c":"c.js"},"deprecated":"old","description":"says \"deprecated\""},
              "1.0.1-\u0062eta":{"dependencies":{"o":"1"},"optionalDependencies":{"q":"1"},"bundleDependencies":true,
                "directories":{"bin":"b"},"libc":["glibc"],"dist":"odd"},
              "not a version":{"dependencies":{}},
              "2.0.0":[{"x":"1"}]},
            "time":{"1.0.0":"2020-01-01T00:00:00.000Z"},"users":{"x":true}}"#;
        let p = Packument::parse(body).unwrap();
        let text = std::str::from_utf8(p.body()).unwrap();
        for gone in [
            "readme",
            "scripts",
            "devDependencies",
            "signatures",
            "fileCount",
            "description",
            "users",
            "_id",
            "not a version",
        ] {
            assert!(!text.contains(gone), "{gone} kept in {text}");
        }
        let again = Packument::parse(p.body()).unwrap();
        assert_eq!(again.body(), p.body());
        assert_eq!(again.dist_tags, p.dist_tags);
        // As the metadata cache reads it back: kept as it is.
        let cached = Packument::parse_compacted(p.body()).unwrap();
        assert_eq!(cached.body(), p.body());
        assert_eq!(cached.modified, p.modified);
        assert_eq!(p.name, "c");

        // Each manifest as read from the original version object.
        let original: serde_json::Value = serde_json::from_slice(body).unwrap();
        let listed: Vec<_> = p.versions.iter().map(|v| v.version.to_string()).collect();
        assert_eq!(listed, ["1.0.0", "1.0.1-beta", "2.0.0"]);
        let reread = again.versions.iter().zip(&cached.versions);
        for (published, (reread, from_cache)) in p.versions.iter().zip(reread) {
            let key = published.version.to_string();
            let text = original["versions"][&key].to_string();
            let version = published.version.to_string();
            let expected = VersionManifest::from_version_json(text.as_bytes(), "c", &version);
            assert_eq!(
                format!("{:?}", p.manifest(published)),
                format!("{expected:?}")
            );
            assert_eq!(
                format!("{:?}", again.manifest(reread)),
                format!("{expected:?}")
            );
            let cached_manifest = cached.manifest(from_cache);
            assert_eq!(format!("{cached_manifest:?}"), format!("{expected:?}"));
            assert_eq!(cached.is_deprecated(from_cache), key == "1.0.0");
            assert_eq!(from_cache.published, published.published);
            assert_eq!(p.is_deprecated(published), key == "1.0.0");
            assert_eq!(published.published, reread.published);
        }
        let manifest = p.manifest(&p.versions[0]);
        assert_eq!(manifest.tarball.as_deref(), Some("t.tgz"));
        assert_eq!(manifest.dependencies.len(), 2);
        assert_eq!(manifest.optional_peers, ["p"]);
        assert!(manifest.has_bin);
        assert_eq!(p.versions[0].published, Some(1_577_836_800));
        let beta = p.manifest(&p.versions[1]);
        assert_eq!(beta.bundled_dependencies, ["o"]);
        assert!(beta.has_bin && beta.tarball.is_none());
        // A version that is not an object has no fields, whichever way it is read.
        assert!(p.manifest(&p.versions[2]).dependencies.is_empty());
    }

    #[test]
    fn parses_lenient_fields_and_times() {
        let body = br#"{"name":"old","versions":{"0.1.0":{"engines":["node >=0.4"],"os":"linux",
            "dependencies":{"a":"1","b":{"bad":1}},"deprecated":false,"bin":"x.js",
            "peerDependenciesMeta":{"p":{"optional":true}},"dist":{"shasum":"0123456789abcdef0123456789abcdef01234567"}}}}"#;
        let p = Packument::parse(body).unwrap();
        let manifest = p.manifest(&p.versions[0]);
        assert!(manifest.engines.is_empty());
        assert_eq!(manifest.os.as_deref(), Some(&["linux".to_owned()][..]));
        // One bad value drops the whole map rather than the document.
        assert!(manifest.deprecated.is_none());
        assert!(manifest.has_bin);
        assert_eq!(manifest.optional_peers, ["p"]);
        assert!(
            manifest
                .integrity
                .as_deref()
                .unwrap()
                .starts_with("sha1-ASNFZ4mrze8BI0VniavN7wEjRWc=")
        );
        assert_eq!(parse_iso_time("1970-01-02T00:00:01.000Z"), Some(86_401));
        assert_eq!(
            parse_iso_time("2020-01-01T00:00:00.000Z"),
            Some(1_577_836_800)
        );
        assert!(Packument::parse(b"{\"versions\": [").is_err());
    }
}
