//! The disk tier through the `Cache` API: what survives a restart, where
//! bodies go, sweeping, orphans and damaged data.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use revcache_core::Invalidation;
use revcache_core::{
    Cache, CacheConfig, Clock, DiskConfig, Entry, EntryBody, EntryTiming, Freshness, KeyClass,
    Partition, PrimaryKey, Tag, Version,
};

/// A data dir for one test, removed when the test ends, passed or failed.
/// Declared before the caches that use it, so they are dropped first.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "revcache-disk-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

fn open(dir: &PathBuf) -> Cache {
    open_with(dir, |_| {})
}

fn open_with(dir: &PathBuf, tweak: impl FnOnce(&mut DiskConfig)) -> Cache {
    open_on(dir, Clock::system(), tweak)
}

/// A cache whose disk tier reads `clock`.
fn open_on(dir: &PathBuf, clock: Clock, tweak: impl FnOnce(&mut DiskConfig)) -> Cache {
    let mut config = DiskConfig::new(dir);
    tweak(&mut config);
    let memory = CacheConfig {
        clock,
        ..CacheConfig::default()
    };
    Cache::with_disk(memory, config).unwrap()
}

fn key(target: &str) -> PrimaryKey {
    PrimaryKey::new(0, KeyClass::Get, "origin", target, Partition::Public)
}

fn entry(target: &str, body: Vec<u8>, tags: &[&str], date: Option<SystemTime>) -> Entry {
    versioned_entry(target, "\"v\"", body, tags, date)
}

fn versioned_entry(
    target: &str,
    etag: &str,
    body: Vec<u8>,
    tags: &[&str],
    date: Option<SystemTime>,
) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("etag", HeaderValue::from_str(etag).unwrap());
    if let Some(d) = date {
        headers.insert(
            "date",
            HeaderValue::from_str(&httpdate::fmt_http_date(d)).unwrap(),
        );
    }
    Entry::new(
        key(target),
        Box::new([]),
        Version::from_etag(etag),
        StatusCode::OK,
        headers,
        Bytes::from(body),
        tags.iter().map(|t| Tag::new(0, *t)).collect(),
        EntryTiming {
            request_time: SystemTime::now(),
            response_time: SystemTime::now(),
            initial_age: Duration::ZERO,
        },
        Freshness {
            lifetime: Duration::from_secs(600),
            ..Default::default()
        },
    )
}

fn store(cache: &Cache, e: Entry) {
    cache.store(e, cache.begin_fill());
}

fn body_of(e: &Entry) -> Vec<u8> {
    match &e.body {
        EntryBody::Memory(b) => b.to_vec(),
        EntryBody::File(f) => std::fs::read(&f.path).unwrap(),
    }
}

fn files_under(dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p)
            .map(|it| {
                it.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("bodies"))
}

#[test]
fn entries_of_every_size_survive_a_restart() {
    let dir = temp_dir();
    let sizes = [0usize, 1, 100, 16 << 10, (16 << 10) + 1, 300 << 10, 2 << 20];
    {
        let cache = open(&dir);
        for (i, n) in sizes.iter().enumerate() {
            store(
                &cache,
                entry(&format!("/e{i}"), vec![i as u8; *n], &[], None),
            );
        }
        cache.flush();
    }
    let cache = open(&dir);
    for (i, n) in sizes.iter().enumerate() {
        assert!(
            cache.lookup(&key(&format!("/e{i}"))).is_none(),
            "memory starts empty"
        );
        let found = cache.lookup_disk(&key(&format!("/e{i}"))).expect("on disk");
        assert_eq!(body_of(&found[0]), vec![i as u8; *n], "entry {i}");
        assert_eq!(found[0].headers.get("etag").unwrap(), "\"v\"");
        assert!(
            cache.lookup(&key(&format!("/e{i}"))).is_some(),
            "promoted to memory"
        );
    }
    // Bodies above the stream threshold stay in their file.
    let big = cache.lookup_disk(&key("/e6")).unwrap();
    assert!(matches!(big[0].body, EntryBody::File(_)));
}

