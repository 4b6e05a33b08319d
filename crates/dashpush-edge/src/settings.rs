//! What the edge runs with: listeners, origins, cache, HTTP/2 limits, push and prefetch
//! settings. Plain data, filled from the command line or the configuration file
//! ([`crate::config`]) and read by every other module.

use std::time::Duration;

use dashpush_plan::PlanConfig;
use url::Url;

use crate::cache::Ttls;

use crate::origin::routing::Route;

/// Everything the edge needs to run.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Plain listener (HTTP/1.1 and h2c).
    pub listen: String,
    /// Admin listener.
    pub admin: String,
    /// Bearer token required by every non-GET admin route (purge), if set.
    pub admin_token: Option<String>,
    /// Where the access log goes, if it is on.
    pub access_log: Option<crate::access::Sink>,
    /// Access log lines as JSON (`log_format: json`), else `key=value` text.
    pub access_log_json: bool,
    /// The fleet of replicas sharing origin fetches, if any.
    pub fleet: Option<FleetConfig>,
    /// The default origin (`http://host:port`).
    pub origin: Url,
    /// Further origins by host and path prefix (see `docs/config.md`, `routes`).
    pub routes: Vec<Route>,
    /// Cache budget in bytes.
    pub cache_bytes: u64,
    /// Default TTLs.
    pub ttls: Ttls,
    /// Origin connect timeout.
    pub connect_timeout: Duration,
    /// Origin read timeout (an origin that stalls longer gets a 504).
    pub read_timeout: Duration,
    /// Deadline for a whole origin response, head and body (504 past it).
    pub total_timeout: Duration,
    /// Largest origin body accepted.
    pub max_body: usize,
    /// Worker threads of each traffic listener's runtime (cleartext, TLS); by default one per
    /// CPU the process may use ([`default_threads`]).
    pub threads: usize,
    /// Grace period for in-flight requests on shutdown.
    pub grace: Duration,
    /// Report ready without waiting for the origin to answer.
    pub ready_without_origin: bool,
    /// HTTP/2 limits.
    pub h2: H2Limits,
    /// The TLS listener, if any.
    pub tls: Option<TlsListener>,
    /// Push and prefetch settings.
    pub push: PushSettings,
    /// Deadlines and connection caps against slow or hostile clients (`limits:`).
    pub limits: Limits,
    /// The gateway-wide bound on origin fetches.
    pub fetch_slots: FetchSlots,
    /// How HTTPS origins are verified.
    pub origin_tls: OriginTls,
}

/// The fleet (`fleet:`, `--peer`, `--self`).
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// This replica's identity (`host:port`).
    pub me: String,
    /// Every replica: identity and URL.
    pub peers: Vec<(String, Url)>,
    /// The token peer fills carry.
    pub token: String,
    /// `NAME:PORT` resolved for the peers, if any.
    pub dns: Option<String>,
}

/// TLS to `https://` origins (`upstream.ca_file`, `upstream.tls_verify`, `upstream.sni`).
#[derive(Debug, Clone)]
pub struct OriginTls {
    /// PEM CAs to verify origin certificates with, instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Verify the certificate and the host name (turning it off is logged at start).
    pub verify: bool,
    /// The server name sent (SNI) and verified; default each origin's host.
    pub sni: Option<String>,
}

impl Default for OriginTls {
    fn default() -> Self {
        Self {
            ca_file: None,
            verify: true,
            sni: None,
        }
    }
}

/// Origin fetches running at once, gateway-wide: beyond them a fetch waits, then its clients
/// get a 503 (however many client connections or resets ask for more).
#[derive(Debug, Clone, Copy)]
pub struct FetchSlots {
    /// Fetches at once (`upstream.max_connections`).
    pub max: usize,
    /// How long a fetch waits for a slot (`upstream.queue_timeout_ms`).
    pub wait: Duration,
    /// Client fetches that may go on after every reader left (`upstream.max_background_fills`);
    /// beyond them such a fetch is abandoned.
    pub background: usize,
    /// Requests with credentials (`Authorization`: not cached, streamed through) at once
    /// (`upstream.max_bypass_requests`); beyond them 503.
    pub bypass: usize,
    /// Bytes of bodies held only for their readers (not cached), gateway-wide
    /// (`upstream.max_pinned_bytes`); beyond it the fills holding the most are cut off.
    pub pinned_bytes: usize,
}

impl Default for FetchSlots {
    fn default() -> Self {
        Self {
            max: 512,
            wait: Duration::from_secs(5),
            background: 64,
            bypass: 64,
            pinned_bytes: 256 << 20,
        }
    }
}

/// Deadlines on every downstream connection and caps on how many there are (`limits:`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Protocol detection (the first bytes of a cleartext connection) and the HTTP/2
    /// connection preface.
    pub handshake: Duration,
    /// The whole HTTP/1.1 request head, from its first byte (not per read).
    pub header: Duration,
    /// A keep-alive connection with nothing in flight is closed after this long (HTTP/2:
    /// GOAWAY first).
    pub idle: Duration,
    /// A response or push that accepts no bytes for this long is reset (HTTP/2) or its
    /// connection closed (HTTP/1.1).
    pub send: Duration,
    /// Open downstream connections, gateway-wide; 0 = derived from the descriptor limit.
    pub max_connections: usize,
    /// Open downstream connections per client address.
    pub max_connections_per_client: usize,
    /// The open-files soft limit the gateway sets at start, within the hard limit (0: raise it
    /// to the hard limit).
    pub max_open_files: u64,
    /// `TCP_NOTSENT_LOWAT` of downstream sockets: bytes written but not yet sent that the
    /// kernel holds before it stops taking more (0: the kernel's default, as much as the send
    /// buffer). Kept small, what goes out next is still ours to choose: an answer before queued
    /// pushes, a parent before its promises.
    pub notsent_lowat: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(30),
            idle: Duration::from_secs(75),
            send: Duration::from_secs(30),
            max_connections: 0,
            max_connections_per_client: 512,
            max_open_files: 0,
            notsent_lowat: 16 * 1024,
        }
    }
}

