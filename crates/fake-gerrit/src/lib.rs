//! A fake Gerrit that behaves like the real one where a cache can tell:
//!
//! - JSON bodies start with the `)]}'` XSSI guard;
//! - `/a/...` requires credentials; ETags of change endpoints are per user
//!   and `If-None-Match` gives 304;
//! - every update of a change gives it a new `meta_rev_id`;
//! - `GET /changes/?q=` understands `topic:`, `message:`, `change:`,
//!   `project:`, `branch:`, `status:`/`is:` terms joined by AND, pages with
//!   `n`/`start` and marks `_more_changes`;
//! - every mutation posts its stream-events JSON to the event sink (and
//!   waits for the answer) after the change is updated, as Gerrit does;
//!   with several sinks, in turn (each event to every URL of the next
//!   group), as a benchmark of several nodes needs.
//!
//! It counts the requests it serves, so tests and benchmarks can assert
//! how many reached the upstream.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    Merged,
    Abandoned,
}

impl Status {
    fn as_str(&self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Merged => "MERGED",
            Status::Abandoned => "ABANDONED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Change {
    pub number: u64,
    pub project: String,
    pub branch: String,
    pub topic: Option<String>,
    pub subject: String,
    pub message: String,
    pub status: Status,
    pub patch_set: u64,
    /// Bumped on every update; `meta_rev_id` derives from it.
    pub meta_seq: u64,
    /// The change this one is stacked on (related changes).
    pub parent: Option<u64>,
    pub wip: bool,
    pub private: bool,
    pub votes: i64,
}

impl Change {
    pub fn change_id(&self) -> String {
        format!("I{}", hex40(&("change-id", self.number)))
    }
    pub fn meta_rev_id(&self) -> String {
        hex40(&("meta", self.number, self.meta_seq))
    }
    pub fn revision(&self) -> String {
        hex40(&("rev", self.number, self.patch_set))
    }
    fn info(&self) -> Value {
        json!({
            "id": format!("{}~{}~{}", self.project, self.branch, self.change_id()),
            "project": self.project,
            "branch": self.branch,
            "topic": self.topic,
            "change_id": self.change_id(),
            "subject": self.subject,
            "status": self.status.as_str(),
            "_number": self.number,
            "current_revision": self.revision(),
            "meta_rev_id": self.meta_rev_id(),
            "work_in_progress": self.wip,
            "is_private": self.private,
            "labels": {"Code-Review": {"value": self.votes}},
        })
    }
    fn event_attrs(&self, with_message: bool) -> Value {
        let mut v = json!({
            "project": self.project,
            "branch": self.branch,
            "id": self.change_id(),
            "number": self.number,
            "subject": self.subject,
            "status": self.status.as_str(),
            "url": format!("http://gerrit/c/{}/+/{}", self.project, self.number),
        });
        if let Some(t) = &self.topic {
            v["topic"] = json!(t);
        }
        if with_message {
            v["commitMessage"] = json!(self.message);
        }
        v
    }
}

fn hex40(h: &impl Hash) -> String {
    let mut out = String::with_capacity(40);
    let mut salt = 0u64;
    while out.len() < 40 {
        let mut s = DefaultHasher::new();
        (h, salt).hash(&mut s);
        out.push_str(&format!("{:016x}", s.finish()));
        salt += 1;
    }
    out.truncate(40);
    out
}

/// What the fake served.
#[derive(Clone, Debug, Default)]
pub struct Served {
    pub total: u64,
    pub not_modified: u64,
    pub by_class: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct State {
    changes: BTreeMap<u64, Change>,
    next: u64,
    config_rev: HashMap<String, u64>,
    served: Served,
}

pub struct FakeGerrit {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Groups of sink URLs, and how many events were sent.
    sinks: Mutex<(Vec<Vec<String>>, usize)>,
    client: Client<HttpConnector, Full<Bytes>>,
    clock: AtomicU64,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A new change's content.
#[derive(Clone, Debug, Default)]
pub struct NewChange {
    pub project: String,
    pub branch: String,
    pub topic: Option<String>,
    pub subject: String,
    /// Change-Ids this change's commit message names in `Depends-On:` footers.
    pub depends_on: Vec<String>,
    pub parent: Option<u64>,
}

fn message_for(subject: &str, depends_on: &[String], change_id: &str) -> String {
    let mut m = format!("{subject}\n\n");
    for d in depends_on {
        m.push_str(&format!("Depends-On: {d}\n"));
    }
    m.push_str(&format!("Change-Id: {change_id}\n"));
    m
}

impl FakeGerrit {
    pub async fn start() -> FakeGerrit {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake gerrit");
        let addr = listener.local_addr().expect("local addr");
        let state: Arc<Mutex<State>> = Arc::default();
        state.lock().unwrap().next = 1;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeGerrit {
            addr,
            state,
            sinks: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            clock: AtomicU64::new(1_700_000_000),
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where events are POSTed (revcache's `/events/<route>`); `None` keeps them.
    pub fn set_event_sink(&self, url: Option<String>) {
        self.set_event_sinks(url.into_iter().map(|u| vec![u]).collect());
    }

    /// Several sinks: each event goes to every URL of one group, the
    /// groups taken in turn (no groups keeps the events).
    pub fn set_event_sinks(&self, groups: Vec<Vec<String>>) {
        *self.sinks.lock().unwrap() = (groups, 0);
    }

    /// The URLs of the next event.
    fn next_sinks(&self) -> Vec<String> {
        let mut sinks = self.sinks.lock().unwrap();
        let (groups, sent) = &mut *sinks;
        if groups.is_empty() {
            return Vec::new();
        }
        *sent += 1;
        groups[(*sent - 1) % groups.len()].clone()
    }

    pub fn served(&self) -> Served {
        self.state.lock().unwrap().served.clone()
    }

    pub fn change(&self, n: u64) -> Option<Change> {
        self.state.lock().unwrap().changes.get(&n).cloned()
    }

    pub fn changes(&self) -> Vec<Change> {
        self.state
            .lock()
            .unwrap()
            .changes
            .values()
            .cloned()
            .collect()
    }

    /// The current `meta_rev_id` of every change.
    pub fn versions(&self) -> HashMap<u64, String> {
        self.state
            .lock()
            .unwrap()
            .changes
            .values()
            .map(|c| (c.number, c.meta_rev_id()))
            .collect()
    }

    /// How many updates into its life change `n` was when it had `meta`
    /// (`None`: not a version of `n`). Orders versions for staleness checks.
    pub fn meta_seq_of(&self, n: u64, meta: &str) -> Option<u64> {
        let current = self.state.lock().unwrap().changes.get(&n)?.meta_seq;
        (1..=current).find(|seq| hex40(&("meta", n, *seq)) == meta)
    }

    /// The changes a query matches now, as the REST endpoint would list them.
    pub fn query_now(&self, q: &str) -> Vec<(u64, String)> {
        let state = self.state.lock().unwrap();
        matching(&state, q)
            .iter()
            .map(|c| (c.number, c.meta_rev_id()))
            .collect()
    }

    async fn emit(&self, event: Value) {
        let urls = self.next_sinks();
        if urls.is_empty() {
            return;
        }
        let mut event = event;
        event["eventCreatedOn"] = json!(self.clock.fetch_add(1, Ordering::Relaxed));
        for url in urls {
            self.post_event(url, &event).await;
        }
    }

    async fn post_event(&self, url: String, event: &Value) {
        let req = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .expect("event request");
        match self.client.request(req).await {
            Ok(res) => {
                let status = res.status();
                let _ = res.into_body().collect().await;
                assert!(
                    status.is_success(),
                    "event sink answered {status} for {event}"
                );
            }
            Err(e) => panic!("event sink unreachable: {e}"),
        }
    }

    fn update<R>(&self, n: u64, f: impl FnOnce(&mut Change) -> R) -> (Change, R) {
        let mut state = self.state.lock().unwrap();
        let c = state.changes.get_mut(&n).expect("no such change");
        let r = f(c);
        c.meta_seq += 1;
        (c.clone(), r)
    }

    /// Parent commits of a change's current patch set: its parent change's
    /// current revision, or the branch tip.
    fn parents(&self, c: &Change) -> Vec<String> {
        let state = self.state.lock().unwrap();
        match c.parent.and_then(|p| state.changes.get(&p)) {
            Some(p) => vec![p.revision()],
            None => vec![hex40(&("branch-tip", &c.project, &c.branch))],
        }
    }

    pub async fn create_change(&self, spec: NewChange) -> u64 {
        let change = {
            let mut state = self.state.lock().unwrap();
            let number = state.next;
            state.next += 1;
            let mut c = Change {
                number,
                project: spec.project.clone(),
                branch: if spec.branch.is_empty() {
                    "main".into()
                } else {
                    spec.branch.clone()
                },
                topic: spec.topic.clone(),
                subject: spec.subject.clone(),
                message: String::new(),
                status: Status::New,
                patch_set: 1,
                meta_seq: 1,
                parent: spec.parent,
                wip: false,
                private: false,
                votes: 0,
            };
            c.message = message_for(&spec.subject, &spec.depends_on, &c.change_id());
            state.changes.insert(number, c.clone());
            c
        };
        let parents = self.parents(&change);
        self.emit(json!({
            "type": "patchset-created",
            "change": change.event_attrs(true),
            "patchSet": {"number": 1, "revision": change.revision(), "parents": parents, "ref": format!("refs/changes/{:02}/{}/1", change.number % 100, change.number)},
        }))
        .await;
        change.number
    }

    /// A new patch set; `depends_on` replaces the message's footers.
    /// `with_message` says whether the event carries the commit message.
    pub async fn new_patchset(&self, n: u64, depends_on: &[String], with_message: bool) {
        let (c, ()) = self.update(n, |c| {
            c.patch_set += 1;
            c.message = message_for(&c.subject, depends_on, &c.change_id());
        });
        let parents = self.parents(&c);
        self.emit(json!({
            "type": "patchset-created",
            "change": c.event_attrs(with_message),
            "patchSet": {"number": c.patch_set, "revision": c.revision(), "parents": parents},
        }))
        .await;
    }

    pub async fn comment(&self, n: u64, vote: i64) {
        let (c, ()) = self.update(n, |c| c.votes = vote);
        self.emit(json!({"type": "comment-added", "change": c.event_attrs(false), "approvals": [{"type": "Code-Review", "value": vote.to_string()}]}))
            .await;
    }

    pub async fn set_topic(&self, n: u64, topic: Option<&str>) {
        let (c, old) = self.update(n, |c| {
            std::mem::replace(&mut c.topic, topic.map(str::to_owned))
        });
        let mut e = json!({"type": "topic-changed", "change": c.event_attrs(false)});
        if let Some(old) = old {
            e["oldTopic"] = json!(old);
        }
        self.emit(e).await;
    }

    pub async fn merge(&self, n: u64) {
        let (c, ()) = self.update(n, |c| c.status = Status::Merged);
        self.emit(json!({"type": "change-merged", "change": c.event_attrs(false)}))
            .await;
    }

    pub async fn abandon(&self, n: u64) {
        let (c, ()) = self.update(n, |c| c.status = Status::Abandoned);
        self.emit(json!({"type": "change-abandoned", "change": c.event_attrs(false)}))
            .await;
    }

    pub async fn restore(&self, n: u64) {
        let (c, ()) = self.update(n, |c| c.status = Status::New);
        self.emit(json!({"type": "change-restored", "change": c.event_attrs(false)}))
            .await;
    }

    pub async fn set_wip(&self, n: u64, wip: bool) {
        let (c, ()) = self.update(n, |c| c.wip = wip);
        self.emit(json!({"type": "wip-state-changed", "change": c.event_attrs(false)}))
            .await;
    }

    pub async fn set_private(&self, n: u64, private: bool) {
        let (c, ()) = self.update(n, |c| c.private = private);
        self.emit(json!({"type": "private-state-changed", "change": c.event_attrs(false)}))
            .await;
    }

    pub async fn delete(&self, n: u64) {
        let c = self
            .state
            .lock()
            .unwrap()
            .changes
            .remove(&n)
            .expect("no such change");
        self.emit(json!({"type": "change-deleted", "change": c.event_attrs(false)}))
            .await;
    }

    /// A `refs/meta/config` update: every ETag of the project changes.
    pub async fn update_project_config(&self, project: &str) {
        *self
            .state
            .lock()
            .unwrap()
            .config_rev
            .entry(project.to_owned())
            .or_default() += 1;
        self.emit(json!({"type": "ref-updated", "refUpdate": {"project": project, "refName": "refs/meta/config", "oldRev": "0", "newRev": "1"}}))
            .await;
    }

    pub async fn dropped_output(&self) {
        self.emit(json!({"type": "dropped-output"})).await;
    }

    /// Posts `raw` to the sink as it is (for malformed-event tests).
    pub async fn emit_raw(&self, raw: &str) -> u16 {
        let url = self.next_sinks().pop().expect("no event sink");
        let req = Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(raw.to_owned())))
            .expect("request");
        let res = self
            .client
            .request(req)
            .await
            .expect("event sink unreachable");
        res.status().as_u16()
    }
}

fn xssi(v: &Value) -> Bytes {
    Bytes::from(format!(")]}}'\n{v}\n"))
}

fn reply(status: StatusCode, body: Bytes, etag: Option<String>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        "content-type",
        "application/json; charset=UTF-8".parse().expect("header"),
    );
    // What Gerrit sends on REST responses: nothing a cache may store by RFC.
    h.insert(
        "cache-control",
        "no-cache, no-store, max-age=0, must-revalidate"
            .parse()
            .expect("header"),
    );
    if let Some(e) = etag {
        h.insert("etag", format!("\"{e}\"").parse().expect("header"));
    }
    res
}

fn not_found(what: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!("Not found: {what}\n"))));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let authed = path.starts_with("/a/");
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if authed && user.is_none() {
        let mut res = Response::new(Full::new(Bytes::from("Unauthorized")));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return res;
    }
    let user = if authed {
        user.unwrap_or_default()
    } else {
        "anonymous".into()
    };
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    let rest = path.strip_prefix("/a").filter(|_| authed).unwrap_or(&path);
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let mut state = state.lock().unwrap();
    state.served.total += 1;
    let class = match segments.as_slice() {
        ["changes", ""] | ["changes"] => "query",
        ["changes", _] | ["changes", _, "detail"] => "change",
        ["changes", _, "revisions", _, "related"] => "related",
        ["changes", _, "revisions", _, "files"] => "files",
        _ => "other",
    };
    *state.served.by_class.entry(class).or_default() += 1;
    match segments.as_slice() {
        ["changes", ""] | ["changes"] => serve_query(&state, &query),
        ["changes", id, tail @ ..] => {
            let id = id.replace("%2F", "/").replace("%7E", "~");
            let Some(c) = find(&state, &id) else {
                return not_found(&id);
            };
            let config = state.config_rev.get(&c.project).copied().unwrap_or(0);
            match tail {
                [] | ["detail"] => {
                    let etag = hex40(&(&user, c.meta_rev_id(), config));
                    if inm.as_deref() == Some(etag.as_str()) {
                        state.served.not_modified += 1;
                        return reply(StatusCode::NOT_MODIFIED, Bytes::new(), Some(etag));
                    }
                    reply(StatusCode::OK, xssi(&c.info()), Some(etag))
                }
                ["revisions", _, "related"] => {
                    let chain = related(&state, c.number);
                    reply(StatusCode::OK, xssi(&json!({ "changes": chain })), None)
                }
                ["revisions", rev, "files"] => reply(
                    StatusCode::OK,
                    xssi(&json!({"README.md": {"lines_inserted": c.patch_set, "revision": rev}})),
                    None,
                ),
                _ => not_found(&path),
            }
        }
        _ => not_found(&path),
    }
}

