//! PROPFIND bodies an attacker shapes: what the webdav dialect keys on is
//! bounded, so a body naming thousands of properties or namespaces passes
//! through to the upstream and leaves revcache's memory as it was.

mod support;

use revcache_http::DialectName;
use revcache_http::webdav as xml;
use support::{Client, Origin, Reply, Revcache};

const MULTISTATUS: &str = r#"<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response><D:href>/d/</D:href></D:response></D:multistatus>"#;

/// A 64 KiB PROPFIND: one long namespace named by thousands of properties.
fn expanding_propfind() -> String {
    let ns = "u".repeat(30_000);
    let mut body = format!(r#"<D:propfind xmlns:D="DAV:"><D:prop xmlns:x="{ns}">"#);
    let mut i = 0;
    while body.len() < xml::MAX_PROPFIND_BODY - 64 {
        body.push_str(&format!("<x:p{i}/>"));
        i += 1;
    }
    body.push_str("</D:prop></D:propfind>");
    body
}

/// Thousands of properties, each in a namespace of its own.
fn many_namespaces() -> String {
    let mut body = String::from(r#"<propfind xmlns="DAV:"><prop>"#);
    let mut i = 0;
    while body.len() < xml::MAX_PROPFIND_BODY - 64 {
        body.push_str(&format!(r#"<a xmlns="urn:{i}"/>"#));
        i += 1;
    }
    body.push_str("</prop></propfind>");
    body
}

#[tokio::test]
async fn propfinds_naming_thousands_of_properties_pass_through_without_growing_memory() {
    let origin = Origin::start(|_, _| {
        Reply::status(207)
            .header("content-type", "application/xml")
            .header("cache-control", "max-age=60")
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = DialectName::Webdav;
    })
    .await;
    let c = Client::default();
    let before = xml::interned_bytes();
    for body in [expanding_propfind(), many_namespaces()] {
        for _ in 0..2 {
            let got = c
                .send("PROPFIND", &rc.url("/d/"), &[("depth", "1")], body.clone())
                .await;
            assert_eq!(got.status, 207);
            assert!(
                got.cache_status().contains("fwd=bypass"),
                "{}",
                got.cache_status()
            );
            assert_eq!(origin.last().body.len(), body.len(), "forwarded whole");
        }
    }
    rc.proxy.fills_idle().await;
    assert_eq!(origin.requests(), 4, "none was answered from the cache");
    // Other tests in this process may intern a shape or two meanwhile;
    // these bodies would have added megabytes.
    let grown = xml::interned_bytes().saturating_sub(before);
    assert!(grown < 1024, "the intern pool grew by {grown} bytes");
}

#[tokio::test]
async fn a_bounded_property_set_is_still_cached() {
    let origin = Origin::start(|_, _| {
        Reply {
            status: 207,
            ..Reply::ok(MULTISTATUS)
        }
        .header("content-type", "application/xml")
    })
    .await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.routes[0].dialect = DialectName::Webdav;
        s.routes[0].events = Some(revcache_http::EventSettings {
            trust: Some(std::time::Duration::from_secs(300)),
            heartbeat: None,
            command: None,
            secret_file: None,
        });
    })
    .await;
    let body =
        r#"<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:displayname/></D:prop></D:propfind>"#;
    let c = Client::default();
    c.send("PROPFIND", &rc.url("/d/"), &[("depth", "1")], body)
        .await;
    rc.proxy.fills_idle().await;
    let again = c
        .send("PROPFIND", &rc.url("/d/"), &[("depth", "1")], body)
        .await;
    assert!(again.is_hit(), "{}", again.cache_status());
    assert_eq!(origin.requests(), 1);
}
