//! Installation partitions: GitHub App installation tokens expire hourly,
//! and GitHub's ETags differ per token, so a cache keyed by token goes
//! cold every hour. When a `POST /app/installations/{id}/access_tokens`
//! passes through and succeeds, the token it returns is recorded with its
//! installation and scope (permissions, repository selection, repository
//! ids); every token of one installation and one scope is then served from
//! one partition, the keyed hash of `installation:{id}` and the scope.
//!
//! Only what the upstream itself answered maps a token, so a caller cannot
//! join a partition it was not given a token for. The map holds keyed
//! hashes of tokens, never tokens, lives in memory (after a restart, tokens
//! are per-token partitions until the next one is minted), and forgets a
//! token when it expires or its installation changes.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use parking_lot::Mutex;
use revcache_core::{Partition, PartitionKey};
use serde_json::Value;

use crate::credential;

/// Tokens remembered at most (GitHub issues one per installation per hour
/// to a typical app).
const TOKENS: usize = 65_536;
/// When a response gives no usable `expires_at`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

struct Grant {
    partition: Partition,
    installation: u64,
    expires: SystemTime,
}

pub struct Installations {
    key: PartitionKey,
    /// Keyed hash of a token → what it was granted.
    tokens: Mutex<HashMap<Partition, Grant>>,
}

/// The token of an `Authorization: token X` or `Bearer X` header.
fn token_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Installations {
    pub fn new(key: PartitionKey) -> Self {
        Installations {
            key,
            tokens: Mutex::default(),
        }
    }

    fn token_id(&self, token: &str) -> Partition {
        self.key.partition(&[b"github-token", token.as_bytes()])
    }

    /// Records the token a successful access-token request for
    /// `installation` returned (`body`), with its scope.
    pub fn learn(&self, installation: u64, body: &[u8], now: SystemTime) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(token) = v.get("token").and_then(Value::as_str) else {
            return;
        };
        // A grant of selected repositories that does not list them has no
        // scope to compare: its token stays its own partition.
        if v.get("repository_selection").and_then(Value::as_str) == Some("selected")
            && v.get("repositories").and_then(Value::as_array).is_none()
        {
            return;
        }
        let expires = v
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|t| httpdate::parse_http_date(&rfc3339_to_http(t)?).ok())
            .unwrap_or(now + DEFAULT_LIFETIME);
        // The scope: two tokens see the same only with the same grant.
        let mut repos: Vec<u64> = v
            .get("repositories")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("id").and_then(Value::as_u64))
            .collect();
        repos.sort_unstable();
        let scope = serde_json::json!({
            // serde_json's maps are ordered by key.
            "permissions": v.get("permissions"),
            "selection": v.get("repository_selection"),
            "repositories": repos,
        })
        .to_string();
        let partition = self.key.partition(&[
            b"github-installation",
            installation.to_string().as_bytes(),
            scope.as_bytes(),
        ]);
        let mut tokens = self.tokens.lock();
        if tokens.len() >= TOKENS {
            tokens.retain(|_, g| g.expires > now);
            if tokens.len() >= TOKENS {
                return;
            }
        }
        tokens.insert(
            self.token_id(token),
            Grant {
                partition,
                installation,
                expires,
            },
        );
    }

    /// The installation partition of a caller whose only partition
    /// material is a known token; `partition` otherwise.
    pub fn regroup(&self, headers: &HeaderMap, partition: Partition, now: SystemTime) -> Partition {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return partition;
        };
        // Anything besides the token (a partition header or cookie) keeps
        // the caller in its own partition.
        if credential::authorization_partition(value, &self.key) != partition {
            return partition;
        }
        let Some(token) = value.to_str().ok().and_then(token_of) else {
            return partition;
        };
        let tokens = self.tokens.lock();
        match tokens.get(&self.token_id(token)) {
            Some(g) if g.expires > now => g.partition,
            _ => partition,
        }
    }

    /// Forgets the tokens of an installation whose grant changed.
    pub fn forget_installation(&self, installation: u64) {
        self.tokens
            .lock()
            .retain(|_, g| g.installation != installation);
    }

    /// Forgets every token served from `partition` (GitHub refused one of
    /// them: a revoked token must not keep reading what the others fetch).
    pub fn forget_partition(&self, partition: Partition) {
        self.tokens.lock().retain(|_, g| g.partition != partition);
    }

    /// Forgets one token (revoked with `DELETE /installation/token`).
    pub fn forget_token(&self, headers: &HeaderMap) {
        if let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(token_of)
        {
            self.tokens.lock().remove(&self.token_id(token));
        }
    }
}

