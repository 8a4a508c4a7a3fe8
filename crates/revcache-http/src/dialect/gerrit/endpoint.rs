//! Which Gerrit REST endpoint a request path names, anonymous (`/changes/…`)
//! or authenticated (`/a/changes/…`).
//!
//! Only the shapes Gerrit documents (Documentation/rest-api-changes.txt)
//! and whose answers change only with a stream event of their own change
//! are classified; anything else, including what depends on other changes,
//! branches or state without events (drafts, edits, reviewed flags,
//! mergeability, attention set, descriptions), is [`Endpoint::Other`]:
//! plain RFC 9111. Paths
//! arrive normalised (`request_target`).

use super::query::is_change_id;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/changes/ID` and its sub-resources.
    Change { id: ChangeRef, sub: Sub },
    /// `/changes/?q=…`
    Query { q: String },
    /// Anything else (projects, accounts, config …): plain RFC 9111.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeRef {
    Number(u64),
    ChangeId(String),
    /// An id form we do not decode; only its own invalidations reach it.
    Opaque(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sub {
    /// The change itself (`/changes/ID`, `/detail`): a `ChangeInfo` with `meta_rev_id`.
    Info,
    /// `/revisions/REV/related`
    Related { revision: String },
    /// `/revisions/SHA/…` other than related: fixed content for a commit.
    Revision,
    /// Any other sub-resource.
    Other,
}

/// Change-level sub-resources that only that change's events alter.
const CHANGE_SUBS: &[&str] = &[
    "topic",
    "hashtags",
    "messages",
    "comments",
    "robotcomments",
    "message",
    "reviewers",
    "meta_diff",
    "assignee",
    "past_assignees",
];

/// Revision-level sub-resources that only that change's events alter.
const REVISION_SUBS: &[&str] = &[
    "commit",
    "mergelist",
    "review",
    "patch",
    "comments",
    "robotcomments",
    "ported_comments",
    "files",
    "archive",
    "reviewers",
];

/// Revision-level sub-resources fixed once the revision is a commit SHA.
const COMMIT_SUBS: &[&str] = &["commit", "mergelist", "patch", "files", "archive"];

/// Views of one file of a revision.
const FILE_VIEWS: &[&str] = &["content", "diff", "download", "blame"];

impl Endpoint {
    pub fn of(path: &str, query: Option<&str>) -> Endpoint {
        let Some((id, rest)) = change_path(path) else {
            return Endpoint::Other;
        };
        if id.is_empty() {
            if !rest.is_empty() {
                return Endpoint::Other;
            }
            let qs: Vec<String> = query
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.strip_prefix("q="))
                .map(decode_query_value)
                .collect();
            return match qs.as_slice() {
                [q] => Endpoint::Query { q: q.clone() },
                // No query, or several at once: shape unknown.
                _ => Endpoint::Query { q: String::new() },
            };
        }
        let per_user = query
            .unwrap_or("")
            .split('&')
            .any(|p| p == "reviewed" || p.starts_with("reviewed="));
        let sub = match rest.as_slice() {
            [] | ["detail"] => Sub::Info,
            ["revisions", rev, "related"] => Sub::Related {
                revision: (*rev).to_owned(),
            },
            ["revisions", _, "files"] if per_user => return Endpoint::Other,
            ["revisions", rev, view] if is_sha(rev) && COMMIT_SUBS.contains(view) => Sub::Revision,
            ["revisions", rev, "files", _, view] if is_sha(rev) && FILE_VIEWS.contains(view) => {
                Sub::Revision
            }
            [sub] if CHANGE_SUBS.contains(sub) => Sub::Other,
            ["messages" | "reviewers", _] | ["reviewers", _, "votes"] => Sub::Other,
            ["revisions", _, sub] if REVISION_SUBS.contains(sub) => Sub::Other,
            ["revisions", _, "comments" | "robotcomments", _]
            | ["revisions", _, "reviewers", _, "votes"] => Sub::Other,
            ["revisions", _, "files", _, view] if FILE_VIEWS.contains(view) => Sub::Other,
            _ => return Endpoint::Other,
        };
        Endpoint::Change {
            id: change_ref(&crate::percent::decode_lossy(id)),
            sub,
        }
    }
}

/// The change a write to `path` acts on: any `/changes/ID/…` path, so an
/// action revcache does not classify (abandon, rebase, a plugin's) still
/// invalidates its change.
pub fn written_change(path: &str) -> Option<ChangeRef> {
    let (id, _) = change_path(path)?;
    (!id.is_empty()).then(|| change_ref(&crate::percent::decode_lossy(id)))
}

/// `(ID, segments after it)` of a `/changes/…` or `/a/changes/…` path;
/// ID is empty for `/changes/`.
fn change_path(path: &str) -> Option<(&str, Vec<&str>)> {
    // `/a/changes/…` is the authenticated form of `/changes/…`.
    let path = path
        .strip_prefix("/a")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut segments = path.split('/');
    if segments.next() != Some("changes") {
        return None;
    }
    let id = segments.next().unwrap_or("");
    // A trailing slash names the same resource.
    let rest: Vec<&str> = segments.collect();
    let rest = match rest.as_slice() {
        [head @ .., ""] => head.to_vec(),
        _ => rest,
    };
    Some((id, rest))
}

pub fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn change_ref(id: &str) -> ChangeRef {
    let last = id.rsplit('~').next().unwrap_or(id);
    if let Ok(n) = last.parse::<u64>() {
        return ChangeRef::Number(n);
    }
    if is_change_id(last) {
        return ChangeRef::ChangeId(last.to_owned());
    }
    ChangeRef::Opaque(id.to_owned())
}

/// Query values are form-encoded: `+` is a space.
fn decode_query_value(s: &str) -> String {
    crate::percent::decode_lossy(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "I0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn change_endpoints_anonymous_and_authenticated() {
        let info = Endpoint::Change {
            id: ChangeRef::Number(42),
            sub: Sub::Info,
        };
        assert_eq!(Endpoint::of("/changes/42", Some("o=LABELS")), info);
        assert_eq!(Endpoint::of("/a/changes/42/detail", None), info);
        assert_eq!(Endpoint::of("/a/changes/infra%2Fci~42", None), info);
        assert_eq!(
            Endpoint::of(
                &format!("/changes/infra%2Fci~main~{CID}/revisions/abc/related"),
                None
            ),
            Endpoint::Change {
                id: ChangeRef::ChangeId(CID.into()),
                sub: Sub::Related {
                    revision: "abc".into()
                }
            }
        );
        assert!(matches!(
            Endpoint::of("/changes/42/revisions/1/files", Some("parent=1")),
            Endpoint::Change {
                sub: Sub::Other,
                ..
            }
        ));
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert!(matches!(
            Endpoint::of(
                &format!("/changes/42/revisions/{sha}/files"),
                Some("parent=1")
            ),
            Endpoint::Change {
                sub: Sub::Revision,
                ..
            }
        ));
    }

    #[test]
    fn only_documented_change_shapes_are_classified() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let sub = |path: &str, query: Option<&str>| match Endpoint::of(path, query) {
            Endpoint::Change { sub, .. } => Some(sub),
            _ => None,
        };
        for path in [
            "/changes/42/topic".to_owned(),
            "/a/changes/42/messages/abc".into(),
            "/changes/42/reviewers/1000/votes".into(),
            "/changes/42/revisions/current/review".into(),
            "/changes/42/revisions/2/files/src%2Fmain.rs/diff".into(),
            format!("/changes/42/revisions/{sha}/comments/c1"),
        ] {
            assert_eq!(sub(&path, None), Some(Sub::Other), "{path}");
        }
        for path in [
            format!("/changes/42/revisions/{sha}/commit"),
            format!("/changes/42/revisions/{sha}/files/src%2Fmain.rs/content"),
            format!("/changes/42/revisions/{sha}/patch"),
        ] {
            assert_eq!(sub(&path, None), Some(Sub::Revision), "{path}");
        }
        assert_eq!(sub("/changes/42/", None), Some(Sub::Info));
        // Per-user state without events, other changes' or branches'
        // state, undocumented and plugin shapes: plain RFC 9111.
        for path in [
            "/changes/42/drafts",
            "/changes/42/edit",
            "/changes/42/edit/a.txt",
            "/changes/42/revisions/current/drafts",
            "/changes/42/revisions/current/mergeable",
            "/changes/42/revisions/current/actions",
            "/changes/42/submitted_together",
            "/changes/42/in",
            "/changes/42/attention",
            "/changes/42/revisions/current/description",
            "/changes/42/suggest_reviewers",
            "/changes/42/myplugin~status",
            "/changes/42/detail/extra",
            "/changes/42/revisions/current/files/a/unknown",
            "/changes/x/../y",
        ] {
            assert_eq!(Endpoint::of(path, None), Endpoint::Other, "{path}");
        }
        assert_eq!(
            Endpoint::of(
                &format!("/changes/42/revisions/{sha}/files"),
                Some("reviewed")
            ),
            Endpoint::Other,
            "reviewed flags are per user"
        );
        // Writes reach their change whatever the action.
        assert_eq!(
            written_change("/a/changes/42/abandon"),
            Some(ChangeRef::Number(42))
        );
        assert_eq!(written_change("/a/changes/"), None);
        assert_eq!(written_change("/projects/p"), None);
    }

    #[test]
    fn queries_and_other_endpoints() {
        assert_eq!(
            Endpoint::of("/a/changes/", Some("q=status:open+topic:%22storm%22&n=500")),
            Endpoint::Query {
                q: "status:open topic:\"storm\"".into()
            }
        );
        assert_eq!(Endpoint::of("/projects/", None), Endpoint::Other);
        assert_eq!(Endpoint::of("/a/accounts/self", None), Endpoint::Other);
    }
}
