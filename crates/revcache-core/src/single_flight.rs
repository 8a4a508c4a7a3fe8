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
//!
//! Model checks (`--cfg loom`, the `loom` tests below) run this code with
//! loom's mutex over the flight map, so loom explores every interleaving of
//! joins, completions, drops and waits. Loom cannot run tokio, so there the
//! leader-to-waiter notification is a stand-in on loom's mutex and condvar
//! ([`watch`] below) with the semantics of the part of tokio's `watch` used
//! here: the latest value wins, dropping the sender closes, and `wait_for`
//! looks at the value before it reports the close. Covered: the flight map
//! (one leader per key at a time, ids, releasing on complete and on drop,
//! the order of release and send) and what each waiter ends with. Not
//! covered: tokio's `watch` itself (tokio model-checks it) and the
//! relaxed statistics counters, which stay std atomics.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sync::{HashMap, Mutex, MutexGuard, RandomState};

#[cfg(not(loom))]
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
    hasher: RandomState,
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
                shards: (0..SHARDS)
                    .map(|_| Mutex::new(HashMap::default()))
                    .collect(),
                hasher: RandomState::default(),
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
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }
}

impl<K: Hash + Eq, V> Inner<K, V> {
    fn lock_shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Slot<V>>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[i].lock()
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

/// Under loom: the part of tokio's `watch` that single flight uses, on
/// loom's primitives.
#[cfg(loom)]
mod watch {
    use std::sync::Arc;

    use loom::sync::Condvar;

    use crate::sync::{Mutex, MutexGuard};

    struct State<T> {
        value: T,
        closed: bool,
    }

    struct Shared<T> {
        state: Mutex<State<T>>,
        changed: Condvar,
    }

    pub struct Sender<T>(Arc<Shared<T>>);

    pub struct Receiver<T>(Arc<Shared<T>>);

    /// The sender is gone.
    pub struct RecvError;

    pub struct Ref<'a, T>(MutexGuard<'a, State<T>>);

