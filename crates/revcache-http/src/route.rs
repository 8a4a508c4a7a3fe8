//! Routes: which upstream and dialect serve a request, by Host and path
//! prefix. The most specific route wins: a host match beats a wildcard,
//! then the longest prefix. Prefixes match whole segments (`/api` covers
//! `/api` and `/api/x`, never `/apix`) of the normalised path
//! (`request_target`).

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::uri::{Authority, Scheme};
use revcache_core::PartitionKey;

use crate::dialect::Dialect;
use crate::dialect::registry::DialectContext;
use crate::metrics::{DialectHits, Metrics, RouteCounters};
use crate::proxy::upstream::Upstream;
use crate::settings::{EncodedSlashes, Limits, RouteSettings};

pub struct Route {
    /// Stable id (a hash of the route name); part of every cache key, so
    /// entries survive restarts and never cross routes.
    pub id: u32,
    /// Upstream identity used as the key's host: what the upstream sees
    /// does not depend on the Host the client used (unless `preserve_host`).
    pub key_host: Arc<str>,
    pub name: String,
    host: Option<String>,
    /// Without a trailing slash: `""` for every path, `"/api"` for `/api/…`.
    path_prefix: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Upstream path the request path is appended to ("" or "/base").
    pub base_path: String,
    pub preserve_host: bool,
    /// Paths with encoded slashes reach the upstream (else 400).
    pub keeps_encoded_slashes: bool,
    pub dialect: Arc<dyn Dialect>,
    pub events: Option<crate::settings::EventSettings>,
    pub sharing: crate::settings::Sharing,
    /// The route's own client: its TLS material and HTTP/2 setting.
    pub upstream: Upstream,
    /// What the route was built from, and the limits its client took: a
    /// reload keeps a route whose settings did not change.
    built_from: (RouteSettings, UpstreamLimits),
    /// Its dialect-hit counters, resolved on the first such hit.
    dialect_hits: OnceLock<DialectHits>,
    /// Its request counters, resolved on its first request.
    counters: OnceLock<Arc<RouteCounters>>,
}

impl Route {
    /// Counts a hit the dialect allowed for `reason` (`trusted`, `ledger`).
    pub fn dialect_hit(&self, metrics: &Metrics, reason: &str) {
        self.dialect_hits
            .get_or_init(|| metrics.dialect_hits(&self.name))
            .count(reason);
    }

    /// The route's request counters (client requests, upstream requests
    /// by endpoint class).
    pub fn counters(&self, metrics: &Metrics) -> &RouteCounters {
        self.counters.get_or_init(|| metrics.route(&self.name))
    }
}

/// The limits a route's upstream client is built with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UpstreamLimits {
    connect_timeout: std::time::Duration,
    read_timeout: std::time::Duration,
    max_request_body: u64,
}

impl UpstreamLimits {
    fn of(limits: &Limits) -> Self {
        UpstreamLimits {
            connect_timeout: limits.upstream_connect_timeout,
            read_timeout: limits.upstream_read_timeout,
            max_request_body: limits.max_request_body_bytes,
        }
    }
}

/// What a rebuild did with each route, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Unchanged: the same route keeps serving (its client, connections,
    /// dialect state and feed).
    pub kept: Vec<String>,
    /// Rebuilt from new settings.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    /// Gone: no request reaches them any more.
    pub removed: Vec<String>,
}

pub struct Router {
    routes: Vec<Arc<Route>>,
}

/// A route's upstream cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error(
        "route {route:?}: upstream {upstream:?} must be an absolute http:// or https:// URL such as https://review.example.org"
    )]
    NotAbsolute { route: String, upstream: String },
    #[error(
        "route {route:?}: upstream scheme {scheme:?} is not supported; use http:// or https://"
    )]
    Scheme { route: String, scheme: String },
    #[error("route {route:?}: {source}")]
    Option {
        route: String,
        source: crate::dialect::registry::OptionError,
    },
    #[error("a throwaway partition key: {0}")]
    PartitionKey(#[from] revcache_core::PartitionKeyError),
    #[error("route {route:?}: {source}")]
    Tls {
        route: String,
        source: crate::proxy::upstream_tls::TlsConfigError,
    },
}

impl Router {
    /// The routes `settings` names, as `revcache check` builds them (with
    /// a throwaway partition key).
    pub fn new(settings: &[RouteSettings], limits: &Limits) -> Result<Self, RouteError> {
        let key = PartitionKey::ephemeral()?;
        Ok(Router::rebuild(settings, limits, None, SystemTime::now(), &key)?.0)
    }

