//! Packument parsing on arbitrary bytes: errors are fine, panics are not. A document that parses
//! keeps a compact copy that reads as the document did: each version's manifest is the one its
//! original object gives, and compacting the copy again changes nothing.
#![no_main]

use std::collections::HashMap;

use flowpm_stages::packument::{Packument, VersionManifest};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

#[derive(serde::Deserialize)]
struct Original {
    #[serde(default)]
    versions: Option<Entries>,
}

/// An object's entries in document order, values as written.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(V)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(packument) = Packument::parse(data) else {
        return;
    };
    let again = Packument::parse(packument.body()).expect("the compact copy parses");
    assert_eq!(
        again.body(),
        packument.body(),
        "compacting the copy changed it"
    );
    assert_eq!(again.dist_tags, packument.dist_tags);
    assert_eq!(again.versions.len(), packument.versions.len());
    // As the metadata cache reads it back: as it is, the same versions and manifests.
    let cached = Packument::parse_compacted(packument.body()).expect("the compact copy reads");
    assert_eq!(cached.body(), packument.body());
    assert_eq!(cached.dist_tags, packument.dist_tags);
    assert_eq!(cached.versions.len(), packument.versions.len());
    let both = again.versions.iter().zip(&cached.versions);
    for (a, (b, c)) in packument.versions.iter().zip(both) {
        assert_eq!((&a.version, a.published), (&b.version, b.published));
        assert_eq!((&a.version, a.published), (&c.version, c.published));
        let (kept, read) = (packument.manifest(a), cached.manifest(c));
        assert_eq!(format!("{kept:?}"), format!("{read:?}"));
    }
    // The original objects, as they are in the document, where one key alone names a version
    // (with several, the last wins).
    let Ok(original) = serde_json::from_slice::<Original>(data) else {
        return;
    };
    let mut by_version: HashMap<*const _, Vec<&RawValue>> = HashMap::new();
    for (key, value) in original.versions.iter().flat_map(|entries| &entries.0) {
        if let Some(published) = packument.version(key) {
            by_version
                .entry(published as *const _)
                .or_default()
                .push(value);
        }
    }
    for published in &packument.versions {
        let Some([value]) = by_version.get(&(published as *const _)).map(Vec::as_slice) else {
            continue;
        };
        let expected = VersionManifest::from_version_json(
            value.get().as_bytes(),
            &packument.name,
            &published.version.to_string(),
        );
        let kept = packument.manifest(published);
        assert_eq!(
            format!("{kept:?}"),
            format!("{expected:?}"),
            "{}",
            published.version
        );
    }
});
