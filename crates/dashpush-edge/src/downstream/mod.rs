//! The downstream protocols: HTTP/1.1 on pingora's session, HTTP/2 on the `h2` crate (with
//! server push), and the WebSocket sub-protocol (over HTTP/1.1 or HTTP/2). Each translates
//! requests into the gateway's and, for push, implements the delivery layer's transport.

pub(crate) mod coalesce;
pub(crate) mod h1;
pub(crate) mod h1plain;
pub(crate) mod h2;
pub(crate) mod h2idle;
pub(crate) mod h2park;
pub(crate) mod h2settings;
pub(crate) mod h2wire;
pub(crate) mod hpackskim;
pub(crate) mod ws;

use http::{HeaderName, HeaderValue};

/// A response head as `http` parts: `status`, then `headers` and `extra` appended as they are.
/// They are `HeaderName`s and `HeaderValue`s already, so nothing is parsed again (`http`'s
/// builder converts every pair, pingora's `append_header` re-parses every name: a tenth of a
/// cached HTTP/1.1 request's instructions, and of a live push's). `None` for a status that is
/// not one, or a head beyond the header map's size limit. The map is sized for exactly the
/// pairs it gets plus `room` more (what the transport adds after it): four to six pairs take
/// 624 bytes, fewer less, seven or more 1,248 bytes or more, beyond the allocator's per-thread
/// cache (a head is built for every response and push).
pub(crate) fn head_parts<'a>(
    status: u16,
    headers: impl Iterator<Item = &'a (HeaderName, HeaderValue)> + Clone,
    extra: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    room: usize,
) -> Option<http::response::Parts> {
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = http::StatusCode::from_u16(status).ok()?;
    let extra = extra.into_iter();
    let (least, most) = extra.size_hint();
    let pairs = headers.clone().count() + most.unwrap_or(least) + room;
    head.headers.try_reserve(pairs).ok()?;
    for (n, v) in headers {
        head.headers.try_append(n.clone(), v.clone()).ok()?;
    }
    for (n, v) in extra {
        head.headers.try_append(n, v).ok()?;
    }
    Some(head)
}

/// The client's IP address (no port) of a downstream connection, if known.
pub(crate) fn client_ip(stream: &pingora::protocols::Stream) -> Option<String> {
    stream.get_socket_digest().and_then(|d| {
        d.peer_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
    })
}
