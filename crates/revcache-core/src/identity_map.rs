//! L0, the identity map: `(key, variant, version) → Weak<Entry>`.
//!
//! It keeps one canonical in-memory copy of any strongly versioned
//! representation that someone still holds (a response being written, an
//! L1 slot, a waiter of a single flight). A fill or promotion of a version
//! that is already alive reuses the live body bytes instead of holding a
//! second copy. Slots are removed by the entry's `Drop`, never pruned by
//! hand. Unversioned entries are never registered.
//!
//! Slots are keyed by a 64-bit hash of the identity (16 bytes a slot instead
//! of 40; there is one per stored entry). A live entry found under a hash is
//! compared field by field before its body is shared, so two identities that
//! share a hash only cost the later one its deduplication, never a wrong body.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::entry::Entry;
use crate::version::Version;

const SHARDS: usize = 64;

type Shard = Mutex<HashMap<u64, Weak<Entry>>>;

/// The hash of one representation's identity (key, variant, strong
/// version); `None` for an entry without a strong version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IdentityKey(u64);

impl IdentityKey {
    pub(crate) fn of(entry: &Entry) -> Option<IdentityKey> {
        let Version::Strong(version) = &entry.version else {
            return None;
        };
        let mut h = DefaultHasher::new();
        entry.key.hash64().hash(&mut h);
        entry.variant.hash(&mut h);
        version.hash(&mut h);
        Some(IdentityKey(h.finish()))
    }

    fn shard(&self) -> usize {
        (self.0 >> 32) as usize % SHARDS
    }
}

/// Whether `a` and `b` are the same representation.
fn same_identity(a: &Entry, b: &Entry) -> bool {
    a.key == b.key && a.variant == b.variant && a.version == b.version
}

pub(crate) struct IdentityShards {
    shards: Box<[Shard]>,
}

impl IdentityShards {
    /// Called from `Entry::drop`: removes the slot if nothing holds it.
    pub(crate) fn forget_if_dead(&self, id: &IdentityKey) {
        let mut shard = self.shards[id.shard()].lock();
        if shard.get(&id.0).is_some_and(|w| w.strong_count() == 0) {
            shard.remove(&id.0);
        }
    }
}

/// The L0 tier. Cheap to clone; clones share the map.
#[derive(Clone)]
pub struct IdentityMap {
    inner: Arc<IdentityShards>,
}

impl Default for IdentityMap {
    fn default() -> Self {
        IdentityMap {
            inner: Arc::new(IdentityShards {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            }),
        }
    }
}

impl IdentityMap {
    /// Makes `entry` the canonical copy of its version and returns it. When
    /// a live copy of the same version exists, the new entry takes over its
    /// body bytes (same strong version, same bytes) and the fresh copy is
    /// freed.
    pub fn canonicalize(&self, mut entry: Entry) -> Arc<Entry> {
        let Some(id) = IdentityKey::of(&entry) else {
            return Arc::new(entry);
        };
        let shard = &self.inner.shards[id.shard()];
        let live = shard.lock().get(&id.0).and_then(Weak::upgrade);
        // `live` is dropped outside the lock: its Drop may take the lock.
        if let Some(live) = &live
            && same_identity(live, &entry)
            && let (Some(a), Some(b)) = (live.body.bytes(), entry.body.bytes())
            && a.len() == b.len()
        {
            entry.body = live.body.clone();
        }
        entry.identity = Some(Arc::downgrade(&self.inner));
        let entry = Arc::new(entry);
        shard.lock().insert(id.0, Arc::downgrade(&entry));
        drop(live);
        entry
    }

    /// Number of live slots.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::entry::{EntryTiming, Freshness};
    use crate::key::{KeyClass, PrimaryKey};
    use crate::partition::Partition;

    fn entry(version: &str, body: &'static [u8]) -> Entry {
        Entry::new(
            PrimaryKey::new(0, KeyClass::Get, "h", "/x", Partition::Public),
            Box::new([]),
            Version::from_etag(version),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body),
            vec![],
            EntryTiming {
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
                initial_age: Duration::ZERO,
            },
            Freshness::default(),
        )
    }

    #[test]
    fn same_version_shares_one_body_and_slot_is_freed_on_drop() {
        let map = IdentityMap::default();
        let a = map.canonicalize(entry("\"v1\"", b"hello"));
        let b = map.canonicalize(entry("\"v1\"", b"hello"));
        assert_eq!(
            a.body.bytes().unwrap().as_ptr(),
            b.body.bytes().unwrap().as_ptr()
        );
        assert_eq!(map.len(), 1);
        drop(b);
        // `a` still holds the body but the slot points at the dropped `b`.
        assert_eq!(map.len(), 0);
        drop(a);
        assert!(map.is_empty());
    }

    #[test]
    fn slot_survives_while_the_newest_copy_lives() {
        let map = IdentityMap::default();
        let a = map.canonicalize(entry("\"v1\"", b"hello"));
        let b = map.canonicalize(entry("\"v1\"", b"hello"));
        drop(a);
        assert_eq!(map.len(), 1);
        drop(b);
        assert!(map.is_empty());
    }

    #[test]
    fn unversioned_entries_are_not_registered() {
        let map = IdentityMap::default();
        let _a = map.canonicalize(entry("W/\"weak\"", b"x"));
        assert!(map.is_empty());
    }
}
