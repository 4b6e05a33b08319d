//! The live segments being asked for at the origin, gateway-wide: every push of a segment
//! shares one ask (see `prefetch::Gateway::prefetch_for`).

use std::collections::HashMap;
use std::task::Poll;

use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, Shared, WeakShared};
use tokio::task::JoinHandle;

use crate::cache::source::Source;

/// One live segment's asks at the origin, shared by every push of it on the gateway.
pub(crate) type LiveAsk = Shared<BoxFuture<'static, Option<Source>>>;

/// What makes two live pushes the same asks: the same resource of the same origin routes, due
/// in the same availability slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LiveKey {
    /// The routes' identity (the `Arc` a reload replaces; alive while an ask holds it).
    pub(crate) origins: usize,
    pub(crate) route: usize,
    pub(crate) path: String,
    pub(crate) not_before: Option<DateTime<Utc>>,
    pub(crate) until: DateTime<Utc>,
}

/// The live segments being asked for, gateway-wide: every push of a segment waits on one timer
/// and one ask loop instead of one each (1,000 viewers of a channel: one wake-up per segment,
/// not 1,000 timers and tasks). An entry lives as long as a push holds its ask.
#[derive(Default)]
pub(crate) struct LiveAsksShared(
    std::sync::Mutex<HashMap<LiveKey, WeakShared<BoxFuture<'static, Option<Source>>>>>,
);

impl LiveAsksShared {
    /// Entries kept before the dead ones are swept out.
    const SWEEP_AT: usize = 1024;

    /// The running ask of `key`, or the one `start` makes.
    pub(crate) fn join(&self, key: LiveKey, start: impl FnOnce() -> LiveAsk) -> LiveAsk {
        let mut asks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ask) = asks.get(&key).and_then(WeakShared::upgrade) {
            return ask;
        }
        if asks.len() >= Self::SWEEP_AT {
            asks.retain(|_, w| w.upgrade().is_some());
        }
        let ask = start();
        if let Some(weak) = ask.downgrade() {
            asks.insert(key, weak);
        }
        ask
    }

    /// Asks running now (for tests).
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        let asks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        asks.values().filter(|w| w.upgrade().is_some()).count()
    }
}

/// A task that is aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<Option<T>> {
    type Output = Option<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.ok().flatten())
    }
}
