//! npm `integrity` strings (Subresource Integrity): parsing and streaming verification.

use std::io::Read;

use base64::Engine;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }
}

/// The strongest supported hash of an SRI string such as `sha512-<base64>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integrity {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

impl Integrity {
    /// Parses an SRI string; several space-separated hashes may be given, the strongest wins.
    pub fn parse(text: &str) -> Option<Self> {
        text.split_whitespace()
            .filter_map(|part| {
                let (name, rest) = part.split_once('-')?;
                let algorithm = match name {
                    "sha512" => Algorithm::Sha512,
                    "sha384" => Algorithm::Sha384,
                    "sha256" => Algorithm::Sha256,
                    "sha1" => Algorithm::Sha1,
                    _ => return None,
                };
                let encoded = rest.split('?').next().unwrap_or(rest);
                let digest = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()?;
                Some(Integrity { algorithm, digest })
            })
            .max_by_key(|integrity| integrity.algorithm)
    }

    pub fn hasher(&self) -> IntegrityHasher {
        IntegrityHasher::new(self.algorithm)
    }

    pub fn to_sri(&self) -> String {
        format!(
            "{}-{}",
            self.algorithm.name(),
            base64::engine::general_purpose::STANDARD.encode(&self.digest)
        )
    }
}

/// Incremental hash over a tarball's raw (compressed) bytes.
pub enum IntegrityHasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl IntegrityHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => IntegrityHasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => IntegrityHasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => IntegrityHasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => IntegrityHasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            IntegrityHasher::Sha1(h) => h.update(bytes),
            IntegrityHasher::Sha256(h) => h.update(bytes),
            IntegrityHasher::Sha384(h) => h.update(bytes),
            IntegrityHasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Integrity {
        let (algorithm, digest) = match self {
            IntegrityHasher::Sha1(h) => (Algorithm::Sha1, h.finalize().to_vec()),
            IntegrityHasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            IntegrityHasher::Sha384(h) => (Algorithm::Sha384, h.finalize().to_vec()),
            IntegrityHasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Integrity { algorithm, digest }
    }
}

/// Hashes everything read through it and counts the bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Option<IntegrityHasher>,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, hasher: Option<IntegrityHasher>) -> Self {
        HashingReader {
            inner,
            hasher,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the rest of the stream (so the hash covers every byte) and returns the digest.
    pub fn finish(mut self) -> std::io::Result<(Option<Integrity>, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((self.hasher.map(IntegrityHasher::finish), self.bytes))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buffer[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_strongest_hash_and_verifies_streams() {
        let data = b"tarball bytes";
        let sha512 = Integrity {
            algorithm: Algorithm::Sha512,
            digest: Sha512::digest(data).to_vec(),
        };
        let sha1 = Integrity {
            algorithm: Algorithm::Sha1,
            digest: Sha1::digest(data).to_vec(),
        };
        let both = format!("{} {}", sha1.to_sri(), sha512.to_sri());
        assert_eq!(Integrity::parse(&both), Some(sha512.clone()));
        assert_eq!(Integrity::parse(&sha1.to_sri()), Some(sha1.clone()));
        assert_eq!(Integrity::parse("md5-abc"), None);

        let mut reader = HashingReader::new(&data[..], Some(sha1.hasher()));
        let mut first = [0u8; 4];
        reader.read_exact(&mut first).unwrap();
        let (digest, bytes) = reader.finish().unwrap();
        assert_eq!(digest, Some(sha1));
        assert_eq!(bytes, data.len() as u64);
    }
}
