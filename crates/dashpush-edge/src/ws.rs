//! The WebSocket sub-protocol of spec §8 (Annex E for the upgrade and fallback).
//!
//! An HTTP/1.1 `GET` with `Upgrade: websocket` on the traffic listeners (any path) is upgraded
//! only if the client offers the sub-protocol `2016.serverpush.dash.mpeg.org` (§8.5); otherwise
//! it gets a 400 naming it, and plain HTTP keeps working on the same URLs. On an open socket:
//!
//! - each MPD or Segment request (odd stream id, increasing) is answered on its stream with
//!   Received messages (pieces of at most [`PIECE`] bytes, END on the last), then every push the
//!   planner decided goes out on its own even stream id (first message `pushed`/`parent`), one
//!   after the other, then End of stream `complete` on the request's stream (Annex C);
//! - a Segment cancel stops the named pushes (by stream id or URL) at once, queued or in
//!   progress, with End of stream `cancelled` on each;
//! - a bad message gets End of stream `error` with a status on its stream and the socket stays
//!   open; an unreadable frame or a text message closes it (1002/1009, 1003);
//! - the socket's send queue is bounded ([`QUEUE`] messages of at most [`PIECE`] bytes): when
//!   the client stops reading, senders wait (pushes pause) and after [`STALL`] (configurable)
//!   the socket is closed with 1008;
//! - the server pings every [`PING_EVERY`] (configurable) and closes a socket that answered
//!   none of the last two pings.
//!
//! The planner, cache, prefetcher and metrics are the HTTP/2 ones (label `transport="ws"`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use dashpush_plan::{DirectiveInput, Outcome, Request, Session};
use dashpush_proto::ws::SUBPROTOCOL;
use dashpush_proto::ws::{
    ByteRange, EndOfStream, EndReason, Frame, Message as DashMessage, MessageCode, Received,
    SegmentCancel, StreamId, Streams, close_code,
};
use dashpush_proto::{PushDirective, limits};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, handshake::derive_accept_key};
use url::Url;

use crate::gateway::{Body, Gateway, Req};
use crate::push::{client_url, is_mpd_path, path_of};

/// Largest payload piece per Received message.
pub const PIECE: usize = 64 * 1024;
/// Messages queued for one socket before senders wait.
pub const QUEUE: usize = 32;
/// Default: how long senders wait on a full queue before the socket is closed (1008).
pub const STALL: Duration = Duration::from_secs(20);
/// Default keep-alive ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(20);

const WS: &str = "ws";

/// True if the client offers the sub-protocol of spec §8.5 in `Sec-WebSocket-Protocol`.
fn offers_subprotocol(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// The refusal a client that does not offer the sub-protocol gets (HTTP/1.1 and HTTP/2).
const NOT_OFFERED: &str = "offer the WebSocket sub-protocol 2016.serverpush.dash.mpeg.org (ISO/IEC 23009-6 §8.5), or use plain HTTP\n";

/// True if the request asks for a WebSocket upgrade (RFC 6455 §4.2.1).
pub(crate) fn is_upgrade(session: &HttpSession) -> bool {
    let h = session.req_header();
    let has = |name: &str, token: &str| {
        h.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("upgrade", "websocket") && has("connection", "upgrade")
}

/// Answers an upgrade request: 101 and the socket loop, or 400/426 with a reason.
pub(crate) async fn upgrade(
    gw: &Arc<Gateway>,
    mut session: Box<HttpSession>,
    scheme: &'static str,
    client: Option<String>,
) {
    let h = session.req_header();
    let offered = offers_subprotocol(&h.headers);
    let key = h
        .headers
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()));
    let version_ok = h
        .headers
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let host = h
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user_agent = h.headers.get(http::header::USER_AGENT).cloned();
    let method_ok = h.method == Method::GET;
    let checked: Result<(String, Url), (u16, &'static str)> = if !method_ok || !version_ok {
        Err((426, "WebSocket version 13 over GET only\n"))
    } else if !offered {
        Err((400, NOT_OFFERED))
    } else {
        match (key, client_url(scheme, host.as_deref(), "/")) {
            (None, _) => Err((400, "missing Sec-WebSocket-Key\n")),
            (_, None) => Err((400, "missing Host\n")),
            (Some(k), Some(base)) => Ok((k, base)),
        }
    };
    let (accept, base) = match checked {
        Ok(c) => c,
        Err((status, text)) => {
            let _ = write_short(&mut session, status, text).await;
            let label = if status == 400 && !offered {
                "no_subprotocol"
            } else {
                "bad_request"
            };
            gw.metrics().ws_upgrades.with_label_values(&[label]).inc();
            return;
        }
    };
    let Ok(mut resp) = ResponseHeader::build(101, Some(4)) else {
        return;
    };
    let ok = resp.insert_header("upgrade", "websocket").is_ok()
        && resp.insert_header("connection", "Upgrade").is_ok()
        && resp.insert_header("sec-websocket-accept", accept).is_ok()
        && resp
            .insert_header("sec-websocket-protocol", SUBPROTOCOL)
            .is_ok();
    if !ok || session.write_response_header(Box::new(resp)).await.is_err() {
        return;
    }
    gw.metrics().ws_upgrades.with_label_values(&["ok"]).inc();
    let stream = session.into_inner();
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits::MAX_WS_MESSAGE))
        .max_frame_size(Some(limits::MAX_WS_MESSAGE));
    let socket = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let _session = crate::metrics::Held::new(&gw.metrics().ws_sessions);
    run(gw, socket, base, host, client, user_agent).await;
}

