//! The `github` dialect against a fake GitHub over real TLS that behaves
//! like the real one where a cache can tell (per-token ETags, `private`
//! cache headers, rate limits, installation tokens, signed webhooks that
//! may arrive before the API shows their state).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use fake_github::{FakeGithub, Options};
use serde_json::Value;
use support::tls::{Pki, server_config};
use support::{Client, Got, Revcache, github_route, metric, temp_dir};

const SECRET: &[u8] = b"webhook s3cret";
const TRUST: Option<Duration> = Some(Duration::from_secs(300));

struct Github {
    gh: FakeGithub,
    rc: Revcache,
    alice: String,
    bob: String,
    _pki: Pki,
    secret_dir: PathBuf,
}

impl Drop for Github {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.secret_dir);
    }
}

/// A fake GitHub over TLS with `octo/app` (public) and `octo/secret`
/// (private, Alice only); revcache in front with signed webhooks.
async fn setup(
    trust: Option<Duration>,
    tweak: impl FnOnce(&mut revcache_http::Settings),
) -> Github {
    let pki = Pki::new();
    let leaf = pki.leaf("github", &["localhost", "127.0.0.1"], false);
    let gh = FakeGithub::start(Options {
        tls: Some(server_config(&leaf)),
        ..Options::default()
    })
    .await;
    gh.add_repo("octo", "app", false);
    gh.add_repo("octo", "secret", true);
    let alice = gh.add_user("alice");
    let bob = gh.add_user("bob");
    gh.add_member("octo/secret", "alice").await;
    let secret_dir = temp_dir("github-secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret_file = secret_dir.join("webhook.secret");
    let mut with_newline = SECRET.to_vec();
    with_newline.push(b'\n');
    std::fs::write(&secret_file, with_newline).unwrap();
    // The origin the fake writes into its answers.
    let upstream = gh.url();
    let ca = pki.ca_file();
    let rc = Revcache::start_with(&upstream, move |s| {
        github_route(s, ca, trust, secret_file);
        tweak(s);
    })
    .await;
    gh.set_webhook(Some(&rc.admin_url("/events/github")), SECRET);
    // Each repository's webhook is created, and GitHub pings it: from
    // then on revcache knows webhooks cover it.
    for repo in ["octo/app", "octo/secret"] {
        let ping = format!(
            r#"{{"zen":"Keep it logically awesome.","hook_id":1,"repository":{{"full_name":"{repo}"}}}}"#
        );
        let signature = gh.sign(ping.as_bytes());
        assert_eq!(
            gh.send_raw_webhook("ping", &ping, Some(&signature)).await,
            200
        );
    }
    Github {
        gh,
        rc,
        alice,
        bob,
        _pki: pki,
        secret_dir,
    }
}

impl Github {
    /// A GET with `token`; returns once any fill it started is stored.
    async fn get(&self, token: &str, path: &str) -> Got {
        let auth = format!("token {token}");
        let got = Client::default()
            .get_with(
                &self.rc.url(path),
                &[
                    ("authorization", &auth),
                    ("accept", "application/vnd.github+json"),
                ],
            )
            .await;
        self.rc.proxy.fills_idle().await;
        got
    }

    async fn alice(&self, path: &str) -> Got {
        self.get(&self.alice.clone(), path).await
    }

    /// Requests GitHub served while `f` ran.
    fn upstream(&self) -> u64 {
        self.gh.served().total
    }

    async fn metrics(&self) -> String {
        Client::default()
            .get(&self.rc.admin_url("/metrics"))
            .await
            .text()
    }
}

fn json(got: &Got) -> Value {
    serde_json::from_slice(&got.body).unwrap_or_else(|e| panic!("{e}: {}", got.text()))
}

/// Whether the last delivery of `event` was accepted by revcache.
fn delivered(gh: &FakeGithub, event: &str) -> bool {
    gh.deliveries()
        .iter()
        .any(|(e, _, status)| e == event && *status == 200)
}

#[tokio::test]
async fn without_trust_reads_are_revalidated_with_the_etag_and_a_304_costs_no_rate_limit_unit() {
    let g = setup(None, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "First").await;
    let path = format!("/repos/octo/app/pulls/{n}");
    let first = g.alice(&path).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.header("cache-control").unwrap().contains("private"));
    let units = g.gh.served().units["alice"];
    let second = g.alice(&path).await;
    assert_eq!(second.body, first.body);
    assert!(
        second.cache_status().contains("fwd=stale")
            && second.cache_status().contains("fwd-status=304"),
        "{}",
        second.cache_status()
    );
    let served = g.gh.served();
    assert_eq!(served.not_modified, 1);
    assert_eq!(served.units["alice"], units, "a 304 is free");
    let m = g.metrics().await;
    assert!(
        metric(
            &m,
            "revcache_upstream_requests_saved_total{route=\"github\""
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "revcache_upstream_rate_limit_remaining{route=\"github\""
        ) > 0.0
    );
}

