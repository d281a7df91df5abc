//! The write stage's stream writers: a large file is hashed (blake3) and written by one of them
//! while the fetch thread that inflates it goes on inflating.
//!
//! A file over the decoder's stream threshold cannot be queued whole, so its fetch thread used
//! to inflate, hash and write it in turn. The largest packages are one such file (a native
//! binary of 100+ MB) and, sharing the cores fairly with every other fetch thread, they end
//! last, one core working alone at the end of a cold install (PERF.md, session 20). A stream
//! writer takes over the hashing and writing, chunk by chunk, so two cores work on that file.
//!
//! The fetch thread stages the file itself until a writer is idle, checked before each chunk
//! (a rendezvous channel: a hand-over only ever reaches a writer waiting for one), then passes
//! it the half-written file and only reads from then on. Memory in flight is
//! [`STREAM_CHUNKS`] + 1 chunks per file handed over.

use std::io::Read;
use std::sync::Mutex;

use flowpm_pipeline::{Receiver, Sender, StageContext, Stopped, TrySendError, bounded};
use flowpm_store::{Cas, StagedFile, StoreError, StreamStager};

use crate::capacity::{STREAM_CHUNK, STREAM_CHUNKS, STREAM_HANDOVER_MIN};
use crate::sha512_lanes::LanePool;

/// Chunk buffers kept for reuse, over all fetch threads (8 MiB).
const BUFFERS_KEPT: usize = 16;

/// A large file for a stream writer: staged so far by its fetch thread, the rest of its
/// content to follow in [`Chunk`]s.
pub struct StreamJob<'c> {
    stream: StreamStager<'c>,
    chunks: Receiver<Chunk>,
    /// Written chunks' buffers, back to the reader for the next ones.
    spent: Sender<Vec<u8>>,
    staged: Sender<Result<StagedFile, StoreError>>,
}

enum Chunk {
    /// A buffer and how many of its bytes are content.
    Data(Vec<u8>, usize),
    /// The content is complete. A chunk channel closed without it means the read failed.
    End,
}

/// Why a streamed file was not staged.
pub enum StreamError {
    /// Reading the content failed (the tarball stream broke).
    Read(std::io::Error),
    /// Writing it into the store failed.
    Store(StoreError),
    /// The run is ending.
    Stopped,
}

/// The fetch threads' end of the rendezvous with idle stream writers.
pub struct StreamWriters<'c> {
    cas: &'c Cas,
    jobs: Sender<StreamJob<'c>>,
    /// Chunk buffers for reuse: a fresh one costs a page fault per 4 KiB as it is first filled.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl<'c> StreamWriters<'c> {
    /// A rendezvous channel: a job is only ever taken by a writer waiting for one.
    pub fn channel(cas: &'c Cas) -> (StreamWriters<'c>, Receiver<StreamJob<'c>>) {
        let (jobs, receiver) = bounded(0);
        let writers = StreamWriters {
            cas,
            jobs,
            buffers: Mutex::new(Vec::new()),
        };
        (writers, receiver)
    }

    /// Stages a file of `size` bytes read from `content`. This thread hashes and writes it
    /// chunk by chunk until a stream writer is idle with at least [`STREAM_HANDOVER_MIN`]
    /// bytes to go; from then on it only reads, and the writer does the rest.
    pub fn stage(
        &self,
        context: &StageContext,
        content: &mut dyn Read,
        size: u64,
        executable: bool,
    ) -> Result<StagedFile, StreamError> {
        let mut stream = self
            .cas
            .begin_stream(executable)
            .map_err(StreamError::Store)?;
        let mut buffers = vec![self.buffer()];
        let mut remaining = size;
        let result = loop {
            if remaining >= STREAM_HANDOVER_MIN {
                stream = match self.hand_over(stream) {
                    Ok(handed) => break handed.feed(context, content, &mut buffers, self),
                    Err(stream) => stream,
                };
            }
            // (An error drops `stream`, which removes its temp file.)
            let buffer = &mut buffers[0];
            let filled = match fill(content, buffer) {
                Ok(filled) => filled,
                Err(error) => break Err(StreamError::Read(error)),
            };
            if let Err(error) = stream.write(&buffer[..filled]) {
                break Err(StreamError::Store(error));
            }
            if filled < buffer.len() {
                break Ok(stream.finish());
            }
            remaining = remaining.saturating_sub(filled as u64);
        };
        let mut pool = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let room = BUFFERS_KEPT.saturating_sub(pool.len());
        pool.extend(buffers.into_iter().take(room));
        result
    }

    /// A chunk buffer, reused if one is free.
    fn buffer(&self) -> Vec<u8> {
        let reused = self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| vec![0; STREAM_CHUNK])
    }

    /// Gives `stream` to an idle writer, or back if none is.
    // (A stager is ~2 KB, the hasher's state: moved, as it is into the channel, not boxed.)
    #[allow(clippy::result_large_err)]
    fn hand_over(&self, stream: StreamStager<'c>) -> Result<HandedOver, StreamStager<'c>> {
        let (chunks, chunk_receiver) = bounded(STREAM_CHUNKS);
        let (spent, spent_receiver) = bounded(STREAM_CHUNKS + 1);
        let (staged, staged_receiver) = bounded(1);
        let job = StreamJob {
            stream,
            chunks: chunk_receiver,
            spent,
            staged,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(HandedOver {
                chunks,
                spent: spent_receiver,
                staged: staged_receiver,
            }),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job.stream),
        }
    }
}

