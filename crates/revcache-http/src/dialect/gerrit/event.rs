//! Gerrit events (stream-events, webhooks) and what each invalidates.
//!
//! Every change event reaches the change (`change:N`, `changeid:I…`), its
//! topic (and `oldTopic`), queries whose result may include any change of
//! its project (`projectq-any:P`) and the catch-all for queries we could
//! not classify. Events that can move a change into or out of project- or
//! Depends-On-scoped results also reach those membership tags.

use serde_json::Value;

use super::{ANY, DEPENDSON_ANY, RELATED_ANY};
use crate::events::EventError;

/// What one event means.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub kind: String,
    pub tags: Vec<String>,
    /// Change numbers whose ledger entries are outdated.
    pub changes: Vec<u64>,
    pub gap: bool,
}

/// Change events that can move a change into or out of project/branch-scoped
/// results (new changes, status and visibility changes).
const MEMBERSHIP: [&str; 6] = [
    "change-merged",
    "change-abandoned",
    "change-restored",
    "change-deleted",
    "private-state-changed",
    "wip-state-changed",
];

pub fn parse(bytes: &[u8]) -> Result<Parsed, EventError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| EventError::Json("expected a JSON object".into()))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| EventError::Shape("event has no \"type\" string".into()))?
        .to_owned();
    let mut p = Parsed {
        kind: kind.clone(),
        ..Default::default()
    };
    if kind == "dropped-output" {
        p.gap = true;
        return Ok(p);
    }
    if kind == "ref-updated" {
        let update = obj
            .get("refUpdate")
            .and_then(Value::as_object)
            .ok_or_else(|| EventError::Shape("ref-updated without \"refUpdate\"".into()))?;
        let project = str_field(update, "project")?;
        let name = str_field(update, "refName")?;
        if name == "refs/meta/config" {
            // Project config feeds every ETag of the project.
            p.tags.push(format!("project:{project}"));
            p.tags.push(ANY.to_owned());
        }
        return Ok(p);
    }
    let Some(change) = obj.get("change") else {
        // project-created, project-head-updated, …: no cached change moves.
        return Ok(p);
    };
    let change = change
        .as_object()
        .ok_or_else(|| EventError::Shape("\"change\" is not an object".into()))?;
    let number = match change.get("number") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| EventError::Shape(format!("{kind}: change has no \"number\"")))?;
    let project = str_field(change, "project")?;
    p.changes.push(number);
    p.tags.push(format!("change:{number}"));
    if let Some(id) = change.get("id").and_then(Value::as_str) {
        p.tags.push(format!("changeid:{id}"));
    }
    for topic in [change.get("topic"), obj.get("oldTopic")]
        .into_iter()
        .flatten()
    {
        if let Some(t) = topic.as_str().filter(|t| !t.is_empty()) {
            p.tags.push(format!("topic:{t}"));
        }
    }
    p.tags.push(format!("projectq-any:{project}"));
    p.tags.push(ANY.to_owned());
    let new_change = kind == "patchset-created"
        && obj
            .get("patchSet")
            .and_then(|ps| ps.get("number"))
            .and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
            == Some(1);
    if new_change || MEMBERSHIP.contains(&kind.as_str()) {
        p.tags.push(format!("projectq:{project}"));
        if let Some(branch) = change.get("branch").and_then(Value::as_str) {
            p.tags.push(format!("branchq:{project}:{branch}"));
        }
    }
    let change_id = change.get("id").and_then(Value::as_str);
    if kind == "patchset-created" || MEMBERSHIP.contains(&kind.as_str()) {
        // Related chains that list this change.
        p.tags.push(format!("chain:{number}"));
        if let Some(id) = change_id {
            p.tags.push(format!("chainid:{id}"));
        }
    }
    if kind == "patchset-created" {
        // A commit stacked on a listed revision joins that chain.
        match obj
            .get("patchSet")
            .and_then(|ps| ps.get("parents"))
            .and_then(Value::as_array)
        {
            Some(parents) => {
                for sha in parents.iter().filter_map(Value::as_str) {
                    p.tags.push(format!("rev:{sha}"));
                }
            }
            None => p.tags.push(RELATED_ANY.to_owned()),
        }
    }
    if matches!(kind.as_str(), "change-deleted" | "private-state-changed") {
        p.tags.push(format!("visibility:{number}"));
        if let Some(id) = change_id {
            p.tags.push(format!("visibilityid:{id}"));
        }
    }
    match (
        kind.as_str(),
        change.get("commitMessage").and_then(Value::as_str),
    ) {
        ("patchset-created", Some(message)) => {
            for target in depends_on(message) {
                p.tags.push(format!("dependson:{target}"));
            }
        }
        // Without the message, any Depends-On query may have changed.
        ("patchset-created", None) => p.tags.push(DEPENDSON_ANY.to_owned()),
        (k, _) if MEMBERSHIP.contains(&k) => p.tags.push(DEPENDSON_ANY.to_owned()),
        _ => {}
    }
    Ok(p)
}

