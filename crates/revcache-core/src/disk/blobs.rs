//! Body files: one file per distinct body, named by its BLAKE3 hash and
//! fanned out as `bodies/ab/cd/<hash>`, so identical bodies share a file
//! and no directory grows huge.
//!
//! A body is written to `tmp/`, fsynced, renamed into place and its
//! directory fsynced; only then may an index row refer to it. A crash
//! leaves at worst a temp file or an unreferenced body file, which
//! start-up removes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::error::DiskError;

pub struct BlobStore {
    bodies: PathBuf,
    tmp: PathBuf,
    seq: AtomicU64,
}

pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(name: &str) -> Option<[u8; 32]> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in name.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<Self, DiskError> {
        let bodies = dir.join("bodies");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&bodies).map_err(DiskError::io(&bodies))?;
        fs::create_dir_all(&tmp).map_err(DiskError::io(&tmp))?;
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
        fs::create_dir_all(dir).map_err(DiskError::io(dir))?;
        let tmp = self.tmp.join(format!(
            "{}.{}.{}",
            hex(hash),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(DiskError::io(&path))
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

    /// Deletes temp files and body files `referenced` says are unknown,
    /// when they are older than `before` (newer ones may belong to a
    /// write whose index row is about to commit). Returns how many went.
    pub fn collect_orphans(
        &self,
        before: SystemTime,
        referenced: impl Fn(&[u8; 32]) -> bool,
    ) -> u64 {
        let mut removed = 0;
        if let Ok(entries) = fs::read_dir(&self.tmp) {
            for e in entries.flatten() {
                if older(&e.path(), before) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        for l1 in read_dirs(&self.bodies) {
            for l2 in read_dirs(&l1) {
                let Ok(files) = fs::read_dir(&l2) else {
                    continue;
                };
                for f in files.flatten() {
                    let path = f.path();
                    let name = f.file_name();
                    let known = name
                        .to_str()
                        .and_then(unhex)
                        .is_some_and(|h| referenced(&h));
                    if !known && older(&path, before) && fs::remove_file(&path).is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
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
        assert_eq!(store.collect_orphans(later, |h| *h == a), 2);
        assert!(store.path(&a).exists());
        assert!(!store.path(&b).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
