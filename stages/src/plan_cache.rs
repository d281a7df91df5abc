//! A cache of install plans in the store, keyed by the exact bytes they were computed from.
//!
//! Parsing a 1,000-package `pnpm-lock.yaml` (YAML) and checking it against `package.json` costs
//! ~20 ms, most of a no-op install and ~12% of a warm one. The plan depends only on
//! `package.json`, the lockfile, the plan options and the platform, so a plan computed once (and
//! whose frozen check passed) is stored under the blake3 of all of them and reused. Any change
//! to any input is a different key; a corrupt or unreadable entry is a miss.

use std::path::{Path, PathBuf};

use crate::plan::{InstallPlan, PlanOptions};

/// Bumped whenever the plan's shape or meaning changes.
const FORMAT: &str = "flowpm-plan-7";

/// `manifests`: the root's package.json, then for each workspace project its id and its
/// package.json (each part is length-prefixed, so their boundaries count).
pub fn key(manifests: &[&[u8]], lockfile: &[u8], options: &PlanOptions) -> String {
    let mut hasher = blake3::Hasher::new();
    let parts = std::iter::once(FORMAT.as_bytes())
        .chain(manifests.iter().copied())
        .chain([lockfile]);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let platform = &options.platform;
    let settings = format!(
        "{}|{}|{}|{:?}|{}|{:?}|{:?}|{}",
        options.production_only,
        platform.os,
        platform.cpu,
        platform.libc,
        options.virtual_store_dir_max_length,
        options.hoisting,
        options.patches,
        env!("CARGO_PKG_VERSION")
    );
    hasher.update(settings.as_bytes());
    hasher.finalize().to_hex().to_string()
}

fn path(store_dir: &Path, key: &str) -> PathBuf {
    store_dir.join("v1/plans").join(format!("{key}.json"))
}

pub fn load(store_dir: &Path, key: &str) -> Option<InstallPlan> {
    let bytes = std::fs::read(path(store_dir, key)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Best effort: a plan that cannot be cached is simply computed again next time.
pub fn save(store_dir: &Path, key: &str, plan: &InstallPlan) {
    let target = path(store_dir, key);
    let Some(dir) = target.parent() else { return };
    let Ok(bytes) = serde_json::to_vec(plan) else {
        return;
    };
    let temp = dir.join(format!(".{key}.{}", std::process::id()));
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&temp, bytes));
    if written
        .and_then(|()| std::fs::rename(&temp, &target))
        .is_err()
    {
        let _ = std::fs::remove_file(&temp);
    }
}
