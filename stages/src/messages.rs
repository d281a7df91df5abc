//! The messages that flow between stages, and who owns what.
//!
//! ```text
//!  plan ──PackageUnit──> fetch (+decode) ──FileJob──> write ──StoredPackage──> import
//!    │                                                  └──StoredPackage──> index
//!    └──StoredPackage (warm: index hit)──────────────────────────────────> import
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flowpm_store::{GitCopy, PackageFiles, StagedFile};

use crate::decode::DecodedFile;
use crate::integrity::Integrity;

/// One tarball to obtain, with every snapshot (peer variant) that uses its files.
/// Sent by the coordinator to the fetch pool; shared read-only afterwards.
#[derive(Debug)]
pub struct PackageUnit {
    /// The store index key (the integrity string, else the tarball URL).
    pub key: String,
    pub name: String,
    pub version: String,
    pub integrity: Option<Integrity>,
    /// The lockfile's `resolution.tarball`, if any; otherwise the registry URL is derived.
    pub tarball: Option<String>,
    /// A `file:` directory dependency (relative to the lockfile's directory): its files are
    /// read from there by every install that lays out packages (a no-op install does not look
    /// at it), never served from the index.
    pub directory: Option<String>,
    /// A git dependency: cloned and checked out at its commit (immutable, so indexed).
    pub git: Option<crate::git::GitSource>,
    /// Indexes into the plan's snapshots.
    pub snapshots: Vec<usize>,
    /// Every snapshot it serves is optional: if its tarball cannot be had, the install leaves
    /// it out with a warning (as pnpm does) instead of failing.
    pub optional: bool,
}

/// The unit key of a `file:` directory (relative to the lockfile's directory): the install
/// plan and the resolve stage must agree on it for a stored directory to find its unit.
fn directory_key(directory: &str) -> String {
    format!("directory:{directory}")
}

/// The store index key of a package's files, shared by the install plan and the resolve
/// stage (a unit stored during resolution must be found by the plan's key): a `file:`
/// directory's path, a git commit, else the integrity, else the tarball URL.
pub fn unit_key(
    directory: Option<&str>,
    git: Option<&crate::git::GitSource>,
    integrity: Option<&str>,
    tarball: Option<&str>,
) -> Option<String> {
    if let Some(directory) = directory {
        return Some(directory_key(directory));
    }
    if let Some(git) = git {
        return Some(git.index_key());
    }
    integrity.or(tarball).map(str::to_owned)
}

