//! The shared tier (L3): many revcache nodes act as one cache through Redis
//! or Valkey.
//!
//! - **Entries** (`tier`): a stored response whose body is in memory and at
//!   most `max_entry_bytes` is written to Redis as the disk tier's record
//!   (`revcache_core::record`), under a key that hashes its primary key and
//!   variant (never a credential: the partition is a keyed hash already).
//!   Another node's lookup decodes it; what does not decode is counted and
//!   ignored.
//! - **Shared generations** (`scripts`): every published invalidation bumps
//!   a sequence and the hashed slots of what it reaches; a fill takes the
//!   sequence before its request and its entry is written only if nothing
//!   it shows was invalidated since, checked and written in one script.
//!   The same script that bumps also deletes the entries it reaches, found
//!   through index sets by tag, target and route.
//! - **Invalidations reach every node** (`stream`): they are appended to a
//!   Redis stream that every node reads from its last seen id. A node that
//!   cannot read it suspends trust; when it reads again, trust starts over
//!   (a gap). Ledger records (what a listing confirms) travel on it too.
//! - **One flight across nodes** (`tier::SharedTier::lock`): the node that
//!   fetches holds a lock key with an expiry; the others wait for its entry
//!   until a deadline, then fetch on their own.
//! - **Leases** (`lease`): a route's command feed runs on one node at a
//!   time; the others follow the health its holder reports.
//! - **Redis away**: every command has a timeout; errors are counted and
//!   the node serves from its own tiers and the upstream.
//!
//! The client is redis-rs (see `DESIGN.md` at the crate root for why).

mod codec;
mod connection;
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod lease;
mod scripts;
mod settings;
mod stream;
mod tier;

pub use settings::SharedSettings;
pub use stream::{Applier, StreamEvent};
pub use tier::{Claim, SharedError, SharedStats, SharedTier, Ticket};
