//! The writer: the only thread that changes the disk tier.
//!
//! It takes operations in arrival order, writes new body files first
//! (outside any transaction), then applies the batch in one redb write
//! transaction with quick-repair enabled, and only after the commit
//! deletes body files nothing refers to any more and answers waiters.
//! Between batches it runs sweep steps on a timer.
//!
//! A batch that fails (the disk is full, an I/O error) leaves redb
//! refusing every later transaction, so the writer closes the index,
//! disables the tier and reopens it on a timer. Removals that did not
//! commit become tombstones, applied first in every later transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{
    Database, MultimapTable, ReadableMultimapTable, ReadableTable, Table, WriteTransaction,
};

use super::error::DiskError;
use super::format::{
    self, ACCESS, BLOBS, BUCKETS, ENTRIES, INDEX_FORMAT, META, META_ENTRIES, META_FILE_BYTES,
    META_FILES, META_FORMAT, META_INDEX_OVERHEAD, META_ROW_BYTES, StoredBody, TAGS,
};
use super::{Counters, Op, OverheadMeasure, Shared, blobs, sweep};
use crate::entry::{Entry, EntryBody};
use crate::invalidation::Invalidation;

const BATCH: usize = 256;

/// Creates the tables of a new index and loads the counters.
pub(super) fn init(db: &Database, counters: &Counters) -> Result<(), DiskError> {
    let txn = db.begin_write()?;
    let (totals, overhead) = {
        let t = Tables::open(&txn)?;
        let mut t = t;
        if t.meta.get(META_FORMAT)?.is_none() {
            t.meta.insert(META_FORMAT, INDEX_FORMAT)?;
        }
        let overhead = t.meta.get(META_INDEX_OVERHEAD)?.map(|v| v.value());
        (t.totals, overhead)
    };
    txn.commit()?;
    totals.publish(counters);
    // Kept from the last run: a start-up does not read every page again.
    if let Some(milli) = overhead {
        counters.index_overhead_milli.store(
            milli.clamp(*sweep::OVERHEAD_MILLI.start(), *sweep::OVERHEAD_MILLI.end()),
            Ordering::Relaxed,
        );
    }
    Ok(())
}

