//! HTTP/2 downstream (h2c prior knowledge, or `h2` by ALPN) with the `h2` crate on the raw
//! stream, every server limit set explicitly, bodies sent within the flow-control windows.
//!
//! A request with a push directive runs the push cycle (`delivery`) with [`H2Push`], the
//! HTTP/2 server push transport (spec §7): the ack in the response head, a PUSH_PROMISE per
//! push right after it and before the parent's DATA, then each pushed response in push order,
//! each within its stream's flow-control window.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashpush_plan::{DirectiveInput, Push, Request};
use dashpush_proto::http2::{RequestPolicy, request_policy};
use h2::server::{SendPushedResponse, SendResponse};
use http::{HeaderName, HeaderValue, Method};
use pingora::protocols::Stream;

use crate::access::Served;
use crate::delivery::conn::PushConn;
use crate::delivery::cycle::{self, CLIENT_CLOSED};
use crate::delivery::turns::{ConnWindow, Play, Since, Turn};
use crate::delivery::{AnswerHead, DropReason, PushTransport, Stop, Transport, Withdrawal};
use crate::downstream::h2idle::Again;
use crate::downstream::h2park::{self, Parker, Resumed, SETTINGS_ACK, Step, Unsent, builder};
use crate::downstream::h2settings::{Peer, Tracker};
use crate::downstream::h2wire::{self, ACK, NO_ERROR, PING};
use crate::drain::{Drain, InFlight};
use crate::gateway::{Body, Gateway, Req, Resp};
use crate::guard::{Admitted, Closed, ResetBudget};
use crate::prefetch::Pushable;
use crate::served::{after_pull, may_carry_mpd, remember_mpd};
use crate::settings::{H2Limits, Limits};
use crate::target::Target;

/// Largest DATA chunk handed to h2 at once.
const CHUNK: usize = 64 * 1024;

/// Request headers a promised request copies from its parent (spec §7: never credentials).
const PROMISE_HEADERS: &[&str] = &["accept", "accept-encoding", "user-agent"];

/// One HTTP/2 connection's state.
pub(crate) struct H2Conn {
    /// The client's SETTINGS_ENABLE_PUSH and window shape, read off the wire.
    peer: Peer,
    /// `http` (h2c) or `https` (TLS).
    scheme: &'static str,
    /// Its push state.
    push: PushConn,
    /// A stream that accepts no bytes for this long is reset.
    send_timeout: Duration,
    /// Requests the client reset before their answer was sent.
    resets: ResetBudget,
}

/// How HTTP/2 connections are served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup<'a> {
    /// `h2`'s limits.
    pub(crate) h2: H2Limits,
    /// The server's SETTINGS frame, when connections are parked until their first request
    /// (`h2park`).
    pub(crate) greeting: Option<&'a Bytes>,
}

/// Serves one HTTP/2 connection (`tls`: whether it arrived on the TLS listener, for the
/// `https` scheme of pushed URLs) until the client leaves, a deadline or budget ends it
/// (`limits`, `crate::guard::Closed`), or the gateway drains.
pub(crate) async fn serve(
    handler: &Arc<Gateway>,
    stream: Stream,
    Setup { h2, greeting }: Setup<'_>,
    limits: Limits,
    drain: &Arc<Drain>,
    admitted: &Admitted,
    tls: bool,
) {
    let mut lasting = Lasting::default();
    let Some(greeting) = greeting else {
        let stream = Resumed::fresh(stream);
        Box::pin(run(
            handler,
            stream,
            None,
            h2,
            limits,
            drain,
            admitted,
            tls,
            &mut lasting,
        ))
        .await;
        return;
    };
    // Until its first request the connection is parked, without h2's buffers (`h2park`), and
    // again whenever it falls idle after serving (`h2idle`). Each stage's state is boxed on
    // its own: a parked connection holds none of the served one's, and a served one none of
    // the parked one's.
    let metrics = handler.metrics();
    // Counted as in flight from here on, through each hand-over between parked and served:
    // a drain that starts at any moment gets the connection its GOAWAY before the process
    // exits (a parked connection answers nothing more and sends it at once: it holds the drain
    // a second at most, as long as a client that reads nothing takes to time it out).
    let mut parked = Parked {
        stream,
        again: None,
        goodbye: drain.begin(),
    };
    loop {
        let Some((woken, goodbye)) =
            Box::pin(park(parked, greeting, &limits, drain, admitted, metrics)).await
        else {
            return;
        };
        match Box::pin(run(
            handler,
            woken,
            Some(goodbye),
            h2,
            limits,
            drain,
            admitted,
            tls,
            &mut lasting,
        ))
        .await
        {
            Some(idle) => parked = idle,
            None => return,
        }
    }
}

/// What spans a connection's `h2`s when it is parked again between them: the budgets a new
/// `h2` must not reset.
#[derive(Default)]
struct Lasting {
    /// Requests it has had (`http2.max_requests_per_connection`).
    requests: u64,
    /// Requests the client reset (`http2.max_resets_per_connection`): when the budget's
    /// window began and the resets in it, once an `h2` has served.
    resets: Option<(std::time::Instant, u32)>,
}

/// A connection about to be parked: the first time (`again: None`), or again after serving,
/// with what its next `h2` needs and when it is idle for good.
struct Parked {
    stream: Stream,
    /// Boxed: the connection's future holds a pointer while it is served.
    again: Option<Box<(Again, tokio::time::Instant)>>,
    /// The connection's count in the drain, carried from one stage to the next.
    goodbye: InFlight,
}

