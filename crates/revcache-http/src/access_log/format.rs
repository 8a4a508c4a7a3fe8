//! How an access-log line reads: Apache/nginx "combined" followed by
//! revcache's fields, or one JSON object. Timestamps are UTC.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Record;
use crate::settings::AccessLogFormat;

/// Appends `record`'s line (with its line feed) to `out`.
pub(super) fn line(record: &Record, format: AccessLogFormat, out: &mut Vec<u8>) {
    match format {
        AccessLogFormat::Combined => combined(record, out),
        AccessLogFormat::Json => json(record, out),
    }
    out.push(b'\n');
}

/// `client - - [time] "METHOD target VERSION" status bytes "referer"
/// "user-agent" route="…" cache="…" duration_ms=… upstream_ms=…`.
fn combined(r: &Record, out: &mut Vec<u8>) {
    let t = Civil::of(r.time);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let _ = write!(
        out,
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"",
        r.client,
        t.day,
        MONTHS[(t.month - 1) as usize],
        t.year,
        t.hour,
        t.minute,
        t.second
    );
    escaped(&format!("{} {} {:?}", r.method, r.target, r.version), out);
    let _ = write!(out, "\" {} {} ", r.status, r.bytes);
    quoted(r.referer.as_deref(), out);
    out.push(b' ');
    quoted(r.user_agent.as_deref(), out);
    out.extend_from_slice(b" route=");
    quoted(r.route.as_deref(), out);
    out.extend_from_slice(b" cache=");
    quoted(r.cache_status.as_deref(), out);
    let _ = write!(out, " duration_ms={}", millis(r.duration));
    match r.upstream {
        Some(u) => {
            let _ = write!(out, " upstream_ms={}", millis(u));
        }
        None => out.extend_from_slice(b" upstream_ms=-"),
    }
}

fn json(r: &Record, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Line<'a> {
        time: String,
        client: String,
        method: &'a str,
        target: &'a str,
        protocol: String,
        status: u16,
        bytes: u64,
        duration_ms: f64,
        cache_status: Option<&'a str>,
        upstream_ms: Option<f64>,
        route: Option<&'a str>,
        referer: Option<&'a str>,
        user_agent: Option<&'a str>,
    }
    let t = Civil::of(r.time);
    let line = Line {
        time: format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
        ),
        client: r.client.to_string(),
        method: r.method.as_str(),
        target: &r.target,
        protocol: format!("{:?}", r.version),
        status: r.status,
        bytes: r.bytes,
        duration_ms: millis(r.duration),
        cache_status: r.cache_status.as_deref(),
        upstream_ms: r.upstream.map(millis),
        route: r.route.as_deref(),
        referer: r.referer.as_deref(),
        user_agent: r.user_agent.as_deref(),
    };
    let _ = serde_json::to_writer(out, &line);
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `"value"`, or `"-"` when there is none.
fn quoted(value: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'"');
    escaped(value.unwrap_or("-"), out);
    out.push(b'"');
}

/// `"` and `\` backslash-escaped, control and non-ASCII bytes as `\xHH`
/// (as nginx writes them), so a line is one line and fields stay apart.
fn escaped(value: &str, out: &mut Vec<u8>) {
    for &b in value.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`.
    fn of(time: SystemTime) -> Civil {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (of_day / 3600) as u32,
            minute: (of_day % 3600 / 60) as u32,
            second: (of_day % 60) as u32,
            millis: since.subsec_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            client: "192.0.2.7".parse().unwrap(),
            method: http::Method::GET,
            target: "/a?access_token=REDACTED&x=1".into(),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: 11,
            duration: Duration::from_micros(1500),
            cache_status: Some("fwd=uri-miss; fwd-status=200; stored".into()),
            upstream: Some(Duration::from_micros(1200)),
            route: Some("api".into()),
            referer: None,
            user_agent: Some("curl/8 \"quoted\"\n".into()),
        }
    }

    fn text(r: &Record, format: AccessLogFormat) -> String {
        let mut out = Vec::new();
        line(r, format, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_lines_read_like_nginx_with_revcache_fields_after() {
        assert_eq!(
            text(&record(), AccessLogFormat::Combined),
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /a?access_token=REDACTED&x=1 HTTP/1.1\" 200 11 \"-\" \"curl/8 \\\"quoted\\\"\\x0A\" route=\"api\" cache=\"fwd=uri-miss; fwd-status=200; stored\" duration_ms=1.5 upstream_ms=1.2\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_every_field() {
        let mut r = record();
        r.upstream = None;
        let text = text(&r, AccessLogFormat::Json);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.250Z");
        assert_eq!(v["client"], "192.0.2.7");
        assert_eq!(v["target"], "/a?access_token=REDACTED&x=1");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 11);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["route"], "api");
        assert_eq!(v["user_agent"], "curl/8 \"quoted\"\n");
    }

    #[test]
    fn calendar_dates_are_right_across_leap_years_and_centuries() {
        let at = |secs: u64| Civil::of(UNIX_EPOCH + Duration::from_secs(secs));
        let ymd = |c: Civil| (c.year, c.month, c.day);
        assert_eq!(ymd(at(0)), (1970, 1, 1));
        assert_eq!(ymd(at(951_782_400)), (2000, 2, 29));
        assert_eq!(ymd(at(951_868_800)), (2000, 3, 1));
        assert_eq!(ymd(at(4_107_542_400)), (2100, 3, 1));
        assert_eq!(ymd(at(1_709_164_800)), (2024, 2, 29));
    }
}
