//! The `github` dialect: GitHub's REST API (api.github.com, or a GitHub
//! Enterprise `/api/v3`) cached per credential and kept correct by signed
//! webhooks.
//!
//! - GET/HEAD answers are stored in the caller's partition whatever
//!   `Cache-Control: private` says (GitHub's ETags are per token); the
//!   version is the ETag; `Authorization` selects no variant (the
//!   partition is its hash) and `X-GitHub-Api-Version` does.
//! - Entries are tagged from the URL and the body (`endpoint`), so a
//!   webhook invalidates what it names (`event`); writes invalidate what
//!   they touch; GraphQL and `/rate_limit` pass through.
//! - An entry is served without asking while the webhook feed is trusted
//!   and healthy and the entry was fetched since it became so, unless it
//!   was found older than an event (`expectation`); otherwise it is
//!   revalidated with its ETag (a 304 costs no rate-limit unit).
//! - Rate limits are tracked per partition (`rate_limit`): below the
//!   reserve, stored entries answer instead of revalidating.
//! - Tokens of one GitHub App installation and scope share a partition
//!   (`installation`).

mod endpoint;
pub(crate) mod event;
mod expectation;
mod installation;
mod rate_limit;

use std::time::SystemTime;

use http::header::{AUTHORIZATION, ETAG};
use http::{HeaderMap, HeaderName, Method, StatusCode, request};
use revcache_core::{Entry, Invalidation, KeyClass, Partition, Tag, Version};
use serde_json::Value;

pub use self::endpoint::{CommitPart, Endpoint, Resource};
use self::event::Webhooks;
use self::expectation::Expectations;
use self::installation::Installations;
use self::rate_limit::RateLimits;
use super::registry::{DialectContext, OptionError, OptionSpec};
use super::{
    Classification, Dialect, DialectReuse, Facts, Fwd, Hold, HttpDialect, RateLimitRow, Storage,
    VaryRule,
};
use crate::events::{Event, EventEffect, EventError, EventFraming, Feed};
use crate::policy::Reuse;

/// Remaining `core` units below which revalidations stop, by default.
const DEFAULT_RESERVE: u64 = 50;
/// The most of an access-token response read to learn its token.
const TOKEN_RESPONSE_BYTES: usize = 8 << 20;

pub struct GithubDialect {
    route: u32,
    feed: Option<Feed>,
    webhooks: Option<Webhooks>,
    /// Where clients reach revcache, for the URLs in answers.
    public_url: Option<String>,
    /// Every event of a repository invalidates all of it, so the
    /// repository summaries GitHub embeds never lag.
    exact_summaries: bool,
    limits: RateLimits,
    /// Repositories (`o/r`) and organizations (`o/`) a verified delivery
    /// has named: only their entries may be trusted, for only their
    /// changes arrive as webhooks.
    covered: parking_lot::Mutex<std::collections::HashSet<String>>,
    installations: Installations,
    expectations: Expectations,
}

