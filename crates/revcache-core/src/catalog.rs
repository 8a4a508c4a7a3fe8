//! The catalog: finds the keys held in memory by request target, by path
//! prefix and by tag, so purges and invalidations know what to remove.
//!
//! It indexes primary keys only; the tiers hold the entries. It may name a
//! key that a tier has already dropped (a purge then finds nothing there),
//! but every key a tier holds is in it: keys are added before they are
//! inserted and removed after they leave.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

use crate::key::PrimaryKey;
use crate::tag::Tag;

const SHARDS: usize = 32;

type Shard<T> = Mutex<HashMap<T, HashSet<PrimaryKey>>>;

struct Index<T> {
    shards: Box<[Shard<T>]>,
    hasher: std::hash::RandomState,
}

impl<T: Hash + Eq> Index<T> {
    fn new() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, name: &Q) -> MutexGuard<'_, HashMap<T, HashSet<PrimaryKey>>> {
        let i = self.hasher.hash_one(name) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
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

    fn scan(&self, mut keep: impl FnMut(&T) -> bool) -> Vec<PrimaryKey> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (name, keys) in shard.iter() {
                if keep(name) {
                    out.extend(keys.iter().cloned());
                }
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

pub struct Catalog {
    by_target: Index<Box<str>>,
    by_tag: Index<Tag>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            by_target: Index::new(),
            by_tag: Index::new(),
        }
    }
}

impl Catalog {
    pub fn add(&self, key: &PrimaryKey, tags: &[Tag]) {
        self.by_target.add(key.target().into(), key);
        for tag in tags {
            self.by_tag.add(tag.clone(), key);
        }
    }

    /// Forgets `key` under its target and under `tags`.
    pub fn remove(&self, key: &PrimaryKey, tags: &[Tag]) {
        self.by_target.remove(key.target(), key);
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
        self.by_target.scan(|t| t.starts_with(prefix))
    }

    pub fn by_tag(&self, tag: &Tag) -> Vec<PrimaryKey> {
        self.by_tag.get(tag)
    }

    /// Distinct tags known.
    pub fn tag_count(&self) -> usize {
        self.by_tag.len()
    }
}