#[tokio::test]
async fn with_trusted_webhooks_repeated_reads_never_reach_github() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "First").await;
    let path = format!("/repos/octo/app/pulls/{n}");
    g.alice(&path).await;
    let before = g.upstream();
    for _ in 0..5 {
        let got = g.alice(&path).await;
        assert_eq!(got.status, 200);
        assert!(
            got.cache_status().contains("detail=trusted"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(g.upstream(), before);
    // Past the trust window, it is asked again (and GitHub says 304).
    g.rc.advance(Duration::from_secs(301));
    let got = g.alice(&path).await;
    assert!(
        got.cache_status().contains("fwd-status=304"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn one_tokens_entries_never_answer_another_token() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/secret", "Private plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    let alice = g.alice(&path).await;
    assert_eq!(alice.status, 200);
    let bob = g.get(&g.bob.clone(), &path).await;
    assert_eq!(bob.status, 404, "Bob is not a member: {}", bob.text());
    assert!(!bob.text().contains("Private plans"));
    let anonymous = Client::default().get(&g.rc.url(&path)).await;
    assert_eq!(anonymous.status, 404);
    // Public data is still per token: each token's first read asks.
    let public = "/repos/octo/app";
    g.alice(public).await;
    let before = g.upstream();
    let bob = g.get(&g.bob.clone(), public).await;
    assert_eq!(bob.status, 200);
    assert_eq!(g.upstream(), before + 1);
}

#[tokio::test]
async fn unsigned_and_badly_signed_deliveries_are_refused_with_401_and_change_nothing() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    let path = format!("/repos/octo/app/issues/{n}");
    g.alice(&path).await;
    let body = format!(
        r#"{{"action":"closed","issue":{{"number":{n}}},"repository":{{"full_name":"octo/app"}}}}"#
    );
    assert_eq!(g.gh.send_raw_webhook("issues", &body, None).await, 401);
    assert_eq!(
        g.gh.send_raw_webhook("issues", &body, Some("sha256=00"))
            .await,
        401
    );
    let forged = format!("sha256={}", "ab".repeat(32));
    assert_eq!(
        g.gh.send_raw_webhook("issues", &body, Some(&forged)).await,
        401
    );
    let got = g.alice(&path).await;
    assert!(
        got.cache_status().contains("detail=trusted"),
        "still trusted: {}",
        got.cache_status()
    );
    // The same body signed with the secret is applied.
    let good = g.gh.sign(body.as_bytes());
    assert_eq!(
        g.gh.send_raw_webhook("issues", &body, Some(&good)).await,
        200
    );
    let got = g.alice(&path).await;
    assert!(!got.is_hit(), "{}", got.cache_status());
}

#[tokio::test]
async fn a_redelivered_webhook_is_applied_once() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    let path = format!("/repos/octo/app/issues/{n}");
    g.gh.comment("octo/app", n, "first").await;
    g.alice(&path).await;
    assert_eq!(g.gh.redeliver_last().await, 200);
    let got = g.alice(&path).await;
    assert!(
        got.cache_status().contains("detail=trusted"),
        "a redelivery invalidates nothing: {}",
        got.cache_status()
    );
    let m = g.metrics().await;
    assert_eq!(
        metric(
            &m,
            "revcache_events_total{route=\"github\",type=\"duplicate\"}"
        ),
        1.0,
        "{m}"
    );
}

/// Reads `path` (trusted), runs `change`, and checks the next read shows
/// the change: the event invalidated the entry.
async fn event_invalidates<F, Fut>(
    g: &Github,
    event: &str,
    path: &str,
    change: F,
    shows: impl Fn(&Value) -> bool,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = g.alice(path).await;
    assert_eq!(before.status, 200, "{path}: {}", before.text());
    assert!(!shows(&json(&before)), "{path}: already shows the change");
    let cached = g.alice(path).await;
    assert!(
        cached.cache_status().contains("detail=trusted"),
        "{path}: {}",
        cached.cache_status()
    );
    change().await;
    assert!(
        delivered(&g.gh, event),
        "{event} was delivered: {:?}",
        g.gh.deliveries()
    );
    let after = g.alice(path).await;
    assert!(
        !after.is_hit(),
        "{event} invalidated {path}: {}",
        after.cache_status()
    );
    assert!(
        shows(&json(&after)),
        "{event}: {path} shows the change: {}",
        after.text()
    );
}

#[tokio::test]
async fn push_invalidates_the_branch() {
    let g = setup(TRUST, |_| {}).await;
    let old = g.gh.branch_sha("octo/app", "main").unwrap();
    event_invalidates(
        &g,
        "push",
        "/repos/octo/app/branches/main",
        || async {
            g.gh.push("octo/app", "main").await;
        },
        |v| v["commit"]["sha"] != old.as_str(),
    )
    .await;
}

#[tokio::test]
async fn pull_request_invalidates_the_pull_and_its_list() {
    let g = setup(TRUST, |_| {}).await;
    let n =
        g.gh.open_pull("octo/app", "feature", "main", "Old title")
            .await;
    event_invalidates(
        &g,
        "pull_request",
        &format!("/repos/octo/app/pulls/{n}"),
        || async {
            g.gh.edit_title("octo/app", n, "New title").await;
        },
        |v| v["title"] == "New title",
    )
    .await;
    event_invalidates(
        &g,
        "pull_request",
        "/repos/octo/app/pulls?state=all",
        || async {
            g.gh.close("octo/app", n).await;
        },
        |v| v[0]["state"] == "closed",
    )
    .await;
}

#[tokio::test]
async fn pull_request_review_invalidates_the_pulls_reviews() {
    let g = setup(TRUST, |_| {}).await;
    let n =
        g.gh.open_pull("octo/app", "feature", "main", "Review me")
            .await;
    event_invalidates(
        &g,
        "pull_request_review",
        &format!("/repos/octo/app/pulls/{n}/reviews"),
        || async {
            g.gh.review("octo/app", n, "APPROVED").await;
        },
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
}

#[tokio::test]
async fn pull_request_review_comment_invalidates_the_pull() {
    let g = setup(TRUST, |_| {}).await;
    let n =
        g.gh.open_pull("octo/app", "feature", "main", "Review me")
            .await;
    let path = format!("/repos/octo/app/pulls/{n}/comments");
    g.alice(&path).await;
    let body = format!(
        r#"{{"action":"created","pull_request":{{"number":{n}}},"comment":{{"id":1}},"repository":{{"full_name":"octo/app"}}}}"#
    );
    let sig = g.gh.sign(body.as_bytes());
    assert_eq!(
        g.gh.send_raw_webhook("pull_request_review_comment", &body, Some(&sig))
            .await,
        200
    );
    assert!(!g.alice(&path).await.is_hit());
}

#[tokio::test]
async fn issues_invalidates_the_issue() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    event_invalidates(
        &g,
        "issues",
        &format!("/repos/octo/app/issues/{n}"),
        || async {
            g.gh.close("octo/app", n).await;
        },
        |v| v["state"] == "closed",
    )
    .await;
}

#[tokio::test]
async fn issue_comment_invalidates_the_comments() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    event_invalidates(
        &g,
        "issue_comment",
        &format!("/repos/octo/app/issues/{n}/comments"),
        || async {
            g.gh.comment("octo/app", n, "me too").await;
        },
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
}

#[tokio::test]
async fn labeling_invalidates_the_issue_and_label_events_the_repository() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    event_invalidates(
        &g,
        "issues",
        &format!("/repos/octo/app/issues/{n}/labels"),
        || async {
            g.gh.add_label("octo/app", n, "bug").await;
        },
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    )
    .await;
    // A label renamed changes every issue that has it.
    let path = format!("/repos/octo/app/issues/{n}");
    g.alice(&path).await;
    let body = r#"{"action":"edited","label":{"name":"defect"},"changes":{"name":{"from":"bug"}},"repository":{"full_name":"octo/app"}}"#;
    let sig = g.gh.sign(body.as_bytes());
    assert_eq!(g.gh.send_raw_webhook("label", body, Some(&sig)).await, 200);
    assert!(!g.alice(&path).await.is_hit());
}

#[tokio::test]
async fn status_invalidates_the_commits_combined_status() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "CI").await;
    let sha = g.gh.head_sha("octo/app", n);
    event_invalidates(
        &g,
        "status",
        &format!("/repos/octo/app/commits/{sha}/status"),
        || async {
            g.gh.set_status("octo/app", &sha, "ci/build", "success")
                .await;
        },
        |v| v["state"] == "success",
    )
    .await;
    // By branch name too: the status names the branches at the commit.
    event_invalidates(
        &g,
        "status",
        "/repos/octo/app/commits/feature/status",
        || async {
            g.gh.set_status("octo/app", &sha, "ci/lint", "failure")
                .await;
        },
        |v| v["state"] == "failure",
    )
    .await;
}

