//! The install: read, plan, run the pipeline, link bins, write metadata.
//!
//! ```text
//!            ┌────────────── link (1 thread): directories + symlinks, from the plan ─────────────┐
//! plan ──┬── fetch (N threads: HTTP + gunzip + untar) ──FileJob──> write (hash + O_EXCL) ──┐      │
//!        │                                                        finalise (verified?) ────┼─> index (1 thread, LMDB)
//!        └── index hits ───────────────────────────────────────────────────────────────────┴─> import (hardlink/clone/copy)
//! ```
//! then `.bin` shims and metadata once every package is imported.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use flowpm_pipeline::{CancelToken, StageSnapshot, bounded, unbounded};
use flowpm_store::{GitCopy, Store};

use crate::InstallError;
use crate::capacity::{
    FETCH_THREADS, FILE_QUEUE, IMPORT_QUEUE, INDEX_QUEUE, PRUNE_THREADS, STREAM_WRITE_THREADS,
    WRITE_THREADS, import_threads, threads,
};
use crate::catalogs::Catalogs;
use crate::config::{ConfigOverrides, NpmConfig};
use crate::dep_path::VIRTUAL_STORE_DIR_MAX_LENGTH;
use crate::fetch::{Fetcher, run_fetch_worker};
use crate::git_prepare::GitBuilds;
use crate::hoist::hoist;
use crate::index::run_index_writer;
use crate::integrity::Integrity;
use crate::lifecycle::{BuildSettings, Lifecycle};
use crate::link::{Doomed, ImportMethod, Importer, Layout, Preloaded, run_import_worker};
use crate::local_outdated::check_local_packages;
use crate::lockfile::Lockfile;
use crate::lockfile_write::to_yaml;
use crate::manifest::Manifest;
use crate::messages::{PackageUnit, StoredPackage};
use crate::metadata::{Installed, ModulesSettings, invalidate, is_up_to_date, write_metadata};
use crate::overrides::Overrides;
use crate::package_extensions::PackageExtensions;
use crate::plan::{
    InstallPlan, PlanOptions, ROOT_IMPORTER, WorkspaceProject, check_package_extensions,
    check_up_to_date, check_workspace_up_to_date, plan,
};
use crate::plan_cache;
use crate::platform::Platform;
use crate::replace::{remove_stale_temps, write_atomically};
use crate::report::{InstallReport, Reporter};
use crate::resolve::early_link::{EarlyLink, Planned};
use crate::resolve::metadata::CacheMode;
use crate::resolve::run::{LinkOutcome, ResolveRun, resolve_with_registry};
use crate::resolve::{Project, ResolveOptions};
use crate::stream_write::{StreamWriters, run_stream_writer};
use crate::workspace;
use crate::write::{FileQueue, Finalizer, run_write_worker};

/// What to install and how. `Default` gives a plain `flowpm install` of the current directory.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub project_dir: PathBuf,
    /// Fail instead of updating the lockfile when it does not match package.json.
    pub frozen_lockfile: bool,
    /// Never touch the network.
    pub offline: bool,
    /// Skip devDependencies.
    pub production_only: bool,
    pub registry: Option<String>,
    pub store_dir: Option<PathBuf>,
    pub import_method: ImportMethod,
    /// Resolve and write `pnpm-lock.yaml`, install nothing.
    pub lockfile_only: bool,
    /// Use cached packuments without revalidating them.
    pub prefer_offline: bool,
    /// `flowpm update`: re-resolve ignoring locked versions of these names (all if empty).
    pub update: Option<Vec<String>>,
    /// pnpm's `minimumReleaseAge` in minutes (versions younger than this are avoided);
    /// `None` reads `minimumReleaseAge` from pnpm-workspace.yaml, default 1440 as pnpm 12.
    pub minimum_release_age: Option<u64>,
    /// Run no lifecycle scripts (neither the projects' nor the dependencies' builds), as
    /// `--ignore-scripts`; `ignore-scripts=true` in .npmrc does the same.
    pub ignore_scripts: bool,
    /// Lets an embedding program abort the install from another thread.
    pub cancel: CancelToken,
    /// The command that runs flowpm itself (the CLI sets it). A git package that must be
    /// built and whose repository uses pnpm is built with it; without it, with `pnpm` from
    /// `PATH`, as pnpm would.
    pub own_command: Option<PathBuf>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            project_dir: PathBuf::from("."),
            frozen_lockfile: false,
            offline: false,
            production_only: false,
            registry: None,
            store_dir: None,
            import_method: ImportMethod::Auto,
            lockfile_only: false,
            prefer_offline: false,
            update: None,
            minimum_release_age: None,
            ignore_scripts: false,
            cancel: CancelToken::new(),
            own_command: None,
        }
    }
}

