//! `https_proxy` and `no_proxy` from the environment, as curl and Go read
//! them. Its own test binary: it sets process environment variables.

mod support;

use revcache_http::ProxySetting;
use support::tls::{Alpn, Pki, tls_origin};
use support::{Client, Revcache, connect_proxy};

#[tokio::test]
async fn the_environment_proxy_is_used_unless_no_proxy_names_the_upstream() {
    let pki = Pki::new();
    // A name only the proxy can resolve: a direct connection fails.
    let origin = tls_origin(&pki.leaf("env", &["origin.test"], false), None, Alpn::Both).await;
    let (proxy, heads) = connect_proxy(&[("origin.test", "127.0.0.1")]).await;
    // SAFETY: this binary's only test; nothing else reads the environment
    // concurrently before revcache starts.
    unsafe {
        std::env::set_var("https_proxy", format!("http://{proxy}"));
        std::env::remove_var("no_proxy");
        std::env::remove_var("NO_PROXY");
    }
    let upstream = format!("https://origin.test:{}", origin.port);
    let ca = pki.ca_file();
    let rc = Revcache::start_with(&upstream, |s| {
        s.routes[0].tls.ca_file = Some(ca.clone());
        assert_eq!(s.routes[0].proxy, ProxySetting::Environment);
    })
    .await;
    let c = Client::default();
    let res = c.get(&rc.url("/a")).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(heads.lock().unwrap().len(), 1);
    drop(rc);

    unsafe { std::env::set_var("no_proxy", "origin.test") };
    let rc = Revcache::start_with(&upstream, |s| s.routes[0].tls.ca_file = Some(ca)).await;
    let res = c.get(&rc.url("/b")).await;
    assert_eq!(
        res.status, 502,
        "direct, and the name does not resolve: {res:?}"
    );
    assert_eq!(
        heads.lock().unwrap().len(),
        1,
        "no_proxy bypassed the proxy"
    );
}
