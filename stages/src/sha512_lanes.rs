//! SHA-512 of many tarballs at once (npm's `integrity`, over the compressed bytes).
//!
//! A fetch thread decodes one tarball and SHA-512 is one serial chain per stream, ~0.8 GB/s
//! here: about a tenth of a cold install's CPU. Eight streams fit the eight 64-bit lanes of an
//! AVX-512 register ([`crate::sha512_x8`], ~3.1 GB/s over eight lanes). So each fetch thread
//! leaves the buffers its gunzip has consumed here instead of hashing them, and whichever
//! thread finds eight streams waiting, or the pool over its byte budget with a wide batch to
//! take, hashes the streams with the most waiting together; a stream's own thread finishes it
//! (what is left, taking along what other streams have waiting, then the padding). Nothing
//! waits for anything but a batch that holds its own stream. Large tarballs, most of the
//! bytes, wait here until a batch can take several at once, up to [`HELD_HARD_MAX`] over all
//! streams; then they are hashed one at a time. A thread with nothing else to do can lend
//! itself to the pool ([`LanePool::help`]).
//!
//! Buffers keep [`HEAD`] bytes free in front of the data read into them, where the previous
//! buffer's partial block is put back, so every span handed over is whole blocks, contiguous.
//! Without AVX-512 there is no pool ([`LanePool::shared`] is `None`) and streams are hashed as
//! they are read, as before.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use sha2::digest::generic_array::GenericArray;

const BLOCK: usize = 128;
const LANES: usize = 8;
/// Room in front of a buffer's data for the previous buffer's partial block.
pub const HEAD: usize = BLOCK;
/// Data bytes a buffer holds (one read of the body at most).
pub const BUFFER_DATA: usize = 64 << 10;
/// Memory in buffers waiting to be hashed, over all streams, before a depositing thread hashes
/// some (a buffer is held whole until its last block is hashed), in a wide batch or, with
/// fewer than [`MIN_WIDE`] streams open, alone.
const HELD_MAX: usize = 1 << 20;
/// Over this, a depositing thread hashes whatever is waiting, narrow or not. Between the two,
/// large tarballs' buffers wait for small tarballs' ends, which take them along in wide
/// batches: one stream alone costs ~4x more per byte than eight side by side. (8 MiB saved
/// another 2% of p3's CPU, for 8 MB of peak RSS; PERF.md, session 20.)
const HELD_HARD_MAX: usize = 4 << 20;
/// The eight-lane kernel costs about two single-stream compressions per step, so a batch
/// narrower than this is hashed one stream at a time.
const MIN_WIDE: usize = 3;
/// Blocks per lane in a wide batch are the shortest lane's, but at least this many, so one
/// lane with little waiting does not make the others stop early.
const STEP_MIN: usize = 32;
/// Consumed buffers kept for reuse (each HEAD + BUFFER_DATA bytes).
const FREE_MAX: usize = 16;

const IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// Streams being hashed, shared by the threads that read them.
pub struct LanePool {
    pool: Mutex<Pool>,
    /// Signalled whenever a batch gives its lanes back.
    released: Condvar,
    /// The eight-lane kernel may be used.
    wide: bool,
}

#[derive(Default)]
struct Pool {
    lanes: HashMap<u64, Lane>,
    next_id: u64,
    free: Vec<Vec<u8>>,
    /// Buffers held by spans, in lanes or in a running batch.
    held: usize,
    /// Threads waiting for a batch to give their lane back (a notification is a syscall).
    waiting: usize,
}

struct Lane {
    state: [u64; 8],
    /// Whole blocks handed over and not hashed yet, oldest first.
    pending: VecDeque<Span>,
    pending_bytes: usize,
    /// A batch (on some thread) holds this lane's state and first span.
    busy: bool,
    /// The stream was dropped while busy: the lane goes when the batch gives it back.
    abandoned: bool,
}

