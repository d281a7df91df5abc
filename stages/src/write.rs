//! The write stage: a pool that hashes each file (blake3) and writes it under its CAS name
//! (created with `O_EXCL`), then the finaliser that commits a verified package's streamed files
//! and announces the package to the import and index stages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flowpm_pipeline::{Receiver, Sender, StageContext, StageHandle, TrySendError};
use flowpm_store::{Cas, CommitOutcome, FileEntry, PackageFiles};

use crate::InstallError;
use crate::lifecycle::{has_install_scripts, requires_build};
use crate::messages::{Attempt, FileJob, StagedEntry, StoredPackage};
use crate::report::Reporter;
use crate::stream_write::StreamWriters;

/// Files this large are streamed by the decoder, not sent to the writers.
const STREAMED_MIN: u64 = crate::decode::DecodeLimits::DEFAULT_STREAM_THRESHOLD;

/// Where finalised packages go, shared by writers and fetch threads.
pub struct Finalizer<'a> {
    pub cas: &'a Cas,
    pub import: Sender<StoredPackage>,
    pub index: Sender<StoredPackage>,
    pub reporter: &'a dyn Reporter,
    /// Files that were new to the store.
    pub files_written: &'a AtomicU64,
}

/// The write stage's input, as the fetch threads see it.
pub struct FileQueue<'c> {
    pub sender: Sender<FileJob>,
    /// The write stage itself: a fetch thread that finds the queue full stages the job on its
    /// own (see [`FileQueue::submit`]).
    pub writers: StageHandle,
    /// The write stage's stream writers, for large files.
    pub streams: StreamWriters<'c>,
}

impl FileQueue<'_> {
    /// Queues a job for the write pool or, when the queue is full, stages it on this thread
    /// (counted as the write stage's work). With both cores busy the pool is often the
    /// bottleneck, and a fetch thread sleeping on a full queue until a writer wakes it cost
    /// ~7k futex calls and ~3k context switches per real-world install (PERF.md, session 19);
    /// memory stays bounded the same way, by the queue and the one job in hand.
    pub fn submit(
        &self,
        context: &StageContext,
        job: FileJob,
        finalizer: &Finalizer<'_>,
    ) -> Result<(), Submit> {
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) if context.is_cancelled() => Err(Submit::Stopped(job)),
            Err(TrySendError::Full(job)) => self
                .writers
                .run_here(context, |writer| write_job(writer, job, finalizer))
                .map_err(Submit::Failed),
            Err(TrySendError::Disconnected(job)) => Err(Submit::Stopped(job)),
        }
    }
}

/// Why [`FileQueue::submit`] did not deliver a job.
pub enum Submit {
    /// The run is ending (the write pool is gone, or cancelled): the job, to be abandoned.
    Stopped(FileJob),
    /// Staged on the caller's thread, and that failed.
    Failed(InstallError),
}

/// One write thread: stages files until the queue closes.
pub fn run_write_worker(
    context: &StageContext,
    input: &Receiver<FileJob>,
    finalizer: &Finalizer<'_>,
) -> Result<(), InstallError> {
    while let Some(job) = context.recv(input) {
        write_job(context, job, finalizer)?;
    }
    Ok(())
}

/// Stages one job's files, then finalises the attempt if that released its last token.
fn write_job(
    context: &StageContext,
    FileJob { attempt, files }: FileJob,
    finalizer: &Finalizer<'_>,
) -> Result<(), InstallError> {
    let total = files.len();
    if files
        .iter()
        .any(|(_, file)| file.path == "package.json" && has_install_scripts(&file.data))
    {
        attempt.mark_install_scripts();
    }
    // The job's files are hashed together: small ones fill a vector's lanes side by side.
    let contents: Vec<(&[u8], bool)> = files
        .iter()
        .map(|(_, file)| (file.data.as_slice(), file.mode & 0o111 != 0))
        .collect();
    let results = finalizer.cas.stage_all(&contents);
    drop(contents);
    let mut staged = Vec::with_capacity(total);
    let mut failure = None;
    for ((sequence, file), result) in files.into_iter().zip(results) {
        match result {
            Ok(done) => {
                context.record_item(file.data.len() as u64);
                staged.push(StagedEntry {
                    sequence,
                    path: file.path,
                    mode: file.mode,
                    file: done,
                });
            }
            Err(error) => failure = Some(error),
        }
    }
    // Files staged before a failure are kept with the attempt, so finalising discards them.
    let failed = total - staged.len();
    if attempt.files_staged(staged, failed) {
        finalize(context, &attempt, finalizer)?;
    }
    if let Some(error) = failure {
        return Err(error.into());
    }
    Ok(())
}