impl GithubDialect {
    pub const OPTIONS: &'static [OptionSpec] = &[
        OptionSpec {
            key: "rate_limit_reserve",
            help: "remaining core rate-limit units below which stored entries answer instead of revalidating (default 50)",
        },
        OptionSpec {
            key: "public_url",
            help: "the origin clients reach revcache at (https://github-cache.example), which GitHub's URLs in answers are rewritten to; default: the scheme and Host each client used",
        },
        OptionSpec {
            key: "repository_summaries",
            help: "\"lag\" (default): the repository GitHub embeds in pulls and statuses may lag until the entry is invalidated or its trust runs out; \"exact\": every event of a repository invalidates all of it",
        },
    ];

    pub fn new(cx: &DialectContext<'_>) -> Result<Self, OptionError> {
        let reserve = match cx.options.get("rate_limit_reserve") {
            None => DEFAULT_RESERVE,
            Some(v) => v.trim().parse().map_err(|_| {
                OptionError::option(
                    "rate_limit_reserve",
                    format!("{v:?} is not a whole number of requests"),
                )
            })?,
        };
        let exact_summaries = match cx.options.get("repository_summaries").map(|v| v.trim()) {
            None | Some("lag") => false,
            Some("exact") => true,
            Some(other) => {
                return Err(OptionError::option(
                    "repository_summaries",
                    format!("{other:?} is not \"lag\" or \"exact\""),
                ));
            }
        };
        let public_url = match cx.options.get("public_url") {
            None => None,
            Some(v) => {
                let uri: http::Uri = v.trim().parse().map_err(|e| {
                    OptionError::option("public_url", format!("{v:?} is not a URL: {e}"))
                })?;
                match (uri.scheme_str(), uri.authority()) {
                    (Some("http" | "https"), Some(authority))
                        if uri.path() == "/" || uri.path().is_empty() =>
                    {
                        Some(format!(
                            "{}://{authority}",
                            uri.scheme_str().unwrap_or("https")
                        ))
                    }
                    _ => {
                        return Err(OptionError::option(
                            "public_url",
                            format!("{v:?} must be an http:// or https:// origin without a path"),
                        ));
                    }
                }
            }
        };
        let events_error = |key: &str, message: String| OptionError {
            section: "events",
            key: key.to_owned(),
            message,
        };
        let mut webhooks = None;
        if let Some(events) = cx.events {
            if events.command.is_some() {
                return Err(events_error(
                    "command",
                    "GitHub delivers webhooks to /events/<route>; a github route takes no command"
                        .into(),
                ));
            }
            let Some(file) = &events.secret_file else {
                return Err(events_error(
                    "secret_file",
                    "a github route's webhooks must be signed: set the file holding the secret"
                        .into(),
                ));
            };
            let secret = std::fs::read(file)
                .map_err(|e| events_error("secret_file", format!("{}: {e}", file.display())))?;
            // A trailing line break is the editor's, not the secret's.
            let secret = secret.trim_ascii_end();
            if secret.is_empty() {
                return Err(events_error(
                    "secret_file",
                    format!("{} is empty", file.display()),
                ));
            }
            webhooks = Some(Webhooks::new(secret));
        }
        Ok(GithubDialect {
            route: cx.route,
            feed: cx
                .events
                .map(|e| Feed::new(e.trust, e.heartbeat, true, cx.now)),
            webhooks,
            public_url,
            exact_summaries,
            limits: RateLimits::new(reserve),
            covered: Default::default(),
            installations: Installations::new(cx.partition_key.clone()),
            expectations: Expectations::default(),
        })
    }

    /// Repositories and organizations webhooks are known to cover, at
    /// most this many (past it, nothing new is trusted: it is revalidated).
    const COVERED: usize = 65_536;

    fn cover(&self, names: &[String]) {
        let mut covered = self.covered.lock();
        for name in names {
            if covered.len() < Self::COVERED {
                covered.insert(name.clone());
            }
        }
    }

    fn covers(&self, repo: &str) -> bool {
        let covered = self.covered.lock();
        covered.contains(repo)
            || repo
                .find('/')
                .is_some_and(|slash| covered.contains(&repo[..=slash]))
    }

    fn tag(&self, name: impl Into<std::sync::Arc<str>>) -> Tag {
        Tag::new(self.route, name)
    }
}

