//! pnpm's `overrides` (the `overrides` map of `pnpm-workspace.yaml`; pnpm 12 ignores
//! package.json's `pnpm.overrides`): replace the specifier of a dependency wherever it occurs,
//! or only under a given parent.
//!
//! Keys: `name`, `name@range` (only where the requested range is a subset of `range`),
//! `parent>name`, `parent@range>name`. Values: a specifier (`1.0.0`, `^2`, `npm:other@1`), `-`
//! (drop the dependency) or `$name` (the root project's own specifier for `name`). A rule with a
//! parent wins over one without. The lockfile records the map as written
//! ([`Overrides::pairs`]), and importers record the overridden specifiers, as pnpm does.

use std::borrow::Cow;
use std::collections::HashSet;

use nodejs_semver::{Range, Version};

use crate::manifest::Manifest;

#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// The map as configured, in its order, with `$name` values replaced by what they refer
    /// to: what the lockfile's `overrides` says (pnpm writes it so).
    pub pairs: Vec<(String, String)>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    parent: Option<Selector>,
    target: Selector,
    /// `None`: the dependency is dropped (`-`).
    value: Option<String>,
}

/// `name` or `name@range`: a package by name, and optionally by version.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub name: String,
    pub range: Option<Range>,
}

impl Selector {
    /// Parses `name` or `name@range` (a scope's `@` is not a separator).
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let (name, range) = match text.get(1..).and_then(|rest| rest.rfind('@')) {
            Some(at) => (&text[..=at], Some(&text[at + 2..])),
            None => (text, None),
        };
        crate::plan::validate_package_name(name).map_err(|error| error.to_string())?;
        let range = match range {
            Some(range) => {
                Some(Range::parse(range).map_err(|_| format!("`{range}` is not a version range"))?)
            }
            None => None,
        };
        Ok(Selector {
            name: name.to_owned(),
            range,
        })
    }

    /// Whether `version` is in the range (any version when there is none).
    pub(crate) fn allows_version(&self, version: &str) -> bool {
        self.range
            .as_ref()
            .is_none_or(|range| Version::parse(version).is_ok_and(|v| range.satisfies(&v)))
    }
}

