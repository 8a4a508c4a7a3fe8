//! `policy` and `http_date`: the RFC 9111 parsers of `crate::policy` on
//! one header block (`name:value` lines, see
//! `revcache_core::fuzzing::header_lines`), read both as a response's
//! and as a request's headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, EXPIRES, IF_RANGE, RANGE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use revcache_core::fuzzing::header_lines;
use revcache_core::{Entry, KeyClass, Partition, PrimaryKey, StoredHeaders, Version};

use crate::policy::cache_control::{DELTA_MAX, Delta};
use crate::policy::freshness::{age_header, http_date};
use crate::policy::range::{self, ByteRange, Requested, Selection};
use crate::policy::{
    RequestDirectives, ResponseDirectives, Reuse, Sharing, conditional, merge, reuse, storability,
    stored_freshness,
};

/// When the response arrived, for every check.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

/// Never panics; a directive given twice keeps its first value; an
/// invalid `max-age`/`s-maxage`/`Expires`/`Age` makes the response stale;
/// ranges select bytes inside the representation; stored and received
/// headers answer conditions alike.
pub fn check_policy(data: &[u8]) {
    let headers = header_lines(data);
    check_cache_control(&headers);
    check_targeted(&headers);
    check_ranges(&headers);
    check_conditions(&headers);
}

/// `Cache-Control` lines given once and given twice read the same: the
/// first occurrence wins, and flags stay set.
fn doubled(headers: &HeaderMap) -> HeaderMap {
    let mut twice = headers.clone();
    for line in headers.get_all(CACHE_CONTROL) {
        twice.append(CACHE_CONTROL, line.clone());
    }
    twice
}

fn check_cache_control(headers: &HeaderMap) {
    let cc = ResponseDirectives::parse(headers);
    assert_eq!(ResponseDirectives::parse(&doubled(headers)), cc);
    let req = RequestDirectives::parse(headers);
    assert_eq!(RequestDirectives::parse(&doubled(headers)), req);

    let mut later = headers.clone();
    later.append(
        CACHE_CONTROL,
        HeaderValue::from_static(
            "max-age=1, s-maxage=2, stale-while-revalidate=3, stale-if-error=4",
        ),
    );
    let after = ResponseDirectives::parse(&later);
    for (first, then) in [
        (cc.max_age, after.max_age),
        (cc.s_maxage, after.s_maxage),
        (cc.stale_while_revalidate, after.stale_while_revalidate),
        (cc.stale_if_error, after.stale_if_error),
    ] {
        if first.is_some() {
            assert_eq!(first, then, "a later directive replaced the first");
        }
    }
    for delta in [cc.max_age, cc.s_maxage, req.max_age, req.min_fresh] {
        assert!(delta.is_none_or(|d| d.seconds() <= DELTA_MAX));
    }
    if let Some(age) = age_header(headers) {
        assert!(age <= DELTA_MAX);
    }
    check_staleness(headers, &cc, Sharing::Strict);
    check_staleness(headers, &cc, Sharing::Rfc9111);

    for method in [Method::GET, Method::HEAD] {
        for status in [200, 203, 302, 404, 500] {
            let status = StatusCode::from_u16(status).unwrap_or_default();
            for creds in [false, true] {
                let _ = storability(&method, status, &req, &cc, headers, creds, Sharing::Strict);
            }
        }
    }
}

/// Whether the freshness lifetime comes from an invalid value.
fn invalid_lifetime(headers: &HeaderMap, cc: &ResponseDirectives) -> bool {
    match (cc.s_maxage, cc.max_age) {
        (Some(s), _) => s == Delta::Invalid,
        (None, Some(m)) => m == Delta::Invalid,
        (None, None) => headers.contains_key(EXPIRES) && http_date(headers, EXPIRES).is_none(),
    }
}

/// Whether the first member of `Age` is not delta-seconds.
fn invalid_age(headers: &HeaderMap) -> bool {
    headers.get(AGE).is_some_and(|v| {
        let first = v
            .as_bytes()
            .split(|b| *b == b',')
            .next()
            .unwrap_or_default();
        let first = first.trim_ascii();
        first.is_empty() || !first.iter().all(u8::is_ascii_digit)
    })
}

