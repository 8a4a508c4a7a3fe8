//! L2, the disk tier: entries that survive restarts and crashes.
//!
//! The index and small bodies live in one redb database (`index.redb`);
//! larger bodies live in content-addressed files (see [`blobs`]). Every
//! change goes through one writer thread that applies operations in order
//! and commits them in batches, so a purge queued after a fill is applied
//! after it, and re-checks generations at apply time. Reads are plain redb
//! read transactions and never wait for the writer. `DESIGN.md` in this
//! crate argues why each step is crash-safe.
//!
//! It fails closed: after a write the disk refused (full, I/O error) the
//! tier is disabled (lookups miss, writes are dropped, removals fail and
//! are kept as in-memory tombstones that hide what they reach) until the
//! writer reopens the index and commits those removals.
//!
//! Blocking: every method here does disk I/O or waits for the writer;
//! async callers run them on a blocking pool.

mod blobs;
mod error;
#[doc(hidden)]
pub mod faults;
pub mod format;
mod sweep;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase};

use self::blobs::BlobStore;
pub use self::error::DiskError;
use self::format::{BLOBS, ENTRIES, StoredBody, TAGS};
use crate::clock::Clock;
use crate::entry::{BodyFile, Entry, EntryBody, NOT_ON_DISK};
use crate::generation::{FillTicket, Generations};
use crate::invalidation::Invalidation;
use crate::key::PrimaryKey;

#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// The data dir; the tier keeps `index.redb`, `bodies/` and `tmp/` in it.
    pub dir: PathBuf,
    /// Bodies up to this size are stored inside the index.
    pub inline_threshold: u64,
    /// Memory the index keeps of its pages (redb's cache; its own default
    /// is 1 GiB, more than the memory tier of most deployments). The
    /// operating system's page cache still holds the file besides.
    pub index_cache: u64,
    /// Bodies larger than this are streamed from their file when read back.
    pub stream_threshold: u64,
    /// Granularity of recorded access times.
    pub access_bucket: Duration,
    /// Entries not used for this long are swept.
    pub max_idle: Duration,
    /// Byte budget: the index as it takes space on disk (its rows times
    /// the overhead measured at each sweep interval, see
    /// [`DiskStats::index_bytes`]) plus body files; the least recently
    /// used buckets go first when it is exceeded.
    pub byte_limit: u64,
    pub sweep_interval: Duration,
    /// Most entries one sweep step removes (one transaction).
    pub sweep_batch: usize,
    /// Most writes waiting for the writer; beyond it, stores and touches are
    /// dropped (counted) rather than slowing the requests that make them.
    pub write_queue: usize,
    /// How often a tier disabled by a disk failure tries to reopen.
    pub reopen_interval: Duration,
    /// Access buckets and idle sweeps read this clock.
    pub clock: Clock,
}

