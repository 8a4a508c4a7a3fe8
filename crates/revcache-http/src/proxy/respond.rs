//! Building client responses from stored entries and from errors.

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
    let age = HeaderValue::from(entry.timing().age_at(now).as_secs());
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
