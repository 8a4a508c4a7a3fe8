//! The `gerrit` dialect against a fake Gerrit that behaves like the real
//! one where it matters, posting its events to revcache as Gerrit's
//! webhooks would.

mod support;

use std::time::Duration;

use fake_gerrit::{FakeGerrit, NewChange};
use revcache_http::{DialectName, EventSettings};
use support::{Client, Got, JSON, Revcache};

const ALICE: (&str, &str) = ("authorization", "Basic YWxpY2U6cHc=");
const BOB: (&str, &str) = ("authorization", "Basic Ym9iOnB3");

async fn setup(trust: Option<Duration>) -> (FakeGerrit, Revcache) {
    let gerrit = FakeGerrit::start().await;
    let rc = Revcache::start_with(&gerrit.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings {
            trust,
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await;
    gerrit.set_event_sink(Some(rc.admin_url("/events/gerrit")));
    (gerrit, rc)
}

fn change(project: &str, topic: Option<&str>) -> NewChange {
    NewChange {
        project: project.into(),
        branch: "main".into(),
        topic: topic.map(Into::into),
        subject: "a change".into(),
        ..Default::default()
    }
}

/// A GET as Alice; returns once any fill it started is stored, so the next
/// request sees a stored entry rather than joining the flight.
async fn get(rc: &Revcache, path: &str) -> Got {
    let got = Client::default().get_with(&rc.url(path), &[ALICE]).await;
    rc.proxy.fills_idle().await;
    got
}

/// How many requests `f` sent to Gerrit.
async fn upstream_cost<F: std::future::Future<Output = T>, T>(
    gerrit: &FakeGerrit,
    f: F,
) -> (u64, T) {
    let before = gerrit.served().total;
    let out = f.await;
    (gerrit.served().total - before, out)
}

fn json(got: &Got) -> serde_json::Value {
    let body = got.body.strip_prefix(b")]}'").expect("XSSI guard kept");
    serde_json::from_slice(body).unwrap()
}

const TRUST: Option<Duration> = Some(Duration::from_secs(60));

#[tokio::test]
async fn without_trust_change_details_are_revalidated_with_the_users_etag() {
    let (gerrit, rc) = setup(None).await;
    let n = gerrit.create_change(change("infra", None)).await;
    let first = get(&rc, &format!("/a/changes/{n}")).await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.starts_with(b")]}'\n{"),
        "upstream bytes unchanged"
    );
    let second = get(&rc, &format!("/a/changes/{n}")).await;
    assert_eq!(second.body, first.body);
    assert!(
        second
            .cache_status()
            .starts_with("revcache; fwd=stale; fwd-status=304"),
        "{}",
        second.cache_status()
    );
    assert_eq!(gerrit.served().not_modified, 1);
}

#[tokio::test]
async fn two_credentials_never_see_each_others_cached_data() {
    let (gerrit, rc) = setup(TRUST).await;
    let n = gerrit.create_change(change("infra", None)).await;
    let path = format!("/a/changes/{n}");
    let alice = get(&rc, &path).await;
    let c = Client::default();
    let bob = c.get_with(&rc.url(&path), &[BOB]).await;
    assert!(
        !bob.is_hit(),
        "bob must not get alice's entry: {}",
        bob.cache_status()
    );
    assert_ne!(alice.header("etag"), bob.header("etag"), "per-user ETags");
    assert_eq!(
        c.get_with(&rc.url(&path), &[BOB]).await.header("etag"),
        bob.header("etag")
    );
    let anonymous = c.get(&rc.url(&format!("/changes/{n}"))).await;
    assert!(!anonymous.is_hit());
}

#[tokio::test]
async fn a_trusted_feed_serves_changes_and_queries_without_asking() {
    let (gerrit, rc) = setup(TRUST).await;
    let n = gerrit.create_change(change("infra", Some("storm"))).await;
    get(&rc, &format!("/a/changes/{n}")).await;
    get(&rc, "/a/changes/?q=status:open+topic:storm").await;
    let (cost, (c, q)) = upstream_cost(&gerrit, async {
        (
            get(&rc, &format!("/a/changes/{n}")).await,
            get(&rc, "/a/changes/?q=status:open+topic:storm").await,
        )
    })
    .await;
    assert_eq!(cost, 0);
    assert_eq!(c.cache_status(), "revcache; hit; detail=trusted");
    assert!(q.is_hit());
    let m = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert_eq!(
        support::metric(
            &m,
            "revcache_dialect_hits_total{route=\"gerrit\",reason=\"trusted\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn patchset_created_invalidates_the_change_and_new_members_of_project_queries() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    let b = gerrit.create_change(change("infra", None)).await;
    let other = gerrit.create_change(change("web", None)).await;
    for p in [
        format!("/a/changes/{a}"),
        format!("/a/changes/{b}"),
        format!("/a/changes/{other}"),
        "/a/changes/?q=project:infra+status:open".into(),
    ] {
        get(&rc, &p).await;
    }
    gerrit.new_patchset(a, &[], true).await;
    let (cost, _) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{a}"))).await;
    assert_eq!(cost, 1, "the updated change is refetched");
    let (cost, _) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{b}"))).await;
    assert_eq!(cost, 0, "its neighbour is untouched");
    let (cost, q) =
        upstream_cost(&gerrit, get(&rc, "/a/changes/?q=project:infra+status:open")).await;
    assert_eq!(cost, 1, "the project query lists the change");
    assert_eq!(json(&q).as_array().unwrap().len(), 2);
    let c = gerrit.create_change(change("infra", None)).await;
    let (cost, q) =
        upstream_cost(&gerrit, get(&rc, "/a/changes/?q=project:infra+status:open")).await;
    assert_eq!(cost, 1, "a new change joins the project query");
    assert_eq!(json(&q)[0]["_number"], c);
    let (cost, _) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{other}"))).await;
    assert_eq!(cost, 0);
}

#[tokio::test]
async fn comment_added_invalidates_the_change_and_its_topic_only() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", Some("storm"))).await;
    let b = gerrit.create_change(change("infra", Some("calm"))).await;
    for p in [
        format!("/a/changes/{a}"),
        format!("/a/changes/{b}"),
        "/a/changes/?q=topic:storm".into(),
        "/a/changes/?q=topic:calm".into(),
    ] {
        get(&rc, &p).await;
    }
    gerrit.comment(a, 2).await;
    let (cost, fresh) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{a}"))).await;
    assert_eq!(cost, 1);
    assert_eq!(
        json(&fresh)["meta_rev_id"],
        gerrit.change(a).unwrap().meta_rev_id()
    );
    assert_eq!(
        upstream_cost(&gerrit, get(&rc, "/a/changes/?q=topic:storm"))
            .await
            .0,
        1
    );
    assert_eq!(
        upstream_cost(&gerrit, get(&rc, "/a/changes/?q=topic:calm"))
            .await
            .0,
        0
    );
    assert_eq!(
        upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{b}")))
            .await
            .0,
        0
    );
}

#[tokio::test]
async fn topic_changed_moves_a_change_between_cached_topic_queries() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", Some("old"))).await;
    assert_eq!(
        json(&get(&rc, "/a/changes/?q=topic:old").await)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(&get(&rc, "/a/changes/?q=topic:new").await)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    gerrit.set_topic(a, Some("new")).await;
    assert_eq!(
        json(&get(&rc, "/a/changes/?q=topic:old").await)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let moved = get(&rc, "/a/changes/?q=topic:new").await;
    assert_eq!(json(&moved)[0]["_number"], a);
}

#[tokio::test]
async fn a_new_depends_on_footer_appears_in_the_reverse_query() {
    let (gerrit, rc) = setup(TRUST).await;
    let target = gerrit.create_change(change("lib", None)).await;
    let target_id = gerrit.change(target).unwrap().change_id();
    let dependent = gerrit.create_change(change("app", None)).await;
    let reverse = format!("/a/changes/?q=message:{target_id}&n=500");
    // The target's own Change-Id footer matches too, as in Gerrit.
    let others = |got: &Got| -> Vec<u64> {
        json(got)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["_number"].as_u64().unwrap())
            .filter(|n| *n != target)
            .collect()
    };
    assert!(others(&get(&rc, &reverse).await).is_empty());
    gerrit
        .new_patchset(dependent, std::slice::from_ref(&target_id), true)
        .await;
    let found = get(&rc, &reverse).await;
    assert!(!found.is_hit());
    assert_eq!(others(&found), vec![dependent]);
    // Without the commit message in the event, every reverse query is redone.
    let unrelated = format!(
        "/a/changes/?q=message:{}",
        gerrit.change(dependent).unwrap().change_id()
    );
    get(&rc, &unrelated).await;
    gerrit.new_patchset(target, &[], false).await;
    assert!(!get(&rc, &unrelated).await.is_hit());
}

async fn status_event_reaches_project_queries(apply: impl AsyncFnOnce(&FakeGerrit, u64)) {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    let b = gerrit.create_change(change("infra", None)).await;
    get(&rc, "/a/changes/?q=project:infra+status:open").await;
    get(&rc, &format!("/a/changes/{b}")).await;
    apply(&gerrit, a).await;
    let (cost, q) =
        upstream_cost(&gerrit, get(&rc, "/a/changes/?q=project:infra+status:open")).await;
    assert_eq!(cost, 1);
    let listed: Vec<u64> = json(&q)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["_number"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = gerrit
        .query_now("project:infra status:open")
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(
        upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{b}")))
            .await
            .0,
        0
    );
}

#[tokio::test]
async fn change_merged_reaches_project_queries() {
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| g.merge(n).await).await;
}

#[tokio::test]
async fn change_abandoned_reaches_project_queries() {
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| g.abandon(n).await).await;
}

#[tokio::test]
async fn change_restored_reaches_project_queries() {
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| {
        g.abandon(n).await;
        g.restore(n).await;
    })
    .await;
}

