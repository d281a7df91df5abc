//! `flowpm bench <stage>`: one stage alone on recorded or synthetic input, through the same
//! stage functions the install runs, reporting what the pipeline measured (items/s, MB/s, time
//! blocked on input and output).
//!
//! - `decode`: gunzip + untar + integrity of a directory of `.tgz` files, nothing written;
//! - `write`: hash + `O_EXCL` CAS writes of an entry stream recorded (untimed) from those
//!   tarballs, into an empty store, including the commit into CAS names;
//! - `index`: LMDB commits of synthetic package file lists;
//! - `fetch`: downloads of a project's tarballs, bodies dropped (no decoding);
//! - `link`: layout + import of a project from a warm store (p4 of the install).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use flowpm_pipeline::{CancelToken, PipelineError, StageSnapshot, bounded, run, unbounded};
use flowpm_store::{FileEntry, FileHash, Index, PackageFiles, Store};

use crate::capacity::{FETCH_THREADS, FILE_QUEUE, INDEX_QUEUE, WRITE_THREADS};
use crate::config::{ConfigOverrides, NpmConfig};
use crate::decode::{DecodeLimits, DecodedEntry, DecodedFile, SinkError, decode_tarball};
use crate::dep_path::VIRTUAL_STORE_DIR_MAX_LENGTH;
use crate::fetch::{Fetcher, run_download_worker};
use crate::index::run_index_writer;
use crate::integrity::{Algorithm, Integrity, IntegrityHasher};
use crate::messages::{Attempt, FileBatcher, FileJob, PackageUnit, StoredPackage};
use crate::plan::{PlanOptions, plan};
use crate::platform::Platform;
use crate::report::SilentReporter;
use crate::write::{Finalizer, finalize, run_write_worker};
use crate::{InstallError, InstallOptions, install};

