//! The WebSocket sub-protocol of spec §8 (Annex E for the upgrade and fallback).
//!
//! An HTTP/1.1 `GET` with `Upgrade: websocket` on the traffic listeners (any path) is upgraded
//! only if the client offers the sub-protocol `2016.serverpush.dash.mpeg.org` (§8.5); otherwise
//! it gets a 400 naming it, and plain HTTP keeps working on the same URLs. On an open socket:
//!
//! - each MPD or Segment request (odd stream id, increasing) is answered on its stream with
//!   Received messages (pieces of at most [`conn::PIECE`] bytes, END on the last), then every push the
//!   planner decided goes out on its own even stream id (first message `pushed`/`parent`), one
//!   after the other, then End of stream `complete` on the request's stream (Annex C);
//! - a Segment cancel stops the named pushes (by stream id or URL) at once, queued or in
//!   progress, with End of stream `cancelled` on each;
//! - a bad message gets End of stream `error` with a status on its stream and the socket stays
//!   open; an unreadable frame or a text message closes it (1002/1009, 1003);
//! - the socket's send queue is bounded ([`conn::QUEUE`] messages of at most [`conn::PIECE`] bytes): when
//!   the client stops reading, senders wait (pushes pause) and after [`crate::settings::WS_STALL`] (configurable)
//!   the socket is closed with 1008;
//! - the server pings every [`crate::settings::WS_PING_EVERY`] (configurable) and closes a socket that answered
//!   none of the last two pings.
//!
//! Each request runs the same push cycle as HTTP/2 (`delivery`), through the WebSocket
//! transport in `transport.rs` (label `transport="ws"`); `socket.rs` is the read loop and
//! `conn.rs` the socket's shared state.

mod conn;
mod socket;
mod transport;

use std::sync::Arc;

use bytes::Bytes;
use dashpush_proto::limits;
use dashpush_proto::ws::SUBPROTOCOL;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use self::socket::run;
use crate::gateway::Gateway;
use crate::target::client_url;
use url::Url;

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

/// A short refusal of an upgrade; a 426 names the version this server speaks (RFC 6455 §4.4).
async fn write_short(
    session: &mut HttpSession,
    status: u16,
    text: &'static str,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(4))?;
    if status == 426 {
        h.insert_header("sec-websocket-version", "13")?;
    }
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
