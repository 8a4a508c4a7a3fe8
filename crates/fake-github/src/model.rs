//! The objects the fake keeps and their GitHub-shaped JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

pub(crate) const HTML: &str = "https://github.com";
pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";
pub(crate) const APP_LOGIN: &str = "fake-app[bot]";
pub(crate) const APP_ID: u64 = 424242;

pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A git-looking object name derived from `seed`.
pub(crate) fn hex40(seed: &str) -> String {
    sha256_hex(&[seed.as_bytes()])[..40].to_owned()
}

/// Stable numeric id of a login (users need no registration to be shown).
pub(crate) fn user_id(login: &str) -> u64 {
    let h = sha256_hex(&[b"user", login.as_bytes()]);
    10_000_000 + u64::from_str_radix(&h[..12], 16).unwrap_or(0) % 90_000_000
}

pub(crate) fn node_id(kind: &str, id: u64) -> String {
    format!("{kind}_kwDO{id:010X}")
}

fn civil(secs: u64) -> (i64, u32, u32, u64) {
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs % 86_400)
}

pub(crate) fn rfc3339(secs: u64) -> String {
    let (y, m, d, s) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

pub(crate) fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, s) = civil(secs);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

pub(crate) fn opt_time(t: Option<u64>) -> Value {
    t.map_or(Value::Null, |t| json!(rfc3339(t)))
}

pub(crate) fn user_json(base: &str, login: &str) -> Value {
    let id = user_id(login);
    let bot = login.ends_with("[bot]");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "url": format!("{base}/users/{login}"),
        "html_url": format!("{HTML}/{login}"),
        "type": if bot { "Bot" } else { "User" },
        "site_admin": false,
    })
}