/// Tags a response body adds: the items of a list, the commit an answer
/// about a ref shows (so events about that commit reach it), the checks
/// of a commit.
fn body_tags(repo: &str, resource: &Resource, body: &Value, tags: &mut Vec<String>) {
    let mut push = |t: String| {
        if !tags.contains(&t) {
            tags.push(t);
        }
    };
    match resource {
        Resource::List(_) => {
            for item in body.as_array().into_iter().flatten() {
                if let Some(n) = item.get("number").and_then(Value::as_u64) {
                    push(format!("num:{repo}#{n}"));
                }
            }
        }
        Resource::Commit { part, .. } => {
            let lower = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
            match part {
                CommitPart::Object => {
                    if let Some(sha) = body.get("sha").and_then(lower) {
                        push(format!("sha:{repo}@{sha}"));
                    }
                }
                CommitPart::Statuses => {
                    if let Some(sha) = body.get("sha").and_then(lower) {
                        push(format!("statuses:{repo}@{sha}"));
                    }
                }
                CommitPart::Checks => {
                    for (list, kind) in
                        [("check_runs", "check-run"), ("check_suites", "check-suite")]
                    {
                        for item in body
                            .get(list)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(sha) = item.get("head_sha").and_then(lower) {
                                push(format!("checks:{repo}@{sha}"));
                            }
                            if let Some(id) = item.get("id").and_then(Value::as_u64) {
                                push(format!("{kind}:{repo}/{id}"));
                            }
                            if let Some(id) =
                                item.pointer("/check_suite/id").and_then(Value::as_u64)
                            {
                                push(format!("check-suite:{repo}/{id}"));
                            }
                        }
                    }
                }
                CommitPart::Other => {}
            }
        }
        Resource::CheckRun(_) => {
            if let Some(id) = body.pointer("/check_suite/id").and_then(Value::as_u64) {
                push(format!("check-suite:{repo}/{id}"));
            }
        }
        _ => {}
    }
}