/// Installs the project's dependencies from its `pnpm-lock.yaml`. Synchronous: returns when
/// `node_modules` is complete, or with the first error.
pub fn install(
    options: &InstallOptions,
    reporter: &dyn Reporter,
) -> Result<InstallReport, InstallError> {
    let started = Instant::now();
    // For embedders that did not (the CLI did, before it had threads).
    crate::capacity::reserve_descriptors();
    let project_dir = std::path::absolute(&options.project_dir)
        .map_err(|e| InstallError::io("resolve", &options.project_dir, e))?;
    // Inside a workspace, the whole workspace is installed from its root, as pnpm does.
    let workspace::Found {
        workspace,
        mut settings,
    } = workspace::find(&project_dir)?;
    let builds = std::mem::take(&mut settings.builds);
    let init_cwd = project_dir.clone();
    let project_dir = workspace
        .as_ref()
        .map_or(project_dir, |workspace| workspace.root.clone());
    let manifest_path = project_dir.join("package.json");
    let manifest_bytes =
        std::fs::read(&manifest_path).map_err(|e| InstallError::io("read", &manifest_path, e))?;
    let members = match &workspace {
        Some(workspace) => workspace.read_members()?,
        None => Vec::new(),
    };
    let lockfile_path = project_dir.join("pnpm-lock.yaml");
    let existing = match std::fs::read_to_string(&lockfile_path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(InstallError::io("read", &lockfile_path, error)),
    };
    if existing.is_none() && options.frozen_lockfile {
        return Err(InstallError::NoLockfile {
            dir: project_dir,
            reason: "--frozen-lockfile needs one; run `flowpm install` to create it",
        });
    }
    let (config, store_dir) = load_config(&project_dir, options)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let lifecycle = scripts_enabled(options, &config).then_some(Lifecycle {
        settings: &builds,
        cancel: &options.cancel,
        init_cwd: &init_cwd,
        concurrency: crate::lifecycle::child_concurrency(settings.child_concurrency, cores),
        side_effects_cache: settings.side_effects_cache,
    });
    let lifecycle = lifecycle.as_ref();
    let plan_options = PlanOptions {
        production_only: options.production_only,
        platform: Platform::host(),
        virtual_store_dir_max_length: VIRTUAL_STORE_DIR_MAX_LENGTH,
        hoisting: settings.hoisting.clone(),
        patches: settings.patched_dependencies.clone(),
    };
    let workspace_projects: Vec<WorkspaceProject> = members
        .iter()
        .map(|member| WorkspaceProject {
            id: member.id.clone(),
            name: member.manifest.name.clone(),
        })
        .collect();
    let resolution = Resolution {
        options,
        config: &config,
        store_dir: &store_dir,
        project_dir: &project_dir,
        lockfile_path: &lockfile_path,
        plan_options: &plan_options,
        workspace_projects: &workspace_projects,
        builds: &builds,
        lifecycle,
        reporter,
        started,
    };
    let projects = |manifest| {
        Project::all(
            manifest,
            members.iter().map(|m| (m.id.clone(), &m.manifest)),
        )
    };
    let (lockfile_text, mut plan) = match existing {
        Some(text) if options.update.is_none() => {
            // The workspace's overrides and catalogs decide whether the lockfile is current.
            let settings_key = format!(
                "{:?}{:?}{:?}",
                settings.overrides, settings.catalogs, settings.package_extensions.checksum
            );
            let mut manifests = vec![manifest_bytes.as_slice(), settings_key.as_bytes()];
            for member in &members {
                manifests.extend([member.id.as_bytes(), member.bytes.as_slice()]);
            }
            let cache_key = plan_cache::key(&manifests, text.as_bytes(), &plan_options);
            // Local packages change under the same lockfile: those plans are checked afresh.
            let cached =
                plan_cache::load(&store_dir, &cache_key).filter(|plan| !plan.has_local_packages());
            match cached {
                Some(plan) => (text, plan),
                None => {
                    let manifest = Manifest::parse(&manifest_bytes, &manifest_path)?;
                    let rules = parse_rules(settings, &manifest, &project_dir)?;
                    let lockfile = Lockfile::parse(&text, &lockfile_path)?;
                    let checked = check_package_extensions(&lockfile, &rules.package_extensions);
                    let checked = checked.and_then(|()| match &workspace {
                        None => check_up_to_date(
                            &manifest,
                            &lockfile,
                            &rules.overrides,
                            &rules.catalogs,
                        ),
                        Some(_) => {
                            let mut projects = vec![(ROOT_IMPORTER, &manifest)];
                            projects.extend(members.iter().map(|m| (m.id.as_str(), &m.manifest)));
                            check_workspace_up_to_date(
                                &lockfile,
                                &projects,
                                &rules.overrides,
                                &rules.catalogs,
                            )
                        }
                    });
                    let checked = checked
                        .and_then(|()| check_local_packages(&lockfile, &project_dir, &rules))
                        .and_then(|()| {
                            crate::patch::check_lockfile(
                                &lockfile,
                                &rules.patches,
                                &plan_options.patches,
                            )
                        });
                    match checked {
                        Ok(()) => {
                            let mut plan = plan(&lockfile, &plan_options)?;
                            plan.workspace_projects = workspace_projects.clone();
                            // Never loaded (checked afresh each time, above): not saved.
                            if !plan.has_local_packages() {
                                plan_cache::save(&store_dir, &cache_key, &plan);
                            }
                            // (Freeing a large lockfile's tree takes a millisecond or two.)
                            drop_in_background(lockfile);
                            (text, plan)
                        }
                        Err(error) if options.frozen_lockfile => return Err(error),
                        Err(_) => {
                            let installed = resolve_and_install(
                                &resolution,
                                &projects(&manifest),
                                &rules,
                                Some((&text, &lockfile)),
                            );
                            drop_in_background(lockfile);
                            return installed;
                        }
                    }
                }
            }
        }
        existing => {
            let manifest = Manifest::parse(&manifest_bytes, &manifest_path)?;
            let rules = parse_rules(settings, &manifest, &project_dir)?;
            let old = match &existing {
                Some(text) => Some((text.as_str(), Lockfile::parse(text, &lockfile_path)?)),
                None => None,
            };
            let installed = resolve_and_install(
                &resolution,
                &projects(&manifest),
                &rules,
                old.as_ref().map(|(text, lockfile)| (*text, lockfile)),
            );
            drop_in_background(old.map(|(_, lockfile)| lockfile));
            return installed;
        }
    };
    if options.lockfile_only {
        return Ok(InstallReport {
            packages: plan.snapshots.len(),
            up_to_date: true,
            elapsed: started.elapsed(),
            ..InstallReport::default()
        });
    }
    let layout = Layout::new(&project_dir, &plan);
    let up_to_date = |installed: Installed| {
        let mut warnings = Vec::new();
        report_ignored(installed.ignored_builds, lifecycle, reporter, &mut warnings)?;
        Ok(InstallReport {
            packages: plan.snapshots.len(),
            skipped_optional: plan.skipped.len(),
            up_to_date: true,
            elapsed: started.elapsed(),
            warnings,
            ..InstallReport::default()
        })
    };
    let current = |layout: &Layout<'_>| {
        let builds = lifecycle.map(|l| l.settings);
        is_up_to_date(layout, &lockfile_text, options.production_only, builds)
    };
    if let Some(installed) = current(&layout) {
        return up_to_date(installed);
    }
    // One install at a time per project; one that waited may find the work done.
    let _project_lock = lock_project(&project_dir, &workspace_projects, reporter)?;
    if let Some(installed) = current(&layout) {
        return up_to_date(installed);
    }
    if let Some(lifecycle) = lifecycle {
        lifecycle.before_link(&project_dir)?;
    }

    // Read before `invalidate`: it needs the earlier install to have been complete.
    let present = crate::metadata::in_place(&layout, Some((&lockfile_text, None)));
    let kept = crate::lifecycle::already_built(&layout, &present);
    let store = Store::open(&store_dir)?;
    let git_builds = git_builds(options, &config, &store_dir, &builds);
    let (warm, mut cold) = split_by_store(&store, &plan, git_builds.as_ref(), &present.files)?;
    // A built package left in place needs nothing from the store (it may not be there: a
    // pruned or another store, or `--offline`).
    cold.retain(|unit| {
        !unit
            .snapshots
            .iter()
            .all(|&index| kept.contains(&plan.snapshots[index].dep_path))
    });
    let mut warnings = Vec::new();
    for unit in &cold {
        if unit.integrity.is_none() && unit.directory.is_none() && unit.git.is_none() {
            let warning = format!(
                "{}: the lockfile has no integrity for it; its tarball cannot be verified",
                unit.label()
            );
            reporter.on_warning(&warning);
            warnings.push(warning);
        }
    }
    reporter.on_plan(plan.snapshots.len(), cold.len());

    invalidate(&layout)?;
    let mut hoisted = hoist(&plan);
    let doomed = layout.doomed()?;
    layout.prune(&hoisted)?;
    let result = run_pipeline(
        options,
        &config,
        &store,
        &layout,
        &hoisted,
        (warm, cold),
        git_builds.as_ref(),
        &kept,
        (present, &doomed),
        reporter,
    );
    let (stages, counts) = match result {
        Ok(done) => done,
        Err(error) => {
            store.cas().remove_own_temp_files();
            return Err(error);
        }
    };
    leave_out(&project_dir, &mut plan, &mut hoisted, &counts.left_out)?;
    let layout = Layout::new(&project_dir, &plan);

    warnings.extend(crate::bins::link_bins(&layout, &hoisted)?);
    let end = Finish {
        options,
        store_dir: &store_dir,
        store: &store,
        builds: &builds,
        lifecycle,
        lockfile_path: None,
        kept: &kept,
        requires_build: counts.builds.iter().cloned().collect(),
        reporter,
    };
    end.finish(&layout, &hoisted, &lockfile_text, &mut warnings)?;
    Ok(counts.into_report(&plan, started, stages, warnings))
}

