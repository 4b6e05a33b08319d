//! An open socket: the read loop (messages, pings, the stall and close rules), Segment cancel,
//! and each request's task, which answers it through the push cycle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashpush_plan::DirectiveInput;
use dashpush_proto::PushDirective;
use dashpush_proto::limits;
use dashpush_proto::ws::{
    ByteRange, EndReason, Frame, Message as DashMessage, MessageCode, SegmentCancel, StreamId,
    close_code,
};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Method};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use url::Url;

use super::conn::{Conn, Out, PUSH_QUEUE, QUEUE};
use super::transport::WsPush;
use crate::delivery::cycle;
use crate::gateway::{Gateway, Req};
use crate::served::after_pull;
use crate::target::Target;

/// Runs an open socket until the client or the gateway closes it.
pub(crate) async fn run<S>(
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
    let (push_tx, mut push_rx) = mpsc::channel::<Out>(PUSH_QUEUE);
    let conn = Arc::new(Conn::new(
        gw,
        tx.clone(),
        push_tx,
        base,
        host,
        client,
        user_agent,
    ));
    let writer = tokio::spawn(async move {
        // Answers to requests (and pings, closes) go before pushes: a player's request never
        // waits behind a queue of pushes it may not need (spec §7 "Order": the parent is never
        // starved by its pushes).
        loop {
            let out = tokio::select! {
                biased;
                Some(out) = rx.recv() => out,
                Some(out) = push_rx.recv() => out,
                else => break,
            };
            let r = match out {
                // The budget share is given back once the message is written.
                Out::Msg(b, _share) => sink.send(WsMessage::Binary(b)).await,
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
        // An error for this message only: a running request on that id keeps its slot.
        Err(e) => {
            conn.end_message(
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
            conn.end_message(id, EndReason::Error, Some(400), Some(detail))
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

/// Segment cancel (§8.4.6): the client refuses the named pushes (by stream id or URL), queued
/// or in progress; a URL not promised yet is refused when it is. Unknown ids are ignored.
fn cancel(conn: &Conn, c: &SegmentCancel) {
    let by_id = c.streams.iter().filter_map(|s| conn.push_url(s.get()));
    let by_url = c.urls.iter().filter_map(|u| conn.base.join(u).ok());
    for url in by_id.chain(by_url) {
        conn.push.refuse(&url);
    }
}

/// One request and the pushes it starts: the push cycle on this socket.
async fn request(
    conn: &Arc<Conn>,
    id: StreamId,
    raw_url: &str,
    directive: Option<&str>,
    range: Option<ByteRange>,
    mpd: bool,
) {
    let gw = &conn.gw;
    let target = match conn.base.join(raw_url) {
        Ok(u) if u.origin() == conn.base.origin() => Target::of_url(&gw.origins(), u),
        Ok(_) => return refuse(conn, id, raw_url, 400, "url on another origin".into()).await,
        Err(e) => return refuse(conn, id, raw_url, 400, format!("bad url: {e}")).await,
    };
    let Some(target) = target else {
        return refuse(conn, id, raw_url, 404, "no origin for this path".into()).await;
    };
    let input = match directive {
        None => DirectiveInput::Absent,
        Some(d) => PushDirective::parse(d).into(),
    };
    let pull = input == DirectiveInput::Absent;
    let req = Req {
        method: Method::GET,
        path: target.path.clone(),
        headers: request_headers(conn, range),
        client: conn.client.clone(),
        host: conn.host.clone(),
    };
    let mut t = WsPush::new(conn, id, mpd, target.path.clone());
    let status = cycle::run(gw, &conn.push, &mut t, &req, &target, input).await;
    if pull && !mpd {
        let path = target.path.clone();
        after_pull(gw, status, &path, || Some(target));
    }
}

/// Ends a request that cannot be served with an error.
async fn refuse(conn: &Conn, id: StreamId, raw_url: &str, status: u16, detail: String) {
    conn.gw.log_served(
        conn.base.scheme(),
        &crate::access::Served {
            protocol: "ws",
            client: conn.client.as_deref(),
            method: "GET",
            authority: conn.host.as_deref(),
            path: raw_url,
            status,
            bytes: 0,
            started: std::time::Instant::now(),
            cache: None,
        },
    );
    conn.end(id, EndReason::Error, Some(status), Some(detail))
        .await;
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
