//! RFC 9111 shared-cache policy as pure functions over headers and times.
//!
//! Nothing here does I/O or touches the cache; the proxy asks these
//! functions what the RFC allows and acts on the answer. Each file is one
//! question: can it be stored, how fresh is it, which variant is it, does a
//! client's condition match, how does a 304 update it.

pub mod cache_control;
pub mod conditional;
pub mod freshness;
pub mod hop_by_hop;
pub mod merge;
#[cfg(test)]
mod oracle;
pub mod range;
pub mod storability;
pub mod vary;

pub use cache_control::{RequestDirectives, ResponseDirectives};
pub use freshness::{Reuse, reuse, stored_freshness};
pub use storability::{NotStored, Sharing, Storability, storability};
