//! bench/github-fleet: how many requests (and rate-limit units) a CI fleet
//! polling GitHub costs, direct and through revcache.
//!
//! A replay of a CI fleet against the fake GitHub (`fake_github`): 200 jobs
//! across 20 pull requests of one private repository, each job reading, once
//! per polling interval, the pull, its commits, and the combined status and
//! check runs of its head commit, with installation tokens of one GitHub App
//! installation (a second token replaces the first midway, as hourly tokens
//! do). Between intervals pushes, reviews, commit statuses and check runs
//! arrive as signed webhooks (delivered before the mutation returns).
//! Time is simulated: one round is one polling interval; within a round the
//! 200 jobs run with at most 64 in flight, and nothing changes upstream.
//!
//! Side by side: direct to GitHub; revcache revalidating every hit with its
//! ETag (`trust = None`, the incumbent proxy's behaviour); revcache trusting
//! the webhooks. For each: client requests, upstream requests (304s among
//! them), rate-limit units consumed (all buckets), stale responses, errors,
//! and the minimum any cache could achieve: the distinct (path,
//! representation) pairs the clients were shown, counted once per
//! installation (the partition its tokens can share), plus the two
//! token-minting requests. A representation is the body without the
//! repository summaries GitHub embeds (`head.repo`, `base.repo`,
//! `repository`: their `pushed_at` moves with a push to any branch).
//!
//! A response is stale when it differs from the fake's state as of the last
//! delivered event (the state at the start of its round): the pull's
//! `head.sha` and `updated_at`, the commit count and head of its commits,
//! the combined status's `state` and `total_count`, the check runs'
//! `total_count`, all tracked from the mutations the bench made.
//!
//! Prints a markdown table, checks the targets (PASS/FAIL each) and
//! exits 1 when one fails.
//!
//! Usage: revcache-bench-github [ROUNDS]   (default 30)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_github::{FakeGithub, Options};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use revcache_http::{DialectName, EventSettings, Server, Settings};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const OWNER: &str = "octo";
const NAME: &str = "fleet";
const REPO: &str = "octo/fleet";
const INSTALLATION: u64 = 7;
const PULLS: usize = 20;
const JOBS: usize = 200;
const IN_FLIGHT: usize = 64;
const SECRET: &[u8] = b"fleet webhook secret";
/// Mutations between two polling rounds.
const PUSHES: usize = 1;
const REVIEWS: usize = 1;
const STATUSES: usize = 2;
const CHECK_RUNS: usize = 2;
/// Installation tokens minted (each one request upstream in every mode).
const MINTS: u64 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Direct,
    Revalidate,
    Trusted,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct to GitHub",
            Mode::Revalidate => "revcache, revalidating every hit (ETag)",
            Mode::Trusted => "revcache, trusted webhooks",
        }
    }
}

/// One GET of a job, with what it is about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Pull,
    Commits,
    Status,
    CheckRuns,
}

/// The fake's state as of the last delivered event, tracked from the
/// mutations the bench made (nothing changes during a round).
#[derive(Clone, Default)]
struct Expected {
    head: HashMap<u64, String>,
    updated_at: HashMap<u64, String>,
    commits: HashMap<u64, usize>,
    /// sha → context → state.
    statuses: HashMap<String, BTreeMap<String, String>>,
    check_runs: HashMap<String, u64>,
    /// The repository's `pushed_at` after the last push (unknown before).
    pushed_at: Option<String>,
}

impl Expected {
    /// GitHub's combined state and count of contexts for `sha`.
    fn combined(&self, sha: &str) -> (&'static str, usize) {
        let Some(latest) = self.statuses.get(sha) else {
            return ("pending", 0);
        };
        let state = if latest.values().any(|s| s == "error" || s == "failure") {
            "failure"
        } else if latest.is_empty() || latest.values().any(|s| s == "pending") {
            "pending"
        } else {
            "success"
        };
        (state, latest.len())
    }