#[test]
fn small_bodies_are_inline_and_large_ones_files_shared_by_identical_bytes() {
    let dir = temp_dir();
    let cache = open_with(&dir, |c| c.inline_threshold = 1024);
    store(&cache, entry("/small", vec![1; 1024], &[], None));
    store(&cache, entry("/big-a", vec![2; 4096], &[], None));
    store(&cache, entry("/big-b", vec![2; 4096], &[], None));
    store(&cache, entry("/big-c", vec![3; 4096], &[], None));
    cache.flush();
    assert_eq!(files_under(&dir), 2, "identical bodies share one file");
    let stats = cache.stats().disk.unwrap();
    assert_eq!((stats.entries, stats.files, stats.file_bytes), (4, 2, 8192));
    cache
        .purge(&[Invalidation::Target {
            route: None,
            target: "/big-a".into(),
        }])
        .unwrap();
    assert_eq!(files_under(&dir), 2, "still referenced by /big-b");
    cache
        .purge(&[Invalidation::Target {
            route: None,
            target: "/big-b".into(),
        }])
        .unwrap();
    assert_eq!(files_under(&dir), 1);
}

#[test]
fn a_batch_of_route_scoped_invalidations_spares_other_routes_across_a_restart() {
    let dir = temp_dir();
    let other =
        |target: &str| PrimaryKey::new(7, KeyClass::Get, "origin", target, Partition::Public);
    {
        let cache = open(&dir);
        for route_key in [key("/c/1"), other("/c/1")] {
            let mut e = entry("/c/1", vec![1], &[], None);
            e = Entry::new(
                route_key.clone(),
                Box::new([]),
                e.version.clone(),
                e.status,
                HeaderMap::new(),
                Bytes::from(vec![1]),
                vec![Tag::new(route_key.route(), "change:1")],
                e.timing(),
                e.freshness(),
            );
            store(&cache, e);
        }
        store(&cache, entry("/d/2", vec![1], &[], None));
        let batch = [
            Invalidation::Tag(Tag::new(0, "change:1")),
            Invalidation::prefix(7, "/d/"),
            Invalidation::target(7, "/nothing"),
        ];
        assert_eq!(cache.purge(&batch).unwrap(), 1);
    }
    let cache = open(&dir);
    assert!(cache.lookup_disk(&key("/c/1")).is_none());
    assert!(
        cache.lookup_disk(&other("/c/1")).is_some(),
        "route 7's change:1 is another change"
    );
    assert!(
        cache.lookup_disk(&key("/d/2")).is_some(),
        "the prefix was route 7's"
    );
}

#[test]
fn purges_by_url_prefix_and_tag_survive_a_restart() {
    let dir = temp_dir();
    {
        let cache = open(&dir);
        store(&cache, entry("/a/1", vec![1], &["t"], None));
        store(&cache, entry("/a/2", vec![1], &[], None));
        store(&cache, entry("/b", vec![1], &["t"], None));
        store(&cache, entry("/c?x=1", vec![1], &[], None));
        store(&cache, entry("/keep", vec![1], &[], None));
        assert_eq!(
            cache
                .purge(&[Invalidation::Prefix {
                    route: None,
                    prefix: "/a/".into()
                }])
                .unwrap(),
            2
        );
        assert_eq!(
            cache.purge(&[Invalidation::Tag(Tag::new(0, "t"))]).unwrap(),
            1
        );
        assert_eq!(
            cache
                .purge(&[Invalidation::Target {
                    route: None,
                    target: "/c?x=1".into()
                }])
                .unwrap(),
            1
        );
    }
    let cache = open(&dir);
    for gone in ["/a/1", "/a/2", "/b", "/c?x=1"] {
        assert!(cache.lookup_disk(&key(gone)).is_none(), "{gone} came back");
    }
    assert!(cache.lookup_disk(&key("/keep")).is_some());
    assert_eq!(cache.stats().disk.unwrap().entries, 1);
}

#[test]
fn a_purge_racing_a_queued_write_wins_on_disk() {
    let dir = temp_dir();
    let cache = open(&dir);
    let ticket = cache.begin_fill();
    cache
        .purge(&[Invalidation::Target {
            route: None,
            target: "/race".into(),
        }])
        .unwrap();
    cache.store(entry("/race", vec![1], &[], None), ticket);
    cache.flush();
    assert!(cache.lookup_disk(&key("/race")).is_none());
}

