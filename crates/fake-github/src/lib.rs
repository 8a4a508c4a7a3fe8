//! A fake GitHub REST API that behaves like the real one where a cache can
//! tell:
//!
//! - repositories (public/private, members, renames), users with personal
//!   tokens (`ghp_…`), GitHub App installations whose tokens (`ghs_…`,
//!   minted by `POST /app/installations/{id}/access_tokens` with the app JWT,
//!   optionally narrowed to some repositories/permissions) share one
//!   rate-limit bucket per installation; `Authorization: token X` or
//!   `Bearer X`; an unknown token answers 401, no token is anonymous
//!   (60 an hour, public repositories only); a private repository the token
//!   may not see answers 404;
//! - pulls and issues sharing one number sequence per repository, commits,
//!   branches and tags, reviews, comments, labels, commit statuses, check
//!   runs and suites, workflow runs, each with an `updated_at` that strictly
//!   increases (a logical clock: one second per mutation);
//! - every 2xx read carries GitHub's `Cache-Control: private, max-age=60,
//!   s-maxage=60`, both `Vary` headers, a weak `ETag` over the token, the
//!   `Accept` header and the body (so two tokens never share an ETag), and
//!   `Last-Modified` for single objects; `If-None-Match` answers 304, which
//!   is not counted against the rate limit;
//! - rate-limit headers on every answer, 403 `API rate limit exceeded` at
//!   zero, `GET /rate_limit` uncounted, `POST /graphql` in its own bucket; a
//!   secondary limit (403 or 429 with `Retry-After`) tripped on demand;
//! - lists paginate with `per_page`/`page` and a `Link` header built from
//!   the request's own `Host` (and `X-Forwarded-Proto`), so it points back
//!   through a proxy;
//! - every mutation, in-process or through the REST writes, posts its
//!   webhooks (signed `X-Hub-Signature-256`) to the sink after the change is
//!   applied, waiting for each answer — unless a visibility lag is set, in
//!   which case the affected objects keep serving their previous
//!   representation (same ETag) for that many more reads: the webhook
//!   arrives before the change is visible, as on GitHub's replicas.
//!
//! REST writes deliver their webhooks before they answer, so a test sees
//! them in order (a sink that writes back to the fake while handling a
//! delivery would deadlock; reads are fine). Installation tokens, like
//! GitHub's, read public repositories they are not installed on; only
//! private ones answer 404. The fake counts what it serves ([`Served`]).
//!
//! Not modelled: review comments (always an empty list), permission checks
//! of installation tokens beyond repository coverage, webhooks to https
//! sinks, `If-Modified-Since`.

mod model;
mod server;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use model::hex;
use state::{Event, Fail, Ident, Installation, State, TokenRec};

/// How to start the fake.
#[derive(Clone)]
pub struct Options {
    /// Serve https with this configuration (http when `None`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Core requests an hour of each user or installation.
    pub rate_limit: u64,
    /// Anonymous requests an hour.
    pub anonymous_limit: u64,
    /// GraphQL points an hour.
    pub graphql_limit: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tls: None,
            rate_limit: 5000,
            anonymous_limit: 60,
            graphql_limit: 5000,
        }
    }
}

/// What the fake served (since the start or [`FakeGithub::reset_counters`]).
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub total: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub not_modified: u64,
    /// Rate-limit units consumed per bucket: a user's login,
    /// `installation:{id}`, `anonymous`, `app`; GraphQL ones are
    /// `graphql:{owner}`.
    pub units: BTreeMap<String, u64>,
    /// Units left per bucket (filled in by [`FakeGithub::served`]).
    pub remaining: BTreeMap<String, u64>,
    /// Requests per endpoint class: `repo`, `pulls`, `pull`, `pull-commits`,
    /// `pull-files`, `reviews`, `review-comments`, `issues`, `issue`,
    /// `issue-comments`, `labels`, `commit`, `status`, `statuses`,
    /// `check-runs`, `check-run`, `check-suites`, `check-suite`,
    /// `workflow-run`, `branch`, `branches`, `ref`, `user`, `rate_limit`,
    /// `graphql`, `access-token`, `write`, `other`.
    pub by_class: BTreeMap<&'static str, u64>,
    pub graphql: u64,
    /// Answers 403 for an exhausted primary limit.
    pub rate_limited: u64,
    /// Answers for a tripped secondary limit.
    pub secondary_limited: u64,
}