#[tokio::test]
async fn check_run_invalidates_the_commits_check_runs() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "CI").await;
    let sha = g.gh.head_sha("octo/app", n);
    event_invalidates(
        &g,
        "check_run",
        &format!("/repos/octo/app/commits/{sha}/check-runs"),
        || async {
            g.gh.check_run("octo/app", &sha, "build", "completed", Some("success"))
                .await;
        },
        |v| v["total_count"] == 1,
    )
    .await;
}

#[tokio::test]
async fn check_suite_invalidates_the_suite() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "CI").await;
    let sha = g.gh.head_sha("octo/app", n);
    let run =
        g.gh.check_run("octo/app", &sha, "build", "in_progress", None)
            .await;
    let suite = g.gh.check_suite("octo/app", &sha).unwrap();
    event_invalidates(
        &g,
        "check_suite",
        &format!("/repos/octo/app/check-suites/{suite}"),
        || async {
            g.gh.update_check_run("octo/app", run, "completed", Some("success"))
                .await;
        },
        |v| v["status"] == "completed",
    )
    .await;
}

#[tokio::test]
async fn workflow_run_invalidates_the_run() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "CI").await;
    let sha = g.gh.head_sha("octo/app", n);
    let id = g.gh.workflow_run("octo/app", &sha, "queued").await;
    event_invalidates(
        &g,
        "workflow_run",
        &format!("/repos/octo/app/actions/runs/{id}"),
        || async {
            g.gh.update_workflow_run("octo/app", id, "completed", Some("success"))
                .await;
        },
        |v| v["status"] == "completed",
    )
    .await;
}

