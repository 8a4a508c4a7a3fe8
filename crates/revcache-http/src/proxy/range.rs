//! Range requests answered from complete representations (RFC 9110 §14,
//! RFC 9111 §3.4).
//!
//! Admission takes a single byte range (and its `If-Range`) off a GET, so
//! the cache, the single flight and the upstream all see a request for
//! the whole representation: a burst of range requests for one large file
//! costs one upstream fetch, and a stored entry answers every range. The
//! answer is cut down at the end of the flow, whatever produced it (a hit,
//! a fill, a revalidated or stale entry): a 200 with a known length
//! becomes a 206 or a 416. A request that cannot be answered this way (a
//! miss that will not be stored, or `cache.range_miss = "forward"`) goes
//! upstream with its `Range` put back.

use http::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, IF_RANGE, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode, request};
use hyper::body::Body;

use super::body::ProxyBody;
use crate::policy::range::{self, ByteRange, Requested, Selection};

/// A client's byte range, taken off its request.
#[derive(Clone)]
pub struct ClientRange {
    range: ByteRange,
    /// The fields as the client sent them, for an upstream that answers
    /// the range itself.
    value: HeaderValue,
    if_range: Option<HeaderValue>,
}

/// What admission does with a request's `Range`.
pub enum Taken {
    /// No range (or one to ignore, now removed): the whole representation.
    None,
    /// One byte range, removed from the request.
    One(ClientRange),
    /// Several ranges, or another unit: the request is passed through.
    Pass,
}

/// Takes the range off a GET or HEAD. A HEAD's range is removed and
/// ignored (range handling is defined for GET only, RFC 9110 §14.2), as
/// is one with invalid syntax.
pub fn take(parts: &mut request::Parts) -> Taken {
    if !parts.headers.contains_key(RANGE)
        || !(parts.method == Method::GET || parts.method == Method::HEAD)
    {
        return Taken::None;
    }
    let requested = range::requested(&parts.headers);
    if matches!(requested, Requested::Other) {
        return if parts.method == Method::GET {
            Taken::Pass
        } else {
            remove(&mut parts.headers);
            Taken::None
        };
    }
    let value = parts.headers.get(RANGE).cloned();
    let if_range = parts.headers.get(IF_RANGE).cloned();
    remove(&mut parts.headers);
    match (requested, value) {
        (Requested::One(range), Some(value)) if parts.method == Method::GET => {
            Taken::One(ClientRange {
                range,
                value,
                if_range,
            })
        }
        _ => Taken::None,
    }
}

fn remove(headers: &mut HeaderMap) {
    headers.remove(RANGE);
    headers.remove(IF_RANGE);
}

impl ClientRange {
    /// Puts the client's fields back on a request going upstream as is.
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(RANGE, self.value.clone());
        if let Some(v) = &self.if_range {
            headers.insert(IF_RANGE, v.clone());
        }
    }

    /// `res` cut down to the range: a 200 whose length is known becomes a
    /// 206 with the selected bytes, or a 416 when none are selected. Any
    /// other answer, or one whose validator `If-Range` does not match,
    /// goes out whole.
    pub fn answer(&self, res: Response<ProxyBody>) -> Response<ProxyBody> {
        if res.status() != StatusCode::OK
            || !range::if_range_holds(self.if_range.as_ref(), res.headers())
        {
            return res;
        }
        let Some(total) = length(&res) else {
            return res;
        };
        let (mut parts, body) = res.into_parts();
        match self.range.select(total) {
            Selection::Part { start, len } => {
                parts.status = StatusCode::PARTIAL_CONTENT;
                let last = start + len - 1;
                parts.headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::try_from(format!("bytes {start}-{last}/{total}"))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                );
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                Response::from_parts(parts, body.slice(start, len))
            }
            Selection::Unsatisfiable => {
                parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
                for name in [CONTENT_TYPE, CONTENT_ENCODING] {
                    parts.headers.remove(name);
                }
                parts.headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::try_from(format!("bytes */{total}"))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                );
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
                Response::from_parts(parts, ProxyBody::empty())
            }
        }
    }
}

/// The length of a response's body: exact from the body itself (a stored
/// entry's), else its declared `Content-Length` (a fill in progress).
fn length(res: &Response<ProxyBody>) -> Option<u64> {
    if let Some(n) = res.body().size_hint().exact() {
        return Some(n);
    }
    let mut values = res.headers().get_all(CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}
