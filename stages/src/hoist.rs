//! Hoisting: privately into `node_modules/.pnpm/node_modules` (pnpm's `hoistPattern`, default
//! `*`), so that packages relying on undeclared dependencies still resolve them, and publicly
//! into the root `node_modules` (`publicHoistPattern`, default none; `shamefullyHoist: true` is
//! `*`).
//!
//! The rule, observed from pnpm 12: every snapshot, ordered by depth from the project (direct
//! dependencies are depth 0) and then by depPath byte order, offers its dependencies (then its
//! optional dependencies) in lockfile order; the first offer of an alias wins, and goes public
//! if `publicHoistPattern` matches it, else private if `hoistPattern` does, else nowhere.
//! Aliases of the root project's direct dependencies are never hoisted (they already resolve
//! from `node_modules`). In a workspace, the other projects' direct dependencies are offered
//! first (as children of the workspace), then the projects themselves under their package
//! names (pnpm's `hoistWorkspacePackages`), then the packages further down.

use std::collections::{HashSet, VecDeque};

use crate::name_glob::matches as glob;
use crate::plan::{DirectTarget, InstallPlan, ROOT_IMPORTER};

/// One hoisted symlink: `.pnpm/node_modules/<alias>` (or `node_modules/<alias>` when public)
/// -> snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hoisted {
    pub alias: String,
    pub snapshot: usize,
    pub public: bool,
}

/// `publicHoistPattern` and `hoistPattern` of pnpm-workspace.yaml.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoistPatterns {
    pub public: Vec<String>,
    /// `None`: `hoist: false` (nothing hoisted privately; pnpm then records no `hoistPattern`).
    pub private: Option<Vec<String>>,
}

impl Default for HoistPatterns {
    fn default() -> Self {
        HoistPatterns {
            public: Vec::new(),
            private: Some(vec!["*".to_owned()]),
        }
    }
}

impl HoistPatterns {
    fn is_public(&self, alias: &str) -> bool {
        matches_patterns(&self.public, alias)
    }

    fn is_private(&self, alias: &str) -> bool {
        self.private
            .as_deref()
            .is_some_and(|patterns| matches_patterns(patterns, alias))
    }
}

/// pnpm's list of name patterns (`@pnpm/matcher`, as observed with hoist patterns): each a
/// [`glob`]; `!p` unmatches what `p` matches, and a later pattern can match it again; a list
/// of negations only matches every name none of them matches.
fn matches_patterns(patterns: &[String], name: &str) -> bool {
    if patterns.iter().all(|p| p.starts_with('!')) {
        return !patterns.is_empty() && !patterns.iter().any(|p| glob(&p[1..], name));
    }
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(ignored) => matched &= !glob(ignored, name),
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

pub fn hoist(plan: &InstallPlan) -> Vec<Hoisted> {
    let mut depth = vec![usize::MAX; plan.snapshots.len()];
    let mut queue = VecDeque::new();
    for direct in &plan.direct {
        if let DirectTarget::Snapshot(index) = direct.target
            && depth[index] == usize::MAX
        {
            depth[index] = 0;
            queue.push_back(index);
        }
    }
    while let Some(index) = queue.pop_front() {
        for &(_, child) in &plan.snapshots[index].dependencies {
            if depth[child] == usize::MAX {
                depth[child] = depth[index] + 1;
                queue.push_back(child);
            }
        }
    }
    let mut order: Vec<usize> = (0..plan.snapshots.len())
        .filter(|&i| depth[i] != usize::MAX)
        .collect();
    order.sort_by(|&a, &b| {
        depth[a].cmp(&depth[b]).then_with(|| {
            plan.snapshots[a]
                .dep_path
                .as_bytes()
                .cmp(plan.snapshots[b].dep_path.as_bytes())
        })
    });
    let mut hoisting = Hoisting {
        patterns: &plan.hoisting,
        taken: root_aliases(plan),
        hoisted: Vec::new(),
    };
    for direct in plan.direct.iter().filter(|d| d.importer != ROOT_IMPORTER) {
        if let DirectTarget::Snapshot(index) = direct.target {
            hoisting.offer(&direct.alias, index);
        }
    }
    // The workspace projects come next, before any package deeper down (pnpm 12, observed).
    let projects = projects_after(plan, hoisting.taken.clone());
    hoisting
        .taken
        .extend(projects.iter().map(|project| project.alias));
    for index in order {
        for (alias, child) in &plan.snapshots[index].dependencies {
            hoisting.offer(alias, *child);
        }
    }
    hoisting.hoisted
}

/// Names offered in hoisting order; the first offer of a name that a pattern matches wins.
struct Hoisting<'p> {
    patterns: &'p HoistPatterns,
    taken: HashSet<&'p str>,
    hoisted: Vec<Hoisted>,
}

