//! Bounds on downstream connections: how many are open (gateway-wide and per client address),
//! why the gateway ended one (a deadline, a budget), and the per-connection reset budget.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Closed while idle to make room for a new connection at the gateway-wide cap.
    Evicted,
    /// The TLS handshake did not finish in time.
    TlsHandshake,
}

impl Closed {
    /// Every `(protocol, reason)` series, created at 0 so dashboards see them from the start.
    /// Before the protocol is known (a refusal, or no first bytes) the protocol is `tcp`.
    pub(crate) const SERIES: [(&'static str, Closed); 15] = [
        ("tcp", Closed::Handshake),
        ("tcp", Closed::Evicted),
        ("tls", Closed::TlsHandshake),
        ("h1", Closed::Evicted),
        ("h2", Closed::Evicted),
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
            Self::Evicted => "evicted_idle",
            Self::TlsHandshake => "tls_handshake_timeout",
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

/// Open downstream connections, gateway-wide and per client address, and which of them are
/// idle now: at the gateway-wide cap the connection idle the longest is closed to make room
/// (as nginx reuses idle keep-alive connections when `worker_connections` runs out); with none
/// idle, the new one is refused.
#[derive(Debug)]
pub(crate) struct Connections {
    open: AtomicUsize,
    max: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_per_client: usize,
    /// Idle connections by when they became idle (a sequence number), oldest first.
    idle: Mutex<BTreeMap<u64, Arc<Notify>>>,
    idle_seq: AtomicU64,
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    table: Arc<Connections>,
    client: Option<IpAddr>,
    /// Notified when the connection, idle, is chosen to make room (the notice stays until
    /// taken: a connection that was picked as it became busy closes when next idle).
    evict: Arc<Notify>,
}

/// While held, its connection counts as idle (nothing in flight): one of the first to be
/// closed at the cap.
#[derive(Debug)]
pub(crate) struct IdleMark<'a> {
    table: &'a Connections,
    seq: u64,
}

impl Drop for IdleMark<'_> {
    fn drop(&mut self) {
        lock(&self.table.idle).remove(&self.seq);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    /// A table with these caps (`max` 0: derived from the descriptor limit, leaving room for
    /// `upstream` origin connections).
    pub(crate) fn new(max: usize, max_per_client: usize, upstream: usize) -> Arc<Self> {
        let max = if max == 0 {
            default_max(open_files_limit(), upstream)
        } else {
            max
        };
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            per_client: Mutex::new(HashMap::new()),
            max_per_client,
            idle: Mutex::new(BTreeMap::new()),
            idle_seq: AtomicU64::new(0),
        })
    }

    /// The gateway-wide cap in force.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Admits a new connection from `client`, or says which cap refuses it. At the
    /// gateway-wide cap the longest-idle connection is told to close and the new one is
    /// admitted in its place (the count runs over the cap until the closing ones are gone,
    /// by at most the number that were idle).
    pub(crate) fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, Closed> {
        if let Some(ip) = client {
            let mut table = lock(&self.per_client);
            let n = table.entry(ip).or_insert(0);
            if *n >= self.max_per_client {
                return Err(Closed::MaxPerClient);
            }
            *n += 1;
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            let victim = lock(&self.idle).pop_first();
            match victim {
                Some((_, evict)) => evict.notify_one(),
                None => {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    self.release_client(client);
                    return Err(Closed::MaxConnections);
                }
            }
        }
        Ok(Admitted {
            table: Arc::clone(self),
            client,
            evict: Arc::new(Notify::new()),
        })
    }

    fn release_client(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            let mut table = lock(&self.per_client);
            if let Some(n) = table.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    table.remove(&ip);
                }
            }
        }
    }
}

impl Admitted {
    /// Marks the connection idle until the mark is dropped.
    pub(crate) fn idle(&self) -> IdleMark<'_> {
        let seq = self.table.idle_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.table.idle).insert(seq, Arc::clone(&self.evict));
        IdleMark {
            table: &self.table,
            seq,
        }
    }

    /// Resolves when the connection was chosen to close to make room at the cap.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::AcqRel);
        self.table.release_client(self.client);
    }
}

/// The process's open-files (descriptor) limit in force, if it can be read.
pub(crate) fn open_files_limit() -> Option<usize> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .and_then(|(soft, _)| usize::try_from(soft).ok())
}

