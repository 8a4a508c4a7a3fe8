//! The disk tier under injected faults (`revcache_core::disk_faults`).
//!
//! A seeded random workload of stores, lookups, purges, sweeps, flushes
//! and restarts runs while the Nth disk operation (an index read, write,
//! resize or sync; a body file's write or sync) fails with ENOSPC or EIO,
//! writes half, or "crashes": every index write not yet synced is lost and
//! the disk refuses everything until the next restart. After every step
//! and every recovery:
//!
//! - no body is served under another version (or another key),
//! - no purge the cache acknowledged comes back,
//! - nothing panics (the writer's panics are caught and would show in the
//!   tier's disabled reason),
//! - the tier reopens once the disk works again, or runs memory-only
//!   meanwhile.
//!
//! The countdown is process-wide: the tests of this file take turns
//! (`FAULTS`).
//! `REVCACHE_FAULT_CASES` runs more cases than CI's (the campaign's
//! figures are in bench/README.md); `REVCACHE_FAULT_SEED` replays one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use revcache_core::disk_faults::{self, Fault};
use revcache_core::{
    Cache, CacheConfig, DiskConfig, DiskState, Entry, EntryBody, EntryTiming, Freshness,
    Invalidation, KeyClass, Partition, PrimaryKey, Tag, Version,
};

const KEYS: usize = 8;

/// Held by each test for its whole run: the countdown is the process's.
static FAULTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn faults() -> std::sync::MutexGuard<'static, ()> {
    FAULTS.lock().unwrap_or_else(|e| e.into_inner())
}
const STEPS: usize = 40;

/// splitmix64: a seed names a whole case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn target(k: usize) -> String {
    format!("/doc/{k}")
}

fn key(k: usize) -> PrimaryKey {
    PrimaryKey::new(0, KeyClass::Get, "origin", &target(k), Partition::Public)
}

fn etag(n: u64) -> Version {
    Version::from_etag(&format!("\"{n}\""))
}

/// Version `n` of key `k`: its own bytes, inline in the index, in a body
/// file, or one large enough to be streamed from its file.
fn body(k: usize, n: u64, size: usize) -> Vec<u8> {
    let stamp = format!("{k}:{n};");
    stamp.bytes().cycle().take(size.max(stamp.len())).collect()
}

fn entry(k: usize, n: u64, size: usize) -> Entry {
    let now = SystemTime::now();
    Entry::new(
        key(k),
        Box::new([]),
        etag(n),
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from(body(k, n, size)),
        vec![Tag::new(0, format!("group{}", k % 3)), Tag::new(0, "all")],
        EntryTiming {
            request_time: now,
            response_time: now,
            initial_age: Duration::ZERO,
        },
        Freshness {
            lifetime: Duration::from_secs(600),
            ..Freshness::default()
        },
    )
}

/// What the cache promised: per key, the versions it stored and the
/// newest version an acknowledged purge removed.
#[derive(Default)]
struct Model {
    sizes: HashMap<(usize, u64), usize>,
    purged_up_to: [u64; KEYS],
    next: u64,
}