#[tokio::test]
async fn change_deleted_reaches_project_queries_and_the_change() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    get(&rc, &format!("/a/changes/{a}")).await;
    gerrit.delete(a).await;
    assert_eq!(get(&rc, &format!("/a/changes/{a}")).await.status, 404);
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| g.delete(n).await).await;
}

#[tokio::test]
async fn wip_and_private_state_changes_reach_project_queries() {
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| g.set_wip(n, true).await).await;
    status_event_reaches_project_queries(async |g: &FakeGerrit, n| g.set_private(n, true).await)
        .await;
}

#[tokio::test]
async fn ref_updated_meta_config_invalidates_the_whole_project() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    let b = gerrit.create_change(change("web", None)).await;
    let before = get(&rc, &format!("/a/changes/{a}")).await;
    get(&rc, &format!("/a/changes/{b}")).await;
    gerrit.update_project_config("infra").await;
    let after = get(&rc, &format!("/a/changes/{a}")).await;
    assert!(!after.is_hit());
    assert_ne!(
        before.header("etag"),
        after.header("etag"),
        "ETags hash project config"
    );
    assert!(get(&rc, &format!("/a/changes/{b}")).await.is_hit());
}

#[tokio::test]
async fn dropped_output_suspends_trust_until_entries_are_revalidated() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    get(&rc, &format!("/a/changes/{a}")).await;
    assert!(
        get(&rc, &format!("/a/changes/{a}"))
            .await
            .cache_status()
            .contains("trusted")
    );
    gerrit.dropped_output().await;
    let after_gap = get(&rc, &format!("/a/changes/{a}")).await;
    assert!(
        after_gap
            .cache_status()
            .starts_with("revcache; fwd=stale; fwd-status=304"),
        "cached before the gap: revalidated, {}",
        after_gap.cache_status()
    );
    assert!(
        get(&rc, &format!("/a/changes/{a}"))
            .await
            .cache_status()
            .contains("trusted"),
        "revalidated since: trusted again"
    );
}

