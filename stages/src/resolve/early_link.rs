//! Linking inside the resolution run: once the graph is final, the layout's directories and
//! symlinks are created and every stored package is imported while the remaining tarballs
//! still download, instead of after the last one.
//!
//! The resolve thread builds the plan and fills [`LinkCells`]; the `link`, `dispatch`,
//! `import` and `prune` stages wait for that (they block on a channel the resolve thread
//! closes) and then work from the cells. Packages stored before the plan exists wait in an
//! unbounded channel (their file lists only, bounded by the lockfile) so downloads never stall
//! on resolution.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use flowpm_pipeline::{Receiver, Sender, StageContext};
use flowpm_store::Store;

use crate::InstallError;
use crate::git_prepare::GitBuilds;
use crate::hoist::{Hoisted, hoist};
use crate::install::split_by_store;
use crate::link::{Doomed, ImportMethod, Importer, Layout};
use crate::lockfile::Lockfile;
use crate::messages::{PackageUnit, StoredPackage};
use crate::metadata::invalidate;
use crate::plan::{InstallPlan, PlanOptions, WorkspaceProject, plan};
use crate::report::Reporter;

/// What the caller wants linked (the project lock is already held).
pub struct EarlyLink<'a> {
    pub project_dir: &'a Path,
    pub plan_options: &'a PlanOptions,
    pub import_method: ImportMethod,
    /// The workspace's projects besides the root (none outside a workspace).
    pub workspace_projects: &'a [WorkspaceProject],
    /// The lockfile resolution started from, with its text: usually what the last install put
    /// in place, so finding what is still there needs no second parse.
    pub previous: Option<(&'a str, &'a Lockfile)>,
}

/// The plan and its hoisting, set by the resolve thread; owned by the caller, which uses them
/// after the run.
#[derive(Default)]
pub struct Planned {
    pub plan: OnceLock<InstallPlan>,
    pub hoisted: OnceLock<Vec<Hoisted>>,
    /// The plan's packages an earlier install built, left as they are.
    pub kept: OnceLock<HashSet<String>>,
}

/// Filled once by the resolve thread; read by the link, dispatch and import stages.
pub struct LinkCells<'a> {
    planned: &'a Planned,
    layout: OnceLock<Layout<'a>>,
    importer: OnceLock<Importer<'a>>,
    /// Snapshots whose dependency links are in place ([`crate::metadata::InPlace::links`]).
    linked: OnceLock<HashSet<usize>>,
    /// Package directories of an earlier install that the plan no longer has.
    doomed: OnceLock<Doomed>,
    /// Units of the plan that neither were in the store nor arrived from the fetch stages.
    pub leftover: Mutex<Vec<Arc<PackageUnit>>>,
    /// Keys of the units the resolve thread sent to the fetch stages.
    sent: OnceLock<HashSet<String>>,
    /// Units of the plan fetched by this run, and found in the store without it.
    pub counts: Mutex<(usize, usize)>,
}

impl<'a> LinkCells<'a> {
    pub fn new(planned: &'a Planned) -> Self {
        LinkCells {
            planned,
            layout: OnceLock::new(),
            importer: OnceLock::new(),
            linked: OnceLock::new(),
            doomed: OnceLock::new(),
            leftover: Mutex::new(Vec::new()),
            sent: OnceLock::new(),
            counts: Mutex::new((0, 0)),
        }
    }

    /// Plans the resolved lockfile and prepares `node_modules` for it (on the resolve thread).
    pub fn prepare(
        &'a self,
        target: &EarlyLink<'_>,
        lockfile: &Lockfile,
        store: &'a Store,
        reporter: &'a dyn Reporter,
        sent: HashSet<String>,
    ) -> Result<(), InstallError> {
        let _ = self.sent.set(sent);
        let mut planned = plan(lockfile, target.plan_options)?;
        planned.workspace_projects = target.workspace_projects.to_vec();
        let plan = self.planned.plan.get_or_init(|| planned);
        let layout = self
            .layout
            .get_or_init(|| Layout::new(target.project_dir, plan));
        // Both read before `invalidate`: they need the earlier install to have been complete.
        let previous = target
            .previous
            .map(|(text, lockfile)| (text, Some(lockfile)));
        let present = crate::metadata::in_place(layout, previous);
        let kept = self
            .planned
            .kept
            .get_or_init(|| crate::lifecycle::already_built(layout, &present));
        invalidate(layout)?;
        self.planned.hoisted.get_or_init(|| hoist(plan));
        let _ = self.doomed.set(layout.doomed()?);
        let importer = Importer::new(layout, store.cas(), reporter, target.import_method);
        let _ = self.importer.set(
            importer
                .keeping(kept.clone())
                .leaving_unbuilt(present.unbuilt)
                .skipping(present.files),
        );
        let _ = self.linked.set(present.links);
        Ok(())
    }

