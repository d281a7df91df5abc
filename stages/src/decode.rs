//! The decode step: a tarball byte stream -> validated file entries, one owned buffer each.
//!
//! Runs on the fetch threads, directly on the HTTP body (or on a file, for benchmarks), so a
//! package is unpacked while it downloads. The integrity hash covers the raw compressed bytes;
//! it is only known at the end of the stream, which is why a package reaches the index and
//! node_modules only once it is verified.

use std::borrow::Cow;
use std::io::Read;

use crate::gunzip::{Gunzip, Take};
use crate::integrity::{Algorithm, HashingReader, Integrity};
use crate::sha512_lanes::LanePool;

/// One file of a package, owned, ready for the write pool.
#[derive(Debug)]
pub struct DecodedFile {
    /// Validated, `/`-separated, relative to the package root.
    pub path: String,
    /// `0o755` if the tarball gave any execute bit, else `0o644`.
    pub mode: u32,
    pub data: Vec<u8>,
}

/// What the decoder hands its sink for each file.
pub enum DecodedEntry<'a> {
    /// A small file as one owned buffer.
    Buffered(DecodedFile),
    /// A file over [`DecodeLimits::stream_threshold`]: the sink reads its content from the
    /// tarball stream before returning, so it never sits whole in memory.
    Streamed {
        path: String,
        mode: u32,
        size: u64,
        content: &'a mut dyn Read,
    },
}

/// Why a sink refused an entry.
pub enum SinkError<E> {
    /// The consumer is gone (the run is ending).
    Stopped,
    /// Reading a streamed entry failed: the tarball stream broke (retryable).
    Read(std::io::Error),
    /// The sink's own failure.
    Other(E),
}

/// Caps that stop a hostile tarball (decompression bomb, huge declared sizes).
#[derive(Clone, Debug)]
pub struct DecodeLimits {
    /// Files above this are streamed to the sink instead of buffered (bounds memory: a queue of
    /// buffered files is at most `queue length * threshold` bytes).
    pub stream_threshold: u64,
    pub max_file_size: u64,
    pub max_total_size: u64,
    pub max_entries: usize,
}

impl DecodeLimits {
    pub const DEFAULT_STREAM_THRESHOLD: u64 = 256 << 10;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // The largest files on npm are native binaries of a few hundred MB.
        DecodeLimits {
            stream_threshold: Self::DEFAULT_STREAM_THRESHOLD,
            max_file_size: 1 << 30,
            max_total_size: 4 << 30,
            max_entries: 500_000,
        }
    }
}

#[derive(Debug)]
pub enum DecodeError<E> {
    /// Reading or inflating failed (truncated body, reset connection, corrupt gzip): retryable.
    Io(std::io::Error),
    /// The tarball is well-formed but unacceptable: not retryable.
    BadEntry(String),
    IntegrityMismatch {
        expected: String,
        actual: String,
    },
    /// The consumer stopped taking entries (the run is ending).
    Stopped,
    /// The sink failed on its own account.
    Sink(E),
}

/// What a decoded tarball contained.
#[derive(Debug, Default)]
pub struct DecodeSummary {
    pub files: usize,
    pub unpacked_bytes: u64,
    pub compressed_bytes: u64,
    /// Links, devices and other entries that are not materialised.
    pub skipped_entries: usize,
}

