//! The metadata files pnpm keeps in `node_modules`, and the no-op check built on them.
//!
//! `node_modules/.pnpm/lock.yaml` is a byte copy of the lockfile that was installed. It is
//! removed when an install starts changing `node_modules` and written last, after everything
//! else: its presence means the tree is complete for that lockfile (for pnpm as well).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::InstallError;
use crate::hoist::{Hoisted, hoisted_before_projects, hoisted_projects};
use crate::lifecycle::BuildSettings;
use crate::link::Layout;
use crate::lockfile::{Lockfile, package_key, reference_to_dep_path};
use crate::plan::{InstallPlan, SnapshotPlan};
use crate::replace::write_atomically;

/// Settings recorded in `.modules.yaml` that change the tree when they change.
pub struct ModulesSettings<'a> {
    pub production_only: bool,
    pub store_dir: &'a Path,
    pub skipped: &'a [String],
    /// pnpm-workspace.yaml's `allowBuilds` and `dangerouslyAllowAllBuilds`, recorded so that
    /// a change to them is not a no-op.
    pub allow_builds: &'a BTreeMap<String, bool>,
    pub allow_all_builds: bool,
    /// Builds neither allowed nor denied (`name@version`).
    pub ignored_builds: &'a [String],
    /// With scripts off: the projects with scripts and the packages with builds that did not
    /// run (`.` and depPaths), as pnpm records them for a later rebuild.
    pub pending_builds: &'a [String],
}

/// `dangerouslyAllowAllBuilds` as recorded in `.modules.yaml`.
const ALLOW_ALL_KEY: &str = "dangerouslyAllowAllBuilds";

/// What the last complete install recorded about builds.
pub struct RecordedBuilds {
    pub allow: BTreeMap<String, bool>,
    pub allow_all: bool,
    pub pending: Vec<String>,
}

/// The build state of the install `node_modules` holds, if that install completed.
pub fn recorded_builds(layout: &Layout<'_>) -> Option<RecordedBuilds> {
    std::fs::symlink_metadata(lock_copy_path(layout)).ok()?;
    let modules = read_modules(layout)?;
    Some(RecordedBuilds {
        allow: recorded_allow(&modules).unwrap_or_default(),
        allow_all: modules[ALLOW_ALL_KEY].as_bool().unwrap_or(false),
        pending: Vec::deserialize(&modules["pendingBuilds"]).unwrap_or_default(),
    })
}

