//! The push state of one downstream connection, whatever its transport: the planner's session
//! and the pushes in flight with their cancel flags.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dashpush_plan::{PlanConfig, Session};
use dashpush_proto::limits;
use url::Url;

use super::Stop;

/// The cancel flag of one push in flight: set by a new cycle that replaces it, or by the
/// client refusing it (WebSocket Segment cancel; HTTP/2 refusals arrive on the stream itself).
#[derive(Debug, Default)]
pub(crate) struct CancelFlag(AtomicU8);

const LIVE: u8 = 0;
const REPLACED: u8 = 1;
const REFUSED: u8 = 2;

impl CancelFlag {
    /// Why the push must stop, if it must.
    pub(crate) fn get(&self) -> Option<Stop> {
        match self.0.load(Ordering::Relaxed) {
            LIVE => None,
            REPLACED => Some(Stop::Replaced),
            _ => Some(Stop::Refused),
        }
    }

    fn set(&self, why: u8) {
        // A refusal wins over a replacement: it is what the client said.
        self.0.fetch_max(why, Ordering::Relaxed);
    }
}

/// One connection's push state, shared by its request tasks.
#[derive(Debug, Default)]
pub(crate) struct PushConn {
    /// Created with the first request that needs it; boxed, so a connection that never
    /// pushes holds a pointer, not the session (memory per idle connection).
    session: Mutex<Option<Box<Session>>>,
    /// Promised, unfinished pushes by URL.
    active: Mutex<HashMap<Url, Arc<CancelFlag>>>,
    /// URLs the client refused before any push of them was promised (a cancel can overtake
    /// the request task that plans them); bounded, oldest first out.
    refused_early: Mutex<VecDeque<Url>>,
    /// What the connection has drained lately.
    drained: Mutex<DrainMeter>,
}

/// Body bytes a connection took (sent within its flow-control window, or accepted by a socket
/// whose send queue is bounded) over the last [`DrainMeter::WINDOW`], in slots of
/// [`DrainMeter::SLOT`].
#[derive(Debug, Default)]
pub(crate) struct DrainMeter {
    /// (slot start, bytes), oldest first.
    slots: VecDeque<(Instant, u64)>,
    /// When the first bytes were counted.
    since: Option<Instant>,
}

impl DrainMeter {
    /// How far back the rate looks.
    pub(crate) const WINDOW: Duration = Duration::from_secs(4);
    /// The resolution of the window.
    pub(crate) const SLOT: Duration = Duration::from_millis(250);