impl Dialect for GithubDialect {
    fn name(&self) -> &'static str {
        "github"
    }

    fn classify(&self, req: &request::Parts) -> Classification {
        match Endpoint::of(req.uri.path()) {
            // GraphQL is a POST whose answer depends on its body: never
            // stored; what a mutation changes arrives as webhooks.
            Endpoint::Graphql => Classification::Pass {
                reason: Fwd::Method,
            },
            Endpoint::RateLimit => Classification::Pass {
                reason: Fwd::Bypass,
            },
            _ => HttpDialect::new(self.route).classify(req),
        }
    }

    fn endpoint_class(&self, req: &request::Parts) -> &'static str {
        match Endpoint::of(req.uri.path()) {
            Endpoint::Repo { resource, .. } => match resource {
                Resource::Repository => "repository",
                Resource::Number { .. } => "item",
                Resource::List(_) => "list",
                Resource::Commit { .. } => "commit",
                Resource::Branch(_) => "branch",
                Resource::CheckRun(_) | Resource::CheckSuite(_) => "check",
                Resource::WorkflowRun(_) => "run",
                Resource::Other => "repo_other",
            },
            Endpoint::AccessTokens { .. } => "access_tokens",
            Endpoint::RateLimit => "rate_limit",
            Endpoint::Graphql => "graphql",
            Endpoint::Other => "other",
        }
    }

    fn storage(&self, req: &request::Parts, status: StatusCode, _headers: &HeaderMap) -> Storage {
        match (&req.method, status) {
            (&Method::GET, StatusCode::OK) => Storage::Partitioned,
            _ => Storage::Rfc,
        }
    }

    fn facts(
        &self,
        req: &request::Parts,
        partition: Partition,
        _status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        received: SystemTime,
    ) -> Facts {
        let version = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(Version::from_etag);
        let endpoint = Endpoint::of(req.uri.path());
        let mut tags = endpoint.tags();
        if let Endpoint::Repo { repo, resource } = &endpoint {
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                body_tags(repo, resource, &v, &mut tags);
            }
            self.expectations.check(
                partition,
                req.uri.path_and_query().map_or("/", |p| p.as_str()),
                &tags,
                headers
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
                body,
                received,
            );
        }
        Facts {
            version,
            tags: tags.into_iter().map(|t| self.tag(t)).collect(),
        }
    }

    fn upstream_failure(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let limited = matches!(
            status,
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) && (headers.contains_key(http::header::RETRY_AFTER)
            || headers
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0"));
        status.is_server_error() || limited
    }

    fn reuse(&self, entry: &Entry, now: SystemTime) -> Option<DialectReuse> {
        if entry.key.class() != &KeyClass::Get {
            return None;
        }
        let revalidate = Some(DialectReuse {
            reuse: Reuse::Revalidate,
            detail: None,
        });
        // Only what webhooks cover may be trusted: a repository a verified
        // delivery has named (or its organization's).
        let endpoint = Endpoint::of(entry.key.path());
        let Some(repo) = endpoint.repo() else {
            return revalidate;
        };
        if !self.covers(repo) {
            return revalidate;
        }
        if self.expectations.is_outdated(
            entry.key.partition(),
            entry.key.target(),
            entry.headers.get_str("etag").unwrap_or_default(),
            now,
        ) {
            return revalidate;
        }
        match &self.feed {
            Some(feed) if feed.trusts(entry.timing().request_time, now) => Some(DialectReuse {
                reuse: Reuse::Fresh,
                detail: Some("trusted"),
            }),
            _ => revalidate,
        }
    }

    fn on_write(
        &self,
        req: &request::Parts,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Vec<Invalidation> {
        let endpoint = Endpoint::of(req.uri.path());
        if let (Endpoint::AccessTokens { installation }, Some(body)) = (&endpoint, body)
            && status.is_success()
        {
            self.installations
                .learn(*installation, body, SystemTime::now());
            return Vec::new();
        }
        if req.method == Method::DELETE && req.uri.path().ends_with("/installation/token") {
            self.installations.forget_token(&req.headers);
            return Vec::new();
        }
        let mut out = HttpDialect::new(self.route).on_write(req, status, headers, None);
        out.extend(
            endpoint
                .written()
                .into_iter()
                .map(|t| Invalidation::Tag(self.tag(t))),
        );
        out
    }

    fn write_body(&self, req: &request::Parts) -> Option<usize> {
        matches!(Endpoint::of(req.uri.path()), Endpoint::AccessTokens { .. })
            .then_some(TOKEN_RESPONSE_BYTES)
    }

    fn regroup(&self, headers: &HeaderMap, partition: Partition, now: SystemTime) -> Partition {
        if !headers.contains_key(AUTHORIZATION) {
            return partition;
        }
        self.installations.regroup(headers, partition, now)
    }

    fn vary_rule(&self) -> VaryRule {
        static ADD: [HeaderName; 1] = [HeaderName::from_static("x-github-api-version")];
        static IGNORE: [HeaderName; 1] = [AUTHORIZATION];
        VaryRule {
            add: &ADD,
            ignore: &IGNORE,
        }
    }

    fn answered(
        &self,
        partition: Option<Partition>,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) {
        if status == StatusCode::UNAUTHORIZED
            && let Some(p) = partition
        {
            // A token of an installation's partition that GitHub refuses
            // (revoked): no token reads that partition until one is
            // minted again.
            self.installations.forget_partition(p);
        }
        self.limits.answered(partition, status, headers, now);
    }

    fn hold(&self, partition: Option<Partition>, now: SystemTime) -> Option<Hold> {
        self.limits.hold(partition, now)
    }

    fn saved(&self, partition: Option<Partition>) {
        self.limits.saved(partition);
    }

    fn rate_limits(&self) -> Vec<RateLimitRow> {
        self.limits.rows()
    }

    /// GitHub's `Link: <https://api.github.com/...?page=2>` pagination, and
    /// the `"url"` of every object, which clients such as PyGithub follow.
    fn rewrites_links(&self) -> bool {
        true
    }

    fn public_origin(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Bodies are asked for without content coding, so the URLs in them
    /// can be pointed back at revcache (`rewrites_links`).
    fn normalize_request(&self, req: &mut request::Parts) {
        req.headers.remove(http::header::ACCEPT_ENCODING);
    }

    fn on_event(&self, event: &Event<'_>, now: SystemTime) -> Result<EventEffect, EventError> {
        let Some(webhooks) = &self.webhooks else {
            return Err(EventError::NoFeed(
                "this github route has no [routes.events]".into(),
            ));
        };
        let parsed = webhooks.receive(event.headers, event.body)?;
        self.cover(&parsed.covers);
        if let Some(installation) = parsed.installation_changed {
            self.installations.forget_installation(installation);
        }
        for (tag, expectation) in parsed.expectations {
            self.expectations.expect(tag, expectation, now);
        }
        let mut tags = parsed.tags;
        if self.exact_summaries
            && let Some(repo) = &parsed.repo
            && !parsed.duplicate
            && parsed.kind != "ping"
        {
            tags.push(format!("repo:{repo}"));
        }
        let mut invalidations: Vec<Invalidation> = tags
            .into_iter()
            .map(|t| Invalidation::Tag(self.tag(t)))
            .collect();
        if parsed.route_wide {
            invalidations.push(Invalidation::prefix(self.route, "/"));
        }
        Ok(EventEffect {
            // The event's type, without its action, is the metric label.
            kind: parsed.kind.split('.').next().unwrap_or_default().to_owned(),
            invalidations,
            gap: false,
        })
    }

    /// Every delivery's `X-Hub-Signature-256` is checked under the
    /// route's secret (required when the route has events).
    fn verifies_events(&self) -> bool {
        self.webhooks.is_some()
    }

    /// A delivery's signature covers its whole body.
    fn event_framing(&self) -> EventFraming {
        EventFraming::Whole
    }

    fn feed(&self) -> Option<&Feed> {
        self.feed.as_ref()
    }

    fn cookies_identify(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use revcache_core::PartitionKey;

    use super::*;
    use crate::settings::EventSettings;

    fn build(
        events: Option<&EventSettings>,
        options: &[(&str, &str)],
    ) -> Result<GithubDialect, OptionError> {
        let options: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = PartitionKey::ephemeral().unwrap();
        GithubDialect::new(&DialectContext {
            route: 1,
            events,
            options: &options,
            now: SystemTime::now(),
            partition_key: &key,
        })
    }

    fn events(secret_file: Option<std::path::PathBuf>) -> EventSettings {
        EventSettings {
            trust: None,
            heartbeat: None,
            command: None,
            secret_file,
        }
    }

    #[test]
    fn settings_it_cannot_use_are_refused_by_their_key() {
        let e = build(None, &[("rate_limit_reserve", "lots")])
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "options.rate_limit_reserve: \"lots\" is not a whole number of requests"
        );
        let e = build(Some(&events(None)), &[]).err().unwrap();
        assert!(e.to_string().starts_with("events.secret_file: "), "{e}");
        let missing = std::path::PathBuf::from("/nonexistent/revcache-secret");
        let e = build(Some(&events(Some(missing))), &[]).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("events.secret_file: /nonexistent/revcache-secret: "),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("revcache-gh-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = build(Some(&events(Some(empty))), &[]).err().unwrap();
        assert!(e.to_string().ends_with("is empty"), "{e}");
        let good = dir.join("good");
        std::fs::write(&good, "s3cret\n").unwrap();
        assert!(build(Some(&events(Some(good))), &[("rate_limit_reserve", "10")]).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn graphql_and_the_rate_limit_pass_and_writes_are_writes() {
        let d = build(None, &[]).unwrap();
        let parts = |method: &str, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert!(matches!(
            d.classify(&parts("POST", "/graphql")),
            Classification::Pass { .. }
        ));
        assert!(matches!(
            d.classify(&parts("GET", "/rate_limit")),
            Classification::Pass { .. }
        ));
        assert!(matches!(
            d.classify(&parts("GET", "/repos/o/r/pulls/1")),
            Classification::Cacheable { .. }
        ));
        assert_eq!(
            d.classify(&parts("POST", "/repos/o/r/issues/1/comments")),
            Classification::Write
        );
    }
}