#[test]
fn the_newest_date_wins_between_racing_fills() {
    let dir = temp_dir();
    let now = SystemTime::now();
    {
        let cache = open(&dir);
        store(&cache, entry("/n", b"new".to_vec(), &[], Some(now)));
        store(
            &cache,
            entry(
                "/n",
                b"old".to_vec(),
                &[],
                Some(now - Duration::from_secs(60)),
            ),
        );
        assert_eq!(body_of(&cache.lookup(&key("/n")).unwrap()[0]), b"new");
        cache.flush();
    }
    let cache = open(&dir);
    assert_eq!(body_of(&cache.lookup_disk(&key("/n")).unwrap()[0]), b"new");
}

#[test]
fn idle_entries_are_swept_and_recent_use_keeps_them() {
    let dir = temp_dir();
    let (clock, hand) = Clock::adjustable();
    let cache = open_on(&dir, clock.clone(), |c| {
        c.access_bucket = Duration::from_secs(60);
        c.max_idle = Duration::from_secs(3600);
    });
    store(&cache, entry("/idle", vec![1], &[], None));
    store(&cache, entry("/used", vec![1], &[], None));
    cache.flush();
    hand.advance(Duration::from_secs(3600 + 120));
    let used = cache.lookup(&key("/used")).unwrap();
    cache.touch(&used[0], clock.now());
    let report = cache.disk().unwrap().sweep_all().unwrap();
    assert_eq!(report.idle, 1);
    assert!(cache.lookup_disk(&key("/idle")).is_none());
    assert!(cache.lookup_disk(&key("/used")).is_some());
}

#[test]
fn the_byte_budget_removes_the_least_recently_used_first() {
    let dir = temp_dir();
    let (clock, hand) = Clock::adjustable();
    let cache = open_on(&dir, clock, |c| {
        c.access_bucket = Duration::from_secs(60);
        c.byte_limit = 3 * 20_000;
        c.inline_threshold = 1024;
    });
    store(&cache, entry("/old", vec![1; 20_000], &[], None));
    cache.flush();
    hand.advance(Duration::from_secs(120));
    for i in 0..3 {
        store(
            &cache,
            entry(&format!("/new{i}"), vec![i + 2; 20_000], &[], None),
        );
    }
    cache.flush();
    cache.disk().unwrap().sweep_all().unwrap();
    // Trimmed when the new ones were stored, or by the sweep.
    assert!(cache.stats().disk.unwrap().swept_over_budget >= 1);
    assert!(cache.lookup_disk(&key("/old")).is_none());
    assert!(cache.lookup_disk(&key("/new2")).is_some());
    let stats = cache.stats().disk.unwrap();
    assert!(stats.bytes() <= 3 * 20_000, "{stats:?}");
}

/// Found by bench/soak: sweeps ran only when the writer was idle, so a
/// steady stream of writes kept the tier from ever sweeping and it grew
/// past its budget without bound.
#[test]
fn the_byte_budget_holds_under_a_steady_stream_of_writes() {
    let dir = temp_dir();
    let cache = open_with(&dir, |c| {
        c.byte_limit = 200_000;
        c.sweep_interval = Duration::from_secs(1);
        c.sweep_batch = 100;
    });
    // Stores without pause (the writer always has a batch waiting) until
    // sweeps have run, or give up after a minute.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while cache.stats().disk.unwrap().sweeps < 3 {
        assert!(
            std::time::Instant::now() < until,
            "no sweep under steady writes: {:?}",
            cache.stats().disk.unwrap()
        );
        for _ in 0..50 {
            i += 1;
            store(
                &cache,
                entry(&format!("/churn/{i}"), vec![7; 1_000], &[], None),
            );
        }
    }
    let stats = cache.stats().disk.unwrap();
    assert!(stats.swept_over_budget > 0, "{stats:?}");
    cache.flush();
    cache.disk().unwrap().sweep_all().unwrap();
    let stats = cache.stats().disk.unwrap();
    assert!(stats.bytes() <= 200_000, "{stats:?}");
}

