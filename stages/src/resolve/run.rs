//! Resolution as pipeline stages:
//!
//! ```text
//! resolve (1 thread) ──names──> metadata (M threads: packument cache / registry)
//!    ^                               │
//!    └────────── packuments ─────────┘
//!    └──PackageUnit (each picked version, at once)──> fetch ──> write ──> index (the store)
//! ```
//! Tarballs download while the graph is still being resolved. For an install, the layout is
//! linked as soon as the graph is final and stored packages are imported as they land
//! ([`super::early_link`]); otherwise (`add`, `remove`, `update`) the install that follows finds
//! them in the store and only links.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flowpm_pipeline::{
    CancelToken, Receiver, Sender, StageContext, StageSnapshot, bounded, unbounded,
};
use flowpm_store::Store;

use crate::InstallError;
use crate::capacity::{
    FETCH_THREADS, FILE_QUEUE, IMPORT_QUEUE, PRUNE_THREADS, import_threads, threads,
};
use crate::config::NpmConfig;
use crate::fetch::{Fetcher, default_tarball_url};
use crate::install::{StoreStages, spawn_store_stages};
use crate::integrity::Integrity;
use crate::lockfile::Lockfile;
use crate::messages::{PackageUnit, StoredPackage};
use crate::packument::Packument;
use crate::platform::Platform;
use crate::report::Reporter;

use super::early_link::{EarlyLink, LinkCells, Planned};
use super::metadata::{
    CacheMode, MetadataFetcher, PackumentRequest, PackumentResult, run_metadata_worker,
};
use super::{Node, PackumentSource, Project, ResolveOptions, Resolved, resolve};

/// Packument fetchers: registry latency, not CPU, bounds them.
pub const METADATA_THREADS: usize = 16;

pub struct ResolveRun<'a> {
    pub config: &'a Arc<NpmConfig>,
    pub store_dir: &'a Path,
    pub cache_mode: CacheMode,
    pub offline: bool,
    /// Download each picked version's tarball into the store during resolution.
    pub prefetch: bool,
    pub cancel: &'a CancelToken,
    pub reporter: &'a dyn Reporter,
    /// How git packages that must be built are treated ([`Fetcher::git_builds`]).
    pub(crate) git_builds: Option<crate::git_prepare::GitBuilds<'a>>,
}

/// What linking inside the run did.
#[derive(Debug, Default)]
pub struct LinkOutcome {
    /// Units of the plan that were neither in the store nor stored by this run.
    pub leftover: Vec<Arc<PackageUnit>>,
    /// Units of the plan downloaded by this run, and units found in the store.
    pub fetched: usize,
    pub reused: usize,
    pub files_written: u64,
    pub files_imported: u64,
    pub bytes_imported: u64,
    /// Snapshots whose package requires a build (depPaths).
    pub builds: Vec<String>,
    /// Git packages whose build was refused or failed, by unit key (not tried again).
    pub failed_builds: HashMap<String, InstallError>,
}

