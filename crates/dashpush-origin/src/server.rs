//! The HTTP/1.1 server: routing, Range and HEAD, hit counters, fault switches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full, channel::Channel};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::content::Content;

/// The origin's shared state.
#[derive(Debug)]
pub struct Origin {
    content: Content,
    hits: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    /// Bumped by `/_origin/open`: releases the second half of every `/_origin/gated/` body.
    gate: tokio::sync::watch::Sender<u64>,
}

/// Fault switches, settable at start and over HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Delay added before every answer.
    pub latency: Duration,
    /// Fraction (0..=1) of requests answered 503.
    pub error_rate: f64,
    /// Fraction (0..=1) of requests whose connection is closed without an answer.
    pub reset_rate: f64,
}

/// Distinct paths the hit counters track.
const MAX_HIT_PATHS: usize = 10_000;

/// What one request gets.
enum Outcome {
    Respond(Response<Full<Bytes>>),
    Stream(Response<Channel<Bytes>>),
    Reset,
}

impl Origin {
    /// An origin serving `content` with the given faults.
    pub fn new(content: Content, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            content,
            hits: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(faults),
            requests: AtomicU64::new(0),
            gate: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Hits on a path so far.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .map(|h| h.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts a hit; at most [`MAX_HIT_PATHS`] distinct paths are tracked (new ones beyond
    /// that are counted under `"(other)"`), so random paths cannot grow the map without bound.
    fn count_hit(&self, path: &str) {
        if let Ok(mut h) = self.hits.lock() {
            let key = if h.contains_key(path) || h.len() < MAX_HIT_PATHS {
                path.to_owned()
            } else {
                "(other)".to_owned()
            };
            *h.entry(key).or_default() += 1;
        }
    }

    fn faults(&self) -> Faults {
        self.faults.lock().map(|f| *f).unwrap_or_default()
    }

    async fn handle(&self, req: Request<Incoming>, listener: Listener) -> Outcome {
        let path = req.uri().path().to_owned();
        if path.starts_with("/_origin/") && listener == Listener::Content {
            return Outcome::Respond(text(StatusCode::NOT_FOUND, "not found\n"));
        }
        if let Some(n) = path.strip_prefix("/_origin/gated/") {
            self.count_hit(&path);
            return self.gated(n);
        }
        if let Some(admin) = path.strip_prefix("/_origin/") {
            return Outcome::Respond(self.admin(admin, req.uri().query().unwrap_or("")));
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        self.count_hit(&path);
        let f = self.faults();
        if !f.latency.is_zero() {
            tokio::time::sleep(f.latency).await;
        }
        // Deterministic "random": the request counter spread over [0, 1).
        let roll = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        if roll < f.reset_rate {
            return Outcome::Reset;
        }
        if roll < f.reset_rate + f.error_rate {
            return Outcome::Respond(text(StatusCode::SERVICE_UNAVAILABLE, "injected error\n"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Outcome::Respond(text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n"));
        }
        let Some(res) = self.content.get(&path, SystemTime::now()).await else {
            return Outcome::Respond(text(StatusCode::NOT_FOUND, "not found\n"));
        };
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let head = req.method() == Method::HEAD;
        if let (Some(times), false, None) = (res.produced, head, range.as_deref()) {
            return produced(res.body, res.content_type, times);
        }
        Outcome::Respond(respond(
            res.body,
            res.content_type,
            res.cache_control,
            range.as_deref(),
            head,
        ))
    }

    /// `/_origin/gated/<n>`: `n` blob bytes with their Content-Length; the first half is sent
    /// at once, the rest only after the next `/_origin/open`. Lets a test see bytes flow
    /// through the gateway before the origin has finished.
    fn gated(&self, n: &str) -> Outcome {
        let Ok(n) = n.parse::<usize>() else {
            return Outcome::Respond(text(StatusCode::BAD_REQUEST, "gated/<bytes>\n"));
        };
        if n > 64 << 20 {
            return Outcome::Respond(text(StatusCode::BAD_REQUEST, "up to 64 MiB\n"));
        }
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut first = Bytes::from(body);
        let rest = first.split_off(n / 2);
        let mut gate = self.gate.subscribe();
        let (mut tx, channel) = Channel::new(2);
        tokio::spawn(async move {
            if !first.is_empty() && tx.send_data(first).await.is_err() {
                return;
            }
            // Held for the next /_origin/open, but not forever: a client that left must not
            // pin the body.
            let opened = tokio::time::timeout(Duration::from_secs(60), gate.changed()).await;
            if matches!(opened, Ok(Ok(()))) && !rest.is_empty() {
                let _ = tx.send_data(rest).await;
            }
        });
        let mut r = Response::new(channel);
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=600"),
        );
        Outcome::Stream(r)
    }

    fn admin(&self, what: &str, query: &str) -> Response<Full<Bytes>> {
        match what {
            "open" => {
                self.gate.send_modify(|g| *g += 1);
                text(StatusCode::OK, "opened\n")
            }
            "hits" => {
                let hits = self.hits.lock().map(|h| h.clone()).unwrap_or_default();
                let total: u64 = hits.values().sum();
                json(&serde_json::json!({ "total": total, "paths": hits }))
            }
            "faults" => {
                let Ok(mut f) = self.faults.lock() else {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n");
                };
                for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                    match (k, v.parse::<f64>()) {
                        // Finite and at most an hour: anything else would panic or stall forever.
                        ("latency_ms", Ok(ms)) if (0.0..=3_600_000.0).contains(&ms) => {
                            f.latency = Duration::from_secs_f64(ms / 1000.0)
                        }
                        ("error_rate", Ok(r)) if (0.0..=1.0).contains(&r) => f.error_rate = r,
                        ("reset_rate", Ok(r)) if (0.0..=1.0).contains(&r) => f.reset_rate = r,
                        _ => {
                            return text(
                                StatusCode::BAD_REQUEST,
                                "use latency_ms, error_rate, reset_rate\n",
                            );
                        }
                    }
                }
                json(&serde_json::json!({
                    "latency_ms": f.latency.as_secs_f64() * 1000.0,
                    "error_rate": f.error_rate,
                    "reset_rate": f.reset_rate,
                }))
            }
            w if w.starts_with("blob/") => match w.trim_start_matches("blob/").parse::<usize>() {
                Ok(n) if n <= 64 << 20 => {
                    let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                    respond(
                        Bytes::from(body),
                        "application/octet-stream",
                        "max-age=600",
                        None,
                        false,
                    )
                }
                _ => text(StatusCode::BAD_REQUEST, "blob/<bytes> up to 64 MiB\n"),
            },
            _ => text(StatusCode::NOT_FOUND, "unknown origin admin path\n"),
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The content only: what the gateway (and anyone else) reaches.
    Content,
    /// The content and the control routes (`/_origin/…`: faults, hits, blobs, the gate), for
    /// the demo and the tests; off unless asked for, on a port of its own.
    Control,
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    origin: Arc<Origin>,
    role: Listener,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let origin = origin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let origin = origin.clone();
                async move {
                    match origin.handle(req, role).await {
                        Outcome::Respond(r) => Ok::<_, ResetConnection>(r.map(Either::Left)),
                        Outcome::Stream(r) => Ok(r.map(Either::Right)),
                        Outcome::Reset => Err(ResetConnection),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("origin connection ended: {e}");
            }
        });
    }
}

/// Returned by the service to make hyper drop the connection without an answer.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// A live segment still being produced: chunked transfer, each quarter of the body sent at
/// its time (CMAF chunks of a low-latency stream).
fn produced(body: Bytes, ctype: &'static str, times: [SystemTime; 4]) -> Outcome {
    let (mut tx, channel) = Channel::new(4);
    tokio::spawn(async move {
        let n = body.len();
        for (i, at) in times.iter().enumerate() {
            if let Ok(wait) = at.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
            let piece = body.slice(n * i / 4..n * (i + 1) / 4);
            if tx.send_data(piece).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(channel);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    Outcome::Stream(r)
}

fn respond(
    body: Bytes,
    ctype: &'static str,
    cache: &'static str,
    range: Option<&str>,
    head: bool,
) -> Response<Full<Bytes>> {
    let total = body.len() as u64;
    let (status, body, content_range) =
        match range.map(|r| dashpush_proto::range::parse_range_header(r, total)) {
            None => (StatusCode::OK, body, None),
            Some(Some((a, b))) => (
                StatusCode::PARTIAL_CONTENT,
                body.slice(a as usize..=b as usize),
                Some(format!("bytes {a}-{b}/{total}")),
            ),
            Some(None) => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
    let len = body.len();
    let mut r = Response::new(Full::new(if head { Bytes::new() } else { body }));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn json(v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
