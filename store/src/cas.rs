//! The content-addressed file store.

use std::collections::HashSet;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::StoreError;

/// The blake3 hash of a file's content, which is its name in the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHash([u8; 32]);

impl FileHash {
    pub fn of(data: &[u8]) -> Self {
        FileHash(*blake3::hash(data).as_bytes())
    }

    /// The hashes of many inputs, in order: small ones sixteen at a time where the CPU has
    /// AVX-512 ([`crate::blake3_lanes`]), the same values as [`FileHash::of`].
    pub fn of_all(inputs: &[&[u8]]) -> Vec<Self> {
        #[cfg(target_arch = "x86_64")]
        if crate::blake3_lanes::supported() {
            return crate::blake3_lanes::hash_all(inputs)
                .into_iter()
                .map(FileHash)
                .collect();
        }
        inputs.iter().map(|input| Self::of(input)).collect()
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        FileHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Debug for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHash({})", self.to_hex())
    }
}

/// `ab/cdef…[-exec]`: a CAS file's name under `files/`, without a heap allocation.
#[derive(Clone, Copy)]
pub struct RelativeName {
    bytes: [u8; Self::CAPACITY],
    length: u8,
}

impl RelativeName {
    /// 2 hex digits, `/`, 62 hex digits, `-exec`.
    const CAPACITY: usize = 70;

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits, `/` and `-exec` are ever written.
        std::str::from_utf8(&self.bytes[..self.length as usize]).expect("ASCII")
    }

    /// The name inside its shard directory (after `ab/`): see [`Cas::shard_fd`].
    pub fn file_name(&self) -> &str {
        &self.as_str()[3..]
    }
}

impl AsRef<Path> for RelativeName {
    fn as_ref(&self) -> &Path {
        Path::new(self.as_str())
    }
}

impl fmt::Display for RelativeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a commit created the file or found it already there (a deduplication hit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Created,
    AlreadyPresent,
}

const WRITTEN_SHARDS: usize = 16;

/// The file store under `<store>/v1`: `files/<2 hex>/<62 hex>[-exec]` and a `tmp/` directory
/// on the same filesystem for files being written.
pub struct Cas {
    files_dir: PathBuf,
    tmp_dir: PathBuf,
    /// Directory handles so each per-file syscall resolves a short relative name.
    files_fd: OwnedFd,
    /// `files/<2 hex>`, each opened (and, in a new store, created) the first time it is needed:
    /// names are resolved from their shard, a path component less for every file written and
    /// linked, and a new store costs no 256 `mkdir`s before its first install can start.
    shards: [OnceLock<OwnedFd>; 256],
    tmp_fd: OwnedFd,
    /// Unique per process and open, so temp names never collide between concurrent installs.
    temp_prefix: String,
    temp_counter: AtomicU64,
    /// Cleared the first time `renameat2(RENAME_NOREPLACE)` is refused by the filesystem.
    rename_noreplace: AtomicBool,
    /// Files this `Cas` wrote whole under their names: found again (a file shared by several
    /// packages, ~14% of a cold install's files), they need no second read to be trusted.
    /// Sharded by the hash's first byte, so the writers rarely meet on one lock.
    written: [Mutex<HashSet<(FileHash, bool)>>; WRITTEN_SHARDS],
}

