//! The fetch lock that makes one flight of many nodes, against a real
//! `redis-server`: one node claims a key's fetch, the others find what it
//! shares, even when it was shared between two of their reads or after a
//! command of the fetching node timed out.

mod support;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use revcache_core::{Entry, EntryTiming, Freshness, KeyClass, Partition, PrimaryKey, Version};
use support::{Redis, tier, tier_with};

fn key() -> PrimaryKey {
    PrimaryKey::new(7, KeyClass::Get, "origin:80", "/burst", Partition::Public)
}

fn entry() -> Entry {
    let now = SystemTime::now();
    Entry::new(
        key(),
        Box::new([]),
        Version::Unversioned,
        StatusCode::OK,
        HeaderMap::new(),
        bytes::Bytes::from_static(b"slow body"),
        Vec::new(),
        EntryTiming {
            request_time: now,
            response_time: now,
            initial_age: Duration::ZERO,
        },
        Freshness {
            lifetime: Duration::from_secs(60),
            ..Freshness::default()
        },
    )
}

#[tokio::test]
async fn one_node_claims_a_fetch_and_the_others_wait_for_it() {
    let redis = Redis::start();
    let (a, b, c) = (tier(&redis).await, tier(&redis).await, tier(&redis).await);
    let first = a.claim(&key()).await;
    assert!(first.fetch && first.found.is_empty());
    for other in [&b, &c] {
        let claim = other.claim(&key()).await;
        assert!(!claim.fetch, "another node fetches");
        assert!(claim.found.is_empty());
    }
    // Released without sharing anything (the answer was not storable):
    // the next claim fetches.
    a.unlock(&key()).await;
    assert!(b.claim(&key()).await.fetch);
}

#[tokio::test]
async fn a_fill_shared_and_released_between_two_reads_is_found_not_fetched_again() {
    let redis = Redis::start();
    let (a, b) = (tier(&redis).await, tier(&redis).await);
    assert!(a.claim(&key()).await.fetch);
    // Node b looks before node a's fill is shared ...
    assert!(b.lookup(&key()).await.is_empty());
    let ticket = a.ticket().await.unwrap();
    a.store(&entry(), &ticket, Duration::from_secs(60)).await;
    a.unlock(&key()).await;
    // ... and claims after it was released: the claim finds it.
    let claim = b.claim(&key()).await;
    assert_eq!(claim.found.len(), 1);
    assert_eq!(claim.found[0].key, key());
}

#[tokio::test]
async fn a_fetching_node_that_saw_a_command_time_out_still_shares_and_releases() {
    let redis = Redis::start();
    let a = tier_with(&redis, |s| s.timeout = Duration::from_millis(200)).await;
    let b = tier(&redis).await;
    assert!(a.claim(&key()).await.fetch);
    let ticket = a.ticket().await.unwrap();
    // One command of node a's request path times out while Redis stalls:
    // node a counts the tier unreachable.
    redis.signal("-STOP");
    assert!(a.lookup(&key()).await.is_empty());
    redis.signal("-CONT");
    assert!(!a.healthy());
    // Its fill's store and release are no request's: they are sent anyway.
    a.store(&entry(), &ticket, Duration::from_secs(60)).await;
    a.unlock(&key()).await;
    let claim = b.claim(&key()).await;
    assert_eq!(claim.found.len(), 1, "the fill reached the other node");
    assert!(claim.fetch, "and its lock was released");
    assert!(
        a.healthy(),
        "a command that went through says Redis is back"
    );
}