/// Leaves out the optional packages whose tarballs could not be had, as pnpm does: their
/// directories and every link to them are removed, and `plan` and `hoisted` become the plan
/// and hoisting without them.
fn leave_out(
    project_dir: &Path,
    plan: &mut InstallPlan,
    hoisted: &mut Vec<crate::hoist::Hoisted>,
    left_out: &[(Arc<PackageUnit>, String)],
) -> Result<(), InstallError> {
    if left_out.is_empty() {
        return Ok(());
    }
    let missing: HashSet<usize> = left_out
        .iter()
        .flat_map(|(unit, _)| unit.snapshots.iter().copied())
        .collect();
    Layout::new(project_dir, plan).unlink_dependents(&missing)?;
    *plan = plan.without(&missing);
    *hoisted = hoist(plan);
    let layout = Layout::new(project_dir, plan);
    layout.prune(hoisted)?;
    layout.doomed()?.remove(None)?;
    layout.relink_hoisted(hoisted)
}

/// What resolving for an install needs from `install`.
struct Resolution<'a> {
    options: &'a InstallOptions,
    config: &'a Arc<NpmConfig>,
    store_dir: &'a Path,
    project_dir: &'a Path,
    lockfile_path: &'a Path,
    plan_options: &'a PlanOptions,
    workspace_projects: &'a [WorkspaceProject],
    builds: &'a BuildSettings,
    lifecycle: Option<&'a Lifecycle<'a>>,
    reporter: &'a dyn Reporter,
    started: Instant,
}

