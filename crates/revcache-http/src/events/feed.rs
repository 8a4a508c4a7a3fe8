//! Feed health and trust.
//!
//! While a route's feed is healthy, entries it covers are served without
//! asking the upstream for up to `trust`, provided they were fetched after
//! the feed last became healthy: a gap (`dropped-output`, a command that
//! exited, a webhook silent past its heartbeat) means events may have been
//! lost, so everything fetched before it must be revalidated first.
//!
//! Every cached request on a feed route reads its health, so it is kept in
//! atomics, not behind a lock. `healthy_since` and `last_event` only move
//! forward (`fetch_max`): a writer holding an older instant can never undo
//! a newer gap. `connected` is set last, after the instant trust restarts
//! from, so nobody sees a connected feed with the trust of before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Feed {
    trust: Option<Duration>,
    heartbeat: Option<Duration>,
    connected: AtomicBool,
    /// Trust is off whatever else holds (the shared tier's stream cannot
    /// be read: another node's invalidations may be missed).
    suspended: AtomicBool,
    /// Microseconds since the Unix epoch.
    healthy_since: AtomicU64,
    /// Microseconds since the Unix epoch.
    last_event: AtomicU64,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn instant(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

impl Feed {
    /// `connected`: events can arrive now (a webhook feed); a command feed
    /// starts disconnected until its process runs. Trust starts at `now`.
    pub fn new(
        trust: Option<Duration>,
        heartbeat: Option<Duration>,
        connected: bool,
        now: SystemTime,
    ) -> Self {
        Feed {
            trust,
            heartbeat,
            connected: AtomicBool::new(connected),
            suspended: AtomicBool::new(false),
            healthy_since: AtomicU64::new(micros(now)),
            last_event: AtomicU64::new(micros(now)),
        }
    }

    pub fn healthy(&self, now: SystemTime) -> bool {
        !self.suspended.load(Ordering::Acquire)
            && self.connected.load(Ordering::Acquire)
            && self.heartbeat.is_none_or(|h| {
                micros(now).saturating_sub(self.last_event.load(Ordering::Acquire))
                    <= u64::try_from(h.as_micros()).unwrap_or(u64::MAX)
            })
    }

    /// An event arrived. After silence past the heartbeat, trust restarts now.
    pub fn received(&self, now: SystemTime) {
        if !self.healthy(now) && self.connected.load(Ordering::Acquire) {
            self.healthy_since.fetch_max(micros(now), Ordering::AcqRel);
        }
        self.last_event.fetch_max(micros(now), Ordering::AcqRel);
    }

    /// Events were lost (e.g. `dropped-output`).
    pub fn gap(&self, now: SystemTime) {
        self.healthy_since.fetch_max(micros(now), Ordering::AcqRel);
    }

    pub fn connected(&self, now: SystemTime) {
        self.healthy_since.fetch_max(micros(now), Ordering::AcqRel);
        self.last_event.fetch_max(micros(now), Ordering::AcqRel);
        self.connected.store(true, Ordering::Release);
    }

    /// Suspends trust until `resume`.
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::Release);
    }

    /// Ends a suspension: trust starts over at `now` (what was fetched
    /// before may have missed invalidations).
    pub fn resume(&self, now: SystemTime) {
        self.healthy_since.fetch_max(micros(now), Ordering::AcqRel);
        self.suspended.store(false, Ordering::Release);
    }

    pub fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
    }

    /// The feed's health as its lease holder reports it to the other
    /// nodes of a shared tier: `healthy <since, µs>` or `down`.
    pub fn report(&self, now: SystemTime) -> String {
        match self.healthy_since(now) {
            Some(since) => format!("healthy {}", micros(since)),
            None => "down".to_owned(),
        }
    }

    /// Follows the health the lease holder of the feed reports (`None`:
    /// nobody holds it): a node that does not run the feed itself trusts
    /// what the holder's feed covers, from when it last became healthy.
    pub fn follow(&self, report: Option<&str>, now: SystemTime) {
        let since = report
            .and_then(|r| r.strip_prefix("healthy "))
            .and_then(|m| m.parse::<u64>().ok())
            .filter(|m| *m <= micros(now).saturating_add(60_000_000));
        match since {
            Some(since) => {
                self.healthy_since.fetch_max(since, Ordering::AcqRel);
                self.last_event.fetch_max(micros(now), Ordering::AcqRel);
                self.connected.store(true, Ordering::Release);
            }
            None => self.disconnected(),
        }
    }

    /// Since when the feed has been healthy without a gap, if it is now.
    pub fn healthy_since(&self, now: SystemTime) -> Option<SystemTime> {
        self.healthy(now)
            .then(|| instant(self.healthy_since.load(Ordering::Acquire)))
    }

    /// Whether an entry whose request was sent at `fetched_at` may be served
    /// without asking.
    pub fn trusts(&self, fetched_at: SystemTime, now: SystemTime) -> bool {
        let Some(trust) = self.trust else {
            return false;
        };
        self.healthy_since(now).is_some_and(|since| {
            micros(fetched_at) >= micros(since)
                && now.duration_since(fetched_at).unwrap_or_default() <= trust
        })
    }

    pub fn trust(&self) -> Option<Duration> {
        self.trust
    }

    /// When the last event arrived (or the feed last connected).
    pub fn last_event(&self) -> SystemTime {
        instant(self.last_event.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_trusts_what_the_holders_feed_covers_and_nothing_when_it_is_down() {
        let t0 = SystemTime::now();
        let trust = Some(Duration::from_secs(60));
        let holder = Feed::new(trust, None, false, t0);
        let follower = Feed::new(trust, None, false, t0);
        let t1 = t0 + Duration::from_secs(1);
        holder.connected(t1);
        follower.follow(Some(&holder.report(t1)), t1);
        let t2 = t1 + Duration::from_secs(1);
        assert!(follower.trusts(t2, t2));
        assert!(
            !follower.trusts(t0, t2),
            "fetched before the holder connected"
        );
        // The holder's gap moves the follower's trust on.
        let t3 = t2 + Duration::from_secs(1);
        holder.gap(t3);
        follower.follow(Some(&holder.report(t3)), t3);
        assert!(!follower.trusts(t2, t3));
        for down in [
            None,
            Some("down"),
            Some("healthy x"),
            Some("healthy 99999999999999999"),
        ] {
            follower.follow(down, t3);
            assert!(!follower.trusts(t3, t3), "{down:?}");
            follower.follow(Some(&holder.report(t3)), t3);
        }
    }

    #[test]
    fn trust_covers_entries_fetched_since_the_last_gap_for_the_trust_window() {
        let t0 = SystemTime::now();
        let feed = Feed::new(Some(Duration::from_secs(60)), None, true, t0);
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
        let t0 = SystemTime::now();
        let feed = Feed::new(
            Some(Duration::from_secs(600)),
            Some(Duration::from_secs(10)),
            true,
            t0,
        );
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
        let now = SystemTime::now();
        let feed = Feed::new(Some(Duration::from_secs(600)), None, false, now);
        assert!(!feed.trusts(now, now));
        feed.connected(now);
        assert!(feed.trusts(now, now));
        feed.disconnected();
        assert!(!feed.trusts(now, now));
    }

    #[test]
    fn without_trust_nothing_is_trusted() {
        let now = SystemTime::now();
        let feed = Feed::new(None, None, true, now);
        assert!(!feed.trusts(now, now));
        assert!(feed.healthy_since(now).is_some());
    }

    #[test]
    fn a_suspended_feed_trusts_nothing_and_starts_over_when_resumed() {
        let t0 = SystemTime::now();
        let feed = Feed::new(Some(Duration::from_secs(600)), None, true, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert!(feed.trusts(t0, t1));
        feed.suspend();
        assert!(!feed.trusts(t0, t1));
        feed.resume(t1);
        assert!(!feed.trusts(t0, t1), "fetched before the suspension ended");
        assert!(feed.trusts(t1, t1));
    }

    #[test]
    fn a_late_writer_cannot_undo_a_newer_gap() {
        let t0 = SystemTime::now();
        let feed = Feed::new(Some(Duration::from_secs(600)), None, true, t0);
        let gap = t0 + Duration::from_secs(10);
        feed.gap(gap);
        // A command feed reconnecting with an instant read before the gap.
        feed.connected(t0 + Duration::from_secs(5));
        assert!(!feed.trusts(t0 + Duration::from_secs(6), gap));
        assert!(feed.trusts(gap, gap));
    }
}
