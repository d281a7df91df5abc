//! Store-wide locking between processes: installs hold a shared lock for as long as they use
//! the store; `prune` (which deletes files no index entry references, including those a running
//! install has written but not yet indexed) needs it exclusively.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::StoreError;

/// Held for the lifetime of a [`crate::Store`]; released on drop (or process exit, even kill -9).
#[derive(Debug)]
pub struct StoreLock {
    _file: OwnedFd,
}

impl StoreLock {
    fn open(version_root: &Path) -> Result<OwnedFd, StoreError> {
        let path = version_root.join("lock");
        rustix::fs::open(
            &path,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| StoreError::io("open the store lock", &path, e.into()))
    }

    /// Waits for any `prune` to finish, then shares the store with other installs.
    pub fn shared(version_root: &Path) -> Result<Self, StoreError> {
        let file = Self::open(version_root)?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::LockShared) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(StoreError::io("lock", version_root.join("lock"), e.into())),
            }
        }
    }

    /// Takes the store for maintenance, failing at once if an install is using it.
    pub fn exclusive(version_root: &Path) -> Result<Self, StoreError> {
        let file = Self::open(version_root)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(Errno::WOULDBLOCK) => Err(StoreError::Busy {
                path: version_root.to_path_buf(),
            }),
            Err(e) => Err(StoreError::io("lock", version_root.join("lock"), e.into())),
        }
    }
}
