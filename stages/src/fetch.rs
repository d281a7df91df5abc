//! The fetch stage: download each tarball (with retries) and decode it as it streams, handing
//! each file to the write pool.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flowpm_pipeline::{Receiver, StageContext};
use flowpm_store::GitCopy;

use crate::InstallError;
use crate::config::NpmConfig;
use crate::decode::{
    DecodeError, DecodeLimits, DecodedEntry, DecodedFile, SinkError, decode_tarball,
};
use crate::git_prepare::GitBuilds;
use crate::http::{HttpClient, HttpFailure};
use crate::messages::{Attempt, FileBatcher, FileJob, PackageUnit, StagedEntry};
use crate::packlist;
use crate::report::Reporter;
use crate::stream_write::StreamError;
use crate::write::{FileQueue, Finalizer, Submit, finalize};

/// Retries per tarball unless `fetch-retries` says otherwise.
const DEFAULT_RETRIES: u64 = 3;
/// Backoff before retry n is `BASE * 4^(n-1)`: 200 ms, 800 ms, 3.2 s.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// A `Retry-After` longer than this is capped: a package manager should not hang for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Shared by every fetch thread.
pub struct Fetcher<'a> {
    pub config: Arc<NpmConfig>,
    /// 1 + `fetch-retries`.
    pub max_attempts: u32,
    /// Created on first use, so installs that fetch nothing never load the CA bundle.
    pub client: OnceLock<Result<HttpClient, String>>,
    pub limits: DecodeLimits,
    pub offline: bool,
    pub reporter: &'a dyn Reporter,
    /// Downloads made ahead of need (during resolution): a package that cannot be had is left
    /// for the install that follows, which knows whether it is optional.
    pub defer_failures: bool,
    /// Packages whose tarball could not be had but that the run goes on without, each with
    /// its warning.
    pub left_out: Mutex<Vec<(Arc<PackageUnit>, String)>>,
    /// With `defer_failures`: git packages whose build was refused or failed, by unit key.
    /// Trying again would run the build again, so the install that follows decides on these
    /// errors instead.
    pub failed_builds: Mutex<HashMap<String, InstallError>>,
    /// The lockfile's directory: `file:` tarballs and directories are relative to it.
    pub root: Option<PathBuf>,
    /// How a git package that must be built is treated: built if allowed, else refused;
    /// `None` when scripts are off (taken as committed, with a warning, as pnpm does under
    /// `--ignore-scripts`).
    pub(crate) git_builds: Option<GitBuilds<'a>>,
    /// What resolution already fetched to read a package's manifest, handed over so the
    /// package is not cloned or downloaded a second time.
    pub(crate) prefetched: Prefetched,
}

/// Git checkouts (by the source's id) and tarball bytes (by URL) that resolution fetched. An
/// entry is taken by the fetch of its package; one never taken is dropped with the fetcher
/// (a checkout's directory removed).
#[derive(Default)]
pub(crate) struct Prefetched {
    /// Anything was put: until then (every install from a lockfile) no fetch takes a lock.
    any: AtomicBool,
    checkouts: Mutex<HashMap<String, crate::git::Checkout>>,
    tarballs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl Prefetched {
    pub(crate) fn put_checkout(&self, git: &crate::git::GitSource, checkout: crate::git::Checkout) {
        self.checkouts.lock().unwrap().insert(git.id(), checkout);
        self.any.store(true, Ordering::Release);
    }

    fn take_checkout(&self, git: &crate::git::GitSource) -> Option<crate::git::Checkout> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.checkouts.lock().unwrap().remove(&git.id())
    }

    pub(crate) fn put_tarball(&self, url: &str, bytes: Arc<Vec<u8>>) {
        self.tarballs.lock().unwrap().insert(url.to_owned(), bytes);
        self.any.store(true, Ordering::Release);
    }

    fn take_tarball(&self, url: &str) -> Option<Arc<Vec<u8>>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.tarballs.lock().unwrap().remove(url)
    }

    /// Drops what was fetched for a package that will not be fetched (stored already, or for
    /// another platform).
    pub(crate) fn discard(&self, git: Option<&crate::git::GitSource>, tarball: Option<&str>) {
        if let Some(git) = git {
            self.take_checkout(git);
        }
        if let Some(url) = tarball {
            self.take_tarball(url);
        }
    }
}

