//! The fake's state and every mutation, each returning the webhooks it implies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::Served;
use crate::model::*;

/// Who a request (or a token) acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ident {
    Anonymous,
    User(String),
    Installation(u64),
    App,
}

impl Ident {
    /// Core rate-limit bucket (the graphql one is `graphql:` + this).
    pub fn bucket(&self) -> String {
        match self {
            Ident::Anonymous => "anonymous".into(),
            Ident::User(u) => u.clone(),
            Ident::Installation(id) => format!("installation:{id}"),
            Ident::App => "app".into(),
        }
    }
    pub fn login(&self) -> String {
        match self {
            Ident::Anonymous => "anonymous".into(),
            Ident::User(u) => u.clone(),
            Ident::Installation(_) | Ident::App => APP_LOGIN.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TokenRec {
    pub ident: Ident,
    /// An installation token narrowed to these repositories.
    pub repos: Option<BTreeSet<u64>>,
    pub expires: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Installation {
    pub account: String,
    /// `None`: every repository (`repository_selection: all`).
    pub repos: Option<BTreeSet<u64>>,
    pub permissions: Value,
}

#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    pub limit: u64,
    pub used: u64,
    pub reset: u64,
}

pub(crate) struct Lagged {
    pub snapshot: Arc<Repo>,
    pub remaining: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub name: String,
    pub body: Value,
}

/// A refused request: status and GitHub's `message`.
pub(crate) type Fail = (u16, String);

pub(crate) fn fail(status: u16, msg: &str) -> Fail {
    (status, msg.to_owned())
}

pub(crate) struct State {
    pub base: String,
    pub clock: u64,
    pub next_id: u64,
    pub repos: BTreeMap<u64, Repo>,
    pub names: HashMap<String, u64>,
    pub moved: HashMap<String, u64>,
    pub tokens: HashMap<String, TokenRec>,
    pub token_seq: u64,
    pub installations: BTreeMap<u64, Installation>,
    pub buckets: HashMap<String, Bucket>,
    pub core_limit: u64,
    pub anon_limit: u64,
    pub graphql_limit: u64,
    pub lag_global: u32,
    pub lag_next: Option<u32>,
    pub lagged: HashMap<(u64, String), Lagged>,
    /// Secondary limit: until this clock value, with this status.
    pub secondary: Option<(u64, u16, u64)>,
    pub served: Served,
    pub request_seq: u64,
}

pub(crate) fn issue_key(n: u64) -> String {
    format!("issue#{n}")
}

impl State {
    pub fn new(base: String, core_limit: u64, start: u64) -> State {
        State {
            base,
            clock: start,
            next_id: 1_000,
            repos: BTreeMap::new(),
            names: HashMap::new(),
            moved: HashMap::new(),
            tokens: HashMap::new(),
            token_seq: 0,
            installations: BTreeMap::new(),
            buckets: HashMap::new(),
            core_limit,
            anon_limit: 60,
            graphql_limit: 5000,
            lag_global: 0,
            lag_next: None,
            lagged: HashMap::new(),
            secondary: None,
            served: Served::default(),
            request_seq: 0,
        }
    }

    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A fresh token with `prefix` (`ghp`, `ghs`).
    pub fn token(&mut self, prefix: &str) -> String {
        self.token_seq += 1;
        let h = sha256_hex(&[
            b"token",
            &self.token_seq.to_be_bytes(),
            self.base.as_bytes(),
        ]);
        format!("{prefix}_{}", &h[..36])
    }

    pub fn rid(&self, full: &str) -> Result<u64, Fail> {
        self.names
            .get(&full.to_ascii_lowercase())
            .copied()
            .ok_or_else(|| fail(404, "Not Found"))
    }

    pub fn repo(&self, rid: u64) -> &Repo {
        &self.repos[&rid]
    }

    pub fn repo_mut(&mut self, rid: u64) -> &mut Repo {
        self.repos.get_mut(&rid).expect("repo")
    }

    pub fn render(&self, rid: u64) -> Render<'_> {
        Render {
            base: &self.base,
            repo: self.repo(rid),
        }
    }

    pub fn bucket(&mut self, key: &str) -> &mut Bucket {
        let limit = if key == "anonymous" {
            self.anon_limit
        } else if key.starts_with("graphql:") {
            self.graphql_limit
        } else {
            self.core_limit
        };
        let now = self.clock;
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            limit,
            used: 0,
            reset: now + 3600,
        });
        if now >= b.reset {
            b.used = 0;
            b.reset = now + 3600;
        }
        b
    }

    pub fn installation_of(&self, rid: u64) -> Option<u64> {
        self.installations
            .iter()
            .find(|(_, i)| i.repos.as_ref().is_none_or(|r| r.contains(&rid)))
            .map(|(id, _)| *id)
    }

    /// Whether `tok` may see repository `rid` (private repos answer 404).
    pub fn can_read(&self, tok: &TokenRec, rid: u64) -> bool {
        let r = self.repo(rid);
        if !r.private {
            return true;
        }
        self.covers(tok, rid)
    }

