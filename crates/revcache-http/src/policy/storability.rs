//! Whether a response may be stored by a shared cache, and for whom
//! (RFC 9111 §3, §3.5).

use http::header::{EXPIRES, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};

use super::cache_control::{RequestDirectives, ResponseDirectives};
use super::freshness::heuristically_cacheable;

/// How a route shares responses between callers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Authenticated responses are shared only when marked `public` or
    /// `s-maxage`; a response that sets a cookie is never shared.
    #[default]
    Strict,
    /// RFC 9111 as written: `must-revalidate` also shares authenticated
    /// responses (§3.5), and an anonymous request's response that sets a
    /// cookie is shared when marked `public` or `s-maxage`.
    Rfc9111,
}

/// Why a response is not stored: `Cache-Status: detail=` and
/// `revcache_not_stored_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStored {
    /// The request method's responses are not stored.
    Method,
    /// The status is not cacheable without explicit freshness (or never).
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private` in the response.
    Private,
    /// A `Set-Cookie` for one anonymous client.
    SetCookie,
    /// The caller is known by a credential revcache does not partition on,
    /// and the response may not be shared.
    Credentials,
    /// Larger than `limits.max_cacheable_body_bytes`.
    TooLarge,
    /// `Vary: *`.
    VaryStar,
    /// The dialect stores only representations with a strong validator.
    NoStrongValidator,
}

impl NotStored {
    pub const ALL: [NotStored; 9] = [
        NotStored::Method,
        NotStored::Status,
        NotStored::NoStore,
        NotStored::Private,
        NotStored::SetCookie,
        NotStored::Credentials,
        NotStored::TooLarge,
        NotStored::VaryStar,
        NotStored::NoStrongValidator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::SetCookie => "set-cookie",
            NotStored::Credentials => "credentials",
            NotStored::TooLarge => "too-large",
            NotStored::VaryStar => "vary-star",
            NotStored::NoStrongValidator => "no-strong-etag",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storability {
    /// Not storable, for this reason.
    No(NotStored),
    /// Storable in the public partition, shared by every caller.
    Shared,
    /// Storable only in the requesting credential's partition.
    Private,
}

/// `has_credentials`: the request carried `Authorization` or another
/// credential (see `credential`).
pub fn storability(
    method: &Method,
    status: StatusCode,
    req: &RequestDirectives,
    res: &ResponseDirectives,
    headers: &HeaderMap,
    has_credentials: bool,
    sharing: Sharing,
) -> Storability {
    use Storability::*;
    if method != Method::GET {
        return No(NotStored::Method);
    }
    if status.is_informational()
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT
    {
        return No(NotStored::Status);
    }
    // must-understand overrides no-store for status codes whose caching
    // rules revcache implements (RFC 9111 §5.2.2.3).
    let understood = heuristically_cacheable(status) || matches!(status.as_u16(), 302 | 303 | 307);
    if req.no_store || (res.no_store && !(res.must_understand && understood)) {
        return No(NotStored::NoStore);
    }
    if res.private {
        return No(NotStored::Private);
    }
    let explicit = res.public
        || res.max_age.is_some()
        || res.s_maxage.is_some()
        || headers.contains_key(EXPIRES);
    if !explicit && !heuristically_cacheable(status) {
        return No(NotStored::Status);
    }
    // Set-Cookie belongs to one client: an authenticated caller's stays in
    // its partition; an anonymous one's is shared only when the route
    // follows RFC 9111 and the response says so.
    if headers.contains_key(SET_COOKIE) {
        let explicit = res.public || res.s_maxage.is_some();
        return match (has_credentials, sharing) {
            (true, _) => Private,
            (false, Sharing::Rfc9111) if explicit => Shared,
            (false, _) => No(NotStored::SetCookie),
        };
    }
    if !has_credentials || res.allows_sharing_authenticated(sharing) {
        Shared
    } else {
        Private
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn res(cc: &'static str) -> (ResponseDirectives, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static(cc));
        (ResponseDirectives::parse(&h), h)
    }

    fn decide(cc: &'static str, status: u16, creds: bool) -> Storability {
        decide_as(cc, status, creds, Sharing::Strict)
    }

    fn decide_as(cc: &'static str, status: u16, creds: bool, sharing: Sharing) -> Storability {
        let (d, h) = res(cc);
        storability(
            &Method::GET,
            StatusCode::from_u16(status).unwrap(),
            &RequestDirectives::default(),
            &d,
            &h,
            creds,
            sharing,
        )
    }

    fn with_cookie(cc: &'static str, creds: bool, sharing: Sharing) -> Storability {
        let (d, mut h) = res(cc);
        h.insert(SET_COOKIE, HeaderValue::from_static("sid=1"));
        storability(
            &Method::GET,
            StatusCode::OK,
            &RequestDirectives::default(),
            &d,
            &h,
            creds,
            sharing,
        )
    }

    #[test]
    fn a_response_that_sets_a_cookie_is_never_shared_with_an_authenticated_caller() {
        for sharing in [Sharing::Strict, Sharing::Rfc9111] {
            for cc in ["public, max-age=60", "s-maxage=60", "max-age=60"] {
                assert_eq!(with_cookie(cc, true, sharing), Storability::Private);
            }
        }
        assert_eq!(
            with_cookie("public, max-age=60", false, Sharing::Strict),
            Storability::No(NotStored::SetCookie)
        );
        assert_eq!(
            with_cookie("public, max-age=60", false, Sharing::Rfc9111),
            Storability::Shared
        );
        assert_eq!(
            with_cookie("max-age=60", false, Sharing::Rfc9111),
            Storability::No(NotStored::SetCookie)
        );
    }

    #[test]
    fn no_store_and_private_are_never_stored() {
        assert_eq!(
            decide("no-store, max-age=60", 200, false),
            Storability::No(NotStored::NoStore)
        );
        assert_eq!(
            decide("private, max-age=60", 200, false),
            Storability::No(NotStored::Private)
        );
    }

    #[test]
    fn must_understand_overrides_no_store_for_understood_statuses() {
        assert_eq!(
            decide("must-understand, no-store, max-age=60", 200, false),
            Storability::Shared
        );
        assert_eq!(
            decide("must-understand, no-store, max-age=60", 299, false),
            Storability::No(NotStored::NoStore)
        );
    }

    #[test]
    fn authorization_shares_only_with_public_or_s_maxage() {
        assert_eq!(decide("max-age=60", 200, true), Storability::Private);
        assert_eq!(decide("public", 200, true), Storability::Shared);
        assert_eq!(decide("s-maxage=5", 200, true), Storability::Shared);
        assert_eq!(decide("must-revalidate", 200, true), Storability::Private);
        assert_eq!(
            decide("no-cache, must-revalidate", 200, true),
            Storability::Private
        );
        assert_eq!(decide("max-age=60", 200, false), Storability::Shared);
    }

    #[test]
    fn rfc9111_sharing_also_shares_must_revalidate_with_authenticated_callers() {
        assert_eq!(
            decide_as("must-revalidate", 200, true, Sharing::Rfc9111),
            Storability::Shared
        );
    }

    #[test]
    fn non_heuristic_statuses_need_explicit_freshness() {
        assert_eq!(
            decide("no-cache", 302, false),
            Storability::No(NotStored::Status)
        );
        assert_eq!(decide("max-age=60", 302, false), Storability::Shared);
        assert_eq!(decide("no-cache", 404, false), Storability::Shared);
    }
}
