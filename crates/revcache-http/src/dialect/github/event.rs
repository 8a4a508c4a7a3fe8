//! GitHub webhooks: verified, de-duplicated, and turned into tags.
//!
//! A delivery is trusted only when `X-Hub-Signature-256` is the HMAC-SHA256
//! of its raw body under the route's secret (compared in constant time).
//! `X-GitHub-Delivery` identifies a delivery; a redelivery of one already
//! applied changes nothing. Each event names its repository and the object
//! that changed; what an event type does not pin down invalidates the
//! whole repository, and what may change who sees what (visibility,
//! membership, installations) invalidates it in every partition, which
//! tags do by construction. An event without a repository that is not
//! understood invalidates the whole route.

use std::collections::{HashSet, VecDeque};

use http::HeaderMap;
use parking_lot::Mutex;
use ring::hmac;
use serde_json::Value;

use super::expectation::Expectation;
use crate::events::EventError;

/// Deliveries remembered for de-duplication.
const DELIVERIES: usize = 65_536;

/// The webhook secret and the deliveries seen.
pub struct Webhooks {
    key: hmac::Key,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks(secret: set)")
    }
}

/// What one verified event means.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// `X-GitHub-Event`, with the action (`pull_request.opened`).
    pub kind: String,
    /// Tag names to invalidate.
    pub tags: Vec<String>,
    /// Nothing narrower is known: invalidate everything of the route.
    pub route_wide: bool,
    /// What the API must show before a fetched object is trusted again.
    pub expectations: Vec<(String, Expectation)>,
    /// An installation whose tokens no longer mean what they did.
    pub installation_changed: Option<u64>,
    /// A redelivery of an event already applied.
    pub duplicate: bool,
    /// The repository the event names (`owner/name`, lower case).
    pub repo: Option<String>,
    /// What the webhook that sent it covers: its repository (`o/r`),
    /// every repository of its organization (`o/`), or the
    /// repositories an installation event lists.
    pub covers: Vec<String>,
}

impl Webhooks {
    pub fn new(secret: &[u8]) -> Self {
        Webhooks {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            seen: Mutex::default(),
        }
    }

    /// Verifies, de-duplicates and reads one delivery.
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, EventError> {
        let tag = self.verify(headers, body)?;
        let event = header(headers, "x-github-event")
            .ok_or_else(|| EventError::Shape("no X-GitHub-Event header".into()))?;
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
        if !value.is_object() {
            return Err(EventError::Json("the payload is not a JSON object".into()));
        }
        // A delivery is known by its id, and by its signature: a body
        // replayed under a fresh id is the same delivery. The signature's
        // bytes, not its spelling: `AB` and `ab` are one signature.
        let signature: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let id = header(headers, "x-github-delivery").unwrap_or_default();
        if !self.first_delivery(id, &signature) {
            return Ok(Parsed {
                kind: "duplicate".into(),
                duplicate: true,
                ..Parsed::default()
            });
        }
        Ok(parse(event, &value))
    }

