//! Building client responses from stored entries and from errors.

use std::sync::LazyLock;
use std::time::SystemTime;

use http::header::{
    AGE, CACHE_CONTROL, CONTENT_LOCATION, CONTENT_TYPE, DATE, ETAG, EXPIRES, HeaderValue,
    LAST_MODIFIED, VARY,
};
use http::{HeaderMap, Response, StatusCode, Version};
use revcache_core::Entry;

use super::body::ProxyBody;
use super::cache_status::{self, CacheStatus};
use super::forward::via_value;
use crate::policy::conditional;

/// Headers a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [http::HeaderName; 6] =
    [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY];

/// Serves `entry` with `body` (already chosen for GET or HEAD): 304 when
/// the client's condition matches, the stored response otherwise.
pub fn from_entry(
    entry: &Entry,
    req_headers: &HeaderMap,
    version: Version,
    status: CacheStatus,
    body: ProxyBody,
    now: SystemTime,
) -> Response<ProxyBody> {
    let age = age_value(entry.timing().age_at(now).as_secs());
    if entry.status == StatusCode::OK && conditional::not_modified(req_headers, &entry.headers) {
        let mut headers = HeaderMap::new();
        for name in NOT_MODIFIED_HEADERS.iter().chain([&LAST_MODIFIED]) {
            for v in entry.headers.get_all(name.as_str()) {
                headers.append(name.clone(), v);
            }
        }
        headers.insert(AGE, age);
        headers.append(http::header::VIA, via_value(version));
        headers.append(cache_status::NAME, status.value());
        let mut res = Response::new(ProxyBody::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        *res.headers_mut() = headers;
        return res;
    }
    let mut headers = entry.headers.to_map(3);
    headers.insert(AGE, age);
    headers.append(http::header::VIA, via_value(version));
    headers.append(cache_status::NAME, status.value());
    let mut res = Response::new(body);
    *res.status_mut() = entry.status;
    *res.headers_mut() = headers;
    res
}

/// The `Age` value for `seconds`. Ages below 10,000 s come from one string
/// of every such number, built (and leaked, 40 KB) once: a hit then sends
/// its Age without the two allocations of `HeaderValue::from(u64)`.
fn age_value(seconds: u64) -> HeaderValue {
    const SLOT: usize = 4;
    const COUNT: u64 = 10_000;
    static DIGITS: LazyLock<&'static str> = LazyLock::new(|| {
        let mut all = String::with_capacity(SLOT * COUNT as usize);
        for n in 0..COUNT {
            all.push_str(&format!("{n:<SLOT$}"));
        }
        all.leak()
    });
    if seconds < COUNT {
        let start = seconds as usize * SLOT;
        let len = seconds.checked_ilog10().unwrap_or(0) as usize + 1;
        if let Some(digits) = DIGITS.get(start..start + len) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(seconds)
}

/// A 304 for a client whose condition matches what the upstream just sent
/// (`headers`, as the client would have got them).
pub fn not_modified(headers: &HeaderMap, cache_status: CacheStatus) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::empty());
    *res.status_mut() = StatusCode::NOT_MODIFIED;
    for name in NOT_MODIFIED_HEADERS.iter().chain([&LAST_MODIFIED]) {
        for v in headers.get_all(name) {
            res.headers_mut().append(name.clone(), v.clone());
        }
    }
    res.headers_mut()
        .insert(cache_status::NAME, cache_status.value());
    res
}

/// A response revcache makes up: plain text that says what went wrong.
pub fn error(
    status: StatusCode,
    message: impl Into<String>,
    cache_status: CacheStatus,
) -> Response<ProxyBody> {
    let mut message = message.into();
    message.push('\n');
    let mut res = Response::new(ProxyBody::text(message));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut()
        .insert(cache_status::NAME, cache_status.value());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_values_are_the_decimal_seconds_at_every_width() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            999,
            1000,
            9999,
            10_000,
            86_400,
            u64::MAX,
        ] {
            assert_eq!(age_value(n), n.to_string().as_str(), "{n}");
        }
    }
}
