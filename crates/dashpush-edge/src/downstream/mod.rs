//! The downstream protocols: HTTP/1.1 on pingora's session, HTTP/2 on the `h2` crate (with
//! server push), and the WebSocket sub-protocol (over HTTP/1.1 or HTTP/2). Each translates
//! requests into the gateway's and, for push, implements the delivery layer's transport.

pub(crate) mod coalesce;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod h2settings;
pub(crate) mod ws;

/// The client's IP address (no port) of a downstream connection, if known.
pub(crate) fn client_ip(stream: &pingora::protocols::Stream) -> Option<String> {
    stream.get_socket_digest().and_then(|d| {
        d.peer_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
    })
}