impl PackageUnit {
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One download attempt of a unit. Files are staged (written to the CAS; large ones to temp
/// files) while the tarball streams; only when the decoder has verified the whole tarball *and*
/// every file is staged does the attempt get finalised: indexed and imported if verified,
/// discarded if not.
/// A retry after a truncated body starts a new attempt, so half-written ones never mix in.
pub struct Attempt {
    pub unit: Arc<PackageUnit>,
    /// Files sent to writers and not yet staged, plus one token held by the decoder until it
    /// has seen the end of the stream. Whoever brings it to zero finalises.
    outstanding: AtomicUsize,
    verified: AtomicBool,
    /// Set when any file could not be staged: the attempt is then discarded, never committed
    /// (a verified tarball with a missing file must not become an index entry).
    poisoned: AtomicBool,
    staged: Mutex<Vec<StagedEntry>>,
    /// Its package.json has install scripts (seen by the writer that staged it).
    install_scripts: AtomicBool,
    /// For a git package: what its files are (built or not).
    git_copy: Option<GitCopy>,
}

/// A staged file of an attempt, with its order in the tarball (a later duplicate entry wins).
pub struct StagedEntry {
    pub sequence: u32,
    pub path: String,
    pub mode: u32,
    pub file: StagedFile,
}

impl Attempt {
    pub fn new(unit: Arc<PackageUnit>) -> Self {
        Attempt {
            unit,
            outstanding: AtomicUsize::new(1),
            verified: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            staged: Mutex::new(Vec::new()),
            install_scripts: AtomicBool::new(false),
            git_copy: None,
        }
    }

    /// An attempt of a directory: a git package's (`git_copy` given) or a `file:` one's.
    pub fn directory(unit: Arc<PackageUnit>, git_copy: Option<GitCopy>) -> Self {
        Attempt {
            git_copy,
            ..Attempt::new(unit)
        }
    }

    pub fn git_copy(&self) -> Option<GitCopy> {
        self.git_copy
    }

    pub fn mark_install_scripts(&self) {
        self.install_scripts.store(true, Ordering::Release);
    }

    pub fn has_install_scripts(&self) -> bool {
        self.install_scripts.load(Ordering::Acquire)
    }

    /// Called by the decoder before it hands a file to the write pool.
    pub fn expect_file(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// Called once the file is staged (by the decoder, for a streamed file). Returns true if
    /// the caller must finalise.
    pub fn file_staged(&self, entry: StagedEntry) -> bool {
        self.files_staged(vec![entry], 0)
    }

    /// Called by a writer for a whole batch: `staged` files done, `failed` never will be. One
    /// lock and one counter update per batch. Returns true if the caller must finalise.
    pub fn files_staged(&self, staged: Vec<StagedEntry>, failed: usize) -> bool {
        let done = staged.len() + failed;
        if failed > 0 {
            self.poisoned.store(true, Ordering::Release);
        }
        if !staged.is_empty() {
            self.staged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(staged);
        }
        done > 0 && self.outstanding.fetch_sub(done, Ordering::AcqRel) == done
    }

    /// Called by a writer whose file could not be staged (the run is failing anyway).
    pub fn file_failed(&self) -> bool {
        self.files_staged(Vec::new(), 1)
    }

    /// Called by the decoder at the end of the stream. Returns true if the caller must finalise.
    pub fn decoder_done(&self, verified: bool) -> bool {
        self.verified.store(verified, Ordering::Release);
        self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether the finaliser may commit: the tarball verified and every file was staged.
    pub fn should_commit(&self) -> bool {
        self.verified.load(Ordering::Acquire) && !self.poisoned.load(Ordering::Acquire)
    }

    pub fn take_staged(&self) -> Vec<StagedEntry> {
        std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Files of one attempt on their way from the decoder to a writer: small files travel in
/// batches so the channel (and the futex wake-up behind each send) is paid per batch, not per
/// file. The writer owns every `data` buffer and drops each as soon as its file is staged.
pub struct FileJob {
    pub attempt: Arc<Attempt>,
    /// (order in the tarball, file)
    pub files: Vec<(u32, DecodedFile)>,
}

/// A batch is sent once it holds this many files or bytes (or the tarball ends). Measured on
/// the real-world lockfile's 32k files: one message per file cost ~2.6 futex calls per file.
pub const BATCH_FILES: usize = 32;
pub const BATCH_BYTES: usize = 128 << 10;

/// Collects an attempt's small files into [`FileJob`]s.
pub struct FileBatcher {
    attempt: Arc<Attempt>,
    files: Vec<(u32, DecodedFile)>,
    bytes: usize,
}

impl FileBatcher {
    pub fn new(attempt: Arc<Attempt>) -> Self {
        FileBatcher {
            attempt,
            files: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a file (counting it as outstanding); returns a full batch to send, if any.
    pub fn push(&mut self, sequence: u32, file: DecodedFile) -> Option<FileJob> {
        self.attempt.expect_file();
        self.bytes += file.data.len();
        self.files.push((sequence, file));
        (self.files.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES).then(|| self.take())
    }

    /// The files collected so far, if any.
    pub fn flush(&mut self) -> Option<FileJob> {
        (!self.files.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> FileJob {
        self.bytes = 0;
        FileJob {
            attempt: self.attempt.clone(),
            files: std::mem::take(&mut self.files),
        }
    }
}

impl FileJob {
    /// Gives back the tokens of files that will never be staged (the job was not delivered).
    pub fn abandon(self) {
        for _ in &self.files {
            self.attempt.file_failed();
        }
    }
}

/// A package whose files are all in the CAS. Sent by the finaliser (a writer or the decoder) to
/// the import pool and the index writer, and by the coordinator for index hits.
#[derive(Clone)]
pub struct StoredPackage {
    pub unit: Arc<PackageUnit>,
    pub files: Arc<PackageFiles>,
}

/// A registry package unit named `name`, for tests.
#[cfg(test)]
pub(crate) fn test_unit(name: &str) -> Arc<PackageUnit> {
    Arc::new(PackageUnit {
        key: format!("sha512-{name}"),
        name: name.into(),
        version: "1.0.0".into(),
        integrity: None,
        tarball: None,
        directory: None,
        git: None,
        snapshots: vec![0],
        optional: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_attempt_with_a_failed_file_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let cas = flowpm_store::Cas::open(dir.path()).unwrap();
        let entry = |path: &str| StagedEntry {
            sequence: 0,
            path: path.into(),
            mode: 0o644,
            file: cas.stage(path.as_bytes(), false).unwrap(),
        };

        let complete = Attempt::new(test_unit("a"));
        complete.expect_file();
        complete.expect_file();
        assert!(
            !complete.files_staged(vec![entry("a.js"), entry("b.js")], 0),
            "the decoder still holds its token"
        );
        assert!(complete.decoder_done(true), "the last token finalises");
        assert!(complete.should_commit());

        // One file staged, one failed (disk full); the tarball itself verifies afterwards.
        let partial = Attempt::new(test_unit("a"));
        partial.expect_file();
        partial.expect_file();
        assert!(!partial.files_staged(vec![entry("c.js")], 1));
        assert!(partial.decoder_done(true));
        assert!(
            !partial.should_commit(),
            "a package with a missing file must be discarded"
        );
        for staged in partial.take_staged() {
            staged.file.discard(&cas);
        }
    }
}
