//! Names of the keys revcache writes in Redis, hashed slots of shared
//! generations, and invalidations as stream messages.
//!
//! Every key starts with the configured prefix. Entry and index keys name
//! hashes (BLAKE3) of the primary key, variant, target or tag, so no key
//! holds a URL or a credential. Entry values start with a magic and the
//! record format's version; anything else is ignored, never served.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use revcache_core::{
    Entry, Invalidation, Known, LedgerRecord, Partition, PrimaryKey, Tag, Variant, record,
};
use serde_json::{Value, json};

/// Entry values start with this, then the length (u32, big-endian) and
/// bytes of the entry's key, then the record (with its own version byte).
pub const MAGIC: &[u8] = b"RCL4";

fn hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_owned()
}

/// The key names of one cache in Redis.
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// In a Redis Cluster the prefix is a hash tag (`{revcache}`): every
    /// key of one cache is in one hash slot, as its scripts need.
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Names {
            prefix: if cluster {
                format!("{{{prefix}}}")
            } else {
                prefix.to_owned()
            },
        }
    }

    /// What every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn fingerprint(&self) -> String {
        format!("{}:fingerprint", self.prefix)
    }
    pub fn sequence(&self) -> String {
        format!("{}:seq", self.prefix)
    }
    /// Made afresh whenever Redis has none (it lost its data): tickets
    /// of another epoch are refused.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    pub fn slots(&self) -> String {
        format!("{}:slots", self.prefix)
    }
    /// Prefix invalidations by sequence, and the lowest sequence a store
    /// may still be checked against.
    pub fn prefixes(&self) -> String {
        format!("{}:prefixes", self.prefix)
    }
    pub fn prefix_floor(&self) -> String {
        format!("{}:prefixes:floor", self.prefix)
    }
    pub fn stream(&self) -> String {
        format!("{}:invalidations", self.prefix)
    }
    /// Per node: the last stream id it applied and when it said so.
    pub fn applied(&self) -> String {
        format!("{}:applied", self.prefix)
    }
    pub fn routes(&self) -> String {
        format!("{}:routes", self.prefix)
    }
    /// One variant's entry.
    pub fn entry(&self, key: &PrimaryKey, variant: &Variant) -> String {
        format!(
            "{}:e:{}",
            self.prefix,
            hex(&record::entry_key(key, variant))
        )
    }
    /// The upstream `Date` of the entry stored under `entry` (its name).
    pub fn entry_date(&self, entry: &str) -> String {
        format!("{entry}:date")
    }

    /// The entries of every variant of a key.
    pub fn variants(&self, key: &PrimaryKey) -> String {
        format!("{}:v:{}", self.prefix, hex(&record::key_bytes(key)))
    }
    pub fn lock(&self, key: &PrimaryKey) -> String {
        format!("{}:l:{}", self.prefix, hex(&record::key_bytes(key)))
    }
    /// Who holds the lease `name` (a route's command feed), and the
    /// state its holder reports.
    pub fn lease(&self, name: &str) -> String {
        format!("{}:lease:{}", self.prefix, hex(name.as_bytes()))
    }
    pub fn lease_state(&self, name: &str) -> String {
        format!("{}:lease:{}:state", self.prefix, hex(name.as_bytes()))
    }
    pub fn by_tag(&self, tag: &Tag) -> String {
        format!(
            "{}:t:{}:{}",
            self.prefix,
            tag.route(),
            hex(tag.name().as_bytes())
        )
    }
    pub fn by_target(&self, target: &str) -> String {
        format!("{}:u:{}", self.prefix, hex(target.as_bytes()))
    }
    /// `target NUL entry-key` of every entry of a route, for prefix purges.
    pub fn by_route(&self, route: u32) -> String {
        format!("{}:r:{}", self.prefix, route)
    }
}

/// The generation slot of a target (any route: a purge by URL may reach
/// every route).
pub fn target_slot(target: &str) -> String {
    format!("u{}", &hex(target.as_bytes())[..4])
}

/// The generation slot of a tag.
pub fn tag_slot(tag: &Tag) -> String {
    let mut bytes = tag.route().to_be_bytes().to_vec();
    bytes.extend_from_slice(tag.name().as_bytes());
    format!("t{}", &hex(&bytes)[..4])
}