async fn write_short(
    session: &mut HttpSession,
    status: u16,
    text: &'static str,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(3))?;
    h.insert_header("content-type", "text/plain")?;
    h.insert_header("content-length", text.len())?;
    h.insert_header("connection", "close")?;
    session.set_server_keepalive(None);
    session.write_response_header(Box::new(h)).await?;
    session.write_body(text.as_bytes()).await?;
    session.finish_body().await?;
    Ok(())
}

/// True for an RFC 8441 extended CONNECT with `:protocol websocket`.
pub(crate) fn is_extended_connect(parts: &http::request::Parts) -> bool {
    parts.method == Method::CONNECT
        && parts
            .extensions
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// WebSocket over HTTP/2 (RFC 8441): the same sub-protocol on an extended CONNECT stream of an
/// HTTP/2 connection. The sub-protocol must be offered as with HTTP/1.1 (400 otherwise); the
/// stream's DATA frames carry the WebSocket frames.
pub(crate) async fn h2_connect(
    gw: &Arc<Gateway>,
    parts: http::request::Parts,
    body: h2::RecvStream,
    mut respond: h2::server::SendResponse<Bytes>,
    scheme: &'static str,
) {
    let offered = offers_subprotocol(&parts.headers);
    let host = parts.uri.authority().map(|a| a.as_str().to_owned());
    let base = client_url(scheme, host.as_deref(), "/");
    let (Some(base), true) = (base, offered) else {
        gw.metrics()
            .ws_upgrades
            .with_label_values(&[if offered {
                "bad_request"
            } else {
                "no_subprotocol"
            }])
            .inc();
        let text = NOT_OFFERED;
        if let Ok(head) = http::Response::builder()
            .status(400)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(())
            && let Ok(mut s) = respond.send_response(head, false)
        {
            let _ = s.send_data(Bytes::from_static(text.as_bytes()), true);
        }
        return;
    };
    let Ok(head) = http::Response::builder()
        .status(200)
        .header("sec-websocket-protocol", SUBPROTOCOL)
        .body(())
    else {
        return;
    };
    let Ok(send) = respond.send_response(head, false) else {
        return;
    };
    gw.metrics().ws_upgrades.with_label_values(&["ok"]).inc();
    let io = H2Io {
        send,
        recv: body,
        buf: Bytes::new(),
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits::MAX_WS_MESSAGE))
        .max_frame_size(Some(limits::MAX_WS_MESSAGE));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let user_agent = parts.headers.get(http::header::USER_AGENT).cloned();
    let _session = crate::metrics::Held::new(&gw.metrics().ws_sessions);
    run(gw, socket, base, host, None, user_agent).await;
}

/// An HTTP/2 stream as a byte stream: DATA frames in, DATA frames out within the flow-control
/// window (RFC 8441 §5).
struct H2Io {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    buf: Bytes,
}

