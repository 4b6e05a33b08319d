//! The order of one cycle's pushes on the wire: ordered and work-conserving
//! (docs/spec-decisions.md, "Push scheduling").
//!
//! Pushes go out in push order (the order the player needs them). A push takes its turn once
//! every earlier push has finished or is *blocked*: waiting for flow-control window of its own
//! stream (an HTTP/2 WINDOW_UPDATE), which no other stream's bytes can hasten. While an earlier
//! push is blocked, the next one may use the connection's window; when the earlier one gets its
//! window back it sends what it was granted at once, and later pushes stop asking for more
//! until it is blocked or done again. At most two pushes are *in play* at once ([`IN_PLAY`]):
//! they ask for window and wait for it. On a connection whose window is wider than two streams'
//! ([`ConnWindow`]), a push whose turn comes while two earlier ones are in play and both
//! blocked is a *spare* ([`Play::Spare`]): it takes only what the connection
//! grants at once and, granted nothing, gives its request back and waits for the earlier pushes
//! to change, not for window (so it does not wait in line for the connection's next credit
//! ahead of the pushes in play).
//! A transport without per-stream windows (the WebSocket socket) never reports a push blocked,
//! so its pushes go strictly one after the other.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Pushes of one cycle that ask for window and wait for it, at most. Two keep the connection
/// busy while the first waits for its own window, and each of the two gets a good share of every
/// window: a client that returns credit once half a stream's window is used (nghttp2,
/// python-h2) gets it back each round trip, where a window spread over many streams comes back
/// late. Further pushes take only what is left over at once ([`Play::Spare`]).
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

/// How a push may send in its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Play {
    /// One of the pushes in play (at most [`IN_PLAY`]): it asks for window and waits for it.
    InPlay,
    /// Two earlier pushes are in play and both blocked, on a connection wider than two streams:
    /// this one may take what the connection grants at once, and granted nothing it waits for
    /// [`Turn::earlier_changed`] since the turn was given (the [`Since`]).
    Spare(Since),
}

/// Where the earlier pushes' changes stood when a spare was given its turn (their count, read
/// under the same lock as the states that made it a spare, so no change between the two is
/// missed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Since(u64);

/// The client's connection window against its streams' ([`Play::Spare`] needs it wider).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnWindow {
    /// Two streams' windows hold it all (the HTTP/2 defaults: 64 KiB each): the two pushes in
    /// play can use all of it, and a third would only take credit the first-needed push is
    /// about to get back with its own stream's.
    WithinTwoStreams,
    /// Wider than two streams' windows (64 KiB streams on a 16 MiB connection): pushes beyond
    /// the two in play are needed to use it.
    WiderThanTwoStreams,
}

/// One push's place: its state, and how many times the state changed.
#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    changes: u64,
}

/// Every push's place, in push order, and how far the done ones reach from the front: a long
/// cycle (push-next of 64 live segments) looks only past them, not at every earlier push.
#[derive(Debug)]
struct Places {
    slots: Vec<Slot>,
    /// The first push not done (every one before it is).
    done: usize,
    /// Their changes, summed (a done push changes no more).
    done_changes: u64,
}

impl Places {
    /// The slots before `index` that are not all done yet.
    fn open_before(&self, index: usize) -> &[Slot] {
        let end = index.min(self.slots.len());
        self.slots.get(self.done.min(end)..end).unwrap_or_default()
    }

    /// The changes of every push before `index`, summed: it grows whenever one of them changes.
    fn changes_before(&self, index: usize) -> u64 {
        if self.done > index {
            // Asked for a push that is done itself: the summed prefix reaches past it.
            let end = index.min(self.slots.len());
            return self.slots[..end].iter().map(|s| s.changes).sum();
        }
        let open: u64 = self.open_before(index).iter().map(|s| s.changes).sum();
        self.done_changes + open
    }
}

/// The turns of one cycle's pushes.
#[derive(Debug)]
pub(crate) struct Turns {
    places: Mutex<Places>,
    changed: Notify,
    window: ConnWindow,
}

impl Turns {
    /// The turns of `n` pushes, in push order, on a connection whose `window` is as given.
    pub(crate) fn new(n: usize, window: ConnWindow) -> Arc<Self> {
        Arc::new(Self {
            places: Mutex::new(Places {
                slots: vec![
                    Slot {
                        state: State::Waiting,
                        changes: 0
                    };
                    n
                ],
                done: 0,
                done_changes: 0,
            }),
            changed: Notify::new(),
            window,
        })
    }

