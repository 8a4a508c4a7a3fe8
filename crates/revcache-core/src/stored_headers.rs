//! Stored response headers: compact, and apart from the buffers they came in.
//!
//! A header received from the upstream is a slice of the connection's read
//! buffer; keeping those values would keep that buffer (kilobytes) alive as
//! long as the entry. So storing copies every header into one block of its
//! own: a table of (name, end of value) and the values back to back.
//! Well-known names are a number into [`KNOWN`] (2 bytes, not a 32-byte
//! `HeaderName`); other names are kept once per entry.
//!
//! A hit turns each value into a `HeaderValue` that is a slice of the block:
//! one reference count, no copy and no second validation, because the bytes
//! were validated when stored and the block never changes. Earlier layouts
//! kept a `HeaderValue` per header (40 bytes each, 160 more per entry for
//! four headers) or re-validated every value on every hit (about 870 more
//! instructions per hit, bench/http-hit/profile.sh).

use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Response header names common enough to be stored as a number.
static KNOWN: [HeaderName; 34] = [
    header::ACCEPT_RANGES,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    header::AGE,
    header::ALT_SVC,
    header::CACHE_CONTROL,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_LOCATION,
    header::CONTENT_RANGE,
    header::CONTENT_SECURITY_POLICY,
    header::CONTENT_TYPE,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::LINK,
    header::LOCATION,
    header::PRAGMA,
    header::REFERRER_POLICY,
    header::SERVER,
    header::SET_COOKIE,
    header::STRICT_TRANSPORT_SECURITY,
    header::VARY,
    header::WARNING,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::X_XSS_PROTECTION,
];

/// An entry's end-to-end response headers, in their received order
/// (repeated names included).
#[derive(Clone, Default)]
pub struct StoredHeaders {
    /// `[count: u32]`, then per header `[name: u16][sensitive: u16][end: u32]`,
    /// then every value back to back (`end` is where a value stops, counted
    /// from the first value). Names index [`KNOWN`], or `KNOWN.len() + i`
    /// for the entry's `i`th other name. Only [`StoredHeaders::from_map`]
    /// writes it, from values that were valid `HeaderValue`s.
    block: Bytes,
    other_names: Box<[HeaderName]>,
}

const COUNT_BYTES: usize = 4;
const ROW_BYTES: usize = 8;

/// One header as stored: its name and the bytes of its value.
struct Row<'a> {
    name: &'a HeaderName,
    value: &'a [u8],
    range: std::ops::Range<usize>,
    sensitive: bool,
}

impl StoredHeaders {
    pub fn from_map(map: &HeaderMap) -> Self {
        let mut other_names: Vec<HeaderName> = Vec::new();
        let values_len: usize = map.values().map(HeaderValue::len).sum();
        let table_len = COUNT_BYTES + ROW_BYTES * map.len();
        let mut block = Vec::with_capacity(table_len + values_len);
        block.extend_from_slice(&0u32.to_le_bytes());
        let mut kept = Vec::with_capacity(map.len());
        let mut end: usize = 0;
        for (name, value) in map {
            let index = match KNOWN.iter().position(|k| k == name) {
                Some(i) => i,
                None => match other_names.iter().position(|n| n == name) {
                    Some(i) => KNOWN.len() + i,
                    None => {
                        other_names.push(name.clone());
                        KNOWN.len() + other_names.len() - 1
                    }
                },
            };
            // hyper refuses a response with anywhere near 65,535 names or
            // 4 GiB of headers long before it reaches here.
            let (Ok(index), Ok(value_end)) =
                (u16::try_from(index), u32::try_from(end + value.len()))
            else {
                continue;
            };
            end = value_end as usize;
            block.extend_from_slice(&index.to_le_bytes());
            block.extend_from_slice(&u16::from(value.is_sensitive()).to_le_bytes());
            block.extend_from_slice(&value_end.to_le_bytes());
            kept.push(value);
        }
        let count = kept.len() as u32;
        block[..COUNT_BYTES].copy_from_slice(&count.to_le_bytes());
        for value in kept {
            block.extend_from_slice(value.as_bytes());
        }
        StoredHeaders {
            block: Bytes::from(block),
            other_names: other_names.into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        read_u32(&self.block, 0).map_or(0, |n| n as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        let count = self.len();
        let values = COUNT_BYTES + ROW_BYTES * count;
        let mut start = values;
        (0..count).filter_map(move |i| {
            let at = COUNT_BYTES + ROW_BYTES * i;
            let index = read_u16(&self.block, at)?;
            let sensitive = read_u16(&self.block, at + 2)? != 0;
            let end = values + read_u32(&self.block, at + 4)? as usize;
            let range = start..end;
            start = end;
            Some(Row {
                name: self.name(index)?,
                value: self.block.get(range.clone())?,
                range,
                sensitive,
            })
        })
    }

    fn value_of(&self, row: &Row<'_>) -> HeaderValue {
        // SAFETY: `from_map` copied these bytes from a valid `HeaderValue`,
        // and the block is never written again, so they are still a valid
        // header value. (Debug builds check it again.)
        let mut value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(self.block.slice(row.range.clone()))
        };
        value.set_sensitive(row.sensitive);
        value
    }

    /// Every header as (name, value), in stored order. Each value shares the
    /// stored bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, HeaderValue)> {
        self.rows().map(|row| (row.name, self.value_of(&row)))
    }

