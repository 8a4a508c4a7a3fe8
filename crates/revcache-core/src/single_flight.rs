//! Single-flight: N concurrent requests for one key cost one fetch.
//!
//! Contract (after pingora-cache's cache lock):
//! - The first caller of [`SingleFlight::join`] for a key becomes the
//!   **leader** and gets a [`LeaderGuard`]; later callers become
//!   **waiters** until the leader finishes.
//! - The leader calls [`LeaderGuard::complete`] with the outcome; every
//!   waiter receives a clone of it. The key is free again at that moment, so
//!   a caller arriving afterwards starts (or joins) a new flight.
//! - A leader dropped without completing (cancelled, panicked, errored
//!   before deciding) releases its waiters with [`Abandoned`]; they must
//!   retry (typically by joining again) and are never left hanging.
//! - What the outcome means (an entry, "not shareable", an error) is the
//!   caller's type `V`; this module only moves it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

const SHARDS: usize = 64;

/// The leader went away without an outcome; retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request this one was waiting on was cancelled")]
pub struct Abandoned;

struct Slot<V> {
    id: u64,
    rx: watch::Receiver<Option<V>>,
}

type Shard<K, V> = Mutex<HashMap<K, Slot<V>>>;

struct Inner<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: std::hash::RandomState,
    next_id: AtomicU64,
    waiting: AtomicUsize,
}

/// A set of in-flight fetches, keyed by `K`. Cheap to clone.
pub struct SingleFlight<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for SingleFlight<K, V> {
    fn clone(&self) -> Self {
        SingleFlight {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: std::hash::RandomState::new(),
                next_id: AtomicU64::new(1),
                waiting: AtomicUsize::new(0),
            }),
        }
    }
}

pub enum Join<K: Hash + Eq + Clone, V: Clone> {
    Leader(LeaderGuard<K, V>),
    Waiter(Waiter<K, V>),
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    pub fn join(&self, key: &K) -> Join<K, V> {
        let mut shard = self.inner.lock_shard(key);
        if let Some(slot) = shard.get(key) {
            self.inner.waiting.fetch_add(1, Ordering::Relaxed);
            return Join::Waiter(Waiter {
                rx: slot.rx.clone(),
                inner: self.inner.clone(),
            });
        }
        let (tx, rx) = watch::channel(None);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        shard.insert(key.clone(), Slot { id, rx });
        Join::Leader(LeaderGuard {
            inner: self.inner.clone(),
            key: key.clone(),
            id,
            tx,
        })
    }

    /// Waiters currently blocked on a leader.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Flights currently in progress.
    pub fn in_flight(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

impl<K: Hash + Eq, V> Inner<K, V> {
    fn lock_shard(&self, key: &K) -> std::sync::MutexGuard<'_, HashMap<K, Slot<V>>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        // Each critical section is one map operation; poison carries no
        // broken invariant.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, key: &K, id: u64) {
        let mut shard = self.lock_shard(key);
        if shard.get(key).is_some_and(|s| s.id == id) {
            shard.remove(key);
        }
    }
}

/// The caller that fetches. Complete it, or drop it to release waiters.
pub struct LeaderGuard<K: Hash + Eq + Clone, V: Clone> {
    inner: Arc<Inner<K, V>>,
    key: K,
    id: u64,
    tx: watch::Sender<Option<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> LeaderGuard<K, V> {
    /// Hands `outcome` to every waiter and frees the key.
    pub fn complete(self, outcome: V) {
        self.inner.release(&self.key, self.id);
        self.tx.send_replace(Some(outcome));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for LeaderGuard<K, V> {
    fn drop(&mut self) {
        // After `complete` this finds another flight's id (or none) and does
        // nothing. Dropping `tx` wakes waiters that got no outcome.
        self.inner.release(&self.key, self.id);
    }
}

/// A caller waiting for a leader's outcome.
pub struct Waiter<K, V> {
    rx: watch::Receiver<Option<V>>,
    inner: Arc<Inner<K, V>>,
}

impl<K, V: Clone> Waiter<K, V> {
    pub async fn wait(mut self) -> Result<V, Abandoned> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().ok_or(Abandoned),
            Err(_) => Err(Abandoned),
        }
    }
}

impl<K, V> Drop for Waiter<K, V> {
    fn drop(&mut self) {
        self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hundred_joiners_get_one_leader_and_its_outcome() {
        let sf: SingleFlight<&'static str, u32> = SingleFlight::default();
        let Join::Leader(leader) = sf.join(&"k") else {
            panic!("first join must lead")
        };
        let mut waiters = Vec::new();
        for _ in 0..100 {
            match sf.join(&"k") {
                Join::Waiter(w) => waiters.push(tokio::spawn(w.wait())),
                Join::Leader(_) => panic!("second leader while one is in flight"),
            }
        }
        assert_eq!(sf.waiting(), 100);
        leader.complete(7);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(7));
        }
        assert_eq!(sf.waiting(), 0);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test]
    async fn dropped_leader_releases_waiters_and_frees_the_key() {
        let sf: SingleFlight<u8, u32> = SingleFlight::default();
        let Join::Leader(leader) = sf.join(&1) else {
            panic!()
        };
        let Join::Waiter(w) = sf.join(&1) else {
            panic!()
        };
        let wait = tokio::spawn(w.wait());
        drop(leader);
        assert_eq!(wait.await.unwrap(), Err(Abandoned));
        assert!(matches!(sf.join(&1), Join::Leader(_)));
    }

    #[tokio::test]
    async fn completed_flight_frees_the_key_for_the_next_caller() {
        let sf: SingleFlight<u8, u32> = SingleFlight::default();
        let Join::Leader(leader) = sf.join(&1) else {
            panic!()
        };
        leader.complete(1);
        assert!(matches!(sf.join(&1), Join::Leader(_)));
    }
}
