//! How a route's connections leave the machine: straight to the upstream,
//! or through an HTTP proxy with `CONNECT` (the route's `proxy` key, else
//! `https_proxy` / `http_proxy` / `no_proxy` from the environment, read the
//! way curl and Go read them).
//!
//! Both schemes are tunnelled with `CONNECT`, so TLS to an `https://`
//! upstream runs end to end through the proxy. Proxy credentials come from
//! the proxy URL's user info and are sent as `Proxy-Authorization`; they
//! are never logged (this module's `Debug` shows the proxy without them).
//! Loopback upstreams never use an environment proxy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a route's proxy setting comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `https_proxy`, `http_proxy`, `all_proxy` and `no_proxy` (either case).
    #[default]
    Environment,
    /// Always connect directly.
    None,
    /// This proxy for every connection of the route.
    Url(String),
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySetting::Environment => f.write_str("Environment"),
            ProxySetting::None => f.write_str("None"),
            ProxySetting::Url(u) => write!(f, "Url({})", without_credentials(u)),
        }
    }
}

/// `url` with any user info replaced, for messages.
pub fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// The connector under TLS: direct or tunnelled, per destination.
#[derive(Clone)]
pub struct Egress {
    direct: HttpConnector,
    matcher: Option<Arc<Matcher>>,
    /// Loopback upstreams bypass an environment proxy (as Go does).
    loopback_direct: bool,
}

impl Egress {
    pub fn new(direct: HttpConnector, setting: &ProxySetting) -> Self {
        let matcher = match setting {
            ProxySetting::None => None,
            ProxySetting::Environment => Some(Matcher::from_env()),
            ProxySetting::Url(url) => Some(Matcher::builder().all(url.clone()).build()),
        };
        Egress {
            direct,
            matcher: matcher.map(Arc::new),
            loopback_direct: *setting == ProxySetting::Environment,
        }
    }
}

impl tower_service::Service<Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let bypass = self.loopback_direct && dst.host().is_some_and(is_loopback);
        let intercept = self
            .matcher
            .as_ref()
            .filter(|_| !bypass)
            .and_then(|m| m.intercept(&dst));
        let mut direct = self.direct.clone();
        match intercept {
            None => Box::pin(async move { direct.call(dst).await.map_err(BoxError::from) }),
            Some(via) => {
                let mut tunnel = Tunnel::new(via.uri().clone(), direct);
                if let Some(auth) = via.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    tunnel
                        .call(dst)
                        .await
                        .map_err(|e| BoxError::from(format!("through the egress proxy: {e}")))
                })
            }
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_never_show() {
        let s = ProxySetting::Url("http://user:secret@proxy.example:3128".into());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("proxy.example:3128"));
    }
}