    /// Every header as (name, value bytes), in stored order.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        self.rows().map(|row| (row.name, row.value))
    }

    fn name(&self, index: u16) -> Option<&HeaderName> {
        let index = usize::from(index);
        KNOWN
            .get(index)
            .or_else(|| self.other_names.get(index.checked_sub(KNOWN.len())?))
    }

    /// The values of `name` (case-insensitive), in stored order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = HeaderValue> + 'a {
        self.rows()
            .filter(move |row| row.name.as_str().eq_ignore_ascii_case(name))
            .map(|row| self.value_of(&row))
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// The first value of `name` (case-insensitive) as text, when it is
    /// visible ASCII.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        let row = self
            .rows()
            .find(|row| row.name.as_str().eq_ignore_ascii_case(name))?;
        let text = std::str::from_utf8(row.value).ok()?;
        text.bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            .then_some(text)
    }

    /// Whether both hold the same headers apart from those named in
    /// `ignored`: the same values per name, in the same order per name (the
    /// order between different names carries no meaning, and a 304's merge
    /// changes it).
    pub fn same_except(&self, other: &StoredHeaders, ignored: &[HeaderName]) -> bool {
        let kept = |h: &StoredHeaders| h.iter_bytes().filter(|(n, _)| !ignored.contains(n)).count();
        let values = |h: &'_ StoredHeaders, name: &HeaderName| {
            h.iter_bytes()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.to_vec())
                .collect::<Vec<_>>()
        };
        kept(self) == kept(other)
            && self
                .iter_bytes()
                .filter(|(n, _)| !ignored.contains(n))
                .all(|(n, _)| values(self, n) == values(other, n))
    }

    /// Bytes these headers take beyond the entry itself, for its weight.
    pub fn heap_bytes(&self) -> usize {
        self.block.len()
            + self
                .other_names
                .iter()
                .map(|n| n.as_str().len() + std::mem::size_of::<HeaderName>())
                .sum::<usize>()
    }

    /// A `HeaderMap` with room for `extra` more headers.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len() + extra);
        for (n, v) in self.iter() {
            map.append(n.clone(), v);
        }
        map
    }
}

fn read_u16(block: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(block.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(block: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(block.get(at..at + 4)?.try_into().ok()?))
}

impl From<&HeaderMap> for StoredHeaders {
    fn from(map: &HeaderMap) -> Self {
        StoredHeaders::from_map(map)
    }
}

impl PartialEq for StoredHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter_bytes().eq(other.iter_bytes())
    }
}