/// `.modules.yaml` (pnpm writes it as JSON), if it is there and readable.
fn read_modules(layout: &Layout<'_>) -> Option<serde_json::Value> {
    let bytes = std::fs::read(modules_yaml_path(layout)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The recorded `allowBuilds`; `None` if it is not a map of booleans.
fn recorded_allow(modules: &serde_json::Value) -> Option<BTreeMap<String, bool>> {
    BTreeMap::deserialize(&modules["allowBuilds"]).ok()
}

pub fn lock_copy_path(layout: &Layout<'_>) -> std::path::PathBuf {
    layout.virtual_store_dir.join("lock.yaml")
}

pub fn modules_yaml_path(layout: &Layout<'_>) -> std::path::PathBuf {
    layout.modules_dir.join(".modules.yaml")
}

/// What a complete earlier install recorded that a no-op install still reports.
#[derive(Debug, Default)]
pub struct Installed {
    /// `ignoredBuilds` of `.modules.yaml`.
    pub ignored_builds: Vec<String>,
}

/// `Some` when `node_modules` already holds a complete install of `lockfile_text` with the
/// same settings and every package directory is still there. With `builds` (scripts on), an
/// `allowBuilds` that changed since, or that now allows every ignored build, is a change.
pub fn is_up_to_date(
    layout: &Layout<'_>,
    lockfile_text: &str,
    production_only: bool,
    builds: Option<&BuildSettings>,
) -> Option<Installed> {
    // pnpm imports `file:` directories again on every install: they may have changed.
    if layout.plan.snapshots.iter().any(|s| s.directory.is_some())
        || !installed_from(layout, lockfile_text)
    {
        return None;
    }
    let modules = read_modules(layout)?;
    let dev_included = modules["included"]["devDependencies"]
        .as_bool()
        .unwrap_or(true);
    if dev_included == production_only {
        return None;
    }
    let ignored_builds: Vec<String> = match modules["ignoredBuilds"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        None => Vec::new(),
    };
    // Other hoisting settings: pnpm 12 moves the links (observed), so the tree must change.
    let hoisting = &layout.plan.hoisting;
    if modules["publicHoistPattern"] != json!(hoisting.public)
        || modules.get("hoistPattern").unwrap_or(&Value::Null) != &json!(hoisting.private)
    {
        return None;
    }
    if let Some(builds) = builds {
        let recorded_all = modules[ALLOW_ALL_KEY].as_bool().unwrap_or(false);
        if recorded_allow(&modules).as_ref() != Some(&builds.allow)
            || recorded_all != builds.allow_all
        {
            return None;
        }
    }
    // One stat per package: catches deleted directories, as pnpm does.
    let snapshots_present = layout
        .plan
        .snapshots
        .iter()
        .all(|s| layout.package_dir(s).is_dir());
    let direct_present = layout.plan.direct.iter().all(|d| {
        layout
            .importer_modules_dir(&d.importer)
            .join(&d.alias)
            .symlink_metadata()
            .is_ok()
    });
    (snapshots_present && direct_present).then_some(Installed { ignored_builds })
}

/// Whether the last install of this tree completed from this very lockfile (its copy is
/// written last and removed before the tree is touched).
pub fn installed_from(layout: &Layout<'_>, lockfile_text: &str) -> bool {
    std::fs::read(lock_copy_path(layout))
        .is_ok_and(|installed| installed == lockfile_text.as_bytes())
}

/// What the last complete install left in place that this one would put there unchanged
/// (snapshot indexes).
#[derive(Default)]
pub struct InPlace {
    /// Snapshots whose files are in place ([`in_place`]): not imported again.
    pub files: HashSet<usize>,
    /// Those of `files` whose dependency links are in place too: the same dependencies,
    /// under the same aliases, as in the installed lockfile. Not linked again.
    pub links: HashSet<usize>,
    /// Those of `files` whose package requires a build that the last install left to do
    /// (`pendingBuilds`): their directories hold the unbuilt private copies an import would
    /// make again, so they are left as they are; a build this install runs works on them in
    /// place. (Packages it built are [`crate::lifecycle::already_built`]'s.)
    pub unbuilt: HashSet<usize>,
    /// The build state the last complete install recorded in `.modules.yaml` (read once).
    pub recorded: Option<RecordedBuilds>,
}

/// Snapshots whose files the last complete install put in place and that this install would
/// put there unchanged: the same depPath (so the same directory) from the same source (the
/// store key: integrity or tarball URL), the directory still there. Only the rest is imported,
/// as pnpm does. Always imported again: `file:` directories and `file:` tarballs without an
/// integrity (their content can change under the same key), and git packages (the copy in
/// place may be one stored unbuilt, under `--ignore-scripts`, that this install must build).
/// `known`, when its text equals the installed copy, spares parsing that copy: the plan's own
/// lockfile (`None`: all it locks is unchanged) or the lockfile an edit started from, parsed.
pub fn in_place(layout: &Layout<'_>, known: Option<(&str, Option<&Lockfile>)>) -> InPlace {
    let copy = lock_copy_path(layout);
    let Ok(installed) = std::fs::read_to_string(&copy) else {
        return InPlace::default();
    };
    let plan = layout.plan;
    // Parsed only when unknown (~10 ms for 1,000 packages); an unreadable copy only costs a
    // full import.
    let parsed;
    let previous = match known {
        Some((text, lockfile)) if text == installed => lockfile,
        _ => match Lockfile::parse(&installed, &copy) {
            Ok(lockfile) => {
                parsed = lockfile;
                Some(&parsed)
            }
            Err(_) => return InPlace::default(),
        },
    };
    // The store key of a registry or tarball package (git ones and directories are excluded
    // below): its integrity, else its tarball URL.
    let unchanged = |snapshot: &SnapshotPlan| {
        let Some(previous) = &previous else {
            return true;
        };
        let source = snapshot
            .integrity
            .as_deref()
            .or(snapshot.tarball.as_deref());
        previous.snapshots.contains_key(&snapshot.dep_path)
            && previous
                .packages
                .get(package_key(&snapshot.dep_path))
                .is_some_and(|package| {
                    let was = &package.resolution;
                    source.is_some()
                        && was.integrity.as_deref().or(was.tarball.as_deref()) == source
                })
    };
    // Package directories are looked up from one handle on `.pnpm` (short path walks); none
    // is there if it cannot be opened.
    let virtual_store = rustix::fs::open(
        &layout.virtual_store_dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    let is_directory = |snapshot: &SnapshotPlan| {
        let Ok(virtual_store) = &virtual_store else {
            return false;
        };
        let path = format!("{}/node_modules/{}", snapshot.dir_name, snapshot.name);
        rustix::fs::statat(
            virtual_store,
            path.as_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|stat| {
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory
        })
    };
    let files: HashSet<usize> = (0..plan.snapshots.len())
        .filter(|&index| {
            let snapshot = &plan.snapshots[index];
            let unverified_tarball = snapshot.integrity.is_none()
                && snapshot
                    .tarball
                    .as_deref()
                    .is_some_and(|url| url.starts_with("file:"));
            snapshot.directory.is_none()
                && snapshot.git.is_none()
                && !unverified_tarball
                && unchanged(snapshot)
                // Not through a symlink: a build may run in a directory left in place.
                && is_directory(snapshot)
        })
        .collect();
    // A snapshot's links are in place when every dependency is in place too (one left out of
    // the last install, its link removed, is not) and the installed lockfile resolved each
    // alias to the same snapshot as this plan does (a skipped optional dependency or a `link:`
    // one makes them differ: linked again). The same lockfile resolved them all the same.
    let same_links = |snapshot: &SnapshotPlan| {
        if !snapshot
            .dependencies
            .iter()
            .all(|(_, child)| files.contains(child))
        {
            return false;
        }
        let Some(previous) = &previous else {
            return true;
        };
        let Some(entry) = previous.snapshots.get(&snapshot.dep_path) else {
            return false;
        };
        entry.dependencies.len() + entry.optional_dependencies.len() == snapshot.dependencies.len()
            && snapshot.dependencies.iter().all(|(alias, child)| {
                entry
                    .dependencies
                    .get(alias)
                    .or_else(|| entry.optional_dependencies.get(alias))
                    .and_then(|reference| reference_to_dep_path(alias, reference))
                    .is_some_and(|dep_path| dep_path == plan.snapshots[*child].dep_path)
            })
    };
    let links = files
        .iter()
        .copied()
        .filter(|&index| same_links(&plan.snapshots[index]))
        .collect();
    let recorded = recorded_builds(layout);
    let pending: HashSet<&str> = recorded
        .iter()
        .flat_map(|recorded| &recorded.pending)
        .map(String::as_str)
        .collect();
    let unbuilt = files
        .iter()
        .copied()
        .filter(|&index| pending.contains(plan.snapshots[index].dep_path.as_str()))
        .collect();
    InPlace {
        files,
        links,
        unbuilt,
        recorded,
    }
}

/// Removes the completion marker before the tree is modified.
pub fn invalidate(layout: &Layout<'_>) -> Result<(), InstallError> {
    let path = lock_copy_path(layout);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InstallError::io("remove", &path, e)),
    }
}

/// How `.modules.yaml` records where a package was hoisted.
fn hoisted_kind(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

/// Writes `.modules.yaml` (JSON, as pnpm 12 writes it) and then the lockfile copy.
pub fn write_metadata(
    layout: &Layout<'_>,
    hoisted: &[Hoisted],
    settings: &ModulesSettings<'_>,
    lockfile_text: &str,
) -> Result<(), InstallError> {
    // In hoisting order, as pnpm 12 writes it: the projects after the other projects' direct
    // dependencies.
    let mut hoisted_map = serde_json::Map::new();
    let add_packages = |map: &mut serde_json::Map<String, Value>, entries: &[Hoisted]| {
        for entry in entries {
            let dep_path = &layout.plan.snapshots[entry.snapshot].dep_path;
            let aliases = map.entry(dep_path.clone()).or_insert_with(|| json!({}));
            aliases[entry.alias.as_str()] = json!(hoisted_kind(entry.public));
        }
    };
    let split = hoisted_before_projects(layout.plan, hoisted);
    add_packages(&mut hoisted_map, &hoisted[..split]);
    for project in hoisted_projects(layout.plan, hoisted) {
        let kind = hoisted_kind(project.public);
        hoisted_map.insert(project.id.to_owned(), json!({ project.alias: kind }));
    }
    add_packages(&mut hoisted_map, &hoisted[split..]);
    let mut skipped = settings.skipped.to_vec();
    skipped.sort();
    // Keys in pnpm 12's order (`ignoredBuilds` only when there are some).
    let hoisting = &layout.plan.hoisting;
    let mut modules = json!({
        "hoistedDependencies": hoisted_map,
        "hoistPattern": hoisting.private,
        "included": {
            "dependencies": true,
            "devDependencies": !settings.production_only,
            "optionalDependencies": true,
        },
        "layoutVersion": 5,
        "nodeLinker": "isolated",
        "packageManager": concat!("flowpm@", env!("CARGO_PKG_VERSION")),
        "pendingBuilds": settings.pending_builds,
    });
    if hoisting.private.is_none()
        && let Some(object) = modules.as_object_mut()
    {
        object.remove("hoistPattern"); // `hoist: false`: pnpm 12 writes none
    }
    if !settings.ignored_builds.is_empty() {
        modules["ignoredBuilds"] = json!(settings.ignored_builds);
    }
    for (key, value) in [
        ("prunedAt", json!(http_date(std::time::SystemTime::now()))),
        ("publicHoistPattern", json!(hoisting.public)),
        ("skipped", json!(skipped)),
        ("storeDir", json!(settings.store_dir.display().to_string())),
        ("virtualStoreDir", json!(".pnpm")),
        (
            "virtualStoreDirMaxLength",
            json!(crate::dep_path::VIRTUAL_STORE_DIR_MAX_LENGTH),
        ),
    ] {
        modules[key] = value;
    }
    let injected = injected_deps(layout.plan);
    if !injected.is_empty() {
        modules["injectedDeps"] = json!(injected);
    }
    modules["allowBuilds"] = json!(settings.allow_builds);
    // flowpm's own key (pnpm does not record the setting), only when it is on.
    if settings.allow_all_builds {
        modules[ALLOW_ALL_KEY] = json!(true);
    }
    let text = serde_json::to_string_pretty(&modules)
        .map_err(|e| InstallError::Internal(e.to_string()))?;
    write_atomically(&modules_yaml_path(layout), text.as_bytes())?;
    write_atomically(&lock_copy_path(layout), lockfile_text.as_bytes())
}

/// `file:` directories and where each was imported (one place per peer variant), as pnpm
/// records them.
fn injected_deps(plan: &InstallPlan) -> BTreeMap<&str, Vec<String>> {
    let mut injected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for snapshot in &plan.snapshots {
        if let Some(directory) = &snapshot.directory {
            injected.entry(directory).or_default().push(format!(
                "node_modules/.pnpm/{}/node_modules/{}",
                snapshot.dir_name, snapshot.name
            ));
        }
    }
    for places in injected.values_mut() {
        places.sort();
    }
    injected
}

/// `Sat, 21 Nov 2026 12:17:05 GMT`, as JavaScript's `toUTCString`.
fn http_date(time: std::time::SystemTime) -> String {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let (hour, minute, second) = ((seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {hour:02}:{minute:02}:{second:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_like_javascript() {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_263_425);
        assert_eq!(http_date(time), "Sat, 21 Nov 2026 12:17:05 GMT");
    }
}
