//! The invalidation stream against a real `redis-server`: a reader that
//! falls behind the stream's trimming reports a gap, one that keeps up
//! does not.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revcache_core::{Invalidation, Tag};
use revcache_shared::StreamEvent;
use support::{Redis, tier};

/// What the reader reported, in order: "inv", "lost", "resumed".
type Seen = Arc<Mutex<Vec<&'static str>>>;

/// Starts a reader on a node of its own whose applier, while `hold` is
/// set, keeps the reader busy with the first invalidation it gets (as a
/// node too slow to keep up would be).
async fn reader(redis: &Redis, hold: Arc<AtomicBool>) -> (Seen, Arc<revcache_shared::SharedTier>) {
    let node = tier(redis).await;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    // Detached: it reads until the runtime ends.
    drop(node.spawn_reader(Arc::new(move |event| {
        let name = match event {
            StreamEvent::Invalidations(_) => "inv",
            StreamEvent::Ledger(_) => "ledger",
            StreamEvent::Lost => "lost",
            StreamEvent::Resumed => "resumed",
        };
        log.lock().unwrap().push(name);
        // The runtime's other tasks move off this worker meanwhile.
        tokio::task::block_in_place(|| {
            while name == "inv" && hold.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Box::pin(std::future::ready(()))
    })));
    (seen, node)
}

async fn wait_for(seen: &Seen, what: &str, count: usize) {
    for _ in 0..500 {
        if seen.lock().unwrap().iter().filter(|e| **e == what).count() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {count} {what}: {:?}", seen.lock().unwrap());
}

fn tag(n: u32) -> Vec<Invalidation> {
    vec![Invalidation::Tag(Tag::new(1, format!("t{n}")))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_the_stream_was_trimmed_past_reports_a_gap() {
    let redis = Redis::start();
    let hold = Arc::new(AtomicBool::new(true));
    let (seen, node) = reader(&redis, hold.clone()).await;
    let publisher = tier(&redis).await;
    // The reader starts from the stream's end once it is connected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(publisher.invalidate(&tag(1)).await);
    wait_for(&seen, "inv", 1).await;
    // The reader is busy with the first; meanwhile more arrive and the
    // stream is trimmed past them.
    for n in 2..5 {
        assert!(publisher.invalidate(&tag(n)).await);
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg("revcache:invalidations")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(publisher.invalidate(&tag(5)).await);
    hold.store(false, Ordering::SeqCst);
    wait_for(&seen, "resumed", 1).await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events, ["inv", "inv", "lost", "resumed"], "{events:?}");
    assert_eq!(node.stats().gaps.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_keeps_up_sees_every_invalidation_and_no_gap() {
    let redis = Redis::start();
    let (seen, node) = reader(&redis, Arc::new(AtomicBool::new(false))).await;
    let publisher = tier(&redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..20 {
        assert!(publisher.invalidate(&tag(n)).await);
    }
    wait_for(&seen, "inv", 20).await;
    assert!(!seen.lock().unwrap().contains(&"resumed"));
    assert_eq!(node.stats().gaps.load(Ordering::Relaxed), 0);
}
