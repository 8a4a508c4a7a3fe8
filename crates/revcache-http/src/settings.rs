//! Runtime settings of a revcache instance, already validated.
//!
//! The binary builds these from flags and the TOML config (and names the
//! offending key when a value is wrong); an embedding program builds them
//! in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Bearer token the admin API requires, when set.
    pub admin_token: Option<String>,
    pub data_dir: PathBuf,
    pub routes: Vec<RouteSettings>,
    pub limits: Limits,
    pub cache: CacheSettings,
    pub disk: DiskSettings,
    pub partition: PartitionSettings,
}

#[derive(Clone, Debug)]
pub struct RouteSettings {
    /// Name used in logs, metrics and `/events/<name>`.
    pub name: String,
    /// Match only this Host (without port, lower case); any host when `None`.
    pub host: Option<String>,
    /// Match only request paths starting with this prefix.
    pub path_prefix: String,
    /// `http://host[:port][/base]`.
    pub upstream: Uri,
    pub dialect: DialectName,
    /// Send the client's Host upstream instead of the upstream's authority.
    pub preserve_host: bool,
    /// The route's event feed, for dialects that have one.
    pub events: Option<EventSettings>,
}

/// An upstream change-event feed: webhook POSTs to `/events/<route>` on the
/// admin listener, and optionally a command whose output lines are events.
#[derive(Clone, Debug, Default)]
pub struct EventSettings {
    /// Serve covered entries without asking for up to this long while the
    /// feed is healthy. `None`: always revalidate (events still invalidate).
    pub trust: Option<Duration>,
    /// A webhook feed silent for longer than this is unhealthy.
    pub heartbeat: Option<Duration>,
    /// A command printing one JSON event per line (run with `sh -c`).
    pub command: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialectName {
    Http,
    Gerrit,
    Webdav,
}

impl DialectName {
    pub const KNOWN: &'static [&'static str] = &["http", "gerrit", "webdav"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "http" => Some(DialectName::Http),
            "gerrit" => Some(DialectName::Gerrit),
            "webdav" => Some(DialectName::Webdav),
            _ => None,
        }
    }

    /// Whether the dialect takes an event feed.
    pub fn has_events(self) -> bool {
        matches!(self, DialectName::Gerrit | DialectName::Webdav)
    }
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Total size of request header names and values (431 beyond).
    pub max_request_header_bytes: usize,
    /// Largest request body forwarded (413 beyond).
    pub max_request_body_bytes: u64,
    /// Largest response body stored; larger ones stream through uncached.
    pub max_cacheable_body_bytes: u64,
    pub upstream_connect_timeout: Duration,
    /// Longest wait for response headers, and for each body chunk.
    pub upstream_read_timeout: Duration,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_header_bytes: 32 << 10,
            max_request_body_bytes: 64 << 20,
            max_cacheable_body_bytes: 8 << 20,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_read_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Byte budget of the memory tier.
    pub memory_limit: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory_limit: 256 << 20,
        }
    }
}

/// The disk tier (L2) in the data dir.
#[derive(Clone, Debug)]
pub struct DiskSettings {
    pub enabled: bool,
    /// Opt-in: a disk that fails at start-up stops revcache, and `/readyz`
    /// answers 503 while a disk failure keeps the tier disabled. By
    /// default revcache serves from memory instead.
    pub required: bool,
    /// Byte budget (index plus body files).
    pub limit: u64,
    /// Entries unused for this long are swept.
    pub max_idle: Duration,
    /// Bodies up to this size live in the index, larger ones in files.
    pub inline_threshold: u64,
    /// Granularity of recorded access times.
    pub access_bucket: Duration,
    pub sweep_interval: Duration,
}

impl Default for DiskSettings {
    fn default() -> Self {
        let d = revcache_core::DiskConfig::new("");
        DiskSettings {
            enabled: true,
            required: false,
            limit: d.byte_limit,
            max_idle: d.max_idle,
            inline_threshold: d.inline_threshold,
            access_bucket: d.access_bucket,
            sweep_interval: d.sweep_interval,
        }
    }
}

impl DiskSettings {
    pub fn config(&self, data_dir: &std::path::Path) -> revcache_core::DiskConfig {
        let mut c = revcache_core::DiskConfig::new(data_dir);
        c.byte_limit = self.limit;
        c.max_idle = self.max_idle;
        c.inline_threshold = self.inline_threshold;
        c.access_bucket = self.access_bucket;
        c.sweep_interval = self.sweep_interval;
        c
    }
}

/// Request parts, besides `Authorization`, that identify a caller.
#[derive(Clone, Debug, Default)]
pub struct PartitionSettings {
    pub cookies: Vec<String>,
    pub headers: Vec<http::HeaderName>,
}

impl Settings {
    /// One `http` route to `upstream` with every other setting at its default.
    pub fn for_upstream(upstream: Uri) -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_token: None,
            data_dir: PathBuf::from("revcache-data"),
            routes: vec![RouteSettings {
                name: "default".into(),
                host: None,
                path_prefix: "/".into(),
                upstream,
                dialect: DialectName::Http,
                preserve_host: false,
                events: None,
            }],
            limits: Limits::default(),
            cache: CacheSettings::default(),
            disk: DiskSettings::default(),
            partition: PartitionSettings::default(),
        }
    }
}
