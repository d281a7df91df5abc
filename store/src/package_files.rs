//! The value stored in the index for one package: the files its tarball unpacked to.

use crate::FileHash;

/// One file of a package, as unpacked from its tarball.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the package, `/`-separated, already validated (no `..`, not absolute).
    pub path: String,
    pub hash: FileHash,
    /// `0o644` or `0o755`.
    pub mode: u32,
    pub size: u64,
}

impl FileEntry {
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// All files of one package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageFiles {
    pub files: Vec<FileEntry>,
    /// The package has install scripts (`preinstall`, `install`, `postinstall`, or a
    /// `binding.gyp`): known when it is stored, so no install reads its package.json again.
    pub requires_build: bool,
    /// For a git package, what its files are, decided when it was stored. `None` for other
    /// packages, and for git ones stored by a flowpm that did not record it.
    pub git: Option<GitCopy>,
}

/// What a git package's stored files are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitCopy {
    /// The repository as committed, which needs no build.
    AsCommitted,
    /// Built (its `prepare` run) before it was packed: the built files.
    Prepared,
    /// Must be built, but was stored as committed (scripts were off).
    Unbuilt,
}

/// Version 2 added the flags byte (requires a build, git copy); a version-1 entry reads as
/// missing (fetched again).
const FORMAT_VERSION: u8 = 2;
const REQUIRES_BUILD: u8 = 1;
const PREPARED: u8 = 2;
const UNBUILT: u8 = 4;
/// Added after the other flags: a git entry without any of the three is one whose build was
/// not judged when it was stored.
const AS_COMMITTED: u8 = 8;

impl PackageFiles {
    /// Compact binary form: version byte, flags byte, count, then per file
    /// `path_len u16 | path | hash 32 | mode u32 | size u64`, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(6 + self.files.iter().map(|f| 46 + f.path.len()).sum::<usize>());
        out.push(FORMAT_VERSION);
        let mut flags = 0;
        if self.requires_build {
            flags |= REQUIRES_BUILD;
        }
        flags |= match self.git {
            None => 0,
            Some(GitCopy::AsCommitted) => AS_COMMITTED,
            Some(GitCopy::Prepared) => PREPARED,
            Some(GitCopy::Unbuilt) => UNBUILT,
        };
        out.push(flags);
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for file in &self.files {
            out.extend_from_slice(&(file.path.len() as u16).to_le_bytes());
            out.extend_from_slice(file.path.as_bytes());
            out.extend_from_slice(file.hash.as_bytes());
            out.extend_from_slice(&file.mode.to_le_bytes());
            out.extend_from_slice(&file.size.to_le_bytes());
        }
        out
    }

    /// The inverse of [`PackageFiles::encode`]; `None` if the bytes are not a valid entry.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        Self::decode_with(bytes, true)
    }

    /// As [`PackageFiles::decode`] (the entry is checked whole), but with an empty file list:
    /// what an install needs of a package whose files are in place, without an allocation per
    /// file.
    pub fn decode_flags(bytes: &[u8]) -> Option<Self> {
        Self::decode_with(bytes, false)
    }

    fn decode_with(bytes: &[u8], with_files: bool) -> Option<Self> {
        let mut reader = Reader(bytes);
        let head = reader.take(2)?;
        let requires_build = Self::peek_requires_build(head)?;
        let git = [
            (PREPARED, GitCopy::Prepared),
            (UNBUILT, GitCopy::Unbuilt),
            (AS_COMMITTED, GitCopy::AsCommitted),
        ]
        .into_iter()
        .find_map(|(flag, copy)| (head[1] & flag != 0).then_some(copy));
        let count = u32::from_le_bytes(reader.take(4)?.try_into().ok()?) as usize;
        let mut files = Vec::with_capacity(if with_files { count.min(1 << 16) } else { 0 });
        for _ in 0..count {
            let path_len = u16::from_le_bytes(reader.take(2)?.try_into().ok()?) as usize;
            let path = std::str::from_utf8(reader.take(path_len)?).ok()?;
            if !with_files {
                reader.take(32 + 4 + 8)?;
                continue;
            }
            let path = path.to_owned();
            let hash = FileHash::from_bytes(reader.take(32)?.try_into().ok()?);
            let mode = u32::from_le_bytes(reader.take(4)?.try_into().ok()?);
            let size = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
            files.push(FileEntry {
                path,
                hash,
                mode,
                size,
            });
        }
        reader.0.is_empty().then_some(PackageFiles {
            files,
            requires_build,
            git,
        })
    }

    /// Whether `bytes` are an entry of an earlier format version.
    pub fn is_older_format(bytes: &[u8]) -> bool {
        bytes
            .first()
            .is_some_and(|&version| version < FORMAT_VERSION)
    }

    /// [`PackageFiles::requires_build`] from an encoded entry's first bytes (version, flags);
    /// `None` if they are not a valid entry's.
    pub fn peek_requires_build(bytes: &[u8]) -> Option<bool> {
        match bytes {
            [FORMAT_VERSION, flags, ..] => Some(flags & REQUIRES_BUILD != 0),
            _ => None,
        }
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let files = PackageFiles {
            files: vec![
                FileEntry {
                    path: "package.json".into(),
                    hash: FileHash::of(b"{}"),
                    mode: 0o644,
                    size: 2,
                },
                FileEntry {
                    path: "bin/cli.js".into(),
                    hash: FileHash::of(b"x"),
                    mode: 0o755,
                    size: 1,
                },
            ],
            requires_build: true,
            git: None,
        };
        let bytes = files.encode();
        assert_eq!(PackageFiles::decode(&bytes), Some(files.clone()));
        for (git, requires_build) in [
            (GitCopy::Prepared, true),
            (GitCopy::Unbuilt, false),
            (GitCopy::AsCommitted, false),
        ] {
            let flagged = PackageFiles {
                git: Some(git),
                requires_build,
                ..files.clone()
            };
            assert_eq!(PackageFiles::decode(&flagged.encode()), Some(flagged));
        }
        assert_eq!(PackageFiles::peek_requires_build(&bytes), Some(true));
        // The flags alone: the same entry checked whole, no file list.
        let flags = PackageFiles::decode_flags(&bytes).unwrap();
        assert!(flags.files.is_empty() && flags.requires_build && flags.git.is_none());
        assert_eq!(PackageFiles::decode_flags(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(PackageFiles::decode_flags(&longer), None);
        assert_eq!(PackageFiles::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(PackageFiles::decode(&[3, 0, 0, 0, 0, 0]), None);
        // A version-1 entry (before the flags byte) is not read as a package's files.
        assert_eq!(PackageFiles::decode(&[1, 0, 0, 0, 0]), None);
        assert_eq!(PackageFiles::peek_requires_build(&[1, 0, 0, 0, 0]), None);
    }
}
