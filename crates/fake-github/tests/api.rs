//! The fake over real HTTP on loopback.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fake_github::{FakeGithub, Options};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn h(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

async fn call(
    c: &Http,
    method: &str,
    url: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("token {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let res = c.request(req.body(Full::new(body)).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(c: &Http, url: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Answer {
    call(c, "GET", url, token, extra, None).await
}

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook sink answering 200 and keeping what it got.
async fn sink() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let keep = keep.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        keep.lock().unwrap().push((parts.headers, body));
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test]
async fn etag_is_per_token_and_304_is_free() {
    let gh = FakeGithub::start(Options::default()).await;
    gh.add_repo("acme", "widget", true);
    gh.add_installation(7, &["acme/widget"], json!({"pull_requests": "write"}));
    let n = gh
        .open_pull("acme/widget", "feature", "main", "Add widget")
        .await;
    let (a, b) = (gh.mint_installation_token(7), gh.mint_installation_token(7));
    let c = client();
    let url = format!("{}/repos/acme/widget/pulls/{n}", gh.url());
    let ra = get(&c, &url, Some(&a), &[]).await;
    let rb = get(&c, &url, Some(&b), &[]).await;
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(ra.body, rb.body);
    assert_eq!(ra.body["head"]["sha"], json!(gh.head_sha("acme/widget", n)));
    assert_ne!(ra.h("etag"), rb.h("etag"));
    assert!(ra.h("etag").starts_with("W/\""));
    assert_eq!(ra.h("cache-control"), "private, max-age=60, s-maxage=60");
    let vary: Vec<_> = ra.headers.get_all("vary").iter().collect();
    assert_eq!(vary.len(), 2);
    assert!(!ra.h("last-modified").is_empty());
    assert_eq!(rb.h("x-ratelimit-remaining"), "4998");
    assert_eq!(rb.h("x-ratelimit-resource"), "core");

    let etag = ra.h("etag");
    let inm = format!("\"nope\", {}", etag.trim_start_matches("W/"));
    let nm = get(&c, &url, Some(&a), &[("if-none-match", &inm)]).await;
    assert_eq!(nm.status, 304);
    assert_eq!(nm.h("etag"), etag);
    assert_eq!(nm.h("x-ratelimit-remaining"), "4998");
    // Another token's ETag does not match.
    let other = get(&c, &url, Some(&b), &[("if-none-match", &etag)]).await;
    assert_eq!(other.status, 200);
    let s = gh.served();
    assert_eq!(s.not_modified, 1);
    assert_eq!(s.units["installation:7"], 3);
    assert_eq!(s.remaining["installation:7"], 4997);
    assert_eq!(s.by_class["pull"], 4);

    // Anonymous and non-members see nothing of a private repository.
    assert_eq!(get(&c, &url, None, &[]).await.status, 404);
    let bob = gh.add_user("bob");
    assert_eq!(get(&c, &url, Some(&bob), &[]).await.status, 404);
    gh.add_member("acme/widget", "bob").await;
    assert_eq!(get(&c, &url, Some(&bob), &[]).await.status, 200);
    assert_eq!(get(&c, &url, Some("ghp_unknown"), &[]).await.status, 401);
}

#[tokio::test]
async fn pagination_links_point_back_through_the_host() {
    let gh = FakeGithub::start(Options::default()).await;
    gh.add_repo("acme", "widget", false);
    for i in 0..5 {
        gh.open_pull(
            "acme/widget",
            &format!("f{i}"),
            "main",
            &format!("pull {i}"),
        )
        .await;
    }
    let c = client();
    let url = format!(
        "{}/repos/acme/widget/pulls?state=all&per_page=2&page=2",
        gh.url()
    );
    let r = get(
        &c,
        &url,
        None,
        &[
            ("host", "proxy.example:8443"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let numbers: Vec<u64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2]);
    let link = r.h("link");
    let base = "https://proxy.example:8443/repos/acme/widget/pulls?state=all&per_page=2";
    assert!(
        link.contains(&format!("<{base}&page=1>; rel=\"prev\"")),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{base}&page=3>; rel=\"next\"")),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{base}&page=3>; rel=\"last\"")),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{base}&page=1>; rel=\"first\"")),
        "{link}"
    );
    let last = get(
        &c,
        &format!(
            "{}/repos/acme/widget/pulls?state=all&per_page=2&page=3",
            gh.url()
        ),
        None,
        &[],
    )
    .await;
    assert_eq!(last.body.as_array().unwrap().len(), 1);
    assert!(!last.h("link").contains("rel=\"next\""));
    assert_eq!(last.h("x-ratelimit-limit"), "60");
}