impl Pool {
    fn ready_count(&self) -> usize {
        self.lanes.values().filter(|lane| lane.ready()).count()
    }

    /// Whether a batch taken now, with `ready` streams ready, is as wide as it is going to
    /// get: at least [`MIN_WIDE`] of them, or fewer than that open (nothing to wait for).
    fn batch_pays(&self, wide: bool, ready: usize) -> bool {
        !wide || self.lanes.len() < MIN_WIDE || ready >= MIN_WIDE
    }
}

impl Lane {
    fn ready(&self) -> bool {
        !self.busy && self.pending_bytes > 0
    }
}

/// Whole blocks of one buffer: `buffer[start..end]`.
struct Span {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

/// A lane's part of a batch, hashed outside the lock.
struct Taken {
    id: u64,
    state: [u64; 8],
    span: Span,
    blocks: usize,
}

impl Taken {
    fn input(&self) -> &[u8] {
        &self.span.buffer[self.span.start..self.span.start + self.blocks * BLOCK]
    }
}

impl LanePool {
    /// The process's pool, or `None` when this CPU has no AVX-512 (nothing to gain).
    pub fn shared() -> Option<&'static LanePool> {
        static SHARED: OnceLock<Option<LanePool>> = OnceLock::new();
        SHARED
            .get_or_init(|| wide_kernel().then(|| LanePool::new(true)))
            .as_ref()
    }

    pub(crate) fn new(wide: bool) -> Self {
        LanePool {
            pool: Mutex::new(Pool::default()),
            released: Condvar::new(),
            wide,
        }
    }

