//! HTTP/2 downstream (h2c prior knowledge, or `h2` by ALPN) with the `h2` crate on the raw
//! stream, every server limit set explicitly, bodies sent within the flow-control windows.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use pingora::protocols::Stream;

use crate::drain::Drain;
use crate::gateway::{Body, Req};
use crate::h1::Handler;

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

/// Serves one HTTP/2 connection.
pub(crate) async fn serve<H: Handler>(
    handler: &Arc<H>,
    stream: Stream,
    limits: H2Limits,
    drain: &Arc<Drain>,
) {
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
        .max_send_buffer_size(limits.max_send_buffer_size);
    let mut conn = match builder.handshake::<_, Bytes>(stream).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("h2 handshake: {e}");
            return;
        }
    };
    let mut draining = drain.watch();
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    let handler = handler.clone();
                    let inflight = drain.begin();
                    tokio::spawn(async move {
                        let _inflight = inflight;
                        let (parts, _body) = request.into_parts();
                        let req = Req {
                            method: parts.method,
                            path: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
                            headers: parts.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
                            client: None,
                            host: parts.uri.authority().map(|a| a.as_str().to_owned()),
                        };
                        let resp = handler.handle(req).await;
                        let status = resp.status;
                        if let Err(e) = send(respond, resp).await {
                            tracing::debug!("h2 send: {e}");
                        }
                        handler.record("h2", status);
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

async fn send(
    mut respond: SendResponse<Bytes>,
    resp: crate::gateway::Resp,
) -> Result<(), h2::Error> {
    let mut builder = http::Response::builder().status(resp.status);
    for (n, v) in &resp.headers {
        builder = builder.header(n, v);
    }
    if resp.status != 304
        && let Some(len) = resp.content_length
    {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    let head = match builder.body(()) {
        Ok(h) => h,
        Err(_) => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return Ok(());
        }
    };
    match resp.body {
        Body::Full(body) => {
            let mut stream = respond.send_response(head, body.is_empty())?;
            if !body.is_empty() {
                send_data(&mut stream, body, true).await?;
            }
        }
        Body::Stream(mut reader) => {
            let mut stream = respond.send_response(head, false)?;
            loop {
                match reader.chunk().await {
                    Some(Ok(chunk)) => send_data(&mut stream, chunk, false).await?,
                    Some(Err(_)) => {
                        // The origin broke off: the client must not take this as complete.
                        stream.send_reset(h2::Reason::INTERNAL_ERROR);
                        return Ok(());
                    }
                    None => {
                        stream.send_data(Bytes::new(), true)?;
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sends `body` within the stream's flow-control window, never buffering more than one
/// granted chunk; ends the stream after it if `end`.
pub(crate) async fn send_data(
    stream: &mut h2::SendStream<Bytes>,
    mut body: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    while !body.is_empty() {
        stream.reserve_capacity(body.len().min(CHUNK));
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        };
        if granted == 0 {
            continue;
        }
        let chunk = body.split_to(granted.min(body.len()));
        stream.send_data(chunk, end && body.is_empty())?;
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
