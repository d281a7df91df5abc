//! A gzip member inflated on demand, straight into the caller's buffers.
//!
//! `flate2::read::GzDecoder` behind a `BufReader` copies every byte twice more than needed (inflate
//! -> buffer -> entry) and `Read::read_to_end` zero-fills each entry's buffer first; here a file's
//! bytes are inflated directly into its own `Vec`'s spare capacity. The gzip CRC-32 is computed
//! only when no integrity hash covers the stream: a matching sha512 over the compressed bytes
//! already proves every inflated byte, so the CRC would be 2-3% of an install's CPU for nothing.
//! With a [`Sha512Stream`], that hash is not computed as the bytes are read: each input buffer
//! is handed to it once consumed, to be hashed together with other streams ([`crate::sha512_lanes`]).

use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::integrity::{Algorithm, HashingReader, Integrity};
use crate::sha512_lanes::{BUFFER_DATA, HEAD, Sha512Stream};

/// Inflated bytes staged for headers, padding and small files.
const STAGE_SIZE: usize = 64 << 10;
/// Reads at least this large bypass the stage and inflate into the destination.
const DIRECT_MIN: usize = 16 << 10;

pub struct Gunzip<R> {
    source: HashingReader<R>,
    /// Read into at `HEAD..` (the head is the SHA-512 stream's, see `sha512_lanes`).
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    inflate: Decompress,
    /// `None` when an integrity hash covers the stream.
    crc: Option<Crc>,
    stage: Box<[u8]>,
    stage_start: usize,
    stage_end: usize,
    /// The deflate stream has ended (the trailer is still to read).
    ended: bool,
    /// Hashes the stream instead of `source` (which then only counts bytes).
    sha512: Option<Sha512Stream<'static>>,
}

fn corrupt(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {why}"))
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "gzip stream ends early")
}

impl<R: Read> Gunzip<R> {
    /// Reads the gzip header. `verify_crc` should be false only when `source` or `sha512`
    /// hashes the stream against an expected integrity.
    pub fn new(
        source: HashingReader<R>,
        verify_crc: bool,
        sha512: Option<Sha512Stream<'static>>,
    ) -> io::Result<Self> {
        let input = match &sha512 {
            Some(stream) => stream.buffer(),
            None => vec![0; HEAD + BUFFER_DATA],
        };
        let mut gunzip = Gunzip {
            source,
            input,
            input_start: HEAD,
            input_end: HEAD,
            inflate: Decompress::new(false),
            crc: verify_crc.then(Crc::new),
            stage: vec![0; STAGE_SIZE].into_boxed_slice(),
            stage_start: 0,
            stage_end: 0,
            ended: false,
            sha512,
        };
        gunzip.read_header()?;
        Ok(gunzip)
    }

    /// Refills the input buffer once it is used up; false at the end of the source.
    fn refill(&mut self) -> io::Result<bool> {
        if self.input_start < self.input_end {
            return Ok(true);
        }
        // With a SHA-512 stream, reads fill a buffer before it is handed over (TLS gives 16 KiB
        // a read): fewer hand-overs, and no buffer held for a quarter of its bytes.
        match &mut self.sha512 {
            Some(sha512) if self.input_end == self.input.len() => {
                self.input = sha512.deposit(std::mem::take(&mut self.input), self.input_end);
                self.input_end = HEAD;
            }
            Some(_) => {}
            None => self.input_end = HEAD,
        }
        let n = read_retrying(&mut self.source, &mut self.input[self.input_end..])?;
        self.input_start = self.input_end;
        self.input_end += n;
        Ok(n > 0)
    }

    fn input_byte(&mut self) -> io::Result<u8> {
        if !self.refill()? {
            return Err(truncated());
        }
        self.input_start += 1;
        Ok(self.input[self.input_start - 1])
    }

