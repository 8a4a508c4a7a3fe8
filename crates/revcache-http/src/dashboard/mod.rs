//! The live dashboard at `GET /` of the admin listener: one page, its
//! script and stylesheet, and the vendored uPlot chart library
//! (`vendor/uplot`, MIT), all embedded in the binary.
//!
//! It serves those bytes and never anything else: the page holds no
//! data. Its script reads `/stats` and `/stats/history` with the admin
//! token like any other client (the token comes from the URL fragment
//! `#token=…` or a form, and is kept in the tab's `sessionStorage`), so
//! these files are the only answers of the admin API given without the
//! token (see [`crate::admin_access`]).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::proxy::body::ProxyBody;

/// Path, Content-Type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("index.html"),
    ),
    (
        "/dashboard/dashboard.js",
        JS,
        include_bytes!("dashboard.js"),
    ),
    (
        "/dashboard/dashboard.css",
        CSS,
        include_bytes!("dashboard.css"),
    ),
    (
        "/dashboard/uPlot.iife.min.js",
        JS,
        include_bytes!("vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/dashboard/uPlot.min.css",
        CSS,
        include_bytes!("vendor/uplot/uPlot.min.css"),
    ),
    (
        "/dashboard/uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("vendor/uplot/LICENSE"),
    ),
];

/// Only this origin's scripts, styles and fetches; no inline script, no
/// framing, no form posts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Whether `path` is one of the dashboard's files.
pub fn serves(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The file at `path`, or `None` when it is not the dashboard's.
pub fn respond(method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    let &(_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut res = match *method {
        Method::GET => Response::new(ProxyBody::text(Bytes::from_static(body))),
        Method::HEAD => Response::new(ProxyBody::empty()),
        _ => {
            let mut res = Response::new(ProxyBody::text("use GET\n"));
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(res);
        }
    };
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_with_its_type_and_the_strict_policy() {
        for &(path, content_type, body) in ASSETS {
            let res = respond(&Method::GET, path).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let h = res.headers();
            assert_eq!(h[CONTENT_TYPE], content_type);
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h["x-content-type-options"], "nosniff");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(!body.is_empty());
        }
        assert!(respond(&Method::GET, "/metrics").is_none());
        assert!(!serves("/dashboard/../metrics"));
        assert_eq!(
            respond(&Method::POST, "/").unwrap().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for src in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            let url = &src[..src.find('"').unwrap()];
            assert!(
                url.starts_with("data:") || serves(url),
                "{url} is not embedded"
            );
        }
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style=\""), "inline style");
    }
}