#[tokio::test]
async fn webhooks_are_signed_and_in_order() {
    let gh = FakeGithub::start(Options::default()).await;
    let (url, got) = sink().await;
    gh.add_repo("acme", "widget", false);
    gh.set_webhook(Some(&url), b"s3cret");
    let n = gh
        .open_pull("acme/widget", "feature", "main", "Add widget")
        .await;
    let before = gh.head_sha("acme/widget", n);
    let after = gh.push("acme/widget", "feature").await;
    assert_eq!(gh.head_sha("acme/widget", n), after);
    let events: Vec<String> = gh.deliveries().into_iter().map(|d| d.0).collect();
    assert_eq!(events, ["pull_request", "push", "pull_request"]);
    assert!(gh.deliveries().iter().all(|d| d.2 == 200));
    let seen = got_all(&got);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    for (h, body) in &seen {
        let sig = h["x-hub-signature-256"].to_str().unwrap();
        let raw: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&sig[7 + 2 * i..9 + 2 * i], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, body, &raw).expect("signature verifies");
        assert_eq!(h["user-agent"], "GitHub-Hookshot/fake");
    }
    let sync: Value = serde_json::from_slice(&seen[2].1).unwrap();
    assert_eq!(sync["action"], "synchronize");
    assert_eq!(sync["before"], json!(before));
    assert_eq!(sync["pull_request"]["head"]["sha"], json!(after));
    assert_eq!(sync["repository"]["full_name"], "acme/widget");
    let push: Value = serde_json::from_slice(&seen[1].1).unwrap();
    assert_eq!(push["ref"], "refs/heads/feature");
    assert_eq!(push["after"], json!(after));

    assert_eq!(gh.redeliver_last().await, 200);
    let d = gh.deliveries();
    assert_eq!(d[2].1, d[3].1);
    assert_eq!(gh.send_raw_webhook("push", "{}", None).await, 200);
    // The raw delivery is not recorded, and went unsigned.
    assert_eq!(gh.deliveries().len(), 4);
    let all = got_all(&got);
    assert!(!all.last().unwrap().0.contains_key("x-hub-signature-256"));
}

fn got_all(got: &Received) -> Vec<(HeaderMap, Bytes)> {
    got.lock().unwrap().clone()
}

#[tokio::test]
async fn visibility_lag_serves_the_old_body_n_times() {
    let gh = FakeGithub::start(Options::default()).await;
    let (url, _got) = sink().await;
    gh.add_repo("acme", "widget", false);
    let n = gh.open_pull("acme/widget", "feature", "main", "Old").await;
    let c = client();
    let purl = format!("{}/repos/acme/widget/pulls/{n}", gh.url());
    let old = get(&c, &purl, None, &[]).await;
    gh.set_webhook(Some(&url), b"k");
    gh.lag_next_mutation(2);
    gh.edit_title("acme/widget", n, "New").await;
    assert_eq!(gh.deliveries().len(), 1, "the webhook came first");
    for _ in 0..2 {
        let r = get(&c, &purl, None, &[]).await;
        assert_eq!(r.body["title"], "Old");
        assert_eq!(r.h("etag"), old.h("etag"));
    }
    let r = get(&c, &purl, None, &[]).await;
    assert_eq!(r.body["title"], "New");
    assert_ne!(r.h("etag"), old.h("etag"));
    assert!(r.body["updated_at"].as_str() > old.body["updated_at"].as_str());
}

