//! One client request on its way through the proxy: what admission learned
//! about it (route, caller, key material) and the keys it is stored under.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HOST;
use http::{Request, request};
use revcache_core::{KeyClass, KeyRef, Partition, PrimaryKey};

use super::ActiveConfig;
use crate::policy::RequestDirectives;
use crate::route::Route;

/// One client request on its way through the proxy.
pub struct Exchange {
    /// The config the request started under.
    pub(super) config: Arc<ActiveConfig>,
    pub(super) route: Arc<Route>,
    pub(super) parts: request::Parts,
    /// The authority the client addressed, lowercased, when the request's
    /// own was not already lower case (see [`Exchange::host`]).
    pub(super) lowered_host: Option<Box<str>>,
    pub(super) client: SocketAddr,
    pub(super) req_cc: RequestDirectives,
    /// The request is authenticated (RFC 9111 §3.5): partition material or
    /// credentials revcache does not partition on.
    pub(super) has_credentials: bool,
    pub(super) class: KeyClass,
    /// The request target with credential query parameters redacted, when
    /// it had any: what keys, purges, `/inspect` and logs see.
    pub(super) redacted_target: Option<Box<str>>,
    /// What the key calls the upstream (see `dispatch`).
    pub(super) key_host: Arc<str>,
    /// The caller's partition, when the request carries partition
    /// material and nothing else that identifies it (an unrecognized
    /// credential makes the caller use and store only shared entries).
    pub(super) partition: Option<Partition>,
    /// Relays the upstream's 1xx to an HTTP/1.1 client (see `interim`).
    pub(super) interims: Option<crate::interim::InterimConnection>,
    /// The client's byte range, taken off `parts` (see `range`).
    pub(super) range: Option<super::range::ClientRange>,
    /// (public key, own key), built only when needed: a hit looks up by
    /// borrowed keys and never builds them.
    pub(super) keys: std::sync::OnceLock<(PrimaryKey, PrimaryKey)>,
}

impl Exchange {
    /// The authority the client addressed, lower case. Read from the
    /// request unless it had to be lowercased: the hit path allocates no
    /// string for it.
    pub fn host(&self) -> &str {
        self.lowered_host
            .as_deref()
            .unwrap_or_else(|| addressed_host(&self.parts))
    }

    /// Whose upstream rate limit the request counts against: its
    /// partition (`Some(None)`: anonymous), or `None` when it carries
    /// credentials that are not partition material, which are nobody's
    /// to account (or hold back) for.
    pub fn rate_subject(&self) -> Option<Option<Partition>> {
        (!self.has_credentials || self.partition.is_some()).then_some(self.partition)
    }

    pub fn target(&self) -> &str {
        match &self.redacted_target {
            Some(t) => t,
            None => self.parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    pub fn key_ref(&self, partition: Partition) -> KeyRef<'_> {
        KeyRef::new(
            self.route.id,
            &self.class,
            &self.key_host,
            self.target(),
            partition,
        )
    }

    fn keys(&self) -> &(PrimaryKey, PrimaryKey) {
        self.keys.get_or_init(|| {
            let public = self.key_ref(Partition::Public).to_key();
            let own = match self.partition {
                Some(p) => public.with_partition(p),
                None => public.clone(),
            };
            (public, own)
        })
    }

    pub fn public_key(&self) -> &PrimaryKey {
        &self.keys().0
    }

    /// The caller's partition key (`public_key` when anonymous).
    pub fn own_key(&self) -> &PrimaryKey {
        &self.keys().1
    }

    /// A copy that outlives the client's request (a background refresh).
    pub fn detach(&self) -> Exchange {
        Exchange {
            config: self.config.clone(),
            route: self.route.clone(),
            parts: clone_parts(&self.parts),
            lowered_host: self.lowered_host.clone(),
            client: self.client,
            req_cc: self.req_cc.clone(),
            has_credentials: self.has_credentials,
            class: self.class.clone(),
            redacted_target: self.redacted_target.clone(),
            key_host: self.key_host.clone(),
            partition: self.partition,
            interims: None,
            range: None,
            keys: self.keys.clone(),
        }
    }
}

/// The authority the request addressed: its Host header, else the URI's.
pub fn addressed_host(parts: &request::Parts) -> &str {
    parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

pub fn clone_parts(parts: &request::Parts) -> request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req.into_parts().0
}