/// Streams `reader` through gzip and tar, hands each regular file to `sink`, and checks
/// `expected` over every byte of the stream.
pub fn decode_tarball<R: Read, E>(
    reader: R,
    expected: Option<&Integrity>,
    limits: &DecodeLimits,
    mut sink: impl FnMut(DecodedEntry<'_>) -> Result<(), SinkError<E>>,
) -> Result<DecodeSummary, DecodeError<E>> {
    // SHA-512 (npm's integrity) goes to the lane pool when there is one; others are hashed
    // as they are read.
    let sha512 = expected
        .filter(|integrity| integrity.algorithm == Algorithm::Sha512)
        .and(LanePool::shared())
        .map(LanePool::open);
    let hasher = match sha512 {
        Some(_) => None,
        None => expected.map(Integrity::hasher),
    };
    let hashing = HashingReader::new(reader, hasher);
    let mut gunzip = Gunzip::new(hashing, expected.is_none(), sha512).map_err(DecodeError::Io)?;
    let mut summary = DecodeSummary::default();
    let mut block = [0u8; BLOCK];
    // Set by a pax extended header or a GNU long-name entry, for the entry that follows.
    let mut long_path: Option<Vec<u8>> = None;
    let mut pax_size: Option<u64> = None;
    while gunzip.read_block(&mut block).map_err(DecodeError::Io)? {
        if block.iter().all(|&byte| byte == 0) {
            break;
        }
        let header = TarHeader::parse(&block).map_err(DecodeError::Io)?;
        let size = pax_size.take().unwrap_or(header.size);
        // (Not `next_multiple_of`: a hostile base-256 size may be near `u64::MAX`.)
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        match header.kind {
            b'x' | b'L' => {
                let data = read_metadata(&mut gunzip, size).map_err(DecodeError::Io)?;
                gunzip.skip(padding).map_err(DecodeError::Io)?;
                if header.kind == b'L' {
                    long_path = Some(trim_nuls(&data).to_vec());
                } else {
                    for (key, value) in pax_records(&data).map_err(DecodeError::Io)? {
                        match key {
                            b"path" => long_path = Some(value.to_vec()),
                            b"size" => {
                                pax_size = Some(parse_decimal(value).map_err(DecodeError::Io)?)
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            b'0' | b'\0' | b'7' => {}
            kind => {
                // Directories are implied by their files; links, devices and the rest are never
                // materialised. A GNU long link name (`K`) only describes a link.
                if kind != b'5' && kind != b'K' {
                    summary.skipped_entries += 1;
                }
                long_path = None;
                gunzip.skip(size).map_err(DecodeError::Io)?;
                gunzip.skip(padding).map_err(DecodeError::Io)?;
                continue;
            }
        }
        let raw_path = match long_path.take() {
            Some(path) => Cow::Owned(path),
            None => TarHeader::path(&block),
        };
        let path = package_relative_path(&raw_path).map_err(DecodeError::BadEntry)?;
        if size > limits.max_file_size {
            return Err(DecodeError::BadEntry(format!(
                "`{path}` declares {size} bytes, over the {} byte limit",
                limits.max_file_size
            )));
        }
        summary.unpacked_bytes += size;
        summary.files += 1;
        if summary.unpacked_bytes > limits.max_total_size || summary.files > limits.max_entries {
            return Err(DecodeError::BadEntry(format!(
                "unpacks to more than {} bytes or {} files",
                limits.max_total_size, limits.max_entries
            )));
        }
        // Parsed for files only: pax and global headers may leave it blank.
        let mode = parse_octal(&block[100..108], "mode").map_err(DecodeError::Io)?;
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        let truncated = |path: &str| {
            DecodeError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("`{path}` is truncated"),
            ))
        };
        let result = if size > limits.stream_threshold {
            let mut content = Take {
                gunzip: &mut gunzip,
                remaining: size,
            };
            let result = sink(DecodedEntry::Streamed {
                path: path.clone(),
                mode,
                size,
                content: &mut content,
            });
            if result.is_ok() && content.remaining != 0 {
                return Err(truncated(&path));
            }
            result
        } else {
            let mut data = Vec::with_capacity(size as usize);
            gunzip
                .read_into_vec(&mut data, size as usize)
                .map_err(|error| match error.kind() {
                    std::io::ErrorKind::UnexpectedEof => truncated(&path),
                    _ => DecodeError::Io(error),
                })?;
            sink(DecodedEntry::Buffered(DecodedFile { path, mode, data }))
        };
        result.map_err(|error| match error {
            SinkError::Stopped => DecodeError::Stopped,
            SinkError::Read(error) => DecodeError::Io(error),
            SinkError::Other(error) => DecodeError::Sink(error),
        })?;
        gunzip.skip(padding).map_err(DecodeError::Io)?;
    }
    // Read to the very end: the integrity hash covers the gzip trailer and any padding.
    let (actual, compressed_bytes) = gunzip.finish().map_err(DecodeError::Io)?;
    summary.compressed_bytes = compressed_bytes;
    if let (Some(expected), Some(actual)) = (expected, actual)
        && *expected != actual
    {
        return Err(DecodeError::IntegrityMismatch {
            expected: expected.to_sri(),
            actual: actual.to_sri(),
        });
    }
    Ok(summary)
}

const BLOCK: usize = 512;
/// Pax and GNU long-name entries are read whole; real ones are a few hundred bytes.
const MAX_METADATA: u64 = 1 << 20;

/// The fields of a tar header the decoder uses (ustar, GNU and v7 layouts).
struct TarHeader {
    kind: u8,
    size: u64,
}

fn bad_header(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("tar: {why}"))
}

impl TarHeader {
    fn parse(block: &[u8; BLOCK]) -> std::io::Result<TarHeader> {
        let stored = parse_octal(&block[148..156], "checksum")?;
        let computed = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|&byte| u64::from(byte))
            .sum::<u64>()
            + 8 * u64::from(b' ');
        if stored != computed {
            return Err(bad_header("header checksum mismatch".to_owned()));
        }
        let size_field = &block[124..136];
        let size = if size_field[0] & 0x80 != 0 {
            // GNU base-256: the low 63 bits of the big-endian field.
            size_field[4..]
                .iter()
                .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
        } else {
            parse_octal(size_field, "size")?
        };
        Ok(TarHeader {
            kind: block[156],
            size,
        })
    }

    /// `prefix/name` for ustar headers, `name` for GNU and v7 ones (borrowed: most entries
    /// have no prefix).
    fn path(block: &[u8; BLOCK]) -> Cow<'_, [u8]> {
        let name = trim_nuls(&block[..100]);
        let ustar = &block[257..265] == b"ustar\x0000";
        let prefix = trim_nuls(&block[345..500]);
        if ustar && !prefix.is_empty() {
            Cow::Owned([prefix, b"/", name].concat())
        } else {
            Cow::Borrowed(name)
        }
    }
}

/// Up to the first NUL.
fn trim_nuls(field: &[u8]) -> &[u8] {
    field.split(|&byte| byte == 0).next().unwrap_or_default()
}

fn parse_octal(field: &[u8], what: &str) -> std::io::Result<u64> {
    let text = std::str::from_utf8(trim_nuls(field)).unwrap_or("\u{fffd}");
    u64::from_str_radix(text.trim(), 8).map_err(|_| {
        bad_header(format!(
            "{what} field `{}` is not octal",
            text.escape_debug()
        ))
    })
}

fn parse_decimal(value: &[u8]) -> std::io::Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| bad_header("pax size is not a number".to_owned()))
}

