//! Differential test of the freshness arithmetic against the
//! `http-cache-semantics` crate as an oracle, over generated header sets.
//!
//! For each generated response, both say for how long a shared cache may
//! serve it without asking (0: not stored, or stored but stale at once).
//! Where the oracle departs from RFC 9111, its input is first rewritten
//! into one the RFC treats the same (or its answer is adjusted), each
//! rewrite citing the RFC; where revcache departs from the oracle by
//! choice, the expectation says so. Any disagreement left fails the test.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::{
    RequestDirectives, ResponseDirectives, Sharing, Storability, storability, stored_freshness,
};

/// When every generated response arrives (request and response at once).
const T: u64 = 1_700_000_000;
const DAY: u64 = 24 * 3600;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug, Clone)]
enum Expires {
    /// Seconds after the response's Date, in one of the three formats.
    Fixdate(i64),
    Rfc850(i64),
    Asctime(i64),
    Invalid,
}

#[derive(Debug, Clone)]
struct Case {
    status: u16,
    directives: Vec<&'static str>,
    expires: Option<Expires>,
    /// Seconds before the response time its Date says (negative: ahead).
    date_ago: Option<i64>,
    age: Option<&'static str>,
    last_modified_ago: Option<u64>,
    set_cookie: bool,
    pragma_no_cache: bool,
    vary_star: bool,
}

const STATUSES: [u16; 12] = [200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 410, 501];
const DIRECTIVES: [&str; 22] = [
    "max-age=0",
    "max-age=30",
    "max-age=600",
    "max-age=90000",
    "MAX-AGE=600",
    "max-age=\"600\"",
    "max-age=-1",
    "max-age=1.5",
    "s-maxage=0",
    "s-maxage=120",
    "s-maxage=soon",
    "no-cache",
    "no-store",
    "private",
    "public",
    "must-revalidate",
    "proxy-revalidate",
    "immutable",
    "must-understand",
    "stale-while-revalidate=30",
    "no-cache=\"set-cookie\"",
    "Public",
];
const AGES: [&str; 6] = ["0", "10", "1000", "10, 500", "ten", "-5"];

/// xorshift64*: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

fn generate(rng: &mut Rng) -> Case {
    let directives = (0..rng.below(4)).map(|_| rng.pick(&DIRECTIVES)).collect();
    let expires = match rng.below(8) {
        0 => Some(Expires::Fixdate(rng.pick(&[600, -60, 0]))),
        1 => Some(Expires::Rfc850(rng.pick(&[600, -60]))),
        2 => Some(Expires::Asctime(rng.pick(&[600, -60]))),
        3 => Some(Expires::Invalid),
        _ => None,
    };
    Case {
        status: rng.pick(&STATUSES),
        directives,
        expires,
        date_ago: (!rng.one_in(4)).then(|| rng.pick(&[0, 0, 30, 300, -100])),
        age: rng.one_in(3).then(|| rng.pick(&AGES)),
        last_modified_ago: rng.one_in(2).then(|| rng.pick(&[1000, 100 * DAY, 5 * DAY])),
        set_cookie: rng.one_in(8),
        pragma_no_cache: rng.one_in(12),
        vary_star: rng.one_in(20),
    }
}

fn date(secs: i64) -> String {
    httpdate::fmt_http_date(at(secs as u64))
}

impl Case {
    fn date(&self) -> i64 {
        T as i64 - self.date_ago.unwrap_or(0)
    }

    /// The response headers; `for_oracle` rewrites them into what RFC
    /// 9111 treats the same and the oracle reads right.
    fn headers(&self, for_oracle: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut add = |name: &'static str, value: String| {
            h.append(name, HeaderValue::from_str(&value).unwrap());
        };
        let understood_no_store = self.directives.contains(&"must-understand");
        let marked_shared = self.directives.iter().any(|d| d.starts_with("s-maxage"));
        let directives: Vec<String> = self
            .directives
            .iter()
            .filter(|d| {
                !for_oracle
                    // RFC 9111 §5.2.2.8: proxy-revalidate only says what a
                    // shared cache may do once stale; the oracle gives it
                    // no freshness at all.
                    || (**d != "proxy-revalidate"
                    // RFC 8246 §2: immutable does not extend freshness;
                    // the oracle assumes a day.
                    && **d != "immutable"
                    // RFC 9111 §5.2.2.3: must-understand overrides
                    // no-store for a status the cache understands (every
                    // generated one); the oracle does not know it.
                    && !(understood_no_store && **d == "no-store"))
            })
            // RFC 9111 §5.2: directive names are case-insensitive; the
            // oracle compares them as sent.
            .map(|d| {
                if for_oracle {
                    d.to_ascii_lowercase()
                } else {
                    d.to_string()
                }
            })
            .collect();
        if !directives.is_empty() {
            add("cache-control", directives.join(", "));
        }
        if let Some(ago) = self.date_ago {
            add("date", date(T as i64 - ago));
        }
        let base = self.date();
        match &self.expires {
            None => {}
            Some(Expires::Invalid) => add("expires", "0".into()),
            Some(Expires::Fixdate(d)) => add("expires", date(base + d)),
            // RFC 9110 §5.6.7: recipients must read the obsolete RFC 850
            // and asctime forms too; the oracle reads IMF-fixdate only.
            Some(Expires::Rfc850(d)) if for_oracle => add("expires", date(base + d)),
            Some(Expires::Asctime(d)) if for_oracle => add("expires", date(base + d)),
            Some(Expires::Rfc850(d)) => add("expires", rfc850(base + d)),
            Some(Expires::Asctime(d)) => add("expires", asctime(base + d)),
        }
        if let Some(age) = self.age {
            // RFC 9111 §5.1: of a list, the first member counts.
            let age = if for_oracle {
                age.split(',').next().unwrap_or(age).trim()
            } else {
                age
            };
            add("age", age.to_owned());
        }
        if let Some(ago) = self.last_modified_ago {
            add("last-modified", date(base - ago as i64));
        }
        // RFC 9111 §3 and §7.3 do not forbid storing a response that sets
        // a cookie; revcache (sharing = "rfc9111") shares one that says
        // s-maxage or public, the oracle only one that says public.
        if self.set_cookie && !(for_oracle && marked_shared) {
            add("set-cookie", "sid=1".into());
        }
        // RFC 9111 §5.4: Pragma has no defined meaning in responses; the
        // oracle reads `no-cache` there when Cache-Control is absent.
        if self.pragma_no_cache && !for_oracle {
            add("pragma", "no-cache".into());
        }
        if self.vary_star {
            add("vary", "*".into());
        }
        h
    }

    /// The first Age member is not a non-negative integer.
    fn invalid_age(&self) -> bool {
        self.age.is_some_and(|a| {
            let first = a.split(',').next().unwrap_or("").trim();
            first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit())
        })
    }

    /// Whether the rewritten headers give explicit freshness.
    fn explicit(&self) -> bool {
        self.expires.is_some()
            || self
                .directives
                .iter()
                .any(|d| d.to_ascii_lowercase().contains("max"))
    }
}

