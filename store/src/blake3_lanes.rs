//! BLAKE3 hashes of many small inputs at once, sixteen compressions side by side, one per
//! 32-bit lane of an AVX-512 register.
//!
//! The `blake3` crate already hashes sixteen chunks of one input at a time, so inputs over
//! [`LANED_MAX`] keep using it; below that an input has too few 1 KiB chunks to fill the lanes,
//! and most of a package's files are that small (92% of the real-world lockfile's files, 8% of
//! its bytes; PERF.md). Here the lanes take chunks from any of the inputs, longest first so the
//! last steps are not one long chunk alone; then the parent nodes, one tree level of every
//! input at a time (a level's parents are independent). Pairing a level's nodes left to right,
//! an odd last node carried up, builds the same left-complete tree as the BLAKE3 spec.

use std::arch::x86_64::*;

/// Inputs up to this size are hashed in lanes; larger ones by `blake3::hash`.
pub const LANED_MAX: usize = 16 << 10;

const CHUNK: usize = 1024;
const BLOCK: usize = 64;
const LANES: usize = 16;

const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;

const IV: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

/// The message word order of each of the seven rounds (the spec's permutation applied round
/// after round).
const SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

type Words = [u32; 8];

/// Whether this CPU runs [`hash_all`].
pub fn supported() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// The BLAKE3 hash of each input, in order. Only when [`supported`].
pub fn hash_all(inputs: &[&[u8]]) -> Vec<[u8; 32]> {
    assert!(supported(), "AVX-512 F and BW are required");
    let mut hashes = vec![[0; 32]; inputs.len()];
    // Every laned input's tree: (input index, first node, nodes in its current level). All
    // nodes live in one array; a tree's level starts as its chunks and shrinks in place, level
    // by level, to the root.
    let mut trees: Vec<(usize, usize, usize)> = Vec::new();
    let mut jobs = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        if input.len() > LANED_MAX {
            hashes[index] = *blake3::hash(input).as_bytes();
            continue;
        }
        let count = input.len().div_ceil(CHUNK).max(1);
        let first = jobs.len();
        trees.push((index, first, count));
        for chunk in 0..count {
            let data = &input[chunk * CHUNK..input.len().min((chunk + 1) * CHUNK)];
            jobs.push(Job {
                data,
                counter: chunk as u64,
                flags: if count == 1 { ROOT } else { 0 },
                out: first + chunk,
            });
        }
    }
    let mut nodes: Vec<Words> = vec![[0; 8]; jobs.len()];
    // Longest chunks first: the last steps then run many short ones side by side.
    jobs.sort_by_key(|job| std::cmp::Reverse(job.data.len().div_ceil(BLOCK)));
    // SAFETY: AVX-512 F and BW were checked above.
    unsafe { compress_jobs(&jobs, &mut nodes) };
    let mut blocks: Vec<([u8; 64], usize, u32)> = Vec::new();
    loop {
        // The next level of every tree: its parents over the nodes' places, left to right,
        // an odd last node carried up behind them.
        blocks.clear();
        for (_, first, len) in &mut trees {
            let root = if *len == 2 { ROOT } else { 0 };
            for pair in 0..*len / 2 {
                let mut block = [0; 64];
                let halves = nodes[*first + 2 * pair..*first + 2 * pair + 2]
                    .iter()
                    .flatten();
                for (bytes, word) in block.chunks_exact_mut(4).zip(halves) {
                    bytes.copy_from_slice(&word.to_le_bytes());
                }
                blocks.push((block, *first + pair, PARENT | root));
            }
            if *len % 2 == 1 {
                nodes[*first + *len / 2] = nodes[*first + *len - 1];
            }
            *len = len.div_ceil(2);
        }
        if blocks.is_empty() {
            break;
        }
        let parents: Vec<Job<'_>> = blocks
            .iter()
            .map(|(block, out, flags)| Job {
                data: block,
                counter: 0,
                flags: *flags,
                out: *out,
            })
            .collect();
        // SAFETY: as above.
        unsafe { compress_jobs(&parents, &mut nodes) };
    }
    for (index, first, _) in trees {
        for (bytes, word) in hashes[index].chunks_exact_mut(4).zip(nodes[first]) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
    }
    hashes
}

/// One chunk, or one parent node (a single block of two chaining values).
struct Job<'a> {
    data: &'a [u8],
    counter: u64,
    /// `ROOT` when this job's output is the input's hash, `PARENT` for a parent node.
    flags: u32,
    /// Where its chaining value goes in the node array.
    out: usize,
}

