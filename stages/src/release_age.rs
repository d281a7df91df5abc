//! pnpm's `minimumReleaseAge` with `minimumReleaseAgeExclude` (pnpm-workspace.yaml): versions
//! published less than the minimum ago are avoided while an older one will do, except for
//! packages excluded by name (`*` matches any run of characters, as in `@eslint/*`, `?` any
//! one; `!name` stands for every other name) and versions excluded exactly (`webpack@4.47.0 || 5.102.1`).
//! A name is excluded when any entry matches it: pnpm 12 excluded `pkga` for `['pk*', '!pkga']`
//! (observed, fixtures/projects/RESOLVE-ORACLE.md).

use nodejs_semver::Version;

use crate::name_glob::matches;

#[derive(Debug, Default, Clone)]
pub struct ReleaseAge {
    /// Epoch seconds; versions published later are young. `None`: no minimum.
    cutoff: Option<i64>,
    /// Name patterns whose every version counts as old enough, and `!` patterns: every name
    /// but theirs.
    names: Vec<String>,
    not_names: Vec<String>,
    /// Exact versions that count as old enough, by package name.
    versions: Vec<(String, Vec<Version>)>,
}

impl ReleaseAge {
    /// No minimum age.
    pub fn none() -> &'static ReleaseAge {
        static NONE: ReleaseAge = ReleaseAge {
            cutoff: None,
            names: Vec::new(),
            not_names: Vec::new(),
            versions: Vec::new(),
        };
        &NONE
    }

    /// `exclude` as pnpm-workspace.yaml lists it; an entry whose versions do not parse is an
    /// error naming it.
    pub fn new(cutoff: Option<i64>, exclude: &[String]) -> Result<Self, String> {
        let mut age = ReleaseAge {
            cutoff,
            ..ReleaseAge::default()
        };
        for entry in exclude {
            let error = |why| format!("minimumReleaseAgeExclude: `{entry}` {why}");
            let (negated, pattern) = match entry.strip_prefix('!') {
                Some(pattern) => (true, pattern),
                None => (false, entry.as_str()),
            };
            // (A scope's `@` opens the name; a version list follows the next one.)
            let at = pattern
                .get(1..)
                .and_then(|rest| rest.find('@'))
                .map(|at| at + 1);
            let Some(at) = at else {
                match negated {
                    true => age.not_names.push(pattern.to_owned()),
                    false => age.names.push(pattern.to_owned()),
                }
                continue;
            };
            if negated || pattern[..at].contains('*') {
                return Err(error("lists versions of a name pattern"));
            }
            let versions = pattern[at + 1..]
                .split("||")
                .map(|text| exact_version(text.trim()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| error("lists a version that is not exact"))?;
            age.versions.push((pattern[..at].to_owned(), versions));
        }
        Ok(age)
    }

    /// The cutoff that applies to `name`'s versions: none when there is no minimum or the
    /// package is excluded by name (its publish times are not needed).
    pub fn cutoff_for(&self, name: &str) -> Option<i64> {
        let excluded = self.names.iter().any(|pattern| matches(pattern, name))
            || self.not_names.iter().any(|pattern| !matches(pattern, name));
        self.cutoff.filter(|_| !excluded)
    }

    /// Whether `version` of `name`, published at `published` (epoch seconds, if known), is old
    /// enough to be picked before younger ones are considered.
    pub fn is_mature(&self, name: &str, version: &Version, published: Option<i64>) -> bool {
        match (self.cutoff_for(name), published) {
            (Some(cutoff), Some(published)) if published > cutoff => self
                .versions
                .iter()
                .any(|(excluded, versions)| excluded == name && versions.contains(version)),
            _ => true,
        }
    }
}

/// A version written out whole (`1.2.3`, `v1.2.3`, `1.0.0-rc.1`): the semver crate's parser
/// also takes a version followed by other text, which pnpm refuses.
fn exact_version(text: &str) -> Option<Version> {
    let version = Version::parse(text).ok()?;
    let bare = text.trim_start_matches(['v', '=']);
    (version.to_string() == bare).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn exclusions_by_name_and_by_exact_version() {
        let exclude = [
            "@types/*".to_owned(),
            "webpack@4.47.0 || 5.102.1".to_owned(),
            "@s/x@1.0.0".to_owned(),
        ];
        let age = ReleaseAge::new(Some(1_000), &exclude).unwrap();
        let young = Some(2_000);
        assert_eq!(age.cutoff_for("@types/node"), None);
        assert_eq!(age.cutoff_for("webpack"), Some(1_000));
        assert!(age.is_mature("@types/node", &version("1.0.0"), young));
        assert!(age.is_mature("webpack", &version("5.102.1"), young));
        assert!(!age.is_mature("webpack", &version("5.102.2"), young));
        assert!(age.is_mature("webpack", &version("5.102.2"), Some(500)));
        assert!(age.is_mature("@s/x", &version("1.0.0"), young));
        assert!(!age.is_mature("react", &version("19.0.0"), young));
        // Without a publish time (a registry that has none) a version counts as old.
        assert!(age.is_mature("react", &version("19.0.0"), None));
        // No minimum: everything is old enough.
        let none = ReleaseAge::new(None, &exclude).unwrap();
        assert!(none.is_mature("react", &version("19.0.0"), young));
        for bad in [
            "webpack@^5",
            "webpack@5.0.0 - 5.2.0",
            "foo@1.0.0x",
            "@eslint/*@1.0.0",
        ] {
            let error = ReleaseAge::new(Some(1), &[bad.to_owned()]).unwrap_err();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
        assert!(ReleaseAge::new(Some(1), &["foo@v1.0.0 || 2.0.0-rc.1".to_owned()]).is_ok());
    }

    #[test]
    fn a_negated_pattern_matches_every_other_name() {
        let age = |patterns: &[&str]| {
            let exclude: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            ReleaseAge::new(Some(1_000), &exclude).unwrap()
        };
        // Any entry that matches excludes: `!@types/node` matches every other name.
        let some = age(&["@types/*", "!@types/node"]);
        assert_eq!(some.cutoff_for("@types/react"), None);
        assert_eq!(some.cutoff_for("@types/node"), None);
        assert_eq!(some.cutoff_for("react"), None);
        let only_negated = age(&["!react"]);
        assert_eq!(only_negated.cutoff_for("vue"), None);
        assert_eq!(only_negated.cutoff_for("react"), Some(1_000));
        assert_eq!(age(&[]).cutoff_for("react"), Some(1_000));
        // `?` is one character (pnpm 12 excluded `pkga` for `pkg?`, not for `pk?`).
        assert_eq!(age(&["pkg?"]).cutoff_for("pkga"), None);
        assert_eq!(age(&["pk?"]).cutoff_for("pkga"), Some(1_000));
    }
}
