//! Runtime settings of a revcache instance, already validated.
//!
//! The binary builds these from flags and the TOML config (and names the
//! offending key when a value is wrong); an embedding program builds them
//! in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

pub use crate::dialect::registry::DialectOptions;
use crate::dialect::registry::{DIALECTS, DialectSpec};
pub use crate::policy::Sharing;
pub use crate::proxy::egress::ProxySetting;

/// Debug output names whether a token is set, never the token (see
/// [`redacted`]).
#[derive(Clone, PartialEq)]
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
    pub forwarding: ForwardingSettings,
    /// A TLS listener beside the plain one, when configured.
    pub tls: Option<ListenerTlsSettings>,
    pub admin: AdminSettings,
    /// The shared tier (L3) on Redis/Valkey (`[shared]`).
    pub shared: Option<revcache_shared::SharedSettings>,
    /// One line per proxied request (`[access_log]`); off when `None`.
    pub access_log: Option<AccessLogSettings>,
}

/// Where the access log goes and how its lines read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub destination: AccessLogDestination,
    pub format: AccessLogFormat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogDestination {
    Stdout,
    /// Appended to; reopened on reload and SIGUSR1 (logrotate).
    File(PathBuf),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// Apache/nginx "combined", then revcache's own fields as `key="value"`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl AccessLogFormat {
    pub const KNOWN: &'static [&'static str] = &["combined", "json"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "combined" => Some(AccessLogFormat::Combined),
            "json" => Some(AccessLogFormat::Json),
            _ => None,
        }
    }
}

/// Who may use the admin API besides `admin_token`'s holder, and how many
/// connections its listener takes. Debug output never shows the tokens.
#[derive(Clone, PartialEq)]
pub struct AdminSettings {
    /// Connections the admin listener serves at once (its own cap, so a
    /// full proxy listener leaves the admin API answering).
    pub max_connections: usize,
    /// Bearer token accepted on `POST /events/<route>` (webhook senders),
    /// besides `admin_token`.
    pub events_token: Option<String>,
    /// Bearer token accepted on `/purge` and `/inspect`, besides `admin_token`.
    pub purge_token: Option<String>,
    /// Host names (besides IP addresses of the listener, loopback and
    /// `localhost`) a request's `Host` may carry.
    pub allowed_hosts: Vec<String>,
    /// Serve a non-loopback admin listener without `admin_token`.
    pub allow_remote_without_token: bool,
}

/// A secret as Debug output may show it: whether it is set.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("admin_token", &redacted(&self.admin_token))
            .field("data_dir", &self.data_dir)
            .field("routes", &self.routes)
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .field("disk", &self.disk)
            .field("partition", &self.partition)
            .field("forwarding", &self.forwarding)
            .field("tls", &self.tls)
            .field("admin", &self.admin)
            .field("shared", &self.shared)
            .field("access_log", &self.access_log)
            .finish()
    }
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("max_connections", &self.max_connections)
            .field("events_token", &redacted(&self.events_token))
            .field("purge_token", &redacted(&self.purge_token))
            .field("allowed_hosts", &self.allowed_hosts)
            .field(
                "allow_remote_without_token",
                &self.allow_remote_without_token,
            )
            .finish()
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            max_connections: 64,
            events_token: None,
            purge_token: None,
            allowed_hosts: Vec::new(),
            allow_remote_without_token: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
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
    /// Whether paths with `%2F`, `%5C` or `\` reach this route's upstream.
    pub encoded_slashes: EncodedSlashes,
    /// The route's event feed, for dialects that have one.
    pub events: Option<EventSettings>,
    /// Options of the route's dialect (`[routes.options]`), checked by the
    /// dialect when the route is built.
    pub options: DialectOptions,
    pub sharing: Sharing,
    /// TLS to an `https://` upstream.
    pub tls: UpstreamTls,
    pub upstream_http2: UpstreamHttp2,
    /// How connections reach the upstream (directly, or a CONNECT proxy).
    pub proxy: ProxySetting,
}