fn find<'a>(state: &'a State, id: &str) -> Option<&'a Change> {
    let last = id.rsplit('~').next().unwrap_or(id);
    if let Ok(n) = last.parse::<u64>() {
        return state.changes.get(&n);
    }
    state.changes.values().find(|c| c.change_id() == last)
}

fn related(state: &State, n: u64) -> Vec<Value> {
    // The whole stack: ancestors and descendants of `n`.
    let mut root = n;
    while let Some(p) = state.changes.get(&root).and_then(|c| c.parent) {
        root = p;
    }
    let mut chain = vec![root];
    let mut i = 0;
    while i < chain.len() {
        let cur = chain[i];
        chain.extend(
            state
                .changes
                .values()
                .filter(|c| c.parent == Some(cur))
                .map(|c| c.number),
        );
        i += 1;
    }
    if chain.len() < 2 {
        return Vec::new();
    }
    chain
        .iter()
        .filter_map(|n| state.changes.get(n))
        .map(|c| {
            json!({
                "change_id": c.change_id(),
                "commit": {"commit": c.revision()},
                "_change_number": c.number,
                "_revision_number": c.patch_set,
                "_current_revision_number": c.patch_set,
                "status": c.status.as_str(),
            })
        })
        .collect()
}

fn param<'a>(query: &'a str, name: &str) -> Vec<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

