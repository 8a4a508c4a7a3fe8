//! Stored response headers: compact, and apart from the buffers they came in.
//!
//! A header received from the upstream is a slice of the connection's read
//! buffer; keeping those values would keep that buffer (kilobytes) alive as
//! long as the entry. So storing copies every value into one block of its
//! own, back to back, and keeps a `HeaderValue` per header that is a slice
//! of that block. Well-known names are a number into [`KNOWN`] (2 bytes, not
//! a 32-byte `HeaderName`); other names are kept once per entry. A hit
//! builds its `HeaderMap` from these by counting references: nothing is
//! copied or validated again.
//!
//! A first version kept only the block and value offsets (about 60 bytes
//! less per entry), but re-validating every value on every hit cost about
//! 1,600 instructions per hit (bench/http-hit/profile.sh).

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
    /// Per header, its name: an index into [`KNOWN`], or `KNOWN.len() + i`
    /// for the entry's `i`th other name.
    names: Box<[u16]>,
    /// Per header, its value: a slice of one block that holds every value
    /// (validated once, when stored; a hit only counts a reference).
    values: Box<[HeaderValue]>,
    other_names: Box<[HeaderName]>,
}

impl StoredHeaders {
    pub fn from_map(map: &HeaderMap) -> Self {
        let block = Bytes::from(
            map.values()
                .flat_map(|v| v.as_bytes())
                .copied()
                .collect::<Vec<u8>>(),
        );
        let mut names = Vec::with_capacity(map.len());
        let mut values = Vec::with_capacity(map.len());
        let mut other_names: Vec<HeaderName> = Vec::new();
        let mut start = 0;
        for (name, value) in map {
            let range = start..start + value.len();
            start = range.end;
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
            // A response has far fewer than 65,535 header names (hyper
            // refuses such a response long before), and the bytes were a
            // valid value a moment ago: neither can fail here.
            let (Ok(index), Ok(mut stored)) = (
                u16::try_from(index),
                HeaderValue::from_maybe_shared(block.slice(range)),
            ) else {
                continue;
            };
            stored.set_sensitive(value.is_sensitive());
            names.push(index);
            values.push(stored);
        }
        StoredHeaders {
            names: names.into_boxed_slice(),
            values: values.into_boxed_slice(),
            other_names: other_names.into_boxed_slice(),
        }
    }

    /// Every header as (name, value), in stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .filter_map(|(&n, v)| Some((self.name(n)?, v)))
    }

    fn name(&self, index: u16) -> Option<&HeaderName> {
        let index = usize::from(index);
        KNOWN
            .get(index)
            .or_else(|| self.other_names.get(index.checked_sub(KNOWN.len())?))
    }

    /// The values of `name` (case-insensitive), in stored order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.iter()
            .filter(move |(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether both hold the same headers apart from those named in
    /// `ignored`: the same values per name, in the same order per name (the
    /// order between different names carries no meaning, and a 304's merge
    /// changes it).
    pub fn same_except(&self, other: &StoredHeaders, ignored: &[HeaderName]) -> bool {
        let kept = |h: &StoredHeaders| h.iter().filter(|(n, _)| !ignored.contains(n)).count();
        kept(self) == kept(other)
            && self
                .iter()
                .filter(|(n, _)| !ignored.contains(n))
                .all(|(n, _)| self.get_all(n.as_str()).eq(other.get_all(n.as_str())))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Bytes these headers take beyond the entry itself, for its weight.
    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(HeaderValue::len).sum::<usize>()
            + self.values.len() * std::mem::size_of::<HeaderValue>()
            + self.names.len() * std::mem::size_of::<u16>()
            + self
                .other_names
                .iter()
                .map(|n| n.as_str().len() + std::mem::size_of::<HeaderName>())
                .sum::<usize>()
    }

    /// A `HeaderMap` with room for `extra` more headers.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.names.len() + extra);
        for (n, v) in self.iter() {
            map.append(n.clone(), v.clone());
        }
        map
    }
}

impl From<&HeaderMap> for StoredHeaders {
    fn from(map: &HeaderMap) -> Self {
        StoredHeaders::from_map(map)
    }
}

impl PartialEq for StoredHeaders {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
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
    fn no_headers_store_nothing() {
        let stored = StoredHeaders::from_map(&HeaderMap::new());
        assert!(stored.is_empty());
        assert_eq!(stored.iter().count(), 0);
        assert_eq!(stored, StoredHeaders::default());
    }
}