impl Cas {
    pub fn open(version_root: &Path) -> Result<Self, StoreError> {
        let files_dir = version_root.join("files");
        let tmp_dir = version_root.join("tmp");
        std::fs::create_dir_all(&files_dir)
            .map_err(|e| StoreError::io("create store directory", &files_dir, e))?;
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| StoreError::io("create store directory", &tmp_dir, e))?;
        let open_dir = |path: &Path| {
            rustix::fs::open(
                path,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StoreError::io("open store directory", path, e.into()))
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Cas {
            files_fd: open_dir(&files_dir)?,
            shards: std::array::from_fn(|_| OnceLock::new()),
            tmp_fd: open_dir(&tmp_dir)?,
            files_dir,
            tmp_dir,
            temp_prefix: format!("{}-{nanos:x}-", std::process::id()),
            temp_counter: AtomicU64::new(0),
            rename_noreplace: AtomicBool::new(true),
            written: std::array::from_fn(|_| Mutex::new(HashSet::new())),
        })
    }

    /// The file's name relative to the `files` directory, built on the stack: it is needed for
    /// every file written and every file imported.
    pub fn relative_path(hash: &FileHash, executable: bool) -> RelativeName {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; RelativeName::CAPACITY];
        let mut length = 0;
        for (index, byte) in hash.as_bytes().iter().enumerate() {
            for nibble in [byte >> 4, byte & 0xf] {
                bytes[length] = HEX[nibble as usize];
                length += 1;
            }
            if index == 0 {
                bytes[length] = b'/';
                length += 1;
            }
        }
        if executable {
            bytes[length..length + 5].copy_from_slice(b"-exec");
            length += 5;
        }
        RelativeName {
            bytes,
            length: length as u8,
        }
    }

    pub fn file_path(&self, hash: &FileHash, executable: bool) -> PathBuf {
        self.files_dir.join(Self::relative_path(hash, executable))
    }

    pub fn files_dir(&self) -> &Path {
        &self.files_dir
    }

    /// The directory handle of `hash`'s shard (`files/ab`), where its CAS name is
    /// [`RelativeName::file_name`]; opened once, and created if the store has none yet.
    pub fn shard_fd(&self, hash: &FileHash) -> rustix::io::Result<BorrowedFd<'_>> {
        let byte = hash.as_bytes()[0];
        let slot = &self.shards[byte as usize];
        if let Some(fd) = slot.get() {
            return Ok(fd.as_fd());
        }
        // (Once per shard: the name's first two hex digits.)
        let relative = Self::relative_path(hash, false);
        let name = &relative.as_str()[..2];
        let open = || {
            rustix::fs::openat(
                &self.files_fd,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open() {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&self.files_fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => open()?,
                    Err(error) => return Err(error),
                }
            }
            opened => opened?,
        };
        // Another thread may have opened it meanwhile: its handle is kept, this one closed.
        let _ = slot.set(fd);
        Ok(slot.get().expect("just set").as_fd())
    }

    pub fn contains(&self, hash: &FileHash, executable: bool) -> bool {
        let name = Self::relative_path(hash, executable);
        self.shard_fd(hash).is_ok_and(|shard| {
            rustix::fs::statat(shard, name.file_name(), AtFlags::empty()).is_ok()
        })
    }

    /// Hashes `data` and writes it straight under its CAS name, created with `O_EXCL`.
    ///
    /// The name is the content's hash, so the file is valid the moment the write completes,
    /// whichever tarball it came from; only the index decides which files a (verified) package
    /// has. A name that already exists is trusted only after its content is hashed again: a
    /// writer killed mid-write leaves a short file there, and that one is replaced atomically.
    pub fn stage(&self, data: &[u8], executable: bool) -> Result<StagedFile, StoreError> {
        self.stage_hashed(data, FileHash::of(data), executable)
    }

    /// [`Cas::stage`] for many files (content, executable), whose hashes are computed
    /// together ([`FileHash::of_all`]). The results are in order and end at the first error.
    pub fn stage_all(&self, files: &[(&[u8], bool)]) -> Vec<Result<StagedFile, StoreError>> {
        let contents: Vec<&[u8]> = files.iter().map(|(data, _)| *data).collect();
        let mut staged = Vec::with_capacity(files.len());
        for (&(data, executable), hash) in files.iter().zip(FileHash::of_all(&contents)) {
            let result = self.stage_hashed(data, hash, executable);
            let failed = result.is_err();
            staged.push(result);
            if failed {
                break;
            }
        }
        staged
    }

    /// `hash` is `FileHash::of(data)`, computed by the callers above.
    fn stage_hashed(
        &self,
        data: &[u8],
        hash: FileHash,
        executable: bool,
    ) -> Result<StagedFile, StoreError> {
        let name = Self::relative_path(&hash, executable);
        let staged = |outcome| StagedFile {
            temp_name: None,
            outcome,
            hash,
            executable,
            size: data.len() as u64,
        };
        // Written whole through this handle already (content two packages share): trusted
        // without a failing O_EXCL open (~4.3k per realworld install).
        if self.was_written(hash, executable) {
            return Ok(staged(CommitOutcome::AlreadyPresent));
        }
        let mode = Mode::from_raw_mode(if executable { 0o755 } else { 0o644 });
        let shard = self
            .shard_fd(&hash)
            .map_err(|e| StoreError::io("open", self.files_dir.join(name), e.into()))?;
        match rustix::fs::openat(
            shard,
            name.file_name(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(file) => {
                if let Err(error) = write_all(&file, data) {
                    self.remove_own_file(shard, &file, &name);
                    return Err(StoreError::io(
                        "write",
                        self.files_dir.join(name),
                        error.into(),
                    ));
                }
                self.mark_written(hash, executable);
                Ok(staged(CommitOutcome::Created))
            }
            Err(Errno::EXIST)
                if self.was_written(hash, executable)
                    || self.holds(shard, &name, &hash, data.len()) =>
            {
                Ok(staged(CommitOutcome::AlreadyPresent))
            }
            Err(Errno::EXIST) => {
                // Torn (or still being written by someone else): replace it whole.
                let (file, temp_name) = self.create_temp(executable)?;
                let result = write_all(&file, data).and_then(|()| {
                    rustix::fs::renameat(&self.tmp_fd, temp_name.as_str(), shard, name.file_name())
                });
                if let Err(error) = result {
                    let _ =
                        rustix::fs::unlinkat(&self.tmp_fd, temp_name.as_str(), AtFlags::empty());
                    return Err(StoreError::io(
                        "replace a damaged store file at",
                        self.files_dir.join(name),
                        error.into(),
                    ));
                }
                self.mark_written(hash, executable);
                Ok(staged(CommitOutcome::Created))
            }
            Err(error) => Err(StoreError::io(
                "create",
                self.files_dir.join(name),
                error.into(),
            )),
        }
    }

    fn written_shard(
        &self,
        hash: &FileHash,
    ) -> std::sync::MutexGuard<'_, HashSet<(FileHash, bool)>> {
        let shard = &self.written[hash.as_bytes()[0] as usize % WRITTEN_SHARDS];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_written(&self, hash: FileHash, executable: bool) {
        self.written_shard(&hash).insert((hash, executable));
    }

    fn was_written(&self, hash: FileHash, executable: bool) -> bool {
        self.written_shard(&hash).contains(&(hash, executable))
    }

    /// Whether the file at `name` is complete: `size` bytes that hash to `hash`.
    fn holds(
        &self,
        shard: BorrowedFd<'_>,
        name: &RelativeName,
        hash: &FileHash,
        size: usize,
    ) -> bool {
        let Ok(file) = rustix::fs::openat(
            shard,
            name.file_name(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        if rustix::fs::fstat(&file).map_or(true, |stat| stat.st_size as u64 != size as u64) {
            return false;
        }
        // Hashed as it is read (no buffer for the whole file); `take` stops at one byte past
        // the size, so a file that grew meanwhile cannot match.
        let mut hasher = blake3::Hasher::new();
        let reader = std::io::Read::take(std::fs::File::from(file), size as u64 + 1);
        hasher
            .update_reader(reader)
            .is_ok_and(|hasher| hasher.count() == size as u64)
            && FileHash(*hasher.finalize().as_bytes()) == *hash
    }

    /// Unlinks a file this writer created and failed to fill, unless the name has meanwhile
    /// been replaced by someone else's complete copy.
    fn remove_own_file(&self, shard: BorrowedFd<'_>, file: &OwnedFd, name: &RelativeName) {
        let ours = rustix::fs::fstat(file).ok();
        let there = rustix::fs::statat(shard, name.file_name(), AtFlags::empty()).ok();
        if let (Some(ours), Some(there)) = (ours, there)
            && (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)
        {
            let _ = rustix::fs::unlinkat(shard, name.file_name(), AtFlags::empty());
        }
    }

    /// Removes temp files this process left behind (after a failed run). Files of other
    /// processes are left alone: they may still be writing them.
    pub fn remove_own_temp_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.tmp_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(&self.temp_prefix))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Like [`Cas::stage`] for content that arrives as a stream (large files): written in
    /// chunks while hashed, so it is never held whole in memory.
    pub fn stage_reader(
        &self,
        reader: &mut dyn std::io::Read,
        executable: bool,
    ) -> Result<StagedFile, StoreError> {
        let mut stream = self.begin_stream(executable)?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => return Ok(stream.finish()),
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                // (Dropping `stream` removes its temp file.)
                Err(error) => {
                    return Err(StoreError::io(
                        "read content for",
                        stream.temp_path(),
                        error,
                    ));
                }
            };
            stream.write(&buffer[..n])?;
        }
    }

    /// Starts staging a file whose content is handed over in pieces ([`StreamStager::write`]),
    /// possibly by another thread than the one reading it.
    pub fn begin_stream(&self, executable: bool) -> Result<StreamStager<'_>, StoreError> {
        let (file, temp_name) = self.create_temp(executable)?;
        Ok(StreamStager {
            cas: self,
            file: Some(file),
            temp_name,
            hasher: blake3::Hasher::new(),
            size: 0,
            executable,
        })
    }

    fn create_temp(&self, executable: bool) -> Result<(OwnedFd, String), StoreError> {
        let number = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!("{}{number:x}", self.temp_prefix);
        let mode = Mode::from_raw_mode(if executable { 0o755 } else { 0o644 });
        let file = rustix::fs::openat(
            &self.tmp_fd,
            temp_name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| StoreError::io("create temp file", self.tmp_dir.join(&temp_name), e.into()))?;
        Ok((file, temp_name))
    }

    fn commit(&self, staged: &StagedFile) -> Result<CommitOutcome, StoreError> {
        let Some(source) = staged.temp_name.as_deref() else {
            return Ok(staged.outcome);
        };
        let target = Self::relative_path(&staged.hash, staged.executable);
        let shard = self
            .shard_fd(&staged.hash)
            .map_err(|e| self.commit_error(&target, e))?;
        if self.rename_noreplace.load(Ordering::Relaxed) {
            match rustix::fs::renameat_with(
                &self.tmp_fd,
                source,
                shard,
                target.file_name(),
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Ok(CommitOutcome::Created),
                Err(Errno::EXIST) => {
                    let _ = rustix::fs::unlinkat(&self.tmp_fd, source, AtFlags::empty());
                    return Ok(CommitOutcome::AlreadyPresent);
                }
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    self.rename_noreplace.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.commit_error(&target, e)),
            }
        }
        // Fallback for filesystems without RENAME_NOREPLACE: link never replaces either.
        let outcome = match rustix::fs::linkat(
            &self.tmp_fd,
            source,
            shard,
            target.file_name(),
            AtFlags::empty(),
        ) {
            Ok(()) => CommitOutcome::Created,
            Err(Errno::EXIST) => CommitOutcome::AlreadyPresent,
            Err(e) => return Err(self.commit_error(&target, e)),
        };
        let _ = rustix::fs::unlinkat(&self.tmp_fd, source, AtFlags::empty());
        Ok(outcome)
    }

    fn commit_error(&self, target: &RelativeName, errno: Errno) -> StoreError {
        StoreError::io(
            "move a file into the store at",
            self.files_dir.join(target),
            errno.into(),
        )
    }
}

