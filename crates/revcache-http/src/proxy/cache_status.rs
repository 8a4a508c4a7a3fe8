//! The `Cache-Status` response header (RFC 9211) revcache adds to every
//! response, e.g. `revcache; hit`, `revcache; fwd=uri-miss;
//! fwd-status=200; stored`, `revcache; fwd=stale; fwd-status=304`,
//! `revcache; hit; collapsed`.

use http::{HeaderName, HeaderValue};

pub const NAME: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went to the upstream: RFC 9211 §2.2's `fwd` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// Configured (or classified) to go upstream without the cache.
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing is stored for the URI.
    UriMiss,
    /// Something is stored for the URI, but not for this variant.
    VaryMiss,
    /// The client's request directives (`no-cache`, `max-age=0`) forbid
    /// using what is stored.
    Request,
    /// What is stored is stale (or not trusted) and must be validated.
    Stale,
}

impl Fwd {
    pub const ALL: [Fwd; 6] = [
        Fwd::Bypass,
        Fwd::Method,
        Fwd::UriMiss,
        Fwd::VaryMiss,
        Fwd::Request,
        Fwd::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CacheStatus {
    hit: bool,
    fwd: Option<Fwd>,
    fwd_status: Option<u16>,
    stored: bool,
    collapsed: bool,
    ttl: Option<i64>,
    detail: Option<&'static str>,
}

impl CacheStatus {
    pub fn hit() -> Self {
        CacheStatus {
            hit: true,
            ..Default::default()
        }
    }

    /// Forwarded to the upstream because of `reason`.
    pub fn fwd(reason: Fwd) -> Self {
        CacheStatus {
            fwd: Some(reason),
            ..Default::default()
        }
    }

    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub fn stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    pub fn ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn value(&self) -> HeaderValue {
        // The common hit needs no allocation.
        if self.hit
            && self.fwd.is_none()
            && !self.collapsed
            && self.ttl.is_none()
            && self.detail.is_none()
        {
            return HeaderValue::from_static("revcache; hit");
        }
        let mut s = String::from("revcache");
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            s.push_str("; fwd=");
            s.push_str(fwd.as_str());
        }
        if let Some(status) = self.fwd_status {
            s.push_str(&format!("; fwd-status={status}"));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            s.push_str(&format!("; ttl={ttl}"));
        }
        if let Some(detail) = self.detail {
            s.push_str("; detail=");
            s.push_str(detail);
        }
        // Built only from ASCII tokens and digits.
        HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("revcache"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_9211_parameters_in_order() {
        assert_eq!(CacheStatus::hit().value(), "revcache; hit");
        assert_eq!(
            CacheStatus::fwd(Fwd::UriMiss)
                .fwd_status(200)
                .stored(true)
                .ttl(60)
                .value(),
            "revcache; fwd=uri-miss; fwd-status=200; stored; ttl=60"
        );
        assert_eq!(
            CacheStatus::hit().collapsed().value(),
            "revcache; hit; collapsed"
        );
    }
}