    /// The snapshots seen so far whose package requires a build (depPaths).
    pub fn take_builds(&self) -> Vec<String> {
        self.importer
            .get()
            .map_or_else(Vec::new, Importer::take_builds)
    }

    /// Files and bytes imported so far.
    pub fn imported(&self) -> (u64, u64) {
        self.importer.get().map_or((0, 0), |importer| {
            (
                importer.files_imported.load(Ordering::Relaxed),
                importer.bytes_imported.load(Ordering::Relaxed),
            )
        })
    }

    /// The prepared layout, once the resolve thread is done (`None` if it failed).
    fn ready(&self, context: &StageContext, ready: &Receiver<()>) -> Option<&Importer<'a>> {
        // The resolve thread never sends: it closes the channel when it is done.
        while context.recv(ready).is_some() {}
        self.importer.get()
    }

    /// The `link` stage: every directory and symlink.
    pub fn run_link(
        &self,
        context: &StageContext,
        ready: &Receiver<()>,
    ) -> Result<(), InstallError> {
        let (Some(importer), Some(layout), Some(hoisted), Some(linked)) = (
            self.ready(context, ready),
            self.layout.get(),
            self.planned.hoisted.get(),
            self.linked.get(),
        ) else {
            return Ok(());
        };
        layout.create_links(hoisted, (linked, importer.present()), context)
    }

    /// The `prune` stage: removes what an earlier install left that the plan does not have
    /// ([`Layout::prune`], then the package directories, on every worker), beside the `link`
    /// stage (neither touches what the other makes).
    pub fn run_prune(
        &self,
        context: &StageContext,
        ready: &Receiver<()>,
    ) -> Result<(), InstallError> {
        let (Some(_), Some(layout), Some(hoisted), Some(doomed)) = (
            self.ready(context, ready),
            self.layout.get(),
            self.planned.hoisted.get(),
            self.doomed.get(),
        ) else {
            return Ok(());
        };
        if context.worker() == 0 {
            layout.prune(hoisted)?;
        }
        doomed.remove(Some(context))
    }

    /// The `import` stage.
    pub fn run_import(
        &self,
        context: &StageContext,
        ready: &Receiver<()>,
        input: &Receiver<StoredPackage>,
    ) -> Result<(), InstallError> {
        match self.ready(context, ready) {
            Some(importer) => {
                let preloaded = crate::link::Preloaded::default();
                crate::link::run_import_worker(context, (&preloaded, input), importer)
            }
            None => Ok(()),
        }
    }

    /// The `dispatch` stage: sends the plan's packages already in the store, then each one
    /// the fetch stages store, to the importers under the plan's units (which say where each
    /// goes); whatever never arrives is left for the caller.
    pub(crate) fn run_dispatch(
        &self,
        context: &StageContext,
        ready: &Receiver<()>,
        (store, git_builds): (&Store, Option<&GitBuilds<'_>>),
        stored: &Receiver<StoredPackage>,
        import: &Sender<StoredPackage>,
    ) -> Result<(), InstallError> {
        let (Some(importer), Some(plan)) = (self.ready(context, ready), self.planned.plan.get())
        else {
            while context.recv(stored).is_some() {}
            return Ok(());
        };
        let (stored_already, missing) =
            split_by_store(store, plan, git_builds, importer.present())?;
        let sent = self.sent.get();
        let fetched = stored_already
            .iter()
            .map(|package| &package.unit)
            .chain(&missing)
            .filter(|unit| sent.is_some_and(|sent| sent.contains(&unit.key)))
            .count();
        *self.counts.lock().unwrap() = (fetched, stored_already.len() + missing.len() - fetched);
        for package in stored_already {
            // Nothing to do for a package in place (unless its build is to be recorded): not
            // sent, which saves a wake-up per package on an edit.
            let in_place = !package.files.requires_build
                && package
                    .unit
                    .snapshots
                    .iter()
                    .all(|index| importer.present().contains(index));
            if !in_place && context.send(import, package).is_err() {
                return Ok(());
            }
        }
        let mut pending: HashMap<String, Arc<PackageUnit>> = missing
            .into_iter()
            .map(|unit| (unit.key.clone(), unit))
            .collect();
        // Anything stored that the final graph does not have (or that was found in the store
        // above) is not imported.
        while let Some(package) = context.recv(stored) {
            if let Some(unit) = pending.remove(&package.unit.key) {
                let package = StoredPackage {
                    unit,
                    files: package.files,
                };
                if context.send(import, package).is_err() {
                    return Ok(());
                }
            }
        }
        self.leftover.lock().unwrap().extend(pending.into_values());
        Ok(())
    }
}