#[tokio::test]
async fn create_and_delete_invalidate_the_ref_and_the_branch_list() {
    let g = setup(TRUST, |_| {}).await;
    event_invalidates(
        &g,
        "create",
        "/repos/octo/app/branches",
        || async {
            g.gh.create_branch("octo/app", "release", "main").await;
        },
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|b| b["name"] == "release"))
        },
    )
    .await;
    event_invalidates(
        &g,
        "delete",
        "/repos/octo/app/branches",
        || async {
            g.gh.delete_branch("octo/app", "release").await;
        },
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|b| b["name"] != "release"))
        },
    )
    .await;
}

#[tokio::test]
async fn repository_made_private_invalidates_it_for_every_token() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/app", "Public for now").await;
    let path = format!("/repos/octo/app/issues/{n}");
    let bob = g.get(&g.bob.clone(), &path).await;
    assert_eq!(bob.status, 200);
    g.alice(&path).await;
    g.gh.set_private("octo/app", true).await;
    assert!(delivered(&g.gh, "repository"));
    let bob = g.get(&g.bob.clone(), &path).await;
    assert_eq!(bob.status, 404, "Bob lost access: {}", bob.cache_status());
}

#[tokio::test]
async fn member_removed_loses_access_at_once() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_issue("octo/secret", "Plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    assert_eq!(g.alice(&path).await.status, 200);
    assert!(g.alice(&path).await.is_hit());
    g.gh.remove_member("octo/secret", "alice").await;
    assert!(delivered(&g.gh, "member"));
    assert_eq!(g.alice(&path).await.status, 404);
}

#[tokio::test]
async fn team_changes_invalidate_the_repository() {
    let g = setup(TRUST, |_| {}).await;
    let path = "/repos/octo/secret";
    assert_eq!(g.get(&g.bob.clone(), path).await.status, 404);
    g.gh.add_team("octo/secret", "devs", &["bob"]).await;
    assert!(delivered(&g.gh, "team"));
    assert_eq!(g.get(&g.bob.clone(), path).await.status, 200);
}

#[tokio::test]
async fn unknown_events_invalidate_their_repository_and_ping_invalidates_nothing() {
    let g = setup(TRUST, |_| {}).await;
    let path = "/repos/octo/app";
    g.alice(path).await;
    g.gh.ping().await;
    assert!(delivered(&g.gh, "ping"));
    assert!(g.alice(path).await.is_hit(), "ping");
    let body = r#"{"action":"created","repository":{"full_name":"Octo/App"}}"#;
    let sig = g.gh.sign(body.as_bytes());
    assert_eq!(
        g.gh.send_raw_webhook("discussion", body, Some(&sig)).await,
        200
    );
    assert!(!g.alice(path).await.is_hit());
}

