//! HTTP/2 server push (spec §7, Annexes E, F, G, H) and prefetching.
//!
//! Per request with a push directive: the planner (`dashpush-plan`, one session per
//! connection) decides the ack and the URLs; each URL is prefetched at once (coalesced with
//! client requests through the cache); the response head goes out with the ack header, then a
//! PUSH_PROMISE per URL (before the parent's DATA, so the client can refuse early), then the
//! parent body, then the pushed bodies one after the other in push order, so the first needed
//! completes first and the parent is never starved by its pushes (spec §7, "Order"; we send
//! sequentially rather than rely on stream weights, which RFC 9113 deprecates).
//!
//! Every pushed body is sent within the stream's flow-control window, one granted chunk at a
//! time; a client `RST_STREAM` stops it at once, and the bytes not sent are counted as saved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use dashpush_plan::{DirectiveInput, Outcome, PlanConfig, Push, Request, Session};
use dashpush_proto::http2::{RequestPolicy, request_policy};
use h2::server::{SendPushedResponse, SendResponse};
use http::{HeaderName, HeaderValue, Method};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use url::Url;

use crate::cache::{Entry, User};
use crate::fill::Fill;
use crate::gateway::{Body, Gateway, Req, cache_key};
use crate::h2settings::PushEnabled;

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
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            ws_stall: crate::ws::STALL,
            ws_ping: crate::ws::PING_EVERY,
            static_dir: None,
            live_guard: Duration::ZERO,
            live_retry_interval: Duration::from_millis(25),
            live_retries: 80,
            plan: PlanConfig::default(),
            prefetch_next: 2,
            prefetch_concurrency: 16,
        }
    }
}

/// The transport label of HTTP/2 push metrics.
const H2: &str = "h2";

/// Request headers a promised request copies from its parent (spec §7: never credentials).
const PROMISE_HEADERS: &[&str] = &["accept", "accept-encoding", "user-agent"];

/// The push state of one HTTP/2 connection.
pub(crate) struct H2Conn {
    /// The client's SETTINGS_ENABLE_PUSH, read off the wire.
    pub(crate) push_enabled: PushEnabled,
    /// `http` (h2c) or `https` (TLS).
    pub(crate) scheme: &'static str,
    session: Mutex<Option<Session>>,
    /// Promised, unfinished pushes: set to cancel one (a replaced cycle, spec §4–5).
    active: Mutex<HashMap<Url, Arc<AtomicBool>>>,
}

impl H2Conn {
    pub(crate) fn new(push_enabled: PushEnabled, scheme: &'static str) -> Self {
        Self {
            push_enabled,
            scheme,
            session: Mutex::new(None),
            active: Mutex::new(HashMap::new()),
        }
    }