#[tokio::test]
async fn a_query_listing_the_same_meta_rev_id_confirms_a_cached_change() {
    // Events flow but trust is off: the ledger still spares requests.
    let (gerrit, rc) = setup(None).await;
    let a = gerrit.create_change(change("infra", Some("storm"))).await;
    get(&rc, &format!("/a/changes/{a}")).await;
    rc.advance(Duration::from_millis(5));
    get(&rc, "/a/changes/?q=topic:storm").await;
    let (cost, confirmed) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{a}"))).await;
    assert_eq!(cost, 0, "{}", confirmed.cache_status());
    assert!(confirmed.cache_status().contains("detail=ledger"));
    gerrit.comment(a, 1).await;
    let (cost, _) = upstream_cost(&gerrit, get(&rc, &format!("/a/changes/{a}"))).await;
    assert_eq!(cost, 1, "an event outdates what the ledger knew");
}

#[tokio::test]
async fn query_pages_with_more_changes_pass_through_unchanged() {
    let (gerrit, rc) = setup(TRUST).await;
    for _ in 0..5 {
        gerrit.create_change(change("infra", Some("t"))).await;
    }
    let first = get(&rc, "/a/changes/?q=topic:t&n=2").await;
    let page = json(&first);
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[1]["_more_changes"], true);
    let second = get(&rc, "/a/changes/?q=topic:t&n=2&start=4").await;
    assert_eq!(json(&second).as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_events_are_rejected_with_a_reason_and_the_feed_goes_on() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    get(&rc, &format!("/a/changes/{a}")).await;
    assert_eq!(gerrit.emit_raw("this is not json").await, 400);
    assert_eq!(
        gerrit
            .emit_raw(r#"{"type":"comment-added","change":{"project":"p"}}"#)
            .await,
        400
    );
    let c = Client::default();
    let batch = format!(
        "{}\n{{\"nonsense\":1}}\n",
        serde_json::json!({"type":"comment-added","change":{"project":"infra","number":a,"id":"I0"}})
    );
    let res = c
        .send("POST", &rc.admin_url("/events/gerrit"), JSON, batch)
        .await;
    assert_eq!(res.status, 400);
    assert!(
        res.text().contains("\"accepted\":1") && res.text().contains("\"line\":2"),
        "{}",
        res.text()
    );
    assert!(
        !get(&rc, &format!("/a/changes/{a}")).await.is_hit(),
        "the good event in the batch applied"
    );
    let m = c.get(&rc.admin_url("/metrics")).await.text();
    assert_eq!(
        support::metric(&m, "revcache_event_errors_total{route=\"gerrit\"}"),
        3.0
    );
    assert!(
        m.contains("revcache_event_feed_healthy{route=\"gerrit\"} 1"),
        "{m}"
    );
    let ready = c.get(&rc.admin_url("/readyz")).await.text();
    assert!(ready.contains("\"gerrit\":true"), "{ready}");
}

#[tokio::test]
async fn a_command_feed_is_untrusted_until_its_first_line() {
    let gerrit = FakeGerrit::start().await;
    let a = gerrit.create_change(change("infra", None)).await;
    let event = serde_json::json!({"type":"comment-added","change":{"project":"infra","number":a}})
        .to_string();
    let rc = Revcache::start_with(&gerrit.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings {
            trust: TRUST,
            heartbeat: None,
            // Like ssh still connecting: running, silent, then a line.
            command: Some(format!("sleep 1; echo '{event}'; exec sleep 5")),
            secret_file: None,
        });
    })
    .await;
    let c = Client::default();
    let ready = c.get(&rc.admin_url("/readyz")).await.text();
    assert!(
        ready.contains("\"gerrit\":false"),
        "healthy before any line: {ready}"
    );
    get(&rc, &format!("/a/changes/{a}")).await;
    let early = get(&rc, &format!("/a/changes/{a}")).await;
    assert!(
        !early.cache_status().contains("trusted"),
        "trusted before the feed said anything: {}",
        early.cache_status()
    );
    let mut healthy = false;
    for _ in 0..250 {
        if c.get(&rc.admin_url("/readyz"))
            .await
            .text()
            .contains("\"gerrit\":true")
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy, "the feed became healthy from its first line");
}

