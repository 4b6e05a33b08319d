//! The gateway-wide prefetch slots, shared fairly between origins.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The gateway-wide prefetch slots, shared fairly between origins: with more than one origin,
/// one may hold at most half of them, so a slow origin cannot take every slot and stall the
/// pushes of the others.
pub(crate) struct PrefetchSlots {
    all: Arc<Semaphore>,
    total: usize,
    by_origin: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
}

/// A prefetch slot: the origin's share and the gateway-wide one, held together.
pub(crate) struct PrefetchPermit {
    _origin: tokio::sync::OwnedSemaphorePermit,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl PrefetchSlots {
    pub(crate) fn new(total: usize) -> Self {
        let total = total.max(1);
        Self {
            all: Arc::new(Semaphore::new(total)),
            total,
            by_origin: std::sync::Mutex::default(),
        }
    }

    /// The share of `origin` when the routes lead to `origins` origins.
    fn share(&self, origin: &str, origins: usize) -> Arc<Semaphore> {
        let mut map = self
            .by_origin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let share = if origins > 1 {
            (self.total / 2).max(1)
        } else {
            self.total
        };
        Arc::clone(
            map.entry(origin.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(share))),
        )
    }

    /// Waits for a slot for `origin`.
    pub(crate) async fn acquire(&self, origin: &str, origins: usize) -> Option<PrefetchPermit> {
        let share = self.share(origin, origins).acquire_owned().await.ok()?;
        let all = Arc::clone(&self.all).acquire_owned().await.ok()?;
        Some(PrefetchPermit {
            _origin: share,
            _all: all,
        })
    }

    /// A slot for `origin` if one is free now.
    pub(crate) fn try_acquire(&self, origin: &str, origins: usize) -> Option<PrefetchPermit> {
        let share = self.share(origin, origins).try_acquire_owned().ok()?;
        let all = Arc::clone(&self.all).try_acquire_owned().ok()?;
        Some(PrefetchPermit {
            _origin: share,
            _all: all,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_origin_cannot_take_every_prefetch_slot() {
        let slots = PrefetchSlots::new(4);
        let a: Vec<_> = (0..3)
            .filter_map(|_| slots.try_acquire("http://a", 2))
            .collect();
        assert_eq!(a.len(), 2, "half the slots for one of two origins");
        let b: Vec<_> = (0..3)
            .filter_map(|_| slots.try_acquire("http://b", 2))
            .collect();
        assert_eq!(b.len(), 2);
        drop((a, b));
        let alone = PrefetchSlots::new(4);
        let all: Vec<_> = (0..5)
            .filter_map(|_| alone.try_acquire("http://a", 1))
            .collect();
        assert_eq!(all.len(), 4, "a single origin has them all");
    }
}
