//! The downstream protocols: HTTP/1.1 on pingora's session, HTTP/2 on the `h2` crate (with
//! server push), and the WebSocket sub-protocol (over HTTP/1.1 or HTTP/2). Each translates
//! requests into the gateway's and, for push, implements the delivery layer's transport.

pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod h2settings;
pub(crate) mod ws;