#[tokio::test]
async fn a_command_feed_that_exits_suspends_trust() {
    let gerrit = FakeGerrit::start().await;
    let a = gerrit.create_change(change("infra", None)).await;
    let event = serde_json::json!({"type":"comment-added","change":{"project":"infra","number":a}})
        .to_string();
    // The command exits when the test says so.
    let dir = support::temp_dir("feed-exit");
    std::fs::create_dir_all(&dir).unwrap();
    let stop = dir.join("stop");
    let command = format!(
        "echo '{event}'; while [ ! -e {} ]; do sleep 0.02; done",
        stop.display()
    );
    let rc = Revcache::start_with(&gerrit.url(), |s| {
        s.routes[0].name = "gerrit".into();
        s.routes[0].dialect = DialectName::Gerrit;
        s.routes[0].events = Some(EventSettings {
            trust: TRUST,
            heartbeat: None,
            command: Some(command),
            secret_file: None,
        });
    })
    .await;
    let c = Client::default();
    let mut applied = false;
    for _ in 0..250 {
        let m = c.get(&rc.admin_url("/metrics")).await.text();
        if support::metric(
            &m,
            "revcache_events_total{route=\"gerrit\",type=\"comment-added\"}",
        ) >= 1.0
        {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(applied, "the command's event was ingested");
    get(&rc, &format!("/a/changes/{a}")).await;
    let second = get(&rc, &format!("/a/changes/{a}")).await;
    let ready = c.get(&rc.admin_url("/readyz")).await.text();
    assert!(ready.contains("\"gerrit\":true"), "{ready}");
    assert!(
        second.cache_status().contains("trusted"),
        "{}",
        second.cache_status()
    );
    // The command exits: the feed turns unhealthy and trust ends.
    std::fs::write(&stop, "").unwrap();
    let mut unhealthy = false;
    for _ in 0..250 {
        if c.get(&rc.admin_url("/readyz"))
            .await
            .text()
            .contains("\"gerrit\":false")
        {
            unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        unhealthy,
        "the feed turned unhealthy when its command exited"
    );
    let after_exit = get(&rc, &format!("/a/changes/{a}")).await;
    assert!(
        !after_exit.cache_status().contains("trusted"),
        "{}",
        after_exit.cache_status()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn votes_leave_related_chains_and_revision_files_cached_but_stacking_reaches_the_chain() {
    let (gerrit, rc) = setup(TRUST).await;
    let base = gerrit.create_change(change("infra", None)).await;
    let rev = gerrit.change(base).unwrap().revision();
    let related = format!("/a/changes/{base}/revisions/{rev}/related");
    let files = format!("/a/changes/{base}/revisions/{rev}/files?parent=1");
    get(&rc, &related).await;
    get(&rc, &files).await;
    gerrit.comment(base, 1).await;
    assert!(
        get(&rc, &related).await.is_hit(),
        "a vote does not change the chain"
    );
    assert!(
        get(&rc, &files).await.is_hit(),
        "a revision's files never change"
    );
    let mut on_top = change("infra", None);
    on_top.parent = Some(base);
    let child = gerrit.create_change(on_top).await;
    let chain = get(&rc, &related).await;
    assert!(!chain.is_hit(), "a change stacked on it joins the chain");
    let listed: Vec<u64> = json(&chain)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["_change_number"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![base, child]);
    gerrit.delete(child).await;
    gerrit.set_private(base, true).await;
    assert!(
        !get(&rc, &files).await.is_hit(),
        "visibility changes reach revision resources"
    );
}

#[tokio::test]
async fn reviewer_vote_and_hashtag_events_invalidate_their_change_and_project_events_nothing() {
    let (gerrit, rc) = setup(TRUST).await;
    let a = gerrit.create_change(change("infra", None)).await;
    let b = gerrit.create_change(change("infra", None)).await;
    let cid = gerrit.change(a).unwrap().change_id();
    for kind in [
        "reviewer-added",
        "reviewer-deleted",
        "vote-deleted",
        "hashtags-changed",
    ] {
        get(&rc, &format!("/a/changes/{a}")).await;
        get(&rc, &format!("/a/changes/{b}")).await;
        let event = serde_json::json!({"type": kind, "change": {"project": "infra", "branch": "main", "id": cid, "number": a}});
        assert_eq!(gerrit.emit_raw(&event.to_string()).await, 200, "{kind}");
        assert!(
            !get(&rc, &format!("/a/changes/{a}")).await.is_hit(),
            "{kind} reaches its change"
        );
        assert!(
            get(&rc, &format!("/a/changes/{b}")).await.is_hit(),
            "{kind} leaves others alone"
        );
    }
    for event in [
        r#"{"type":"project-created","projectName":"new","headName":"refs/heads/main"}"#,
        r#"{"type":"project-head-updated","projectName":"infra","oldHead":"a","newHead":"b"}"#,
    ] {
        assert_eq!(gerrit.emit_raw(event).await, 200);
        assert!(get(&rc, &format!("/a/changes/{a}")).await.is_hit());
    }
}

/// Two Gerrit servers behind one revcache, by host: each has its own
/// change 1, and an event or purge for one never reaches the other's.
#[tokio::test]
async fn two_gerrit_routes_with_the_same_change_numbers_do_not_invalidate_each_other() {
    let (east, west) = (FakeGerrit::start().await, FakeGerrit::start().await);
    let (a, b) = (
        east.create_change(change("infra", None)).await,
        west.create_change(change("infra", None)).await,
    );
    assert_eq!(a, b, "both servers number their first change alike");
    let (east_url, west_url) = (east.url(), west.url());
    let rc = Revcache::start_with(&east_url, |s| {
        let template = s.routes[0].clone();
        s.routes = [("east", &east_url), ("west", &west_url)]
            .into_iter()
            .map(|(name, url)| {
                let mut r = template.clone();
                r.name = name.into();
                r.host = Some(format!("{name}.test"));
                r.upstream = url.parse().unwrap();
                r.dialect = DialectName::Gerrit;
                r.events = Some(EventSettings {
                    trust: TRUST,
                    heartbeat: None,
                    command: None,
                    secret_file: None,
                });
                r
            })
            .collect();
    })
    .await;
    let c = Client::default();
    let path = format!("/a/changes/{a}");
    let get_from = async |host: &str| {
        let got = c.get_with(&rc.url(&path), &[ALICE, ("host", host)]).await;
        rc.proxy.fills_idle().await;
        got
    };
    for host in ["east.test", "west.test"] {
        get_from(host).await;
        assert!(
            get_from(host).await.is_hit(),
            "{host} serves its stored change"
        );
    }

    let event = serde_json::json!({"type":"comment-added","change":{"project":"infra","number":a}});
    let posted = c
        .send(
            "POST",
            &rc.admin_url("/events/east"),
            JSON,
            event.to_string(),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    assert!(
        !get_from("east.test").await.is_hit(),
        "east's change 1 was invalidated"
    );
    assert!(
        get_from("west.test").await.is_hit(),
        "west's change 1 is another change"
    );

    let purge = async |query: &str| {
        let url = rc.admin_url(&format!("/purge?{query}"));
        c.send("POST", &url, &[], "").await
    };
    let one = purge("tag=change:1&route=west").await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert!(!get_from("west.test").await.is_hit());
    assert!(get_from("east.test").await.is_hit());
    let all = purge("tag=change:1").await;
    assert!(all.text().contains("\"purged\":2"), "{}", all.text());
    let unknown = purge("tag=change:1&route=north").await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.text().contains("no route named"),
        "{}",
        unknown.text()
    );
}
