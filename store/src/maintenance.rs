//! `flowpm store status | verify | prune`: checking and cleaning the store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::{Cas, FileHash, SIDE_EFFECTS_PREFIX, Store, StoreError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub packages: usize,
    /// Packages' built files kept by the side-effects cache.
    pub cached_builds: usize,
    /// Distinct files referenced by the index.
    pub referenced_files: usize,
    pub referenced_bytes: u64,
    pub temp_files: usize,
}

/// A CAS file that does not hold what its name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub packages: usize,
    pub cached_builds: usize,
    pub files_checked: usize,
    pub bad_files: Vec<BadFile>,
    /// Index entries removed (with `fix`) because they referenced a bad file.
    pub packages_removed: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub files_removed: usize,
    pub bytes_removed: u64,
    pub temp_files_removed: usize,
    /// Cached install plans (`v1/plans`): derived data, recomputed when next needed.
    pub plans_removed: usize,
}

/// Index entries by kind.
#[derive(Default)]
struct Entries {
    packages: usize,
    cached_builds: usize,
}

impl Store {
    /// Every distinct (hash, executable) the index references, with its recorded size.
    fn referenced(&self) -> Result<(Entries, Vec<(FileHash, bool, u64)>), StoreError> {
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        let mut entries = Entries::default();
        self.index().for_each(|key, entry| {
            if key.starts_with(SIDE_EFFECTS_PREFIX.as_bytes()) {
                entries.cached_builds += 1;
            } else {
                entries.packages += 1;
            }
            for file in entry.map(|e| e.files).unwrap_or_default() {
                if seen.insert((file.hash, file.is_executable())) {
                    files.push((file.hash, file.is_executable(), file.size));
                }
            }
        })?;
        Ok((entries, files))
    }

    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let (entries, files) = self.referenced()?;
        Ok(StoreStatus {
            packages: entries.packages,
            cached_builds: entries.cached_builds,
            referenced_files: files.len(),
            referenced_bytes: files.iter().map(|(_, _, size)| size).sum(),
            temp_files: std::fs::read_dir(self.root().join("v1/tmp"))
                .map(|d| d.count())
                .unwrap_or(0),
        })
    }

    /// Re-hashes every CAS file the index references. With `fix`, bad files are deleted and the
    /// index entries that list them removed, so the next install downloads those packages again.
    pub fn verify(&self, fix: bool) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut bad: HashSet<(FileHash, bool)> = HashSet::new();
        let (entries, files) = self.referenced()?;
        report.packages = entries.packages;
        report.cached_builds = entries.cached_builds;
        for (hash, executable, size) in files {
            report.files_checked += 1;
            let path = self.cas().file_path(&hash, executable);
            if let Some(reason) = check_file(&path, &hash, size) {
                bad.insert((hash, executable));
                report.bad_files.push(BadFile { path, reason });
            }
        }
        if fix && !bad.is_empty() {
            let mut doomed = Vec::new();
            self.index().for_each(|key, entry| {
                let broken = entry.is_none_or(|e| {
                    e.files
                        .iter()
                        .any(|f| bad.contains(&(f.hash, f.is_executable())))
                });
                if broken {
                    doomed.push(key.to_vec());
                }
            })?;
            report.packages_removed = doomed.len();
            self.index().remove_stored(&doomed)?;
            for file in &report.bad_files {
                let _ = std::fs::remove_file(&file.path);
            }
        }
        Ok(report)
    }

    /// Removes CAS files that no index entry references, and leftover temp files. Needs the
    /// store to itself: open it with [`Store::open_exclusive`].
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        if !self.is_exclusive() {
            return Err(StoreError::Busy {
                path: self.root().join("v1"),
            });
        }
        let (_, files) = self.referenced()?;
        let keep: HashSet<String> = files
            .iter()
            .map(|(hash, exec, _)| Cas::relative_path(hash, *exec).to_string())
            .collect();
        let mut report = PruneReport::default();
        let files_dir = self.cas().files_dir().to_path_buf();
        for shard in read_dir_names(&files_dir)? {
            let shard_dir = files_dir.join(&shard);
            if !shard_dir.is_dir() {
                continue;
            }
            for name in read_dir_names(&shard_dir)? {
                if keep.contains(&format!("{shard}/{name}")) {
                    continue;
                }
                let path = shard_dir.join(&name);
                let size = path.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                report.files_removed += 1;
                report.bytes_removed += size;
            }
        }
        let tmp = self.root().join("v1/tmp");
        for name in read_dir_names(&tmp)? {
            let path = tmp.join(name);
            std::fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            report.temp_files_removed += 1;
        }
        let plans = self.root().join("v1/plans");
        for name in read_dir_names(&plans)? {
            let path = plans.join(name);
            std::fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            report.plans_removed += 1;
        }
        Ok(report)
    }
}