impl<'a> Fetcher<'a> {
    pub fn new(
        config: Arc<NpmConfig>,
        offline: bool,
        reporter: &'a dyn Reporter,
    ) -> Result<Self, InstallError> {
        let retries = config.number("fetch-retries")?.unwrap_or(DEFAULT_RETRIES);
        Ok(Fetcher {
            config,
            max_attempts: u32::try_from(retries).unwrap_or(u32::MAX).saturating_add(1),
            client: OnceLock::new(),
            limits: DecodeLimits::default(),
            offline,
            reporter,
            defer_failures: false,
            left_out: Mutex::new(Vec::new()),
            failed_builds: Mutex::new(HashMap::new()),
            root: None,
            git_builds: Some(GitBuilds::refusing()),
            prefetched: Prefetched::default(),
        })
    }

    /// The packages left out, emptied.
    pub fn take_left_out(&self) -> Vec<(Arc<PackageUnit>, String)> {
        std::mem::take(&mut *self.left_out.lock().unwrap())
    }

    pub(crate) fn client(&self) -> Result<&HttpClient, InstallError> {
        self.client
            .get_or_init(|| HttpClient::new(self.config.clone()).map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|message| InstallError::Config(message.clone()))
    }

    /// A `file:` path of the lockfile on disk.
    fn local_path(&self, unit: &PackageUnit, relative: &str) -> Result<PathBuf, InstallError> {
        let root = self.root.as_ref().ok_or_else(|| InstallError::Fetch {
            package: unit.label(),
            url: format!("file:{relative}"),
            cause: "a local dependency needs the project's directory".to_owned(),
        })?;
        Ok(root.join(relative))
    }

    /// The tarball URL: the lockfile's, else `<registry>/<name>/-/<basename>-<version>.tgz`.
    pub fn tarball_url(&self, unit: &PackageUnit) -> Result<String, InstallError> {
        if let Some(url) = &unit.tarball {
            return Ok(url.clone());
        }
        default_tarball_url(&self.config, &unit.name, &unit.version)
    }
}

/// Where a registry keeps a version's tarball: `<registry>/<name>/-/<basename>-<version>.tgz`.
pub fn default_tarball_url(
    config: &NpmConfig,
    name: &str,
    version: &str,
) -> Result<String, InstallError> {
    let registry = config.registry_for(name)?;
    let basename = name.rsplit('/').next().unwrap_or(name);
    Ok(format!("{registry}{name}/-/{basename}-{version}.tgz"))
}

