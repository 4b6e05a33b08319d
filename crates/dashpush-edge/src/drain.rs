//! Graceful shutdown: on SIGTERM, stop taking connections, finish in-flight requests (at most
//! the grace period), then let pingora stop the runtimes.
//!
//! Pingora's own graceful path sleeps a fixed grace period, even when nothing is in flight. We
//! give it a shutdown-signal watcher that drains first: it flags the apps (HTTP/1.1 stops
//! keep-alive, HTTP/2 sends GOAWAY, new connections are closed at once), waits until the
//! in-flight count is zero or the grace period ends, and only then reports the terminate signal,
//! with pingora's grace period set to zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

/// Shared drain state.
#[derive(Debug)]
pub(crate) struct Drain {
    inflight: AtomicUsize,
    idle: Notify,
    draining: watch::Sender<bool>,
}

/// Counts one in-flight request while alive.
pub(crate) struct InFlight(Arc<Drain>);

impl Drain {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: watch::channel(false).0,
        })
    }

    /// A receiver that turns true when draining starts.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    pub(crate) fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The signal watcher handed to pingora.
pub(crate) struct DrainingSignal {
    pub(crate) drain: Arc<Drain>,
    pub(crate) grace: Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for DrainingSignal {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                return ShutdownSignal::FastShutdown;
            }
        }
        tracing::info!("SIGTERM: draining for at most {:?}", self.grace);
        self.drain.draining.send_replace(true);
        if tokio::time::timeout(self.grace, self.drain.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("grace period over with requests in flight");
        }
        ShutdownSignal::GracefulTerminate
    }
}
