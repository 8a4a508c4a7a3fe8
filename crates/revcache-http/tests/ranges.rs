//! Range requests answered from the cache (RFC 9110 §14, RFC 9111 §3.4),
//! end to end: a scripted origin, a real revcache, a real client.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use revcache_http::RangeMiss;
use support::{Client, Origin, Reply, Revcache, temp_dir};

/// 1,000 bytes, each its offset modulo 251: any slice shows where it is from.
fn body() -> Bytes {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

/// An origin serving `body()` at every path, fresh for a minute, with a
/// strong validator and a date.
async fn origin() -> Origin {
    Origin::start(|_, _| {
        Reply::ok(body())
            .header("cache-control", "max-age=60")
            .header("etag", "\"v1\"")
            .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
    })
    .await
}

async fn range(c: &Client, url: &str, value: &str) -> support::Got {
    c.get_with(url, &[("range", value)]).await
}

#[tokio::test]
async fn a_range_of_a_stored_response_is_a_206_from_the_cache() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/f")).await.body, body());
    let got = range(&c, &rc.url("/f"), "bytes=10-19").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(got.header("content-length"), Some("10"));
    assert_eq!(got.body, body().slice(10..20));
    assert!(got.is_hit(), "{}", got.cache_status());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn open_ended_and_suffix_ranges_are_answered_from_the_cache() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    let open = range(&c, &rc.url("/f"), "bytes=990-").await;
    assert_eq!(open.status, 206);
    assert_eq!(open.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(open.body, body().slice(990..));
    let suffix = range(&c, &rc.url("/f"), "bytes=-5").await;
    assert_eq!(suffix.header("content-range"), Some("bytes 995-999/1000"));
    assert_eq!(suffix.body, body().slice(995..));
    let past_the_end = range(&c, &rc.url("/f"), "bytes=900-5000").await;
    assert_eq!(
        past_the_end.header("content-range"),
        Some("bytes 900-999/1000")
    );
    assert_eq!(past_the_end.body, body().slice(900..));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_unsatisfiable_range_gets_a_416_naming_the_length() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    for value in ["bytes=1000-", "bytes=-0"] {
        let got = range(&c, &rc.url("/f"), value).await;
        assert_eq!(got.status, 416, "{value}");
        assert_eq!(got.header("content-range"), Some("bytes */1000"));
        assert!(got.body.is_empty());
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn if_range_gets_the_range_only_while_the_validator_is_current() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    let url = rc.url("/f");
    let with = |if_range: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.get_with(&url, &[("range", "bytes=0-9"), ("if-range", if_range)])
                .await
        }
    };
    let current = with("\"v1\"").await;
    assert_eq!(current.status, 206);
    assert_eq!(current.body, body().slice(0..10));
    let dated = with("Sun, 06 Nov 1994 08:49:37 GMT").await;
    assert_eq!(dated.status, 206);
    for outdated in ["\"v0\"", "W/\"v1\"", "Sun, 06 Nov 1994 08:49:38 GMT"] {
        let whole = with(outdated).await;
        assert_eq!(whole.status, 200, "{outdated}");
        assert_eq!(whole.body, body(), "{outdated}");
        assert!(whole.header("content-range").is_none());
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_invalid_range_is_ignored_and_the_whole_is_served() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    for value in ["bytes=9-1", "bytes=x-", "bytes"] {
        let got = range(&c, &rc.url("/f"), value).await;
        assert_eq!(got.status, 200, "{value}");
        assert_eq!(got.body, body());
        assert!(got.is_hit());
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_range_miss_fetches_the_whole_once_and_answers_every_range_from_it() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let first = range(&c, &rc.url("/f"), "bytes=100-199").await;
    assert_eq!(first.status, 206);
    assert_eq!(first.header("content-range"), Some("bytes 100-199/1000"));
    assert_eq!(first.body, body().slice(100..200));
    assert!(
        first.cache_status().contains("fwd=uri-miss") && first.cache_status().contains("stored"),
        "{}",
        first.cache_status()
    );
    assert!(
        !origin.last().headers.contains_key("range"),
        "the upstream was asked for the whole representation"
    );
    let second = range(&c, &rc.url("/f"), "bytes=-1").await;
    assert!(second.is_hit());
    assert_eq!(second.body, body().slice(999..));
    assert_eq!(c.get(&rc.url("/f")).await.body, body());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_range_requests_for_one_file_costs_one_upstream_fetch() {
    let origin = Origin::start(|_, _| {
        Reply::ok(body())
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200))
    })
    .await;
    let rc = Arc::new(Revcache::start(&origin.url()).await);
    let c = Client::default();
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let (c, url) = (c.clone(), rc.url("/f"));
        tasks.push(tokio::spawn(async move {
            let (start, end) = (i * 50, i * 50 + 99);
            let got = range(&c, &url, &format!("bytes={start}-{end}")).await;
            (start as usize, got)
        }));
    }
    for t in tasks {
        let (start, got) = t.await.unwrap();
        assert_eq!(got.status, 206);
        assert_eq!(got.body, body().slice(start..start + 100));
    }
    assert_eq!(origin.requests(), 1);
}

/// An origin that honours `Range` itself, answering `no-store`.
async fn ranged_uncacheable_origin() -> Origin {
    Origin::start(|req, _| {
        let base = || Reply::ok(body()).header("cache-control", "no-store");
        match req.headers.get("range").and_then(|v| v.to_str().ok()) {
            Some("bytes=0-9") => Reply {
                status: 206,
                body: body().slice(0..10),
                ..base()
            }
            .header("content-range", "bytes 0-9/1000"),
            _ => base(),
        }
    })
    .await
}

