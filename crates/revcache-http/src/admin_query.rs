//! The admin API's query strings: what `/purge`, `/inspect` and
//! `/stats/history` were asked for, checked and decoded. Pure parsing:
//! `admin.rs` acts on the answer; an error is the message of a 400.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Rows `/inspect` returns when not asked for fewer, and at most.
pub const INSPECT_PAGE: usize = 100;
pub const INSPECT_MAX_PAGE: usize = 1000;

/// What a query parameter value escapes: everything but unreserved
/// characters and `/`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `/inspect?url=&tag=&limit=&after=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectQuery {
    pub url: Option<String>,
    pub tag: Option<String>,
    pub after: Option<String>,
    pub limit: usize,
}

impl InspectQuery {
    /// The path and query of the page after the row `cursor` names.
    pub fn next(&self, cursor: &str) -> String {
        let mut q = Vec::new();
        for (name, v) in [("url", &self.url), ("tag", &self.tag)] {
            if let Some(v) = v {
                q.push(format!("{name}={}", query_value(v)));
            }
        }
        q.push(format!("limit={}", self.limit));
        q.push(format!("after={}", query_value(cursor)));
        format!("/inspect?{}", q.join("&"))
    }
}

pub fn inspect(query: &str) -> Result<InspectQuery, String> {
    let mut q = InspectQuery {
        url: None,
        tag: None,
        after: None,
        limit: INSPECT_PAGE,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(value) = crate::percent::decode_strict(value) else {
            return Err(format!(
                "inspect: {name} is not valid percent-encoded UTF-8"
            ));
        };
        match name {
            "url" => q.url = Some(value),
            "tag" => q.tag = Some(value),
            "after" => q.after = Some(value),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=INSPECT_MAX_PAGE).contains(&n) => q.limit = n,
                _ => {
                    return Err(format!(
                        "inspect: limit must be a number from 1 to {INSPECT_MAX_PAGE}, got {value:?}"
                    ));
                }
            },
            other => {
                return Err(format!(
                    "inspect: unknown parameter {other:?}; use url=, tag=, limit= or after="
                ));
            }
        }
    }
    Ok(q)
}

/// What a purge reaches: exactly one of `url=` (a normalised target),
/// `prefix=` (a normalised path prefix) or `tag=`, and the route named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeQuery {
    /// `url`, `prefix` or `tag`.
    pub scope: String,
    pub value: String,
    pub route: Option<String>,
}

pub fn purge(query: &str) -> Result<PurgeQuery, String> {
    let mut scope = None;
    let mut route = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(value) = crate::percent::decode_strict(value) else {
            return Err(format!("purge: {name} is not valid percent-encoded UTF-8"));
        };
        // Keys hold normalised targets: `/d//f` names the entry of `/d/f`.
        let value = match name {
            "url" | "prefix" => match crate::request_target::normalize_target(&value) {
                Ok(v) => v,
                Err(e) => return Err(format!("purge: {name}: {e}")),
            },
            _ => value,
        };
        match name {
            "url" | "prefix" if !value.starts_with('/') => {
                return Err(format!("purge: {name} must start with '/', got {value:?}"));
            }
            "tag" if value.is_empty() => {
                return Err("purge: tag must not be empty".into());
            }
            "route" => {
                route = Some(value);
                continue;
            }
            "url" | "prefix" | "tag" => {}
            other => {
                return Err(format!(
                    "purge: unknown parameter {other:?}; use url=, prefix= or tag=, and optionally route="
                ));
            }
        }
        if scope.replace((name.to_owned(), value)).is_some() {
            return Err("purge: give exactly one of url=, prefix= or tag=".into());
        }
    }
    let Some((scope, value)) = scope else {
        return Err(
            "purge: give one of url=PATH_AND_QUERY, prefix=PATH or tag=TAG (and optionally route=NAME)".into(),
        );
    };
    Ok(PurgeQuery {
        scope,
        value,
        route,
    })
}

/// `since=N` of `/stats/history`: the `next` of the previous answer.
pub fn history_since(query: &str) -> Result<Option<u64>, String> {
    let mut since = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since", n)) => match n.parse::<u64>() {
                Ok(n) => since = Some(n),
                Err(_) => {
                    return Err(format!(
                        "stats/history: since must be a sample number (the `next` of the previous answer), got {n:?}"
                    ));
                }
            },
            _ => {
                return Err(format!(
                    "stats/history: unknown parameter {pair:?}; use since=N"
                ));
            }
        }
    }
    Ok(since)
}

/// Percent-encodes a query parameter value.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}
