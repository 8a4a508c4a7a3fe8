//! Names of the keys revcache writes in Redis, hashed slots of shared
//! generations, and invalidations as stream messages.
//!
//! Every key starts with the configured prefix. Entry and index keys name
//! hashes (BLAKE3) of the primary key, variant, target or tag, so no key
//! holds a URL or a credential. Entry values start with a magic and the
//! record format's version; anything else is ignored, never served.

use bytes::Bytes;
use revcache_core::{Entry, Invalidation, PrimaryKey, Tag, Variant, record};
use serde_json::{Value, json};

/// Entry values start with this (and the record's own version byte).
pub const MAGIC: &[u8] = b"RCL3";

/// An entry's value in Redis: the magic, then its record with the body
/// inline.
pub fn encode_entry(entry: &Entry, body: &Bytes) -> Vec<u8> {
    let record = record::encode(entry, body);
    let mut value = Vec::with_capacity(MAGIC.len() + record.len());
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&record);
    value
}

/// The entry of `key` a Redis value holds; an error for anything else
/// (another program's value, a torn or older record).
pub fn decode_entry(key: &PrimaryKey, value: &[u8]) -> Result<Entry, record::RecordError> {
    let record = value
        .strip_prefix(MAGIC)
        .ok_or(record::RecordError("no magic"))?;
    record::decode(key.clone(), record)
}

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