    /// Whether `tok` may write to `rid` (members, the owner, installations
    /// covering it).
    pub fn covers(&self, tok: &TokenRec, rid: u64) -> bool {
        let r = self.repo(rid);
        match &tok.ident {
            Ident::Anonymous | Ident::App => false,
            Ident::User(u) => *u == r.owner || r.members.contains(u),
            Ident::Installation(id) => {
                let inst = self
                    .installations
                    .get(id)
                    .is_some_and(|i| i.repos.as_ref().is_none_or(|s| s.contains(&rid)));
                inst && tok.repos.as_ref().is_none_or(|s| s.contains(&rid))
            }
        }
    }

    /// Applies `f` to repository `rid`. Under a visibility lag the keys `f`
    /// names keep serving the repository as it was before, for that many reads.
    pub fn mutate<R>(
        &mut self,
        rid: u64,
        f: impl FnOnce(&mut State, u64) -> Result<(R, Vec<String>, Vec<Event>), Fail>,
    ) -> Result<(R, Vec<Event>), Fail> {
        let next = self.lag_next.take();
        let lag = next.unwrap_or(self.lag_global);
        let snap = (lag > 0).then(|| Arc::new(self.repo(rid).clone()));
        let (r, keys, events) = match f(self, rid) {
            Ok(x) => x,
            Err(e) => {
                self.lag_next = next;
                return Err(e);
            }
        };
        if let Some(snap) = snap {
            for k in keys {
                let e = self.lagged.entry((rid, k)).or_insert(Lagged {
                    snapshot: snap.clone(),
                    remaining: 0,
                });
                e.remaining = lag;
            }
        }
        Ok((r, events))
    }

    /// The lagging snapshot a read of `key` sees, if any (counts the read).
    pub fn lag_snapshot(&mut self, rid: u64, key: &str) -> Option<Arc<Repo>> {
        let k = (rid, key.to_owned());
        let l = self.lagged.get_mut(&k)?;
        let snap = l.snapshot.clone();
        l.remaining = l.remaining.saturating_sub(1);
        if l.remaining == 0 {
            self.lagged.remove(&k);
        }
        Some(snap)
    }

    pub fn has_lag(&self, rid: u64, key: &str) -> bool {
        self.lagged.contains_key(&(rid, key.to_owned()))
    }

    /// A webhook: the common envelope plus `extra`'s fields.
    pub fn event(
        &self,
        rid: u64,
        name: &str,
        action: Option<&str>,
        sender: &str,
        extra: Value,
    ) -> Event {
        let mut body = json!({});
        if let Some(a) = action {
            body["action"] = json!(a);
        }
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        body["repository"] = self.render(rid).repo();
        body["sender"] = user_json(&self.base, sender);
        if let Some(i) = self.installation_of(rid) {
            body["installation"] = json!({"id": i, "node_id": node_id("MDIz", i)});
        }
        Event {
            name: name.to_owned(),
            body,
        }
    }

    fn issue_event(&self, rid: u64, n: u64, action: &str, sender: &str, extra: Value) -> Event {
        let r = self.render(rid);
        let i = &r.repo.issues[&n];
        let mut extra = extra;
        if i.pull.is_some() {
            extra["number"] = json!(n);
            extra["pull_request"] = r.pull(i, true);
            self.event(rid, "pull_request", Some(action), sender, extra)
        } else {
            extra["issue"] = r.issue(i);
            self.event(rid, "issues", Some(action), sender, extra)
        }
    }

    pub fn add_repo(&mut self, owner: &str, name: &str, private: bool) -> u64 {
        let id = self.id();
        let now = self.tick();
        let full = format!("{owner}/{name}");
        let sha = hex40(&format!("{full}:root"));
        let mut commits = HashMap::new();
        commits.insert(
            sha.clone(),
            Commit {
                sha: sha.clone(),
                parents: vec![],
                message: "Initial commit".into(),
                author: owner.into(),
                date: now,
            },
        );
        let repo = Repo {
            id,
            owner: owner.into(),
            name: name.into(),
            private,
            members: BTreeSet::new(),
            default_branch: "main".into(),
            branches: BTreeMap::from([("main".to_owned(), sha)]),
            tags: BTreeMap::new(),
            commits,
            commit_seq: 0,
            issues: BTreeMap::new(),
            next_number: 1,
            labels: BTreeMap::new(),
            statuses: vec![],
            check_runs: BTreeMap::new(),
            check_suites: BTreeMap::new(),
            workflow_runs: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            pushed_at: now,
        };
        self.repos.insert(id, repo);
        self.names.insert(full.to_ascii_lowercase(), id);
        id
    }

    fn new_commit(
        &mut self,
        rid: u64,
        parents: Vec<String>,
        message: String,
        author: &str,
    ) -> String {
        let now = self.clock;
        let r = self.repo_mut(rid);
        r.commit_seq += 1;
        let sha = hex40(&format!("{}:{}:{message}", r.full_name(), r.commit_seq));
        r.commits.insert(
            sha.clone(),
            Commit {
                sha: sha.clone(),
                parents,
                message,
                author: author.into(),
                date: now,
            },
        );
        sha
    }

