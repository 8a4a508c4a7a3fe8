//! Freshness and age (RFC 9111 §4.2) and the reuse decision (§4, RFC 5861).
//!
//! [`stored_freshness`] runs once, when a response is stored, and turns its
//! headers into plain numbers on the entry. [`reuse`] runs on every lookup
//! and only does arithmetic on those numbers and the request's directives.

use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};
use revcache_core::{Entry, EntryTiming, Freshness};

use super::cache_control::{DELTA_MAX, Delta, RequestDirectives, ResponseDirectives};

/// Share of (Date − Last-Modified) used as heuristic lifetime (§4.2.2).
const HEURISTIC_FRACTION: u32 = 10;
/// Longest heuristic lifetime.
const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

pub fn http_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()
}

/// The `Age` header as delta-seconds (RFC 9111 §5.1): of a list (one
/// line or several) only the first member counts. A first member that is
/// not a non-negative integer counts as the largest age, so the response
/// is stale: RFC 9111 lets a cache ignore such a field, but an age nobody
/// can read is not evidence of freshness ("invalid means stale", as for
/// `max-age`). A number too large to hold is the largest age too.
pub fn age_header(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(AGE)?;
    let member = first
        .as_bytes()
        .split(|b| *b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
        return Some(DELTA_MAX);
    }
    let digits = std::str::from_utf8(member).unwrap_or("");
    Some(digits.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// Freshness facts and timing of a response about to be stored by a route
/// that shares as `sharing` says.
pub fn stored_freshness(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &ResponseDirectives,
    request_time: SystemTime,
    response_time: SystemTime,
    sharing: super::Sharing,
) -> (Freshness, EntryTiming) {
    let date = http_date(headers, DATE);
    let lifetime = if let Some(s) = cc.s_maxage {
        Duration::from_secs(s.seconds())
    } else if let Some(m) = cc.max_age {
        Duration::from_secs(m.seconds())
    } else if headers.contains_key(EXPIRES) {
        // An invalid Expires means "already expired". A lifetime beyond
        // DELTA_MAX is DELTA_MAX, as for delta-seconds (RFC 9111 §1.2.2):
        // so the largest age, which an unreadable Age counts as, always
        // outlives it.
        match http_date(headers, EXPIRES) {
            Some(expires) => expires
                .duration_since(date.unwrap_or(response_time))
                .unwrap_or_default()
                .min(Duration::from_secs(DELTA_MAX)),
            None => Duration::ZERO,
        }
    } else if heuristically_cacheable(status) || cc.public {
        heuristic(headers, date.unwrap_or(response_time))
    } else {
        Duration::ZERO
    };

    // §4.2.3
    let apparent_age = date
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    let corrected_age =
        Duration::from_secs(age_header(headers).unwrap_or(0)).saturating_add(response_delay);
    let initial_age = apparent_age.max(corrected_age);

    let freshness = Freshness {
        lifetime,
        no_cache: cc.no_cache,
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
        stale_while_revalidate: valid(cc.stale_while_revalidate),
        stale_if_error: valid(cc.stale_if_error),
        shareable: cc.allows_sharing_authenticated(sharing),
    };
    let timing = EntryTiming {
        request_time,
        response_time,
        initial_age,
    };
    (freshness, timing)
}

fn valid(d: Option<Delta>) -> Option<Duration> {
    match d {
        Some(Delta::Seconds(s)) => Some(Duration::from_secs(s)),
        _ => None,
    }
}

fn heuristic(headers: &HeaderMap, date: SystemTime) -> Duration {
    match http_date(headers, LAST_MODIFIED) {
        Some(lm) => {
            (date.duration_since(lm).unwrap_or_default() / HEURISTIC_FRACTION).min(HEURISTIC_MAX)
        }
        None => Duration::ZERO,
    }
}

/// How a stored entry may be used for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh (or stale within what the client accepts): serve it.
    Fresh,
    /// Stale within `stale-while-revalidate`: serve it and refresh behind.
    StaleWhileRevalidate,
    /// Must be validated with the upstream first.
    Revalidate,
}

/// Whether `entry` may answer a request with `req` directives at `now`.
pub fn reuse(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> Reuse {
    let f = &entry.freshness();
    let age = entry.timing().age_at(now);
    if f.no_cache || req.no_cache {
        return Reuse::Revalidate;
    }
    if let Some(max_age) = req.max_age
        && age > Duration::from_secs(max_age.seconds())
    {
        return Reuse::Revalidate;
    }
    let remaining = f.lifetime.checked_sub(age).filter(|r| !r.is_zero());
    if let Some(remaining) = remaining {
        match req.min_fresh {
            Some(min) if remaining < Duration::from_secs(min.seconds()) => {
                return Reuse::Revalidate;
            }
            _ => return Reuse::Fresh,
        }
    }
    if f.must_revalidate {
        return Reuse::Revalidate;
    }
    let staleness = age.saturating_sub(f.lifetime);
    match req.max_stale {
        Some(None) => return Reuse::Fresh,
        Some(Some(d)) if staleness <= Duration::from_secs(d.seconds()) => return Reuse::Fresh,
        _ => {}
    }
    match f.stale_while_revalidate {
        Some(window) if staleness <= window => Reuse::StaleWhileRevalidate,
        _ => Reuse::Revalidate,
    }
}

/// Whether `entry` may be served because the upstream failed
/// (`stale-if-error`, RFC 5861 §4), from the response or the request.
/// Whether `entry` may be served stale because the upstream cannot be
/// reached (RFC 9111 §4.2.4, "disconnected"): only when no directive
/// forbids stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`,
/// `no-cache`, or the client's own `no-cache`).
pub fn disconnected_allows(entry: &Entry, req: &RequestDirectives) -> bool {
    let f = &entry.freshness();
    !(f.must_revalidate || f.no_cache || req.no_cache)
}

pub fn stale_if_error_allows(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> bool {
    let f = &entry.freshness();
    if f.must_revalidate || f.no_cache {
        return false;
    }
    let staleness = entry.timing().age_at(now).saturating_sub(f.lifetime);
    let window = f
        .stale_if_error
        .into_iter()
        .chain(valid(req.stale_if_error))
        .max();
    window.is_some_and(|w| staleness <= w)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use bytes::Bytes;
    use http::HeaderValue;
    use revcache_core::{KeyClass, Partition, PrimaryKey, Version};

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn entry_for(status: u16, h: &HeaderMap, received: u64) -> Entry {
        let cc = ResponseDirectives::parse(h);
        let (freshness, timing) = stored_freshness(
            StatusCode::from_u16(status).unwrap(),
            h,
            &cc,
            at(received),
            at(received),
            super::super::Sharing::Strict,
        );
        Entry::new(
            PrimaryKey::new(0, KeyClass::Get, "h", "/", Partition::Public),
            Box::new([]),
            Version::Unversioned,
            StatusCode::OK,
            h.clone(),
            Bytes::new(),
            vec![],
            timing,
            freshness,
        )
    }

    fn reuse_at(e: &Entry, now: u64) -> Reuse {
        reuse(e, &RequestDirectives::default(), at(now))
    }

    #[test]
    fn age_uses_the_first_member_of_a_list_and_an_invalid_one_is_the_largest_age() {
        let first = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(AGE, HeaderValue::from_str(v).unwrap());
            }
            age_header(&h)
        };
        assert_eq!(first(&[]), None);
        assert_eq!(first(&["7"]), Some(7));
        assert_eq!(first(&[" 7 "]), Some(7));
        assert_eq!(first(&["7, 100"]), Some(7));
        assert_eq!(first(&["7", "100"]), Some(7));
        for invalid in ["-1", "1.5", "seven", "", "0x10", "+3", "soon, 7"] {
            assert_eq!(first(&[invalid]), Some(DELTA_MAX), "{invalid:?}");
        }
        assert_eq!(first(&["99999999999999999999"]), Some(DELTA_MAX));
        let listed = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=10"),
                ("date", &date(T0)),
                ("age", "8, 1"),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&listed, T0 + 1), Reuse::Fresh);
        assert_eq!(
            reuse_at(&listed, T0 + 3),
            Reuse::Revalidate,
            "aged 8 s on arrival"
        );
    }

    #[test]
    fn expires_is_read_in_all_three_http_date_formats() {
        // RFC 9110 §5.6.7: IMF-fixdate, obsolete RFC 850 and asctime.
        for expires in [
            "Tue, 14 Nov 2023 22:23:20 GMT",
            "Tuesday, 14-Nov-23 22:23:20 GMT",
            "Tue Nov 14 22:23:20 2023",
        ] {
            let h = hdrs(&[("date", &date(T0)), ("expires", expires)]);
            let e = entry_for(200, &h, T0);
            // 1,700,000,000 is 2023-11-14 22:13:20 UTC: ten minutes fresh.
            assert_eq!(
                e.freshness().lifetime,
                Duration::from_secs(600),
                "{expires}"
            );
        }
    }

    #[test]
    fn max_age_is_fresh_until_it_runs_out() {
        let e = entry_for(
            200,
            &hdrs(&[("cache-control", "max-age=10"), ("date", &date(T0))]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0 + 9), Reuse::Fresh);
        assert_eq!(reuse_at(&e, T0 + 10), Reuse::Revalidate);
    }

    #[test]
    fn age_header_counts_against_freshness() {
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=10"),
                ("age", "8"),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0 + 1), Reuse::Fresh);
        assert_eq!(reuse_at(&e, T0 + 2), Reuse::Revalidate);
    }

    #[test]
    fn age_larger_than_expires_minus_date_is_stale() {
        let e = entry_for(
            200,
            &hdrs(&[
                ("expires", &date(T0 + 10)),
                ("age", "20"),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    #[test]
    fn malformed_age_makes_the_response_stale() {
        for bad in ["-5", "abc", "1.5", " ", "x, 100"] {
            let e = entry_for(
                200,
                &hdrs(&[
                    ("cache-control", "max-age=10"),
                    ("age", bad),
                    ("date", &date(T0)),
                ]),
                T0,
            );
            assert_eq!(reuse_at(&e, T0 + 5), Reuse::Revalidate, "Age: {bad}");
        }
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=10"),
                ("age", "99999999999999999999"),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    /// Found by the `policy` fuzz target: an Expires 8,000 years after
    /// Date gave a lifetime longer than the largest age, so an unreadable
    /// Age still served the response fresh.
    #[test]
    fn malformed_age_makes_even_a_far_future_expires_stale() {
        let h = hdrs(&[
            ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("date", "Thu, 01 Jan 1970 00:00:01 GMT"),
            ("age", "abc"),
        ]);
        let e = entry_for(200, &h, T0);
        assert_eq!(e.freshness().lifetime, Duration::from_secs(DELTA_MAX));
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    #[test]
    fn expires_before_date_or_invalid_is_already_stale() {
        let e = entry_for(
            200,
            &hdrs(&[("expires", &date(T0 - 10)), ("date", &date(T0))]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
        let e = entry_for(200, &hdrs(&[("expires", "0"), ("date", &date(T0))]), T0);
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    #[test]
    fn s_maxage_beats_max_age_which_beats_expires() {
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=100, s-maxage=5"),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0 + 6), Reuse::Revalidate);
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=100"),
                ("expires", &date(T0 + 5)),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0 + 6), Reuse::Fresh);
    }

    #[test]
    fn invalid_max_age_makes_the_response_stale() {
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=abc"),
                ("expires", &date(T0 + 100)),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    #[test]
    fn heuristic_freshness_only_for_heuristic_statuses_with_last_modified() {
        let h = hdrs(&[("last-modified", &date(T0 - 1000)), ("date", &date(T0))]);
        assert_eq!(reuse_at(&entry_for(200, &h, T0), T0 + 50), Reuse::Fresh);
        assert_eq!(
            reuse_at(&entry_for(200, &h, T0), T0 + 100),
            Reuse::Revalidate
        );
        assert_eq!(reuse_at(&entry_for(302, &h, T0), T0 + 1), Reuse::Revalidate);
        let no_lm = hdrs(&[("date", &date(T0))]);
        assert_eq!(
            reuse_at(&entry_for(200, &no_lm, T0), T0 + 1),
            Reuse::Revalidate
        );
    }

    #[test]
    fn request_directives_tighten_or_loosen_reuse() {
        let e = entry_for(
            200,
            &hdrs(&[("cache-control", "max-age=100"), ("date", &date(T0))]),
            T0,
        );
        let mut req = RequestDirectives {
            max_age: Some(Delta::Seconds(5)),
            ..Default::default()
        };
        assert_eq!(reuse(&e, &req, at(T0 + 10)), Reuse::Revalidate);
        req = RequestDirectives {
            min_fresh: Some(Delta::Seconds(95)),
            ..Default::default()
        };
        assert_eq!(reuse(&e, &req, at(T0 + 10)), Reuse::Revalidate);
        req = RequestDirectives {
            max_stale: Some(Some(Delta::Seconds(50))),
            ..Default::default()
        };
        assert_eq!(reuse(&e, &req, at(T0 + 140)), Reuse::Fresh);
        assert_eq!(reuse(&e, &req, at(T0 + 160)), Reuse::Revalidate);
    }

    #[test]
    fn must_revalidate_and_no_cache_never_serve_without_validation() {
        let e = entry_for(
            200,
            &hdrs(&[
                (
                    "cache-control",
                    "max-age=1, must-revalidate, stale-if-error=100",
                ),
                ("date", &date(T0)),
            ]),
            T0,
        );
        let any_stale = RequestDirectives {
            max_stale: Some(None),
            ..Default::default()
        };
        assert_eq!(reuse(&e, &any_stale, at(T0 + 5)), Reuse::Revalidate);
        assert!(!stale_if_error_allows(
            &e,
            &RequestDirectives::default(),
            at(T0 + 5)
        ));
        let e = entry_for(
            200,
            &hdrs(&[
                ("cache-control", "max-age=100, no-cache"),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0), Reuse::Revalidate);
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error_windows() {
        let e = entry_for(
            200,
            &hdrs(&[
                (
                    "cache-control",
                    "max-age=10, stale-while-revalidate=20, stale-if-error=60",
                ),
                ("date", &date(T0)),
            ]),
            T0,
        );
        assert_eq!(reuse_at(&e, T0 + 25), Reuse::StaleWhileRevalidate);
        assert_eq!(reuse_at(&e, T0 + 31), Reuse::Revalidate);
        assert!(stale_if_error_allows(
            &e,
            &RequestDirectives::default(),
            at(T0 + 70)
        ));
        assert!(!stale_if_error_allows(
            &e,
            &RequestDirectives::default(),
            at(T0 + 71)
        ));
    }
}
