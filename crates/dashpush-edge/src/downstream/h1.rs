//! HTTP/1.1 downstream on pingora's server session: keep-alive loop, one request at a time.

use std::sync::Arc;

use bytes::BytesMut;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::protocols::http::v1::server::HttpSession;
use tokio::io::AsyncRead;

use crate::access::Served;
use crate::delivery::cycle::CLIENT_CLOSED;
use crate::drain::Drain;
use crate::gateway::{Body, Req, Resp};
use crate::guard::{Admitted, Closed};
use crate::settings::Limits;

/// The buffer a kept-alive connection's next request head is read into, taken for each read
/// (pingora's own first size).
const HEAD_BUFFER: usize = 4096;

/// Something that answers requests (the gateway, or the admin routes).
#[async_trait::async_trait]
pub(crate) trait Handler: Send + Sync + 'static {
    async fn handle(&self, req: &Req) -> Resp;
    /// Counts a finished request.
    fn record(&self, _protocol: &'static str, _status: u16) {}
    /// Counts a connection the gateway ended (a deadline).
    fn closed(&self, _why: Closed) {}
    /// Logs a request answered (the access log).
    fn served(&self, _scheme: &'static str, _s: &Served<'_>) {}
    /// Takes over a WebSocket upgrade request; the default refuses it.
    async fn websocket(
        self: &Arc<Self>,
        mut session: Box<HttpSession>,
        _scheme: &'static str,
        _client: Option<String>,
    ) {
        let resp = crate::gateway::short(400, "no WebSocket endpoint here\n");
        let mut resp = resp;
        let _ = write(&mut session, &mut resp, &mut 0).await;
    }
    /// Runs before a response is written (the gateway remembers an MPD it carries).
    async fn before_write(
        self: &Arc<Self>,
        _scheme: &'static str,
        _host: Option<&str>,
        _path: &str,
        _resp: &Resp,
    ) {
    }
    /// Runs after a response was sent (the gateway prefetches what follows a segment).
    fn after_response(
        self: &Arc<Self>,
        _scheme: &'static str,
        _host: Option<&str>,
        _path: &str,
        _status: u16,
    ) {
    }
}

/// Serves HTTP/1.1 requests on `stream` until the client, a deadline (`limits`) or a shutdown
/// ends it. The whole request head must arrive within `limits.header` of its first bytes; a
/// keep-alive connection must start its next request within `limits.idle`; a response write
/// that makes no progress for `limits.send` ends the connection. Between requests the
/// connection is idle (`conn`): at the connection cap it may be closed to make room.
///
/// A head that came whole in one read and asks for nothing but an answer is answered by the
/// plain exchange ([`super::h1plain`]); any other goes to pingora's session with the bytes
/// read so far.
pub(crate) async fn serve<H: Handler>(
    handler: &Arc<H>,
    stream: Stream,
    limits: Limits,
    drain: &Arc<Drain>,
    conn: &Admitted,
    tls: bool,
) {
    let scheme = if tls { "https" } else { "http" };
    let client = super::client_ip(&stream);
    // A head and its body leave in one write, without a buffer held per connection.
    let mut stream = super::coalesce::Coalesce::wrap(stream);
    // In cleartext the first request's bytes have arrived (the protocol was told by them);
    // after a TLS handshake, and on a kept-alive connection, the connection waits (idle) for
    // its next request's first bytes.
    let mut arrived = !tls;
    loop {
        let bytes = if arrived {
            match tokio::time::timeout(limits.header, next_bytes(&mut stream)).await {
                Ok(Ok(bytes)) if !bytes.is_empty() => bytes,
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!("h1 read: {e}");
                    return;
                }
                Err(_) => {
                    handler.closed(Closed::HeaderTimeout);
                    return;
                }
            }
        } else {
            // A kept-alive connection is idle until its next request's bytes come; they are
            // read here (TLS cannot be peeked).
            let _idle = conn.idle();
            let next = tokio::select! {
                next = tokio::time::timeout(limits.idle, next_bytes(&mut stream)) => next,
                () = conn.evicted() => {
                    handler.closed(Closed::Evicted);
                    return;
                }
            };
            match next {
                Ok(Ok(bytes)) if !bytes.is_empty() => bytes,
                // The client closed between requests.
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!("h1 read between requests: {e}");
                    return;
                }
                Err(_) => {
                    handler.closed(Closed::Idle);
                    return;
                }
            }
        };
        arrived = false;
        // Each exchange is boxed: an idle connection holds only this loop's small state, not
        // the largest state of a request in progress.
        match super::h1plain::parse(bytes) {
            Ok(plain) => {
                let exchange = Box::pin(plain_exchange(
                    handler,
                    &mut stream,
                    plain,
                    limits,
                    drain,
                    scheme,
                    &client,
                ));
                if !exchange.await {
                    return;
                }
            }
            Err((why, bytes)) => {
                tracing::trace!(?why, "h1 head read by pingora's session");
                let exchange = Box::pin(exchange(
                    handler, stream, bytes, limits, drain, scheme, &client,
                ));
                stream = match exchange.await {
                    Some(s) => s,
                    None => return,
                };
            }
        }
    }
}

