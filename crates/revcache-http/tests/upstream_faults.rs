//! Upstream faults: a scriptable faulty origin on raw TCP (slow headers, a
//! slow body, a reset mid-body, a garbage status line, oversized headers,
//! a wrong Content-Length, a half-close) against revcache. For each fault:
//! the client gets the right 502/504 with a clear body (or, once a 200's
//! head went out, a body cut short, never a complete-looking one), a
//! stale entry answers where its directives allow, nothing torn is stored,
//! and no waiter of the single flight is left behind.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use support::Revcache;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the origin does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A complete, cacheable 200 (`max-age=1`, `stale-if-error=600`).
    Healthy,
    /// Headers later than revcache's read timeout.
    SlowHeaders,
    /// Headers, half the body, then nothing past the read timeout.
    SlowBody,
    /// Headers, half the body, then a TCP reset.
    ResetMidBody,
    /// Not HTTP.
    GarbageStatusLine,
    /// A header block far beyond any sane limit.
    OversizedHeaders,
    /// Declares more body than it sends, then closes.
    ShortContentLength,
    /// Half-closes (shuts its write side) before any answer.
    HalfCloseBeforeAnswer,
}

const BODY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct FaultyOrigin {
    url: String,
    fault: Arc<parking_lot::Mutex<Fault>>,
    requests: Arc<AtomicUsize>,
}

impl FaultyOrigin {
    async fn start() -> FaultyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(parking_lot::Mutex::new(Fault::Healthy));
        let requests = Arc::new(AtomicUsize::new(0));
        let (f, r) = (fault.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, f.clone(), r.clone()));
            }
        });
        FaultyOrigin {
            url,
            fault,
            requests,
        }
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock() = fault;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(mut s: TcpStream, fault: Arc<parking_lot::Mutex<Fault>>, seen: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    while support::next_request_head(&mut s, &mut buf).await {
        seen.fetch_add(1, Ordering::SeqCst);
        let fault = *fault.lock();
        if !answer(&mut s, fault).await {
            return;
        }
    }
}

fn head(len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\ncache-control: max-age=1, stale-if-error=600\r\netag: \"v1\"\r\n\r\n"
    )
    .into_bytes()
}

/// Answers one request; `false` when the connection is done.
async fn answer(s: &mut TcpStream, fault: Fault) -> bool {
    let half = BODY.len() / 2;
    match fault {
        Fault::Healthy => {
            let mut out = head(BODY.len());
            out.extend_from_slice(BODY);
            s.write_all(&out).await.is_ok()
        }
        Fault::SlowHeaders => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut out = head(BODY.len());
            out.extend_from_slice(BODY);
            let _ = s.write_all(&out).await;
            false
        }
        Fault::SlowBody => {
            let mut out = head(BODY.len());
            out.extend_from_slice(&BODY[..half]);
            let _ = s.write_all(&out).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = s.write_all(&BODY[half..]).await;
            false
        }
        Fault::ResetMidBody => {
            let mut out = head(BODY.len());
            out.extend_from_slice(&BODY[..half]);
            let _ = s.write_all(&out).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Linger 0: close sends a reset, not a FIN.
            let _ = s.set_zero_linger();
            false
        }
        Fault::GarbageStatusLine => {
            let _ = s.write_all(b"SMTP ready, not HTTP at all\r\n\r\n").await;
            false
        }
        Fault::OversizedHeaders => {
            let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..4000 {
                out.extend_from_slice(format!("x-filler-{i}: {}\r\n", "y".repeat(100)).as_bytes());
            }
            out.extend_from_slice(b"content-length: 0\r\n\r\n");
            let _ = s.write_all(&out).await;
            false
        }
        Fault::ShortContentLength => {
            let mut out = head(BODY.len() * 4);
            out.extend_from_slice(BODY);
            let _ = s.write_all(&out).await;
            false
        }
        Fault::HalfCloseBeforeAnswer => {
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            false
        }
    }
}

/// A GET whose body may fail: (status, body or why it failed).
async fn get(url: &str) -> (u16, Result<Bytes, String>) {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = client
        .get(url.parse().unwrap())
        .await
        .expect("revcache answers");
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    (status, body)
}

async fn revcache(origin: &FaultyOrigin) -> Revcache {
    Revcache::start_with(&origin.url, |s| {
        s.limits.upstream_read_timeout = Duration::from_millis(300);
        s.limits.collapsed_wait_timeout = Duration::from_secs(5);
    })
    .await
}