/// Resolves `projects` against the registry (keeping `old`'s versions where they satisfy).
/// With `link` (which needs `run.prefetch`), also lays out and fills `node_modules` for the
/// result, leaving its plan in the given [`Planned`].
pub fn resolve_with_registry(
    run: &ResolveRun<'_>,
    projects: &[Project<'_>],
    old: Option<&Lockfile>,
    options: &ResolveOptions,
    link: Option<(&EarlyLink<'_>, &Planned)>,
) -> Result<(Resolved, Vec<StageSnapshot>, LinkOutcome), InstallError> {
    let mut fetcher = Fetcher::new(run.config.clone(), run.offline, run.reporter)?;
    // Whether a package that cannot be had is optional is known only once the graph is
    // final: the install that follows retries it and decides.
    fetcher.defer_failures = true;
    fetcher.root = options.root.clone();
    fetcher.git_builds = run.git_builds.clone();
    let metadata = MetadataFetcher::new(
        &fetcher,
        run.store_dir,
        run.cache_mode,
        &options.release_age,
    );
    let store = if run.prefetch {
        Some(Store::open(run.store_dir)?)
    } else {
        None
    };
    let files_written = AtomicU64::new(0);
    let result: Mutex<Option<Resolved>> = Mutex::new(None);
    let link = link.filter(|_| run.prefetch);
    let planned_fallback = Planned::default();
    let cells = LinkCells::new(link.map_or(&planned_fallback, |(_, planned)| planned));
    let target = link.map(|(target, _)| target);
    let config = run.config.clone();
    let default_tarball =
        move |name: &str, version: &str| default_tarball_url(&config, name, version).ok();

    let outcome = flowpm_pipeline::run(run.cancel, |pipeline| {
        let (name_sender, name_receiver) = unbounded::<PackumentRequest>();
        let (packument_sender, packument_receiver) = unbounded::<PackumentResult>();
        let (unit_sender, unit_receiver) = unbounded::<Arc<PackageUnit>>();
        // Never sent on: closed by the resolve thread once the layout is prepared (or failed).
        let (ready_sender, ready_receiver) = unbounded::<()>();
        let senders = Mutex::new(Some((name_sender, unit_sender, ready_sender)));
        let (result, default_tarball, cells) = (&result, &default_tarball, &cells);
        let fetcher = &fetcher;
        let store_ref = store.as_ref();
        pipeline.spawn("resolve", 1, move |context| {
            let (names, units, _ready) =
                senders.lock().unwrap().take().expect("one resolve thread");
            let mut source = PipelineSource {
                context,
                names,
                packuments: &packument_receiver,
                units: store_ref.map(|store| (units, store)),
                platform: Platform::host(),
                sent: HashSet::new(),
                fetcher,
            };
            let resolved = resolve(projects, old, options, &mut source, default_tarball)
                .map_err(|failure| InstallError::Resolve(failure.message))?;
            if let (Some(target), Some(store)) = (target, store_ref) {
                cells.prepare(target, &resolved.lockfile, store, run.reporter, source.sent)?;
            }
            *result.lock().unwrap() = Some(resolved);
            Ok(())
        });
        let metadata = &metadata;
        pipeline.spawn(
            "metadata",
            crate::capacity::threads("metadata", METADATA_THREADS),
            move |context| {
                run_metadata_worker(context, &name_receiver, &packument_sender, metadata)
            },
        );
        let Some(store) = store.as_ref() else {
            return;
        };
        // Packages stored before the graph is final wait here when they are to be linked.
        let (stored_sender, stored_receiver) = match target {
            Some(_) => unbounded::<StoredPackage>(),
            None => bounded::<StoredPackage>(FILE_QUEUE),
        };
        spawn_store_stages(
            pipeline,
            threads("fetch", FETCH_THREADS),
            unit_receiver,
            stored_sender,
            StoreStages {
                fetcher,
                store,
                reporter: run.reporter,
                files_written: &files_written,
            },
        );
        let Some(target) = target else {
            // Nothing to link: stored packages are imported by the install that follows.
            pipeline.spawn("stored", 1, move |context| {
                while context.recv(&stored_receiver).is_some() {}
                Ok(())
            });
            return;
        };
        let (import_sender, import_receiver) = bounded::<StoredPackage>(IMPORT_QUEUE);
        let ready = ready_receiver.clone();
        pipeline.spawn("link", 1, move |context| cells.run_link(context, &ready));
        let ready = ready_receiver.clone();
        pipeline.spawn("prune", threads("prune", PRUNE_THREADS), move |context| {
            cells.run_prune(context, &ready)
        });
        let ready = ready_receiver.clone();
        pipeline.spawn("dispatch", 1, move |context| {
            cells.run_dispatch(
                context,
                &ready,
                (store, fetcher.git_builds.as_ref()),
                &stored_receiver,
                &import_sender,
            )
        });
        pipeline.spawn(
            "import",
            import_threads(target.project_dir),
            move |context| cells.run_import(context, &ready_receiver, &import_receiver),
        );
    });
    let outcome = outcome?;
    let resolved = result
        .into_inner()
        .unwrap()
        .ok_or_else(|| InstallError::Internal("resolution ended without a result".to_owned()))?;
    let imported = cells.imported();
    let (fetched, reused) = *cells.counts.lock().unwrap();
    let linked = LinkOutcome {
        leftover: std::mem::take(&mut *cells.leftover.lock().unwrap()),
        fetched,
        reused,
        files_written: files_written.load(Ordering::Relaxed),
        files_imported: imported.0,
        bytes_imported: imported.1,
        builds: cells.take_builds(),
        failed_builds: std::mem::take(&mut *fetcher.failed_builds.lock().unwrap()),
    };
    Ok((resolved, outcome.stages, linked))
}

struct PipelineSource<'a, 'c> {
    context: &'c StageContext,
    names: Sender<PackumentRequest>,
    packuments: &'a Receiver<PackumentResult>,
    units: Option<(Sender<Arc<PackageUnit>>, &'a Store)>,
    platform: Platform,
    /// Keys of the units sent to the fetch stages.
    sent: HashSet<String>,
    /// For tarball URLs given as dependencies.
    fetcher: &'a Fetcher<'a>,
}

impl PackumentSource for PipelineSource<'_, '_> {
    fn request(&mut self, name: &str) {
        let _ = self.context.send(&self.names, (name.to_owned(), false));
    }

    fn refresh(&mut self, name: &str) {
        let _ = self.context.send(&self.names, (name.to_owned(), true));
    }

    fn next(&mut self) -> Option<(String, Result<Arc<Packument>, String>)> {
        self.context.recv(self.packuments)
    }

    fn git(&mut self, spec: &crate::git::GitSpec) -> Result<super::local::Local, String> {
        if self.fetcher.offline {
            return Err("the network is off (--offline) and the lockfile does not lock it".into());
        }
        let (local, checkout) = super::local::git(spec)?;
        // Kept for the fetch, when this run fetches (not under --lockfile-only).
        if let super::local::Local::Package { manifest, .. } = &local
            && let Some(git) = &manifest.git
            && self.units.is_some()
        {
            self.fetcher.prefetched.put_checkout(git, checkout);
        }
        Ok(local)
    }

    fn tarball(&mut self, url: &str) -> Result<Arc<Vec<u8>>, String> {
        if self.fetcher.offline {
            return Err("the network is off (--offline) and the lockfile does not lock it".into());
        }
        let client = self.fetcher.client().map_err(|error| error.to_string())?;
        let (body, _) = client.get(url).map_err(|failure| failure.message)?;
        let mut bytes = Vec::new();
        // A package manager's tarballs fit in memory; the cap stops a runaway body.
        body.take(self.fetcher.limits.max_total_size)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("reading {url}: {error}"))?;
        let bytes = Arc::new(bytes);
        // Kept for the fetch of the package, when this run fetches.
        if self.units.is_some() {
            self.fetcher.prefetched.put_tarball(url, bytes.clone());
        }
        Ok(bytes)
    }

    fn picked(&mut self, node: &Node) {
        let Some((units, store)) = &self.units else {
            return;
        };
        let manifest = &node.manifest;
        // Platform-specific optional packages for other systems are never installed here.
        let discard = || {
            let prefetched = &self.fetcher.prefetched;
            prefetched.discard(manifest.git.as_ref(), manifest.tarball.as_deref());
        };
        if !self.platform.supports(
            manifest.os.as_deref(),
            manifest.cpu.as_deref(),
            manifest.libc.as_deref(),
        ) {
            discard();
            return;
        }
        let integrity = manifest.integrity.as_deref().and_then(Integrity::parse);
        // A `file:` directory (no tarball) is read again on every install, as the install
        // plan's unit for it is (the same key).
        let directory = node.directory();
        let Some(key) = crate::messages::unit_key(
            directory,
            manifest.git.as_ref(),
            manifest.integrity.as_deref(),
            manifest.tarball.as_deref(),
        ) else {
            return;
        };
        if directory.is_none() && matches!(store.index().contains(&key), Ok(true)) {
            discard();
            return;
        }
        self.context.record_item(0);
        self.sent.insert(key.clone());
        let _ = self.context.send(
            units,
            Arc::new(PackageUnit {
                key,
                name: node.name.clone(),
                version: node.version.clone(),
                integrity,
                tarball: manifest.tarball.clone(),
                directory: directory.map(str::to_owned),
                git: manifest.git.clone(),
                snapshots: Vec::new(),
                // Not known yet: the fetcher defers every failure here.
                optional: false,
            }),
        );
    }
}