/// What a kept-alive connection receives next (empty: the client closed). A head buffer is
/// taken only for a read and given back when nothing has come, so an idle connection holds
/// none, and a request's head arrives in one read (a one-byte read first cost a second
/// system call per request).
async fn next_bytes<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<BytesMut> {
    std::future::poll_fn(|cx| {
        let mut buf = BytesMut::with_capacity(HEAD_BUFFER);
        std::task::ready!(tokio_util::io::poll_read_buf(
            std::pin::Pin::new(&mut *stream),
            cx,
            &mut buf
        ))?;
        std::task::Poll::Ready(Ok(buf))
    })
    .await
}

/// One plain request ([`super::h1plain`]) and its answer, written here; whether the
/// connection stays open for another.
async fn plain_exchange<H: Handler>(
    handler: &Arc<H>,
    stream: &mut Stream,
    plain: super::h1plain::Plain,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> bool {
    let _inflight = drain.begin();
    let mut out = Out::Plain {
        head_only: plain.head_only(),
        keep_alive: !plain.close,
        stream,
    };
    let req = Req {
        method: plain.method,
        path: plain.path,
        headers: plain.headers,
        client: client.clone(),
        host: plain.host,
    };
    respond(handler, req, &mut out, limits, drain, scheme, client).await && out.keeps_alive()
}

/// One request read by pingora's session from `stream` (its first bytes in `prefix`) and its
/// answer; the stream back if the connection stays open for another.
async fn exchange<H: Handler>(
    handler: &Arc<H>,
    stream: Stream,
    prefix: BytesMut,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> Option<Stream> {
    // Boxed: the session is large, and the connection future would otherwise move it.
    let mut session = Box::new(HttpSession::new(stream));
    session.set_pipelined_prefix(prefix);
    session.set_write_timeout(Some(limits.send));
    match tokio::time::timeout(limits.header, session.read_request()).await {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!("h1 read: {e}");
            return None;
        }
        Err(_) => {
            handler.closed(Closed::HeaderTimeout);
            return None;
        }
    }
    let _inflight = drain.begin();
    if crate::downstream::ws::is_upgrade(&session) {
        handler.websocket(session, scheme, client.clone()).await;
        return None;
    }
    let head = session.req_header();
    let req = Req {
        method: head.method.clone(),
        path: head
            .uri
            .path_and_query()
            .map_or_else(|| head.uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        client: client.clone(),
        host: head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| head.uri.host().map(str::to_owned)),
    };
    let mut out = Out::Session(&mut session);
    if !respond(handler, req, &mut out, limits, drain, scheme, client).await {
        return None;
    }
    match session.reuse().await {
        Ok(Some(reusable)) => Some(reusable.into_parts().0),
        _ => None,
    }
}

/// Where an answer is written: pingora's session, which read its request, or the stream of a
/// plain request.
enum Out<'a> {
    Session(&'a mut HttpSession),
    Plain {
        stream: &'a mut Stream,
        /// The request was `HEAD`: no body.
        head_only: bool,
        /// The connection stays open after this answer.
        keep_alive: bool,
    },
}

/// Why an answer was not written whole.
#[derive(Debug, thiserror::Error)]
enum WriteFailed {
    /// A write made no progress for the send deadline.
    #[error("no progress within the send deadline")]
    TimedOut,
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    /// The origin broke off a streamed body.
    #[error("the origin broke off: {0}")]
    Origin(#[from] crate::origin::response::UpstreamError),
    #[error(transparent)]
    Status(#[from] super::h1plain::BadStatus),
    #[error("{0}")]
    Session(Box<pingora::Error>),
}

impl From<Box<pingora::Error>> for WriteFailed {
    fn from(e: Box<pingora::Error>) -> Self {
        if e.etype() == &pingora::ErrorType::WriteTimedout {
            Self::TimedOut
        } else {
            Self::Session(e)
        }
    }
}

impl Out<'_> {
    /// The connection stays open after this answer.
    fn keeps_alive(&self) -> bool {
        match self {
            Out::Session(_) => true,
            Out::Plain { keep_alive, .. } => *keep_alive,
        }
    }

    /// Closes the connection after this answer.
    fn close_after(&mut self) {
        match self {
            Out::Session(s) => s.set_server_keepalive(None),
            Out::Plain { keep_alive, .. } => *keep_alive = false,
        }
    }

    /// Runs the handler while watching the connection: a client that closes it before the
    /// answer is ready cancels the work at once (`None`), as an HTTP/2 reset does. Bytes that
    /// arrive meanwhile (a pipelined request, which is not supported) make the connection
    /// close after this answer.
    async fn answer_unless_gone<H: Handler>(&mut self, handler: &H, req: &Req) -> Option<Resp> {
        let handling = handler.handle(req);
        tokio::pin!(handling);
        let gone = match self {
            Out::Session(session) => tokio::select! {
                resp = &mut handling => return Some(resp),
                watched = session.read_body_or_idle(true) => matches!(
                    watched,
                    Err(e) if matches!(
                        e.etype(),
                        pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError
                    )
                ),
            },
            Out::Plain { stream, .. } => {
                let mut byte = [0u8; 1];
                tokio::select! {
                    biased;
                    resp = &mut handling => return Some(resp),
                    read = tokio::io::AsyncReadExt::read(&mut **stream, &mut byte) => {
                        !matches!(read, Ok(1))
                    }
                }
            }
        };
        if gone {
            tracing::debug!("h1 client left before its answer");
            return None;
        }
        self.close_after();
        Some(handling.await)
    }

    /// Writes the answer; `sent` counts the body bytes written.
    async fn write(
        &mut self,
        resp: &mut Resp,
        sent: &mut u64,
        deadline: std::time::Duration,
    ) -> Result<(), WriteFailed> {
        match self {
            Out::Session(session) => Ok(write(session, resp, sent).await?),
            Out::Plain {
                stream,
                head_only,
                keep_alive,
            } => write_plain(stream, resp, *head_only, *keep_alive, sent, deadline).await,
        }
    }
}

/// Answers `req` on `out` and accounts for it (metrics, access log, what the answer teaches);
/// whether the connection may carry another request.
async fn respond<H: Handler>(
    handler: &Arc<H>,
    req: Req,
    out: &mut Out<'_>,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> bool {
    let (host, path) = (&req.host, &req.path);
    let started = std::time::Instant::now();
    let log = |status: u16, bytes: u64, cache: Option<&str>| {
        handler.served(
            scheme,
            &Served {
                protocol: "h1",
                client: client.as_deref(),
                method: req.method.as_str(),
                authority: host.as_deref(),
                path: path.as_str(),
                status,
                bytes,
                started,
                cache,
            },
        );
    };
    let Some(mut resp) = out.answer_unless_gone(handler.as_ref(), &req).await else {
        handler.record("h1", CLIENT_CLOSED);
        log(CLIENT_CLOSED, 0, None);
        return false;
    };
    handler
        .before_write(scheme, host.as_deref(), path, &resp)
        .await;
    if drain.is_draining() {
        out.close_after();
    }
    let mut bytes = 0u64;
    let written = out.write(&mut resp, &mut bytes, limits.send).await;
    let cache = crate::access::cache_of(&resp.headers);
    if let Err(e) = written {
        tracing::debug!("h1 write: {e}");
        if matches!(e, WriteFailed::TimedOut) {
            handler.closed(Closed::SendTimeout);
        }
        log(resp.status, bytes, cache);
        return false;
    }
    handler.record("h1", resp.status);
    log(resp.status, bytes, cache);
    handler.after_response(scheme, host.as_deref(), path, resp.status);
    true
}

/// Writes a plain request's answer on `stream` ([`super::h1plain`] frames it); each write
/// must make progress within `deadline`.
async fn write_plain(
    stream: &mut Stream,
    resp: &mut Resp,
    head_only: bool,
    keep_alive: bool,
    sent: &mut u64,
    deadline: std::time::Duration,
) -> Result<(), WriteFailed> {
    use super::h1plain::{CHUNK_END, Framing, LAST_CHUNK, chunk_start, write_head};
    let mut head = Vec::with_capacity(PLAIN_HEAD);
    let framing = write_head(resp, head_only, keep_alive, &mut head)?;
    // The head is held (coalesce) and leaves with the body's first bytes in one write.
    send(stream, &head, deadline).await?;
    match (framing, &mut resp.body) {
        (Framing::None, _) => {}
        (_, Body::Full(b)) => {
            send(stream, b, deadline).await?;
            *sent += b.len() as u64;
        }
        (_, Body::Stream(reader)) => {
            while let Some(chunk) = reader.chunk().await {
                // The origin broke off: the connection ends without the last chunk, so the
                // client sees a truncated response, never a short "complete" one.
                let c = chunk?;
                if c.is_empty() {
                    continue;
                }
                send(stream, &chunk_start(c.len()), deadline).await?;
                send(stream, &c, deadline).await?;
                send(stream, CHUNK_END, deadline).await?;
                // Each chunk leaves as it comes (a live segment is read as it is made).
                flush(stream, deadline).await?;
                *sent += c.len() as u64;
            }
            send(stream, LAST_CHUNK, deadline).await?;
        }
    }
    flush(stream, deadline).await
}

/// A plain answer's head is built in a buffer of this size (most heads are 200–300 bytes).
const PLAIN_HEAD: usize = 512;

async fn send(
    stream: &mut Stream,
    bytes: &[u8],
    deadline: std::time::Duration,
) -> Result<(), WriteFailed> {
    within(deadline, tokio::io::AsyncWriteExt::write_all(stream, bytes)).await
}

async fn flush(stream: &mut Stream, deadline: std::time::Duration) -> Result<(), WriteFailed> {
    within(deadline, tokio::io::AsyncWriteExt::flush(stream)).await
}

/// `io`, unless it makes no progress for `deadline`. The timer is set only when `io` does not
/// finish at once: most writes of a cached answer do (the head is held, the body taken whole),
/// and a timer per write read the clock twice.
async fn within(
    deadline: std::time::Duration,
    io: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), WriteFailed> {
    use std::task::Poll;
    let mut io = std::pin::pin!(io);
    let at_once = std::future::poll_fn(|cx| {
        Poll::Ready(match io.as_mut().poll(cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    })
    .await;
    match at_once {
        Some(r) => Ok(r?),
        None => match tokio::time::timeout(deadline, io).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(WriteFailed::TimedOut),
        },
    }
}

/// The response head of `resp` for pingora's session, built as `http` parts and handed over
/// whole ([`super::head_parts`]); without a case map, as pingora's `build_no_case`: no second
/// copy of every name is kept per response.
fn response_head(resp: &Resp) -> pingora::Result<ResponseHeader> {
    // A 304 carries no body and no Content-Length of its own (RFC 9110 §8.6).
    // A streamed body goes out chunked even when its length is known: pingora flushes each
    // chunk then, where a Content-Length body would sit in the write buffer until it fills.
    let length = match resp.body {
        Body::Stream(_) => None,
        Body::Full(_) => resp.content_length,
    };
    let framing = (resp.status != 304).then(|| match length {
        Some(len) => (http::header::CONTENT_LENGTH, HeaderValue::from(len)),
        None => (
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        ),
    });
    // Room for the two pingora adds (`Date`, `Connection`).
    super::head_parts(resp.status, resp.headers.iter(), framing, 2)
        .map(ResponseHeader::from)
        .ok_or_else(|| {
            pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "invalid status or too many response headers",
            )
        })
}

/// Writes the answer; `sent` counts the body bytes written.
async fn write(session: &mut HttpSession, resp: &mut Resp, sent: &mut u64) -> pingora::Result<()> {
    session
        .write_response_header(Box::new(response_head(resp)?))
        .await?;
    match &mut resp.body {
        Body::Full(b) if b.is_empty() => {}
        Body::Full(b) => {
            session.write_body(b).await?;
            *sent += b.len() as u64;
        }
        Body::Stream(reader) => {
            while let Some(chunk) = reader.chunk().await {
                match chunk {
                    Ok(c) => {
                        session.write_body(&c).await?;
                        *sent += c.len() as u64;
                    }
                    // The origin broke off: end the connection without finishing the body,
                    // so the client sees a truncated response, never a short "complete" one.
                    Err(e) => {
                        return pingora::Error::e_explain(
                            pingora::ErrorType::ReadError,
                            e.to_string(),
                        );
                    }
                }
            }
        }
    }
    session.finish_body().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderName;

    fn resp(status: u16, body: &'static [u8]) -> Resp {
        Resp {
            status,
            headers: vec![
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("video/mp4"),
                ),
                (
                    HeaderName::from_static("x-cache"),
                    HeaderValue::from_static("HIT"),
                ),
                (
                    HeaderName::from_static("link"),
                    HeaderValue::from_static("<a>"),
                ),
                (
                    HeaderName::from_static("link"),
                    HeaderValue::from_static("<b>"),
                ),
            ],
            body: Body::Full(Bytes::from_static(body)),
            content_length: Some(body.len()),
        }
    }

    #[test]
    fn the_head_carries_every_header_and_the_length() {
        let h = response_head(&resp(200, b"abcd")).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.headers["content-type"], "video/mp4");
        assert_eq!(h.headers["x-cache"], "HIT");
        let links: Vec<_> = h.headers.get_all("link").iter().collect();
        assert_eq!(links, ["<a>", "<b>"], "repeated fields stay, in order");
        assert_eq!(h.headers["content-length"], "4");
        assert!(h.headers.get("transfer-encoding").is_none());
        let mut wire = Vec::new();
        h.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap().to_ascii_lowercase();
        assert!(wire.contains("content-length: 4\r\n"), "{wire}");
    }

    #[test]
    fn a_304_has_no_length_of_its_own() {
        let h = response_head(&resp(304, b"")).unwrap();
        assert_eq!(h.status, 304);
        assert!(h.headers.get("content-length").is_none());
        assert!(h.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn a_bad_status_is_an_error() {
        assert!(response_head(&resp(1000, b"")).is_err());
    }
}