    /// Starts a stream.
    pub fn open(&self) -> Sha512Stream<'_> {
        let mut pool = self.lock();
        let id = pool.next_id;
        pool.next_id += 1;
        pool.lanes.insert(
            id,
            Lane {
                state: IV,
                pending: VecDeque::new(),
                pending_bytes: 0,
                busy: false,
                abandoned: false,
            },
        );
        Sha512Stream {
            pool: self,
            id,
            carry: [0; BLOCK],
            carry_len: 0,
            length: 0,
            finished: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A panic elsewhere cannot leave the map half-updated in a way that matters here.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a batch: `own` (if ready) first, then the ready streams with the most waiting,
    /// up to eight when the wide kernel pays, else `own` alone (or, without `own`, the one
    /// with the most waiting). Each lane takes up to `steps` blocks of its first span; `None`
    /// means the shortest first span taken, but at least [`STEP_MIN`]. Empty if nothing is
    /// ready.
    fn take(&self, pool: &mut Pool, own: Option<u64>, steps: Option<usize>) -> Vec<Taken> {
        let own = own.filter(|id| pool.lanes.get(id).is_some_and(Lane::ready));
        let mut others: Vec<(usize, u64)> = pool
            .lanes
            .iter()
            .filter(|&(id, lane)| Some(*id) != own && lane.ready())
            .map(|(id, lane)| (lane.pending_bytes, *id))
            .collect();
        others.sort_unstable_by(|a, b| b.cmp(a));
        let mut ids: Vec<u64> = own.into_iter().collect();
        let wide = self.wide && ids.len() + others.len() >= MIN_WIDE;
        let room = if wide { LANES } else { 1 } - ids.len();
        ids.extend(others.iter().take(room).map(|&(_, id)| id));
        let first_blocks = |id: &u64| {
            let span = &pool.lanes[id].pending[0];
            (span.end - span.start) / BLOCK
        };
        let steps = match steps {
            _ if !wide => usize::MAX,
            Some(steps) => steps,
            None => ids
                .iter()
                .map(first_blocks)
                .min()
                .unwrap_or(0)
                .max(STEP_MIN),
        };
        ids.into_iter()
            .map(|id| {
                let lane = pool.lanes.get_mut(&id).expect("a ready lane");
                lane.busy = true;
                let span = lane.pending.pop_front().expect("a ready lane has a span");
                let blocks = ((span.end - span.start) / BLOCK).min(steps);
                Taken {
                    id,
                    state: lane.state,
                    span,
                    blocks,
                }
            })
            .collect()
    }

    /// Hashes a batch (no lock held).
    fn hash(&self, batch: &mut [Taken]) {
        if self.wide && batch.len() >= MIN_WIDE {
            wide_compress(batch);
        } else {
            for taken in batch {
                let (mut state, input) = (taken.state, taken.input());
                compress_one(&mut state, input);
                taken.state = state;
            }
        }
    }

    /// Returns a hashed batch's lanes (and their spans' rest) to the pool.
    fn give_back(&self, pool: &mut Pool, batch: Vec<Taken>) {
        for Taken {
            id,
            state,
            mut span,
            blocks,
        } in batch
        {
            let hashed = blocks * BLOCK;
            span.start += hashed;
            let lane = pool.lanes.get_mut(&id).filter(|lane| !lane.abandoned);
            match lane {
                Some(lane) => {
                    lane.state = state;
                    lane.busy = false;
                    lane.pending_bytes -= hashed;
                    if span.start < span.end {
                        lane.pending.push_front(span);
                    } else {
                        release(pool, span.buffer);
                    }
                }
                None => {
                    if let Some(lane) = pool.lanes.remove(&id) {
                        for span in lane.pending {
                            release(pool, span.buffer);
                        }
                    }
                    release(pool, span.buffer);
                }
            }
        }
        if pool.waiting > 0 {
            self.released.notify_all();
        }
    }

    /// Takes ([`LanePool::take`]), hashes and gives back one batch; false if there was nothing
    /// to do.
    fn run_batch<'a>(
        &'a self,
        mut pool: MutexGuard<'a, Pool>,
        own: Option<u64>,
        steps: Option<usize>,
    ) -> (MutexGuard<'a, Pool>, bool) {
        let mut batch = self.take(&mut pool, own, steps);
        if batch.is_empty() {
            return (pool, false);
        }
        drop(pool);
        // Should hashing panic, the lanes go back as they were taken (nothing hashed), so no
        // owner waits for them forever; the panic goes on.
        let mut taken_states = [[0u64; 8]; LANES];
        for (state, taken) in taken_states.iter_mut().zip(&batch) {
            *state = taken.state;
        }
        let hashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hash(&mut batch);
        }));
        let mut pool = self.lock();
        if let Err(panic) = hashed {
            for (taken, state) in batch.iter_mut().zip(taken_states) {
                taken.state = state;
                taken.blocks = 0;
            }
            self.give_back(&mut pool, batch);
            drop(pool);
            std::panic::resume_unwind(panic);
        }
        self.give_back(&mut pool, batch);
        (pool, true)
    }

    /// Lends the calling thread (one with nothing else to do for now) to the pool: hashes one
    /// batch if at least half the budget is waiting and the batch is as wide as it gets, and
    /// says whether it did. Without help, a stream's own thread hashes it once the budget is
    /// exceeded, in turn with inflating it: at the end of an install, with one large tarball
    /// left, that is one core for both.
    pub fn help(&self) -> bool {
        let pool = self.lock();
        if pool.held * (HEAD + BUFFER_DATA) < HELD_MAX / 2
            || !pool.batch_pays(self.wide, pool.ready_count())
        {
            return false;
        }
        self.run_batch(pool, None, None).1
    }
}

/// A span's buffer is done with: kept for another read, up to [`FREE_MAX`].
fn release(pool: &mut Pool, buffer: Vec<u8>) {
    pool.held -= 1;
    if pool.free.len() < FREE_MAX && buffer.len() == HEAD + BUFFER_DATA {
        pool.free.push(buffer);
    }
}

fn new_buffer() -> Vec<u8> {
    vec![0; HEAD + BUFFER_DATA]
}