    /// Builds the routes `settings` names, keeping from `previous` every
    /// route whose settings (and client limits) are unchanged, and the
    /// dialect state (feed health, ledger) of a route whose dialect
    /// settings are unchanged. A route with TLS files gets a new client
    /// every time: its certificates may have been renewed in place. New
    /// event feeds start trusting at `now`.
    pub fn rebuild(
        settings: &[RouteSettings],
        limits: &Limits,
        previous: Option<&Router>,
        now: SystemTime,
        partition_key: &PartitionKey,
    ) -> Result<(Self, RouteChanges), RouteError> {
        let mut routes = Vec::new();
        let mut changes = RouteChanges::default();
        let upstream_limits = UpstreamLimits::of(limits);
        for r in settings {
            let old = previous.and_then(|p| p.by_name(&r.name));
            let tls_files = r.tls.ca_file.is_some() || r.tls.client_cert.is_some();
            if let Some(old) = old
                && old.built_from.0 == *r
                && old.built_from.1 == upstream_limits
                && !tls_files
            {
                routes.push(old.clone());
                changes.kept.push(r.name.clone());
                continue;
            }
            match old {
                Some(_) => changes.changed.push(r.name.clone()),
                None => changes.added.push(r.name.clone()),
            }
            let (Some(scheme), Some(authority)) = (r.upstream.scheme(), r.upstream.authority())
            else {
                return Err(RouteError::NotAbsolute {
                    route: r.name.clone(),
                    upstream: r.upstream.to_string(),
                });
            };
            if *scheme != Scheme::HTTP && *scheme != Scheme::HTTPS {
                return Err(RouteError::Scheme {
                    route: r.name.clone(),
                    scheme: scheme.to_string(),
                });
            }
            let base_path = r.upstream.path().trim_end_matches('/').to_owned();
            let id = u32::from_le_bytes(blake3_prefix(&r.name));
            let dialect = match old {
                Some(old)
                    if old.built_from.0.dialect == r.dialect
                        && old.built_from.0.events == r.events
                        && old.built_from.0.options == r.options =>
                {
                    old.dialect.clone()
                }
                _ => {
                    let cx = DialectContext {
                        route: id,
                        events: r.events.as_ref(),
                        options: &r.options,
                        now,
                        partition_key,
                    };
                    r.dialect
                        .spec()
                        .build(&cx)
                        .map_err(|source| RouteError::Option {
                            route: r.name.clone(),
                            source,
                        })?
                }
            };
            routes.push(Arc::new(Route {
                id,
                key_host: format!("{authority}{base_path}").into(),
                name: r.name.clone(),
                host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                path_prefix: r.path_prefix.trim_end_matches('/').to_owned(),
                scheme: scheme.clone(),
                authority: authority.clone(),
                base_path,
                preserve_host: r.preserve_host,
                keeps_encoded_slashes: r.encoded_slashes == EncodedSlashes::Keep,
                dialect,
                events: r.events.clone(),
                sharing: r.sharing,
                upstream: Upstream::new(r, limits).map_err(|source| RouteError::Tls {
                    route: r.name.clone(),
                    source,
                })?,
                built_from: (r.clone(), upstream_limits.clone()),
                dialect_hits: OnceLock::new(),
                counters: OnceLock::new(),
            }));
        }
        if let Some(previous) = previous {
            changes.removed = previous
                .routes
                .iter()
                .filter(|old| !settings.iter().any(|r| r.name == old.name))
                .map(|old| old.name.clone())
                .collect();
        }
        // Most specific first: host routes, then longer prefixes.
        routes.sort_by_key(|r| (r.host.is_none(), std::cmp::Reverse(r.path_prefix.len())));
        Ok((Router { routes }, changes))
    }

    /// `host` without port, lower case; `path` normalised.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.host.as_deref().is_none_or(|h| h == host) && covers(&r.path_prefix, path))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// Whether `prefix` (without its trailing slash) names `path` or an
/// ancestor of it.
fn covers(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn blake3_prefix(name: &str) -> [u8; 4] {
    let mut id = [0u8; 4];
    id.copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..4]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DialectName;

    fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteSettings {
        RouteSettings {
            name: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.into(),
            upstream: "http://127.0.0.1:1/base/".parse().unwrap(),
            dialect: DialectName::Http,
            preserve_host: false,
            encoded_slashes: EncodedSlashes::Reject,
            events: None,
            options: Default::default(),
            sharing: Default::default(),
            tls: Default::default(),
            upstream_http2: Default::default(),
            proxy: Default::default(),
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let router = Router::new(
            &[
                route("any", None, "/"),
                route("api", None, "/api/"),
                route("host", Some("Review.Example"), "/"),
            ],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(router.route("x", "/api/v1").unwrap().name, "api");
        assert_eq!(router.route("x", "/other").unwrap().name, "any");
        assert_eq!(
            router.route("review.example", "/api/v1").unwrap().name,
            "host"
        );
        assert_eq!(router.route("x", "/").unwrap().base_path, "/base");
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let router = Router::new(
            &[route("api", None, "/api/"), route("v1", None, "/v1")],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(router.route("x", "/api/users").unwrap().name, "api");
        assert_eq!(router.route("x", "/api").unwrap().name, "api");
        assert_eq!(router.route("x", "/v1/").unwrap().name, "v1");
        assert!(router.route("x", "/apix").is_none());
        assert!(router.route("x", "/v1x/y").is_none());
        assert!(router.route("x", "/").is_none());
    }

    #[test]
    fn other_schemes_and_relative_upstreams_are_refused_with_the_route_name() {
        let mut r = route("gh", None, "/");
        r.upstream = "https://api.github.com".parse().unwrap();
        assert!(Router::new(&[r.clone()], &Limits::default()).is_ok());
        r.upstream = "ftp://example.org".parse().unwrap();
        let e = Router::new(&[r], &Limits::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"gh\"") && e.contains("ftp"), "{e}");
        let mut r = route("rel", None, "/");
        r.upstream = "/just/a/path".parse().unwrap();
        assert!(Router::new(&[r], &Limits::default()).is_err());
    }
}
