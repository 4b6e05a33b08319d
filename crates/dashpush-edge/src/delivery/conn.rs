//! The push state of one downstream connection, whatever its transport: the planner's session
//! and the pushes in flight with their cancel flags.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    /// Created with the first request that needs it.
    session: Mutex<Option<Session>>,
    /// Promised, unfinished pushes by URL.
    active: Mutex<HashMap<Url, Arc<CancelFlag>>>,
    /// URLs the client refused before any push of them was promised (a cancel can overtake
    /// the request task that plans them); bounded, oldest first out.
    refused_early: Mutex<VecDeque<Url>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PushConn {
    /// Runs `f` on the connection's planner session (created with `cfg` if new).
    pub(crate) fn plan<R>(&self, cfg: &PlanConfig, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut guard = lock(&self.session);
        let session = guard.get_or_insert_with(|| Session::new(cfg.clone()));
        f(session)
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