/// Commits or discards an attempt's staged files; called exactly once per attempt, by whoever
/// released its last outstanding token.
pub fn finalize(
    context: &StageContext,
    attempt: &Attempt,
    finalizer: &Finalizer<'_>,
) -> Result<(), InstallError> {
    let mut staged = attempt.take_staged();
    if !attempt.should_commit() {
        for entry in staged {
            entry.file.discard(finalizer.cas);
        }
        return Ok(());
    }
    // Tarball order decides between duplicate paths: the last entry wins, as when untarring.
    staged.sort_unstable_by(|a, b| a.path.cmp(&b.path).then(a.sequence.cmp(&b.sequence)));
    let mut files = Vec::with_capacity(staged.len());
    let mut entries = staged.into_iter().peekable();
    while let Some(entry) = entries.next() {
        if entries.peek().is_some_and(|next| next.path == entry.path) {
            entry.file.discard(finalizer.cas);
            continue;
        }
        let hash = entry.file.hash();
        let size = entry.file.size();
        if entry.file.commit(finalizer.cas)? == CommitOutcome::Created {
            finalizer.files_written.fetch_add(1, Ordering::Relaxed);
        }
        files.push(FileEntry {
            path: entry.path,
            hash,
            mode: entry.mode,
            size,
        });
    }
    let mut scripts = attempt.has_install_scripts();
    // `files` is sorted by path.
    if !scripts
        && let Ok(at) = files.binary_search_by(|f| f.path.as_str().cmp("package.json"))
        && files[at].size > STREAMED_MIN
    {
        // Over the streaming threshold, package.json bypassed the writers: read it back.
        let manifest = &files[at];
        let path = finalizer
            .cas
            .file_path(&manifest.hash, manifest.is_executable());
        scripts = std::fs::read(path).is_ok_and(|bytes| has_install_scripts(&bytes));
    }
    let requires_build = requires_build(scripts, &files);
    finalizer.reporter.on_fetched(&attempt.unit.name);
    let stored = StoredPackage {
        unit: attempt.unit.clone(),
        files: Arc::new(PackageFiles {
            files,
            requires_build,
            git: attempt.git_copy(),
        }),
    };
    if context.send(&finalizer.index, stored.clone()).is_err() {
        return Ok(());
    }
    let _ = context.send(&finalizer.import, stored);
    Ok(())
}

/// What [`with_full_file_queue`] returns.
#[cfg(test)]
pub(crate) type FullQueueRun = (
    Result<flowpm_pipeline::RunOutcome<()>, flowpm_pipeline::PipelineError<InstallError>>,
    Receiver<StoredPackage>,
    Receiver<StoredPackage>,
    u64,
);

/// For tests: runs `body` on a one-thread "fetch" stage whose file queue is full and whose
/// write stage has no threads, so every job it submits is staged on its own thread. Returns
/// the run's outcome, what reached the import and index queues, and the files written.
#[cfg(test)]
pub(crate) fn with_full_file_queue(
    cas: &Cas,
    body: impl Fn(&StageContext, &FileQueue<'_>, &Finalizer<'_>) -> Result<(), InstallError> + Sync,
) -> FullQueueRun {
    use crate::messages::test_unit;
    use crate::report::SilentReporter;
    use flowpm_pipeline::{CancelToken, bounded, run};

    let (import, imported) = bounded(4);
    let (index, indexed) = bounded(4);
    let written = AtomicU64::new(0);
    let finalizer = Finalizer {
        cas,
        import,
        index,
        reporter: &SilentReporter,
        files_written: &written,
    };
    let outcome = run::<InstallError, _>(&CancelToken::new(), |pipeline| {
        let writers = pipeline.declare("write");
        let (sender, receiver) = bounded(1);
        let queue = FileQueue {
            sender,
            writers,
            streams: StreamWriters::channel(cas).0,
        };
        let (finalizer, body) = (&finalizer, &body);
        pipeline.spawn("fetch", 1, move |context| {
            let _receiver = &receiver;
            let filler = FileJob {
                attempt: Arc::new(Attempt::new(test_unit("filler"))),
                files: Vec::new(),
            };
            assert!(queue.sender.try_send(filler).is_ok());
            body(context, &queue, finalizer)
        });
    });
    (outcome, imported, indexed, written.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DecodedFile;
    use crate::messages::{FileBatcher, test_unit};

    #[test]
    fn a_full_queue_is_written_by_the_sender_and_counted_as_the_write_stages() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let (outcome, imported, indexed, written) =
            with_full_file_queue(&cas, |context, queue, finalizer| {
                let attempt = Arc::new(Attempt::new(test_unit("a")));
                let mut batcher = FileBatcher::new(attempt.clone());
                for (sequence, path) in ["package.json", "index.js"].into_iter().enumerate() {
                    let file = DecodedFile {
                        path: path.into(),
                        mode: 0o644,
                        data: format!("// {path}").into_bytes(),
                    };
                    assert!(batcher.push(sequence as u32, file).is_none());
                }
                let job = batcher.flush().unwrap();
                assert!(matches!(queue.submit(context, job, finalizer), Ok(())));
                // The decoder's own token is the last one: the package is committed now.
                assert!(attempt.decoder_done(true));
                finalize(context, &attempt, finalizer)
            });
        let outcome = outcome.unwrap();
        let stored = imported.try_recv().unwrap();
        assert_eq!(stored.unit.name, "a");
        let paths: Vec<&str> = stored.files.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["index.js", "package.json"]);
        for file in &stored.files.files {
            let content = std::fs::read(cas.file_path(&file.hash, false)).unwrap();
            assert_eq!(content, format!("// {}", file.path).into_bytes());
        }
        assert_eq!(indexed.try_recv().unwrap().unit.name, "a");
        assert_eq!(written, 2);
        assert_eq!(outcome.stage("write").unwrap().items, 2);
        assert_eq!(outcome.stage("fetch").unwrap().items, 0);
    }
}
