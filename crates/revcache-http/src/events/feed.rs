//! Feed health and trust.
//!
//! While a route's feed is healthy, entries it covers are served without
//! asking the upstream for up to `trust`, provided they were fetched after
//! the feed last became healthy: a gap (`dropped-output`, a command that
//! exited, a webhook silent past its heartbeat) means events may have been
//! lost, so everything fetched before it must be revalidated first.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub struct Feed {
    trust: Option<Duration>,
    heartbeat: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    connected: bool,
    healthy_since: SystemTime,
    last_event: SystemTime,
}

impl Feed {
    /// `connected`: events can arrive now (a webhook feed); a command feed
    /// starts disconnected until its process runs.
    pub fn new(trust: Option<Duration>, heartbeat: Option<Duration>, connected: bool) -> Self {
        let now = SystemTime::now();
        Feed {
            trust,
            heartbeat,
            state: Mutex::new(State {
                connected,
                healthy_since: now,
                last_event: now,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn healthy_in(&self, s: &State, now: SystemTime) -> bool {
        s.connected
            && self
                .heartbeat
                .is_none_or(|h| now.duration_since(s.last_event).unwrap_or_default() <= h)
    }

    pub fn healthy(&self, now: SystemTime) -> bool {
        let s = self.state();
        self.healthy_in(&s, now)
    }

    /// An event arrived. After silence past the heartbeat, trust restarts now.
    pub fn received(&self, now: SystemTime) {
        let mut s = self.state();
        if !self.healthy_in(&s, now) && s.connected {
            s.healthy_since = now;
        }
        s.last_event = now;
    }

    /// Events were lost (e.g. `dropped-output`).
    pub fn gap(&self, now: SystemTime) {
        let mut s = self.state();
        s.healthy_since = now;
    }

    pub fn connected(&self, now: SystemTime) {
        let mut s = self.state();
        s.connected = true;
        s.healthy_since = now;
        s.last_event = now;
    }

    pub fn disconnected(&self) {
        self.state().connected = false;
    }

    /// Since when the feed has been healthy without a gap, if it is now.
    pub fn healthy_since(&self, now: SystemTime) -> Option<SystemTime> {
        let s = self.state();
        self.healthy_in(&s, now).then_some(s.healthy_since)
    }

    /// Whether an entry whose request was sent at `fetched_at` may be served
    /// without asking.
    pub fn trusts(&self, fetched_at: SystemTime, now: SystemTime) -> bool {
        let Some(trust) = self.trust else {
            return false;
        };
        self.healthy_since(now).is_some_and(|since| {
            fetched_at >= since && now.duration_since(fetched_at).unwrap_or_default() <= trust
        })
    }

    pub fn trust(&self) -> Option<Duration> {
        self.trust
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_covers_entries_fetched_since_the_last_gap_for_the_trust_window() {
        let feed = Feed::new(Some(Duration::from_secs(60)), None, true);
        let t0 = SystemTime::now();
        let after = t0 + Duration::from_secs(1);
        assert!(feed.trusts(after, after + Duration::from_secs(30)));
        assert!(!feed.trusts(after, after + Duration::from_secs(61)));
        feed.gap(after + Duration::from_secs(2));
        assert!(
            !feed.trusts(after, after + Duration::from_secs(3)),
            "fetched before the gap"
        );
        assert!(feed.trusts(
            after + Duration::from_secs(2),
            after + Duration::from_secs(3)
        ));
    }

    #[test]
    fn a_silent_webhook_past_its_heartbeat_is_unhealthy_until_the_next_event() {
        let feed = Feed::new(
            Some(Duration::from_secs(600)),
            Some(Duration::from_secs(10)),
            true,
        );
        let t0 = SystemTime::now();
        assert!(feed.healthy(t0));
        let late = t0 + Duration::from_secs(11);
        assert!(!feed.healthy(late));
        assert!(!feed.trusts(t0, late));
        feed.received(late);
        assert!(feed.healthy(late));
        assert!(
            !feed.trusts(t0, late + Duration::from_secs(1)),
            "fetched before the silence"
        );
    }

    #[test]
    fn a_disconnected_command_feed_trusts_nothing() {
        let feed = Feed::new(Some(Duration::from_secs(600)), None, false);
        let now = SystemTime::now();
        assert!(!feed.trusts(now, now));
        feed.connected(now);
        assert!(feed.trusts(now, now));
        feed.disconnected();
        assert!(!feed.trusts(now, now));
    }

    #[test]
    fn without_trust_nothing_is_trusted() {
        let feed = Feed::new(None, None, true);
        let now = SystemTime::now();
        assert!(!feed.trusts(now, now));
        assert!(feed.healthy_since(now).is_some());
    }
}