/// One fetch thread: takes units until the queue closes.
pub fn run_fetch_worker(
    context: &StageContext,
    input: &Receiver<Arc<PackageUnit>>,
    fetcher: &Fetcher<'_>,
    files: &FileQueue,
    finalizer: &Finalizer<'_>,
) -> Result<(), InstallError> {
    while let Some(unit) = context.recv(input) {
        let local = unit
            .tarball
            .as_deref()
            .is_some_and(|url| url.starts_with("file:"));
        let result = if let Some(directory) = &unit.directory {
            fetcher.local_path(&unit, directory).and_then(|dir| {
                let source = DirectorySource {
                    dir: &dir,
                    label: &format!("file:{directory}"),
                    confined_to: None,
                    git_copy: None,
                };
                store_directory(context, fetcher, &unit, &source, files, finalizer)
            })
        } else if let Some(git) = unit.git.as_ref().filter(|_| !fetcher.offline) {
            store_git(context, fetcher, &unit, git, files, finalizer)
        } else if fetcher.offline && !local {
            Err(InstallError::Offline {
                package: unit.label(),
            })
        } else {
            fetcher
                .tarball_url(&unit)
                .and_then(|url| fetch_unit(context, fetcher, &unit, &url, files, finalizer))
        };
        match result {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(
                error @ (InstallError::GitBuildNotAllowed { .. } | InstallError::Script { .. }),
            ) if fetcher.defer_failures => {
                let mut failed = fetcher.failed_builds.lock().unwrap();
                failed.insert(unit.key.clone(), error);
            }
            // pnpm leaves out an optional package it cannot fetch, with a warning.
            Err(error) if is_unavailable(&error) && (unit.optional || fetcher.defer_failures) => {
                let warning = left_out_warning(&error);
                if !fetcher.defer_failures {
                    fetcher.reporter.on_warning(&warning);
                }
                fetcher
                    .left_out
                    .lock()
                    .unwrap()
                    .push((unit.clone(), warning));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// pnpm's warning for an optional package it could not fetch.
pub(crate) fn left_out_warning(error: &InstallError) -> String {
    format!("an optional dependency that could not be fetched is left out of the install: {error}")
}

/// The package's tarball cannot be had (as opposed to the store or the disk failing). For a
/// git package that must be built, that includes a build refused or failed: pnpm 12 leaves
/// such an optional package out as one it could not fetch.
fn is_unavailable(error: &InstallError) -> bool {
    matches!(
        error,
        InstallError::Fetch { .. }
            | InstallError::IntegrityMismatch { .. }
            | InstallError::BadTarball { .. }
            | InstallError::Offline { .. }
            | InstallError::GitBuildNotAllowed { .. }
            | InstallError::Script { .. }
    )
}

/// The download half of a fetch thread alone (for `flowpm bench fetch`): the same client and
/// URLs, the body read to its end and dropped, no decoding.
pub fn run_download_worker(
    context: &StageContext,
    input: &Receiver<Arc<PackageUnit>>,
    fetcher: &Fetcher<'_>,
) -> Result<(), InstallError> {
    let client = fetcher.client()?;
    while let Some(unit) = context.recv(input) {
        let url = fetcher.tarball_url(&unit)?;
        let fetch_error = |cause: String| InstallError::Fetch {
            package: unit.label(),
            url: url.clone(),
            cause,
        };
        let (mut body, _) = client
            .get(&url)
            .map_err(|failure| fetch_error(failure.message))?;
        let bytes = std::io::copy(&mut body, &mut std::io::sink())
            .map_err(|error| fetch_error(error.to_string()))?;
        context.record_item(bytes);
    }
    Ok(())
}

/// Downloads and decodes one tarball, retrying transient failures (a `file:` tarball of the
/// project is read from disk, once). Returns false when the run is ending (downstream gone).
fn fetch_unit(
    context: &StageContext,
    fetcher: &Fetcher<'_>,
    unit: &Arc<PackageUnit>,
    url: &str,
    files: &FileQueue,
    finalizer: &Finalizer<'_>,
) -> Result<bool, InstallError> {
    let fetch_error = |cause: String| InstallError::Fetch {
        package: unit.label(),
        url: url.to_owned(),
        cause,
    };
    if let Some(relative) = url.strip_prefix("file:") {
        let path = fetcher.local_path(unit, relative)?;
        let read_error =
            |error: std::io::Error| fetch_error(format!("{}: {error}", path.display()));
        let body = std::fs::File::open(&path).map_err(read_error)?;
        return match decode_attempt(context, fetcher, unit, url, body, files, finalizer)? {
            Decoded::Done => Ok(true),
            Decoded::Stopped => Ok(false),
            Decoded::Broken(error) => Err(read_error(error)),
        };
    }
    if let Some(bytes) = fetcher.prefetched.take_tarball(url) {
        match decode_attempt(context, fetcher, unit, url, &bytes[..], files, finalizer)? {
            Decoded::Done => return Ok(true),
            Decoded::Stopped => return Ok(false),
            // Not expected (resolution read these bytes); downloaded again below.
            Decoded::Broken(_) => {}
        }
    }
    let client = fetcher.client()?;
    let mut attempt_number = 0;
    loop {
        attempt_number += 1;
        let last = attempt_number >= fetcher.max_attempts;
        let (body, _length) = match client.get(url) {
            Ok(response) => response,
            Err(HttpFailure {
                message,
                retryable,
                retry_after,
            }) => {
                if !retryable || last {
                    let tries = if attempt_number > 1 {
                        format!(" (after {attempt_number} attempts)")
                    } else {
                        String::new()
                    };
                    return Err(fetch_error(format!("{message}{tries}")));
                }
                fetcher
                    .reporter
                    .on_warning(&format!("{}: {message} from {url}; retrying", unit.label()));
                backoff(context, attempt_number, retry_after);
                continue;
            }
        };
        match decode_attempt(context, fetcher, unit, url, body, files, finalizer)? {
            Decoded::Done => return Ok(true),
            Decoded::Stopped => return Ok(false),
            Decoded::Broken(error) => {
                if last {
                    return Err(fetch_error(format!(
                        "{error} (after {attempt_number} attempts)"
                    )));
                }
                fetcher.reporter.on_warning(&format!(
                    "{}: {error} while reading {url}; retrying",
                    unit.label()
                ));
                backoff(context, attempt_number, None);
            }
        }
    }
}

/// Clones a git dependency, checks out its commit and stores its directory. One that must be
/// built first is built if `allowBuilds` allows it and refused if not, or taken as committed
/// with a warning when scripts are off, as pnpm 12 does ([`crate::git_prepare`]).
fn store_git(
    context: &StageContext,
    fetcher: &Fetcher<'_>,
    unit: &Arc<PackageUnit>,
    git: &crate::git::GitSource,
    files: &FileQueue,
    finalizer: &Finalizer<'_>,
) -> Result<bool, InstallError> {
    let source = crate::git::redact_credentials(&git.id());
    let failed = |cause| InstallError::Fetch {
        package: unit.label(),
        url: source.clone(),
        cause,
    };
    let checkout = match fetcher.prefetched.take_checkout(git) {
        Some(checkout) => checkout,
        None => crate::git::Checkout::new(git).map_err(failed)?,
    };
    let dir = checkout.package_dir();
    // The package.json, read once, of a package that must be built (an unreadable one does
    // not: packing reports it).
    let to_build = crate::lifecycle::Scripts::read(dir)
        .ok()
        .filter(|scripts| crate::git_prepare::needs_build(scripts, |path| dir.join(path).exists()));
    match (&to_build, &fetcher.git_builds) {
        (None, _) => {}
        (Some(scripts), Some(builds)) if builds.allows(&unit.name, git) => {
            builds.prepare(checkout.root(), dir, scripts, &unit.label())?
        }
        (Some(_), Some(_)) => {
            return Err(crate::git_prepare::not_allowed(&unit.name, git));
        }
        (Some(_), None) => fetcher.reporter.on_warning(&format!(
            "{}: the git-hosted package fetched from \"{}\" has to be built but the build \
             scripts were ignored",
            unit.label(),
            crate::git::redact_credentials(&git.repo)
        )),
    }
    let source = DirectorySource {
        dir,
        label: &source,
        confined_to: Some(checkout.root()),
        git_copy: Some(match (&to_build, &fetcher.git_builds) {
            (None, _) => GitCopy::AsCommitted,
            (Some(_), Some(_)) => GitCopy::Prepared,
            (Some(_), None) => GitCopy::Unbuilt,
        }),
    };
    store_directory(context, fetcher, unit, &source, files, finalizer)
}

/// A directory to store as a package.
struct DirectorySource<'p> {
    dir: &'p Path,
    /// Names it in errors.
    label: &'p str,
    /// A repository someone else wrote: a symlink leading outside it is left out rather than
    /// followed.
    confined_to: Option<&'p Path>,
    /// A git package's: what its files are (built or not).
    git_copy: Option<GitCopy>,
}

/// Stores the files `npm pack` would take from a directory ([`packlist`]), as one attempt that
/// is always verified (there is no integrity to check a directory against).
fn store_directory(
    context: &StageContext,
    fetcher: &Fetcher<'_>,
    unit: &Arc<PackageUnit>,
    source: &DirectorySource<'_>,
    files: &FileQueue,
    finalizer: &Finalizer<'_>,
) -> Result<bool, InstallError> {
    let DirectorySource {
        dir, confined_to, ..
    } = *source;
    let read_error = |path: &Path, cause: String| InstallError::Fetch {
        package: unit.label(),
        url: source.label.to_owned(),
        cause: format!("{}: {cause}", path.display()),
    };
    let manifest_path = dir.join("package.json");
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|error| error.to_string()))
        .map_err(|cause| read_error(&manifest_path, cause))?;
    let packed =
        packlist::pack_files(dir, &manifest).map_err(|error| read_error(dir, error.to_string()))?;
    let attempt = Attempt::directory(unit.clone(), source.git_copy);
    let mut sink = AttemptSink::new(context, attempt, files, finalizer);
    let mut outcome: Result<(), InstallError> = Ok(());
    let mut bytes = 0;
    let escapes = |file: &packlist::PackFile| {
        confined_to.is_some_and(|root| {
            file.symlink
                && !file
                    .absolute
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(root))
        })
    };
    for file in packed {
        if escapes(&file) {
            continue;
        }
        let mode = if file.executable { 0o755 } else { 0o644 };
        bytes += file.size;
        let taken = if file.size > fetcher.limits.stream_threshold {
            let mut content = match std::fs::File::open(&file.absolute) {
                Ok(content) => content,
                Err(error) => {
                    outcome = Err(read_error(&file.absolute, error.to_string()));
                    break;
                }
            };
            sink.take(DecodedEntry::Streamed {
                path: file.path,
                mode,
                size: file.size,
                content: &mut content,
            })
        } else {
            // The size is known from the walk: no second stat, as `fs::read` would make.
            let read = std::fs::File::open(&file.absolute).and_then(|mut opened| {
                let mut data = Vec::with_capacity(file.size as usize);
                opened.read_to_end(&mut data).map(|_| data)
            });
            match read {
                Ok(data) => sink.take(DecodedEntry::Buffered(DecodedFile {
                    path: file.path,
                    mode,
                    data,
                })),
                Err(error) => {
                    outcome = Err(read_error(&file.absolute, error.to_string()));
                    break;
                }
            }
        };
        match taken {
            Ok(()) => {}
            Err(SinkError::Stopped) => break,
            Err(SinkError::Read(error)) => {
                outcome = Err(read_error(&file.absolute, error.to_string()));
                break;
            }
            Err(SinkError::Other(error)) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let delivered = sink.finish(outcome.is_ok())?;
    outcome?;
    if delivered {
        context.record_item(bytes);
    }
    Ok(delivered)
}

/// One [`Attempt`] being filled, entry by entry, by a tarball's decoder or a directory's
/// reader: small files go to the write pool in batches, large ones are staged from their
/// stream (by this thread, or by a stream writer it hands them to).
struct AttemptSink<'s, 'f, 'q> {
    context: &'s StageContext,
    files: &'s FileQueue<'q>,
    finalizer: &'s Finalizer<'f>,
    attempt: Arc<Attempt>,
    batcher: FileBatcher,
    sequence: u32,
    /// The write pool is gone: the run is ending.
    stopped: bool,
}

impl<'s, 'f, 'q> AttemptSink<'s, 'f, 'q> {
    fn new(
        context: &'s StageContext,
        attempt: Attempt,
        files: &'s FileQueue<'q>,
        finalizer: &'s Finalizer<'f>,
    ) -> Self {
        let attempt = Arc::new(attempt);
        AttemptSink {
            context,
            files,
            finalizer,
            batcher: FileBatcher::new(attempt.clone()),
            attempt,
            sequence: 0,
            stopped: false,
        }
    }

    fn send(&mut self, job: FileJob) -> Result<(), SinkError<InstallError>> {
        match self.files.submit(self.context, job, self.finalizer) {
            Ok(()) => Ok(()),
            Err(Submit::Failed(error)) => Err(SinkError::Other(error)),
            Err(Submit::Stopped(job)) => {
                job.abandon();
                self.stopped = true;
                Err(SinkError::Stopped)
            }
        }
    }

    fn take(&mut self, entry: DecodedEntry<'_>) -> Result<(), SinkError<InstallError>> {
        let sequence = self.sequence;
        self.sequence += 1;
        match entry {
            DecodedEntry::Buffered(file) => match self.batcher.push(sequence, file) {
                Some(job) => self.send(job),
                None => Ok(()),
            },
            // Large files are staged from the stream, never queued whole: the largest by an
            // idle stream writer while this thread reads them, the rest here.
            DecodedEntry::Streamed {
                path,
                mode,
                size,
                content,
            } => {
                self.attempt.expect_file();
                let result =
                    self.files
                        .streams
                        .stage(self.context, content, size, mode & 0o111 != 0);
                match result {
                    Ok(file) => {
                        // The sink still holds its token, so this never finalises.
                        self.attempt.file_staged(StagedEntry {
                            sequence,
                            path,
                            mode,
                            file,
                        });
                        Ok(())
                    }
                    Err(error) => {
                        self.attempt.file_failed();
                        Err(match error {
                            StreamError::Read(error) => SinkError::Read(error),
                            StreamError::Store(error) => SinkError::Other(error.into()),
                            StreamError::Stopped => {
                                self.stopped = true;
                                SinkError::Stopped
                            }
                        })
                    }
                }
            }
        }
    }

    /// Ends the attempt: whatever is still batched goes out (or is given back), then the
    /// attempt is finalised if this was its last token, committed only if `verified`.
    /// Returns false if the run is ending (the write pool is gone).
    fn finish(mut self, verified: bool) -> Result<bool, InstallError> {
        let mut failed = None;
        if let Some(job) = self.batcher.flush() {
            if verified && !self.stopped {
                // Staged here (the queue was full) and failed: the install's error, once the
                // attempt (which then holds a failed file, so is not committed) is finalised.
                if let Err(SinkError::Other(error)) = self.send(job) {
                    failed = Some(error);
                }
            } else {
                job.abandon();
            }
        }
        let verified = verified && !self.stopped;
        if self.attempt.decoder_done(verified) {
            finalize(self.context, &self.attempt, self.finalizer)?;
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(!self.stopped),
        }
    }
}

/// How one decode of a tarball body ended, when it did not fail for good.
enum Decoded {
    Done,
    /// The run is ending (downstream gone).
    Stopped,
    /// The body broke off: another attempt may succeed.
    Broken(std::io::Error),
}

/// Decodes one tarball body into the store as one [`Attempt`].
fn decode_attempt(
    context: &StageContext,
    fetcher: &Fetcher<'_>,
    unit: &Arc<PackageUnit>,
    url: &str,
    body: impl Read,
    files: &FileQueue,
    finalizer: &Finalizer<'_>,
) -> Result<Decoded, InstallError> {
    let counted = CountingReader {
        inner: body,
        reporter: fetcher.reporter,
    };
    let mut sink = AttemptSink::new(context, Attempt::new(unit.clone()), files, finalizer);
    let mut result = decode_tarball(counted, unit.integrity.as_ref(), &fetcher.limits, |entry| {
        sink.take(entry)
    });
    if !sink.finish(result.is_ok())? && result.is_ok() {
        result = Err(DecodeError::Stopped);
    }
    match result {
        Ok(summary) => {
            context.record_item(summary.compressed_bytes);
            Ok(Decoded::Done)
        }
        Err(DecodeError::Stopped) => Ok(Decoded::Stopped),
        Err(DecodeError::Sink(error)) => Err(error),
        Err(DecodeError::IntegrityMismatch { expected, actual }) => {
            Err(InstallError::IntegrityMismatch {
                package: unit.label(),
                url: url.to_owned(),
                expected,
                actual,
            })
        }
        Err(DecodeError::BadEntry(cause)) => Err(InstallError::BadTarball {
            package: unit.label(),
            url: url.to_owned(),
            cause,
        }),
        Err(DecodeError::Io(error)) => Ok(Decoded::Broken(error)),
    }
}

pub(crate) fn backoff(context: &StageContext, attempt_number: u32, retry_after: Option<Duration>) {
    let delay = retry_after
        .map(|delay| delay.min(MAX_RETRY_AFTER))
        .unwrap_or(BACKOFF_BASE * 4u32.pow(attempt_number.saturating_sub(1)));
    // Sleep in slices so a cancelled run does not wait out the backoff.
    let deadline = std::time::Instant::now() + delay;
    while !context.is_cancelled() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20).min(deadline - std::time::Instant::now()));
    }
}