#[tokio::test]
async fn a_pull_fetched_before_github_shows_the_event_is_served_but_never_trusted() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "Old").await;
    let path = format!("/repos/octo/app/pulls/{n}");
    g.alice(&path).await;
    // The webhook arrives; GitHub's API shows the old pull twice more.
    g.gh.lag_next_mutation(2);
    g.gh.edit_title("octo/app", n, "New").await;
    let lagging = g.alice(&path).await;
    assert_eq!(json(&lagging)["title"], "Old", "GitHub lags");
    // The old state is not trusted: every read asks until GitHub catches up.
    let again = g.alice(&path).await;
    assert!(!again.is_hit(), "{}", again.cache_status());
    assert_eq!(json(&again)["title"], "Old");
    let caught_up = g.alice(&path).await;
    assert_eq!(
        json(&caught_up)["title"],
        "New",
        "{}",
        caught_up.cache_status()
    );
    let trusted = g.alice(&path).await;
    assert!(
        trusted.cache_status().contains("detail=trusted"),
        "{}",
        trusted.cache_status()
    );
    assert_eq!(json(&trusted)["title"], "New");
}

#[tokio::test]
async fn below_the_reserve_stored_entries_answer_instead_of_revalidating() {
    let g = setup(None, |s| {
        s.routes[0]
            .options
            .insert("rate_limit_reserve".into(), "100".into());
    })
    .await;
    let path = "/repos/octo/app";
    g.alice(path).await;
    g.gh.set_remaining("alice", 50);
    // The next answer (a 304) tells revcache how little is left.
    let revalidated = g.alice(path).await;
    assert!(revalidated.cache_status().contains("fwd-status=304"));
    let before = g.upstream();
    let held = g.alice(path).await;
    assert_eq!(held.status, 200);
    assert!(
        held.cache_status().contains("detail=rate-limited"),
        "{}",
        held.cache_status()
    );
    assert_eq!(g.upstream(), before, "not asked");
    // Other tokens are not held back.
    let bob = g.get(&g.bob.clone(), path).await;
    assert!(!bob.is_hit());
}

#[tokio::test]
async fn a_secondary_limit_serves_what_is_stored_and_answers_misses_locally_until_retry_after() {
    let g = setup(None, |_| {}).await;
    let path = "/repos/octo/app";
    g.alice(path).await;
    g.gh.trip_secondary_limit(60);
    let stale = g.alice(path).await;
    assert_eq!(
        stale.status,
        200,
        "the stored entry answers: {}",
        stale.text()
    );
    assert!(
        stale.cache_status().contains("detail=rate-limited"),
        "{}",
        stale.cache_status()
    );
    let before = g.gh.served().secondary_limited;
    let miss = g.alice("/repos/octo/app/pulls").await;
    assert_eq!(miss.status, 429);
    assert!(miss.header("retry-after").is_some());
    assert_eq!(
        g.gh.served().secondary_limited,
        before,
        "not asked while held"
    );
    g.gh.clear_secondary_limit();
    g.rc.advance(Duration::from_secs(61));
    assert_eq!(g.alice("/repos/octo/app/pulls").await.status, 200);
}

