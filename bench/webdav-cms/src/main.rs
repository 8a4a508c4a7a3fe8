//! bench/webdav-cms: a CMS reading and writing a WebDAV repository.
//!
//! Apache httpd with mod_dav holds 10,000 resources in 500 folders. Four
//! clients run a CMS-like mix with skewed popularity: folder listings
//! (PROPFIND Depth 1, 30 %), property reads (PROPFIND Depth 0, 25 %), body
//! reads (GET, 35 %) and writes (PUT, 10 %, through the configuration under
//! test); every 500 operations a resource is changed behind the cache's back
//! and, for the webdav dialect, announced on `/events/<route>`. Side by side:
//! direct to Apache, revcache with the plain `http` dialect, revcache with the
//! `webdav` dialect and trust. Reported: upstream requests per 1,000 client
//! requests (from Apache's access log, external changes excluded), client
//! latency p50/p99, and stale reads — a body, or a member's
//! `getcontentlength` in a listing or property read, older than the state
//! when the request was sent (every write changes a resource's length).
//!
//! With `--nodes`, the configurations are instead the webdav dialect with
//! trust as one node, three independent nodes (each notified of every
//! external change) and three nodes sharing one Redis (each notification
//! sent to one node in turn); the clients spread their requests, writes
//! included, over the nodes round-robin.
//!
//! Usage: revcache-bench-webdav [--nodes] [OPS]   (default 20,000 per configuration)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use revcache_bench_multi_node::{Nodes, RoundRobin, Topology, free_port, wait_until_listening};
use revcache_http::{DialectName, EventSettings, Settings};

const FOLDERS: usize = 500;
const PER_FOLDER: usize = 20;
const CLIENTS: usize = 4;
const EXTERNAL_AGENT: &str = "external-change";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    Direct,
    Http,
    Webdav,
}

