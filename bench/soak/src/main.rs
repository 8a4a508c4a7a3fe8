//! bench/soak: mixed traffic with key churn against a `revcache serve`
//! child process for a long time (an hour by default), its resident memory
//! and open files sampled every second.
//!
//! The child runs on its embedded tiers with small budgets (64 MiB of
//! memory, a 512 MiB disk tier swept every 30 s, 256 connections), so an
//! hour of churn fills and evicts both many times over. Two routes:
//!
//! - `web` (http dialect) on a local origin. 65 % of all requests ask for
//!   a key never asked before (`/o/N`, N counting up; 200 B to 4.4 KB, one
//!   in 50 of 40 KiB), 10 % for a recent one (mostly hits), 10 % for a
//!   recent one with a caller's credentials (a `private` answer: one
//!   partition per caller), and the rest write (`PUT`, invalidating through revcache) and read their
//!   write back. Every second an admin purge (by URL or by prefix) runs.
//! - `gerrit` (gerrit dialect, trusted events) on `fake-gerrit`: callers
//!   read changes and queries while Gerrit changes all the time (new
//!   patch sets, votes, merges, new changes), its events POSTed to
//!   revcache's `/events/gerrit`.
//!
//! Every answer is checked: a body is the one of its key (and, when
//! private, of its caller), a read after a write sees the write, and a
//! change is never older than Gerrit's state when it was asked for.
//!
//! Usage: revcache-bench-soak REVCACHE_BINARY SECONDS OUT_DIR
//!
//! Writes OUT_DIR/samples.csv (one row a second: seconds, RSS KiB, open
//! files, requests, distinct keys, errors, and the data dir's allocated
//! KiB, measured every 10 s) and OUT_DIR/summary.md; exits non-zero when
//! anything was wrong, RSS or open files grew, or the data dir outgrew its
//! budget (see `verdict`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_gerrit::{FakeGerrit, NewChange};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

const MEMORY_LIMIT_MIB: u64 = 64;
const DISK_LIMIT_MIB: u64 = 512;
const MAX_CONNECTIONS: u64 = 256;
const CLIENTS: usize = 24;
const CALLERS: u64 = 200;
const GERRIT_USERS: u64 = 20;
const PROJECTS: [&str; 5] = ["nova", "neutron", "cinder", "glance", "swift"];
/// Open changes Gerrit keeps (older ones are merged as new ones come).
const OPEN_CHANGES: usize = 300;

/// splitmix64, one per client task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    stale: AtomicU64,
    purges: AtomicU64,
    writes: AtomicU64,
    events: AtomicU64,
    gerrit_reads: AtomicU64,
}