/// Resolves the project, fills `node_modules` for the result in the same run (linking as soon
/// as the graph is final), then replaces `pnpm-lock.yaml` atomically: a failed resolution or
/// download leaves the old file untouched. With `--lockfile-only`, only resolves and writes.
fn resolve_and_install(
    resolution: &Resolution<'_>,
    projects: &[Project<'_>],
    rules: &Rules,
    // The lockfile resolution starts from, with its text.
    started_from: Option<(&str, &Lockfile)>,
) -> Result<InstallReport, InstallError> {
    let old = started_from.map(|(_, lockfile)| lockfile);
    let Resolution {
        options,
        config,
        store_dir,
        project_dir,
        lockfile_path,
        plan_options,
        workspace_projects,
        builds,
        lifecycle,
        reporter,
        started,
    } = *resolution;
    if options.lockfile_only {
        let (lockfile, mut report, _) = resolve_project(
            options, config, store_dir, projects, rules, old, builds, reporter, None,
        )?;
        let text = to_yaml(&lockfile);
        write_atomically(lockfile_path, text.as_bytes())?;
        report.packages = plan(&lockfile, plan_options)?.snapshots.len();
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let _project_lock = lock_project(project_dir, workspace_projects, reporter)?;
    if let Some(lifecycle) = lifecycle {
        lifecycle.before_link(project_dir)?;
    }
    let planned = Planned::default();
    let target = EarlyLink {
        project_dir,
        plan_options,
        import_method: options.import_method,
        workspace_projects,
        previous: started_from,
    };
    let (lockfile, mut report, linked) = resolve_project(
        options,
        config,
        store_dir,
        projects,
        rules,
        old,
        builds,
        reporter,
        Some((&target, &planned)),
    )?;
    let kept = planned.kept.into_inner().unwrap_or_default();
    let (Some(mut plan), Some(mut hoisted)) =
        (planned.plan.into_inner(), planned.hoisted.into_inner())
    else {
        return Err(InstallError::Internal(
            "resolution ended without an install plan".to_owned(),
        ));
    };
    let layout = Layout::new(project_dir, &plan);
    let mut counts = Counts {
        fetched: linked.fetched,
        reused: linked.reused,
        files_imported: linked.files_imported,
        files_written: linked.files_written,
        bytes_downloaded: report
            .stages
            .iter()
            .find(|stage| stage.name == "fetch")
            .map_or(0, |stage| stage.bytes),
        bytes_imported: linked.bytes_imported,
        left_out: Vec::new(),
        builds: linked.builds,
    };
    let mut warnings = report.warnings;
    // Resolution's own handle on the store is closed by now.
    let store = Store::open(store_dir)?;
    // A git build that was refused or failed is not run again: an optional package is left
    // out, any other fails the install.
    let mut failed_builds = linked.failed_builds;
    let mut leftover = Vec::new();
    for unit in linked.leftover {
        match failed_builds.remove(&unit.key) {
            None => leftover.push(unit),
            Some(error) if unit.optional => {
                let warning = crate::fetch::left_out_warning(&error);
                reporter.on_warning(&warning);
                counts.fetched = counts.fetched.saturating_sub(1);
                counts.left_out.push((unit, warning));
            }
            Some(error) => return Err(error),
        }
    }
    if !leftover.is_empty() {
        // Packages of the final graph that the run neither found nor stored (a download that
        // failed, to be retried knowing whether it is optional): fetched and imported now,
        // and counted by this second run only.
        counts.fetched = counts.fetched.saturating_sub(leftover.len());
        let (stages, more) = run_pipeline(
            options,
            config,
            &store,
            &layout,
            &hoisted,
            (Vec::new(), leftover),
            git_builds(options, config, store_dir, builds).as_ref(),
            &kept,
            (crate::metadata::InPlace::default(), &Doomed::default()),
            reporter,
        )?;
        report.stages.extend(stages);
        counts.add(more);
    }
    leave_out(project_dir, &mut plan, &mut hoisted, &counts.left_out)?;
    let layout = Layout::new(project_dir, &plan);
    // The lockfile's text is printed while the shims are written (a few ms each on 1,000
    // packages, and the shims leave a core idle).
    let (bins, text) = std::thread::scope(|scope| {
        let text = scope.spawn(|| to_yaml(&lockfile));
        let bins = crate::bins::link_bins(&layout, &hoisted);
        let text = text
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (bins, text)
    });
    warnings.extend(bins?);
    let end = Finish {
        options,
        store_dir,
        store: &store,
        builds,
        lifecycle,
        lockfile_path: Some(lockfile_path),
        kept: &kept,
        requires_build: counts.builds.iter().cloned().collect(),
        reporter,
    };
    end.finish(&layout, &hoisted, &text, &mut warnings)?;
    let report = counts.into_report(&plan, started, report.stages, warnings);
    drop_in_background((lockfile, plan, hoisted));
    Ok(report)
}

/// Frees an install's big structures on a thread of their own: a 1,000-package lockfile and
/// plan take a few ms to drop, which the caller (a CLI about to exit) need not wait for.
fn drop_in_background<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("flowpm-drop".to_owned())
        .spawn(move || drop(value));
    // Without a thread (resource limits), the value was dropped by the failed spawn already.
    drop(spawned);
}

/// The end of an install that changed the tree.
struct Finish<'a> {
    options: &'a InstallOptions,
    store_dir: &'a Path,
    store: &'a Store,
    builds: &'a BuildSettings,
    lifecycle: Option<&'a Lifecycle<'a>>,
    /// Where a newly resolved lockfile goes: written once the scripts succeed (a failed build
    /// leaves the old one, as with pnpm).
    lockfile_path: Option<&'a Path>,
    /// Built packages left as an earlier install built them.
    kept: &'a HashSet<String>,
    /// The snapshots whose package requires a build (depPaths), from the importers.
    requires_build: HashSet<String>,
    reporter: &'a dyn Reporter,
}

