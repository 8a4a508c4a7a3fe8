//! The disk tier when the disk fails or the data dir is not safe: a full
//! filesystem (a real tmpfs, filled up), a damaged index, a data dir that
//! another user owns or may write to.
//!
//! Mounting needs root (CI runs tests as root); every mount is undone when
//! its test ends, passed or failed.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use revcache_core::Invalidation;
use revcache_core::data_dir::{self, DataDirError};
use revcache_core::{
    Cache, CacheConfig, DiskConfig, DiskError, DiskState, Entry, EntryTiming, Freshness, KeyClass,
    Partition, PrimaryKey, Tag, Version,
};

/// A directory removed when the test ends; declared before what uses it.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "revcache-faults-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    TempDir(d)
}

/// A tmpfs of `size` mounted for one test; unmounted (lazily, so a file
/// still open cannot keep it) and removed on drop.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        std::fs::create_dir_all(&dir.0).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir.0)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        &self.0.0
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn key(target: &str) -> PrimaryKey {
    PrimaryKey::new(0, KeyClass::Get, "origin", target, Partition::Public)
}

fn entry(target: &str, body: Vec<u8>, tags: &[&str]) -> Entry {
    Entry::new(
        key(target),
        Box::new([]),
        Version::from_etag("\"v\""),
        StatusCode::OK,
        HeaderMap::new(),
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

fn open(dir: &Path) -> Result<Cache, DiskError> {
    open_reopening_after(dir, Duration::from_secs(10))
}

fn open_reopening_after(dir: &Path, reopen: Duration) -> Result<Cache, DiskError> {
    let mut config = DiskConfig::new(dir);
    config.reopen_interval = reopen;
    Cache::with_disk(CacheConfig::default(), config)
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_purge_on_a_full_disk_fails_and_its_entries_never_come_back() {
    let fs = Tmpfs::mount("8m");
    let dir = fs.path().join("data");
    // Long enough for the purge below to find the tier still disabled.
    let cache = open_reopening_after(&dir, Duration::from_secs(3)).unwrap();
    store(&cache, entry("/purged", vec![1; 100], &["t"]));
    store(&cache, entry("/big", vec![2; 100_000], &["t"]));
    store(&cache, entry("/kept", vec![3; 100], &[]));
    cache.flush();
    assert_eq!(cache.disk_state(), DiskState::Enabled);

    let filler = fs.fill();
    // New index pages need space the filesystem no longer has.
    for i in 0..2000 {
        store(
            &cache,
            entry(&format!("/fill/{i}"), vec![i as u8; 16 << 10], &[]),
        );
        cache.flush();
        if cache.disk_state() != DiskState::Enabled {
            break;
        }
    }
    let DiskState::Disabled { reason } = cache.disk_state() else {
        panic!("a full disk left the disk tier enabled");
    };
    assert!(reason.contains("space"), "{reason}");
    assert!(cache.stats().disk.unwrap().errors > 0);

    // The purge reaches memory but not the disk: an error, not a count.
    let err = cache
        .purge(&[Invalidation::Tag(Tag::new(0, "t"))])
        .expect_err("a purge the disk did not commit must fail");
    assert_eq!(err.in_memory, 2);
    assert!(
        err.to_string().contains("did not reach the disk tier"),
        "{err}"
    );
    assert!(cache.lookup(&key("/purged")).is_none());
    assert!(cache.lookup_disk(&key("/purged")).is_none());
    assert_eq!(cache.stats().disk.unwrap().tombstones, 1);

    // Space comes back: the index reopens and the removal commits.
    std::fs::remove_file(filler).unwrap();
    eventually("the disk tier reopens", || {
        cache.disk_state() == DiskState::Enabled
    });
    assert_eq!(cache.stats().disk.unwrap().tombstones, 0);
    assert!(cache.lookup_disk(&key("/purged")).is_none());
    assert!(cache.lookup_disk(&key("/big")).is_none());
    assert!(cache.lookup_disk(&key("/kept")).is_some());
    assert_eq!(
        cache
            .purge(&[Invalidation::Target {
                route: None,
                target: "/kept".into()
            }])
            .unwrap(),
        1
    );
    store(&cache, entry("/after", vec![4; 100], &["t"]));
    cache.flush();
    drop(cache);

    // A restart finds what the disk holds: nothing purged comes back.
    let cache = open(&dir).unwrap();
    assert!(cache.lookup_disk(&key("/purged")).is_none());
    assert!(cache.lookup_disk(&key("/big")).is_none());
    assert!(cache.lookup_disk(&key("/kept")).is_none());
    assert!(cache.lookup_disk(&key("/after")).is_some());
}

#[test]
fn a_disk_tier_on_a_full_disk_opens_disabled_and_reopens_once_there_is_space() {
    let fs = Tmpfs::mount("1m");
    let filler = fs.fill();
    let dir = fs.path().join("data");
    // The index cannot be created: the tier is there, disabled (a purge
    // meanwhile says it did not reach the disk), not absent.
    let cache = open_reopening_after(&dir, Duration::from_millis(50)).unwrap();
    let DiskState::Disabled { reason } = cache.disk_state() else {
        panic!("a full disk opened an enabled tier");
    };
    assert!(reason.contains("space"), "{reason}");
    std::fs::remove_file(filler).unwrap();
    eventually("the disk tier reopens", || {
        cache.disk_state() == DiskState::Enabled
    });
}

#[test]
fn sweeping_an_index_with_a_short_access_row_keeps_the_writer_running() {
    let dir = temp_dir("short-key");
    {
        let cache = open(&dir.0).unwrap();
        store(&cache, entry("/a", vec![1; 100], &[]));
        cache.flush();
    }
    // A damaged index: an access row too short to name an entry, in the
    // oldest bucket so the idle sweep reads it.
    {
        let db = redb::Database::create(dir.0.join("index.redb")).unwrap();
        // The access table, as DESIGN.md lays it out.
        let access: redb::TableDefinition<&[u8], ()> = redb::TableDefinition::new("access");
        let txn = db.begin_write().unwrap();
        txn.open_table(access)
            .unwrap()
            .insert([0u8, 0].as_slice(), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let cache = open(&dir.0).unwrap();
    let disk = cache.disk().unwrap();
    let report = disk
        .sweep_all()
        .expect("the sweep must survive a short row");
    assert_eq!(report.idle, 0);
    // The writer still commits: a purge and a store after the sweep work.
    assert_eq!(
        cache
            .purge(&[Invalidation::Target {
                route: None,
                target: "/a".into()
            }])
            .unwrap(),
        1
    );
    store(&cache, entry("/b", vec![2; 100], &[]));
    cache.flush();
    assert!(cache.lookup_disk(&key("/b")).is_some());
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

#[test]
fn the_data_dir_and_everything_in_it_are_owner_only() {
    let dir = temp_dir("modes");
    data_dir::open(&dir.0).unwrap();
    let cache = open(&dir.0).unwrap();
    store(&cache, entry("/big", vec![7; 100_000], &[]));
    cache.flush();
    assert_eq!(mode(&dir.0), 0o700);
    for sub in ["bodies", "tmp"] {
        assert_eq!(mode(&dir.0.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&dir.0.join("index.redb")), 0o600);
    let l1 = std::fs::read_dir(dir.0.join("bodies"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let l2 = std::fs::read_dir(&l1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let body = std::fs::read_dir(&l2)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!((mode(&l1), mode(&l2), mode(&body)), (0o700, 0o700, 0o600));
    assert_eq!(mode(&dir.0.join("FORMAT")), 0o600);
}

#[test]
fn the_index_and_body_dirs_an_older_revcache_left_readable_are_made_owner_only() {
    let dir = temp_dir("old-index");
    drop(open(&dir.0).unwrap());
    let index = dir.0.join("index.redb");
    let readable = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    readable(&index, 0o644).unwrap();
    readable(&dir.0.join("bodies"), 0o755).unwrap();
    readable(&dir.0.join("tmp"), 0o755).unwrap();
    let cache = open(&dir.0).unwrap();
    assert_eq!(mode(&index), 0o600);
    assert_eq!(mode(&dir.0.join("bodies")), 0o700);
    assert_eq!(mode(&dir.0.join("tmp")), 0o700);
    drop(cache);
}

#[test]
fn a_data_dir_another_user_owns_or_others_may_write_is_refused() {
    let dir = temp_dir("foreign-owner");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::os::unix::fs::chown(&dir.0, Some(4242), None).unwrap();
    let err = data_dir::open(&dir.0).unwrap_err();
    assert!(
        matches!(err, DataDirError::NotOwned { owner: 4242, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chown"), "{err}");
    let err = open(&dir.0)
        .err()
        .expect("the disk tier must refuse it too");
    assert!(!err.is_disk_fault(), "{err}");

    std::os::unix::fs::chown(&dir.0, Some(data_dir::current_user()), None).unwrap();
    for writable in [0o770, 0o707, 0o777] {
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(writable)).unwrap();
        let err = data_dir::open(&dir.0).unwrap_err();
        assert!(matches!(err, DataDirError::Writable { .. }), "{err}");
        assert!(err.to_string().contains("chmod go-w"), "{err}");
    }
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o750)).unwrap();
    data_dir::open(&dir.0).unwrap();

    // The directories revcache makes inside it are checked too.
    let tmp = dir.0.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::os::unix::fs::chown(&tmp, Some(4242), None).unwrap();
    let err = open(&dir.0).err().expect("a tmp/ another user owns");
    assert!(err.to_string().contains("uid 4242"), "{err}");
}

#[test]
fn a_symlink_planted_in_the_data_dir_is_never_written_through() {
    let dir = temp_dir("symlink");
    let victim_dir = temp_dir("victim");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::create_dir_all(&victim_dir.0).unwrap();
    let victim = victim_dir.0.join("precious");
    std::fs::write(&victim, b"precious").unwrap();
    // The FORMAT marker's temp file (written to upgrade an older
    // format), and the index itself, as links.
    std::fs::write(dir.0.join("FORMAT"), "revcache data dir, format 0\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.0.join("FORMAT.tmp")).unwrap();
    assert_eq!(data_dir::open(&dir.0).unwrap(), data_dir::Opened::Older(0));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    std::os::unix::fs::symlink(&victim, dir.0.join("index.redb")).unwrap();
    assert!(open(&dir.0).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // A linked tmp/ is refused rather than written into.
    std::fs::remove_file(dir.0.join("index.redb")).unwrap();
    std::os::unix::fs::symlink(&victim_dir.0, dir.0.join("tmp")).unwrap();
    let err = open(&dir.0).err().expect("a linked tmp/");
    assert!(err.to_string().contains("not a symlink"), "{err}");
}
