//! The on-disk format of the index: table layout, key and record encoding.
//!
//! Tables (redb):
//! - `entries`: entry key → record (metadata, and the body when inline)
//! - `buckets`: entry key → access bucket (u32)
//! - `access`: bucket (big-endian u32) ++ entry key → () — oldest first
//! - `tags`: tag → entry keys (multimap)
//! - `blobs`: body hash → (references, length) for body files
//! - `meta`: name → u64 (format version, counters)
//!
//! An entry key starts with the request target, so a purge by URL or path
//! prefix is one range scan: `target 0x00 host 0x00 route(u32 BE) class
//! partition variant-hash(8)`. Records start with a version byte; a record
//! that does not decode is dropped, never served.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redb::{MultimapTableDefinition, TableDefinition};

use super::error::Corrupt;
use crate::entry::{Entry, EntryTiming, Freshness, Variant};
use crate::key::{KeyClass, PrimaryKey};
use crate::partition::Partition;
use crate::tag::Tag;
use crate::version::Version;

pub const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
pub const BUCKETS: TableDefinition<&[u8], u32> = TableDefinition::new("buckets");
pub const ACCESS: TableDefinition<&[u8], ()> = TableDefinition::new("access");
pub const TAGS: MultimapTableDefinition<&str, &[u8]> = MultimapTableDefinition::new("tags");
pub const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const META_FORMAT: &str = "format";
pub const META_ENTRIES: &str = "entries";
pub const META_ROW_BYTES: &str = "row_bytes";
pub const META_FILE_BYTES: &str = "file_bytes";
pub const META_FILES: &str = "files";
/// Index bytes on disk per row byte, in thousandths, as last measured.
pub const META_INDEX_OVERHEAD: &str = "index_overhead_milli";

/// Version of the index layout inside the data dir format.
pub const INDEX_FORMAT: u64 = 1;
const RECORD_VERSION: u8 = 1;

/// The part of an entry key shared by every variant of a primary key.
pub fn key_prefix(key: &PrimaryKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.target().len() + key.host().len() + 32);
    out.extend_from_slice(key.target().as_bytes());
    out.push(0);
    out.extend_from_slice(key.host().as_bytes());
    out.push(0);
    out.extend_from_slice(&key.route().to_be_bytes());
    match key.class() {
        KeyClass::Get => out.push(0),
        KeyClass::Named(n) => {
            out.push(1);
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n.as_bytes());
        }
    }
    match key.partition() {
        Partition::Public => out.push(0),
        Partition::Credential(id) => {
            out.push(1);
            out.extend_from_slice(&id);
        }
    }
    out
}

/// The route of an entry key, without decoding the rest.
pub fn route_of(bytes: &[u8]) -> Option<u32> {
    let mut nul = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(|(i, _)| i);
    let (_, host_end) = (nul.next()?, nul.next()?);
    let route = bytes.get(host_end + 1..host_end + 5)?;
    Some(u32::from_be_bytes(route.try_into().ok()?))
}

/// The path (the target up to its query) of an entry key.
pub fn path_of(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|b| *b == 0 || *b == b'?')?;
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Every entry key of `target` (all hosts, routes, partitions) starts so.
pub fn target_prefix(target: &str) -> Vec<u8> {
    let mut out = target.as_bytes().to_vec();
    out.push(0);
    out
}

