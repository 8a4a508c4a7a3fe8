//! The invariants of the `shared_codec` fuzz target (`fuzz/` at the
//! repository root): what this crate reads back from Redis, which any
//! client of the same server can write, so it is untrusted input. Not
//! part of the API.

use revcache_core::{EntryBody, KeyClass, Partition, PrimaryKey, Tag, record};

use crate::codec::{
    MAGIC, decode_entry, decode_invalidations, decode_ledger, encode_entry, encode_invalidations,
    encode_ledger,
};

/// Never panics; a stream message that decodes (invalidations or ledger
/// records) encodes back to the same; an entry value that decodes has its
/// body inline, is of the key it names (and of no other), and re-encodes
/// to a value that decodes to the same entry.
pub fn check_shared_codec(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(invalidations) = decode_invalidations(text) {
            let again = decode_invalidations(&encode_invalidations(&invalidations));
            assert_eq!(again.as_ref(), Some(&invalidations));
        }
        if let Some(records) = decode_ledger(text) {
            assert_eq!(decode_ledger(&encode_ledger(&records)), Some(records));
        }
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
    // A well-formed head naming `key`, then the fuzzed record.
    let key_bytes = record::key_bytes(&key);
    let mut keyed = MAGIC.to_vec();
    keyed.extend_from_slice(&(key_bytes.len() as u32).to_be_bytes());
    keyed.extend_from_slice(&key_bytes);
    keyed.extend_from_slice(data);
    for value in [data, &magic[..], &keyed[..]] {
        let Ok(entry) = decode_entry(value, None) else {
            continue;
        };
        let EntryBody::Memory(body) = &entry.body else {
            panic!("a shared entry whose body is not inline");
        };
        let named = entry.key.clone();
        assert!(decode_entry(value, Some(&named)).is_ok());
        if named != key {
            assert!(
                decode_entry(value, Some(&key)).is_err(),
                "served for another key"
            );
            continue;
        }
        let again =
            decode_entry(&encode_entry(&entry, body), Some(&key)).expect("a re-encoded entry");
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
