//! The package index: tarball identity -> [`PackageFiles`], in LMDB.
//!
//! This is the only module that touches `lmdb-rkv` (an old crate: keep it contained). LMDB gives
//! lock-free concurrent readers across threads and processes and a single writer at a time; the
//! install engine gives the write side to one thread that commits in batches.

use std::path::{Path, PathBuf};

use lmdb::{Cursor, Database, Environment, EnvironmentFlags, Transaction, WriteFlags};

use crate::{PackageFiles, StoreError};

/// Virtual size of the memory map; the file only grows as entries are written.
const MAP_SIZE: usize = 64 << 30;
/// Prefix of the index keys that hold a package's files after its build (the side-effects
/// cache): derived entries, counted apart from packages.
pub const SIDE_EFFECTS_PREFIX: &str = "side-effects:";

/// LMDB keys are limited to 511 bytes; longer identities (tarball URLs) are hashed.
const MAX_KEY_LEN: usize = 400;

pub struct Index {
    path: PathBuf,
    env: Environment,
    db: Database,
}

impl Index {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::io("create index directory", path, e))?;
        // NO_TLS: read transactions are used from pool threads. NO_META_SYNC: each commit still
        // syncs its data pages, so a system crash can at worst lose the last commit, never corrupt.
        let env = Environment::new()
            .set_flags(EnvironmentFlags::NO_TLS | EnvironmentFlags::NO_META_SYNC)
            .set_map_size(MAP_SIZE)
            .set_max_readers(1024)
            .open(path)
            .map_err(|source| StoreError::Index {
                action: "open",
                path: path.to_path_buf(),
                source,
            })?;
        let db = env.open_db(None).map_err(|source| StoreError::Index {
            action: "open",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Index {
            path: path.to_path_buf(),
            env,
            db,
        })
    }

    fn error(&self, action: &'static str, source: lmdb::Error) -> StoreError {
        StoreError::Index {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Looks up one package. A corrupt entry is an error, not a miss, so it gets noticed.
    pub fn get(&self, key: &str) -> Result<Option<PackageFiles>, StoreError> {
        Ok(self.get_many([key])?.pop().flatten())
    }

    /// Whether the store has the package: [`Index::get`] without its file list (the entry is
    /// still checked whole; a corrupt one is an error).
    pub fn contains(&self, key: &str) -> Result<bool, StoreError> {
        let found = self.get_many_flags([(key, true)])?.pop().flatten();
        Ok(found.is_some())
    }

    /// Looks up many packages in one read transaction.
    pub fn get_many<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Vec<Option<PackageFiles>>, StoreError> {
        self.get_many_flags(keys.into_iter().map(|key| (key, false)))
    }

    /// As [`Index::get_many`], but a key paired with `true` gets its entry's flags only (an
    /// empty file list, [`PackageFiles::decode_flags`]) unless its package requires a build:
    /// for packages whose files are in place, which need no import unless built.
    pub fn get_many_flags<'k>(
        &self,
        keys: impl IntoIterator<Item = (&'k str, bool)>,
    ) -> Result<Vec<Option<PackageFiles>>, StoreError> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.error("read", e))?;
        keys.into_iter()
            .map(
                |(key, flags_only)| match txn.get(self.db, &storage_key(key)) {
                    // Written by an older flowpm: fetched again and overwritten.
                    Ok(bytes) if PackageFiles::is_older_format(bytes) => Ok(None),
                    Ok(bytes) => {
                        let flags_only =
                            flags_only && PackageFiles::peek_requires_build(bytes) == Some(false);
                        match flags_only {
                            true => PackageFiles::decode_flags(bytes),
                            false => PackageFiles::decode(bytes),
                        }
                        .map(Some)
                        .ok_or_else(|| StoreError::CorruptEntry {
                            key: key.to_owned(),
                        })
                    }
                    Err(lmdb::Error::NotFound) => Ok(None),
                    Err(e) => Err(self.error("read", e)),
                },
            )
            .collect()
    }

    /// Writes a batch of entries in one transaction.
    pub fn commit(&self, batch: &IndexBatch) -> Result<(), StoreError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let mut txn = self
            .env
            .begin_rw_txn()
            .map_err(|e| self.error("begin a write", e))?;
        for (key, value) in &batch.entries {
            txn.put(self.db, key, value, WriteFlags::empty())
                .map_err(|e| self.error("write", e))?;
        }
        txn.commit().map_err(|e| self.error("commit", e))
    }

    /// Removes entries (used by `store verify --fix`).
    pub fn remove(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut txn = self
            .env
            .begin_rw_txn()
            .map_err(|e| self.error("begin a write", e))?;
        for key in keys {
            match txn.del(self.db, &storage_key(key), None) {
                Ok(()) | Err(lmdb::Error::NotFound) => {}
                Err(e) => return Err(self.error("delete", e)),
            }
        }
        txn.commit().map_err(|e| self.error("commit", e))
    }

    /// Removes entries by their key as stored (as [`Index::for_each`] gives it).
    pub fn remove_stored(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut txn = self
            .env
            .begin_rw_txn()
            .map_err(|e| self.error("begin a write", e))?;
        for key in keys {
            match txn.del(self.db, key, None) {
                Ok(()) | Err(lmdb::Error::NotFound) => {}
                Err(e) => return Err(self.error("delete", e)),
            }
        }
        txn.commit().map_err(|e| self.error("commit", e))
    }

    /// Visits every entry (key as stored, decoded value or `None` if corrupt).
    pub fn for_each(
        &self,
        mut visit: impl FnMut(&[u8], Option<PackageFiles>),
    ) -> Result<(), StoreError> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.error("read", e))?;
        let mut cursor = txn
            .open_ro_cursor(self.db)
            .map_err(|e| self.error("read", e))?;
        for item in cursor.iter_start() {
            let (key, value) = item.map_err(|e| self.error("read", e))?;
            visit(key, PackageFiles::decode(value));
        }
        Ok(())
    }

    pub fn len(&self) -> Result<usize, StoreError> {
        let stat = self.env.stat().map_err(|e| self.error("read", e))?;
        Ok(stat.entries())
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

/// Entries gathered by the single index writer and committed together.
#[derive(Default)]
pub struct IndexBatch {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl IndexBatch {
    pub fn push(&mut self, key: &str, files: &PackageFiles) {
        self.entries.push((storage_key(key), files.encode()));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn storage_key(key: &str) -> Vec<u8> {
    if key.len() <= MAX_KEY_LEN {
        key.as_bytes().to_vec()
    } else {
        format!("blake3:{}", blake3::hash(key.as_bytes()).to_hex()).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileEntry, FileHash};

    #[test]
    fn commits_and_reads_back_batches() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let files = PackageFiles {
            files: vec![FileEntry {
                path: "a.js".into(),
                hash: FileHash::of(b"a"),
                mode: 0o644,
                size: 1,
            }],
            requires_build: false,
            git: None,
        };
        let long_key = format!("https://example.invalid/{}", "x".repeat(600));
        let mut batch = IndexBatch::default();
        batch.push("sha512-abc", &files);
        batch.push(&long_key, &files);
        index.commit(&batch).unwrap();
        assert_eq!(index.get("sha512-abc").unwrap(), Some(files.clone()));
        assert_eq!(index.get(&long_key).unwrap(), Some(files));
        assert_eq!(index.get("sha512-missing").unwrap(), None);
        assert_eq!(index.len().unwrap(), 2);
    }
}
