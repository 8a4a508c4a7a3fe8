//! The TOML config file and how it and the flags become [`Settings`].
//!
//! Every flag has a config key; flags win. Every value is checked here and
//! an error names the key (`limits.upstream_read_timeout: ...`) and what a
//! valid value looks like.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use revcache_http::{
    AccessLogDestination, AccessLogFormat, AccessLogSettings, AdminSettings, CacheSettings,
    DialectName, DiskSettings, EncodedSlashes, EventSettings, ForwardingSettings, Limits,
    ListenerTlsSettings, PartitionSettings, ProxySetting, RangeMiss, RouteSettings, Settings,
    Sharing, UpstreamHttp2, UpstreamTls,
};
use serde::Deserialize;

use crate::cli::{LogFormat, ServeArgs};

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    upstream: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    #[serde(default)]
    admin: AdminConfig,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    disk: DiskConfig,
    #[serde(default)]
    partition: PartitionConfig,
    #[serde(default)]
    forwarding: ForwardingConfig,
    tls: Option<ListenerTlsConfig>,
    shared: Option<SharedConfig>,
    access_log: Option<AccessLogConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

/// `[shared]`: the shared tier on Redis/Valkey.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SharedConfig {
    /// One server, or with `cluster = true` a Redis Cluster's seed nodes.
    urls: Vec<String>,
    #[serde(default)]
    cluster: bool,
    key_prefix: Option<String>,
    max_entry_bytes: Option<Quantity>,
    timeout: Option<Quantity>,
    lock_ttl: Option<Quantity>,
    max_ttl: Option<Quantity>,
    /// `rediss://`: CAs to trust instead of the system's (PEM).
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AccessLogConfig {
    path: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct AdminConfig {
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    events_token: Option<String>,
    events_token_file: Option<PathBuf>,
    purge_token: Option<String>,
    purge_token_file: Option<PathBuf>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allow_remote_without_token: bool,
    max_connections: Option<i64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct CacheConfig {
    memory_limit: Option<Quantity>,
    /// `"fetch-whole"` (default) or `"forward"`.
    range_miss: Option<String>,
    targeted_cache_control: Option<Vec<String>>,
    forward_targeted_cache_control: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct DiskConfig {
    enabled: Option<bool>,
    required: Option<bool>,
    limit: Option<Quantity>,
    max_idle: Option<Quantity>,
    inline_threshold: Option<Quantity>,
    index_cache: Option<Quantity>,
    access_bucket: Option<Quantity>,
    sweep_interval: Option<Quantity>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct LimitsConfig {
    max_request_header_bytes: Option<Quantity>,
    max_request_body_bytes: Option<Quantity>,
    max_cacheable_body_bytes: Option<Quantity>,
    upstream_connect_timeout: Option<Quantity>,
    upstream_read_timeout: Option<Quantity>,
    shutdown_grace: Option<Quantity>,
    max_fill_bytes: Option<Quantity>,
    collapsed_wait_timeout: Option<Quantity>,
    max_connections: Option<i64>,
    request_header_timeout: Option<Quantity>,
    idle_connection_timeout: Option<Quantity>,
    request_body_timeout: Option<Quantity>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct PartitionConfig {
    #[serde(default)]
    cookies: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    query_params: Option<Vec<String>>,
    #[serde(default)]
    not_credentials: Vec<String>,
    key_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ListenerTlsConfig {
    listen: Option<String>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct RouteTlsConfig {
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ForwardingConfig {
    strip_request_headers: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    name: Option<String>,
    upstream: String,
    host: Option<String>,
    path_prefix: Option<String>,
    dialect: Option<String>,
    #[serde(default)]
    preserve_host: bool,
    sharing: Option<String>,
    encoded_slashes: Option<String>,
    #[serde(default)]
    tls: RouteTlsConfig,
    upstream_http2: Option<String>,
    proxy: Option<String>,
    events: Option<EventsConfig>,
    /// The dialect's own options; values are strings.
    #[serde(default)]
    options: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct EventsConfig {
    trust: Option<Quantity>,
    heartbeat: Option<Quantity>,
    command: Option<String>,
    secret_file: Option<PathBuf>,
}

/// A size or a duration: a bare integer (bytes, seconds) or a string with a unit.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Quantity {
    Number(i64),
    Text(String),
}

/// Settings plus what only the binary needs.
pub struct Resolved {
    pub settings: Settings,
    pub log_format: LogFormat,
    pub log_level: Option<String>,
}

pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

/// What the settings are for: serving needs an upstream, maintenance
/// commands (sweep, inspect) do not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    Maintenance,
}

pub fn resolve(file: ConfigFile, args: &ServeArgs, purpose: Purpose) -> anyhow::Result<Resolved> {
    let listen = match (args.listen, &file.listen) {
        (Some(a), _) => a,
        (None, Some(s)) => addr("listen", s)?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let admin_listen = match (args.admin_listen, &file.admin.listen) {
        (Some(a), _) => a,
        (None, Some(s)) => addr("admin.listen", s)?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 9090)),
    };
    if listen == admin_listen && listen.port() != 0 {
        bail!("listen and admin.listen are both {listen}; give them different addresses");
    }
    let token_file = args
        .admin_token_file
        .as_ref()
        .or(file.admin.token_file.as_ref());
    let admin_token = match (&args.admin_token, token_file, file.admin.token.clone()) {
        (Some(t), _, _) if t.trim().is_empty() => bail!("--admin-token: must not be empty"),
        (Some(t), _, _) => Some(t.trim().to_owned()),
        (None, file_path, inline) => token("admin.token", file_path, inline)?,
    };
    let admin = admin_settings(&file.admin)?;
    if !admin_listen.ip().is_loopback()
        && admin_token.is_none()
        && !admin.allow_remote_without_token
        && purpose == Purpose::Serve
    {
        bail!(
            "admin.listen: {admin_listen} is not a loopback address and no admin token is set; set admin.token_file (or --admin-token-file), listen on 127.0.0.1, or set admin.allow_remote_without_token = true"
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("revcache-data"));

    let defaults = Limits::default();
    let l = &file.limits;
    let limits = Limits {
        max_request_header_bytes: size_opt(
            "limits.max_request_header_bytes",
            &l.max_request_header_bytes,
            defaults.max_request_header_bytes as u64,
        )? as usize,
        max_request_body_bytes: size_opt(
            "limits.max_request_body_bytes",
            &l.max_request_body_bytes,
            defaults.max_request_body_bytes,
        )?,
        max_cacheable_body_bytes: size_opt(
            "limits.max_cacheable_body_bytes",
            &l.max_cacheable_body_bytes,
            defaults.max_cacheable_body_bytes,
        )?,
        upstream_connect_timeout: duration_opt(
            "limits.upstream_connect_timeout",
            &l.upstream_connect_timeout,
            defaults.upstream_connect_timeout,
        )?,
        upstream_read_timeout: duration_opt(
            "limits.upstream_read_timeout",
            &l.upstream_read_timeout,
            defaults.upstream_read_timeout,
        )?,
        shutdown_grace: duration_opt(
            "limits.shutdown_grace",
            &l.shutdown_grace,
            defaults.shutdown_grace,
        )?,
        max_fill_bytes: size_opt(
            "limits.max_fill_bytes",
            &l.max_fill_bytes,
            defaults.max_fill_bytes,
        )?,
        collapsed_wait_timeout: duration_opt(
            "limits.collapsed_wait_timeout",
            &l.collapsed_wait_timeout,
            defaults.collapsed_wait_timeout,
        )?,
        max_connections: count(
            "limits.max_connections",
            l.max_connections,
            defaults.max_connections,
        )?,
        request_header_timeout: duration_opt(
            "limits.request_header_timeout",
            &l.request_header_timeout,
            defaults.request_header_timeout,
        )?,
        idle_connection_timeout: duration_opt(
            "limits.idle_connection_timeout",
            &l.idle_connection_timeout,
            defaults.idle_connection_timeout,
        )?,
        request_body_timeout: duration_opt(
            "limits.request_body_timeout",
            &l.request_body_timeout,
            defaults.request_body_timeout,
        )?,
    };
    if limits.max_fill_bytes < limits.max_cacheable_body_bytes {
        bail!(
            "limits.max_fill_bytes ({}) must be at least limits.max_cacheable_body_bytes ({}), or no body that large is ever stored",
            limits.max_fill_bytes,
            limits.max_cacheable_body_bytes
        );
    }
    if limits.max_request_header_bytes < 1024 {
        bail!("limits.max_request_header_bytes: must be at least 1KiB");
    }
    for (key, d) in [
        (
            "limits.upstream_connect_timeout",
            limits.upstream_connect_timeout,
        ),
        ("limits.upstream_read_timeout", limits.upstream_read_timeout),
        (
            "limits.request_header_timeout",
            limits.request_header_timeout,
        ),
        (
            "limits.idle_connection_timeout",
            limits.idle_connection_timeout,
        ),
        ("limits.request_body_timeout", limits.request_body_timeout),
    ] {
        if d.is_zero() {
            bail!("{key}: must be longer than zero");
        }
    }

    let memory_limit = match &args.memory_limit {
        Some(s) => parse_size(s).map_err(|e| anyhow!("--memory-limit: {e}"))?,
        None => size_opt(
            "cache.memory_limit",
            &file.cache.memory_limit,
            CacheSettings::default().memory_limit,
        )?,
    };
    if memory_limit < 1 << 20 {
        bail!("cache.memory_limit: must be at least 1MiB");
    }
    if limits.max_cacheable_body_bytes > memory_limit / 4 {
        bail!(
            "limits.max_cacheable_body_bytes ({}) must be at most a quarter of cache.memory_limit ({memory_limit})",
            limits.max_cacheable_body_bytes
        );
    }

    let headers = header_names("partition.headers", &file.partition.headers)?;
    let not_credentials =
        header_names("partition.not_credentials", &file.partition.not_credentials)?;
    let mut partition = PartitionSettings {
        cookies: file.partition.cookies.clone(),
        headers,
        not_credentials,
        key_file: file.partition.key_file.clone(),
        ..PartitionSettings::default()
    };
    let shared = match &file.shared {
        None => None,
        Some(c) => Some(shared_settings(c)?),
    };
    if let Some(params) = &file.partition.query_params {
        for (i, p) in params.iter().enumerate() {
            if p.is_empty() || p.contains(['&', '=', '?', '#']) {
                bail!("partition.query_params[{i}]: {p:?} is not a query parameter name");
            }
        }
        partition.query_params = params.clone();
    }
    let mut forwarding = ForwardingSettings::default();
    if let Some(strip) = &file.forwarding.strip_request_headers {
        forwarding.strip_request_headers = header_names("forwarding.strip_request_headers", strip)?;
        for name in &forwarding.strip_request_headers {
            if name == http::header::HOST || name == http::header::AUTHORIZATION {
                bail!(
                    "forwarding.strip_request_headers: {name} cannot be stripped (revcache routes and partitions by it)"
                );
            }
        }
    }
    for (i, c) in file.partition.cookies.iter().enumerate() {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            bail!("partition.cookies[{i}]: {c:?} is not a valid cookie name");
        }
    }

    let disk = disk_settings(&file.disk, args)?;
    let access_log = file.access_log.as_ref().map(access_log).transpose()?;
    let routes = match routes(
        args.upstream.as_deref().or(file.upstream.as_deref()),
        &file.routes,
        args.upstream.is_some(),
    ) {
        Ok(r) => r,
        Err(_) if purpose == Purpose::Maintenance => Vec::new(),
        Err(e) => return Err(e),
    };

    Ok(Resolved {
        settings: Settings {
            listen,
            admin_listen,
            tls: match &file.tls {
                None => None,
                Some(t) => Some(ListenerTlsSettings {
                    listen: addr(
                        "tls.listen",
                        t.listen.as_deref().unwrap_or("127.0.0.1:8443"),
                    )?,
                    cert_file: t.cert_file.clone(),
                    key_file: t.key_file.clone(),
                }),
            },
            admin_token,
            data_dir,
            routes,
            limits,
            cache: cache_settings(&file.cache, memory_limit)?,
            disk,
            partition,
            forwarding,
            admin,
            shared,
            access_log,
        },
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
        log_level: args.log_level.clone().or(file.log_level),
    })
}

/// Header names of a config list, each error naming its index.
fn cache_settings(c: &CacheConfig, memory_limit: u64) -> anyhow::Result<CacheSettings> {
    let defaults = CacheSettings::default();
    let range_miss = match c.range_miss.as_deref() {
        None => defaults.range_miss,
        Some("fetch-whole") => RangeMiss::FetchWhole,
        Some("forward") => RangeMiss::Forward,
        Some(other) => {
            bail!("cache.range_miss: {other:?} is neither \"fetch-whole\" nor \"forward\"")
        }
    };
    let targeted_cache_control = match &c.targeted_cache_control {
        Some(names) => header_names("cache.targeted_cache_control", names)?,
        None => defaults.targeted_cache_control,
    };
    Ok(CacheSettings {
        memory_limit,
        range_miss,
        targeted_cache_control,
        forward_targeted_cache_control: c
            .forward_targeted_cache_control
            .unwrap_or(defaults.forward_targeted_cache_control),
    })
}

fn header_names(key: &str, names: &[String]) -> anyhow::Result<Vec<http::HeaderName>> {
    names
        .iter()
        .enumerate()
        .map(|(i, h)| {
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| anyhow!("{key}[{i}]: {h:?} is not a valid header name"))
        })
        .collect()
}

fn disk_settings(d: &DiskConfig, args: &ServeArgs) -> anyhow::Result<DiskSettings> {
    let defaults = DiskSettings::default();
    let limit = match &args.disk_limit {
        Some(s) => parse_size(s).map_err(|e| anyhow!("--disk-limit: {e}"))?,
        None => size_opt("disk.limit", &d.limit, defaults.limit)?,
    };
    let max_idle = match &args.disk_max_idle {
        Some(s) => parse_duration(s).map_err(|e| anyhow!("--disk-max-idle: {e}"))?,
        None => duration_opt("disk.max_idle", &d.max_idle, defaults.max_idle)?,
    };
    let access_bucket = period_opt(
        "disk.access_bucket",
        &d.access_bucket,
        defaults.access_bucket,
    )?;
    let sweep_interval = period_opt(
        "disk.sweep_interval",
        &d.sweep_interval,
        defaults.sweep_interval,
    )?;
    let inline_threshold = size_opt(
        "disk.inline_threshold",
        &d.inline_threshold,
        defaults.inline_threshold,
    )?;
    if inline_threshold > 1 << 20 {
        bail!("disk.inline_threshold: must be at most 1MiB (larger bodies belong in files)");
    }
    let index_cache = size_opt("disk.index_cache", &d.index_cache, defaults.index_cache)?;
    if index_cache < 1 << 20 {
        bail!("disk.index_cache: must be at least 1MiB");
    }
    Ok(DiskSettings {
        enabled: !args.no_disk && d.enabled.unwrap_or(true),
        required: d.required.unwrap_or(false),
        limit,
        max_idle,
        inline_threshold,
        index_cache,
        access_bucket,
        sweep_interval,
    })
}

fn routes(
    upstream: Option<&str>,
    configured: &[RouteConfig],
    from_flag: bool,
) -> anyhow::Result<Vec<RouteSettings>> {
    let mut out = Vec::new();
    for (i, r) in configured.iter().enumerate() {
        let key = |field: &str| format!("routes[{i}].{field}");
        let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "{}: {name:?} must be letters, digits, '-' or '_'",
                key("name")
            );
        }
        if out.iter().any(|o: &RouteSettings| o.name == name) {
            bail!("{}: another route is already named {name:?}", key("name"));
        }
        let path_prefix = r.path_prefix.clone().unwrap_or_else(|| "/".into());
        if !path_prefix.starts_with('/') {
            bail!(
                "{}: {path_prefix:?} must start with '/'",
                key("path_prefix")
            );
        }
        // Requests are routed by their normalised path: a prefix in any
        // other form would never match.
        match revcache_http::normalize_path(&path_prefix) {
            Ok(normal) if normal == path_prefix.as_str() => {}
            Ok(normal) => bail!(
                "{}: {path_prefix:?} is not in normal form; use {normal:?}",
                key("path_prefix")
            ),
            Err(e) => bail!("{}: {path_prefix:?}: {e}", key("path_prefix")),
        }
        let dialect_name = r.dialect.as_deref().unwrap_or("http");
        let dialect = DialectName::parse(dialect_name).ok_or_else(|| {
            anyhow!(
                "{}: unknown dialect {dialect_name:?} (available: {})",
                key("dialect"),
                DialectName::known()
            )
        })?;
        if let Err(e) = dialect.spec().check_keys(&r.options) {
            bail!("{}: {}", key(&format!("options.{}", e.key)), e.message);
        }
        let encoded_slashes = match r.encoded_slashes.as_deref() {
            None => EncodedSlashes::default_for(dialect),
            Some(v) => EncodedSlashes::parse(v).ok_or_else(|| {
                anyhow!(
                    "{}: {v:?} is not one of {}",
                    key("encoded_slashes"),
                    EncodedSlashes::KNOWN.join(", ")
                )
            })?,
        };
        let events = match &r.events {
            None => None,
            Some(_) if !dialect.has_events() => {
                bail!(
                    "{}: the {dialect_name} dialect has no event feed",
                    key("events")
                )
            }
            Some(e) => {
                let duration =
                    |field: &str, q: &Option<Quantity>| -> anyhow::Result<Option<Duration>> {
                        match q {
                            None => Ok(None),
                            Some(q) => duration_opt(
                                &key(&format!("events.{field}")),
                                &Some(q.clone()),
                                Duration::ZERO,
                            )
                            .map(Some),
                        }
                    };
                if e.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    bail!("{}: must not be empty", key("events.command"));
                }
                if e.secret_file
                    .as_ref()
                    .is_some_and(|f| f.as_os_str().is_empty())
                {
                    bail!("{}: must not be empty", key("events.secret_file"));
                }
                if dialect == DialectName::Github && e.secret_file.is_none() {
                    bail!(
                        "{}: a github route's webhooks must be signed: set the file holding the webhook secret",
                        key("events.secret_file")
                    );
                }
                Some(EventSettings {
                    trust: duration("trust", &e.trust)?,
                    heartbeat: duration("heartbeat", &e.heartbeat)?,
                    command: e.command.clone(),
                    secret_file: e.secret_file.clone(),
                })
            }
        };
        out.push(RouteSettings {
            name,
            events,
            options: r.options.clone(),
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path_prefix,
            upstream: upstream_uri(&key("upstream"), &r.upstream)?,
            dialect,
            preserve_host: r.preserve_host,
            sharing: match r.sharing.as_deref() {
                None | Some("strict") => Sharing::Strict,
                Some("rfc9111") => Sharing::Rfc9111,
                Some(other) => bail!(
                    "{}: {other:?} is not a sharing policy; use \"strict\" (the default) or \"rfc9111\"",
                    key("sharing")
                ),
            },
            encoded_slashes,
            tls: UpstreamTls {
                ca_file: r.tls.ca_file.clone(),
                client_cert: r.tls.client_cert.clone(),
                client_key: r.tls.client_key.clone(),
            },
            proxy: match r.proxy.as_deref() {
                None => ProxySetting::Environment,
                Some("none") => ProxySetting::None,
                Some(url) => {
                    let uri: http::Uri = url.parse().map_err(|_| {
                        anyhow!(
                            "{}: {:?} is not a URL; use e.g. http://proxy.example:3128 or \"none\"",
                            key("proxy"),
                            revcache_http::without_credentials(url)
                        )
                    })?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        bail!(
                            "{}: {:?} must be an http:// proxy URL (CONNECT), e.g. http://proxy.example:3128",
                            key("proxy"),
                            revcache_http::without_credentials(url)
                        );
                    }
                    ProxySetting::Url(url.to_owned())
                }
            },
            upstream_http2: match r.upstream_http2.as_deref() {
                None | Some("auto") => UpstreamHttp2::Auto,
                Some("never") => UpstreamHttp2::Never,
                Some("always") => UpstreamHttp2::Always,
                Some(other) => bail!(
                    "{}: {other:?} is not an HTTP/2 setting; use \"auto\" (the default), \"never\" or \"always\"",
                    key("upstream_http2")
                ),
            },
        });
    }
    if let Some(u) = upstream {
        let key = if from_flag { "--upstream" } else { "upstream" };
        if !out.iter().any(|r| r.host.is_none() && r.path_prefix == "/") {
            out.push(RouteSettings {
                name: "default".into(),
                host: None,
                path_prefix: "/".into(),
                upstream: upstream_uri(key, u)?,
                dialect: DialectName::Http,
                preserve_host: false,
                encoded_slashes: EncodedSlashes::Reject,
                events: None,
                options: Default::default(),
                sharing: Sharing::Strict,
                tls: UpstreamTls::default(),
                upstream_http2: UpstreamHttp2::default(),
                proxy: ProxySetting::default(),
            });
        } else {
            bail!("{key}: a configured route already covers every path; remove one of them");
        }
    }
    if out.is_empty() {
        bail!("no upstream: pass --upstream URL or add a [[routes]] table to the config file");
    }
    Ok(out)
}

fn upstream_uri(key: &str, value: &str) -> anyhow::Result<http::Uri> {
    let uri: http::Uri = value.parse().map_err(|e| {
        anyhow!("{key}: {value:?} is not a URL ({e}); use e.g. http://127.0.0.1:8000")
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => {}
        _ => bail!(
            "{key}: {value:?} must be an absolute http:// or https:// URL, e.g. https://review.example.org"
        ),
    }
    if uri.query().is_some() {
        bail!("{key}: {value:?} must not have a query string");
    }
    Ok(uri)
}

fn addr(key: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().map_err(|_| {
        anyhow!("{key}: {value:?} is not an address; use IP:PORT, e.g. 127.0.0.1:8080")
    })
}

/// A token given inline as `key` or in a file as `key_file`.
fn token(
    key: &str,
    file: Option<&PathBuf>,
    inline: Option<String>,
) -> anyhow::Result<Option<String>> {
    match (file, inline) {
        (Some(path), _) => Ok(Some(read_token(&format!("{key}_file"), path)?)),
        (None, Some(t)) if t.trim().is_empty() => {
            bail!("{key}: must not be empty (remove it to disable auth)")
        }
        (None, t) => Ok(t.map(|t| t.trim().to_owned())),
    }
}

fn read_token(key: &str, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        bail!("{key}: {} is empty", path.display());
    }
    Ok(token)
}

fn access_log(c: &AccessLogConfig) -> anyhow::Result<AccessLogSettings> {
    let destination = match c.path.as_deref() {
        None => bail!(
            "access_log.path: required in [access_log]; a file path, or \"stdout\" (remove the table to turn the access log off)"
        ),
        Some("") => bail!("access_log.path: must not be empty"),
        Some("stdout") => AccessLogDestination::Stdout,
        Some(path) => AccessLogDestination::File(PathBuf::from(path)),
    };
    let format = match c.format.as_deref() {
        None => AccessLogFormat::default(),
        Some(name) => AccessLogFormat::parse(name).ok_or_else(|| {
            anyhow!(
                "access_log.format: {name:?} is not a format; use one of {}",
                AccessLogFormat::KNOWN.join(", ")
            )
        })?,
    };
    Ok(AccessLogSettings {
        destination,
        format,
    })
}

fn admin_settings(a: &AdminConfig) -> anyhow::Result<AdminSettings> {
    let defaults = AdminSettings::default();
    for (i, h) in a.allowed_hosts.iter().enumerate() {
        if h.is_empty() || h.contains(['/', ' ', '@', '?', '#']) {
            bail!("admin.allowed_hosts[{i}]: {h:?} is not a host name");
        }
    }
    Ok(AdminSettings {
        max_connections: count(
            "admin.max_connections",
            a.max_connections,
            defaults.max_connections,
        )?,
        events_token: token(
            "admin.events_token",
            a.events_token_file.as_ref(),
            a.events_token.clone(),
        )?,
        purge_token: token(
            "admin.purge_token",
            a.purge_token_file.as_ref(),
            a.purge_token.clone(),
        )?,
        allowed_hosts: a
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        allow_remote_without_token: a.allow_remote_without_token,
    })
}

/// A positive count such as a connection cap.
fn count(key: &str, value: Option<i64>, default: usize) -> anyhow::Result<usize> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(n as usize),
        Some(n) => bail!("{key}: {n} must be between 1 and {}", u32::MAX),
    }
}