/// The reading end of a file handed to a stream writer.
struct HandedOver {
    chunks: Sender<Chunk>,
    spent: Receiver<Vec<u8>>,
    staged: Receiver<Result<StagedFile, StoreError>>,
}

impl HandedOver {
    /// Reads the rest of `content` into chunks for the writer, then waits for its verdict.
    /// `buffers` holds this thread's buffer on entry, and what is left of them on return.
    fn feed(
        self,
        context: &StageContext,
        content: &mut dyn Read,
        buffers: &mut Vec<Vec<u8>>,
        writers: &StreamWriters<'_>,
    ) -> Result<StagedFile, StreamError> {
        let HandedOver {
            chunks,
            spent,
            staged,
        } = self;
        // One buffer being filled, the rest queued or being written.
        let mut fresh = STREAM_CHUNKS;
        let result = loop {
            let mut buffer = match buffers.pop().or_else(|| spent.try_recv().ok()) {
                Some(buffer) => buffer,
                None if fresh > 0 => {
                    fresh -= 1;
                    writers.buffer()
                }
                // None back yet: wait for the writer (gone if a write failed or the run is
                // ending; its verdict says which).
                None => match context.recv(&spent) {
                    Some(buffer) => buffer,
                    None => break None,
                },
            };
            // On a read error the chunk channel closes without `End`: the writer drops the file.
            let filled = match fill(content, &mut buffer) {
                Ok(filled) => filled,
                Err(error) => {
                    buffers.push(buffer);
                    break Some(StreamError::Read(error));
                }
            };
            let last = filled < buffer.len();
            if filled > 0 {
                if let Err(Stopped(Chunk::Data(buffer, _))) =
                    context.send(&chunks, Chunk::Data(buffer, filled))
                {
                    buffers.push(buffer);
                    break None;
                }
            } else {
                buffers.push(buffer);
            }
            if last {
                let _ = context.send(&chunks, Chunk::End);
                break None;
            }
        };
        drop(chunks);
        let verdict = match result {
            Some(error) => Err(error),
            None => match context.recv(&staged) {
                Some(result) => result.map_err(StreamError::Store),
                None => Err(StreamError::Stopped),
            },
        };
        // The writer is done with the rest (or gone, with them).
        buffers.extend(spent.try_iter());
        verdict
    }
}

