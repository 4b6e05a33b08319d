//! Bounds on downstream connections: how many are open (gateway-wide and per client address),
//! why the gateway ended one (a deadline, a budget), and the per-connection reset budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Why the gateway ended (or refused) a downstream connection: the `reason` label of
/// `dashpush_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The protocol could not be told or the HTTP/2 preface did not arrive in time.
    Handshake,
    /// The HTTP/1.1 request head did not arrive whole in time.
    HeaderTimeout,
    /// Nothing in flight for the idle time.
    Idle,
    /// A keep-alive PING went unanswered.
    PingTimeout,
    /// A response accepted no bytes for the send time (HTTP/1.1; on HTTP/2 the stream alone
    /// is reset).
    SendTimeout,
    /// Too many requests reset by the client (HTTP/2 rapid reset).
    ResetFlood,
    /// The connection served its request budget (GOAWAY NO_ERROR; the client reconnects).
    RequestBudget,
    /// Refused: the gateway-wide connection cap.
    MaxConnections,
    /// Refused: the per-client-address cap.
    MaxPerClient,
}

impl Closed {
    /// Every `(protocol, reason)` series, created at 0 so dashboards see them from the start.
    /// Before the protocol is known (a refusal, or no first bytes) the protocol is `tcp`.
    pub(crate) const SERIES: [(&'static str, Closed); 11] = [
        ("tcp", Closed::Handshake),
        ("tcp", Closed::MaxConnections),
        ("tcp", Closed::MaxPerClient),
        ("h1", Closed::HeaderTimeout),
        ("h1", Closed::Idle),
        ("h1", Closed::SendTimeout),
        ("h2", Closed::Handshake),
        ("h2", Closed::Idle),
        ("h2", Closed::PingTimeout),
        ("h2", Closed::ResetFlood),
        ("h2", Closed::RequestBudget),
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Handshake => "handshake_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
            Self::PingTimeout => "ping_timeout",
            Self::SendTimeout => "send_timeout",
            Self::ResetFlood => "reset_flood",
            Self::RequestBudget => "request_budget",
            Self::MaxConnections => "max_connections",
            Self::MaxPerClient => "max_per_client",
        }
    }

    /// Counts it.
    pub(crate) fn count(self, metrics: &Metrics, protocol: &'static str) {
        metrics
            .connections_closed
            .with_label_values(&[protocol, self.label()])
            .inc();
        tracing::debug!(
            protocol,
            reason = self.label(),
            "connection ended by the gateway"
        );
    }
}

/// Creates every `dashpush_connections_closed_total` series at 0.
pub(crate) fn register_series(metrics: &Metrics) {
    for (protocol, reason) in Closed::SERIES {
        metrics
            .connections_closed
            .with_label_values(&[protocol, reason.label()]);
    }
}

/// Open downstream connections, gateway-wide and per client address.
#[derive(Debug)]
pub(crate) struct Connections {
    open: AtomicUsize,
    max: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    table: Arc<Connections>,
    client: Option<IpAddr>,
}

impl Connections {
    /// A table with these caps (`max` 0: derived from the descriptor limit).
    pub(crate) fn new(max: usize, max_per_client: usize) -> Arc<Self> {
        let max = if max == 0 {
            default_max(open_files_limit())
        } else {
            max
        };
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            per_client: Mutex::new(HashMap::new()),
            max_per_client,
        })
    }

    /// The gateway-wide cap in force.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Admits a new connection from `client`, or says which cap refuses it.
    pub(crate) fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, Closed> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Closed::MaxConnections);
        }
        if let Some(ip) = client {
            let mut table = self
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = table.entry(ip).or_insert(0);
            if *n >= self.max_per_client {
                drop(table);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Closed::MaxPerClient);
            }
            *n += 1;
        }
        Ok(Admitted {
            table: Arc::clone(self),
            client,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.client {
            let mut table = self
                .table
                .per_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = table.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    table.remove(&ip);
                }
            }
        }
    }
}

/// The process's open-files limit (Linux: `/proc/self/limits`), if it can be read.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap for a descriptor limit: a quarter of it (at least 64 descriptors) is
/// left for origin connections, files and listeners.
fn default_max(nofile: Option<usize>) -> usize {
    let nofile = nofile.unwrap_or(1024);
    nofile.saturating_sub((nofile / 4).max(64)).max(16)
}

/// The client resets an HTTP/2 connection may make in a window before it is ended
/// (GOAWAY ENHANCE_YOUR_CALM): a reset request costs the gateway a handler and often an origin
/// fetch, so a client that resets without end is cut off (the "rapid reset" attack, CVE-2023-44487).
#[derive(Debug)]
pub(crate) struct ResetBudget {
    max: u32,
    window: Duration,
    state: Mutex<(Instant, u32)>,
    /// Notified once the budget is spent.
    pub(crate) spent: Notify,
}

impl ResetBudget {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            state: Mutex::new((Instant::now(), 0)),
            spent: Notify::new(),
        }
    }

    /// Counts one reset; true (and `spent` notified) when it is one too many.
    pub(crate) fn reset(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(s.0) > self.window {
            *s = (now, 0);
        }
        s.1 += 1;
        let over = s.1 > self.max;
        drop(s);
        if over {
            self.spent.notify_one();
        }
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_open_connections_and_free_them_on_drop() {
        let t = Connections::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = t.admit(Some(a)).unwrap();
        let _a2 = t.admit(Some(a)).unwrap();
        assert_eq!(t.admit(Some(a)).unwrap_err(), Closed::MaxPerClient);
        let _b1 = t.admit(Some(b)).unwrap();
        assert_eq!(t.admit(Some(b)).unwrap_err(), Closed::MaxConnections);
        drop(a1);
        let _a3 = t.admit(Some(a)).unwrap();
        assert_eq!(t.per_client.lock().unwrap().get(&a), Some(&2));
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(default_max(Some(1024)), 768);
        assert_eq!(default_max(Some(100)), 36);
        assert_eq!(default_max(Some(1_048_576)), 786_432);
        assert_eq!(default_max(None), 768);
        assert!(open_files_limit().is_some());
    }

    #[test]
    fn the_reset_budget_is_per_window() {
        let b = ResetBudget::new(2, Duration::from_secs(60));
        assert!(!b.reset());
        assert!(!b.reset());
        assert!(b.reset());
        let b = ResetBudget::new(1, Duration::ZERO);
        assert!(!b.reset());
        std::thread::sleep(Duration::from_millis(2));
        assert!(!b.reset());
    }
}