    /// Counts `bytes` taken by `now` in a transfer that began at `started`. The rate's history
    /// starts with the earliest transfer's start, not its end: a connection's first body, counted
    /// when it ended, would otherwise read as taken in no time (twice its rate, or more).
    pub(crate) fn record(&mut self, bytes: u64, started: Instant, now: Instant) {
        let started = started.min(now);
        self.since = Some(self.since.map_or(started, |s| s.min(started)));
        match self.slots.back_mut() {
            Some((start, n)) if now.saturating_duration_since(*start) < Self::SLOT => *n += bytes,
            _ => self.slots.push_back((now, bytes)),
        }
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while self
            .slots
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Self::WINDOW)
        {
            self.slots.pop_front();
        }
    }

    /// Bytes per second over the window; `None` before a second of history or with none.
    pub(crate) fn rate(&mut self, now: Instant) -> Option<f64> {
        self.expire(now);
        let since = self.since?;
        let span = now.saturating_duration_since(since).min(Self::WINDOW);
        if span < Duration::from_secs(1) {
            return None;
        }
        let bytes: u64 = self.slots.iter().map(|(_, n)| n).sum();
        Some(bytes as f64 / span.as_secs_f64())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PushConn {
    /// Runs `f` on the connection's planner session (created with `cfg` if new).
    pub(crate) fn plan<R>(&self, cfg: &PlanConfig, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut guard = lock(&self.session);
        let session = guard.get_or_insert_with(|| Box::new(Session::new(cfg.clone())));
        f(session)
    }

    /// Counts body bytes the connection took in a transfer that began at `started`.
    pub(crate) fn drained(&self, bytes: u64, started: Instant) {
        if bytes > 0 {
            lock(&self.drained).record(bytes, started, Instant::now());
        }
    }

    /// The bytes the connection takes in `buffer` at the rate it drained lately (the planner's
    /// byte budget); `None` while that rate is not known, or with the bound off.
    pub(crate) fn byte_budget(&self, buffer: Duration) -> Option<u64> {
        if buffer.is_zero() {
            return None;
        }
        let rate = lock(&self.drained).rate(Instant::now())?;
        Some((rate * buffer.as_secs_f64()).min(u64::MAX as f64) as u64)
    }

    /// Registers a promised push and returns its cancel flag, already set if the client
    /// refused the URL before it was promised.
    pub(crate) fn track(&self, url: &Url) -> Arc<CancelFlag> {
        let mut active = lock(&self.active);
        let flag = Arc::new(CancelFlag::default());
        let mut early = lock(&self.refused_early);
        if let Some(i) = early.iter().position(|u| u == url) {
            early.remove(i);
            flag.set(REFUSED);
        }
        active.insert(url.clone(), Arc::clone(&flag));
        flag
    }

    /// Forgets a push that ended.
    pub(crate) fn untrack(&self, url: &Url) {
        lock(&self.active).remove(url);
    }

    /// A new cycle replaced the push of `url` (spec §4–5): it stops, and may be pushed again.
    pub(crate) fn replace(&self, url: &Url) -> bool {
        match lock(&self.active).get(url) {
            Some(flag) => {
                flag.set(REPLACED);
                true
            }
            None => false,
        }
    }

    /// The client refused `url` (spec §7.3). A push of it in flight stops; if none is
    /// promised yet, the refusal is kept for when it is.
    pub(crate) fn refuse(&self, url: &Url) {
        let active = lock(&self.active);
        if let Some(flag) = active.get(url) {
            flag.set(REFUSED);
            return;
        }
        let mut early = lock(&self.refused_early);
        if !early.contains(url) {
            if early.len() >= limits::MAX_WS_CANCEL_ENTRIES {
                early.pop_front();
            }
            early.push_back(url.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(p: &str) -> Url {
        Url::parse(&format!("http://e.test/{p}")).unwrap()
    }

    #[test]
    fn a_refusal_before_the_promise_is_kept_for_it() {
        let c = PushConn::default();
        c.refuse(&u("a"));
        assert_eq!(c.track(&u("a")).get(), Some(Stop::Refused));
        assert_eq!(c.track(&u("a")).get(), None, "used once");
    }

    #[test]
    fn the_drain_rate_looks_back_over_the_window_only() {
        let mut m = DrainMeter::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(m.rate(t0), None);
        m.record(100_000, t0, t0);
        assert_eq!(m.rate(at(500)), None, "under a second of history");
        for s in 1..=4 {
            m.record(100_000, at(s * 1000), at(s * 1000));
        }
        // 500,000 bytes over the 4 s window.
        let r = m.rate(at(4000)).unwrap();
        assert!((r - 125_000.0).abs() < 1.0, "{r}");
        // Ten seconds later nothing is left in the window: nothing drains.
        assert_eq!(m.rate(at(14_000)), Some(0.0));
    }

    #[test]
    fn a_first_transfer_counted_at_its_end_is_timed_from_its_start() {
        let mut m = DrainMeter::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 30,000 bytes taken over 3 s, counted when the transfers ended (2.9 s and 3 s).
        m.record(14_000, t0, at(2900));
        m.record(16_000, at(100), at(3000));
        let r = m.rate(at(3000)).unwrap();
        assert!((r - 10_000.0).abs() < 1.0, "{r}");
    }

    #[test]
    fn a_refusal_wins_over_a_replacement() {
        let c = PushConn::default();
        let f = c.track(&u("a"));
        assert!(c.replace(&u("a")));
        assert_eq!(f.get(), Some(Stop::Replaced));
        c.refuse(&u("a"));
        assert_eq!(f.get(), Some(Stop::Refused));
        c.untrack(&u("a"));
        assert!(!c.replace(&u("a")));
    }
}
