//! pnpm catalogs: version ranges named once in pnpm-workspace.yaml (`catalog:` is the default
//! catalog, `catalogs:` holds named ones) and used from package.json as `catalog:` or
//! `catalog:<name>`.
//!
//! The importer keeps the specifier as written (`catalog:`); the lockfile's `catalogs` section
//! records each entry used, with its range and the version it resolved to, and a change of that
//! range makes the lockfile outdated (pnpm 12, checked in RESOLVE-ORACLE.md §10).

use std::collections::BTreeMap;

const PROTOCOL: &str = "catalog:";
const DEFAULT: &str = "default";

/// Catalog name -> package name -> range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogs(pub BTreeMap<String, BTreeMap<String, String>>);

/// A dependency's catalog entry: the catalog's name and the range it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub catalog: String,
    pub range: String,
}

impl Catalogs {
    /// From pnpm-workspace.yaml's `catalog` (the default catalog) and `catalogs`.
    pub fn new(
        default: BTreeMap<String, String>,
        mut named: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self, String> {
        if !default.is_empty() {
            if named
                .get(DEFAULT)
                .is_some_and(|entries| !entries.is_empty())
            {
                return Err(
                    "the default catalog is defined twice (`catalog` and `catalogs.default`)"
                        .to_owned(),
                );
            }
            named.insert(DEFAULT.to_owned(), default);
        }
        Ok(Catalogs(named))
    }

    /// `None` when `specifier` is not a `catalog:` one; else its entry, or why there is none.
    pub fn lookup(&self, alias: &str, specifier: &str) -> Option<Result<CatalogEntry, String>> {
        let name = specifier.strip_prefix(PROTOCOL)?.trim();
        let catalog = if name.is_empty() { DEFAULT } else { name };
        Some(
            self.0
                .get(catalog)
                .and_then(|entries| entries.get(alias))
                .map(|range| CatalogEntry {
                    catalog: catalog.to_owned(),
                    range: range.clone(),
                })
                .ok_or_else(|| {
                    format!(
                        "no catalog entry `{alias}` in the `{catalog}` catalog of pnpm-workspace.yaml"
                    )
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn looks_up_default_and_named_catalogs() {
        let named = BTreeMap::from([("legacy".to_owned(), map(&[("a", "1.0.0")]))]);
        let catalogs = Catalogs::new(map(&[("a", "^2.0.0")]), named).unwrap();
        let entry = |catalog: &str, range: &str| {
            Some(Ok(CatalogEntry {
                catalog: catalog.to_owned(),
                range: range.to_owned(),
            }))
        };
        assert_eq!(catalogs.lookup("a", "catalog:"), entry("default", "^2.0.0"));
        assert_eq!(
            catalogs.lookup("a", "catalog:default"),
            entry("default", "^2.0.0")
        );
        assert_eq!(
            catalogs.lookup("a", "catalog:legacy"),
            entry("legacy", "1.0.0")
        );
        assert_eq!(catalogs.lookup("a", "^1.0.0"), None);
        let missing = catalogs.lookup("b", "catalog:").unwrap().unwrap_err();
        assert!(
            missing.contains("`b` in the `default` catalog"),
            "{missing}"
        );
        assert!(catalogs.lookup("a", "catalog:nope").unwrap().is_err());
    }

    #[test]
    fn refuses_two_default_catalogs() {
        let named = BTreeMap::from([("default".to_owned(), map(&[("a", "1.0.0")]))]);
        assert!(Catalogs::new(map(&[("a", "^2.0.0")]), named).is_err());
    }
}