/// A query parameter value: `+` is a space, bad escapes stay as they are.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn matching<'a>(state: &'a State, q: &str) -> Vec<&'a Change> {
    let terms: Vec<(String, String)> = q
        .split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
        .filter_map(|t| t.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_owned()))
        .collect();
    let mut out: Vec<&Change> = state
        .changes
        .values()
        .filter(|c| {
            terms.iter().all(|(k, v)| match k.as_str() {
                "topic" => c.topic.as_deref() == Some(v.as_str()),
                "message" => c.message.contains(v.as_str()),
                "change" => v
                    .parse::<u64>()
                    .map_or(c.change_id() == *v, |n| n == c.number),
                "project" => c.project == *v,
                "branch" => c.branch == *v,
                "status" | "is" => match v.as_str() {
                    "open" | "new" => c.status == Status::New,
                    "merged" => c.status == Status::Merged,
                    "abandoned" => c.status == Status::Abandoned,
                    "closed" => c.status != Status::New,
                    "wip" => c.wip,
                    "private" => c.private,
                    _ => true,
                },
                _ => true,
            })
        })
        .collect();
    // Newest first, like Gerrit's default sort by update time.
    out.sort_by_key(|c| std::cmp::Reverse(c.number));
    out
}

fn serve_query(state: &State, query: &str) -> Response<Full<Bytes>> {
    let Some(q) = param(query, "q").first().map(|q| decode(q)) else {
        return reply(StatusCode::BAD_REQUEST, Bytes::from("missing q"), None);
    };
    let limit: usize = param(query, "n")
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let start: usize = param(query, "start")
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let all = matching(state, &q);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|c| c.info())
        .collect();
    let mut page = page;
    if all.len() > start + limit
        && let Some(last) = page.last_mut()
    {
        last["_more_changes"] = json!(true);
    }
    reply(StatusCode::OK, xssi(&Value::Array(page)), None)
}
