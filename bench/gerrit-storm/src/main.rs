//! bench/gerrit-storm: how many requests reach Gerrit when CI schedulers
//! react to change events, direct and through revcache.
//!
//! For each scenario and configuration (direct; revcache without events,
//! i.e. ETag revalidation only; revcache with trusted events) it reports
//! client requests, upstream requests (and 304s among them), the minimum any
//! cache could achieve (distinct resource, partition and version the clients
//! asked for; a query result's version is its set of (change, meta_rev_id)),
//! the ratio upstream / minimum, and stale responses (older than the fake
//! Gerrit's state when the request was sent: events are delivered before a
//! mutation returns, so that is the state as of the last delivered event).
//!
//! With `--nodes`, the configurations are instead revcache with trusted
//! events as one node, three independent nodes (each receiving every event)
//! and three nodes sharing one Redis (each event delivered to one node in
//! turn); the client spreads its requests over the nodes round-robin.
//!
//! Usage: revcache-bench-gerrit [--nodes] [a|b|c|d ...]   (default: all)

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_gerrit::{FakeGerrit, NewChange};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use revcache_bench_multi_node::{Nodes, RoundRobin, Topology};
use revcache_http::{DialectName, EventSettings, Settings};
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    Direct,
    NoEvents,
    Trusted,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Direct => "direct to Gerrit",
            Config::NoEvents => "revcache, no events (ETag revalidation)",
            Config::Trusted => "revcache, trusted events",
        }
    }
}

#[derive(Default)]
struct Tally {
    client_requests: u64,
    seen: HashSet<(String, String, String)>,
    stale: u64,
    errors: u64,
}

struct Bench {
    /// Where requests go, in turn: Gerrit, or the revcache nodes.
    bases: RoundRobin<String>,
    gerrit: Arc<FakeGerrit>,
    client: Client<HttpConnector, Empty<Bytes>>,
    tally: Mutex<Tally>,
}

const OPTIONS: &str = "o=DETAILED_ACCOUNTS&o=CURRENT_REVISION&o=CURRENT_COMMIT&o=CURRENT_FILES&o=LABELS&o=DETAILED_LABELS&o=ALL_REVISIONS";

fn auth(user: &str) -> String {
    format!("Basic {user}")
}

