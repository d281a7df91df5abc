//! Hoisting into `node_modules/.pnpm/node_modules` (pnpm's default `hoist-pattern: *`), so that
//! packages relying on undeclared dependencies still resolve them.
//!
//! The rule, observed from pnpm 12: every snapshot, ordered by depth from the project (direct
//! dependencies are depth 0) and then by depPath byte order, offers its dependencies (then its
//! optional dependencies) in lockfile order; the first offer of an alias wins. Aliases of the
//! root project's direct dependencies are never hoisted (they already resolve from
//! `node_modules`). In a workspace, the other projects' direct dependencies are offered first
//! (as children of the workspace), and after everything the projects themselves are hoisted
//! under their package names (pnpm's `hoistWorkspacePackages`).

use std::collections::{HashSet, VecDeque};

use crate::plan::{DirectTarget, InstallPlan, ROOT_IMPORTER};

/// One hoisted symlink: `.pnpm/node_modules/<alias>` -> snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hoisted {
    pub alias: String,
    pub snapshot: usize,
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
    let mut taken = root_aliases(plan);
    let mut hoisted = Vec::new();
    for direct in plan.direct.iter().filter(|d| d.importer != ROOT_IMPORTER) {
        if let DirectTarget::Snapshot(index) = direct.target
            && taken.insert(direct.alias.as_str())
        {
            hoisted.push(Hoisted {
                alias: direct.alias.clone(),
                snapshot: index,
            });
        }
    }
    for index in order {
        for (alias, child) in &plan.snapshots[index].dependencies {
            if taken.insert(alias.as_str()) {
                hoisted.push(Hoisted {
                    alias: alias.clone(),
                    snapshot: *child,
                });
            }
        }
    }
    hoisted
}

/// A workspace project hoisted into `.pnpm/node_modules` under its package name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoistedProject<'a> {
    pub alias: &'a str,
    /// Its importer id.
    pub id: &'a str,
}

/// The workspace projects hoisted after `hoisted` (names already taken are skipped).
pub fn hoisted_projects<'a>(plan: &'a InstallPlan, hoisted: &[Hoisted]) -> Vec<HoistedProject<'a>> {
    let mut taken = root_aliases(plan);
    taken.extend(hoisted.iter().map(|h| h.alias.as_str()));
    plan.workspace_projects
        .iter()
        .filter_map(|project| {
            let alias = project.name.as_deref()?;
            taken.insert(alias).then_some(HoistedProject {
                alias,
                id: &project.id,
            })
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