/// Found by bench/soak: only timed sweep steps enforced the budget, 1,000
/// entries every 200 ms while more was due, and 6,000 new entries a second
/// grew the tier past its budget without bound. A batch that stores now
/// trims the tier in the same transaction.
#[test]
fn the_byte_budget_holds_after_every_batch_of_writes_between_sweeps() {
    let dir = temp_dir();
    let limit = 1_000_000;
    let cache = open_with(&dir, |c| {
        c.byte_limit = limit;
        // No timed sweep step while the test runs.
        c.sweep_interval = Duration::from_secs(3600);
    });
    for phase in 0..10 {
        for i in 0..1000 {
            let target = format!("/burst/{phase}/{i}");
            store(&cache, entry(&target, vec![3; 1_000], &[], None));
        }
        cache.flush();
        let stats = cache.stats().disk.unwrap();
        assert!(
            stats.bytes() <= limit,
            "phase {phase}: {} bytes against a budget of {limit}: {stats:?}",
            stats.bytes()
        );
        assert!(stats.entries > 0, "{stats:?}");
    }
    let stats = cache.stats().disk.unwrap();
    assert_eq!(stats.sweeps, 0, "{stats:?}");
    assert!(stats.swept_over_budget >= 9_000, "{stats:?}");
    // The newest entries are the ones kept.
    assert!(cache.lookup_disk(&key("/burst/9/999")).is_some());
    assert!(cache.lookup_disk(&key("/burst/0/0")).is_none());
}

/// Found by bench/soak: the budget counted the index's rows, and at small
/// entries the index took two to three times that on disk (1.2-1.6 GB for
/// a 512 MiB budget).
#[test]
fn the_byte_budget_bounds_what_the_index_takes_on_disk() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    let limit = 2_000_000;
    let cache = open_with(&dir, |c| {
        c.byte_limit = limit;
        // Every sweep measures the index's overhead.
        c.sweep_interval = Duration::ZERO;
    });
    let mut peak = 0;
    for round in 0..80 {
        for i in 0..250 {
            let target = format!("/small/{round}/{i}");
            store(&cache, entry(&target, vec![7; 300], &["t"], None));
        }
        cache.flush();
        cache.disk().unwrap().sweep_all().unwrap();
        let on_disk = std::fs::metadata(dir.join("index.redb")).unwrap().blocks() * 512;
        peak = peak.max(on_disk);
    }
    let stats = cache.stats().disk.unwrap();
    assert!(
        peak <= limit * 3 / 2,
        "the index took {peak} bytes on disk: {stats:?}"
    );
    // What the tier reports is what the budget counts, overhead included.
    assert!(stats.bytes() <= limit, "{stats:?}");
    assert!(stats.index_bytes > 2 * stats.row_bytes, "{stats:?}");
}

/// Measuring the overhead reads every index page: a start-up keeps the
/// last measure instead of reading a large index again.
#[test]
fn the_index_overhead_measured_before_a_restart_counts_at_once_after_it() {
    let dir = temp_dir();
    let measured = {
        let cache = open_with(&dir, |c| c.sweep_interval = Duration::ZERO);
        for i in 0..2000 {
            store(
                &cache,
                entry(&format!("/kept/{i}"), vec![5; 300], &[], None),
            );
        }
        cache.flush();
        cache.disk().unwrap().sweep_all().unwrap();
        let stats = cache.stats().disk.unwrap();
        assert!(stats.index_bytes > 2 * stats.row_bytes, "{stats:?}");
        stats.index_bytes
    };
    let cache = open(&dir);
    let stats = cache.stats().disk.unwrap();
    assert_eq!(stats.index_bytes, measured, "{stats:?}");
}

/// Found by the suite under load: a task that outlived a server's shutdown
/// still held the cache, so the data dir stayed "in use" for the next
/// server on it.
#[test]
fn a_closed_cache_frees_its_data_dir_while_something_still_holds_it() {
    let dir = temp_dir();
    let cache = Arc::new(open(&dir));
    store(&cache, entry("/kept", vec![1; 100], &[], None));
    let lingering = cache.clone();
    cache.close();
    let reopened = open(&dir);
    assert!(reopened.lookup_disk(&key("/kept")).is_some());
    // What still holds the closed one misses and writes nowhere.
    assert!(lingering.lookup_disk(&key("/kept")).is_none());
    store(&lingering, entry("/late", vec![2; 100], &[], None));
    reopened.flush();
    assert!(reopened.lookup_disk(&key("/late")).is_none());
}

