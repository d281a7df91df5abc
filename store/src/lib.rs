//! flowpm's package store: a content-addressed file store (CAS) and an index of packages.
//!
//! Files are named by the blake3 hash of their content (`v1/files/ab/cdef…`, with `-exec` for
//! executables, since a hardlinked file shares its mode with every project that links it).
//! Writers create a file under its name with `O_EXCL` ([`Cas::stage`]); a name found already
//! there is re-hashed before it is trusted, and replaced atomically if a killed writer left it
//! short. Streamed (large) files, whose hash is only known at the end, go through a private
//! temp file renamed into place without replacing ([`Cas::stage_reader`],
//! [`StagedFile::commit`]). Since a name is its content's hash, a file is valid whichever
//! tarball wrote it; the index ([`Index`]) maps a package's tarball identity (its
//! `integrity`) to the list of files it unpacks to, and is written only after every listed
//! file is in the CAS, so an index hit is always a complete package.
//!
//! The store knows nothing about semver, lockfiles or node_modules.

#[cfg(target_arch = "x86_64")]
mod blake3_lanes;
mod cas;
mod error;
mod index;
mod lock;
mod maintenance;
mod package_files;

pub use cas::{Cas, CommitOutcome, FileHash, RelativeName, StagedFile, StreamStager};
pub use error::StoreError;
pub use index::{Index, IndexBatch, SIDE_EFFECTS_PREFIX};
pub use lock::StoreLock;
pub use maintenance::{BadFile, PruneReport, StoreStatus, VerifyReport};
pub use package_files::{FileEntry, GitCopy, PackageFiles};

use std::path::{Path, PathBuf};

/// The store directory with its CAS and index opened, and its lock held.
pub struct Store {
    root: PathBuf,
    cas: Cas,
    index: Index,
    _lock: StoreLock,
    exclusive: bool,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, shared with other installs.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, false)
    }

    /// Opens the store for maintenance; fails at once if an install is using it.
    pub fn open_exclusive(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Self, StoreError> {
        let version_root = root.join("v1");
        std::fs::create_dir_all(&version_root)
            .map_err(|e| StoreError::io("create store directory", &version_root, e))?;
        let lock = if exclusive {
            StoreLock::exclusive(&version_root)?
        } else {
            StoreLock::shared(&version_root)?
        };
        let cas = Cas::open(&version_root)?;
        let index = Index::open(&version_root.join("index"))?;
        Ok(Self {
            root: root.to_path_buf(),
            cas,
            index,
            _lock: lock,
            exclusive,
        })
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cas(&self) -> &Cas {
        &self.cas
    }

    pub fn index(&self) -> &Index {
        &self.index
    }
}
