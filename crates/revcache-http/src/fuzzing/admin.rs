//! `admin_query`: the query strings of `/purge`, `/inspect` and
//! `/stats/history` (`crate::admin_query`).

use crate::admin_query::{self, INSPECT_MAX_PAGE, query_value};
use crate::request_target::normalize_target;

/// Never panics; a purge names exactly one scope, a url or prefix is a
/// normalised target (normalising it again changes nothing) and a tag is
/// not empty; what was read, written back as a query, reads the same;
/// an inspect page's `next` link asks for the same rows after its cursor.
pub fn check_admin_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = admin_query::history_since(query);
    if let Ok(q) = admin_query::inspect(query) {
        assert!((1..=INSPECT_MAX_PAGE).contains(&q.limit));
        let cursor = q.after.clone().unwrap_or_else(|| "6100".into());
        let next = q.next(&cursor);
        let again = next
            .strip_prefix("/inspect?")
            .map(admin_query::inspect)
            .expect("a next link is an inspect query");
        let want = admin_query::InspectQuery {
            after: Some(cursor),
            ..q
        };
        assert_eq!(again, Ok(want), "{next}");
    }
    if let Ok(p) = admin_query::purge(query) {
        match p.scope.as_str() {
            "url" | "prefix" => {
                assert!(p.value.starts_with('/'));
                assert_eq!(
                    normalize_target(&p.value).ok().as_deref(),
                    Some(p.value.as_str())
                );
            }
            "tag" => assert!(!p.value.is_empty()),
            other => panic!("purge scope {other:?}"),
        }
        let mut written = format!("{}={}", p.scope, query_value(&p.value));
        if let Some(route) = &p.route {
            written.push_str(&format!("&route={}", query_value(route)));
        }
        assert_eq!(admin_query::purge(&written), Ok(p), "{written}");
    }
}