/// One stream's SHA-512, fed with the buffers its reader has consumed.
pub struct Sha512Stream<'p> {
    pool: &'p LanePool,
    id: u64,
    /// The bytes after the last whole block handed over; they open the next buffer.
    carry: [u8; BLOCK],
    carry_len: usize,
    /// Bytes of the stream so far.
    length: u128,
    finished: bool,
}

impl Sha512Stream<'_> {
    /// A buffer to read the stream into, at `HEAD..`.
    pub fn buffer(&self) -> Vec<u8> {
        self.pool.lock().free.pop().unwrap_or_else(new_buffer)
    }

    /// Hands over `buffer`, whose bytes `HEAD..end` are the stream's next bytes (all of them
    /// consumed by the reader), and returns the buffer for the next read. Readers should fill
    /// buffers first: a span pins its whole buffer until it is hashed.
    pub fn deposit(&mut self, mut buffer: Vec<u8>, end: usize) -> Vec<u8> {
        debug_assert!(buffer.len() == HEAD + BUFFER_DATA && (HEAD..=buffer.len()).contains(&end));
        let start = HEAD - self.carry_len;
        buffer[start..HEAD].copy_from_slice(&self.carry[..self.carry_len]);
        let whole = (end - start) / BLOCK * BLOCK;
        self.carry_len = end - start - whole;
        self.carry[..self.carry_len].copy_from_slice(&buffer[start + whole..end]);
        self.length += (end - HEAD) as u128;
        if whole == 0 {
            return buffer;
        }
        let mut pool = self.pool.lock();
        let lane = pool
            .lanes
            .get_mut(&self.id)
            .expect("an open stream has a lane");
        lane.pending.push_back(Span {
            buffer,
            start,
            end: start + whole,
        });
        lane.pending_bytes += whole;
        pool.held += 1;
        let next = pool.free.pop();
        // Eight streams waiting make a full batch; over the budget, the streams with the most
        // waiting are hashed until it is met again, if that batch is as wide as it gets (else
        // they wait, up to the hard budget).
        loop {
            // (Counted once: this runs under the pool's lock for every buffer read.)
            let ready = pool.ready_count();
            let held = pool.held * (HEAD + BUFFER_DATA);
            let over =
                held > HELD_HARD_MAX || (held > HELD_MAX && pool.batch_pays(self.pool.wide, ready));
            let full = self.pool.wide && ready >= LANES;
            if !over && !full {
                break;
            }
            let ran;
            (pool, ran) = self.pool.run_batch(pool, None, None);
            if !ran || !over {
                break;
            }
        }
        drop(pool);
        next.unwrap_or_else(new_buffer)
    }

    /// Hashes what is left of the stream and pads it: the SHA-512 digest.
    pub fn finish(mut self) -> [u8; 64] {
        self.finished = true;
        let mut pool = self.pool.lock();
        let own = loop {
            while pool.lanes[&self.id].busy {
                pool.waiting += 1;
                pool = self
                    .pool
                    .released
                    .wait(pool)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                pool.waiting -= 1;
            }
            // With other streams waiting, the rest goes in wide batches that take them along
            // (as far as its own first span goes); alone, it is hashed here, out of the pool.
            let lane = &pool.lanes[&self.id];
            // (Counts this stream too: it is ready unless it has nothing waiting.)
            let alone = lane.pending_bytes == 0 || !self.pool.wide || pool.ready_count() < MIN_WIDE;
            if alone {
                let lane = pool
                    .lanes
                    .remove(&self.id)
                    .expect("an open stream has a lane");
                break lane;
            }
            let span = &lane.pending[0];
            let steps = (span.end - span.start) / BLOCK;
            (pool, _) = self.pool.run_batch(pool, Some(self.id), Some(steps));
        };
        drop(pool);
        let mut state = own.state;
        let mut buffers = Vec::with_capacity(own.pending.len());
        for span in own.pending {
            compress_one(&mut state, &span.buffer[span.start..span.end]);
            buffers.push(span.buffer);
        }
        if !buffers.is_empty() {
            let mut pool = self.pool.lock();
            for buffer in buffers {
                release(&mut pool, buffer);
            }
        }
        // FIPS 180-4 5.1.2: 0x80, zeros, then the length in bits as a 128-bit big-endian.
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.carry_len].copy_from_slice(&self.carry[..self.carry_len]);
        tail[self.carry_len] = 0x80;
        let padded = if self.carry_len < BLOCK - 16 {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[padded - 16..padded].copy_from_slice(&(self.length * 8).to_be_bytes());
        compress_one(&mut state, &tail[..padded]);
        let mut digest = [0u8; 64];
        for (bytes, word) in digest.chunks_exact_mut(8).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

impl Drop for Sha512Stream<'_> {
    /// A stream dropped unfinished (a broken download) leaves nothing behind.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut pool = self.pool.lock();
        match pool.lanes.get_mut(&self.id) {
            Some(lane) if lane.busy => lane.abandoned = true,
            Some(_) => {
                let lane = pool.lanes.remove(&self.id).expect("present");
                for span in lane.pending {
                    release(&mut pool, span.buffer);
                }
            }
            None => {}
        }
    }
}

