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
    async fn handle(&self, req: Req) -> Resp;
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
    let mut first = !tls;
    loop {
        // A kept-alive connection is idle until its next request's bytes come; they are read
        // here (TLS cannot be peeked) and handed to the session as the start of the head.
        let mut prefix = None;
        if !first {
            let _idle = conn.idle();
            let next = tokio::select! {
                next = tokio::time::timeout(limits.idle, next_bytes(&mut stream)) => next,
                () = conn.evicted() => {
                    handler.closed(Closed::Evicted);
                    return;
                }
            };
            match next {
                Ok(Ok(bytes)) if !bytes.is_empty() => prefix = Some(bytes),
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
        }
        first = false;
        // The exchange is boxed: an idle connection holds only this loop's small state, not
        // the largest state of a request in progress.
        let exchange = Box::pin(exchange(
            handler, stream, prefix, limits, drain, scheme, &client,
        ));
        stream = match exchange.await {
            Some(s) => s,
            None => return,
        };
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

/// One request and its answer on `stream` (its first bytes in `prefix`); the stream back if
/// the connection stays open for another.
async fn exchange<H: Handler>(
    handler: &Arc<H>,
    stream: Stream,
    prefix: Option<BytesMut>,
    limits: Limits,
    drain: &Arc<Drain>,
    scheme: &'static str,
    client: &Option<String>,
) -> Option<Stream> {
    // Boxed: the session is large, and the connection future would otherwise move it.
    let mut session = Box::new(HttpSession::new(stream));
    if let Some(prefix) = prefix {
        session.set_pipelined_prefix(prefix);
    }
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
    let (host, path) = (req.host.clone(), req.path.clone());
    let started = std::time::Instant::now();
    let method = req.method.clone();
    let log = |status: u16, bytes: u64, cache: Option<&str>| {
        handler.served(
            scheme,
            &Served {
                protocol: "h1",
                client: client.as_deref(),
                method: method.as_str(),
                authority: host.as_deref(),
                path: path.as_str(),
                status,
                bytes,
                started,
                cache,
            },
        );
    };
    let Some(mut resp) = answer_unless_gone(handler.as_ref(), &mut session, req).await else {
        handler.record("h1", CLIENT_CLOSED);
        log(CLIENT_CLOSED, 0, None);
        return None;
    };
    handler
        .before_write(scheme, host.as_deref(), &path, &resp)
        .await;
    if drain.is_draining() {
        session.set_server_keepalive(None);
    }
    let mut bytes = 0u64;
    let written = write(&mut session, &mut resp, &mut bytes).await;
    let cache = crate::access::cache_of(&resp.headers);
    if let Err(e) = written {
        tracing::debug!("h1 write: {e}");
        if e.etype() == &pingora::ErrorType::WriteTimedout {
            handler.closed(Closed::SendTimeout);
        }
        log(resp.status, bytes, cache);
        return None;
    }
    handler.record("h1", resp.status);
    log(resp.status, bytes, cache);
    handler.after_response(scheme, host.as_deref(), &path, resp.status);
    match session.reuse().await {
        Ok(Some(reusable)) => Some(reusable.into_parts().0),
        _ => None,
    }
}

/// Runs the handler while watching the connection: a client that closes it before the answer
/// is ready cancels the work at once (`None`), as an HTTP/2 reset does. Bytes that arrive
/// meanwhile (a pipelined request, which is not supported) make the connection close after
/// this answer.
async fn answer_unless_gone<H: Handler>(
    handler: &H,
    session: &mut HttpSession,
    req: Req,
) -> Option<Resp> {
    let handling = handler.handle(req);
    tokio::pin!(handling);
    tokio::select! {
        resp = &mut handling => Some(resp),
        watched = session.read_body_or_idle(true) => match watched {
            Err(e) if matches!(e.etype(), pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError) => {
                tracing::debug!("h1 client left before its answer: {e}");
                None
            }
            _ => {
                session.set_server_keepalive(None);
                Some(handling.await)
            }
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