impl Tally {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The origin of the `web` route: `/o/N` at its current generation.
#[derive(Default)]
struct Origin {
    generations: Mutex<HashMap<u64, u64>>,
}

fn size_of(id: u64) -> usize {
    if id.is_multiple_of(50) {
        40 << 10
    } else {
        200 + (id.wrapping_mul(7919) % 8) as usize * 600
    }
}

fn stamp(id: u64, generation: u64, caller: Option<&str>) -> String {
    match caller {
        Some(c) => format!("o/{id} g{generation} for {c};"),
        None => format!("o/{id} g{generation};"),
    }
}

fn body_of(id: u64, generation: u64, caller: Option<&str>) -> Bytes {
    let s = stamp(id, generation, caller);
    Bytes::from(s.bytes().cycle().take(size_of(id)).collect::<Vec<u8>>())
}

async fn origin(state: Arc<Origin>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let res = answer(&state, &req);
                    async move { Ok::<_, Infallible>(res) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn answer(
    state: &Origin,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let id: Option<u64> = req
        .uri()
        .path()
        .strip_prefix("/o/")
        .and_then(|s| s.parse().ok());
    let Some(id) = id else {
        return http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .expect("response");
    };
    let mut generations = state.generations.lock().expect("origin state");
    if req.method() == http::Method::PUT {
        let g = generations.entry(id).or_default();
        *g += 1;
        return http::Response::builder()
            .status(204)
            .header("x-generation", g.to_string())
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    let generation = generations.get(&id).copied().unwrap_or(0);
    drop(generations);
    let caller = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cc = if caller.is_some() {
        "private, max-age=600"
    } else {
        "max-age=600"
    };
    http::Response::builder()
        .header("cache-control", cc)
        .header("etag", format!("\"{id}-{generation}\""))
        .body(Full::new(body_of(id, generation, caller)))
        .expect("response")
}

struct Soak {
    base: String,
    admin: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    writer: Client<HttpConnector, Full<Bytes>>,
    gerrit: Arc<FakeGerrit>,
    /// Held while Gerrit changes and delivers the change's events: a
    /// reader's snapshot under it is a state revcache was told of.
    mutating: tokio::sync::RwLock<()>,
    open: Mutex<Vec<u64>>,
    next_key: AtomicU64,
    tally: Tally,
}

impl Soak {
    async fn get(&self, path: &str, auth: Option<&str>) -> Option<(u16, Bytes)> {
        self.tally.count(&self.tally.requests);
        let mut req = http::Request::get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = self.client.request(req.body(Empty::new()).ok()?).await;
        let Ok(res) = res else {
            self.tally.count(&self.tally.errors);
            return None;
        };
        let status = res.status().as_u16();
        let Ok(body) = res.into_body().collect().await else {
            self.tally.count(&self.tally.errors);
            return None;
        };
        Some((status, body.to_bytes()))
    }

    /// Reads `/o/id` (as `caller`) and checks the body is that key's (and
    /// caller's), at `at_least` or a newer generation.
    async fn read_key(&self, id: u64, caller: Option<&str>, at_least: u64) {
        let auth = caller.map(|c| format!("Bearer {c}"));
        let Some((status, body)) = self.get(&format!("/o/{id}"), auth.as_deref()).await else {
            return;
        };
        if status != 200 {
            self.tally.count(&self.tally.errors);
            return;
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(64)]);
        let first = text.split(';').next().unwrap_or("");
        let generation = first
            .strip_prefix(&format!("o/{id} g"))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|g| g.parse::<u64>().ok());
        let Some(generation) = generation else {
            self.tally.count(&self.tally.wrong);
            report(&format!("/o/{id} answered with {first:?}"));
            return;
        };
        if body != body_of(id, generation, caller) {
            self.tally.count(&self.tally.wrong);
            report(&format!("/o/{id} as {caller:?} answered {first:?}"));
        } else if generation < at_least {
            self.tally.count(&self.tally.stale);
            report(&format!(
                "/o/{id}: g{generation} after a write made g{at_least}"
            ));
        }
    }

    /// Writes `/o/id` through revcache, then reads it back.
    async fn write_key(&self, id: u64) {
        self.tally.count(&self.tally.requests);
        let req = http::Request::put(format!("{}/o/{id}", self.base))
            .body(Full::new(Bytes::from_static(b"new")))
            .expect("request");
        let Ok(res) = self.writer.request(req).await else {
            self.tally.count(&self.tally.errors);
            return;
        };
        let generation = res
            .headers()
            .get("x-generation")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let _ = res.into_body().collect().await;
        let Some(generation) = generation else {
            self.tally.count(&self.tally.errors);
            return;
        };
        self.tally.count(&self.tally.writes);
        self.read_key(id, None, generation).await;
    }

    async fn purge(&self, query: &str) {
        let req = http::Request::post(format!("{}/purge?{query}", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("request");
        match self.writer.request(req).await {
            Ok(res) if res.status() == 200 => {
                let _ = res.into_body().collect().await;
                self.tally.count(&self.tally.purges);
            }
            _ => self.tally.count(&self.tally.errors),
        }
    }

    /// Reads a change as a Gerrit user; never older than the last state
    /// whose events were delivered before it was asked for.
    async fn read_change(&self, user: u64, n: u64) {
        let before = {
            let _delivered = self.mutating.read().await;
            self.gerrit.change(n).map(|c| c.meta_rev_id())
        };
        let path = format!("/a/changes/{n}?o=CURRENT_REVISION&o=LABELS");
        let Some((status, body)) = self.get(&path, Some(&format!("Basic user{user}"))).await else {
            return;
        };
        self.tally.count(&self.tally.gerrit_reads);
        if status == 404 {
            return;
        }
        if status != 200 {
            self.tally.count(&self.tally.errors);
            return;
        }
        let json: Option<Value> =
            serde_json::from_slice(body.strip_prefix(b")]}'").unwrap_or(&body)).ok();
        let got = json
            .as_ref()
            .and_then(|j| j["meta_rev_id"].as_str())
            .map(str::to_owned);
        let number = json.as_ref().and_then(|j| j["_number"].as_u64());
        if number != Some(n) {
            self.tally.count(&self.tally.wrong);
            report(&format!("change {n} answered as {number:?}"));
            return;
        }
        let (Some(got), Some(before)) = (got, before) else {
            return;
        };
        let have = self.gerrit.meta_seq_of(n, &got);
        let want = self.gerrit.meta_seq_of(n, &before);
        if matches!((have, want), (Some(h), Some(w)) if h < w) {
            self.tally.count(&self.tally.stale);
            report(&format!("change {n}: an older meta_rev_id than Gerrit had"));
        }
    }

    async fn query(&self, user: u64, project: &str) {
        let path = format!("/a/changes/?q=project:{project}+status:open&n=25");
        match self.get(&path, Some(&format!("Basic user{user}"))).await {
            Some((200, _)) => self.tally.count(&self.tally.gerrit_reads),
            Some(_) => self.tally.count(&self.tally.errors),
            None => {}
        }
    }

    fn recent(&self, rng: &mut Rng) -> u64 {
        let next = self.next_key.load(Ordering::Relaxed);
        next.saturating_sub(1 + rng.below(next.min(20_000)))
    }

    async fn client(self: Arc<Self>, seed: u64, until: Instant) {
        let mut rng = Rng(seed);
        while Instant::now() < until {
            match rng.below(100) {
                0..=64 => {
                    let id = self.next_key.fetch_add(1, Ordering::Relaxed);
                    self.read_key(id, None, 0).await;
                }
                65..=74 => {
                    let id = self.recent(&mut rng);
                    self.read_key(id, None, 0).await;
                }
                75..=84 => {
                    let id = self.recent(&mut rng);
                    let caller = format!("caller{}", rng.below(CALLERS));
                    self.read_key(id, Some(&caller), 0).await;
                }
                85..=87 => {
                    let id = self.recent(&mut rng);
                    self.write_key(id).await;
                }
                88..=96 => {
                    let open = self.open.lock().expect("open changes").clone();
                    if let Some(n) = open.get(rng.below(open.len() as u64) as usize) {
                        self.read_change(1 + rng.below(GERRIT_USERS), *n).await;
                    }
                }
                _ => {
                    let project = PROJECTS[rng.below(PROJECTS.len() as u64) as usize];
                    self.query(1 + rng.below(GERRIT_USERS), project).await;
                }
            }
        }
    }

    /// Gerrit changing all the time: a patch set, a vote, or a new change
    /// (merging the oldest open one) every 50 ms.
    async fn gerrit_activity(self: Arc<Self>, until: Instant) {
        let mut rng = Rng(0xfeed);
        while Instant::now() < until {
            let open = self.open.lock().expect("open changes").clone();
            let mutating = self.mutating.write().await;
            match rng.below(10) {
                0..=3 if !open.is_empty() => {
                    let n = open[rng.below(open.len() as u64) as usize];
                    self.gerrit.new_patchset(n, &[], false).await;
                }
                4..=6 if !open.is_empty() => {
                    let n = open[rng.below(open.len() as u64) as usize];
                    self.gerrit.comment(n, rng.below(3) as i64 - 1).await;
                }
                _ => {
                    let n = self.create_change(&mut rng).await;
                    let oldest = {
                        let mut open = self.open.lock().expect("open changes");
                        open.push(n);
                        (open.len() > OPEN_CHANGES).then(|| open.remove(0))
                    };
                    if let Some(old) = oldest {
                        self.gerrit.merge(old).await;
                    }
                }
            }
            drop(mutating);
            self.tally.count(&self.tally.events);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_change(&self, rng: &mut Rng) -> u64 {
        let project = PROJECTS[rng.below(PROJECTS.len() as u64) as usize];
        self.gerrit
            .create_change(NewChange {
                project: project.into(),
                branch: "main".into(),
                topic: None,
                subject: format!("soak change {}", rng.below(1 << 20)),
                depends_on: Vec::new(),
                parent: None,
            })
            .await
    }

    /// An admin purge every second: a recent URL, or a prefix of keys.
    async fn purges(self: Arc<Self>, until: Instant) {
        let mut rng = Rng(0xbeef);
        while Instant::now() < until {
            if rng.below(2) == 0 {
                let id = self.recent(&mut rng);
                self.purge(&format!("url=/o/{id}")).await;
            } else {
                let id = self.recent(&mut rng) / 100;
                self.purge(&format!("prefix=/o/{id}")).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn report(what: &str) {
    static REPORTED: AtomicU64 = AtomicU64::new(0);
    if REPORTED.fetch_add(1, Ordering::Relaxed) < 20 {
        eprintln!("soak: {what}");
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
}

fn start_revcache(
    binary: &Path,
    out: &Path,
    origin: SocketAddr,
    gerrit: &str,
) -> (Child, SocketAddr, SocketAddr) {
    let (listen, admin) = (free_port(), free_port());
    let data = out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let config = format!(
        r#"listen = "{listen}"
data_dir = "{data}"
log_level = "warn"

[admin]
listen = "{admin}"

[cache]
memory_limit = "{MEMORY_LIMIT_MIB}MiB"

[disk]
limit = "{DISK_LIMIT_MIB}MiB"
sweep_interval = "30s"

[limits]
max_connections = {MAX_CONNECTIONS}

[[routes]]
name = "web"
upstream = "http://{origin}"
path_prefix = "/o"
dialect = "http"

[[routes]]
name = "gerrit"
upstream = "{gerrit}"
path_prefix = "/a"
dialect = "gerrit"
[routes.events]
trust = "5m"
"#,
        data = data.display()
    );
    let config_file = out.join("revcache.toml");
    std::fs::write(&config_file, config).expect("write the config");
    let log = std::fs::File::create(out.join("revcache.log")).expect("create the log");
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start revcache");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "revcache did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, listen, admin)
}

/// RSS (KiB) and open files of `pid`.
fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Bytes the files under `dir` take on disk (allocated blocks, so a
/// sparse file counts what it holds, not its length).
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += allocated_bytes(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// One row a second.
struct Row {
    seconds: u64,
    rss_kib: u64,
    fds: u64,
    disk_kib: u64,
}

/// Flat means: the last quarter's peak RSS is within 10 % of the second
/// quarter's (after warm-up, the caches full), every RSS sample within the
/// budget, open files within `max_connections` plus a margin and not
/// growing between the same quarters, and the data dir within 1.5 times
/// the disk tier's budget (which counts index pages and body files as
/// estimated between sweeps, every 30 s here).
fn verdict(rows: &[Row]) -> (bool, String) {
    let quarter = rows.len() / 4;
    if quarter == 0 {
        return (false, "too short to judge".into());
    }
    let peak = |r: &[Row], f: fn(&Row) -> u64| r.iter().map(f).max().unwrap_or(0);
    let (second, last) = (&rows[quarter..2 * quarter], &rows[rows.len() - quarter..]);
    let rss2 = peak(second, |r| r.rss_kib);
    let rss4 = peak(last, |r| r.rss_kib);
    let fds2 = peak(second, |r| r.fds);
    let fds4 = peak(last, |r| r.fds);
    let rss_max = peak(rows, |r| r.rss_kib);
    let fds_max = peak(rows, |r| r.fds);
    let disk_max = peak(rows, |r| r.disk_kib);
    let disk_budget = (DISK_LIMIT_MIB << 10) * 3 / 2;
    // The memory tier's budget, plus what a process needs besides it
    // (allocator slack, buffers of 256 connections, the index's cache).
    let rss_budget = (MEMORY_LIMIT_MIB * 3 + 128) << 10;
    let fd_budget = MAX_CONNECTIONS + 64;
    let flat = rss4 * 10 <= rss2 * 11
        && rss_max <= rss_budget
        && fds_max <= fd_budget
        && fds4 <= fds2 + 16
        && disk_max <= disk_budget;
    let text = format!(
        "RSS peak: second quarter {} MiB, last quarter {} MiB, overall {} MiB (budget {} MiB); open files peak: second quarter {fds2}, last quarter {fds4}, overall {fds_max} (budget {fd_budget}); data dir allocated peak: second quarter {} MiB, last quarter {} MiB, overall {} MiB (disk.limit {DISK_LIMIT_MIB} MiB, budget {} MiB)",
        rss2 >> 10,
        rss4 >> 10,
        rss_max >> 10,
        rss_budget >> 10,
        peak(second, |r| r.disk_kib) >> 10,
        peak(last, |r| r.disk_kib) >> 10,
        disk_max >> 10,
        disk_budget >> 10
    );
    (flat, text)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, binary, seconds, out] = &args[..] else {
        eprintln!("usage: revcache-bench-soak REVCACHE_BINARY SECONDS OUT_DIR");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse().expect("SECONDS");
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("create OUT_DIR");

    let origin_addr = origin(Arc::default()).await;
    let gerrit = Arc::new(FakeGerrit::start().await);
    let (mut child, listen, admin) =
        start_revcache(Path::new(binary), &out, origin_addr, &gerrit.url());
    gerrit.set_event_sink(Some(format!("http://{admin}/events/gerrit")));
    let soak = Arc::new(Soak {
        base: format!("http://{listen}"),
        admin: format!("http://{admin}"),
        client: Client::builder(TokioExecutor::new()).build_http(),
        writer: Client::builder(TokioExecutor::new()).build_http(),
        gerrit: gerrit.clone(),
        mutating: tokio::sync::RwLock::new(()),
        open: Mutex::new(Vec::new()),
        next_key: AtomicU64::new(0),
        tally: Tally::default(),
    });
    let mut rng = Rng(7);
    for _ in 0..OPEN_CHANGES {
        let n = soak.create_change(&mut rng).await;
        soak.open.lock().expect("open changes").push(n);
    }

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(soak.clone().client(c as u64 + 1, until)));
    }
    tasks.push(tokio::spawn(soak.clone().gerrit_activity(until)));
    tasks.push(tokio::spawn(soak.clone().purges(until)));

    let pid = child.id();
    let mut rows = Vec::new();
    let mut csv = String::from("seconds,rss_kib,fds,requests,distinct_keys,errors,disk_kib\n");
    let data_dir = out.join("data");
    let mut disk_kib = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let seconds = started.elapsed().as_secs();
        if Instant::now() >= until {
            break;
        }
        let Some((rss_kib, fds)) = sample(pid) else {
            eprintln!("soak: revcache is gone");
            break;
        };
        if seconds.is_multiple_of(10) {
            disk_kib = allocated_bytes(&data_dir) >> 10;
        }
        let requests = soak.tally.requests.load(Ordering::Relaxed);
        let _ = writeln!(
            csv,
            "{seconds},{rss_kib},{fds},{requests},{},{},{disk_kib}",
            soak.next_key.load(Ordering::Relaxed),
            soak.tally.errors.load(Ordering::Relaxed)
        );
        rows.push(Row {
            seconds,
            rss_kib,
            fds,
            disk_kib,
        });
        if seconds.is_multiple_of(60) {
            std::fs::write(out.join("samples.csv"), &csv).expect("write samples");
            eprintln!(
                "soak: {seconds} s, {requests} requests, RSS {} MiB, {fds} open files, data dir {} MiB",
                rss_kib >> 10,
                disk_kib >> 10
            );
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    std::fs::write(out.join("samples.csv"), &csv).expect("write samples");
    let alive = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();

    let t = &soak.tally;
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let elapsed = rows.last().map_or(0, |r| r.seconds).max(1);
    let (flat, memory) = verdict(&rows);
    let wrong = n(&t.wrong) + n(&t.stale) + n(&t.errors);
    let summary = format!(
        "{} s, {} requests ({:.0}/s), {} distinct keys, {} gerrit reads, {} writes, {} purges, {} gerrit events; errors {}, wrong bodies {}, stale {}; {memory}; revcache {} at the end; {}\n",
        elapsed,
        n(&t.requests),
        n(&t.requests) as f64 / elapsed as f64,
        soak.next_key.load(Ordering::Relaxed),
        n(&t.gerrit_reads),
        n(&t.writes),
        n(&t.purges),
        n(&t.events),
        n(&t.errors),
        n(&t.wrong),
        n(&t.stale),
        if alive { "running" } else { "NOT running" },
        if flat && wrong == 0 && alive {
            "PASS"
        } else {
            "FAIL"
        },
    );
    print!("{summary}");
    std::fs::write(out.join("summary.md"), &summary).expect("write the summary");
    if !(flat && wrong == 0 && alive) {
        std::process::exit(1);
    }
}