    /// Why `json` (for `kind` about pull `n` / commit `sha`) is not the
    /// current state; `None` when it is.
    fn mismatch(&self, kind: Kind, n: u64, sha: &str, json: &Value) -> Option<String> {
        let head = self.head.get(&n).map(String::as_str).unwrap_or("");
        match kind {
            Kind::Pull => {
                let got_sha = json.pointer("/head/sha").and_then(Value::as_str);
                let got_upd = json.get("updated_at").and_then(Value::as_str);
                let want_upd = self.updated_at.get(&n).map(String::as_str);
                (got_sha != Some(head) || got_upd != want_upd).then(|| {
                    format!(
                        "pull {n}: head {got_sha:?} updated_at {got_upd:?}, want {head} {want_upd:?}"
                    )
                })
            }
            Kind::Commits => {
                let list = json.as_array().map(Vec::as_slice).unwrap_or_default();
                let want = self.commits.get(&n).copied().unwrap_or(0);
                // Oldest first, as GitHub lists them.
                let newest = list
                    .last()
                    .and_then(|c| c.get("sha"))
                    .and_then(Value::as_str);
                (list.len() != want || newest != Some(head)).then(|| {
                    format!(
                        "pull {n} commits: {} newest {newest:?}, want {want} newest {head}",
                        list.len()
                    )
                })
            }
            Kind::Status => {
                let (state, count) = self.combined(sha);
                let got_state = json.get("state").and_then(Value::as_str);
                let got_count = json.get("total_count").and_then(Value::as_u64);
                (got_state != Some(state) || got_count != Some(count as u64)).then(|| {
                    format!("status of {sha}: {got_state:?}/{got_count:?}, want {state}/{count}")
                })
            }
            Kind::CheckRuns => {
                let want = self.check_runs.get(sha).copied().unwrap_or(0);
                let got = json.get("total_count").and_then(Value::as_u64);
                (got != Some(want)).then(|| format!("check runs of {sha}: {got:?}, want {want}"))
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    client_requests: u64,
    errors: u64,
    error_examples: Vec<String>,
    stale: u64,
    stale_examples: Vec<String>,
    /// (path, representation): the minimum, one partition per installation.
    seen: HashSet<(String, u64)>,
    /// (path, token, representation): what a per-token cache could achieve.
    seen_per_token: HashSet<(String, usize, u64)>,
    /// Cache-Status values (without `ttl=`).
    cache_status: BTreeMap<String, u64>,
    /// Representations revcache fetched with a 200 (one partition).
    fetched: HashSet<(String, u64)>,
    /// 200s revcache fetched upstream, by endpoint and whether the
    /// representation was new (true) or one it had fetched before.
    fetches: BTreeMap<(Kind, bool), u64>,
    /// Responses whose embedded repository summary is older than the
    /// repository's (not stale by the definition above; reported).
    summary_behind: u64,
}

struct Bench {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    expected: Mutex<Arc<Expected>>,
    /// The fleet's current token and its index.
    token: Mutex<(usize, String)>,
    tally: Mutex<Tally>,
}

fn digest(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// `revcache; fwd=miss; fwd-status=200; stored; ttl=60` without the ttl.
fn normalize(cache_status: &str) -> String {
    cache_status
        .split(';')
        .map(str::trim)
        .filter(|p| !p.starts_with("ttl="))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Bench {
    /// One GET of the fleet, checked for staleness and recorded.
    async fn get(&self, kind: Kind, n: u64, sha: &str, path: String) -> Option<Value> {
        let expected = self.expected.lock().unwrap().clone();
        let (token_index, token) = self.token.lock().unwrap().clone();
        let req = http::Request::get(format!("{}{path}", self.base))
            .header("authorization", format!("token {token}"))
            .header("accept", "application/vnd.github+json")
            .body(Empty::new())
            .ok()?;
        let res = self.client.request(req).await;
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                let mut t = self.tally.lock().unwrap();
                t.client_requests += 1;
                t.errors += 1;
                if t.error_examples.len() < 5 {
                    t.error_examples.push(format!("{path}: {e}"));
                }
                return None;
            }
        };
        let status = res.status();
        let cache_status = res
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .map(normalize);
        let body = res.into_body().collect().await.ok().map(|b| b.to_bytes());
        let mut t = self.tally.lock().unwrap();
        t.client_requests += 1;
        if let Some(cs) = &cache_status {
            *t.cache_status.entry(cs.clone()).or_default() += 1;
        }
        let json = body
            .as_ref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        let (true, Some(json)) = (status == http::StatusCode::OK, json) else {
            t.errors += 1;
            if t.error_examples.len() < 5 {
                t.error_examples.push(format!("{path}: {status}"));
            }
            return None;
        };
        if let Some(why) = expected.mismatch(kind, n, sha, &json) {
            t.stale += 1;
            if t.stale_examples.len() < 5 {
                t.stale_examples
                    .push(format!("{why} (Cache-Status: {cache_status:?})"));
            }
        }
        // The representation: the body without the embedded repository
        // summaries.
        let mut stripped = json.clone();
        let summaries: &[&str] = match kind {
            Kind::Pull => &["/head", "/base"],
            Kind::Status => &[""],
            _ => &[],
        };
        for at in summaries {
            let key = if at.is_empty() { "repository" } else { "repo" };
            if let Some(obj) = stripped.pointer_mut(at).and_then(Value::as_object_mut)
                && let Some(summary) = obj.remove(key)
                && let Some(want) = &expected.pushed_at
                && summary.get("pushed_at").and_then(Value::as_str) != Some(want)
            {
                t.summary_behind += 1;
            }
        }
        let version = digest(&stripped.to_string());
        t.seen.insert((path.clone(), version));
        t.seen_per_token
            .insert((path.clone(), token_index, version));
        if let Some(cs) = &cache_status
            && cs.contains("fwd-status=200")
            && !cs.contains("collapsed")
        {
            let new = t.fetched.insert((path, version));
            *t.fetches.entry((kind, new)).or_default() += 1;
        }
        drop(t);
        Some(json)
    }

    /// What one CI job reads per polling interval.
    async fn job(&self, n: u64) {
        let Some(pull) = self
            .get(Kind::Pull, n, "", format!("/repos/{REPO}/pulls/{n}"))
            .await
        else {
            return;
        };
        let sha = pull
            .pointer("/head/sha")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.get(
            Kind::Commits,
            n,
            &sha,
            format!("/repos/{REPO}/pulls/{n}/commits"),
        )
        .await;
        self.get(
            Kind::Status,
            n,
            &sha,
            format!("/repos/{REPO}/commits/{sha}/status"),
        )
        .await;
        self.get(
            Kind::CheckRuns,
            n,
            &sha,
            format!("/repos/{REPO}/commits/{sha}/check-runs"),
        )
        .await;
    }

    /// Mints an installation token through `base` with the app's JWT.
    async fn mint(&self, jwt: &str) -> String {
        let req = http::Request::post(format!(
            "{}/app/installations/{INSTALLATION}/access_tokens",
            self.base
        ))
        .header("authorization", format!("Bearer {jwt}"))
        .header("accept", "application/vnd.github+json")
        .body(Empty::new())
        .expect("request");
        let res = self.client.request(req).await.expect("mint");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).expect("json");
        v["token"].as_str().expect("token").to_owned()
    }
}

/// One polling interval: every job once, at most `IN_FLIGHT` at a time.
async fn round(bench: &Arc<Bench>, pulls: &[u64]) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut jobs = JoinSet::new();
    for j in 0..JOBS {
        let slot = slots.clone().acquire_owned().await.expect("semaphore");
        let bench = bench.clone();
        let n = pulls[j % pulls.len()];
        jobs.spawn(async move {
            bench.job(n).await;
            drop(slot);
        });
    }
    while jobs.join_next().await.is_some() {}
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn branch(i: usize) -> String {
    format!("ci/feature-{i}")
}

/// What happens between two polling rounds; webhooks are delivered before
/// each call returns.
async fn mutate(gh: &FakeGithub, pulls: &[u64], rng: &mut Rng, exp: &mut Expected) {
    for _ in 0..PUSHES {
        let i = rng.below(pulls.len());
        let n = pulls[i];
        let sha = gh.push(REPO, &branch(i)).await;
        exp.head.insert(n, sha);
        *exp.commits.entry(n).or_default() += 1;
        exp.pushed_at = Some(gh.updated_at(REPO, n));
    }
    for _ in 0..REVIEWS {
        let n = pulls[rng.below(pulls.len())];
        let state = ["APPROVED", "COMMENTED", "CHANGES_REQUESTED"][rng.below(3)];
        gh.review(REPO, n, state).await;
    }
    for _ in 0..STATUSES {
        let n = pulls[rng.below(pulls.len())];
        let sha = exp.head[&n].clone();
        let context = ["ci/build", "ci/test", "ci/lint"][rng.below(3)];
        let state = ["pending", "success", "success", "failure"][rng.below(4)];
        gh.set_status(REPO, &sha, context, state).await;
        exp.statuses
            .entry(sha)
            .or_default()
            .insert(context.into(), state.into());
    }
    for _ in 0..CHECK_RUNS {
        let n = pulls[rng.below(pulls.len())];
        let sha = exp.head[&n].clone();
        let name = ["build", "test", "lint"][rng.below(3)];
        let conclusion = ["success", "success", "failure"][rng.below(3)];
        gh.check_run(REPO, &sha, name, "completed", Some(conclusion))
            .await;
        *exp.check_runs.entry(sha).or_default() += 1;
    }
    for &n in pulls {
        exp.updated_at.insert(n, gh.updated_at(REPO, n));
        assert_eq!(exp.head[&n], gh.head_sha(REPO, n), "tracking pull {n}");
    }
}

struct Row {
    mode: Mode,
    client_requests: u64,
    upstream: u64,
    not_modified: u64,
    units: u64,
    minimum: u64,
    minimum_per_token: u64,
    stale: u64,
    errors: u64,
    seconds: f64,
    tally: Tally,
    by_status: BTreeMap<u16, u64>,
    units_by_bucket: BTreeMap<String, u64>,
}

async fn run(mode: Mode, rounds: usize) -> Row {
    let gh = FakeGithub::start(Options {
        tls: None,
        // High enough that the direct fleet is never limited (GitHub's
        // installations get 5,000-15,000 an hour).
        rate_limit: 10_000_000,
        ..Options::default()
    })
    .await;
    gh.add_repo(OWNER, NAME, true);
    gh.add_installation(
        INSTALLATION,
        &[REPO],
        serde_json::json!({"pull_requests": "read", "statuses": "read", "checks": "read", "contents": "read"}),
    );
    let scratch = std::env::temp_dir().join(format!(
        "revcache-github-fleet-{}-{mode:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("temp dir");
    let mut stop = None;
    let base = if mode == Mode::Direct {
        gh.url()
    } else {
        let secret_file = scratch.join("webhook.secret");
        std::fs::write(&secret_file, SECRET).expect("secret file");
        let mut s = Settings::for_upstream(gh.url().parse().expect("url"));
        s.listen = "127.0.0.1:0".parse().expect("addr");
        s.admin_listen = "127.0.0.1:0".parse().expect("addr");
        s.data_dir = scratch.join("data");
        s.cache.memory_limit = 512 << 20;
        s.routes[0].name = "github".into();
        s.routes[0].dialect = DialectName::Github;
        s.routes[0].events = Some(EventSettings {
            trust: (mode == Mode::Trusted).then_some(Duration::from_secs(3600)),
            heartbeat: None,
            command: None,
            secret_file: Some(secret_file),
        });
        let server = Server::bind(s).await.expect("revcache starts");
        let (addr, admin) = (server.local_addr(), server.admin_addr());
        gh.set_webhook(Some(&format!("http://{admin}/events/github")), SECRET);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        stop = Some(tx);
        format!("http://{addr}")
    };
    let mut pulls = Vec::new();
    let mut exp = Expected::default();
    for i in 0..PULLS {
        let n = gh
            .open_pull(REPO, &branch(i), "main", &format!("Feature {i}"))
            .await;
        pulls.push(n);
        exp.head.insert(n, gh.head_sha(REPO, n));
        exp.updated_at.insert(n, gh.updated_at(REPO, n));
        exp.commits.insert(n, 1);
    }
    gh.reset_counters();
    let bench = Arc::new(Bench {
        base,
        client: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IN_FLIGHT)
            .build_http(),
        expected: Mutex::default(),
        token: Mutex::default(),
        tally: Mutex::default(),
    });
    let jwt = gh.app_jwt();
    *bench.token.lock().unwrap() = (0, bench.mint(&jwt).await);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    for r in 0..rounds {
        if r == rounds / 2 {
            // Token rotation: the fleet moves to a freshly minted token.
            *bench.token.lock().unwrap() = (1, bench.mint(&jwt).await);
        }
        *bench.expected.lock().unwrap() = Arc::new(exp.clone());
        round(&bench, &pulls).await;
        if r + 1 < rounds {
            mutate(&gh, &pulls, &mut rng, &mut exp).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let served = gh.served();
    drop(stop);
    let _ = std::fs::remove_dir_all(&scratch);
    let tally = Arc::try_unwrap(bench)
        .ok()
        .expect("jobs done")
        .tally
        .into_inner()
        .unwrap();
    let undelivered = gh
        .deliveries()
        .iter()
        .filter(|(_, _, status)| *status != 200)
        .count() as u64;
    Row {
        mode,
        client_requests: tally.client_requests,
        upstream: served.total,
        not_modified: served.not_modified,
        units: served.units.values().sum(),
        minimum: tally.seen.len() as u64 + MINTS,
        minimum_per_token: tally.seen_per_token.len() as u64 + MINTS,
        stale: tally.stale,
        errors: tally.errors + if mode == Mode::Direct { 0 } else { undelivered },
        seconds,
        by_status: served.by_status.clone(),
        units_by_bucket: served.units.clone(),
        tally,
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(30);
    println!(
        "{JOBS} jobs, {PULLS} pull requests, {rounds} polling rounds, {IN_FLIGHT} in flight; \
         between rounds {PUSHES} push, {REVIEWS} review, {STATUSES} statuses, {CHECK_RUNS} check runs; \
         token rotated before round {}\n",
        rounds / 2 + 1
    );
    let mut rows = Vec::new();
    for mode in [Mode::Direct, Mode::Revalidate, Mode::Trusted] {
        rows.push(run(mode, rounds).await);
    }
    println!(
        "| mode | client requests | upstream requests | 304s | rate-limit units | stale | errors | minimum | upstream / minimum | s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} |",
            r.mode.name(),
            thousands(r.client_requests),
            thousands(r.upstream),
            thousands(r.not_modified),
            thousands(r.units),
            r.stale,
            r.errors,
            thousands(r.minimum),
            r.upstream as f64 / r.minimum.max(1) as f64,
            r.seconds
        );
    }
    println!();
    for r in &rows {
        println!(
            "{}: minimum per token {} (one partition per token); upstream statuses {:?}; units {:?}; \
             responses with an older embedded repository summary {}",
            r.mode.name(),
            thousands(r.minimum_per_token),
            r.by_status,
            r.units_by_bucket,
            thousands(r.tally.summary_behind)
        );
        for (cs, count) in &r.tally.cache_status {
            println!("    Cache-Status `{cs}`: {count}");
        }
        for ((kind, new), count) in &r.tally.fetches {
            println!(
                "    fetched with 200: {kind:?}, {}: {count}",
                if *new {
                    "new representation"
                } else {
                    "representation fetched before"
                }
            );
        }
        for s in &r.tally.stale_examples {
            println!("    stale: {s}");
        }
        for e in &r.tally.error_examples {
            println!("    error: {e}");
        }
    }
    let [_, revalidate, trusted] = &rows[..] else {
        unreachable!()
    };
    let ratio = revalidate.upstream as f64 / trusted.upstream.max(1) as f64;
    println!(
        "\nrevalidate-every-hit / trusted upstream requests: {ratio:.1}×; rate-limit units {} / {}\n",
        thousands(revalidate.units),
        thousands(trusted.units)
    );
    let checks = [
        (
            format!(
                "trusted upstream requests ≤ 1.1 × minimum ({} ≤ {:.1})",
                trusted.upstream,
                1.1 * trusted.minimum as f64
            ),
            trusted.upstream as f64 <= 1.1 * trusted.minimum as f64,
        ),
        (
            format!("≥ 20× fewer upstream requests than revalidating every hit ({ratio:.1}×)"),
            ratio >= 20.0,
        ),
        (
            format!(
                "trusted rate-limit units ≤ revalidating mode's ({} ≤ {})",
                trusted.units, revalidate.units
            ),
            trusted.units <= revalidate.units,
        ),
        (
            format!(
                "0 stale responses in every mode ({})",
                rows.iter()
                    .map(|r| r.stale.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            rows.iter().all(|r| r.stale == 0),
        ),
        (
            format!(
                "0 errors in every mode ({})",
                rows.iter()
                    .map(|r| r.errors.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            rows.iter().all(|r| r.errors == 0),
        ),
    ];
    let mut failed = false;
    for (what, ok) in &checks {
        println!("{}: {what}", if *ok { "PASS" } else { "FAIL" });
        failed |= !ok;
    }
    if failed {
        std::process::exit(1);
    }
}
