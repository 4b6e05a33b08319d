//! Prometheus metrics: one registry, built by the binary and passed down, so a test can read
//! exact counts. Names are `dashpush_<subsystem>_<what>_<unit>`; label values come from fixed
//! sets so label cardinality stays bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::EdgeError;

/// Every metric the edge exports.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Downstream requests by protocol (`h1`, `h2`) and status code.
    pub requests: IntCounterVec,
    /// Cache lookups that found a fresh entry.
    pub cache_hits: IntCounter,
    /// Cache lookups that did not.
    pub cache_misses: IntCounter,
    /// Entries evicted to stay within the byte budget.
    pub cache_evictions: IntCounter,
    /// Bytes served from the cache.
    pub cache_hit_bytes: IntCounter,
    /// Bytes currently held (weighted size).
    pub cache_size_bytes: IntGauge,
    /// Entries removed by purge requests.
    pub cache_purged: IntCounter,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// MPD bodies parsed for the planner (once per body, whatever the Host).
    pub mpd_parses: IntCounter,
    /// Uncached bodies cut off because the budget for bytes held for slow readers was spent.
    pub fills_cut: IntCounter,
    /// Cache fills by source (`origin`, `peer`, `peer_fallback`).
    pub fills: IntCounterVec,
    /// Fleet peers by state (`up`, `down`).
    pub fleet_peers: IntGaugeVec,
    /// Origin fetches by outcome (`ok`, `status_error`, `connect_error`, `timeout`, `error`,
    /// `busy`, `abandoned`).
    pub origin_fetches: IntCounterVec,
    /// Origin fetch latency to the end of the body, by outcome.
    pub origin_seconds: HistogramVec,
    /// Requests that waited on another request's origin fetch instead of fetching.
    pub coalesced_waits: IntCounter,
    /// Open downstream connections by protocol.
    pub open_connections: IntGaugeVec,
    /// HTTP/2 connections held without the h2 library until their first request, or until
    /// their next one after falling idle.
    pub h2_parked: IntGauge,
    /// HTTP/2 connections parked again after serving and falling idle.
    pub h2_parked_again: IntCounter,
    /// Connections parked again that a request woke.
    pub h2_woken: IntCounter,
    /// Downstream connections the gateway ended or refused, by protocol and reason
    /// (the series are created at start by the connection guard).
    pub connections_closed: IntCounterVec,
    /// Origin fetches for requests whose last reader left before the body was in, by what
    /// became of them (`background`: continued in a background slot; `abandoned`).
    pub fills_unread: IntCounterVec,
    /// Push metrics (`dashpush_push_*`, `dashpush_prefetch_*`).
    pub push: PushMetrics,
    /// WebSocket upgrade requests by result (`ok`, `no_subprotocol`, `bad_request`).
    pub ws_upgrades: IntCounterVec,
    /// Open WebSocket sessions.
    pub ws_sessions: IntGauge,
    /// WebSocket messages by direction (`in`, `out`) and message (`mpd_request`, …).
    pub ws_messages: IntCounterVec,
    /// Sockets the gateway closed, by close code (`1002`, `1003`, `1008`, `1009`).
    pub ws_closes: IntCounterVec,
    /// Configuration reloads by result (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// Live push metrics (`dashpush_live_*`).
    pub live: LiveMetrics,
    /// 1 while `/ready` answers 200, 0 before the origin answered and while draining (as of
    /// the last probe).
    pub ready: IntGauge,
}

/// Holds a gauge up while alive (abort-safe `inc`/`dec`).
pub(crate) struct Held(IntGauge);