/// A TLS listener: ALPN offers `h2` then `http/1.1` (spec Annex E).
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Address.
    pub listen: String,
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// One worker thread per CPU this process may run on: its CPU affinity (`taskset`, a
/// cpuset) and its cgroup's CPU quota (a container's CPU limit) count, as with nginx's
/// `worker_processes auto` and Go's `GOMAXPROCS`; 2 when that cannot be read, at most 256.
/// More threads than CPUs only take turns on them: two threads on one core wake each other and
/// lengthen the tail (docs/benchmarks.md, "one write for many frames, one worker per core").
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 256))
}

impl EdgeConfig {
    /// Defaults for everything but the addresses.
    pub fn new(listen: String, admin: String, origin: Url) -> Self {
        Self {
            listen,
            admin,
            admin_token: None,
            access_log: None,
            access_log_json: false,
            fleet: None,
            origin,
            routes: Vec::new(),
            cache_bytes: 256 * 1024 * 1024,
            ttls: Ttls {
                mpd: Duration::from_secs(2),
                segment: Duration::from_secs(3600),
                stale_if_error: Duration::from_secs(60),
            },
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            max_body: 64 * 1024 * 1024,
            threads: default_threads(),
            grace: Duration::from_secs(10),
            ready_without_origin: false,
            h2: H2Limits::default(),
            tls: None,
            push: PushSettings::default(),
            limits: Limits::default(),
            fetch_slots: FetchSlots::default(),
            origin_tls: OriginTls::default(),
        }
    }
}

/// Limits of the HTTP/2 server, per connection.
#[derive(Debug, Clone, Copy)]
pub struct H2Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE for streams the client opens.
    pub initial_window_size: u32,
    /// Connection-level receive window.
    pub connection_window_size: u32,
    /// Reset streams remembered (RFC 9113 rapid-reset defence).
    pub max_concurrent_reset_streams: usize,
    /// Streams reset by the client before being accepted.
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset for the client's protocol errors before GOAWAY.
    pub max_local_error_reset_streams: usize,
    /// Bytes buffered per stream for sending.
    pub max_send_buffer_size: usize,
    /// Requests the client may reset within [`H2Limits::reset_window`] before the connection
    /// ends with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset defence for accepted streams).
    pub max_resets: u32,
    /// The window over which resets are counted.
    pub reset_window: Duration,
    /// Requests on one connection; then GOAWAY NO_ERROR and the client opens a new one.
    pub max_requests: u64,
    /// Keep-alive PING interval.
    pub ping_interval: Duration,
    /// A PING unanswered this long closes the connection.
    pub ping_timeout: Duration,
    /// A connection is held without the h2 library until its first request
    /// (`downstream::h2park`).
    pub park: bool,
    /// A connection that has served and then had no request open for this long is parked
    /// again (`downstream::h2idle`); `None`: never. Only with [`H2Limits::park`]; the server's
    /// SETTINGS_HEADER_TABLE_SIZE is then 0.
    pub park_when_idle: Option<Duration>,
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            initial_window_size: 1024 * 1024,
            connection_window_size: 4 * 1024 * 1024,
            max_concurrent_reset_streams: 64,
            max_pending_accept_reset_streams: 32,
            max_local_error_reset_streams: 256,
            max_send_buffer_size: 256 * 1024,
            max_resets: 200,
            reset_window: Duration::from_secs(10),
            max_requests: 10_000,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(20),
            park: true,
            park_when_idle: Some(Duration::from_secs(5)),
        }
    }
}

/// Push and prefetch settings.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Planner caps (config may lower the hard limits, never raise them).
    pub plan: PlanConfig,
    /// Segments prefetched after each segment a client pulls without a directive; 0 = off.
    pub prefetch_next: usize,
    /// Prefetches running at once, gateway-wide; further ones queue (and are dropped if nobody
    /// needs them any more before they start).
    pub prefetch_concurrency: usize,
    /// WebSocket: how long senders wait on a full queue before the socket is closed (1008).
    pub ws_stall: Duration,
    /// WebSocket: keep-alive ping interval (a socket that answers none of two pings is closed).
    pub ws_ping: Duration,
    /// Static files served under `/player/` (the demo player), if any.
    pub static_dir: Option<std::path::PathBuf>,
    /// Live: how long after a segment's availability start the gateway asks the origin.
    pub live_guard: Duration,
    /// Live: the wait between asks while the origin answers 404 for a segment that is late.
    pub live_retry_interval: Duration,
    /// Live: asks after the first before the segment counts as missed.
    pub live_retries: u32,
    /// Pushes in flight on a connection amount to at most what it drained, at its recent rate,
    /// in this long (`push.drain_buffer_ms`); zero turns the bound off.
    pub drain_buffer: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            ws_stall: WS_STALL,
            ws_ping: WS_PING_EVERY,
            static_dir: None,
            live_guard: Duration::ZERO,
            live_retry_interval: Duration::from_millis(25),
            live_retries: 80,
            drain_buffer: Duration::from_secs(4),
            plan: PlanConfig::default(),
            prefetch_next: 2,
            prefetch_concurrency: 16,
        }
    }
}

/// Default: how long WebSocket senders wait on a full queue before the socket is closed (1008).
pub const WS_STALL: Duration = Duration::from_secs(20);
/// Default WebSocket keep-alive ping interval.
pub const WS_PING_EVERY: Duration = Duration::from_secs(20);
