//! The cache: one handle over the tiers, the catalog and generations.
//!
//! It stores and finds entries and removes them on purpose. It never
//! decides freshness (the HTTP layer does) and never fetches (the proxy's
//! single flight does).
//!
//! Model checks (`--cfg loom`, the `loom` tests below) run stores, purges
//! and evictions of the memory tier concurrently with loom's primitives in
//! the catalog, generations and the eviction queue, and check the two
//! promises of this module's protocols: a fill whose ticket predates a
//! purge is never left in memory (`generation`'s store protocol), and every
//! key memory holds is in the catalog under its target and each of its
//! tags, so purges find it (`catalog`). The memory tier's map
//! (`quick_cache`) is not loom's: each of its calls is one indivisible step
//! of the model, which it is for the real map (one shard lock per call).
//! Loom does not see the ordering the map's locks give, so it may report
//! an interleaving they forbid (a false alarm), never miss one they allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::clock::Clock;

use crate::catalog::Catalog;
use crate::disk::{DiskConfig, DiskError, DiskStats, DiskTier};
use crate::entry::Entry;
use crate::error::PurgeError;
use crate::generation::{FillTicket, Generations};
use crate::identity_map::IdentityMap;
use crate::invalidation::Invalidation;
use crate::key::PrimaryKey;
use crate::memory_tier::{MAX_VARIANTS, MemoryTier};
use crate::tag::Tag;
use crate::variants::Variants;

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Byte budget of the memory tier.
    pub memory_limit: u64,
    /// Largest entry the memory tier must be able to hold.
    pub max_entry_bytes: u64,
    /// The time source of the cache, its disk tier and whoever serves from
    /// it (see [`Cache::clock`]).
    pub clock: Clock,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_limit: 256 << 20,
            max_entry_bytes: 8 << 20,
            clock: Clock::system(),
        }
    }
}

/// Result of [`Cache::store`].
#[derive(Debug)]
pub enum StoreOutcome {
    /// Stored; the canonical copy.
    Stored(Arc<Entry>),
    /// An invalidation overtook the fill; the entry was not kept, but may be
    /// served to the request that fetched it.
    Outdated(Arc<Entry>),
}