/// Mints an installation token through revcache, as an app does.
async fn mint(g: &Github, installation: u64) -> String {
    let jwt = format!("Bearer {}", g.gh.app_jwt());
    let got = Client::default()
        .send(
            "POST",
            &g.rc
                .url(&format!("/app/installations/{installation}/access_tokens")),
            &[("authorization", &jwt)],
            "",
        )
        .await;
    assert_eq!(got.status, 201, "{}", got.text());
    json(&got)["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rotated_installation_tokens_share_one_partition() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_installation(
        7,
        &["octo/secret"],
        serde_json::json!({"issues": "read", "pulls": "read"}),
    );
    let n = g.gh.open_issue("octo/secret", "Plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    let first = mint(&g, 7).await;
    assert_eq!(g.get(&first, &path).await.status, 200);
    let second = mint(&g, 7).await;
    assert_ne!(first, second);
    let before = g.upstream();
    let got = g.get(&second, &path).await;
    assert_eq!(got.status, 200);
    assert!(
        got.cache_status().contains("detail=trusted"),
        "{}",
        got.cache_status()
    );
    assert_eq!(
        g.upstream(),
        before,
        "the new token reads the old token's entry"
    );
    // Without trust, the new token revalidates the old token's ETag:
    // GitHub's ETags are per token, so that is a 200, stored anew.
    g.rc.advance(Duration::from_secs(301));
    let third = mint(&g, 7).await;
    let got = g.get(&third, &path).await;
    assert_eq!(got.status, 200);
    assert!(
        got.cache_status().contains("fwd-status=200"),
        "{}",
        got.cache_status()
    );
    assert!(
        g.get(&third, &path)
            .await
            .cache_status()
            .contains("detail=trusted")
    );
}

#[tokio::test]
async fn installations_never_share_entries() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_installation(7, &["octo/secret"], serde_json::json!({"issues": "read"}));
    g.gh.add_installation(8, &["octo/app"], serde_json::json!({"issues": "read"}));
    let n = g.gh.open_issue("octo/secret", "Plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    let seven = mint(&g, 7).await;
    let eight = mint(&g, 8).await;
    assert_eq!(g.get(&seven, &path).await.status, 200);
    let other = g.get(&eight, &path).await;
    assert_eq!(other.status, 404, "{}", other.text());
    assert!(!other.text().contains("Plans"));
}

#[tokio::test]
async fn graphql_passes_through_and_is_never_stored() {
    let g = setup(TRUST, |_| {}).await;
    let auth = format!("token {}", g.alice);
    for _ in 0..2 {
        let got = Client::default()
            .send(
                "POST",
                &g.rc.url("/graphql"),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                r#"{"query":"{ viewer { login } }"}"#,
            )
            .await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(json(&got)["data"]["viewer"]["login"], "alice");
        assert!(!got.is_hit());
    }
    assert_eq!(g.gh.served().graphql, 2);
}

#[tokio::test]
async fn a_write_through_revcache_invalidates_what_it_touched() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_member("octo/app", "alice").await;
    // No webhooks: only the write itself can invalidate.
    g.gh.set_webhook(None, SECRET);
    let n = g.gh.open_issue("octo/app", "Bug").await;
    let path = format!("/repos/octo/app/issues/{n}/comments");
    g.alice(&path).await;
    let auth = format!("token {}", g.alice);
    let posted = Client::default()
        .send(
            "POST",
            &g.rc.url(&path),
            &[("authorization", &auth)],
            r#"{"body":"fixed"}"#,
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text());
    let after = g.alice(&path).await;
    assert!(!after.is_hit());
    assert_eq!(json(&after).as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_page_of_a_list_is_invalidated_with_its_collection() {
    let g = setup(TRUST, |_| {}).await;
    for i in 0..5 {
        g.gh.open_issue("octo/app", &format!("Issue {i}")).await;
    }
    let page2 = "/repos/octo/app/issues?per_page=2&page=2";
    let first = g.alice(page2).await;
    let link = first.header("link").unwrap().to_owned();
    assert!(link.contains("rel=\"next\""), "{link}");
    // Clients that follow it come back through revcache.
    let next = format!("<http://{}/repos/octo/app/issues?", g.rc.addr);
    assert!(link.contains(&next), "{link}");
    assert!(!link.contains(&g.gh.url()), "{link}");
    assert!(g.alice(page2).await.is_hit());
    g.gh.open_issue("octo/app", "Newest").await;
    assert!(!g.alice(page2).await.is_hit());
}

#[tokio::test]
async fn installation_repositories_removed_loses_access_at_once_for_every_token() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_installation(7, &["octo/secret"], serde_json::json!({"issues": "read"}));
    let n = g.gh.open_issue("octo/secret", "Plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    let token = mint(&g, 7).await;
    assert_eq!(g.get(&token, &path).await.status, 200);
    assert!(g.get(&token, &path).await.is_hit());
    g.gh.remove_installation_repos(7, &["octo/secret"]).await;
    assert!(delivered(&g.gh, "installation_repositories"));
    let got = g.get(&token, &path).await;
    assert_eq!(got.status, 404, "{}", got.cache_status());
}

#[tokio::test]
async fn installation_deleted_invalidates_its_repositories_and_forgets_its_tokens() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_installation(7, &["octo/secret"], serde_json::json!({"issues": "read"}));
    let n = g.gh.open_issue("octo/secret", "Plans").await;
    let path = format!("/repos/octo/secret/issues/{n}");
    let token = mint(&g, 7).await;
    assert_eq!(g.get(&token, &path).await.status, 200);
    g.gh.remove_installation(7).await;
    assert!(delivered(&g.gh, "installation"));
    let got = g.get(&token, &path).await;
    assert!(!got.is_hit(), "{}", got.cache_status());
    assert!(got.status == 401 || got.status == 404, "{}", got.status);
}

#[tokio::test]
async fn a_webhook_silent_past_its_heartbeat_is_not_trusted_until_github_pings_again() {
    let g = setup(TRUST, |s| {
        if let Some(e) = s.routes[0].events.as_mut() {
            e.heartbeat = Some(Duration::from_secs(60));
        }
    })
    .await;
    let path = "/repos/octo/app";
    g.alice(path).await;
    assert!(g.alice(path).await.is_hit());
    g.rc.advance(Duration::from_secs(61));
    let silent = g.alice(path).await;
    assert!(
        silent.cache_status().contains("fwd-status=304"),
        "{}",
        silent.cache_status()
    );
    g.gh.ping().await;
    // Trust starts over: what was fetched before the ping is asked once.
    assert!(
        !g.alice(path)
            .await
            .cache_status()
            .contains("detail=trusted")
    );
    let after = g.alice(path).await;
    assert!(
        after.cache_status().contains("detail=trusted"),
        "{}",
        after.cache_status()
    );
}

#[tokio::test]
async fn each_api_version_is_its_own_variant() {
    let g = setup(TRUST, |_| {}).await;
    let auth = format!("token {}", g.alice);
    let get = |version: &'static str| {
        let (url, auth) = (g.rc.url("/repos/octo/app"), auth.clone());
        async move {
            Client::default()
                .get_with(
                    &url,
                    &[("authorization", &auth), ("x-github-api-version", version)],
                )
                .await
        }
    };
    get("2022-11-28").await;
    g.rc.proxy.fills_idle().await;
    assert!(get("2022-11-28").await.is_hit());
    let other = get("2026-03-10").await;
    assert!(!other.is_hit(), "{}", other.cache_status());
}