impl<'p> Hoisting<'p> {
    fn offer(&mut self, alias: &'p str, snapshot: usize) {
        if self.taken.contains(alias) {
            return;
        }
        let public = self.patterns.is_public(alias);
        if public || self.patterns.is_private(alias) {
            self.taken.insert(alias);
            self.hoisted.push(Hoisted {
                alias: alias.to_owned(),
                snapshot,
                public,
            });
        }
    }
}

/// A workspace project hoisted into `.pnpm/node_modules` under its package name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoistedProject<'a> {
    pub alias: &'a str,
    /// Its importer id.
    pub id: &'a str,
    /// Into the root `node_modules` (`publicHoistPattern` matches it).
    pub public: bool,
}

/// The workspace projects hoisted among `hoisted`: after the other projects' direct
/// dependencies, before every package deeper down, by the same patterns as packages (pnpm 12,
/// observed: a project named like a transitive dependency takes the name).
pub fn hoisted_projects<'a>(plan: &'a InstallPlan, hoisted: &[Hoisted]) -> Vec<HoistedProject<'a>> {
    let mut taken = root_aliases(plan);
    taken.extend(
        hoisted[..hoisted_before_projects(plan, hoisted)]
            .iter()
            .map(|h| h.alias.as_str()),
    );
    projects_after(plan, taken)
}

/// How many of `hoisted` (in hoisting order) come before the projects: the other projects'
/// direct dependencies. No package further down can have one of their names, since a name
/// is offered first as a direct dependency and the patterns decide by name alone.
pub fn hoisted_before_projects(plan: &InstallPlan, hoisted: &[Hoisted]) -> usize {
    let direct: HashSet<&str> = plan
        .direct
        .iter()
        .filter(|d| d.importer != ROOT_IMPORTER)
        .map(|d| d.alias.as_str())
        .collect();
    hoisted
        .iter()
        .position(|h| !direct.contains(h.alias.as_str()))
        .unwrap_or(hoisted.len())
}

/// The projects hoisted when the names in `taken` are already hoisted.
fn projects_after<'a: 't, 't>(
    plan: &'a InstallPlan,
    mut taken: HashSet<&'t str>,
) -> Vec<HoistedProject<'a>> {
    plan.workspace_projects
        .iter()
        .filter_map(|project| {
            // A name is a path component here: `..` or `a/../b` would link outside.
            let alias = project.name.as_deref()?;
            crate::plan::validate_package_name(alias).ok()?;
            let public = plan.hoisting.is_public(alias);
            ((public || plan.hoisting.is_private(alias)) && taken.insert(alias)).then_some(
                HoistedProject {
                    alias,
                    id: &project.id,
                    public,
                },
            )
        })
        .collect()
}

/// The root project's direct dependencies: already resolvable, so never hoisted.
fn root_aliases(plan: &InstallPlan) -> HashSet<&str> {
    plan.direct
        .iter()
        .filter(|direct| direct.importer == ROOT_IMPORTER)
        .map(|direct| direct.alias.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    /// The cases observed with pnpm 12's `publicHoistPattern` (RESOLVE-ORACLE.md §18).
    #[test]
    fn patterns_match_as_pnpm_matches_them() {
        let matched = |list: &[&str], name: &str| matches_patterns(&patterns(list), name);
        assert!(matched(&["*"], "@scope/any"));
        assert!(!matched(&[], "a"));
        assert!(matched(&["*left*"], "left-pad-lite") && !matched(&["*left*"], "right"));
        assert!(matched(&["deep-1*"], "deep-1") && matched(&["deep-1*"], "deep-19"));
        assert!(!matched(&["deep-1*"], "deep-2") && !matched(&["deep-1"], "deep-10"));
        assert!(
            matched(&["a*b*c"], "abc")
                && matched(&["a*b*c"], "a-b-c")
                && !matched(&["a*b*c"], "acb")
        );
        assert!(!matched(&["ab*ba"], "aba"));
        assert!(matched(&["deep-?"], "deep-1") && !matched(&["deep-?"], "deep-10"));
        assert!(matched(&["a?c*"], "abcdef") && !matched(&["a?c"], "ac"));
        assert!(!matched(&["a*a"], "a") && matched(&["**"], "x") && !matched(&[""], "x"));
        let mixed = ["deep-1*", "!deep-15", "deep-15", "!deep-16"];
        assert!(matched(&mixed, "deep-15") && matched(&mixed, "deep-17"));
        assert!(!matched(&mixed, "deep-16") && !matched(&mixed, "deep-2"));
        assert!(matched(&["!deep-*"], "cycle-b") && !matched(&["!deep-*"], "deep-3"));
    }
}
