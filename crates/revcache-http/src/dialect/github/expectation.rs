//! Read-after-event: GitHub may deliver a webhook before its API serves
//! the state the webhook announces. An event records what the API must
//! show of the object it names (its `updated_at`, or the SHA a branch
//! points at); a response fetched afterwards that shows less is older than
//! the event. Such a response is served to the caller that fetched it, but
//! its version is marked outdated for its target: an entry of that version
//! is revalidated (a 304 is free) on every request, never trusted. Once
//! GitHub shows the event, the ETag changes and the new version is not
//! marked; a mark is never cleared by another fetch (another variant of
//! the same target may still hold the old version).
//!
//! Both tables are bounded. An expectation and a mark lapse after
//! `EXPECTATION_TTL` (GitHub has caught up long before: a version it still
//! confirms then is current); past 65,536 marks, they start over.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use revcache_core::Partition;
use serde_json::Value;

/// How long an event's expectation is checked.
const EXPECTATION_TTL: Duration = Duration::from_secs(600);
/// Objects with an expectation, and entries marked outdated, at most.
const CAPACITY: usize = 65_536;

/// What the API must show of one object after an event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// At least this `updated_at` (RFC 3339, as GitHub writes it, which
    /// orders as text).
    pub updated_at: Option<String>,
    /// Exactly this head SHA.
    pub sha: Option<String>,
}

impl Expectation {
    pub fn sha(sha: &str) -> Self {
        Expectation {
            updated_at: None,
            // A deleted branch points at nothing: no SHA to wait for.
            sha: (!sha.bytes().all(|b| b == b'0')).then(|| sha.to_ascii_lowercase()),
        }
    }

    /// An issue's or pull request's `updated_at` and head SHA.
    pub fn of_object(object: Option<&Value>) -> Self {
        let s = |p: &str| {
            object
                .and_then(|o| o.pointer(p))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Expectation {
            updated_at: s("/updated_at"),
            sha: s("/head/sha").map(|h| h.to_ascii_lowercase()),
        }
    }

    /// Whether `body` (the JSON of the object) shows at least this state.
    /// A body that does not say is taken as current.
    fn met_by(&self, body: &Value) -> bool {
        if let (Some(want), Some(got)) = (
            &self.updated_at,
            body.get("updated_at").and_then(Value::as_str),
        ) && got < want.as_str()
        {
            return false;
        }
        if let Some(want) = &self.sha {
            let got = ["/head/sha", "/commit/sha", "/object/sha", "/sha"]
                .iter()
                .find_map(|p| body.pointer(p).and_then(Value::as_str));
            if got.is_some_and(|g| !g.eq_ignore_ascii_case(want)) {
                return false;
            }
        }
        true
    }
}

/// An ETag found outdated, and when.
type Mark = (Box<str>, SystemTime);

/// Expectations by tag, and the entries found older than one.
#[derive(Default)]
pub struct Expectations {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Tag name → what the API must show, and since when.
    expected: HashMap<String, (Expectation, SystemTime)>,
    /// (partition, target) → the ETags found outdated, and when. GitHub's
    /// ETags are weak (not `Version`s) but name a representation well
    /// enough for this.
    outdated: HashMap<(Partition, Box<str>), Vec<Mark>>,
}

impl Expectations {
    pub fn expect(&self, tag: String, expectation: Expectation, now: SystemTime) {
        let mut state = self.state.lock();
        if state.expected.len() >= CAPACITY {
            state
                .expected
                .retain(|_, (_, at)| now.duration_since(*at).unwrap_or_default() < EXPECTATION_TTL);
        }
        if state.expected.len() < CAPACITY {
            state.expected.insert(tag, (expectation, now));
        }
    }