struct Apache {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_apache(tag: &str) -> Apache {
    let dir = std::env::temp_dir().join(format!("revcache-bench-dav-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (dav, lock) = (dir.join("dav"), dir.join("lock"));
    std::fs::create_dir_all(&dav).expect("dav dir");
    std::fs::create_dir_all(&lock).expect("lock dir");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let mut user = String::new();
    if root {
        let _ = Command::new("chown")
            .args(["-R", "www-data:www-data"])
            .arg(&dir)
            .status();
        user = "User www-data\nGroup www-data\n".into();
    }
    let port = free_port();
    let m = "/usr/lib/apache2/modules";
    let conf = format!(
        "ServerRoot {d}\nServerName localhost\nListen 127.0.0.1:{port}\n\
         LoadModule mpm_event_module {m}/mod_mpm_event.so\nLoadModule authz_core_module {m}/mod_authz_core.so\n\
         LoadModule dav_module {m}/mod_dav.so\nLoadModule dav_fs_module {m}/mod_dav_fs.so\n\
         {user}PidFile {d}/httpd.pid\nErrorLog {d}/error.log\n\
         LogFormat \"%m %U %>s \\\"%{{User-Agent}}i\\\"\" bench\nCustomLog {d}/access.log bench\n\
         MaxKeepAliveRequests 0\nDAVLockDB {d}/lock/DAVLock\nDocumentRoot {d}/dav\n\
         <Directory {d}/dav>\n  Dav On\n  Require all granted\n</Directory>\n",
        d = dir.display()
    );
    std::fs::write(dir.join("httpd.conf"), conf).expect("conf");
    let child = Command::new("/usr/sbin/apache2")
        .arg("-f")
        .arg(dir.join("httpd.conf"))
        .arg("-DFOREGROUND")
        .stdout(Stdio::null())
        .spawn()
        .expect("apache2 (apt-get install apache2)");
    wait_until_listening(port, "apache2");
    Apache { child, port, dir }
}

/// Requests Apache logged (reads, writes), except the external changes.
fn upstream_requests(dir: &Path) -> (u64, u64) {
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    let counted: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(EXTERNAL_AGENT))
        .collect();
    let writes = counted.iter().filter(|l| l.starts_with("PUT ")).count() as u64;
    (counted.len() as u64 - writes, writes)
}

fn path(i: usize) -> String {
    format!("/f{}/r{}.txt", i / PER_FOLDER, i % PER_FOLDER)
}

/// Every write grows a resource by one byte: its length names its version.
fn body(i: usize, version: u64) -> Bytes {
    let base = 200 + (i * 7919) % 6000;
    Bytes::from(vec![b'a' + (i % 26) as u8; base + version as usize])
}

struct Shared {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Where reads and writes go, in turn: Apache, or the revcache nodes.
    bases: RoundRobin<String>,
    /// Where each external change is announced (the webdav dialect only).
    notices: Option<RoundRobin<Vec<String>>>,
    direct: String,
    /// Writes are serialized so a resource's version is never ambiguous.
    writing: tokio::sync::Mutex<()>,
    versions: Vec<AtomicU64>,
    stale: AtomicU64,
    ops: AtomicUsize,
}

impl Shared {
    async fn send(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, Bytes) {
        let mut req = http::Request::builder().method(method).uri(url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        match self.client.request(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                (
                    status,
                    res.into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default(),
                )
            }
            Err(_) => (0, Bytes::new()),
        }
    }
}

const PROPS: &str = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/><D:getlastmodified/></D:prop></D:propfind>"#;

/// `(path, getcontentlength)` of each member of a multistatus.
fn lengths(xml: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for resp in xml.split("<D:response").skip(1) {
        let href = resp
            .split("<D:href>")
            .nth(1)
            .and_then(|h| h.split("</D:href>").next())
            .unwrap_or("");
        if let Some(len) = resp
            .split("<lp1:getcontentlength>")
            .nth(1)
            .and_then(|l| l.split('<').next())
            .and_then(|l| l.parse().ok())
        {
            out.push((href.to_owned(), len));
        }
    }
    out
}

fn index_of(href: &str) -> Option<usize> {
    let (folder, file) = href.trim_start_matches('/').split_once('/')?;
    let f: usize = folder.strip_prefix('f')?.parse().ok()?;
    let r: usize = file.strip_prefix('r')?.strip_suffix(".txt")?.parse().ok()?;
    Some(f * PER_FOLDER + r)
}

impl Shared {
    /// Counts a read as stale when a resource it shows is older than it was
    /// when the request was sent.
    fn check(&self, before: &[(usize, u64)], seen: &[(usize, u64)]) {
        for (i, len) in seen {
            if let Some((_, v)) = before.iter().find(|(j, _)| j == i)
                && *len < body(*i, *v).len() as u64
                && self.stale.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!(
                    "stale: {} has {len} bytes, expected {}",
                    path(*i),
                    body(*i, *v).len()
                );
            }
        }
    }

