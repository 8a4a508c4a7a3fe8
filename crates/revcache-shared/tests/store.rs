//! The shared tier's store rules against a real `redis-server`: a fill an
//! invalidation overtook is stored nowhere, and between two fills of one
//! variant the newer representation (by `Date`) stays.

mod support;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use revcache_core::{
    Entry, EntryTiming, Freshness, Invalidation, KeyClass, Partition, PrimaryKey, Tag, Version,
};
use support::{Redis, tier};

fn key() -> PrimaryKey {
    PrimaryKey::new(7, KeyClass::Get, "origin:80", "/doc", Partition::Public)
}

fn entry(body: &'static str, date: SystemTime) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert(
        "date",
        HeaderValue::from_str(&httpdate::fmt_http_date(date)).unwrap(),
    );
    Entry::new(
        key(),
        Box::new([]),
        Version::Unversioned,
        StatusCode::OK,
        headers,
        bytes::Bytes::from_static(body.as_bytes()),
        vec![Tag::new(7, "doc")],
        EntryTiming {
            request_time: date,
            response_time: date,
            initial_age: Duration::ZERO,
        },
        Freshness {
            lifetime: Duration::from_secs(60),
            ..Freshness::default()
        },
    )
}

fn body(e: &Entry) -> String {
    match &e.body {
        revcache_core::EntryBody::Memory(b) => String::from_utf8_lossy(b).into_owned(),
        _ => panic!("not in memory"),
    }
}

#[tokio::test]
async fn the_newer_representation_stays_whichever_fill_stores_last() {
    let redis = Redis::start();
    let t = tier(&redis).await;
    let now = SystemTime::now();
    let ticket = t.ticket().await.unwrap();
    t.store(&entry("new", now), &ticket, Duration::from_secs(60))
        .await;
    t.store(
        &entry("old", now - Duration::from_secs(3600)),
        &ticket,
        Duration::from_secs(60),
    )
    .await;
    let found = t.lookup(&key()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(body(&found[0]), "new");
    t.store(
        &entry("newer", now + Duration::from_secs(5)),
        &ticket,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(body(&t.lookup(&key()).await[0]), "newer");
}

#[tokio::test]
async fn a_fill_an_invalidation_overtook_is_stored_nowhere() {
    let redis = Redis::start();
    let t = tier(&redis).await;
    let now = SystemTime::now();
    for overtaking in [
        Invalidation::Tag(Tag::new(7, "doc")),
        Invalidation::target(7, "/doc"),
        Invalidation::prefix(7, "/d"),
        Invalidation::Prefix {
            route: None,
            prefix: "/".into(),
        },
    ] {
        let ticket = t.ticket().await.unwrap();
        assert!(t.invalidate(std::slice::from_ref(&overtaking)).await);
        t.store(&entry("stale", now), &ticket, Duration::from_secs(60))
            .await;
        assert!(t.lookup(&key()).await.is_empty(), "{overtaking:?}");
        // A fill that started after it is stored, and the invalidation
        // deletes it.
        let ticket = t.ticket().await.unwrap();
        t.store(&entry("fresh", now), &ticket, Duration::from_secs(60))
            .await;
        assert_eq!(t.lookup(&key()).await.len(), 1, "{overtaking:?}");
        assert!(t.invalidate(std::slice::from_ref(&overtaking)).await);
        assert!(t.lookup(&key()).await.is_empty(), "{overtaking:?} deletes");
    }
    // Another route's tag reaches nothing here.
    let ticket = t.ticket().await.unwrap();
    t.store(&entry("kept", now), &ticket, Duration::from_secs(60))
        .await;
    assert!(t.invalidate(&[Invalidation::Tag(Tag::new(8, "doc"))]).await);
    assert_eq!(t.lookup(&key()).await.len(), 1);
}

#[tokio::test]
async fn values_that_are_not_revcaches_are_ignored_and_counted() {
    let redis = Redis::start();
    let t = tier(&redis).await;
    let ticket = t.ticket().await.unwrap();
    t.store(
        &entry("real", SystemTime::now()),
        &ticket,
        Duration::from_secs(60),
    )
    .await;
    // Overwrite every entry value with garbage, as another program might.
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("revcache:e:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    for k in keys.iter().filter(|k| !k.ends_with(":date")) {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg("RCL3\u{1}garbage")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert!(t.lookup(&key()).await.is_empty());
    assert!(
        t.stats()
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn a_fill_that_began_before_redis_lost_its_data_is_not_stored_after() {
    let redis = Redis::start();
    let t = tier(&redis).await;
    let now = SystemTime::now();
    let before = t.ticket().await.unwrap();
    // Redis restarts empty (FLUSHALL stands for it): the sequence starts
    // over, and an invalidation made since takes it to 1, below the
    // fill's ticket once the sequence had grown.
    for _ in 0..3 {
        assert!(t.invalidate(&[Invalidation::target(7, "/x")]).await);
    }
    let before_grown = t.ticket().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert!(t.invalidate(&[Invalidation::target(7, "/doc")]).await);
    for old in [&before, &before_grown] {
        t.store(&entry("outdated", now), old, Duration::from_secs(60))
            .await;
        assert!(t.lookup(&key()).await.is_empty(), "{old:?}");
    }
    let after = t.ticket().await.unwrap();
    t.store(&entry("fresh", now), &after, Duration::from_secs(60))
        .await;
    assert_eq!(body(&t.lookup(&key()).await[0]), "fresh");
}
