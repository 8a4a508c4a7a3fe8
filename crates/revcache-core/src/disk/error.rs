//! Errors of the disk tier.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    #[error("disk tier I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data dir index {path} is in use by another process (a running revcache?); stop it or pick another --data-dir"
    )]
    InUse { path: PathBuf },
    #[error("disk tier index: {0}")]
    Store(#[from] redb::Error),
    #[error("the disk tier's writer has stopped")]
    WriterGone,
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
    #[error(
        "the disk tier is disabled after a disk failure ({reason}); revcache serves from memory and reopens the index once the disk works again (free space or fix the disk)"
    )]
    Unavailable { reason: String },
}

impl DiskError {
    /// Whether the disk failed (full, read-only, I/O errors, an index
    /// redb cannot write), as opposed to a refusal that configuration must
    /// fix (a data dir in use, not private): a server may run memory-only.
    pub fn is_disk_fault(&self) -> bool {
        match self {
            DiskError::Io { source, .. } => crate::data_dir::is_disk_fault(source),
            DiskError::DataDir(e) => e.is_disk_fault(),
            DiskError::Store(_) | DiskError::WriterGone | DiskError::Unavailable { .. } => true,
            DiskError::InUse { .. } => false,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DiskError {
            fn from(e: $t) -> Self {
                DiskError::Store(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

impl DiskError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DiskError {
        let path = path.into();
        move |source| DiskError::Io { path, source }
    }
}

/// A stored record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct Corrupt(pub &'static str);