impl Held {
    pub(crate) fn new(g: &IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Live push cycles (spec §6.2 live rule).
#[derive(Clone, Debug)]
pub struct LiveMetrics {
    /// Request cycles with pushes waiting for segments to become available.
    pub cycles: IntGauge,
    /// Live segments fetched for a push, by outcome (`on_time`: the origin had it at its
    /// availability; `late`: it answered 404, 5xx or not at all first; `missed`: no ask
    /// succeeded before the end of the segment's availability slot).
    pub segments: IntCounterVec,
    /// From a segment's availability start to the first byte (`edge="first_byte"`, the pushed
    /// response's head) and to the last byte (`edge="last_byte"`) sent by the gateway.
    pub delay: HistogramVec,
}

impl LiveMetrics {
    fn new(registry: &Registry) -> Result<Self, EdgeError> {
        let cycles = IntGauge::new(
            "dashpush_live_cycles",
            "Live push cycles with pushes waiting for segments.",
        )?;
        let segments = IntCounterVec::new(
            Opts::new(
                "dashpush_live_segments_total",
                "Live segments fetched for a push, by outcome.",
            ),
            &["outcome"],
        )?;
        let delay = HistogramVec::new(
            HistogramOpts::new(
                "dashpush_live_push_delay_seconds",
                "From a live segment's availability start to its first or last byte sent.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["transport", "edge"],
        )?;
        registry.register(Box::new(cycles.clone()))?;
        registry.register(Box::new(segments.clone()))?;
        registry.register(Box::new(delay.clone()))?;
        Ok(Self {
            cycles,
            segments,
            delay,
        })
    }
}

/// How push pays off. Labels: `transport` (`h2`, `ws`), `push_type` (the applied push type's
/// token, e.g. `push-next`), `result` (`accepted` or a rejection reason), `reason`,
/// `outcome`: all from fixed sets.
#[derive(Clone, Debug)]
pub struct PushMetrics {
    /// Requests carrying a push directive, by transport, requested push type and result.
    pub directives: IntCounterVec,
    /// PUSH_PROMISEs (or WebSocket pushed streams) sent.
    pub promises: IntCounterVec,
    /// Pushes whose body was sent to the end.
    pub completed: IntCounterVec,
    /// Pushes fully delivered and never reset by the client.
    pub claimed: IntCounterVec,
    /// Pushes the client reset (cancelled) before their end.
    pub reset: IntCounterVec,
    /// Body bytes sent on pushed streams.
    pub bytes: IntCounterVec,
    /// Bytes sent on pushed streams the client then reset.
    pub wasted_bytes: IntCounterVec,
    /// Bytes not sent because the client reset the push first.
    pub saved_bytes: IntCounterVec,
    /// Promises the gateway withdrew itself, by reason (`delivery::DropReason`).
    pub dropped: IntCounterVec,
    /// Planned pushes the gateway took back before the ack, never promised, by reason.
    pub withheld: IntCounterVec,
    /// Segments fetched ahead of need, by outcome (`started`, `used_by_push`,
    /// `used_by_client`, `error`, `dropped`).
    pub prefetches: IntCounterVec,
}

impl PushMetrics {
    fn new(registry: &Registry) -> Result<Self, EdgeError> {
        let vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, EdgeError> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let tp = &["transport", "push_type"][..];
        Ok(Self {
            directives: vec(
                "dashpush_push_directives_total",
                "Requests with a push directive, by transport, push type and result.",
                &["transport", "push_type", "result"],
            )?,
            promises: vec("dashpush_push_promises_total", "Pushes promised.", tp)?,
            completed: vec(
                "dashpush_push_completed_total",
                "Pushes whose body was sent to the end.",
                tp,
            )?,
            claimed: vec(
                "dashpush_push_claimed_total",
                "Pushes fully delivered and not reset by the client.",
                tp,
            )?,
            reset: vec(
                "dashpush_push_reset_total",
                "Pushes the client reset before their end.",
                tp,
            )?,
            bytes: vec(
                "dashpush_push_bytes_total",
                "Body bytes sent on pushed streams.",
                tp,
            )?,
            wasted_bytes: vec(
                "dashpush_push_wasted_bytes_total",
                "Bytes sent on pushed streams that the client then reset.",
                tp,
            )?,
            saved_bytes: vec(
                "dashpush_push_saved_bytes_total",
                "Bytes not sent because the client reset the push first.",
                tp,
            )?,
            dropped: vec(
                "dashpush_push_dropped_total",
                "Promises withdrawn by the gateway, by reason.",
                &["transport", "reason"],
            )?,
            withheld: vec(
                "dashpush_push_withheld_total",
                "Planned pushes taken back before the ack (never promised), by reason.",
                &["transport", "reason"],
            )?,
            prefetches: vec(
                "dashpush_prefetch_total",
                "Segments fetched ahead of need, by outcome.",
                &["outcome"],
            )?,
        })
    }
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: Registry) -> Result<Self, EdgeError> {
        let requests = IntCounterVec::new(
            Opts::new(
                "dashpush_requests_total",
                "Downstream requests by protocol and status.",
            ),
            &["protocol", "status"],
        )?;
        let cache_hits = IntCounter::new(
            "dashpush_cache_hits_total",
            "Cache lookups served from a fresh entry.",
        )?;
        let cache_misses = IntCounter::new(
            "dashpush_cache_misses_total",
            "Cache lookups that needed the origin.",
        )?;
        let cache_evictions = IntCounter::new(
            "dashpush_cache_evictions_total",
            "Entries evicted to stay within the byte budget.",
        )?;
        let cache_hit_bytes = IntCounter::new(
            "dashpush_cache_hit_bytes_total",
            "Body bytes served from the cache.",
        )?;
        let cache_size_bytes =
            IntGauge::new("dashpush_cache_size_bytes", "Weighted size of the cache.")?;
        let access_log_dropped = IntCounter::new(
            "dashpush_access_log_dropped_total",
            "Access-log lines dropped because the writer's queue was full.",
        )?;
        let mpd_parses = IntCounter::new(
            "dashpush_mpd_parses_total",
            "MPD bodies parsed for push planning (once per body and MPD, whatever the Host).",
        )?;
        let fills_cut = IntCounter::new(
            "dashpush_fills_cut_total",
            "Uncached bodies cut off (their slow readers reset) because the budget for bytes held \
             only for readers (upstream.max_pinned_bytes) was spent.",
        )?;
        let fills = IntCounterVec::new(
            Opts::new(
                "dashpush_fills_total",
                "Cache fills by source: the origin, the fleet peer that owns the key, or the \
                 origin after that peer failed.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(fills.clone()))?;
        for s in ["origin", "peer", "peer_fallback"] {
            fills.with_label_values(&[s]);
        }
        let fleet_peers = IntGaugeVec::new(
            Opts::new(
                "dashpush_fleet_peers",
                "Other replicas of the fleet by state.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(fleet_peers.clone()))?;
        let cache_purged = IntCounter::new(
            "dashpush_cache_purged_total",
            "Cache entries removed by purge requests (admin POST /purge).",
        )?;
        let origin_fetches = IntCounterVec::new(
            Opts::new(
                "dashpush_origin_fetches_total",
                "Origin fetches by outcome.",
            ),
            &["outcome"],
        )?;
        let origin_seconds = HistogramVec::new(
            HistogramOpts::new(
                "dashpush_origin_fetch_duration_seconds",
                "Origin fetch time to the end of the body.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["outcome"],
        )?;
        let coalesced_waits = IntCounter::new(
            "dashpush_cache_coalesced_waits_total",
            "Requests that waited on another request's origin fetch.",
        )?;
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "dashpush_open_connections",
                "Open downstream connections by protocol.",
            ),
            &["protocol"],
        )?;
        for c in [
            &cache_hits,
            &cache_misses,
            &cache_evictions,
            &cache_hit_bytes,
            &coalesced_waits,
            &cache_purged,
            &access_log_dropped,
            &mpd_parses,
            &fills_cut,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(cache_size_bytes.clone()))?;
        registry.register(Box::new(origin_fetches.clone()))?;
        registry.register(Box::new(origin_seconds.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        let h2_parked = IntGauge::new(
            "dashpush_h2_parked_connections",
            "HTTP/2 connections held without the h2 library until their first request, or until \
             their next one after falling idle.",
        )?;
        registry.register(Box::new(h2_parked.clone()))?;
        let h2_parked_again = IntCounter::new(
            "dashpush_h2_parked_again_total",
            "HTTP/2 connections parked again (their h2 state dropped) after serving and falling idle.",
        )?;
        registry.register(Box::new(h2_parked_again.clone()))?;
        let h2_woken = IntCounter::new(
            "dashpush_h2_woken_total",
            "HTTP/2 connections parked again that the client woke with a new request.",
        )?;
        registry.register(Box::new(h2_woken.clone()))?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "dashpush_connections_closed_total",
                "Downstream connections the gateway ended or refused, by protocol and reason.",
            ),
            &["protocol", "reason"],
        )?;
        registry.register(Box::new(connections_closed.clone()))?;
        let fills_unread = IntCounterVec::new(
            Opts::new(
                "dashpush_fills_unread_total",
                "Origin fetches whose last reader left before they ended: continued in a \
                 background slot, or abandoned.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(fills_unread.clone()))?;
        // `process_open_fds`, `process_max_fds`, RSS and CPU (Linux): what the connection caps
        // are sized against.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for o in ["background", "abandoned"] {
            fills_unread.with_label_values(&[o]);
        }
        let push = PushMetrics::new(&registry)?;
        // The push and live series a dashboard plots are created from the start (0) by the
        // delivery layer, from its label enums (`delivery::account::register_series`).
        for o in [
            "started",
            "used_by_push",
            "used_by_client",
            "evicted_unused",
            "error",
            "dropped",
        ] {
            push.prefetches.with_label_values(&[o]);
        }
        let ws_upgrades = IntCounterVec::new(
            Opts::new(
                "dashpush_ws_upgrades_total",
                "WebSocket upgrade requests by result.",
            ),
            &["result"],
        )?;
        let ws_sessions = IntGauge::new("dashpush_ws_sessions", "Open WebSocket sessions.")?;
        let ws_messages = IntCounterVec::new(
            Opts::new(
                "dashpush_ws_messages_total",
                "WebSocket sub-protocol messages by direction and message.",
            ),
            &["direction", "message"],
        )?;
        let ws_closes = IntCounterVec::new(
            Opts::new(
                "dashpush_ws_closes_total",
                "WebSocket sockets closed by the gateway, by close code.",
            ),
            &["code"],
        )?;
        let live = LiveMetrics::new(&registry)?;
        let ready = IntGauge::new(
            "dashpush_ready",
            "1 while /ready answers 200; 0 before the origin answered and while draining.",
        )?;
        registry.register(Box::new(ready.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "dashpush_config_reloads_total",
                "Configuration reloads (SIGHUP or a changed file) by result.",
            ),
            &["result"],
        )?;
        for r in ["ok", "error"] {
            config_reloads.with_label_values(&[r]);
        }
        registry.register(Box::new(config_reloads.clone()))?;
        for r in ["ok", "no_subprotocol", "bad_request"] {
            ws_upgrades.with_label_values(&[r]);
        }
        for d in ["in", "out"] {
            for m in [
                "mpd_request",
                "segment_request",
                "mpd_received",
                "segment_received",
                "end_of_stream",
                "segment_cancel",
            ] {
                ws_messages.with_label_values(&[d, m]);
            }
        }
        for c in ["1002", "1003", "1008", "1009"] {
            ws_closes.with_label_values(&[c]);
        }
        registry.register(Box::new(ws_upgrades.clone()))?;
        registry.register(Box::new(ws_sessions.clone()))?;
        registry.register(Box::new(ws_messages.clone()))?;
        registry.register(Box::new(ws_closes.clone()))?;
        Ok(Self {
            push,
            ws_upgrades,
            ws_sessions,
            ws_messages,
            ws_closes,
            config_reloads,
            live,
            ready,
            registry,
            requests,
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_hit_bytes,
            cache_size_bytes,
            cache_purged,
            access_log_dropped,
            mpd_parses,
            fills_cut,
            fills,
            fleet_peers,
            origin_fetches,
            origin_seconds,
            coalesced_waits,
            open_connections,
            h2_parked,
            h2_parked_again,
            h2_woken,
            connections_closed,
            fills_unread,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        out
    }
}
