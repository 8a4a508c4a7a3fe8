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
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Seeds of the maps' hashers: random per map, fixed under loom.
#[cfg(not(loom))]
pub(crate) type RandomState = std::hash::RandomState;
#[cfg(loom)]
pub(crate) type RandomState = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;
pub(crate) type HashSet<T> = std::collections::HashSet<T, RandomState>;