#[tokio::test]
async fn events_invalidate_only_what_they_change() {
    let g = setup(TRUST, |_| {}).await;
    let n =
        g.gh.open_pull("octo/app", "feature", "main", "Precise")
            .await;
    let sha = g.gh.head_sha("octo/app", n);
    let commits = format!("/repos/octo/app/pulls/{n}/commits");
    let checks = format!("/repos/octo/app/commits/{sha}/check-runs");
    let status = format!("/repos/octo/app/commits/{sha}/status");
    for path in [&commits, &checks, &status] {
        g.alice(path).await;
    }
    g.gh.review("octo/app", n, "APPROVED").await;
    assert!(
        g.alice(&commits).await.is_hit(),
        "a review leaves the commits"
    );
    g.gh.set_status("octo/app", &sha, "ci/build", "success")
        .await;
    assert!(
        g.alice(&checks).await.is_hit(),
        "a status leaves the check runs"
    );
    assert!(!g.alice(&status).await.is_hit(), "but not the status");
    g.gh.check_run("octo/app", &sha, "build", "completed", Some("success"))
        .await;
    assert!(
        g.alice(&status).await.is_hit(),
        "a check run leaves the status"
    );
    assert!(!g.alice(&checks).await.is_hit());
    g.gh.push("octo/app", "feature").await;
    assert!(
        !g.alice(&commits).await.is_hit(),
        "a push changes the commits"
    );
}

#[tokio::test]
async fn with_exact_repository_summaries_any_event_of_the_repository_invalidates_all_of_it() {
    for (mode, invalidated) in [("lag", false), ("exact", true)] {
        let g = setup(TRUST, |s| {
            s.routes[0]
                .options
                .insert("repository_summaries".into(), mode.into());
        })
        .await;
        let n =
            g.gh.open_pull("octo/app", "feature", "main", "Embeds its repository")
                .await;
        let path = format!("/repos/octo/app/pulls/{n}");
        g.alice(&path).await;
        // A new issue changes the repository's open_issues_count, which
        // the pull embeds in `base.repo`.
        g.gh.open_issue("octo/app", "Elsewhere").await;
        let got = g.alice(&path).await;
        assert_eq!(!got.is_hit(), invalidated, "{mode}: {}", got.cache_status());
    }
}

#[tokio::test]
async fn a_repository_no_webhook_has_named_is_never_trusted() {
    let g = setup(TRUST, |_| {}).await;
    g.gh.add_repo("octo", "quiet", false);
    let path = "/repos/octo/quiet";
    g.alice(path).await;
    let got = g.alice(path).await;
    assert!(
        got.cache_status().contains("fwd-status=304"),
        "revalidated: {}",
        got.cache_status()
    );
    // An organization's webhook covers all of its repositories.
    let body = r#"{"zen":"Half measures are as bad as nothing at all.","hook_id":2,"organization":{"login":"Octo"}}"#;
    let sig = g.gh.sign(body.as_bytes());
    assert_eq!(g.gh.send_raw_webhook("ping", body, Some(&sig)).await, 200);
    g.alice(path).await;
    assert!(
        g.alice(path)
            .await
            .cache_status()
            .contains("detail=trusted")
    );
}