impl Eq for StoredHeaders {}

impl fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderMap {
        let mut map = HeaderMap::new();
        map.append("content-type", HeaderValue::from_static("application/json"));
        map.append("x-gerrit-id", HeaderValue::from_static("a"));
        map.append("set-cookie", HeaderValue::from_static("s=1"));
        map.append("x-gerrit-id", HeaderValue::from_static("b"));
        map.append("etag", HeaderValue::from_static("\"v1\""));
        map.append("x-empty", HeaderValue::from_static(""));
        map
    }

    #[test]
    fn headers_come_back_in_order_with_repeated_and_unknown_names() {
        let map = sample();
        let stored = StoredHeaders::from_map(&map);
        assert_eq!(stored.len(), 6);
        let back: Vec<(String, String)> = stored
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(back, want);
        assert_eq!(stored.to_map(0), map);
        assert_eq!(stored.get("ETag").unwrap(), "\"v1\"");
        assert_eq!(
            stored.get_all("x-gerrit-id").collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(stored.get("x-empty").unwrap(), "");
        assert!(stored.get("vary").is_none());
        assert_eq!(stored, StoredHeaders::from_map(&stored.to_map(0)));
    }

    #[test]
    fn stored_values_do_not_keep_the_received_buffer_alive() {
        let buffer = Bytes::from(b"HTTP/1.1 200 OK\r\netag: \"v1\"\r\n\r\n".to_vec());
        let mut map = HeaderMap::new();
        map.insert(
            "etag",
            HeaderValue::from_maybe_shared(buffer.slice(23..27)).unwrap(),
        );
        let stored = StoredHeaders::from_map(&map);
        let value = stored.get("etag").unwrap();
        let within = buffer.as_ptr_range();
        assert_eq!(value, "\"v1\"");
        assert!(!within.contains(&value.as_bytes().as_ptr()));
    }

    #[test]
    fn comparison_ignores_the_named_headers_and_the_order_between_names() {
        let a = StoredHeaders::from_map(&sample());
        let mut reordered = HeaderMap::new();
        for name in [
            "etag",
            "x-empty",
            "set-cookie",
            "x-gerrit-id",
            "content-type",
        ] {
            for v in sample().get_all(name) {
                reordered.append(name, v.clone());
            }
        }
        let date = HeaderValue::from_static("Sat, 21 Nov 2026 08:00:00 GMT");
        reordered.append("date", date);
        let b = StoredHeaders::from_map(&reordered);
        assert!(!a.same_except(&b, &[]));
        assert!(a.same_except(&b, &[header::DATE]));

        let mut values_swapped = sample();
        values_swapped.remove("x-gerrit-id");
        values_swapped.append("x-gerrit-id", HeaderValue::from_static("b"));
        values_swapped.append("x-gerrit-id", HeaderValue::from_static("a"));
        assert!(!a.same_except(&StoredHeaders::from_map(&values_swapped), &[header::DATE]));
    }

    #[test]
    fn values_keep_their_bytes_and_sensitivity_but_only_text_reads_as_text() {
        let mut map = HeaderMap::new();
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        map.append("x-secret", secret);
        map.append("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        map.append("x-tab", HeaderValue::from_static("a\tb"));
        let stored = StoredHeaders::from_map(&map);
        assert!(stored.get("x-secret").unwrap().is_sensitive());
        assert!(!stored.get("x-tab").unwrap().is_sensitive());
        assert_eq!(stored.get("x-latin").unwrap().as_bytes(), b"caf\xe9");
        assert_eq!(stored.get_str("x-latin"), None);
        assert_eq!(stored.get_str("X-Tab"), Some("a\tb"));
        assert_eq!(stored.to_map(0), map);
    }

    #[test]
    fn no_headers_store_nothing() {
        let stored = StoredHeaders::from_map(&HeaderMap::new());
        assert!(stored.is_empty());
        assert_eq!(stored.iter().count(), 0);
        assert_eq!(stored, StoredHeaders::default());
    }
}