fn str_field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, EventError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| EventError::Shape(format!("missing \"{name}\" string")))
}

/// Change-Ids named by `Depends-On:` footers.
pub fn depends_on(message: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("depends-on")
                .then(|| value.trim().to_owned())
        })
        .filter(|v| super::query::is_change_id(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "I0123456789abcdef0123456789abcdef01234567";
    const DEP: &str = "Iabcdefabcdefabcdefabcdefabcdefabcdefabcd";

    fn change_event(kind: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"{kind}","change":{{"project":"infra","branch":"main","id":"{CID}","number":7,"topic":"storm"}}{extra},"eventCreatedOn":1}}"#
        )
    }

    fn tags(json: &str) -> Vec<String> {
        parse(json.as_bytes()).unwrap().tags
    }

    #[test]
    fn comment_added_reaches_the_change_its_topic_and_catch_alls_only() {
        let t = tags(&change_event("comment-added", ""));
        assert_eq!(
            t,
            vec![
                "change:7".to_owned(),
                format!("changeid:{CID}"),
                "topic:storm".into(),
                "projectq-any:infra".into(),
                "gerrit:any".into()
            ]
        );
    }

    #[test]
    fn a_first_patchset_is_a_new_member_of_project_queries() {
        let t = tags(&change_event(
            "patchset-created",
            r#","patchSet":{"number":1}"#,
        ));
        assert!(
            t.contains(&"projectq:infra".to_owned())
                && t.contains(&"branchq:infra:main".to_owned())
        );
        assert!(
            t.contains(&DEPENDSON_ANY.to_owned()),
            "no commit message: all Depends-On queries"
        );
        let later = tags(&change_event(
            "patchset-created",
            r#","patchSet":{"number":2}"#,
        ));
        assert!(!later.contains(&"projectq:infra".to_owned()));
    }

    #[test]
    fn depends_on_footers_reach_the_reverse_queries_of_their_targets() {
        let json = format!(
            r#"{{"type":"patchset-created","change":{{"project":"infra","branch":"main","id":"{CID}","number":7,"commitMessage":"Fix\n\nDepends-On: {DEP}\nChange-Id: {CID}\n"}},"patchSet":{{"number":3}}}}"#
        );
        let t = tags(&json);
        assert!(t.contains(&format!("dependson:{DEP}")));
        assert!(!t.contains(&DEPENDSON_ANY.to_owned()));
    }

    #[test]
    fn topic_changes_reach_old_and_new_topic() {
        let t = tags(&change_event("topic-changed", r#","oldTopic":"calm""#));
        assert!(t.contains(&"topic:storm".to_owned()) && t.contains(&"topic:calm".to_owned()));
    }

    #[test]
    fn status_changes_move_membership() {
        for kind in MEMBERSHIP {
            let t = tags(&change_event(kind, ""));
            assert!(t.contains(&"projectq:infra".to_owned()), "{kind}");
            assert!(t.contains(&DEPENDSON_ANY.to_owned()), "{kind}");
        }
    }

    #[test]
    fn meta_config_updates_reach_the_whole_project() {
        let t = tags(
            r#"{"type":"ref-updated","refUpdate":{"project":"infra","refName":"refs/meta/config","oldRev":"a","newRev":"b"}}"#,
        );
        assert!(t.contains(&"project:infra".to_owned()));
        let t = tags(
            r#"{"type":"ref-updated","refUpdate":{"project":"infra","refName":"refs/heads/main","oldRev":"a","newRev":"b"}}"#,
        );
        assert!(t.is_empty());
    }

    #[test]
    fn dropped_output_is_a_gap() {
        assert!(parse(br#"{"type":"dropped-output"}"#).unwrap().gap);
    }

    #[test]
    fn malformed_events_say_why() {
        for (bad, says) in [
            ("not json", "not a JSON object"),
            ("[1]", "expected a JSON object"),
            ("{}", "no \"type\""),
            (
                r#"{"type":"comment-added","change":{"project":"p"}}"#,
                "no \"number\"",
            ),
            (r#"{"type":"comment-added","change":"x"}"#, "not an object"),
            (r#"{"type":"ref-updated"}"#, "refUpdate"),
        ] {
            let e = parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
