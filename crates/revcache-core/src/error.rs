//! Typed errors of the engine. Each names what was wrong and what to do.

use std::path::PathBuf;

/// Loading or creating the partition secret in the data dir failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionKeyError {
    #[error("cannot create data dir {path}: {source} (check the path and its permissions)")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read partition key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write partition key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "partition key {path} is {len} bytes, expected 32: the file is damaged; remove it (cached private entries become unreachable and are refetched)"
    )]
    BadLength { path: PathBuf, len: usize },
    #[error(
        "partition key {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot read random bytes for a new partition key: {0}")]
    Random(std::io::Error),
}

impl PartitionKeyError {
    /// Whether the disk failed (full, read-only, I/O error) rather than
    /// the key being refused.
    pub fn is_disk_fault(&self) -> bool {
        match self {
            PartitionKeyError::CreateDir { source, .. }
            | PartitionKeyError::Read { source, .. }
            | PartitionKeyError::Write { source, .. } => crate::data_dir::is_disk_fault(source),
            _ => false,
        }
    }
}

/// A purge removed entries from memory but could not remove them from the
/// disk tier. They stay hidden (a tombstone) while this process runs, and
/// the removal is committed once the disk tier works again.
#[derive(Debug, thiserror::Error)]
#[error(
    "the purge removed {in_memory} entries from memory but did not reach the disk tier ({source}); they stay hidden and are removed from disk once it works again, but come back if revcache restarts before that: repeat the purge then"
)]
pub struct PurgeError {
    /// Entries removed from memory.
    pub in_memory: usize,
    pub source: crate::disk::DiskError,
}
