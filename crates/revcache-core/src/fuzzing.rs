//! The invariants the fuzz targets of this crate check (`fuzz/` at the
//! repository root), and the replay of their committed seed corpus.
//!
//! Each `check_*` takes arbitrary bytes and panics only when an invariant
//! breaks; that panic is the finding libFuzzer reports. The same functions
//! replay `fuzz/corpus/<target>/*` as ordinary tests, so CI runs every
//! target on its corpus without a nightly toolchain. Not part of the API.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::disk::format::{self, StoredBody};
use crate::entry::{Entry, EntryBody, EntryTiming, Freshness, Variant};
use crate::key::{KeyClass, PrimaryKey};
use crate::partition::Partition;
use crate::stored_headers::StoredHeaders;
use crate::tag::Tag;
use crate::version::Version;

/// `fuzz/corpus/<target>` of this repository.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of `fuzz/corpus/<target>`; panics naming
/// each file whose check failed, or when the corpus is missing or empty.
pub fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|f| f.ok().map(|f| f.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: checks failed on {failed:?}");
}

/// A header block as the targets read it: one `name:value` per line, a
/// name starting with `!` marks its value sensitive. Lines whose name or
/// value `http` refuses are left out, as hyper would refuse them.
pub fn header_lines(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (name, sensitive) = match name.strip_prefix(b"!") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) else {
            continue;
        };
        value.set_sensitive(sensitive);
        map.append(name, value);
    }
    map
}

/// `stored_headers`: a header block stored and read back is the same
/// headers, in order, with their sensitivity, each still a valid
/// `HeaderName`/`HeaderValue`.
pub fn check_stored_headers(data: &[u8]) {
    let map = header_lines(data);
    let stored = StoredHeaders::from_map(&map);
    assert_eq!(stored.len(), map.len());
    assert_eq!(stored.is_empty(), map.is_empty());
    let back: Vec<(&HeaderName, HeaderValue)> = stored.iter().collect();
    let want: Vec<(&HeaderName, &HeaderValue)> = map.iter().collect();
    assert_eq!(back.len(), want.len());
    for ((n, v), (wn, wv)) in back.iter().zip(&want) {
        assert_eq!(n, wn);
        assert_eq!(v.as_bytes(), wv.as_bytes());
        assert_eq!(v.is_sensitive(), wv.is_sensitive());
        assert!(HeaderName::from_bytes(n.as_str().as_bytes()).is_ok());
        assert!(HeaderValue::from_bytes(v.as_bytes()).is_ok());
    }
    assert_eq!(stored.to_map(0), map);
    for name in map.keys() {
        let got: Vec<HeaderValue> = stored.get_all(name.as_str()).collect();
        let want: Vec<&HeaderValue> = map.get_all(name).iter().collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(a, b)| a == b));
        let upper = name.as_str().to_ascii_uppercase();
        assert_eq!(stored.get(&upper).as_ref(), map.get(name));
        if let Some(text) = stored.get_str(name.as_str()) {
            assert_eq!(Some(text.as_bytes()), map.get(name).map(|v| v.as_bytes()));
            assert!(
                text.bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            );
        }
    }
    let again = StoredHeaders::from_map(&stored.to_map(0));
    assert_eq!(again, stored);
    assert!(stored.same_except(&again, &[]));
}

/// `record`: arbitrary bytes decode as a record (or a key) or give an
/// error; what decodes holds only valid header names and values, and
/// encoding it again decodes to the same entry, byte for byte the second
/// time.
pub fn check_record(data: &[u8]) {
    check_record_bytes(data);
    check_key_bytes(data);
}

fn check_record_bytes(data: &[u8]) {
    let Ok(record) = format::decode(data) else {
        return;
    };
    for (name, value) in record.headers.iter() {
        assert!(HeaderName::from_bytes(name.as_str().as_bytes()).is_ok());
        assert!(HeaderValue::from_bytes(value.as_bytes()).is_ok());
    }
    for (name, _) in record.variant.iter() {
        assert!(HeaderName::from_bytes(name.as_str().as_bytes()).is_ok());
    }
    let _ = record.date();
    let key = PrimaryKey::new(7, KeyClass::Get, "h", "/t", Partition::Public);
    let body = record.body.clone();
    let entry = record.into_entry(key.clone(), EntryBody::Memory(Bytes::new()));
    let _ = (entry.date(), entry.weight());
    let encoded = format::encode(&entry, &body);
    let again = format::decode(&encoded).expect("a re-encoded record decodes");
    assert_eq!(again.status, entry.status);
    assert_eq!(again.version, entry.version);
    assert_eq!(again.variant, entry.variant);
    assert_eq!(StoredHeaders::from_map(&again.headers), entry.headers);
    let tags: Vec<&str> = entry.tags.iter().map(Tag::name).collect();
    assert_eq!(again.tags.iter().map(|t| &**t).collect::<Vec<_>>(), tags);
    assert_eq!(again.timing, entry.timing());
    assert_eq!(again.freshness, entry.freshness());
    assert_eq!(again.body, body);
    let entry_again = again.into_entry(key.clone(), EntryBody::Memory(Bytes::new()));
    assert_eq!(format::encode(&entry_again, &body), encoded);
    if let StoredBody::Inline(inline) = &body {
        let shared = crate::record::encode(&entry, inline);
        let decoded = crate::record::decode(key, &shared).expect("an inline record decodes");
        assert_eq!(decoded.body.bytes(), Some(inline));
    }
}