/// `2026-11-29T06:00:00Z` → `Sun, 29 Nov 2026 06:00:00 GMT`, via the
/// parts httpdate needs; `None` for other spellings.
fn rfc3339_to_http(t: &str) -> Option<String> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<u64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1..=9999).contains(&y) || !(1..=31).contains(&day) {
        return None;
    }
    let time = time.split('.').next()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.get(usize::try_from(m).ok()?.checked_sub(1)?)?;
    // httpdate checks the weekday: Zeller's congruence.
    let (zy, zm) = if m < 3 { (y - 1, m + 12) } else { (y, m) };
    let k = zy % 100;
    let j = zy / 100;
    let h = (day + 13 * (zm + 1) / 5 + k + k / 4 + j / 4 + 5 * j) % 7;
    const DAYS: [&str; 7] = ["Sat", "Sun", "Mon", "Tue", "Wed", "Thu", "Fri"];
    let weekday = DAYS[usize::try_from(h).ok()?];
    Some(format!("{weekday}, {day:02} {month} {y} {time} GMT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn caller(key: &PartitionKey, value: &str) -> Partition {
        credential::authorization_partition(&value.parse().unwrap(), key)
    }

    fn grant(token: &str, perms: &str) -> Vec<u8> {
        format!(
            r#"{{"token":"{token}","expires_at":"2099-01-01T00:00:00Z","permissions":{perms},"repository_selection":"all"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn tokens_of_one_installation_and_scope_share_a_partition() {
        let key = PartitionKey::ephemeral().unwrap();
        let inst = Installations::new(key.clone());
        let now = SystemTime::now();
        inst.learn(7, &grant("ghs_a", r#"{"pulls":"read"}"#), now);
        inst.learn(7, &grant("ghs_b", r#"{"pulls":"read"}"#), now);
        inst.learn(7, &grant("ghs_c", r#"{"pulls":"write"}"#), now);
        inst.learn(8, &grant("ghs_d", r#"{"pulls":"read"}"#), now);
        let p = |v: &str| inst.regroup(&auth(v), caller(&key, v), now);
        assert_eq!(p("token ghs_a"), p("Bearer ghs_b"));
        assert_ne!(p("token ghs_a"), p("token ghs_c"), "another scope");
        assert_ne!(p("token ghs_a"), p("token ghs_d"), "another installation");
        assert_eq!(
            p("token ghs_x"),
            caller(&key, "token ghs_x"),
            "unknown token"
        );
        inst.forget_installation(7);
        assert_eq!(p("token ghs_a"), caller(&key, "token ghs_a"));
    }

    #[test]
    fn an_expired_token_is_its_own_partition_again() {
        let key = PartitionKey::ephemeral().unwrap();
        let inst = Installations::new(key.clone());
        let now = SystemTime::now();
        inst.learn(
            7,
            br#"{"token":"ghs_a","expires_at":"2020-01-01T00:00:00Z"}"#,
            now,
        );
        let p = caller(&key, "token ghs_a");
        assert_eq!(inst.regroup(&auth("token ghs_a"), p, now), p);
    }

    #[test]
    fn other_partition_material_keeps_the_caller_apart() {
        let key = PartitionKey::ephemeral().unwrap();
        let inst = Installations::new(key.clone());
        let now = SystemTime::now();
        inst.learn(7, &grant("ghs_a", "{}"), now);
        // A partition computed from more than the token.
        let mixed = key.partition(&[b"authorization", b"token ghs_a", b"x-user", b"u"]);
        assert_eq!(inst.regroup(&auth("token ghs_a"), mixed, now), mixed);
    }

    #[test]
    fn rfc3339_times_are_read() {
        assert_eq!(
            rfc3339_to_http("2026-11-29T06:00:00Z").as_deref(),
            Some("Sun, 29 Nov 2026 06:00:00 GMT")
        );
        assert_eq!(rfc3339_to_http("2026-11-29 06:00"), None);
        for absurd in [
            "0000-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-99999999999999999T00:00:00Z",
            "99999-01-01T00:00:00Z",
        ] {
            assert_eq!(rfc3339_to_http(absurd), None, "{absurd}");
        }
    }
}
