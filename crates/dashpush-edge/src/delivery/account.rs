//! Counting pushes: every promised push ends exactly once as completed, reset (the client
//! refused it, or left before its end) or dropped (we withdrew it, with a reason), so
//! `promised = completed + reset + dropped` holds on every transport (docs/metrics.md). Pushes
//! withheld before the ack were never promised and are counted apart.

use std::sync::atomic::{AtomicU32, Ordering};

use dashpush_plan::Push;
use prometheus::{Histogram, IntCounter};

use dashpush_proto::PushType;

use super::{DropReason, Transport};
use crate::metrics::{LiveMetrics, Metrics, PushMetrics};
use crate::prefetch::LiveOutcome;

/// Creates every push and live series a dashboard plots (at 0), from the label enums, so rates
/// and panels work before the first event.
pub(crate) fn register_series(m: &Metrics) {
    let p = &m.push;
    for t in Transport::ALL {
        for ty in PushType::PUSHING {
            for c in [
                &p.promises,
                &p.completed,
                &p.claimed,
                &p.reset,
                &p.bytes,
                &p.wasted_bytes,
                &p.saved_bytes,
            ] {
                c.with_label_values(&[t.label(), ty.label()]);
            }
        }
        for r in DropReason::ALL {
            p.dropped.with_label_values(&[t.label(), r.label()]);
            p.withheld.with_label_values(&[t.label(), r.label()]);
        }
        for e in LiveEdge::ALL {
            m.live.delay.with_label_values(&[t.label(), e.label()]);
        }
    }
    for o in LiveOutcome::ALL {
        m.live.segments.with_label_values(&[o.label()]);
    }
}

/// The counters of one cycle: its transport and applied push type, and its own tally of how
/// its pushes ended (for its access-log line).
pub(crate) struct Account<'a> {
    m: &'a PushMetrics,
    live: &'a LiveMetrics,
    /// The cycle's series, looked up by label once for all its pushes (a live cycle pushes a
    /// segment every few seconds for as long as its viewer stays), at its first push.
    series: std::sync::OnceLock<Series>,
    transport: &'static str,
    push_type: &'static str,
    tally: [AtomicU32; 4],
    /// The request's client, for its pushes' access-log lines.
    client: Option<String>,
    /// When the cycle started.
    started: std::time::Instant,
}

/// The series of one (transport, push type).
struct Series {
    promises: IntCounter,
    completed: IntCounter,
    claimed: IntCounter,
    reset: IntCounter,
    bytes: IntCounter,
    wasted_bytes: IntCounter,
    saved_bytes: IntCounter,
    first_byte: Histogram,
    last_byte: Histogram,
}

impl Series {
    fn new(
        m: &PushMetrics,
        live: &LiveMetrics,
        transport: &'static str,
        push_type: &'static str,
    ) -> Self {
        let tp = [transport, push_type];
        let delay = |e: LiveEdge| live.delay.with_label_values(&[transport, e.label()]);
        Self {
            promises: m.promises.with_label_values(&tp),
            completed: m.completed.with_label_values(&tp),
            claimed: m.claimed.with_label_values(&tp),
            reset: m.reset.with_label_values(&tp),
            bytes: m.bytes.with_label_values(&tp),
            wasted_bytes: m.wasted_bytes.with_label_values(&tp),
            saved_bytes: m.saved_bytes.with_label_values(&tp),
            first_byte: delay(LiveEdge::FirstByte),
            last_byte: delay(LiveEdge::LastByte),
        }
    }
}

/// Indexes of [`Account`]'s tally.
const PROMISED: usize = 0;
const COMPLETED: usize = 1;
const RESET: usize = 2;
const DROPPED: usize = 3;

impl<'a> Account<'a> {
    pub(crate) fn new(
        m: &'a PushMetrics,
        live: &'a LiveMetrics,
        transport: Transport,
        push_type: &'static str,
    ) -> Self {
        Self {
            m,
            live,
            series: std::sync::OnceLock::new(),
            transport: transport.label(),
            push_type,
            tally: Default::default(),
            client: None,
            started: std::time::Instant::now(),
        }
    }

    /// The client the cycle serves (for the access log).
    pub(crate) fn for_client(mut self, client: Option<String>) -> Self {
        self.client = client;
        self
    }

    /// The request's client.
    pub(crate) fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// When the cycle started.
    pub(crate) fn started(&self) -> std::time::Instant {
        self.started
    }

    fn series(&self) -> &Series {
        self.series
            .get_or_init(|| Series::new(self.m, self.live, self.transport, self.push_type))
    }

