//! What WebDAV writes and external change notices invalidate (RFC 4918's
//! methods, as the README's webdav section tables them). Paths are normalized: in the request
//! target's normal form (`request_target`: no dot or empty segments), then
//! percent-decoded, without a trailing slash (except `/`).

use http::{HeaderMap, StatusCode, request};
use revcache_core::{Invalidation, Tag};
use serde_json::Value;

use crate::events::EventError;

/// Invalidations of one route, as they are collected.
struct Out {
    route: u32,
    list: Vec<Invalidation>,
}

impl Out {
    fn new(route: u32) -> Self {
        Out {
            route,
            list: Vec::new(),
        }
    }

    fn tag(&mut self, kind: &str, path: &str) {
        let tag = Tag::new(self.route, format!("dav:{kind}:{path}"));
        self.list.push(Invalidation::Tag(tag));
    }

    fn target(&mut self, target: String) {
        self.list.push(Invalidation::target(self.route, target));
    }

    fn prefix(&mut self, prefix: String) {
        self.list.push(Invalidation::prefix(self.route, prefix));
    }
}

/// A request path as tags name it.
pub fn norm(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    // Request targets arrive normalised; hrefs, `Destination` and notices
    // may not. One that cannot be normalised is kept as sent (it names no
    // entry revcache stored).
    let path = match crate::request_target::normalize_path(path) {
        Ok(p) => p,
        Err(_) => std::borrow::Cow::Borrowed(path),
    };
    let decoded = crate::percent::decode_lossy(&path);
    let trimmed = decoded.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_owned()
    }
}

pub fn parent(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].to_owned(),
    }
}

/// The resource itself: its body, its properties, listings showing it.
fn resource(path: &str, out: &mut Out) {
    out.tag("res", path);
    out.tag("props", path);
}

/// A resource and everything below it, by tag and by request target.
fn subtree(raw: &str, path: &str, out: &mut Out) {
    resource(path, out);
    out.tag("list", path);
    let raw = raw.split('?').next().unwrap_or(raw).trim_end_matches('/');
    out.target(if raw.is_empty() {
        "/".into()
    } else {
        raw.to_owned()
    });
    out.target(format!("{raw}/"));
    out.prefix(format!("{raw}/"));
}

/// A collection whose membership (and so its own properties) changed.
fn members_changed(path: &str, out: &mut Out) {
    out.tag("list", path);
    out.tag("res", path);
    out.tag("props", path);
}

/// The path of a `Destination` header (an absolute URL or a path), in the
/// normal form request targets are keyed by.
fn destination(headers: &HeaderMap) -> Option<String> {
    let d = headers.get("destination")?.to_str().ok()?;
    let path = match d.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => d,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    Some(normal_target(path))
}

/// `raw` as a request target keyed in the cache: normalised, or as it is
/// when it cannot be (no request with it was accepted, so nothing is
/// stored under another spelling).
fn normal_target(raw: &str) -> String {
    crate::request_target::normalize_path(raw)
        .map_or_else(|_| raw.to_owned(), std::borrow::Cow::into_owned)
}