#[tokio::test]
async fn a_range_of_an_uncacheable_response_is_asked_of_the_upstream() {
    let origin = ranged_uncacheable_origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let first = range(&c, &rc.url("/f"), "bytes=0-9").await;
    assert_eq!(first.status, 206);
    assert_eq!(first.body, body().slice(0..10));
    assert_eq!(
        origin.last().headers.get("range").unwrap(),
        "bytes=0-9",
        "the whole was not kept: the upstream answered the range"
    );
    assert_eq!(origin.requests(), 2);
    // Known uncacheable now: the range goes upstream at once.
    let second = range(&c, &rc.url("/f"), "bytes=0-9").await;
    assert_eq!(second.status, 206);
    assert_eq!(origin.requests(), 3);
    assert_eq!(origin.last().headers.get("range").unwrap(), "bytes=0-9");
}

#[tokio::test]
async fn with_range_miss_forward_a_miss_sends_the_range_and_a_stored_entry_answers() {
    let origin = Origin::start(|req, _| {
        let base = || Reply::ok(body()).header("cache-control", "max-age=60");
        if req.headers.contains_key("range") {
            Reply {
                status: 206,
                body: body().slice(0..10),
                ..base()
            }
            .header("content-range", "bytes 0-9/1000")
        } else {
            base()
        }
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| s.cache.range_miss = RangeMiss::Forward).await;
    let c = Client::default();
    let miss = range(&c, &rc.url("/f"), "bytes=0-9").await;
    assert_eq!(miss.status, 206);
    assert_eq!(origin.last().headers.get("range").unwrap(), "bytes=0-9");
    c.get(&rc.url("/f")).await;
    let hit = range(&c, &rc.url("/f"), "bytes=20-29").await;
    assert!(hit.is_hit());
    assert_eq!(hit.body, body().slice(20..30));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn several_ranges_pass_through_to_the_upstream_and_are_not_stored() {
    let origin = Origin::start(|_, _| {
        Reply::status(206)
            .header("content-type", "multipart/byteranges; boundary=x")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    for _ in 0..2 {
        let got = range(&c, &rc.url("/f"), "bytes=0-0,5-9").await;
        assert_eq!(got.status, 206);
        assert!(got.cache_status().contains("fwd=bypass"));
        assert_eq!(origin.last().headers.get("range").unwrap(), "bytes=0-0,5-9");
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_range_of_a_stale_entry_is_revalidated_first() {
    let origin = Origin::start(|req, n| {
        if n == 0 {
            return Reply::ok(body())
                .header("cache-control", "max-age=1")
                .header("etag", "\"v1\"");
        }
        assert!(!req.headers.contains_key("range"));
        match req.headers.get("if-none-match") {
            Some(_) if n == 1 => Reply::status(304)
                .header("cache-control", "max-age=1")
                .header("etag", "\"v1\""),
            _ => Reply::ok(Bytes::from(vec![b'n'; 1000]))
                .header("cache-control", "max-age=1")
                .header("etag", "\"v2\""),
        }
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    rc.advance(Duration::from_secs(5));
    let revalidated = range(&c, &rc.url("/f"), "bytes=0-9").await;
    assert_eq!(revalidated.status, 206);
    assert_eq!(revalidated.body, body().slice(0..10));
    assert!(
        revalidated.cache_status().contains("fwd=stale"),
        "{}",
        revalidated.cache_status()
    );
    assert!(origin.last().headers.contains_key("if-none-match"));
    rc.advance(Duration::from_secs(5));
    let changed = range(&c, &rc.url("/f"), "bytes=0-9").await;
    assert_eq!(changed.status, 206);
    assert_eq!(
        &changed.body[..],
        b"nnnnnnnnnn",
        "the range is of the new version"
    );
    assert_eq!(changed.header("etag"), Some("\"v2\""));
    assert_eq!(origin.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_a_body_on_disk_is_read_from_its_file() {
    // Larger than the disk tier reads into memory (1 MiB): streamed from
    // its file.
    let big: Bytes = (0..(1536u32 << 10)).map(|i| (i % 251) as u8).collect();
    let served = big.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(served.clone())
            .header("cache-control", "max-age=600")
            .header("etag", "\"d\"")
    })
    .await;
    let dir = temp_dir("range-file");
    // Memory too small for the entry: hits read its body file.
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.data_dir = dir.clone();
        s.cache.memory_limit = 64 << 10;
        s.limits.max_cacheable_body_bytes = 4 << 20;
    })
    .await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/big")).await.body, big);
    assert_eq!(
        support::disk_entries_reach(&c, &rc, 1.0).await,
        1.0,
        "the disk tier stored the entry"
    );
    let got = range(&c, &rc.url("/big"), "bytes=70000-70099").await;
    assert!(got.is_hit(), "{}", got.cache_status());
    assert_eq!(got.status, 206);
    assert_eq!(
        got.header("content-range"),
        Some("bytes 70000-70099/1572864")
    );
    assert_eq!(got.body, big.slice(70000..70100));
    let tail = range(&c, &rc.url("/big"), "bytes=-3").await;
    assert_eq!(tail.body, big.slice(big.len() - 3..));
    assert_eq!(origin.requests(), 1);
    rc.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_head_with_a_range_is_answered_as_a_head_for_the_whole() {
    let origin = origin().await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/f")).await;
    let got = c
        .send(
            "HEAD",
            &rc.url("/f"),
            &[("range", "bytes=0-9")],
            Bytes::new(),
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), Some("1000"));
    assert!(got.header("content-range").is_none());
}
