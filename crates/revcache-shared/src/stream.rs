//! Reading the invalidation stream: every node applies what the others
//! published (invalidations, and ledger records), from the last id it saw.
//!
//! The reader has its own connection (a blocking `XREAD` would hold up
//! the commands of the request path). When it cannot read, it tells the
//! node (`StreamEvent::Lost`: suspend trust, invalidations may be missed)
//! and retries with backoff; when it reads again it reports a gap
//! (`StreamEvent::Resumed`: trust starts over), and whether its last id
//! was trimmed away meanwhile does not matter: everything it cached before
//! is revalidated before it is trusted again.
//!
//! A reader that stays connected but falls so far behind that the stream
//! is trimmed past its position (about 100,000 invalidations) would miss
//! what was trimmed. So it counts: whenever a batch leaves it caught up
//! (its last id is the stream's `last-generated-id`), the stream's
//! `entries-added` (Redis 7 and Valkey) must have grown by exactly what
//! it read since it was last caught up; less read is a gap too (`Lost`
//! then `Resumed`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use revcache_core::{Invalidation, LedgerRecord};

use crate::codec;
use crate::connection::Conn;
use crate::tier::SharedTier;

/// What the reader tells the node.
pub enum StreamEvent {
    /// Invalidations another node published.
    Invalidations(Vec<Invalidation>),
    /// What another node's listings recorded in its ledgers.
    Ledger(Vec<LedgerRecord>),
    /// The stream cannot be read: invalidations may be missed from now.
    Lost,
    /// It can be read again, after a time it could not.
    Resumed,
}

/// Where the reader's events go; the reader waits for what it returns
/// (the event applied) before it tells the other nodes it applied it.
pub type Applier = Arc<dyn Fn(StreamEvent) -> Applied + Send + Sync>;

/// An event being applied.
pub type Applied = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How long one `XREAD` blocks.
const BLOCK: Duration = Duration::from_millis(1000);

impl SharedTier {
    /// Reads the stream until the process ends.
    pub fn spawn_reader(self: &Arc<Self>, apply: Applier) -> tokio::task::JoinHandle<()> {
        let tier = self.clone();
        tokio::spawn(async move { tier.read(apply).await })
    }

