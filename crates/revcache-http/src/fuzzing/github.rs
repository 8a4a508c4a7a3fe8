//! `github_event`: webhook deliveries (`dialect::github::event`). The
//! first line is the `X-GitHub-Event` name, the rest the payload; the
//! target signs it, so every delivery reaches the parser.

use http::{HeaderMap, HeaderValue};
use ring::hmac;

use crate::dialect::github::event::{Webhooks, parse};

const SECRET: &[u8] = b"fuzzing secret";

/// Never panics; a signed delivery reads as its payload does; the same
/// delivery again, or replayed under a fresh id with its signature
/// spelled otherwise, is a duplicate; an event invalidates something (its
/// repository's catch-all at least, or the whole route) unless it is a
/// ping; repository names are lower case in every tag.
pub fn check_github_event(data: &[u8]) {
    let (event, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"push"[..], data),
    };
    let Ok(event) = HeaderValue::from_bytes(event) else {
        return;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let signature: String = hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", event.clone());
    headers.insert("x-github-delivery", HeaderValue::from_static("d-1"));
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&format!("sha256={signature}")).expect("hex is a header value"),
    );
    let hooks = Webhooks::new(SECRET);
    let Ok(parsed) = hooks.receive(&headers, body) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(body).expect("a received body is JSON");
    let name = event
        .to_str()
        .expect("a received event name is text")
        .trim();
    assert_eq!(parsed, parse(name, &value));
    assert!(parsed.kind.starts_with(name));
    assert!(name == "ping" || parsed.route_wide || !parsed.tags.is_empty());
    if let Some(repo) = &parsed.repo {
        assert_eq!(repo, &repo.to_ascii_lowercase());
        assert!(parsed.tags.contains(&format!("other:{repo}")));
    }
    let again = hooks
        .receive(&headers, body)
        .expect("a redelivery is accepted");
    assert!(again.duplicate, "a redelivery applied twice");
    // The same body under a fresh id, its signature spelled in capitals:
    // still the same delivery.
    headers.insert("x-github-delivery", HeaderValue::from_static("d-2"));
    let upper = format!("sha256={}", signature.to_ascii_uppercase());
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&upper).expect("hex is a header value"),
    );
    let replay = hooks.receive(&headers, body).expect("a replay verifies");
    assert!(
        replay.duplicate,
        "a replay with the signature respelled applied twice"
    );
    headers.insert("x-hub-signature-256", HeaderValue::from_static("sha256=00"));
    assert!(
        hooks.receive(&headers, body).is_err(),
        "a wrong signature accepted"
    );
}
