//! What a GitHub REST path names, and the tags that reach it.
//!
//! Tags are route-scoped names (see `revcache_core::Tag`); `R` is the
//! repository's `owner/name` in lower case (GitHub's paths are
//! case-insensitive there):
//!
//! - `repo:R` on everything of the repository: permission and visibility
//!   changes invalidate all of it, in every partition;
//! - `num:R#N` an issue or pull request (they share numbers), `num:R#N/SUB`
//!   one of its sub-resources (`commits`, `reviews`, `comments` ...), and
//!   `nums:R#N` all of them: a review invalidates the pull and its reviews,
//!   not its commits;
//! - `list:R/KIND` every page of a collection (`pulls`, `issues`,
//!   `branches`, `commits`, `runs`, ...);
//! - `sha:R@SHA` a commit, `statuses:R@SHA` its statuses, `checks:R@SHA`
//!   its check runs and suites (`checks:R` all statuses and checks of the
//!   repository, for writes that do not name the commit), `ref:R:NAME`
//!   what a branch or tag points at (`refs:R` every ref-named entry);
//! - `check-run:R/ID`, `check-suite:R/ID`, `run:R/ID` (workflow runs);
//! - `other:R` repository paths not understood here: every event of the
//!   repository reaches them.
//!
//! Paths outside `/repos/` (`/user`, `/orgs/..`) have no event that covers
//! them: they carry `global` and are always revalidated.

use percent_encoding::percent_decode_str;

/// Tag of paths outside a repository.
pub const GLOBAL: &str = "global";

/// A parsed REST path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/repos/{owner}/{name}/...`
    Repo { repo: String, resource: Resource },
    /// `POST /app/installations/{id}/access_tokens`
    AccessTokens { installation: u64 },
    /// `/rate_limit`: changes with every request, never stored.
    RateLimit,
    /// `/graphql`
    Graphql,
    /// Anything else (`/user`, `/orgs/..`, `/search/..`).
    Other,
}

/// What a repository path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// The repository itself.
    Repository,
    /// An issue or pull request (`sub: None`), or something under it.
    Number {
        n: u64,
        sub: Option<String>,
    },
    /// A collection of the repository (`pulls`, `issues`, ...).
    List(&'static str),
    /// `commits/{ref}[/...]`, `statuses/{ref}`: a commit or a ref, and
    /// what of it.
    Commit {
        reference: String,
        part: CommitPart,
    },
    /// `branches/{name}`, `git/ref(s)/heads/{name}`.
    Branch(String),
    CheckRun(u64),
    CheckSuite(u64),
    WorkflowRun(u64),
    Other,
}

/// What a commit path shows of the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPart {
    /// The commit itself (`commits/{ref}`).
    Object,
    /// `status`, `statuses`.
    Statuses,
    /// `check-runs`, `check-suites`.
    Checks,
    /// Anything else under it (`pulls`, `comments` ...).
    Other,
}

/// Collections whose pages carry `list:R/KIND`.
const LISTS: &[&str] = &[
    "pulls", "issues", "branches", "commits", "tags", "labels", "releases",
];

/// The path without a GitHub Enterprise `/api/v3` prefix.
fn api_path(path: &str) -> &str {
    path.strip_prefix("/api/v3")
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .unwrap_or(path)
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Whether `s` is a full commit SHA.
pub fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Endpoint {
    pub fn of(path: &str) -> Endpoint {
        let path = api_path(path);
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segments.as_slice() {
            ["repos", owner, name, rest @ ..] => Endpoint::Repo {
                repo: format!("{}/{}", decode(owner), decode(name)).to_ascii_lowercase(),
                resource: Resource::of(rest),
            },
            ["app", "installations", id, "access_tokens"] => match id.parse() {
                Ok(installation) => Endpoint::AccessTokens { installation },
                Err(_) => Endpoint::Other,
            },
            ["rate_limit"] => Endpoint::RateLimit,
            ["graphql"] => Endpoint::Graphql,
            _ => Endpoint::Other,
        }
    }

    /// The repository the path is under.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Endpoint::Repo { repo, .. } => Some(repo),
            _ => None,
        }
    }

    /// Tags of an entry stored for this path (the body adds more).
    pub fn tags(&self) -> Vec<String> {
        let Endpoint::Repo { repo, resource } = self else {
            return vec![GLOBAL.to_owned()];
        };
        let mut tags = vec![format!("repo:{repo}")];
        tags.extend(resource.tags(repo));
        tags
    }

    /// What a successful write to this path invalidates.
    pub fn written(&self) -> Vec<String> {
        let Endpoint::Repo { repo, resource } = self else {
            return Vec::new();
        };
        let mut tags = resource.tags(repo);
        match resource {
            // A new comment, label, review or state: the item and all
            // under it, and the lists that show it.
            Resource::Number { n, .. } => {
                tags.push(format!("nums:{repo}#{n}"));
                tags.push(format!("list:{repo}/pulls"));
                tags.push(format!("list:{repo}/issues"));
                // A merge moves its base branch, which the path does not
                // name.
                tags.push(format!("list:{repo}/branches"));
                tags.push(format!("list:{repo}/commits"));
                tags.push(format!("refs:{repo}"));
            }
            // A new status or check names its commit in the path or body.
            Resource::Commit { .. } | Resource::CheckRun(_) | Resource::CheckSuite(_) => {
                tags.push(format!("checks:{repo}"));
                tags.push(format!("refs:{repo}"));
            }
            Resource::List("pulls") | Resource::List("issues") => {
                tags.push(format!("list:{repo}/pulls"));
                tags.push(format!("list:{repo}/issues"));
            }
            // Anything else (settings, a new check run under `check-runs`,
            // branch protection): all of the repository.
            _ => tags.push(format!("repo:{repo}")),
        }
        tags
    }
}

