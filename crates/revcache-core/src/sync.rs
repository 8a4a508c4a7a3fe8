//! The synchronisation primitives of single flight, generations, the
//! catalog and the memory tier's eviction queue: std's in every build,
//! loom's under `--cfg loom`, so the model checks in those modules run the
//! real code. It owns nothing else and never changes behaviour outside a
//! loom build.
//!
//! Under loom the maps hash with fixed seeds: loom replays each execution
//! from its start and needs every replay to take the same locks in the same
//! order, which per-map random seeds (shard choice, set iteration order)
//! would break.

#[cfg(loom)]
use loom::sync as imp;
#[cfg(not(loom))]
use std::sync as imp;

pub(crate) use imp::MutexGuard;
pub(crate) use imp::atomic::AtomicU64;

/// std's mutex (loom's under loom) whose `lock` gives the guard directly:
/// a panic while it is held leaves its users' maps and queues usable, so
/// poison is ignored, once, here.
pub(crate) struct Mutex<T>(imp::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(imp::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Seeds of the maps' hashers: random per map, fixed under loom.
#[cfg(not(loom))]
pub(crate) type RandomState = std::hash::RandomState;
#[cfg(loom)]
pub(crate) type RandomState = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
pub(crate) type HashSet<T> = std::collections::HashSet<T, RandomState>;