/// A prefix invalidation as a member of the prefixes set.
pub fn prefix_member(route: Option<u32>, prefix: &str) -> String {
    match route {
        Some(r) => format!("{r}\0{prefix}"),
        None => format!("*\0{prefix}"),
    }
}

/// A stream id (`milliseconds-sequence`) as numbers, to compare.
pub fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// `entry` (its body `body`) as a value.
pub fn encode_entry(entry: &Entry, body: &Bytes) -> Vec<u8> {
    let key = record::key_bytes(&entry.key);
    let record = record::encode(entry, body);
    let mut value = Vec::with_capacity(MAGIC.len() + 4 + key.len() + record.len());
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&(key.len() as u32).to_be_bytes());
    value.extend_from_slice(&key);
    value.extend_from_slice(&record);
    value
}

/// The entry a value holds; when `expected` is given, only if the value
/// is of that key (a value under another key's name is never served).
pub fn decode_entry(
    value: &[u8],
    expected: Option<&PrimaryKey>,
) -> Result<Entry, record::RecordError> {
    let rest = value
        .strip_prefix(MAGIC)
        .ok_or(record::RecordError("no magic"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(record::RecordError("truncated key"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(record::RecordError("truncated key"));
    }
    let (key_bytes, rest) = rest.split_at(len);
    let key = record::decode_key(key_bytes)?;
    if expected.is_some_and(|e| *e != key) {
        return Err(record::RecordError("another key's value"));
    }
    record::decode(key, rest)
}

/// Invalidations as one stream message; `Key` ones (a node's own
/// bookkeeping) are left out.
pub fn encode_invalidations(invalidations: &[Invalidation]) -> String {
    let items: Vec<Value> = invalidations
        .iter()
        .filter_map(|i| match i {
            Invalidation::Target { route, target } => {
                Some(json!({"kind": "target", "route": route, "value": target}))
            }
            Invalidation::Prefix { route, prefix } => {
                Some(json!({"kind": "prefix", "route": route, "value": prefix}))
            }
            Invalidation::Tag(tag) => {
                Some(json!({"kind": "tag", "route": tag.route(), "value": tag.name()}))
            }
            Invalidation::Key(_) => None,
        })
        .collect();
    Value::Array(items).to_string()
}

/// The invalidations of a stream message; `None` when it is not one
/// revcache wrote (it is counted and skipped).
pub fn decode_invalidations(text: &str) -> Option<Vec<Invalidation>> {
    let items: Vec<Value> = serde_json::from_str(text).ok()?;
    items
        .iter()
        .map(|item| {
            let value = item.get("value")?.as_str()?.to_owned();
            let route = match item.get("route")? {
                Value::Null => None,
                v => Some(u32::try_from(v.as_u64()?).ok()?),
            };
            match item.get("kind")?.as_str()? {
                "target" => Some(Invalidation::Target {
                    route,
                    target: value,
                }),
                "prefix" => Some(Invalidation::Prefix {
                    route,
                    prefix: value,
                }),
                "tag" => Some(Invalidation::Tag(Tag::new(route?, value))),
                _ => None,
            }
        })
        .collect()
}

/// Ledger records as one stream message: route, partition (`public` or
/// the 32 hex digits of its keyed hash), child, version and when the
/// listing was learned (microseconds since the Unix epoch).
pub fn encode_ledger(records: &[LedgerRecord]) -> String {
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            let partition = match r.known.partition {
                Partition::Public => "public".to_owned(),
                Partition::Credential(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
            };
            let learned = r
                .known
                .learned_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            json!([r.scope, partition, &*r.child, &*r.known.version, learned])
        })
        .collect();
    Value::Array(items).to_string()
}

/// Clocks of nodes differ by less than this; a listing learned further in
/// the future is refused (it would outrank every later one).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The ledger records of a stream message; `None` when it is not one
/// revcache wrote (it is counted and skipped).
pub fn decode_ledger(text: &str) -> Option<Vec<LedgerRecord>> {
    let latest = SystemTime::now() + CLOCK_SKEW;
    let items: Vec<Value> = serde_json::from_str(text).ok()?;
    items
        .iter()
        .map(|item| {
            let Value::Array(fields) = item else {
                return None;
            };
            let [scope, partition, child, version, learned] = fields.as_slice() else {
                return None;
            };
            let partition = match partition.as_str()? {
                "public" => Partition::Public,
                hex => Partition::Credential(unhex16(hex)?),
            };
            Some(LedgerRecord {
                scope: u32::try_from(scope.as_u64()?).ok()?,
                child: child.as_str()?.into(),
                known: Known {
                    version: version.as_str()?.into(),
                    learned_at: UNIX_EPOCH
                        .checked_add(Duration::from_micros(learned.as_u64()?))
                        .filter(|t| *t <= latest)?,
                    partition,
                },
            })
        })
        .collect()
}

fn unhex16(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidations_survive_the_stream_and_garbage_is_refused() {
        let invs = vec![
            Invalidation::target(3, "/a?b=c"),
            Invalidation::Prefix {
                route: None,
                prefix: "/docs/".into(),
            },
            Invalidation::Tag(Tag::new(7, "change:1\t\"x\"")),
        ];
        let text = encode_invalidations(&invs);
        assert_eq!(decode_invalidations(&text), Some(invs));
        for garbage in [
            "",
            "{}",
            "[1]",
            r#"[{"kind":"tag","route":null,"value":"x"}]"#,
            r#"[{"kind":"zap","route":1,"value":"x"}]"#,
            r#"[{"kind":"tag","route":99999999999,"value":"x"}]"#,
        ] {
            assert_eq!(decode_invalidations(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn ledger_records_survive_the_stream_and_garbage_is_refused() {
        let learned = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let records = vec![
            LedgerRecord {
                scope: 3,
                child: "/dav/a b.txt".into(),
                known: Known {
                    version: "\"e1\"".into(),
                    learned_at: learned,
                    partition: Partition::Public,
                },
            },
            LedgerRecord {
                scope: u32::MAX,
                child: "4711".into(),
                known: Known {
                    version: "0123abcd".into(),
                    learned_at: learned,
                    partition: Partition::Credential([0xa5; 16]),
                },
            },
        ];
        assert_eq!(decode_ledger(&encode_ledger(&records)), Some(records));
        for garbage in [
            "",
            "{}",
            "[1]",
            r#"[[1,"public","a","v"]]"#,
            r#"[[1,"zz","a","v",5]]"#,
            r#"[[1,"é0000000000000000000000000000000","a","v",5]]"#,
            r#"[[1,"public","a","v",-5]]"#,
            r#"[[4294967296,"public","a","v",5]]"#,
            r#"[[1,"public","a","v",18446744073709551615]]"#,
        ] {
            assert_eq!(decode_ledger(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn an_entry_value_decodes_only_as_its_own_key_and_garbage_is_refused() {
        let key = |target: &str| {
            PrimaryKey::new(
                1,
                revcache_core::KeyClass::Get,
                "h",
                target,
                Partition::Public,
            )
        };
        let body = Bytes::from_static(b"hello");
        let entry = Entry::new(
            key("/a"),
            Variant::default(),
            revcache_core::Version::Unversioned,
            http::StatusCode::OK,
            http::HeaderMap::new(),
            body.clone(),
            Vec::new(),
            revcache_core::EntryTiming {
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
                initial_age: Duration::ZERO,
            },
            revcache_core::Freshness::default(),
        );
        let value = encode_entry(&entry, &body);
        let back = decode_entry(&value, Some(&key("/a"))).unwrap();
        assert_eq!(back.key, key("/a"));
        assert_eq!(decode_entry(&value, None).unwrap().key, key("/a"));
        assert!(decode_entry(&value, Some(&key("/b"))).is_err());
        for cut in 0..value.len() {
            assert!(decode_entry(&value[..cut], None).is_err(), "cut at {cut}");
        }
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_entry(&huge, None).is_err());
    }

    #[test]
    fn key_names_hold_no_url() {
        let names = Names::new("rc", false);
        let t = names.by_target("/private/report?token=REDACTED");
        assert!(t.starts_with("rc:u:") && !t.contains("private"));
    }

    #[test]
    fn in_a_cluster_every_key_of_a_cache_has_its_hash_tag() {
        let names = Names::new("rc", true);
        let key = PrimaryKey::new(
            1,
            revcache_core::KeyClass::Get,
            "h",
            "/a",
            revcache_core::Partition::Public,
        );
        for name in [
            names.sequence(),
            names.stream(),
            names.slots(),
            names.variants(&key),
            names.lock(&key),
            names.by_target("/a"),
            names.by_route(1),
        ] {
            assert!(name.starts_with("{rc}:"), "{name}");
        }
    }
}