/// `status` is the write's (non-error) status.
pub fn on_write(route: u32, req: &request::Parts, status: StatusCode) -> Vec<Invalidation> {
    let raw = req.uri.path();
    let p = norm(raw);
    let mut out = Out::new(route);
    let method = req.method.as_str();
    match method {
        "PUT" => {
            // Listings that show the resource carry its `dav:props` tag.
            resource(&p, &mut out);
            out.target(raw.to_owned());
            // A new member changes the parent's membership; an overwrite
            // (204) does not.
            if status != StatusCode::NO_CONTENT {
                members_changed(&parent(&p), &mut out);
            }
        }
        "DELETE" => {
            subtree(raw, &p, &mut out);
            members_changed(&parent(&p), &mut out);
        }
        "MOVE" | "COPY" => {
            if method == "MOVE" {
                subtree(raw, &p, &mut out);
                members_changed(&parent(&p), &mut out);
            }
            if let Some(dest) = destination(&req.headers) {
                let d = norm(&dest);
                subtree(&dest, &d, &mut out);
                members_changed(&parent(&d), &mut out);
            }
        }
        "MKCOL" => {
            subtree(raw, &p, &mut out);
            members_changed(&parent(&p), &mut out);
        }
        "PROPPATCH" => out.tag("props", &p),
        "LOCK" | "UNLOCK" => {
            out.tag("props", &p);
            let infinite = req
                .headers
                .get("depth")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|d| d.trim().eq_ignore_ascii_case("infinity"));
            if infinite {
                subtree(raw, &p, &mut out);
            }
            // A LOCK on an unmapped URL creates a resource (Apache answers
            // 200, not 201), and an UNLOCK may remove a lock-null one: the
            // parent's membership may change either way.
            resource(&p, &mut out);
            members_changed(&parent(&p), &mut out);
            let _ = status;
        }
        _ => {
            // Unknown methods: assume the worst for the target's subtree.
            subtree(raw, &p, &mut out);
            members_changed(&parent(&p), &mut out);
        }
    }
    out.list
}

