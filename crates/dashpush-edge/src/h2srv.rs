//! HTTP/2 downstream (h2c prior knowledge, or `h2` by ALPN) with the `h2` crate on the raw
//! stream, every server limit set explicitly, bodies sent within the flow-control windows.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use pingora::protocols::Stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use crate::drain::Drain;
use crate::gateway::{Body, Gateway, Req, Resp};
use crate::h1::Handler;
use crate::h2settings::PushSetting;
use crate::push::{H2Conn, serve_h2};

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
        }
    }
}

/// Largest DATA chunk handed to h2 at once.
const CHUNK: usize = 64 * 1024;

/// Serves one HTTP/2 connection (`tls`: whether it arrived on the TLS listener, for the
/// `https` scheme of pushed URLs).
pub(crate) async fn serve(
    handler: &Arc<Gateway>,
    stream: Stream,
    limits: H2Limits,
    drain: &Arc<Drain>,
    tls: bool,
) {
    let (stream, push_enabled) = PushSetting::new(stream);
    let push = Arc::new(H2Conn::new(
        push_enabled,
        if tls { "https" } else { "http" },
    ));
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_frame_size(limits.max_frame_size)
        .initial_window_size(limits.initial_window_size)
        .initial_connection_window_size(limits.connection_window_size)
        .max_concurrent_reset_streams(limits.max_concurrent_reset_streams)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(limits.max_local_error_reset_streams))
        .max_send_buffer_size(limits.max_send_buffer_size)
        // WebSocket over HTTP/2 (RFC 8441 extended CONNECT) for the sub-protocol.
        .enable_connect_protocol();
    let mut conn = match builder.handshake::<_, Bytes>(stream).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("h2 handshake: {e}");
            return;
        }
    };
    let mut draining = drain.watch();
    // Request tasks (and the pushes they send, live ones included) end with the connection:
    // the set aborts whatever is left when it is dropped.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    let handler = handler.clone();
                    let push = Arc::clone(&push);
                    let inflight = drain.begin();
                    tasks.spawn(async move {
                        let _inflight = inflight;
                        let (parts, body) = request.into_parts();
                        if crate::ws::is_extended_connect(&parts) {
                            crate::ws::h2_connect(&handler, parts, body, respond, push.scheme).await;
                            return;
                        }
                        // GET/HEAD bodies are not read: dropping the stream's receive side
                        // returns its window to the connection at once.
                        drop(body);
                        let req = Req {
                            method: parts.method,
                            path: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
                            headers: parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
                            client: None,
                            host: parts.uri.authority().map(|a| a.as_str().to_owned()),
                        };
                        match serve_h2(&handler, &push, req, respond).await {
                            Ok(status) => handler.record("h2", status),
                            Err(e) => tracing::debug!("h2 send: {e}"),
                        }
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!("h2 connection: {e}");
                    return;
                }
                None => return,
            },
            _ = until_draining(&mut draining) => {
                // GOAWAY, then drive the connection until in-flight streams are sent.
                conn.graceful_shutdown();
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
                return;
            }
        }
    }
}

/// The response head for `resp` (its `content-length` set when known), or `None` after
/// resetting the stream if the head cannot be built.
pub(crate) fn response_head(
    respond: &mut SendResponse<Bytes>,
    resp: Resp,
) -> Option<(http::Response<()>, Body)> {
    let mut builder = http::Response::builder().status(resp.status);
    for (n, v) in &resp.headers {
        builder = builder.header(n, v);
    }
    if resp.status != 304
        && let Some(len) = resp.content_length
    {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    match builder.body(()) {
        Ok(h) => Some((h, resp.body)),
        Err(_) => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// Sends a whole response.
pub(crate) async fn send(mut respond: SendResponse<Bytes>, resp: Resp) -> Result<(), h2::Error> {
    let Some((head, body)) = response_head(&mut respond, resp) else {
        return Ok(());
    };
    let end = matches!(&body, Body::Full(b) if b.is_empty());
    let mut stream = respond.send_response(head, end)?;
    if !end {
        send_body(&mut stream, body).await?;
    }
    Ok(())
}

/// Sends a body and ends the stream; resets it if the origin broke off.
pub(crate) async fn send_body(
    stream: &mut h2::SendStream<Bytes>,
    body: Body,
) -> Result<(), h2::Error> {
    let never = AtomicBool::new(false);
    match send_body_watching(stream, body, &never).await {
        Ok(_) => Ok(()),
        Err(_) => Ok(()),
    }
}

/// Sends a body within the flow-control windows and ends the stream. `Ok(bytes)` when all
/// was sent; `Err(bytes sent)` when the client reset the stream, `cancel` was set, or the
/// origin broke off (the stream is then reset, so the client never takes it as complete).
pub(crate) async fn send_body_watching(
    stream: &mut h2::SendStream<Bytes>,
    body: Body,
    cancel: &AtomicBool,
) -> Result<u64, u64> {
    let mut sent = 0u64;
    match body {
        Body::Full(b) => {
            sent_or_reset(stream, b, true, cancel, &mut sent).await?;
        }
        Body::Stream(mut reader) => loop {
            match reader.chunk().await {
                Some(Ok(chunk)) => sent_or_reset(stream, chunk, false, cancel, &mut sent).await?,
                Some(Err(_)) => {
                    stream.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Err(sent);
                }
                None => {
                    if stream.send_data(Bytes::new(), true).is_err() {
                        return Err(sent);
                    }
                    break;
                }
            }
        },
    }
    Ok(sent)
}

/// Sends `body` within the stream's flow-control window, one granted chunk at a time (never
/// buffering more than the window allows); ends the stream after it if `end`. Stops at once
/// when the client resets the stream or `cancel` is set.
async fn sent_or_reset(
    stream: &mut h2::SendStream<Bytes>,
    mut body: Bytes,
    end: bool,
    cancel: &AtomicBool,
    sent: &mut u64,
) -> Result<(), u64> {
    if body.is_empty() && end {
        return stream.send_data(body, true).map_err(|_| *sent);
    }
    while !body.is_empty() {
        if cancel.load(Ordering::Relaxed) {
            return Err(*sent);
        }
        stream.reserve_capacity(body.len().min(CHUNK));
        let granted = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            stream.poll_capacity(cx)
        })
        .await;
        let granted = match granted {
            Some(Ok(n)) => n,
            Some(Err(_)) | None => return Err(*sent),
        };
        if granted == 0 {
            continue;
        }
        let chunk = body.split_to(granted.min(body.len()));
        let n = chunk.len() as u64;
        stream
            .send_data(chunk, end && body.is_empty())
            .map_err(|_| *sent)?;
        *sent += n;
    }
    Ok(())
}

/// Resolves once draining has started (the watch's guard is dropped before returning, so the
/// future stays `Send`).
async fn until_draining(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let started = rx.wait_for(|d| *d).await.is_ok();
    if !started {
        // The sender is gone: nothing will ever drain this connection.
        std::future::pending::<()>().await;
    }
}
