//! Hoisting into `node_modules/.pnpm/node_modules` (pnpm's default `hoist-pattern: *`), so that
//! packages relying on undeclared dependencies still resolve them.
//!
//! The rule, observed from pnpm 12: every snapshot, ordered by depth from the project (direct
//! dependencies are depth 0) and then by depPath byte order, offers its dependencies (then its
//! optional dependencies) in lockfile order; the first offer of an alias wins. Aliases of the
//! project's direct dependencies are never hoisted (they already resolve from `node_modules`).

use std::collections::{HashSet, VecDeque};

use crate::plan::{DirectTarget, InstallPlan};

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
    let mut taken: HashSet<&str> = plan
        .direct
        .iter()
        .map(|direct| direct.alias.as_str())
        .collect();
    let mut hoisted = Vec::new();
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