#[derive(Clone, Debug)]
pub(crate) struct Commit {
    pub sha: String,
    pub parents: Vec<String>,
    pub message: String,
    pub author: String,
    pub date: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Comment {
    pub id: u64,
    pub user: String,
    pub body: String,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Review {
    pub id: u64,
    pub user: String,
    pub state: String,
    pub body: String,
    pub commit_id: String,
    pub submitted_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct StatusRec {
    pub id: u64,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub creator: String,
    pub created_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CheckRun {
    pub id: u64,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: u64,
    pub completed_at: Option<u64>,
    pub suite_id: u64,
    pub updated_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    pub head_branch: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct WorkflowRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub head_branch: Option<String>,
    pub status: String,
    pub conclusion: Option<String>,
    pub run_number: u64,
    pub suite_id: u64,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Pull {
    pub id: u64,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub merged_at: Option<u64>,
    pub merge_commit_sha: Option<String>,
    pub merged_by: Option<String>,
    pub reviews: Vec<Review>,
}

#[derive(Clone, Debug)]
pub(crate) struct Issue {
    pub number: u64,
    pub id: u64,
    pub title: String,
    pub body: String,
    pub user: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub comments: Vec<Comment>,
    pub created_at: u64,
    pub updated_at: u64,
    pub closed_at: Option<u64>,
    pub pull: Option<Pull>,
}

#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub members: BTreeSet<String>,
    pub default_branch: String,
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub commits: HashMap<String, Commit>,
    pub commit_seq: u64,
    pub issues: BTreeMap<u64, Issue>,
    pub next_number: u64,
    pub labels: BTreeMap<String, u64>,
    pub statuses: Vec<StatusRec>,
    pub check_runs: BTreeMap<u64, CheckRun>,
    pub check_suites: BTreeMap<u64, CheckSuite>,
    pub workflow_runs: BTreeMap<u64, WorkflowRun>,
    pub created_at: u64,
    pub updated_at: u64,
    pub pushed_at: u64,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// A sha, a unique sha prefix (7+), a branch, a tag, or `heads/x`/`tags/x`.
    pub fn resolve(&self, r: &str) -> Option<String> {
        if let Some(b) = r
            .strip_prefix("refs/heads/")
            .or_else(|| r.strip_prefix("heads/"))
        {
            return self.branches.get(b).cloned();
        }
        if let Some(t) = r
            .strip_prefix("refs/tags/")
            .or_else(|| r.strip_prefix("tags/"))
        {
            return self.tags.get(t).cloned();
        }
        if self.commits.contains_key(r) {
            return Some(r.to_owned());
        }
        if let Some(s) = self.branches.get(r).or_else(|| self.tags.get(r)) {
            return Some(s.clone());
        }
        if r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut m = self.commits.keys().filter(|s| s.starts_with(r));
            if let (Some(s), None) = (m.next(), m.next()) {
                return Some(s.clone());
            }
        }
        None
    }

    /// Commits of a pull, oldest first: head back to the base it was opened on.
    pub fn pull_commits(&self, p: &Pull) -> Vec<&Commit> {
        let mut out = Vec::new();
        let mut cur = Some(p.head_sha.clone());
        while let Some(sha) = cur {
            if sha == p.base_sha || out.len() >= 250 {
                break;
            }
            let Some(c) = self.commits.get(&sha) else {
                break;
            };
            out.push(c);
            cur = c.parents.first().cloned();
        }
        out.reverse();
        out
    }

    /// Branches whose tip is `sha`.
    pub fn branches_at(&self, sha: &str) -> Vec<String> {
        self.branches
            .iter()
            .filter(|(_, s)| *s == sha)
            .map(|(b, _)| b.clone())
            .collect()
    }

    pub fn suite_status(&self, suite: u64) -> (&'static str, Option<String>) {
        let runs: Vec<&CheckRun> = self
            .check_runs
            .values()
            .filter(|r| r.suite_id == suite)
            .collect();
        let wf: Vec<&WorkflowRun> = self
            .workflow_runs
            .values()
            .filter(|r| r.suite_id == suite)
            .collect();
        let all_done = runs.iter().all(|r| r.status == "completed")
            && wf.iter().all(|r| r.status == "completed");
        if !all_done || (runs.is_empty() && wf.is_empty()) {
            let any_started = runs.iter().any(|r| r.status != "queued");
            return (if any_started { "in_progress" } else { "queued" }, None);
        }
        let concl: Vec<&str> = runs
            .iter()
            .filter_map(|r| r.conclusion.as_deref())
            .chain(wf.iter().filter_map(|r| r.conclusion.as_deref()))
            .collect();
        let worst = ["failure", "timed_out", "cancelled", "action_required"]
            .into_iter()
            .find(|c| concl.contains(c))
            .unwrap_or("success");
        ("completed", Some(worst.to_owned()))
    }
}

/// Renders a repository's objects against an API base URL.
pub(crate) struct Render<'a> {
    pub base: &'a str,
    pub repo: &'a Repo,
}

impl Render<'_> {
    fn api(&self) -> String {
        format!("{}/repos/{}", self.base, self.repo.full_name())
    }
    fn html(&self) -> String {
        format!("{HTML}/{}", self.repo.full_name())
    }
    fn user(&self, login: &str) -> Value {
        user_json(self.base, login)
    }

    pub fn repo(&self) -> Value {
        let r = self.repo;
        let api = self.api();
        json!({
            "id": r.id,
            "node_id": node_id("R", r.id),
            "name": r.name,
            "full_name": r.full_name(),
            "private": r.private,
            "owner": self.user(&r.owner),
            "html_url": self.html(),
            "description": null,
            "fork": false,
            "url": api,
            "pulls_url": format!("{api}/pulls{{/number}}"),
            "issues_url": format!("{api}/issues{{/number}}"),
            "commits_url": format!("{api}/commits{{/sha}}"),
            "statuses_url": format!("{api}/statuses/{{sha}}"),
            "clone_url": format!("{}.git", self.html()),
            "created_at": rfc3339(r.created_at),
            "updated_at": rfc3339(r.updated_at),
            "pushed_at": rfc3339(r.pushed_at),
            "default_branch": r.default_branch,
            "visibility": if r.private { "private" } else { "public" },
            "archived": false,
            "disabled": false,
            "open_issues_count": r.issues.values().filter(|i| i.open).count(),
        })
    }

    pub fn label(&self, name: &str) -> Value {
        let id = self.repo.labels.get(name).copied().unwrap_or(0);
        json!({
            "id": id,
            "node_id": node_id("LA", id),
            "url": format!("{}/labels/{}", self.api(), name),
            "name": name,
            "color": &hex40(name)[..6],
            "default": false,
            "description": null,
        })
    }

    fn labels(&self, i: &Issue) -> Value {
        Value::Array(i.labels.iter().map(|l| self.label(l)).collect())
    }

    fn branch_side(&self, r#ref: &str, sha: &str) -> Value {
        json!({
            "label": format!("{}:{}", self.repo.owner, r#ref),
            "ref": r#ref,
            "sha": sha,
            "user": self.user(&self.repo.owner),
            "repo": self.repo(),
        })
    }

    /// A pull as `GET /pulls` lists it; `detail` adds what `GET /pulls/{n}` adds.
    pub fn pull(&self, i: &Issue, detail: bool) -> Value {
        let p = i.pull.as_ref().expect("a pull");
        let api = self.api();
        let html = format!("{}/pull/{}", self.html(), i.number);
        let mut v = json!({
            "url": format!("{api}/pulls/{}", i.number),
            "id": p.id,
            "node_id": node_id("PR", p.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{api}/issues/{}", i.number),
            "commits_url": format!("{api}/pulls/{}/commits", i.number),
            "review_comments_url": format!("{api}/pulls/{}/comments", i.number),
            "comments_url": format!("{api}/issues/{}/comments", i.number),
            "statuses_url": format!("{api}/statuses/{}", p.head_sha),
            "number": i.number,
            "state": if i.open { "open" } else { "closed" },
            "locked": false,
            "title": i.title,
            "user": self.user(&i.user),
            "body": i.body,
            "labels": self.labels(i),
            "created_at": rfc3339(i.created_at),
            "updated_at": rfc3339(i.updated_at),
            "closed_at": opt_time(i.closed_at),
            "merged_at": opt_time(p.merged_at),
            "merge_commit_sha": p.merge_commit_sha,
            "assignee": null,
            "assignees": [],
            "requested_reviewers": [],
            "draft": false,
            "head": self.branch_side(&p.head_ref, &p.head_sha),
            "base": self.branch_side(&p.base_ref, &p.base_sha),
            "author_association": "OWNER",
        });
        if detail {
            let commits = self.repo.pull_commits(p).len();
            v["merged"] = json!(p.merged_at.is_some());
            v["mergeable"] = if i.open { json!(true) } else { Value::Null };
            v["mergeable_state"] = json!(if i.open { "clean" } else { "unknown" });
            v["merged_by"] = p.merged_by.as_deref().map_or(Value::Null, |u| self.user(u));
            v["comments"] = json!(i.comments.len());
            v["review_comments"] = json!(0);
            v["commits"] = json!(commits);
            v["additions"] = json!(commits);
            v["deletions"] = json!(0);
            v["changed_files"] = json!(commits);
        }
        v
    }

    pub fn issue(&self, i: &Issue) -> Value {
        let api = self.api();
        let mut v = json!({
            "url": format!("{api}/issues/{}", i.number),
            "repository_url": api,
            "labels_url": format!("{api}/issues/{}/labels{{/name}}", i.number),
            "comments_url": format!("{api}/issues/{}/comments", i.number),
            "html_url": format!("{}/issues/{}", self.html(), i.number),
            "id": i.id,
            "node_id": node_id("I", i.id),
            "number": i.number,
            "title": i.title,
            "user": self.user(&i.user),
            "labels": self.labels(i),
            "state": if i.open { "open" } else { "closed" },
            "locked": false,
            "assignee": null,
            "assignees": [],
            "comments": i.comments.len(),
            "created_at": rfc3339(i.created_at),
            "updated_at": rfc3339(i.updated_at),
            "closed_at": opt_time(i.closed_at),
            "author_association": "OWNER",
            "body": i.body,
        });
        if let Some(p) = &i.pull {
            let html = format!("{}/pull/{}", self.html(), i.number);
            v["pull_request"] = json!({
                "url": format!("{api}/pulls/{}", i.number),
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": opt_time(p.merged_at),
            });
        }
        v
    }

    pub fn comment(&self, i: &Issue, c: &Comment) -> Value {
        let api = self.api();
        json!({
            "id": c.id,
            "node_id": node_id("IC", c.id),
            "url": format!("{api}/issues/comments/{}", c.id),
            "html_url": format!("{}/issues/{}#issuecomment-{}", self.html(), i.number, c.id),
            "issue_url": format!("{api}/issues/{}", i.number),
            "body": c.body,
            "user": self.user(&c.user),
            "created_at": rfc3339(c.created_at),
            "updated_at": rfc3339(c.updated_at),
            "author_association": "OWNER",
        })
    }

    pub fn review(&self, i: &Issue, r: &Review) -> Value {
        json!({
            "id": r.id,
            "node_id": node_id("PRR", r.id),
            "user": self.user(&r.user),
            "body": r.body,
            "state": r.state,
            "html_url": format!("{}/pull/{}#pullrequestreview-{}", self.html(), i.number, r.id),
            "pull_request_url": format!("{}/pulls/{}", self.api(), i.number),
            "submitted_at": rfc3339(r.submitted_at),
            "commit_id": r.commit_id,
            "author_association": "OWNER",
        })
    }

    pub fn commit(&self, c: &Commit, detail: bool) -> Value {
        let api = self.api();
        let person = json!({"name": c.author, "email": format!("{}@users.noreply.github.com", c.author), "date": rfc3339(c.date)});
        let mut v = json!({
            "sha": c.sha,
            "node_id": format!("C_{}", &c.sha[..20]),
            "commit": {
                "author": person,
                "committer": person,
                "message": c.message,
                "tree": {"sha": hex40(&format!("tree:{}", c.sha)), "url": format!("{api}/git/trees/{}", hex40(&format!("tree:{}", c.sha)))},
                "url": format!("{api}/git/commits/{}", c.sha),
                "comment_count": 0,
                "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null},
            },
            "url": format!("{api}/commits/{}", c.sha),
            "html_url": format!("{}/commit/{}", self.html(), c.sha),
            "comments_url": format!("{api}/commits/{}/comments", c.sha),
            "author": self.user(&c.author),
            "committer": self.user(&c.author),
            "parents": c.parents.iter().map(|p| json!({"sha": p, "url": format!("{api}/commits/{p}"), "html_url": format!("{}/commit/{p}", self.html())})).collect::<Vec<_>>(),
        });
        if detail {
            v["stats"] = json!({"total": 1, "additions": 1, "deletions": 0});
            v["files"] = json!([self.file(c)]);
        }
        v
    }

    pub fn file(&self, c: &Commit) -> Value {
        let name = format!("src/change_{}.txt", &c.sha[..8]);
        json!({
            "sha": hex40(&format!("blob:{}", c.sha)),
            "filename": name,
            "status": "added",
            "additions": 1,
            "deletions": 0,
            "changes": 1,
            "blob_url": format!("{}/blob/{}/{name}", self.html(), c.sha),
            "raw_url": format!("{}/raw/{}/{name}", self.html(), c.sha),
            "contents_url": format!("{}/contents/{name}?ref={}", self.api(), c.sha),
            "patch": format!("@@ -0,0 +1 @@\n+{}", c.message),
        })
    }

    pub fn status(&self, s: &StatusRec) -> Value {
        json!({
            "url": format!("{}/statuses/{}", self.api(), s.sha),
            "id": s.id,
            "node_id": node_id("SC", s.id),
            "state": s.state,
            "description": null,
            "target_url": null,
            "context": s.context,
            "created_at": rfc3339(s.created_at),
            "updated_at": rfc3339(s.created_at),
            "creator": self.user(&s.creator),
        })
    }

    /// `GET /commits/{ref}/status`: the latest status per context.
    pub fn combined_status(&self, sha: &str) -> Value {
        let mut latest: BTreeMap<&str, &StatusRec> = BTreeMap::new();
        for s in self.repo.statuses.iter().filter(|s| s.sha == sha) {
            latest.insert(&s.context, s);
        }
        let states: Vec<&str> = latest.values().map(|s| s.state.as_str()).collect();
        let state = if states.iter().any(|s| *s == "error" || *s == "failure") {
            "failure"
        } else if states.is_empty() || states.contains(&"pending") {
            "pending"
        } else {
            "success"
        };
        json!({
            "state": state,
            "statuses": latest.values().map(|s| self.status(s)).collect::<Vec<_>>(),
            "sha": sha,
            "total_count": latest.len(),
            "repository": self.repo(),
            "commit_url": format!("{}/commits/{sha}", self.api()),
            "url": format!("{}/commits/{sha}/status", self.api()),
        })
    }

    fn app(&self) -> Value {
        json!({"id": APP_ID, "slug": "fake-app", "node_id": node_id("A", APP_ID), "name": "Fake App", "owner": self.user(&self.repo.owner)})
    }

    fn pulls_at(&self, sha: &str) -> Vec<Value> {
        self.repo
            .issues
            .values()
            .filter_map(|i| i.pull.as_ref().map(|p| (i, p)))
            .filter(|(i, p)| i.open && p.head_sha == sha)
            .map(|(i, p)| {
                json!({"id": p.id, "number": i.number, "url": format!("{}/pulls/{}", self.api(), i.number),
                    "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": {"id": self.repo.id, "name": self.repo.name, "url": self.api()}},
                    "base": {"ref": p.base_ref, "sha": p.base_sha, "repo": {"id": self.repo.id, "name": self.repo.name, "url": self.api()}}})
            })
            .collect()
    }

    pub fn check_run(&self, c: &CheckRun) -> Value {
        let api = self.api();
        json!({
            "id": c.id,
            "node_id": node_id("CR", c.id),
            "head_sha": c.head_sha,
            "external_id": "",
            "url": format!("{api}/check-runs/{}", c.id),
            "html_url": format!("{}/runs/{}", self.html(), c.id),
            "details_url": format!("{}/runs/{}", self.html(), c.id),
            "status": c.status,
            "conclusion": c.conclusion,
            "started_at": rfc3339(c.started_at),
            "completed_at": opt_time(c.completed_at),
            "output": {"title": null, "summary": null, "text": null, "annotations_count": 0, "annotations_url": format!("{api}/check-runs/{}/annotations", c.id)},
            "name": c.name,
            "check_suite": {"id": c.suite_id},
            "app": self.app(),
            "pull_requests": self.pulls_at(&c.head_sha),
        })
    }

    pub fn check_suite(&self, s: &CheckSuite) -> Value {
        let (status, conclusion) = self.repo.suite_status(s.id);
        let runs = self
            .repo
            .check_runs
            .values()
            .filter(|r| r.suite_id == s.id)
            .count();
        let api = self.api();
        json!({
            "id": s.id,
            "node_id": node_id("CS", s.id),
            "head_branch": s.head_branch,
            "head_sha": s.head_sha,
            "status": status,
            "conclusion": conclusion,
            "url": format!("{api}/check-suites/{}", s.id),
            "before": null,
            "after": s.head_sha,
            "pull_requests": self.pulls_at(&s.head_sha),
            "app": self.app(),
            "created_at": rfc3339(s.created_at),
            "updated_at": rfc3339(s.updated_at),
            "latest_check_runs_count": runs,
            "check_runs_url": format!("{api}/check-suites/{}/check-runs", s.id),
            "head_commit": self.repo.commits.get(&s.head_sha).map(|c| json!({"id": c.sha, "message": c.message, "timestamp": rfc3339(c.date)})),
        })
    }

    pub fn workflow_run(&self, w: &WorkflowRun) -> Value {
        let api = self.api();
        json!({
            "id": w.id,
            "name": w.name,
            "node_id": node_id("WFR", w.id),
            "head_branch": w.head_branch,
            "head_sha": w.head_sha,
            "path": ".github/workflows/ci.yml",
            "run_number": w.run_number,
            "run_attempt": 1,
            "event": "push",
            "status": w.status,
            "conclusion": w.conclusion,
            "workflow_id": 1,
            "check_suite_id": w.suite_id,
            "check_suite_node_id": node_id("CS", w.suite_id),
            "url": format!("{api}/actions/runs/{}", w.id),
            "html_url": format!("{}/actions/runs/{}", self.html(), w.id),
            "pull_requests": self.pulls_at(&w.head_sha),
            "created_at": rfc3339(w.created_at),
            "updated_at": rfc3339(w.updated_at),
            "run_started_at": rfc3339(w.created_at),
            "repository": self.repo(),
            "head_repository": self.repo(),
        })
    }

    pub fn branch(&self, name: &str, sha: &str) -> Value {
        let c = self.repo.commits.get(sha);
        json!({
            "name": name,
            "commit": c.map(|c| self.commit(c, false)),
            "_links": {"self": format!("{}/branches/{name}", self.api()), "html": format!("{}/tree/{name}", self.html())},
            "protected": false,
        })
    }

    pub fn git_ref(&self, full_ref: &str, sha: &str) -> Value {
        let api = self.api();
        json!({
            "ref": full_ref,
            "node_id": format!("REF_{}", &hex40(full_ref)[..16]),
            "url": format!("{api}/git/{full_ref}"),
            "object": {"sha": sha, "type": "commit", "url": format!("{api}/git/commits/{sha}")},
        })
    }

    /// The short commit form push events carry.
    pub fn push_commit(&self, c: &Commit) -> Value {
        let email = format!("{}@users.noreply.github.com", c.author);
        json!({
            "id": c.sha,
            "tree_id": hex40(&format!("tree:{}", c.sha)),
            "distinct": true,
            "message": c.message,
            "timestamp": rfc3339(c.date),
            "url": format!("{}/commit/{}", self.html(), c.sha),
            "author": {"name": c.author, "email": email, "username": c.author},
            "committer": {"name": c.author, "email": email, "username": c.author},
            "added": [format!("src/change_{}.txt", &c.sha[..8])],
            "removed": [],
            "modified": [],
        })
    }
}