fn check_staleness(headers: &HeaderMap, cc: &ResponseDirectives, sharing: Sharing) {
    let (freshness, timing) = stored_freshness(StatusCode::OK, headers, cc, now(), now(), sharing);
    let invalid = invalid_lifetime(headers, cc);
    if invalid {
        assert_eq!(freshness.lifetime, Duration::ZERO, "invalid means stale");
    }
    if !invalid && !invalid_age(headers) {
        return;
    }
    let entry = Entry::new(
        PrimaryKey::new(1, KeyClass::Get, "h", "/", Partition::Public),
        Box::new([]),
        Version::Unversioned,
        StatusCode::OK,
        headers.clone(),
        Bytes::new(),
        Vec::new(),
        timing,
        freshness,
    );
    assert_ne!(
        reuse(&entry, &RequestDirectives::default(), now()),
        Reuse::Fresh,
        "an invalid lifetime or Age served as fresh"
    );
}

fn check_targeted(headers: &HeaderMap) {
    let targets = [
        HeaderName::from_static("revcache-cache-control"),
        HeaderName::from_static("cdn-cache-control"),
    ];
    let cc = ResponseDirectives::for_cache(headers, &targets);
    check_staleness(headers, &cc, Sharing::Strict);
    assert_eq!(
        ResponseDirectives::for_cache(headers, &[]),
        ResponseDirectives::parse(headers)
    );
}

fn check_ranges(headers: &HeaderMap) {
    let requested = range::requested(headers);
    if headers.get_all(RANGE).iter().count() > 1 {
        assert_eq!(requested, Requested::Other);
    }
    for value in headers.get_all(RANGE) {
        if let Ok(text) = value.to_str() {
            check_range(range::parse(text));
        }
    }
    check_range(requested);
    let stored = StoredHeaders::from_map(headers);
    for condition in [headers.get(IF_RANGE), None] {
        assert_eq!(
            range::if_range_holds(condition, headers),
            range::if_range_holds(condition, &stored),
            "stored and received headers disagree on If-Range"
        );
    }
}

fn check_range(requested: Requested) {
    let Requested::One(range) = requested else {
        return;
    };
    if let ByteRange::From {
        first,
        last: Some(last),
    } = range
    {
        assert!(last >= first);
    }
    for len in [0, 1, 2, 99, 100, 1 << 20, u64::MAX] {
        if let Selection::Part { start, len: n } = range.select(len) {
            assert!(n >= 1, "an empty part");
            assert!(start.checked_add(n).is_some_and(|end| end <= len));
        }
    }
}

fn check_conditions(headers: &HeaderMap) {
    let stored = StoredHeaders::from_map(headers);
    assert_eq!(
        conditional::not_modified(headers, headers),
        conditional::not_modified(headers, &stored),
        "stored and received headers disagree on a condition"
    );
    assert!(merge::validates(headers, headers));
    let merged = merge::merge_304(headers, headers);
    for name in headers.keys() {
        let before: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
        let after: Vec<&HeaderValue> = merged.get_all(name).iter().collect();
        assert_eq!(before, after, "a 304 with the same headers changed {name}");
    }
}

/// Never panics; a date that parses is formatted as an IMF-fixdate that
/// parses to the same instant; the `Date` header reads as the text does.
pub fn check_http_date(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = httpdate::parse_http_date(text.trim()) {
        let fixdate = httpdate::fmt_http_date(t);
        assert_eq!(fixdate.len(), 29, "{fixdate}");
        assert_eq!(httpdate::parse_http_date(&fixdate).ok(), Some(t));
    }
    let Ok(value) = HeaderValue::from_str(text) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::DATE, value.clone());
    headers.insert(http::header::LAST_MODIFIED, value.clone());
    headers.insert(http::header::IF_MODIFIED_SINCE, value.clone());
    let value_text = value.to_str().ok().map(str::to_owned);
    headers.insert(EXPIRES, value);
    let date = http_date(&headers, http::header::DATE);
    // A value that is not visible ASCII is no date, whatever its text.
    let want = value_text.and_then(|t| httpdate::parse_http_date(t.trim()).ok());
    assert_eq!(date, want);
    let stored = StoredHeaders::from_map(&headers);
    assert_eq!(
        conditional::not_modified(&headers, &headers),
        conditional::not_modified(&headers, &stored)
    );
    if date.is_some() {
        assert!(conditional::not_modified(&headers, &headers));
    }
    check_cache_control(&headers);
}