fn shared_settings(c: &SharedConfig) -> anyhow::Result<revcache_http::SharedSettings> {
    let url = match c.urls.as_slice() {
        [url] => url.clone(),
        [] => bail!("shared.urls: name the Redis or Valkey server (redis://host:6379)"),
        [url, ..] if c.cluster => url.clone(),
        _ => bail!(
            "shared.urls: several URLs are the seed nodes of a Redis Cluster: set shared.cluster = true"
        ),
    };
    let tls = url.starts_with("rediss://");
    for (i, u) in c.urls.iter().enumerate() {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            bail!("shared.urls[{i}]: must start with redis:// (or rediss:// for TLS)");
        }
        if u.starts_with("rediss://") != tls {
            bail!("shared.urls[{i}]: every URL uses TLS (rediss://) or none does");
        }
    }
    let mut s = revcache_http::SharedSettings::for_url(url);
    if c.cluster {
        s.cluster_nodes = c.urls.clone();
    }
    if !tls && (c.ca_file.is_some() || c.client_cert.is_some() || c.client_key.is_some()) {
        bail!("shared.ca_file, client_cert and client_key are for a rediss:// URL");
    }
    if c.client_cert.is_some() != c.client_key.is_some() {
        bail!("shared.client_cert and shared.client_key go together");
    }
    s.ca_file = c.ca_file.clone();
    s.client_cert = c.client_cert.clone();
    s.client_key = c.client_key.clone();
    if let Some(p) = &c.key_prefix {
        if p.is_empty() || p.contains(char::is_whitespace) {
            bail!("shared.key_prefix: {p:?} must be non-empty, without spaces");
        }
        s.key_prefix = p.clone();
    }
    s.max_entry_bytes = size_opt(
        "shared.max_entry_bytes",
        &c.max_entry_bytes,
        s.max_entry_bytes,
    )?;
    s.timeout = duration_opt("shared.timeout", &c.timeout, s.timeout)?;
    s.lock_ttl = duration_opt("shared.lock_ttl", &c.lock_ttl, s.lock_ttl)?;
    s.max_ttl = duration_opt("shared.max_ttl", &c.max_ttl, s.max_ttl)?;
    Ok(s)
}

