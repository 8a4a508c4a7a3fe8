//! The disk tier end to end: a restarted revcache answers from disk.

mod support;

use bytes::Bytes;
use support::{Client, Origin, Reply, Revcache, temp_dir};

const SIZES: [usize; 5] = [10, 16 << 10, 100 << 10, 900 << 10, 3 << 20];

fn body_for(target: &str) -> Bytes {
    let n: usize = target.trim_start_matches("/obj/").parse().unwrap();
    Bytes::from(
        (0..SIZES[n])
            .map(|i| (i * 31 + n) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_serves_every_entry_from_disk() {
    let origin = Origin::start(|req, _| {
        Reply::ok(body_for(&req.target))
            .header("cache-control", "max-age=600")
            .header("etag", format!("\"{}\"", req.target.len()))
    })
    .await;
    let dir = temp_dir("restart");
    let c = Client::default();
    {
        let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
        for n in 0..SIZES.len() {
            assert_eq!(
                c.get(&rc.url(&format!("/obj/{n}"))).await.body,
                body_for(&format!("/obj/{n}"))
            );
        }
        rc.shutdown().await;
    }
    assert_eq!(origin.requests(), SIZES.len());
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
    for (n, size) in SIZES.iter().enumerate() {
        let target = format!("/obj/{n}");
        let got = c.get(&rc.url(&target)).await;
        assert!(got.is_hit(), "{target}: {}", got.cache_status());
        assert_eq!(got.body, body_for(&target), "{target}");
        assert_eq!(
            got.header("content-length"),
            Some(size.to_string().as_str())
        );
        // Twice: the second comes from memory (or the streamed file again).
        assert_eq!(c.get(&rc.url(&target)).await.body, body_for(&target));
        let head = c.send("HEAD", &rc.url(&target), &[], "").await;
        assert!(head.is_hit() && head.body.is_empty());
        let etag = format!("\"{}\"", target.len());
        assert_eq!(
            c.get_with(&rc.url(&target), &[("if-none-match", &etag)])
                .await
                .status,
            304
        );
    }
    assert_eq!(
        origin.requests(),
        SIZES.len(),
        "no request went upstream after the restart"
    );
    let metrics = c.get(&rc.admin_url("/metrics")).await.text();
    assert!(
        support::metric(&metrics, "revcache_tier_entries{tier=\"l2\"}") >= SIZES.len() as f64,
        "{metrics}"
    );
    rc.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_entry_does_not_come_back_after_a_restart() {
    let origin =
        Origin::start(|_, n| Reply::ok(format!("v{n}")).header("cache-control", "max-age=600"))
            .await;
    let dir = temp_dir("purge-restart");
    let c = Client::default();
    {
        let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
        c.get(&rc.url("/p")).await;
        c.get(&rc.url("/q")).await;
        let purged = c
            .send("POST", &rc.admin_url("/purge?url=/p"), &[], "")
            .await;
        assert!(purged.text().contains("\"purged\":1"), "{}", purged.text());
        rc.shutdown().await;
    }
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
    assert!(c.get(&rc.url("/q")).await.is_hit());
    let p = c.get(&rc.url("/p")).await;
    assert!(!p.is_hit());
    assert_eq!(p.text(), "v2");
    rc.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_after_a_restart_costs_one_disk_read_and_no_upstream_request() {
    let origin =
        Origin::start(|_, _| Reply::ok("warm").header("cache-control", "max-age=600")).await;
    let dir = temp_dir("burst");
    {
        let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
        Client::default().get(&rc.url("/hot")).await;
        rc.shutdown().await;
    }
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let url = rc.url("/hot");
            tokio::spawn(async move { Client::default().get(&url).await })
        })
        .collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(got.is_hit(), "{}", got.cache_status());
        assert_eq!(got.text(), "warm");
    }
    assert_eq!(origin.requests(), 1);
    let metrics = Client::default()
        .get(&rc.admin_url("/metrics"))
        .await
        .text();
    assert_eq!(
        support::metric(&metrics, "revcache_disk_lookups_total{result=\"hit\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "revcache_disk_lookups_total{result=\"miss\"}"),
        0.0,
        "{metrics}"
    );
    rc.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_hit_is_served_even_when_memory_cannot_keep_the_entry() {
    let body = Bytes::from(vec![b'd'; 100 << 10]);
    let served = body.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(served.clone())
            .header("cache-control", "max-age=600")
            .header("etag", "\"d\"")
    })
    .await;
    let dir = temp_dir("evicted-promotion");
    // A memory tier smaller than the entry: whatever is promoted from disk
    // leaves memory at once, as it would under heavy memory pressure.
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.data_dir = dir.clone();
        s.cache.memory_limit = 64 << 10;
    })
    .await;
    let c = Client::default();
    assert_eq!(c.get(&rc.url("/big")).await.body, body);
    assert_eq!(
        support::disk_entries_reach(&c, &rc, 1.0).await,
        1.0,
        "the disk tier stored the entry"
    );
    for _ in 0..3 {
        let got = c.get(&rc.url("/big")).await;
        assert!(got.is_hit(), "{}", got.cache_status());
        assert_eq!(got.body, body);
    }
    assert_eq!(origin.requests(), 1, "disk hits never go upstream");
    rc.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_foreign_data_dir_is_refused_with_a_clear_message() {
    let dir = temp_dir("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let mut settings = revcache_http::Settings::for_upstream("http://127.0.0.1:1".parse().unwrap());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = dir.clone();
    let err = revcache_http::Server::bind(settings)
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("not a revcache data dir") && msg.contains("notes.txt"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn inspect_and_sweep_are_served_by_the_admin_api() {
    let origin = Origin::start(|_, _| Reply::ok("x").header("cache-control", "max-age=600")).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get(&rc.url("/i?x=1")).await;
    rc.proxy.cache().flush();
    let inspect = c.get(&rc.admin_url("/inspect?url=/i%3Fx%3D1")).await.text();
    assert!(inspect.contains("\"tier\":\"l1+l2\""), "{inspect}");
    assert!(inspect.contains("/i?x=1"), "{inspect}");
    let sweep = c.send("POST", &rc.admin_url("/sweep"), &[], "").await;
    assert_eq!(sweep.status, 200);
    assert!(sweep.text().contains("\"idle\":0"), "{}", sweep.text());
}

/// The disk lookups `/metrics` counted, hits and misses.
async fn disk_lookups(c: &Client, rc: &Revcache) -> u64 {
    c.get(&rc.admin_url("/metrics"))
        .await
        .text()
        .lines()
        .filter(|l| l.starts_with("revcache_disk_lookups_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_heads_for_an_entry_on_disk_costs_one_disk_read() {
    let origin =
        Origin::start(|_, _| Reply::ok("on disk").header("cache-control", "max-age=600")).await;
    let dir = temp_dir("head-burst");
    let c = Client::default();
    {
        let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
        c.get(&rc.url("/h")).await;
        rc.shutdown().await;
    }
    let rc = Revcache::start_with(&origin.url(), |s| s.data_dir = dir.clone()).await;
    // One HTTP/2 connection, open before the burst: the HEADs arrive
    // together instead of one per new connection.
    let h2 = Client::http2();
    h2.get(&rc.url("/warm")).await;
    let before = disk_lookups(&c, &rc).await;
    let heads: Vec<_> = (0..32)
        .map(|_| {
            let (h2, url) = (h2.clone(), rc.url("/h"));
            tokio::spawn(async move { h2.send("HEAD", &url, &[], "").await })
        })
        .collect();
    for head in heads {
        let head = head.await.unwrap();
        assert_eq!(head.status, 200);
        assert!(head.is_hit(), "{}", head.cache_status());
    }
    assert_eq!(disk_lookups(&c, &rc).await - before, 1);
    assert_eq!(
        origin.requests(),
        2,
        "/h once before the restart, and /warm"
    );
}
