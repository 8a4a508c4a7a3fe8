//! The two XML documents the WebDAV dialect reads: a PROPFIND request body
//! (which properties are asked for: part of the cache key) and a 207
//! multistatus (each member's href and `getetag`: the collection's ledger).
//! Parsed with quick-xml; anything unreadable makes the request pass
//! through or the listing carry no ledger, never an error to the client.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use quick_xml::NsReader;
use quick_xml::escape::{EscapeError, resolve_xml_entity};
use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;

/// Largest PROPFIND body read to build a key.
pub const MAX_PROPFIND_BODY: usize = 64 << 10;
/// Most properties a cached PROPFIND may name; beyond, it passes through.
pub const MAX_PROPERTIES: usize = 256;
/// Most bytes of `{namespace}name` text a cached PROPFIND may name (a
/// namespace counts once per property naming it); beyond, it passes through.
pub const MAX_PROPERTY_BYTES: usize = 16 << 10;
/// Bytes of interned key classes kept; beyond, shapes are not shared.
pub const INTERN_BYTES: usize = 1 << 20;
/// What one interned string costs besides its text (Arc counts, set slot).
const INTERN_OVERHEAD: usize = 48;

/// Interned strings, bounded by the bytes they hold.
struct Pool {
    shapes: HashSet<Arc<str>>,
    bytes: usize,
    limit: usize,
}

