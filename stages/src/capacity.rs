//! Every channel bound and pool size of the install engine, in one place, with why.
//!
//! Bounds are in items. File content in flight is at most `FILE_QUEUE * BATCH_BYTES` queued plus
//! one batch per fetch thread, independent of lockfile size.

/// Concurrent downloads. Network latency, not CPU, bounds a cold install: bun uses 48 requests,
/// pnpm 16. Each fetch thread also inflates and untars its stream, so more threads than this
/// mostly add contention on 2 cores. See PERF.md for the measurement.
pub const FETCH_THREADS: usize = 24;

/// Hash+write workers. Writing is syscall-bound (open, write, close per file); a few
/// more threads than cores keep the disk queue busy while others hash.
pub const WRITE_THREADS: usize = 3;

/// Import (hardlink) workers: purely syscall-bound, so the filesystem decides. On tmpfs the work
/// is CPU in the kernel and two threads finish p4 in 0.14 s instead of 0.20 s; on the ext4 disk
/// here a second writer only adds journal contention (pairs of runs: 0.60 vs 0.76 s, 1.10 vs
/// 1.94 s, 2.34 vs 3.15 s for one vs two threads). See `import_threads`.
pub const IMPORT_THREADS_IN_MEMORY: usize = 2;
pub const IMPORT_THREADS_ON_DISK: usize = 1;

/// Import threads for a `node_modules` under `dir`.
pub fn import_threads(dir: &std::path::Path) -> usize {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    let in_memory = rustix::fs::statfs(dir).is_ok_and(|stat| stat.f_type as u64 == TMPFS_MAGIC);
    threads(
        "import",
        if in_memory {
            IMPORT_THREADS_IN_MEMORY
        } else {
            IMPORT_THREADS_ON_DISK
        },
    )
}

/// Deleters of the package directories an install no longer has (an edit removing a
/// dependency: thousands of unlinks, in parallel with linking; one thread per core here).
pub const PRUNE_THREADS: usize = 2;

/// Writers of packages' own `.bin` directories after the import (a few hundred small files).
pub const BIN_THREADS: usize = 2;

/// Batches of decoded files waiting for a writer (see `messages::BATCH_BYTES`): at most
/// 64 * 128 KiB = 8 MiB of file content queued, whatever the lockfile size. Larger files are
/// streamed by the fetch threads and never queued, and a fetch thread that finds the queue
/// full writes its batch itself (`write::FileQueue`).
pub const FILE_QUEUE: usize = 64;

/// Stream writers (see `stream_write`): large files hashed and written beside the fetch thread
/// that inflates them. Idle unless a large file arrives; a cold install rarely has more than
/// two large packages in flight at its end, which is where they matter.
pub const STREAM_WRITE_THREADS: usize = 2;

/// A large file goes to a stream writer in chunks of this size, at most this many queued per
/// file (plus one being filled and one being written): 2 MiB per file in flight.
pub const STREAM_CHUNK: usize = 512 << 10;
pub const STREAM_CHUNKS: usize = 2;

/// Files from this size on are handed to an idle stream writer; smaller streamed files are
/// written by their fetch thread (a hand-over costs a wake-up or two).
pub const STREAM_HANDOVER_MIN: u64 = 1 << 20;

/// Stored packages waiting for import and for the index writer. Small messages (a file list).
pub const IMPORT_QUEUE: usize = 256;
pub const INDEX_QUEUE: usize = 256;

/// The index writer commits after this many packages or this long since the last commit, so a
/// large install makes few fsyncs and a slow one still persists progress.
pub const INDEX_BATCH: usize = 256;
pub const INDEX_BATCH_MILLIS: u64 = 250;

/// File descriptors an install may hold at once: the fetch threads' sockets, the store's 256
/// shard directories, files being written and linked. See [`reserve_descriptors`].
pub const DESCRIPTORS: u64 = 512;

/// Grows the process's descriptor table to [`DESCRIPTORS`] now, best before any thread starts
/// (the CLI does it first thing). Grown later, while threads share it, the table waits for an
/// RCU grace period on the thread that opens the descriptor: 10-20 ms here, one import thread
/// stalled that long at each doubling (PERF.md, session 20). A table never shrinks, so this
/// costs one open, one duplicate and two closes.
pub fn reserve_descriptors() {
    use rustix::fs::{Mode, OFlags};
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let highest = DESCRIPTORS.min(limit).saturating_sub(1);
    let Ok(root) = rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    // The duplicate is closed at once; the table keeps its size.
    let _ = rustix::io::fcntl_dupfd_cloexec(&root, highest as i32);
}

/// A pool size, overridable for experiments and benchmarks by `FLOWPM_<NAME>_THREADS`
/// (e.g. `FLOWPM_IMPORT_THREADS=1`).
pub fn threads(name: &str, default: usize) -> usize {
    std::env::var(format!("FLOWPM_{}_THREADS", name.to_ascii_uppercase()))
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&threads| threads > 0)
        .unwrap_or(default)
}
