//! The shared tier: three revcache nodes and one real `redis-server`
//! (started by each test on a free loopback port) act as one cache.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use revcache_http::{DialectName, EventSettings, SharedSettings};
use support::{Client, Origin, Reply, Revcache, metric, temp_dir};

/// A `redis-server` of its own, stopped when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
    /// TLS only (`--tls-port`): certificate, key and CA files.
    tls: Option<[PathBuf; 3]>,
}

impl Redis {
    fn start() -> Redis {
        Self::start_with(None)
    }

    fn start_with(tls: Option<[PathBuf; 3]>) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            child: None,
            tls,
        };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let port = self.port.to_string();
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        let files: Vec<String> = self
            .tls
            .iter()
            .flatten()
            .map(|f| f.display().to_string())
            .collect();
        match &files[..] {
            [cert, key, ca] => args.extend([
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                ca,
                "--tls-auth-clients",
                "no",
            ]),
            _ => args.extend(["--port", &port]),
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        // Ready when it accepts connections.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the server: it holds
    /// every connection open and answers nothing meanwhile.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server`s in cluster mode, joined as three masters (no
/// replicas) by `redis-cli --cluster create`; stopped when dropped.
struct RedisCluster {
    servers: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let dir = temp_dir("redis-cluster");
        std::fs::create_dir_all(&dir).unwrap();
        // A port whose cluster bus port (+10,000) is free too.
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                ports.push(port);
            }
        }
        let servers = ports
            .iter()
            .map(|port| {
                let p = port.to_string();
                Command::new("redis-server")
                    .args([
                        "--port",
                        &p,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{p}.conf"),
                        "--dir",
                        dir.to_str().unwrap(),
                    ])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server (scripts/test.sh installs it)")
            })
            .collect();
        let cluster = RedisCluster {
            servers,
            ports,
            dir,
        };
        for port in &cluster.ports {
            wait_until(|| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli (with redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        for port in &cluster.ports {
            wait_until(|| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
        }
        cluster
    }
}

impl RedisCluster {
    /// Empties every master.
    fn flush(&self) {
        for port in &self.ports {
            let done = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "flushall"])
                .stdout(Stdio::null())
                .status()
                .expect("redis-cli");
            assert!(done.success());
        }
    }
}