fn compress_one(state: &mut [u64; 8], input: &[u8]) {
    for block in input.chunks_exact(BLOCK) {
        sha2::compress512(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

#[cfg(target_arch = "x86_64")]
fn wide_kernel() -> bool {
    crate::sha512_x8::supported()
}

#[cfg(not(target_arch = "x86_64"))]
fn wide_kernel() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn wide_compress(batch: &mut [Taken]) {
    let mut states = [[0u64; 8]; LANES];
    for (state, taken) in states.iter_mut().zip(batch.iter()) {
        *state = taken.state;
    }
    let inputs: [&[u8]; LANES] =
        std::array::from_fn(|lane| batch.get(lane).map_or(&[][..], Taken::input));
    // SAFETY: a pool is `wide` only when `sha512_x8::supported()` said so.
    unsafe { crate::sha512_x8::compress(&mut states, inputs) };
    for (taken, state) in batch.iter_mut().zip(states) {
        taken.state = state;
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn wide_compress(_: &mut [Taken]) {
    unreachable!("no wide kernel on this architecture")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha512};

    fn random(seed: u64) -> impl FnMut() -> u64 {
        let mut seed = seed | 1;
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// Feeds `data` in reads of random sizes, as a gunzip refilling its input would.
    fn feed<'p>(stream: &mut Sha512Stream<'p>, data: &[u8], next: &mut impl FnMut() -> u64) {
        let mut buffer = stream.buffer();
        let mut at = 0;
        while at < data.len() {
            let n = ((next() % BUFFER_DATA as u64) as usize + 1).min(data.len() - at);
            buffer[HEAD..HEAD + n].copy_from_slice(&data[at..at + n]);
            at += n;
            buffer = stream.deposit(buffer, HEAD + n);
        }
        // An empty read at the end, as at end of stream.
        stream.deposit(buffer, HEAD);
    }

    fn streams_from_many_threads(pool: &LanePool) {
        std::thread::scope(|scope| {
            for thread in 0..12u64 {
                scope.spawn(move || {
                    let mut next = random(0x5eed + thread);
                    for round in 0..25 {
                        // Empty, one partial block, exact blocks, and up to ~600 KiB (over
                        // the allowance, so a stream hashes its own too).
                        let size = match round % 5 {
                            0 => 0,
                            1 => (next() % 300) as usize,
                            2 => BLOCK * (next() % 40) as usize,
                            _ => (next() % (600 << 10)) as usize,
                        };
                        let data: Vec<u8> = (0..size).map(|_| next() as u8).collect();
                        let mut stream = pool.open();
                        if round % 7 == 3 {
                            // A broken download: part of it, then dropped.
                            feed(&mut stream, &data[..size / 2], &mut next);
                            drop(stream);
                            continue;
                        }
                        feed(&mut stream, &data, &mut next);
                        assert_eq!(
                            stream.finish()[..],
                            Sha512::digest(&data)[..],
                            "{size} bytes"
                        );
                    }
                });
            }
        });
        let pool = pool.lock();
        assert!(pool.lanes.is_empty(), "every lane is gone");
        assert_eq!(pool.held, 0, "every buffer is released");
        assert!(pool.free.len() <= FREE_MAX);
    }

    #[test]
    fn digests_equal_sha2_whatever_the_interleaving() {
        streams_from_many_threads(&LanePool::new(false));
        if wide_kernel() {
            streams_from_many_threads(&LanePool::new(true));
        } else {
            eprintln!("no AVX-512 on this CPU: the wide batches are not tested here");
        }
    }

    #[test]
    fn a_helper_hashes_a_stream_it_does_not_read() {
        let pool = LanePool::new(false);
        let mut next = random(0xbee);
        // Under half the budget waiting: nothing to help with.
        let data: Vec<u8> = (0..(3 << 20)).map(|_| next() as u8).collect();
        let mut stream = pool.open();
        let mut buffer = stream.buffer();
        buffer[HEAD..HEAD + 1000].copy_from_slice(&data[..1000]);
        buffer = stream.deposit(buffer, HEAD + 1000);
        assert!(!pool.help());
        // Whole buffers up to the budget (the reader never hashes under it); the helper takes
        // the waiting spans, oldest first, until under half of it.
        let mut at = 1000;
        let mut helped = 0;
        while at < data.len() {
            let n = BUFFER_DATA.min(data.len() - at);
            buffer[HEAD..HEAD + n].copy_from_slice(&data[at..at + n]);
            at += n;
            buffer = stream.deposit(buffer, HEAD + n);
            while pool.help() {
                helped += 1;
            }
            assert!(pool.lock().held * (HEAD + BUFFER_DATA) < HELD_MAX / 2);
        }
        drop(buffer);
        assert!(helped > 0);
        assert_eq!(stream.finish()[..], Sha512::digest(&data)[..]);
        assert_eq!(pool.lock().held, 0);
    }

    #[test]
    fn a_large_stream_waits_for_a_wide_batch_up_to_the_hard_budget() {
        if !wide_kernel() {
            eprintln!("no AVX-512 on this CPU: nothing waits for wide batches here");
            return;
        }
        let pool = LanePool::new(true);
        let mut next = random(0xfeed);
        // Other streams open but with nothing waiting: a batch now would be one stream alone.
        let idle: Vec<Sha512Stream<'_>> = (0..3).map(|_| pool.open()).collect();
        let mut stream = pool.open();
        let data: Vec<u8> = (0..HELD_HARD_MAX + (1 << 20))
            .map(|_| next() as u8)
            .collect();
        let mut buffer = stream.buffer();
        let mut most_held = 0;
        for piece in data.chunks(BUFFER_DATA) {
            buffer[HEAD..HEAD + piece.len()].copy_from_slice(piece);
            buffer = stream.deposit(buffer, HEAD + piece.len());
            let held = pool.lock().held * (HEAD + BUFFER_DATA);
            most_held = most_held.max(held);
            assert!(held <= HELD_HARD_MAX, "{held} bytes held");
        }
        // Nothing was hashed below the hard budget, and nothing over it stayed.
        assert!(most_held > HELD_HARD_MAX - (HEAD + BUFFER_DATA));
        drop(buffer);
        assert_eq!(stream.finish()[..], Sha512::digest(&data)[..]);
        for other in idle {
            assert_eq!(other.finish()[..], Sha512::digest([])[..]);
        }
    }
}
