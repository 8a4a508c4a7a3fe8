//! The catalog: finds the keys held in memory by request target, by path
//! prefix and by tag, so purges and invalidations know what to remove.
//!
//! It indexes primary keys only; the tiers hold the entries. It may name a
//! key that a tier has already dropped (a purge then finds nothing there),
//! but every key a tier holds is in it: keys are added before they are
//! inserted and removed after they leave. (`cache`'s loom tests check that
//! promise against concurrent stores, purges and evictions.)
//!
//! The target index holds an entry per stored key, so it is kept small: it
//! is keyed by a hash of the target (the key itself holds the string), and a
//! target's keys (almost always one) are held without a set of their own.

use std::hash::{BuildHasher, Hash};

use crate::key::PrimaryKey;
use crate::sync::{HashMap, HashSet, Mutex, MutexGuard, RandomState};
use crate::tag::Tag;

const SHARDS: usize = 32;

type Shard<T> = Mutex<HashMap<T, HashSet<PrimaryKey>>>;

/// Tags: a set of keys per tag, since one tag may name many keys.
struct Index<T> {
    shards: Box<[Shard<T>]>,
    hasher: RandomState,
}

impl<T: Hash + Eq> Index<T> {
    fn new() -> Self {
        Index {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, name: &Q) -> MutexGuard<'_, HashMap<T, HashSet<PrimaryKey>>> {
        let i = self.hasher.hash_one(name) as usize % SHARDS;
        self.shards[i].lock()
    }

    fn add(&self, name: T, key: &PrimaryKey) {
        let mut shard = self.shard(&name);
        shard.entry(name).or_default().insert(key.clone());
    }

    fn remove<Q>(&self, name: &Q, key: &PrimaryKey)
    where
        T: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(name);
        if let Some(set) = shard.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                shard.remove(name);
            }
        }
    }

    fn get<Q>(&self, name: &Q) -> Vec<PrimaryKey>
    where
        T: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(name)
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// The keys whose targets share one hash: almost always a single key.
enum Keys {
    One(PrimaryKey),
    Many(Vec<PrimaryKey>),
}

impl Keys {
    fn as_slice(&self) -> &[PrimaryKey] {
        match self {
            Keys::One(k) => std::slice::from_ref(k),
            Keys::Many(v) => v,
        }
    }

    fn insert(&mut self, key: &PrimaryKey) {
        if self.as_slice().contains(key) {
            return;
        }
        match self {
            Keys::One(k) => *self = Keys::Many(vec![k.clone(), key.clone()]),
            Keys::Many(v) => v.push(key.clone()),
        }
    }

    /// Removes `key`; true when none is left.
    fn remove(&mut self, key: &PrimaryKey) -> bool {
        match self {
            Keys::One(k) => k == key,
            Keys::Many(v) => {
                v.retain(|k| k != key);
                if v.len() == 1
                    && let Some(only) = v.pop()
                {
                    *self = Keys::One(only);
                    return false;
                }
                v.is_empty()
            }
        }
    }
}

type TargetShard = Mutex<HashMap<u64, Keys>>;

/// Request targets: keys by a hash of their target. Lookups compare the
/// target itself, so a hash shared by two targets costs a comparison, never
/// a wrong answer.
struct TargetIndex {
    shards: Box<[TargetShard]>,
    hasher: RandomState,
}

