//! What the shared tier is configured with (`[shared]`).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct SharedSettings {
    /// `redis://host:port/db` or `rediss://…` (TLS). The password, when
    /// the URL has one, is never logged.
    pub url: String,
    /// Redis Cluster: the seed nodes' URLs (every key of the cache then
    /// lives in one hash slot; see `connection`). Empty: `url` is one
    /// server.
    pub cluster_nodes: Vec<String>,
    /// Prefix of every key revcache writes, so several caches (or other
    /// programs) can share one Redis.
    pub key_prefix: String,
    /// Larger bodies stay node-local.
    pub max_entry_bytes: u64,
    /// How long any one command may take before the node gives up on it
    /// and serves without the shared tier.
    pub timeout: Duration,
    /// How long a node's claim to fetch a key holds (it is released when
    /// the fetch is stored; this covers a node that died).
    pub lock_ttl: Duration,
    /// The longest an entry stays in Redis.
    pub max_ttl: Duration,
    /// `rediss://`: the CAs (PEM) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `rediss://` with client certificates: chain and key (PEM).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl SharedSettings {
    pub fn for_url(url: impl Into<String>) -> Self {
        SharedSettings {
            url: url.into(),
            cluster_nodes: Vec::new(),
            key_prefix: "revcache".into(),
            max_entry_bytes: 1 << 20,
            timeout: Duration::from_millis(500),
            lock_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(24 * 3600),
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }

    /// The URL without its password, for messages.
    pub fn url_for_logs(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://…@{}", &self.url[..scheme], &self.url[at + 1..])
            }
            _ => self.url.clone(),
        }
    }
}

/// The URL's password never shows.
impl std::fmt::Debug for SharedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSettings")
            .field("url", &self.url_for_logs())
            .field("cluster_nodes", &self.cluster_nodes.len())
            .field("key_prefix", &self.key_prefix)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("timeout", &self.timeout)
            .field("lock_ttl", &self.lock_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        let s = SharedSettings::for_url("redis://:hunter2@redis.example:6379/0");
        assert_eq!(s.url_for_logs(), "redis://…@redis.example:6379/0");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
