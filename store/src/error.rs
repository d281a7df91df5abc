use std::path::PathBuf;

/// Errors from the store. Each names the file or index key involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store index at `{}` failed while trying to {action}", path.display())]
    Index {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: lmdb::Error,
    },
    #[error("the store index entry for `{key}` is corrupt; run `flowpm store verify --fix`")]
    CorruptEntry { key: String },
    #[error("the store at `{}` is in use by an install; try again when it has finished", path.display())]
    Busy { path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