/// Reports downloaded bytes for progress as they stream.
struct CountingReader<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.reporter.on_downloaded(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use flowpm_store::{Cas, FileHash};

    use super::*;
    use crate::decode::DecodedFile;
    use crate::messages::test_unit;
    use crate::write::with_full_file_queue;

    /// The last batch of a tarball, staged by its fetch thread because the file queue is full,
    /// fails to stage: that is the install's error, and the package is neither indexed nor
    /// imported (the error was dropped before, and the install went on without it).
    #[test]
    fn a_failed_last_batch_staged_by_the_fetch_thread_fails_the_install() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let data = b"module.exports = 1;\n".to_vec();
        // A regular file where the content's shard directory goes: staging it fails.
        let shard = cas.file_path(&FileHash::of(&data), false);
        std::fs::create_dir_all(shard.parent().unwrap().parent().unwrap()).unwrap();
        std::fs::write(shard.parent().unwrap(), b"not a directory").unwrap();
        let (outcome, imported, indexed, _) =
            with_full_file_queue(&cas, |context, queue, finalizer| {
                let mut sink =
                    AttemptSink::new(context, Attempt::new(test_unit("a")), queue, finalizer);
                let file = DecodedFile {
                    path: "index.js".into(),
                    mode: 0o644,
                    data: data.clone(),
                };
                assert!(sink.take(DecodedEntry::Buffered(file)).is_ok());
                sink.finish(true).map(|_| ())
            });
        let error = match outcome {
            Ok(_) => panic!("the install fails"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(imported.try_recv().is_err() && indexed.try_recv().is_err());
    }
}
