//! The tar entry path validator and the streaming decoder on arbitrary bytes.
#![no_main]

use flowpm_stages::decode::{DecodeLimits, DecodedEntry, SinkError, decode_tarball, package_relative_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = package_relative_path(data) {
        assert!(!path.starts_with('/'));
        assert!(path.split('/').all(|part| !part.is_empty() && part != "." && part != ".."));
    }
    let limits = DecodeLimits { max_total_size: 16 << 20, max_file_size: 8 << 20, ..DecodeLimits::default() };
    let _ = decode_tarball::<_, ()>(data, None, &limits, |entry| {
        let path = match entry {
            DecodedEntry::Buffered(file) => file.path,
            DecodedEntry::Streamed { path, content, .. } => {
                std::io::copy(content, &mut std::io::sink()).map_err(SinkError::Read)?;
                path
            }
        };
        assert!(path.split('/').all(|part| !part.is_empty() && part != "." && part != ".."));
        Ok(())
    });
});
