//! Byte ranges (RFC 9110 §14): which part of a complete representation a
//! `Range` request asks for, and whether its `If-Range` still holds.
//!
//! revcache answers a single byte range from a stored (or just fetched)
//! complete response. A request for several ranges, or in a unit other
//! than bytes, is not answered here: the proxy passes it through.

use http::header::{ETAG, LAST_MODIFIED, RANGE};
use http::{HeaderMap, HeaderValue};

use super::conditional::Headers;

/// One `bytes` range-spec (RFC 9110 §14.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last` (`last` absent: to the end).
    From { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

/// What a request's `Range` field asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// No `Range`, or one a server must ignore (invalid syntax, RFC 9110
    /// §14.2): the whole representation.
    Whole,
    /// One byte range.
    One(ByteRange),
    /// Several ranges, or another unit: not answered from the cache.
    Other,
}

/// The bytes of a representation `len` bytes long that a range selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `start..start + len` of the representation.
    Part { start: u64, len: u64 },
    /// No byte of the representation is in the range: 416.
    Unsatisfiable,
}

/// Reads the request's `Range` field.
pub fn requested(headers: &HeaderMap) -> Requested {
    let mut values = headers.get_all(RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // Absent: the whole representation. Sent twice: passed on for
        // the upstream to judge.
        return if headers.contains_key(RANGE) {
            Requested::Other
        } else {
            Requested::Whole
        };
    };
    let Ok(value) = value.to_str() else {
        return Requested::Whole;
    };
    parse(value)
}

/// Parses a `Range` field value.
pub fn parse(value: &str) -> Requested {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Requested::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        // A unit revcache does not know: the upstream may.
        return if is_token(unit.trim()) {
            Requested::Other
        } else {
            Requested::Whole
        };
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = specs.next() else {
        return Requested::Whole;
    };
    let Some(range) = spec(first) else {
        return Requested::Whole;
    };
    match specs.next() {
        None => Requested::One(range),
        Some(_) => Requested::Other,
    }
}

fn spec(s: &str) -> Option<ByteRange> {
    let (first, last) = s.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Some(ByteRange::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(ByteRange::From { first, last: None });
    }
    let last = digits(last)?;
    // RFC 9110 §14.1.1: a last-pos below first-pos makes the spec invalid.
    (last >= first).then_some(ByteRange::From {
        first,
        last: Some(last),
    })
}

/// A non-empty string of ASCII digits; larger than u64 saturates (a
/// position beyond any representation).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ByteRange {
    /// The bytes this range selects of a representation `len` bytes long
    /// (RFC 9110 §14.1.2).
    pub fn select(self, len: u64) -> Selection {
        match self {
            ByteRange::From { first, last } => {
                if first >= len {
                    return Selection::Unsatisfiable;
                }
                let last = last.map_or(len - 1, |l| l.min(len - 1));
                Selection::Part {
                    start: first,
                    len: last - first + 1,
                }
            }
            ByteRange::Suffix(0) => Selection::Unsatisfiable,
            ByteRange::Suffix(n) => {
                if len == 0 {
                    return Selection::Unsatisfiable;
                }
                let n = n.min(len);
                Selection::Part {
                    start: len - n,
                    len: n,
                }
            }
        }
    }
}

/// Whether the request's `If-Range` (if any) lets its range apply to the
/// representation described by `response` (RFC 9110 §13.1.5): an entity
/// tag must match the response's strong ETag exactly; a date must equal
/// its `Last-Modified`. When it does not, the whole representation is
/// sent with a 200.
pub fn if_range_holds(condition: Option<&HeaderValue>, response: &impl Headers) -> bool {
    let Some(condition) = condition else {
        return true;
    };
    let Ok(condition) = condition.to_str() else {
        return false;
    };
    let condition = condition.trim();
    if condition.starts_with('"') || condition.starts_with("W/") {
        // Weak tags never match (strong comparison).
        return !condition.starts_with("W/")
            && response
                .first(ETAG)
                .is_some_and(|etag| etag.trim() == condition && etag.trim().starts_with('"'));
    }
    let Ok(date) = httpdate::parse_http_date(condition) else {
        return false;
    };
    response
        .first(LAST_MODIFIED)
        .and_then(|lm| httpdate::parse_http_date(lm.trim()).ok())
        .is_some_and(|lm| lm == date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(first: u64, last: Option<u64>) -> Requested {
        Requested::One(ByteRange::From { first, last })
    }

    #[test]
    fn single_ranges_in_every_form_are_read() {
        assert_eq!(parse("bytes=0-99"), one(0, Some(99)));
        assert_eq!(parse("Bytes = 100-"), one(100, None));
        assert_eq!(parse("bytes=-500"), Requested::One(ByteRange::Suffix(500)));
        assert_eq!(parse("bytes=5-5"), one(5, Some(5)));
        assert_eq!(parse("bytes=0-99,"), one(0, Some(99)));
    }

    #[test]
    fn several_ranges_or_another_unit_are_passed_on() {
        assert_eq!(parse("bytes=0-1,5-9"), Requested::Other);
        assert_eq!(parse("items=0-9"), Requested::Other);
    }

    #[test]
    fn an_invalid_range_means_the_whole_representation() {
        for v in [
            "bytes=9-1",
            "bytes=a-b",
            "bytes=",
            "bytes",
            "bytes=--1",
            "bytes=1-2-3",
            "by tes=0-1",
        ] {
            assert_eq!(parse(v), Requested::Whole, "{v}");
        }
    }

    #[test]
    fn a_range_selects_what_the_representation_has() {
        let sel = |r: Requested, len| match r {
            Requested::One(r) => r.select(len),
            _ => unreachable!(),
        };
        assert_eq!(
            sel(parse("bytes=0-99"), 1000),
            Selection::Part { start: 0, len: 100 }
        );
        assert_eq!(
            sel(parse("bytes=900-5000"), 1000),
            Selection::Part {
                start: 900,
                len: 100
            }
        );
        assert_eq!(
            sel(parse("bytes=-100"), 1000),
            Selection::Part {
                start: 900,
                len: 100
            }
        );
        assert_eq!(
            sel(parse("bytes=-5000"), 1000),
            Selection::Part {
                start: 0,
                len: 1000
            }
        );
        assert_eq!(sel(parse("bytes=1000-"), 1000), Selection::Unsatisfiable);
        assert_eq!(sel(parse("bytes=-0"), 1000), Selection::Unsatisfiable);
        assert_eq!(sel(parse("bytes=0-"), 0), Selection::Unsatisfiable);
        assert_eq!(
            sel(parse("bytes=99999999999999999999999-"), 10),
            Selection::Unsatisfiable
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        let res = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let holds = |v: &str| if_range_holds(Some(&HeaderValue::from_str(v).unwrap()), &res);
        assert!(if_range_holds(None, &res));
        assert!(holds("\"v1\""));
        assert!(!holds("\"v2\""));
        assert!(!holds("W/\"v1\""));
        assert!(holds("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(holds("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(!holds("Sun, 06 Nov 1994 08:49:38 GMT"));
        assert!(!holds("garbage"));
        let weak = headers(&[("etag", "W/\"v1\"")]);
        let tag = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(!if_range_holds(Some(&tag("W/\"v1\"")), &weak));
        assert!(!if_range_holds(Some(&tag("\"v1\"")), &weak));
    }
}
