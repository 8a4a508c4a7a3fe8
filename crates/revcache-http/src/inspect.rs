//! Inspection rows: what a cache holds, tier by tier, for `GET /inspect`
//! and `revcache inspect`. Partitions appear as their hash prefix only.

use std::collections::HashMap;
use std::time::SystemTime;

use revcache_core::{Cache, DiskError, Entry, KeyClass, PrimaryKey, Version};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The tiers holding it, joined by `+`: `l1`, `l2`, `l3`, `l1+l2+l3`…
    pub tier: String,
    /// Key class, host and request target, e.g. `GET example.org/a?x=1`.
    pub key: String,
    pub partition: String,
    pub version: String,
    pub status: u16,
    pub size: u64,
    pub in_file: bool,
    pub tags: Vec<String>,
    pub age_secs: u64,
}

fn key_text(key: &PrimaryKey) -> String {
    let class = match key.class() {
        KeyClass::Get => "GET",
        KeyClass::Named(n) => n,
    };
    format!("{class} {}{}", key.host(), key.target())
}

fn version_text(v: &Version) -> String {
    match v {
        Version::Strong(v) => v.to_string(),
        Version::Unversioned => "-".into(),
    }
}

fn memory_row(e: &Entry, now: SystemTime) -> Row {
    entry_row("l1", e, now)
}

fn entry_row(tier: &str, e: &Entry, now: SystemTime) -> Row {
    Row {
        tier: tier.into(),
        key: key_text(&e.key),
        partition: e.key.partition().to_string(),
        version: version_text(&e.version),
        status: e.status.as_u16(),
        size: e.body.len(),
        in_file: matches!(e.body, revcache_core::EntryBody::File(_)),
        tags: e.tags.iter().map(|t| t.name().to_owned()).collect(),
        age_secs: e.timing().age_at(now).as_secs(),
    }
}

/// Rows of every tier; blocking (reads the disk tier).
pub fn rows(cache: &Cache, url: Option<&str>, tag: Option<&str>) -> Result<Vec<Row>, DiskError> {
    rows_reporting(cache, url, tag, &mut |_, _| {})
}

/// As [`rows`], calling `progress(read, total)` while it reads the disk
/// tier's entries.
pub fn rows_reporting(
    cache: &Cache,
    url: Option<&str>,
    tag: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<Row>, DiskError> {
    let now = cache.clock().now();
    let mut rows: Vec<Row> = cache
        .memory_entries(url, tag)
        .iter()
        .map(|e| memory_row(e, now))
        .collect();
    if let Some(disk) = cache.disk() {
        let mut seen: HashMap<(String, String, String), usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.key.clone(), r.partition.clone(), r.version.clone()), i))
            .collect();
        for d in disk.inspect_reporting(url, tag, progress)? {
            let row = Row {
                tier: "l2".into(),
                key: key_text(&d.key),
                partition: d.key.partition().to_string(),
                version: d.version,
                status: d.status,
                size: d.body_bytes,
                in_file: d.body_in_file,
                tags: d.tags,
                age_secs: d.age.as_secs(),
            };
            let id = (row.key.clone(), row.partition.clone(), row.version.clone());
            match seen.get(&id) {
                Some(i) => rows[*i].tier = "l1+l2".into(),
                None => {
                    seen.insert(id, rows.len());
                    rows.push(row);
                }
            }
        }
    }
    rows.sort_by(|a, b| a.position().cmp(&b.position()));
    Ok(rows)
}

/// Adds the shared tier's entries to `rows` (from [`rows`]): an entry a
/// local tier holds too gets `+l3`, the others are rows of their own.
pub fn with_shared(mut rows: Vec<Row>, shared: &[Entry], now: SystemTime) -> Vec<Row> {
    let mut seen: HashMap<(String, String, String), usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.key.clone(), r.partition.clone(), r.version.clone()), i))
        .collect();
    for e in shared {
        let row = entry_row("l3", e, now);
        let id = (row.key.clone(), row.partition.clone(), row.version.clone());
        match seen.get(&id) {
            Some(i) if !rows[*i].tier.ends_with("l3") => rows[*i].tier.push_str("+l3"),
            Some(_) => {}
            None => {
                seen.insert(id, rows.len());
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| a.position().cmp(&b.position()));
    rows
}

impl Row {
    /// Where the row sorts, and what identifies it across pages.
    fn position(&self) -> (&str, &str, &str) {
        (&self.key, &self.partition, &self.version)
    }

    fn cursor(&self) -> String {
        let mut out = String::new();
        for (i, part) in [&self.key, &self.partition, &self.version]
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push_str("00");
            }
            for b in part.bytes() {
                out.push_str(&format!("{b:02x}"));
            }
        }
        out
    }
}

/// At most `limit` of `rows` (sorted by [`rows`]) that come after the
/// row `after` names, and the cursor of the last one when more follow.
/// A cursor that is not one of ours starts from the beginning.
pub fn page(rows: Vec<Row>, after: Option<&str>, limit: usize) -> (Vec<Row>, Option<String>) {
    let after = after.and_then(decode_cursor);
    let start = match &after {
        Some((k, p, v)) => {
            rows.partition_point(|r| r.position() <= (k.as_str(), p.as_str(), v.as_str()))
        }
        None => 0,
    };
    let mut rest = rows.into_iter().skip(start);
    let page: Vec<Row> = rest.by_ref().take(limit).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some(last)) => Some(last.cursor()),
        _ => None,
    };
    (page, next)
}

fn decode_cursor(cursor: &str) -> Option<(String, String, String)> {
    let bytes = cursor.as_bytes();
    if !bytes.len().is_multiple_of(2) || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let raw: Vec<u8> = bytes
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        .collect::<Option<_>>()?;
    let mut parts = raw.split(|b| *b == 0);
    let mut next = || String::from_utf8(parts.next()?.to_vec()).ok();
    let decoded = (next()?, next()?, next()?);
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::decode_cursor;

    #[test]
    fn a_cursor_is_hex_pairs_and_nothing_else() {
        let parts = |k: &str, p: &str, v: &str| Some((k.into(), p.into(), v.into()));
        assert_eq!(decode_cursor("6100620063"), parts("a", "b", "c"));
        assert_eq!(decode_cursor("4A0000"), parts("J", "", ""));
        // `from_str_radix` alone would read "+1" as 1.
        assert_eq!(decode_cursor("+100620063"), None);
        assert_eq!(decode_cursor("61006200-3"), None);
    }
}
