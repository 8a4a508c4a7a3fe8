//! The request target as every later step sees it: routing, the cache key
//! and the upstream request all use the path this module produces, so a
//! path cannot name one resource to revcache and another to the upstream.
//!
//! Owns the normal form of a request path (RFC 3986 §6.2.2 and §5.2.4):
//! escapes of unreserved characters decoded (`%2e` is `.`), other escapes
//! in upper case, dot segments removed, empty segments collapsed (`//` is
//! `/`). What upstreams disagree on is refused with a 400 rather than
//! guessed: malformed escapes, `%00`, `..` above the root, dot segments
//! hidden behind `;` parameters (`..;`, which servlet containers strip) or
//! behind encoded separators (`..%2F`, `..\`), and overlong UTF-8 forms of
//! `.`, `/` and `\`. Encoded slashes elsewhere are reported, and the route
//! decides (`encoded_slashes`). Never touches the query.

use std::borrow::Cow;

use http::Uri;
use http::uri::PathAndQuery;

/// Why a request path was refused (each is a 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    #[error(
        "request path has a malformed percent-escape at byte {at}; escapes are '%' and two hex digits"
    )]
    BadEscape { at: usize },
    #[error("request path contains %00")]
    EncodedNul,
    #[error("request path climbs above the root with '..'")]
    AboveRoot,
    #[error(
        "request path segment {segment:?} hides a dot segment behind ';' or an encoded separator; send the path without it"
    )]
    HiddenDotSegment { segment: String },
    #[error("request path contains an overlong UTF-8 encoding of '.', '/' or '\\'")]
    Overlong,
    #[error("request path is not a valid URI path once normalised")]
    Unparsable,
    #[error(
        "request path contains an encoded slash or a backslash, which this route does not accept (routes.encoded_slashes)"
    )]
    EncodedSlash,
}

/// A request target in normal form.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The rewritten URI, or `None` when the request's was already normal.
    pub uri: Option<Uri>,
    /// The path keeps an encoded slash or backslash (`%2F`, `%5C`, `\`):
    /// one segment to revcache, possibly two to the upstream.
    pub encoded_slash: bool,
}

/// `uri` in normal form (see the module doc). Paths that are not
/// origin-form (`*`, an authority) are left to routing, which refuses them.
pub fn normalize(uri: &Uri) -> Result<Target, TargetError> {
    let path = uri.path();
    if !path.starts_with('/') {
        return Ok(Target {
            uri: None,
            encoded_slash: false,
        });
    }
    let normal = normalize_path(path)?;
    let encoded_slash = has_encoded_slash(&normal);
    let Cow::Owned(normal) = normal else {
        return Ok(Target {
            uri: None,
            encoded_slash,
        });
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = uri.clone().into_parts();
    // Only characters the request already had (or unreserved ones) remain,
    // so this parses; if it ever did not, the request is refused, not
    // forwarded in a form revcache did not check.
    parts.path_and_query =
        Some(PathAndQuery::from_maybe_shared(path_and_query).map_err(|_| TargetError::Unparsable)?);
    let uri = Uri::from_parts(parts).map_err(|_| TargetError::Unparsable)?;
    Ok(Target {
        uri: Some(uri),
        encoded_slash,
    })
}

/// A path and query an operator or a notice names (a purge's `url=`), in
/// the normal form request targets are keyed by.
pub fn normalize_target(target: &str) -> Result<String, TargetError> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = normalize_path(path)?;
    Ok(match query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    })
}

/// Whether a normalised path holds an encoded separator.
fn has_encoded_slash(path: &str) -> bool {
    if !path.bytes().any(|b| b == b'%' || b == b'\\') {
        return false;
    }
    path.contains('\\') || path.contains("%2F") || path.contains("%5C")
}