impl Finish<'_> {
    /// Runs the builds and the projects' scripts, writes the lockfile if it is new, then
    /// `.modules.yaml` and the lockfile copy, last: they mark the tree complete. Ignored
    /// builds are reported after that.
    fn finish(
        &self,
        layout: &Layout<'_>,
        hoisted: &[crate::hoist::Hoisted],
        lockfile_text: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), InstallError> {
        let (ignored, pending) = match self.lifecycle {
            Some(lifecycle) => (
                lifecycle.after_link(layout, self.store, &self.requires_build, self.kept)?,
                Vec::new(),
            ),
            None => (
                Vec::new(),
                crate::lifecycle::pending_builds(layout, &self.requires_build, self.kept)?,
            ),
        };
        if let Some(path) = self.lockfile_path {
            write_atomically(path, lockfile_text.as_bytes())?;
        }
        let store_dir = self.store_dir;
        write_metadata(
            layout,
            hoisted,
            &ModulesSettings {
                production_only: self.options.production_only,
                store_dir,
                skipped: &layout.plan.skipped,
                allow_builds: &self.builds.allow,
                allow_all_builds: self.builds.allow_all,
                ignored_builds: &ignored,
                pending_builds: &pending,
            },
            lockfile_text,
        )?;
        report_ignored(ignored, self.lifecycle, self.reporter, warnings)
    }
}

/// Builds that no `allowBuilds` entry decides fail the install with `strictDepBuilds` (pnpm
/// 12's default), else they are a warning. The tree is complete either way.
fn report_ignored(
    ignored: Vec<String>,
    lifecycle: Option<&Lifecycle<'_>>,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<(), InstallError> {
    let Some(lifecycle) = lifecycle else {
        return Ok(());
    };
    if ignored.is_empty() {
        return Ok(());
    }
    if lifecycle.settings.strict {
        return Err(InstallError::IgnoredBuilds { packages: ignored });
    }
    let warning = format!(
        "ignored build scripts: {} (allow them with `allowBuilds` in pnpm-workspace.yaml)",
        ignored.join(", ")
    );
    reporter.on_warning(&warning);
    warnings.push(warning);
    Ok(())
}

/// Scripts run unless `--ignore-scripts` or `ignore-scripts=true` in .npmrc says otherwise.
fn scripts_enabled(options: &InstallOptions, config: &NpmConfig) -> bool {
    !options.ignore_scripts && config.get("ignore-scripts") != Some("true")
}

/// How this install treats git packages that must be built: `None` when scripts are off.
fn git_builds<'a>(
    options: &'a InstallOptions,
    config: &NpmConfig,
    store_dir: &Path,
    builds: &'a BuildSettings,
) -> Option<GitBuilds<'a>> {
    scripts_enabled(options, config)
        .then(|| GitBuilds::new(builds, options.own_command.as_deref(), config, store_dir))
}

