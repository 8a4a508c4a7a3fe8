//! bench/multi-node, the part the gerrit-storm and webdav-cms benchmarks do
//! not cover: how long a hit on another node's entry (an L3 hit, read from
//! Redis and promoted) takes against a memory hit (L1), and client
//! throughput through three nodes against one.
//!
//! Latency: node 0 fills `KEYS` distinct 1 KiB objects from a local origin;
//! then, per key, the first GET on node 1 (an L3 hit) and the next ones
//! there (L1 hits) are timed from the client (loopback HTTP included).
//!
//! Throughput: `REQUESTS` GETs over `KEYS_THROUGHPUT` keys from `CLIENTS`
//! concurrent clients, spread round-robin over the nodes, twice: from a
//! cold start (every key fetched, shared or not), then again with every
//! node warm; wall time gives requests per second. Everything (client,
//! nodes, Redis, origin) shares one machine, so three nodes get no more
//! CPU than one.
//!
//! Usage: revcache-bench-multi-node

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use revcache_bench_multi_node::{Nodes, RoundRobin, Topology};
use revcache_http::Settings;

const KEYS: usize = 500;
const L1_REPEATS: usize = 3;
const KEYS_THROUGHPUT: usize = 2_000;
const REQUESTS: usize = 100_000;
const CLIENTS: usize = 32;

/// An origin answering every GET with 1 KiB that may be cached for ten
/// minutes; it counts what it serves.
async fn origin() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let served = Arc::new(AtomicU64::new(0));
    let counted = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let etag = format!("\"{}\"", req.uri().path().len());
                    let res = http::Response::builder()
                        .header("cache-control", "max-age=600")
                        .header("etag", etag)
                        .body(Full::new(Bytes::from(vec![b'x'; 1024])))
                        .expect("response");
                    async move { Ok::<_, Infallible>(res) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), served)
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One GET: its `Cache-Status` and how long it took, body read.
async fn get(client: &HttpClient, url: &str) -> (String, Duration) {
    let started = Instant::now();
    let req = http::Request::get(url).body(Empty::new()).expect("request");
    let res = client.request(req).await.expect("node answers");
    let status = res
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = res.into_body().collect().await.expect("body");
    (status, started.elapsed())
}

async fn metric(client: &HttpClient, admin: &str, name: &str) -> f64 {
    let req = http::Request::get(format!("{admin}/metrics"))
        .body(Empty::new())
        .expect("request");
    let res = client.request(req).await.expect("metrics");
    let text = res.into_body().collect().await.expect("metrics").to_bytes();
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

fn is_hit(status: &str) -> bool {
    status.starts_with("revcache; hit")
}

async fn latency() {
    let (upstream, _) = origin().await;
    let settings = Settings::for_upstream(upstream.parse().expect("url"));
    let nodes = Nodes::start(&settings, Topology::Shared(3), "latency").await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (a, b) = (&nodes.proxies()[0], &nodes.proxies()[1]);
    let mut miss = Vec::new();
    for k in 0..KEYS {
        miss.push(get(&client, &format!("{a}/obj/{k}")).await.1);
    }
    // Each fill is shared after it is stored, off the client's path.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut l3, mut l1, mut not_hits) = (Vec::new(), Vec::new(), 0);
    for k in 0..KEYS {
        let url = format!("{b}/obj/{k}");
        let (status, took) = get(&client, &url).await;
        not_hits += usize::from(!is_hit(&status));
        l3.push(took);
        for _ in 0..L1_REPEATS {
            let (status, took) = get(&client, &url).await;
            not_hits += usize::from(!is_hit(&status));
            l1.push(took);
        }
    }
    let shared_hits = metric(
        &client,
        &nodes.admins()[1],
        "revcache_shared_lookups_total{result=\"hit\"}",
    )
    .await;
    println!("| hit on node 1 | requests | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    for (name, mut times) in [
        ("miss on node 0 (upstream fetch), for reference", miss),
        ("L3 hit (first GET of node 0's entry)", l3),
        ("L1 hit (the next GETs)", l1),
    ] {
        times.sort();
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    println!();
    println!(
        "Node 1 counted {shared_hits} shared-tier hits for {KEYS} keys; {not_hits} of its answers were not hits."
    );
}

struct Throughput {
    cold: f64,
    warm: f64,
    upstream: u64,
    shared_hits: f64,
}

/// Requests per second of one pass of `REQUESTS` GETs.
async fn pass(bases: &Arc<RoundRobin<String>>, client: &HttpClient) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (bases, client) = (bases.clone(), client.clone());
            tokio::spawn(async move {
                for i in (c..REQUESTS).step_by(CLIENTS) {
                    let k = (i * 7919) % KEYS_THROUGHPUT;
                    get(&client, &format!("{}/obj/{k}", bases.pick())).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    REQUESTS as f64 / started.elapsed().as_secs_f64()
}

async fn throughput(topology: Topology) -> Throughput {
    let (upstream, served) = origin().await;
    let settings = Settings::for_upstream(upstream.parse().expect("url"));
    let nodes = Nodes::start(&settings, topology, &format!("tp-{}", topology.nodes())).await;
    let bases = Arc::new(RoundRobin::new(nodes.proxies().to_vec()));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let cold = pass(&bases, &client).await;
    let warm = pass(&bases, &client).await;
    let mut shared_hits = 0.0;
    for admin in nodes.admins() {
        shared_hits += metric(
            &client,
            admin,
            "revcache_shared_lookups_total{result=\"hit\"}",
        )
        .await;
    }
    Throughput {
        cold,
        warm,
        upstream: served.load(Ordering::Relaxed),
        shared_hits,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    latency().await;
    println!();
    println!(
        "| configuration ({CLIENTS} clients, {KEYS_THROUGHPUT} keys) | cold pass, req/s | vs 1 node | warm pass, req/s | vs 1 node | upstream requests | L3 hits |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut one = None;
    for topology in Topology::COMPARED {
        let t = throughput(topology).await;
        let (cold, warm) = *one.get_or_insert((t.cold, t.warm));
        println!(
            "| {} | {:.0} | {:.2}× | {:.0} | {:.2}× | {} | {} |",
            topology.name(),
            t.cold,
            t.cold / cold,
            t.warm,
            t.warm / warm,
            t.upstream,
            t.shared_hits
        );
    }
}