/// The normal form of an origin-form path (starting with `/`); borrowed
/// when it already is.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<String> = Vec::new();
    let mut offset = 1;
    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len() - 1;
    let mut trailing_slash = false;
    for (i, raw) in raw_segments.iter().enumerate() {
        let segment = normalize_segment(raw, offset)?;
        offset += raw.len() + 1;
        check_hidden_dots(&segment)?;
        match segment.as_str() {
            "" => trailing_slash = i == last,
            "." => trailing_slash = i == last,
            ".." => {
                if out.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
                trailing_slash = i == last;
            }
            _ => {
                out.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(path.len());
    for s in &out {
        normal.push('/');
        normal.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        normal.push('/');
    }
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// The hit path's check: no escape, backslash, empty or dot segment, and
/// no `.;` parameter. Allocates nothing.
fn is_normal(path: &str) -> bool {
    // One pass settles what nearly every path is: no escape, backslash,
    // empty segment or segment starting with a dot.
    let bytes = path.as_bytes();
    if !bytes
        .windows(2)
        .any(|w| matches!(w, [b'/', b'/' | b'.']) || w[1] == b'%' || w[1] == b'\\')
    {
        return true;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(s) = segments.next() {
        let is_last = segments.peek().is_none();
        if (s.is_empty() && !is_last)
            || s == "."
            || s == ".."
            || s.starts_with(".;")
            || s.starts_with("..;")
            || s.bytes().any(|b| b == b'%' || b == b'\\')
        {
            return false;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters and upper-cases the others;
/// refuses malformed escapes, `%00` and overlong UTF-8 separators.
fn normalize_segment(raw: &str, offset: usize) -> Result<String, TargetError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // The segment's escaped bytes in order, for the overlong check.
    let mut escaped: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Unescaped bytes are copied as they are; `raw` is a &str and
            // escapes are ASCII, so copying by chars keeps it valid UTF-8.
            let ch_len = raw[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&raw[i..i + ch_len]);
            escaped.push(0);
            i += ch_len;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(TargetError::BadEscape { at: offset + i });
        };
        let v = hi << 4 | lo;
        if v == 0 {
            return Err(TargetError::EncodedNul);
        }
        if is_unreserved(v) {
            out.push(char::from(v));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
        }
        escaped.push(v);
        i += 3;
    }
    if has_overlong_separator(&escaped) {
        return Err(TargetError::Overlong);
    }
    Ok(out)
}

/// `C0 AE`, `E0 80 AF` …: ASCII characters in a longer UTF-8 form, which
/// lenient decoders turn into `.`, `/` or `\`. Lead bytes C0 and C1 only
/// ever start such forms; E0 and F0 do when followed by 80–9F and 80–8F.
fn has_overlong_separator(escaped: &[u8]) -> bool {
    escaped.windows(2).any(|w| {
        let continuation = (0x80..=0xBF).contains(&w[1]);
        match w[0] {
            0xC0 | 0xC1 => continuation,
            0xE0 => (0x80..=0x9F).contains(&w[1]),
            0xF0 => (0x80..=0x8F).contains(&w[1]),
            _ => false,
        }
    })
}

/// Refuses a segment that some upstream would read as `.` or `..`: with a
/// `;` parameter (`..;jsessionid`), or containing a piece between encoded
/// separators that is one (`a%2F..`).
fn check_hidden_dots(segment: &str) -> Result<(), TargetError> {
    // Plain dot segments are resolved by the caller.
    if segment == "." || segment == ".." {
        return Ok(());
    }
    let is_dot = |piece: &str| {
        let name = piece.split(';').next().unwrap_or(piece);
        name == "." || name == ".."
    };
    let hidden = segment
        .split("%2F")
        .flat_map(|p| p.split("%5C"))
        .flat_map(|p| p.split('\\'))
        .any(is_dot);
    if hidden {
        return Err(TargetError::HiddenDotSegment {
            segment: segment.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, TargetError> {
        normalize_path(path).map(Cow::into_owned)
    }

    #[test]
    fn paths_take_their_normal_form() {
        for (path, normal) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/api/../admin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E./admin", "/admin"),
            ("/api/.%2e", "/"),
            ("/a/%2e/b", "/a/b"),
            ("//a", "/a"),
            ("/d//f", "/d/f"),
            ("/d///f//", "/d/f/"),
            ("/%7Euser/%41b", "/~user/Ab"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/sp%20ace", "/sp%20ace"),
            ("/a/..", "/"),
            ("/./", "/"),
            ("/a;v=1/b", "/a;v=1/b"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            ("/infra%2Fci~42", "/infra%2Fci~42"),
        ] {
            assert_eq!(norm(path).as_deref(), Ok(normal), "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (path, error) in [
            ("/..", TargetError::AboveRoot),
            ("/a/../..", TargetError::AboveRoot),
            ("/%2e%2e/etc/passwd", TargetError::AboveRoot),
            ("/a%zz", TargetError::BadEscape { at: 2 }),
            ("/a/%4", TargetError::BadEscape { at: 3 }),
            ("/a%+1", TargetError::BadEscape { at: 2 }),
            ("/a%00b", TargetError::EncodedNul),
            ("/a%c0%ae%c0%ae/b", TargetError::Overlong),
            ("/a%e0%80%af", TargetError::Overlong),
        ] {
            assert_eq!(norm(path), Err(error), "{path}");
        }
        for path in [
            "/api/..;/admin",
            "/api/.;x/admin",
            "/api/..%2Fadmin",
            "/api/x%2F..%2F..%2Fadmin",
            "/api/..%5cadmin",
            "/api/..\\admin",
            "/api/%2e%2e%2fadmin",
        ] {
            assert!(
                matches!(norm(path), Err(TargetError::HiddenDotSegment { .. })),
                "{path}: {:?}",
                norm(path)
            );
        }
    }

    #[test]
    fn normal_paths_are_borrowed_and_queries_untouched() {
        assert!(matches!(normalize_path("/a/b.txt"), Ok(Cow::Borrowed(_))));
        let uri: Uri = "/a/./b?x=/../y&z=%2e".parse().unwrap();
        let t = normalize(&uri).unwrap();
        assert_eq!(t.uri.unwrap().to_string(), "/a/b?x=/../y&z=%2e");
        let uri: Uri = "/a/b?q".parse().unwrap();
        assert_eq!(normalize(&uri).unwrap().uri, None);
        let uri: Uri = "http://h:1/x/../y".parse().unwrap();
        assert_eq!(
            normalize(&uri).unwrap().uri.unwrap().to_string(),
            "http://h:1/y"
        );
        let uri: Uri = "*".parse().unwrap();
        assert_eq!(normalize(&uri).unwrap().uri, None);
    }

    #[test]
    fn named_targets_normalise_their_path_only() {
        assert_eq!(normalize_target("/d//f?x=//").as_deref(), Ok("/d/f?x=//"));
        assert_eq!(normalize_target("/a/../b").as_deref(), Ok("/b"));
        assert_eq!(normalize_target("/.."), Err(TargetError::AboveRoot));
    }

    #[test]
    fn encoded_slashes_are_reported() {
        for (path, encoded) in [
            ("/a/b", false),
            ("/a%2fb", true),
            ("/a%5Cb", true),
            ("/a\\b", true),
            ("/a%252Fb", false),
        ] {
            let uri: Uri = path.parse().unwrap();
            assert_eq!(normalize(&uri).unwrap().encoded_slash, encoded, "{path}");
        }
    }
}