/// Resolves `projects` against the registry, keeping `old`'s versions where they satisfy and
/// downloading tarballs into the store as versions are picked (unless `--lockfile-only`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve_project(
    options: &InstallOptions,
    config: &Arc<NpmConfig>,
    store_dir: &Path,
    projects: &[Project<'_>],
    rules: &Rules,
    old: Option<&Lockfile>,
    builds: &BuildSettings,
    reporter: &dyn Reporter,
    link: Option<(&EarlyLink<'_>, &Planned)>,
) -> Result<(Lockfile, InstallReport, LinkOutcome), InstallError> {
    // From pnpm-workspace.yaml: pnpm 12 ignores an .npmrc `minimum-release-age` (observed).
    let minutes = options
        .minimum_release_age
        .or(rules.minimum_release_age)
        .unwrap_or(DEFAULT_MINIMUM_RELEASE_AGE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let update = options.update.as_deref();
    let cutoff = (minutes > 0).then(|| {
        now.saturating_sub(
            i64::try_from(minutes)
                .unwrap_or(i64::MAX)
                .saturating_mul(60),
        )
    });
    let release_age = crate::packument::ReleaseAge::new(cutoff, &rules.minimum_release_age_exclude)
        .map_err(|message| InstallError::InvalidFile {
            path: rules.root.join(workspace::WORKSPACE_FILE),
            message,
        })?;
    let resolve_options = ResolveOptions {
        release_age,
        update: update.unwrap_or_default().iter().cloned().collect(),
        update_all: update.is_some_and(|names| names.is_empty()),
        overrides: rules.overrides.clone(),
        package_extensions: rules.package_extensions.clone(),
        registries: config.registries()?,
        catalogs: rules.catalogs.clone(),
        root: Some(rules.root.clone()),
        allow_exotic_subdeps: rules.allow_exotic_subdeps,
        patches: rules.patches.clone(),
        allow_unused_patches: rules.allow_unused_patches,
    };
    let cache_mode = if options.offline {
        CacheMode::Offline
    } else if options.prefer_offline {
        CacheMode::PreferOffline
    } else {
        CacheMode::Revalidate
    };
    let run = ResolveRun {
        config,
        store_dir,
        cache_mode,
        offline: options.offline,
        prefetch: !options.lockfile_only,
        cancel: &options.cancel,
        reporter,
        git_builds: git_builds(options, config, store_dir, builds),
    };
    let (resolved, stages, linked) =
        resolve_with_registry(&run, projects, old, &resolve_options, link)?;
    for warning in &resolved.warnings {
        reporter.on_warning(warning);
    }
    Ok((
        resolved.lockfile,
        InstallReport {
            stages,
            warnings: resolved.warnings,
            ..InstallReport::default()
        },
        linked,
    ))
}

/// What `root`'s pnpm-workspace.yaml makes resolution apply.
pub(crate) struct Rules {
    pub overrides: Overrides,
    pub package_extensions: PackageExtensions,
    pub catalogs: Catalogs,
    /// `minimumReleaseAge` (minutes) and `minimumReleaseAgeExclude`.
    pub minimum_release_age: Option<u64>,
    pub minimum_release_age_exclude: Vec<String>,
    pub allow_exotic_subdeps: bool,
    /// `patchedDependencies`: key -> the sha256 of its patch file ([`crate::patch::hash`]).
    pub patches: std::collections::BTreeMap<String, String>,
    pub allow_unused_patches: bool,
    /// The workspace root (the lockfile's directory): local dependencies are read from here.
    pub root: PathBuf,
}

/// Parses the overrides of `root`'s pnpm-workspace.yaml (`$name` values refer to
/// `root_manifest`) and takes its catalogs.
pub(crate) fn parse_rules(
    settings: workspace::Settings,
    root_manifest: &Manifest,
    root: &Path,
) -> Result<Rules, InstallError> {
    let overrides = Overrides::parse(settings.overrides, root_manifest).map_err(|message| {
        InstallError::InvalidFile {
            path: root.join(workspace::WORKSPACE_FILE),
            message,
        }
    })?;
    let patches = settings
        .patched_dependencies
        .iter()
        .map(|(key, path)| {
            Ok((
                key.clone(),
                crate::patch::hash(&crate::patch::read(root, path)?),
            ))
        })
        .collect::<Result<_, InstallError>>()?;
    Ok(Rules {
        patches,
        allow_unused_patches: settings.allow_unused_patches,
        overrides,
        package_extensions: settings.package_extensions,
        catalogs: settings.catalogs,
        minimum_release_age: settings.minimum_release_age,
        minimum_release_age_exclude: settings.minimum_release_age_exclude,
        allow_exotic_subdeps: settings.allow_exotic_subdeps,
        root: root.to_path_buf(),
    })
}

/// pnpm 12's default `minimumReleaseAge`: a day.
const DEFAULT_MINIMUM_RELEASE_AGE: u64 = 1440;

/// Locks the project directory (`flock` on the directory itself, so no file is created) until
/// the returned handle drops, which the kernel also does if the process dies. Holding it,
/// sweeps the temp files of killed commands from the root and the workspace projects.
fn lock_project(
    project_dir: &Path,
    members: &[WorkspaceProject],
    reporter: &dyn Reporter,
) -> Result<std::os::fd::OwnedFd, InstallError> {
    use rustix::fs::{FlockOperation, Mode, OFlags, flock};
    let dir = rustix::fs::open(
        project_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| InstallError::io("open", project_dir, e.into()))?;
    if flock(&dir, FlockOperation::NonBlockingLockExclusive).is_err() {
        reporter.on_warning(&format!(
            "waiting for another install in {} to finish",
            project_dir.display()
        ));
        loop {
            match flock(&dir, FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(InstallError::io("lock", project_dir, e.into())),
            }
        }
    }
    // What a killed command left: `.pnpm-lock.yaml.flowpm-<pid>`, a project's
    // `.package.json.flowpm-<pid>` (those in node_modules go with the prune).
    remove_stale_temps(project_dir);
    for member in members {
        remove_stale_temps(&project_dir.join(&member.id));
    }
    Ok(dir)
}

/// The plan's units, as packages the store already has (with their file lists) and units it
/// does not. `git_builds` is how this install treats git packages that must be built (`None`
/// when scripts are off). Units whose every snapshot is in `present` (files in place, not
/// imported) get an empty file list unless their package requires a build.
pub(crate) fn split_by_store(
    store: &Store,
    plan: &InstallPlan,
    git_builds: Option<&GitBuilds<'_>>,
    present: &HashSet<usize>,
) -> Result<(Vec<StoredPackage>, Vec<Arc<PackageUnit>>), InstallError> {
    let units = group_units(plan)?;
    let cached = store.index().get_many_flags(units.iter().map(|unit| {
        let in_place = unit.snapshots.iter().all(|index| present.contains(index));
        (unit.key.as_str(), in_place)
    }))?;
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for (unit, files) in units.into_iter().zip(cached) {
        match files {
            // A directory can change between installs: it is read again every time.
            Some(files)
                if unit.directory.is_none() && usable_git_copy(&unit, &files, git_builds) =>
            {
                warm.push(StoredPackage {
                    unit,
                    files: Arc::new(files),
                })
            }
            _ => cold.push(unit),
        }
    }
    Ok((warm, cold))
}

/// Whether the stored copy of a git package serves this install. A built one does when scripts
/// are off or its build is allowed (else it is fetched again, to be refused as the first
/// install would have); one stored unbuilt (`prepare` under --ignore-scripts) never does, so
/// that each install builds it, refuses it or warns about it; nor does one whose entry does
/// not say (stored by an earlier flowpm, which could have stored it unbuilt).
fn usable_git_copy(
    unit: &PackageUnit,
    files: &flowpm_store::PackageFiles,
    git_builds: Option<&GitBuilds<'_>>,
) -> bool {
    let Some(git) = &unit.git else {
        return true;
    };
    match files.git {
        Some(GitCopy::AsCommitted) => true,
        Some(GitCopy::Prepared) => git_builds.is_none_or(|builds| builds.allows(&unit.name, git)),
        Some(GitCopy::Unbuilt) | None => false,
    }
}

/// Snapshots that share a tarball (peer variants of one package) share one unit.
pub(crate) fn group_units(plan: &InstallPlan) -> Result<Vec<Arc<PackageUnit>>, InstallError> {
    let mut by_key: HashMap<String, PackageUnit> = HashMap::new();
    let mut order = Vec::new();
    for (index, snapshot) in plan.snapshots.iter().enumerate() {
        let key = snapshot.index_key();
        if let Some(unit) = by_key.get_mut(&key) {
            unit.snapshots.push(index);
            unit.optional &= snapshot.optional;
            continue;
        }
        let integrity = match &snapshot.integrity {
            Some(text) => {
                Some(
                    Integrity::parse(text).ok_or_else(|| InstallError::BadIntegrity {
                        package: snapshot.dep_path.clone(),
                        integrity: text.clone(),
                    })?,
                )
            }
            None => None,
        };
        order.push(key.clone());
        by_key.insert(
            key.clone(),
            PackageUnit {
                key,
                name: snapshot.name.clone(),
                version: snapshot.version.clone(),
                integrity,
                tarball: snapshot.tarball.clone(),
                directory: snapshot.directory.clone(),
                git: snapshot.git.clone(),
                snapshots: vec![index],
                optional: snapshot.optional,
            },
        );
    }
    Ok(order
        .into_iter()
        .map(|key| Arc::new(by_key.remove(&key).expect("key was inserted")))
        .collect())
}

#[derive(Default)]
struct Counts {
    fetched: usize,
    reused: usize,
    files_imported: u64,
    files_written: u64,
    bytes_downloaded: u64,
    bytes_imported: u64,
    /// Optional packages left out because their tarballs could not be had, with warnings.
    left_out: Vec<(Arc<PackageUnit>, String)>,
    /// Snapshots whose package requires a build (depPaths), as the importer saw them.
    builds: Vec<String>,
}

impl Counts {
    fn into_report(
        self,
        plan: &InstallPlan,
        started: Instant,
        stages: Vec<StageSnapshot>,
        mut warnings: Vec<String>,
    ) -> InstallReport {
        warnings.extend(self.left_out.iter().map(|(_, warning)| warning.clone()));
        InstallReport {
            packages: plan.snapshots.len(),
            fetched: self.fetched,
            reused: self.reused,
            skipped_optional: plan.skipped.len() + self.left_out.len(),
            files_imported: self.files_imported,
            files_written: self.files_written,
            bytes_downloaded: self.bytes_downloaded,
            bytes_imported: self.bytes_imported,
            elapsed: started.elapsed(),
            up_to_date: false,
            stages,
            warnings,
        }
    }

    fn add(&mut self, other: Counts) {
        self.left_out.extend(other.left_out);
        self.builds.extend(other.builds);
        self.fetched += other.fetched;
        self.reused += other.reused;
        self.files_imported += other.files_imported;
        self.files_written += other.files_written;
        self.bytes_downloaded += other.bytes_downloaded;
        self.bytes_imported += other.bytes_imported;
    }
}

/// Runs the stages on their threads until every package is imported.
#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    options: &InstallOptions,
    config: &Arc<NpmConfig>,
    store: &Store,
    layout: &Layout<'_>,
    hoisted: &[crate::hoist::Hoisted],
    (warm, cold): (Vec<StoredPackage>, Vec<Arc<PackageUnit>>),
    git_builds: Option<&GitBuilds<'_>>,
    kept: &HashSet<String>,
    // What is in place, and what is to be deleted meanwhile.
    (present, doomed): (crate::metadata::InPlace, &Doomed),
    reporter: &dyn Reporter,
) -> Result<(Vec<flowpm_pipeline::StageSnapshot>, Counts), InstallError> {
    let crate::metadata::InPlace {
        files: present,
        links: linked,
        unbuilt,
        ..
    } = present;
    let mut counts = Counts {
        fetched: cold.len(),
        reused: warm.len(),
        ..Counts::default()
    };
    let files_written = AtomicU64::new(0);
    let importer = Importer::new(layout, store.cas(), reporter, options.import_method)
        .keeping(kept.clone())
        .leaving_unbuilt(unbuilt)
        .skipping(present);
    let mut fetcher = Fetcher::new(config.clone(), options.offline, reporter)?;
    fetcher.root = Some(layout.project_dir.clone());
    fetcher.git_builds = git_builds.cloned();
    let outcome = flowpm_pipeline::run(&options.cancel, |pipeline| {
        // The work list is the plan itself (bounded by the lockfile), so it is queued whole.
        let (unit_sender, unit_receiver) = unbounded::<Arc<PackageUnit>>();
        let (import_sender, import_receiver) = bounded::<StoredPackage>(IMPORT_QUEUE);
        let fetch_threads = threads("fetch", FETCH_THREADS).min(cold.len());
        for unit in cold {
            let _ = unit_sender.send(unit);
        }
        drop(unit_sender);

        pipeline.spawn("link", 1, |context| {
            layout.create_links(hoisted, (&linked, importer.present()), context)
        });
        if !doomed.is_empty() {
            let threads = threads("prune", PRUNE_THREADS);
            pipeline.spawn("prune", threads, |context| doomed.remove(Some(context)));
        }
        if fetch_threads > 0 {
            let fetcher = &fetcher;
            spawn_store_stages(
                pipeline,
                fetch_threads,
                unit_receiver,
                import_sender.clone(),
                StoreStages {
                    fetcher,
                    store,
                    reporter,
                    files_written: &files_written,
                },
            );
        }
        drop(import_sender);
        let importer = &importer;
        // Index hits go straight to the importers.
        let warm = Preloaded::new(warm);
        pipeline.spawn(
            "import",
            import_threads(&layout.project_dir),
            move |context| run_import_worker(context, (&warm, &import_receiver), importer),
        );
    });
    let outcome = outcome?;
    counts.files_written = files_written.load(Ordering::Relaxed);
    counts.files_imported = importer.files_imported.load(Ordering::Relaxed);
    counts.bytes_imported = importer.bytes_imported.load(Ordering::Relaxed);
    counts.builds = importer.take_builds();
    counts.bytes_downloaded = outcome.stage("fetch").map_or(0, |stage| stage.bytes);
    counts.left_out = fetcher.take_left_out();
    counts.fetched -= counts.left_out.len();
    Ok((outcome.stages, counts))
}

/// The project's npm configuration with the command line's overrides, and its store.
pub(crate) fn load_config(
    project_dir: &Path,
    options: &InstallOptions,
) -> Result<(Arc<NpmConfig>, PathBuf), InstallError> {
    let config = NpmConfig::load(
        project_dir,
        &ConfigOverrides {
            registry: options.registry.clone(),
            store_dir: options.store_dir.clone(),
        },
    )?;
    let store_dir = config.store_dir(project_dir);
    Ok((Arc::new(config), store_dir))
}

/// What the store-filling stages share.
pub(crate) struct StoreStages<'a> {
    pub fetcher: &'a Fetcher<'a>,
    pub store: &'a Store,
    pub reporter: &'a dyn Reporter,
    /// Files that were new to the store.
    pub files_written: &'a AtomicU64,
}