#[tokio::test]
async fn secondary_and_primary_limits() {
    let gh = FakeGithub::start(Options::default()).await;
    gh.add_repo("acme", "widget", false);
    let alice = gh.add_user("alice");
    let c = client();
    let url = format!("{}/repos/acme/widget", gh.url());
    gh.trip_secondary_limit(30);
    let r = get(&c, &url, Some(&alice), &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.h("retry-after"), "30");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    gh.advance_clock(30);
    assert_eq!(get(&c, &url, Some(&alice), &[]).await.status, 200);
    gh.trip_secondary_limit_with_status(10, 429);
    assert_eq!(get(&c, &url, Some(&alice), &[]).await.status, 429);
    gh.clear_secondary_limit();

    gh.set_remaining(&gh.bucket_of(&alice).unwrap(), 1);
    let ok = get(&c, &url, Some(&alice), &[]).await;
    assert_eq!(
        (ok.status, ok.h("x-ratelimit-remaining").as_str()),
        (200, "0")
    );
    let limited = get(&c, &url, Some(&alice), &[]).await;
    assert_eq!(limited.status, 403);
    assert!(
        limited.body["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded")
    );
    // /rate_limit is free and still answers.
    let rl = get(&c, &format!("{}/rate_limit", gh.url()), Some(&alice), &[]).await;
    assert_eq!(rl.status, 200);
    assert_eq!(rl.body["resources"]["core"]["remaining"], 0);
    // GraphQL has a bucket of its own.
    let q = call(
        &c,
        "POST",
        &format!("{}/graphql", gh.url()),
        Some(&alice),
        &[],
        Some(json!({"query": "{viewer{login}}"})),
    )
    .await;
    assert_eq!(q.status, 200);
    assert_eq!(q.body["data"]["viewer"]["login"], "alice");
    assert_eq!(q.h("x-ratelimit-resource"), "graphql");
    assert_eq!(gh.served().graphql, 1);
}

#[tokio::test]
async fn app_tokens_and_writes() {
    let gh = FakeGithub::start(Options::default()).await;
    let (url, got) = sink().await;
    gh.add_repo("acme", "widget", true);
    gh.add_repo("acme", "gadget", true);
    gh.add_installation(
        9,
        &["acme/widget", "acme/gadget"],
        json!({"issues": "write", "pull_requests": "write"}),
    );
    gh.set_webhook(Some(&url), b"k");
    let n = gh.open_pull("acme/widget", "feature", "main", "Add").await;
    let c = client();
    let jwt = gh.app_jwt();
    let r = call(
        &c,
        "POST",
        &format!("{}/app/installations/9/access_tokens", gh.url()),
        None,
        &[("authorization", &format!("Bearer {jwt}"))],
        Some(json!({"repositories": ["widget"], "permissions": {"issues": "read"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["repository_selection"], "selected");
    assert_eq!(r.body["permissions"], json!({"issues": "read"}));
    assert_eq!(r.body["repositories"][0]["full_name"], "acme/widget");
    let tok = r.body["token"].as_str().unwrap().to_owned();
    assert!(tok.starts_with("ghs_"));
    let bearer = format!("Bearer {tok}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(
        get(&c, &format!("{}/repos/acme/widget", gh.url()), None, &auth)
            .await
            .status,
        200
    );
    assert_eq!(
        get(&c, &format!("{}/repos/acme/gadget", gh.url()), None, &auth)
            .await
            .status,
        404
    );

    let w = call(
        &c,
        "POST",
        &format!("{}/repos/acme/widget/issues/{n}/comments", gh.url()),
        None,
        &auth,
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!(w.status, 201);
    assert_eq!(w.body["user"]["login"], "fake-app[bot]");
    let last: Value = serde_json::from_slice(&got.lock().unwrap().last().unwrap().1).unwrap();
    assert_eq!(last["comment"]["body"], "hi");
    assert_eq!(last["installation"]["id"], 9);
    let m = call(
        &c,
        "PUT",
        &format!("{}/repos/acme/widget/pulls/{n}/merge", gh.url()),
        None,
        &auth,
        None,
    )
    .await;
    assert_eq!(m.status, 200);
    let events: Vec<String> = gh.deliveries().into_iter().map(|d| d.0).collect();
    assert_eq!(
        events,
        ["pull_request", "issue_comment", "pull_request", "push"]
    );
    let p = get(
        &c,
        &format!("{}/repos/acme/widget/pulls/{n}", gh.url()),
        None,
        &auth,
    )
    .await;
    assert_eq!(
        (p.body["merged"].as_bool(), p.body["state"].as_str()),
        (Some(true), Some("closed"))
    );
    // Both tokens of the installation draw from one bucket.
    let minted = gh.mint_installation_token(9);
    assert_eq!(gh.bucket_of(&minted), gh.bucket_of(&tok));
    assert_eq!(gh.served().units["installation:9"], 5);
}

#[tokio::test]
async fn serves_https_when_given_a_tls_config() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let gh = FakeGithub::start(Options {
        tls: Some(Arc::new(server)),
        ..Options::default()
    })
    .await;
    gh.add_repo("acme", "widget", false);
    assert!(gh.url().starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gh.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/repos/acme/widget")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["full_name"], "acme/widget");
    assert!(body["url"].as_str().unwrap().starts_with("https://"));
}