impl StoreOutcome {
    pub fn entry(&self) -> &Arc<Entry> {
        match self {
            StoreOutcome::Stored(e) | StoreOutcome::Outdated(e) => e,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CacheStats {
    pub identity_entries: usize,
    pub memory_keys: usize,
    pub memory_bytes: u64,
    pub memory_capacity: u64,
    pub memory_evictions: u64,
    pub tags: usize,
    pub disk: Option<DiskStats>,
    /// Disk-tier lookups (memory misses) that found the key, and that did not.
    pub disk_hits: u64,
    pub disk_misses: u64,
}

/// Whether the cache has a working disk tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskState {
    /// None configured.
    Off,
    Enabled,
    /// Configured but not working (it could not open, or a disk failure
    /// disabled it until its index reopens): the cache runs from memory.
    Disabled {
        reason: String,
    },
}

pub struct Cache {
    identity: IdentityMap,
    memory: MemoryTier,
    catalog: Arc<Catalog>,
    generations: Arc<Generations>,
    disk: Option<DiskTier>,
    /// Why a configured disk tier could not open.
    disk_failed: Option<String>,
    disk_hits: AtomicU64,
    disk_misses: AtomicU64,
    clock: Clock,
}

impl Cache {
    /// A cache with the memory tiers only.
    pub fn new(config: CacheConfig) -> Self {
        Self::build(config, Arc::default(), None)
    }

    /// A cache with the memory tiers and the disk tier in `disk.dir`.
    /// The disk tier runs on the cache's clock, whatever `disk.clock` says.
    pub fn with_disk(config: CacheConfig, mut disk: DiskConfig) -> Result<Self, DiskError> {
        disk.clock = config.clock.clone();
        let generations = Arc::new(Generations::default());
        let disk = DiskTier::open(disk, generations.clone())?;
        Ok(Self::build(config, generations, Some(disk)))
    }

    /// A memory-only cache standing in for one whose disk tier could not
    /// open (`reason`); [`Cache::disk_state`] reports it.
    pub fn without_failed_disk(config: CacheConfig, reason: String) -> Self {
        let mut cache = Self::build(config, Arc::default(), None);
        cache.disk_failed = Some(reason);
        cache
    }

    pub fn disk_state(&self) -> DiskState {
        match (&self.disk, &self.disk_failed) {
            (Some(disk), _) => match disk.disabled() {
                None => DiskState::Enabled,
                Some(reason) => DiskState::Disabled { reason },
            },
            (None, Some(reason)) => DiskState::Disabled {
                reason: reason.clone(),
            },
            (None, None) => DiskState::Off,
        }
    }

    fn build(config: CacheConfig, generations: Arc<Generations>, disk: Option<DiskTier>) -> Self {
        let catalog = Arc::new(Catalog::default());
        Cache {
            identity: IdentityMap::default(),
            memory: MemoryTier::new(config.memory_limit, config.max_entry_bytes, catalog.clone()),
            catalog,
            generations,
            disk,
            disk_failed: None,
            disk_hits: AtomicU64::new(0),
            disk_misses: AtomicU64::new(0),
            clock: config.clock,
        }
    }

    /// The time freshness, trust and sweeps are judged by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    /// `lookup` by a borrowed key: the hit path builds no owned key.
    pub fn lookup_ref(&self, key: &crate::key::KeyRef<'_>) -> Option<Variants> {
        self.memory.get_ref(key)
    }

    /// The variants stored for `key` in memory, newest last.
    pub fn lookup(&self, key: &PrimaryKey) -> Option<Variants> {
        self.memory.get(key)
    }

    /// Call before sending the request whose response may be stored.
    pub fn begin_fill(&self) -> FillTicket {
        self.generations.begin_fill()
    }

    /// Reads `key`'s variants from the disk tier and promotes them to
    /// memory. Blocking (disk I/O): call it from a blocking pool, once per
    /// burst (under the key's single flight).
    /// Whether no invalidation reached `entry` (its target, a prefix of
    /// it, one of its tags) after `ticket`: what was read or fetched
    /// under that ticket may still answer requests that began after it.
    pub fn is_current(&self, ticket: FillTicket, entry: &Entry) -> bool {
        self.generations.is_current(ticket, &entry.key, &entry.tags)
    }

    pub fn lookup_disk(&self, key: &PrimaryKey) -> Option<Variants> {
        let disk = self.disk.as_ref()?;
        let ticket = self.begin_fill();
        let found = disk.lookup(key);
        if found.is_empty() {
            self.disk_misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.disk_hits.fetch_add(1, Ordering::Relaxed);
        let promoted: Vec<Arc<Entry>> = found
            .into_iter()
            .filter_map(|e| match self.store_in_memory(e, ticket).0 {
                StoreOutcome::Stored(e) => Some(e),
                StoreOutcome::Outdated(_) => None,
            })
            .collect();
        (!promoted.is_empty()).then(|| promoted.into())
    }

    /// Stores `entry` in every tier, replacing the same variant of its key,
    /// unless an invalidation of its target or tags happened after `ticket`
    /// or a stored copy has a newer `Date` (newest version wins; a tie goes
    /// to the later arrival).
    pub fn store(&self, entry: Entry, ticket: FillTicket) -> StoreOutcome {
        self.store_in_tiers(entry, ticket, true)
    }

    /// Stores `entry`, a copy of `previous` refreshed by a 304. The disk copy
    /// is rewritten only when the refresh could make a restarted instance
    /// decide differently from it: a header other than `Date` changed, or
    /// the old freshness is looser than the new one. Otherwise the older
    /// disk copy stays: same body and validators, at most as fresh and
    /// fetched earlier, so after a restart it turns stale sooner, never
    /// later. This spares the disk tier a write per revalidation. When
    /// `previous` never reached the disk (its write was dropped or failed),
    /// the disk may hold an older version, so the refresh is written.
    pub fn store_refresh(
        &self,
        previous: &Entry,
        entry: Entry,
        ticket: FillTicket,
    ) -> StoreOutcome {
        let persist = previous.missing_on_disk()
            || !previous
                .freshness()
                .at_least_as_strict_as(&entry.freshness())
            || !previous
                .headers
                .same_except(&entry.headers, &[http::header::DATE]);
        self.store_in_tiers(entry, ticket, persist)
    }

    /// Stores in memory and, when `persist` and the entry is the one kept,
    /// queues it for the disk tier.
    fn store_in_tiers(&self, entry: Entry, ticket: FillTicket, persist: bool) -> StoreOutcome {
        let (outcome, is_new) = self.store_in_memory(entry, ticket);
        if let (true, StoreOutcome::Stored(e), Some(disk), true) =
            (persist, &outcome, &self.disk, is_new)
        {
            disk.put(e.clone(), ticket);
        }
        outcome
    }

    /// The outcome, and whether the stored entry is `entry` (not a newer
    /// one already held).
    fn store_in_memory(&self, entry: Entry, ticket: FillTicket) -> (StoreOutcome, bool) {
        let key = entry.key.clone();
        let old = self.memory.peek(&key);
        if let Some(newer) = old.iter().flat_map(|v| v.iter()).find(|e| {
            e.same_variant(&entry) && e.date().zip(entry.date()).is_some_and(|(a, b)| a > b)
        }) {
            return (StoreOutcome::Stored(newer.clone()), false);
        }
        let entry = self.identity.canonicalize(entry);
        let mut kept: Vec<Arc<Entry>> = old
            .iter()
            .flat_map(|v| v.iter())
            .filter(|e| !e.same_variant(&entry))
            .cloned()
            .collect();
        if kept.len() >= MAX_VARIANTS {
            kept.drain(..=kept.len() - MAX_VARIANTS);
        }
        kept.push(entry.clone());
        let new: Variants = kept.into();

        // Registered before the insert (a purge meanwhile finds it) and
        // again after (a removal of the key's previous value meanwhile may
        // have dropped the registration).
        self.catalog.add(&key, &entry.tags);
        self.memory.insert(key.clone(), new.clone());
        self.catalog.add(&key, &entry.tags);
        // Insert, then check: see the store protocol in `generation`.
        if self.generations.is_current(ticket, &key, &entry.tags) {
            (StoreOutcome::Stored(entry), true)
        } else {
            self.remove_where(&key, |e| Arc::ptr_eq(e, &entry));
            (StoreOutcome::Outdated(entry), true)
        }
    }

    /// Removes what `invalidations` reach from every tier (durably on disk,
    /// in one commit) and outdates fills in flight for them: memory (with a
    /// generation bump), then disk, then memory again for anything promoted
    /// from disk meanwhile. Returns how many entries went (the larger count
    /// of the memory and disk tiers, which mostly overlap), or, when the
    /// disk tier did not commit the removal, an error saying so: the
    /// entries are gone from memory and hidden from disk lookups, but the
    /// disk still holds them. Blocking when there is a disk tier.
    pub fn purge(&self, invalidations: &[Invalidation]) -> Result<usize, PurgeError> {
        let in_memory: usize = invalidations.iter().map(|i| self.purge_memory(i)).sum();
        let Some(disk) = &self.disk else {
            // A disk tier that could not open still holds what it held: the
            // purge did not reach it, and a restart on a working disk would
            // serve those entries again.
            if let Some(reason) = &self.disk_failed {
                return Err(PurgeError {
                    in_memory,
                    source: DiskError::Unavailable {
                        reason: reason.clone(),
                    },
                });
            }
            return Ok(in_memory);
        };
        if invalidations.is_empty() {
            return Ok(0);
        }
        let on_disk = disk.remove(invalidations.to_vec());
        // A promotion from disk that read the entry before the disk removal
        // committed may have put it back in memory with a ticket taken after
        // the first bump: bump and remove once more.
        let promoted: usize = invalidations.iter().map(|i| self.purge_memory(i)).sum();
        match on_disk {
            Ok(on_disk) => Ok((in_memory + promoted).max(on_disk)),
            Err(source) => Err(PurgeError {
                in_memory: in_memory + promoted,
                source,
            }),
        }
    }

    /// Records a use of `entry` for the disk tier's idle sweeping.
    pub fn touch(&self, entry: &Entry, now: SystemTime) {
        if let Some(disk) = &self.disk {
            disk.touch(entry, now);
        }
    }

    /// Entries held in memory: of one request target, carrying a tag of
    /// that name (in any route), or all. Scans the catalog; for
    /// inspection, not for the request path.
    pub fn memory_entries(&self, target: Option<&str>, tag: Option<&str>) -> Vec<Arc<Entry>> {
        let keys = match target {
            Some(target) => self.catalog.by_target(target),
            None => self.catalog.by_prefix(""),
        };
        keys.iter()
            .filter_map(|k| self.memory.peek(k))
            .flat_map(|v| v.iter().cloned().collect::<Vec<_>>())
            .filter(|e| tag.is_none_or(|name| e.tags.iter().any(|t| t.name() == name)))
            .collect()
    }

    /// Waits until the disk tier has committed every queued write.
    pub fn flush(&self) {
        if let Some(disk) = &self.disk {
            disk.flush();
        }
    }

    /// Commits what the disk tier has queued and closes it (see
    /// [`DiskTier::close`]): the data dir is free once this returns, even
    /// if tasks still hold the cache. Blocking.
    pub fn close(&self) {
        if let Some(disk) = &self.disk {
            disk.close();
        }
    }

    fn purge_memory(&self, invalidation: &Invalidation) -> usize {
        let keys = match invalidation {
            Invalidation::Target { route, target } => {
                self.generations.bump_target(*route, target);
                self.catalog.by_target(target)
            }
            Invalidation::Prefix { route, prefix } => {
                self.generations.bump_prefix(*route, prefix);
                self.catalog.by_prefix(prefix)
            }
            Invalidation::Tag(tag) => {
                self.generations.bump_tag(tag);
                self.catalog.by_tag(tag)
            }
            Invalidation::Key(key) => {
                self.generations
                    .bump_target(Some(key.route()), key.target());
                vec![key.clone()]
            }
        };
        keys.iter()
            .filter(|k| invalidation.reaches_key(k))
            .map(|k| self.remove_where(k, |e| invalidation.reaches(e)))
            .sum()
    }

    /// Removes the variants of `key` matching `pred`; returns how many.
    fn remove_where(&self, key: &PrimaryKey, pred: impl Fn(&Arc<Entry>) -> bool) -> usize {
        // Retry when another store replaced the variants between our read
        // and our removal, so a concurrent store cannot resurrect them.
        loop {
            let Some(current) = self.memory.peek(key) else {
                self.catalog.remove(key, &[]);
                return 0;
            };
            let (gone, kept): (Vec<_>, Vec<_>) = current.iter().cloned().partition(|e| pred(e));
            if gone.is_empty() {
                return 0;
            }
            if self.memory.remove_if_same(key, &current).is_none() {
                continue;
            }
            if kept.is_empty() {
                let tags: Vec<Tag> = gone.iter().flat_map(|e| e.tags.iter().cloned()).collect();
                self.catalog.remove(key, &tags);
            } else {
                let tags: Vec<Tag> = gone
                    .iter()
                    .flat_map(|e| e.tags.iter())
                    .filter(|t| !kept.iter().any(|k| k.tags.contains(t)))
                    .cloned()
                    .collect();
                self.catalog.remove_tags(key, &tags);
                self.memory.insert(key.clone(), kept.into());
            }
            self.resync_catalog(key);
            return gone.len();
        }
    }

    /// After removing catalog registrations of `key`, registers again what
    /// a concurrent store may have inserted meanwhile, so a live entry is
    /// never unreachable for purges.
    fn resync_catalog(&self, key: &PrimaryKey) {
        if let Some(current) = self.memory.peek(key) {
            for e in current.iter() {
                self.catalog.add(key, &e.tags);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            identity_entries: self.identity.len(),
            memory_keys: self.memory.keys(),
            memory_bytes: self.memory.bytes(),
            memory_capacity: self.memory.capacity(),
            memory_evictions: self.memory.evictions(),
            tags: self.catalog.tag_count(),
            disk: self.disk.as_ref().map(DiskTier::stats),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            disk_misses: self.disk_misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use loom::thread;

    use super::*;
    use crate::entry::{EntryTiming, Freshness};
    use crate::key::KeyClass;
    use crate::partition::Partition;
    use crate::version::Version;

    fn key(target: &str) -> PrimaryKey {
        PrimaryKey::new(0, KeyClass::Get, "h", target, Partition::Public)
    }

    fn entry(target: &str, tags: &[&str], body: usize) -> Entry {
        Entry::new(
            key(target),
            Box::new([]),
            Version::from_etag("W/\"v\""),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; body]),
            tags.iter().map(|t| Tag::new(0, *t)).collect(),
            EntryTiming {
                request_time: SystemTime::UNIX_EPOCH,
                response_time: SystemTime::UNIX_EPOCH,
                initial_age: Duration::ZERO,
            },
            Freshness::default(),
        )
    }

    fn small_cache() -> Arc<Cache> {
        Arc::new(Cache::new(CacheConfig::default()))
    }

    /// Every key memory holds is in the catalog under its target and each
    /// of its entries' tags.
    fn assert_findable(cache: &Cache, targets: &[&str]) {
        for target in targets {
            let k = key(target);
            let Some(held) = cache.memory.peek(&k) else {
                continue;
            };
            assert!(
                cache.catalog.by_target(target).contains(&k),
                "{target} is held but its target does not find it"
            );
            for tag in held.iter().flat_map(|e| e.tags.iter()) {
                assert!(
                    cache.catalog.by_tag(tag).contains(&k),
                    "{target} is held but tag {tag:?} does not find it"
                );
            }
        }
    }

    fn held_tags(cache: &Cache, target: &str) -> Vec<Tag> {
        cache
            .memory
            .peek(&key(target))
            .iter()
            .flat_map(|v| v.iter())
            .flat_map(|e| e.tags.iter().cloned())
            .collect()
    }

    #[test]
    fn loom_a_fill_overtaken_by_a_purge_is_never_kept() {
        assert!(crate::generation::scopes_share_no_slot("/a", &["t"]));
        loom::model(|| {
            let cache = small_cache();
            let ticket = cache.begin_fill();
            let fill = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.store(entry("/a", &["t"], 1), ticket);
                })
            };
            cache
                .purge(&[Invalidation::target(0, "/a")])
                .expect("no disk tier");
            fill.join().expect("fill panicked");
            assert!(
                cache.lookup(&key("/a")).is_none(),
                "a fill that began before the purge survived it"
            );
            assert_findable(&cache, &["/a"]);
        });
    }

    #[test]
    fn loom_a_replacement_racing_a_tag_purge_stays_findable() {
        assert!(crate::generation::scopes_share_no_slot(
            "/a",
            &["old", "new"]
        ));
        loom::model(|| {
            let cache = small_cache();
            cache.store(entry("/a", &["old"], 1), cache.begin_fill());
            let replace = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.store(entry("/a", &["new"], 1), cache.begin_fill());
                })
            };
            cache
                .purge(&[Invalidation::Tag(Tag::new(0, "old"))])
                .expect("no disk tier");
            replace.join().expect("replacement panicked");
            assert!(!held_tags(&cache, "/a").contains(&Tag::new(0, "old")));
            assert_findable(&cache, &["/a"]);
            // What a user notices: purging the new tag reaches the entry.
            cache
                .purge(&[Invalidation::Tag(Tag::new(0, "new"))])
                .expect("no disk tier");
            assert!(cache.lookup(&key("/a")).is_none(), "a purge missed /a");
        });
    }

    #[test]
    fn loom_an_eviction_racing_a_store_of_the_evicted_key_keeps_it_findable() {
        // Room for two entries: the third insert evicts.
        let body = 6000;
        let config = CacheConfig {
            memory_limit: 16 << 10,
            max_entry_bytes: 4 << 10,
            ..Default::default()
        };
        loom::model(move || {
            let cache = Arc::new(Cache::new(config.clone()));
            cache.store(entry("/a", &["a"], body), cache.begin_fill());
            cache.store(entry("/b", &["b"], body), cache.begin_fill());
            let restore = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.store(entry("/a", &["a2"], body), cache.begin_fill());
                })
            };
            cache.store(entry("/c", &["c"], body), cache.begin_fill());
            restore.join().expect("store panicked");
            assert!(cache.stats().memory_evictions > 0, "nothing was evicted");
            assert_findable(&cache, &["/a", "/b", "/c"]);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderName, StatusCode};

    use super::*;
    use crate::entry::{EntryTiming, Freshness, Variant};
    use crate::key::KeyClass;
    use crate::partition::Partition;
    use crate::version::Version;

    fn key(target: &str) -> PrimaryKey {
        PrimaryKey::new(0, KeyClass::Get, "h", target, Partition::Public)
    }

    fn entry(key: PrimaryKey, variant: Variant, tags: &[&str], body: usize) -> Entry {
        let route = key.route();
        Entry::new(
            key,
            variant,
            Version::from_etag("\"v\""),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![b'x'; body]),
            tags.iter().map(|t| Tag::new(route, *t)).collect(),
            EntryTiming {
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
                initial_age: Duration::ZERO,
            },
            Freshness::default(),
        )
    }

    fn lang(v: &str) -> Variant {
        Box::new([(HeaderName::from_static("accept-language"), Some(v.into()))])
    }

    #[test]
    fn store_then_lookup_returns_the_entry_and_replaces_the_same_variant() {
        let cache = Cache::new(CacheConfig::default());
        let t = cache.begin_fill();
        cache.store(entry(key("/a"), lang("en"), &[], 10), t);
        cache.store(entry(key("/a"), lang("de"), &[], 20), t);
        cache.store(entry(key("/a"), lang("en"), &[], 30), t);
        let variants = cache.lookup(&key("/a")).unwrap();
        let mut sizes: Vec<_> = variants.iter().map(|e| e.body.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![20, 30]);
    }

    #[test]
    fn purge_by_target_prefix_and_tag_counts_what_went() {
        let cache = Cache::new(CacheConfig::default());
        let t = cache.begin_fill();
        cache.store(entry(key("/a/1"), Box::new([]), &["t1"], 1), t);
        cache.store(entry(key("/a/2"), Box::new([]), &["t1", "t2"], 1), t);
        cache.store(entry(key("/b/3"), Box::new([]), &["t2"], 1), t);
        cache.store(
            entry(
                key("/b/3").with_partition(Partition::Credential([1; 16])),
                Box::new([]),
                &[],
                1,
            ),
            t,
        );
        assert_eq!(
            cache
                .purge(&[Invalidation::Target {
                    route: None,
                    target: "/b/3".into()
                }])
                .unwrap(),
            2
        );
        assert_eq!(
            cache
                .purge(&[Invalidation::Tag(Tag::new(0, "t2"))])
                .unwrap(),
            1
        );
        assert_eq!(
            cache
                .purge(&[Invalidation::Prefix {
                    route: None,
                    prefix: "/a/".into()
                }])
                .unwrap(),
            1
        );
        assert!(cache.lookup(&key("/a/1")).is_none());
        assert_eq!(cache.stats().memory_keys, 0);
        assert_eq!(cache.stats().tags, 0);
    }

    #[test]
    fn two_routes_same_tags_and_targets_do_not_invalidate_each_other() {
        let cache = Cache::new(CacheConfig::default());
        let t = cache.begin_fill();
        let other =
            |target: &str| PrimaryKey::new(7, KeyClass::Get, "h", target, Partition::Public);
        cache.store(entry(key("/c"), Box::new([]), &["change:1"], 1), t);
        cache.store(entry(other("/c"), Box::new([]), &["change:1"], 1), t);
        assert_eq!(
            cache
                .purge(&[Invalidation::Tag(Tag::new(7, "change:1"))])
                .unwrap(),
            1
        );
        assert!(cache.lookup(&key("/c")).is_some());
        assert!(cache.lookup(&other("/c")).is_none());
        cache.store(entry(other("/c"), Box::new([]), &[], 1), cache.begin_fill());
        assert_eq!(cache.purge(&[Invalidation::target(7, "/c")]).unwrap(), 1);
        assert!(cache.lookup(&key("/c")).is_some());
        assert_eq!(cache.purge(&[Invalidation::prefix(7, "/")]).unwrap(), 0);
        // An operator's purge without a route reaches every route.
        cache.store(entry(other("/c"), Box::new([]), &[], 1), cache.begin_fill());
        let everywhere = Invalidation::Target {
            route: None,
            target: "/c".into(),
        };
        assert_eq!(cache.purge(&[everywhere]).unwrap(), 2);
    }

    #[test]
    fn replacing_an_entry_keeps_it_findable_for_purges() {
        let cache = Cache::new(CacheConfig::default());
        cache.store(
            entry(key("/r"), Box::new([]), &["old"], 1),
            cache.begin_fill(),
        );
        cache.store(
            entry(key("/r"), Box::new([]), &["new"], 1),
            cache.begin_fill(),
        );
        assert_eq!(cache.stats().tags, 1);
        assert_eq!(
            cache
                .purge(&[Invalidation::Tag(Tag::new(0, "old"))])
                .unwrap(),
            0
        );
        assert_eq!(
            cache
                .purge(&[Invalidation::Target {
                    route: None,
                    target: "/r".into()
                }])
                .unwrap(),
            1
        );
        assert_eq!(cache.stats().memory_evictions, 0);
    }

    #[test]
    fn a_purge_during_a_fill_keeps_the_fill_from_being_stored() {
        let cache = Cache::new(CacheConfig::default());
        let t = cache.begin_fill();
        cache
            .purge(&[Invalidation::Tag(Tag::new(0, "change:1"))])
            .unwrap();
        let out = cache.store(entry(key("/c"), Box::new([]), &["change:1"], 1), t);
        assert!(matches!(out, StoreOutcome::Outdated(_)));
        assert!(cache.lookup(&key("/c")).is_none());
        let out = cache.store(
            entry(key("/c"), Box::new([]), &["change:1"], 1),
            cache.begin_fill(),
        );
        assert!(matches!(out, StoreOutcome::Stored(_)));
    }

    #[test]
    fn byte_budget_evicts_and_keeps_the_catalog_in_step() {
        let cache = Cache::new(CacheConfig {
            memory_limit: 1 << 20,
            max_entry_bytes: 64 << 10,
            ..Default::default()
        });
        for i in 0..200 {
            let t = cache.begin_fill();
            cache.store(
                entry(key(&format!("/k{i}")), Box::new([]), &["all"], 16 << 10),
                t,
            );
        }
        let stats = cache.stats();
        assert!(stats.memory_bytes <= 1 << 20, "{stats:?}");
        assert!(stats.memory_evictions > 0, "{stats:?}");
        assert_eq!(
            cache
                .purge(&[Invalidation::Tag(Tag::new(0, "all"))])
                .unwrap(),
            stats.memory_keys
        );
    }

    #[test]
    fn the_byte_budget_holds_for_entries_with_large_variants_and_hosts() {
        let budget: u64 = 1 << 20;
        let cache = Cache::new(CacheConfig {
            memory_limit: budget,
            max_entry_bytes: 64 << 10,
            ..Default::default()
        });
        // Tiny bodies, each held with 16 KiB of Vary-selected header value
        // or of Host (what `preserve_host` puts in the key).
        let held: usize = 16 << 10;
        for i in 0..200 {
            let value = format!("{i}{}", "x".repeat(held));
            let e = entry(key(&format!("/v{i}")), lang(&value), &[], 10);
            cache.store(e, cache.begin_fill());
            let host = format!("{i}{}", "h".repeat(held));
            let k = PrimaryKey::new(0, KeyClass::Get, host.as_str(), "/h", Partition::Public);
            cache.store(entry(k, Box::new([]), &[], 10), cache.begin_fill());
        }
        let stats = cache.stats();
        assert!(stats.memory_bytes <= budget, "{stats:?}");
        assert!(
            (stats.memory_keys * held) as u64 <= budget,
            "{} keys hold at least {held} bytes each: over the {budget} byte budget",
            stats.memory_keys
        );
    }

    #[test]
    fn the_largest_allowed_entry_fits_in_a_small_budget() {
        let cache = Cache::new(CacheConfig {
            memory_limit: 4 << 20,
            max_entry_bytes: 1 << 20,
            ..Default::default()
        });
        let big = entry(key("/big"), Box::new([]), &[], (1 << 20) - 4096);
        cache.store(big, cache.begin_fill());
        assert!(cache.lookup(&key("/big")).is_some());
    }
}