/// Serves a connection with `h2`, from its preface (or its bytes kept while parked) on.
/// `lasting`: what spans the connection's `h2`s (its request and reset budgets). `Some` when it
/// has fallen idle and is to be parked again (`h2idle`, with `http2.park_when_idle_ms`).
/// `held`: the connection's count in the drain when it comes from `park` (held through the
/// handshake, which has the client's preface already); `None` for a connection served from its
/// first byte, counted once its handshake is done.
#[allow(clippy::too_many_arguments)]
async fn run(
    handler: &Arc<Gateway>,
    stream: Resumed<Stream>,
    held: Option<InFlight>,
    h2: H2Limits,
    limits: Limits,
    drain: &Arc<Drain>,
    admitted: &Admitted,
    tls: bool,
    lasting: &mut Lasting,
) -> Option<Parked> {
    let metrics = handler.metrics();
    let client = stream.with(super::client_ip);
    let peer = stream.peer();
    let link = stream.link();
    let push = Arc::new(H2Conn {
        peer,
        scheme: if tls { "https" } else { "http" },
        push: PushConn::default(),
        send_timeout: limits.send,
        resets: match lasting.resets {
            Some(spent) => ResetBudget::resumed(h2.max_resets, h2.reset_window, spent),
            None => ResetBudget::new(h2.max_resets, h2.reset_window),
        },
    });
    // The client preface must arrive within the handshake deadline. The handshake's state is
    // boxed apart, and the builder dropped with its block: neither stays in this future for
    // the connection's life (memory per idle connection).
    let handshake = builder(&h2).handshake::<_, Bytes>(stream);
    let mut conn = Box::pin(within_handshake(
        &limits,
        metrics,
        "h2 handshake",
        handshake,
    ))
    .await?;
    // Keep-alive PINGs: a peer that answers none within the timeout is gone, and the first,
    // sent at once, bounds the rest of the handshake (a peer that never reads our SETTINGS
    // answers no PING either).
    let (ping_lost_tx, mut ping_lost) = tokio::sync::oneshot::channel::<Closed>();
    let mut keepalive_over = false;
    let _keepalive = conn.ping_pong().map(|pp| {
        AbortOnDrop(tokio::spawn(keepalive(
            pp,
            limits.handshake,
            h2.ping_interval,
            h2.ping_timeout,
            ping_lost_tx,
        )))
    });
    let mut draining = drain.watch();
    // Counted as in flight until the gateway drains, the connection's GOAWAY has had its
    // moment ([`GOODBYE`]) and no stream is open (a request ends once h2 has its last bytes,
    // not once they are written): the process does not exit before they are. A connection
    // served from its first byte is not counted during the handshake: a client that never
    // finishes its preface would hold the drain for the handshake deadline (a parked
    // connection, the default, comes here counted, with its preface read).
    let mut goodbye = Some(held.unwrap_or_else(|| drain.begin()));
    // Request tasks (and the pushes they send, live ones included) end with the connection:
    // the set aborts whatever is left when it is dropped.
    let mut tasks = tokio::task::JoinSet::new();
    let mut idle_until = tokio::time::Instant::now() + limits.idle;
    // When an idle connection is parked again (`h2idle`); not once GOAWAY is sent.
    let park_after = || {
        h2.park_when_idle
            .map(|after| tokio::time::Instant::now() + after)
    };
    let mut park_at = park_after();
    // Nothing in flight: one of the first connections closed at the cap.
    let mut idle = Some(admitted.idle());
    let ended = {
        // The waits that last the connection's life are made once: made anew for each turn of
        // the loop, each polled one would join its wait list and leave it again every time (a
        // lock each way, per request).
        let flooded = push.resets.spent.notified();
        let evicted = admitted.evicted();
        let drained = until_draining(&mut draining);
        tokio::pin!(flooded, evicted, drained);
        loop {
            tokio::select! {
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    if tasks.is_empty() {
                        idle_until = tokio::time::Instant::now() + limits.idle;
                        idle = Some(admitted.idle());
                        park_at = park_at.and_then(|_| park_after());
                    }
                }
                next = conn.accept() => match next {
                    Some(Ok((request, respond))) => {
                        idle = None;
                        lasting.requests += 1;
                        if lasting.requests == h2.max_requests {
                            // This one is served; then GOAWAY and the client opens a new connection.
                            conn.graceful_shutdown();
                            park_at = None;
                            Closed::RequestBudget.count(metrics, "h2");
                        }
                        let handler = handler.clone();
                        let push = Arc::clone(&push);
                        let client = client.clone();
                        let inflight = drain.begin();
                        // Boxed: tokio moves a task's future on spawn, on completion and when its
                        // output is read; a pointer is cheaper to move than the request's state.
                        tasks.spawn(Box::pin(async move {
                            let _inflight = inflight;
                            let (parts, body) = request.into_parts();
                            if crate::downstream::ws::is_extended_connect(&parts) {
                                // Boxed, as the push cycle below: the request task stays small
                                // for the common pull (tokio moves it on spawn and completion).
                                Box::pin(crate::downstream::ws::h2_connect(&handler, parts, body, respond, push.scheme)).await;
                                return;
                            }
                            // GET/HEAD bodies are not read: dropping the stream's receive side
                            // returns its window to the connection at once.
                            drop(body);
                            let req = Req {
                                method: parts.method,
                                path: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
                                headers: parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
                                client,
                                host: parts.uri.authority().map(|a| a.as_str().to_owned()),
                            };
                            match serve_request(&handler, &push, req, respond).await {
                                Ok(CLIENT_CLOSED) => {
                                    handler.record("h2", CLIENT_CLOSED);
                                    push.resets.reset();
                                }
                                Ok(status) => handler.record("h2", status),
                                Err(e) => tracing::debug!("h2 send: {e}"),
                            }
                        }));
                        // Frames are held to leave together while requests come in together; a
                        // request that arrives alone (a pull after a pull, a live viewer's one
                        // push cycle) turns that off until the next comes while it is in play.
                        // Not when tasks end: their answers are written after they end.
                        link.batch(tasks.len() > 1);
                    }
                    Some(Err(e)) => {
                        tracing::debug!("h2 connection: {e}");
                        break None;
                    }
                    None => break None,
                },
                () = &mut flooded => break Some(Ended::Closed(Closed::ResetFlood, h2::Reason::ENHANCE_YOUR_CALM)),
                lost = &mut ping_lost, if !keepalive_over => match lost {
                    Ok(why) => break Some(Ended::Closed(why, h2::Reason::NO_ERROR)),
                    // The connection is closing: the keep-alive has nothing left to watch.
                    Err(_) => keepalive_over = true,
                },
                () = &mut evicted, if idle.is_some() => break Some(Ended::Closed(Closed::Evicted, h2::Reason::NO_ERROR)),
                () = tokio::time::sleep_until(idle_until), if tasks.is_empty() => {
                    Closed::Idle.count(metrics, "h2");
                    // GOAWAY; the loop ends when the client has nothing more in flight.
                    conn.graceful_shutdown();
                    park_at = None;
                    idle_until = tokio::time::Instant::now() + limits.idle;
                }
                () = sleep_until_some(park_at), if tasks.is_empty() && park_at.is_some_and(|at| at < idle_until) => {
                    // Idle: parked again if `h2` has nothing open and a new one can carry the
                    // connection on; else tried again after as long.
                    match link.again() {
                        Ok(again) if !conn.has_streams() => break Some(Ended::Idle(again)),
                        Ok(_) => tracing::trace!("h2 not parked again: streams open"),
                        Err(busy) => tracing::trace!(?busy, "h2 not parked again"),
                    }
                    park_at = park_at.and_then(|_| park_after());
                }
                () = &mut drained => {
                    // GOAWAY, then drive the connection until in-flight streams are sent.
                    conn.graceful_shutdown();
                    let said = tokio::time::sleep(GOODBYE);
                    tokio::pin!(said);
                    loop {
                        tokio::select! {
                            next = conn.accept() => match next {
                                Some(Ok((_, mut respond))) => respond.send_reset(h2::Reason::REFUSED_STREAM),
                                _ => return None,
                            },
                            // A stream still open may have bytes h2 has not written yet (its
                            // request ended once they were handed over): held until it closes.
                            () = &mut said, if goodbye.is_some() => {
                                if conn.has_streams() {
                                    said.as_mut().reset(tokio::time::Instant::now() + GOODBYE_RECHECK);
                                } else {
                                    goodbye = None;
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    match ended {
        Some(Ended::Closed(why, reason)) => {
            why.count(metrics, "h2");
            tasks.abort_all();
            conn.abrupt_shutdown(reason);
            // Flush the GOAWAY (bounded: the peer may not read).
            let flush = async { while let Some(Ok(_)) = conn.accept().await {} };
            let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
            None
        }
        Some(Ended::Idle(again)) => {
            lasting.resets = Some(push.resets.spent_so_far());
            // `h2` and everything holding its handle go; the socket comes back.
            drop((conn, _keepalive, tasks, push));
            let Some(stream) = link.take() else {
                tracing::warn!("h2 connection not parked again: its socket is still held");
                return None;
            };
            Some(Parked {
                stream,
                again: Some(Box::new((again, idle_until))),
                goodbye: goodbye.unwrap_or_else(|| drain.begin()),
            })
        }
        None => None,
    }
}

/// How long a draining gateway waits for an HTTP/2 connection with nothing in flight to write
/// its GOAWAY (a client that reads nothing does not hold the drain for longer).
const GOODBYE: Duration = Duration::from_secs(1);

/// How often a draining connection that still has streams open looks again.
const GOODBYE_RECHECK: Duration = Duration::from_millis(50);

/// Why the served connection's loop ended, when it did not just end.
enum Ended {
    /// Closed: counted, with GOAWAY of this reason.
    Closed(Closed, h2::Reason),
    /// Idle, to be parked again with this.
    Idle(Again),
}

/// Sleeps until `at`, or for ever.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Holds a connection without `h2` until the client's first request (`h2park`): sends the
/// server's SETTINGS and acknowledges the client's, keeps the few bytes a client sends before a
/// request, and hands the connection on when a frame needs `h2`. The client must acknowledge
/// our SETTINGS within the handshake deadline (RFC 9113 §6.5.3; a peer that never reads is
/// gone, as the first keep-alive PING tells a woken connection), and send a request within the
/// idle time; meanwhile the connection is idle (closed first at the connection cap). Closed
/// with GOAWAY (NO_ERROR, no stream) when idle, evicted or drained. `None`: the connection is
/// over (a deadline or an eviction is counted; the client leaving or failing is not).
///
/// A connection parked again after serving (`h2idle`) is held the same way from the bytes that
/// tell its next `h2` the state, until its idle time ends; its GOAWAY names the last stream it
/// served, and a request on an old stream is refused with GOAWAY PROTOCOL_ERROR.
async fn park(
    Parked {
        mut stream,
        mut again,
        goodbye,
    }: Parked,
    greeting: &Bytes,
    limits: &Limits,
    drain: &Arc<Drain>,
    admitted: &Admitted,
    metrics: &crate::metrics::Metrics,
) -> Option<(Resumed<Stream>, InFlight)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let started = tokio::time::Instant::now();
    // A connection parked again reads on after its replay, and carries the rest of `Again`
    // to its next h2.
    // (`again` stays boxed: the parked connection's future holds a pointer.)
    let (mut parker, mut kept, idle_at) = match &mut again {
        Some(carry) => {
            metrics.h2_parked_again.inc();
            let (again, until) = &mut **carry;
            let parker = Parker::again(again);
            (parker, std::mem::take(&mut again.replay), *until)
        }
        None => {
            let sent = async {
                stream.write_all(greeting).await?;
                stream.flush().await
            };
            // Boxed apart: its state would otherwise stay in the parked connection's future.
            Box::pin(within_handshake(limits, metrics, "h2 parked write", sent)).await?;
            (
                Parker::default(),
                Vec::with_capacity(128),
                started + limits.idle,
            )
        }
    };
    let last = again.as_ref().map_or(0, |carry| carry.0.last_stream);
    let mut draining = drain.watch();
    let _idle = admitted.idle();
    let _parked = crate::metrics::Held::new(&metrics.h2_parked);
    loop {
        // Reading room up to the bound: a read never takes more than the parker may keep
        // (and the one byte that tells it went over).
        let room = (h2park::KEPT_MAX + 1).saturating_sub(kept.len()) as u64;
        let (deadline, why) = if parker.acknowledged() {
            (idle_at, Closed::Idle)
        } else {
            (started + limits.handshake, Closed::Handshake)
        };
        // Read, or why the connection ends (counted) and whether the peer is sent GOAWAY.
        let read = {
            let mut limited = (&mut stream).take(room);
            tokio::select! {
                r = limited.read_buf(&mut kept) => Ok(r),
                () = tokio::time::sleep_until(deadline) => Err((Some(why), why == Closed::Idle)),
                () = admitted.evicted() => Err((Some(Closed::Evicted), true)),
                _ = until_draining(&mut draining) => Err((None, true)),
            }
        };
        let read = match read {
            Ok(read) => read,
            Err((why, polite)) => {
                if let Some(why) = why {
                    why.count(metrics, "h2");
                }
                if polite {
                    goaway(&mut stream, last, NO_ERROR, false).await;
                }
                return None;
            }
        };
        match read {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("h2 parked read: {e}");
                return None;
            }
        }
        loop {
            let answer = match parker.scan(&kept) {
                Step::More => break,
                Step::Ack => SETTINGS_ACK.to_vec(),
                Step::Drop { at, len } => {
                    kept.drain(at..at + len);
                    continue;
                }
                Step::Pong { at, len, payload } => {
                    kept.drain(at..at + len);
                    let mut pong = h2wire::head(8, PING, ACK, 0).to_vec();
                    pong.extend_from_slice(&payload);
                    pong
                }
                Step::Close(code) => {
                    tracing::debug!(last, code, "h2 parked again: closed");
                    goaway(&mut stream, last, code, true).await;
                    return None;
                }
                Step::Wake(why) => {
                    tracing::trace!(?why, bytes = kept.len(), "h2 connection woken");
                    let (unsent, tracker) = match again.take() {
                        None => (
                            Unsent::new(greeting.clone(), parker.acked()),
                            Tracker::new(),
                        ),
                        Some(carry) => {
                            let a = carry.0;
                            metrics.h2_woken.inc();
                            (
                                Unsent::again(greeting.clone(), parker.acked(), a.credit),
                                Tracker::again(a.last_stream, a.peer, a.hpack),
                            )
                        }
                    };
                    return Some((Resumed::new(stream, kept, unsent, tracker), goodbye));
                }
            };
            // Draining: nothing more is answered (each answer could hold the drain anew); the
            // client gets its GOAWAY.
            if *draining.borrow() {
                goaway(&mut stream, last, NO_ERROR, false).await;
                return None;
            }
            // Boxed apart: its timers would otherwise stay in every parked connection's future.
            if !Box::pin(answer_parked(&mut stream, &answer, limits, &mut draining)).await {
                return None;
            }
        }
    }
}

/// Writes a parked connection's `answer` (a SETTINGS ACK, a PING's) within the send deadline:
/// whether it was written. A write under way when the gateway starts to drain has [`GOODBYE`]
/// more (the parked loop answers nothing after it), so a client that does not read holds the
/// drain no longer.
async fn answer_parked(
    stream: &mut Stream,
    answer: &[u8],
    limits: &Limits,
    draining: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    use tokio::io::AsyncWriteExt;

    let answered = async {
        stream.write_all(answer).await?;
        stream.flush().await
    };
    let answered = tokio::time::timeout(limits.send, answered);
    tokio::pin!(answered);
    let written = tokio::select! {
        w = &mut answered => w,
        () = until_draining(draining) => match tokio::time::timeout(GOODBYE, &mut answered).await {
            Ok(w) => w,
            Err(_) => return false,
        },
    };
    matches!(written, Ok(Ok(())))
}

/// `work` within the handshake deadline: its value, or `None` when it failed (logged as
/// `what`) or the deadline passed (counted).
async fn within_handshake<T, E: std::fmt::Display>(
    limits: &Limits,
    metrics: &crate::metrics::Metrics,
    what: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(limits.handshake, work).await {
        Ok(Ok(done)) => Some(done),
        Ok(Err(e)) => {
            tracing::debug!("{what}: {e}");
            None
        }
        Err(_) => {
            Closed::Handshake.count(metrics, "h2");
            None
        }
    }
}

/// Sends a parked connection's GOAWAY (`last`: the last stream it served; `code`) and shuts its
/// sending side (TLS: close_notify); when `linger` (closed in the middle of what the client
/// sends: a refused frame, a request that cannot wake an h2), drains what the client still
/// sends until it closes. All within a second: the peer may not read, or not close, at all.
async fn goaway(stream: &mut Stream, last: u32, code: u32, linger: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sent = async {
        stream.write_all(&h2wire::goaway(last, code)).await?;
        stream.flush().await?;
        stream.shutdown().await?;
        // Lingering: what the client still sends is read and dropped until it closes, so that
        // unread bytes do not turn the close into a reset that could take the GOAWAY with it.
        if linger {
            // On the heap: this future is part of every parked connection's.
            let mut sink = vec![0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends a PING at once, which must be answered within `first` (a peer that does not read,
/// or never processes our SETTINGS, fails it within the handshake deadline), then one every
/// `every`; tells `lost` why when one goes unanswered for `within`.
async fn keepalive(
    mut pp: h2::PingPong,
    first: Duration,
    every: Duration,
    within: Duration,
    lost: tokio::sync::oneshot::Sender<Closed>,
) {
    let mut deadline = (first, Closed::Handshake);
    loop {
        match tokio::time::timeout(deadline.0, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                let _ = lost.send(deadline.1);
                return;
            }
        }
        tokio::time::sleep(every).await;
        deadline = (within, Closed::PingTimeout);
    }
}

/// Resolves when the client resets the stream.
async fn reset_by_client(respond: &mut SendResponse<Bytes>) {
    let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
}

/// Serves one HTTP/2 request: plain, or with the push cycle its directive asks for.
async fn serve_request(
    gw: &Arc<Gateway>,
    conn: &Arc<H2Conn>,
    req: Req,
    mut respond: SendResponse<Bytes>,
) -> Result<u16, h2::Error> {
    let started = std::time::Instant::now();
    let policy = request_policy(req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let resolve = || Target::resolve(&gw.origins(), conn.scheme, req.host.as_deref(), &req.path);
    if let (RequestPolicy::Directive { header, .. }, true) = (&policy, req.method == Method::GET)
        && let Some(target) = resolve()
    {
        let mut t = H2Push::new(respond, conn, header.ack_name(), &req);
        let input = DirectiveInput::from(&policy);
        let cycle = Box::pin(cycle::run(gw, &conn.push, &mut t, &req, &target, input));
        return Ok(cycle.await);
    }
    // Plain pull. While the client lets the connection push, the planner follows what it
    // fetches (nothing it asked for is pushed to it later; its position in each
    // AdaptationSet, Annex H). A client that turned push off (every browser) pays for none of
    // it: no URL is built unless the answer needs one (docs/spec-decisions.md).
    let mut target = None;
    if conn.peer.push_enabled() {
        target = resolve();
        if let Some(target) = &target {
            let settings = gw.push_settings();
            conn.push.plan(&settings.plan, |s| {
                s.on_request(
                    &Request {
                        url: &target.url,
                        directive: DirectiveInput::Absent,
                        push_allowed: true,
                        byte_budget: None,
                    },
                    &gw.manifests().route(&target.origin),
                    Some(chrono::Utc::now()),
                )
            });
        }
    }
    // A reset stops the work at once (the origin fetch goes on only for whoever else waits
    // for it, see `Gateway::handle`).
    let log = |status: u16, bytes: u64, cache: Option<&str>| {
        gw.log_served(
            conn.scheme,
            &Served {
                protocol: "h2",
                client: req.client.as_deref(),
                method: req.method.as_str(),
                authority: req.host.as_deref(),
                path: &req.path,
                status,
                bytes,
                started,
                cache,
            },
        );
    };
    let mut resp = tokio::select! {
        r = gw.handle(&req) => r,
        () = reset_by_client(&mut respond) => {
            log(CLIENT_CLOSED, 0, None);
            return Ok(CLIENT_CLOSED);
        }
    };
    if may_carry_mpd(resp.status, &req.path) {
        if target.is_none() {
            target = resolve();
        }
        if let Some(t) = &target {
            remember_mpd(gw, t, &resp).await;
        }
    }
    // A directive that could not run (not a GET, no route): push-none (spec §6.1.4).
    if let Some(ack) = crate::delivery::none_ack(&policy) {
        resp.headers.push(ack);
    }
    let status = resp.status;
    let length = resp.content_length.map(|l| l as u64);
    let cache = crate::access::cache_of(&resp.headers).map(str::to_owned);
    let Some((head, body)) = response_head(&mut respond, resp) else {
        log(status, 0, cache.as_deref());
        return Ok(status);
    };
    let Ok(body) = read_ahead(body).await else {
        // The origin broke off before the first byte: the stream is reset, never a short 200.
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        log(status, 0, cache.as_deref());
        return Ok(status);
    };
    let end = body.empty;
    let mut stream = respond.send_response(head, end)?;
    let sent = if end {
        0
    } else {
        let pace = Pace {
            cancelled: &|| None,
            send_timeout: conn.send_timeout,
            turn: None,
            first_with_head: true,
            peer: None,
        };
        match send_body(&mut stream, body, length, &pace).await {
            Ok(n) => n,
            Err((Stop::Refused, n)) => {
                log(CLIENT_CLOSED, n, cache.as_deref());
                return Ok(CLIENT_CLOSED);
            }
            Err((_, n)) => n,
        }
    };
    log(status, sent, cache.as_deref());
    after_pull(gw, status, &req.path, || target.or_else(resolve));
    Ok(status)
}

/// HTTP/2 server push for one request (spec §7): a [`PushTransport`].
pub(crate) struct H2Push {
    respond: SendResponse<Bytes>,
    parent: Option<h2::SendStream<Bytes>>,
    enabled: bool,
    /// What the client told the connection (its window shape is read when the pushes are
    /// scheduled, after the parent's answer: a WINDOW_UPDATE sent just after the request counts).
    peer: Peer,
    send_timeout: Duration,
    ack_name: &'static str,
    /// The parent's headers a promised request copies.
    copied: Vec<(HeaderName, HeaderValue)>,
}

impl H2Push {
    fn new(respond: SendResponse<Bytes>, conn: &H2Conn, ack_name: &'static str, req: &Req) -> Self {
        Self {
            respond,
            parent: None,
            enabled: conn.peer.push_enabled(),
            peer: conn.peer.clone(),
            send_timeout: conn.send_timeout,
            ack_name,
            copied: req
                .headers
                .iter()
                .filter(|(n, _)| PROMISE_HEADERS.contains(&n.as_str()))
                .cloned()
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl PushTransport for H2Push {
    type Reserved = http::Request<()>;
    type Promised = Promised;

    fn transport(&self) -> Transport {
        Transport::H2
    }

    fn push_allowed(&self) -> bool {
        self.enabled
    }

    fn connection_window(&self) -> ConnWindow {
        self.peer.connection_window()
    }

    /// The PUSH_PROMISE's request: GET of the pushed URL with the parent's `accept`,
    /// `accept-encoding` and `user-agent` (spec §7).
    fn reserve(&mut self, push: &Push) -> Result<Self::Reserved, DropReason> {
        if !self.enabled {
            return Err(DropReason::PromiseRefused);
        }
        let mut builder = http::Request::builder()
            .method(Method::GET)
            .uri(push.url.as_str());
        for (n, v) in &self.copied {
            builder = builder.header(n, v);
        }
        builder.body(()).map_err(|_| DropReason::PromiseRefused)
    }

    fn release(&mut self, _reserved: Self::Reserved) {}

    async fn parent_gone(&mut self) {
        reset_by_client(&mut self.respond).await;
    }

    async fn answer_head(&mut self, head: AnswerHead) -> Result<(), Stop> {
        let ack = head.ack.as_ref().and_then(|ack| {
            let name = HeaderName::from_bytes(self.ack_name.as_bytes()).ok()?;
            Some((name, HeaderValue::from_str(&ack.to_string()).ok()?))
        });
        let length = length_field(head.status, head.content_length.map(|l| l as u64));
        let Some(parts) = super::head_parts(
            head.status,
            head.headers.iter(),
            ack.into_iter().chain(length),
            0,
        ) else {
            self.respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return Err(Stop::Gone);
        };
        let h = http::Response::from_parts(parts, ());
        // The parent stays open until its promises are sent (a PUSH_PROMISE on a closed stream
        // is a connection error, RFC 9113 §6.6), even when its own body is empty (a 304).
        let end = head.body_empty && !head.promises_follow;
        let stream = self.respond.send_response(h, end).map_err(|_| Stop::Gone)?;
        self.parent = (!end).then_some(stream);
        Ok(())
    }

    fn promise(&mut self, request: Self::Reserved) -> Result<Self::Promised, DropReason> {
        let stream = self
            .respond
            .push_request(request)
            .map_err(|_| DropReason::PromiseRefused)?;
        Ok(Promised {
            stream,
            at: Instant::now(),
        })
    }

    /// A parent the client reset does not cancel promises already made (spec §7.3): the
    /// pushes go on whatever happens to it.
    async fn answer_body(&mut self, body: Body) -> Result<u64, Stop> {
        let Some(mut parent) = self.parent.take() else {
            return Ok(0);
        };
        if matches!(&body, Body::Full(b) if b.is_empty()) {
            let _ = parent.send_data(Bytes::new(), true);
            return Ok(0);
        }
        let pace = Pace {
            cancelled: &|| None,
            send_timeout: self.send_timeout,
            turn: None,
            first_with_head: true,
            peer: None,
        };
        let body = Ahead {
            empty: false,
            first: None,
            rest: body,
        };
        Ok(match send_body(&mut parent, body, None, &pace).await {
            Ok(n) | Err((_, n)) => n,
        })
    }

    fn refused(&self, promised: &mut Self::Promised) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        promised.stream.poll_reset(&mut cx).is_ready()
    }

    async fn send(
        &self,
        mut promised: Self::Promised,
        _push: &Push,
        resp: Pushable,
        cancelled: &(dyn Fn() -> Option<Stop> + Send + Sync),
        turn: &Turn,
    ) -> Result<u64, (Stop, u64)> {
        // The origin's length is replaced by what is sent, and the gateway's Cache-Status is
        // for the request that fetched it, not for this push.
        const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
        let origin = resp
            .headers()
            .iter()
            .filter(|(n, _)| *n != http::header::CONTENT_LENGTH && *n != CACHE_STATUS);
        let length = length_field(200, resp.length);
        let Some(parts) = super::head_parts(200, origin, length, 0) else {
            promised.stream.send_reset(h2::Reason::INTERNAL_ERROR);
            return Err((Stop::OriginBroke, 0));
        };
        let head = http::Response::from_parts(parts, ());
        let body = match read_ahead(resp.body).await {
            Ok(b) => b,
            Err(stop) => {
                promised.stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return Err((stop, 0));
            }
        };
        let mut out = promised
            .stream
            .send_response(head, body.empty)
            .map_err(|_| (Stop::Gone, 0))?;
        if body.empty {
            return Ok(0);
        }
        let pace = Pace {
            cancelled,
            send_timeout: self.send_timeout,
            turn: Some(turn),
            first_with_head: promised.at.elapsed() >= REFUSAL_GRACE,
            peer: Some(&self.peer),
        };
        // Boxed on its own: a push's future is allocated for every push, and with the body's
        // sending in it, it was a request at the top of glibc's per-thread cache (1,016 bytes)
        // or beyond it (1,480 before the waits were boxed), which a thousand pushes at once
        // take from the general allocator, each consolidating its free lists first.
        let sent = Box::pin(send_body(&mut out, body, resp.length, &pace)).await;
        if let Err((Stop::Replaced, _)) = sent {
            out.send_reset(h2::Reason::CANCEL);
        }
        sent
    }

    async fn withdraw(&self, mut promised: Self::Promised, _push: &Push, why: Withdrawal) {
        if let Withdrawal::Dropped(_) = why {
            promised.stream.send_reset(h2::Reason::CANCEL);
        }
    }

    async fn finish(&mut self) {}
}

/// The `content-length` of an HTTP/2 answer with `status` whose body is `len` bytes, when
/// known; a 304 carries none of its own (RFC 9110 §8.6).
fn length_field(status: u16, len: Option<u64>) -> Option<(HeaderName, HeaderValue)> {
    len.filter(|_| status != 304)
        .map(|len| (http::header::CONTENT_LENGTH, HeaderValue::from(len)))
}

/// The response head for `resp` (its `content-length` set when known), or `None` after
/// resetting the stream if the head cannot be built.
pub(crate) fn response_head(
    respond: &mut SendResponse<Bytes>,
    resp: Resp,
) -> Option<(http::Response<()>, Body)> {
    let length = length_field(resp.status, resp.content_length.map(|l| l as u64));
    match super::head_parts(resp.status, resp.headers.iter(), length, 0) {
        Some(parts) => Some((http::Response::from_parts(parts, ()), resp.body)),
        None => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// A body about to be sent, its first chunk read ahead, so that the response HEADERS leave
/// with the first DATA instead of in a write of their own (a live push would otherwise send
/// its head the moment it is due and its bytes a moment later).
pub(crate) struct Ahead {
    first: Option<Bytes>,
    rest: Body,
    /// Nothing to send after the head.
    pub(crate) empty: bool,
}

/// Reads the first chunk of a streamed body; `Err` if the origin broke off before it.
pub(crate) async fn read_ahead(body: Body) -> Result<Ahead, Stop> {
    match body {
        Body::Full(b) => Ok(Ahead {
            empty: b.is_empty(),
            first: None,
            rest: Body::Full(b),
        }),
        Body::Stream(mut reader) => match reader.chunk().await {
            Some(Ok(c)) => Ok(Ahead {
                empty: false,
                first: Some(c),
                rest: Body::Stream(reader),
            }),
            None => Ok(Ahead {
                empty: true,
                first: None,
                rest: Body::Full(Bytes::new()),
            }),
            Some(Err(_)) => Err(Stop::OriginBroke),
        },
    }
}

/// Sends a body within the flow-control windows and ends the stream: with its last DATA frame
/// when `length` says which one that is (no empty frame of its own), else with an empty one at
/// the end of the stream. `Ok(bytes)` when all was sent; else why it stopped and the bytes
/// sent: the client reset the stream ([`Stop::Refused`]), `cancelled` said so, the connection
/// failed or the client granted no window for `send_timeout` ([`Stop::Gone`]: the stream is then
/// reset), or the origin broke off ([`Stop::OriginBroke`]: the stream is then reset, so the
/// client never takes it as complete). A push sends in its `turn` (see `delivery::turns`).
pub(crate) async fn send_body(
    stream: &mut h2::SendStream<Bytes>,
    body: Ahead,
    length: Option<u64>,
    pace: &Pace<'_>,
) -> Result<u64, (Stop, u64)> {
    let mut sent = 0u64;
    let Ahead { first, rest, .. } = body;
    let mut reader = match rest {
        Body::Full(b) => {
            send_within_window(stream, b, true, pace, &mut sent).await?;
            return Ok(sent);
        }
        Body::Stream(reader) => reader,
    };
    let mut next = first.map(Ok);
    loop {
        if next.is_none() {
            next = reader.chunk().await;
        }
        match next.take() {
            Some(Ok(mut chunk)) => {
                // The chunk that completes the announced length ends the stream.
                let last = match length {
                    Some(total) => {
                        let left = total.saturating_sub(sent);
                        if chunk.len() as u64 >= left {
                            chunk.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                            true
                        } else {
                            false
                        }
                    }
                    None => false,
                };
                send_within_window(stream, chunk, last, pace, &mut sent).await?;
                if last {
                    // The stream is complete; the fill is read to its end still (it ends a
                    // moment after its last byte), so a fill read by this request alone is not
                    // taken for abandoned and is stored.
                    // Boxed, as the waits in `send_within_window` are.
                    let drain = async { while let Some(Ok(_)) = reader.chunk().await {} };
                    let _ = Box::pin(tokio::time::timeout(FILL_END, drain)).await;
                    return Ok(sent);
                }
            }
            Some(Err(_)) => {
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                return Err((Stop::OriginBroke, sent));
            }
            None => {
                if stream.send_data(Bytes::new(), true).is_err() {
                    return Err((Stop::Gone, sent));
                }
                return Ok(sent);
            }
        }
    }
}

/// How a body is sent: stopped when `cancelled` says so, reset when no window is granted for
/// `send_timeout`, in its `turn` when it is a push.
pub(crate) struct Pace<'a> {
    pub(crate) cancelled: &'a (dyn Fn() -> Option<Stop> + Send + Sync),
    pub(crate) send_timeout: Duration,
    pub(crate) turn: Option<&'a Turn>,
    /// The body's first piece may go with the response HEADERS ([`OPEN_PIECE`]).
    pub(crate) first_with_head: bool,
    /// The client's settings, for a push: the floor of a push behind another
    /// ([`behind_floor`]) follows its streams' window as it is now.
    pub(crate) peer: Option<&'a Peer>,
}

/// A promised push: its stream, and when its PUSH_PROMISE was queued.
pub(crate) struct Promised {
    stream: SendPushedResponse<Bytes>,
    at: Instant,
}

/// How long a push must have been promised before its first piece may go with its HEADERS. A
/// client refuses a push (RST_STREAM) as soon as it reads the PUSH_PROMISE; once the piece is
/// handed to the h2 library the push counts as sent, so a push sent right after its promise
/// (fast start, a cached segment) waits for its stream to open, which gives a refusal in flight
/// its moment, while one promised well before its body was ready (a live segment, promised
/// ahead of its availability) has had that chance already.
const REFUSAL_GRACE: Duration = Duration::from_millis(500);

/// How long a body whose announced length is sent waits for its fill to end.
const FILL_END: Duration = Duration::from_secs(1);

/// How long a push that has sent nothing may wait for its first window before it counts as
/// blocked (the connection task opens a stream whose HEADERS were just queued well within it).
const OPENING: Duration = Duration::from_millis(10);

/// Largest first piece of a stream handed to the h2 library without asking for window (a
/// response, or a push promised [`REFUSAL_GRACE`] or more before): it is queued with the
/// stream's HEADERS, so a pushed stream that opens when its body is ready (a
/// live segment at its availability) leaves in one write, head and bytes together, instead of
/// a write for the head and another once the opened stream's window is granted (live fan-out:
/// writes per delivery). One maximum-size frame at the default SETTINGS_MAX_FRAME_SIZE; a
/// slice of the cached body (never a copy), so a client that grants no window holds at most
/// this much per open stream.
const OPEN_PIECE: usize = 16 * 1024;

/// Largest chunk a push asks window for while an earlier push of its cycle is not done: half a
/// default (64 KiB) window, so the two pushes in play share each window about evenly and the
/// client's credit (returned once half a stream's window is used, as nghttp2 and python-h2
/// do) comes back every round trip (start-up matrix, 64 KiB windows: 1.46x -> 1.05x nginx).
const CHUNK_BEHIND: usize = 32 * 1024;

/// Most window a push behind another waits for before it sends (or the rest of its body, if
/// less): a frame's worth. The first push takes the connection's credit up to its own stream
/// window, and what is left over may be a few bytes; sent, such a sliver leaves the second
/// stream short of the half window at which the client returns its credit, and the two
/// streams fall into taking half and a quarter of a window in turn instead of half each
/// (64 KiB windows, N = 4: nine round trips more in two runs of six). Kept reserved instead, it
/// grows with the next credit.
const BEHIND_FLOOR: usize = 16 * 1024;

/// Longest a push behind another keeps a sliver unsent: longer than a round trip, so the next
/// credit usually grows it; bounded, because slivers kept by several push cycles on one
/// connection could hold back the half window a client waits for before it returns credit.
const KEEP_SLIVER: Duration = Duration::from_millis(250);

/// The floor of a push behind another on a connection whose client gives each stream
/// `stream_window` bytes: [`BEHIND_FLOOR`], or a quarter of a smaller window (a stream
/// window of 4 KiB never holds 16 KiB: the push would wait to lead before it sent again).
fn behind_floor(stream_window: u32) -> usize {
    let quarter = usize::try_from(stream_window.div_ceil(4)).unwrap_or(usize::MAX);
    BEHIND_FLOOR.min(quarter).max(1)
}

/// Sends `body` within the stream's flow-control window, one granted chunk at a time (never
/// buffering more than the window allows, apart from a stream's first [`OPEN_PIECE`], which
/// goes with its HEADERS); ends the stream after it if `end`. Stops at once
/// when the client resets the stream or `cancelled` says so, and resets the stream when no
/// window is granted for `send_timeout` (a reader that stopped reading holds nothing longer).
/// A push asks for window only in its turn, and while none is granted at once (its own
/// stream's window, or the connection's, is spent) it lets the next push of its cycle send.
async fn send_within_window(
    stream: &mut h2::SendStream<Bytes>,
    mut body: Bytes,
    end: bool,
    pace: &Pace<'_>,
    sent: &mut u64,
) -> Result<(), (Stop, u64)> {
    if body.is_empty() && end {
        return stream
            .send_data(body, true)
            .map_err(|_| (Stop::Gone, *sent));
    }
    // Until the stream has been granted window once, all it has sent may be the first piece
    // still queued behind its HEADERS.
    let mut opening = usize::try_from(*sent).is_ok_and(|s| s <= OPEN_PIECE);
    let mut carried_deadline = None;
    // Since when a sliver of window has been kept unsent (see `BEHIND_FLOOR`).
    let mut kept_since: Option<tokio::time::Instant> = None;
    while !body.is_empty() {
        if let Some(stop) = (pace.cancelled)() {
            return Err((stop, *sent));
        }
        let mut behind = None;
        let mut spare = None;
        if let Some(turn) = pace.turn {
            if let Play::Spare(since) = turn.mine().await {
                spare = Some((turn, since));
            }
            if !turn.leading() {
                behind = Some(turn);
            }
        }
        let chunk = if behind.is_some() {
            CHUNK_BEHIND
        } else {
            CHUNK
        };
        // A push behind another asks for half a window; once the one before it is done while
        // it waits, it asks for a whole one (the connection's window would otherwise go unused
        // until its half is granted and spent: a hand-over round trip only partly used).
        if body.len() <= CHUNK_BEHIND {
            behind = None;
        }
        if *sent == 0 && pace.first_with_head {
            let piece = body.split_to(body.len().min(OPEN_PIECE));
            let n = piece.len() as u64;
            stream
                .send_data(piece, end && body.is_empty())
                .map_err(|_| (Stop::Gone, *sent))?;
            *sent += n;
            continue;
        }
        stream.reserve_capacity(body.len().min(chunk));
        // The waits are boxed: most grants are there at once, and a push's futures (allocated
        // for every push, see `H2Push::send`) stay small without their timers and wake-ups.
        let granted = if let Some((turn, since)) = spare {
            match stream.capacity() {
                0 => Box::pin(spare_window(stream, turn, since, opening))
                    .await
                    .map_err(|stop| (stop, *sent))?,
                at_once => at_once,
            }
        } else {
            // Asking again keeps the deadline of the wait it interrupts.
            let deadline = carried_deadline
                .take()
                .unwrap_or_else(|| tokio::time::Instant::now() + pace.send_timeout);
            // What a push behind another takes at least (see `behind_floor`), for at most
            // `KEEP_SLIVER`.
            let release_at = kept_since.map(|t| t + KEEP_SLIVER);
            let floor = match (behind, pace.peer) {
                (Some(_), Some(peer))
                    if release_at.is_none_or(|at| at > tokio::time::Instant::now()) =>
                {
                    behind_floor(peer.stream_window()).min(body.len())
                }
                _ => 1,
            };
            // Window it holds already (a sliver kept, and now enough) is used at once.
            let have = stream.capacity();
            let window = if have >= floor {
                Ok(Window::Granted(have))
            } else {
                match window_at_once(stream) {
                    Some(at_once) => at_once.map(Window::Granted),
                    None => {
                        let release_at = release_at.filter(|_| floor > 1);
                        Box::pin(wait_for_window(
                            stream, pace.turn, behind, opening, floor, release_at, deadline,
                        ))
                        .await
                    }
                }
            };
            match window {
                // A sliver for a push behind another: kept (reserved) until it grows to a
                // frame's worth, within the same deadline.
                Ok(Window::Granted(n)) if n > 0 && n < floor => {
                    // Granted window: the stream is open (its HEADERS written).
                    opening = false;
                    kept_since.get_or_insert_with(tokio::time::Instant::now);
                    carried_deadline = Some(deadline);
                    continue;
                }
                // Nothing granted after all, or now the first push of its cycle (asking again,
                // for a whole window): within the same deadline (zero grants must not stretch a
                // stalled reader's send timeout).
                Ok(Window::Granted(0) | Window::Leading) => {
                    carried_deadline = Some(deadline);
                    continue;
                }
                Ok(Window::Granted(n)) => n,
                Err(stop) => return Err((stop, *sent)),
            }
        };
        // A spare granted nothing asks again after an earlier push's change.
        if granted == 0 {
            continue;
        }
        opening = false;
        kept_since = None;
        send_granted(stream, &mut body, granted, end, sent)?;
    }
    Ok(())
}

/// Hands the next `granted` bytes of `body` to the h2 library (ending the stream with the last
/// if `end`). Held back by the window, the last half window of the grant goes in frames of its
/// own (see [`CREDIT_MARK`]).
fn send_granted(
    stream: &mut h2::SendStream<Bytes>,
    body: &mut Bytes,
    granted: usize,
    end: bool,
    sent: &mut u64,
) -> Result<(), (Stop, u64)> {
    let mut piece = body.split_to(granted.min(body.len()));
    let tail = if !body.is_empty() && piece.len() > CREDIT_MARK {
        Some(piece.split_off(piece.len() - CREDIT_MARK))
    } else {
        None
    };
    for part in std::iter::once(piece).chain(tail) {
        let n = part.len() as u64;
        stream
            .send_data(part, end && body.is_empty())
            .map_err(|_| (Stop::Gone, *sent))?;
        *sent += n;
    }
    Ok(())
}

/// The window of a spare push ([`Play::Spare`]: two earlier pushes are in play and both wait
/// for window), its capacity already reserved and none granted at once: the spare reports
/// itself blocked (a later push may try in turn) and waits until an
/// earlier push changes `since` its turn was given (sends again, is blocked again, ends), which
/// may have left window over; then `Ok(0)`: ask again. Meanwhile it gives its reservation back:
/// waiting in the library's queue it would take the connection's next credit ahead of the
/// pushes in play, which are the first needed. A stream that has sent nothing yet (`opening`)
/// gets window only once the connection task has written its HEADERS (until then the library
/// queues nothing for it), so it keeps its reservation and takes the window that opening
/// brings, or goes round again on an earlier change. Stops when the client resets the stream.
/// No send deadline runs meanwhile: the spare waits for the pushes before it, each of which
/// has its own.
async fn spare_window(
    stream: &mut h2::SendStream<Bytes>,
    turn: &Turn,
    since: Since,
    opening: bool,
) -> Result<usize, Stop> {
    turn.blocked();
    let outcome = if opening {
        tokio::select! {
            r = window_or_reset(stream) => Some(r),
            () = turn.earlier_changed(since) => None,
        }
    } else {
        stream.reserve_capacity(0);
        tokio::select! {
            () = reset_of(stream) => Some(Err(Stop::Refused)),
            () = turn.earlier_changed(since) => None,
        }
    };
    outcome.unwrap_or(Ok(0))
}

/// What [`window_or_reset`] resolves with on its first poll, if it resolves then: the client
/// reset the stream, the stream or connection is gone, or window was granted since `stream`
/// last asked; `None` if it would wait.
fn window_at_once(stream: &mut h2::SendStream<Bytes>) -> Option<Result<usize, Stop>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match poll_window(stream, &mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// Resolves with the window next granted to `stream`, or the stop when it is reset or gone.
async fn window_or_reset(stream: &mut h2::SendStream<Bytes>) -> Result<usize, Stop> {
    poll_fn(|cx| poll_window(stream, cx)).await
}

/// The window granted to `stream` since it last asked, or why it will get none: reset by the
/// client ([`Stop::Refused`]), or gone with its connection ([`Stop::Gone`]).
fn poll_window(
    stream: &mut h2::SendStream<Bytes>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<usize, Stop>> {
    if stream.poll_reset(cx).is_ready() {
        return Poll::Ready(Err(Stop::Refused));
    }
    stream.poll_capacity(cx).map(|c| match c {
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) | None => Err(Stop::Gone),
    })
}

/// Resolves when the client resets `stream`.
async fn reset_of(stream: &mut h2::SendStream<Bytes>) {
    let _ = poll_fn(|cx| stream.poll_reset(cx)).await;
}

/// How a push's wait for window ended.
enum Window {
    /// The window granted (0: none yet; the push asks again).
    Granted(usize),
    /// The push it waited behind is done: it now leads its cycle, and asks again for more.
    Leading,
}

/// Waits for window on `stream` (its capacity already reserved) until `deadline`, after which
/// the stream is reset. A push granted nothing waits for a window: the next push of its `turn`
/// may send meanwhile ([`Turn::blocked`]). A stream that has sent nothing yet (`opening`) may
/// only be waiting for the connection to open it (its HEADERS queued, not yet written: the h2
/// library grants no window until then), which takes a moment; it counts as blocked only if
/// that moment ([`OPENING`]) passes. A push `behind` another stops waiting once it leads. A
/// stream holding less window than its `floor` (see [`BEHIND_FLOOR`]) waits as one holding
/// none, until `release_at`, when it takes what it holds.
#[allow(clippy::too_many_arguments)]
async fn wait_for_window(
    stream: &mut h2::SendStream<Bytes>,
    turn: Option<&Turn>,
    behind: Option<&Turn>,
    opening: bool,
    floor: usize,
    release_at: Option<tokio::time::Instant>,
    deadline: tokio::time::Instant,
) -> Result<Window, Stop> {
    let mut blocked_at = None;
    if stream.capacity() < floor
        && let Some(turn) = turn
    {
        if opening {
            blocked_at = Some(tokio::time::Instant::now() + OPENING);
        } else {
            turn.blocked();
        }
    }
    let expiry = tokio::time::sleep_until(deadline);
    tokio::pin!(expiry);
    // `None`: the deadline passed (the stream is reset once the wait no longer holds it).
    let ended = {
        let capacity = window_or_reset(stream);
        tokio::pin!(capacity);
        loop {
            tokio::select! {
                r = &mut capacity => break Some(r.map(Window::Granted)),
                () = &mut expiry => break None,
                () = async {
                    match blocked_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    blocked_at = None;
                    if let Some(turn) = turn {
                        turn.blocked();
                    }
                }
                () = async {
                    match behind {
                        Some(turn) => turn.until_leading().await,
                        None => std::future::pending().await,
                    }
                } => break Some(Ok(Window::Leading)),
                // A sliver kept long enough: the caller takes what the stream holds.
                () = sleep_until_some(release_at) => break Some(Ok(Window::Granted(0))),
            }
        }
    };
    ended.unwrap_or_else(|| {
        stream.send_reset(h2::Reason::CANCEL);
        Err(Stop::Gone)
    })
}

/// Where a window-bound grant is split into frames: half of the default 65,535-byte window,
/// rounded up. Clients with default windows return credit once half a window has been consumed
/// (nghttp2 and python-h2: at 32,767 bytes, counted by whole DATA frames) and keep what they
/// consumed past that mark for the next one. A grant of A bytes that spends the window arrives
/// when the client holds 65,535 − A unreturned bytes; split at A − 32,768, its first frames bring
/// the client to the mark exactly and the last 32,768 bytes reach it again, so the whole window
/// comes back each round trip. Unsplit, about a quarter of it stayed with the client (start-up
/// matrix, 64 KiB windows, one 630 KB segment: 33.5–48.4 KB per round trip; nginx 41–57 KB).
const CREDIT_MARK: usize = 32 * 1024;

/// Resolves once draining has started (the watch's guard is dropped before returning, so the
/// future stays `Send`).
async fn until_draining(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let started = rx.wait_for(|d| *d).await.is_ok();
    if !started {
        // The sender is gone: nothing will ever drain this connection.
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame's worth under the default window; a quarter of a smaller one, so a push behind
    /// another still sends on a client whose streams' windows are small; never zero.
    #[test]
    fn the_floor_behind_follows_the_clients_stream_window() {
        assert_eq!(behind_floor(65_535), BEHIND_FLOOR);
        assert_eq!(behind_floor(16 << 20), BEHIND_FLOOR);
        assert_eq!(behind_floor(4_096), 1_024);
        assert_eq!(behind_floor(0), 1);
    }
}