fn read_metadata<R: Read>(gunzip: &mut Gunzip<R>, size: u64) -> std::io::Result<Vec<u8>> {
    if size > MAX_METADATA {
        return Err(bad_header(format!("{size}-byte extended header")));
    }
    let mut data = Vec::with_capacity(size as usize);
    gunzip.read_into_vec(&mut data, size as usize)?;
    Ok(data)
}

/// Pax records: `<length> <key>=<value>\n`, the length counting the whole record.
fn pax_records(mut data: &[u8]) -> std::io::Result<Vec<(&[u8], &[u8])>> {
    let mut records = Vec::new();
    while !data.iter().all(|&byte| byte == 0) {
        let bad = || bad_header("malformed pax record".to_owned());
        let space = data.iter().position(|&byte| byte == b' ').ok_or_else(bad)?;
        let length: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|text| text.parse().ok())
            .filter(|&length| length > space + 1 && length <= data.len())
            .ok_or_else(bad)?;
        let record = &data[space + 1..length];
        let record = record.strip_suffix(b"\n").ok_or_else(bad)?;
        let equals = record
            .iter()
            .position(|&byte| byte == b'=')
            .ok_or_else(bad)?;
        records.push((&record[..equals], &record[equals + 1..]));
        data = &data[length..];
    }
    Ok(records)
}

