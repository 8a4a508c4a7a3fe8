//! The nodes a benchmark puts between its client and its upstream: one
//! revcache, several independent ones, or several sharing one
//! `redis-server` through `[shared]`. It owns starting and stopping them
//! (and that Redis), and which node gets the next request or event; it
//! never looks at what they answer.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use revcache_http::{Server, Settings, SharedSettings};

/// How the nodes of one configuration relate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Topology {
    /// One node.
    One,
    /// Nodes that know nothing of each other: each receives every event
    /// (as each would run its own event feed), and a write through one
    /// reaches no other.
    Independent(usize),
    /// Nodes sharing one Redis: each event goes to one node (round-robin)
    /// and the shared tier carries its invalidations to the others.
    Shared(usize),
}

impl Topology {
    /// The three configurations the multi-node tables compare.
    pub const COMPARED: [Topology; 3] =
        [Topology::One, Topology::Independent(3), Topology::Shared(3)];

    pub fn nodes(self) -> usize {
        match self {
            Topology::One => 1,
            Topology::Independent(n) | Topology::Shared(n) => n,
        }
    }

    pub fn name(self) -> String {
        match self {
            Topology::One => "1 node".into(),
            Topology::Independent(n) => format!("{n} independent nodes"),
            Topology::Shared(n) => format!("{n} nodes, shared tier (one Redis)"),
        }
    }
}

/// Hands out its items in turn, from any task.
pub struct RoundRobin<T> {
    items: Vec<T>,
    next: AtomicUsize,
}

impl<T> RoundRobin<T> {
    pub fn new(items: Vec<T>) -> Self {
        assert!(!items.is_empty(), "nothing to hand out");
        RoundRobin {
            items,
            next: AtomicUsize::new(0),
        }
    }

    pub fn pick(&self) -> &T {
        &self.items[self.next.fetch_add(1, Ordering::Relaxed) % self.items.len()]
    }
}

/// A `redis-server` on a free loopback port, without persistence; killed
/// when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        wait_until_listening(port, "redis-server");
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blocks until a server started as `what` accepts connections on the
/// loopback `port` (at most ten seconds).
pub fn wait_until_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Running revcache nodes, in-process; stopped (and their data dirs
/// removed) when dropped.
pub struct Nodes {
    topology: Topology,
    proxies: Vec<String>,
    admins: Vec<String>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    dir: PathBuf,
    _redis: Option<Redis>,
}

impl Nodes {
    /// Starts `topology`'s nodes from `settings` (listeners and data dir
    /// are set here); `tag` names their directory.
    pub async fn start(settings: &Settings, topology: Topology, tag: &str) -> Nodes {
        let dir = std::env::temp_dir().join(format!("revcache-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        let redis = matches!(topology, Topology::Shared(_)).then(Redis::start);
        let mut nodes = Nodes {
            topology,
            proxies: Vec::new(),
            admins: Vec::new(),
            stops: Vec::new(),
            dir,
            _redis: None,
        };
        for i in 0..topology.nodes() {
            let mut s = settings.clone();
            s.listen = "127.0.0.1:0".parse().expect("addr");
            s.admin_listen = "127.0.0.1:0".parse().expect("addr");
            s.data_dir = nodes.dir.join(format!("node{i}"));
            if let Some(redis) = &redis {
                s.shared = Some(SharedSettings::for_url(format!(
                    "redis://127.0.0.1:{}/",
                    redis.port
                )));
                s.partition.key_file = Some(nodes.dir.join("partition.key"));
            }
            let server = Server::bind(s).await.expect("revcache starts");
            nodes
                .proxies
                .push(format!("http://{}", server.local_addr()));
            nodes.admins.push(format!("http://{}", server.admin_addr()));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            nodes.stops.push(stop);
        }
        nodes._redis = redis;
        nodes
    }

    /// The proxy listeners' base URLs (`http://addr`), in node order.
    pub fn proxies(&self) -> &[String] {
        &self.proxies
    }

    /// The admin listeners' base URLs, in node order.
    pub fn admins(&self) -> &[String] {
        &self.admins
    }

    /// Where events go, as groups taken in turn: each event goes to every
    /// URL (`admin` + `path`) of the next group. Independent nodes each
    /// receive every event; shared nodes one node each.
    pub fn event_groups(&self, path: &str) -> Vec<Vec<String>> {
        let urls = self.admins.iter().map(|a| format!("{a}{path}"));
        match self.topology {
            Topology::Shared(_) => urls.map(|u| vec![u]).collect(),
            Topology::One | Topology::Independent(_) => vec![urls.collect()],
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stops.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
