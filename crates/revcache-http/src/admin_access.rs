//! Who may call the admin API, decided before any endpoint runs: the
//! `Host` must name the admin listener (an IP address of it, loopback,
//! `localhost` or a configured name), so a web page cannot reach it by
//! DNS rebinding; requests a browser marks as coming from a page
//! (`Origin`, `Sec-Fetch-Site`) and POSTs an HTML form or a no-preflight
//! fetch could send are refused, so a page cannot purge or forge events
//! (CSRF); and bearer tokens, one for everything and optional ones scoped
//! to `/events` and to `/purge` + `/inspect`.
//!
//! The dashboard is the one page allowed in: its files (which hold no
//! data) are served without a token and may be opened from a link, and
//! the reads its script makes from the listener's own origin
//! (`Sec-Fetch-Site: same-origin`, GET) pass the same-site check; they
//! still need the token.
//!
//! It never reads a body; token comparisons take the same time whatever
//! the first wrong byte.

use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use http::{Method, Request, StatusCode};

use crate::settings::Settings;

/// Which token, besides the admin token, an endpoint accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `POST /events/<route>`: webhook senders.
    Events,
    /// `/purge` and `/inspect`.
    Purge,
    /// The dashboard's files: no token (they hold no data; a browser
    /// opening the page cannot send one).
    Page,
    /// Everything else: the admin token only.
    Admin,
}

impl Scope {
    pub fn of(path: &str) -> Scope {
        match path {
            p if p.starts_with("/events/") => Scope::Events,
            "/purge" | "/inspect" => Scope::Purge,
            p if crate::dashboard::serves(p) => Scope::Page,
            _ => Scope::Admin,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error(
        "Host {0:?} does not name this admin listener; use its address or localhost, or add the name to admin.allowed_hosts"
    )]
    ForeignHost(String),
    #[error(
        "cross-site request refused ({0} present); a browser may only open the dashboard (GET /) and let it read"
    )]
    CrossSite(&'static str),
    #[error(
        "POST with Content-Type {0:?} refused; send application/json, or no body and no Content-Type"
    )]
    MediaType(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::ForeignHost(_) | Refusal::CrossSite(_) => StatusCode::FORBIDDEN,
            Refusal::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

pub struct AdminAccess {
    token: Option<String>,
    events_token: Option<String>,
    purge_token: Option<String>,
    /// The admin listener's address as bound.
    listen: SocketAddr,
    allowed_hosts: Vec<String>,
}

impl AdminAccess {
    pub fn new(settings: &Settings, listen: SocketAddr) -> Self {
        AdminAccess {
            token: settings.admin_token.clone(),
            events_token: settings.admin.events_token.clone(),
            purge_token: settings.admin.purge_token.clone(),
            listen,
            allowed_hosts: settings.admin.allowed_hosts.clone(),
        }
    }

    /// Whether `req` may reach its endpoint. `signed_events`: it is an
    /// event for a route whose dialect verifies each event's signature,
    /// which then stands in for the bearer token.
    pub fn check<B: http_body::Body>(
        &self,
        req: &Request<B>,
        signed_events: bool,
    ) -> Result<(), Refusal> {
        self.check_host(req)?;
        check_same_site(req)?;
        match Scope::of(req.uri().path()) {
            Scope::Page => Ok(()),
            Scope::Events if signed_events => Ok(()),
            _ => self.check_token(req),
        }
    }

    fn check_host<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        let authority = match req.headers().get(HOST) {
            Some(v) => v.to_str().unwrap_or("\u{fffd}").to_owned(),
            None => match req.uri().authority() {
                Some(a) => a.as_str().to_owned(),
                // HTTP/1.0 without Host: no browser sends that.
                None => return Ok(()),
            },
        };
        if self.host_allowed(&authority) {
            Ok(())
        } else {
            Err(Refusal::ForeignHost(authority))
        }
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let host = host_of(authority).to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            // A page reaches an address only by a name: an address in Host
            // is no rebinding.
            return ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified();
        }
        host == "localhost"
            || host.ends_with(".localhost")
            || self.allowed_hosts.iter().any(|h| h == host)
    }

    fn check_token<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        let scoped = match Scope::of(req.uri().path()) {
            Scope::Events => self.events_token.as_ref(),
            Scope::Purge => self.purge_token.as_ref(),
            Scope::Admin | Scope::Page => None,
        };
        let accepted: Vec<&String> = self.token.iter().chain(scoped).collect();
        if accepted.is_empty() {
            return Ok(());
        }
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Refusal::Unauthorized)?;
        // Every candidate is compared, so the time says nothing of which.
        let matched = accepted.iter().fold(false, |ok, t| {
            constant_time_eq(given.as_bytes(), t.as_bytes()) | ok
        });
        if matched {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }
}

