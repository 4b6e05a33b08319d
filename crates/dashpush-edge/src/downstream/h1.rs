//! HTTP/1.1 downstream: the keep-alive loop, one request at a time. A plain head is read and
//! answered here ([`super::h1plain`]); any other by pingora's server session. Either way the
//! answer is accounted in one place ([`respond`]).

use std::sync::Arc;

use bytes::BytesMut;
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

/// How long the short refusal of an upgrade nobody takes may take to send.
const REFUSAL_SEND: std::time::Duration = std::time::Duration::from_secs(10);

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
        let _ = write(&mut session, &mut resp, &mut 0, REFUSAL_SEND).await;
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
        // The whole head must be in within `limits.header` of its first bytes, whoever reads
        // the rest of it: unknown here for the first read, which starts the clock itself.
        let mut head_by = None;
        let read = if arrived {
            let by = tokio::time::Instant::now() + limits.header;
            head_by = Some(by);
            let read = tokio::time::timeout_at(by, next_bytes(&mut stream)).await;
            request_bytes(handler.as_ref(), read, Closed::HeaderTimeout)
        } else {
            // A kept-alive connection is idle until its next request's bytes come; they are
            // read here (TLS cannot be peeked).
            let _idle = conn.idle();
            let read = tokio::select! {
                next = tokio::time::timeout(limits.idle, next_bytes(&mut stream)) => next,
                () = conn.evicted() => {
                    handler.closed(Closed::Evicted);
                    return;
                }
            };
            request_bytes(handler.as_ref(), read, Closed::Idle)
        };
        let Some(bytes) = read else {
            return;
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
                match exchange.await {
                    After::KeepAlive => {}
                    After::Close => {
                        // Closed cleanly (a TLS close_notify, the FIN after the answer), within
                        // the send deadline.
                        let shut = tokio::io::AsyncWriteExt::shutdown(&mut stream);
                        if let Err(e) = within(limits.send, shut).await {
                            tracing::debug!("h1 shutdown: {e}");
                        }
                        return;
                    }
                    After::Abort => return,
                }
            }
            Err((why, bytes)) => {
                tracing::trace!(?why, "h1 head read by pingora's session");
                let by = head_by.unwrap_or_else(|| tokio::time::Instant::now() + limits.header);
                let exchange = Box::pin(exchange(
                    handler, stream, bytes, by, limits, drain, scheme, &client,
                ));
                stream = match exchange.await {
                    Some(s) => s,
                    None => return,
                };
            }
        }
    }
}