/// What a client is expected to see for a fault with nothing stored.
enum Expect {
    /// This status, with this in the body.
    Status(u16, &'static str),
    /// A 200 whose body fails before it is complete.
    CutShort,
}

fn expected(fault: Fault) -> Expect {
    match fault {
        Fault::SlowHeaders => Expect::Status(504, "upstream read timeout"),
        Fault::GarbageStatusLine | Fault::OversizedHeaders | Fault::HalfCloseBeforeAnswer => {
            Expect::Status(502, "upstream")
        }
        Fault::SlowBody | Fault::ResetMidBody | Fault::ShortContentLength => Expect::CutShort,
        Fault::Healthy => unreachable!(),
    }
}

const FAULTS: [Fault; 7] = [
    Fault::SlowHeaders,
    Fault::SlowBody,
    Fault::ResetMidBody,
    Fault::GarbageStatusLine,
    Fault::OversizedHeaders,
    Fault::ShortContentLength,
    Fault::HalfCloseBeforeAnswer,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_gets_a_clear_answer_stores_nothing_and_strands_no_waiter() {
    let origin = FaultyOrigin::start().await;
    let rc = revcache(&origin).await;
    for (i, fault) in FAULTS.into_iter().enumerate() {
        origin.set(fault);
        let url = rc.url(&format!("/f{i}"));
        // Five clients at once: one leads, four wait for it; none hangs.
        let clients: Vec<_> = (0..5)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { get(&url).await })
            })
            .collect();
        for c in clients {
            let (status, body) = tokio::time::timeout(Duration::from_secs(10), c)
                .await
                .unwrap_or_else(|_| panic!("{fault:?}: a client was left waiting"))
                .unwrap();
            match expected(fault) {
                Expect::Status(want, says) => {
                    assert_eq!(status, want, "{fault:?}");
                    let text =
                        String::from_utf8_lossy(&body.expect("a whole error body")).into_owned();
                    assert!(text.contains(says), "{fault:?}: {text}");
                }
                Expect::CutShort => match (status, body) {
                    // The head had gone out: the body must not look whole.
                    (200, Ok(b)) => panic!("{fault:?}: a torn body looked whole: {b:?}"),
                    (200, Err(_)) => {}
                    // A waiter that joined after the leader failed asks
                    // again and may see the fault's own answer.
                    (502 | 504, Ok(_)) => {}
                    (s, b) => panic!("{fault:?}: {s} {b:?}"),
                },
            }
        }
        rc.proxy.fills_idle().await;
        // Nothing torn was stored: once the origin heals, the next GET
        // goes upstream and gets the whole body.
        origin.set(Fault::Healthy);
        let before = origin.requests();
        let (status, body) = get(&url).await;
        assert_eq!((status, body.as_deref()), (200, Ok(BODY)), "{fault:?}");
        assert_eq!(
            origin.requests(),
            before + 1,
            "{fault:?}: served from cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_answers_for_an_upstream_that_fails_before_its_headers() {
    let origin = FaultyOrigin::start().await;
    let rc = revcache(&origin).await;
    for (i, fault) in FAULTS.into_iter().enumerate() {
        let url = rc.url(&format!("/s{i}"));
        origin.set(Fault::Healthy);
        assert_eq!(get(&url).await.1.as_deref(), Ok(BODY));
        rc.proxy.fills_idle().await;
        // Stale now (max-age=1), within stale-if-error=600.
        rc.advance(Duration::from_secs(5));
        origin.set(fault);
        let (status, body) = get(&url).await;
        match expected(fault) {
            // Failed before a status: the stale entry answers whole.
            Expect::Status(..) => {
                assert_eq!((status, body.as_deref()), (200, Ok(BODY)), "{fault:?}");
            }
            // A 200 head arrived: the new answer was already under way
            // and is cut short; the stale entry is kept for the next.
            Expect::CutShort => {
                assert!(
                    status == 200 && body.is_err(),
                    "{fault:?}: {status} {body:?}"
                );
                let (status, body) = get(&url).await;
                assert_eq!(status, 200, "{fault:?}");
                if let Ok(b) = body {
                    assert_eq!(b.as_ref(), BODY, "{fault:?}: torn body stored");
                }
            }
        }
        rc.proxy.fills_idle().await;
    }
}