/// Runs every job through the lanes: each step compresses one block of each lane's job, and a
/// lane whose job ends takes the next one.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn compress_jobs(jobs: &[Job<'_>], nodes: &mut [Words]) {
    // Lane -> (job, next block); `None` once nothing is left for it.
    let mut lanes: [Option<(usize, usize)>; LANES] = [None; LANES];
    let mut next_job = 0;
    let mut h = [_mm512_setzero_si512(); 8];
    loop {
        // Lanes without a job take the next one and restart from the IV.
        let mut fresh = 0u16;
        for (lane, slot) in lanes.iter_mut().enumerate() {
            if slot.is_none() && next_job < jobs.len() {
                *slot = Some((next_job, 0));
                next_job += 1;
                fresh |= 1 << lane;
            }
        }
        if fresh != 0 {
            for (word, iv) in h.iter_mut().zip(IV) {
                *word = _mm512_mask_blend_epi32(fresh, *word, _mm512_set1_epi32(iv as i32));
            }
        } else if lanes.iter().all(Option::is_none) {
            return;
        }
        let mut rows = [_mm512_setzero_si512(); LANES];
        let mut counter_lo = [0u32; LANES];
        let mut counter_hi = [0u32; LANES];
        let mut block_len = [0u32; LANES];
        let mut flags = [0u32; LANES];
        let mut ending = 0u16;
        for (lane, slot) in lanes.iter().enumerate() {
            let Some((job, block)) = *slot else {
                continue;
            };
            let job = &jobs[job];
            let start = block * BLOCK;
            let len = job.data.len().saturating_sub(start).min(BLOCK);
            let bytes = &job.data[start..start + len];
            // Sixteen inputs read a block at a time defeat the hardware prefetcher: ask for
            // each lane's data four blocks ahead.
            if let Some(ahead) = job.data.get(start + 4 * BLOCK) {
                _mm_prefetch::<_MM_HINT_T0>((ahead as *const u8).cast());
            }
            rows[lane] = if len == BLOCK {
                // SAFETY: 64 bytes.
                unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
            } else {
                // A short last block, zero-padded. (Not a byte-masked load: those took most
                // of this kernel's time on this machine; PERF.md, session 19.)
                let mut padded = [0u8; BLOCK];
                padded[..len].copy_from_slice(bytes);
                unsafe { _mm512_loadu_si512(padded.as_ptr().cast()) }
            };
            counter_lo[lane] = job.counter as u32;
            counter_hi[lane] = (job.counter >> 32) as u32;
            block_len[lane] = len as u32;
            let last = start + BLOCK >= job.data.len();
            flags[lane] = if job.flags & PARENT != 0 {
                job.flags
            } else {
                (if block == 0 { CHUNK_START } else { 0 })
                    | if last { CHUNK_END | job.flags } else { 0 }
            };
            if last {
                ending |= 1 << lane;
            }
        }
        let m = transpose(rows);
        let load = |values: &[u32; LANES]| unsafe { _mm512_loadu_si512(values.as_ptr().cast()) };
        compress(
            &mut h,
            &m,
            load(&counter_lo),
            load(&counter_hi),
            load(&block_len),
            load(&flags),
        );
        if ending != 0 {
            let mut words = [[0u32; LANES]; 8];
            for (out, word) in words.iter_mut().zip(&h) {
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), *word) };
            }
            for (lane, slot) in lanes.iter_mut().enumerate() {
                if ending & (1 << lane) != 0 {
                    let (job, _) = slot.take().expect("an ending lane has a job");
                    let cv = &mut nodes[jobs[job].out];
                    for (cv, word) in cv.iter_mut().zip(&words) {
                        *cv = word[lane];
                    }
                }
            }
        }
        for slot in lanes.iter_mut().flatten() {
            slot.1 += 1;
        }
    }
}