fn size_opt(key: &str, value: &Option<Quantity>, default: u64) -> anyhow::Result<u64> {
    match value {
        None => Ok(default),
        Some(Quantity::Number(n)) => {
            u64::try_from(*n).map_err(|_| anyhow!("{key}: must not be negative"))
        }
        Some(Quantity::Text(s)) => parse_size(s).map_err(|e| anyhow!("{key}: {e}")),
    }
}

/// A period the disk tier waits on: zero or sub-second would spin a timer.
fn period_opt(key: &str, value: &Option<Quantity>, default: Duration) -> anyhow::Result<Duration> {
    let period = duration_opt(key, value, default)?;
    if period < Duration::from_secs(1) {
        bail!("{key}: must be at least 1s");
    }
    Ok(period)
}

fn duration_opt(
    key: &str,
    value: &Option<Quantity>,
    default: Duration,
) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(Quantity::Number(n)) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| anyhow!("{key}: must not be negative")),
        Some(Quantity::Text(s)) => parse_duration(s).map_err(|e| anyhow!("{key}: {e}")),
    }
}

/// `1024`, `64KiB`, `256MiB`, `2GiB`, `1.5GB` ...
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size; use e.g. 512KiB, 256MiB, 2GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit; use B, KiB, MiB, GiB, TiB (or kB, MB, GB)"
            ));
        }
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `500ms`, `5s`, `2m`, `1h`, `14d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 500ms, 5s, 2m, 1h, 14d"))?;
    let secs = match unit.trim() {
        "ms" => num / 1000.0,
        "" | "s" => num,
        "m" => num * 60.0,
        "h" => num * 3600.0,
        "d" => num * 86400.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit; use ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(toml_text: &str) -> anyhow::Result<Resolved> {
        let file: ConfigFile = toml::from_str(toml_text)?;
        resolve(file, &ServeArgs::default(), Purpose::Serve)
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn a_full_config_resolves_to_settings() {
        let r = resolve_text(
            r#"
            listen = "127.0.0.1:18080"
            [admin]
            listen = "127.0.0.1:19090"
            token = "s3cret"
            [cache]
            memory_limit = "64MiB"
            [limits]
            upstream_read_timeout = "2s"
            max_cacheable_body_bytes = 1048576
            [disk]
            limit = "2GiB"
            max_idle = "7d"
            required = true
            index_cache = "32MiB"
            [partition]
            cookies = ["session"]
            headers = ["X-Api-Key"]
            [[routes]]
            name = "api"
            upstream = "http://127.0.0.1:9000/base"
            path_prefix = "/api/"
            [[routes]]
            name = "site"
            upstream = "http://127.0.0.1:9001"
            host = "Example.org"
            "#,
        )
        .unwrap();
        let s = r.settings;
        assert_eq!(s.listen.port(), 18080);
        assert_eq!(s.admin_token.as_deref(), Some("s3cret"));
        assert_eq!(s.cache.memory_limit, 64 << 20);
        assert_eq!(s.limits.upstream_read_timeout, Duration::from_secs(2));
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[1].host.as_deref(), Some("example.org"));
        assert_eq!(s.routes[0].encoded_slashes, EncodedSlashes::Reject);
        assert_eq!(s.partition.headers[0].as_str(), "x-api-key");
        assert_eq!(s.disk.limit, 2 << 30);
        assert_eq!(s.disk.max_idle, Duration::from_secs(7 * 86400));
        assert_eq!(s.disk.index_cache, 32 << 20);
        assert!(s.disk.enabled);
        assert!(s.disk.required);
        assert_eq!(s.access_log, None, "the access log is off by default");
    }

    #[test]
    fn range_and_targeted_cache_control_settings_resolve() {
        let r = resolve_text(
            "upstream = \"http://x\"\n[cache]\nrange_miss = \"forward\"\n\
             targeted_cache_control = [\"Revcache-Cache-Control\", \"CDN-Cache-Control\"]\n\
             forward_targeted_cache_control = false",
        )
        .unwrap();
        let c = &r.settings.cache;
        assert_eq!(c.range_miss, RangeMiss::Forward);
        assert_eq!(
            c.targeted_cache_control,
            ["revcache-cache-control", "cdn-cache-control"]
        );
        assert!(!c.forward_targeted_cache_control);
        let defaults = resolve_text("upstream = \"http://x\"")
            .unwrap()
            .settings
            .cache;
        assert_eq!(defaults.range_miss, RangeMiss::FetchWhole);
        assert_eq!(defaults.targeted_cache_control, ["cdn-cache-control"]);
        assert!(defaults.forward_targeted_cache_control);
        let bad = resolve_text("upstream = \"http://x\"\n[cache]\nrange_miss = \"slice\"");
        assert!(bad.err().unwrap().to_string().contains("cache.range_miss"));
        let bad = resolve_text(
            "upstream = \"http://x\"\n[cache]\ntargeted_cache_control = [\"bad name\"]",
        );
        assert!(
            bad.err()
                .unwrap()
                .to_string()
                .contains("cache.targeted_cache_control[0]")
        );
    }

    #[test]
    fn access_log_takes_a_path_or_stdout_and_a_format() {
        let r = resolve_text(
            "upstream = \"http://x\"\n[access_log]\npath = \"/var/log/revcache/access.log\"",
        )
        .unwrap();
        assert_eq!(
            r.settings.access_log,
            Some(AccessLogSettings {
                destination: AccessLogDestination::File("/var/log/revcache/access.log".into()),
                format: AccessLogFormat::Combined,
            })
        );
        let r = resolve_text(
            "upstream = \"http://x\"\n[access_log]\npath = \"stdout\"\nformat = \"json\"",
        )
        .unwrap();
        assert_eq!(
            r.settings.access_log,
            Some(AccessLogSettings {
                destination: AccessLogDestination::Stdout,
                format: AccessLogFormat::Json,
            })
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases = [
            ("upstream = \"ftp://x\"", "upstream"),
            (
                "upstream = \"http://x\"\n[limits]\nupstream_read_timeout = \"5 fortnights\"",
                "limits.upstream_read_timeout",
            ),
            (
                "upstream = \"http://x\"\n[cache]\nmemory_limit = \"lots\"",
                "cache.memory_limit",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\ndialect = \"gopher\"",
                "routes[0].dialect",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\ndialect = \"gerrit\"\n[routes.options]\nsecret = \"x\"",
                "routes[0].options.secret",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\n[routes.events]\ntrust = \"1m\"",
                "routes[0].events",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\ndialect = \"gerrit\"\n[routes.events]\ntrust = \"soon\"",
                "routes[0].events.trust",
            ),
            (
                "[[routes]]\nupstream = \"https://api.github.com\"\ndialect = \"github\"\n[routes.events]\ntrust = \"1m\"",
                "routes[0].events.secret_file",
            ),
            (
                "[[routes]]\nupstream = \"https://api.github.com\"\ndialect = \"github\"\n[routes.options]\nreserve = \"5\"",
                "routes[0].options.reserve",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = []",
                "shared.urls",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = [\"redis://a\", \"redis://b\"]",
                "shared.urls",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = [\"http://a\"]",
                "shared.urls[0]",
            ),
            (
                "upstream = \"http://x\"\n[shared]\ncluster = true\nurls = [\"redis://a\", \"rediss://b\"]",
                "shared.urls[1]",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = [\"redis://a\"]\nca_file = \"/ca.pem\"",
                "shared.ca_file",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = [\"rediss://a\"]\nclient_cert = \"/c.pem\"",
                "shared.client_cert",
            ),
            (
                "upstream = \"http://x\"\n[shared]\nurls = [\"redis://a\"]\ntimeout = \"soon\"",
                "shared.timeout",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\npath_prefix = \"api\"",
                "routes[0].path_prefix",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\npath_prefix = \"/api/../admin\"",
                "routes[0].path_prefix",
            ),
            (
                "[[routes]]\nupstream = \"http://x\"\nencoded_slashes = \"allow\"",
                "routes[0].encoded_slashes",
            ),
            ("upstream = \"http://x\"\nlisten = \"localhost\"", "listen"),
            (
                "upstream = \"http://x\"\n[access_log]\nformat = \"json\"",
                "access_log.path",
            ),
            (
                "upstream = \"http://x\"\n[access_log]\npath = \"stdout\"\nformat = \"common\"",
                "access_log.format",
            ),
            (
                "upstream = \"http://x\"\n[partition]\nheaders = [\"bad header\"]",
                "partition.headers[0]",
            ),
            ("", "no upstream"),
            (
                "upstream = \"http://x\"\n[disk]\nlimit = \"big\"",
                "disk.limit",
            ),
            (
                "upstream = \"http://x\"\n[disk]\naccess_bucket = \"10ms\"",
                "disk.access_bucket",
            ),
            (
                "upstream = \"http://x\"\n[limits]\nmax_connections = 0",
                "limits.max_connections",
            ),
            (
                "upstream = \"http://x\"\n[limits]\nrequest_header_timeout = \"0s\"",
                "limits.request_header_timeout",
            ),
            (
                "upstream = \"http://x\"\n[limits]\nidle_connection_timeout = \"later\"",
                "limits.idle_connection_timeout",
            ),
            (
                "upstream = \"http://x\"\n[limits]\nrequest_body_timeout = 0",
                "limits.request_body_timeout",
            ),
            (
                "upstream = \"http://x\"\n[admin]\nmax_connections = -1",
                "admin.max_connections",
            ),
            (
                "upstream = \"http://x\"\n[admin]\nevents_token = \" \"",
                "admin.events_token",
            ),
            (
                "upstream = \"http://x\"\n[admin]\npurge_token_file = \"/nonexistent/t\"",
                "admin.purge_token_file",
            ),
            (
                "upstream = \"http://x\"\n[admin]\nallowed_hosts = [\"a/b\"]",
                "admin.allowed_hosts[0]",
            ),
        ];
        for (text, key) in cases {
            let err = resolve_text(text)
                .err()
                .unwrap_or_else(|| panic!("{text} should fail"))
                .to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
        }
    }

    #[test]
    fn disk_periods_below_one_second_are_rejected_by_name() {
        let route = "[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9000\"\n";
        for key in ["access_bucket", "sweep_interval"] {
            let Err(err) = resolve_text(&format!("[disk]\n{key} = \"500ms\"\n{route}")) else {
                panic!("{key} = 500ms was accepted");
            };
            let err = err.to_string();
            assert!(
                err.contains(&format!("disk.{key}: must be at least 1s")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_index_cache_defaults_to_64_mib_and_refuses_less_than_1_mib() {
        let route = "[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9000\"\n";
        let r = resolve_text(route).unwrap();
        assert_eq!(r.settings.disk.index_cache, 64 << 20);
        let Err(err) = resolve_text(&format!("[disk]\nindex_cache = \"512KiB\"\n{route}")) else {
            panic!("index_cache = 512KiB was accepted");
        };
        assert!(
            err.to_string()
                .contains("disk.index_cache: must be at least 1MiB"),
            "{err}"
        );
    }

    #[test]
    fn a_non_loopback_admin_listener_needs_a_token_or_an_explicit_opt_in() {
        let exposed = "upstream = \"http://x\"\n[admin]\nlisten = \"0.0.0.0:9090\"\n";
        let err = resolve_text(exposed).err().expect("refused").to_string();
        assert!(err.contains("admin.listen"), "{err}");
        assert!(err.contains("token"), "{err}");
        assert!(resolve_text(&format!("{exposed}token = \"t\"")).is_ok());
        let opted = resolve_text(&format!("{exposed}allow_remote_without_token = true")).unwrap();
        assert!(opted.settings.admin.allow_remote_without_token);
        // Maintenance commands only talk to it.
        let file: ConfigFile = toml::from_str(exposed).unwrap();
        assert!(resolve(file, &ServeArgs::default(), Purpose::Maintenance).is_ok());
    }

    #[test]
    fn connection_limits_and_admin_scopes_resolve() {
        let s = resolve_text(
            r#"
            upstream = "http://127.0.0.1:9000"
            [limits]
            max_connections = 10
            request_header_timeout = "2s"
            idle_connection_timeout = "1m"
            request_body_timeout = "5s"
            [admin]
            max_connections = 4
            events_token = "e"
            purge_token = "p"
            allowed_hosts = ["Admin.Internal"]
            "#,
        )
        .unwrap()
        .settings;
        assert_eq!(s.limits.max_connections, 10);
        assert_eq!(s.limits.request_header_timeout, Duration::from_secs(2));
        assert_eq!(s.limits.idle_connection_timeout, Duration::from_secs(60));
        assert_eq!(s.limits.request_body_timeout, Duration::from_secs(5));
        assert_eq!(s.admin.max_connections, 4);
        assert_eq!(s.admin.events_token.as_deref(), Some("e"));
        assert_eq!(s.admin.purge_token.as_deref(), Some("p"));
        assert_eq!(s.admin.allowed_hosts, ["admin.internal"]);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = toml::from_str::<ConfigFile>("[limits]\nmax_body = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_body"), "{err}");
    }
}