impl DiskConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskConfig {
            dir: dir.into(),
            inline_threshold: 16 << 10,
            index_cache: 64 << 20,
            stream_threshold: 1 << 20,
            access_bucket: Duration::from_secs(3600),
            max_idle: Duration::from_secs(14 * 86400),
            byte_limit: 10 << 30,
            sweep_interval: Duration::from_secs(600),
            sweep_batch: 1000,
            write_queue: 8192,
            reopen_interval: Duration::from_secs(10),
            clock: Clock::system(),
        }
    }

    pub(crate) fn bucket_at(&self, t: SystemTime) -> u32 {
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        (secs / self.access_bucket.as_secs().max(1)).min(u64::from(u32::MAX)) as u32
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub idle: u64,
    pub over_budget: u64,
    /// More was due than one step removes; the writer sweeps again soon.
    pub more: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DiskStats {
    pub entries: u64,
    /// Bytes of index rows (metadata and inline bodies).
    pub row_bytes: u64,
    /// What the index takes on disk: its rows times the overhead of its
    /// B-tree pages, secondary tables and redb's own pages, as measured
    /// (redb's allocated pages per row byte) at the last sweep interval.
    pub index_bytes: u64,
    pub file_bytes: u64,
    pub files: u64,
    pub sweeps: u64,
    pub swept_idle: u64,
    pub swept_over_budget: u64,
    pub orphans_removed: u64,
    pub corrupt_dropped: u64,
    /// Writes not persisted because the writer queue was full.
    pub writes_dropped: u64,
    /// Writes the disk refused: failed batches, body files, reopenings.
    pub errors: u64,
    /// Removals that have not reached the disk yet (their entries are
    /// hidden from lookups meanwhile).
    pub tombstones: u64,
    /// Why the tier is disabled, while it is.
    pub disabled: Option<String>,
    pub load_time: Duration,
}

impl DiskStats {
    /// The bytes the byte budget applies to: the index and body files.
    pub fn bytes(&self) -> u64 {
        self.index_bytes + self.file_bytes
    }
}

/// One entry as `revcache inspect` shows it.
#[derive(Clone, Debug)]
pub struct InspectRow {
    pub key: PrimaryKey,
    pub version: String,
    pub status: u16,
    pub body_bytes: u64,
    pub body_in_file: bool,
    pub tags: Vec<String>,
    pub age: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    entries: AtomicU64,
    row_bytes: AtomicU64,
    file_bytes: AtomicU64,
    files: AtomicU64,
    sweeps: AtomicU64,
    swept_idle: AtomicU64,
    swept_over_budget: AtomicU64,
    orphans: AtomicU64,
    corrupt: AtomicU64,
    writes_dropped: AtomicU64,
    errors: AtomicU64,
    load_micros: AtomicU64,
    /// Index bytes on disk per row byte, in thousandths (0: not measured).
    index_overhead_milli: AtomicU64,
}

pub(crate) enum Op {
    Put {
        entry: Arc<Entry>,
        ticket: FillTicket,
    },
    Touch {
        key: Vec<u8>,
        bucket: u32,
    },
    Drop {
        key: Vec<u8>,
    },
    Remove {
        removals: Vec<Invalidation>,
        done: SyncSender<Result<usize, DiskError>>,
    },
    Sweep {
        done: SyncSender<Result<SweepReport, DiskError>>,
    },
    Flush {
        done: SyncSender<()>,
    },
    /// Body files the orphan collection found unreferenced; the writer
    /// deletes those still unreferenced when its transaction commits.
    Orphans {
        hashes: Vec<[u8; 32]>,
    },
}

pub(crate) struct Shared {
    /// The open index; `None` while the tier is disabled by a failure.
    db: RwLock<Option<Arc<Database>>>,
    index: PathBuf,
    blobs: BlobStore,
    config: DiskConfig,
    generations: Arc<Generations>,
    counters: Counters,
    /// Why the tier is disabled, while it is.
    disabled: Mutex<Option<String>>,
    /// Removals that failed to commit, oldest first. They hide what they
    /// reach from lookups, and the writer applies them before anything
    /// else in each transaction until one commits.
    tombstones: Mutex<Vec<Invalidation>>,
    /// The last measure of the index's overhead in this process.
    overhead_measured: Mutex<Option<OverheadMeasure>>,
}

/// When the index's overhead was measured, its row bytes then, and how
/// long measuring took.
#[derive(Clone, Copy)]
struct OverheadMeasure {
    at: Instant,
    row_bytes: u64,
    took: Duration,
}

impl Shared {
    /// Index bytes on disk per row byte, as last measured (1 before).
    fn index_overhead(&self) -> f64 {
        match self.counters.index_overhead_milli.load(Ordering::Relaxed) {
            0 => 1.0,
            milli => milli as f64 / 1000.0,
        }
    }

    fn db(&self) -> Result<Arc<Database>, DiskError> {
        let db = self.db.read();
        db.clone().ok_or_else(|| self.unavailable())
    }

    fn unavailable(&self) -> DiskError {
        DiskError::Unavailable {
            reason: self
                .disabled
                .lock()
                .clone()
                .unwrap_or_else(|| "index closed".into()),
        }
    }

    fn tombstone(&self, removals: Vec<Invalidation>) {
        self.tombstones.lock().extend(removals);
    }

    fn error_counted(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct DiskTier {
    shared: Arc<Shared>,
    /// The orphan collection holds the index open; it stops and is joined
    /// on drop, so the data dir can be reopened at once.
    gc_stop: Arc<AtomicBool>,
    gc: Mutex<Option<JoinHandle<()>>>,
    ops: Mutex<Option<SyncSender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl DiskTier {
    /// Opens (or creates) the tier in `config.dir` without reading bodies,
    /// and starts the writer and a background collection of orphan files.
    /// An index that cannot be opened because it is damaged is set aside
    /// and a new one started: a cache may lose entries, never availability.
    pub fn open(config: DiskConfig, generations: Arc<Generations>) -> Result<Self, DiskError> {
        let started = Instant::now();
        crate::data_dir::ensure_private_dir(&config.dir, true)?;
        let index = config.dir.join("index.redb");
        let counters = Counters::default();
        // An index the disk fails to open or initialize (I/O errors, a full
        // disk) leaves the tier disabled, as a failure later would: lookups
        // miss, removals stay tombstones and report the failure, and the
        // writer reopens the index on its interval, committing them first.
        // Running without the tier instead would acknowledge purges the disk
        // never saw, and a restart on a working disk would serve those
        // entries again.
        let (db, disabled) = match open_index(&index, config.index_cache).and_then(|db| {
            writer::init(&db, &counters)?;
            Ok(db)
        }) {
            Ok(db) => (Some(Arc::new(db)), None),
            Err(e) if e.is_disk_fault() => {
                tracing::error!(
                    error = %e,
                    "disk tier index cannot be opened; serving from memory until it reopens"
                );
                counters.errors.fetch_add(1, Ordering::Relaxed);
                (None, Some(e.to_string()))
            }
            Err(e) => return Err(e),
        };
        let blobs = BlobStore::open(&config.dir)?;
        counters
            .load_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            db: RwLock::new(db),
            index,
            blobs,
            config,
            generations,
            counters,
            disabled: Mutex::new(disabled),
            tombstones: Mutex::new(Vec::new()),
            overhead_measured: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(shared.config.write_queue.max(1));
        let writer = {
            let shared = shared.clone();
            let dir = shared.config.dir.clone();
            std::thread::Builder::new()
                .name("revcache-disk".into())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| writer::run(&shared, rx));
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        // A bug, but the tier fails closed and says so.
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        *shared.disabled.lock() =
                            Some(format!("the disk tier's writer stopped: {what}"));
                        shared.db.write().take();
                    }
                })
                .map_err(DiskError::io(dir))?
        };
        let gc = shared.clone();
        let gc_stop = Arc::new(AtomicBool::new(false));
        let stop = gc_stop.clone();
        let gc_ops = tx.clone();
        // File times come from a coarse clock: leave a margin so a body
        // written just after start-up is never taken for an orphan.
        let before = SystemTime::now() - Duration::from_secs(2);
        let gc_thread = std::thread::Builder::new()
            .name("revcache-orphans".into())
            .spawn(move || collect_orphans(&gc, before, &stop, &gc_ops))
            .ok();
        Ok(DiskTier {
            gc_stop,
            gc: Mutex::new(gc_thread),
            shared,
            ops: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn config(&self) -> &DiskConfig {
        &self.shared.config
    }

    fn send(&self, op: Op) -> Result<(), DiskError> {
        let ops = self.ops.lock();
        ops.as_ref()
            .ok_or(DiskError::WriterGone)?
            .send(op)
            .map_err(|_| DiskError::WriterGone)
    }

    fn try_send(&self, op: Op) {
        let ops = self.ops.lock();
        if let Some(tx) = ops.as_ref()
            && let Err(TrySendError::Full(op)) = tx.try_send(op)
        {
            if let Op::Put { entry, .. } = op {
                entry.mark_missing_on_disk();
            }
            self.shared
                .counters
                .writes_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every stored variant of `key`. Entries that cannot be read are
    /// dropped from the index and skipped.
    pub fn lookup(&self, key: &PrimaryKey) -> Vec<Entry> {
        match self.read_variants(key) {
            Ok(found) => found,
            // Disabled: reported once, not on every memory miss.
            Err(DiskError::Unavailable { .. }) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, ?key, "disk tier lookup failed");
                Vec::new()
            }
        }
    }

    fn read_variants(&self, key: &PrimaryKey) -> Result<Vec<Entry>, DiskError> {
        let db = self.shared.db()?;
        let txn = db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let prefix = format::key_prefix(key);
        let mut out = Vec::new();
        for item in entries.range(prefix.as_slice()..)? {
            let (k, v) = item?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            if k.len() != prefix.len() + 8 {
                continue;
            }
            match self.materialize(key, v.value()) {
                Ok(entry) => out.push(entry),
                Err(why) => self.drop_corrupt(k, &why),
            }
        }
        // What a removal that has not reached the disk yet took stays
        // hidden: it must not be promoted back into memory.
        let tombstones = self.shared.tombstones.lock();
        if !tombstones.is_empty() {
            out.retain(|e| !tombstones.iter().any(|r| r.reaches(e)));
        }
        Ok(out)
    }

    fn materialize(&self, key: &PrimaryKey, bytes: &[u8]) -> Result<Entry, String> {
        let record = format::decode(bytes).map_err(|e| e.to_string())?;
        let body = match &record.body {
            StoredBody::Inline(b) => EntryBody::Memory(b.clone()),
            StoredBody::File { hash, len } => {
                let path = self.shared.blobs.path(hash);
                // A body is a plain file: never a link to elsewhere.
                let on_disk = std::fs::symlink_metadata(&path).and_then(|m| {
                    if m.is_file() {
                        Ok(m.len())
                    } else {
                        Err(std::io::ErrorKind::InvalidData.into())
                    }
                });
                if on_disk.as_ref().ok() != Some(len) {
                    return Err(format!(
                        "body file {} missing or of the wrong size",
                        path.display()
                    ));
                }
                if *len <= self.shared.config.stream_threshold {
                    let bytes =
                        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    if blobs::hash(&bytes) != *hash {
                        return Err(format!(
                            "body file {} does not match its hash",
                            path.display()
                        ));
                    }
                    EntryBody::Memory(bytes.into())
                } else {
                    EntryBody::File(BodyFile {
                        path: path.into(),
                        len: *len,
                    })
                }
            }
        };
        Ok(record.into_entry(key.clone(), body))
    }

    fn drop_corrupt(&self, key: &[u8], why: &str) {
        tracing::warn!(reason = why, "dropping unreadable disk entry");
        self.shared.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        self.try_send(Op::Drop { key: key.to_vec() });
    }

    /// Queues `entry` for storing. Dropped (and counted) when the queue is full.
    pub fn put(&self, entry: Arc<Entry>, ticket: FillTicket) {
        let bucket = self.shared.config.bucket_at(self.shared.config.clock.now());
        entry.access_bucket.store(bucket, Ordering::Relaxed);
        self.try_send(Op::Put { entry, ticket });
    }

    /// Records a use of `entry`; writes only when its access bucket changes.
    pub fn touch(&self, entry: &Entry, now: SystemTime) {
        let bucket = self.shared.config.bucket_at(now);
        // Read first: a hit must not write the entry's cache line (shared
        // by every core serving it) unless the bucket changed. An entry
        // missing on disk keeps its mark: its next refresh writes it. The
        // exchange (not a swap) keeps a mark set since the read.
        let recorded = entry.access_bucket.load(Ordering::Relaxed);
        if recorded != bucket
            && recorded != NOT_ON_DISK
            && entry
                .access_bucket
                .compare_exchange(recorded, bucket, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let key = format::entry_key(&entry.key, &entry.variant);
            self.try_send(Op::Touch { key, bucket });
        }
    }

    /// Removes what `removals` reach, durably and in one commit, before
    /// returning. When it cannot, the error says so and the removals stay
    /// as tombstones: lookups skip what they reach, and the writer retries
    /// them first in each transaction until one commits (lost if the
    /// process ends).
    pub fn remove(&self, removals: Vec<Invalidation>) -> Result<usize, DiskError> {
        let (done, wait) = mpsc::sync_channel(1);
        if let Err(e) = self.send(Op::Remove {
            removals: removals.clone(),
            done,
        }) {
            self.shared.tombstone(removals);
            return Err(e);
        }
        // The writer keeps the tombstones of removals it answers with an error.
        wait.recv().map_err(|_| DiskError::WriterGone)?
    }

    /// One sweep step (idle entries, then the byte budget).
    pub fn sweep(&self) -> Result<SweepReport, DiskError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Op::Sweep { done })?;
        wait.recv().map_err(|_| DiskError::WriterGone)?
    }

    /// Sweeps until nothing more is due.
    pub fn sweep_all(&self) -> Result<SweepReport, DiskError> {
        let mut total = SweepReport::default();
        loop {
            let r = self.sweep()?;
            total.idle += r.idle;
            total.over_budget += r.over_budget;
            if !r.more {
                return Ok(total);
            }
        }
    }

    /// Waits until every operation queued so far is committed.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.send(Op::Flush { done }).is_ok() {
            let _ = wait.recv();
        }
    }

    pub fn stats(&self) -> DiskStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiskStats {
            entries: get(&c.entries),
            row_bytes: get(&c.row_bytes),
            index_bytes: sweep::index_bytes(get(&c.row_bytes), self.shared.index_overhead()),
            file_bytes: get(&c.file_bytes),
            files: get(&c.files),
            sweeps: get(&c.sweeps),
            swept_idle: get(&c.swept_idle),
            swept_over_budget: get(&c.swept_over_budget),
            orphans_removed: get(&c.orphans),
            corrupt_dropped: get(&c.corrupt),
            writes_dropped: get(&c.writes_dropped),
            errors: get(&c.errors),
            tombstones: self.shared.tombstones.lock().len() as u64,
            disabled: self.disabled(),
            load_time: Duration::from_micros(get(&c.load_micros)),
        }
    }

    /// Why the tier is disabled (after a disk failure, until it reopens).
    pub fn disabled(&self) -> Option<String> {
        self.shared.disabled.lock().clone()
    }

    /// Entries for `revcache inspect`: those of a request target, of a
    /// tag, or all of them.
    pub fn inspect(
        &self,
        target: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Vec<InspectRow>, DiskError> {
        self.inspect_reporting(target, tag, &mut |_, _| {})
    }

    /// As [`DiskTier::inspect`], calling `progress(read, total)` as it
    /// reads the entries it found (a maintenance command's progress line).
    pub fn inspect_reporting(
        &self,
        target: Option<&str>,
        tag: Option<&str>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<InspectRow>, DiskError> {
        let db = self.shared.db()?;
        let txn = db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        if let Some(tag) = tag {
            let tags = txn.open_multimap_table(TAGS)?;
            for k in tags.get(tag)? {
                keys.push(k?.value().to_vec());
            }
        } else {
            let prefix = target.map(format::target_prefix).unwrap_or_default();
            for item in entries.range(prefix.as_slice()..)? {
                let (k, _) = item?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                keys.push(k.value().to_vec());
            }
        }
        let now = self.shared.config.clock.now();
        let mut rows = Vec::new();
        let total = keys.len() as u64;
        for (read, k) in keys.into_iter().enumerate() {
            progress(read as u64, total);
            let Some(v) = entries.get(k.as_slice())? else {
                continue;
            };
            let (Ok(key), Ok(record)) = (format::decode_key(&k), format::decode(v.value())) else {
                continue;
            };
            let (body_bytes, body_in_file) = match &record.body {
                StoredBody::Inline(b) => (b.len() as u64, false),
                StoredBody::File { len, .. } => (*len, true),
            };
            rows.push(InspectRow {
                version: match &record.version {
                    crate::version::Version::Strong(v) => v.to_string(),
                    crate::version::Version::Unversioned => "-".into(),
                },
                status: record.status.as_u16(),
                body_bytes,
                body_in_file,
                tags: record.tags.iter().map(|t| t.to_string()).collect(),
                age: record.timing.age_at(now),
                key,
            });
        }
        progress(total, total);
        Ok(rows)
    }
}

impl DiskTier {
    /// Commits what is queued, stops the writer and the orphan collection,
    /// and closes the index: the data dir can be opened again at once,
    /// even while something still holds this tier (a task that outlived a
    /// server's shutdown). Its lookups then miss and its writes go nowhere.
    pub fn close(&self) {
        self.gc_stop.store(true, Ordering::Relaxed);
        if let Some(gc) = self.gc.lock().take() {
            let _ = gc.join();
        }
        self.ops.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
        let Some(mut db) = self.shared.db.write().take() else {
            return;
        };
        // A lookup under way holds the index a moment longer.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match Arc::try_unwrap(db) {
                Ok(db) => return drop(db),
                Err(held) => db = held,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::warn!("the disk tier index is still in use after closing");
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens the index, creating it owner-only; never through a symlink.
pub(crate) fn open_index(path: &Path, cache: u64) -> Result<Database, DiskError> {
    match create_index(index_file(path)?, cache) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(DiskError::InUse {
            path: path.to_owned(),
        }),
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if e.kind() != std::io::ErrorKind::InvalidData =>
        {
            Err(DiskError::Io {
                path: path.to_owned(),
                source: e,
            })
        }
        Err(e) => {
            let aside = path.with_extension(format!(
                "redb.damaged-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            ));
            tracing::error!(
                index = %path.display(), error = %e, moved_to = %aside.display(),
                "disk tier index cannot be opened; setting it aside and starting empty"
            );
            std::fs::rename(path, &aside).map_err(DiskError::io(path))?;
            Ok(create_index(index_file(path)?, cache)?)
        }
    }
}

/// The index database on its file: through the fault-injecting storage
/// in a test process that armed a fault, directly otherwise.
fn create_index(file: std::fs::File, cache: u64) -> Result<Database, redb::DatabaseError> {
    let mut builder = Database::builder();
    builder.set_cache_size(usize::try_from(cache).unwrap_or(usize::MAX));
    if faults::enabled() {
        let backend = redb::backends::FileBackend::new(file)?;
        return builder.create_with_backend(faults::Faulty::new(backend));
    }
    builder.create_file(file)
}

/// The index file, opened read-write (created 0600), refusing a symlink,
/// and made owner-only if an older revcache created it readable.
fn index_file(path: &Path) -> Result<std::fs::File, DiskError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(DiskError::io(path))?;
    let meta = file.metadata().map_err(DiskError::io(path))?;
    if !meta.is_file() {
        return Err(DiskError::Io {
            path: path.to_owned(),
            source: std::io::Error::other("the index is not a plain file"),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(DiskError::io(path))?;
    }
    Ok(file)
}

/// Removes leftover temp files and hands the body files no row refers
/// to (older than `before`) to the writer, which deletes the ones still
/// unreferenced in its own transaction: a store may have referenced one
/// again since this thread looked.
fn collect_orphans(shared: &Shared, before: SystemTime, stop: &AtomicBool, ops: &SyncSender<Op>) {
    let referenced = |hash: &[u8; 32]| -> bool {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        // On any read error keep the file: an orphan costs space, a
        // wrongly deleted body costs a corrupt entry.
        (|| -> Result<bool, DiskError> {
            let db = shared.db()?;
            let txn = db.begin_read()?;
            let blobs = txn.open_table(BLOBS)?;
            Ok(blobs.get(hash.as_slice())?.is_some())
        })()
        .unwrap_or(true)
    };
    let (removed, candidates) = shared.blobs.orphans(before, referenced);
    shared
        .counters
        .orphans
        .fetch_add(removed, Ordering::Relaxed);
    if removed > 0 {
        tracing::info!(removed, "removed leftover temp files");
    }
    for chunk in candidates.chunks(1024) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let _ = ops.send(Op::Orphans {
            hashes: chunk.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::entry::{EntryTiming, Freshness};
    use crate::key::KeyClass;
    use crate::partition::Partition;
    use crate::version::Version;

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("revcache-disk-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TempDir(d)
    }

    fn key(target: &str) -> PrimaryKey {
        PrimaryKey::new(0, KeyClass::Get, "h", target, Partition::Public)
    }

    fn entry(target: &str, body: &[u8]) -> Arc<Entry> {
        Arc::new(Entry::new(
            key(target),
            Box::new([]),
            Version::from_etag("\"v\""),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::copy_from_slice(body),
            Vec::new(),
            EntryTiming {
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
                initial_age: Duration::ZERO,
            },
            Freshness::default(),
        ))
    }

    /// A tier whose start-up orphan collection has finished.
    fn open(dir: &Path) -> DiskTier {
        let tier = DiskTier::open(DiskConfig::new(dir), Arc::default()).unwrap();
        if let Some(gc) = tier.gc.lock().take() {
            gc.join().unwrap();
        }
        tier
    }

    fn put(tier: &DiskTier, e: Arc<Entry>) {
        let ticket = tier.shared.generations.begin_fill();
        tier.put(e, ticket);
    }

    #[test]
    fn an_orphan_a_store_references_again_keeps_its_body_file() {
        let dir = temp_dir("orphan-race");
        let body = vec![7u8; 100_000];
        let hash = blobs::hash(&body);
        {
            let tier = open(&dir.0);
            // The collection saw the file unreferenced; before the writer
            // acts on that, a store of the same bytes references it again.
            tier.shared.blobs.write(&hash, &body).unwrap();
            put(&tier, entry("/again", &body));
            tier.send(Op::Orphans { hashes: vec![hash] }).unwrap();
            tier.flush();
            assert!(tier.shared.blobs.path(&hash).exists());
            // In the other order the file goes, and the store writes it anew.
            tier.send(Op::Orphans { hashes: vec![hash] }).unwrap();
            put(&tier, entry("/again-later", &body));
            tier.flush();
        }
        let tier = open(&dir.0);
        for target in ["/again", "/again-later"] {
            let found = tier.lookup(&key(target));
            assert_eq!(found.len(), 1, "{target}");
            assert_eq!(found[0].body.len(), body.len() as u64, "{target}");
        }
        assert_eq!(tier.stats().corrupt_dropped, 0);
    }

    #[test]
    fn a_tombstone_hides_what_it_reaches_until_its_removal_commits() {
        let dir = temp_dir("tombstone");
        {
            let tier = open(&dir.0);
            put(&tier, entry("/gone", b"old version"));
            put(&tier, entry("/kept", b"other"));
            tier.flush();
            tier.shared.tombstone(vec![Invalidation::Target {
                route: None,
                target: "/gone".into(),
            }]);
            assert!(tier.lookup(&key("/gone")).is_empty());
            assert_eq!(tier.lookup(&key("/kept")).len(), 1);
            assert_eq!(tier.stats().tombstones, 1);
            // The next transaction commits it first.
            tier.flush();
            assert_eq!(tier.stats().tombstones, 0);
        }
        let tier = open(&dir.0);
        assert!(tier.lookup(&key("/gone")).is_empty());
        assert_eq!(tier.lookup(&key("/kept")).len(), 1);
    }
}