/// Reads until `buffer` is full or the content ends; returns the bytes read.
fn fill(content: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match content.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// One stream writer: finishes the files handed to it until the fetch threads are done.
pub fn run_stream_writer(context: &StageContext, jobs: &Receiver<StreamJob<'_>>) {
    while let Some(job) = context.recv(jobs) {
        let StreamJob {
            stream,
            chunks,
            spent,
            staged,
        } = job;
        if let Some(result) = write_stream(context, stream, &chunks, &spent) {
            let _ = staged.try_send(result);
        }
    }
}

/// Writes a handed-over file's chunks; `None` if its reader gave up (a read error, or the run
/// is ending).
fn write_stream(
    context: &StageContext,
    mut stream: StreamStager<'_>,
    chunks: &Receiver<Chunk>,
    spent: &Sender<Vec<u8>>,
) -> Option<Result<StagedFile, StoreError>> {
    let lanes = LanePool::shared();
    loop {
        // Waiting for the reader to inflate the next chunk, this thread can take over some of
        // the tarball's SHA-512 from it.
        while chunks.is_empty() && lanes.is_some_and(LanePool::help) {}
        // (Returning with `stream` unfinished removes its temp file.)
        match context.recv(chunks)? {
            Chunk::Data(buffer, length) => {
                if let Err(error) = stream.write(&buffer[..length]) {
                    return Some(Err(error));
                }
                context.record_bytes(length as u64);
                let _ = spent.try_send(buffer);
            }
            Chunk::End => {
                context.record_item(0);
                return Some(Ok(stream.finish()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flowpm_pipeline::{CancelToken, run};
    use flowpm_store::FileHash;

    use super::*;
    use crate::InstallError;

    /// `data`, read in pieces; the first read waits, so that the stream writer has started and
    /// is idle by the second chunk at the latest; fails once `fail_at` bytes are read, if given.
    struct SlowStart<'d> {
        data: &'d [u8],
        at: usize,
        fail_at: Option<usize>,
    }

    impl Read for SlowStart<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            if self.at == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.fail_at.is_some_and(|fail_at| self.at >= fail_at) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ));
            }
            let n = buffer.len().min(self.data.len() - self.at).min(100_000);
            buffer[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Stages `data` from a fetch-stage thread with one stream writer beside it; returns the
    /// result and the bytes the write stage wrote.
    fn stage(
        cas: &Cas,
        data: &[u8],
        fail_at: Option<usize>,
    ) -> (Result<StagedFile, StreamError>, u64) {
        let mut result = None;
        let outcome = run::<InstallError, _>(&CancelToken::new(), |pipeline| {
            let (writers, jobs) = StreamWriters::channel(cas);
            let stage = pipeline.declare("write");
            pipeline.spawn_declared(&stage, 1, move |context| {
                run_stream_writer(context, &jobs);
                Ok(())
            });
            let result = &mut result;
            let result = std::sync::Mutex::new(result);
            pipeline.spawn("fetch", 1, move |context| {
                let mut content = SlowStart {
                    data,
                    at: 0,
                    fail_at,
                };
                let staged = writers.stage(context, &mut content, data.len() as u64, false);
                **result.lock().unwrap() = Some(staged);
                Ok(())
            });
        })
        .unwrap_or_else(|_| panic!("the run failed"));
        (result.unwrap(), outcome.stage("write").unwrap().bytes)
    }

    fn temp_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).unwrap().count()
    }

    #[test]
    fn a_large_file_is_finished_by_an_idle_stream_writer() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        // Four chunks and a bit: the writer takes the file over before the first chunk or,
        // if it was not waiting yet, before the second (the first read waits for it).
        let data: Vec<u8> = (0..4 * STREAM_CHUNK + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (staged, written_by_writer) = stage(&cas, &data, None);
        let Ok(staged) = staged else {
            panic!("not staged")
        };
        let after_first = (data.len() - STREAM_CHUNK) as u64;
        assert!([data.len() as u64, after_first].contains(&written_by_writer));
        assert_eq!(staged.hash(), FileHash::of(&data));
        assert_eq!(staged.size(), data.len() as u64);
        let hash = staged.hash();
        staged.commit(&cas).unwrap();
        assert_eq!(std::fs::read(cas.file_path(&hash, false)).unwrap(), data);
        assert_eq!(temp_files(dir.path()), 0);
    }

    #[test]
    fn a_stream_broken_after_the_hand_over_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let data = vec![3u8; 4 * STREAM_CHUNK];
        let (staged, written_by_writer) = stage(&cas, &data, Some(2 * STREAM_CHUNK + 1000));
        assert!(matches!(staged, Err(StreamError::Read(_))));
        // The writer had taken the file over before the read failed.
        assert!(written_by_writer > 0);
        assert_eq!(temp_files(dir.path()), 0);
    }
}