#[derive(Default)]
struct Hooks {
    url: Option<String>,
    secret: Vec<u8>,
    seq: u64,
    log: Vec<(String, String, u16)>,
    last: Option<(String, String, Bytes)>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    hooks: Mutex<Hooks>,
    /// Held from a mutation until its webhooks are delivered: keeps the
    /// deliveries in the order of the mutations.
    order: tokio::sync::Mutex<()>,
    client: Client<HttpConnector, Full<Bytes>>,
    tls: bool,
    jwt: String,
}

const HOOK_ID: u64 = 98_765_432;

impl Inner {
    fn sign(&self, body: &[u8]) -> String {
        let secret = self.hooks.lock().unwrap().secret.clone();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
    }

    async fn post(&self, event: &str, id: &str, body: Bytes, signature: Option<String>) -> u16 {
        let Some(url) = self.hooks.lock().unwrap().url.clone() else {
            return 0;
        };
        let mut req = Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/fake")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-github-hook-id", HOOK_ID.to_string())
            .header("x-github-hook-installation-target-type", "repository");
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let req = req.body(Full::new(body)).expect("webhook request");
        match self.client.request(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let _ = res.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }

    async fn deliver(&self, events: Vec<Event>) {
        for e in events {
            let (id, body) = {
                let mut h = self.hooks.lock().unwrap();
                if h.url.is_none() {
                    continue;
                }
                h.seq += 1;
                let id = uuid_like(h.seq, &e.name);
                let body = Bytes::from(e.body.to_string());
                h.last = Some((e.name.clone(), id.clone(), body.clone()));
                (id, body)
            };
            let sig = self.sign(&body);
            let status = self.post(&e.name, &id, body, Some(sig)).await;
            self.hooks.lock().unwrap().log.push((e.name, id, status));
        }
    }
}

