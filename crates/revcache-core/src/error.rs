//! Typed errors of the engine. Each names what was wrong and what to do.

use std::path::PathBuf;

/// Loading or creating the partition secret in the data dir failed.
#[derive(Debug, thiserror::Error)]
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