fn write_all(file: &OwnedFd, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(file, data) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file written to the store, complete and hashed: either already under its CAS name
/// (small files, [`Cas::stage`]) or in the temp directory until its hash is known
/// ([`Cas::stage_reader`]).
#[derive(Debug)]
#[must_use = "a staged file must be committed or discarded"]
pub struct StagedFile {
    /// `None` once the file is under its CAS name.
    temp_name: Option<String>,
    /// What writing it under its CAS name did (for files written there directly).
    outcome: CommitOutcome,
    hash: FileHash,
    executable: bool,
    size: u64,
}

impl StagedFile {
    pub fn hash(&self) -> FileHash {
        self.hash
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn executable(&self) -> bool {
        self.executable
    }

    /// Moves the file under its CAS name without ever replacing an existing one (a no-op for a
    /// file written there directly).
    pub fn commit(self, cas: &Cas) -> Result<CommitOutcome, StoreError> {
        cas.commit(&self)
    }

    /// Drops the file of a package that failed verification: a temp file is removed; a file
    /// already under its CAS name stays, since it holds exactly what its name says and another
    /// package may share it (no index entry references it unless one does; `prune` removes it).
    pub fn discard(self, cas: &Cas) {
        if let Some(temp_name) = &self.temp_name {
            let _ = rustix::fs::unlinkat(&cas.tmp_fd, temp_name.as_str(), AtFlags::empty());
        }
    }
}

/// A file being staged piece by piece under a temp name (see [`Cas::begin_stream`]). Dropped
/// unfinished (a write failed, the stream broke), it removes its temp file.
pub struct StreamStager<'c> {
    cas: &'c Cas,
    /// `None` once finished or discarded.
    file: Option<OwnedFd>,
    temp_name: String,
    hasher: blake3::Hasher,
    size: u64,
    executable: bool,
}

impl StreamStager<'_> {
    /// Hashes and appends the next piece; on failure the temp file is removed.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_ref().expect("an open stream");
        self.hasher.update(data);
        self.size += data.len() as u64;
        write_all(file, data).map_err(|error| {
            let error = StoreError::io("write temp file", self.temp_path(), error.into());
            self.remove();
            error
        })
    }

    /// The content is complete: a staged file, to be committed or discarded with its package.
    pub fn finish(mut self) -> StagedFile {
        self.file = None;
        StagedFile {
            temp_name: Some(std::mem::take(&mut self.temp_name)),
            outcome: CommitOutcome::Created,
            hash: FileHash(*self.hasher.finalize().as_bytes()),
            executable: self.executable,
            size: self.size,
        }
    }

    fn temp_path(&self) -> PathBuf {
        self.cas.tmp_dir.join(&self.temp_name)
    }

    fn remove(&mut self) {
        if self.file.take().is_some() {
            let _ =
                rustix::fs::unlinkat(&self.cas.tmp_fd, self.temp_name.as_str(), AtFlags::empty());
        }
    }
}

