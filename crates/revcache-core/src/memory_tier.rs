//! L1, the memory tier: a byte-budgeted map from primary key to the
//! variants stored for it, on `quick_cache` (S3-FIFO eviction, sharded
//! locks, no global lock on the hit path).
//!
//! Eviction policy is the crate's; this module only weighs entries, keeps
//! the catalog in step when the crate evicts, and counts evictions.
//!
//! quick_cache reports a replaced value through the same hook as an evicted
//! one, so the hook only queues what left; [`MemoryTier::settle`] then looks
//! at the map (outside its locks) to tell an eviction from a replacement.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::{Lifecycle, Weighter};

use crate::catalog::Catalog;
use crate::key::PrimaryKey;
use crate::sync::Mutex;
use crate::variants::Variants;

/// Most variants kept per primary key; the oldest goes first.
pub const MAX_VARIANTS: usize = 16;

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<PrimaryKey, Variants> for ByteWeighter {
    fn weight(&self, _key: &PrimaryKey, val: &Variants) -> u64 {
        // Several variants live in a slice of pointers with its own counts.
        let slice = match val {
            Variants::One(_) => 0,
            Variants::Many(v) => 16 + 8 * v.len() as u64,
        };
        val.iter().map(|e| e.weight()).sum::<u64>() + slice
    }
}

/// `PrimaryKey` carries its own hash; hashing it again would waste time.
#[derive(Clone, Default)]
struct PrehashedState;

#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

impl BuildHasher for PrehashedState {
    type Hasher = Prehashed;
    fn build_hasher(&self) -> Prehashed {
        Prehashed(0)
    }
}

type Departed = Arc<Mutex<Vec<(PrimaryKey, Variants)>>>;

#[derive(Clone)]
struct Eviction {
    departed: Departed,
}

impl Lifecycle<PrimaryKey, Variants> for Eviction {
    type RequestState = Vec<(PrimaryKey, Variants)>;

    fn begin_request(&self) -> Self::RequestState {
        Vec::new()
    }

    fn on_evict(&self, state: &mut Self::RequestState, key: PrimaryKey, val: Variants) {
        state.push((key, val));
    }

    // Runs after the shard lock is released.
    fn end_request(&self, state: Self::RequestState) {
        if !state.is_empty() {
            self.departed.lock().extend(state);
        }
    }
}

type Inner = quick_cache::sync::Cache<PrimaryKey, Variants, ByteWeighter, PrehashedState, Eviction>;

pub struct MemoryTier {
    map: Inner,
    catalog: Arc<Catalog>,
    departed: Departed,
    evictions: AtomicU64,
}

impl MemoryTier {
    /// A tier holding at most `byte_limit` bytes of entries, none larger
    /// than `max_entry_bytes`.
    pub fn new(byte_limit: u64, max_entry_bytes: u64, catalog: Arc<Catalog>) -> Self {
        // quick_cache sizes its tables from an item estimate; assume 4 KiB
        // entries, bounded so a huge budget does not preallocate much.
        let estimated_items = (byte_limit / 4096).clamp(1024, 1 << 20) as usize;
        // quick_cache splits the budget across shards and refuses an entry
        // larger than its shard's share, so keep every shard at least four
        // of the largest entries big.
        let max_shards = (byte_limit / max_entry_bytes.max(1) / 4).max(1);
        let shards = (max_shards.min(64) as usize).next_power_of_two();
        let shards = if shards as u64 > max_shards {
            shards / 2
        } else {
            shards
        };
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards.max(1))
            .estimated_items_capacity(estimated_items)
            .weight_capacity(byte_limit)
            .build()
            .unwrap_or_else(|_| unreachable!("both options are set"));
        let departed = Departed::new(Mutex::new(Vec::new()));
        let lifecycle = Eviction {
            departed: departed.clone(),
        };
        MemoryTier {
            map: Inner::with_options(options, ByteWeighter, PrehashedState, lifecycle),
            catalog,
            departed,
            evictions: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &PrimaryKey) -> Option<Variants> {
        self.map.get(key)
    }

    /// Lookup by a borrowed key (no allocation on the hit path).
    pub fn get_ref(&self, key: &crate::key::KeyRef<'_>) -> Option<Variants> {
        self.map.get(key)
    }

    /// Reads without counting as a use (purges, stats).
    pub fn peek(&self, key: &PrimaryKey) -> Option<Variants> {
        self.map.peek(key)
    }

    /// Inserts (or replaces) and brings the catalog in step with whatever
    /// the insert evicted or replaced.
    pub fn insert(&self, key: PrimaryKey, variants: Variants) {
        self.map.insert(key, variants);
        self.settle();
    }

    fn settle(&self) {
        let departed = std::mem::take(&mut *self.departed.lock());
        for (key, old) in departed {
            match self.map.peek(&key) {
                None => {
                    self.evictions
                        .fetch_add(old.len() as u64, Ordering::Relaxed);
                    self.catalog.remove(&key, &[]);
                    for e in old.iter() {
                        self.catalog.remove_tags(&key, &e.tags);
                    }
                    // A store of the key may have raced the removal.
                    if let Some(current) = self.map.peek(&key) {
                        for e in current.iter() {
                            self.catalog.add(&key, &e.tags);
                        }
                    }
                }
                Some(current) => {
                    for e in old.iter() {
                        let gone: Vec<_> = e
                            .tags
                            .iter()
                            .filter(|t| !current.iter().any(|c| c.tags.contains(t)))
                            .cloned()
                            .collect();
                        self.catalog.remove_tags(&key, &gone);
                    }
                }
            }
        }
    }

    /// Removes `key` only while it still maps to exactly `expected`.
    pub fn remove_if_same(&self, key: &PrimaryKey, expected: &Variants) -> Option<Variants> {
        self.map
            .remove_if(key, |v| v.same(expected))
            .map(|(_, v)| v)
    }

    pub fn keys(&self) -> usize {
        self.map.len()
    }

    pub fn bytes(&self) -> u64 {
        self.map.weight()
    }

    pub fn capacity(&self) -> u64 {
        self.map.capacity()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