/// The TLS listener (`[tls]`): certificate chain and key (PEM), re-read on
/// SIGHUP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTlsSettings {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// TLS material of a route's `https://` upstream. Certificates are always
/// verified: against the system trust store, or only `ca_file`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and key for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Whether a route speaks HTTP/2 to its upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamHttp2 {
    /// Offered by ALPN on `https://`; HTTP/1.1 on `http://`.
    #[default]
    Auto,
    Never,
    /// HTTP/2 only (prior knowledge on `http://`).
    Always,
}

/// An upstream change-event feed: webhook POSTs to `/events/<route>` on the
/// admin listener, and optionally a command whose output lines are events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSettings {
    /// Serve covered entries without asking for up to this long while the
    /// feed is healthy. `None`: always revalidate (events still invalidate).
    pub trust: Option<Duration>,
    /// A webhook feed silent for longer than this is unhealthy.
    pub heartbeat: Option<Duration>,
    /// A command printing one JSON event per line (run with `sh -c`).
    pub command: Option<String>,
    /// The file holding the secret webhook deliveries are signed with
    /// (read when the route is built; the secret is never logged).
    pub secret_file: Option<PathBuf>,
}

/// What a route does with a path holding an encoded slash or backslash
/// (`%2F`, `%5C`, `\`): one segment to revcache, but two to an upstream
/// that decodes it before resolving paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// 400 (the default, except for `gerrit` routes).
    Reject,
    /// Forward as they are (Gerrit encodes project names and file paths so).
    Keep,
}

impl EncodedSlashes {
    pub const KNOWN: &'static [&'static str] = &["reject", "keep"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reject" => Some(EncodedSlashes::Reject),
            "keep" => Some(EncodedSlashes::Keep),
            _ => None,
        }
    }

    /// The default for a dialect: Gerrit's documented URLs need them.
    pub fn default_for(dialect: DialectName) -> Self {
        match dialect {
            DialectName::Gerrit => EncodedSlashes::Keep,
            DialectName::Http | DialectName::Webdav | DialectName::Github => EncodedSlashes::Reject,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialectName {
    Http,
    Gerrit,
    Webdav,
    Github,
}

/// Names a row of the dialect table (`dialect::registry`), which says
/// what each dialect accepts and how it is built.
impl DialectName {
    pub const ALL: [DialectName; 4] = [
        DialectName::Http,
        DialectName::Gerrit,
        DialectName::Webdav,
        DialectName::Github,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DialectName::Http => "http",
            DialectName::Gerrit => "gerrit",
            DialectName::Webdav => "webdav",
            DialectName::Github => "github",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        DialectSpec::named(name).map(|d| d.name)
    }

    /// The names the config accepts, for error messages.
    pub fn known() -> String {
        DIALECTS
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the dialect takes an event feed.
    pub fn has_events(self) -> bool {
        DialectSpec::of(self).has_events
    }

    /// The dialect's row in the table.
    pub fn spec(self) -> &'static DialectSpec {
        DialectSpec::of(self)
    }
}

#[derive(Clone, Debug, PartialEq)]
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
    /// Bytes all fills in progress may hold (bodies being kept, chunks
    /// queued for slow clients); a fill that finds no room is passed on
    /// uncached.
    pub max_fill_bytes: u64,
    /// How long a collapsed request waits for the fetch it joined before
    /// it fetches on its own.
    pub collapsed_wait_timeout: Duration,
    /// Connections the proxy listener serves at once; beyond, new ones
    /// wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a request head: its first
    /// one (protocol detection included) and, on HTTP/1.1, each next one.
    pub request_header_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (HTTP/2 connections and HTTP/1.1 keep-alive alike).
    pub idle_connection_timeout: Duration,
    /// How long a body revcache reads whole before acting on it (a
    /// PROPFIND's, an event batch POSTed to the admin API) may take.
    pub request_body_timeout: Duration,
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
            max_fill_bytes: 64 << 20,
            collapsed_wait_timeout: Duration::from_secs(30),
            max_connections: 1024,
            request_header_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CacheSettings {
    /// Byte budget of the memory tier.
    pub memory_limit: u64,
    pub range_miss: RangeMiss,
    /// Targeted cache-control fields revcache obeys (RFC 9213), most
    /// specific first: the first with a valid value replaces
    /// `Cache-Control` for storing and freshness.
    pub targeted_cache_control: Vec<http::HeaderName>,
    /// Whether clients receive the targeted fields (RFC 9213 leaves them
    /// in place: a field can target several caches on the way).
    pub forward_targeted_cache_control: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory_limit: 256 << 20,
            range_miss: RangeMiss::default(),
            targeted_cache_control: vec![http::HeaderName::from_static("cdn-cache-control")],
            forward_targeted_cache_control: true,
        }
    }
}