    /// The delivery's signature, when it is the body's.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, EventError> {
        let Some(signature) = header(headers, "x-hub-signature-256") else {
            return Err(EventError::Unauthenticated(
                "the delivery has no X-Hub-Signature-256".into(),
            ));
        };
        let tag = signature
            .strip_prefix("sha256=")
            .and_then(unhex)
            .ok_or_else(|| {
                EventError::Unauthenticated("X-Hub-Signature-256 is not sha256=<hex>".into())
            })?;
        hmac::verify(&self.key, body, &tag).map_err(|_| {
            EventError::Unauthenticated("X-Hub-Signature-256 does not match the body".into())
        })?;
        Ok(tag)
    }

    /// Records a delivery's id and signature; false when either was seen
    /// before.
    fn first_delivery(&self, id: &str, signature: &str) -> bool {
        let mut seen = self.seen.lock();
        let id = (!id.is_empty()).then(|| format!("id:{id}"));
        let sig = format!("sig:{signature}");
        if id.as_ref().is_some_and(|id| seen.ids.contains(id.as_str()))
            || seen.ids.contains(sig.as_str())
        {
            return false;
        }
        for key in id.into_iter().chain([sig]) {
            if seen.order.len() >= DELIVERIES
                && let Some(old) = seen.order.pop_front()
            {
                seen.ids.remove(&old);
            }
            seen.ids.insert(key.clone().into());
            seen.order.push_back(key.into());
        }
        true
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone would take a sign (`+a`) for a digit.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// `refs/heads/x` or `refs/tags/x` → `x`.
fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

/// What a verified event of type `event` invalidates.
pub fn parse(event: &str, v: &Value) -> Parsed {
    let action = str_at(v, "/action");
    let kind = match action {
        Some(a) => format!("{event}.{a}"),
        None => event.to_owned(),
    };
    let mut out = Parsed {
        kind,
        ..Parsed::default()
    };
    let repo = str_at(v, "/repository/full_name").map(str::to_ascii_lowercase);
    let installation = v.pointer("/installation/id").and_then(Value::as_u64);
    out.covers.extend(repo.clone());
    if let Some(org) = str_at(v, "/organization/login") {
        out.covers.push(format!("{}/", org.to_ascii_lowercase()));
    }
    out.covers.extend(
        installation_repos(v)
            .into_iter()
            .filter_map(|t| t.strip_prefix("repo:").map(str::to_owned)),
    );
    let Some(repo) = repo else {
        match event {
            "ping" => {}
            "installation" | "installation_repositories" => {
                out.installation_changed = installation;
                out.tags.extend(installation_repos(v));
                // Without the repositories it covers, nothing narrower.
                out.route_wide = out.tags.is_empty();
            }
            // Membership of an organization or team, an app authorization:
            // who sees what may have changed anywhere.
            _ => out.route_wide = true,
        }
        return out;
    };
    out.repo = Some(repo.clone());
    let tags = &mut out.tags;
    // Repository paths not understood here see every event.
    tags.push(format!("other:{repo}"));
    let number = |p: &str| v.pointer(p).and_then(Value::as_u64);
    match event {
        "ping" => {}
        "push" => {
            let r = str_at(v, "/ref").unwrap_or("");
            tags.push(format!("ref:{repo}:{}", short_ref(r)));
            tags.push(format!("list:{repo}/commits"));
            tags.push(format!("list:{repo}/branches"));
            tags.push(format!("list:{repo}/tags"));
            if let Some(after) = str_at(v, "/after")
                && r.starts_with("refs/heads/")
            {
                out.expectations.push((
                    format!("ref:{repo}:{}", short_ref(r)),
                    Expectation::sha(after),
                ));
            }
        }
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => {
            if let Some(n) = number("/pull_request/number") {
                let tag = format!("num:{repo}#{n}");
                if event == "pull_request" {
                    // Anything of it may have changed (commits on
                    // `synchronize`, labels, reviewers, state).
                    tags.push(format!("nums:{repo}#{n}"));
                    out.expectations
                        .push((tag.clone(), Expectation::of_object(v.get("pull_request"))));
                } else {
                    // A review or review comment: the pull, its reviews
                    // and comments, not its commits or files.
                    for sub in ["reviews", "comments", "requested_reviewers"] {
                        tags.push(format!("{tag}/{sub}"));
                    }
                    push_timeline(tags, &tag);
                }
                tags.push(tag);
            }
            tags.push(format!("list:{repo}/pulls"));
            tags.push(format!("list:{repo}/issues"));
            if event == "pull_request" {
                for side in ["head", "base"] {
                    if let Some(r) = str_at(v, &format!("/pull_request/{side}/ref")) {
                        tags.push(format!("ref:{repo}:{r}"));
                    }
                }
                if v.pointer("/pull_request/merged").and_then(Value::as_bool) == Some(true) {
                    tags.push(format!("list:{repo}/commits"));
                    tags.push(format!("list:{repo}/branches"));
                }
            }
        }
        "issues" | "issue_comment" => {
            if let Some(n) = number("/issue/number") {
                let tag = format!("num:{repo}#{n}");
                if event == "issues" {
                    tags.push(format!("nums:{repo}#{n}"));
                    out.expectations
                        .push((tag.clone(), Expectation::of_object(v.get("issue"))));
                } else {
                    tags.push(format!("{tag}/comments"));
                    push_timeline(tags, &tag);
                }
                tags.push(tag);
            }
            tags.push(format!("list:{repo}/issues"));
            tags.push(format!("list:{repo}/pulls"));
        }
        "status" => {
            if let Some(sha) = str_at(v, "/sha") {
                tags.push(format!("statuses:{repo}@{}", sha.to_ascii_lowercase()));
            }
            for b in v
                .get("branches")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = str_at(b, "/name") {
                    tags.push(format!("ref:{repo}:{name}"));
                }
            }
        }
        "check_run" | "check_suite" => {
            let object = if event == "check_run" {
                "check_run"
            } else {
                "check_suite"
            };
            if let Some(id) = number(&format!("/{object}/id")) {
                tags.push(format!("{}:{repo}/{id}", object.replace('_', "-")));
            }
            if let Some(suite) = number("/check_run/check_suite/id") {
                tags.push(format!("check-suite:{repo}/{suite}"));
            }
            if let Some(sha) = str_at(v, &format!("/{object}/head_sha")) {
                tags.push(format!("checks:{repo}@{}", sha.to_ascii_lowercase()));
            }
            // Check endpoints named by branch rather than by commit.
            let branch = str_at(v, "/check_suite/head_branch")
                .or_else(|| str_at(v, "/check_run/check_suite/head_branch"));
            if let Some(b) = branch {
                tags.push(format!("ref:{repo}:{b}"));
            }
            tags.push(format!("list:{repo}/check-runs"));
        }
        "workflow_run" | "workflow_job" => {
            let run = number("/workflow_run/id").or_else(|| number("/workflow_job/run_id"));
            if let Some(id) = run {
                tags.push(format!("run:{repo}/{id}"));
            }
            let sha =
                str_at(v, "/workflow_run/head_sha").or_else(|| str_at(v, "/workflow_job/head_sha"));
            if let Some(sha) = sha {
                // A workflow's jobs are check runs of its commit.
                tags.push(format!("checks:{repo}@{}", sha.to_ascii_lowercase()));
            }
            let branch = str_at(v, "/workflow_run/head_branch")
                .or_else(|| str_at(v, "/workflow_job/head_branch"));
            if let Some(b) = branch {
                tags.push(format!("ref:{repo}:{b}"));
            }
            tags.push(format!("list:{repo}/runs"));
        }
        "create" | "delete" => {
            if let Some(r) = str_at(v, "/ref") {
                tags.push(format!("ref:{repo}:{}", short_ref(r)));
            }
            tags.push(format!("list:{repo}/branches"));
            tags.push(format!("list:{repo}/tags"));
        }
        "installation_repositories" | "installation" => {
            out.installation_changed = installation;
            tags.push(format!("repo:{repo}"));
            tags.extend(installation_repos(v));
        }
        // A repository renamed or moved: its entries under the old name
        // are not named by this event; everything goes.
        "repository" if matches!(action, Some("renamed" | "transferred")) => {
            out.route_wide = true;
        }
        // Visibility, membership, teams, labels, settings, and every
        // event not understood: all of the repository.
        _ => tags.push(format!("repo:{repo}")),
    }
    out
}

