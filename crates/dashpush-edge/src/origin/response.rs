//! What the origin answers: a response head, a whole response, and why a fetch failed. Plain
//! types shared by the upstream client, the fills that carry its answers and the cache.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// The status line and headers of a response.
#[derive(Debug, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// End-to-end headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A response from the origin, body complete.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// End-to-end response headers (hop-by-hop ones removed).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

impl Fetched {
    /// A copy for one answer, with room for `room` more header fields than it has (an
    /// answer adds its cache status, `X-Cache`, `Age`...: pushing them onto an exact-size
    /// copy moved every field once more).
    pub fn share(&self, room: usize) -> Fetched {
        let mut headers = Vec::with_capacity(self.headers.len() + room);
        headers.extend(self.headers.iter().cloned());
        Fetched {
            status: self.status,
            headers,
            body: self.body.clone(),
        }
    }
}

/// Why an origin fetch failed; decides 502 or 504.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect, or the connection broke.
    #[error("origin unreachable: {0}")]
    Unreachable(String),
    /// The origin did not answer in time.
    #[error("origin timed out: {0}")]
    Timeout(String),
    /// The response was over the size cap.
    #[error("origin response over {0} bytes")]
    TooLarge(usize),
    /// Every origin fetch slot stayed taken for the queue timeout.
    #[error("too many origin fetches at once")]
    Busy,
    /// The TLS handshake with an `https://` origin failed (a certificate that does not
    /// verify, among others).
    #[error("origin TLS handshake failed: {0}")]
    Tls(String),
    /// Cut off by the budget for bytes held only for slow readers.
    #[error("answer cut off: the budget for bytes held for slow readers is spent")]
    Cut,
    /// Every reader left before the fetch ended and no background slot was free.
    #[error("origin fetch abandoned: nobody reads it")]
    Abandoned,
}

impl UpstreamError {
    /// The status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            Self::Timeout(_) => 504,
            Self::Busy => 503,
            _ => 502,
        }
    }

    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "connect_error",
            Self::TooLarge(_) => "error",
            Self::Busy => "busy",
            Self::Tls(_) => "tls_error",
            Self::Abandoned => "abandoned",
            Self::Cut => "cut",
        }
    }
}