/// Rows (one lane's 16 message words each) to columns (one message word of all 16 lanes).
#[target_feature(enable = "avx512f")]
fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
    // Within each 128-bit block: pairs of rows, then quads, so that `u[4g + j]` holds, in its
    // block k, word 4k + j of rows 4g..4g + 4.
    let mut t = [_mm512_setzero_si512(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_unpacklo_epi64(a, c);
        u[4 * g + 1] = _mm512_unpackhi_epi64(a, c);
        u[4 * g + 2] = _mm512_unpacklo_epi64(b, d);
        u[4 * g + 3] = _mm512_unpackhi_epi64(b, d);
    }
    // Then a 4x4 transpose of 128-bit blocks across the four row groups.
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let (a, b, c, d) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
        let v0 = _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b);
        let v1 = _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b);
        let v2 = _mm512_shuffle_i32x4::<0b10_00_10_00>(c, d);
        let v3 = _mm512_shuffle_i32x4::<0b11_01_11_01>(c, d);
        out[j] = _mm512_shuffle_i32x4::<0b10_00_10_00>(v0, v2);
        out[4 + j] = _mm512_shuffle_i32x4::<0b10_00_10_00>(v1, v3);
        out[8 + j] = _mm512_shuffle_i32x4::<0b11_01_11_01>(v0, v2);
        out[12 + j] = _mm512_shuffle_i32x4::<0b11_01_11_01>(v1, v3);
    }
    out
}

/// One compression of sixteen lanes: `h` (the chaining values) becomes the first half of the
/// output, which is all a chunk's next block, a parent or a 32-byte root hash needs.
#[target_feature(enable = "avx512f")]
fn compress(
    h: &mut [__m512i; 8],
    m: &[__m512i; 16],
    counter_lo: __m512i,
    counter_hi: __m512i,
    block_len: __m512i,
    flags: __m512i,
) {
    let iv = |i: usize| _mm512_set1_epi32(IV[i] as i32);
    let mut v = [
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        h[6],
        h[7],
        iv(0),
        iv(1),
        iv(2),
        iv(3),
        counter_lo,
        counter_hi,
        block_len,
        flags,
    ];
    for schedule in &SCHEDULE {
        let w = |i: usize| m[schedule[i]];
        g(&mut v, 0, 4, 8, 12, w(0), w(1));
        g(&mut v, 1, 5, 9, 13, w(2), w(3));
        g(&mut v, 2, 6, 10, 14, w(4), w(5));
        g(&mut v, 3, 7, 11, 15, w(6), w(7));
        g(&mut v, 0, 5, 10, 15, w(8), w(9));
        g(&mut v, 1, 6, 11, 12, w(10), w(11));
        g(&mut v, 2, 7, 8, 13, w(12), w(13));
        g(&mut v, 3, 4, 9, 14, w(14), w(15));
    }
    for i in 0..8 {
        h[i] = _mm512_xor_si512(v[i], v[i + 8]);
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
fn g(v: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize, x: __m512i, y: __m512i) {
    v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), x);
    v[d] = _mm512_ror_epi32::<16>(_mm512_xor_si512(v[d], v[a]));
    v[c] = _mm512_add_epi32(v[c], v[d]);
    v[b] = _mm512_ror_epi32::<12>(_mm512_xor_si512(v[b], v[c]));
    v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), y);
    v[d] = _mm512_ror_epi32::<8>(_mm512_xor_si512(v[d], v[a]));
    v[c] = _mm512_add_epi32(v[c], v[d]);
    v[b] = _mm512_ror_epi32::<7>(_mm512_xor_si512(v[b], v[c]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (xorshift), so a failure names a reproducible length.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn every_length_and_mix_hashes_as_blake3_does() {
        if !supported() {
            eprintln!("no AVX-512 here: FileHash::of_all falls back to blake3::hash");
            return;
        }
        // Block, chunk and tree edges (1 to 17 chunks, so every tree shape up to a level of
        // five), the empty input, and inputs past LANED_MAX in the same batch.
        let mut lengths = vec![
            0, 1, 63, 64, 65, 127, 128, 1023, 1024, 1025, 2048, 2049, 3072,
        ];
        lengths.extend((2..=17).flat_map(|chunks| [chunks * CHUNK - 1, chunks * CHUNK + 7]));
        lengths.extend([LANED_MAX - 1, LANED_MAX, LANED_MAX + 1, 100_000]);
        let inputs: Vec<Vec<u8>> = (0..lengths.len())
            .map(|i| bytes(lengths[i], i as u64))
            .collect();
        let all: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        // Batches of every size up to two full sets of lanes, from every starting point.
        for size in [1, 2, 15, 16, 17, 33, all.len()] {
            for start in 0..all.len() {
                let batch: Vec<&[u8]> =
                    all.iter().cycle().skip(start).take(size).copied().collect();
                let hashes = hash_all(&batch);
                assert_eq!(hashes.len(), batch.len());
                for (hash, input) in hashes.iter().zip(&batch) {
                    assert_eq!(
                        hash,
                        blake3::hash(input).as_bytes(),
                        "length {}",
                        input.len()
                    );
                }
            }
        }
        assert!(hash_all(&[]).is_empty());
    }
}
