//! The shared tier's operations: look up, store, invalidate, lock.
//!
//! Every command runs under the configured timeout on one multiplexed
//! connection that reconnects by itself (redis-rs's `ConnectionManager`,
//! or its cluster connection; see `connection`).
//! A failed command is counted, marks the tier unhealthy until the next
//! success, and answers as if Redis held nothing: the node goes on with
//! its own tiers and the upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redis::{AsyncCommands, Value};
use revcache_core::{Entry, EntryBody, Invalidation, PrimaryKey};

use crate::codec::{self, Names};
use crate::connection::{Conn, Source};
use crate::scripts;
use crate::settings::SharedSettings;

/// Stream entries kept (about); a node further behind sees a gap.
const STREAM_LENGTH: u64 = 100_000;
/// Prefix invalidations remembered for checking stores.
const PREFIXES_KEPT: u64 = 1_000;
/// Unpublished invalidations a node keeps while Redis is away.
const UNPUBLISHED_KEPT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("shared tier {url}: {message}")]
    Client { url: String, message: String },
    #[error(
        "shared tier {url}: this node's partition key differs from the one the other nodes use (set partition.key_file to the same key on every node)"
    )]
    KeyMismatch { url: String },
}

/// Counters of the shared tier, for `/metrics` and `/stats`.
#[derive(Debug, Default)]
pub struct SharedStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stored: AtomicU64,
    /// Stores refused because an invalidation reached them first.
    pub outdated: AtomicU64,
    /// Stores refused because a newer representation was stored.
    pub kept_newer: AtomicU64,
    pub errors: AtomicU64,
    /// Values or messages in Redis that are not revcache's: ignored.
    pub malformed: AtomicU64,
    pub published: AtomicU64,
    /// Invalidations of other nodes applied here.
    pub applied: AtomicU64,
    pub lock_waits: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub gaps: AtomicU64,
}

pub struct SharedTier {
    pub(crate) settings: SharedSettings,
    pub(crate) names: Names,
    pub(crate) source: Source,
    conn: Conn,
    /// This node, in stream messages and locks.
    pub(crate) node: String,
    healthy: AtomicBool,
    pub(crate) stats: SharedStats,
    /// Invalidations this node could not publish, oldest first: published
    /// ahead of the next ones, and as soon as the stream can be read again.
    unpublished: std::sync::Mutex<Vec<Invalidation>>,
}

impl SharedTier {
    /// Connects (lazily: Redis may be down at start-up) and checks that
    /// the cache's partition key `fingerprint` (a keyed hash, never the
    /// key) is the one the other nodes use, when Redis can be reached.
    pub async fn connect(
        settings: SharedSettings,
        fingerprint: &str,
    ) -> Result<Arc<SharedTier>, SharedError> {
        let client_error = |message: String| SharedError::Client {
            url: settings.url_for_logs(),
            message,
        };
        let source = Source::open(&settings).map_err(client_error)?;
        let conn = source
            .request_path(settings.timeout)
            .map_err(|e| client_error(e.to_string()))?;
        let node = format!(
            "{:x}",
            u64::from_le_bytes(
                blake3::hash(format!("{:?}{}", SystemTime::now(), std::process::id()).as_bytes())
                    .as_bytes()[..8]
                    .try_into()
                    .unwrap_or_default()
            )
        );
        let tier = Arc::new(SharedTier {
            names: Names::new(&settings.key_prefix, !settings.cluster_nodes.is_empty()),
            settings,
            source,
            conn,
            node,
            healthy: AtomicBool::new(false),
            stats: SharedStats::default(),
            unpublished: std::sync::Mutex::new(Vec::new()),
        });
        tier.check_fingerprint(fingerprint).await?;
        Ok(tier)
    }

    /// Claims the fingerprint for this cache, or compares with the one
    /// claimed. Unreachable Redis: checked again when the stream connects.
    pub(crate) async fn check_fingerprint(&self, fingerprint: &str) -> Result<(), SharedError> {
        let mut conn = self.conn.clone();
        let key = self.names.fingerprint();
        let claimed: redis::RedisResult<Option<String>> = async {
            let _: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(fingerprint)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            conn.get(&key).await
        }
        .await;
        match claimed {
            Ok(Some(f)) if f != fingerprint => Err(SharedError::KeyMismatch {
                url: self.settings.url_for_logs(),
            }),
            Ok(_) => {
                self.healthy.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.failed("fingerprint", &e);
                Ok(())
            }
        }
    }

    pub fn stats(&self) -> &SharedStats {
        &self.stats
    }