pub fn entry_key(key: &PrimaryKey, variant: &Variant) -> Vec<u8> {
    let mut out = key_prefix(key);
    let mut h = blake3::Hasher::new();
    for (name, value) in variant.iter() {
        h.update(name.as_str().as_bytes());
        match value {
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
            None => {
                h.update(&[0]);
            }
        }
    }
    out.extend_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// The primary key an entry key was made from.
pub fn decode_key(bytes: &[u8]) -> Result<PrimaryKey, Corrupt> {
    let mut r = Reader(bytes);
    let target = r.until_nul()?;
    let host = r.until_nul()?;
    let route = u32::from_be_bytes(r.array()?);
    let class = match r.u8()? {
        0 => KeyClass::Get,
        1 => {
            let len = u32::from_be_bytes(r.array()?) as usize;
            KeyClass::Named(r.str(len)?.into())
        }
        _ => return Err(Corrupt("key class")),
    };
    let partition = match r.u8()? {
        0 => Partition::Public,
        1 => Partition::Credential(r.array()?),
        _ => return Err(Corrupt("key partition")),
    };
    Ok(PrimaryKey::new(route, class, host, target, partition))
}

pub fn access_key(bucket: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&bucket.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Where a stored body is.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredBody {
    Inline(Bytes),
    File { hash: [u8; 32], len: u64 },
}

/// An entry as the index holds it.
#[derive(Debug)]
pub struct Record {
    pub variant: Variant,
    pub version: Version,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Tag names: the tags belong to the route of the key the record is
    /// stored under.
    pub tags: Vec<Box<str>>,
    pub timing: EntryTiming,
    pub freshness: Freshness,
    pub body: StoredBody,
}

impl Record {
    pub fn into_entry(self, key: PrimaryKey, body: crate::entry::EntryBody) -> Entry {
        let route = key.route();
        Entry::new(
            key,
            self.variant,
            self.version,
            self.status,
            self.headers,
            body,
            self.tags
                .into_iter()
                .map(|name| Tag::new(route, name))
                .collect(),
            self.timing,
            self.freshness,
        )
    }

    pub fn date(&self) -> Option<SystemTime> {
        let v = self.headers.get(http::header::DATE)?.to_str().ok()?;
        httpdate::parse_http_date(v.trim()).ok()
    }
}

pub fn encode(entry: &Entry, body: &StoredBody) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        256 + entry.body.len().min(1 << 16) as usize,
    ));
    w.u8(RECORD_VERSION);
    w.u16(entry.status.as_u16());
    match &entry.version {
        Version::Strong(v) => {
            w.u8(1);
            w.bytes(v.as_bytes());
        }
        Version::Unversioned => w.u8(0),
    }
    w.u32(entry.variant.len() as u32);
    for (name, value) in entry.variant.iter() {
        w.bytes(name.as_str().as_bytes());
        match value {
            Some(v) => {
                w.u8(1);
                w.bytes(v.as_bytes());
            }
            None => w.u8(0),
        }
    }
    w.u32(entry.headers.len() as u32);
    for (name, value) in entry.headers.iter_bytes() {
        w.bytes(name.as_str().as_bytes());
        w.bytes(value);
    }
    w.u32(entry.tags.len() as u32);
    for tag in entry.tags.iter() {
        w.bytes(tag.name().as_bytes());
    }
    w.time(entry.timing().request_time);
    w.time(entry.timing().response_time);
    w.duration(entry.timing().initial_age);
    let f = &entry.freshness();
    w.duration(f.lifetime);
    w.u8(u8::from(f.no_cache) | u8::from(f.must_revalidate) << 1 | u8::from(f.shareable) << 2);
    w.opt_duration(f.stale_while_revalidate);
    w.opt_duration(f.stale_if_error);
    match body {
        StoredBody::Inline(b) => {
            w.u8(0);
            w.bytes(b);
        }
        StoredBody::File { hash, len } => {
            w.u8(1);
            w.0.extend_from_slice(hash);
            w.u64(*len);
        }
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Result<Record, Corrupt> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(Corrupt("record version"));
    }
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| Corrupt("status"))?;
    let version = match r.u8()? {
        0 => Version::Unversioned,
        1 => Version::Strong(
            std::str::from_utf8(r.bytes()?)
                .map_err(|_| Corrupt("version"))?
                .into(),
        ),
        _ => return Err(Corrupt("version kind")),
    };
    let n = r.count()?;
    let mut variant = Vec::with_capacity(n);
    for _ in 0..n {
        let name = HeaderName::from_bytes(r.bytes()?).map_err(|_| Corrupt("variant name"))?;
        let value = match r.u8()? {
            0 => None,
            1 => Some(
                std::str::from_utf8(r.bytes()?)
                    .map_err(|_| Corrupt("variant value"))?
                    .into(),
            ),
            _ => return Err(Corrupt("variant value kind")),
        };
        variant.push((name, value));
    }
    let n = r.count()?;
    let mut headers = HeaderMap::with_capacity(n);
    for _ in 0..n {
        let name = HeaderName::from_bytes(r.bytes()?).map_err(|_| Corrupt("header name"))?;
        let value = HeaderValue::from_bytes(r.bytes()?).map_err(|_| Corrupt("header value"))?;
        headers.append(name, value);
    }
    let n = r.count()?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(
            std::str::from_utf8(r.bytes()?)
                .map_err(|_| Corrupt("tag"))?
                .into(),
        );
    }
    let timing = EntryTiming {
        request_time: r.time()?,
        response_time: r.time()?,
        initial_age: r.duration()?,
    };
    let lifetime = r.duration()?;
    let flags = r.u8()?;
    let freshness = Freshness {
        lifetime,
        no_cache: flags & 1 != 0,
        must_revalidate: flags & 2 != 0,
        shareable: flags & 4 != 0,
        stale_while_revalidate: r.opt_duration()?,
        stale_if_error: r.opt_duration()?,
    };
    let body = match r.u8()? {
        0 => StoredBody::Inline(Bytes::copy_from_slice(r.bytes()?)),
        1 => StoredBody::File {
            hash: r.array()?,
            len: r.u64()?,
        },
        _ => return Err(Corrupt("body kind")),
    };
    if !r.0.is_empty() {
        return Err(Corrupt("trailing bytes"));
    }
    Ok(Record {
        variant: variant.into_boxed_slice(),
        version,
        status,
        headers,
        tags,
        timing,
        freshness,
        body,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
    }
    fn opt_duration(&mut self, d: Option<Duration>) {
        match d {
            Some(d) => {
                self.u8(1);
                self.duration(d);
            }
            None => self.u8(0),
        }
    }
    fn time(&mut self, t: SystemTime) {
        self.duration(t.duration_since(UNIX_EPOCH).unwrap_or_default());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        self.take(N)?.try_into().map_err(|_| Corrupt("truncated"))
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items that each take at least one byte.
    fn count(&mut self) -> Result<usize, Corrupt> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(Corrupt("count beyond record"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self, n: usize) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.take(n)?).map_err(|_| Corrupt("utf-8"))
    }
    fn until_nul(&mut self) -> Result<&'a str, Corrupt> {
        let i = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or(Corrupt("key separator"))?;
        let s = std::str::from_utf8(&self.0[..i]).map_err(|_| Corrupt("key utf-8"))?;
        self.0 = &self.0[i + 1..];
        Ok(s)
    }
    fn duration(&mut self) -> Result<Duration, Corrupt> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(Corrupt("nanoseconds"));
        }
        Ok(Duration::new(secs, nanos))
    }
    fn opt_duration(&mut self) -> Result<Option<Duration>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.duration()?)),
            _ => Err(Corrupt("option")),
        }
    }
    fn time(&mut self) -> Result<SystemTime, Corrupt> {
        UNIX_EPOCH
            .checked_add(self.duration()?)
            .ok_or(Corrupt("time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Entry::new(
            PrimaryKey::new(
                3,
                KeyClass::Named("PROPFIND 1".into()),
                "h:80",
                "/a?b",
                Partition::Credential([7; 16]),
            ),
            Box::new([
                (HeaderName::from_static("accept"), Some("text/html".into())),
                (HeaderName::from_static("x-none"), None),
            ]),
            Version::from_etag("\"v1\""),
            StatusCode::NOT_FOUND,
            headers,
            Bytes::from_static(b"body"),
            vec![Tag::new(0, "change:1")],
            EntryTiming {
                request_time: UNIX_EPOCH + Duration::new(100, 5),
                response_time: UNIX_EPOCH + Duration::new(101, 0),
                initial_age: Duration::from_secs(3),
            },
            Freshness {
                lifetime: Duration::from_secs(60),
                no_cache: true,
                must_revalidate: false,
                shareable: true,
                stale_while_revalidate: Some(Duration::from_secs(5)),
                stale_if_error: None,
            },
        )
    }

    #[test]
    fn records_round_trip() {
        let e = sample();
        let body = StoredBody::Inline(Bytes::from_static(b"body"));
        let r = decode(&encode(&e, &body)).unwrap();
        assert_eq!(r.status, e.status);
        assert_eq!(r.version, e.version);
        assert_eq!(r.variant, e.variant);
        assert_eq!(crate::StoredHeaders::from_map(&r.headers), e.headers);
        let names: Vec<Box<str>> = e.tags.iter().map(|t| t.name().into()).collect();
        assert_eq!(r.tags, names);
        assert_eq!(r.timing, e.timing());
        assert_eq!(r.freshness, e.freshness());
        assert_eq!(r.body, body);
    }

    #[test]
    fn keys_round_trip_and_sort_by_target() {
        let e = sample();
        let k = entry_key(&e.key, &e.variant);
        assert!(k.starts_with(&target_prefix("/a?b")));
        assert!(k.starts_with(&key_prefix(&e.key)));
        assert_eq!(decode_key(&k).unwrap(), e.key);
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let bytes = encode(
            &sample(),
            &StoredBody::File {
                hash: [1; 32],
                len: 9,
            },
        );
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let mut b = bytes.clone();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = x as usize % b.len();
            b[i] ^= (x >> 8) as u8 | 1;
            let _ = decode(&b);
            let _ = decode_key(&b);
        }
    }
}