    fn tick(&self, i: usize) {
        self.tally[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The transport's label (`h2`, `ws`).
    pub(crate) fn transport(&self) -> &'static str {
        self.transport
    }

    /// `(promised, completed, reset, dropped)` so far.
    pub(crate) fn tally(&self) -> [u32; 4] {
        [PROMISED, COMPLETED, RESET, DROPPED].map(|i| self.tally[i].load(Ordering::Relaxed))
    }

    /// `n` pushes planned but never promised.
    pub(crate) fn withheld(&self, reason: DropReason, n: usize) {
        self.m
            .withheld
            .with_label_values(&[self.transport, reason.label()])
            .inc_by(n as u64);
    }

    /// A promise made; the returned guard counts it as reset if nothing else ends it.
    pub(crate) fn promised(&self) -> Outstanding {
        self.tick(PROMISED);
        self.series().promises.inc();
        Outstanding(Some(self.series().reset.clone()))
    }

    /// Sent to the end.
    pub(crate) fn completed(&self, mut o: Outstanding, bytes: u64) {
        o.settle();
        self.tick(COMPLETED);
        self.series().completed.inc();
        self.series().claimed.inc();
        self.series().bytes.inc_by(bytes);
    }

    /// Refused by the client (or its connection ended) after `sent` of `total` body bytes.
    pub(crate) fn reset(&self, mut o: Outstanding, sent: u64, total: Option<u64>) {
        o.settle();
        self.tick(RESET);
        self.series().reset.inc();
        self.series().bytes.inc_by(sent);
        self.series().wasted_bytes.inc_by(sent);
        if let Some(total) = total {
            self.series().saved_bytes.inc_by(total.saturating_sub(sent));
        }
    }

    /// Withdrawn by us after `sent` body bytes.
    pub(crate) fn dropped(&self, mut o: Outstanding, reason: DropReason, sent: u64) {
        o.settle();
        self.tick(DROPPED);
        self.m
            .dropped
            .with_label_values(&[self.transport, reason.label()])
            .inc();
        self.series().bytes.inc_by(sent);
    }

    /// A prefetch given up before it was used.
    pub(crate) fn prefetch_dropped(&self) {
        self.m.prefetches.with_label_values(&["dropped"]).inc();
    }

    /// A live push's delay from its segment's availability start, at its first or last byte.
    pub(crate) fn observe_live(&self, p: &Push, edge: LiveEdge) {
        if let Some(at) = p.not_before {
            // On the system clock directly (as `Utc::now` reads it), cheaper than chrono's
            // subtraction: this runs twice for every live push. Before its availability: 0.
            let secs = std::time::SystemTime::now()
                .duration_since(at.into())
                .map_or(0.0, |d| d.as_secs_f64());
            match edge {
                LiveEdge::FirstByte => &self.series().first_byte,
                LiveEdge::LastByte => &self.series().last_byte,
            }
            .observe(secs);
        }
    }
}

/// Which byte of a live push is timed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LiveEdge {
    FirstByte,
    LastByte,
}

impl LiveEdge {
    /// Every edge, for pre-registering series.
    pub(crate) const ALL: [Self; 2] = [Self::FirstByte, Self::LastByte];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::FirstByte => "first_byte",
            Self::LastByte => "last_byte",
        }
    }
}

/// A promise not yet counted as ended. Dropped unsettled (the request task was aborted: the
/// client closed the connection), it counts as reset.
#[must_use]
pub(crate) struct Outstanding(Option<IntCounter>);

impl Outstanding {
    fn settle(&mut self) {
        self.0 = None;
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.inc();
        }
    }
}

/// Counts a live cycle (pushes waiting for segments) while it lives, abort included.
pub(crate) struct LiveCycle(Option<prometheus::IntGauge>);

impl LiveCycle {
    pub(crate) fn new(live: &LiveMetrics, pushes: &[Push]) -> Self {
        if pushes.iter().any(|p| p.not_before.is_some()) {
            live.cycles.inc();
            Self(Some(live.cycles.clone()))
        } else {
            Self(None)
        }
    }
}

impl Drop for LiveCycle {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_push_is_timed_from_its_availability_start_and_never_below_zero() {
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let acct = Account::new(&metrics.push, &metrics.live, Transport::H2, "push-next");
        let push = |ago_ms: i64| Push {
            url: url::Url::parse("http://o.test/live/seg-1.m4s").unwrap(),
            kind: dashpush_plan::PushKind::Media,
            not_before: Some(chrono::Utc::now() - chrono::Duration::milliseconds(ago_ms)),
            live_until: None,
        };
        acct.observe_live(&push(1500), LiveEdge::FirstByte);
        let first = &acct.series().first_byte;
        assert_eq!(first.get_sample_count(), 1);
        let secs = first.get_sample_sum();
        assert!(
            (1.5..2.5).contains(&secs),
            "about 1.5 s after availability: {secs}"
        );
        // Sent before its availability start (a clock step): counted as no delay.
        acct.observe_live(&push(-60_000), LiveEdge::LastByte);
        let last = &acct.series().last_byte;
        assert_eq!((last.get_sample_count(), last.get_sample_sum()), (1, 0.0));
        // A static push is not timed.
        let mut vod = push(0);
        vod.not_before = None;
        acct.observe_live(&vod, LiveEdge::LastByte);
        assert_eq!(last.get_sample_count(), 1);
    }
}
