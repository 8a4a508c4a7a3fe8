//! Inspection rows: what a cache holds, tier by tier, for `GET /inspect`
//! and `revcache inspect`. Partitions appear as their hash prefix only.

use std::collections::HashMap;
use std::time::SystemTime;

use revcache_core::{Cache, DiskError, Entry, KeyClass, PrimaryKey, Tag, Version};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// `l1`, `l2` or `l1+l2`.
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
    Row {
        tier: "l1".into(),
        key: key_text(&e.key),
        partition: e.key.partition().to_string(),
        version: version_text(&e.version),
        status: e.status.as_u16(),
        size: e.body.len(),
        in_file: matches!(e.body, revcache_core::EntryBody::File(_)),
        tags: e.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        age_secs: e.timing().age_at(now).as_secs(),
    }
}

/// Rows of every tier; blocking (reads the disk tier).
pub fn rows(cache: &Cache, url: Option<&str>, tag: Option<&str>) -> Result<Vec<Row>, DiskError> {
    let now = SystemTime::now();
    let tag_filter = tag.map(Tag::new);
    let mut rows: Vec<Row> = cache
        .memory_entries(url, tag_filter.as_ref())
        .iter()
        .map(|e| memory_row(e, now))
        .collect();
    if let Some(disk) = cache.disk() {
        let mut seen: HashMap<(String, String, String), usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.key.clone(), r.partition.clone(), r.version.clone()), i))
            .collect();
        for d in disk.inspect(url, tag)? {
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
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(rows)
}