    impl<T> std::ops::Deref for Ref<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0.value
        }
    }

    pub fn channel<T>(value: T) -> (Sender<T>, Receiver<T>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                value,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        (Sender(shared.clone()), Receiver(shared))
    }

    impl<T> Sender<T> {
        pub fn send_replace(&self, value: T) -> T {
            let old = std::mem::replace(&mut self.0.state.lock().value, value);
            self.0.changed.notify_all();
            old
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            self.0.state.lock().closed = true;
            self.0.changed.notify_all();
        }
    }

    impl<T> Clone for Receiver<T> {
        fn clone(&self) -> Self {
            Receiver(self.0.clone())
        }
    }

    impl<T> Receiver<T> {
        /// Blocks the loom thread (the model drives it with `block_on`).
        pub async fn wait_for(
            &mut self,
            mut f: impl FnMut(&T) -> bool,
        ) -> Result<Ref<'_, T>, RecvError> {
            let mut state = self.0.state.lock();
            loop {
                if f(&state.value) {
                    return Ok(Ref(state));
                }
                if state.closed {
                    return Err(RecvError);
                }
                state = self
                    .0
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    use super::*;

    /// What one caller ended with.
    #[derive(Debug, PartialEq)]
    enum Ended {
        Led(u32),
        Got(Result<u32, Abandoned>),
    }

    /// One caller: joins `key`; as leader, completes with `value` (or drops
    /// the guard when `abandon`), checking no other leader of the key is
    /// active meanwhile; as waiter, waits.
    fn caller(
        sf: &SingleFlight<u8, u32>,
        leaders: &AtomicUsize,
        value: u32,
        abandon: bool,
    ) -> Ended {
        match sf.join(&1) {
            Join::Leader(guard) => {
                let active = leaders.fetch_add(1, Ordering::SeqCst);
                assert_eq!(active, 0, "two leaders of one key at once");
                leaders.fetch_sub(1, Ordering::SeqCst);
                if abandon {
                    drop(guard);
                } else {
                    guard.complete(value);
                }
                Ended::Led(value)
            }
            Join::Waiter(w) => Ended::Got(wait(w)),
        }
    }

    /// Drives `Waiter::wait`: under loom the stand-in blocks the loom thread
    /// inside its first poll, so one poll finishes it.
    fn wait(w: Waiter<u8, u32>) -> Result<u32, Abandoned> {
        let mut fut = std::pin::pin!(w.wait());
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => unreachable!("the loom stand-in never returns pending"),
        }
    }

    /// The key is free once every caller has returned.
    fn assert_idle(sf: &SingleFlight<u8, u32>) {
        assert_eq!(sf.in_flight(), 0);
        assert_eq!(sf.waiting(), 0);
        assert!(matches!(sf.join(&1), Join::Leader(_)), "key still taken");
    }

    #[test]
    fn loom_every_waiter_gets_its_leaders_outcome_and_the_key_is_freed() {
        loom::model(|| {
            let sf: SingleFlight<u8, u32> = SingleFlight::default();
            let leaders = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (1..=2)
                .map(|value| {
                    let (sf, leaders) = (sf.clone(), leaders.clone());
                    thread::spawn(move || caller(&sf, &leaders, value, false))
                })
                .collect();
            let mine = caller(&sf, &leaders, 3, false);
            let mut ended: Vec<Ended> = handles
                .into_iter()
                .map(|h| h.join().expect("caller panicked"))
                .collect();
            ended.push(mine);
            let led: Vec<u32> = ended
                .iter()
                .filter_map(|e| match e {
                    Ended::Led(v) => Some(*v),
                    Ended::Got(_) => None,
                })
                .collect();
            assert!(!led.is_empty());
            for e in &ended {
                if let Ended::Got(got) = e {
                    // Never abandoned: a waiter gets some leader's outcome.
                    let v = got.expect("waiter abandoned though every leader completed");
                    assert!(led.contains(&v), "outcome {v} was never produced");
                }
            }
            assert_idle(&sf);
        });
    }

    #[test]
    fn loom_a_dropped_leader_releases_every_waiter_with_abandoned() {
        loom::model(|| {
            let sf: SingleFlight<u8, u32> = SingleFlight::default();
            let leaders = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (1..=2)
                .map(|value| {
                    let (sf, leaders) = (sf.clone(), leaders.clone());
                    thread::spawn(move || caller(&sf, &leaders, value, true))
                })
                .collect();
            let mine = caller(&sf, &leaders, 3, true);
            for e in handles
                .into_iter()
                .map(|h| h.join().expect("caller panicked"))
                .chain([mine])
            {
                if let Ended::Got(got) = e {
                    assert_eq!(got, Err(Abandoned));
                }
            }
            assert_idle(&sf);
        });
    }

    #[test]
    fn loom_a_leader_completing_while_the_next_flight_starts_frees_only_its_own() {
        // The first leader completes while others join: a caller arriving
        // after the release leads a new flight, and the first guard's drop
        // must not free the new flight's key.
        loom::model(|| {
            let sf: SingleFlight<u8, u32> = SingleFlight::default();
            let leaders = Arc::new(AtomicUsize::new(0));
            let Join::Leader(first) = sf.join(&1) else {
                panic!("first join must lead")
            };
            let handles: Vec<_> = (1..=2)
                .map(|value| {
                    let (sf, leaders) = (sf.clone(), leaders.clone());
                    thread::spawn(move || caller(&sf, &leaders, value, false))
                })
                .collect();
            first.complete(0);
            for e in handles
                .into_iter()
                .map(|h| h.join().expect("caller panicked"))
            {
                if let Ended::Got(got) = e {
                    assert!(
                        got.is_ok(),
                        "waiter abandoned though every leader completed"
                    );
                }
            }
            assert_idle(&sf);
        });
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
