//! `webdav`: PROPFIND request bodies and 207 multistatus listings
//! (`dialect::webdav::xml`), and external change notices
//! (`dialect::webdav::invalidate`), all read from the same bytes.

use revcache_core::Invalidation;

use crate::dialect::webdav::invalidate::on_external;
use crate::dialect::webdav::xml::{
    MAX_PROPERTIES, MAX_PROPERTY_BYTES, key_class, members, requested_props,
};

/// Never panics; a property set is `allprop`, `propname` or a sorted list
/// that reads back as the properties it was made from (two different sets
/// never share a key class), within its bounds; every listed member has a
/// path; a notice invalidates only paths and `dav:` tags of its route.
pub fn check_webdav(data: &[u8]) {
    check_propfind(data);
    let listed = members(data);
    assert_eq!(listed, members(data));
    for member in &listed {
        assert!(!member.path.is_empty(), "a member without a path");
        assert!(member.etag.as_ref().is_none_or(|e| !e.is_empty()));
    }
    if let Ok(invalidations) = on_external(5, data) {
        for inv in invalidations {
            match inv {
                Invalidation::Target { route, target } => {
                    assert_eq!(route, Some(5));
                    assert!(target.starts_with('/'), "{target:?}");
                }
                Invalidation::Prefix { route, prefix } => {
                    assert_eq!(route, Some(5));
                    assert!(prefix.starts_with('/'), "{prefix:?}");
                }
                Invalidation::Tag(tag) => {
                    assert_eq!(tag.route(), 5);
                    assert!(tag.name().starts_with("dav:"));
                }
                Invalidation::Key(_) => panic!("a notice named a key"),
            }
        }
    }
}

fn check_propfind(data: &[u8]) {
    let Some(props) = requested_props(data) else {
        return;
    };
    assert_eq!(requested_props(data).as_ref(), Some(&props));
    let _ = key_class("1", &props);
    if props == "allprop" || props == "propname" {
        return;
    }
    let names: Vec<&str> = props.split(' ').collect();
    assert!(names.len() <= MAX_PROPERTIES);
    assert!(props.len() <= MAX_PROPERTY_BYTES + names.len());
    assert!(names.is_sorted() && names.windows(2).all(|w| w[0] != w[1]));
    let replacement = "\u{fffd}".as_bytes();
    let input_has_replacement = data.windows(3).any(|w| w == replacement);
    for name in names {
        let (namespace, local) = name
            .strip_prefix('{')
            .and_then(|n| n.split_once('}'))
            .unwrap_or_else(|| panic!("{name:?} is not {{namespace}}name"));
        assert!(!local.contains(['{', '}']), "{name:?}");
        assert!(!namespace.contains(['{', '}']), "{name:?}");
        assert!(
            input_has_replacement || !name.contains('\u{fffd}'),
            "{name:?}: bytes that are not UTF-8 read as U+FFFD"
        );
    }
}