impl Model {
    /// Checks one entry found for key `k`.
    fn check(&self, k: usize, e: &Entry, case: &str) {
        assert_eq!(e.key, key(k), "{case}: an entry under another key");
        let bytes = match &e.body {
            EntryBody::Memory(b) => b.to_vec(),
            EntryBody::File(f) => match std::fs::read(&f.path) {
                Ok(bytes) => bytes,
                // A newer version's commit removed the file since the
                // index was read: revcache cannot serve it either (it
                // opens the file to serve it, and fetches when it cannot).
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
                Err(err) => panic!("{case}: body file unreadable: {err}"),
            },
        };
        let stamp = String::from_utf8_lossy(&bytes[..bytes.len().min(24)]).into_owned();
        let n: u64 = stamp
            .split_once(':')
            .and_then(|(kk, rest)| (kk == k.to_string()).then_some(rest))
            .and_then(|rest| rest.split_once(';'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{case}: key {k} served a body not its own: {stamp:?}"));
        assert_eq!(
            e.version,
            etag(n),
            "{case}: key {k} body of v{n} under another version"
        );
        let size = self.sizes.get(&(k, n)).copied();
        assert_eq!(
            Some(bytes.len()),
            size,
            "{case}: key {k} v{n} served with a torn body"
        );
        assert!(
            bytes == body(k, n, bytes.len()),
            "{case}: key {k} v{n}: wrong bytes"
        );
        assert!(
            n > self.purged_up_to[k],
            "{case}: key {k} v{n} is back after a purge acknowledged up to v{}",
            self.purged_up_to[k]
        );
    }
}

/// The cache as revcache runs it: with its disk tier, or memory-only when
/// the tier cannot open (the error must say why).
fn open(dir: &Path, case: &str) -> Cache {
    let mut config = DiskConfig::new(dir);
    config.reopen_interval = Duration::from_millis(20);
    config.byte_limit = 256 << 10;
    match Cache::with_disk(CacheConfig::default(), config) {
        Ok(cache) => cache,
        Err(e) => {
            let reason = e.to_string();
            assert!(
                !reason.is_empty(),
                "{case}: an opening error without a reason"
            );
            Cache::without_failed_disk(CacheConfig::default(), reason)
        }
    }
}

fn no_caught_panic(cache: &Cache, case: &str) {
    if let DiskState::Disabled { reason } = cache.disk_state() {
        assert!(
            !reason.contains("writer stopped"),
            "{case}: the disk writer panicked: {reason}"
        );
    }
}

fn check_all(cache: &Cache, model: &Model, case: &str) {
    no_caught_panic(cache, case);
    for k in 0..KEYS {
        for e in cache.lookup(&key(k)).iter().flat_map(|v| v.iter()) {
            model.check(k, e, case);
        }
        for e in cache.lookup_disk(&key(k)).iter().flat_map(|v| v.iter()) {
            model.check(k, e, case);
        }
    }
}

fn dir_for(seed: u64) -> PathBuf {
    std::env::temp_dir().join(format!(
        "revcache-fault-injection-{}-{seed}",
        std::process::id()
    ))
}

/// How one case went.
struct Ran {
    fired: bool,
}

fn run_case(seed: u64) -> Ran {
    let mut rng = Rng(seed);
    let fault = match rng.below(4) {
        0 => Fault::NoSpace,
        1 => Fault::Io,
        2 => Fault::ShortWrite,
        _ => Fault::Crash,
    };
    let after = 1 + rng.below(500);
    let case = format!("seed {seed} ({fault:?} at disk operation {after})");
    let dir = dir_for(seed);
    let _ = std::fs::remove_dir_all(&dir);
    let mut model = Model::default();
    disk_faults::enable();
    disk_faults::disarm();
    let mut cache = open(&dir, &case);
    disk_faults::arm(after, fault);
    let trace = std::env::var_os("REVCACHE_FAULT_TRACE").is_some();
    let say = |what: String| {
        if trace {
            eprintln!("{what} (fault fired: {})", disk_faults::fired());
        }
    };
    for _ in 0..STEPS {
        match rng.below(20) {
            0..=7 => {
                let k = rng.below(KEYS as u64) as usize;
                model.next += 1;
                let size = match rng.below(12) {
                    0..=6 => 100 + rng.below(4000) as usize,
                    7..=10 => (20 << 10) + rng.below(60 << 10) as usize,
                    _ => (1 << 20) + rng.below(64 << 10) as usize,
                };
                model.sizes.insert((k, model.next), size);
                say(format!("store key {k} v{} ({size} B)", model.next));
                cache.store(entry(k, model.next, size), cache.begin_fill());
            }
            8..=10 => {
                let k = rng.below(KEYS as u64) as usize;
                for e in cache.lookup_disk(&key(k)).iter().flat_map(|v| v.iter()) {
                    model.check(k, e, &case);
                }
            }
            11..=13 => {
                let (invalidation, reached): (Invalidation, Vec<usize>) = match rng.below(3) {
                    0 => {
                        let k = rng.below(KEYS as u64) as usize;
                        (
                            Invalidation::Target {
                                route: None,
                                target: target(k),
                            },
                            vec![k],
                        )
                    }
                    1 => {
                        let g = rng.below(3) as usize;
                        (
                            Invalidation::Tag(Tag::new(0, format!("group{g}"))),
                            (0..KEYS).filter(|k| k % 3 == g).collect(),
                        )
                    }
                    _ => (Invalidation::Tag(Tag::new(0, "all")), (0..KEYS).collect()),
                };
                let purged = cache.purge(std::slice::from_ref(&invalidation));
                say(format!("purge {invalidation:?}: {purged:?}"));
                if purged.is_ok() {
                    for k in reached {
                        model.purged_up_to[k] = model.next;
                    }
                }
            }
            14 => {
                say("sweep".into());
                if let Some(disk) = cache.disk() {
                    let _ = disk.sweep();
                }
            }
            15..=17 => {
                say("flush".into());
                cache.flush();
            }
            _ => {
                say(format!("restart ({:?})", cache.disk_state()));
                drop(cache);
                if disk_faults::fired() && fault == Fault::Crash {
                    // The machine is back: the disk works again.
                    disk_faults::disarm();
                }
                cache = open(&dir, &case);
                check_all(&cache, &model, &case);
            }
        }
        check_all(&cache, &model, &case);
    }
    let fired = disk_faults::fired();
    // The disk works again: a transient fault's tier reopens by itself,
    // and a restart opens it in any case.
    disk_faults::disarm();
    if cache.disk().is_some() {
        let until = Instant::now() + Duration::from_secs(10);
        while cache.disk_state() != DiskState::Enabled {
            no_caught_panic(&cache, &case);
            assert!(Instant::now() < until, "{case}: the tier did not reopen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    check_all(&cache, &model, &case);
    drop(cache);
    let cache = open(&dir, &case);
    assert_eq!(
        cache.disk_state(),
        DiskState::Enabled,
        "{case}: the tier did not open on a working disk"
    );
    check_all(&cache, &model, &case);
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
    Ran { fired }
}

#[test]
fn random_workloads_under_disk_faults_never_serve_wrong_bytes_or_undo_purges() {
    let _turn = faults();
    if let Some(seed) = std::env::var("REVCACHE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_case(seed);
        return;
    }
    let cases: u64 = std::env::var("REVCACHE_FAULT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let started = Instant::now();
    let fired = (0..cases).map(run_case).filter(|r| r.fired).count();
    eprintln!(
        "{cases} cases, {fired} with their fault fired, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A campaign whose faults never fire tests nothing.
    assert!(
        fired * 2 >= cases as usize,
        "only {fired} of {cases} cases reached their fault"
    );
}

/// Found by the random workload (seed 1): the index failed to open after a
/// restart, revcache ran without its disk tier, acknowledged a purge the
/// disk never saw, and the next restart served the purged entry again.
#[test]
fn an_index_the_disk_fails_to_open_leaves_the_tier_disabled_and_purges_reach_it_once_it_reopens() {
    let _turn = faults();
    disk_faults::enable();
    disk_faults::disarm();
    let dir = dir_for(u64::MAX);
    let _ = std::fs::remove_dir_all(&dir);
    let case = "open fault";
    let cache = open(&dir, case);
    cache.store(entry(0, 1, 100), cache.begin_fill());
    cache.store(entry(1, 2, 100), cache.begin_fill());
    cache.flush();
    drop(cache);

    // From the first disk operation of the next start on, the disk
    // fails (a crash: every operation fails until disarmed).
    disk_faults::arm(1, Fault::Crash);
    let cache = open(&dir, case);
    assert!(disk_faults::fired());
    let DiskState::Disabled { reason } = cache.disk_state() else {
        panic!(
            "a tier whose index failed to open is {:?}",
            cache.disk_state()
        );
    };
    assert!(reason.contains("Input/output error"), "{reason}");
    let purge = [Invalidation::Target {
        route: None,
        target: target(0),
    }];
    let err = cache
        .purge(&purge)
        .expect_err("a purge the disk did not commit must say so");
    assert!(
        err.to_string().contains("did not reach the disk tier"),
        "{err}"
    );

    // The disk works again: the tier reopens, committing the purge first.
    disk_faults::disarm();
    let until = Instant::now() + Duration::from_secs(10);
    while cache.disk_state() != DiskState::Enabled {
        assert!(Instant::now() < until, "the tier did not reopen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache.stats().disk.unwrap().tombstones, 0);
    assert!(cache.lookup_disk(&key(0)).is_none());
    assert!(cache.lookup_disk(&key(1)).is_some());
    drop(cache);
    let cache = open(&dir, case);
    assert!(
        cache.lookup_disk(&key(0)).is_none(),
        "the purged entry came back"
    );
    assert!(cache.lookup_disk(&key(1)).is_some());
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_whose_disk_tier_could_not_open_reports_purges_as_not_reaching_the_disk() {
    let cache = Cache::without_failed_disk(CacheConfig::default(), "disk full".into());
    cache.store(entry(0, 1, 100), cache.begin_fill());
    let err = cache
        .purge(&[Invalidation::Target {
            route: None,
            target: target(0),
        }])
        .expect_err("the disk still holds what it held");
    assert_eq!(err.in_memory, 1);
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(cache.lookup(&key(0)).is_none());
}
