//! The revcache engine: everything a version-aware cache needs that is not
//! HTTP serving. It owns keys, versions and entries, the in-memory tiers (L0
//! identity map, L1 byte-budgeted memory), the catalog that finds entries by
//! URL, prefix and tag, single-flight and generations.
//!
//! It never speaks to the network and never interprets HTTP caching rules:
//! the HTTP crate decides *whether* and *for how long* something may be
//! served; this crate stores it, finds it, and forgets it on purpose.

mod cache;
mod catalog;
mod clock;
pub mod data_dir;
mod disk;
mod entry;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod generation;
mod identity_map;
mod invalidation;
mod key;
mod ledger;
mod memory_tier;
mod packed_time;
mod partition;
pub mod record;
mod single_flight;
mod stored_headers;
mod sync;
mod tag;
mod variants;
mod version;

pub use cache::{Cache, CacheConfig, CacheStats, DiskState, StoreOutcome};
pub use clock::{Clock, ClockHand};
pub use disk::{DiskConfig, DiskError, DiskStats, DiskTier, faults as disk_faults};
pub use entry::{BodyFile, Entry, EntryBody, EntryTiming, Freshness, Variant};
pub use error::{PartitionKeyError, PurgeError};
pub use generation::{FillTicket, Generations};
pub use identity_map::IdentityMap;
pub use invalidation::Invalidation;
pub use key::{KeyClass, KeyRef, PrimaryKey};
pub use ledger::{Known, Ledger, LedgerRecord};
pub use partition::{Partition, PartitionKey};
pub use single_flight::{Join, LeaderGuard, SingleFlight, Waiter};
pub use stored_headers::StoredHeaders;
pub use tag::Tag;
pub use variants::Variants;
pub use version::Version;