/// Spawns the stages that fill the store: `fetch` (download and decode), `write` (hash and
/// stage each file) and `index`. Every unit received is stored, then also sent to `stored`
/// (closed when the last fetch or write thread exits).
pub(crate) fn spawn_store_stages<'scope>(
    pipeline: &mut flowpm_pipeline::Pipeline<'scope, '_, InstallError>,
    fetch_threads: usize,
    units: flowpm_pipeline::Receiver<Arc<PackageUnit>>,
    stored: flowpm_pipeline::Sender<StoredPackage>,
    shared: StoreStages<'scope>,
) {
    let (file_sender, file_receiver) = bounded(FILE_QUEUE);
    let (index_sender, index_receiver) = bounded::<StoredPackage>(INDEX_QUEUE);
    // Writers and fetch threads share the finaliser; its senders close the `stored` and index
    // queues when the last of those threads exits.
    let finalizer = Arc::new(Finalizer {
        cas: shared.store.cas(),
        import: stored,
        index: index_sender,
        reporter: shared.reporter,
        files_written: shared.files_written,
    });
    let fetch_finalizer = finalizer.clone();
    let fetcher = shared.fetcher;
    let fetch = pipeline.declare("fetch");
    let writers = pipeline.declare("write");
    pipeline.spawn_declared(&writers, threads("write", WRITE_THREADS), move |context| {
        run_write_worker(context, &file_receiver, &finalizer)
    });
    let (streams, stream_jobs) = StreamWriters::channel(shared.store.cas());
    pipeline.spawn_declared(
        &writers,
        threads("stream_write", STREAM_WRITE_THREADS),
        move |context| {
            run_stream_writer(context, &stream_jobs);
            Ok(())
        },
    );
    let files = FileQueue {
        sender: file_sender,
        writers,
        streams,
    };
    pipeline.spawn_declared(&fetch, fetch_threads, move |context| {
        run_fetch_worker(context, &units, fetcher, &files, &fetch_finalizer)
    });
    let store = shared.store;
    pipeline.spawn("index", 1, move |context| {
        run_index_writer(context, &index_receiver, store.index())
    });
}