    fn with_session<R>(&self, cfg: &PlanConfig, f: impl FnOnce(&mut Session) -> R) -> R {
        let mut guard = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let session = guard.get_or_insert_with(|| Session::new(cfg.clone()));
        f(session)
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<Url, Arc<AtomicBool>>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The prefetch of one planned push. Dropping it (the push's request ended, or its client went
/// away) stops the prefetch if it has not reached the origin yet (a fill already started goes
/// on for everyone else).
pub(crate) struct Prefetch(JoinHandle<Option<Source>>);

impl Prefetch {
    pub(crate) fn abort(&self) {
        self.0.abort();
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::future::Future for Prefetch {
    type Output = Result<Option<Source>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Where a pushed or prefetched body comes from.
pub(crate) enum Source {
    /// A fresh cache entry.
    Entry(Arc<Entry>),
    /// A fill in progress (or just finished).
    Fill(Arc<Fill>),
}

impl Source {
    /// The pushed response: status, headers and body (streamed from a fill in progress),
    /// counting the prefetch as used by a push.
    pub(crate) async fn response(
        self,
        gw: &Gateway,
    ) -> (u16, Vec<(HeaderName, HeaderValue)>, Body) {
        match self {
            Source::Entry(e) => {
                if e.unused_prefetch_take() {
                    gw.metrics()
                        .push
                        .prefetches
                        .with_label_values(&["used_by_push"])
                        .inc();
                }
                (
                    e.response.status,
                    e.response.headers.clone(),
                    Body::Full(e.response.body.clone()),
                )
            }
            Source::Fill(f) => {
                gw.cache().claim(&f, User::Push);
                match f.head().await {
                    Ok(h) => (h.status, h.headers, Body::Stream(f.reader())),
                    Err(e) => (e.status(), Vec::new(), Body::Full(Bytes::new())),
                }
            }
        }
    }
}

/// The absolute URL a client used: its scheme, its authority, the request's path and query.
pub(crate) fn client_url(scheme: &str, host: Option<&str>, path: &str) -> Option<Url> {
    let host = host?;
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return None;
    }
    let url = Url::parse(&format!("{scheme}://{host}{path}")).ok()?;
    // The URL must say exactly what was asked: a host or path the parser rewrites (dot
    // segments, backslashes) would plan pushes for another resource than the one routed.
    (path_of(&url) == path).then_some(url)
}

/// Path and query of a URL, as forwarded to the origin.
pub(crate) fn path_of(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

pub(crate) fn is_mpd_path(path: &str) -> bool {
    path.split('?').next().unwrap_or(path).ends_with(".mpd")
}

impl Gateway {
    /// The route of a path on a host, if any origin takes it.
    pub(crate) fn route_of(&self, host: Option<&str>, path: &str) -> Option<usize> {
        self.origins().select(host, path).map(|(i, _)| i)
    }

    /// The cached body or the fill of `path` on `route`, starting an origin fetch if needed.
    pub(crate) async fn source_of(&self, route: usize, path: &str, by: User) -> Option<Source> {
        let origins = self.origins();
        let upstream = Arc::clone(origins.get(route)?);
        let key = cache_key(&origins.origin_key(route)?, path);
        Some(
            match self
                .source(&upstream, &key, path, Vec::new(), None, by)
                .await
            {
                Ok(e) => Source::Entry(e),
                Err((fill, _)) => Source::Fill(fill),
            },
        )
    }

    /// Remembers (parses) the MPD a response for `url` carries, from the very bytes served:
    /// no extra origin fetch, even for an MPD that may not be cached. A streamed body is
    /// parsed once the fill completes, in a task whose handle is returned (await it to plan
    /// from this MPD); `None` if there is nothing to remember.
    pub(crate) fn note_served(
        self: &Arc<Self>,
        route: usize,
        url: &Url,
        resp: &crate::gateway::Resp,
    ) -> Option<JoinHandle<()>> {
        if resp.status != 200 || !is_mpd_path(url.path()) {
            return None;
        }
        let origin = self.origins().origin_key(route)?;
        let gw = Arc::clone(self);
        let url = url.clone();
        match &resp.body {
            Body::Full(b) if !b.is_empty() => {
                let body = b.clone();
                Some(tokio::spawn(async move {
                    gw.manifests().remember(&origin, &url, &body);
                }))
            }
            Body::Stream(r) => {
                let fill = Arc::clone(r.fill());
                Some(tokio::spawn(async move {
                    if let Ok(f) = fill.complete().await
                        && f.status == 200
                    {
                        gw.manifests().remember(&origin, &url, &f.body);
                    }
                }))
            }
            Body::Full(_) => None,
        }
    }

    /// Starts fetching `path` into the cache, within the gateway-wide prefetch cap. The handle
    /// resolves to the source once the fetch has started (or the entry was already cached);
    /// aborting it before that drops the prefetch.
    pub(crate) fn prefetch(
        self: &Arc<Self>,
        route: usize,
        path: String,
    ) -> JoinHandle<Option<Source>> {
        self.prefetch_with(route, path, None)
    }

    /// [`Gateway::prefetch`] with a slot already held (or `None`: wait for one).
    fn prefetch_with(
        self: &Arc<Self>,
        route: usize,
        path: String,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> JoinHandle<Option<Source>> {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let key = cache_key(&gw.origins().origin_key(route)?, &path);
            if let Some(e) = gw.cache().get(&key, User::Prefetch).await {
                return Some(Source::Entry(e));
            }
            let _permit = match permit {
                Some(p) => p,
                None => {
                    let slots: Arc<Semaphore> = Arc::clone(gw.prefetch_slots());
                    slots.acquire_owned().await.ok()?
                }
            };
            let src = gw.source_of(route, &path, User::Prefetch).await?;
            if let Source::Fill(f) = &src {
                if f.prefetched.load(Ordering::Relaxed) {
                    gw.metrics()
                        .push
                        .prefetches
                        .with_label_values(&["started"])
                        .inc();
                }
                // Hold the slot until the body is in, so the cap bounds origin fetches.
                if f.complete().await.is_err() {
                    gw.metrics()
                        .push
                        .prefetches
                        .with_label_values(&["error"])
                        .inc();
                }
            }
            Some(src)
        })
    }

    /// The prefetch for a planned push: at once, or for a live segment promised ahead of its
    /// availability, at its availability start plus the guard, asking again while the origin
    /// answers 404 (a late packager), up to the configured number of retries (spec §6.2 live
    /// rule). The handle resolves to the source once the origin answered (not necessarily
    /// with the whole body: a live segment streams to the client as it arrives).
    pub(crate) fn prefetch_for(self: &Arc<Self>, route: usize, push: &Push) -> Prefetch {
        let Some(at) = push.not_before else {
            return Prefetch(self.prefetch(route, path_of(&push.url)));
        };
        let gw = Arc::clone(self);
        let path = path_of(&push.url);
        Prefetch(tokio::spawn(async move {
            let settings = gw.push_settings();
            // Asks happen at fixed instants (availability + guard + k * interval), the same
            // for every client of the segment, so concurrent cycles coalesce each ask into one
            // origin request even while the origin still says 404.
            let ask_at = |k: u32| {
                let offset = settings.live_guard + settings.live_retry_interval * k;
                at + chrono::Duration::from_std(offset).unwrap_or_default()
            };
            let m = &gw.metrics().live;
            for attempt in 0..=settings.live_retries {
                // Never early, however far ahead the horizon lets a segment be promised.
                while let Ok(wait) = (ask_at(attempt) - Utc::now()).to_std() {
                    if wait.is_zero() {
                        break;
                    }
                    tokio::time::sleep(wait.min(Duration::from_secs(600))).await;
                }
                let src = gw.source_of(route, &path, User::Prefetch).await?;
                let status = match &src {
                    Source::Entry(e) => e.response.status,
                    Source::Fill(f) => f.head().await.map_or(502, |h| h.status),
                };
                if status != 404 || attempt == settings.live_retries {
                    let outcome = match (status, attempt) {
                        (404, _) => "missed",
                        (_, 0) => "on_time",
                        _ => "late",
                    };
                    m.segments.with_label_values(&[outcome]).inc();
                    return Some(src);
                }
            }
            None
        }))
    }

    /// After a client pulled a segment without a directive: fetch the next segments of its
    /// Representation into the cache (issue 7.3), if the MPD is known.
    pub(crate) fn prefetch_following(self: &Arc<Self>, route: usize, url: &Url) {
        let k = self.push_settings().prefetch_next;
        if k == 0 || is_mpd_path(url.path()) {
            return;
        }
        let next = {
            use dashpush_plan::Manifests;
            let okey = self.origins().origin_key(route).unwrap_or_default();
            let view = self.manifests().route(&okey);
            match view.for_segment(url) {
                Some(m) => dashpush_plan::prefetch_after(&m, url, k),
                None => return,
            }
        };
        for u in next {
            // Same origin route only (spec §6.2 safety rule 2). Best effort: when every
            // prefetch slot is busy it is skipped, never queued.
            if self.route_of(u.host_str(), u.path()) != Some(route) {
                continue;
            }
            match Arc::clone(self.prefetch_slots()).try_acquire_owned() {
                Ok(permit) => drop(self.prefetch_with(route, path_of(&u), Some(permit))),
                Err(_) => self
                    .metrics()
                    .push
                    .prefetches
                    .with_label_values(&["dropped"])
                    .inc(),
            }
        }
    }
}

/// Serves one HTTP/2 request: plain, or with the push cycle its directive asks for.
pub(crate) async fn serve_h2(
    gw: &Arc<Gateway>,
    conn: &Arc<H2Conn>,
    req: Req,
    mut respond: SendResponse<Bytes>,
) -> Result<u16, h2::Error> {
    let policy = request_policy(req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let (ack_name, input) = match &policy {
        RequestPolicy::Directive { header, .. } => {
            (Some(header.ack_name()), DirectiveInput::from(&policy))
        }
        _ => (None, DirectiveInput::Absent),
    };
    let route = gw.route_of(req.host.as_deref(), &req.path);
    let url = client_url(conn.scheme, req.host.as_deref(), &req.path);
    let (Some(ack_name), Some(route), Some(url), true) =
        (ack_name, route, url.clone(), req.method == Method::GET)
    else {
        // No directive (or nothing a push could be planned from): plain pull, plus the
        // prefetcher for clients without push.
        if let (Some(route), Some(url)) = (route, &url) {
            // The planner follows what the client fetches (position, what not to push).
            let settings = gw.push_settings();
            conn.with_session(&settings.plan, |s| {
                s.on_request(
                    &Request {
                        url,
                        directive: DirectiveInput::Absent,
                        push_allowed: conn.push_enabled.get(),
                    },
                    &gw.manifests()
                        .route(&gw.origins().origin_key(route).unwrap_or_default()),
                    Some(Utc::now()),
                )
            });
        }
        let resp = gw.handle(&req).await;
        let status = resp.status;
        if status == 200
            && let (Some(route), Some(url)) = (route, url)
        {
            if is_mpd_path(url.path()) {
                drop(gw.note_served(route, &url, &resp));
            } else {
                gw.prefetch_following(route, &url);
            }
        }
        crate::h2srv::send(respond, resp).await?;
        return Ok(status);
    };
    let requested = match &input {
        DirectiveInput::Parsed(d) => d.push_type().label(),
        _ => "malformed",
    };
    // On an MPD request the plan needs that MPD: answer first and parse what is served (one
    // origin fetch, whatever its caching); other requests plan first so that the pushes'
    // prefetches overlap the parent's own fetch.
    let mut answered = None;
    if is_mpd_path(&req.path) {
        let resp = gw.handle(&req).await;
        if let Some(parsing) = gw.note_served(route, &url, &resp) {
            let _ = parsing.await;
        }
        answered = Some(resp);
    }
    let settings = gw.push_settings();
    let plan = conn.with_session(&settings.plan, |s| {
        s.on_request(
            &Request {
                url: &url,
                directive: input,
                push_allowed: conn.push_enabled.get(),
            },
            &gw.manifests()
                .route(&gw.origins().origin_key(route).unwrap_or_default()),
            Some(Utc::now()),
        )
    });
    let m = &gw.metrics().push;
    let (result, applied) = match &plan.outcome {
        Outcome::Accepted(t) => ("accepted", t.label()),
        Outcome::Rejected(r) => (r.label(), "push-none"),
        Outcome::NoDirective => ("accepted", "push-none"),
    };
    m.directives
        .with_label_values(&[H2, requested, result])
        .inc();
    // A replaced cycle: stop its unfinished pushes (spec §4–5).
    for u in &plan.cancel {
        if let Some(flag) = conn.active().remove(u) {
            flag.store(true, Ordering::Relaxed);
            m.dropped.with_label_values(&[H2, "replaced"]).inc();
        }
    }
    // Prefetch every planned URL now, so pushes need not wait for the parent.
    // Pushes outside the request's origin route are not made; the planner is told, so its
    // in-flight count and diary stay true.
    let release = |pushes: &[Push]| {
        for p in pushes {
            conn.with_session(&settings.plan, |s| s.on_reset(&p.url));
        }
    };
    let (kept, foreign): (Vec<Push>, Vec<Push>) = plan
        .pushes
        .into_iter()
        .partition(|p| gw.route_of(p.url.host_str(), p.url.path()) == Some(route));
    release(&foreign);
    let mut jobs: Vec<(Push, Prefetch)> = kept
        .into_iter()
        .map(|p| {
            let h = gw.prefetch_for(route, &p);
            (p, h)
        })
        .collect();
    let _cycle = LiveCycle::new(gw, &jobs.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    let mut resp = match answered {
        Some(r) => r,
        None => gw.handle(&req).await,
    };
    if resp.status >= 400 {
        // Nothing is pushed on an error answer.
        let dropped: Vec<Push> = jobs.drain(..).map(|(p, _)| p).collect();
        m.dropped
            .with_label_values(&[H2, "parent_error"])
            .inc_by(dropped.len() as u64);
        release(&dropped);
    }
    if let (Some(ack), Ok(name)) = (&plan.ack, HeaderName::from_bytes(ack_name.as_bytes()))
        && let Ok(value) = HeaderValue::from_str(&ack.to_string())
    {
        resp.headers.push((name, value));
    }
    let status = resp.status;
    let Some((head, body)) = crate::h2srv::response_head(&mut respond, resp) else {
        release(&jobs.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
        return Ok(status);
    };
    // The parent stays open until its promises are sent (a PUSH_PROMISE on a closed stream is
    // a connection error, RFC 9113 §6.6), even when its own body is empty (a 304, say).
    let empty = matches!(&body, Body::Full(b) if b.is_empty());
    let end = empty && jobs.is_empty();
    let mut parent = match respond.send_response(head, end) {
        Ok(p) => p,
        Err(e) => {
            release(&jobs.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
            return Err(e);
        }
    };
    // Promises right after the head, before the parent's DATA (spec §7).
    let mut promised = Vec::with_capacity(jobs.len());
    for (p, h) in jobs {
        let mut builder = http::Request::builder()
            .method(Method::GET)
            .uri(p.url.as_str());
        for (n, v) in &req.headers {
            if PROMISE_HEADERS.contains(&n.as_str()) {
                builder = builder.header(n, v);
            }
        }
        let promise = builder
            .body(())
            .map_err(|_| ())
            .and_then(|r| respond.push_request(r).map_err(|_| ()));
        match promise {
            Ok(stream) => {
                m.promises.with_label_values(&[H2, applied]).inc();
                let cancel = Arc::new(AtomicBool::new(false));
                conn.active().insert(p.url.clone(), Arc::clone(&cancel));
                promised.push((p, stream, h, cancel));
            }
            Err(()) => {
                // The client disabled push meanwhile, or its stream limit is reached.
                h.abort();
                conn.with_session(&settings.plan, |s| s.on_reset(&p.url));
                m.dropped.with_label_values(&[H2, "promise_refused"]).inc();
            }
        }
    }
    // A parent the client reset does not cancel promises already made (spec §7.3): the
    // pushes go on whatever happens to it.
    if empty && !end {
        let _ = parent.send_data(Bytes::new(), true);
    } else if !end {
        let _ = crate::h2srv::send_body(&mut parent, body).await;
    }
    let mut outstanding = Outstanding::new(&m.reset, H2, applied, promised.len());
    for (p, stream, h, cancel) in promised {
        let url = p.url.clone();
        send_push(gw, conn, applied, p, stream, h, &cancel).await;
        conn.active().remove(&url);
        outstanding.done();
    }
    Ok(status)
}

/// Promised pushes not yet finished when their request task ends early (the client closed
/// the connection, which aborts it) are counted as reset, so promised = completed + reset +
/// dropped holds however a connection ends.
pub(crate) struct Outstanding {
    counter: prometheus::IntCounter,
    left: u64,
}

impl Outstanding {
    pub(crate) fn new(
        reset: &prometheus::IntCounterVec,
        transport: &str,
        push_type: &str,
        n: usize,
    ) -> Self {
        Self {
            counter: reset.with_label_values(&[transport, push_type]),
            left: n as u64,
        }
    }

    /// One more push finished (counted by whoever finished it).
    pub(crate) fn done(&mut self) {
        self.left = self.left.saturating_sub(1);
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if self.left > 0 {
            self.counter.inc_by(self.left);
        }
    }
}

/// Counts a live cycle (pushes waiting for segments) while it lives, abort included.
pub(crate) struct LiveCycle(Option<prometheus::IntGauge>);

impl LiveCycle {
    pub(crate) fn new(gw: &Gateway, pushes: &[Push]) -> Self {
        if pushes.iter().any(|p| p.not_before.is_some()) {
            let g = gw.metrics().live.cycles.clone();
            g.inc();
            Self(Some(g))
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

/// Observes a live push's delay from its segment's availability start.
pub(crate) fn observe_live(gw: &Gateway, p: &Push, transport: &str, edge: &str) {
    if let Some(at) = p.not_before {
        let secs = (Utc::now() - at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        gw.metrics()
            .live
            .delay
            .with_label_values(&[transport, edge])
            .observe(secs);
    }
}

/// Before an HTTP/1.1 response is written: remember the MPD it carries.
pub(crate) fn served_h1(
    gw: &Arc<Gateway>,
    scheme: &str,
    host: Option<&str>,
    path: &str,
    resp: &crate::gateway::Resp,
) {
    if resp.status != 200 || !is_mpd_path(path) {
        return;
    }
    if let (Some(route), Some(url)) = (gw.route_of(host, path), client_url(scheme, host, path)) {
        drop(gw.note_served(route, &url, resp));
    }
}

/// After an HTTP/1.1 response 200 for a segment: prefetch what follows it.
pub(crate) fn after_pull_h1(gw: &Arc<Gateway>, scheme: &str, host: Option<&str>, path: &str) {
    // Cheap checks first: this runs after every HTTP/1.1 response.
    if is_mpd_path(path) || gw.push_settings().prefetch_next == 0 || gw.manifests().is_empty() {
        return;
    }
    if let (Some(route), Some(url)) = (gw.route_of(host, path), client_url(scheme, host, path))
        && !is_mpd_path(url.path())
    {
        gw.prefetch_following(route, &url);
    }
}

/// Sends one promised response, or resets it.
async fn send_push(
    gw: &Arc<Gateway>,
    conn: &Arc<H2Conn>,
    push_type: &'static str,
    p: Push,
    mut stream: SendPushedResponse<Bytes>,
    prefetch: Prefetch,
    cancel: &AtomicBool,
) {
    let m = &gw.metrics().push;
    let settings = gw.push_settings();
    let cfg = &settings.plan;
    let gone = |stream: &mut SendPushedResponse<Bytes>| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        matches!(stream.poll_reset(&mut cx), Poll::Ready(_))
    };
    if gone(&mut stream) || cancel.load(Ordering::Relaxed) {
        // Refused before anything was sent: count what was saved if the body is at hand, and
        // drop the prefetch if it has not finished.
        if prefetch.is_finished() {
            if let Ok(Some(Source::Entry(e))) = prefetch.await {
                m.saved_bytes
                    .with_label_values(&[H2, push_type])
                    .inc_by(e.response.body.len() as u64);
            }
        } else {
            prefetch.abort();
        }
        m.reset.with_label_values(&[H2, push_type]).inc();
        conn.with_session(cfg, |s| s.on_reset(&p.url));
        if cancel.load(Ordering::Relaxed) {
            stream.send_reset(h2::Reason::CANCEL);
        }
        return;
    }
    // Live: the prefetch waits for the segment's availability (and retries a late origin).
    let source = match prefetch.await {
        Ok(Some(s)) => s,
        _ => {
            gw.metrics()
                .push
                .prefetches
                .with_label_values(&["dropped"])
                .inc();
            stream.send_reset(h2::Reason::CANCEL);
            m.dropped.with_label_values(&[H2, "origin_error"]).inc();
            conn.with_session(cfg, |s| s.on_reset(&p.url));
            return;
        }
    };
    let (status, headers, body) = source.response(gw).await;
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.to_str().ok()?.parse::<u64>().ok())
        .or(match &body {
            Body::Full(b) => Some(b.len() as u64),
            Body::Stream(_) => None,
        });
    // Only cacheable 200 responses are pushed (spec §6.2 safety rule 5).
    let admitted =
        status == 200 && conn.with_session(cfg, |s| s.admit_bytes(&p.url, length.unwrap_or(0)));
    if !admitted {
        stream.send_reset(h2::Reason::CANCEL);
        let reason = if status == 200 {
            "byte_cap"
        } else {
            "origin_status"
        };
        m.dropped.with_label_values(&[H2, reason]).inc();
        conn.with_session(cfg, |s| s.on_reset(&p.url));
        return;
    }
    let mut builder = http::Response::builder().status(200);
    for (n, v) in &headers {
        if n != "content-length" && n != "cache-status" {
            builder = builder.header(n, v);
        }
    }
    if let Some(len) = length {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    let Ok(head) = builder.body(()) else {
        stream.send_reset(h2::Reason::INTERNAL_ERROR);
        conn.with_session(cfg, |s| s.on_reset(&p.url));
        return;
    };
    let empty = matches!(&body, Body::Full(b) if b.is_empty());
    let mut out = match stream.send_response(head, empty) {
        Ok(s) => {
            observe_live(gw, &p, H2, "first_byte");
            s
        }
        Err(_) => {
            m.reset.with_label_values(&[H2, push_type]).inc();
            conn.with_session(cfg, |s| s.on_reset(&p.url));
            return;
        }
    };
    let sent = crate::h2srv::send_body_watching(&mut out, body, cancel).await;
    match sent {
        Ok(n) => {
            observe_live(gw, &p, H2, "last_byte");
            m.completed.with_label_values(&[H2, push_type]).inc();
            m.claimed.with_label_values(&[H2, push_type]).inc();
            m.bytes.with_label_values(&[H2, push_type]).inc_by(n);
            conn.with_session(cfg, |s| s.on_complete(&p.url));
        }
        Err(n) => {
            m.reset.with_label_values(&[H2, push_type]).inc();
            m.bytes.with_label_values(&[H2, push_type]).inc_by(n);
            m.wasted_bytes.with_label_values(&[H2, push_type]).inc_by(n);
            if let Some(total) = length {
                m.saved_bytes
                    .with_label_values(&[H2, push_type])
                    .inc_by(total.saturating_sub(n));
            }
            if cancel.load(Ordering::Relaxed) {
                out.send_reset(h2::Reason::CANCEL);
            }
            conn.with_session(cfg, |s| s.on_reset(&p.url));
        }
    }
}