    fn version(&self, i: usize) -> u64 {
        self.versions[i].load(Ordering::SeqCst)
    }
}

/// Skewed popularity: low indexes are hot.
fn skewed(rng: &mut u64, n: usize) -> usize {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let u = (*rng % 1_000_000) as f64 / 1_000_000.0;
    ((n as f64) * u.powi(4)) as usize % n
}

async fn client(s: Arc<Shared>, ops: usize, seed: u64) -> Vec<Duration> {
    let mut rng = seed;
    let mut latencies = Vec::with_capacity(ops);
    for _ in 0..ops {
        let op = s.ops.fetch_add(1, Ordering::Relaxed);
        if op % 500 == 499 {
            // A change behind the cache's back, announced where possible.
            let i = skewed(&mut rng, FOLDERS * PER_FOLDER);
            let _writing = s.writing.lock().await;
            let v = s.version(i) + 1;
            s.send(
                &format!("{}{}", s.direct, path(i)),
                "PUT",
                &[("user-agent", EXTERNAL_AGENT)],
                body(i, v),
            )
            .await;
            for url in s
                .notices
                .as_ref()
                .map(RoundRobin::pick)
                .into_iter()
                .flatten()
            {
                let notice = format!(r#"{{"paths": ["{}"]}}"#, path(i));
                s.send(
                    url,
                    "POST",
                    &[("content-type", "application/json")],
                    Bytes::from(notice),
                )
                .await;
            }
            // The new state counts once it is announced (or written, direct).
            s.versions[i].fetch_max(v, Ordering::SeqCst);
        }
        rng ^= op as u64;
        let kind = skewed(&mut rng, 1000) % 100;
        let base = s.bases.pick();
        let started = Instant::now();
        match kind {
            0..30 => {
                let f = skewed(&mut rng, FOLDERS);
                let before: Vec<(usize, u64)> = (0..PER_FOLDER)
                    .map(|r| (f * PER_FOLDER + r, s.version(f * PER_FOLDER + r)))
                    .collect();
                let (_, b) = s
                    .send(
                        &format!("{base}/f{f}/"),
                        "PROPFIND",
                        &[("depth", "1")],
                        Bytes::from_static(PROPS.as_bytes()),
                    )
                    .await;
                let seen: Vec<(usize, u64)> = lengths(&String::from_utf8_lossy(&b))
                    .into_iter()
                    .filter_map(|(h, l)| Some((index_of(&h)?, l)))
                    .collect();
                s.check(&before, &seen);
            }
            30..55 => {
                let i = skewed(&mut rng, FOLDERS * PER_FOLDER);
                let before = [(i, s.version(i))];
                let (_, b) = s
                    .send(
                        &format!("{base}{}", path(i)),
                        "PROPFIND",
                        &[("depth", "0")],
                        Bytes::from_static(PROPS.as_bytes()),
                    )
                    .await;
                let seen: Vec<(usize, u64)> = lengths(&String::from_utf8_lossy(&b))
                    .into_iter()
                    .map(|(_, l)| (i, l))
                    .collect();
                s.check(&before, &seen);
            }
            55..90 => {
                let i = skewed(&mut rng, FOLDERS * PER_FOLDER);
                let before = [(i, s.version(i))];
                let (_, b) = s
                    .send(&format!("{base}{}", path(i)), "GET", &[], Bytes::new())
                    .await;
                s.check(&before, &[(i, b.len() as u64)]);
            }
            _ => {
                let i = skewed(&mut rng, FOLDERS * PER_FOLDER);
                let _writing = s.writing.lock().await;
                let v = s.version(i) + 1;
                s.send(&format!("{base}{}", path(i)), "PUT", &[], body(i, v))
                    .await;
                // Reads sent after the write completed must see it.
                s.versions[i].fetch_max(v, Ordering::SeqCst);
            }
        }
        latencies.push(started.elapsed());
    }
    latencies
}

async fn run(config: Config, topology: Topology, ops: usize) -> Measured {
    let tag = format!("{config:?}-{}", topology.nodes());
    let apache = start_apache(&tag);
    let direct = format!("http://127.0.0.1:{}", apache.port);
    // The tree, written directly (not counted).
    let seed = Shared {
        client: Client::builder(TokioExecutor::new()).build_http(),
        bases: RoundRobin::new(vec![direct.clone()]),
        notices: None,
        direct: direct.clone(),
        writing: tokio::sync::Mutex::new(()),
        versions: (0..FOLDERS * PER_FOLDER)
            .map(|_| AtomicU64::new(0))
            .collect(),
        stale: AtomicU64::new(0),
        ops: AtomicUsize::new(0),
    };
    for f in 0..FOLDERS {
        seed.send(
            &format!("{direct}/f{f}/"),
            "MKCOL",
            &[("user-agent", EXTERNAL_AGENT)],
            Bytes::new(),
        )
        .await;
        for r in 0..PER_FOLDER {
            let i = f * PER_FOLDER + r;
            seed.send(
                &format!("{direct}{}", path(i)),
                "PUT",
                &[("user-agent", EXTERNAL_AGENT)],
                body(i, 0),
            )
            .await;
        }
    }
    let mut nodes = None;
    let shared = if config == Config::Direct {
        seed
    } else {
        let mut s = Settings::for_upstream(direct.parse().expect("url"));
        s.routes[0].name = "dav".into();
        if config == Config::Webdav {
            s.routes[0].dialect = DialectName::Webdav;
            s.routes[0].events = Some(EventSettings {
                trust: Some(Duration::from_secs(600)),
                heartbeat: None,
                command: None,
                secret_file: None,
            });
        }
        let started = nodes.insert(Nodes::start(&s, topology, &format!("dav-{tag}")).await);
        Shared {
            bases: RoundRobin::new(started.proxies().to_vec()),
            notices: (config == Config::Webdav)
                .then(|| RoundRobin::new(started.event_groups("/events/dav"))),
            ..seed
        }
    };
    let shared = Arc::new(shared);
    // Warm-up: the same mix, not measured (steady state, not cold start).
    let warm: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(shared.clone(), ops / CLIENTS, 0x5eed + c as u64)))
        .collect();
    for t in warm {
        t.await.expect("warm-up client");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = upstream_requests(&apache.dir);
    let measured = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                shared.clone(),
                ops / CLIENTS,
                0x9e37_79b9 + c as u64,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client"));
    }
    let seconds = measured.elapsed().as_secs_f64();
    // Apache writes its log lines as requests finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = upstream_requests(&apache.dir);
    let (reads, writes) = (after.0 - before.0, after.1 - before.1);
    drop(nodes);
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1e3
    };
    let per_1000 = |n: u64| n as f64 * 1000.0 / latencies.len() as f64;
    Measured {
        reads: per_1000(reads),
        writes: per_1000(writes),
        p50: pct(0.5),
        p99: pct(0.99),
        stale: shared.stale.load(Ordering::Relaxed),
        per_second: latencies.len() as f64 / seconds,
    }
}

