//! The order of one cycle's pushes on the wire: ordered and work-conserving
//! (docs/spec-decisions.md, "Push scheduling").
//!
//! Pushes go out in push order (the order the player needs them). A push takes its turn once
//! every earlier push has finished or is *blocked*: waiting for flow-control window of its own
//! stream (an HTTP/2 WINDOW_UPDATE), which no other stream's bytes can hasten. While an earlier
//! push is blocked, the next one may use the connection's window; when the earlier one gets its
//! window back it sends what it was granted at once, and later pushes stop asking for more
//! until it is blocked or done again. At most two pushes are in play at once ([`IN_PLAY`]). A
//! transport without per-stream windows (the WebSocket socket) never reports a push blocked,
//! so its pushes go strictly one after the other.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Pushes of one cycle sending at once at most. Two keep the connection busy while the first
/// waits for its own window, and each of the two gets a good share of every window: a client
/// that returns credit once half a stream's window is used (nghttp2, python-h2) gets it back
/// each round trip, where a window spread over many streams comes back late.
const IN_PLAY: usize = 2;

/// Where a push is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not yet sending (or asking for more window).
    Waiting,
    /// Sending, or about to: later pushes wait.
    Sending,
    /// Waiting for window of its own stream: later pushes may send.
    Blocked,
    /// Sent, withdrawn or given up.
    Done,
}

/// The turns of one cycle's pushes.
#[derive(Debug)]
pub(crate) struct Turns {
    states: Mutex<Vec<State>>,
    changed: Notify,
}

impl Turns {
    /// The turns of `n` pushes, in push order.
    pub(crate) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            states: Mutex::new(vec![State::Waiting; n]),
            changed: Notify::new(),
        })
    }

    /// The turn of push `index` (its place in push order).
    pub(crate) fn turn(self: &Arc<Self>, index: usize) -> Turn {
        Turn {
            turns: Arc::clone(self),
            index,
        }
    }

    fn set(&self, index: usize, state: State) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = states.get_mut(index)
            && *s != State::Done
        {
            *s = state;
        }
        drop(states);
        self.changed.notify_waiters();
    }

    /// Whether push `index` may send: every push before it is done or blocked, and at most
    /// one of them is not done (two pushes in play at most).
    fn clear_before(&self, index: usize) -> bool {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let earlier = states.iter().take(index);
        earlier
            .clone()
            .all(|s| matches!(s, State::Done | State::Blocked))
            && earlier.filter(|s| **s != State::Done).count() < IN_PLAY
    }
}

/// One push's turn; dropping it marks the push done.
#[derive(Debug)]
pub(crate) struct Turn {
    turns: Arc<Turns>,
    index: usize,
}

impl Turn {
    /// Resolves when this push may send: every earlier push is done or blocked. The push is
    /// then sending (later pushes wait) until it reports itself [`Turn::blocked`] or ends.
    pub(crate) async fn mine(&self) {
        self.until(|| self.turns.clear_before(self.index)).await;
        self.turns.set(self.index, State::Sending);
    }

    /// True when every earlier push is done: this one is the first still to be sent.
    pub(crate) fn leading(&self) -> bool {
        let states = self
            .turns
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        states.iter().take(self.index).all(|s| *s == State::Done)
    }

    /// Resolves once every earlier push is done ([`Turn::leading`]).
    pub(crate) async fn until_leading(&self) {
        self.until(|| self.leading()).await;
    }

    /// Resolves once `ready` holds, looked at again after every change of the turns.
    async fn until(&self, ready: impl Fn() -> bool) {
        loop {
            let changed = self.turns.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if ready() {
                return;
            }
            changed.await;
        }
    }

    /// This push waits for window of its own stream: later pushes may send meanwhile.
    pub(crate) fn blocked(&self) {
        self.turns.set(self.index, State::Blocked);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.set(self.index, State::Done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(f: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_first_push_goes_at_once_and_the_next_waits_for_it() {
        let turns = Turns::new(3);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        assert!(resolves(a.mine()).await);
        assert!(!resolves(b.mine()).await, "b waits while a sends");
        drop(a);
        assert!(resolves(b.mine()).await, "a done: b's turn");
        assert!(!resolves(c.mine()).await, "c waits while b sends");
    }

    #[tokio::test]
    async fn a_blocked_push_lets_the_next_send_until_it_sends_again() {
        let turns = Turns::new(3);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        a.mine().await;
        a.blocked();
        assert!(resolves(b.mine()).await, "a blocked on its window: b sends");
        assert!(!resolves(c.mine()).await, "b sending: c waits");
        b.blocked();
        assert!(
            !resolves(c.mine()).await,
            "two pushes in play already: c waits although both are blocked"
        );
        // a's window opens: it sends again; b asks for no more until a is blocked or done.
        a.mine().await;
        assert!(!resolves(b.mine()).await);
        drop(a);
        assert!(resolves(b.mine()).await, "a done: b sends");
        b.blocked();
        assert!(resolves(c.mine()).await, "a done, b blocked: c sends");
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_earlier_push_is_dropped() {
        let turns = Turns::new(2);
        let (a, b) = (turns.turn(0), turns.turn(1));
        a.mine().await;
        let waiting = tokio::spawn(async move {
            b.mine().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), waiting)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_push_learns_when_it_becomes_the_first() {
        let turns = Turns::new(3);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        a.mine().await;
        a.blocked();
        b.mine().await;
        assert!(!resolves(b.until_leading()).await, "a is not done");
        drop(a);
        assert!(resolves(b.until_leading()).await, "a done: b leads");
        assert!(!resolves(c.until_leading()).await, "b is not done");
    }

    #[test]
    fn a_push_alone_has_its_turn_at_once() {
        let t = Turns::new(1).turn(0);
        assert!(t.turns.clear_before(0));
        assert!(t.leading());
    }

    #[tokio::test]
    async fn a_push_leads_once_every_earlier_one_is_done() {
        let turns = Turns::new(2);
        let (a, b) = (turns.turn(0), turns.turn(1));
        a.mine().await;
        a.blocked();
        b.mine().await;
        assert!(a.leading());
        assert!(!b.leading(), "a blocked is not a done");
        drop(a);
        assert!(b.leading());
    }
}