#[tokio::test]
async fn signed_webhooks_need_no_admin_token() {
    let g = setup(TRUST, |s| {
        s.admin_token = Some("admin-secret".into());
    })
    .await;
    let n = g.gh.open_issue("octo/app", "Bug").await;
    assert!(delivered(&g.gh, "issues"), "{:?}", g.gh.deliveries());
    // The signature is what authenticates: an unsigned one is still refused.
    let body = format!(
        r#"{{"action":"closed","issue":{{"number":{n}}},"repository":{{"full_name":"octo/app"}}}}"#
    );
    assert_eq!(g.gh.send_raw_webhook("issues", &body, None).await, 401);
    // Every other admin endpoint still wants the token.
    let purge = Client::default().get(&g.rc.admin_url("/inspect")).await;
    assert_eq!(purge.status, 401);
}

#[tokio::test]
async fn urls_point_at_the_configured_public_url() {
    let g = setup(TRUST, |s| {
        s.routes[0]
            .options
            .insert("public_url".into(), "https://github-cache.example".into());
    })
    .await;
    for i in 0..3 {
        g.gh.open_issue("octo/app", &format!("Issue {i}")).await;
    }
    let got = g.alice("/repos/octo/app/issues?per_page=1").await;
    let link = got.header("link").unwrap();
    assert!(
        link.contains("<https://github-cache.example/repos/octo/app/issues?"),
        "{link}"
    );
    let first = &json(&got)[0];
    assert!(
        first["url"]
            .as_str()
            .unwrap()
            .starts_with("https://github-cache.example/repos/octo/app/issues/"),
        "{first}"
    );
    // Other origins GitHub names stay as they are.
    assert!(
        !got.text().contains("github-cache.example/octo"),
        "html_url untouched"
    );
}

#[tokio::test]
async fn a_caller_with_unrecognized_credentials_never_holds_back_anonymous_callers() {
    let g = setup(None, |_| {}).await;
    let path = "/repos/octo/app";
    assert_eq!(Client::default().get(&g.rc.url(path)).await.status, 200);
    g.rc.proxy.fills_idle().await;
    // A token with a cookie is not partition material on this route.
    g.gh.trip_secondary_limit(60);
    let auth = format!("token {}", g.bob);
    let limited = Client::default()
        .get_with(
            &g.rc.url("/repos/octo/app/pulls"),
            &[("authorization", &auth), ("cookie", "s=1")],
        )
        .await;
    assert_eq!(
        limited.status,
        403,
        "GitHub's own answer: {}",
        limited.cache_status()
    );
    g.gh.clear_secondary_limit();
    // Anonymous callers are not held back by what that caller got.
    let anonymous = Client::default()
        .get(&g.rc.url("/repos/octo/app/pulls"))
        .await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.cache_status());
}

#[tokio::test]
async fn workflow_job_invalidates_its_run() {
    let g = setup(TRUST, |_| {}).await;
    let n = g.gh.open_pull("octo/app", "feature", "main", "CI").await;
    let sha = g.gh.head_sha("octo/app", n);
    let id = g.gh.workflow_run("octo/app", &sha, "queued").await;
    let path = format!("/repos/octo/app/actions/runs/{id}");
    g.alice(&path).await;
    assert!(g.alice(&path).await.is_hit());
    let body = format!(
        r#"{{"action":"in_progress","workflow_job":{{"id":1,"run_id":{id},"head_sha":"{sha}","head_branch":"feature"}},"repository":{{"full_name":"octo/app"}}}}"#
    );
    let sig = g.gh.sign(body.as_bytes());
    assert_eq!(
        g.gh.send_raw_webhook("workflow_job", &body, Some(&sig))
            .await,
        200
    );
    assert!(!g.alice(&path).await.is_hit());
}

#[tokio::test]
async fn a_head_never_states_a_length_its_get_would_not_have() {
    let g = setup(TRUST, |_| {}).await;
    let path = "/repos/octo/app";
    let get = g.alice(path).await;
    let auth = format!("token {}", g.alice);
    let head = Client::default()
        .send("HEAD", &g.rc.url(path), &[("authorization", &auth)], "")
        .await;
    assert_eq!(head.status, 200);
    // The body a GET gets is rewritten (its URLs point here), so its
    // length is not the stored one: a HEAD states the GET's or none.
    let get_length = get.body.len().to_string();
    assert!(
        head.header("content-length")
            .is_none_or(|l| l == get_length),
        "{:?} vs {get_length}",
        head.headers
    );
}