    /// The turn of push `index` (its place in push order).
    pub(crate) fn turn(self: &Arc<Self>, index: usize) -> Turn {
        Turn {
            turns: Arc::clone(self),
            index,
        }
    }

    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, index: usize, state: State) {
        let mut places = self.places();
        if let Some(s) = places.slots.get_mut(index)
            && s.state != State::Done
            && s.state != state
        {
            s.state = state;
            s.changes += 1;
        }
        // The done ones at the front are passed over from now on.
        let Places {
            slots,
            done,
            done_changes,
        } = &mut *places;
        while let Some(s) = slots.get(*done).filter(|s| s.state == State::Done) {
            *done_changes += s.changes;
            *done += 1;
        }
        drop(places);
        self.changed.notify_waiters();
    }

    /// How push `index` may send now, if it may: every push before it is done or blocked; in
    /// play while fewer than [`IN_PLAY`] of them are not done, else a spare if the connection's
    /// window is wider than two streams' (else it waits for one of them to end).
    fn clear_before(&self, index: usize) -> Option<Play> {
        let places = self.places();
        let mut open = 0;
        for s in places.open_before(index) {
            match s.state {
                State::Done => {}
                State::Blocked => open += 1,
                State::Waiting | State::Sending => return None,
            }
        }
        if open < IN_PLAY {
            Some(Play::InPlay)
        } else {
            match self.window {
                ConnWindow::WiderThanTwoStreams => {
                    Some(Play::Spare(Since(places.changes_before(index))))
                }
                ConnWindow::WithinTwoStreams => None,
            }
        }
    }

    /// The changes of every push before `index`, summed: it grows whenever one of them changes.
    fn earlier_changes(&self, index: usize) -> u64 {
        self.places().changes_before(index)
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
    /// then sending (later pushes wait) until it reports itself [`Turn::blocked`] or ends; how
    /// it may send is the answer.
    pub(crate) async fn mine(&self) -> Play {
        let mut play = Play::InPlay;
        self.until(|| match self.turns.clear_before(self.index) {
            Some(p) => {
                play = p;
                true
            }
            None => false,
        })
        .await;
        self.turns.set(self.index, State::Sending);
        play
    }

    /// True when every earlier push is done: this one is the first still to be sent.
    pub(crate) fn leading(&self) -> bool {
        self.turns.places().done >= self.index
    }

    /// Resolves once every earlier push is done ([`Turn::leading`]).
    pub(crate) async fn until_leading(&self) {
        self.until(|| self.leading()).await;
    }

    /// Resolves once `ready` holds, looked at again after every change of the turns.
    async fn until(&self, mut ready: impl FnMut() -> bool) {
        // Most asks find it so at once: then no waiter is registered, and the wait is boxed
        // so that the futures awaiting this one (a push's, allocated for every push) stay small.
        if ready() {
            return;
        }
        Box::pin(self.wait_until(ready)).await;
    }

    /// [`Self::until`]'s wait.
    async fn wait_until(&self, mut ready: impl FnMut() -> bool) {
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

    /// Resolves once a push before this one has changed `since` it was made a spare: one in
    /// play sent again, was blocked again or ended, which may have left the connection window
    /// a spare can use (or made this one in play). Changes of later pushes do not wake it.
    pub(crate) async fn earlier_changed(&self, since: Since) {
        self.until(|| Since(self.turns.earlier_changes(self.index)) != since)
            .await;
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

    async fn resolves<T>(f: impl std::future::Future<Output = T>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_ok()
    }

    /// `f`'s output; fails the test instead of hanging if it does not come.
    async fn soon<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("resolves")
    }

    #[tokio::test]
    async fn the_first_push_goes_at_once_and_the_next_waits_for_it() {
        let turns = Turns::new(3, ConnWindow::WiderThanTwoStreams);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        assert!(resolves(a.mine()).await);
        assert!(!resolves(b.mine()).await, "b waits while a sends");
        drop(a);
        assert!(resolves(b.mine()).await, "a done: b's turn");
        assert!(!resolves(c.mine()).await, "c waits while b sends");
    }

    #[tokio::test]
    async fn pushes_ending_out_of_order_still_hold_the_ones_after_them() {
        let turns = Turns::new(4, ConnWindow::WiderThanTwoStreams);
        let (a, b, c, d) = (turns.turn(0), turns.turn(1), turns.turn(2), turns.turn(3));
        soon(a.mine()).await;
        a.blocked();
        soon(b.mine()).await;
        // b ends before a: a is still blocked, so c is second in play, d not yet leading.
        drop(b);
        assert!(!c.leading());
        assert_eq!(soon(c.mine()).await, Play::InPlay);
        c.blocked();
        assert_eq!(
            soon(d.mine()).await,
            Play::Spare(Since(turns.earlier_changes(3)))
        );
        assert!(!d.leading());
        // a ends: c leads (b ended before), and d with it once c ends.
        drop(a);
        assert!(c.leading());
        assert!(!d.leading());
        let since = Since(turns.earlier_changes(3));
        drop(c);
        assert!(d.leading());
        assert!(
            resolves(d.earlier_changed(since)).await,
            "an earlier push ending is a change, however far the done ones reach"
        );
    }

    #[tokio::test]
    async fn a_blocked_push_lets_the_next_send_until_it_sends_again() {
        let turns = Turns::new(3, ConnWindow::WiderThanTwoStreams);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        a.mine().await;
        a.blocked();
        assert!(resolves(b.mine()).await, "a blocked on its window: b sends");
        assert!(!resolves(c.mine()).await, "b sending: c waits");
        b.blocked();
        // a's window opens: it sends again; b asks for no more until a is blocked or done.
        a.mine().await;
        assert!(!resolves(b.mine()).await);
        assert!(!resolves(c.mine()).await);
        drop(a);
        assert!(resolves(b.mine()).await, "a done: b sends");
        b.blocked();
        assert_eq!(
            c.mine().await,
            Play::InPlay,
            "a done, b blocked: c is the second in play"
        );
    }

    #[tokio::test]
    async fn with_two_in_play_and_both_blocked_the_next_is_a_spare() {
        let turns = Turns::new(4, ConnWindow::WiderThanTwoStreams);
        let (a, b, c, d) = (turns.turn(0), turns.turn(1), turns.turn(2), turns.turn(3));
        assert_eq!(a.mine().await, Play::InPlay);
        a.blocked();
        assert_eq!(b.mine().await, Play::InPlay);
        assert!(!resolves(c.mine()).await, "b sending: c waits");
        b.blocked();
        assert!(
            matches!(c.mine().await, Play::Spare(_)),
            "a and b blocked: c may use what is left"
        );
        assert!(!resolves(d.mine()).await, "c sending: d waits");
        c.blocked();
        assert!(matches!(d.mine().await, Play::Spare(_)));
        // a's window opens: it sends again, and the spares wait for it.
        a.mine().await;
        assert!(!resolves(c.mine()).await);
        drop(a);
        b.mine().await;
        b.blocked();
        assert_eq!(c.mine().await, Play::InPlay, "a done: c is in play now");
    }

    #[tokio::test]
    async fn within_two_streams_windows_a_third_waits_for_one_in_play_to_end() {
        let turns = Turns::new(3, ConnWindow::WithinTwoStreams);
        let (a, b, c) = (turns.turn(0), turns.turn(1), turns.turn(2));
        a.mine().await;
        a.blocked();
        b.mine().await;
        b.blocked();
        assert!(
            !resolves(c.mine()).await,
            "two in play can use all the connection's window: c waits although both are blocked"
        );
        drop(a);
        assert_eq!(c.mine().await, Play::InPlay);
    }

    #[tokio::test]
    async fn a_spare_wakes_on_changes_of_earlier_pushes_only() {
        let turns = Turns::new(4, ConnWindow::WiderThanTwoStreams);
        let (a, b, c, d) = (turns.turn(0), turns.turn(1), turns.turn(2), turns.turn(3));
        a.mine().await;
        a.blocked();
        b.mine().await;
        b.blocked();
        let Play::Spare(seen) = c.mine().await else {
            panic!("c is a spare");
        };
        c.blocked();
        assert!(!resolves(c.earlier_changed(seen)).await, "nothing changed");
        d.mine().await;
        d.blocked();
        assert!(
            !resolves(c.earlier_changed(seen)).await,
            "a later push changing is no news to c"
        );
        a.mine().await;
        assert!(resolves(c.earlier_changed(seen)).await, "a sends again");
        a.blocked();
        assert!(
            resolves(c.earlier_changed(seen)).await,
            "a sent and blocked again: seen as a change although its state is as it was"
        );
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_earlier_push_is_dropped() {
        let turns = Turns::new(2, ConnWindow::WiderThanTwoStreams);
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
        let turns = Turns::new(3, ConnWindow::WiderThanTwoStreams);
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
        let t = Turns::new(1, ConnWindow::WiderThanTwoStreams).turn(0);
        assert_eq!(t.turns.clear_before(0), Some(Play::InPlay));
        assert!(t.leading());
    }

    #[tokio::test]
    async fn a_push_leads_once_every_earlier_one_is_done() {
        let turns = Turns::new(2, ConnWindow::WiderThanTwoStreams);
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