/// Strips the first path component (npm tarballs use `package/`, some use another name) and
/// rejects paths that would leave the package directory.
pub fn package_relative_path(raw: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("entry name `{}` is not UTF-8", String::from_utf8_lossy(raw)))?;
    if text.starts_with('/') {
        return Err(format!("entry `{text}` has an absolute path"));
    }
    let stripped = text.split_once('/').map_or(text, |(_, rest)| rest);
    let mut parts = Vec::new();
    for part in stripped.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("entry `{text}` escapes the package directory")),
            _ if part.contains('\0') => return Err(format!("entry `{text}` contains a NUL byte")),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("entry `{text}` names no file"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tarball(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gzip);
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, content.as_slice())
                .unwrap();
        }
        let mut gzip = builder.into_inner().unwrap();
        gzip.flush().unwrap();
        gzip.finish().unwrap()
    }

    #[test]
    fn streams_large_files_and_buffers_small_ones() {
        let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = tarball(&[
            ("package/big.bin", large.clone()),
            ("package/small.js", b"1".to_vec()),
        ]);
        let mut seen = Vec::new();
        let summary =
            decode_tarball::<_, ()>(&bytes[..], None, &DecodeLimits::default(), |entry| {
                match entry {
                    DecodedEntry::Buffered(file) => seen.push((file.path, false, file.data)),
                    DecodedEntry::Streamed { path, content, .. } => {
                        let mut data = Vec::new();
                        content.read_to_end(&mut data).map_err(SinkError::Read)?;
                        seen.push((path, true, data));
                    }
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(summary.files, 2);
        assert_eq!(seen[0], ("big.bin".to_owned(), true, large));
        assert_eq!(seen[1], ("small.js".to_owned(), false, b"1".to_vec()));

        // A stream cut in the middle of the large file is an I/O error (retryable).
        let cut = &bytes[..bytes.len() / 2];
        let result = decode_tarball::<_, ()>(cut, None, &DecodeLimits::default(), |entry| {
            if let DecodedEntry::Streamed { content, .. } = entry {
                std::io::copy(content, &mut std::io::sink()).map_err(SinkError::Read)?;
            }
            Ok(())
        });
        assert!(matches!(result, Err(DecodeError::Io(_))), "{result:?}");
    }

    /// A tarball built from raw headers, so hostile names and types can be written.
    fn raw_tarball(entries: &[(&[u8], tar::EntryType, &[u8], Option<u64>)]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, kind, content, declared) in entries {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(declared.unwrap_or(content.len() as u64));
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                header.as_old_mut().linkname[..12].copy_from_slice(b"../../../etc");
            }
            header.set_cksum();
            tar.extend_from_slice(header.as_bytes());
            tar.extend_from_slice(content);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.resize(tar.len() + 1024, 0);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        gzip.finish().unwrap()
    }

    fn decode_all(
        bytes: &[u8],
        limits: &DecodeLimits,
    ) -> Result<(Vec<String>, DecodeSummary), DecodeError<()>> {
        let mut paths = Vec::new();
        let summary = decode_tarball::<_, ()>(bytes, None, limits, |entry| {
            match entry {
                DecodedEntry::Buffered(file) => paths.push(file.path),
                DecodedEntry::Streamed { path, content, .. } => {
                    std::io::copy(content, &mut std::io::sink()).map_err(SinkError::Read)?;
                    paths.push(path);
                }
            }
            Ok(())
        })?;
        Ok((paths, summary))
    }

    #[test]
    fn hostile_tarballs_are_refused_or_defused() {
        use tar::EntryType::{Block, Char, Fifo, Link, Regular, Symlink};
        let limits = DecodeLimits::default();
        let bad_entry = |entries: &[(&[u8], tar::EntryType, &[u8], Option<u64>)]| match decode_all(
            &raw_tarball(entries),
            &limits,
        ) {
            Err(DecodeError::BadEntry(message)) => message,
            other => panic!("expected a bad entry, got {other:?}"),
        };
        assert!(bad_entry(&[(b"package/../../x.js", Regular, b"x", None)]).contains("escapes"));
        assert!(bad_entry(&[(b"/etc/passwd", Regular, b"x", None)]).contains("absolute"));
        assert!(bad_entry(&[(b"package/\xff\xfe.js", Regular, b"x", None)]).contains("not UTF-8"));
        // A header declaring 2 GiB: refused before anything is allocated or read.
        assert!(
            bad_entry(&[(b"package/huge.bin", Regular, b"", Some(2 << 30))]).contains("over the")
        );

        // Links, devices and fifos are never materialised, wherever they point.
        let (paths, summary) = decode_all(
            &raw_tarball(&[
                (b"package/link", Symlink, b"", None),
                (b"package/hard", Link, b"", None),
                (b"package/tty", Char, b"", None),
                (b"package/disk", Block, b"", None),
                (b"package/pipe", Fifo, b"", None),
                (b"package/ok.js", Regular, b"1", None),
            ]),
            &limits,
        )
        .unwrap();
        assert_eq!(paths, ["ok.js"]);
        assert_eq!(summary.skipped_entries, 5);

        // Any top-level directory is stripped, not only `package/`.
        let (paths, _) = decode_all(
            &raw_tarball(&[(b"node-v1/index.js", Regular, b"1", None)]),
            &limits,
        )
        .unwrap();
        assert_eq!(paths, ["index.js"]);

        // A decompression bomb: small compressed, over the unpacked cap.
        let zeros = vec![0u8; 1 << 20];
        let bomb: Vec<(&[u8], tar::EntryType, &[u8], Option<u64>)> = (0..8)
            .map(|_| (&b"package/zeros.bin"[..], Regular, &zeros[..], None))
            .collect();
        let tight = DecodeLimits {
            max_total_size: 4 << 20,
            ..DecodeLimits::default()
        };
        assert!(
            matches!(decode_all(&raw_tarball(&bomb), &tight), Err(DecodeError::BadEntry(m)) if m.contains("unpacks to more than"))
        );
    }

    #[test]
    fn reads_ustar_prefixes_gnu_long_names_and_pax_headers() {
        let long_dir = "d".repeat(90);
        let mut builder = tar::Builder::new(Vec::new());
        // ustar splits a long path into prefix and name.
        let mut header = tar::Header::new_ustar();
        header
            .set_path(format!("package/{long_dir}/ustar.js"))
            .unwrap();
        header.set_size(1);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append(&header, &b"u"[..]).unwrap();
        // GNU headers carry a long path in a preceding `L` entry.
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        let gnu_path = format!("package/{long_dir}/{long_dir}/gnu.js");
        builder
            .append_data(&mut header, &gnu_path, &b"gg"[..])
            .unwrap();
        // A pax header names the next entry (and is not an entry itself); a global one is skipped.
        let pax_path = format!("package/{}/pax.js", "p".repeat(150));
        builder
            .append_pax_extensions([("path", pax_path.as_bytes())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("package/short.js").unwrap();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, &b"ppp"[..]).unwrap();
        let mut global = tar::Header::new_ustar();
        global.set_entry_type(tar::EntryType::XGlobalHeader);
        global.set_size(0);
        global.set_cksum();
        builder.append(&global, &b""[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        let bytes = gzip.finish().unwrap();

        let mut files = Vec::new();
        let summary =
            decode_tarball::<_, ()>(&bytes[..], None, &DecodeLimits::default(), |entry| {
                if let DecodedEntry::Buffered(file) = entry {
                    files.push((file.path, file.mode, file.data));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(
            files,
            [
                (format!("{long_dir}/ustar.js"), 0o755, b"u".to_vec()),
                (
                    format!("{long_dir}/{long_dir}/gnu.js"),
                    0o644,
                    b"gg".to_vec()
                ),
                (
                    pax_path["package/".len()..].to_owned(),
                    0o644,
                    b"ppp".to_vec()
                ),
            ]
        );
        assert_eq!(summary.skipped_entries, 1);

        // A header whose checksum does not match is refused, not misread.
        let mut corrupt = tar.clone();
        corrupt[0] ^= 1;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&corrupt).unwrap();
        let result = decode_all(&gzip.finish().unwrap(), &DecodeLimits::default());
        assert!(
            matches!(&result, Err(DecodeError::Io(error)) if error.to_string().contains("checksum")),
            "{result:?}"
        );
    }

    #[test]
    fn verifies_sha1_and_sha512_integrity() {
        use sha2::Digest;
        let bytes = raw_tarball(&[(b"package/a.js", tar::EntryType::Regular, b"a", None)]);
        let sha1 = Integrity {
            algorithm: crate::integrity::Algorithm::Sha1,
            digest: sha1::Sha1::digest(&bytes).to_vec(),
        };
        let sink = |_: DecodedEntry<'_>| Ok::<(), SinkError<()>>(());
        decode_tarball(&bytes[..], Some(&sha1), &DecodeLimits::default(), sink).unwrap();
        let wrong = Integrity {
            algorithm: crate::integrity::Algorithm::Sha512,
            digest: sha2::Sha512::digest(b"other").to_vec(),
        };
        let result = decode_tarball(&bytes[..], Some(&wrong), &DecodeLimits::default(), sink);
        assert!(
            matches!(result, Err(DecodeError::IntegrityMismatch { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn validates_entry_paths() {
        assert_eq!(
            package_relative_path(b"package/lib/a.js").unwrap(),
            "lib/a.js"
        );
        assert_eq!(package_relative_path(b"other/./x//y.js").unwrap(), "x/y.js");
        assert!(package_relative_path(b"package/../../etc/passwd").is_err());
        assert!(package_relative_path(b"/etc/passwd").is_err());
        assert!(package_relative_path(b"package/").is_err());
        assert!(package_relative_path(b"package/\xff.js").is_err());
    }
}
