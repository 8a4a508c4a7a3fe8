//! `gerrit`: stream-events lines and webhook bodies
//! (`dialect::gerrit::event`), query strings (`dialect::gerrit::query`)
//! and `Depends-On` footers, all read from the same bytes.

use crate::dialect::gerrit::ANY;
use crate::dialect::gerrit::event::{depends_on, parse};
use crate::dialect::gerrit::query::{is_change_id, membership_tags};

/// Never panics; an event about a change invalidates that change and the
/// catch-all; only `dropped-output` is a gap; a query always has a
/// membership tag, and one not understood has only the catch-all;
/// `Depends-On` yields Change-Ids only.
pub fn check_gerrit(data: &[u8]) {
    check_event(data);
    for line in data.split(|b| *b == b'\n').filter(|l| l.len() < data.len()) {
        check_event(line);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tags = membership_tags(text);
    assert!(!tags.is_empty(), "a query with nothing to invalidate it");
    assert_eq!(tags, membership_tags(text));
    let word = |w: &str| text.split_whitespace().any(|t| t.eq_ignore_ascii_case(w));
    // Outside quotes and braces, where OR and NOT are operators.
    if !text.contains(['"', '{']) && (word("OR") || word("NOT")) {
        assert_eq!(tags, [ANY], "a disjunction narrowed");
    }
    for id in depends_on(text) {
        assert!(is_change_id(&id), "{id:?} is not a Change-Id");
    }
}

fn check_event(bytes: &[u8]) {
    let Ok(event) = parse(bytes) else {
        return;
    };
    assert_eq!(event.gap, event.kind == "dropped-output");
    for number in &event.changes {
        assert!(event.tags.contains(&format!("change:{number}")));
        assert!(event.tags.iter().any(|t| t == ANY));
    }
}
