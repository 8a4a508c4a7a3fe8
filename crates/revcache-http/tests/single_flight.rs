//! Single-flight: concurrent identical requests cost one upstream request.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Client, Origin, Reply, Revcache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_cost_one_upstream_request() {
    let origin = Origin::start(|_, _| {
        Reply::ok("shared body")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let url = rc.url("/hot");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = url.clone();
        tasks.push(tokio::spawn(
            async move { Client::default().get(&url).await },
        ));
    }
    let mut collapsed = 0;
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "shared body");
        if got.cache_status() == "revcache; hit; collapsed; ttl=60"
            || got.cache_status().starts_with("revcache; hit; collapsed")
        {
            collapsed += 1;
        }
    }
    assert_eq!(origin.requests(), 1);
    assert_eq!(collapsed, 99);
    let metrics = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert_eq!(
        support::metric(&metrics, "revcache_requests_total{outcome=\"collapsed\"}"),
        99.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revalidations_cost_one_conditional_request() {
    let origin = Origin::start(|req, _| {
        if req.headers.contains_key("if-none-match") {
            Reply::status(304)
                .header("etag", "\"v\"")
                .delay(Duration::from_millis(300))
        } else {
            Reply::ok("v")
                .header("etag", "\"v\"")
                .header("cache-control", "max-age=0")
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    Client::default().get(&rc.url("/r")).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let url = rc.url("/r");
            tokio::spawn(async move { Client::default().get(&url).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().text(), "v");
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_leader_hands_its_error_to_waiters_and_frees_the_key() {
    let origin = Origin::start(|_, n| {
        if n == 0 {
            Reply::ok("late").delay(Duration::from_secs(3))
        } else {
            Reply::ok("fine").header("cache-control", "max-age=60")
        }
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.upstream_read_timeout = Duration::from_millis(500)
    })
    .await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = rc.url("/slow");
            tokio::spawn(async move { Client::default().get(&url).await })
        })
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.status, 504);
        assert!(
            got.text().contains("upstream read timeout"),
            "{}",
            got.text()
        );
    }
    assert_eq!(origin.requests(), 1);
    // Nothing is wedged: the next request leads a new flight.
    assert_eq!(Client::default().get(&rc.url("/slow")).await.text(), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_wedge_waiters() {
    let origin = Origin::start(|_, n| {
        Reply::ok(format!("done {n}"))
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300))
    })
    .await;
    // Waiters would give up only after a minute: what releases this one
    // is the leader going away, not the deadline.
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.limits.collapsed_wait_timeout = Duration::from_secs(60)
    })
    .await;
    let url = rc.url("/c");
    let leader = tokio::spawn({
        let url = url.clone();
        async move { Client::default().get(&url).await }
    });
    let c = Client::default();
    let waiting = async || {
        let m = c.get(&rc.admin_url("/metrics")).await.text();
        support::metric(&m, "revcache_single_flight_waiters")
    };
    let fetching = async || {
        let m = c.get(&rc.admin_url("/metrics")).await.text();
        support::metric(&m, "revcache_single_flight_fetches")
    };
    while fetching().await < 1.0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiter = tokio::spawn(async move { Client::default().get(&url).await });
    while waiting().await < 1.0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The leader's client goes away while the upstream is still answering.
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("waiter wedged")
        .unwrap();
    assert_eq!(got.status, 200);
    assert!(
        !got.cache_status().contains("collapsed"),
        "the waiter fetched for itself: {}",
        got.cache_status()
    );
    assert_eq!(
        origin.requests(),
        2,
        "the abandoned fetch and the waiter's own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_responses_release_waiters_to_fetch_for_themselves() {
    let origin = Origin::start(|_, n| {
        Reply::ok(format!("private {n}"))
            .header("cache-control", "private")
            .delay(Duration::from_millis(200))
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let url = rc.url("/p");
            tokio::spawn(async move { Client::default().get(&url).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(!got.is_hit());
        bodies.push(got.text());
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 5, "each client got its own private response");
    assert_eq!(origin.requests(), 5);
}

/// A URL whose response could not be stored is remembered for a while
/// (hit-for-pass): a burst for it goes upstream at once instead of queueing
/// behind a leader whose response nobody else may use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_for_a_url_known_uncacheable_does_not_wait_for_a_leader() {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let origin = Origin::start({
        let arrivals = arrivals.clone();
        move |_, n| {
            arrivals.lock().unwrap().push(std::time::Instant::now());
            Reply::ok(format!("private {n}"))
                .header("cache-control", "no-store")
                .delay(if n == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs(1)
                })
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let h2 = Client::http2();
    assert_eq!(h2.get(&rc.url("/u")).await.text(), "private 0");
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let (h2, url) = (h2.clone(), rc.url("/u"));
            tokio::spawn(async move { h2.get(&url).await })
        })
        .collect();
    for got in burst {
        let got = got.await.unwrap();
        assert_eq!(got.status, 200);
        assert!(!got.cache_status().contains("collapsed"));
    }
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 5);
    let spread = arrivals[4].duration_since(arrivals[1]);
    assert!(
        spread < Duration::from_millis(500),
        "the burst reached the origin over {spread:?}: it queued behind a leader"
    );
}