/// The tags of an issue's or pull's history, which every change of it
/// extends.
fn push_timeline(tags: &mut Vec<String>, item: &str) {
    tags.push(format!("{item}/events"));
    tags.push(format!("{item}/timeline"));
}

/// `repo:` tags of the repositories an installation event lists.
fn installation_repos(v: &Value) -> Vec<String> {
    ["repositories", "repositories_added", "repositories_removed"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|r| str_at(r, "/full_name"))
        .map(|name| format!("repo:{}", name.to_ascii_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn signed(secret: &[u8], event: &str, delivery: &str, body: &[u8]) -> HeaderMap {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let mut h = HeaderMap::new();
        h.insert("x-github-event", event.parse().unwrap());
        h.insert("x-github-delivery", delivery.parse().unwrap());
        h.insert(
            "x-hub-signature-256",
            format!("sha256={hex}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn only_a_delivery_signed_with_the_secret_is_accepted() {
        let hooks = Webhooks::new(b"s3cret");
        let body = br#"{"zen":"hi","repository":{"full_name":"o/r"}}"#;
        assert!(
            hooks
                .receive(&signed(b"s3cret", "ping", "1", body), body)
                .is_ok()
        );
        let wrong = signed(b"other", "ping", "2", body);
        assert!(matches!(
            hooks.receive(&wrong, body),
            Err(EventError::Unauthenticated(_))
        ));
        let mut unsigned = signed(b"s3cret", "ping", "3", body);
        unsigned.remove("x-hub-signature-256");
        assert!(matches!(
            hooks.receive(&unsigned, body),
            Err(EventError::Unauthenticated(_))
        ));
        let tampered = br#"{"zen":"ho","repository":{"full_name":"o/r"}}"#;
        assert!(matches!(
            hooks.receive(&signed(b"s3cret", "ping", "4", body), tampered),
            Err(EventError::Unauthenticated(_))
        ));
        let mut garbage = signed(b"s3cret", "ping", "5", body);
        garbage.insert("x-hub-signature-256", "sha256=zz".parse().unwrap());
        assert!(hooks.receive(&garbage, body).is_err());
    }

    #[test]
    fn a_redelivery_changes_nothing() {
        let hooks = Webhooks::new(b"k");
        let body = br#"{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":1}}"#;
        let first = hooks
            .receive(&signed(b"k", "issues", "d-1", body), body)
            .unwrap();
        assert!(first.tags.contains(&"num:o/r#1".to_owned()));
        let again = hooks
            .receive(&signed(b"k", "issues", "d-1", body), body)
            .unwrap();
        assert!(again.duplicate && again.tags.is_empty());
        // A captured delivery replayed under a fresh id.
        let replayed = hooks
            .receive(&signed(b"k", "issues", "d-2", body), body)
            .unwrap();
        assert!(replayed.duplicate);
    }

    /// Found by the `github_event` fuzz target: the replay check compared
    /// the signature as spelled, so a captured delivery replayed under a
    /// fresh id with its signature in capitals (or a digit written `+a`,
    /// which `from_str_radix` read as `0a`) was applied again.
    #[test]
    fn a_replay_with_the_signature_spelled_otherwise_changes_nothing() {
        let hooks = Webhooks::new(b"k");
        let body = br#"{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":1}}"#;
        let first = signed(b"k", "issues", "d-1", body);
        assert!(!hooks.receive(&first, body).unwrap().duplicate);
        let signature = first["x-hub-signature-256"].to_str().unwrap();
        let mut upper = signed(b"k", "issues", "d-2", body);
        let capitals = format!(
            "sha256={}",
            signature["sha256=".len()..].to_ascii_uppercase()
        );
        upper.insert("x-hub-signature-256", capitals.parse().unwrap());
        assert!(hooks.receive(&upper, body).unwrap().duplicate);
        let mut signed_digit = signed(b"k", "issues", "d-3", body);
        let hex = &signature["sha256=".len()..];
        let plus = format!("sha256=+{}", &hex[1..]);
        signed_digit.insert("x-hub-signature-256", plus.parse().unwrap());
        assert!(matches!(
            hooks.receive(&signed_digit, body),
            Err(EventError::Unauthenticated(_))
        ));
    }

    #[test]
    fn visibility_and_membership_changes_reach_the_whole_repository() {
        for event in [
            "repository",
            "member",
            "team",
            "label",
            "public",
            "some_new_event",
        ] {
            let p = parse(
                event,
                &json!({"action": "x", "repository": {"full_name": "O/R"}}),
            );
            assert!(p.tags.contains(&"repo:o/r".to_owned()), "{event}");
        }
        let org = parse("organization", &json!({"action": "member_removed"}));
        assert!(org.route_wide);
        let inst = parse(
            "installation",
            &json!({"action": "deleted", "installation": {"id": 7},
                    "repositories": [{"full_name": "o/a"}, {"full_name": "o/b"}]}),
        );
        assert_eq!(inst.installation_changed, Some(7));
        assert_eq!(inst.tags, vec!["repo:o/a", "repo:o/b"]);
        assert!(!inst.route_wide);
    }

    #[test]
    fn a_push_names_its_branch_and_expects_its_new_head() {
        let p = parse(
            "push",
            &json!({"ref": "refs/heads/main", "before": "a", "after": "b",
                    "repository": {"full_name": "o/r"}}),
        );
        assert!(p.tags.contains(&"ref:o/r:main".to_owned()));
        assert_eq!(p.expectations[0].0, "ref:o/r:main");
    }
}
