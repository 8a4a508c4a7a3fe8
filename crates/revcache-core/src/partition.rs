//! Partitions: who may see an entry. `Public` entries are shared; a
//! credential's entries live under a keyed hash of the credential, so the
//! credential itself is never stored and entries never cross partitions.
//!
//! The hashing key is 32 random bytes generated once and kept in the data
//! dir with mode 0600; without it a partition id reveals nothing.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::PartitionKeyError;

/// File name of the partition secret inside the data dir.
pub const PARTITION_KEY_FILE: &str = "partition.key";

/// Who may see an entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    Public,
    /// Keyed hash (truncated to 128 bits) of a caller's credential.
    Credential([u8; 16]),
}

impl Partition {
    pub fn is_public(&self) -> bool {
        matches!(self, Partition::Public)
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Public => f.write_str("public"),
            Partition::Credential(id) => {
                for b in &id[..8] {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The secret that turns credentials into partitions.
#[derive(Clone)]
pub struct PartitionKey {
    key: [u8; 32],
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartitionKey(..)")
    }
}

impl PartitionKey {
    /// A key that lives only in memory (tests, embedding without a data dir).
    pub fn ephemeral() -> Result<Self, PartitionKeyError> {
        Ok(PartitionKey {
            key: random_key().map_err(PartitionKeyError::Random)?,
        })
    }

    /// Loads the key from `data_dir`, creating the dir and a fresh key when
    /// absent. Refuses a key file others can read.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, PartitionKeyError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| PartitionKeyError::CreateDir {
                path: data_dir.to_owned(),
                source,
            })?;
        let path = data_dir.join(PARTITION_KEY_FILE);
        match fs::File::open(&path) {
            Ok(mut file) => read_key(&path, &mut file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&path),
            Err(source) => Err(PartitionKeyError::Read { path, source }),
        }
    }

    /// Loads the key from `path` (`partition.key_file`: one key shared by
    /// the nodes of a shared tier), creating it when absent. Refuses a
    /// file others can read.
    pub fn load_or_create_file(path: &Path) -> Result<Self, PartitionKeyError> {
        match fs::File::open(path) {
            Ok(mut file) => read_key(path, &mut file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path),
            Err(source) => Err(PartitionKeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A keyed hash that names this key without revealing it: nodes
    /// compare it to tell whether they share one.
    pub fn fingerprint(&self) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(b"revcache partition key fingerprint");
        hasher.finalize().to_hex()[..32].to_owned()
    }

    /// The partition of a credential. `material` is every credential part
    /// of a request (Authorization value, configured cookies and headers).
    pub fn partition(&self, material: &[&[u8]]) -> Partition {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in material {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        Partition::Credential(id)
    }
}

fn read_key(path: &Path, file: &mut fs::File) -> Result<PartitionKey, PartitionKeyError> {
    let read_err = |source| PartitionKeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PartitionKeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::with_capacity(32);
    file.read_to_end(&mut bytes).map_err(read_err)?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PartitionKeyError::BadLength {
            path: path.to_owned(),
            len: bytes.len(),
        })?;
    Ok(PartitionKey { key })
}

fn create_key(path: &Path) -> Result<PartitionKey, PartitionKeyError> {
    let key = random_key().map_err(PartitionKeyError::Random)?;
    let write_err = |source| PartitionKeyError::Write {
        path: PathBuf::from(path),
        source,
    };
    // Write a temp file then rename, so a crash never leaves a short key.
    let tmp = path.with_extension("key.tmp");
    // A leftover temp file (or a planted link) is removed, never followed.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(write_err(e)),
        _ => {}
    }
    let mut file = crate::data_dir::create_private_file(&tmp).map_err(write_err)?;
    file.write_all(&key).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)?;
    Ok(PartitionKey { key })
}

fn random_key() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("revcache-pk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn key_is_created_once_with_owner_only_permissions_and_reused() {
        let dir = temp_dir("reuse");
        let a = PartitionKey::load_or_create(&dir).unwrap();
        let mode = fs::metadata(dir.join(PARTITION_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = PartitionKey::load_or_create(&dir).unwrap();
        assert_eq!(a.partition(&[b"Basic x"]), b.partition(&[b"Basic x"]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn different_credentials_get_different_partitions() {
        let k = PartitionKey::ephemeral().unwrap();
        assert_ne!(k.partition(&[b"Bearer a"]), k.partition(&[b"Bearer b"]));
        // Length prefixes keep part boundaries significant.
        assert_ne!(k.partition(&[b"ab", b"c"]), k.partition(&[b"a", b"bc"]));
    }

    #[test]
    fn damaged_or_exposed_key_is_refused_with_a_reason() {
        let dir = temp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PARTITION_KEY_FILE);
        fs::write(&path, b"short").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = PartitionKey::load_or_create(&dir).unwrap_err();
        assert!(
            matches!(err, PartitionKeyError::BadLength { len: 5, .. }),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = PartitionKey::load_or_create(&dir).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
