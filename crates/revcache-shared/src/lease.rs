//! Leases: something exactly one node does at a time (a route's command
//! feed), taken over by another node within seconds when its holder
//! dies.
//!
//! A lease is a key holding its node's id with an expiry; the holder
//! renews it and, with it, a state it reports to the others (its feed's
//! health), which expires with it. A holder that cannot renew before the
//! expiry must stop; when Redis cannot be reached nobody holds it.

use std::time::Duration;

use redis::Value;

use crate::scripts;
use crate::tier::SharedTier;

impl SharedTier {
    /// Takes or renews the lease `name` for `ttl`, reporting `state`:
    /// `Some(true)` while this node holds it, `Some(false)` when another
    /// does, `None` when Redis cannot say.
    pub async fn hold_lease(&self, name: &str, ttl: Duration, state: &str) -> Option<bool> {
        let mut invocation = scripts::LEASE.prepare_invoke();
        invocation
            .key(self.names.lease(name))
            .key(self.names.lease_state(name))
            .arg(&self.node)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(state);
        let mut conn = self.conn().clone();
        let held: Option<i64> = self
            .timed("lease", invocation.invoke_async(&mut conn))
            .await;
        held.map(|h| h == 1)
    }

    /// The state the holder of `name` reports; `None` when nobody holds
    /// it or Redis cannot say.
    pub async fn lease_state(&self, name: &str) -> Option<String> {
        let mut conn = self.conn().clone();
        let state: Option<Value> = self
            .timed(
                "lease",
                redis::cmd("GET")
                    .arg(self.names.lease_state(name))
                    .query_async(&mut conn),
            )
            .await;
        match state? {
            Value::BulkString(b) => String::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Gives the lease `name` up, if this node holds it.
    pub async fn release_lease(&self, name: &str) {
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation
            .key(self.names.lease(name))
            .key(self.names.lease_state(name))
            .arg(&self.node);
        let mut conn = self.conn().clone();
        let _: Option<i64> = self
            .timed("lease", invocation.invoke_async(&mut conn))
            .await;
    }
}
