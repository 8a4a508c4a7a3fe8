//! Memory per entry in the memory tiers: RSS before and after storing N
//! small entries (default 1,000,000), divided by N, minus the body.
//!
//! Usage: revcache-bench-engine [N] [BODY_BYTES]

use revcache_bench_engine::{entry, key, rss};
use revcache_core::{Cache, CacheConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let body: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let cache = Cache::new(CacheConfig {
        memory_limit: 8 << 30,
        max_entry_bytes: 1 << 20,
        ..Default::default()
    });
    let before = rss();
    for i in 0..n {
        cache.store(entry(i, body), cache.begin_fill());
    }
    let stored = rss();
    let stats = cache.stats();
    assert_eq!(stats.memory_keys as u64, n, "every entry is held");
    report(
        &format!("{n} entries of {body} B stored"),
        before,
        stored,
        n,
        body,
    );
    // A hit builds its response headers from the stored ones and shares
    // the body; the first one may allocate what a stored-only entry does
    // not have yet (the shared counts of both).
    for i in 0..n {
        let found = cache.lookup(&key(i)).expect("a stored entry is found");
        std::hint::black_box(found[0].headers.to_map(3));
        std::hint::black_box(found[0].body.bytes().cloned());
    }
    report("after one hit each", before, rss(), n, body);
    println!(
        "the memory tier's own weight estimate: {:.0} B per entry",
        stats.memory_bytes as f64 / n as f64
    );
}

fn report(what: &str, before: u64, after: u64, n: u64, body: usize) {
    let per_entry = (after - before) as f64 / n as f64;
    println!(
        "{what}: RSS {:.1} MiB -> {:.1} MiB, {:.0} B per entry, {:.0} B beyond the body",
        before as f64 / (1 << 20) as f64,
        after as f64 / (1 << 20) as f64,
        per_entry,
        per_entry - body as f64
    );
}