fn h2_io_error(e: h2::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl tokio::io::AsyncRead for H2Io {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.buf.is_empty() {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    let _ = self.recv.flow_control().release_capacity(b.len());
                    self.buf = b;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.buf.len().min(out.remaining());
        let chunk = self.buf.split_to(n);
        out.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for H2Io {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(data.len());
        loop {
            match self.send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(0))) => continue,
                Poll::Ready(Some(Ok(n))) => {
                    let n = n.min(data.len());
                    let chunk = Bytes::copy_from_slice(data.get(..n).unwrap_or_default());
                    return Poll::Ready(
                        self.send
                            .send_data(chunk, false)
                            .map(|()| n)
                            .map_err(h2_io_error),
                    );
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_io_error(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        std::task::Poll::Ready(Ok(()))
    }
}

/// What goes to the socket.
enum Out {
    Msg(Bytes),
    Ping,
    Close(u16, &'static str),
}

/// One socket's state shared by its request tasks.
struct Conn {
    gw: Arc<Gateway>,
    out: mpsc::Sender<Out>,
    /// Set when the queue stayed full past [`STALL`]: the socket is closed (1008).
    stalled: Notify,
    streams: Mutex<Streams>,
    session: Mutex<Session>,
    /// Cancel flags of pushes (queued or running), by stream id and by URL.
    cancels: Mutex<HashMap<u32, (Url, Arc<AtomicBool>)>>,
    /// URLs cancelled before any push of them was planned (a cancel can overtake the request
    /// task that plans them); bounded, oldest first out.
    cancelled_urls: Mutex<std::collections::VecDeque<Url>>,
    base: Url,
    host: Option<String>,
    client: Option<String>,
    user_agent: Option<HeaderValue>,
}

impl Conn {
    /// Queues a message; false if the socket is gone or stalled.
    async fn send(&self, m: &DashMessage) -> bool {
        let bytes = match m.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("ws encode: {e}");
                return false;
            }
        };
        self.gw
            .metrics()
            .ws_messages
            .with_label_values(&["out", m.body.code().label()])
            .inc();
        match self
            .out
            .send_timeout(Out::Msg(bytes), self.gw.push_settings().ws_stall)
            .await
        {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.stalled.notify_one();
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }

    /// End of stream on a stream this request owns (it is closed in the stream table).
    async fn end(
        &self,
        id: StreamId,
        reason: EndReason,
        status: Option<u16>,
        detail: Option<String>,
    ) {
        self.end_message(id, reason, status, detail).await;
        self.streams().close(id);
    }

    /// End of stream answering a message that does not own `id` (a reused or bad id): the
    /// stream table is left alone, so a running request keeps its slot.
    async fn end_message(
        &self,
        id: StreamId,
        reason: EndReason,
        status: Option<u16>,
        detail: Option<String>,
    ) {
        let m = DashMessage {
            stream_id: id,
            end: true,
            body: dashpush_proto::ws::message::Body::EndOfStream(EndOfStream {
                reason,
                status,
                detail: detail.map(|d| d.chars().take(limits::MAX_WS_DETAIL_LEN).collect()),
            }),
        };
        self.send(&m).await;
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn plan<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        f(&mut self.session.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn cancels(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Url, Arc<AtomicBool>)>> {
        self.cancels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn run<S>(
    gw: &Arc<Gateway>,
    socket: WebSocketStream<S>,
    base: Url,
    host: Option<String>,
    client: Option<String>,
    user_agent: Option<HeaderValue>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Out>(QUEUE);
    let conn = Arc::new(Conn {
        gw: Arc::clone(gw),
        out: tx.clone(),
        stalled: Notify::new(),
        streams: Mutex::new(Streams::default()),
        session: Mutex::new(Session::new(gw.push_settings().plan.clone())),
        cancels: Mutex::new(HashMap::new()),
        cancelled_urls: Mutex::new(std::collections::VecDeque::new()),
        base,
        host,
        client,
        user_agent,
    });
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let r = match out {
                Out::Msg(b) => sink.send(WsMessage::Binary(b)).await,
                Out::Ping => sink.send(WsMessage::Ping(Bytes::new())).await,
                Out::Close(code, why) => {
                    let _ = sink
                        .send(WsMessage::Close(Some(CloseFrame {
                            code: code.into(),
                            reason: why.into(),
                        })))
                        .await;
                    break;
                }
            };
            if r.is_err() {
                break;
            }
        }
    });
    let every = gw.push_settings().ws_ping;
    let mut ping = tokio::time::interval(every);
    ping.tick().await;
    let mut last_pong = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let close = loop {
        tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(WsMessage::Binary(b))) => {
                    if let Some(code) = on_binary(&conn, b, &mut tasks).await {
                        break Some(code);
                    }
                }
                Some(Ok(WsMessage::Text(_))) => break Some((close_code::UNSUPPORTED_DATA, "binary messages only")),
                Some(Ok(WsMessage::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Frame(_))) => {}
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Err(e)) => {
                    tracing::debug!("ws read: {e}");
                    let code = match e {
                        tokio_tungstenite::tungstenite::Error::Capacity(_) => close_code::MESSAGE_TOO_BIG,
                        _ => close_code::PROTOCOL_ERROR,
                    };
                    break Some((code, "unreadable message"));
                }
            },
            () = conn.stalled.notified() => break Some((close_code::POLICY_VIOLATION, "client stopped reading")),
            _ = ping.tick() => {
                if last_pong.elapsed() > every * 2 + every / 2 {
                    break Some((close_code::POLICY_VIOLATION, "no pong"));
                }
                let _ = tx.try_send(Out::Ping);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    tasks.abort_all();
    if let Some((code, why)) = close {
        gw.metrics()
            .ws_closes
            .with_label_values(&[close_label(code)])
            .inc();
        // Best effort: a client that stopped reading will not see it.
        let _ = tx.try_send(Out::Close(code, why));
    }
    drop(tx);
    drop(conn);
    // A client that stopped reading may never take the close frame: give up on it.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

fn close_label(code: u16) -> &'static str {
    match code {
        close_code::PROTOCOL_ERROR => "1002",
        close_code::UNSUPPORTED_DATA => "1003",
        close_code::POLICY_VIOLATION => "1008",
        close_code::MESSAGE_TOO_BIG => "1009",
        _ => "other",
    }
}

/// Handles one binary message; `Some` closes the socket with that code.
async fn on_binary(
    conn: &Arc<Conn>,
    b: Bytes,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Option<(u16, &'static str)> {
    let frame = match Frame::decode(b, limits::MAX_WS_MESSAGE) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("ws frame: {e}");
            return Some((e.close_code(), "unreadable frame"));
        }
    };
    let code_label = MessageCode::from_u8(frame.code).map_or("unknown", |c| c.label());
    conn.gw
        .metrics()
        .ws_messages
        .with_label_values(&["in", code_label])
        .inc();
    let msg = match DashMessage::from_frame(frame) {
        Ok(m) => m,
        Err(e) => {
            conn.end(
                e.stream_id,
                EndReason::Error,
                Some(e.status()),
                Some(e.to_string()),
            )
            .await;
            return None;
        }
    };
    use dashpush_proto::ws::message::Body as B;
    let id = msg.stream_id;
    let (url, directive, range, mpd) = match msg.body {
        B::MpdRequest(r) => (r.url, r.push_directive, None, true),
        B::SegmentRequest(r) => (r.url, r.push_directive, r.range, false),
        B::SegmentCancel(c) => {
            cancel(conn, &c);
            return None;
        }
        other => {
            let detail = format!("{} is a server-to-client message", other.code().label());
            conn.end(id, EndReason::Error, Some(400), Some(detail))
                .await;
            return None;
        }
    };
    let opened = conn.streams().open_client(id);
    if let Err(e) = opened {
        conn.end_message(id, EndReason::Error, Some(e.status()), Some(e.to_string()))
            .await;
        return None;
    }
    let conn = Arc::clone(conn);
    tasks.spawn(async move {
        request(&conn, id, &url, directive.as_deref(), range, mpd).await;
    });
    None
}

/// Segment cancel (§8.4.6): flags the named pushes; unknown or finished ones are ignored.
fn cancel(conn: &Conn, c: &SegmentCancel) {
    let urls: Vec<Url> = c
        .urls
        .iter()
        .filter_map(|u| conn.base.join(u).ok())
        .collect();
    let table = conn.cancels();
    let mut hit = Vec::new();
    for (id, (url, flag)) in table.iter() {
        if c.streams.iter().any(|s| s.get() == *id) || urls.contains(url) {
            flag.store(true, Ordering::Relaxed);
            hit.push(url.clone());
        }
    }
    let mut pending = conn
        .cancelled_urls
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for u in urls.into_iter().filter(|u| !hit.contains(u)) {
        if pending.len() >= limits::MAX_WS_CANCEL_ENTRIES {
            pending.pop_front();
        }
        pending.push_back(u);
    }
}

impl Conn {
    /// True (once) if `url` was cancelled before its push was planned.
    fn cancelled_early(&self, url: &Url) -> bool {
        let mut pending = self
            .cancelled_urls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match pending.iter().position(|u| u == url) {
            Some(i) => {
                pending.remove(i);
                true
            }
            None => false,
        }
    }
}

/// One request and the pushes it starts.
async fn request(
    conn: &Arc<Conn>,
    id: StreamId,
    raw_url: &str,
    directive: Option<&str>,
    range: Option<ByteRange>,
    mpd: bool,
) {
    let gw = &conn.gw;
    let url = match conn.base.join(raw_url) {
        Ok(u) if u.origin() == conn.base.origin() => u,
        Ok(_) => {
            return conn
                .end(
                    id,
                    EndReason::Error,
                    Some(400),
                    Some("url on another origin".into()),
                )
                .await;
        }
        Err(e) => {
            return conn
                .end(
                    id,
                    EndReason::Error,
                    Some(400),
                    Some(format!("bad url: {e}")),
                )
                .await;
        }
    };
    let path = path_of(&url);
    let Some(route) = gw.route_of(conn.host.as_deref(), &path) else {
        return conn
            .end(
                id,
                EndReason::Error,
                Some(404),
                Some("no origin for this path".into()),
            )
            .await;
    };
    let input = match directive {
        None => DirectiveInput::Absent,
        Some(d) => PushDirective::parse(d).into(),
    };
    let requested = match &input {
        DirectiveInput::Parsed(d) => Some(d.push_type().label()),
        DirectiveInput::Malformed(_) => Some("malformed"),
        DirectiveInput::Absent => None,
    };
    let req = Req {
        method: Method::GET,
        path: path.clone(),
        headers: request_headers(conn, range),
        client: conn.client.clone(),
        host: conn.host.clone(),
    };
    // On an MPD request the plan needs that MPD: answer first and parse what is served.
    let mut answered = None;
    if is_mpd_path(&path) {
        let resp = gw.handle(&req).await;
        if let Some(parsing) = gw.note_served(route, &url, &resp) {
            let _ = parsing.await;
        }
        answered = Some(resp);
    }
    let plan = conn.plan(|s| {
        s.on_request(
            &Request {
                url: &url,
                directive: input,
                push_allowed: true,
            },
            &gw.manifests()
                .route(&gw.origins().origin_key(route).unwrap_or_default()),
            Some(Utc::now()),
        )
    });
    let m = &gw.metrics().push;
    let applied = match &plan.outcome {
        Outcome::Accepted(t) => t.label(),
        _ => "push-none",
    };
    if let Some(requested) = requested {
        let result = match &plan.outcome {
            Outcome::Rejected(r) => r.label(),
            _ => "accepted",
        };
        m.directives
            .with_label_values(&[WS, requested, result])
            .inc();
    }
    for u in &plan.cancel {
        for (u2, flag) in conn.cancels().values() {
            if u2 == u {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }
    // Stream ids and prefetches for every planned push, so a cancel by URL reaches queued ones.
    let mut jobs = Vec::new();
    for p in plan.pushes {
        if gw.route_of(p.url.host_str(), p.url.path()) != Some(route) {
            // Not on this request's origin route: not pushed, and the planner is told.
            conn.plan(|s| s.on_reset(&p.url));
            continue;
        }
        let opened = conn.streams().open_server();
        let Ok(push_id) = opened else {
            m.dropped.with_label_values(&[WS, "promise_refused"]).inc();
            conn.plan(|s| s.on_reset(&p.url));
            continue;
        };
        // Registered and checked against early cancels under the cancel table's lock, which
        // `cancel` also holds while it records an early cancel: no cancel falls in between.
        let flag = {
            let mut table = conn.cancels();
            let flag = Arc::new(AtomicBool::new(conn.cancelled_early(&p.url)));
            table.insert(push_id.get(), (p.url.clone(), Arc::clone(&flag)));
            flag
        };
        m.promises.with_label_values(&[WS, applied]).inc();
        let h = gw.prefetch_for(route, &p);
        jobs.push((p, push_id, flag, h));
    }
    let _cycle = crate::push::LiveCycle::new(
        gw,
        &jobs.iter().map(|(p, ..)| p.clone()).collect::<Vec<_>>(),
    );
    let resp = match answered {
        Some(r) => r,
        None => gw.handle(&req).await,
    };
    let status = resp.status;
    if status >= 400 {
        // An error answer is End of stream `error` with the status (spec §8.4); the pushes
        // planned on it are dropped.
        m.dropped
            .with_label_values(&[WS, "parent_error"])
            .inc_by(jobs.len() as u64);
        drop_jobs(conn, jobs);
        let detail = match &resp.body {
            Body::Full(b) => String::from_utf8_lossy(b).trim().to_owned(),
            Body::Stream(_) => String::new(),
        };
        return conn
            .end(
                id,
                EndReason::Error,
                Some(status),
                Some(detail).filter(|d| !d.is_empty()),
            )
            .await;
    }
    let content_type = resp
        .headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let first = Received {
        url: path.clone(),
        status,
        content_type,
        content_length: resp.content_length.map(|l| l as u64),
        push_ack: plan.ack.as_ref().map(ToString::to_string),
        pushed: false,
        parent: None,
        payload: Bytes::new(),
    };
    let never = AtomicBool::new(false);
    if send_resource(conn, id, first, resp.body, mpd, &never)
        .await
        .is_err()
    {
        // The origin broke off (or the socket went away): the planned pushes are dropped
        // and the request ends with an error, so no stream id or planner slot is left behind.
        drop_jobs(conn, jobs);
        return conn
            .end(
                id,
                EndReason::Error,
                Some(502),
                Some("origin broke off".into()),
            )
            .await;
    }
    if status == 200 && !mpd {
        gw.prefetch_following(route, &url);
    }
    let mut outstanding = crate::push::Outstanding::new(&m.reset, WS, applied, jobs.len());
    for (p, push_id, flag, h) in jobs {
        send_push(conn, id, applied, p, push_id, &flag, h).await;
        conn.cancels().remove(&push_id.get());
        outstanding.done();
    }
    conn.end(id, EndReason::Complete, None, None).await;
}

/// The request headers a socket request is forwarded with: the upgrade's user agent, and the
/// message's byte range.
fn request_headers(conn: &Conn, range: Option<ByteRange>) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(ua) = &conn.user_agent {
        headers.push((http::header::USER_AGENT, ua.clone()));
    }
    if let Some(r) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes={r}"))
    {
        headers.push((http::header::RANGE, v));
    }
    headers
}

/// Drops planned pushes that will not be sent: their prefetches, planner slots, cancel flags
/// and stream ids.
fn drop_jobs(
    conn: &Conn,
    jobs: Vec<(
        dashpush_plan::Push,
        StreamId,
        Arc<AtomicBool>,
        crate::push::Prefetch,
    )>,
) {
    for (p, push_id, _, h) in jobs {
        h.abort();
        conn.plan(|s| s.on_reset(&p.url));
        conn.cancels().remove(&push_id.get());
        conn.streams().close(push_id);
    }
}

/// A body cut into pieces of at most [`PIECE`] bytes.
struct Pieces {
    body: Body,
    rest: Bytes,
}

impl Pieces {
    /// The next piece: `Ok(None)` at the end, `Err(())` if the origin broke off.
    async fn next(&mut self) -> Result<Option<Bytes>, ()> {
        if self.rest.is_empty() {
            self.rest = match &mut self.body {
                Body::Full(b) => std::mem::take(b),
                Body::Stream(r) => match r.chunk().await {
                    None => Bytes::new(),
                    Some(Ok(c)) => c,
                    Some(Err(_)) => return Err(()),
                },
            };
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let n = self.rest.len().min(PIECE);
        Ok(Some(self.rest.split_to(n)))
    }
}

/// Sends a resource as Received messages on `id`: the first carries the head fields and the
/// first piece, each later one a piece of at most [`PIECE`] bytes, END on the last (sent one
/// step late so the last can carry it). `Err(bytes sent)` if it was cancelled, the origin
/// broke off or the socket went away.
async fn send_resource(
    conn: &Conn,
    id: StreamId,
    head: Received,
    body: Body,
    mpd: bool,
    cancel: &AtomicBool,
) -> Result<u64, u64> {
    use dashpush_proto::ws::message::Body as B;
    let wrap = |r: Received| {
        if mpd {
            B::MpdReceived(r)
        } else {
            B::SegmentReceived(r)
        }
    };
    let mut pieces = Pieces {
        body,
        rest: Bytes::new(),
    };
    let mut sent = 0u64;
    let mut pending = head;
    let mut filled = false;
    loop {
        let piece = pieces.next().await.map_err(|()| sent)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(sent);
        }
        let piece = match piece {
            Some(p) if !filled => {
                pending.payload = p;
                filled = true;
                continue;
            }
            other => other,
        };
        // Send the pending message; END when there is no next piece.
        let end = piece.is_none();
        let next = piece.map(|p| Received {
            url: pending.url.clone(),
            status: pending.status,
            content_type: pending.content_type.clone(),
            payload: p,
            ..Received::default()
        });
        let n = pending.payload.len() as u64;
        let msg = DashMessage {
            stream_id: id,
            end,
            body: wrap(std::mem::replace(&mut pending, next.unwrap_or_default())),
        };
        if !conn.send(&msg).await {
            return Err(sent);
        }
        sent += n;
        if end {
            return Ok(sent);
        }
    }
}

/// Sends one planned push on its own stream (spec §8.2.2), or ends that stream with the reason
/// it was not sent.
async fn send_push(
    conn: &Arc<Conn>,
    parent: StreamId,
    push_type: &'static str,
    p: dashpush_plan::Push,
    id: StreamId,
    cancel: &AtomicBool,
    prefetch: crate::push::Prefetch,
) {
    let gw = &conn.gw;
    let m = &gw.metrics().push;
    if cancel.load(Ordering::Relaxed) {
        if !prefetch.is_finished() {
            prefetch.abort();
        }
        m.reset.with_label_values(&[WS, push_type]).inc();
        conn.plan(|s| s.on_reset(&p.url));
        conn.end(
            id,
            EndReason::Cancelled,
            None,
            Some(p.url.path().to_owned()),
        )
        .await;
        return;
    }
    let Ok(Some(source)) = prefetch.await else {
        m.dropped.with_label_values(&[WS, "origin_error"]).inc();
        conn.plan(|s| s.on_reset(&p.url));
        conn.end(id, EndReason::Error, Some(502), None).await;
        return;
    };
    let (status, headers, body) = source.response(gw).await;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    };
    let length = header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .or(match &body {
            Body::Full(b) => Some(b.len() as u64),
            Body::Stream(_) => None,
        });
    // Only cacheable 200 responses are pushed (spec §6.2 safety rule 5).
    if status != 200
        || crate::cache::ttl_of(status, &headers, p.url.path(), gw.cache().ttls()).is_none()
    {
        m.dropped.with_label_values(&[WS, "origin_status"]).inc();
        conn.plan(|s| s.on_reset(&p.url));
        conn.end(id, EndReason::Error, Some(status), None).await;
        return;
    }
    if !conn.plan(|s| s.admit_bytes(&p.url, length.unwrap_or(0))) {
        m.dropped.with_label_values(&[WS, "byte_cap"]).inc();
        conn.plan(|s| s.on_reset(&p.url));
        conn.end(id, EndReason::Cancelled, None, Some("byte cap".into()))
            .await;
        return;
    }
    let head = Received {
        url: path_of(&p.url),
        status,
        content_type: header("content-type")
            .unwrap_or("application/octet-stream")
            .to_owned(),
        content_length: length,
        push_ack: None,
        pushed: true,
        parent: Some(parent),
        payload: Bytes::new(),
    };
    crate::push::observe_live(gw, &p, WS, "first_byte");
    match send_resource(conn, id, head, body, false, cancel).await {
        Ok(n) => {
            crate::push::observe_live(gw, &p, WS, "last_byte");
            m.completed.with_label_values(&[WS, push_type]).inc();
            m.claimed.with_label_values(&[WS, push_type]).inc();
            m.bytes.with_label_values(&[WS, push_type]).inc_by(n);
            conn.plan(|s| s.on_complete(&p.url));
            conn.streams().close(id);
        }
        Err(n) => {
            m.bytes.with_label_values(&[WS, push_type]).inc_by(n);
            conn.plan(|s| s.on_reset(&p.url));
            if cancel.load(Ordering::Relaxed) {
                m.reset.with_label_values(&[WS, push_type]).inc();
                m.wasted_bytes.with_label_values(&[WS, push_type]).inc_by(n);
                if let Some(total) = length {
                    m.saved_bytes
                        .with_label_values(&[WS, push_type])
                        .inc_by(total.saturating_sub(n));
                }
                conn.end(id, EndReason::Cancelled, None, None).await;
            } else {
                conn.end(
                    id,
                    EndReason::Error,
                    Some(502),
                    Some("origin broke off".into()),
                )
                .await;
            }
        }
    }
}