#[test]
fn orphan_and_temp_files_are_removed_at_start() {
    let dir = temp_dir();
    {
        let cache = open(&dir);
        store(&cache, entry("/kept", vec![9; 100_000], &[], None));
        cache.flush();
    }
    let orphan = dir.join("bodies").join("ab").join("cd");
    std::fs::create_dir_all(&orphan).unwrap();
    let orphans = [
        orphan.join("ab".repeat(32)),
        dir.join("tmp").join("half-written"),
    ];
    std::fs::write(&orphans[0], b"left by a crash").unwrap();
    std::fs::write(&orphans[1], b"x").unwrap();
    // Orphans younger than two seconds are left for the next start: these
    // were left by a crash a minute ago.
    for path in &orphans {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    }
    let cache = open(&dir);
    for _ in 0..100 {
        if cache.stats().disk.unwrap().orphans_removed == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cache.stats().disk.unwrap().orphans_removed, 2);
    assert_eq!(files_under(&dir), 1);
    assert_eq!(
        body_of(&cache.lookup_disk(&key("/kept")).unwrap()[0]),
        vec![9; 100_000]
    );
}

#[test]
fn a_damaged_body_file_is_dropped_never_served() {
    let dir = temp_dir();
    {
        let cache = open(&dir);
        store(&cache, entry("/torn", vec![5; 100_000], &[], None));
        cache.flush();
    }
    // Truncate the body file as a torn write would.
    let mut files = Vec::new();
    for l1 in std::fs::read_dir(dir.join("bodies")).unwrap().flatten() {
        for l2 in std::fs::read_dir(l1.path()).unwrap().flatten() {
            for f in std::fs::read_dir(l2.path()).unwrap().flatten() {
                files.push(f.path());
            }
        }
    }
    std::fs::write(&files[0], vec![5; 10]).unwrap();
    let cache = open(&dir);
    assert!(cache.lookup_disk(&key("/torn")).is_none());
    cache.flush();
    assert_eq!(cache.stats().disk.unwrap().corrupt_dropped, 1);
    assert_eq!(cache.stats().disk.unwrap().entries, 0);
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let dir = temp_dir();
    let _first = open(&dir);
    let err = Cache::with_disk(CacheConfig::default(), DiskConfig::new(&*dir))
        .err()
        .unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_damaged_index_is_set_aside_and_start_up_continues() {
    let dir = temp_dir();
    std::fs::create_dir_all(&*dir).unwrap();
    std::fs::write(dir.join("index.redb"), vec![0x42; 8192]).unwrap();
    let cache = open(&dir);
    store(&cache, entry("/fresh", vec![1], &[], None));
    cache.flush();
    assert!(cache.lookup_disk(&key("/fresh")).is_some());
    let aside = std::fs::read_dir(&*dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("damaged"));
    assert!(aside);
}

#[test]
fn arc_entries_shared_between_tiers_are_one_copy() {
    // A version read back from disk while memory holds it takes the held
    // body bytes instead of keeping a second copy.
    let dir = temp_dir();
    let cache = open(&dir);
    store(&cache, entry("/one", vec![7; 10], &[], None));
    cache.flush();
    let in_memory = cache.lookup(&key("/one")).unwrap();
    let from_disk = cache.lookup_disk(&key("/one")).unwrap();
    assert!(
        !Arc::ptr_eq(&in_memory[0], &from_disk[0]),
        "lookup_disk must build its entry from the disk copy"
    );
    let body = |e: &Entry| {
        e.body
            .bytes()
            .expect("a 10-byte body is held in memory")
            .as_ptr()
    };
    assert_eq!(
        body(&in_memory[0]),
        body(&from_disk[0]),
        "the entry read from disk holds a second copy of the body"
    );
    let now = cache.lookup(&key("/one")).unwrap();
    assert!(Arc::ptr_eq(&now[0], &from_disk[0]));
}

#[test]
fn a_promotion_racing_a_purge_never_leaves_the_purged_entry_in_memory() {
    let dir = temp_dir();
    {
        let cache = open(&dir);
        store(&cache, entry("/hot", vec![1; 10], &["t"], None));
        cache.flush();
    }
    let cache = Arc::new(open(&dir));
    for round in 0..200 {
        assert!(cache.lookup_disk(&key("/hot")).is_some() || round > 0);
        let promoter = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    cache.lookup_disk(&key("/hot"));
                }
            })
        };
        cache.purge(&[Invalidation::Tag(Tag::new(0, "t"))]).unwrap();
        promoter.join().unwrap();
        assert!(
            cache.lookup(&key("/hot")).is_none(),
            "round {round}: a purged entry came back"
        );
        assert!(cache.lookup_disk(&key("/hot")).is_none());
        store(&cache, entry("/hot", vec![1; 10], &["t"], None));
        cache.flush();
    }
}