/// What a Range miss does (`cache.range_miss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RangeMiss {
    /// Fetch the whole representation once (stored when it may be, up to
    /// `limits.max_cacheable_body_bytes`) and answer the range from it.
    #[default]
    FetchWhole,
    /// Forward the range request as it is; only stored entries answer
    /// ranges.
    Forward,
}

/// The disk tier (L2) in the data dir.
#[derive(Clone, Debug, PartialEq)]
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
    /// Memory the index keeps of its pages.
    pub index_cache: u64,
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
            index_cache: d.index_cache,
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
        c.index_cache = self.index_cache;
        c.access_bucket = self.access_bucket;
        c.sweep_interval = self.sweep_interval;
        c
    }
}

/// Request parts, besides `Authorization`, that identify a caller.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionSettings {
    pub cookies: Vec<String>,
    pub headers: Vec<http::HeaderName>,
    /// Query parameters that carry credentials (`access_token`): partition
    /// material, and never keyed, stored, shown or logged in clear.
    pub query_params: Vec<String>,
    /// Headers whose names look like credentials but are not (exceptions
    /// to `credential::looks_like_credential`).
    pub not_credentials: Vec<http::HeaderName>,
    /// The partition key's file, instead of `partition.key` in the data
    /// dir: every node of a shared tier needs the same key.
    pub key_file: Option<PathBuf>,
}

impl Default for PartitionSettings {
    fn default() -> Self {
        PartitionSettings {
            cookies: Vec::new(),
            headers: Vec::new(),
            query_params: vec!["access_token".into(), "private_token".into()],
            not_credentials: Vec::new(),
            key_file: None,
        }
    }
}

/// Request headers handled by revcache itself rather than passed on.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardingSettings {
    /// Removed from every request before it is keyed or forwarded: headers
    /// that make an upstream or a framework treat the request as something
    /// it is not. `Forwarded` and `X-Forwarded-For` are then set by revcache.
    pub strip_request_headers: Vec<http::HeaderName>,
}

impl Default for ForwardingSettings {
    fn default() -> Self {
        let strip = [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x-forwarded-scheme",
            "x-real-ip",
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ];
        ForwardingSettings {
            strip_request_headers: strip
                .iter()
                .map(|n| http::HeaderName::from_static(n))
                .collect(),
        }
    }
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
                encoded_slashes: EncodedSlashes::Reject,
                events: None,
                options: Default::default(),
                sharing: Sharing::default(),
                tls: UpstreamTls::default(),
                upstream_http2: UpstreamHttp2::default(),
                proxy: ProxySetting::default(),
            }],
            limits: Limits::default(),
            cache: CacheSettings::default(),
            disk: DiskSettings::default(),
            partition: PartitionSettings::default(),
            forwarding: ForwardingSettings::default(),
            tls: None,
            admin: AdminSettings::default(),
            shared: None,
            access_log: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_token() {
        let mut s = Settings::for_upstream("http://127.0.0.1:1".parse().unwrap());
        s.admin_token = Some("admin-s3cret".into());
        s.admin.events_token = Some("events-s3cret".into());
        s.admin.purge_token = Some("purge-s3cret".into());
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("admin_token: Some(\"<redacted>\")"),
            "{shown}"
        );
    }
}