impl Resource {
    fn of(rest: &[&str]) -> Resource {
        let number = |s: &str| s.parse::<u64>().ok();
        match rest {
            [] => Resource::Repository,
            // A sub-resource is named by its first segment: a single
            // review is one of the `reviews`.
            ["pulls" | "issues", n, rest @ ..] if number(n).is_some() => Resource::Number {
                n: number(n).unwrap_or_default(),
                sub: rest.first().map(|s| decode(s)),
            },
            [kind] if LISTS.contains(kind) => Resource::List(
                LISTS
                    .iter()
                    .find(|k| *k == kind)
                    .copied()
                    .unwrap_or("other"),
            ),
            ["actions", "runs"] => Resource::List("runs"),
            ["check-runs"] => Resource::List("check-runs"),
            ["statuses", reference] => Resource::Commit {
                reference: decode(reference),
                part: CommitPart::Statuses,
            },
            ["commits", reference, rest @ ..] => Resource::Commit {
                reference: decode(reference),
                part: match rest {
                    [] => CommitPart::Object,
                    ["status" | "statuses"] => CommitPart::Statuses,
                    ["check-runs" | "check-suites"] => CommitPart::Checks,
                    _ => CommitPart::Other,
                },
            },
            ["branches", name @ ..] if !name.is_empty() => Resource::Branch(join(name)),
            ["git", "ref" | "refs", "heads", name @ ..] if !name.is_empty() => {
                Resource::Branch(join(name))
            }
            ["check-runs", id, ..] => number(id).map_or(Resource::Other, Resource::CheckRun),
            ["check-suites", id, ..] => number(id).map_or(Resource::Other, Resource::CheckSuite),
            ["actions", "runs", id, ..] => {
                number(id).map_or(Resource::Other, Resource::WorkflowRun)
            }
            _ => Resource::Other,
        }
    }

    fn tags(&self, repo: &str) -> Vec<String> {
        match self {
            Resource::Repository | Resource::Other => vec![format!("other:{repo}")],
            Resource::Number { n, sub } => vec![
                match sub {
                    None => format!("num:{repo}#{n}"),
                    Some(sub) => format!("num:{repo}#{n}/{sub}"),
                },
                format!("nums:{repo}#{n}"),
            ],
            Resource::List(kind) => vec![format!("list:{repo}/{kind}")],
            Resource::Commit { reference, part } => {
                let mut tags = Vec::with_capacity(3);
                if is_sha(reference) {
                    let sha = reference.to_ascii_lowercase();
                    tags.push(match part {
                        CommitPart::Object => format!("sha:{repo}@{sha}"),
                        CommitPart::Statuses => format!("statuses:{repo}@{sha}"),
                        CommitPart::Checks => format!("checks:{repo}@{sha}"),
                        CommitPart::Other => format!("other:{repo}"),
                    });
                } else {
                    // A branch or tag name (or a short SHA): what it
                    // points at moves with pushes; the events of its
                    // head name the branch. `HEAD`, `main~1` or a tag
                    // name no event names, and statuses or checks read by
                    // ref may show a commit no event names by that ref:
                    // every event of the repository reaches them.
                    tags.push(format!("ref:{repo}:{reference}"));
                    tags.push(format!("refs:{repo}"));
                    let plain = !reference.eq_ignore_ascii_case("HEAD")
                        && !reference.contains(['~', '^', '@', ':']);
                    if *part != CommitPart::Object || !plain {
                        tags.push(format!("other:{repo}"));
                    }
                }
                if matches!(part, CommitPart::Statuses | CommitPart::Checks) {
                    tags.push(format!("checks:{repo}"));
                }
                tags
            }
            Resource::Branch(b) => vec![format!("ref:{repo}:{b}"), format!("refs:{repo}")],
            Resource::CheckRun(id) => vec![format!("check-run:{repo}/{id}")],
            Resource::CheckSuite(id) => vec![format!("check-suite:{repo}/{id}")],
            Resource::WorkflowRun(id) => vec![format!("run:{repo}/{id}")],
        }
    }
}