    /// Checks a response about to be stored for `target` in `partition`
    /// against the expectations of its `tags`, and marks its version
    /// outdated when it shows less. Returns whether it is outdated.
    pub fn check(
        &self,
        partition: Partition,
        target: &str,
        tags: &[String],
        etag: &str,
        body: &[u8],
        now: SystemTime,
    ) -> bool {
        let mut state = self.state.lock();
        let pending: Vec<&Expectation> = tags
            .iter()
            .filter_map(|t| state.expected.get(t))
            .filter(|(_, at)| now.duration_since(*at).unwrap_or_default() < EXPECTATION_TTL)
            .map(|(e, _)| e)
            .collect();
        let outdated = !pending.is_empty()
            && match serde_json::from_slice::<Value>(body) {
                Ok(v) => pending.iter().any(|e| !e.met_by(&v)),
                // A body that cannot be compared is not trusted.
                Err(_) => true,
            };
        if outdated {
            if state.outdated.len() >= CAPACITY {
                // 65,536 targets outdated at once: the marks start over
                // (an entry that loses its mark may be trusted again
                // before it is refetched; the bound keeps a flood of
                // lagging objects from growing memory).
                state.outdated.clear();
            }
            let marks = state
                .outdated
                .entry((partition, Box::from(target)))
                .or_default();
            marks.retain(|(_, at)| now.duration_since(*at).unwrap_or_default() < EXPECTATION_TTL);
            if !marks.iter().any(|(m, _)| &**m == etag) {
                marks.push((etag.into(), now));
            }
        }
        outdated
    }

    /// Whether an entry for `target` with `etag` was found outdated.
    pub fn is_outdated(
        &self,
        partition: Partition,
        target: &str,
        etag: &str,
        now: SystemTime,
    ) -> bool {
        let state = self.state.lock();
        if state.outdated.is_empty() {
            return false;
        }
        state
            .outdated
            .get(&(partition, Box::from(target)))
            .is_some_and(|marks| {
                marks.iter().any(|(m, at)| {
                    &**m == etag && now.duration_since(*at).unwrap_or_default() < EXPECTATION_TTL
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_older_than_its_event_is_outdated_until_a_fetch_shows_the_event() {
        let x = Expectations::default();
        let now = SystemTime::now();
        let tag = "num:o/r#1".to_owned();
        x.expect(
            tag.clone(),
            Expectation::of_object(Some(
                &json!({"updated_at": "2026-01-02T00:00:00Z", "head": {"sha": "bb"}}),
            )),
            now,
        );
        let v1 = "W/\"1\"";
        let old = json!({"updated_at": "2026-01-01T00:00:00Z", "head": {"sha": "aa"}}).to_string();
        assert!(x.check(
            Partition::Public,
            "/p/1",
            std::slice::from_ref(&tag),
            v1,
            old.as_bytes(),
            now
        ));
        assert!(x.is_outdated(Partition::Public, "/p/1", v1, now));
        let v2 = "W/\"2\"";
        let new = json!({"updated_at": "2026-01-02T00:00:00Z", "head": {"sha": "bb"}}).to_string();
        assert!(!x.check(Partition::Public, "/p/1", &[tag], v2, new.as_bytes(), now));
        assert!(!x.is_outdated(Partition::Public, "/p/1", v2, now));
        // Another variant may still hold the old version: still marked.
        assert!(x.is_outdated(Partition::Public, "/p/1", v1, now));
        let later = now + EXPECTATION_TTL;
        assert!(
            !x.is_outdated(Partition::Public, "/p/1", v1, later),
            "lapsed"
        );
    }

    #[test]
    fn a_branch_is_current_once_it_points_at_the_pushed_sha() {
        let e = Expectation::sha("BEEF");
        assert!(!e.met_by(&json!({"name": "main", "commit": {"sha": "cafe"}})));
        assert!(e.met_by(&json!({"name": "main", "commit": {"sha": "beef"}})));
        assert!(e.met_by(&json!({"ref": "refs/heads/main", "object": {"sha": "beef"}})));
        assert_eq!(Expectation::sha(&"0".repeat(40)).sha, None);
    }

    #[test]
    fn expectations_lapse() {
        let x = Expectations::default();
        let then = SystemTime::now();
        x.expect("t".into(), Expectation::sha("beef"), then);
        let later = then + EXPECTATION_TTL + Duration::from_secs(1);
        let v = "\"x\"";
        let body = br#"{"sha":"cafe"}"#;
        assert!(!x.check(Partition::Public, "/b", &["t".into()], v, body, later));
    }
}