impl Backend for RedisCluster {
    fn settings(&self) -> SharedSettings {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect();
        let mut shared = SharedSettings::for_url(urls[0].clone());
        shared.cluster_nodes = urls;
        shared
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` in a network namespace of its own, reached from the
/// test's nodes over two veth links: `Link::Nodes` for every node but the
/// one the test cuts off, `Link::CutOff` for that one. Cutting sets the
/// root-side end of `CutOff` down: every packet either way is dropped
/// silently, as on a broken network path (no refusal, no reset); healing
/// sets it up again and TCP retransmits. Needs root and `ip` (iproute2).
struct NetnsRedis {
    ns: String,
    links: [String; 2],
    hosts: [String; 2],
    server: Child,
}

#[derive(Clone, Copy)]
enum Link {
    Nodes = 0,
    CutOff = 1,
}

const NETNS_REDIS_PORT: u16 = 6379;

fn ip(args: &[&str]) {
    let done = Command::new("ip")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("ip (iproute2)");
    assert!(
        done.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&done.stderr)
    );
}

impl NetnsRedis {
    fn start() -> NetnsRedis {
        let id = std::process::id() % 100_000;
        let octet = (id % 250).to_string();
        let ns = format!("rcredis{id}");
        let links = [format!("rcn{id}a"), format!("rcn{id}b")];
        // Left by an earlier run of this process id, if any.
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        quiet(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let mut hosts = Vec::new();
        for (link, net) in links.iter().zip(["10.231", "10.232"]) {
            let peer = format!("{link}p");
            let (root_addr, ns_addr) = (format!("{net}.{octet}.1/24"), format!("{net}.{octet}.2"));
            quiet(&["link", "del", link]);
            ip(&["link", "add", link, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &ns]);
            ip(&["addr", "add", &root_addr, "dev", link]);
            ip(&["link", "set", link, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ns_addr}/24"),
                "dev",
                &peer,
            ]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            hosts.push(ns_addr);
        }
        let port = NETNS_REDIS_PORT.to_string();
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "redis-server",
                "--port",
                &port,
                "--bind",
            ])
            .args(&hosts)
            // Its clients are not on loopback (it has no password).
            .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let redis = NetnsRedis {
            ns,
            links: links.clone(),
            hosts: [hosts[0].clone(), hosts[1].clone()],
            server,
        };
        for host in &redis.hosts {
            wait_until(|| std::net::TcpStream::connect((host.as_str(), NETNS_REDIS_PORT)).is_ok());
        }
        redis
    }

    fn url(&self, link: Link) -> String {
        format!("redis://{}:{NETNS_REDIS_PORT}/", self.hosts[link as usize])
    }

    fn set_cut(&self, cut: bool) {
        let state = if cut { "down" } else { "up" };
        ip(&["link", "set", &self.links[Link::CutOff as usize], state]);
    }
}

impl Backend for NetnsRedis {
    fn settings(&self) -> SharedSettings {
        SharedSettings::for_url(self.url(Link::Nodes))
    }
}

impl Drop for NetnsRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace deletes the veth pairs with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
        for link in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Polls `ready` for up to ten seconds.
fn wait_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("not ready after ten seconds");
}

/// The partition key every node of a test shares.
fn shared_key_file() -> PathBuf {
    let dir = temp_dir("shared-key");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("partition.key")
}

/// Where the nodes of a test share: one server or a cluster.
trait Backend {
    fn settings(&self) -> SharedSettings;
}

impl Backend for Redis {
    fn settings(&self) -> SharedSettings {
        let mut shared = SharedSettings::for_url(self.url());
        shared.ca_file = self.tls.as_ref().map(|[_, _, ca]| ca.clone());
        shared
    }
}

async fn node(
    origin: &str,
    redis: &impl Backend,
    key_file: &std::path::Path,
    tweak: impl FnOnce(&mut revcache_http::Settings),
) -> Revcache {
    // What the shared tier warns of (a command that failed, Redis away)
    // is printed with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("revcache_shared=info,revcache_http=warn")
        .with_test_writer()
        .try_init();
    let (mut shared, key_file) = (redis.settings(), key_file.to_owned());
    // The suite runs many tests at once on two cores: a Redis command
    // that waits for a core past the default 500 ms would mark the tier
    // unreachable and turn a check of sharing into one of degrading.
    shared.timeout = Duration::from_secs(3);
    Revcache::start_with(origin, move |s| {
        s.shared = Some(shared);
        s.partition.key_file = Some(key_file);
        s.limits.collapsed_wait_timeout = Duration::from_secs(5);
        tweak(s);
    })
    .await
}

async fn three_nodes(origin: &str, redis: &impl Backend) -> Vec<Revcache> {
    let key = shared_key_file();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(origin, redis, &key, |_| {}).await);
    }
    nodes
}

async fn metrics(rc: &Revcache) -> String {
    Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text()
}

/// Waits until `rc`'s metric reaches `at_least` (what another node does
/// arrives through Redis in its own time).
async fn eventually(rc: &Revcache, name: &str, at_least: f64) {
    for _ in 0..500 {
        if metric(&metrics(rc).await, name) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reached {at_least}:\n{}", metrics(rc).await);
}

/// A `webdav` route named `dav` whose events are trusted for ten minutes.
fn trusted_webdav(s: &mut revcache_http::Settings) {
    s.routes[0].name = "dav".into();
    s.routes[0].dialect = DialectName::Webdav;
    s.routes[0].events = Some(EventSettings {
        trust: Some(Duration::from_secs(600)),
        heartbeat: None,
        command: None,
        secret_file: None,
    });
}

fn cacheable(body: &'static str) -> Reply {
    Reply::ok(body)
        .header("cache-control", "max-age=600")
        .header("etag", "\"v1\"")
}

#[tokio::test]
async fn a_fill_on_one_node_is_a_hit_on_the_others() {
    a_fill_is_a_hit_on_the_other_nodes(&Redis::start()).await;
}

#[tokio::test]
async fn a_purge_on_one_node_reaches_every_node() {
    a_purge_reaches_every_node(&Redis::start()).await;
}

#[tokio::test]
async fn concurrent_misses_across_three_nodes_cost_one_upstream_request() {
    concurrent_misses_cost_one_upstream_request(&Redis::start()).await;
}

/// The fill, purge and single-flight checks on a three-master Redis
/// Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_fills_purges_and_flights() {
    let cluster = RedisCluster::start();
    a_fill_is_a_hit_on_the_other_nodes(&cluster).await;
    // Each check's nodes have a partition key of their own.
    cluster.flush();
    a_purge_reaches_every_node(&cluster).await;
    cluster.flush();
    concurrent_misses_cost_one_upstream_request(&cluster).await;
}

async fn a_fill_is_a_hit_on_the_other_nodes(redis: &impl Backend) {
    let origin = Origin::start(|_, _| cacheable("shared body")).await;
    let nodes = three_nodes(&origin.url(), redis).await;
    let first = Client::default().get(&nodes[0].url("/doc")).await;
    assert_eq!(first.text(), "shared body");
    nodes[0].proxy.fills_idle().await;
    for other in &nodes[1..] {
        let got = Client::default().get(&other.url("/doc")).await;
        assert_eq!(got.text(), "shared body");
        assert!(
            got.cache_status().starts_with("revcache; hit"),
            "{}",
            got.cache_status()
        );
        // Promoted: the next one is a memory hit.
        assert!(Client::default().get(&other.url("/doc")).await.is_hit());
    }
    assert_eq!(origin.requests(), 1);
    assert!(
        metric(
            &metrics(&nodes[1]).await,
            "revcache_shared_lookups_total{result=\"hit\"}"
        ) >= 1.0
    );
}

/// After node 1 purged `/page`: nodes 0 and 2 apply the purge from the
/// stream, and every node then serves the refetched "new".
async fn every_node_serves_the_purged_page_anew(nodes: &[Revcache]) {
    for n in [&nodes[0], &nodes[2]] {
        eventually(n, "revcache_invalidations_total{source=\"shared\"}", 1.0).await;
    }
    for n in nodes {
        let got = Client::default().get(&n.url("/page")).await;
        assert_eq!(got.text(), "new", "{}", got.cache_status());
        n.proxy.fills_idle().await;
    }
}

async fn a_purge_reaches_every_node(redis: &impl Backend) {
    let origin = Origin::start(|_, n| cacheable(if n == 0 { "old" } else { "new" })).await;
    let nodes = three_nodes(&origin.url(), redis).await;
    Client::default().get(&nodes[0].url("/page")).await;
    nodes[0].proxy.fills_idle().await;
    for n in &nodes {
        assert_eq!(Client::default().get(&n.url("/page")).await.text(), "old");
    }
    let purged = Client::default()
        .send("POST", &nodes[1].admin_url("/purge?url=/page"), &[], "")
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    every_node_serves_the_purged_page_anew(&nodes).await;
    assert_eq!(origin.requests(), 2, "one refetch for all three nodes");
}

async fn concurrent_misses_cost_one_upstream_request(redis: &impl Backend) {
    let origin =
        Origin::start(|_, _| cacheable("slow body").delay(Duration::from_millis(300))).await;
    let nodes = three_nodes(&origin.url(), redis).await;
    let urls: Vec<String> = (0..100).map(|i| nodes[i % 3].url("/burst")).collect();
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| tokio::spawn(async move { Client::default().get(&url).await }))
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "slow body");
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_event_posted_to_one_node_invalidates_on_all() {
    let redis = Redis::start();
    let origin = Origin::start(|_, n| {
        Reply::ok(if n == 0 { "v1" } else { "v2" })
            .header("etag", if n == 0 { "\"1\"" } else { "\"2\"" })
    })
    .await;
    let key = shared_key_file();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&origin.url(), &redis, &key, trusted_webdav).await);
    }
    Client::default().get(&nodes[0].url("/a.txt")).await;
    nodes[0].proxy.fills_idle().await;
    for n in &nodes {
        let got = Client::default().get(&n.url("/a.txt")).await;
        assert_eq!(got.text(), "v1");
    }
    let posted = Client::default()
        .send(
            "POST",
            &nodes[2].admin_url("/events/dav"),
            &[("content-type", "application/json")],
            r#"{"paths": ["/a.txt"], "recursive": false}"#,
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    for n in [&nodes[0], &nodes[1]] {
        eventually(n, "revcache_invalidations_total{source=\"shared\"}", 1.0).await;
        let got = Client::default().get(&n.url("/a.txt")).await;
        assert_eq!(got.text(), "v2", "{}", got.cache_status());
        n.proxy.fills_idle().await;
    }
}

#[tokio::test]
async fn a_node_with_another_partition_key_refuses_to_join() {
    let redis = Redis::start();
    let origin = Origin::start(|_, _| cacheable("x")).await;
    let first = node(&origin.url(), &redis, &shared_key_file(), |_| {}).await;
    let mut settings = revcache_http::Settings::for_upstream(origin.url().parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = temp_dir("other-key");
    settings.shared = Some(SharedSettings::for_url(redis.url()));
    settings.partition.key_file = Some(shared_key_file());
    let refused = revcache_http::Server::bind(settings).await;
    let Err(e) = refused else {
        panic!("a node with another partition key joined");
    };
    assert!(e.to_string().contains("partition key differs"), "{e}");
    drop(first);
}

#[tokio::test]
async fn redis_going_away_costs_no_client_errors_and_suspends_trust() {
    let mut redis = Redis::start();
    let origin =
        Origin::start(|seen, _| cacheable(if seen.target == "/a" { "a" } else { "b" })).await;
    let nodes = three_nodes(&origin.url(), &redis).await;
    for n in &nodes {
        assert_eq!(Client::default().get(&n.url("/a")).await.status, 200);
    }
    redis.kill();
    for round in 0..3 {
        for n in &nodes {
            for path in ["/a", "/b"] {
                let got = Client::default()
                    .get(&n.url(&format!("{path}?r={round}")))
                    .await;
                assert_eq!(got.status, 200, "{}", got.text());
            }
        }
    }
    for n in &nodes {
        let m = metrics(n).await;
        assert_eq!(metric(&m, "revcache_shared_healthy"), 0.0);
        // Once a command failed, none is sent until Redis is back: a
        // request never waits out a timeout per command.
        assert!(metric(&m, "revcache_shared_errors_total") <= 3.0, "{m}");
    }
    // It comes back: the nodes share again.
    redis.run();
    for n in &nodes {
        eventually(n, "revcache_shared_healthy", 1.0).await;
    }
}

#[tokio::test]
async fn between_racing_fills_the_newer_representation_wins_everywhere() {
    let redis = Redis::start();
    let origin = Origin::start(|_, n| {
        let (body, age) = if n == 0 { ("new", 0) } else { ("old", 3600) };
        cacheable(body).header("date", support::http_date_in(-age))
    })
    .await;
    let nodes = three_nodes(&origin.url(), &redis).await;
    assert_eq!(
        Client::default().get(&nodes[0].url("/race")).await.text(),
        "new"
    );
    nodes[0].proxy.fills_idle().await;
    // A slower fill of the same key answers with an older representation.
    let late = Client::default()
        .get_with(&nodes[1].url("/race"), &[("cache-control", "no-cache")])
        .await;
    assert_eq!(late.text(), "old", "its own client gets what it fetched");
    nodes[1].proxy.fills_idle().await;
    let got = Client::default().get(&nodes[2].url("/race")).await;
    assert_eq!(got.text(), "new", "{}", got.cache_status());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn while_the_stream_cannot_be_read_nothing_is_trusted() {
    let mut redis = Redis::start();
    let origin = Origin::start(|_, _| Reply::ok("doc").header("etag", "\"1\"")).await;
    let key = shared_key_file();
    let n = node(&origin.url(), &redis, &key, trusted_webdav).await;
    eventually(&n, "revcache_shared_healthy", 1.0).await;
    Client::default().get(&n.url("/a.txt")).await;
    n.proxy.fills_idle().await;
    let trusted = Client::default().get(&n.url("/a.txt")).await;
    assert!(
        trusted.cache_status().contains("detail=trusted"),
        "{}",
        trusted.cache_status()
    );
    redis.kill();
    // The reader notices within one blocking read.
    for _ in 0..500 {
        let got = Client::default().get(&n.url("/a.txt")).await;
        if !got.cache_status().contains("detail=trusted") {
            assert!(
                got.cache_status().contains("fwd=stale"),
                "{}",
                got.cache_status()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let suspended = Client::default().get(&n.url("/a.txt")).await;
    assert!(
        !suspended.cache_status().contains("detail=trusted"),
        "{}",
        suspended.cache_status()
    );
    // Back: trust starts over (one revalidation, then trusted).
    redis.run();
    eventually(&n, "revcache_shared_gaps_total", 1.0).await;
    let again = Client::default().get(&n.url("/a.txt")).await;
    assert!(
        !again.cache_status().contains("detail=trusted"),
        "fetched before the gap"
    );
    n.proxy.fills_idle().await;
    let trusted = Client::default().get(&n.url("/a.txt")).await;
    assert!(
        trusted.cache_status().contains("detail=trusted"),
        "{}",
        trusted.cache_status()
    );
}

#[tokio::test]
async fn nodes_share_through_redis_over_tls() {
    let pki = support::tls::Pki::new();
    let leaf = pki.leaf("redis", &["127.0.0.1"], false);
    let redis = Redis::start_with(Some([leaf.cert_file, leaf.key_file, pki.ca_file()]));
    let origin = Origin::start(|_, _| cacheable("over tls")).await;
    let key = shared_key_file();
    let first = node(&origin.url(), &redis, &key, |_| {}).await;
    let second = node(&origin.url(), &redis, &key, |_| {}).await;
    eventually(&first, "revcache_shared_healthy", 1.0).await;
    assert_eq!(
        Client::default().get(&first.url("/t")).await.text(),
        "over tls"
    );
    first.proxy.fills_idle().await;
    let got = Client::default().get(&second.url("/t")).await;
    assert!(got.is_hit(), "{}", got.cache_status());
    assert_eq!(origin.requests(), 1);
    // A node that does not trust the server's CA never talks to it, and
    // serves all the same.
    let untrusting = Revcache::start_with(&origin.url(), |s| {
        s.shared = Some(SharedSettings::for_url(redis.url()));
        s.partition.key_file = Some(key.clone());
    })
    .await;
    let got = Client::default().get(&untrusting.url("/t")).await;
    assert_eq!((got.status, got.text().as_str()), (200, "over tls"));
    let m = metrics(&untrusting).await;
    assert_eq!(metric(&m, "revcache_shared_healthy"), 0.0, "{m}");
}

#[tokio::test]
async fn a_purge_made_while_redis_was_away_reaches_the_other_nodes_when_it_returns() {
    let mut redis = Redis::start();
    let origin = Origin::start(|_, n| cacheable(if n == 0 { "old" } else { "new" })).await;
    let nodes = three_nodes(&origin.url(), &redis).await;
    Client::default().get(&nodes[0].url("/page")).await;
    nodes[0].proxy.fills_idle().await;
    for n in &nodes {
        assert_eq!(Client::default().get(&n.url("/page")).await.text(), "old");
    }
    redis.kill();
    let purged = Client::default()
        .send("POST", &nodes[1].admin_url("/purge?url=/page"), &[], "")
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    // Meanwhile the others still hold what they had: nothing can tell them.
    assert_eq!(
        Client::default().get(&nodes[0].url("/page")).await.text(),
        "old"
    );
    redis.run();
    every_node_serves_the_purged_page_anew(&nodes).await;
}

/// A `webdav` route named `dav` without trusted events: a member is
/// revalidated unless a listing confirms its version.
fn untrusted_webdav(s: &mut revcache_http::Settings) {
    s.routes[0].name = "dav".into();
    s.routes[0].dialect = DialectName::Webdav;
}

#[tokio::test]
async fn a_listing_fetched_by_one_node_confirms_a_member_on_another() {
    let redis = Redis::start();
    let listing = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
  <D:response><D:href>/d/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
  <D:response><D:href>/d/a.txt</D:href><D:propstat><D:prop><D:getetag>"e1"</D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;
    let origin = Origin::start(move |seen, _| {
        if seen.method == "PROPFIND" {
            Reply {
                status: 207,
                ..Reply::ok(listing)
            }
            .header("content-type", "application/xml; charset=utf-8")
        } else {
            Reply::ok("A").header("etag", "\"e1\"")
        }
    })
    .await;
    let key = shared_key_file();
    let a = node(&origin.url(), &redis, &key, untrusted_webdav).await;
    let b = node(&origin.url(), &redis, &key, untrusted_webdav).await;
    // B has the member; without a listing it asks the upstream each time.
    assert_eq!(Client::default().get(&b.url("/d/a.txt")).await.text(), "A");
    b.proxy.fills_idle().await;
    let before = origin.requests();
    let got = Client::default().get(&b.url("/d/a.txt")).await;
    assert_eq!(origin.requests(), before + 1, "{}", got.cache_status());
    // A lists the collection (later than B stored the member).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let listed = Client::default()
        .send("PROPFIND", &a.url("/d/"), &[("depth", "1")], "")
        .await;
    assert_eq!(listed.status, 207, "{}", listed.text());
    a.proxy.fills_idle().await;
    eventually(
        &b,
        "revcache_shared_ledger_records_total{direction=\"applied\"}",
        1.0,
    )
    .await;
    // A's listing confirms B's member: no upstream request.
    let before = origin.requests();
    let got = Client::default().get(&b.url("/d/a.txt")).await;
    assert_eq!(got.text(), "A");
    assert_eq!(origin.requests(), before, "{}", got.cache_status());
    assert!(
        got.cache_status().contains("detail=ledger"),
        "{}",
        got.cache_status()
    );
}

/// Lines of `path` (a file commands append to).
fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn feed_healthy(rc: &Revcache) -> bool {
    metric(
        &metrics(rc).await,
        "revcache_event_feed_healthy{route=\"dav\"}",
    ) == 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_feed_runs_on_one_node_and_another_takes_over_when_it_dies() {
    let redis = Redis::start();
    let origin = Origin::start(|_, _| Reply::ok("A").header("etag", "\"e1\"")).await;
    let dir = temp_dir("command-lease");
    std::fs::create_dir_all(&dir).unwrap();
    let runs = dir.join("runs");
    let key = shared_key_file();
    let mut nodes = Vec::new();
    for i in 0..3 {
        // Each node's command says which node runs it, then stays up.
        let command = format!(
            "echo {i} >> {runs}; echo '{{\"paths\": [\"/none\"], \"recursive\": false}}'; exec sleep 600",
            runs = runs.display()
        );
        nodes.push(Some(
            node(&origin.url(), &redis, &key, move |s| {
                trusted_webdav(s);
                s.routes[0].events.as_mut().unwrap().command = Some(command);
            })
            .await,
        ));
    }
    let live = |nodes: &Vec<Option<Revcache>>| nodes.iter().flatten().count();
    // Every node trusts the feed: the holder's own, the others' followed.
    for _ in 0..500 {
        let mut all = true;
        for n in nodes.iter().flatten() {
            all &= feed_healthy(n).await;
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in nodes.iter().flatten() {
        assert!(feed_healthy(n).await, "{}", metrics(n).await);
    }
    // The others kept trying to take the lease meanwhile; one ran it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = lines(&runs);
    assert_eq!(first.len(), 1, "{first:?}");
    let holder: usize = first[0].parse().unwrap();
    // A follower trusts what it fetched since the holder's feed connected.
    let follower = nodes[(holder + 1) % 3].as_ref().unwrap();
    Client::default().get(&follower.url("/a.txt")).await;
    follower.proxy.fills_idle().await;
    let again = Client::default().get(&follower.url("/a.txt")).await;
    assert!(
        again.cache_status().contains("trusted"),
        "{}",
        again.cache_status()
    );
    // The holder dies: within seconds another node runs the command (the
    // bounds are generous: on a loaded two-core machine a takeover and
    // the follower's next renewal took longer than 5 s once).
    drop(nodes[holder].take());
    assert_eq!(live(&nodes), 2);
    for _ in 0..1500 {
        if lines(&runs).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = lines(&runs);
    assert_eq!(after.len(), 2, "not taken over: {after:?}");
    assert_ne!(after[1], first[0], "{after:?}");
    for n in nodes.iter().flatten() {
        for _ in 0..1500 {
            if feed_healthy(n).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(feed_healthy(n).await, "{}", metrics(n).await);
    }
    assert_eq!(lines(&runs).len(), 2, "only one node took over");
}

#[tokio::test]
async fn inspect_shows_what_the_shared_tier_holds() {
    let redis = Redis::start();
    let origin = Origin::start(|_, _| cacheable("shared body")).await;
    let nodes = three_nodes(&origin.url(), &redis).await;
    Client::default().get(&nodes[0].url("/a?x=1")).await;
    nodes[0].proxy.fills_idle().await;
    let rows = |rc: &Revcache, query: &'static str| {
        let url = rc.admin_url(&format!("/inspect{query}"));
        async move {
            let got = Client::default().get(&url).await;
            assert_eq!(got.status, 200, "{}", got.text());
            let v: serde_json::Value = serde_json::from_str(&got.text()).unwrap();
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["tier"].as_str().unwrap().to_owned(),
                        r["key"].as_str().unwrap().to_owned(),
                        r["size"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // Node 0 holds it in memory and shared it; node 1 only sees it in L3.
    let here = rows(&nodes[0], "").await;
    assert_eq!(here.len(), 1, "{here:?}");
    assert!(
        here[0].0.starts_with("l1") && here[0].0.ends_with("+l3"),
        "{here:?}"
    );
    let there = rows(&nodes[1], "").await;
    assert_eq!(there.len(), 1, "{there:?}");
    assert_eq!(there[0].0, "l3");
    assert!(there[0].1.ends_with("/a?x=1"), "{there:?}");
    assert_eq!(there[0].2, "shared body".len() as u64);
    assert_eq!(rows(&nodes[1], "?url=%2Fa%3Fx%3D1").await.len(), 1);
    assert!(rows(&nodes[1], "?url=%2Fb").await.is_empty());
    // Purged, it is gone from L3 too.
    let purged = Client::default()
        .send(
            "POST",
            &nodes[2].admin_url("/purge?url=%2Fa%3Fx%3D1"),
            &[],
            "",
        )
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert!(rows(&nodes[2], "").await.is_empty());
}

/// An origin of versioned pages `/r/N`: a PUT makes the next version.
/// Answers carry `max-age=600`, so only invalidations make nodes ask.
struct Versioned {
    origin: Origin,
    versions: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl Versioned {
    async fn start() -> Versioned {
        let versions = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let v = versions.clone();
        let origin = Origin::start(move |seen, _| {
            let mut versions = v.lock().unwrap();
            let n = versions.entry(seen.target.clone()).or_insert(0);
            if seen.method == "PUT" {
                *n += 1;
                return Reply::status(204);
            }
            Reply::ok(format!("{} v{n}", seen.target))
                .header("cache-control", "max-age=600")
                .header("etag", format!("\"{n}\""))
        })
        .await;
        Versioned { origin, versions }
    }

    fn current(&self, path: &str) -> String {
        let n = self
            .versions
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0);
        format!("{path} v{n}")
    }
}

/// How Redis goes away under load.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Killed, then started again empty.
    Killed,
    /// Paused (`SIGSTOP`): connections stay open, nothing answers.
    Paused,
    /// Slowed: everything to and from Redis waits 400 ms on the way (a
    /// command about 0.8 s, under the command timeout).
    Slowed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_under_mixed_load_costs_no_client_errors_and_leaves_nothing_stale() {
    redis_away_under_mixed_load(Outage::Killed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_redis_under_mixed_load_costs_no_client_errors_and_leaves_nothing_stale() {
    redis_away_under_mixed_load(Outage::Paused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowing_redis_under_mixed_load_costs_no_client_errors_and_leaves_nothing_stale() {
    redis_away_under_mixed_load(Outage::Slowed).await;
}

async fn redis_away_under_mixed_load(outage: Outage) {
    let mut redis = Redis::start();
    let origin = Versioned::start().await;
    let relay = Relay::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let nodes = match outage {
        Outage::Slowed => {
            three_nodes(
                &origin.origin.url(),
                &Through(format!("redis://{}/", relay.addr)),
            )
            .await
        }
        _ => three_nodes(&origin.origin.url(), &redis).await,
    };
    let nodes = Arc::new(nodes);
    let paths: Vec<String> = (0..8).map(|i| format!("/r/{i}")).collect();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Readers and writers over every node, until told to stop.
    let mut load = Vec::new();
    for worker in 0..6usize {
        let (nodes, paths, errors, stop) =
            (nodes.clone(), paths.clone(), errors.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = worker;
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i = i.wrapping_mul(31).wrapping_add(7);
                let n = &nodes[i % 3];
                let path = &paths[(i / 3) % paths.len()];
                let got = if worker == 0 && i % 4 == 0 {
                    Client::default().send("PUT", &n.url(path), &[], "x").await
                } else {
                    Client::default().get(&n.url(path)).await
                };
                if got.status >= 300 {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {} {}", got.status, got.text()));
                }
                done += 1;
            }
            done
        }));
    }
    let settle = || tokio::time::sleep(Duration::from_millis(400));
    settle().await;
    match outage {
        Outage::Killed => redis.kill(),
        Outage::Paused => redis.signal("-STOP"),
        Outage::Slowed => relay.set_delay(Duration::from_millis(400)),
    }
    // While Redis is away, a write through node 0 outdates what nodes 1
    // and 2 hold; they cannot hear of it yet.
    for n in nodes.iter() {
        Client::default().get(&n.url("/r/0")).await;
    }
    let put = Client::default()
        .send("PUT", &nodes[0].url("/r/0"), &[], "x")
        .await;
    assert_eq!(put.status, 204);
    settle().await;
    if matches!(outage, Outage::Slowed) {
        // Slow is not away: the write's invalidation reaches the other
        // nodes while Redis is still slow.
        for n in &nodes[1..] {
            let mut got = Client::default().get(&n.url("/r/0")).await;
            for _ in 0..100 {
                if got.text() == origin.current("/r/0") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                got = Client::default().get(&n.url("/r/0")).await;
            }
            assert_eq!(got.text(), origin.current("/r/0"), "{}", got.cache_status());
        }
    }
    match outage {
        Outage::Killed => redis.run(),
        Outage::Paused => redis.signal("-CONT"),
        Outage::Slowed => relay.set_delay(Duration::ZERO),
    }
    for n in nodes.iter() {
        eventually(n, "revcache_shared_healthy", 1.0).await;
        // A restarted Redis lost the stream: a gap. A paused one shorter
        // than a stream read kept it, and nobody could publish meanwhile.
        if matches!(outage, Outage::Killed) {
            eventually(n, "revcache_shared_gaps_total", 1.0).await;
        }
    }
    settle().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut requests = 0;
    for l in load {
        requests += l.await.unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} client errors: {errors:?}",
        errors.len()
    );
    assert!(requests > 100, "only {requests} requests");
    // Redis is back and the nodes read its stream: nothing outdated is
    // served anywhere, once the last writes' invalidations (a few
    // milliseconds behind, see ARCHITECTURE.md) reached every node. An
    // entry that outlived an invalidation would stay (max-age=600).
    for n in nodes.iter() {
        for path in &paths {
            let mut got = Client::default().get(&n.url(path)).await;
            for _ in 0..300 {
                if got.text() == origin.current(path) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                got = Client::default().get(&n.url(path)).await;
            }
            assert_eq!(got.text(), origin.current(path), "{}", got.cache_status());
        }
    }
    // What node 0 kept while Redis was away reached the others.
    for n in nodes.iter() {
        assert_eq!(
            metric(&metrics(n).await, "revcache_shared_unpublished"),
            0.0
        );
    }
}

#[tokio::test]
async fn a_node_back_from_a_restart_revalidates_what_its_disk_kept_while_it_was_away() {
    let redis = Redis::start();
    let origin = Versioned::start().await;
    let key = shared_key_file();
    let dir = temp_dir("restarting-node");
    let url = origin.origin.url();
    let a = node(&url, &redis, &key, |_| {}).await;
    let start_b = || {
        let dir = dir.clone();
        node(&url, &redis, &key, move |s| s.data_dir = dir)
    };
    let b = start_b().await;
    assert_eq!(
        Client::default().get(&b.url("/r/0")).await.text(),
        "/r/0 v0"
    );
    b.proxy.fills_idle().await;
    b.shutdown().await;
    // While B is down, the page changes and A purges it.
    let put = Client::default()
        .send("PUT", &a.url("/r/0"), &[], "x")
        .await;
    assert_eq!(put.status, 204);
    let b = start_b().await;
    let got = Client::default().get(&b.url("/r/0")).await;
    assert_eq!(got.text(), "/r/0 v1", "{}", got.cache_status());
    // Revalidated once, it answers from the cache again.
    let again = Client::default().get(&b.url("/r/0")).await;
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
}

#[tokio::test]
async fn a_revalidation_on_one_node_refreshes_the_entry_for_the_others() {
    let redis = Redis::start();
    // The origin's clock moves with the nodes' (its Date is what they age
    // entries by).
    let ahead = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let origin_ahead = ahead.clone();
    let origin = Origin::start(move |seen, _| {
        let now = std::time::SystemTime::now()
            + Duration::from_secs(origin_ahead.load(std::sync::atomic::Ordering::SeqCst));
        let current = seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"");
        let reply = if current {
            Reply::status(304)
        } else {
            Reply::ok("body")
        };
        reply
            .header("cache-control", "max-age=60")
            .header("etag", "\"v1\"")
            .header("date", httpdate::fmt_http_date(now))
    })
    .await;
    let nodes = three_nodes(&origin.url(), &redis).await;
    Client::default().get(&nodes[0].url("/p")).await;
    nodes[0].proxy.fills_idle().await;
    ahead.store(120, std::sync::atomic::Ordering::SeqCst);
    for n in &nodes {
        n.advance(Duration::from_secs(120));
    }
    // Node 0's copy is stale: it revalidates, and shares what the 304
    // refreshed.
    let got = Client::default().get(&nodes[0].url("/p")).await;
    assert!(
        got.cache_status().contains("fwd-status=304"),
        "{}",
        got.cache_status()
    );
    assert_eq!(origin.requests(), 2);
    eventually(&nodes[0], "revcache_shared_stored_total", 2.0).await;
    // The others find it fresh in the shared tier.
    for n in &nodes[1..] {
        let got = Client::default().get(&n.url("/p")).await;
        assert_eq!(got.text(), "body");
        assert_eq!(origin.requests(), 2, "{}", got.cache_status());
    }
}

#[tokio::test]
async fn a_gerrit_event_posted_to_one_node_invalidates_on_all() {
    let redis = Redis::start();
    let gerrit = fake_gerrit::FakeGerrit::start().await;
    let n = gerrit
        .create_change(fake_gerrit::NewChange {
            project: "infra".into(),
            branch: "main".into(),
            subject: "a change".into(),
            ..Default::default()
        })
        .await;
    let key = shared_key_file();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            node(&gerrit.url(), &redis, &key, |s| {
                s.routes[0].name = "gerrit".into();
                s.routes[0].dialect = DialectName::Gerrit;
                s.routes[0].events = Some(EventSettings {
                    trust: Some(Duration::from_secs(600)),
                    heartbeat: None,
                    command: None,
                    secret_file: None,
                });
            })
            .await,
        );
    }
    // Gerrit's webhook reaches one node only.
    gerrit.set_event_sink(Some(nodes[2].admin_url("/events/gerrit")));
    let alice = [("authorization", "Basic YWxpY2U6cHc=")];
    let path = format!("/a/changes/{n}");
    let status = |got: &support::Got| {
        let v: serde_json::Value =
            serde_json::from_str(got.text().trim_start_matches(")]}'")).unwrap();
        v["status"].as_str().unwrap().to_owned()
    };
    for rc in &nodes {
        let got = Client::default().get_with(&rc.url(&path), &alice).await;
        assert_eq!(status(&got), "NEW");
        rc.proxy.fills_idle().await;
    }
    // Trusted: every node answers without asking Gerrit.
    for rc in &nodes {
        let got = Client::default().get_with(&rc.url(&path), &alice).await;
        assert!(
            got.cache_status().contains("trusted"),
            "{}",
            got.cache_status()
        );
    }
    gerrit.merge(n).await;
    for rc in &nodes[..2] {
        eventually(rc, "revcache_invalidations_total{source=\"shared\"}", 1.0).await;
    }
    for rc in &nodes {
        let got = Client::default().get_with(&rc.url(&path), &alice).await;
        assert_eq!(status(&got), "MERGED", "{}", got.cache_status());
    }
}

/// A TCP relay between one node and Redis that can be cut: while cut it
/// keeps every connection open and passes nothing on (a partition, as
/// when a network path drops packets, not a refusal); healed, it passes
/// on what it held, as TCP's retransmissions would.
struct Relay {
    addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds each chunk waits before it is passed on (a slow path).
    delay: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, d) = (cut.clone(), delay.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (cut, delay) = (c.clone(), d.clone());
                tokio::spawn(async move {
                    Relay::wait_healed(&cut).await;
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(Relay::pass(cr, sw, cut.clone(), delay.clone()));
                    Relay::pass(sr, cw, cut, delay).await;
                });
            }
        });
        Relay { addr, cut, delay }
    }

    async fn wait_healed(cut: &std::sync::atomic::AtomicBool) {
        while cut.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn pass(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        cut: Arc<std::sync::atomic::AtomicBool>,
        delay: Arc<std::sync::atomic::AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let ms = delay.load(std::sync::atomic::Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Relay::wait_healed(&cut).await;
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }

    fn set_delay(&self, delay: Duration) {
        self.delay.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

/// Nodes reaching a Redis through a relay.
struct Through(String);

impl Backend for Through {
    fn settings(&self) -> SharedSettings {
        SharedSettings::for_url(self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_from_redis_answers_every_request_and_serves_nothing_stale_once_healed()
{
    let redis = Redis::start();
    let relay = Relay::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let relayed = format!("redis://{}/", relay.addr);
    a_partitioned_node_answers_and_heals(&redis, relayed, |cut| relay.set_cut(cut)).await;
}

/// The same with a real network path: Redis in a network namespace, the
/// node's link to it set down (packets dropped both ways) and up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_by_the_network_answers_every_request_and_serves_nothing_stale_once_healed()
 {
    let redis = NetnsRedis::start();
    let cut_off = redis.url(Link::CutOff);
    a_partitioned_node_answers_and_heals(&redis, cut_off, |cut| redis.set_cut(cut)).await;
}

/// Node 2 reaches Redis at `cut_off_url`, which `cut` partitions and heals.
async fn a_partitioned_node_answers_and_heals(
    redis: &impl Backend,
    cut_off_url: String,
    cut: impl Fn(bool),
) {
    let origin = Versioned::start().await;
    let url = origin.origin.url();
    let key = shared_key_file();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let cut_off_url = cut_off_url.clone();
        nodes.push(
            node(&url, redis, &key, move |s| {
                if i == 2 {
                    s.shared.as_mut().unwrap().url = cut_off_url;
                }
            })
            .await,
        );
    }
    let paths: Vec<String> = (0..4).map(|i| format!("/r/{i}")).collect();
    for n in &nodes {
        for path in &paths {
            assert_eq!(Client::default().get(&n.url(path)).await.status, 200);
        }
        n.proxy.fills_idle().await;
    }
    cut(true);
    // Writes through the other nodes while node 2 hears nothing; node 2
    // answers every request meanwhile.
    for (i, path) in paths.iter().enumerate() {
        let put = Client::default()
            .send("PUT", &nodes[i % 2].url(path), &[], "x")
            .await;
        assert_eq!(put.status, 204);
        for _ in 0..5 {
            let got = Client::default().get(&nodes[2].url(path)).await;
            assert_eq!(got.status, 200, "{}", got.text());
        }
        // The others share the write at once.
        eventually(
            &nodes[1 - i % 2],
            "revcache_shared_applied_total",
            (i / 2 + 1) as f64,
        )
        .await;
    }
    eventually(&nodes[2], "revcache_shared_errors_total", 1.0).await;
    cut(false);
    eventually(&nodes[2], "revcache_shared_gaps_total", 1.0).await;
    eventually(&nodes[2], "revcache_shared_healthy", 1.0).await;
    // Healed: node 2 revalidates what it held before it lost the stream.
    for path in &paths {
        let got = Client::default().get(&nodes[2].url(path)).await;
        assert_eq!(got.text(), origin.current(path), "{}", got.cache_status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_another_node_right_after_a_write_returns_gets_the_new_version() {
    let redis = Redis::start();
    let origin = Versioned::start().await;
    let nodes = three_nodes(&origin.origin.url(), &redis).await;
    // Every node has read the stream once: each is known to be alive.
    for n in &nodes {
        eventually(n, "revcache_shared_healthy", 1.0).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for round in 0..40 {
        let path = format!("/r/{}", round % 4);
        for n in &nodes {
            Client::default().get(&n.url(&path)).await;
        }
        let writer = &nodes[round % 3];
        let put = Client::default()
            .send("PUT", &writer.url(&path), &[], "x")
            .await;
        assert_eq!(put.status, 204);
        // At once, on the other nodes: the write's invalidation is applied.
        for n in &nodes {
            let got = Client::default().get(&n.url(&path)).await;
            assert_eq!(
                got.text(),
                origin.current(&path),
                "round {round}: {}",
                got.cache_status()
            );
        }
    }
    for n in &nodes {
        assert_eq!(
            metric(&metrics(n).await, "revcache_shared_ack_timeouts_total"),
            0.0
        );
    }
}