/// Refuses what a browser sends on behalf of a page, and POST bodies a
/// page can send without a CORS preflight (forms, `text/plain`). Lets
/// through a browser opening the dashboard, and the dashboard's reads.
fn check_same_site<B: http_body::Body>(req: &Request<B>) -> Result<(), Refusal> {
    let headers = req.headers();
    let fetch = |name: &str| headers.get(name).map(|v| v.as_bytes());
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    // A page of this very origin (the Host check made sure the origin is
    // this listener): the dashboard. Browsers set Sec-Fetch-*, a page
    // cannot.
    let own_page = reads && fetch("sec-fetch-site") == Some(b"same-origin");
    // Opening the dashboard from a link: a top-level navigation, which a
    // page cannot read, to the one path that holds no data.
    let opens_dashboard = reads
        && req.uri().path() == "/"
        && fetch("sec-fetch-mode") == Some(b"navigate")
        && fetch("sec-fetch-dest") == Some(b"document");
    if own_page || opens_dashboard {
        return Ok(());
    }
    if headers.contains_key(ORIGIN) {
        return Err(Refusal::CrossSite("Origin"));
    }
    // `none`: the operator typed the URL.
    if fetch("sec-fetch-site").is_some_and(|v| v != b"none") {
        return Err(Refusal::CrossSite("Sec-Fetch-Site"));
    }
    if req.method() != Method::POST {
        return Ok(());
    }
    match headers.get(CONTENT_TYPE) {
        None => {
            // hyper's size hint is exact when Content-Length was sent.
            let empty = req.body().is_end_stream() || req.body().size_hint().exact() == Some(0);
            if empty {
                Ok(())
            } else {
                Err(Refusal::MediaType("(none, with a body)".into()))
            }
        }
        Some(v) => {
            let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if is_json(&text) {
                Ok(())
            } else {
                Err(Refusal::MediaType(text))
            }
        }
    }
}

/// `application/json`, `application/x-ndjson`, `application/…+json`,
/// parameters allowed: types a page cannot send without a preflight,
/// which the admin API never answers.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "application/x-ndjson"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The host of an authority (`[::1]:9090` → `[::1]`, `a:1` → `a`).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(listen: &str) -> AdminAccess {
        let mut settings = Settings::for_upstream("http://127.0.0.1:1".parse().unwrap());
        settings.admin.allowed_hosts = vec!["revcache-admin.internal".into()];
        AdminAccess::new(&settings, listen.parse().unwrap())
    }

    #[test]
    fn token_comparison_checks_every_byte_and_the_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn hosts_naming_the_listener_pass_and_rebound_names_do_not() {
        let a = access("127.0.0.1:9090");
        for ok in [
            "127.0.0.1:9090",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "metrics.localhost",
            "revcache-admin.internal:9090",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "10.0.0.5:9090",
            "localhost.evil.example",
            "",
        ] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        assert!(access("0.0.0.0:9090").host_allowed("10.0.0.5:9090"));
        assert!(!access("0.0.0.0:9090").host_allowed("evil.example"));
    }

    #[test]
    fn json_types_are_the_only_post_bodies_accepted() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/x-ndjson",
            "application/vnd.gerrit+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