fn check_key_bytes(data: &[u8]) {
    let Ok(key) = format::decode_key(data) else {
        return;
    };
    let prefix = format::key_prefix(&key);
    assert!(
        data.starts_with(&prefix),
        "a key decodes from its prefix only"
    );
    assert!(format::decode_key(&prefix).ok().as_ref() == Some(&key));
    assert_eq!(format::route_of(&prefix), Some(key.route()));
    assert!(prefix.starts_with(&format::target_prefix(key.target())));
    let path_end = key.target().find('?').unwrap_or(key.target().len());
    assert_eq!(format::path_of(&prefix), Some(&key.target()[..path_end]));
    let entry_key = format::entry_key(&key, &Variant::default());
    assert!(format::decode_key(&entry_key).ok().as_ref() == Some(&key));
}

/// An encoded record of a plausible entry, for seeds.
pub fn sample_record(file_body: bool) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    headers.append("content-type", HeaderValue::from_static("application/json"));
    headers.append("etag", HeaderValue::from_static("\"5f3a\""));
    headers.append("cache-control", HeaderValue::from_static("max-age=60"));
    headers.append("x-gerrit-meta", HeaderValue::from_static("a"));
    headers.append(
        "date",
        HeaderValue::from_static("Sun, 29 Nov 2026 08:00:00 GMT"),
    );
    let entry = Entry::new(
        PrimaryKey::new(
            3,
            KeyClass::Named("PROPFIND 1 allprop".into()),
            "dav.example:443/repo",
            "/a/b?c=d",
            Partition::Credential([9; 16]),
        ),
        Box::new([
            (
                HeaderName::from_static("accept-encoding"),
                Some("gzip".into()),
            ),
            (HeaderName::from_static("accept-language"), None),
        ]),
        Version::from_etag("\"5f3a\""),
        StatusCode::OK,
        headers,
        Bytes::from_static(b"{}"),
        vec![Tag::new(3, "change:1"), Tag::new(3, "dav:res:/a/b")],
        EntryTiming {
            request_time: UNIX_EPOCH + Duration::new(1_795_000_000, 250_000_000),
            response_time: UNIX_EPOCH + Duration::from_secs(1_795_000_001),
            initial_age: Duration::from_secs(4),
        },
        Freshness {
            lifetime: Duration::from_secs(60),
            no_cache: false,
            must_revalidate: true,
            shareable: true,
            stale_while_revalidate: Some(Duration::from_secs(30)),
            stale_if_error: None,
        },
    );
    let body = if file_body {
        StoredBody::File {
            hash: [0xab; 32],
            len: 123_456,
        }
    } else {
        StoredBody::Inline(Bytes::from_static(b"{\"change\":1}"))
    };
    format::encode(&entry, &body)
}

/// An encoded key of a plausible entry, for seeds.
pub fn sample_key() -> Vec<u8> {
    let key = PrimaryKey::new(
        0x1234_5678,
        KeyClass::Get,
        "review.example:443",
        "/changes/?q=status:open+project:core&n=25",
        Partition::Public,
    );
    format::entry_key(&key, &Variant::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_seed_corpus_keeps_its_invariants() {
        replay("stored_headers", check_stored_headers);
    }

    #[test]
    fn record_seed_corpus_keeps_its_invariants() {
        replay("record", check_record);
    }

    #[test]
    fn sample_records_and_keys_pass_their_checks() {
        check_record(&sample_record(false));
        check_record(&sample_record(true));
        check_record(&sample_key());
    }

    /// Writes the generated seeds; run with `--ignored` after a format change.
    #[test]
    #[ignore]
    fn write_record_seeds() {
        let dir = corpus_dir("record");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inline-body"), sample_record(false)).unwrap();
        std::fs::write(dir.join("file-body"), sample_record(true)).unwrap();
        std::fs::write(dir.join("entry-key"), sample_key()).unwrap();
    }
}
