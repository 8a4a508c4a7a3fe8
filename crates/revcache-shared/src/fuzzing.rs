//! The invariants of the `shared_codec` fuzz target (`fuzz/` at the
//! repository root): what this crate reads back from Redis, which any
//! client of the same server can write, so it is untrusted input. Not
//! part of the API.

use revcache_core::{EntryBody, KeyClass, Partition, PrimaryKey, Tag};

use crate::codec::{MAGIC, decode_entry, decode_invalidations, encode_entry, encode_invalidations};

/// Never panics; a stream message that decodes encodes back to the same
/// invalidations; an entry value that decodes has its body inline and
/// re-encodes to a value that decodes to the same entry.
pub fn check_shared_codec(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(invalidations) = decode_invalidations(text)
    {
        let again = decode_invalidations(&encode_invalidations(&invalidations));
        assert_eq!(again.as_ref(), Some(&invalidations));
    }
    let key = PrimaryKey::new(
        2,
        KeyClass::Get,
        "upstream.example:443",
        "/a",
        Partition::Public,
    );
    let mut magic = MAGIC.to_vec();
    magic.extend_from_slice(data);
    for value in [data, &magic[..]] {
        let Ok(entry) = decode_entry(&key, value) else {
            continue;
        };
        let EntryBody::Memory(body) = &entry.body else {
            panic!("a shared entry whose body is not inline");
        };
        assert_eq!(entry.key, key);
        let again = decode_entry(&key, &encode_entry(&entry, body)).expect("a re-encoded entry");
        assert_eq!(again.status, entry.status);
        assert_eq!(again.version, entry.version);
        assert_eq!(again.variant, entry.variant);
        assert_eq!(again.headers, entry.headers);
        assert_eq!(again.body.bytes(), Some(body));
        assert_eq!(
            again.tags.iter().map(Tag::name).collect::<Vec<_>>(),
            entry.tags.iter().map(Tag::name).collect::<Vec<_>>()
        );
        assert_eq!(again.timing(), entry.timing());
        assert_eq!(again.freshness(), entry.freshness());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_codec_seed_corpus_keeps_its_invariants() {
        revcache_core::fuzzing::replay("shared_codec", check_shared_codec);
    }
}
