//! Shared fixtures for the engine benchmarks: entries shaped like a small
//! cached API response.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use revcache_core::{Entry, EntryTiming, Freshness, KeyClass, Partition, PrimaryKey, Version};

/// The route's upstream name, shared by its keys as the proxy shares it.
static HOST: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("upstream:8080"));

pub fn key(i: u64) -> PrimaryKey {
    PrimaryKey::new(
        1,
        KeyClass::Get,
        HOST.clone(),
        &format!("/api/items/{i}"),
        Partition::Public,
    )
}

/// A small response: four typical headers and `body` bytes.
pub fn entry(i: u64, body: usize) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
    headers.insert(
        "date",
        HeaderValue::from_static("Sat, 21 Nov 2026 05:00:00 GMT"),
    );
    let etag = format!("\"{i:x}\"");
    headers.insert(
        "etag",
        HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"x\"")),
    );
    let now = SystemTime::now();
    Entry::new(
        key(i),
        Box::new([]),
        Version::from_etag(&etag),
        StatusCode::OK,
        headers,
        Bytes::from(vec![b'x'; body]),
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

/// Resident set size of this process, in bytes (Linux).
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
