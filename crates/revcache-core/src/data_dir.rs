//! The data dir: what makes a directory revcache's, and which format it is.
//!
//! A data dir carries a `FORMAT` file naming the format version. A
//! directory with other content and no `FORMAT` file is refused (it may be
//! someone else's data); a newer format is refused (an older revcache must
//! not touch what a newer one wrote). An older format is dropped and
//! recreated: it is a cache, and refetching is cheaper than migrating.
//!
//! It is private: created owner-only (0700, files 0600), and refused when
//! another user owns it or others may write to it, since whoever can write
//! there chooses what revcache serves. It never follows a symlink it did
//! not expect: temp files are created fresh (`O_EXCL`, `O_NOFOLLOW`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::partition::PARTITION_KEY_FILE;

/// Version of everything revcache keeps in a data dir.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "revcache data dir, format ";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    #[error("cannot use data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a revcache data dir (it holds {example:?} and no FORMAT file); pick an empty or new directory with --data-dir"
    )]
    Foreign { path: PathBuf, example: String },
    #[error(
        "data dir {path} has format {found}, newer than this revcache understands ({FORMAT_VERSION}); upgrade revcache or use another --data-dir"
    )]
    Newer { path: PathBuf, found: u32 },
    #[error(
        "data dir {path}: FORMAT file is unreadable ({text:?}); remove the data dir to start afresh"
    )]
    BadFormat { path: PathBuf, text: String },
    #[error(
        "{path} is owned by uid {owner}, not by the user revcache runs as (uid {user}); another user could change what revcache serves: run `chown -R {user} {path}` or pick another --data-dir"
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        user: u32,
    },
    #[error(
        "{path} is writable by other users (mode {mode:o}); they could change what revcache serves: run `chmod go-w {path}` (revcache creates it 700)"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path} must be a directory, not a symlink or a file; move it away")]
    NotADirectory { path: PathBuf },
}

impl DataDirError {
    /// Whether the disk failed (full, read-only, I/O error) rather than
    /// the data dir being refused: a server may then run memory-only.
    pub fn is_disk_fault(&self) -> bool {
        match self {
            DataDirError::Io { source, .. } => is_disk_fault(source),
            _ => false,
        }
    }
}

/// A full, read-only or failing disk, as opposed to a refusal
/// (permissions, a missing path) that configuration must fix.
pub fn is_disk_fault(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EIO | libc::EROFS)
    )
}

/// The user revcache runs as, who must own the data dir.
pub fn current_user() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `path` owner-only when missing (with missing parents), and
/// refuses it when it is not a directory, not owned by revcache's user,
/// or writable by group or others. `follow`: whether `path` itself may be
/// a symlink (the data dir may be one the operator made; the directories
/// revcache makes inside it may not).
pub fn ensure_private_dir(path: &Path, follow: bool) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(io)?;
    if !meta.is_dir() {
        return Err(DataDirError::NotADirectory {
            path: path.to_owned(),
        });
    }
    let user = current_user();
    if meta.uid() != user {
        return Err(DataDirError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
            user,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DataDirError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` for writing, owner-only, failing if anything (a file, a
/// symlink) is already there: a temp file never writes through a link.
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// What opening found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Created or already current.
    Current,
    /// An older format: its index and body files were dropped (the
    /// partition key is kept), and the dir is current now.
    Older(u32),
}

/// Checks (or initialises) `path` as a revcache data dir.
pub fn open(path: &Path) -> Result<Opened, DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    };
    ensure_private_dir(path, true)?;
    let marker = path.join(FORMAT_FILE);
    match fs::read_to_string(&marker) {
        Ok(text) => {
            let found = text
                .trim()
                .strip_prefix(FORMAT_PREFIX)
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| DataDirError::BadFormat {
                    path: path.to_owned(),
                    text: text.chars().take(60).collect(),
                })?;
            if found > FORMAT_VERSION {
                return Err(DataDirError::Newer {
                    path: path.to_owned(),
                    found,
                });
            }
            if found < FORMAT_VERSION {
                // Dropped before the marker says current: a crash in between
                // leaves an older dir, dropped again at the next open.
                for name in ["index.redb", "bodies"] {
                    let stale = path.join(name);
                    match fs::remove_file(&stale).or_else(|_| fs::remove_dir_all(&stale)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                        _ => {}
                    }
                }
                write_marker(&marker).map_err(io)?;
                return Ok(Opened::Older(found));
            }
            Ok(Opened::Current)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Only a partition key (left by revcache before the disk tier)
            // may be there already.
            let foreign = fs::read_dir(path)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|name| name != PARTITION_KEY_FILE);
            if let Some(example) = foreign {
                return Err(DataDirError::Foreign {
                    path: path.to_owned(),
                    example,
                });
            }
            write_marker(&marker).map_err(io)?;
            Ok(Opened::Current)
        }
        Err(e) => Err(io(e)),
    }
}

fn write_marker(marker: &Path) -> std::io::Result<()> {
    let tmp = marker.with_extension("tmp");
    // A leftover of a crash (or a planted link): removed, never followed.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = create_private_file(&tmp)?;
    file.write_all(format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n").as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("revcache-dd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn new_and_existing_data_dirs_open() {
        let d = dir("new");
        assert_eq!(open(&d).unwrap(), Opened::Current);
        assert_eq!(open(&d).unwrap(), Opened::Current);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn foreign_and_newer_dirs_are_refused_with_a_reason() {
        let d = dir("foreign");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("thesis.tex"), "precious").unwrap();
        let e = open(&d).unwrap_err().to_string();
        assert!(
            e.contains("not a revcache data dir") && e.contains("thesis.tex"),
            "{e}"
        );
        fs::remove_file(d.join("thesis.tex")).unwrap();
        fs::write(d.join(FORMAT_FILE), format!("{FORMAT_PREFIX}99\n")).unwrap();
        let e = open(&d).unwrap_err().to_string();
        assert!(e.contains("format 99"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_older_format_drops_its_entries_and_is_upgraded() {
        let d = dir("older");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(FORMAT_FILE), format!("{FORMAT_PREFIX}0\n")).unwrap();
        fs::write(d.join("index.redb"), "an older index").unwrap();
        fs::create_dir_all(d.join("bodies/ab")).unwrap();
        fs::write(d.join("bodies/ab/cd"), "an older body").unwrap();
        assert_eq!(open(&d).unwrap(), Opened::Older(0));
        assert!(!d.join("index.redb").exists() && !d.join("bodies").exists());
        assert_eq!(open(&d).unwrap(), Opened::Current);
        fs::remove_dir_all(&d).unwrap();
    }
}