impl Overrides {
    /// Parses the configured map; `$name` values refer to `root`'s dependencies.
    pub fn parse(mut pairs: Vec<(String, String)>, root: &Manifest) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(pairs.len());
        for (key, value) in &mut pairs {
            let (parent, target) = match split_parent(key) {
                Some((parent, target)) => (Some(selector(parent, key)?), selector(target, key)?),
                None => (None, selector(key, key)?),
            };
            let value = match value.as_str() {
                "-" => None,
                reference if reference.starts_with('$') => {
                    let name = &reference[1..];
                    let spec = [
                        &root.dependencies,
                        &root.dev_dependencies,
                        &root.optional_dependencies,
                    ]
                    .into_iter()
                    .find_map(|group| group.get(name))
                    .ok_or_else(|| {
                        format!(
                            "override `{key}: {value}` refers to `{name}`, which is not a dependency of the root package.json"
                        )
                    })?;
                    *value = spec.clone();
                    Some(spec.clone())
                }
                spec => Some(spec.to_owned()),
            };
            rules.push(Rule {
                parent,
                target,
                value,
            });
        }
        Ok(Overrides { pairs, rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The specifier to use for dependency `alias@spec` of `parent` (`(name, version)`; `None`
    /// for a project's own dependency); `None` when an override drops it.
    pub fn apply<'s>(
        &self,
        parent: Option<(&str, &str)>,
        alias: &str,
        spec: &'s str,
    ) -> Option<Cow<'s, str>> {
        let matches = |rule: &&Rule| {
            rule.target.name == alias
                && rule.target.range.as_ref().is_none_or(|range| {
                    Range::parse(spec).is_ok_and(|requested| range.allows_all(&requested))
                })
        };
        let with_parent = self.rules.iter().filter(matches).find(|rule| {
            rule.parent.as_ref().is_some_and(|selector| {
                parent.is_some_and(|(name, version)| {
                    selector.name == name && selector.allows_version(version)
                })
            })
        });
        let rule = with_parent.or_else(|| {
            self.rules
                .iter()
                .filter(matches)
                .find(|rule| rule.parent.is_none())
        });
        match rule {
            None => Some(Cow::Borrowed(spec)),
            Some(rule) => rule
                .value
                .as_deref()
                .map(|value| Cow::Owned(value.to_owned())),
        }
    }
}

/// The packages whose override rules differ between `before` (an old lockfile's `overrides`)
/// and `after` (a rule added, removed or given another value), for the rules keyed by a bare
/// name. pnpm 12.21.0 picks these again without preferring their old versions; a changed
/// `name@range` or `parent>name` rule leaves the old versions preferred, as for every other
/// package (RESOLVE-ORACLE.md §9).
pub fn changed_names(before: &[(String, String)], after: &[(String, String)]) -> HashSet<String> {
    let removed = before.iter().filter(|pair| !after.contains(pair));
    let added = after.iter().filter(|pair| !before.contains(pair));
    removed
        .chain(added)
        .map(|(key, _)| key)
        .filter(|key| {
            split_parent(key).is_none() && key.get(1..).is_none_or(|rest| !rest.contains('@'))
        })
        .cloned()
        .collect()
}

/// `parent>child`: the first `>` that is not part of a comparison (`>=1`, `@>1`).
fn split_parent(key: &str) -> Option<(&str, &str)> {
    let bytes = key.as_bytes();
    (1..bytes.len()).find_map(|index| {
        (bytes[index] == b'>'
            && bytes.get(index + 1) != Some(&b'=')
            && !matches!(bytes[index - 1], b'@' | b' ' | b'<' | b'>' | b'|'))
        .then(|| (&key[..index], &key[index + 1..]))
    })
}

fn selector(text: &str, key: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|error| format!("override `{key}`: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        let mut root = Manifest::default();
        root.dependencies.insert("r-lib".into(), "^1.1.0".into());
        Overrides::parse(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            &root,
        )
        .unwrap()
    }

    #[test]
    fn rules_apply_by_name_range_and_parent() {
        let rules = overrides(&[
            ("r-lib", "1.0.0"),
            ("r-wants-tilde>r-lib", "1.1.0"),
            ("@s/x@<2", "2.0.0"),
            ("p@>=2>q", "-"),
            ("ref", "$r-lib"),
        ]);
        let apply = |parent, alias, spec| rules.apply(parent, alias, spec).map(|s| s.into_owned());
        assert_eq!(apply(None, "r-lib", "^1.0.0").as_deref(), Some("1.0.0"));
        assert_eq!(
            apply(Some(("r-wants-tilde", "1.0.0")), "r-lib", "~1.1.0").as_deref(),
            Some("1.1.0")
        );
        assert_eq!(
            apply(Some(("other", "1.0.0")), "r-lib", "*").as_deref(),
            Some("1.0.0")
        );
        assert_eq!(apply(None, "@s/x", "^1.0.0").as_deref(), Some("2.0.0"));
        // `^2` is not a subset of `<2`: not overridden.
        assert_eq!(apply(None, "@s/x", "^2.0.0").as_deref(), Some("^2.0.0"));
        assert_eq!(apply(Some(("p", "2.1.0")), "q", "1"), None);
        assert_eq!(apply(Some(("p", "1.0.0")), "q", "1").as_deref(), Some("1"));
        assert_eq!(apply(None, "ref", "1").as_deref(), Some("^1.1.0"));
        assert_eq!(apply(None, "untouched", "^3").as_deref(), Some("^3"));
    }

    #[test]
    fn changed_rules_keyed_by_a_name_name_it() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = pairs(&[("r-lib", "1.0.0"), ("a@1>@s/b@^2", "2.1.0"), ("c", "-")]);
        let after = pairs(&[
            ("r-lib", "1.1.0"),
            ("c", "-"),
            ("@s/d@>=1", "1.0.0"),
            ("@s/e", "2.0.0"),
        ]);
        let mut changed: Vec<_> = changed_names(&before, &after).into_iter().collect();
        changed.sort();
        assert_eq!(changed, ["@s/e", "r-lib"]);
        assert!(changed_names(&before, &before).is_empty());
    }

    #[test]
    fn bad_rules_are_named() {
        let root = Manifest::default();
        let error = Overrides::parse(vec![("a".into(), "$missing".into())], &root).unwrap_err();
        assert!(error.contains("`missing`"), "{error}");
        let error = Overrides::parse(vec![("a@not a range!".into(), "1".into())], &root);
        assert!(error.is_err());
    }
}
