//! Disk tier figures for bench/README.md:
//! - start-up time to the first hit with N small entries (default 1,000,000);
//! - bytes on disk per entry beyond the body;
//! - body files per 10,000 entries at a typical API size mix;
//! - lookups per second from L2 (disk) next to L1 (memory), same keys, one thread.
//!
//! Usage: revcache-bench-disk [ENTRIES] [DIR]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use revcache_core::{
    Cache, CacheConfig, DiskConfig, Entry, EntryTiming, Freshness, KeyClass, Partition, PrimaryKey,
    Version,
};

fn key(i: u64) -> PrimaryKey {
    PrimaryKey::new(
        7,
        KeyClass::Get,
        "review.example.org",
        &format!("/changes/{i}?o=LABELS"),
        Partition::Public,
    )
}

fn entry(i: u64, size: usize) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "etag",
        HeaderValue::from_str(&format!("\"{i:016x}\""))
            .unwrap_or(HeaderValue::from_static("\"x\"")),
    );
    headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
    let body: Vec<u8> = (0..size).map(|j| (j as u64 ^ i) as u8).collect();
    let now = SystemTime::now();
    Entry::new(
        key(i),
        Box::new([]),
        Version::from_etag(&format!("\"{i:016x}\"")),
        StatusCode::OK,
        headers,
        Bytes::from(body),
        vec![],
        EntryTiming {
            request_time: now,
            response_time: now,
            initial_age: Duration::ZERO,
        },
        Freshness {
            lifetime: Duration::from_secs(600),
            ..Default::default()
        },
    )
}

fn open(dir: &Path) -> Cache {
    let mut config = DiskConfig::new(dir);
    config.byte_limit = u64::MAX;
    // Memory big enough not to matter for the L1 figure.
    let memory = CacheConfig {
        memory_limit: 4 << 30,
        max_entry_bytes: 8 << 20,
        ..Default::default()
    };
    match Cache::with_disk(memory, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}

fn fill(cache: &Cache, n: u64, size_of: impl Fn(u64) -> usize) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        cache.store(entry(i, size_of(i)), cache.begin_fill());
        // Stay under the writer's queue bound so no write is dropped.
        if i % 4096 == 4095 {
            cache.flush();
        }
    }
    cache.flush();
    started.elapsed()
}

fn du(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                // Allocated blocks, not the apparent length: what the disk holds.
                bytes += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn body_files(dir: &Path) -> u64 {
    du(&dir.join("bodies")).1
}

/// A typical mix of code-review and WebDAV API responses.
fn typical_size(i: u64) -> usize {
    let r = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100;
    let jitter = (i.wrapping_mul(2_654_435_761) % 1000) as usize;
    match r {
        0..=69 => 200 + jitter * 4,       // up to 4 KiB: change details, props
        70..=89 => 4_096 + jitter * 12,   // 4-16 KiB: queries, listings
        90..=97 => 16_384 + jitter * 112, // 16-128 KiB: diffs, files
        _ => 131_072 + jitter * 900,      // 128 KiB-1 MiB: documents, images
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base: PathBuf = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("revcache-bench-disk-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&base);
    let small = base.join("small");
    let mix = base.join("mix");
    const SMALL: usize = 512;

    println!("# disk tier: {n} entries of {SMALL} B");
    let fill_time = {
        let cache = open(&small);
        let t = fill(&cache, n, |_| SMALL);
        let dropped = cache.stats().disk.map_or(0, |d| d.writes_dropped);
        assert_eq!(
            dropped, 0,
            "writes were dropped; the figures would be wrong"
        );
        t
    };
    println!(
        "fill: {:.1} s ({:.0} entries/s, through the writer in batches)",
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64()
    );
    let (bytes, _) = du(&small);
    let overhead = (bytes as f64 - (n as usize * SMALL) as f64) / n as f64;
    println!(
        "on disk: {:.1} MiB, {:.0} bytes per entry beyond its {SMALL} B body",
        bytes as f64 / (1 << 20) as f64,
        overhead
    );

    let probe = n / 2;
    let started = Instant::now();
    let cache = open(&small);
    let opened = started.elapsed();
    let hit = cache.lookup_disk(&key(probe)).is_some();
    let first_hit = started.elapsed();
    assert!(hit, "entry {probe} missing after reopen");
    println!(
        "start-up: open {:.1} ms, first hit {:.1} ms",
        opened.as_secs_f64() * 1e3,
        first_hit.as_secs_f64() * 1e3
    );

    let disk = cache.disk().expect("disk tier");
    let sample: Vec<u64> = (0..200_000u64)
        .map(|i| i.wrapping_mul(48_271) % n)
        .collect();
    let t = Instant::now();
    let mut found = 0;
    for &i in &sample {
        found += usize::from(!disk.lookup(&key(i)).is_empty());
    }
    let l2 = sample.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, sample.len());
    for &i in &sample {
        cache.lookup_disk(&key(i));
    }
    let t = Instant::now();
    for &i in &sample {
        found += usize::from(cache.lookup(&key(i)).is_some());
    }
    let l1 = sample.len() as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, 2 * sample.len());
    println!(
        "lookups, one thread: L2 {l2:.0}/s, L1 {l1:.0}/s (L1/L2 = {:.1}x)",
        l1 / l2
    );
    drop(cache);

    println!("# typical size mix, 10,000 entries");
    let cache = open(&mix);
    fill(&cache, 10_000, typical_size);
    let stats = cache.stats().disk.unwrap_or_default();
    drop(cache);
    let (bytes, files) = du(&mix);
    let body_bytes: u64 = (0..10_000).map(|i| typical_size(i) as u64).sum();
    println!(
        "body files: {} per 10,000 entries (all files in the data dir: {files}); {} bodies inline",
        body_files(&mix),
        10_000 - stats.files
    );
    println!(
        "on disk: {:.1} MiB for {:.1} MiB of bodies ({:.0} bytes per entry beyond its body)",
        bytes as f64 / (1 << 20) as f64,
        body_bytes as f64 / (1 << 20) as f64,
        (bytes as f64 - body_bytes as f64) / 10_000.0
    );
    let _ = std::fs::remove_dir_all(&base);
}
