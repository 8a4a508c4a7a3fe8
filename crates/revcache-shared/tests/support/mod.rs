//! A `redis-server` of a test's own, and a shared tier on it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use revcache_shared::{SharedSettings, SharedTier};

/// Started on a free loopback port; stopped when dropped.
pub struct Redis(pub u16, Child);

impl Redis {
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let redis = Redis(port, child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.1.kill();
        let _ = self.1.wait();
    }
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.0)
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the server: it keeps
    /// its connections and answers nothing meanwhile.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.1.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

/// A shared tier on `redis`, as one node would have it.
pub async fn tier(redis: &Redis) -> Arc<SharedTier> {
    tier_with(redis, |_| {}).await
}

/// The same, with `tweak` applied to its settings.
pub async fn tier_with(redis: &Redis, tweak: impl FnOnce(&mut SharedSettings)) -> Arc<SharedTier> {
    let mut settings = SharedSettings::for_url(redis.url());
    tweak(&mut settings);
    SharedTier::connect(settings, "fingerprint").await.unwrap()
}