/// Every `.tgz` under `dir`, sorted.
pub fn find_tarballs(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| InstallError::io("read directory", &dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "tgz") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn pipeline_error(error: PipelineError<InstallError>) -> InstallError {
    match error {
        PipelineError::Stage { error, .. } => error,
        PipelineError::Panicked { stage, message } => {
            InstallError::Internal(format!("the {stage} stage panicked: {message}"))
        }
        PipelineError::Cancelled => InstallError::Cancelled,
    }
}

fn bad_tarball(path: &Path, error: crate::decode::DecodeError<()>) -> InstallError {
    let name = path.display().to_string();
    InstallError::BadTarball {
        package: name.clone(),
        url: name,
        cause: format!("{error:?}"),
    }
}

/// sha512 of a whole file, so `decode` verifies integrity as the install does (untimed setup).
fn file_integrity(path: &Path) -> Result<Integrity, InstallError> {
    let bytes = std::fs::read(path).map_err(|e| InstallError::io("read", path, e))?;
    let mut hasher = IntegrityHasher::new(Algorithm::Sha512);
    hasher.update(&bytes);
    Ok(hasher.finish())
}

/// Decodes every tarball on `threads` threads; bytes counted are unpacked bytes.
pub fn bench_decode(
    tarballs: &[PathBuf],
    threads: usize,
) -> Result<Vec<StageSnapshot>, InstallError> {
    let (sender, receiver) = unbounded::<(PathBuf, Integrity)>();
    for path in tarballs {
        let _ = sender.send((path.clone(), file_integrity(path)?));
    }
    drop(sender);
    let limits = DecodeLimits::default();
    let outcome = run(&CancelToken::new(), |pipeline| {
        pipeline.spawn("decode", threads, |context| {
            while let Some((path, integrity)) = context.recv(&receiver) {
                let file =
                    std::fs::File::open(&path).map_err(|e| InstallError::io("open", &path, e))?;
                let summary = decode_tarball::<_, ()>(
                    std::io::BufReader::new(file),
                    Some(&integrity),
                    &limits,
                    |entry| {
                        if let DecodedEntry::Streamed { content, .. } = entry {
                            std::io::copy(content, &mut std::io::sink())
                                .map_err(SinkError::Read)?;
                        }
                        Ok(())
                    },
                )
                .map_err(|error| bad_tarball(&path, error))?;
                context.record_item(summary.unpacked_bytes);
            }
            Ok(())
        });
    })
    .map_err(pipeline_error)?;
    Ok(outcome.stages)
}

/// Writes the files of every tarball into an empty store at `store_dir`.
pub fn bench_write(
    tarballs: &[PathBuf],
    store_dir: &Path,
    threads: usize,
) -> Result<Vec<StageSnapshot>, InstallError> {
    // Record the entry stream (untimed): every file of every tarball, in memory.
    let mut recorded: Vec<(Arc<PackageUnit>, Vec<DecodedFile>)> = Vec::new();
    for (index, path) in tarballs.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(|e| InstallError::io("open", path, e))?;
        let mut files = Vec::new();
        decode_tarball::<_, ()>(
            std::io::BufReader::new(file),
            None,
            &DecodeLimits::default(),
            |entry| {
                files.push(match entry {
                    DecodedEntry::Buffered(file) => file,
                    DecodedEntry::Streamed {
                        path,
                        mode,
                        content,
                        ..
                    } => {
                        let mut data = Vec::new();
                        content.read_to_end(&mut data).map_err(SinkError::Read)?;
                        DecodedFile { path, mode, data }
                    }
                });
                Ok(())
            },
        )
        .map_err(|error| bad_tarball(path, error))?;
        let unit = PackageUnit {
            key: format!("bench-{index}"),
            name: path.display().to_string(),
            version: String::new(),
            integrity: None,
            tarball: None,
            directory: None,
            git: None,
            snapshots: Vec::new(),
            optional: false,
        };
        recorded.push((Arc::new(unit), files));
    }
    let store = Store::open(store_dir)?;
    let files_written = AtomicU64::new(0);
    let outcome = run(&CancelToken::new(), |pipeline| {
        let (file_sender, file_receiver) = bounded::<FileJob>(FILE_QUEUE);
        let (stored_sender, stored_receiver) = bounded::<StoredPackage>(INDEX_QUEUE);
        let finalizer = Arc::new(Finalizer {
            cas: store.cas(),
            import: stored_sender.clone(),
            index: stored_sender,
            reporter: &SilentReporter,
            files_written: &files_written,
        });
        let feed_finalizer = finalizer.clone();
        let recorded = std::sync::Mutex::new(Some(recorded));
        // Plays the decoder's part: hands each recorded file to the writers, then seals the package.
        pipeline.spawn("feed", 1, move |context| {
            let recorded = recorded.lock().unwrap().take().unwrap_or_default();
            for (unit, files) in recorded {
                let attempt = Arc::new(Attempt::new(unit));
                // Batched exactly as the fetch threads batch them.
                let mut batcher = FileBatcher::new(attempt.clone());
                let jobs: Vec<FileJob> = files
                    .into_iter()
                    .enumerate()
                    .filter_map(|(sequence, file)| batcher.push(sequence as u32, file))
                    .collect();
                for job in jobs.into_iter().chain(batcher.flush()) {
                    if let Err(flowpm_pipeline::Stopped(job)) = context.send(&file_sender, job) {
                        job.abandon();
                        return Ok(());
                    }
                }
                if attempt.decoder_done(true) {
                    finalize(context, &attempt, &feed_finalizer)?;
                }
            }
            Ok(())
        });
        pipeline.spawn("write", threads, move |context| {
            run_write_worker(context, &file_receiver, &finalizer)
        });
        pipeline.spawn("drain", 1, move |context| {
            while context.recv(&stored_receiver).is_some() {}
            Ok(())
        });
    })
    .map_err(pipeline_error)?;
    Ok(outcome.stages)
}

