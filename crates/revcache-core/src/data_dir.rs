//! The data dir: what makes a directory revcache's, and which format it is.
//!
//! A data dir carries a `FORMAT` file naming the format version. A
//! directory with other content and no `FORMAT` file is refused (it may be
//! someone else's data); a newer format is refused (an older revcache must
//! not touch what a newer one wrote). An older format is dropped and
//! recreated: it is a cache, and refetching is cheaper than migrating.

use std::fs;
use std::path::{Path, PathBuf};

use crate::partition::PARTITION_KEY_FILE;

/// Version of everything revcache keeps in a data dir.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "revcache data dir, format ";

#[derive(Debug, thiserror::Error)]
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
}

/// What opening found.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Created or already current.
    Current,
    /// An older format: the caller drops what it cannot read.
    Older(u32),
}

/// Checks (or initialises) `path` as a revcache data dir.
pub fn open(path: &Path) -> Result<Opened, DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path).map_err(io)?;
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
    fs::write(&tmp, format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n"))?;
    fs::File::open(&tmp)?.sync_all()?;
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
    fn an_older_format_is_reported_and_upgraded() {
        let d = dir("older");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(FORMAT_FILE), format!("{FORMAT_PREFIX}0\n")).unwrap();
        assert_eq!(open(&d).unwrap(), Opened::Older(0));
        assert_eq!(open(&d).unwrap(), Opened::Current);
        fs::remove_dir_all(&d).unwrap();
    }
}