fn digest(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn listed(v: &Value) -> Vec<(u64, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["_number"].as_u64()?,
                c["meta_rev_id"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

impl Bench {
    /// One GET as `user`, checked for staleness and recorded for the minimum.
    async fn fetch(&self, user: &str, path: &str, query: Option<&str>) -> Option<Value> {
        let before_versions = self.gerrit.versions();
        let before_query = query.map(|q| self.gerrit.query_now(q));
        let base = self.bases.pick();
        let req = http::Request::get(format!("{base}{path}"))
            .header("authorization", auth(user))
            .body(Empty::new())
            .ok()?;
        let res = self.client.request(req).await;
        let after_query = query.map(|q| self.gerrit.query_now(q));
        {
            let mut tally = self.tally.lock().unwrap();
            tally.client_requests += 1;
            if res.is_err() {
                tally.errors += 1;
            }
        }
        let res = res.ok()?;
        let status = res.status();
        let cache_status = res
            .headers()
            .get("cache-status")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = res.into_body().collect().await.ok()?.to_bytes();
        let mut tally = self.tally.lock().unwrap();
        if !status.is_success() {
            tally.errors += 1;
            return None;
        }
        let json: Value =
            serde_json::from_slice(body.strip_prefix(b")]}'").unwrap_or(&body)).ok()?;
        let mut stale = false;
        let version = if let (Some(q), Some(start), Some(end)) = (query, before_query, after_query)
        {
            let got = listed(&json);
            let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
            let same =
                |set: &[(u64, String)]| set.iter().map(|(n, _)| *n).collect::<Vec<_>>() == numbers;
            let older = got.iter().any(|(n, meta)| {
                let have = self.gerrit.meta_seq_of(*n, meta);
                let want = before_versions
                    .get(n)
                    .and_then(|m| self.gerrit.meta_seq_of(*n, m));
                matches!((have, want), (Some(h), Some(w)) if h < w)
            });
            if older || !(same(&start) || same(&end)) {
                tally.stale += 1;
                stale = true;
            }
            let _ = q;
            got.iter()
                .map(|(n, m)| format!("{n}:{m}"))
                .collect::<Vec<_>>()
                .join(",")
        } else if let Some(meta) = json.get("meta_rev_id").and_then(Value::as_str) {
            let n = json["_number"].as_u64().unwrap_or(0);
            let have = self.gerrit.meta_seq_of(n, meta);
            let want = before_versions
                .get(&n)
                .and_then(|m| self.gerrit.meta_seq_of(n, m));
            if matches!((have, want), (Some(h), Some(w)) if h < w) {
                tally.stale += 1;
                stale = true;
            }
            meta.to_owned()
        } else {
            digest(&body)
        };
        if stale && tally.stale <= 5 {
            eprintln!("stale: {base}{path} as {user}, cache-status {cache_status:?}");
        }
        tally
            .seen
            .insert((path.to_owned(), user.to_owned(), version));
        Some(json)
    }

    /// What a gating scheduler asks for one change (see the Gerrit reference).
    async fn handle_change(&self, user: &str, n: u64, with_topic_query: bool) {
        let Some(info) = self
            .fetch(user, &format!("/a/changes/{n}?{OPTIONS}"), None)
            .await
        else {
            return;
        };
        let rev = info["current_revision"].as_str().unwrap_or("").to_owned();
        let cid = info["change_id"].as_str().unwrap_or("").to_owned();
        self.fetch(
            user,
            &format!("/a/changes/{n}/revisions/{rev}/related"),
            None,
        )
        .await;
        self.fetch(
            user,
            &format!("/a/changes/{n}/revisions/{rev}/files?parent=1"),
            None,
        )
        .await;
        let q = format!("message:{cid}");
        self.fetch(user, &format!("/a/changes/?q={q}&n=500"), Some(&q))
            .await;
        if with_topic_query && let Some(topic) = info["topic"].as_str() {
            self.topic_query(user, topic).await;
        }
    }

    async fn topic_query(&self, user: &str, topic: &str) -> Vec<u64> {
        let q = format!("status:open topic:\"{topic}\"");
        let path = format!("/a/changes/?q=status:open+topic:%22{topic}%22");
        self.fetch(user, &path, Some(&q))
            .await
            .map(|v| listed(&v).into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default()
    }
}

fn new_change(project: &str, topic: Option<&str>, parent: Option<u64>) -> NewChange {
    NewChange {
        project: project.into(),
        branch: "main".into(),
        topic: topic.map(Into::into),
        subject: "change".into(),
        depends_on: Vec::new(),
        parent,
    }
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn scenario(name: &str, b: &Bench) {
    let g = &b.gerrit;
    match name {
        // 100 uploads into one topic; on each event the scheduler re-queries
        // every change of the topic.
        "a" => {
            for _ in 0..100 {
                g.create_change(new_change("nova", Some("storm"), None))
                    .await;
                for n in b.topic_query("zuul", "storm").await {
                    b.handle_change("zuul", n, false).await;
                }
            }
        }
        // The same uploads; the scheduler queries each event's change once.
        "b" => {
            for _ in 0..100 {
                let n = g
                    .create_change(new_change("nova", Some("storm"), None))
                    .await;
                b.handle_change("zuul", n, true).await;
            }
        }
        // A stack of 10 changes uploaded, then approved at once.
        "c" => {
            let mut parent = None;
            let mut stack = Vec::new();
            for _ in 0..10 {
                let n = g
                    .create_change(new_change("nova", Some("stack"), parent))
                    .await;
                b.handle_change("zuul", n, true).await;
                parent = Some(n);
                stack.push(n);
            }
            for &n in &stack {
                g.comment(n, 2).await;
            }
            for &n in &stack {
                b.handle_change("zuul", n, true).await;
            }
        }
        // Steady state: 1,000 open changes in 10 projects; random votes,
        // topic moves and new patch sets; two schedulers and a dashboard
        // share one revcache.
        "d" => {
            let mut changes = Vec::new();
            for i in 0..1000u64 {
                let project = format!("p{}", i % 10);
                let topic = format!("t{}", i % 50);
                changes.push(
                    g.create_change(new_change(&project, Some(&topic), None))
                        .await,
                );
            }
            let mut rng = Rng(0x9e37_79b9);
            for _ in 0..300 {
                let n = changes[rng.below(changes.len() as u64) as usize];
                match rng.below(100) {
                    0..70 => g.comment(n, rng.below(5) as i64 - 2).await,
                    70..85 => {
                        let topic = format!("t{}", rng.below(50));
                        g.set_topic(n, Some(&topic)).await
                    }
                    _ => g.new_patchset(n, &[], true).await,
                }
                let project = g.change(n).map(|c| c.project).unwrap_or_default();
                let q = format!("project:{project} status:open");
                let dash = format!("/a/changes/?q=project:{project}+status:open");
                tokio::join!(
                    b.handle_change("zuul-check", n, true),
                    b.handle_change("zuul-gate", n, true),
                    async { b.fetch("dashboard", &dash, Some(&q)).await },
                );
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

struct Row {
    client_requests: u64,
    upstream: u64,
    not_modified: u64,
    minimum: u64,
    stale: u64,
    errors: u64,
    seconds: f64,
}

async fn run(name: &str, config: Config, topology: Topology) -> Row {
    let gerrit = Arc::new(FakeGerrit::start().await);
    let mut nodes = None;
    let bases = if config == Config::Direct {
        vec![gerrit.url()]
    } else {
        let mut s = Settings::for_upstream(gerrit.url().parse().expect("url"));
        s.cache.memory_limit = 512 << 20;
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        if config == Config::Trusted {
            s.routes[0].events = Some(EventSettings {
                trust: Some(Duration::from_secs(600)),
                heartbeat: None,
                command: None,
                secret_file: None,
            });
        }
        let started = Nodes::start(&s, topology, &format!("gerrit-{name}-{config:?}")).await;
        if config == Config::Trusted {
            gerrit.set_event_sinks(started.event_groups("/events/gerrit"));
        }
        nodes.insert(started).proxies().to_vec()
    };
    let bench = Bench {
        bases: RoundRobin::new(bases),
        gerrit: gerrit.clone(),
        client: Client::builder(TokioExecutor::new()).build_http(),
        tally: Mutex::default(),
    };
    let started = Instant::now();
    scenario(name, &bench).await;
    let seconds = started.elapsed().as_secs_f64();
    let served = gerrit.served();
    let tally = bench.tally.into_inner().unwrap();
    drop(nodes);
    Row {
        client_requests: tally.client_requests,
        upstream: served.total,
        not_modified: served.not_modified,
        minimum: tally.seen.len() as u64,
        stale: tally.stale,
        errors: tally.errors,
        seconds,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let by_nodes = args.iter().any(|a| a == "--nodes");
    args.retain(|a| a != "--nodes");
    let configs: Vec<(Config, Topology)> = if by_nodes {
        Topology::COMPARED
            .into_iter()
            .map(|t| (Config::Trusted, t))
            .collect()
    } else {
        [Config::Direct, Config::NoEvents, Config::Trusted]
            .into_iter()
            .map(|c| (c, Topology::One))
            .collect()
    };
    let scenarios: Vec<&str> = if args.is_empty() {
        vec!["a", "b", "c", "d"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let titles: HashMap<&str, &str> = [
        (
            "a",
            "(a) 100 uploads into one topic, scheduler re-queries the whole topic per event",
        ),
        (
            "b",
            "(b) 100 uploads into one topic, scheduler queries each event's change once",
        ),
        (
            "c",
            "(c) a stack of 10 changes uploaded, then approved at once",
        ),
        (
            "d",
            "(d) steady state: 1,000 open changes, 300 random events, 2 schedulers + dashboard",
        ),
    ]
    .into_iter()
    .collect();
    println!(
        "| scenario | configuration | client requests | upstream (304s) | minimum | upstream / minimum | stale | errors | s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for name in scenarios {
        for &(config, topology) in &configs {
            let r = run(name, config, topology).await;
            let config_name = if by_nodes {
                format!("{}, {}", config.name(), topology.name())
            } else {
                config.name().to_owned()
            };
            println!(
                "| {} | {} | {} | {} ({}) | {} | {:.2} | {} | {} | {:.1} |",
                titles.get(name).copied().unwrap_or(name),
                config_name,
                r.client_requests,
                r.upstream,
                r.not_modified,
                r.minimum,
                r.upstream as f64 / r.minimum.max(1) as f64,
                r.stale,
                r.errors,
                r.seconds
            );
        }
    }
}