/// Sets the open-files soft limit to `want` (within the hard limit), or with `want` 0 raises it
/// to the hard limit, as nginx's `worker_rlimit_nofile` does: container runtimes start
/// processes with a low soft limit under a high hard one. Returns the limit in force.
pub(crate) fn set_open_files(want: u64) -> Option<usize> {
    let result = if want == 0 {
        rlimit::increase_nofile_limit(u64::MAX).map(|_| ())
    } else {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .and_then(|(_, hard)| rlimit::setrlimit(rlimit::Resource::NOFILE, want.min(hard), hard))
    };
    if let Err(e) = result {
        tracing::warn!("could not set the open-files limit: {e}");
    }
    open_files_limit()
}

/// Origin connections kept idle for reuse, at most, besides the fetch slots (the pool of
/// pingora's connector).
const UPSTREAM_IDLE_POOL: usize = 128;

/// The connection cap for a descriptor limit: what is left after the origin connections
/// (`upstream` fetch slots and the idle pool) plus 64 for listeners, files and the admin
/// side, and at least a quarter of the limit, so that accept never meets EMFILE.
fn default_max(nofile: Option<usize>, upstream: usize) -> usize {
    let nofile = nofile.unwrap_or(1024);
    let reserve = (nofile / 4).max(upstream + UPSTREAM_IDLE_POOL + 64);
    nofile.saturating_sub(reserve).max(16)
}

/// Whether `downstream` connections and `upstream` fetch slots fit in the descriptor limit
/// (with the origin idle pool and 64 to spare); if not, accept may meet EMFILE under load.
pub(crate) fn fits(nofile: Option<usize>, downstream: usize, upstream: usize) -> bool {
    nofile.is_none_or(|n| downstream + upstream + UPSTREAM_IDLE_POOL + 64 <= n)
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
        Self::resumed(max, window, (Instant::now(), 0))
    }

    /// A budget that goes on from `spent` ([`ResetBudget::spent_so_far`] of an earlier one).
    pub(crate) fn resumed(max: u32, window: Duration, spent: (Instant, u32)) -> Self {
        Self {
            max,
            window,
            state: Mutex::new(spent),
            spent: Notify::new(),
        }
    }

    /// When the current window began and the resets counted in it.
    pub(crate) fn spent_so_far(&self) -> (Instant, u32) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        let t = Connections::new(3, 2, 0);
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

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let t = Connections::new(2, 10, 0);
        let a = t.admit(None).unwrap();
        let b = t.admit(None).unwrap();
        let busy = t.admit(None);
        assert_eq!(
            busy.unwrap_err(),
            Closed::MaxConnections,
            "none idle: refused"
        );
        let b_idle = b.idle();
        let a_idle = a.idle();
        let c = t.admit(None).unwrap();
        // b became idle first, so b is told to close; a is left alone.
        tokio::time::timeout(Duration::from_millis(100), b.evicted())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), a.evicted())
                .await
                .is_err()
        );
        drop(b_idle);
        drop(b);
        // a idle; a fourth evicts it; with none idle left, a fifth is refused.
        let d = t.admit(None).unwrap();
        tokio::time::timeout(Duration::from_millis(100), a.evicted())
            .await
            .unwrap();
        drop(a_idle);
        drop(a);
        assert_eq!(t.admit(None).unwrap_err(), Closed::MaxConnections);
        drop(c);
        drop(d);
        assert_eq!(t.open.load(Ordering::Acquire), 0);
        assert!(t.idle.lock().unwrap().is_empty());
    }

    #[test]
    fn a_refusal_by_the_gateway_cap_frees_the_client_count() {
        let t = Connections::new(1, 5, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _a = t.admit(Some(ip)).unwrap();
        assert_eq!(t.admit(Some(ip)).unwrap_err(), Closed::MaxConnections);
        assert_eq!(t.per_client.lock().unwrap().get(&ip), Some(&1));
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        // 1024 descriptors, 512 fetch slots: 512 + 128 + 64 kept back.
        assert_eq!(default_max(Some(1024), 512), 320);
        assert!(fits(Some(1024), 320, 512));
        assert!(!fits(Some(1024), 321, 512));
        assert_eq!(default_max(Some(100), 10), 16);
        assert_eq!(default_max(Some(1_048_576), 512), 786_432);
        assert!(fits(Some(1_048_576), 786_432, 512));
        assert_eq!(default_max(None, 0), 768);
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