fn join(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| decode(s))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> Resource {
        match Endpoint::of(path) {
            Endpoint::Repo { resource, .. } => resource,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn repository_paths_name_their_object() {
        assert_eq!(repo("/repos/o/r"), Resource::Repository);
        let number = |n, sub: Option<&str>| Resource::Number {
            n,
            sub: sub.map(str::to_owned),
        };
        assert_eq!(repo("/repos/o/r/pulls/7"), number(7, None));
        assert_eq!(
            repo("/repos/o/r/pulls/7/commits"),
            number(7, Some("commits"))
        );
        assert_eq!(
            repo("/repos/o/r/issues/7/comments"),
            number(7, Some("comments"))
        );
        assert_eq!(repo("/repos/o/r/pulls"), Resource::List("pulls"));
        assert_eq!(repo("/repos/o/r/actions/runs"), Resource::List("runs"));
        assert_eq!(
            repo("/repos/o/r/commits/main/status"),
            Resource::Commit {
                reference: "main".into(),
                part: CommitPart::Statuses
            }
        );
        assert_eq!(
            repo("/repos/o/r/commits/abc/check-runs"),
            Resource::Commit {
                reference: "abc".into(),
                part: CommitPart::Checks
            }
        );
        assert_eq!(
            repo("/repos/o/r/branches/feature/x"),
            Resource::Branch("feature/x".into())
        );
        assert_eq!(
            repo("/repos/o/r/git/ref/heads/feature%2Fx"),
            Resource::Branch("feature/x".into())
        );
        assert_eq!(repo("/repos/o/r/check-runs/5"), Resource::CheckRun(5));
        assert_eq!(repo("/repos/o/r/check-suites/5"), Resource::CheckSuite(5));
        assert_eq!(
            repo("/repos/o/r/actions/runs/9/jobs"),
            Resource::WorkflowRun(9)
        );
        assert_eq!(repo("/repos/o/r/compare/a...b"), Resource::Other);
        assert_eq!(repo("/repos/o/r/pulls/x"), Resource::Other);
    }

    #[test]
    fn owner_and_name_are_compared_in_lower_case_and_enterprise_paths_are_understood() {
        assert_eq!(
            Endpoint::of("/repos/Octo/Hello/pulls/1").repo(),
            Some("octo/hello")
        );
        assert_eq!(
            Endpoint::of("/api/v3/repos/Octo/Hello/pulls/1").repo(),
            Some("octo/hello")
        );
        assert_eq!(
            Endpoint::of("/app/installations/42/access_tokens"),
            Endpoint::AccessTokens { installation: 42 }
        );
        assert_eq!(Endpoint::of("/rate_limit"), Endpoint::RateLimit);
        assert_eq!(Endpoint::of("/api/v3/graphql"), Endpoint::Graphql);
        assert_eq!(Endpoint::of("/user"), Endpoint::Other);
        assert_eq!(Endpoint::of("/api/v30/user"), Endpoint::Other);
    }

    #[test]
    fn every_repository_entry_carries_the_repository_tag() {
        for path in [
            "/repos/o/r",
            "/repos/o/r/pulls/1",
            "/repos/o/r/commits/abc",
            "/repos/o/r/anything/else",
        ] {
            assert!(
                Endpoint::of(path).tags().contains(&"repo:o/r".to_owned()),
                "{path}"
            );
        }
        assert_eq!(Endpoint::of("/user").tags(), vec![GLOBAL.to_owned()]);
        let sha = "a".repeat(40);
        let tags = |p: &str| Endpoint::of(p).tags();
        assert!(
            tags(&format!("/repos/o/r/commits/{sha}/status"))
                .contains(&format!("statuses:o/r@{sha}"))
        );
        assert!(
            tags(&format!("/repos/o/r/commits/{sha}/check-runs"))
                .contains(&format!("checks:o/r@{sha}"))
        );
        assert!(tags(&format!("/repos/o/r/commits/{sha}")).contains(&format!("sha:o/r@{sha}")));
        // A pull's sub-resources are apart from the pull, and all under
        // its number.
        let commits = tags("/repos/o/r/pulls/3/commits");
        assert!(commits.contains(&"num:o/r#3/commits".to_owned()));
        assert!(commits.contains(&"nums:o/r#3".to_owned()));
        assert!(!commits.contains(&"num:o/r#3".to_owned()));
    }

    #[test]
    fn a_comment_invalidates_its_issue_and_the_lists_that_show_it() {
        let t = Endpoint::of("/repos/o/r/issues/3/comments").written();
        assert!(t.contains(&"nums:o/r#3".to_owned()));
        assert!(t.contains(&"list:o/r/issues".to_owned()));
        let merge = Endpoint::of("/repos/o/r/pulls/3/merge").written();
        assert!(merge.contains(&"refs:o/r".to_owned()), "{merge:?}");
        let settings = Endpoint::of("/repos/o/r").written();
        assert!(settings.contains(&"repo:o/r".to_owned()));
    }
}
