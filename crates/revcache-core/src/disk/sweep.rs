//! Sweeping: removing entries idle longer than `max_idle`, then the least
//! recently used buckets while the tier exceeds its byte budget. One step
//! removes at most `sweep_batch` entries, so a sweep never holds the
//! writer (and the purges queued behind it) for long. A batch that stores
//! entries also trims the tier back to its budget in the same transaction
//! (at most `sweep_batch` removals, more than a batch stores), so no write
//! rate outgrows the budget between timed steps.
//!
//! The budget counts what the tier takes on disk. Body files count their
//! length; the index counts its rows times its overhead (B-tree pages
//! part full, the secondary tables, redb's own pages), measured from
//! redb's allocated pages once per sweep interval and whenever the rows
//! doubled or halved since: at small entries the index takes two to three
//! times its rows' bytes.

use std::time::SystemTime;

use redb::{ReadableTable, WriteTransaction};

use super::error::DiskError;
use super::writer::Tables;
use super::{DiskConfig, SweepReport};

/// Bounds of a measured overhead, in thousandths: never below the rows
/// themselves, and at most 8, so that a nearly empty index (a few rows on
/// redb's fixed pages), or a damaged `meta` row, does not make the budget
/// sweep everything.
pub(super) const OVERHEAD_MILLI: std::ops::RangeInclusive<u64> = 1000..=8000;

/// The index's bytes on disk for `row_bytes` of rows at `overhead`.
pub(super) fn index_bytes(row_bytes: u64, overhead: f64) -> u64 {
    (row_bytes as f64 * overhead) as u64
}

/// Index bytes on disk per row byte, in thousandths (within
/// [`OVERHEAD_MILLI`]): redb's allocated pages over the rows' bytes
/// (`row_bytes`, from the counters). `None` for an index without rows,
/// which has nothing to measure.
pub(super) fn measure_overhead(
    txn: &WriteTransaction,
    row_bytes: u64,
) -> Result<Option<u64>, DiskError> {
    if row_bytes == 0 {
        return Ok(None);
    }
    let stats = txn.stats()?;
    let allocated = stats.allocated_pages() * stats.page_size() as u64;
    let milli = (allocated as f64 * 1000.0 / row_bytes as f64) as u64;
    Ok(Some(
        milli.clamp(*OVERHEAD_MILLI.start(), *OVERHEAD_MILLI.end()),
    ))
}

pub(super) fn step(
    t: &mut Tables<'_>,
    config: &DiskConfig,
    now: SystemTime,
    overhead: f64,
) -> Result<SweepReport, DiskError> {
    let mut report = SweepReport::default();
    let idle_buckets = (config.max_idle.as_secs() / config.access_bucket.as_secs().max(1)) as u32;
    let cutoff = config.bucket_at(now).saturating_sub(idle_buckets);
    let limit = config.sweep_batch.max(1);

    let bound = cutoff.to_be_bytes();
    let mut idle = Vec::new();
    for item in t.access.range::<&[u8]>(..bound.as_slice())? {
        if idle.len() == limit {
            report.more = true;
            break;
        }
        idle.push(item?.0.value().to_vec());
    }
    for access_key in &idle {
        if t.delete(entry_key_of(access_key))? {
            report.idle += 1;
        } else {
            // An access row without its entry (or too short to name one,
            // as a damaged index may hold): drop the row itself.
            t.access.remove(access_key.as_slice())?;
        }
    }

    let (over_budget, more) = trim(t, config, overhead, limit - idle.len())?;
    report.over_budget = over_budget;
    report.more |= more;
    Ok(report)
}

/// Removes the least recently used entries while the tier exceeds its
/// budget, at most `max` of them. Returns how many went, and whether the
/// tier is still over budget.
pub(super) fn trim(
    t: &mut Tables<'_>,
    config: &DiskConfig,
    overhead: f64,
    max: usize,
) -> Result<(u64, bool), DiskError> {
    let mut removed = 0;
    let mut steps = 0;
    while index_bytes(t.totals.row_bytes, overhead) + t.totals.file_bytes > config.byte_limit {
        if steps == max {
            return Ok((removed, true));
        }
        let Some(oldest) = t.access.first()?.map(|(k, _)| k.value().to_vec()) else {
            break;
        };
        if t.delete(entry_key_of(&oldest))? {
            removed += 1;
        } else {
            t.access.remove(oldest.as_slice())?;
        }
        steps += 1;
    }
    Ok((removed, false))
}

/// The entry key an access row names (after its 4-byte bucket); empty
/// (no entry) for a row too short to hold one.
fn entry_key_of(access_key: &[u8]) -> &[u8] {
    access_key.get(4..).unwrap_or_default()
}