#[test]
fn a_refresh_rewrites_the_disk_copy_only_when_more_than_the_date_changed() {
    let dir = temp_dir();
    let seconds = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let then = SystemTime::now() - Duration::from_secs(100);
    let now = SystemTime::now();
    {
        let cache = open(&dir);
        let first = cache
            .store(
                entry("/same", b"a".to_vec(), &[], Some(then)),
                cache.begin_fill(),
            )
            .entry()
            .clone();
        let refreshed = entry("/same", b"a".to_vec(), &[], Some(now));
        cache.store_refresh(&first, refreshed, cache.begin_fill());

        let first = cache
            .store(
                entry("/changed", b"b".to_vec(), &[], Some(then)),
                cache.begin_fill(),
            )
            .entry()
            .clone();
        let mut refreshed = entry("/changed", b"b".to_vec(), &[], Some(now));
        let mut headers = refreshed.headers.to_map(1);
        headers.insert("cache-control", HeaderValue::from_static("max-age=5"));
        refreshed.headers = (&headers).into();
        cache.store_refresh(&first, refreshed, cache.begin_fill());
        // Memory has the refreshed copies either way.
        let in_memory = cache.lookup(&key("/same")).unwrap();
        assert_eq!(in_memory[0].date().map(seconds), Some(seconds(now)));
        cache.flush();
    }
    let cache = open(&dir);
    let same = cache.lookup_disk(&key("/same")).unwrap();
    assert_eq!(same[0].date().map(seconds), Some(seconds(then)));
    assert_eq!(body_of(&same[0]), b"a");
    let changed = cache.lookup_disk(&key("/changed")).unwrap();
    assert_eq!(changed[0].date().map(seconds), Some(seconds(now)));
    assert_eq!(
        changed[0].headers.get("cache-control").unwrap(),
        "max-age=5"
    );
    drop(cache);
}

#[test]
fn a_version_whose_disk_write_was_dropped_is_written_by_its_next_refresh() {
    let dir = temp_dir();
    let then = SystemTime::now() - Duration::from_secs(100);
    let now = SystemTime::now();
    let old = |t: &str| versioned_entry(t, "\"old\"", b"old".to_vec(), &[], Some(then));
    let new = |t: &str, date| versioned_entry(t, "\"new\"", b"new".to_vec(), &[], Some(date));
    let targets: Vec<String> = (0..64).map(|i| format!("/k{i}")).collect();
    {
        // A one-slot queue: stores made faster than the writer commits are
        // dropped, as under a burst with the default queue.
        let cache = open_with(&dir, |c| c.write_queue = 1);
        for t in &targets {
            store(&cache, old(t));
            cache.flush();
        }
        let newer: Vec<Arc<Entry>> = targets
            .iter()
            .map(|t| {
                cache
                    .store(new(t, then), cache.begin_fill())
                    .entry()
                    .clone()
            })
            .collect();
        cache.flush();
        let dropped = cache.stats().disk.map_or(0, |d| d.writes_dropped);
        assert!(dropped > 0, "the burst of stores overflowed the queue");

        // Revalidations that change nothing but Date, one at a time so
        // that none of their writes is dropped.
        for previous in &newer {
            let refreshed = new(previous.key.target(), now);
            cache.store_refresh(previous, refreshed, cache.begin_fill());
            cache.flush();
        }
    }
    let cache = open(&dir);
    for t in &targets {
        let found = cache.lookup_disk(&key(t)).unwrap();
        assert_eq!(body_of(&found[0]), b"new", "{t} after a restart");
    }
    drop(cache);
}
