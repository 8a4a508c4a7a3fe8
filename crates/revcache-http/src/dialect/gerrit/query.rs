//! Gerrit query strings, read well enough to know which events can change
//! a query's result (its membership tags). Anything not understood is
//! tagged with the catch-all that every change event invalidates: never
//! guess narrowly.

/// The membership tags of a query (besides a tag per listed change, which
/// the result adds).
pub fn membership_tags(q: &str) -> Vec<String> {
    let Some(terms) = terms(q) else {
        return vec![super::ANY.to_owned()];
    };
    let mut tags = Vec::new();
    let mut project = None;
    let mut branch = None;
    let mut anchored = false;
    let mut other_filters = false;
    for (negated, key, value) in &terms {
        let key = key.to_ascii_lowercase();
        match (negated, key.as_str()) {
            (false, "topic") => {
                tags.push(format!("topic:{value}"));
                anchored = true;
            }
            (false, "message") if is_change_id(value) => {
                tags.push(format!("dependson:{value}"));
                tags.push(super::DEPENDSON_ANY.to_owned());
                anchored = true;
            }
            (false, "change") if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() => {
                tags.push(format!("change:{value}"));
                anchored = true;
            }
            (false, "change") if is_change_id(value) => {
                tags.push(format!("changeid:{value}"));
                anchored = true;
            }
            (false, "project") => {
                project = Some(value.clone());
                anchored = true;
            }
            (false, "branch") => branch = Some(value.clone()),
            (_, "status") => {}
            (_, "is") if STATUS_LIKE.contains(&value.to_ascii_lowercase().as_str()) => {}
            _ => other_filters = true,
        }
    }
    if let Some(p) = &project {
        tags.push(format!("projectq:{p}"));
        if let Some(b) = &branch {
            tags.push(format!("branchq:{p}:{b}"));
        }
        if other_filters {
            // A vote or a reviewer can move any change of the project in or out.
            tags.push(format!("projectq-any:{p}"));
        }
    }
    if !anchored || (branch.is_some() && project.is_none()) {
        tags.push(super::ANY.to_owned());
    }
    tags
}

/// `is:` values whose membership only status events change.
const STATUS_LIKE: [&str; 9] = [
    "open",
    "closed",
    "merged",
    "abandoned",
    "new",
    "pending",
    "wip",
    "private",
    "active",
];

pub fn is_change_id(s: &str) -> bool {
    s.len() == 41 && s.starts_with('I') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Conjunctive terms `(negated, key, value)`, or `None` for anything with
/// OR, NOT, parentheses, free text or unbalanced quotes.
fn terms(q: &str) -> Option<Vec<(bool, String, String)>> {
    let mut out = Vec::new();
    let mut rest = q.trim();
    while !rest.is_empty() {
        let (token, after) = next_token(rest)?;
        rest = after.trim_start();
        if token.eq_ignore_ascii_case("AND") {
            continue;
        }
        if token.eq_ignore_ascii_case("OR")
            || token.eq_ignore_ascii_case("NOT")
            || token.starts_with('(')
        {
            return None;
        }
        let (negated, token) = match token.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, token.as_str()),
        };
        let (key, value) = token.split_once(':')?;
        if key.is_empty() {
            return None;
        }
        let value = value
            .trim_matches('"')
            .trim_start_matches('{')
            .trim_end_matches('}');
        out.push((negated, key.to_owned(), value.to_owned()));
    }
    (!out.is_empty()).then_some(out)
}

/// One whitespace-separated token; quoted and braced values may hold spaces.
fn next_token(s: &str) -> Option<(String, &str)> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"') => quote = Some('"'),
            (None, '{') => quote = Some('}'),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => return Some((s[..i].to_owned(), &s[i..])),
            _ => {}
        }
    }
    quote.is_none().then(|| (s.to_owned(), ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "I0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn scheduler_query_shapes_get_precise_tags() {
        assert_eq!(
            membership_tags("status:open topic:\"storm\""),
            vec!["topic:storm"]
        );
        assert_eq!(
            membership_tags(&format!("message:{CID}")),
            vec![format!("dependson:{CID}"), "dependson:*".to_owned()]
        );
        assert_eq!(
            membership_tags(&format!("change:{CID}")),
            vec![format!("changeid:{CID}")]
        );
        assert_eq!(membership_tags("change:123"), vec!["change:123"]);
        assert_eq!(
            membership_tags("project:infra/ci branch:main status:open"),
            vec!["projectq:infra/ci", "branchq:infra/ci:main"]
        );
    }

    #[test]
    fn filters_beyond_status_widen_project_membership() {
        assert_eq!(
            membership_tags("project:p is:open label:Verified+1"),
            vec!["projectq:p", "projectq-any:p"]
        );
    }

    #[test]
    fn anything_not_understood_gets_the_catch_all() {
        for q in [
            "status:open",
            "owner:self",
            "topic:a OR topic:b",
            "(topic:a)",
            "NOT topic:a",
            "hello world",
            "message:\"fix the bug\"",
            "branch:main",
            "topic:\"unbalanced",
            "",
        ] {
            assert!(
                membership_tags(q).contains(&super::super::ANY.to_owned()),
                "{q:?}"
            );
        }
    }
}
