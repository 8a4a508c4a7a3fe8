//! Credential partitioning: callers never see each other's private entries.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Client, Origin, Reply, Revcache};

fn echo_user() -> impl Fn(&support::Seen, usize) -> Reply + Send + Sync + 'static {
    |req, _| {
        let who = req
            .headers
            .get("authorization")
            .or_else(|| req.headers.get("cookie"))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| "anonymous".into());
        Reply::ok(format!("secret of {who}")).header("cache-control", "max-age=600")
    }
}

#[tokio::test]
async fn two_credentials_never_see_each_others_body() {
    let origin = Origin::start(echo_user()).await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    let url = rc.url("/me");
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    assert_eq!(
        c.get_with(&url, &alice).await.text(),
        "secret of Bearer alice"
    );
    assert_eq!(c.get_with(&url, &bob).await.text(), "secret of Bearer bob");
    let alice_again = c.get_with(&url, &alice).await;
    assert!(alice_again.is_hit());
    assert_eq!(alice_again.text(), "secret of Bearer alice");
    let bob_again = c.get_with(&url, &bob).await;
    assert!(bob_again.is_hit());
    assert_eq!(bob_again.text(), "secret of Bearer bob");
    assert_eq!(c.get(&url).await.text(), "secret of anonymous");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn authenticated_responses_marked_public_are_shared() {
    let origin =
        Origin::start(|_, _| Reply::ok("everyone").header("cache-control", "public, max-age=600"))
            .await;
    let rc = Revcache::start(&origin.url()).await;
    let c = Client::default();
    c.get_with(&rc.url("/p"), &[("authorization", "Bearer alice")])
        .await;
    assert!(
        c.get_with(&rc.url("/p"), &[("authorization", "Bearer bob")])
            .await
            .is_hit()
    );
    assert!(c.get(&rc.url("/p")).await.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn configured_cookies_partition_like_authorization() {
    let origin = Origin::start(echo_user()).await;
    let rc = Revcache::start_with(&origin.url(), |s| {
        s.partition.cookies = vec!["session".into()]
    })
    .await;
    let c = Client::default();
    let url = rc.url("/me");
    assert_eq!(
        c.get_with(&url, &[("cookie", "session=a")]).await.text(),
        "secret of session=a"
    );
    assert_eq!(
        c.get_with(&url, &[("cookie", "session=b")]).await.text(),
        "secret of session=b"
    );
    let a = c.get_with(&url, &[("cookie", "session=a")]).await;
    assert!(a.is_hit());
    assert_eq!(a.text(), "secret of session=a");
}

#[tokio::test]
async fn the_partition_key_is_kept_owner_only_and_credentials_never_touch_disk() {
    // Vary on the credential puts it in the variant: it must be stored hashed.
    let origin = Origin::start(|_, _| {
        Reply::ok("per user")
            .header("cache-control", "public, max-age=600")
            .header("vary", "Authorization, Cookie")
    })
    .await;
    let rc = Revcache::start(&origin.url()).await;
    Client::default()
        .get_with(
            &rc.url("/me"),
            &[
                ("authorization", "Bearer very-secret-token"),
                ("cookie", "session=very-secret-cookie"),
            ],
        )
        .await;
    rc.proxy.cache().flush();
    let key = rc.data_dir.join("partition.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut files = 0;
    let mut stack = vec![rc.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for secret in [&b"very-secret-token"[..], b"very-secret-cookie"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "{} holds a secret",
                    path.display()
                );
            }
        }
    }
    assert!(
        files >= 3,
        "partition key, FORMAT and the index were checked"
    );
    assert!(
        Client::default()
            .get_with(
                &rc.url("/me"),
                &[
                    ("authorization", "Bearer very-secret-token"),
                    ("cookie", "session=very-secret-cookie")
                ],
            )
            .await
            .is_hit()
    );
}