impl Pool {
    fn new(limit: usize) -> Self {
        Pool {
            shapes: HashSet::new(),
            bytes: 0,
            limit,
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(hit) = self.shapes.get(s) {
            return hit.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        let cost = s.len() + INTERN_OVERHEAD;
        if self.bytes + cost <= self.limit {
            self.bytes += cost;
            self.shapes.insert(arc.clone());
        }
        arc
    }
}

fn pool() -> MutexGuard<'static, Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::new(INTERN_BYTES)))
        .lock()
}

/// The same PROPFIND shape, asked for by millions of resources, is one
/// allocation: key classes are interned, up to [`INTERN_BYTES`].
pub fn intern(s: &str) -> Arc<str> {
    pool().intern(s)
}

/// Bytes the intern pool holds (text plus per-shape overhead).
pub fn interned_bytes() -> usize {
    pool().bytes
}

/// The key class of a PROPFIND at `depth` asking for `props` (from
/// [`requested_props`]): `allprop` and `propname` by name, a property list
/// by its BLAKE3 hash, so a class is short whatever was asked.
pub fn key_class(depth: &str, props: &str) -> Arc<str> {
    match props {
        "allprop" | "propname" => intern(&format!("PROPFIND {depth} {props}")),
        list => intern(&format!(
            "PROPFIND {depth} props:{}",
            blake3::hash(list.as_bytes()).to_hex()
        )),
    }
}

/// The normalized property set of a PROPFIND body: `allprop` (also for an
/// empty body), `propname`, or the sorted `{namespace}name` list. `None`
/// when the body is not a PROPFIND document we can read, or names more
/// than [`MAX_PROPERTIES`] properties or [`MAX_PROPERTY_BYTES`] of names,
/// or a name the list cannot spell unambiguously (see [`name_part`]): the
/// request then passes through uncached.
pub fn requested_props(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some("allprop".into());
    }
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut names = Vec::new();
    let mut name_bytes = 0usize;
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
            // Counted before anything is built: one long namespace named
            // by thousands of properties would otherwise expand a 64 KiB
            // body into hundreds of megabytes.
            name_bytes += ns_len(&ns) + local.len() + 2;
            if names.len() >= MAX_PROPERTIES || name_bytes > MAX_PROPERTY_BYTES {
                return None;
            }
            names.push(format!(
                "{{{}}}{}",
                name_part(ns_bytes(&ns))?,
                name_part(&local)?
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

fn ns_len(ns: &ResolveResult<'_>) -> usize {
    match ns {
        ResolveResult::Bound(n) => n.as_ref().len(),
        _ => 0,
    }
}

fn ns_bytes<'a>(ns: &'a ResolveResult<'_>) -> &'a [u8] {
    match ns {
        ResolveResult::Bound(n) => n.as_ref(),
        _ => b"",
    }
}

/// A namespace or local name as the property list spells it: `None` (the
/// request passes through) when it is not UTF-8 or holds a brace or
/// whitespace, so that two different property sets never spell the same
/// list (`{a}b {c}d` is two properties, never one in namespace `a}b {c`).
fn name_part(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.contains(['{', '}']) && !text.contains(char::is_whitespace)).then_some(text)
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
    let mut out = Vec::new();
    if let Err(e) = read_members(body, &mut out) {
        tracing::debug!(error = %e, read = out.len(), "multistatus unreadable; members after the error are not read");
    }
    out
}

/// Reads the members of a multistatus into `out` until the end or the
/// first error.
fn read_members(body: &[u8], out: &mut Vec<Member>) -> Result<(), quick_xml::Error> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut current: Option<Member> = None;
    let mut field: Option<&'static str> = None;
    let mut text = String::new();
    loop {
        match reader.read_event()? {
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
                text.push_str(&resolve_ref(&r, reader.buffer_position())?);
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
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The text of an entity or character reference (`&amp;`, `&#x41;`), as
/// quick-xml resolves it: character references and XML's five predefined
/// entities. A multistatus declares no other entity, so any other one is
/// an error; `end` is the document offset just past the reference.
fn resolve_ref(r: &BytesRef<'_>, end: u64) -> Result<Cow<'static, str>, quick_xml::Error> {
    if let Some(c) = r.resolve_char_ref()? {
        return Ok(Cow::Owned(c.to_string()));
    }
    let name = r.decode()?;
    match resolve_xml_entity(&name) {
        Some(text) => Ok(Cow::Borrowed(text)),
        None => {
            // The name sits between `&` and `;`.
            let end = usize::try_from(end).unwrap_or(usize::MAX).saturating_sub(1);
            let range = end.saturating_sub(name.len())..end;
            Err(EscapeError::UnrecognizedEntity(range, name.into_owned()).into())
        }
    }
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

    /// A multistatus of one member per href in `hrefs`.
    fn multistatus(hrefs: &[&str]) -> String {
        let mut body = String::from(r#"<D:multistatus xmlns:D="DAV:">"#);
        for h in hrefs {
            body.push_str(&format!("<D:response><D:href>{h}</D:href></D:response>"));
        }
        body.push_str("</D:multistatus>");
        body
    }

    #[test]
    fn references_resolve_to_the_predefined_entities_and_characters() {
        let body = multistatus(&[
            "/d/&amp;&lt;&gt;&quot;&apos;",
            "/d/&#65;&#x42;&#x263a;",
            "/d/a%20&amp;%20b",
        ]);
        let paths: Vec<String> = members(body.as_bytes())
            .into_iter()
            .map(|m| m.path)
            .collect();
        assert_eq!(paths, ["/d/&<>\"'", "/d/AB\u{263a}", "/d/a & b"]);
    }

    #[test]
    fn an_unknown_entity_is_an_error_and_ends_the_listing_there() {
        let body = multistatus(&["/d/a", "/d/&nbsp;", "/d/c"]);
        let mut out = Vec::new();
        let err = read_members(body.as_bytes(), &mut out).unwrap_err();
        let at = body.find("nbsp").unwrap();
        assert!(
            matches!(&err, quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(r, name))
                if name == "nbsp" && *r == (at..at + 4)),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("unrecognized entity `nbsp`"),
            "{err}"
        );
        assert_eq!(out.len(), 1);
        // What was read before it is kept; nothing is made up after it.
        let paths: Vec<String> = members(body.as_bytes())
            .into_iter()
            .map(|m| m.path)
            .collect();
        assert_eq!(paths, ["/d/a"]);
    }

    #[test]
    fn a_malformed_character_reference_is_an_error() {
        // `u32::from_str_radix("+41", 16)` is 0x41: a sign is not a digit.
        for bad in ["&#x+41;", "&#+65;", "&#xD800;", "&#0;", "&#xZZ;"] {
            let body = multistatus(&["/d/a", &format!("/d/{bad}")]);
            let mut out = Vec::new();
            let err = read_members(body.as_bytes(), &mut out).unwrap_err();
            assert!(matches!(err, quick_xml::Error::Escape(_)), "{bad}: {err:?}");
            assert_eq!(out.len(), 1, "{bad}");
            assert_eq!(members(body.as_bytes()), out, "{bad}");
        }
    }

    /// A body naming `count` properties `<x:pN/>` in one namespace
    /// `ns_len` bytes long, padded to `MAX_PROPFIND_BODY` at most.
    fn propfind(count: usize, ns_len: usize) -> String {
        let ns = "u".repeat(ns_len);
        let mut body = format!(r#"<D:propfind xmlns:D="DAV:"><D:prop xmlns:x="{ns}">"#);
        for i in 0..count {
            body.push_str(&format!("<x:p{i}/>"));
        }
        body.push_str("</D:prop></D:propfind>");
        body
    }

    /// Found by the `webdav` fuzz target: names were read lossily, so
    /// `getlast\xff\x01fied` and `getlast\xfe\x01fied` were one property,
    /// and a namespace holding `} {` spelled one property as two.
    #[test]
    fn property_sets_that_would_share_a_spelling_are_not_keyed() {
        let body = |prop: &[u8]| {
            let mut b = br#"<D:propfind xmlns:D="DAV:"><D:prop>"#.to_vec();
            b.extend_from_slice(prop);
            b.extend_from_slice(b"</D:prop></D:propfind>");
            b
        };
        assert_eq!(requested_props(&body(b"<D:getlast\xff\x01fied/>")), None);
        let two = requested_props(&body(br#"<a xmlns="x"/><d xmlns="c"/>"#));
        assert_eq!(two.as_deref(), Some("{c}d {x}a"));
        assert_eq!(requested_props(&body(br#"<d xmlns="x}a {c"/>"#)), None);
        assert_eq!(requested_props(&body(br#"<D:a{b/>"#)), None);
    }

    #[test]
    fn oversized_property_sets_are_not_keyed() {
        // One 30 KB namespace named by thousands of properties: the
        // expansion that turned 64 KiB into 120 MB of key.
        let body = propfind(3000, 30_000);
        assert!(body.len() <= MAX_PROPFIND_BODY, "{}", body.len());
        assert_eq!(requested_props(body.as_bytes()), None);
        assert_eq!(
            requested_props(propfind(MAX_PROPERTIES + 1, 3).as_bytes()),
            None
        );
        assert!(requested_props(propfind(MAX_PROPERTIES, 3).as_bytes()).is_some());
        // Thousands of namespaces, one per property.
        let mut many = String::from(r#"<propfind xmlns="DAV:"><prop>"#);
        for i in 0..2000 {
            many.push_str(&format!(r#"<a xmlns="urn:{i}"/>"#));
        }
        many.push_str("</prop></propfind>");
        assert!(many.len() <= MAX_PROPFIND_BODY);
        assert_eq!(requested_props(many.as_bytes()), None);
    }

    #[test]
    fn property_sets_are_keyed_by_their_hash() {
        let set = requested_props(propfind(MAX_PROPERTIES, 40).as_bytes()).unwrap();
        let class = key_class("1", &set);
        assert!(class.len() < 100, "{class}");
        assert!(Arc::ptr_eq(&class, &key_class("1", &set)));
        assert_ne!(class, key_class("0", &set));
        assert_ne!(class, key_class("1", "{DAV:}getetag"));
        assert_eq!(&*key_class("1", "allprop"), "PROPFIND 1 allprop");
    }

    #[test]
    fn the_intern_pool_is_bounded_by_bytes() {
        let mut pool = Pool::new(4096);
        let big = "x".repeat(1000);
        for i in 0..100 {
            pool.intern(&format!("{i}{big}"));
        }
        assert!(pool.bytes <= 4096, "{}", pool.bytes);
        assert_eq!(pool.shapes.len(), 3);
        // Beyond the bound a shape is still given out, only not shared.
        assert_eq!(&*pool.intern("late"), "late");
    }

    #[test]
    fn interned_shapes_share_one_allocation() {
        assert!(Arc::ptr_eq(
            &intern("PROPFIND 1 allprop"),
            &intern("PROPFIND 1 allprop")
        ));
    }
}
