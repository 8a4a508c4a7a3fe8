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
use revcache_core::{Entry, EntryBody, Invalidation, LedgerRecord, PrimaryKey};

use crate::codec::{self, Names};
use crate::connection::{Conn, Source};
use crate::scripts;
use crate::settings::SharedSettings;

/// Stream entries kept (about); a node further behind sees a gap.
const STREAM_LENGTH: u64 = 100_000;
/// How long a write or event waits for the other nodes to apply what it
/// published before it is answered anyway.
const ACK_WAIT: Duration = Duration::from_millis(100);
/// A node that has not read the stream for this long is not waited for.
const LIVE: Duration = Duration::from_secs(3);
/// Ledger records per stream message.
const LEDGER_CHUNK: usize = 1_000;
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
    /// Ledger records this node shared, and the others' it applied.
    pub ledger_published: AtomicU64,
    pub ledger_applied: AtomicU64,
    /// How old the newest message of the last batch read was, by its id's
    /// time (microseconds).
    pub stream_lag_micros: AtomicU64,
    pub lock_waits: AtomicU64,
    /// Invalidations answered before every other node applied them.
    pub ack_timeouts: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub gaps: AtomicU64,
}

/// Where a fill starts from in the shared generations: Redis's epoch
/// (it changes when Redis loses its data) and the shared sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    epoch: Arc<str>,
    seq: u64,
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

    /// The request path's connection.
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
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

    /// Runs one command of the request path under the timeout. While the
    /// tier is unhealthy no such command is sent (a request must not wait
    /// for a Redis that is away): the stream reader, which keeps trying,
    /// or a command off the request path says when it is back.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        if !self.healthy() {
            return None;
        }
        self.off_path(what, f).await
    }

    /// Runs one command no request waits for (sharing a fill, releasing
    /// a fetch lock, publishing ledger records) under the timeout, healthy
    /// or not: one slow command elsewhere must not leave a lock held
    /// until it expires, with the other nodes waiting for it.
    pub(crate) async fn off_path<T>(
        &self,
        what: &str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
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
        let out = self.decode_variants(key, values.unwrap_or_default());
        let counter = if out.is_empty() {
            &self.stats.misses
        } else {
            &self.stats.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// The entries of `key` among `values`; the rest is counted.
    fn decode_variants(&self, key: &PrimaryKey, values: Vec<Value>) -> Vec<Entry> {
        let mut out = Vec::new();
        for v in values {
            let Value::BulkString(bytes) = v else {
                continue;
            };
            self.stats
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            match codec::decode_entry(&bytes, Some(key)) {
                Ok(entry) => out.push(entry),
                Err(_) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out
    }

    /// The shared sequence a fill starts from, in Redis's current epoch;
    /// `None` when Redis cannot say (the fill is then not shared).
    pub async fn ticket(&self) -> Option<Ticket> {
        let mut conn = self.conn.clone();
        let fresh = format!(
            "{}-{}",
            self.node,
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let mut invocation = scripts::TICKET.prepare_invoke();
        invocation
            .key(self.names.sequence())
            .key(self.names.epoch())
            .arg(fresh);
        let (epoch, seq): (String, u64) = self
            .timed("ticket", invocation.invoke_async(&mut conn))
            .await?;
        Some(Ticket {
            epoch: epoch.into(),
            seq,
        })
    }

    /// Shares `entry` (fetched under `ticket`) unless its body is on disk
    /// or too large, or an invalidation reached it since. `ttl` bounds how
    /// long it may be of use (freshness, stale windows, trust).
    pub async fn store(&self, entry: &Entry, ticket: &Ticket, ttl: Duration) {
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
            .key(self.names.epoch())
            .key(self.names.by_target(key.target()));
        for tag in &entry.tags {
            invocation.key(self.names.by_tag(tag));
        }
        invocation
            .arg(ticket.seq)
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
        invocation
            .arg(
                date.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            )
            .arg(&*ticket.epoch);
        let mut conn = self.conn.clone();
        let stored: Option<i64> = self
            .off_path("store", invocation.invoke_async(&mut conn))
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

    /// Invalidations this node made that wait for Redis.
    pub fn unpublished(&self) -> usize {
        self.unpublished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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
        let published: Option<(u64, u64, String)> = self
            .timed("invalidate", invocation.invoke_async(&mut conn))
            .await;
        let Some((_, _, id)) = published else {
            return false;
        };
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.wait_applied(&id).await;
        true
    }

    /// Waits (up to `ACK_WAIT`) until every other live node (one that
    /// read the stream in the last `LIVE` seconds) applied the stream up
    /// to `id`, so a read on another node after the write or event that
    /// published it returns does not get what it outdated.
    async fn wait_applied(&self, id: &str) {
        let Some(target) = codec::stream_id(id) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        loop {
            let mut conn = self.conn.clone();
            let acks: Option<Vec<(String, String)>> = self
                .timed(
                    "acknowledgements",
                    redis::cmd("HGETALL")
                        .arg(self.names.applied())
                        .query_async(&mut conn),
                )
                .await;
            let Some(acks) = acks else { return };
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let behind = acks.iter().any(|(node, ack)| {
                let Some((applied, at)) = ack.split_once(' ') else {
                    return false;
                };
                let alive = at
                    .parse::<u64>()
                    .is_ok_and(|at| now.saturating_sub(at) <= LIVE.as_millis() as u64);
                *node != self.node && alive && codec::stream_id(applied).is_some_and(|a| a < target)
            });
            if !behind {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.stats.ack_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Tells the other nodes what this node's listings recorded in its
    /// ledgers. Not kept when Redis is away: a record the others miss
    /// only costs them a request.
    pub async fn publish_ledger(&self, records: &[LedgerRecord]) {
        for chunk in records.chunks(LEDGER_CHUNK) {
            let message = codec::encode_ledger(chunk);
            let mut conn = self.conn.clone();
            let added: Option<Value> = self
                .off_path(
                    "ledger",
                    redis::cmd("XADD")
                        .arg(self.names.stream())
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(STREAM_LENGTH)
                        .arg("*")
                        .arg("node")
                        .arg(&self.node)
                        .arg("ledger")
                        .arg(&message)
                        .query_async(&mut conn),
                )
                .await;
            if added.is_none() {
                return;
            }
            self.stats
                .ledger_published
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }

    /// Claims the fetch of `key` for this node unless another node holds
    /// it, and reads what is shared for `key` in the same step: a fill
    /// another node shared (and released) since this node last looked is
    /// found, never fetched again.
    pub async fn claim(&self, key: &PrimaryKey) -> Claim {
        let mut conn = self.conn.clone();
        let mut invocation = scripts::CLAIM.prepare_invoke();
        invocation
            .key(self.names.variants(key))
            .key(self.names.lock(key))
            .arg(&*self.node)
            .arg(self.settings.lock_ttl.as_millis() as u64);
        let answer: Option<(i64, Vec<Value>)> = self
            .timed("claim", invocation.invoke_async(&mut conn))
            .await;
        let Some((held, values)) = answer else {
            // Redis cannot say: this node fetches.
            return Claim {
                fetch: true,
                found: Vec::new(),
            };
        };
        let found = self.decode_variants(key, values);
        if !found.is_empty() {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
        }
        Claim {
            fetch: held == 1,
            found,
        }
    }

    /// Releases this node's claim on `key`.
    pub async fn unlock(&self, key: &PrimaryKey) {
        let mut conn = self.conn.clone();
        let name = self.names.lock(key);
        let _: Option<i64> = self
            .off_path(
                "unlock",
                scripts::UNLOCK
                    .key(&name)
                    .arg(&self.node)
                    .invoke_async(&mut conn),
            )
            .await;
    }

    /// Counts a request that waited for another node's fetch.
    pub fn waited_for_another_node(&self) {
        self.stats.lock_waits.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`SharedTier::claim`] found.
#[derive(Debug)]
pub struct Claim {
    /// This node fetches: it holds the fetch lock, or Redis cannot say.
    pub fetch: bool,
    /// What is shared for the key now.
    pub found: Vec<Entry>,
}
