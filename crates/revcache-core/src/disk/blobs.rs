//! Body files: one file per distinct body, named by its BLAKE3 hash and
//! fanned out as `bodies/ab/cd/<hash>`, so identical bodies share a file
//! and no directory grows huge.
//!
//! A body is written to a fresh owner-only file in `tmp/` (never through a
//! link), fsynced, renamed into place and its directory fsynced (and a new
//! fan-out directory in its parent); only then may an index row refer to
//! it. A crash leaves at worst a temp file or an unreferenced body file,
//! which start-up removes. This module never decides on its own that a
//! body file is unreferenced: the writer does, in its transaction.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::error::DiskError;
use super::faults;
use crate::data_dir::{create_private_file, ensure_private_dir};

pub struct BlobStore {
    bodies: PathBuf,
    tmp: PathBuf,
    seq: AtomicU64,
}

pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// A body file's name: its hash in 64 lowercase hex digits.
fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// The hash a body file's name stands for; `None` for any other name.
pub fn unhex(name: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(name).ok().map(|h| *h.as_bytes())
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
        let bodies = dir.join("bodies");
        let tmp = dir.join("tmp");
        for dir in [&bodies, &tmp] {
            ensure_private_dir(dir, false)?;
            // Made before revcache kept them private: narrowed, as they
            // may hold responses cached for one credential.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(DiskError::io(dir))?;
        }
        Ok(BlobStore {
            bodies,
            tmp,
            seq: AtomicU64::new(0),
        })
    }

    pub fn path(&self, hash: &[u8; 32]) -> PathBuf {
        let h = hex(hash);
        self.bodies.join(&h[..2]).join(&h[2..4]).join(h)
    }

    /// Writes `bytes` under `hash` unless a file of the right length is
    /// already there.
    pub fn write(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<(), DiskError> {
        let path = self.path(hash);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.bodies);
        self.fan_out(dir).map_err(DiskError::io(dir))?;
        let tmp = self.tmp.join(format!(
            "{}.{}.{}",
            hex(hash),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = create_private_file(&tmp)?;
            faults::write_with(bytes, |b| f.write_all(b))?;
            faults::check()?;
            f.sync_all()?;
            faults::check()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(DiskError::io(&path))
    }

    /// Creates the fan-out directories down to `dir` (owner-only), each
    /// new one fsynced into its parent, so a body file renamed into it
    /// cannot vanish with its directory in a crash.
    fn fan_out(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = dir.parent().unwrap_or(&self.bodies);
        if parent != self.bodies {
            self.fan_out(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => fs::File::open(parent)?.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn remove(&self, hash: &[u8; 32]) {
        let path = self.path(hash);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            // Only leaves an orphan, which the next start-up collects.
            tracing::warn!(path = %path.display(), error = %e, "cannot remove body file");
        }
    }

    /// Deletes temp files older than `before` (none of this process's:
    /// they are newer) and returns how many went, with the body files
    /// older than `before` that `referenced` says are unknown: candidates
    /// only, since a store may reference one again before the writer
    /// re-checks it in its transaction.
    pub fn orphans(
        &self,
        before: SystemTime,
        referenced: impl Fn(&[u8; 32]) -> bool,
    ) -> (u64, Vec<[u8; 32]>) {
        let mut removed = 0;
        if let Ok(entries) = fs::read_dir(&self.tmp) {
            for e in entries.flatten() {
                if older(&e.path(), before) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        let mut candidates = Vec::new();
        for l1 in read_dirs(&self.bodies) {
            for l2 in read_dirs(&l1) {
                let Ok(files) = fs::read_dir(&l2) else {
                    continue;
                };
                for f in files.flatten() {
                    let path = f.path();
                    let hash = f.file_name().to_str().and_then(unhex);
                    match hash {
                        Some(h) if self.path(&h) == path => {
                            if older(&path, before) && !referenced(&h) {
                                candidates.push(h);
                            }
                        }
                        // Not a body file where its name puts it: nothing
                        // refers to it.
                        _ => {
                            if older(&path, before) && fs::remove_file(&path).is_ok() {
                                removed += 1;
                            }
                        }
                    }
                }
            }
        }
        (removed, candidates)
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|it| {
            // The entry's own type: a symlink is never walked into.
            it.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn older(path: &Path, before: SystemTime) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_content_addressed_and_orphans_collected() {
        let dir = std::env::temp_dir().join(format!("revcache-blobs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = BlobStore::open(&dir).unwrap();
        let (a, b) = (hash(b"alpha"), hash(b"beta"));
        store.write(&a, b"alpha").unwrap();
        store.write(&a, b"alpha").unwrap();
        store.write(&b, b"beta").unwrap();
        assert_eq!(fs::read(store.path(&a)).unwrap(), b"alpha");
        fs::write(dir.join("tmp").join("leftover"), b"x").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(store.orphans(later, |h| *h == a), (1, vec![b]));
        assert!(store.path(&a).exists());
        assert!(store.path(&b).exists(), "candidates are left to the writer");
        assert!(!dir.join("tmp").join("leftover").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The names of body files already on disk must not change: lowercase
    /// hex of the hash, fanned out by its first two bytes.
    #[test]
    fn body_file_names_are_the_lowercase_hex_of_the_hash() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[1] = 0xcd;
        h[31] = 0x0f;
        let name = format!("abcd{}0f", "00".repeat(29));
        let store = BlobStore {
            bodies: PathBuf::from("/d/bodies"),
            tmp: PathBuf::from("/d/tmp"),
            seq: AtomicU64::new(0),
        };
        assert_eq!(
            store.path(&h),
            Path::new("/d/bodies/ab/cd").join(&name),
            "the on-disk layout changed"
        );
        assert_eq!(unhex(&name), Some(h));
        assert_eq!(unhex(&name.to_uppercase()), Some(h));
        assert_eq!(unhex(&name[1..]), None);
        assert_eq!(unhex(&format!("{name}0")), None);
        // A sign is not a hex digit (`u8::from_str_radix("+f", 16)` is 15).
        assert_eq!(unhex(&format!("+f{}", &name[2..])), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }
}
