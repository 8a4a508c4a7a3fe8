//! The engine's overhead over the cache crate underneath, for 1 and 2
//! threads: lookups, stores, single-flight joins, identity-map hits.
//! Run: cargo bench -p revcache-bench-engine

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use divan::Bencher;
use revcache_bench_engine::{entry, key};
use revcache_core::IdentityMap;
use revcache_core::{Cache, CacheConfig, Join, PrimaryKey, SingleFlight};

const KEYS: u64 = 10_000;

/// A spread-out sequence of key indexes, shared by the bench's threads.
fn next(i: &AtomicU64) -> u64 {
    i.fetch_add(7919, Ordering::Relaxed)
}

fn main() {
    divan::main();
}

fn filled_cache() -> Cache {
    let cache = Cache::new(CacheConfig::default());
    for i in 0..KEYS {
        cache.store(entry(i, 64), cache.begin_fill());
    }
    cache
}

/// The crate underneath, holding reference-counted values as the engine does.
fn raw_cache() -> quick_cache::sync::Cache<PrimaryKey, Arc<Bytes>> {
    let raw = quick_cache::sync::Cache::new(KEYS as usize * 2);
    for i in 0..KEYS {
        raw.insert(key(i), Arc::new(Bytes::from_static(b"x")));
    }
    raw
}

#[divan::bench(threads = [1, 2])]
fn lookup_hit_engine(bencher: Bencher) {
    let cache = filled_cache();
    let keys: Vec<PrimaryKey> = (0..KEYS).map(key).collect();
    let i = AtomicU64::new(0);
    bencher.bench(|| {
        let n = next(&i) as usize % keys.len();
        divan::black_box(cache.lookup(&keys[n]))
    });
}

#[divan::bench(threads = [1, 2])]
fn lookup_hit_raw_quick_cache(bencher: Bencher) {
    let raw = raw_cache();
    let keys: Vec<PrimaryKey> = (0..KEYS).map(key).collect();
    let i = AtomicU64::new(0);
    bencher.bench(|| {
        let n = next(&i) as usize % keys.len();
        divan::black_box(raw.get(&keys[n]))
    });
}

#[divan::bench(threads = [1, 2])]
fn store_engine(bencher: Bencher) {
    let cache = Cache::new(CacheConfig::default());
    let i = AtomicU64::new(0);
    bencher
        .with_inputs(|| entry(next(&i) % KEYS, 64))
        .bench_values(|e| divan::black_box(cache.store(e, cache.begin_fill())));
}

#[divan::bench(threads = [1, 2])]
fn store_raw_quick_cache(bencher: Bencher) {
    let raw: quick_cache::sync::Cache<PrimaryKey, Arc<revcache_core::Entry>> =
        quick_cache::sync::Cache::new(KEYS as usize * 2);
    let i = AtomicU64::new(0);
    bencher
        .with_inputs(|| entry(next(&i) % KEYS, 64))
        .bench_values(|e| raw.insert(e.key.clone(), Arc::new(e)));
}

#[divan::bench(threads = [1, 2])]
fn single_flight_lead_and_complete(bencher: Bencher) {
    let flights: SingleFlight<PrimaryKey, u64> = SingleFlight::default();
    let keys: Vec<PrimaryKey> = (0..KEYS).map(key).collect();
    let i = AtomicU64::new(0);
    bencher.bench(|| {
        let n = next(&i) as usize % keys.len();
        if let Join::Leader(l) = flights.join(&keys[n]) {
            l.complete(1);
        }
    });
}

#[divan::bench]
fn identity_map_canonicalize_live_version(bencher: Bencher) {
    let map = IdentityMap::default();
    let live = map.canonicalize(entry(1, 4096));
    bencher
        .with_inputs(|| entry(1, 4096))
        .bench_values(|e| divan::black_box(map.canonicalize(e)));
    drop(live);
}

/// What a hit pays to turn an entry's stored headers into the response's
/// `HeaderMap`, next to cloning a map built once (the peer: what keeping a
/// ready map per entry would cost per hit, at about 500 bytes per entry).
#[divan::bench]
fn response_headers_from_stored(bencher: Bencher) {
    let e = entry(1, 64);
    bencher.bench(|| divan::black_box(e.headers.to_map(3)));
}

#[divan::bench]
fn response_headers_raw_header_map_clone(bencher: Bencher) {
    let map = entry(1, 64).headers.to_map(3);
    bencher.bench(|| divan::black_box(map.clone()));
}