fn uuid_like(seq: u64, salt: &str) -> String {
    let h = model::sha256_hex(&[b"delivery", &seq.to_be_bytes(), salt.as_bytes()]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A running fake GitHub; stops when dropped.
pub struct FakeGithub {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl FakeGithub {
    pub async fn start(options: Options) -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake github");
        let addr = listener.local_addr().expect("local addr");
        let tls = options.tls.is_some();
        let base = format!("{}://{addr}", if tls { "https" } else { "http" });
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1_700_000_000, |d| d.as_secs());
        let mut st = State::new(base, options.rate_limit, start);
        st.anon_limit = options.anonymous_limit;
        st.graphql_limit = options.graphql_limit;
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let jwt = format!(
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiI0MjQyNDIifQ.{}",
            &model::sha256_hex(&[b"jwt", &n.to_be_bytes(), &start.to_be_bytes()])[..43]
        );
        let inner = Arc::new(Inner {
            state: Mutex::new(st),
            hooks: Mutex::default(),
            order: tokio::sync::Mutex::new(()),
            client: Client::builder(TokioExecutor::new()).build_http(),
            tls,
            jwt,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(
            listener,
            options.tls.map(tokio_rustls::TlsAcceptor::from),
            inner.clone(),
            stopped,
        ));
        FakeGithub {
            addr,
            inner,
            _stop: stop,
        }
    }

    /// The API root (`http://127.0.0.1:port`, or `https://` with TLS).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.inner.tls { "https" } else { "http" },
            self.addr
        )
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap()
    }

    /// Runs a mutation and delivers its webhooks; panics on a refusal.
    async fn run<R>(&self, f: impl FnOnce(&mut State) -> Result<(R, Vec<Event>), Fail>) -> R {
        let _order = self.inner.order.lock().await;
        let (r, events) = {
            let mut st = self.st();
            f(&mut st).unwrap_or_else(|(s, m)| panic!("fake github refused: {s} {m}"))
        };
        self.inner.deliver(events).await;
        r
    }

    fn rid(&self, repo: &str) -> u64 {
        self.st()
            .rid(repo)
            .unwrap_or_else(|_| panic!("no repository {repo}"))
    }

    fn owner(&self, repo: &str) -> (u64, String) {
        let st = self.st();
        let rid = st
            .rid(repo)
            .unwrap_or_else(|_| panic!("no repository {repo}"));
        (rid, st.repo(rid).owner.clone())
    }

    pub fn served(&self) -> Served {
        let mut st = self.st();
        let keys: Vec<String> = st.buckets.keys().cloned().collect();
        let mut s = st.served.clone();
        for k in keys {
            let b = st.bucket(&k).clone();
            s.remaining.insert(k, b.limit.saturating_sub(b.used));
        }
        s
    }

    /// Zeroes the counters (the rate-limit buckets stay as they are).
    pub fn reset_counters(&self) {
        self.st().served = Served::default();
    }

    /// The fake's clock (epoch seconds; +1 per mutation).
    pub fn now(&self) -> u64 {
        self.st().clock
    }

    /// Moves the clock on: rate-limit windows reset, secondary limits and
    /// installation tokens expire.
    pub fn advance_clock(&self, secs: u64) {
        self.st().clock += secs;
    }

    // ---- repositories, users, installations ----

    /// A repository with a `main` branch holding one commit; returns its id.
    pub fn add_repo(&self, owner: &str, name: &str, private: bool) -> u64 {
        self.st().add_repo(owner, name, private)
    }

    pub async fn add_member(&self, repo: &str, user: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| Ok(((), st.member(rid, user, true, &owner))))
            .await
    }

    pub async fn remove_member(&self, repo: &str, user: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| Ok(((), st.member(rid, user, false, &owner))))
            .await
    }

    /// `team` `added_to_repository`; its members can see the repository.
    pub async fn add_team(&self, repo: &str, team: &str, members: &[&str]) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| Ok(((), st.team(rid, team, members, true, &owner))))
            .await
    }

    /// `team` `removed_from_repository`; its members lose access.
    pub async fn remove_team(&self, repo: &str, team: &str, members: &[&str]) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| Ok(((), st.team(rid, team, members, false, &owner))))
            .await
    }

    /// `repository` `privatized` / `publicized`.
    pub async fn set_private(&self, repo: &str, private: bool) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.set_private(rid, private, &owner)).await;
    }

    /// `repository` `renamed`; the old name answers 301.
    pub async fn rename_repo(&self, repo: &str, new_name: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.rename(rid, new_name, &owner)).await;
    }

    /// `repository` `deleted`; the repository answers 404 from now on.
    pub async fn delete_repo(&self, repo: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| Ok(((), st.delete_repo(rid, &owner)))).await
    }

    /// A user and a new personal token (`ghp_…`) for them; the user has a
    /// core bucket of its own. Calling it again gives another token.
    pub fn add_user(&self, login: &str) -> String {
        let mut st = self.st();
        let t = st.token("ghp");
        st.tokens.insert(
            t.clone(),
            TokenRec {
                ident: Ident::User(login.to_owned()),
                repos: None,
                expires: None,
            },
        );
        t
    }

    /// An installation of the fake app on `repos` (full names; empty: all
    /// repositories) with `permissions` (`{"pull_requests":"write",…}`).
    /// Sends no webhook (see [`FakeGithub::add_installation_repos`]).
    pub fn add_installation(&self, id: u64, repos: &[&str], permissions: Value) {
        let mut st = self.st();
        let set = (!repos.is_empty()).then(|| {
            repos
                .iter()
                .map(|r| st.rid(r).unwrap_or_else(|_| panic!("no repository {r}")))
                .collect()
        });
        let account = repos
            .first()
            .and_then(|r| r.split('/').next())
            .unwrap_or("fake-org")
            .to_owned();
        st.installations.insert(
            id,
            Installation {
                account,
                repos: set,
                permissions,
            },
        );
    }

    /// `installation_repositories` `added`.
    pub async fn add_installation_repos(&self, id: u64, repos: &[&str]) {
        let rids: Vec<u64> = repos.iter().map(|r| self.rid(r)).collect();
        self.run(|st| Ok(((), st.installation_repos(id, &rids, true, "fake-org-admin"))))
            .await
    }

    /// `installation_repositories` `removed`.
    pub async fn remove_installation_repos(&self, id: u64, repos: &[&str]) {
        let rids: Vec<u64> = repos.iter().map(|r| self.rid(r)).collect();
        self.run(|st| {
            Ok((
                (),
                st.installation_repos(id, &rids, false, "fake-org-admin"),
            ))
        })
        .await
    }

    /// `installation` `deleted`; its tokens answer 401 from now on.
    pub async fn remove_installation(&self, id: u64) {
        self.run(|st| Ok(((), st.remove_installation(id, "fake-org-admin"))))
            .await
    }

    /// The app's JWT, for `POST /app/installations/{id}/access_tokens`.
    pub fn app_jwt(&self) -> String {
        self.inner.jwt.clone()
    }

    /// An installation token (`ghs_…`, valid one hour of the fake's clock)
    /// covering everything the installation covers.
    pub fn mint_installation_token(&self, id: u64) -> String {
        let mut st = self.st();
        assert!(st.installations.contains_key(&id), "no installation {id}");
        let t = st.token("ghs");
        let expires = Some(st.clock + 3600);
        st.tokens.insert(
            t.clone(),
            TokenRec {
                ident: Ident::Installation(id),
                repos: None,
                expires,
            },
        );
        t
    }

    /// The core bucket a token draws from (`None`: unknown token).
    pub fn bucket_of(&self, token: &str) -> Option<String> {
        if token.is_empty() {
            return Some("anonymous".into());
        }
        self.st().tokens.get(token).map(|t| t.ident.bucket())
    }

    /// Leaves `n` units in `bucket` (e.g. `alice`, `installation:7`,
    /// `graphql:alice`, `anonymous`).
    pub fn set_remaining(&self, bucket: &str, n: u64) {
        let mut st = self.st();
        let b = st.bucket(bucket);
        b.used = b.limit.saturating_sub(n);
    }

    pub fn remaining(&self, bucket: &str) -> u64 {
        let mut st = self.st();
        let b = st.bucket(bucket);
        b.limit.saturating_sub(b.used)
    }

    /// Until [`FakeGithub::clear_secondary_limit`] or `retry_after_secs` of
    /// the fake's clock, every request answers 403 with `Retry-After`.
    pub fn trip_secondary_limit(&self, retry_after_secs: u64) {
        self.trip_secondary_limit_with_status(retry_after_secs, 403);
    }

    /// As [`FakeGithub::trip_secondary_limit`], answering `status` (403 or 429).
    pub fn trip_secondary_limit_with_status(&self, retry_after_secs: u64, status: u16) {
        let mut st = self.st();
        let until = st.clock + retry_after_secs;
        st.secondary = Some((until, status, retry_after_secs));
    }

    pub fn clear_secondary_limit(&self) {
        self.st().secondary = None;
    }

    /// From now on every mutation's new state is served only after `n`
    /// further reads of each affected object (0: at once).
    pub fn set_visibility_lag(&self, n: u32) {
        self.st().lag_global = n;
    }

    /// Only the next mutation lags by `n` reads.
    pub fn lag_next_mutation(&self, n: u32) {
        self.st().lag_next = Some(n);
    }

    // ---- pulls, issues, commits ----

    /// Opens a pull from `head_ref` (created with one commit on top of
    /// `base_ref` if missing, without webhooks) into `base_ref`:
    /// `pull_request` `opened`.
    pub async fn open_pull(&self, repo: &str, head_ref: &str, base_ref: &str, title: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.open(rid, title, "", Some((head_ref, base_ref)), &owner))
            .await
    }

    /// `issues` `opened`.
    pub async fn open_issue(&self, repo: &str, title: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.open(rid, title, "", None, &owner)).await
    }

    /// A new commit on `branch` (created from the default branch if missing:
    /// `create` first): `push`, then `pull_request` `synchronize` for each
    /// open pull with that head. Returns the new sha.
    pub async fn push(&self, repo: &str, branch: &str) -> String {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.push(rid, branch, &owner)).await
    }

    /// `pull_request_review` `submitted`; `state` is `APPROVED`,
    /// `CHANGES_REQUESTED` or `COMMENTED` (or the REST `event` spelling).
    pub async fn review(&self, repo: &str, n: u64, state: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        let v = self.run(|st| st.review(rid, n, state, "", &owner)).await;
        v["id"].as_u64().unwrap_or(0)
    }

    /// `issue_comment` `created`; returns the comment id.
    pub async fn comment(&self, repo: &str, n: u64, body: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        let v = self.run(|st| st.comment(rid, n, body, &owner)).await;
        v["id"].as_u64().unwrap_or(0)
    }

    /// `pull_request` (or `issues`) `labeled`.
    pub async fn add_label(&self, repo: &str, n: u64, label: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.label(rid, n, &[label.to_owned()], true, &owner))
            .await;
    }

    /// `pull_request` (or `issues`) `unlabeled`.
    pub async fn remove_label(&self, repo: &str, n: u64, label: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.label(rid, n, &[label.to_owned()], false, &owner))
            .await;
    }

    /// `pull_request` (or `issues`) `edited` with `changes.title.from`.
    pub async fn edit_title(&self, repo: &str, n: u64, title: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.edit(rid, n, Some(title.to_owned()), None, None, &owner))
            .await;
    }

    /// `closed` without merging.
    pub async fn close(&self, repo: &str, n: u64) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.edit(rid, n, None, None, Some(false), &owner))
            .await;
    }

    pub async fn reopen(&self, repo: &str, n: u64) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.edit(rid, n, None, None, Some(true), &owner))
            .await;
    }

    /// Merges with a merge commit: `pull_request` `closed` (merged), then
    /// `push` to the base. Returns the merge commit's sha.
    pub async fn merge(&self, repo: &str, n: u64) -> String {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.merge(rid, n, &owner)).await
    }

    /// A commit status on `sha` (or a ref): `status`. Returns its id.
    pub async fn set_status(&self, repo: &str, sha: &str, context: &str, state: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        let v = self
            .run(|st| st.set_status(rid, sha, context, state, &owner))
            .await;
        v["id"].as_u64().unwrap_or(0)
    }

    /// A check run of the fake app on `sha` (its check suite is created on
    /// the first run): `check_run` `created`, and `check_suite` `completed`
    /// when this completes the suite. Returns its id.
    pub async fn check_run(
        &self,
        repo: &str,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) -> u64 {
        let (rid, _) = self.owner(repo);
        let v = self
            .run(|st| st.create_check_run(rid, sha, name, status, conclusion, model::APP_LOGIN))
            .await;
        v["id"].as_u64().unwrap_or(0)
    }

    /// Moves a check run on; only completing it sends webhooks (as GitHub).
    pub async fn update_check_run(
        &self,
        repo: &str,
        id: u64,
        status: &str,
        conclusion: Option<&str>,
    ) {
        let (rid, _) = self.owner(repo);
        self.run(|st| st.update_check_run(rid, id, Some(status), conclusion, model::APP_LOGIN))
            .await;
    }

    /// The check suite of the fake app on `sha` (`None`: no check run yet).
    pub fn check_suite(&self, repo: &str, sha: &str) -> Option<u64> {
        let st = self.st();
        let rid = st.rid(repo).ok()?;
        let full = st.repo(rid).resolve(sha)?;
        st.repo(rid)
            .check_suites
            .values()
            .find(|s| s.head_sha == full)
            .map(|s| s.id)
    }

    /// A workflow run (with its own check suite) on `head_sha`:
    /// `workflow_run` `requested`/`in_progress`/`completed`. Returns its id.
    pub async fn workflow_run(&self, repo: &str, head_sha: &str, status: &str) -> u64 {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.workflow_run(rid, None, head_sha, status, None, &owner))
            .await
    }

    pub async fn update_workflow_run(
        &self,
        repo: &str,
        id: u64,
        status: &str,
        conclusion: Option<&str>,
    ) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.workflow_run(rid, Some(id), "", status, conclusion, &owner))
            .await;
    }

    /// `create` then `push` (`created`). Returns the branch's sha.
    pub async fn create_branch(&self, repo: &str, name: &str, from: &str) -> String {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.create_ref(rid, false, name, from, &owner))
            .await
    }

    /// `delete` then `push` (`deleted`).
    pub async fn delete_branch(&self, repo: &str, name: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.delete_ref(rid, false, name, &owner)).await
    }

    pub async fn create_tag(&self, repo: &str, name: &str, from: &str) -> String {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.create_ref(rid, true, name, from, &owner))
            .await
    }

    pub async fn delete_tag(&self, repo: &str, name: &str) {
        let (rid, owner) = self.owner(repo);
        self.run(|st| st.delete_ref(rid, true, name, &owner)).await
    }

    /// The head sha of pull `n`.
    pub fn head_sha(&self, repo: &str, n: u64) -> String {
        let st = self.st();
        let rid = st.rid(repo).expect("repo");
        st.repo(rid).issues[&n]
            .pull
            .as_ref()
            .expect("a pull")
            .head_sha
            .clone()
    }

    /// The sha `branch` points at.
    pub fn branch_sha(&self, repo: &str, branch: &str) -> Option<String> {
        let st = self.st();
        let rid = st.rid(repo).ok()?;
        st.repo(rid).branches.get(branch).cloned()
    }

    /// `updated_at` of issue or pull `n` (RFC 3339).
    pub fn updated_at(&self, repo: &str, n: u64) -> String {
        let st = self.st();
        let rid = st.rid(repo).expect("repo");
        model::rfc3339(st.repo(rid).issues[&n].updated_at)
    }

    // ---- webhooks ----

    /// Where webhooks are POSTed (`None`: nowhere) and their HMAC secret.
    pub fn set_webhook(&self, url: Option<&str>, secret: &[u8]) {
        let mut h = self.inner.hooks.lock().unwrap();
        h.url = url.map(str::to_owned);
        h.secret = secret.to_vec();
    }

    /// `sha256=<hex HMAC-SHA256(secret, body)>`, as `X-Hub-Signature-256`.
    pub fn sign(&self, body: &[u8]) -> String {
        self.inner.sign(body)
    }

    /// `ping` with `zen` and `hook_id`.
    pub async fn ping(&self) {
        let _order = self.inner.order.lock().await;
        let body = serde_json::json!({
            "zen": "Design for failure.",
            "hook_id": HOOK_ID,
            "hook": {"type": "Repository", "id": HOOK_ID, "name": "web", "active": true,
                "events": ["*"], "config": {"content_type": "json", "insecure_ssl": "0"}},
        });
        self.inner
            .deliver(vec![Event {
                name: "ping".into(),
                body,
            }])
            .await;
    }

    /// Every delivery so far: (event, delivery id, status the sink answered;
    /// 0 when unreachable).
    pub fn deliveries(&self) -> Vec<(String, String, u16)> {
        self.inner.hooks.lock().unwrap().log.clone()
    }

    /// Sends the last delivery again, same id and body (as GitHub's
    /// "Redeliver"); returns the sink's status.
    pub async fn redeliver_last(&self) -> u16 {
        let last = self.inner.hooks.lock().unwrap().last.clone();
        let Some((event, id, body)) = last else {
            return 0;
        };
        let sig = self.inner.sign(&body);
        let status = self.inner.post(&event, &id, body, Some(sig)).await;
        self.inner
            .hooks
            .lock()
            .unwrap()
            .log
            .push((event, id, status));
        status
    }

    /// Posts `body` as event `event` with `signature` as the
    /// `X-Hub-Signature-256` header (`None`: no header; see
    /// [`FakeGithub::sign`] for a good one). Not recorded as a delivery.
    pub async fn send_raw_webhook(&self, event: &str, body: &str, signature: Option<&str>) -> u16 {
        let id = {
            let mut h = self.inner.hooks.lock().unwrap();
            h.seq += 1;
            uuid_like(h.seq, event)
        };
        self.inner
            .post(
                event,
                &id,
                Bytes::from(body.to_owned()),
                signature.map(str::to_owned),
            )
            .await
    }
}
