//! Which Gerrit REST endpoint a request path names, anonymous (`/changes/…`)
//! or authenticated (`/a/changes/…`).

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

impl Endpoint {
    pub fn of(path: &str, query: Option<&str>) -> Endpoint {
        // `/a/changes/…` is the authenticated form of `/changes/…`.
        let path = path
            .strip_prefix("/a")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        let path = path.strip_prefix('/').unwrap_or(path);
        let mut segments = path.split('/');
        if segments.next() != Some("changes") {
            return Endpoint::Other;
        }
        let id = segments.next().unwrap_or("");
        if id.is_empty() {
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
        let id = change_ref(&crate::percent::decode_lossy(id));
        let rest: Vec<&str> = segments.filter(|s| !s.is_empty()).collect();
        let sub = match rest.as_slice() {
            [] | ["detail"] => Sub::Info,
            ["revisions", rev, "related"] => Sub::Related {
                revision: (*rev).to_owned(),
            },
            ["revisions", rev, ..] if is_sha(rev) => Sub::Revision,
            _ => Sub::Other,
        };
        Endpoint::Change { id, sub }
    }
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
