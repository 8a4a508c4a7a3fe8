//! Entries as bytes, for a tier outside this process (the shared tier on
//! Redis): the disk tier's record encoding with the body inline, and the
//! key encoding. A value that does not decode is an error, never an entry.

use bytes::Bytes;

use crate::disk::format::{self, StoredBody};
use crate::entry::{Entry, EntryBody, Variant};
use crate::key::PrimaryKey;

/// Why bytes are not a record or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a revcache record: {0}")]
pub struct RecordError(pub &'static str);

/// `entry` with `body` inline.
pub fn encode(entry: &Entry, body: &Bytes) -> Vec<u8> {
    format::encode(entry, &StoredBody::Inline(body.clone()))
}

/// The entry `bytes` hold for `key`; only records with their body inline.
pub fn decode(key: PrimaryKey, bytes: &[u8]) -> Result<Entry, RecordError> {
    let record = format::decode(bytes).map_err(|e| RecordError(e.0))?;
    match record.body.clone() {
        StoredBody::Inline(body) => Ok(record.into_entry(key, EntryBody::Memory(body))),
        StoredBody::File { .. } => Err(RecordError("the body is not inline")),
    }
}

/// The bytes naming one variant of `key` (the disk tier's entry key).
pub fn entry_key(key: &PrimaryKey, variant: &Variant) -> Vec<u8> {
    format::entry_key(key, variant)
}

/// The bytes shared by every variant of `key`.
pub fn key_bytes(key: &PrimaryKey) -> Vec<u8> {
    format::key_prefix(key)
}

/// The key `bytes` (from [`key_bytes`] or [`entry_key`]) name.
pub fn decode_key(bytes: &[u8]) -> Result<PrimaryKey, RecordError> {
    format::decode_key(bytes).map_err(|e| RecordError(e.0))
}