impl Drop for StreamStager<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_staged_in_order_under_each_files_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let big = vec![7u8; 40_000];
        let files: Vec<(&[u8], bool)> = vec![
            (b"a", false),
            (b"", false),
            (&big, true),
            (b"a", false),
            (b"#!/bin/sh", true),
        ];
        let staged = cas.stage_all(&files);
        assert_eq!(staged.len(), files.len());
        for (staged, (data, executable)) in staged.into_iter().zip(&files) {
            let staged = staged.unwrap();
            assert_eq!(staged.hash(), FileHash::of(data));
            assert_eq!(staged.executable(), *executable);
            let path = cas.file_path(&staged.hash(), *executable);
            assert_eq!(std::fs::read(path).unwrap(), *data);
            staged.commit(&cas).unwrap();
        }
    }

    #[test]
    fn files_are_written_under_their_hash_and_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let staged = cas.stage(b"hello", false).unwrap();
        let hash = staged.hash();
        assert!(cas.contains(&hash, false), "written in place");
        assert_eq!(staged.commit(&cas).unwrap(), CommitOutcome::Created);
        assert_eq!(
            std::fs::read(cas.file_path(&hash, false)).unwrap(),
            b"hello"
        );

        let again = cas.stage(b"hello", false).unwrap();
        assert_eq!(again.commit(&cas).unwrap(), CommitOutcome::AlreadyPresent);
        let executable = cas.stage(b"hello", true).unwrap();
        assert_eq!(executable.commit(&cas).unwrap(), CommitOutcome::Created);
        assert!(
            cas.file_path(&hash, true)
                .to_string_lossy()
                .ends_with("-exec")
        );

        // Discarding a file already under its name keeps it: it is valid, and shareable.
        cas.stage(b"hello", false).unwrap().discard(&cas);
        assert!(cas.contains(&hash, false));
    }

    #[test]
    fn a_torn_file_under_a_cas_name_is_replaced_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"module.exports = 'complete';\n";
        let hash = FileHash::of(content);
        // What a writer killed mid-write leaves behind, and a same-size corruption, each found
        // by a later install (a store opened again).
        for damaged in [&content[..10], &b"module.exports = 'CORRUPTED';\n"[..]] {
            let cas = Cas::open(dir.path()).unwrap();
            let path = cas.file_path(&hash, false);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, damaged).unwrap();
            let staged = cas.stage(content, false).unwrap();
            assert_eq!(staged.commit(&cas).unwrap(), CommitOutcome::Created);
            assert_eq!(std::fs::read(&path).unwrap(), content);
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn streamed_files_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        let streamed = cas.stage_reader(&mut &b"streamed"[..], false).unwrap();
        let hash = streamed.hash();
        assert_eq!(hash, FileHash::of(b"streamed"));
        assert!(!cas.contains(&hash, false));
        assert_eq!(streamed.commit(&cas).unwrap(), CommitOutcome::Created);
        assert!(cas.contains(&hash, false));
        let again = cas.stage_reader(&mut &b"streamed"[..], false).unwrap();
        assert_eq!(again.commit(&cas).unwrap(), CommitOutcome::AlreadyPresent);

        let discarded = cas.stage_reader(&mut &b"bad"[..], false).unwrap();
        let bad_hash = discarded.hash();
        discarded.discard(&cas);
        assert!(!cas.contains(&bad_hash, false));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_new_store_makes_each_shard_directory_as_it_is_first_needed() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            0
        );
        let staged = cas.stage(b"first", false).unwrap();
        assert!(cas.contains(&staged.hash(), false));
        let streamed = cas.stage_reader(&mut &b"second"[..], true).unwrap();
        let hash = streamed.hash();
        streamed.commit(&cas).unwrap();
        assert!(cas.contains(&hash, true));
        let shards: HashSet<String> = std::fs::read_dir(dir.path().join("files"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        let expected: HashSet<String> = [FileHash::of(b"first"), hash]
            .iter()
            .map(|hash| hash.to_hex()[..2].to_owned())
            .collect();
        assert_eq!(shards, expected);
    }
}