    fn push_event(
        &self,
        rid: u64,
        full_ref: &str,
        before: &str,
        after: &str,
        new: &[String],
        sender: &str,
    ) -> Event {
        let r = self.render(rid);
        let commits: Vec<Value> = new
            .iter()
            .filter_map(|s| r.repo.commits.get(s))
            .map(|c| r.push_commit(c))
            .collect();
        let head = if after == ZERO_SHA {
            Value::Null
        } else {
            r.repo
                .commits
                .get(after)
                .map_or(Value::Null, |c| r.push_commit(c))
        };
        self.event(
            rid,
            "push",
            None,
            sender,
            json!({
                "ref": full_ref,
                "before": before,
                "after": after,
                "created": before == ZERO_SHA,
                "deleted": after == ZERO_SHA,
                "forced": false,
                "base_ref": null,
                "compare": format!("{HTML}/{}/compare/{}...{}", r.repo.full_name(), &before[..12], &after[..12]),
                "commits": commits,
                "head_commit": head,
                "pusher": {"name": sender, "email": format!("{sender}@users.noreply.github.com")},
            }),
        )
    }

    /// A new commit on `branch` (created from the default branch if missing).
    pub fn push(
        &mut self,
        rid: u64,
        branch: &str,
        sender: &str,
    ) -> Result<(String, Vec<Event>), Fail> {
        let sender = sender.to_owned();
        let branch = branch.to_owned();
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let r = st.repo(rid);
            let before = r.branches.get(&branch).cloned();
            let parent = before
                .clone()
                .unwrap_or_else(|| r.branches[&r.default_branch].clone());
            let sha = st.new_commit(rid, vec![parent], format!("Update {branch}"), &sender);
            let r = st.repo_mut(rid);
            r.branches.insert(branch.clone(), sha.clone());
            r.pushed_at = now;
            r.updated_at = now;
            let mut keys = vec![format!("branch:{branch}"), "repo".into()];
            let mut synced = vec![];
            for i in r.issues.values_mut() {
                if let Some(p) = i.pull.as_mut()
                    && i.open
                    && p.head_ref == branch
                {
                    synced.push((i.number, p.head_sha.clone()));
                    p.head_sha = sha.clone();
                    i.updated_at = now;
                }
            }
            let mut events = vec![];
            let full_ref = format!("refs/heads/{branch}");
            let b4 = before.clone().unwrap_or_else(|| ZERO_SHA.into());
            if before.is_none() {
                events.push(st.event(
                    rid,
                    "create",
                    None,
                    &sender,
                    json!({"ref": branch, "ref_type": "branch", "master_branch": st.repo(rid).default_branch, "pusher_type": "user"}),
                ));
            }
            events.push(st.push_event(rid, &full_ref, &b4, &sha, std::slice::from_ref(&sha), &sender));
            for (n, old) in synced {
                keys.push(issue_key(n));
                keys.push("pulls".into());
                events.push(st.issue_event(rid, n, "synchronize", &sender, json!({"before": old, "after": sha})));
            }
            Ok((sha, keys, events))
        })
    }

    /// Opens an issue, or a pull when `pull` names (head, base) branches.
    pub fn open(
        &mut self,
        rid: u64,
        title: &str,
        body: &str,
        pull: Option<(&str, &str)>,
        sender: &str,
    ) -> Result<(u64, Vec<Event>), Fail> {
        let (title, body, sender) = (title.to_owned(), body.to_owned(), sender.to_owned());
        let pull = pull.map(|(h, b)| (h.to_owned(), b.to_owned()));
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = st.id();
            let pull = match pull {
                None => None,
                Some((head, base)) => {
                    let base_sha = st
                        .repo(rid)
                        .branches
                        .get(&base)
                        .cloned()
                        .ok_or_else(|| fail(422, "Validation Failed"))?;
                    let head_sha = match st.repo(rid).branches.get(&head) {
                        Some(s) => s.clone(),
                        None => {
                            let s =
                                st.new_commit(rid, vec![base_sha.clone()], title.clone(), &sender);
                            st.repo_mut(rid).branches.insert(head.clone(), s.clone());
                            s
                        }
                    };
                    Some(Pull {
                        id: st.id(),
                        head_ref: head,
                        head_sha,
                        base_ref: base,
                        base_sha,
                        merged_at: None,
                        merge_commit_sha: None,
                        merged_by: None,
                        reviews: vec![],
                    })
                }
            };
            let r = st.repo_mut(rid);
            let n = r.next_number;
            r.next_number += 1;
            r.updated_at = now;
            r.issues.insert(
                n,
                Issue {
                    number: n,
                    id,
                    title,
                    body,
                    user: sender.clone(),
                    open: true,
                    labels: vec![],
                    comments: vec![],
                    created_at: now,
                    updated_at: now,
                    closed_at: None,
                    pull,
                },
            );
            let ev = st.issue_event(rid, n, "opened", &sender, json!({}));
            Ok((
                n,
                vec![issue_key(n), "pulls".into(), "repo".into()],
                vec![ev],
            ))
        })
    }

    fn issue_mut(&mut self, rid: u64, n: u64) -> Result<&mut Issue, Fail> {
        self.repo_mut(rid)
            .issues
            .get_mut(&n)
            .ok_or_else(|| fail(404, "Not Found"))
    }

    pub fn comment(
        &mut self,
        rid: u64,
        n: u64,
        body: &str,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (body, sender) = (body.to_owned(), sender.to_owned());
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = st.id();
            let i = st.issue_mut(rid, n)?;
            let c = Comment {
                id,
                user: sender.clone(),
                body,
                created_at: now,
                updated_at: now,
            };
            i.comments.push(c.clone());
            i.updated_at = now;
            let r = st.render(rid);
            let i = &r.repo.issues[&n];
            let comment = r.comment(i, &c);
            let ev = st.event(
                rid,
                "issue_comment",
                Some("created"),
                &sender,
                json!({"issue": r.issue(i), "comment": comment}),
            );
            Ok((comment, vec![issue_key(n), "pulls".into()], vec![ev]))
        })
    }

    pub fn review(
        &mut self,
        rid: u64,
        n: u64,
        state: &str,
        body: &str,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (state, body, sender) = (
            state.to_ascii_uppercase(),
            body.to_owned(),
            sender.to_owned(),
        );
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = st.id();
            let i = st.issue_mut(rid, n)?;
            let state = match state.as_str() {
                "APPROVE" => "APPROVED".to_owned(),
                "REQUEST_CHANGES" => "CHANGES_REQUESTED".to_owned(),
                "COMMENT" | "" => "COMMENTED".to_owned(),
                s => s.to_owned(),
            };
            let p = i.pull.as_mut().ok_or_else(|| fail(404, "Not Found"))?;
            let rv = Review {
                id,
                user: sender.clone(),
                state,
                body,
                commit_id: p.head_sha.clone(),
                submitted_at: now,
            };
            p.reviews.push(rv.clone());
            i.updated_at = now;
            let r = st.render(rid);
            let i = &r.repo.issues[&n];
            let review = r.review(i, &rv);
            let ev = st.event(
                rid,
                "pull_request_review",
                Some("submitted"),
                &sender,
                json!({"review": review, "pull_request": r.pull(i, false)}),
            );
            Ok((review, vec![issue_key(n), "pulls".into()], vec![ev]))
        })
    }

    pub fn label(
        &mut self,
        rid: u64,
        n: u64,
        names: &[String],
        add: bool,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (names, sender) = (names.to_vec(), sender.to_owned());
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let mut changed = vec![];
            for l in &names {
                if !st.repo(rid).labels.contains_key(l) {
                    let id = st.id();
                    st.repo_mut(rid).labels.insert(l.clone(), id);
                }
                let i = st.issue_mut(rid, n)?;
                let has = i.labels.contains(l);
                if add && !has {
                    i.labels.push(l.clone());
                    changed.push(l.clone());
                } else if !add && has {
                    i.labels.retain(|x| x != l);
                    changed.push(l.clone());
                }
            }
            if !add && changed.is_empty() {
                return Err(fail(404, "Label does not exist"));
            }
            st.issue_mut(rid, n)?.updated_at = now;
            let r = st.render(rid);
            let labels = Value::Array(
                r.repo.issues[&n]
                    .labels
                    .iter()
                    .map(|l| r.label(l))
                    .collect(),
            );
            let action = if add { "labeled" } else { "unlabeled" };
            let events = changed
                .iter()
                .map(|l| {
                    st.issue_event(
                        rid,
                        n,
                        action,
                        &sender,
                        json!({"label": st.render(rid).label(l)}),
                    )
                })
                .collect();
            Ok((labels, vec![issue_key(n), "pulls".into()], events))
        })
    }

    /// Title, body, open/closed of an issue or pull.
    pub fn edit(
        &mut self,
        rid: u64,
        n: u64,
        title: Option<String>,
        body: Option<String>,
        open: Option<bool>,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let sender = sender.to_owned();
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let i = st.issue_mut(rid, n)?;
            let mut changes = json!({});
            if let Some(t) = title.filter(|t| *t != i.title) {
                changes["title"] = json!({"from": std::mem::replace(&mut i.title, t)});
            }
            if let Some(b) = body.filter(|b| *b != i.body) {
                changes["body"] = json!({"from": std::mem::replace(&mut i.body, b)});
            }
            let mut state_action = None;
            if let Some(o) = open.filter(|o| *o != i.open) {
                if i.pull.as_ref().is_some_and(|p| p.merged_at.is_some()) {
                    return Err(fail(422, "Validation Failed"));
                }
                i.open = o;
                i.closed_at = (!o).then_some(now);
                state_action = Some(if o { "reopened" } else { "closed" });
            }
            i.updated_at = now;
            let mut events = vec![];
            if changes.as_object().is_some_and(|m| !m.is_empty()) {
                events.push(st.issue_event(rid, n, "edited", &sender, json!({"changes": changes})));
            }
            if let Some(a) = state_action {
                events.push(st.issue_event(rid, n, a, &sender, json!({})));
            }
            let r = st.render(rid);
            let i = &r.repo.issues[&n];
            let v = if i.pull.is_some() {
                r.pull(i, true)
            } else {
                r.issue(i)
            };
            Ok((v, vec![issue_key(n), "pulls".into(), "repo".into()], events))
        })
    }

    pub fn merge(&mut self, rid: u64, n: u64, sender: &str) -> Result<(String, Vec<Event>), Fail> {
        let sender = sender.to_owned();
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let i = st
                .repo(rid)
                .issues
                .get(&n)
                .ok_or_else(|| fail(404, "Not Found"))?;
            let p = i.pull.as_ref().ok_or_else(|| fail(404, "Not Found"))?;
            if !i.open {
                return Err(fail(405, "Pull Request is not mergeable"));
            }
            let (head, base_ref, title) = (p.head_sha.clone(), p.base_ref.clone(), i.title.clone());
            let before = st.repo(rid).branches[&base_ref].clone();
            let msg = format!("Merge pull request #{n}\n\n{title}");
            let sha = st.new_commit(rid, vec![before.clone(), head.clone()], msg, &sender);
            let r = st.repo_mut(rid);
            r.branches.insert(base_ref.clone(), sha.clone());
            r.pushed_at = now;
            r.updated_at = now;
            let i = r.issues.get_mut(&n).expect("issue");
            i.open = false;
            i.closed_at = Some(now);
            i.updated_at = now;
            let p = i.pull.as_mut().expect("pull");
            p.merged_at = Some(now);
            p.merge_commit_sha = Some(sha.clone());
            p.merged_by = Some(sender.clone());
            let events = vec![
                st.issue_event(rid, n, "closed", &sender, json!({})),
                st.push_event(
                    rid,
                    &format!("refs/heads/{base_ref}"),
                    &before,
                    &sha,
                    &[head, sha.clone()],
                    &sender,
                ),
            ];
            let keys = vec![
                issue_key(n),
                "pulls".into(),
                format!("branch:{base_ref}"),
                "repo".into(),
            ];
            Ok((sha, keys, events))
        })
    }

    pub fn set_status(
        &mut self,
        rid: u64,
        r#ref: &str,
        context: &str,
        state: &str,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (context, state, sender) = (context.to_owned(), state.to_owned(), sender.to_owned());
        let sha = self
            .repo(rid)
            .resolve(r#ref)
            .ok_or_else(|| fail(422, "No commit found for SHA"))?;
        if !["error", "failure", "pending", "success"].contains(&state.as_str()) {
            return Err(fail(422, "Validation Failed"));
        }
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = st.id();
            let s = StatusRec {
                id,
                sha: sha.clone(),
                context: context.clone(),
                state: state.clone(),
                creator: sender.clone(),
                created_at: now,
            };
            st.repo_mut(rid).statuses.push(s.clone());
            let r = st.render(rid);
            let branches: Vec<Value> = r
                .repo
                .branches_at(&sha)
                .iter()
                .map(|b| json!({"name": b, "commit": {"sha": sha, "url": format!("{}/repos/{}/commits/{sha}", st.base, r.repo.full_name())}, "protected": false}))
                .collect();
            let commit = r.repo.commits.get(&sha).map(|c| r.commit(c, false));
            let ev = st.event(
                rid,
                "status",
                None,
                &sender,
                json!({"id": id, "sha": sha, "name": r.repo.full_name(), "target_url": null, "context": context,
                    "description": null, "state": state, "commit": commit, "branches": branches,
                    "created_at": rfc3339(now), "updated_at": rfc3339(now)}),
            );
            let mut keys = vec![format!("sha:{sha}")];
            keys.extend(r.repo.branches_at(&sha).iter().map(|b| format!("sha:{b}")));
            Ok((r.status(&s), keys, vec![ev]))
        })
    }

    /// The check suite of the fake app for `sha`, created when missing.
    fn suite_for(&mut self, rid: u64, sha: &str) -> (u64, bool) {
        if let Some(s) = self
            .repo(rid)
            .check_suites
            .values()
            .find(|s| s.head_sha == sha)
        {
            return (s.id, false);
        }
        let id = self.id();
        let now = self.clock;
        let head_branch = self.repo(rid).branches_at(sha).into_iter().next();
        self.repo_mut(rid).check_suites.insert(
            id,
            CheckSuite {
                id,
                head_sha: sha.into(),
                head_branch,
                created_at: now,
                updated_at: now,
            },
        );
        (id, true)
    }

    fn check_events(
        &self,
        rid: u64,
        run: u64,
        action: &str,
        suite_done_before: bool,
        sender: &str,
    ) -> Vec<Event> {
        let r = self.render(rid);
        let c = &r.repo.check_runs[&run];
        let mut events = vec![self.event(
            rid,
            "check_run",
            Some(action),
            sender,
            json!({"check_run": r.check_run(c)}),
        )];
        if !suite_done_before && r.repo.suite_status(c.suite_id).0 == "completed" {
            let s = &r.repo.check_suites[&c.suite_id];
            events.push(self.event(
                rid,
                "check_suite",
                Some("completed"),
                sender,
                json!({"check_suite": r.check_suite(s)}),
            ));
        }
        events
    }

    pub fn create_check_run(
        &mut self,
        rid: u64,
        r#ref: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let sha = self
            .repo(rid)
            .resolve(r#ref)
            .ok_or_else(|| fail(422, "No commit found for SHA"))?;
        let (name, status, sender) = (name.to_owned(), status.to_owned(), sender.to_owned());
        let conclusion = conclusion.map(str::to_owned);
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = st.id();
            let (suite, _) = st.suite_for(rid, &sha);
            let before = st.repo(rid).suite_status(suite).0 == "completed";
            let done = status == "completed" || conclusion.is_some();
            let r = st.repo_mut(rid);
            r.check_runs.insert(
                id,
                CheckRun {
                    id,
                    head_sha: sha.clone(),
                    name,
                    status: if done { "completed".into() } else { status },
                    conclusion: if done {
                        Some(conclusion.unwrap_or_else(|| "success".into()))
                    } else {
                        None
                    },
                    started_at: now,
                    completed_at: done.then_some(now),
                    suite_id: suite,
                    updated_at: now,
                },
            );
            if let Some(s) = r.check_suites.get_mut(&suite) {
                s.updated_at = now;
            }
            let events = st.check_events(rid, id, "created", before, &sender);
            let v = st.render(rid).check_run(&st.repo(rid).check_runs[&id]);
            Ok((
                v,
                vec![format!("sha:{sha}"), format!("check-run:{id}")],
                events,
            ))
        })
    }

    /// Updates a check run. GitHub sends `check_run` webhooks only for
    /// `created`/`completed`, so an update that does not complete sends none.
    pub fn update_check_run(
        &mut self,
        rid: u64,
        id: u64,
        status: Option<&str>,
        conclusion: Option<&str>,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (status, sender) = (status.map(str::to_owned), sender.to_owned());
        let conclusion = conclusion.map(str::to_owned);
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let c = st
                .repo(rid)
                .check_runs
                .get(&id)
                .ok_or_else(|| fail(404, "Not Found"))?;
            let (suite, sha, was_done) = (c.suite_id, c.head_sha.clone(), c.status == "completed");
            let before = st.repo(rid).suite_status(suite).0 == "completed";
            let r = st.repo_mut(rid);
            let c = r.check_runs.get_mut(&id).expect("run");
            if let Some(s) = status {
                c.status = s;
            }
            if let Some(cl) = conclusion {
                c.conclusion = Some(cl);
                c.status = "completed".into();
            }
            if c.status == "completed" && c.conclusion.is_none() {
                c.conclusion = Some("success".into());
            }
            if c.status == "completed" {
                c.completed_at.get_or_insert(now);
            }
            c.updated_at = now;
            let done = c.status == "completed";
            if let Some(s) = r.check_suites.get_mut(&suite) {
                s.updated_at = now;
            }
            let events = if done && !was_done {
                st.check_events(rid, id, "completed", before, &sender)
            } else {
                vec![]
            };
            let v = st.render(rid).check_run(&st.repo(rid).check_runs[&id]);
            Ok((
                v,
                vec![format!("sha:{sha}"), format!("check-run:{id}")],
                events,
            ))
        })
    }

    /// Creates (`id: None`) or moves a workflow run; each state sends
    /// `workflow_run` (`requested`, `in_progress`, `completed`).
    pub fn workflow_run(
        &mut self,
        rid: u64,
        id: Option<u64>,
        head: &str,
        status: &str,
        conclusion: Option<&str>,
        sender: &str,
    ) -> Result<(u64, Vec<Event>), Fail> {
        let sha = match id {
            Some(_) => String::new(),
            None => self
                .repo(rid)
                .resolve(head)
                .ok_or_else(|| fail(422, "No commit found for SHA"))?,
        };
        let (status, sender) = (status.to_owned(), sender.to_owned());
        let conclusion = conclusion.map(str::to_owned);
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let id = match id {
                Some(id) => {
                    let w = st
                        .repo_mut(rid)
                        .workflow_runs
                        .get_mut(&id)
                        .ok_or_else(|| fail(404, "Not Found"))?;
                    w.status = status.clone();
                    w.updated_at = now;
                    if status == "completed" {
                        w.conclusion = Some(conclusion.unwrap_or_else(|| "success".into()));
                    }
                    id
                }
                None => {
                    let id = st.id();
                    let suite = st.id();
                    let head_branch = st.repo(rid).branches_at(&sha).into_iter().next();
                    let r = st.repo_mut(rid);
                    let run_number = r.workflow_runs.len() as u64 + 1;
                    r.check_suites.insert(
                        suite,
                        CheckSuite {
                            id: suite,
                            head_sha: sha.clone(),
                            head_branch: head_branch.clone(),
                            created_at: now,
                            updated_at: now,
                        },
                    );
                    r.workflow_runs.insert(
                        id,
                        WorkflowRun {
                            id,
                            name: "CI".into(),
                            head_sha: sha.clone(),
                            head_branch,
                            status: status.clone(),
                            conclusion: (status == "completed")
                                .then(|| conclusion.unwrap_or_else(|| "success".into())),
                            run_number,
                            suite_id: suite,
                            created_at: now,
                            updated_at: now,
                        },
                    );
                    id
                }
            };
            let r = st.render(rid);
            let w = &r.repo.workflow_runs[&id];
            let action = match w.status.as_str() {
                "queued" | "requested" | "waiting" | "pending" => "requested",
                "completed" => "completed",
                _ => "in_progress",
            };
            let ev = st.event(
                rid,
                "workflow_run",
                Some(action),
                &sender,
                json!({"workflow_run": r.workflow_run(w), "workflow": {"id": 1, "name": "CI", "path": ".github/workflows/ci.yml", "state": "active"}}),
            );
            let keys = vec![format!("run:{id}"), format!("sha:{}", w.head_sha)];
            Ok((id, keys, vec![ev]))
        })
    }

    /// Creates a branch or tag at `from` (a ref or sha): `create` then `push`.
    pub fn create_ref(
        &mut self,
        rid: u64,
        tag: bool,
        name: &str,
        from: &str,
        sender: &str,
    ) -> Result<(String, Vec<Event>), Fail> {
        let sha = self
            .repo(rid)
            .resolve(from)
            .ok_or_else(|| fail(422, "Object does not exist"))?;
        let (name, sender) = (name.to_owned(), sender.to_owned());
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let r = st.repo_mut(rid);
            let map = if tag { &mut r.tags } else { &mut r.branches };
            if map.contains_key(&name) {
                return Err(fail(422, "Reference already exists"));
            }
            map.insert(name.clone(), sha.clone());
            r.pushed_at = now;
            let kind = if tag { "tag" } else { "branch" };
            let full = format!("refs/{}/{name}", if tag { "tags" } else { "heads" });
            let events = vec![
                st.event(rid, "create", None, &sender, json!({"ref": name, "ref_type": kind, "master_branch": st.repo(rid).default_branch, "pusher_type": "user"})),
                st.push_event(rid, &full, ZERO_SHA, &sha, &[], &sender),
            ];
            Ok((sha, vec![format!("{kind}:{name}"), format!("branch:{name}")], events))
        })
    }

    pub fn delete_ref(
        &mut self,
        rid: u64,
        tag: bool,
        name: &str,
        sender: &str,
    ) -> Result<((), Vec<Event>), Fail> {
        let (name, sender) = (name.to_owned(), sender.to_owned());
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let r = st.repo_mut(rid);
            let map = if tag { &mut r.tags } else { &mut r.branches };
            let sha = map
                .remove(&name)
                .ok_or_else(|| fail(422, "Reference does not exist"))?;
            r.pushed_at = now;
            let kind = if tag { "tag" } else { "branch" };
            let full = format!("refs/{}/{name}", if tag { "tags" } else { "heads" });
            let events = vec![
                st.event(
                    rid,
                    "delete",
                    None,
                    &sender,
                    json!({"ref": name, "ref_type": kind, "pusher_type": "user"}),
                ),
                st.push_event(rid, &full, &sha, ZERO_SHA, &[], &sender),
            ];
            Ok((
                (),
                vec![format!("{kind}:{name}"), format!("branch:{name}")],
                events,
            ))
        })
    }

    pub fn set_private(
        &mut self,
        rid: u64,
        private: bool,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let sender = sender.to_owned();
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let r = st.repo_mut(rid);
            let changed = r.private != private;
            r.private = private;
            r.updated_at = now;
            let mut events = vec![];
            if changed {
                let a = if private { "privatized" } else { "publicized" };
                events.push(st.event(rid, "repository", Some(a), &sender, json!({})));
            }
            Ok((st.render(rid).repo(), vec!["repo".into()], events))
        })
    }

    pub fn rename(
        &mut self,
        rid: u64,
        new_name: &str,
        sender: &str,
    ) -> Result<(Value, Vec<Event>), Fail> {
        let (new_name, sender) = (new_name.to_owned(), sender.to_owned());
        self.mutate(rid, move |st, rid| {
            let now = st.tick();
            let old = st.repo(rid).full_name().to_ascii_lowercase();
            let r = st.repo_mut(rid);
            let from = std::mem::replace(&mut r.name, new_name);
            r.updated_at = now;
            let full = r.full_name().to_ascii_lowercase();
            st.names.remove(&old);
            st.names.insert(full, rid);
            st.moved.insert(old, rid);
            let ev = st.event(
                rid,
                "repository",
                Some("renamed"),
                &sender,
                json!({"changes": {"repository": {"name": {"from": from}}}}),
            );
            Ok((st.render(rid).repo(), vec!["repo".into()], vec![ev]))
        })
    }

    pub fn delete_repo(&mut self, rid: u64, sender: &str) -> Vec<Event> {
        self.tick();
        let ev = self.event(rid, "repository", Some("deleted"), sender, json!({}));
        let full = self.repo(rid).full_name().to_ascii_lowercase();
        self.repos.remove(&rid);
        self.names.remove(&full);
        self.moved.retain(|_, v| *v != rid);
        self.lagged.retain(|(r, _), _| *r != rid);
        vec![ev]
    }

    pub fn member(&mut self, rid: u64, user: &str, add: bool, sender: &str) -> Vec<Event> {
        self.tick();
        let r = self.repo_mut(rid);
        let changed = if add {
            r.members.insert(user.to_owned())
        } else {
            r.members.remove(user)
        };
        if !changed {
            return vec![];
        }
        let action = if add { "added" } else { "removed" };
        let mut extra = json!({"member": user_json(&self.base, user)});
        if add {
            extra["changes"] = json!({"permission": {"to": "write"}});
        }
        vec![self.event(rid, "member", Some(action), sender, extra)]
    }

    pub fn team(
        &mut self,
        rid: u64,
        team: &str,
        members: &[&str],
        add: bool,
        sender: &str,
    ) -> Vec<Event> {
        self.tick();
        let r = self.repo_mut(rid);
        for m in members {
            if add {
                r.members.insert((*m).to_owned());
            } else {
                r.members.remove(*m);
            }
        }
        let id = user_id(&format!("team:{team}"));
        let action = if add {
            "added_to_repository"
        } else {
            "removed_from_repository"
        };
        vec![self.event(
            rid,
            "team",
            Some(action),
            sender,
            json!({"team": {"id": id, "node_id": node_id("T", id), "name": team, "slug": team, "permission": "push", "privacy": "closed"}}),
        )]
    }

    /// The `installation` object webhooks and token answers carry.
    pub fn installation_json(&self, id: u64) -> Value {
        let i = &self.installations[&id];
        json!({
            "id": id,
            "node_id": node_id("MDIz", id),
            "account": user_json(&self.base, &i.account),
            "app_id": APP_ID,
            "app_slug": "fake-app",
            "target_type": "Organization",
            "repository_selection": if i.repos.is_some() { "selected" } else { "all" },
            "permissions": i.permissions,
            "events": ["pull_request", "push", "check_run", "check_suite", "status", "issues", "issue_comment"],
        })
    }

    fn short_repo(&self, rid: u64) -> Value {
        let r = self.repo(rid);
        json!({"id": r.id, "node_id": node_id("R", r.id), "name": r.name, "full_name": r.full_name(), "private": r.private})
    }

    /// Adds or removes repositories of installation `id`
    /// (`installation_repositories` added/removed).
    pub fn installation_repos(
        &mut self,
        id: u64,
        rids: &[u64],
        add: bool,
        sender: &str,
    ) -> Vec<Event> {
        self.tick();
        let all: Vec<u64> = self.repos.keys().copied().collect();
        let Some(inst) = self.installations.get_mut(&id) else {
            return vec![];
        };
        let set = inst.repos.get_or_insert_with(|| all.into_iter().collect());
        for r in rids {
            if add {
                set.insert(*r);
            } else {
                set.remove(r);
            }
        }
        let repos: Vec<Value> = rids.iter().map(|r| self.short_repo(*r)).collect();
        let (added, removed) = if add {
            (repos, vec![])
        } else {
            (vec![], repos)
        };
        let body = json!({
            "action": if add { "added" } else { "removed" },
            "installation": self.installation_json(id),
            "repository_selection": "selected",
            "repositories_added": added,
            "repositories_removed": removed,
            "requester": null,
            "sender": user_json(&self.base, sender),
        });
        vec![Event {
            name: "installation_repositories".into(),
            body,
        }]
    }

    /// Deletes installation `id`: its tokens answer 401 from now on.
    pub fn remove_installation(&mut self, id: u64, sender: &str) -> Vec<Event> {
        self.tick();
        if !self.installations.contains_key(&id) {
            return vec![];
        }
        let body = json!({
            "action": "deleted",
            "installation": self.installation_json(id),
            "repositories": self.installations[&id].repos.iter().flatten().filter(|r| self.repos.contains_key(r)).map(|r| self.short_repo(*r)).collect::<Vec<_>>(),
            "sender": user_json(&self.base, sender),
        });
        self.installations.remove(&id);
        self.tokens
            .retain(|_, t| t.ident != Ident::Installation(id));
        vec![Event {
            name: "installation".into(),
            body,
        }]
    }
}
