//! The tar entry path validator and the streaming decoder on arbitrary bytes, and the
//! decoder's integrity check (SHA-512, hashed by the lane pool where the CPU has one) against
//! the digest of the same bytes.
#![no_main]

use flowpm_stages::decode::{
    DecodeError, DecodeLimits, DecodedEntry, SinkError, decode_tarball, package_relative_path,
};
use flowpm_stages::integrity::{Algorithm, Integrity, IntegrityHasher};
use libfuzzer_sys::fuzz_target;

fn decode(data: &[u8], expected: Option<&Integrity>) -> Result<(), DecodeError<()>> {
    let limits = DecodeLimits { max_total_size: 16 << 20, max_file_size: 8 << 20, ..DecodeLimits::default() };
    decode_tarball::<_, ()>(data, expected, &limits, |entry| {
        let path = match entry {
            DecodedEntry::Buffered(file) => file.path,
            DecodedEntry::Streamed { path, content, .. } => {
                std::io::copy(content, &mut std::io::sink()).map_err(SinkError::Read)?;
                path
            }
        };
        assert!(path.split('/').all(|part| !part.is_empty() && part != "." && part != ".."));
        Ok(())
    })
    .map(drop)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = package_relative_path(data) {
        assert!(!path.starts_with('/'));
        assert!(path.split('/').all(|part| !part.is_empty() && part != "." && part != ".."));
    }
    let plain = decode(data, None);
    let mut hasher = IntegrityHasher::new(Algorithm::Sha512);
    hasher.update(data);
    let right = hasher.finish();
    // The right digest never fails verification; it only lifts the CRC check.
    let checked = decode(data, Some(&right));
    assert!(!matches!(checked, Err(DecodeError::IntegrityMismatch { .. })));
    assert!(plain.is_err() || checked.is_ok());
    if checked.is_ok() {
        let mut wrong = right;
        wrong.digest[63] ^= 1;
        assert!(matches!(decode(data, Some(&wrong)), Err(DecodeError::IntegrityMismatch { .. })));
    }
});