    /// Whether the last command succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub fn settings(&self) -> &SharedSettings {
        &self.settings
    }

    pub(crate) fn failed(&self, what: &str, e: &redis::RedisError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                url = %self.settings.url_for_logs(), error = %e,
                "shared tier unreachable ({what}); serving from this node's tiers"
            );
        }
    }

    pub(crate) fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(url = %self.settings.url_for_logs(), "shared tier reachable");
        }
    }

    /// Runs one command under the timeout. While the tier is unhealthy no
    /// command is sent (the request path must not wait for a Redis that is
    /// away): the stream reader, which keeps trying, says when it is back.
    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        if !self.healthy() {
            return None;
        }
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(what, &e);
                None
            }
            Err(_) => {
                let e = redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out",
                ));
                self.failed(what, &e);
                None
            }
        }
    }

    /// Every variant stored for `key`; what does not decode as an entry of
    /// `key` is counted and left out.
    pub async fn lookup(&self, key: &PrimaryKey) -> Vec<Entry> {
        let mut conn = self.conn.clone();
        let set = self.names.variants(key);
        let values: Option<Vec<Value>> = self
            .timed("lookup", scripts::LOOKUP.key(&set).invoke_async(&mut conn))
            .await;
        let mut out = Vec::new();
        for v in values.unwrap_or_default() {
            let Value::BulkString(bytes) = v else {
                continue;
            };
            self.stats
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            match codec::decode_entry(key, &bytes) {
                Ok(entry) => out.push(entry),
                Err(_) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let counter = if out.is_empty() {
            &self.stats.misses
        } else {
            &self.stats.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// The shared sequence a fill starts from; `None` when Redis cannot
    /// say (the fill is then not shared).
    pub async fn ticket(&self) -> Option<u64> {
        let mut conn = self.conn.clone();
        let key = self.names.sequence();
        self.timed("ticket", async move {
            let v: Option<u64> = conn.get(&key).await?;
            Ok(v.unwrap_or(0))
        })
        .await
    }

    /// Shares `entry` (fetched under `ticket`) unless its body is on disk
    /// or too large, or an invalidation reached it since. `ttl` bounds how
    /// long it may be of use (freshness, stale windows, trust).
    pub async fn store(&self, entry: &Entry, ticket: u64, ttl: Duration) {
        let EntryBody::Memory(body) = &entry.body else {
            return;
        };
        if body.len() as u64 > self.settings.max_entry_bytes {
            return;
        }
        let value = codec::encode_entry(entry, body);
        let ttl = ttl
            .clamp(Duration::from_secs(1), self.settings.max_ttl)
            .as_secs();
        let key = &entry.key;
        let entry_name = self.names.entry(key, &entry.variant);
        let mut slots = vec![codec::target_slot(key.target())];
        slots.extend(entry.tags.iter().map(codec::tag_slot));
        let mut invocation = scripts::STORE.prepare_invoke();
        invocation
            .key(self.names.slots())
            .key(self.names.prefixes())
            .key(self.names.prefix_floor())
            .key(&entry_name)
            .key(self.names.variants(key))
            .key(self.names.by_route(key.route()))
            .key(self.names.routes())
            .key(self.names.entry_date(&entry_name))
            .key(self.names.by_target(key.target()));
        for tag in &entry.tags {
            invocation.key(self.names.by_tag(tag));
        }
        invocation
            .arg(ticket)
            .arg(ttl)
            .arg(self.settings.max_ttl.as_secs())
            .arg(value.as_slice())
            .arg(key.route())
            .arg(key.target())
            .arg(slots.len());
        for s in &slots {
            invocation.arg(s);
        }
        let date = entry
            .headers
            .get_str("date")
            .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
            .unwrap_or(entry.timing().response_time);
        invocation.arg(
            date.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let mut conn = self.conn.clone();
        let stored: Option<i64> = self
            .timed("store", invocation.invoke_async(&mut conn))
            .await;
        match stored {
            Some(1) => {
                self.stats.stored.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_written
                    .fetch_add(value.len() as u64, Ordering::Relaxed);
            }
            Some(2) => {
                self.stats.kept_newer.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {
                self.stats.outdated.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }

    /// Publishes `invalidations` to every node and removes the shared
    /// entries they reach; `false` when Redis could not be told (the
    /// caller suspends trust: other nodes may still serve them). What
    /// could not be published is kept and published first next time, or
    /// when the stream can be read again ([`SharedTier::publish_unpublished`]),
    /// so the other nodes drop what it outdated once Redis is back.
    pub async fn invalidate(&self, invalidations: &[Invalidation]) -> bool {
        let mut all = self.take_unpublished();
        all.extend_from_slice(invalidations);
        let published = self.publish(&all).await;
        if !published {
            self.keep_unpublished(all);
        }
        published
    }

    /// Publishes what could not be published before (after Redis came
    /// back); `false` when it still cannot be.
    pub async fn publish_unpublished(&self) -> bool {
        let pending = self.take_unpublished();
        if pending.is_empty() {
            return true;
        }
        tracing::info!(
            invalidations = pending.len(),
            "publishing the invalidations made while Redis was away"
        );
        let published = self.publish(&pending).await;
        if !published {
            self.keep_unpublished(pending);
        }
        published
    }

    pub(crate) fn has_unpublished(&self) -> bool {
        !self
            .unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn take_unpublished(&self) -> Vec<Invalidation> {
        std::mem::take(&mut *self.unpublished.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Keeps `invalidations` ahead of any kept since. Beyond
    /// `UNPUBLISHED_KEPT`, one invalidation of everything stands for them.
    fn keep_unpublished(&self, mut invalidations: Vec<Invalidation>) {
        let mut kept = self.unpublished.lock().unwrap_or_else(|e| e.into_inner());
        invalidations.append(&mut kept);
        if invalidations.len() > UNPUBLISHED_KEPT {
            invalidations = vec![Invalidation::Prefix {
                route: None,
                prefix: String::new(),
            }];
        }
        *kept = invalidations;
    }

    async fn publish(&self, invalidations: &[Invalidation]) -> bool {
        let mut items: Vec<(String, String, String)> = Vec::new();
        for inv in invalidations {
            match inv {
                Invalidation::Target { target, .. } => items.push((
                    "u".into(),
                    codec::target_slot(target),
                    self.names.by_target(target),
                )),
                Invalidation::Tag(tag) => {
                    items.push(("t".into(), codec::tag_slot(tag), self.names.by_tag(tag)))
                }
                Invalidation::Prefix { route, prefix } => {
                    items.push(("p".into(), codec::prefix_member(*route, prefix), "-".into()))
                }
                Invalidation::Key(_) => {}
            }
        }
        if items.is_empty() {
            return true;
        }
        let message = codec::encode_invalidations(invalidations);
        let mut invocation = scripts::PUBLISH.prepare_invoke();
        invocation
            .key(self.names.sequence())
            .key(self.names.slots())
            .key(self.names.prefixes())
            .key(self.names.prefix_floor())
            .key(self.names.stream())
            .key(self.names.routes())
            .arg(&self.node)
            .arg(&message)
            .arg(STREAM_LENGTH)
            .arg(PREFIXES_KEPT)
            .arg(self.names.prefix())
            .arg(items.len());
        for (kind, a, b) in &items {
            invocation.arg(kind).arg(a).arg(b);
        }
        let mut conn = self.conn.clone();
        let published: Option<(u64, u64)> = self
            .timed("invalidate", invocation.invoke_async(&mut conn))
            .await;
        if published.is_some() {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        published.is_some()
    }

    /// Claims the fetch of `key` for this node: `true` when no other node
    /// is fetching it (or Redis cannot say).
    pub async fn lock(&self, key: &PrimaryKey) -> bool {
        let mut conn = self.conn.clone();
        let name = self.names.lock(key);
        let ttl = self.settings.lock_ttl.as_millis() as u64;
        let node = self.node.clone();
        let got: Option<Option<String>> = self
            .timed("lock", async move {
                redis::cmd("SET")
                    .arg(&name)
                    .arg(&node)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await;
        !matches!(got, Some(None))
    }

    /// Releases this node's claim on `key`.
    pub async fn unlock(&self, key: &PrimaryKey) {
        let mut conn = self.conn.clone();
        let name = self.names.lock(key);
        let _: Option<i64> = self
            .timed(
                "unlock",
                scripts::UNLOCK
                    .key(&name)
                    .arg(&self.node)
                    .invoke_async(&mut conn),
            )
            .await;
    }

    /// Waits, until `deadline`, for another node's fetch of `key` to be
    /// shared (its entries), polling Redis; empty when the other node
    /// gave up, died, or the deadline passed.
    pub async fn wait_for(&self, key: &PrimaryKey, deadline: tokio::time::Instant) -> Vec<Entry> {
        self.stats.lock_waits.fetch_add(1, Ordering::Relaxed);
        let mut pause = Duration::from_millis(5);
        loop {
            let found = self.lookup(key).await;
            if !found.is_empty() {
                return found;
            }
            let mut conn = self.conn.clone();
            let name = self.names.lock(key);
            let held: Option<bool> = self
                .timed("wait", async move { conn.exists(&name).await })
                .await;
            if held != Some(true) || tokio::time::Instant::now() + pause >= deadline {
                return Vec::new();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