/// Why a CAS file is bad, or `None` if its content matches its name and recorded size.
fn check_file(path: &Path, hash: &FileHash, size: u64) -> Option<String> {
    let content = match std::fs::read(path) {
        Ok(content) => content,
        Err(error) => return Some(format!("cannot be read: {error}")),
    };
    if content.len() as u64 != size {
        return Some(format!(
            "has {} bytes, the index says {size}",
            content.len()
        ));
    }
    let actual = FileHash::of(&content);
    (actual != *hash).then(|| format!("content hashes to {}", actual.to_hex()))
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("read directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use crate::{FileEntry, IndexBatch, PackageFiles, Store};

    #[test]
    fn verify_finds_and_fixes_corruption_and_prune_keeps_referenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = IndexBatch::default();
        for (key, content) in [("sha512-good", &b"good"[..]), ("sha512-bad", &b"bad"[..])] {
            let staged = store.cas().stage(content, false).unwrap();
            let entry = FileEntry {
                path: "a.js".into(),
                hash: staged.hash(),
                mode: 0o644,
                size: content.len() as u64,
            };
            staged.commit(store.cas()).unwrap();
            batch.push(
                key,
                &PackageFiles {
                    files: vec![entry],
                    requires_build: false,
                    git: None,
                },
            );
        }
        store.index().commit(&batch).unwrap();
        let orphan = store.cas().stage(b"orphan", true).unwrap();
        let orphan_hash = orphan.hash();
        orphan.commit(store.cas()).unwrap();
        let leftover = store
            .cas()
            .stage_reader(&mut &b"never committed"[..], false)
            .unwrap();
        std::mem::forget(leftover);

        // Corrupt one file in place (as a crash or a bad disk could).
        let bad_path = store.cas().file_path(&flowpm_hash(b"bad"), false);
        std::fs::write(&bad_path, b"BAD").unwrap();
        let report = store.verify(false).unwrap();
        assert_eq!(
            (
                report.packages,
                report.files_checked,
                report.bad_files.len()
            ),
            (2, 2, 1)
        );
        assert_eq!(report.bad_files[0].path, bad_path);
        let report = store.verify(true).unwrap();
        assert_eq!(report.packages_removed, 1);
        assert!(store.index().get("sha512-bad").unwrap().is_none());
        assert!(store.index().get("sha512-good").unwrap().is_some());
        assert!(store.verify(false).unwrap().bad_files.is_empty());

        assert!(store.prune().is_err(), "prune needs the store to itself");
        drop(store);
        let store = Store::open_exclusive(dir.path()).unwrap();
        let pruned = store.prune().unwrap();
        assert_eq!((pruned.files_removed, pruned.temp_files_removed), (1, 1));
        assert!(!store.cas().contains(&orphan_hash, true));
        assert!(store.cas().contains(&flowpm_hash(b"good"), false));
    }

    fn flowpm_hash(content: &[u8]) -> crate::FileHash {
        crate::FileHash::of(content)
    }
}