/// `{"paths": ["/a/b", …], "recursive": true|false}` from a repository
/// server that changed those paths without going through revcache.
pub fn on_external(route: u32, bytes: &[u8]) -> Result<Vec<Invalidation>, EventError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| EventError::Json("expected a JSON object".into()))?;
    let paths = obj.get("paths").and_then(Value::as_array).ok_or_else(|| {
        EventError::Shape("missing \"paths\": an array of paths such as [\"/docs/a.txt\"]".into())
    })?;
    let recursive = match obj.get("recursive") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(EventError::Shape(
                "\"recursive\" must be true or false".into(),
            ));
        }
    };
    if let Some(unknown) = obj.keys().find(|k| *k != "paths" && *k != "recursive") {
        return Err(EventError::Shape(format!(
            "unknown field {unknown:?}; use \"paths\" and \"recursive\""
        )));
    }
    let mut out = Out::new(route);
    for (i, p) in paths.iter().enumerate() {
        let raw = p
            .as_str()
            .ok_or_else(|| EventError::Shape(format!("paths[{i}] is not a string")))?;
        if !raw.starts_with('/') {
            return Err(EventError::Shape(format!(
                "paths[{i}] = {raw:?} must start with '/'"
            )));
        }
        let raw = &normal_target(raw);
        let path = norm(raw);
        if recursive {
            subtree(raw, &path, &mut out);
        } else {
            resource(&path, &mut out);
            out.tag("list", &path);
            out.target(raw.to_owned());
        }
        // The change may have added or removed it.
        members_changed(&parent(&path), &mut out);
    }
    Ok(out.list)
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn write(method: &str, path: &str, headers: &[(&str, &str)], status: u16) -> Vec<String> {
        let mut b = Request::builder().method(method).uri(path);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        on_write(1, &parts, StatusCode::from_u16(status).unwrap())
            .into_iter()
            .map(|i| match i {
                Invalidation::Tag(t) => t.name().to_owned(),
                Invalidation::Target { target, .. } => format!("target {target}"),
                Invalidation::Prefix { prefix, .. } => format!("prefix {prefix}"),
                Invalidation::Key(k) => format!("key {k:?}"),
            })
            .collect()
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(norm("/a/b%20c/"), "/a/b c");
        assert_eq!(norm("/d//f"), "/d/f");
        assert_eq!(norm("/d/x/../f"), "/d/f");
        assert_eq!(norm("/"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
    }

    #[test]
    fn put_reaches_the_body_properties_and_the_parents_listing() {
        let w = write("PUT", "/d/f.txt", &[], 201);
        for t in [
            "dav:res:/d/f.txt",
            "dav:props:/d/f.txt",
            "dav:list:/d",
            "dav:res:/d",
            "target /d/f.txt",
        ] {
            assert!(w.contains(&t.to_owned()), "{t} in {w:?}");
        }
        assert!(
            !w.iter().any(|t| t.starts_with("prefix")),
            "a PUT has no descendants"
        );
    }

    #[test]
    fn overwriting_put_leaves_the_parents_own_properties() {
        let w = write("PUT", "/d/f.txt", &[], 204);
        assert!(
            w.contains(&"dav:props:/d/f.txt".to_owned()),
            "listings showing it"
        );
        assert!(!w.contains(&"dav:list:/d".to_owned()) && !w.contains(&"dav:res:/d".to_owned()));
    }

    #[test]
    fn delete_reaches_descendants_and_the_parent() {
        let w = write("DELETE", "/d/sub/", &[], 204);
        assert!(w.contains(&"prefix /d/sub/".to_owned()));
        assert!(w.contains(&"dav:list:/d".to_owned()));
    }

    #[test]
    fn move_and_copy_reach_source_destination_and_parents() {
        let w = write(
            "MOVE",
            "/a/x",
            &[("destination", "http://h/b/y"), ("overwrite", "T")],
            201,
        );
        for t in [
            "prefix /a/x/",
            "prefix /b/y/",
            "dav:list:/a",
            "dav:list:/b",
            "dav:res:/b/y",
        ] {
            assert!(w.contains(&t.to_owned()), "{t} in {w:?}");
        }
        let w = write(
            "MOVE",
            "/a/x",
            &[("destination", "http://h/b//c/../y")],
            201,
        );
        assert!(w.contains(&"prefix /b/y/".to_owned()) && w.contains(&"dav:res:/b/y".to_owned()));
        let w = write("COPY", "/a/x", &[("destination", "/b/y")], 201);
        assert!(w.contains(&"prefix /b/y/".to_owned()) && w.contains(&"dav:list:/b".to_owned()));
        assert!(
            !w.contains(&"prefix /a/x/".to_owned()),
            "COPY leaves the source"
        );
    }

    #[test]
    fn proppatch_reaches_properties_only() {
        assert_eq!(write("PROPPATCH", "/a/x", &[], 207), vec!["dav:props:/a/x"]);
    }

    #[test]
    fn locks_reach_lockdiscovery_and_lock_null_resources_their_parent() {
        let w = write("LOCK", "/a/x", &[], 200);
        assert!(w.contains(&"dav:props:/a/x".to_owned()));
        assert!(
            w.contains(&"dav:list:/a".to_owned()),
            "Apache creates with 200"
        );
        let w = write("UNLOCK", "/a", &[("depth", "infinity")], 204);
        assert!(w.contains(&"prefix /a/".to_owned()));
    }

    #[test]
    fn external_notices_are_checked_and_applied() {
        let inv = on_external(1, br#"{"paths": ["/a/b"], "recursive": true}"#).unwrap();
        assert!(inv.contains(&Invalidation::prefix(1, "/a/b/")));
        let inv = on_external(1, br#"{"paths": ["/a//b/"], "recursive": true}"#).unwrap();
        assert!(inv.contains(&Invalidation::prefix(1, "/a/b/")));
        let inv = on_external(1, br#"{"paths": ["/a/b"]}"#).unwrap();
        assert!(!inv.iter().any(|i| matches!(i, Invalidation::Prefix { .. })));
        for (bad, says) in [
            ("nope", "not a JSON object"),
            ("{}", "missing \"paths\""),
            (r#"{"paths": "/a"}"#, "missing \"paths\""),
            (r#"{"paths": [1]}"#, "not a string"),
            (r#"{"paths": ["a"]}"#, "must start with '/'"),
            (r#"{"paths": ["/a"], "recursive": "yes"}"#, "true or false"),
            (r#"{"paths": ["/a"], "recurse": true}"#, "unknown field"),
        ] {
            let e = on_external(1, bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
