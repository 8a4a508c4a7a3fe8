//! The invariants the fuzz targets of this crate check (`fuzz/` at the
//! repository root): one file per parser family. Each `check_*` takes
//! arbitrary bytes and panics only when an invariant breaks; the tests
//! below replay the committed seed corpus (`fuzz/corpus/<target>`)
//! through them, so CI runs every target on its corpus on stable. Not
//! part of the API.

mod admin;
mod gerrit;
mod github;
mod policy;
mod vary;
mod webdav;

pub use admin::check_admin_query;
pub use gerrit::check_gerrit;
pub use github::check_github_event;
pub use policy::{check_http_date, check_policy};
pub use vary::check_vary;
pub use webdav::check_webdav;

#[cfg(test)]
mod tests {
    use revcache_core::fuzzing::replay;

    use super::*;

    #[test]
    fn policy_seed_corpus_keeps_its_invariants() {
        replay("policy", check_policy);
    }

    #[test]
    fn http_date_seed_corpus_keeps_its_invariants() {
        replay("http_date", check_http_date);
    }

    #[test]
    fn vary_seed_corpus_keeps_its_invariants() {
        replay("vary", check_vary);
    }

    #[test]
    fn gerrit_seed_corpus_keeps_its_invariants() {
        replay("gerrit", check_gerrit);
    }

    #[test]
    fn github_event_seed_corpus_keeps_its_invariants() {
        replay("github_event", check_github_event);
    }

    #[test]
    fn webdav_seed_corpus_keeps_its_invariants() {
        replay("webdav", check_webdav);
    }

    #[test]
    fn admin_query_seed_corpus_keeps_its_invariants() {
        replay("admin_query", check_admin_query);
    }
}
