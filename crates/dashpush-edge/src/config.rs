//! The YAML configuration file: raw serde structs with unknown keys rejected, turned into a
//! typed [`EdgeConfig`] by validation that names the offending key. `dashpush check-config`
//! runs exactly this path; command-line flags are applied on top by the binary.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use url::Url;

use crate::cache::Ttls;
use crate::settings::{EdgeConfig, H2Limits, TlsListener};
use dashpush_plan::PlanConfig;

/// A configuration problem, naming the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse or has an unknown key or a wrong type (the message names it).
    #[error("{0}")]
    Syntax(String),
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `cache.max_bytes`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The file as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Plain listener (HTTP/1.1 + h2c).
    pub listen: Option<String>,
    /// Admin listener: its address, or `{listen, token, token_file}`.
    pub admin: Option<RawAdmin>,
    /// Default origin URL.
    pub origin: Option<String>,
    /// Further origins by path prefix and host.
    pub routes: Vec<RawRoute>,
    /// TLS listener.
    pub tls: Option<RawTls>,
    /// Push caps.
    pub push: RawPush,
    /// Prefetching.
    pub prefetch: RawPrefetch,
    /// WebSocket sub-protocol.
    pub websocket: RawWebSocket,
    /// Live push cycles.
    pub live: RawLive,
    /// Directory served under `/player/` (the demo player).
    pub static_dir: Option<PathBuf>,
    /// Cache settings.
    pub cache: RawCache,
    /// Origin client settings.
    pub upstream: RawUpstream,
    /// HTTP/2 limits.
    pub http2: RawHttp2,
    /// Deadlines and connection caps.
    pub limits: RawLimits,
    /// Worker threads serving traffic (each listener's runtime).
    pub threads: Option<usize>,
    /// Drain grace on SIGTERM, milliseconds.
    pub shutdown_grace_ms: Option<u64>,
    /// Ready without waiting for the origin.
    pub ready_without_origin: Option<bool>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Access log: `-` (standard output) or a file path; none: off.
    pub access_log: Option<String>,
    /// The fleet of replicas that share the origin fetches.
    pub fleet: RawFleet,
}

/// `tls:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Address.
    pub listen: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
}

/// One entry of `routes:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix, starting with `/` (default `/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Host names this route is for (default: every host).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Origin URL.
    pub origin: String,
}

/// `push:` (spec §6.2 caps; config may lower the hard limits, never raise them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPush {
    /// Largest push-next K granted.
    pub max_next: Option<u32>,
    /// Longest push-time T granted, ms.
    pub max_time_ms: Option<u64>,
    /// Promises per request.
    pub max_promises_per_request: Option<usize>,
    /// Promised, unfinished pushes per connection.
    pub max_in_flight: Option<usize>,
    /// Push body bytes in flight per connection.
    pub max_bytes_in_flight: Option<u64>,
    /// Push diary entries per connection.
    pub diary_capacity: Option<usize>,
    /// Allow list/template entries the MPD does not address (same origin still required).
    pub allow_outside_mpd: Option<bool>,
    /// Live: promise a segment not yet available only if it is within this horizon, ms.
    pub live_horizon_ms: Option<u64>,
    /// push-next / push-time run at most this far beyond the requested segment, ms of media.
    pub max_ahead_ms: Option<u64>,
    /// Pushes in flight amount to at most what the connection drained lately in this long, ms
    /// (0 = no bound).
    pub drain_buffer_ms: Option<u64>,
}

/// `prefetch:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrefetch {
    /// Segments fetched ahead after each pulled segment (0 = off).
    pub next: Option<usize>,
    /// Prefetches running at once, gateway-wide.
    pub max_concurrency: Option<usize>,
}

/// `websocket:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebSocket {
    /// A client that leaves the send queue full this long is closed (1008), ms.
    pub stall_timeout_ms: Option<u64>,
    /// Keep-alive ping interval, ms.
    pub ping_interval_ms: Option<u64>,
}