/// The bytes a read for a request's start gave; `None` when the connection ends: the client
/// closed (nothing read) or the read failed, or no byte came in time (counted as `late`).
fn request_bytes<H: Handler>(
    handler: &H,
    read: Result<std::io::Result<BytesMut>, tokio::time::error::Elapsed>,
    late: Closed,
) -> Option<BytesMut> {
    match read {
        Ok(Ok(bytes)) if !bytes.is_empty() => Some(bytes),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::debug!("h1 read: {e}");
            None
        }
        Err(_) => {
            handler.closed(late);
            None
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

/// What becomes of a connection after a plain exchange.
enum After {
    /// Open for the next request.
    KeepAlive,
    /// Answered whole; closed as asked (`Connection: close`, draining, bytes that came while
    /// the answer was made).
    Close,
    /// The answer was not sent whole (the client left, a write failed): dropped.
    Abort,
}

/// One plain request ([`super::h1plain`]) and its answer, written here.
async fn plain_exchange<H: Handler>(
    handler: &Arc<H>,
    stream: &mut Stream,
    plain: super::h1plain::Plain,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> After {
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
    if !respond(handler, req, &mut out, limits, drain, scheme, client).await {
        After::Abort
    } else if out.keeps_alive() {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// One request read by pingora's session from `stream` (its first bytes in `prefix`, the rest
/// of its head by `head_by`) and its answer; the stream back if the connection stays open
/// for another.
#[allow(clippy::too_many_arguments)]
async fn exchange<H: Handler>(
    handler: &Arc<H>,
    stream: Stream,
    prefix: BytesMut,
    head_by: tokio::time::Instant,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> Option<Stream> {
    // Boxed: the session is large, and the connection future would otherwise move it.
    let mut session = Box::new(HttpSession::new(stream));
    session.set_pipelined_prefix(prefix);
    session.set_write_timeout(Some(limits.send));
    match tokio::time::timeout_at(head_by, session.read_request()).await {
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
    /// The socket failed.
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    /// The origin broke off a streamed body.
    #[error("the origin broke off: {0}")]
    Origin(#[from] crate::origin::response::UpstreamError),
    /// The answer's status cannot be written.
    #[error(transparent)]
    Status(#[from] super::h1plain::BadStatus),
    /// A body that is not the length its head announced: not sent, so the client never reads
    /// the next answer from the wrong place.
    #[error("a body of {body} bytes under a head that says {said}")]
    LengthMismatch { said: usize, body: usize },
    /// pingora's session failed.
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
            Out::Session(session) => Ok(write(session, resp, sent, deadline).await?),
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
    use super::h1plain::{Framing, LAST_CHUNK, write_head};
    let mut head = Vec::with_capacity(PLAIN_HEAD);
    let framing = write_head(resp, keep_alive, &mut head)?;
    // A body that is not the length its head announces is a gateway fault: nothing of the
    // answer is sent.
    if let (Framing::Length(said), Body::Full(b), false) = (framing, &resp.body, head_only)
        && b.len() != said
    {
        tracing::warn!(
            said,
            body = b.len(),
            "h1 answer not sent: its body is not its length"
        );
        return Err(WriteFailed::LengthMismatch {
            said,
            body: b.len(),
        });
    }
    // The head is held (coalesce) and leaves with the body's first bytes in one write.
    send(stream, &head, deadline).await?;
    if head_only || framing == Framing::None {
        return flush(stream, deadline).await;
    }
    match (framing, &mut resp.body) {
        (Framing::Length(_), Body::Full(b)) => {
            send(stream, b, deadline).await?;
            *sent += b.len() as u64;
        }
        (Framing::Chunked, Body::Full(b)) => {
            if !b.is_empty() {
                send_chunk(stream, b, deadline).await?;
                *sent += b.len() as u64;
            }
            send(stream, LAST_CHUNK, deadline).await?;
        }
        (Framing::Chunked, Body::Stream(reader)) => {
            while let Some(chunk) = reader.chunk().await {
                // The origin broke off: the connection ends without the last chunk, so the
                // client sees a truncated response, never a short "complete" one.
                let c = chunk?;
                if c.is_empty() {
                    continue;
                }
                send_chunk(stream, &c, deadline).await?;
                // Each chunk leaves as it comes (a live segment is read as it is made).
                flush(stream, deadline).await?;
                *sent += c.len() as u64;
            }
            send(stream, LAST_CHUNK, deadline).await?;
        }
        // `Framing::of` frames every stream chunked: no stream has a length here.
        (Framing::Length(said), Body::Stream(_)) => {
            return Err(WriteFailed::LengthMismatch { said, body: 0 });
        }
        (Framing::None, _) => {}
    }
    flush(stream, deadline).await
}

/// A plain answer's head is built in a buffer of this size (most heads are 200–300 bytes).
const PLAIN_HEAD: usize = 512;

/// Writes all of `bytes`; each write must take some of them within `deadline` (a slow reader
/// that keeps taking bytes is not cut off; one that takes none is).
async fn send(
    stream: &mut Stream,
    mut bytes: &[u8],
    deadline: std::time::Duration,
) -> Result<(), WriteFailed> {
    while !bytes.is_empty() {
        let n = within(deadline, tokio::io::AsyncWriteExt::write(stream, bytes)).await?;
        if n == 0 {
            return Err(WriteFailed::Io(std::io::ErrorKind::WriteZero.into()));
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Sends `data` as one chunk of a chunked body.
async fn send_chunk(
    stream: &mut Stream,
    data: &[u8],
    deadline: std::time::Duration,
) -> Result<(), WriteFailed> {
    use super::h1plain::{CHUNK_END, chunk_start};
    send(stream, &chunk_start(data.len()), deadline).await?;
    send(stream, data, deadline).await?;
    send(stream, CHUNK_END, deadline).await
}

async fn flush(stream: &mut Stream, deadline: std::time::Duration) -> Result<(), WriteFailed> {
    within(deadline, tokio::io::AsyncWriteExt::flush(stream)).await
}

/// `io`, unless it does not finish within `deadline`. The timer is set only when `io` does not
/// finish at once: most writes of a cached answer do (the head is held, the body taken whole),
/// and a timer per write read the clock twice.
async fn within<T>(
    deadline: std::time::Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, WriteFailed> {
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
    let framing = super::h1plain::Framing::of(resp).field();
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
/// pingora's write timeout covers its body writes; the head's write and flush and the body's
/// end are bounded by `deadline` here.
async fn write(
    session: &mut HttpSession,
    resp: &mut Resp,
    sent: &mut u64,
    deadline: std::time::Duration,
) -> pingora::Result<()> {
    let timed_out = || pingora::Error::explain(pingora::ErrorType::WriteTimedout, "h1 send");
    let head = Box::new(response_head(resp)?);
    tokio::time::timeout(deadline, session.write_response_header(head))
        .await
        .map_err(|_| timed_out())??;
    // A HEAD answer's body (a short error's text) is not sent, nor counted as sent.
    let head_only = session.req_header().method == http::Method::HEAD;
    match &mut resp.body {
        _ if head_only => {}
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
    tokio::time::timeout(deadline, session.finish_body())
        .await
        .map_err(|_| timed_out())??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderName, HeaderValue};

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

    /// The head pingora's session writes for `resp` (as its `write_response_header` does:
    /// `Date` and `Connection` set on what it is handed, then the status line and fields).
    fn pingora_wire(resp: &Resp, keep_alive: bool) -> String {
        let mut h = response_head(resp).unwrap();
        h.insert_header(
            http::header::DATE,
            pingora::protocols::http::date::get_cached_date(),
        )
        .unwrap();
        let connection = if keep_alive { "keep-alive" } else { "close" };
        h.insert_header(http::header::CONNECTION, connection)
            .unwrap();
        let mut wire = format!(
            "HTTP/1.1 {} {}\r\n",
            h.status.as_str(),
            h.status.canonical_reason().unwrap_or("")
        )
        .into_bytes();
        h.header_to_h1_wire(&mut wire);
        wire.extend_from_slice(b"\r\n");
        String::from_utf8(wire).unwrap()
    }

    fn plain_wire(resp: &Resp, keep_alive: bool) -> String {
        let mut out = Vec::new();
        super::super::h1plain::write_head(resp, keep_alive, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Both writers put the same head on the wire: with and without a `Date` of the gateway's,
    /// for a length, a 304, a 204, a body of unknown length, kept alive or closing.
    #[test]
    fn the_plain_head_is_the_head_pingora_writes() {
        let mut no_date = resp(404, b"gone");
        no_date.headers.retain(|(n, _)| n != "x-cache");
        let mut dated = resp(200, b"abcd");
        dated.headers.insert(
            1,
            (
                http::header::DATE,
                HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
            ),
        );
        let mut unknown = resp(200, b"");
        unknown.content_length = None;
        // Repeated names adjacent: pingora's map groups them, the plain writer keeps them
        // where they are; adjacent, the two agree.
        for r in [no_date, dated, resp(304, b""), resp(204, b""), unknown] {
            for keep in [true, false] {
                assert_eq!(plain_wire(&r, keep), pingora_wire(&r, keep), "{}", r.status);
            }
        }
    }

    #[test]
    fn a_bad_status_is_an_error() {
        assert!(response_head(&resp(1000, b"")).is_err());
    }
}