impl TargetIndex {
    fn new() -> Self {
        TargetIndex {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, target: &str) -> (u64, MutexGuard<'_, HashMap<u64, Keys>>) {
        let hash = self.hasher.hash_one(target);
        // The map hashes `hash` again, so any of its bits can pick the shard.
        let shard = &self.shards[hash as usize % SHARDS];
        (hash, shard.lock())
    }

    fn add(&self, key: &PrimaryKey) {
        let (hash, mut shard) = self.shard(key.target());
        match shard.get_mut(&hash) {
            Some(keys) => keys.insert(key),
            None => {
                shard.insert(hash, Keys::One(key.clone()));
            }
        }
    }

    fn remove(&self, key: &PrimaryKey) {
        let (hash, mut shard) = self.shard(key.target());
        if shard.get_mut(&hash).is_some_and(|keys| keys.remove(key)) {
            shard.remove(&hash);
        }
    }

    fn get(&self, target: &str) -> Vec<PrimaryKey> {
        let (hash, shard) = self.shard(target);
        shard
            .get(&hash)
            .map(|keys| {
                keys.as_slice()
                    .iter()
                    .filter(|k| k.target() == target)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn scan(&self, mut keep: impl FnMut(&PrimaryKey) -> bool) -> Vec<PrimaryKey> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .values()
                    .flat_map(Keys::as_slice)
                    .filter(|k| keep(k))
                    .cloned(),
            );
        }
        out
    }
}

pub struct Catalog {
    by_target: TargetIndex,
    by_tag: Index<Tag>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            by_target: TargetIndex::new(),
            by_tag: Index::new(),
        }
    }
}

impl Catalog {
    pub fn add(&self, key: &PrimaryKey, tags: &[Tag]) {
        self.by_target.add(key);
        for tag in tags {
            self.by_tag.add(tag.clone(), key);
        }
    }

    /// Forgets `key` under its target and under `tags`.
    pub fn remove(&self, key: &PrimaryKey, tags: &[Tag]) {
        self.by_target.remove(key);
        self.remove_tags(key, tags);
    }

    /// Forgets `key` under `tags` only (its entry no longer carries them).
    pub fn remove_tags(&self, key: &PrimaryKey, tags: &[Tag]) {
        for tag in tags {
            self.by_tag.remove(tag, key);
        }
    }

    /// Keys whose request target (path and query) is exactly `target`.
    pub fn by_target(&self, target: &str) -> Vec<PrimaryKey> {
        self.by_target.get(target)
    }

    /// Keys whose path starts with `prefix`. Scans the catalog: an admin
    /// operation, not a request-path one.
    pub fn by_prefix(&self, prefix: &str) -> Vec<PrimaryKey> {
        self.by_target.scan(|k| k.target().starts_with(prefix))
    }

    pub fn by_tag(&self, tag: &Tag) -> Vec<PrimaryKey> {
        self.by_tag.get(tag)
    }

    /// Distinct tags known.
    pub fn tag_count(&self) -> usize {
        self.by_tag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyClass;
    use crate::partition::Partition;

    fn key(target: &str, partition: Partition) -> PrimaryKey {
        PrimaryKey::new(0, KeyClass::Get, "h", target, partition)
    }

    #[test]
    fn a_target_finds_every_key_stored_under_it_until_each_is_removed() {
        let catalog = Catalog::default();
        let public = key("/a?x=1", Partition::Public);
        let private = key("/a?x=1", Partition::Credential([7; 16]));
        let other = key("/b", Partition::Public);
        for k in [&public, &private, &other, &public] {
            catalog.add(k, &[]);
        }
        let mut found = catalog.by_target("/a?x=1");
        found.sort_by_key(|k| k.partition() == Partition::Public);
        assert_eq!(found, vec![private.clone(), public.clone()]);
        assert_eq!(catalog.by_prefix("/a").len(), 2);
        assert_eq!(catalog.by_prefix("/").len(), 3);

        catalog.remove(&private, &[]);
        assert_eq!(catalog.by_target("/a?x=1"), vec![public.clone()]);
        catalog.remove(&public, &[]);
        assert!(catalog.by_target("/a?x=1").is_empty());
        assert_eq!(catalog.by_target("/b"), vec![other]);
    }

    #[test]
    fn keys_sharing_a_hash_stay_apart() {
        let a = key("/a", Partition::Public);
        let b = key("/b", Partition::Public);
        let mut keys = Keys::One(a.clone());
        keys.insert(&a);
        assert_eq!(keys.as_slice().len(), 1);
        keys.insert(&b);
        assert_eq!(keys.as_slice(), [a.clone(), b.clone()]);
        assert!(!keys.remove(&a));
        assert!(matches!(&keys, Keys::One(k) if *k == b));
        assert!(keys.remove(&b));
    }
}
