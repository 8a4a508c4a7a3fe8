//! The two XML documents the WebDAV dialect reads: a PROPFIND request body
//! (which properties are asked for: part of the cache key) and a 207
//! multistatus (each member's href and `getetag`: the collection's ledger).
//! Parsed with quick-xml; anything unreadable makes the request pass
//! through or the listing carry no ledger, never an error to the client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// Largest PROPFIND body read to build a key.
pub const MAX_PROPFIND_BODY: usize = 64 << 10;
/// Distinct property-set strings kept interned; beyond it, shapes are not shared.
const INTERN_LIMIT: usize = 10_000;

/// The same PROPFIND shape, asked for by millions of resources, is one
/// allocation: key classes are interned.
pub fn intern(s: &str) -> Arc<str> {
    static POOL: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let pool = POOL.get_or_init(Mutex::default);
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = pool.get(s) {
        return hit.clone();
    }
    let arc: Arc<str> = Arc::from(s);
    if pool.len() < INTERN_LIMIT {
        pool.insert(arc.clone());
    }
    arc
}

/// The normalized property set of a PROPFIND body: `allprop` (also for an
/// empty body), `propname`, or the sorted `{namespace}name` list. `None`
/// when the body is not a PROPFIND document we can read.
pub fn requested_props(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some("allprop".into());
    }
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut names = Vec::new();
    let mut kind = None;
    let mut saw_propfind = false;
    loop {
        let event = reader.read_event().ok()?;
        let (element, is_start) = match &event {
            Event::Start(e) => (e.clone(), true),
            Event::Empty(e) => (e.clone(), false),
            Event::End(_) => {
                open.pop()?;
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let local = element.local_name().as_ref().to_vec();
        if open.last().is_some_and(|parent| parent == b"prop") {
            let (ns, _) = reader.resolve_element(element.name());
            names.push(format!(
                "{{{}}}{}",
                ns_text(&ns),
                String::from_utf8_lossy(&local)
            ));
        } else {
            match local.as_slice() {
                b"propfind" => saw_propfind = true,
                b"allprop" => kind = Some("allprop"),
                b"propname" => kind = Some("propname"),
                _ => {}
            }
        }
        if is_start {
            open.push(local);
        }
    }
    if !saw_propfind {
        return None;
    }
    if !names.is_empty() {
        names.sort();
        names.dedup();
        return Some(names.join(" "));
    }
    kind.map(str::to_owned)
}

fn ns_text(ns: &ResolveResult<'_>) -> String {
    match ns {
        ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
        _ => String::new(),
    }
}

/// One member of a multistatus listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The href's path (an absolute URL's path part), percent-decoded.
    pub path: String,
    pub etag: Option<String>,
}

/// The members of a 207 multistatus, in document order. Unreadable
/// documents give what was read before the error.
pub fn members(body: &[u8]) -> Vec<Member> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut current: Option<Member> = None;
    let mut field: Option<&'static str> = None;
    let mut text = String::new();
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"response" => {
                    current = Some(Member {
                        path: String::new(),
                        etag: None,
                    })
                }
                b"href" => {
                    field = Some("href");
                    text.clear();
                }
                b"getetag" => {
                    field = Some("getetag");
                    text.clear();
                }
                _ => {}
            },
            Event::Text(t) if field.is_some() => text.push_str(&t.decode().unwrap_or_default()),
            Event::GeneralRef(r) if field.is_some() => {
                let name = r.decode().unwrap_or_default();
                text.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
                if let Some(code) = name.strip_prefix('#') {
                    let n = match code.strip_prefix('x') {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => code.parse().ok(),
                    };
                    if let Some(c) = n.and_then(char::from_u32) {
                        text.push(c);
                    }
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"href" => {
                    if let Some(m) = current.as_mut()
                        && m.path.is_empty()
                    {
                        m.path = href_path(text.trim());
                    }
                    field = None;
                }
                b"getetag" => {
                    if let Some(m) = current.as_mut() {
                        m.etag = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
                    }
                    field = None;
                }
                b"response" => {
                    if let Some(m) = current.take()
                        && !m.path.is_empty()
                    {
                        out.push(m);
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The path of an href that may be an absolute URL.
fn href_path(href: &str) -> String {
    let path = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    crate::percent::decode_lossy(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propfind_bodies_normalize_to_a_sorted_property_set() {
        let a = br#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:x="urn:x"><D:prop><x:title/><D:getetag/></D:prop></D:propfind>"#;
        let b = br#"<propfind xmlns="DAV:"><prop><getetag></getetag><title xmlns="urn:x"/></prop></propfind>"#;
        assert_eq!(requested_props(a).unwrap(), "{DAV:}getetag {urn:x}title");
        assert_eq!(requested_props(a), requested_props(b));
        assert_eq!(requested_props(b"").unwrap(), "allprop");
        assert_eq!(
            requested_props(br#"<propfind xmlns="DAV:"><allprop/></propfind>"#).unwrap(),
            "allprop"
        );
        assert_eq!(
            requested_props(br#"<propfind xmlns="DAV:"><propname/></propfind>"#).unwrap(),
            "propname"
        );
        assert_eq!(requested_props(b"<not-dav/>"), None);
        assert_eq!(requested_props(b"<propfind><prop>"), None);
    }

    #[test]
    fn multistatus_members_carry_decoded_paths_and_etags() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/dir/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>
<D:response><D:href>http://h:80/dav/dir/a%20b.txt</D:href><D:propstat><D:prop><D:getetag>"5-abc"</D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/dir/q&amp;a</D:href><D:propstat><D:prop><D:getetag>W/"weak"</D:getetag></D:prop></D:propstat></D:response>
</D:multistatus>"#;
        let m = members(body);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            Member {
                path: "/dav/dir/".into(),
                etag: None
            }
        );
        assert_eq!(
            m[1],
            Member {
                path: "/dav/dir/a b.txt".into(),
                etag: Some("\"5-abc\"".into())
            }
        );
        assert_eq!(m[2].path, "/dav/dir/q&a");
        assert!(members(b"garbage <<<").is_empty());
    }

    #[test]
    fn interned_shapes_share_one_allocation() {
        assert!(Arc::ptr_eq(
            &intern("PROPFIND 1 allprop"),
            &intern("PROPFIND 1 allprop")
        ));
    }
}