fn rfc850(secs: i64) -> String {
    let imf = date(secs); // "Tue, 14 Nov 2023 22:13:20 GMT"
    let weekday = match &imf[..3] {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    format!(
        "{weekday}, {}-{}-{} {} GMT",
        &imf[5..7],
        &imf[8..11],
        &imf[14..16],
        &imf[17..25]
    )
}

fn asctime(secs: i64) -> String {
    let imf = date(secs);
    let day = imf[5..7].trim_start_matches('0');
    format!(
        "{} {} {day:>2} {} {}",
        &imf[..3],
        &imf[8..11],
        &imf[17..25],
        &imf[12..16]
    )
}

/// Seconds revcache serves the response without asking.
fn revcache_ttl(case: &Case) -> u64 {
    let h = case.headers(false);
    let status = StatusCode::from_u16(case.status).unwrap();
    let cc = ResponseDirectives::parse(&h);
    let stored = storability(
        &Method::GET,
        status,
        &RequestDirectives::default(),
        &cc,
        &h,
        false,
        Sharing::Rfc9111,
    );
    // `Vary: *` is refused where the variant is computed (proxy/fetch.rs).
    if stored != Storability::Shared || case.vary_star {
        return 0;
    }
    let (f, timing) = stored_freshness(status, &h, &cc, at(T), at(T), Sharing::Rfc9111);
    if f.no_cache {
        return 0;
    }
    f.lifetime.saturating_sub(timing.initial_age).as_secs()
}

/// Seconds the oracle serves the RFC-equivalent response without asking.
fn oracle_ttl(case: &Case) -> u64 {
    let h = case.headers(true);
    let req = http::Request::get("http://origin.test/x")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let mut res = http::Response::new(()).into_parts().0;
    res.status = StatusCode::from_u16(case.status).unwrap();
    res.headers = h;
    let opts = CacheOptions {
        shared: true,
        ..Default::default()
    };
    let policy = CachePolicy::new_options(&req, &res, at(T), opts);
    if !policy.is_storable() {
        return 0;
    }
    // RFC 9111 §4.2.3: the corrected initial age is the larger of the Age
    // field and the apparent age (response time − Date); the oracle counts
    // the Age field only. Ask it at the instant its age reaches that.
    let age_field = case
        .age
        .and_then(|a| a.split(',').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let apparent = case.date_ago.unwrap_or(0).max(0) as u64;
    let now = at(T + apparent.saturating_sub(age_field));
    let ttl = policy.time_to_live(now).as_secs();
    if case.explicit() || ttl == 0 {
        return ttl;
    }
    // RFC 9111 §4.2.2 leaves the heuristic's bound to the cache: revcache
    // takes 10% of the time since Last-Modified, as the oracle does, but
    // at most a day.
    let age = policy.age(now).as_secs();
    (ttl + age).min(DAY).saturating_sub(age)
}

/// What revcache should answer: the oracle's, unless revcache departs
/// from it by choice.
fn expected(case: &Case) -> u64 {
    if case.invalid_age() {
        // RFC 9111 §5.1 lets a cache ignore an invalid Age; revcache
        // treats it as stale instead ("invalid means stale").
        return 0;
    }
    oracle_ttl(case)
}

#[test]
fn generated_header_sets_agree_with_the_oracle() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut fresh, mut disagreements) = (0, Vec::new());
    const CASES: usize = 20_000;
    for _ in 0..CASES {
        let case = generate(&mut rng);
        let (ours, theirs) = (revcache_ttl(&case), expected(&case));
        if ours > 0 {
            fresh += 1;
        }
        if ours != theirs {
            disagreements.push(format!("revcache {ours}s, oracle {theirs}s: {case:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {CASES} disagree, e.g.\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(10)].join("\n")
    );
    // The comparison means something: many cases are fresh for a while.
    assert!(fresh > CASES / 5, "only {fresh} fresh cases");
}

#[test]
fn the_date_formats_generated_are_the_obsolete_ones() {
    assert_eq!(rfc850(T as i64), "Tuesday, 14-Nov-23 22:13:20 GMT");
    assert_eq!(asctime(T as i64), "Tue Nov 14 22:13:20 2023");
    assert_eq!(
        httpdate::parse_http_date(&asctime(T as i64 + 3600 * 24 * 30)).unwrap(),
        at(T + 3600 * 24 * 30)
    );
}