struct Measured {
    reads: f64,
    writes: f64,
    p50: f64,
    p99: f64,
    stale: u64,
    per_second: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let by_nodes = args.iter().any(|a| a == "--nodes");
    args.retain(|a| a != "--nodes");
    let ops: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let configs: Vec<(Config, Topology)> = if by_nodes {
        std::iter::once((Config::Direct, Topology::One))
            .chain(Topology::COMPARED.map(|t| (Config::Webdav, t)))
            .collect()
    } else {
        [Config::Direct, Config::Http, Config::Webdav]
            .map(|c| (c, Topology::One))
            .into()
    };
    println!(
        "| configuration | upstream per 1,000 client requests (reads + writes) | vs direct | upstream reads per 1,000 | p50 ms | p99 ms | stale reads | client requests / s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut direct_rate = 0.0;
    for (config, topology) in configs {
        let m = run(config, topology, ops).await;
        let rate = m.reads + m.writes;
        if config == Config::Direct {
            direct_rate = rate;
        }
        let name = match config {
            Config::Direct => "direct to Apache mod_dav",
            Config::Http => "revcache, http dialect",
            Config::Webdav => "revcache, webdav dialect with trust",
        };
        let name = if by_nodes && config != Config::Direct {
            format!("{name}, {}", topology.name())
        } else {
            name.to_owned()
        };
        let factor = if rate > 0.0 {
            direct_rate / rate
        } else {
            f64::INFINITY
        };
        println!(
            "| {name} | {rate:.1} | {factor:.1}× fewer | {:.1} | {:.2} | {:.2} | {} | {:.0} |",
            m.reads, m.p50, m.p99, m.stale, m.per_second
        );
    }
}