pub(super) fn run(shared: &Arc<Shared>, rx: Receiver<Op>) {
    // The first sweep soon after start-up, later ones on the interval.
    let mut next_sweep = Instant::now() + shared.config.sweep_interval.min(Duration::from_secs(10));
    let mut next_reopen = Instant::now();
    loop {
        let was_disabled = shared.is_disabled();
        if shared.is_disabled() && Instant::now() >= next_reopen {
            reopen(shared);
            next_reopen = Instant::now() + shared.config.reopen_interval;
        }
        let mut due = next_sweep;
        if shared.is_disabled() {
            due = due.min(next_reopen);
        }
        let wait = due.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(op) => {
                let mut batch = vec![op];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                apply(shared, batch);
                if !was_disabled && shared.is_disabled() {
                    // Not at once: the failure that just happened would
                    // most likely happen again.
                    next_reopen = Instant::now() + shared.config.reopen_interval;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // A due sweep runs between batches, not only when the writer is
        // idle: under a steady stream of writes it never is, and the tier
        // outgrew its budget forty times over in the soak.
        if Instant::now() >= next_sweep {
            let was_disabled = shared.is_disabled();
            let (done, report) = std::sync::mpsc::sync_channel(1);
            apply(shared, vec![Op::Sweep { done }]);
            if !was_disabled && shared.is_disabled() {
                next_reopen = Instant::now() + shared.config.reopen_interval;
            }
            let more = report
                .recv()
                .ok()
                .and_then(Result::ok)
                .is_some_and(|r| r.more);
            next_sweep = Instant::now()
                + if more {
                    Duration::from_millis(200)
                } else {
                    shared.config.sweep_interval
                };
        }
    }
}

/// Counters kept in the `meta` table, changed within a transaction.
#[derive(Clone, Copy, Default)]
pub(super) struct Totals {
    pub entries: u64,
    pub row_bytes: u64,
    pub file_bytes: u64,
    pub files: u64,
}

impl Totals {
    fn publish(&self, c: &Counters) {
        c.entries.store(self.entries, Ordering::Relaxed);
        c.row_bytes.store(self.row_bytes, Ordering::Relaxed);
        c.file_bytes.store(self.file_bytes, Ordering::Relaxed);
        c.files.store(self.files, Ordering::Relaxed);
    }
}

/// The open tables of one write transaction and the counters it changes.
pub(super) struct Tables<'t> {
    entries: Table<'t, &'static [u8], &'static [u8]>,
    buckets: Table<'t, &'static [u8], u32>,
    pub access: Table<'t, &'static [u8], ()>,
    tags: MultimapTable<'t, &'static str, &'static [u8]>,
    pub blobs: Table<'t, &'static [u8], (u64, u64)>,
    meta: Table<'t, &'static str, u64>,
    pub totals: Totals,
    /// Body files whose last reference went in this transaction.
    pub freed: Vec<[u8; 32]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, DiskError> {
        let meta = txn.open_table(META)?;
        let get = |name| -> Result<u64, DiskError> {
            Ok(meta.get(name)?.map(|v| v.value()).unwrap_or(0))
        };
        let totals = Totals {
            entries: get(META_ENTRIES)?,
            row_bytes: get(META_ROW_BYTES)?,
            file_bytes: get(META_FILE_BYTES)?,
            files: get(META_FILES)?,
        };
        Ok(Tables {
            entries: txn.open_table(ENTRIES)?,
            buckets: txn.open_table(BUCKETS)?,
            access: txn.open_table(ACCESS)?,
            tags: txn.open_multimap_table(TAGS)?,
            blobs: txn.open_table(BLOBS)?,
            meta,
            totals,
            freed: Vec::new(),
        })
    }

    fn save_totals(&mut self) -> Result<(), DiskError> {
        let t = self.totals;
        self.meta.insert(META_ENTRIES, t.entries)?;
        self.meta.insert(META_ROW_BYTES, t.row_bytes)?;
        self.meta.insert(META_FILE_BYTES, t.file_bytes)?;
        self.meta.insert(META_FILES, t.files)?;
        Ok(())
    }

    /// Stores `entry` under `key` unless a stored one has a newer `Date`.
    fn put(
        &mut self,
        key: &[u8],
        entry: &Entry,
        body: StoredBody,
        bucket: u32,
    ) -> Result<bool, DiskError> {
        if let Some(old) = self.entries.get(key)?
            && let Ok(old) = format::decode(old.value())
            && let (Some(old_date), Some(new_date)) = (old.date(), entry.date())
            && old_date > new_date
        {
            return Ok(false);
        }
        if let StoredBody::File { hash, len } = &body {
            let refs = self.blobs.get(hash.as_slice())?.map(|v| v.value());
            match refs {
                Some((n, len)) => self.blobs.insert(hash.as_slice(), (n + 1, len))?,
                None => {
                    self.totals.files += 1;
                    self.totals.file_bytes += len;
                    self.blobs.insert(hash.as_slice(), (1, *len))?
                }
            };
        }
        self.delete(key)?;
        let record = format::encode(entry, &body);
        self.entries.insert(key, record.as_slice())?;
        self.buckets.insert(key, bucket)?;
        self.access
            .insert(format::access_key(bucket, key).as_slice(), ())?;
        for tag in entry.tags.iter() {
            self.tags.insert(tag.name(), key)?;
        }
        self.totals.entries += 1;
        self.totals.row_bytes += (record.len() + key.len()) as u64;
        Ok(true)
    }

    /// Removes one entry and everything that refers to it.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, DiskError> {
        let Some(record) = self.entries.remove(key)? else {
            return Ok(false);
        };
        let record_len = record.value().len();
        let decoded = format::decode(record.value());
        drop(record);
        self.totals.entries = self.totals.entries.saturating_sub(1);
        self.totals.row_bytes = self
            .totals
            .row_bytes
            .saturating_sub((record_len + key.len()) as u64);
        if let Some(bucket) = self.buckets.remove(key)?.map(|b| b.value()) {
            self.access
                .remove(format::access_key(bucket, key).as_slice())?;
        }
        // An undecodable record's tags stay behind; a tag purge skips keys
        // without a row.
        if let Ok(record) = decoded {
            for tag in &record.tags {
                self.tags.remove(&**tag, key)?;
            }
            if let StoredBody::File { hash, .. } = record.body {
                self.release_blob(&hash)?;
            }
        }
        Ok(true)
    }

    fn release_blob(&mut self, hash: &[u8; 32]) -> Result<(), DiskError> {
        let refs = self.blobs.get(hash.as_slice())?.map(|v| v.value());
        match refs {
            Some((n, len)) if n > 1 => {
                self.blobs.insert(hash.as_slice(), (n - 1, len))?;
            }
            Some((_, len)) => {
                self.blobs.remove(hash.as_slice())?;
                self.totals.files = self.totals.files.saturating_sub(1);
                self.totals.file_bytes = self.totals.file_bytes.saturating_sub(len);
                self.freed.push(*hash);
            }
            None => {}
        }
        Ok(())
    }

    fn touch(&mut self, key: &[u8], bucket: u32) -> Result<(), DiskError> {
        let old = self.buckets.get(key)?.map(|b| b.value());
        match old {
            Some(old) if old != bucket => {
                self.access
                    .remove(format::access_key(old, key).as_slice())?;
                self.access
                    .insert(format::access_key(bucket, key).as_slice(), ())?;
                self.buckets.insert(key, bucket)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn remove(&mut self, removal: &Invalidation) -> Result<usize, DiskError> {
        // Rows are found by target, prefix, key or tag name; the route
        // (part of every row key) then decides.
        let of_route = |k: &[u8]| format::route_of(k).is_some_and(|r| removal.reaches_route(r));
        let keys: Vec<Vec<u8>> = match removal {
            Invalidation::Tag(tag) => {
                let mut keys = Vec::new();
                for k in self.tags.get(tag.name())? {
                    let k = k?;
                    if of_route(k.value()) {
                        keys.push(k.value().to_vec());
                    }
                }
                keys
            }
            Invalidation::Target { target, .. } => {
                self.keys_with_prefix(&format::target_prefix(target), of_route)?
            }
            Invalidation::Key(k) => {
                let prefix = format::key_prefix(k);
                let len = prefix.len() + 8;
                self.keys_with_prefix(&prefix, |key| key.len() == len)?
            }
            Invalidation::Prefix { prefix, .. } => {
                self.keys_with_prefix(prefix.as_bytes(), |k| {
                    of_route(k)
                        && format::path_of(k).is_some_and(|p| p.starts_with(prefix.as_str()))
                })?
            }
        };
        let mut removed = 0;
        for k in keys {
            if self.delete(&k)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn keys_with_prefix(
        &self,
        prefix: &[u8],
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>, DiskError> {
        let mut out = Vec::new();
        for item in self.entries.range(prefix..)? {
            let (k, _) = item?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            if keep(k) {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }
}

/// Closes the index after a failure: later operations are answered
/// "unavailable" until [`reopen`] succeeds.
fn disable(shared: &Shared, reason: &str) {
    let was = shared.disabled.lock().replace(reason.to_owned());
    // Readers holding the old handle finish their transaction; the file
    // closes when the last of them drops it.
    let old = shared.db.write().take();
    drop(old);
    if was.is_none() {
        tracing::error!(
            error = reason,
            "disk tier disabled after a disk failure; serving from memory until the index reopens"
        );
    }
}

/// Opens the index again after a failure, commits the pending tombstones,
/// and only then lets lookups read it. Fails (and stays disabled) while
/// the disk still refuses.
fn reopen(shared: &Shared) {
    let result = (|| -> Result<bool, DiskError> {
        let db = Arc::new(super::open_index(&shared.index, shared.config.index_cache)?);
        init(&db, &shared.counters)?;
        // A failure here is counted, and keeps the tier disabled.
        if !apply_on(shared, &db, Vec::new()) {
            return Ok(false);
        }
        *shared.db.write() = Some(db);
        Ok(true)
    })();
    match result {
        Ok(false) => {}
        // A reader still holds the old index: try again later.
        Err(DiskError::InUse { .. }) => {}
        Err(e) => {
            shared.error_counted();
            tracing::debug!(error = %e, "disk tier still cannot reopen its index");
        }
        Ok(true) => {
            shared.disabled.lock().take();
            tracing::warn!("disk tier index reopened; the disk tier is enabled again");
        }
    }
}

fn apply(shared: &Shared, batch: Vec<Op>) {
    match shared.db() {
        Ok(db) => {
            apply_on(shared, &db, batch);
        }
        Err(e) => refuse(shared, batch, &e.to_string()),
    }
}

/// Commits `batch` (after the pending tombstones) in one transaction on
/// `db`; false when it failed and the tier is now disabled.
fn apply_on(shared: &Shared, db: &Database, batch: Vec<Op>) -> bool {
    // Body files first: a row may only refer to a file already durable.
    let bodies: Vec<Option<StoredBody>> = batch.iter().map(|op| stored_body(shared, op)).collect();
    let now = shared.config.clock.now();
    let bucket = shared.config.bucket_at(now);
    let tombstones: Vec<Invalidation> = shared.tombstones.lock().clone();
    let mut removed = HashMap::new();
    let mut swept = HashMap::new();
    let mut trimmed = 0;
    // Body files to delete once committed: freed by the batch, and orphans.
    type Deletions = (Vec<[u8; 32]>, Vec<[u8; 32]>);
    let result = (|| -> Result<Deletions, DiskError> {
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        let (freed, orphans, totals) = {
            let mut t = Tables::open(&txn)?;
            let grows = batch
                .iter()
                .any(|op| matches!(op, Op::Sweep { .. } | Op::Put { .. }));
            if grows && shared.overhead_due(t.totals.row_bytes) {
                let started = Instant::now();
                if let Some(milli) = sweep::measure_overhead(&txn, t.totals.row_bytes)? {
                    t.meta.insert(META_INDEX_OVERHEAD, milli)?;
                    shared.overhead_measured(milli, t.totals.row_bytes, started.elapsed());
                }
            }
            let overhead = shared.index_overhead();
            let mut stored = false;
            // Removals that failed before come first: whatever follows in
            // this batch was queued after them.
            for removal in &tombstones {
                t.remove(removal)?;
            }
            let mut candidates = Vec::new();
            for (i, (op, body)) in batch.iter().zip(&bodies).enumerate() {
                match op {
                    Op::Put { entry, ticket } => {
                        let Some(body) = body.clone() else { continue };
                        // Re-check here: a purge applied before this put
                        // must win even if the put was queued first.
                        if shared
                            .generations
                            .is_current(*ticket, &entry.key, &entry.tags)
                        {
                            let key = format::entry_key(&entry.key, &entry.variant);
                            stored |= t.put(&key, entry, body, bucket)?;
                        }
                    }
                    Op::Touch { key, bucket } => t.touch(key, *bucket)?,
                    Op::Drop { key } => {
                        t.delete(key)?;
                    }
                    Op::Remove { removals, .. } => {
                        let mut n = 0;
                        for removal in removals {
                            n += t.remove(removal)?;
                        }
                        removed.insert(i, n);
                    }
                    Op::Sweep { .. } => {
                        swept.insert(i, sweep::step(&mut t, &shared.config, now, overhead)?);
                    }
                    Op::Flush { .. } => {}
                    Op::Orphans { hashes } => candidates.extend_from_slice(hashes),
                }
            }
            // Eviction on insert: back within the budget before the commit.
            if stored {
                let most = shared.config.sweep_batch.max(1);
                trimmed = sweep::trim(&mut t, &shared.config, overhead, most)?.0;
            }
            // After every put of the batch: one may reference a candidate.
            let mut orphans = Vec::new();
            for hash in candidates {
                if t.blobs.get(hash.as_slice())?.is_none() {
                    orphans.push(hash);
                }
            }
            t.save_totals()?;
            (std::mem::take(&mut t.freed), orphans, t.totals)
        };
        txn.commit()?;
        // After the commit: whoever reads the counters finds what they count.
        shared.counters_publish(totals);
        Ok((freed, orphans))
    })();
    let error = match result {
        Ok((freed, orphans)) => {
            if !tombstones.is_empty() {
                let mut pending = shared.tombstones.lock();
                let n = tombstones.len().min(pending.len());
                pending.drain(..n);
            }
            for hash in freed {
                shared.blobs.remove(&hash);
            }
            let n = orphans.len() as u64;
            for hash in orphans {
                shared.blobs.remove(&hash);
            }
            if n > 0 {
                shared.counters.orphans.fetch_add(n, Ordering::Relaxed);
                tracing::info!(removed = n, "removed orphan body files");
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, ops = batch.len(), "disk tier batch failed; its writes are lost");
            shared.error_counted();
            disable(shared, &e.to_string());
            // Nothing was published: the counters still say what is committed.
            Some(e.to_string())
        }
    };
    if let Some(e) = error {
        refuse(shared, batch, &e);
        return false;
    }
    shared
        .counters
        .swept_over_budget
        .fetch_add(trimmed, Ordering::Relaxed);
    for (i, op) in batch.into_iter().enumerate() {
        match op {
            Op::Remove { done, .. } => {
                let _ = done.send(Ok(removed.remove(&i).unwrap_or(0)));
            }
            Op::Sweep { done } => {
                let report = swept.remove(&i).unwrap_or_default();
                let c = &shared.counters;
                c.sweeps.fetch_add(1, Ordering::Relaxed);
                c.swept_idle.fetch_add(report.idle, Ordering::Relaxed);
                c.swept_over_budget
                    .fetch_add(report.over_budget, Ordering::Relaxed);
                let _ = done.send(Ok(report));
            }
            Op::Flush { done } => {
                let _ = done.send(());
            }
            _ => {}
        }
    }
    true
}

/// Answers a batch that did not (or could not) commit: puts are marked
/// missing on disk, removals stay as tombstones and report the failure.
fn refuse(shared: &Shared, batch: Vec<Op>, reason: &str) {
    let failed = || DiskError::Unavailable {
        reason: reason.to_owned(),
    };
    for op in batch {
        match op {
            Op::Put { entry, .. } => entry.mark_missing_on_disk(),
            Op::Remove { removals, done } => {
                shared.tombstone(removals);
                let _ = done.send(Err(failed()));
            }
            Op::Sweep { done } => {
                let _ = done.send(Err(failed()));
            }
            Op::Flush { done } => {
                let _ = done.send(());
            }
            Op::Touch { .. } | Op::Drop { .. } | Op::Orphans { .. } => {}
        }
    }
}

impl Shared {
    fn counters_publish(&self, totals: Totals) {
        totals.publish(&self.counters);
    }

    /// Whether to measure the index's overhead again: never measured (nor
    /// kept from the last run), a sweep interval ago, or its rows (now
    /// `row_bytes`) doubled or halved since. Measuring reads every index
    /// page and holds the writer meanwhile (about 0.25 s for 600 MB), so
    /// it also waits a hundred times as long as the last one took.
    fn overhead_due(&self, row_bytes: u64) -> bool {
        let mut measured = self.overhead_measured.lock();
        let Some(last) = *measured else {
            if self.counters.index_overhead_milli.load(Ordering::Relaxed) == 0 {
                return true;
            }
            // Kept from the last run: measured again as if just now.
            *measured = Some(OverheadMeasure {
                at: Instant::now(),
                row_bytes,
                took: Duration::ZERO,
            });
            return false;
        };
        let since = last.at.elapsed();
        since >= last.took * 100
            && (since >= self.config.sweep_interval
                || row_bytes > last.row_bytes.saturating_mul(2)
                || row_bytes < last.row_bytes / 2)
    }

    fn overhead_measured(&self, milli: u64, row_bytes: u64, took: Duration) {
        *self.overhead_measured.lock() = Some(OverheadMeasure {
            at: Instant::now(),
            row_bytes,
            took,
        });
        self.counters
            .index_overhead_milli
            .store(milli, Ordering::Relaxed);
    }

    fn is_disabled(&self) -> bool {
        self.disabled.lock().is_some()
    }
}

/// Where a put's body goes; writes the body file when it is large.
fn stored_body(shared: &Shared, op: &Op) -> Option<StoredBody> {
    let Op::Put { entry, .. } = op else {
        return None;
    };
    match &entry.body {
        EntryBody::Memory(bytes) if (bytes.len() as u64) <= shared.config.inline_threshold => {
            Some(StoredBody::Inline(bytes.clone()))
        }
        EntryBody::Memory(bytes) => {
            let hash = blobs::hash(bytes);
            match shared.blobs.write(&hash, bytes) {
                Ok(()) => Some(StoredBody::File {
                    hash,
                    len: bytes.len() as u64,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write body file; entry not persisted");
                    shared.error_counted();
                    entry.mark_missing_on_disk();
                    None
                }
            }
        }
        // Already on disk (promoted, then refreshed by a 304).
        EntryBody::File(f) => {
            let hash = f
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(blobs::unhex)?;
            Some(StoredBody::File { hash, len: f.len })
        }
    }
}