/// `live:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLive {
    /// Wait after a segment's availability start before asking the origin, ms (clock skew).
    pub guard_ms: Option<u64>,
    /// Wait between asks while the origin answers 404 for a late segment, ms.
    pub retry_interval_ms: Option<u64>,
    /// Asks after the first before a late segment counts as missed.
    pub max_retries: Option<u32>,
}

/// Most routes accepted.
pub const MAX_ROUTES: usize = 64;

/// `cache:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Budget in bytes.
    pub max_bytes: Option<u64>,
    /// Default TTL of MPDs, ms.
    pub mpd_ttl_ms: Option<u64>,
    /// Default TTL of segments and other resources, ms.
    pub segment_ttl_ms: Option<u64>,
}

/// `upstream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Connect timeout, ms.
    pub connect_timeout_ms: Option<u64>,
    /// Read timeout, ms.
    pub read_timeout_ms: Option<u64>,
    /// Deadline for a whole response, ms.
    pub total_timeout_ms: Option<u64>,
    /// Largest body, bytes.
    pub max_body_bytes: Option<usize>,
    /// Origin fetches at once, gateway-wide.
    pub max_connections: Option<usize>,
    /// Wait for a fetch slot before 503, ms.
    pub queue_timeout_ms: Option<u64>,
    /// Client fetches that go on after their last reader left.
    pub max_background_fills: Option<usize>,
    /// Requests with credentials (not cached, streamed) at once.
    pub max_bypass_requests: Option<usize>,
    /// Bytes of uncached bodies held for slow readers, gateway-wide.
    pub max_pinned_bytes: Option<usize>,
    /// PEM file of the CAs that sign HTTPS origins' certificates (instead of the system roots).
    pub ca_file: Option<PathBuf>,
    /// Verify HTTPS origins' certificates and host names (default true; false logs a warning).
    pub tls_verify: Option<bool>,
    /// The TLS server name sent to HTTPS origins (default: each origin's host).
    pub sni: Option<String>,
    /// How long past freshness a stored answer may stand in for a failed origin, ms, when the
    /// origin does not say (`stale-if-error`); 0: never.
    pub stale_if_error_ms: Option<u64>,
}

/// `limits:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Protocol detection and HTTP/2 preface, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// Whole HTTP/1.1 request head, ms.
    pub header_timeout_ms: Option<u64>,
    /// Keep-alive idle, ms.
    pub idle_timeout_ms: Option<u64>,
    /// No send progress, ms.
    pub send_timeout_ms: Option<u64>,
    /// Downstream connections, gateway-wide (0: from the descriptor limit).
    pub max_connections: Option<usize>,
    /// Downstream connections per client address.
    pub max_connections_per_client: Option<usize>,
    /// Open-files soft limit set at start (0: raise it to the hard limit).
    pub max_open_files: Option<u64>,
    /// `TCP_NOTSENT_LOWAT` of downstream sockets, bytes (0: the kernel's default).
    pub tcp_notsent_lowat_bytes: Option<u32>,
}

/// `http2:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp2 {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: Option<u32>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: Option<u32>,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: Option<u32>,
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub initial_window_size: Option<u32>,
    /// Connection receive window.
    pub connection_window_size: Option<u32>,
    /// Remembered reset streams.
    pub max_concurrent_reset_streams: Option<usize>,
    /// Streams reset before accept.
    pub max_pending_accept_reset_streams: Option<usize>,
    /// Local error resets before GOAWAY.
    pub max_local_error_reset_streams: Option<usize>,
    /// Send buffer per stream, bytes.
    pub max_send_buffer_size: Option<usize>,
    /// Client resets within `reset_window_ms` before GOAWAY ENHANCE_YOUR_CALM.
    pub max_resets_per_connection: Option<u32>,
    /// Window of the reset count, ms.
    pub reset_window_ms: Option<u64>,
    /// Requests per connection before GOAWAY NO_ERROR.
    pub max_requests_per_connection: Option<u64>,
    /// Keep-alive PING interval, ms.
    pub ping_interval_ms: Option<u64>,
    /// Unanswered PING closes the connection after this, ms.
    pub ping_timeout_ms: Option<u64>,
    /// Hold a connection without the h2 library until its first request.
    pub park_until_first_request: Option<bool>,
    /// Park a connection again after it has had no request open for this long, ms; 0: never.
    pub park_when_idle_ms: Option<u64>,
}