    async fn read(self: Arc<Self>, apply: Applier) {
        let mut last: Option<String> = None;
        let mut lost = false;
        let mut pause = Duration::from_millis(100);
        loop {
            // Its answers may take as long as an `XREAD` blocks.
            let conn = tokio::time::timeout(
                self.settings.timeout,
                self.source
                    .dedicated(self.settings.timeout, BLOCK + self.settings.timeout),
            )
            .await;
            let mut conn = match conn {
                Ok(Ok(c)) => c,
                _ => {
                    if !lost {
                        lost = true;
                        apply(StreamEvent::Lost).await;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            // (entries-added when last caught up, entries read since),
            // counted from the first time this connection catches up:
            // what was missed while disconnected is a gap anyway.
            let mut counted: Option<(u64, u64)> = None;
            if last.is_none() {
                // Start from what is there now (earlier invalidations were
                // of entries this node never had).
                match self.last_id(&mut conn).await {
                    Ok(id) => last = Some(id.unwrap_or_else(|| "0-0".into())),
                    Err(e) => {
                        self.failed("stream", &e);
                        if !lost {
                            lost = true;
                            apply(StreamEvent::Lost).await;
                        }
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
            }
            loop {
                let from = last.clone().unwrap_or_else(|| "0-0".into());
                let read = tokio::time::timeout(
                    BLOCK + self.settings.timeout,
                    redis::cmd("XREAD")
                        .arg("BLOCK")
                        .arg(BLOCK.as_millis() as u64)
                        .arg("COUNT")
                        .arg(1000)
                        .arg("STREAMS")
                        .arg(self.names.stream())
                        .arg(&from)
                        .query_async::<Value>(&mut conn),
                )
                .await;
                let value = match read {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => {
                        self.failed("stream", &e);
                        break;
                    }
                    Err(_) => break,
                };
                self.succeeded();
                pause = Duration::from_millis(100);
                if lost {
                    lost = false;
                    self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                    apply(StreamEvent::Resumed).await;
                }
                // What this node invalidated while Redis was away reaches
                // the others (tried again after each read until it does).
                if self.has_unpublished() {
                    self.publish_unpublished().await;
                }
                let batch = entries(&value);
                let mut trimmed = false;
                if let Some(newest) = batch.last().map(|(id, _)| id.clone()) {
                    if let Some(lag) = lag_micros(&newest) {
                        self.stats.stream_lag_micros.store(lag, Ordering::Relaxed);
                    }
                    if let Some((_, read)) = &mut counted {
                        *read += batch.len() as u64;
                    }
                    if let Some((added, generated)) = self.position(&mut conn).await
                        && generated == newest
                    {
                        trimmed = counted.is_some_and(|(base, read)| added != base + read);
                        counted = Some((added, 0));
                    }
                }
                for (id, fields) in batch {
                    last = Some(id);
                    let node = field(&fields, "node");
                    if node.as_deref() == Some(self.node.as_str()) {
                        continue;
                    }
                    let event = if let Some(text) = field(&fields, "ledger") {
                        codec::decode_ledger(&text).map(StreamEvent::Ledger)
                    } else {
                        field(&fields, "invalidations")
                            .as_deref()
                            .and_then(codec::decode_invalidations)
                            .map(StreamEvent::Invalidations)
                    };
                    match event {
                        Some(StreamEvent::Ledger(records)) => {
                            self.stats
                                .ledger_applied
                                .fetch_add(records.len() as u64, Ordering::Relaxed);
                            apply(StreamEvent::Ledger(records)).await;
                        }
                        Some(event) => {
                            self.stats.applied.fetch_add(1, Ordering::Relaxed);
                            apply(event).await;
                        }
                        None => {
                            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // The other nodes may wait for this: what they published
                // up to here is applied on this node. Sent after an empty
                // read too, as this node's heartbeat.
                self.acknowledge(&mut conn, last.as_deref()).await;
                if trimmed {
                    tracing::warn!(
                        "the invalidation stream was trimmed past this node's position; trust starts over"
                    );
                    self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                    apply(StreamEvent::Lost).await;
                    apply(StreamEvent::Resumed).await;
                }
            }
            if !lost {
                lost = true;
                apply(StreamEvent::Lost).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Records in Redis that this node applied the stream up to `last`,
    /// and is alive now (see `SharedTier::wait_applied`).
    async fn acknowledge(&self, conn: &mut Conn, last: Option<&str>) {
        let Some(last) = last else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _: redis::RedisResult<Value> = redis::cmd("HSET")
            .arg(self.names.applied())
            .arg(&self.node)
            .arg(format!("{last} {now}"))
            .query_async(conn)
            .await;
    }

    /// The stream's `entries-added` and `last-generated-id`, when the
    /// server tells them (Redis 7, Valkey).
    async fn position(&self, conn: &mut Conn) -> Option<(u64, String)> {
        let info: Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(self.names.stream())
            .query_async(conn)
            .await
            .ok()?;
        let pairs: Vec<(&Value, &Value)> = match &info {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|p| Some((p.first()?, p.get(1)?)))
                .collect(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| text(k).as_deref() == Some(name))
                .map(|(_, v)| *v)
        };
        let added = match field("entries-added")? {
            Value::Int(n) => u64::try_from(*n).ok()?,
            other => text(other)?.parse().ok()?,
        };
        Some((added, text(field("last-generated-id")?)?))
    }

    /// The id of the stream's newest entry.
    async fn last_id(&self, conn: &mut Conn) -> redis::RedisResult<Option<String>> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(self.names.stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(match v {
            Value::Array(items) => items.first().and_then(|e| match e {
                Value::Array(parts) => parts.first().and_then(text),
                _ => None,
            }),
            _ => None,
        })
    }
}

/// How long ago a stream id (`milliseconds-sequence`, Redis's clock) was
/// made, by this node's clock.
fn lag_micros(id: &str) -> Option<u64> {
    let made: u64 = id.split_once('-')?.0.parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_micros();
    Some(u64::try_from(now.saturating_sub(u128::from(made) * 1000)).unwrap_or(u64::MAX))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The (id, fields) of an `XREAD` answer for one stream (RESP2 arrays or
/// RESP3 maps).
fn entries(v: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let streams: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        let list = match stream {
            Value::Array(parts) if parts.len() == 2 => &parts[1],
            other => other,
        };
        let Value::Array(items) = list else {
            continue;
        };
        for item in items {
            let Value::Array(parts) = item else {
                continue;
            };
            let (Some(id), Some(Value::Array(kv))) = (parts.first().and_then(text), parts.get(1))
            else {
                continue;
            };
            let fields = kv
                .chunks(2)
                .filter_map(|p| Some((text(p.first()?)?, text(p.get(1)?)?)))
                .collect();
            out.push((id, fields));
        }
    }
    out
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}