/// Where the store is for a project, as `install` would use it (for `flowpm store path`).
pub fn store_dir_for(
    project_dir: &Path,
    overrides: &ConfigOverrides,
) -> Result<PathBuf, InstallError> {
    Ok(NpmConfig::load(project_dir, overrides)?.store_dir(project_dir))
}

#[cfg(test)]
mod tests {
    use flowpm_store::PackageFiles;

    use super::*;
    use crate::git::GitSource;

    fn git_unit() -> PackageUnit {
        PackageUnit {
            key: "git:k".to_owned(),
            name: "gitprep".to_owned(),
            version: "1.0.0".to_owned(),
            integrity: None,
            tarball: None,
            directory: None,
            git: Some(GitSource {
                repo: "file:///repos/gitprep".to_owned(),
                commit: "a".repeat(40),
                path: None,
            }),
            snapshots: Vec::new(),
            optional: false,
        }
    }

    #[test]
    fn a_stored_git_copy_serves_by_what_its_entry_recorded() {
        let unit = git_unit();
        let copy = |git| PackageFiles {
            git,
            ..PackageFiles::default()
        };
        let refusing = GitBuilds::refusing();
        for builds in [None, Some(&refusing)] {
            assert!(usable_git_copy(
                &unit,
                &copy(Some(GitCopy::AsCommitted)),
                builds
            ));
            assert!(!usable_git_copy(
                &unit,
                &copy(Some(GitCopy::Unbuilt)),
                builds
            ));
            // Stored by a flowpm that did not record whether it was built: fetched again.
            assert!(!usable_git_copy(&unit, &copy(None), builds));
        }
        // A built copy is served when scripts are off, and refused when its build is not allowed.
        assert!(usable_git_copy(&unit, &copy(Some(GitCopy::Prepared)), None));
        assert!(!usable_git_copy(
            &unit,
            &copy(Some(GitCopy::Prepared)),
            Some(&refusing)
        ));
        let registry = PackageUnit {
            git: None,
            ..git_unit()
        };
        assert!(usable_git_copy(&registry, &copy(None), Some(&refusing)));
    }
}