/// `fleet:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFleet {
    /// This replica's URL as the others reach it.
    #[serde(rename = "self")]
    pub me: Option<String>,
    /// Every replica's URL (this one included, or not).
    pub peers: Vec<String>,
    /// The token peer fills carry.
    pub token: Option<String>,
    /// A file holding it.
    pub token_file: Option<PathBuf>,
    /// `NAME:PORT` resolved every 10 s for the peers (a Kubernetes headless Service).
    pub dns: Option<String>,
}

/// `admin:` as an address (`admin: 127.0.0.1:9090`) or a map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawAdmin {
    /// Only the listener's address.
    Listen(String),
    /// Listener and token.
    Full(RawAdminFull),
}

/// `admin: {listen, token, token_file}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdminFull {
    /// Listener address.
    pub listen: Option<String>,
    /// Bearer token every non-GET admin route requires (purge).
    pub token: Option<String>,
    /// A file holding the token (a mounted Secret), instead of `token`.
    pub token_file: Option<PathBuf>,
}

impl RawAdmin {
    fn full(self) -> RawAdminFull {
        match self {
            Self::Listen(listen) => RawAdminFull {
                listen: Some(listen),
                ..RawAdminFull::default()
            },
            Self::Full(f) => f,
        }
    }
}

impl RawConfig {
    /// Sets the admin listener's address (a command-line flag), keeping a configured token.
    pub fn set_admin_listen(&mut self, listen: String) {
        let mut full = self.admin.take().map(RawAdmin::full).unwrap_or_default();
        full.listen = Some(listen);
        self.admin = Some(RawAdmin::Full(full));
    }

    /// Sets the admin token file (a command-line flag).
    pub fn set_admin_token_file(&mut self, path: PathBuf) {
        let mut full = self.admin.take().map(RawAdmin::full).unwrap_or_default();
        full.token_file = Some(path);
        full.token = None;
        self.admin = Some(RawAdmin::Full(full));
    }

    /// Parses YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// Reads and parses a file.
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The log format asked for, if any (validated in [`EdgeConfig::try_from`]).
    pub fn log_format(&self) -> Option<&str> {
        self.log_format.as_deref()
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn positive_ms(
    key: &'static str,
    v: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(invalid(key, "must be greater than 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    key: &'static str,
    v: Option<T>,
    default: T,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    let v = v.unwrap_or(default);
    if v < lo || v > hi {
        return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v)
}

/// An origin's URL: `http://` or `https://`, with a host.
fn origin_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

/// A replica's identity on the fleet's ring: the `host:port` of its URL.
fn peer_id(key: &'static str, s: &str) -> Result<(String, Url), ConfigError> {
    let url = Url::parse(s).map_err(|e| invalid(key, format!("{s}: {e}")))?;
    if url.scheme() != "http" {
        return Err(invalid(key, format!("{s}: peers are reached over http://")));
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(invalid(key, format!("{s}: needs a host")));
    };
    Ok((format!("{host}:{port}"), url))
}

/// `fleet:`: off without peers; with peers, `self` and a token are required.
fn fleet(raw: RawFleet) -> Result<Option<crate::settings::FleetConfig>, ConfigError> {
    if raw.peers.is_empty() && raw.dns.is_none() {
        return Ok(None);
    }
    if let Some(d) = &raw.dns
        && d.rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(invalid("fleet.dns", format!("{d}: NAME:PORT")));
    }
    if raw.peers.len() > 256 {
        return Err(invalid("fleet.peers", "at most 256"));
    }
    let me = raw
        .me
        .ok_or_else(|| invalid("fleet.self", "is required with fleet.peers or fleet.dns"))?;
    let (me, _) = peer_id("fleet.self", &me)?;
    let peers = raw
        .peers
        .iter()
        .map(|p| peer_id("fleet.peers", p))
        .collect::<Result<Vec<_>, _>>()?;
    let token = admin_token(raw.token, raw.token_file)
        .map_err(|_| {
            invalid(
                "fleet.token",
                "set token or token_file: at least 16 characters, without spaces",
            )
        })?
        .ok_or_else(|| invalid("fleet.token", "is required with fleet.peers or fleet.dns"))?;
    Ok(Some(crate::settings::FleetConfig {
        me,
        peers,
        token,
        dns: raw.dns,
    }))
}

/// The admin token, from the file or the key; at least 16 characters.
fn admin_token(
    token: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let token = match (token, file) {
        (Some(_), Some(_)) => {
            return Err(invalid("admin.token", "set token or token_file, not both"));
        }
        (Some(t), None) => t,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| invalid("admin.token_file", format!("{}: {e}", path.display())))?
            .trim()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "admin.token",
            "must be at least 16 characters, without spaces",
        ));
    }
    Ok(Some(token))
}