/// Commits `packages` synthetic entries of `files_per_package` files each.
pub fn bench_index(
    store_dir: &Path,
    packages: usize,
    files_per_package: usize,
) -> Result<Vec<StageSnapshot>, InstallError> {
    let index = Index::open(&store_dir.join("v1/index"))?;
    let outcome = run(&CancelToken::new(), |pipeline| {
        let (sender, receiver) = bounded::<StoredPackage>(INDEX_QUEUE);
        pipeline.spawn("feed", 1, move |context| {
            for package in 0..packages {
                let files = (0..files_per_package)
                    .map(|file| FileEntry {
                        path: format!("lib/dir{}/file{file}.js", file % 7),
                        hash: FileHash::of(format!("{package}/{file}").as_bytes()),
                        mode: 0o644,
                        size: 1000 + file as u64,
                    })
                    .collect();
                let unit = PackageUnit {
                    key: format!("sha512-bench-package-{package}"),
                    name: format!("bench-{package}"),
                    version: "1.0.0".to_owned(),
                    integrity: None,
                    tarball: None,
                    directory: None,
                    git: None,
                    snapshots: Vec::new(),
                    optional: false,
                };
                let stored = StoredPackage {
                    unit: Arc::new(unit),
                    files: Arc::new(PackageFiles {
                        files,
                        requires_build: false,
                        git: None,
                    }),
                };
                if context.send(&sender, stored).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let index = &index;
        pipeline.spawn("index", 1, move |context| {
            run_index_writer(context, &receiver, index)
        });
    })
    .map_err(pipeline_error)?;
    Ok(outcome.stages)
}

/// Downloads every tarball of the project's lockfile on `threads` threads, dropping the bodies.
pub fn bench_fetch(
    options: &InstallOptions,
    threads: usize,
) -> Result<Vec<StageSnapshot>, InstallError> {
    let project_dir = std::path::absolute(&options.project_dir)
        .map_err(|e| InstallError::io("resolve", &options.project_dir, e))?;
    let lockfile_path = project_dir.join("pnpm-lock.yaml");
    let (lockfile, _) =
        crate::lockfile::Lockfile::read(&lockfile_path)?.ok_or(InstallError::NoLockfile {
            dir: project_dir.clone(),
            reason: "bench fetch reads the lockfile's tarballs",
        })?;
    let plan = plan(
        &lockfile,
        &PlanOptions {
            production_only: false,
            platform: Platform::host(),
            virtual_store_dir_max_length: VIRTUAL_STORE_DIR_MAX_LENGTH,
            hoisting: Default::default(),
            patches: Default::default(),
        },
    )?;
    let units = crate::install::group_units(&plan)?;
    let config = Arc::new(NpmConfig::load(
        &project_dir,
        &ConfigOverrides {
            registry: options.registry.clone(),
            store_dir: None,
        },
    )?);
    let fetcher = Fetcher::new(config, false, &SilentReporter)?;
    fetcher.client()?;
    let (sender, receiver) = unbounded();
    for unit in units {
        let _ = sender.send(unit);
    }
    drop(sender);
    let outcome = run(&CancelToken::new(), |pipeline| {
        let fetcher = &fetcher;
        pipeline.spawn("fetch", threads, move |context| {
            run_download_worker(context, &receiver, fetcher)
        });
    })
    .map_err(pipeline_error)?;
    Ok(outcome.stages)
}

/// Layout + import from a warm store: installs once (warming the store if needed), removes
/// `node_modules`, installs again and reports the second run's stages.
pub fn bench_link(options: &InstallOptions) -> Result<Vec<StageSnapshot>, InstallError> {
    let modules = options.project_dir.join("node_modules");
    install(options, &SilentReporter)?;
    std::fs::remove_dir_all(&modules).map_err(|e| InstallError::io("remove", &modules, e))?;
    let report = install(options, &SilentReporter)?;
    if report.fetched > 0 {
        return Err(InstallError::Internal(
            "the store was not warm after the first install".to_owned(),
        ));
    }
    Ok(report.stages)
}

/// Default thread counts, as the install uses them.
pub const DEFAULT_DECODE_THREADS: usize = 2;
pub const DEFAULT_WRITE_THREADS: usize = WRITE_THREADS;
pub const DEFAULT_FETCH_THREADS: usize = FETCH_THREADS;