    /// RFC 1952 member header; its optional fields are skipped.
    fn read_header(&mut self) -> io::Result<()> {
        let mut fixed = [0u8; 10];
        for byte in &mut fixed {
            *byte = self.input_byte()?;
        }
        if fixed[..3] != [0x1f, 0x8b, 8] {
            return Err(corrupt("not a gzip (deflate) stream"));
        }
        let flags = fixed[3];
        if flags & 0xe0 != 0 {
            return Err(corrupt("reserved header flags set"));
        }
        if flags & 0x04 != 0 {
            let length = u16::from_le_bytes([self.input_byte()?, self.input_byte()?]);
            for _ in 0..length {
                self.input_byte()?;
            }
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                while self.input_byte()? != 0 {}
            }
        }
        if flags & 0x02 != 0 {
            self.input_byte()?;
            self.input_byte()?;
        }
        Ok(())
    }

    /// Runs one inflate `call` on the buffered input, refilling it as needed until the call
    /// produces output or the stream ends; returns the bytes produced (0 only at the end).
    fn pump(
        &mut self,
        mut call: impl FnMut(&mut Decompress, &[u8]) -> Result<Status, flate2::DecompressError>,
    ) -> io::Result<usize> {
        while !self.ended {
            if !self.refill()? {
                return Err(truncated());
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = call(
                &mut self.inflate,
                &self.input[self.input_start..self.input_end],
            )
            .map_err(|error| corrupt(&error.to_string()))?;
            self.input_start += (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            if status == Status::StreamEnd {
                self.ended = true;
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
        Ok(0)
    }

    /// The staged inflated bytes, refilled when empty; empty only at the end of the stream.
    fn staged(&mut self) -> io::Result<&[u8]> {
        if self.stage_start == self.stage_end {
            let mut stage = std::mem::take(&mut self.stage);
            let produced = self.pump(|inflate, input| {
                inflate.decompress(input, &mut stage, FlushDecompress::None)
            });
            self.stage = stage;
            let produced = produced?;
            if let Some(crc) = &mut self.crc {
                crc.update(&self.stage[..produced]);
            }
            self.stage_start = 0;
            self.stage_end = produced;
        }
        Ok(&self.stage[self.stage_start..self.stage_end])
    }

    /// Fills `block` whole; false if the stream ended exactly before it.
    pub fn read_block(&mut self, block: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < block.len() {
            let staged = self.staged()?;
            if staged.is_empty() {
                return if filled == 0 {
                    Ok(false)
                } else {
                    Err(truncated())
                };
            }
            let n = staged.len().min(block.len() - filled);
            block[filled..filled + n].copy_from_slice(&staged[..n]);
            self.stage_start += n;
            filled += n;
        }
        Ok(true)
    }

    /// Appends exactly `count` inflated bytes to `out`, inflating straight into its spare
    /// capacity once the stage is drained.
    pub fn read_into_vec(&mut self, out: &mut Vec<u8>, count: usize) -> io::Result<()> {
        let target = out.len() + count;
        out.reserve(count);
        while out.len() < target {
            let missing = target - out.len();
            if self.stage_start < self.stage_end || missing < DIRECT_MIN {
                let staged = self.staged()?;
                if staged.is_empty() {
                    return Err(truncated());
                }
                let n = staged.len().min(missing);
                out.extend_from_slice(&staged[..n]);
                self.stage_start += n;
            } else if out.capacity() == target {
                // The spare capacity is exactly what this entry still needs, so inflate cannot
                // overrun into the next tar block.
                let start = out.len();
                let produced = self.pump(|inflate, input| {
                    inflate.decompress_vec(input, out, FlushDecompress::None)
                })?;
                if produced == 0 {
                    return Err(truncated());
                }
                if let Some(crc) = &mut self.crc {
                    crc.update(&out[start..]);
                }
            } else {
                // The allocator gave more than asked: inflate into an initialised tail instead.
                let start = out.len();
                out.resize(target, 0);
                self.read_exact_direct(&mut out[start..])?;
            }
        }
        Ok(())
    }

    /// Fills `buffer` from the stage, or by inflating into it directly when it is large.
    pub fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.stage_start == self.stage_end && buffer.len() >= DIRECT_MIN {
            let produced = self
                .pump(|inflate, input| inflate.decompress(input, buffer, FlushDecompress::None))?;
            if let Some(crc) = &mut self.crc {
                crc.update(&buffer[..produced]);
            }
            return Ok(produced);
        }
        let staged = self.staged()?;
        let n = staged.len().min(buffer.len());
        buffer[..n].copy_from_slice(&staged[..n]);
        self.stage_start += n;
        Ok(n)
    }

    fn read_exact_direct(&mut self, mut buffer: &mut [u8]) -> io::Result<()> {
        while !buffer.is_empty() {
            let n = self.read(buffer)?;
            if n == 0 {
                return Err(truncated());
            }
            buffer = &mut buffer[n..];
        }
        Ok(())
    }

    /// Discards exactly `count` inflated bytes.
    pub fn skip(&mut self, mut count: u64) -> io::Result<()> {
        while count > 0 {
            let staged = self.staged()?;
            if staged.is_empty() {
                return Err(truncated());
            }
            let n = (staged.len() as u64).min(count) as usize;
            self.stage_start += n;
            count -= n as u64;
        }
        Ok(())
    }

    /// Inflates the rest of the member, checks the trailer (length always, CRC-32 when no
    /// integrity covers the stream), reads the source to its end so its hash covers every byte,
    /// and returns that hash and the compressed size.
    pub fn finish(mut self) -> io::Result<(Option<Integrity>, u64)> {
        loop {
            self.stage_start = self.stage_end;
            if self.staged()?.is_empty() {
                break;
            }
        }
        let mut trailer = [0u8; 8];
        for byte in &mut trailer {
            *byte = self.input_byte()?;
        }
        let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
        let length = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
        if length != self.inflate.total_out() as u32 {
            return Err(corrupt("trailer length does not match the inflated size"));
        }
        if let Some(computed) = &self.crc
            && computed.sum() != crc
        {
            return Err(corrupt("CRC-32 mismatch"));
        }
        let Some(mut sha512) = self.sha512.take() else {
            return self.source.finish();
        };
        // The rest of the source too (bytes after the member), so the hash covers every byte.
        let mut end = self.input_end;
        loop {
            self.input = sha512.deposit(std::mem::take(&mut self.input), end);
            let n = read_retrying(&mut self.source, &mut self.input[HEAD..])?;
            if n == 0 {
                break;
            }
            end = HEAD + n;
        }
        let digest = Integrity {
            algorithm: Algorithm::Sha512,
            digest: sha512.finish().to_vec(),
        };
        Ok((Some(digest), HashingReader::bytes(&self.source)))
    }
}

fn read_retrying(source: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// A `Read` over the next `remaining` bytes of a [`Gunzip`] (a tar entry's content).
pub struct Take<'a, R> {
    pub gunzip: &'a mut Gunzip<R>,
    pub remaining: u64,
}

impl<R: Read> Read for Take<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let limit = (buffer.len() as u64).min(self.remaining) as usize;
        let n = self.gunzip.read(&mut buffer[..limit])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::GzBuilder::new()
            .filename("name.tar")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn reads_blocks_vecs_and_skips_across_buffer_edges() {
        let data: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let bytes = gzip(&data);
        for verify in [false, true] {
            let mut gunzip =
                Gunzip::new(HashingReader::new(&bytes[..], None), verify, None).unwrap();
            let mut block = [0u8; 512];
            assert!(gunzip.read_block(&mut block).unwrap());
            assert_eq!(block[..], data[..512]);
            let mut out = Vec::with_capacity(100_000);
            gunzip.read_into_vec(&mut out, 100_000).unwrap();
            assert_eq!(out[..], data[512..100_512]);
            gunzip.skip(1_000).unwrap();
            let mut rest = Vec::new();
            Take {
                gunzip: &mut gunzip,
                remaining: 50_000,
            }
            .read_to_end(&mut rest)
            .unwrap();
            assert_eq!(rest[..], data[101_512..151_512]);
            let (_, compressed) = gunzip.finish().unwrap();
            assert_eq!(compressed, bytes.len() as u64);
        }
    }

    /// Reads at most `step` bytes at a time, as a TLS stream gives them.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let n = buffer.len().min(self.step).min(self.data.len());
            buffer[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_sha512_stream_gets_every_byte_whatever_the_read_sizes() {
        use sha2::{Digest, Sha512};
        // Incompressible, so the stream is over the pool's budget and batches run mid-stream.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let data: Vec<u8> = (0..3_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut bytes = gzip(&data);
        // Bytes after the gzip member are part of the tarball's integrity too.
        bytes.extend_from_slice(b"trailing");
        let expected = Sha512::digest(&bytes);
        let pool: &'static crate::sha512_lanes::LanePool =
            Box::leak(Box::new(crate::sha512_lanes::LanePool::new(false)));
        for step in [1, 100, 16 << 10, 1 << 20] {
            let source = HashingReader::new(Trickle { data: &bytes, step }, None);
            let mut gunzip = Gunzip::new(source, false, Some(pool.open())).unwrap();
            let mut out = Vec::with_capacity(data.len());
            gunzip.read_into_vec(&mut out, data.len()).unwrap();
            assert!(out == data, "read {step} bytes at a time");
            let (digest, compressed) = gunzip.finish().unwrap();
            assert_eq!(compressed, bytes.len() as u64);
            assert_eq!(
                digest.unwrap().digest[..],
                expected[..],
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn refuses_corrupt_and_truncated_streams() {
        let data = vec![42u8; 10_000];
        let bytes = gzip(&data);
        let finish = |bytes: &[u8], verify: bool| -> io::Result<()> {
            let mut gunzip = Gunzip::new(HashingReader::new(bytes, None), verify, None)?;
            gunzip.skip(10_000)?;
            gunzip.finish().map(drop)
        };
        finish(&bytes, true).unwrap();
        // A flipped CRC is caught only when CRCs are checked; a wrong length always.
        let mut bad_crc = bytes.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert!(finish(&bad_crc, true).is_err());
        finish(&bad_crc, false).unwrap();
        let mut bad_length = bytes.clone();
        let at = bad_length.len() - 1;
        bad_length[at] ^= 1;
        assert!(finish(&bad_length, false).is_err());
        // Truncated anywhere: an error, never a short success.
        for cut in [5, 20, bytes.len() / 2, bytes.len() - 3] {
            assert!(finish(&bytes[..cut], false).is_err(), "cut at {cut}");
        }
        assert!(Gunzip::new(HashingReader::new(&b"plain text"[..], None), true, None).is_err());
    }
}