/// A PEM file that holds at least one certificate.
fn ca_file(path: PathBuf) -> Result<PathBuf, ConfigError> {
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid("upstream.ca_file", format!("{}: {e}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(
            "upstream.ca_file",
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(path)
}

impl TryFrom<RawConfig> for EdgeConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let origin = raw
            .origin
            .ok_or_else(|| invalid("origin", "is required (e.g. http://127.0.0.1:8081)"))?;
        let origin = origin_url(&origin).map_err(|e| invalid("origin", e))?;
        let admin = raw.admin.map(RawAdmin::full).unwrap_or_default();
        let admin_token = admin_token(admin.token, admin.token_file)?;
        let mut c = EdgeConfig::new(
            raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
            admin.listen.unwrap_or_else(|| "127.0.0.1:9090".into()),
            origin,
        );
        c.admin_token = admin_token;
        c.access_log = match raw.access_log.as_deref() {
            None | Some("") => None,
            Some("-") => Some(crate::access::Sink::Stdout),
            Some(path) => Some(crate::access::Sink::File(path.into())),
        };
        c.access_log_json = raw.log_format.as_deref() == Some("json");
        c.fleet = fleet(raw.fleet)?;
        if let Some(f) = raw.log_format.as_deref()
            && f != "text"
            && f != "json"
        {
            return Err(invalid("log_format", "must be text or json"));
        }
        c.cache_bytes = match raw.cache.max_bytes {
            Some(0) => return Err(invalid("cache.max_bytes", "must be greater than 0")),
            Some(n) => n,
            None => c.cache_bytes,
        };
        c.ttls = Ttls {
            mpd: positive_ms("cache.mpd_ttl_ms", raw.cache.mpd_ttl_ms, c.ttls.mpd)?,
            segment: positive_ms(
                "cache.segment_ttl_ms",
                raw.cache.segment_ttl_ms,
                c.ttls.segment,
            )?,
            stale_if_error: raw
                .upstream
                .stale_if_error_ms
                .map_or(c.ttls.stale_if_error, Duration::from_millis),
        };
        c.connect_timeout = positive_ms(
            "upstream.connect_timeout_ms",
            raw.upstream.connect_timeout_ms,
            c.connect_timeout,
        )?;
        c.total_timeout = positive_ms(
            "upstream.total_timeout_ms",
            raw.upstream.total_timeout_ms,
            c.total_timeout,
        )?;
        c.read_timeout = positive_ms(
            "upstream.read_timeout_ms",
            raw.upstream.read_timeout_ms,
            c.read_timeout,
        )?;
        c.max_body = in_range(
            "upstream.max_body_bytes",
            raw.upstream.max_body_bytes,
            c.max_body,
            1,
            1 << 30,
        )?;
        c.threads = in_range("threads", raw.threads, c.threads, 1, 256)?;
        c.grace = match raw.shutdown_grace_ms {
            Some(ms) => Duration::from_millis(ms),
            None => c.grace,
        };
        c.ready_without_origin = raw.ready_without_origin.unwrap_or(false);
        let d = PlanConfig::default();
        let p = raw.push;
        c.push.plan = PlanConfig {
            max_next: in_range(
                "push.max_next",
                p.max_next,
                d.max_next,
                1,
                dashpush_proto::limits::MAX_PUSH_NEXT,
            )?,
            max_time: Duration::from_millis(in_range(
                "push.max_time_ms",
                p.max_time_ms,
                d.max_time.as_millis() as u64,
                1,
                dashpush_proto::limits::MAX_PUSH_TIME_SECS * 1000,
            )?),
            max_promises_per_request: in_range(
                "push.max_promises_per_request",
                p.max_promises_per_request,
                d.max_promises_per_request,
                0,
                256,
            )?,
            max_in_flight: in_range(
                "push.max_in_flight",
                p.max_in_flight,
                d.max_in_flight,
                0,
                1024,
            )?,
            max_bytes_in_flight: in_range(
                "push.max_bytes_in_flight",
                p.max_bytes_in_flight,
                d.max_bytes_in_flight,
                0,
                1 << 32,
            )?,
            diary_capacity: in_range(
                "push.diary_capacity",
                p.diary_capacity,
                d.diary_capacity,
                1,
                65536,
            )?,
            allow_outside_mpd: p.allow_outside_mpd.unwrap_or(d.allow_outside_mpd),
            live_horizon: Duration::from_millis(in_range(
                "push.live_horizon_ms",
                p.live_horizon_ms,
                d.live_horizon.as_millis() as u64,
                0,
                600_000,
            )?),
            max_ahead: Duration::from_millis(in_range(
                "push.max_ahead_ms",
                p.max_ahead_ms,
                d.max_ahead.as_millis() as u64,
                1,
                dashpush_proto::limits::MAX_PUSH_TIME_SECS * 1000,
            )?),
        };
        c.push.drain_buffer = Duration::from_millis(in_range(
            "push.drain_buffer_ms",
            p.drain_buffer_ms,
            c.push.drain_buffer.as_millis() as u64,
            0,
            600_000,
        )?);
        c.push.prefetch_next = in_range(
            "prefetch.next",
            raw.prefetch.next,
            c.push.prefetch_next,
            0,
            dashpush_proto::limits::MAX_PUSH_NEXT as usize,
        )?;
        c.push.prefetch_concurrency = in_range(
            "prefetch.max_concurrency",
            raw.prefetch.max_concurrency,
            c.push.prefetch_concurrency,
            1,
            1024,
        )?;
        c.push.ws_stall = positive_ms(
            "websocket.stall_timeout_ms",
            raw.websocket.stall_timeout_ms,
            c.push.ws_stall,
        )?;
        c.push.ws_ping = positive_ms(
            "websocket.ping_interval_ms",
            raw.websocket.ping_interval_ms,
            c.push.ws_ping,
        )?;
        c.push.live_guard = Duration::from_millis(in_range(
            "live.guard_ms",
            raw.live.guard_ms,
            c.push.live_guard.as_millis() as u64,
            0,
            10_000,
        )?);
        c.push.live_retry_interval = positive_ms(
            "live.retry_interval_ms",
            raw.live.retry_interval_ms,
            c.push.live_retry_interval,
        )?;
        c.push.live_retries = in_range(
            "live.max_retries",
            raw.live.max_retries,
            c.push.live_retries,
            0,
            1000,
        )?;
        if let Some(dir) = raw.static_dir {
            if !dir.is_dir() {
                return Err(invalid(
                    "static_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
            c.push.static_dir = Some(dir);
        }
        if raw.routes.len() > MAX_ROUTES {
            return Err(invalid("routes", format!("at most {MAX_ROUTES} entries")));
        }
        for (i, r) in raw.routes.into_iter().enumerate() {
            let origin = origin_url(&r.origin)
                .map_err(|e| invalid("routes", format!("[{i}].origin: {e}")))?;
            let path_prefix = r.path_prefix.unwrap_or_else(|| "/".into());
            if !path_prefix.starts_with('/') {
                return Err(invalid(
                    "routes",
                    format!("[{i}].path_prefix: must start with /"),
                ));
            }
            if path_prefix == "/" && r.hosts.is_empty() {
                return Err(invalid(
                    "routes",
                    format!(
                        "[{i}]: needs a path_prefix other than / or hosts (the default origin takes the rest)"
                    ),
                ));
            }
            c.routes.push(crate::origin::routing::Route {
                path_prefix,
                hosts: r.hosts,
                origin,
            });
        }
        let d = H2Limits::default();
        let h = raw.http2;
        c.h2 = H2Limits {
            max_concurrent_streams: in_range(
                "http2.max_concurrent_streams",
                h.max_concurrent_streams,
                d.max_concurrent_streams,
                1,
                1000,
            )?,
            max_header_list_size: in_range(
                "http2.max_header_list_size",
                h.max_header_list_size,
                d.max_header_list_size,
                1024,
                1 << 20,
            )?,
            // RFC 9113 §6.5.2 bounds.
            max_frame_size: in_range(
                "http2.max_frame_size",
                h.max_frame_size,
                d.max_frame_size,
                16_384,
                16_777_215,
            )?,
            initial_window_size: in_range(
                "http2.initial_window_size",
                h.initial_window_size,
                d.initial_window_size,
                1,
                2_147_483_647,
            )?,
            connection_window_size: in_range(
                "http2.connection_window_size",
                h.connection_window_size,
                d.connection_window_size,
                65_535,
                2_147_483_647,
            )?,
            max_concurrent_reset_streams: in_range(
                "http2.max_concurrent_reset_streams",
                h.max_concurrent_reset_streams,
                d.max_concurrent_reset_streams,
                1,
                10_000,
            )?,
            max_pending_accept_reset_streams: in_range(
                "http2.max_pending_accept_reset_streams",
                h.max_pending_accept_reset_streams,
                d.max_pending_accept_reset_streams,
                1,
                10_000,
            )?,
            max_local_error_reset_streams: in_range(
                "http2.max_local_error_reset_streams",
                h.max_local_error_reset_streams,
                d.max_local_error_reset_streams,
                1,
                100_000,
            )?,
            max_send_buffer_size: in_range(
                "http2.max_send_buffer_size",
                h.max_send_buffer_size,
                d.max_send_buffer_size,
                16_384,
                64 << 20,
            )?,
            max_resets: in_range(
                "http2.max_resets_per_connection",
                h.max_resets_per_connection,
                d.max_resets,
                1,
                1_000_000,
            )?,
            reset_window: positive_ms("http2.reset_window_ms", h.reset_window_ms, d.reset_window)?,
            max_requests: in_range(
                "http2.max_requests_per_connection",
                h.max_requests_per_connection,
                d.max_requests,
                1,
                u64::MAX,
            )?,
            ping_interval: positive_ms(
                "http2.ping_interval_ms",
                h.ping_interval_ms,
                d.ping_interval,
            )?,
            ping_timeout: positive_ms("http2.ping_timeout_ms", h.ping_timeout_ms, d.ping_timeout)?,
            park: h.park_until_first_request.unwrap_or(d.park),
            park_when_idle: match h.park_when_idle_ms {
                None => d.park_when_idle,
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
            },
        };
        if !c.h2.park {
            // Parking again uses what the first parking sets up (the captured SETTINGS).
            if h.park_when_idle_ms.is_some_and(|ms| ms > 0) {
                return Err(ConfigError::Invalid {
                    key: "http2.park_when_idle_ms",
                    message: "needs http2.park_until_first_request: true".into(),
                });
            }
            c.h2.park_when_idle = None;
        }
        let l = raw.limits;
        let dl = c.limits;
        c.limits = crate::settings::Limits {
            handshake: positive_ms(
                "limits.handshake_timeout_ms",
                l.handshake_timeout_ms,
                dl.handshake,
            )?,
            header: positive_ms("limits.header_timeout_ms", l.header_timeout_ms, dl.header)?,
            idle: positive_ms("limits.idle_timeout_ms", l.idle_timeout_ms, dl.idle)?,
            send: positive_ms("limits.send_timeout_ms", l.send_timeout_ms, dl.send)?,
            max_connections: in_range(
                "limits.max_connections",
                l.max_connections,
                dl.max_connections,
                0,
                10_000_000,
            )?,
            max_connections_per_client: in_range(
                "limits.max_connections_per_client",
                l.max_connections_per_client,
                dl.max_connections_per_client,
                1,
                10_000_000,
            )?,
            max_open_files: in_range(
                "limits.max_open_files",
                l.max_open_files,
                dl.max_open_files,
                0,
                1 << 30,
            )?,
            notsent_lowat: in_range(
                "limits.tcp_notsent_lowat_bytes",
                l.tcp_notsent_lowat_bytes,
                dl.notsent_lowat,
                0,
                64 << 20,
            )?,
        };
        c.fetch_slots.max = in_range(
            "upstream.max_connections",
            raw.upstream.max_connections,
            c.fetch_slots.max,
            1,
            1_000_000,
        )?;
        c.fetch_slots.wait = positive_ms(
            "upstream.queue_timeout_ms",
            raw.upstream.queue_timeout_ms,
            c.fetch_slots.wait,
        )?;
        c.origin_tls = crate::settings::OriginTls {
            ca_file: raw.upstream.ca_file.map(ca_file).transpose()?,
            verify: raw.upstream.tls_verify.unwrap_or(true),
            sni: raw.upstream.sni,
        };
        c.fetch_slots.pinned_bytes = in_range(
            "upstream.max_pinned_bytes",
            raw.upstream.max_pinned_bytes,
            c.fetch_slots.pinned_bytes,
            1 << 20,
            1 << 40,
        )?;
        c.fetch_slots.bypass = in_range(
            "upstream.max_bypass_requests",
            raw.upstream.max_bypass_requests,
            c.fetch_slots.bypass,
            1,
            1_000_000,
        )?;
        c.fetch_slots.background = in_range(
            "upstream.max_background_fills",
            raw.upstream.max_background_fills,
            c.fetch_slots.background,
            0,
            1_000_000,
        )?;
        c.tls = raw.tls.map(|t| TlsListener {
            listen: t.listen,
            cert: t.cert,
            key: t.key,
        });
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::try_from(RawConfig::parse(yaml)?)
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../../deploy/dashpush.example.yaml");
        let c = check(text).unwrap();
        assert_eq!(c.origin.as_str(), "http://127.0.0.1:8081/");
        assert_eq!(c.cache_bytes, 268_435_456);
    }

    #[test]
    fn minimal_file_takes_defaults() {
        let c = check("origin: http://origin.test:8081\n").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.h2.max_frame_size, 16_384);
        assert_eq!(c.threads, crate::settings::default_threads());
    }

    #[test]
    fn threads_are_one_or_more() {
        assert_eq!(check("origin: http://o\nthreads: 1\n").unwrap().threads, 1);
        let e = check("origin: http://o\nthreads: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("threads:"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |y: &str| check(y).unwrap_err().to_string();
        assert!(
            err("origin: http://o\ncahce: {}\n").contains("unknown field `cahce`"),
            "{}",
            err("origin: http://o\ncahce: {}\n")
        );
        assert!(err("origin: http://o\ncache: {max_bytse: 1}\n").contains("max_bytse"));
        assert!(err("listen: x\n").starts_with("origin: is required"));
        assert!(err("origin: ftp://o\n").starts_with("origin: must be an http:// or https://"));
        assert!(check("origin: https://o\n").is_ok());
        let c = check("origin: http://o\nadmin: 127.0.0.1:1\n").unwrap();
        assert_eq!((c.admin.as_str(), c.admin_token), ("127.0.0.1:1", None));
        let c = check("origin: http://o\nadmin: {token: 0123456789abcdef}\n").unwrap();
        assert_eq!(c.admin, "127.0.0.1:9090");
        assert_eq!(c.admin_token.as_deref(), Some("0123456789abcdef"));
        assert!(err("origin: http://o\nadmin: {token: short}\n").starts_with("admin.token:"));
        let mut raw =
            RawConfig::parse("origin: http://o\nadmin: {token: 0123456789abcdef}\n").unwrap();
        raw.set_admin_listen("0.0.0.0:1".into());
        let c = EdgeConfig::try_from(raw).unwrap();
        assert_eq!(
            c.admin, "0.0.0.0:1",
            "a flag sets the address and keeps the token"
        );
        assert!(c.admin_token.is_some());
        assert!(
            err("origin: https://o\nupstream: {ca_file: /nonexistent.pem}\n")
                .starts_with("upstream.ca_file: /nonexistent.pem")
        );
        assert!(err("origin: http://o\ncache: {max_bytes: 0}\n").starts_with("cache.max_bytes:"));
        assert!(
            err("origin: http://o\nhttp2: {max_frame_size: 100}\n")
                .starts_with("http2.max_frame_size: 100 is outside")
        );
        assert!(
            err("origin: http://o\nupstream: {read_timeout_ms: 0}\n")
                .starts_with("upstream.read_timeout_ms:")
        );
        assert!(err("origin: http://o\nlog_format: xml\n").starts_with("log_format:"));
        assert!(err("origin: http://o\npush: {max_next: 65}\n").starts_with("push.max_next:"));
        assert!(err("origin: http://o\npush: {max_nxt: 6}\n").contains("max_nxt"));
        assert!(
            err("origin: http://o\nprefetch: {max_concurrency: 0}\n")
                .starts_with("prefetch.max_concurrency:")
        );
        let c = check(
            "origin: http://o\npush: {max_next: 4, live_horizon_ms: 0}\nprefetch: {next: 0}\n",
        )
        .unwrap();
        assert_eq!(c.push.plan.max_next, 4);
        assert_eq!(c.push.plan.live_horizon, Duration::ZERO);
        assert_eq!(c.push.prefetch_next, 0);
        assert!(
            err("origin: http://o\nroutes: [{path_prefix: live/, origin: http://l}]\n")
                .starts_with("routes: [0].path_prefix")
        );
        assert!(
            err("origin: http://o\nroutes: [{path_prefix: /live/, origin: ftp://l}]\n")
                .starts_with("routes: [0].origin")
        );
        assert!(
            err("origin: http://o\nroutes: [{origin: http://l}]\n").starts_with("routes: [0]:")
        );
        assert!(err("origin: http://o\nroutes: [{path: /x, origin: http://l}]\n").contains("path"));
        let c = check(
            "origin: http://o\nroutes:\n  - {path_prefix: /live/, origin: http://l:81}\n  - {hosts: [a.test], origin: http://a}\n",
        )
        .unwrap();
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].path_prefix, "/live/");
        assert_eq!(c.routes[1].hosts, ["a.test"]);
        assert!(err("origin: http://o\ncache: {max_bytes: lots}\n").contains("max_bytes"));
    }
}
