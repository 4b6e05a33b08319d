//! The request handler shared by HTTP/1.1 and HTTP/2: cache lookup, origin fetch, Range, HEAD.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

use crate::cache::{Cache, Lookup, Miss};
use crate::metrics::Metrics;
use crate::upstream::{Fetched, Upstream};

/// A downstream request, protocol-independent.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client address, for `X-Forwarded-For`.
    pub client: Option<String>,
}

/// A response, body complete.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers (no `content-length`: the protocol layer sets it).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body (empty for HEAD).
    pub body: Bytes,
    /// The full length the body would have for HEAD.
    pub content_length: usize,
}

/// The gateway: origin, cache and metrics.
pub struct Gateway {
    upstream: Upstream,
    cache: Cache,
    metrics: Metrics,
}

/// Headers a cache fill forwards to the origin: never the client's conditional, range or
/// credential headers, since the entry is shared.
const FILL_HEADERS: &[&str] = &["user-agent"];

impl Gateway {
    /// A gateway over an origin client and a cache.
    pub fn new(upstream: Upstream, cache: Cache, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            upstream,
            cache,
            metrics,
        })
    }

    /// The origin client (for readiness probes).
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Answers one request.
    pub async fn handle(&self, req: &Req) -> Resp {
        if req.method != Method::GET && req.method != Method::HEAD {
            return short(405, "GET and HEAD only\n");
        }
        if !req.path.starts_with('/') {
            return short(400, "bad request target\n");
        }
        let head = req.method == Method::HEAD;
        let range = header(&req.headers, "range");
        if header(&req.headers, "authorization").is_some() {
            // Credentials: not shared, so not cached; forwarded as they came.
            let method = req.method.as_str();
            return match self
                .upstream
                .fetch(method, &req.path, &req.headers, req.client.as_deref())
                .await
            {
                Ok(f) => from_fetched(f, None, head, "dashpush; fwd=bypass"),
                Err(e) => short(e.status(), "origin error\n"),
            };
        }
        let fill: Vec<(HeaderName, HeaderValue)> = req
            .headers
            .iter()
            .filter(|(n, _)| FILL_HEADERS.contains(&n.as_str()))
            .cloned()
            .collect();
        let fetch = self
            .upstream
            .fetch("GET", &req.path, &fill, req.client.as_deref());
        let (result, lookup) = self.cache.get_or_fetch(&req.path, fetch).await;
        let status = match lookup {
            Lookup::Hit => "dashpush; hit",
            Lookup::Fetched => "dashpush; fwd=miss",
            Lookup::Coalesced => "dashpush; fwd=miss; collapsed",
        };
        match result {
            Ok(entry) if not_modified(&req.headers, &entry.response) => {
                Resp::not_modified(&entry.response, status)
            }
            Ok(entry) => from_fetched(entry.response.clone(), range, head, status),
            Err(miss) => match &*miss {
                Miss::Uncacheable(f) => {
                    from_fetched(f.clone(), range, head, "dashpush; fwd=miss; stored=0")
                }
                Miss::Upstream(e) => short(
                    e.status(),
                    if e.status() == 504 {
                        "origin timeout\n"
                    } else {
                        "origin unavailable\n"
                    },
                ),
            },
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
}

/// True when the client's validators match the cached response (RFC 9110 §13.1.2 and
/// §13.1.3): `If-None-Match` (weak comparison) wins over `If-Modified-Since`.
fn not_modified(req: &[(HeaderName, HeaderValue)], cached: &Fetched) -> bool {
    if cached.status != 200 {
        return false;
    }
    let resp = |name: &str| header(&cached.headers, name);
    if let Some(inm) = header(req, "if-none-match") {
        let Some(etag) = resp("etag") else {
            return false;
        };
        let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let etag = strip(etag);
        return inm.split(',').any(|t| t.trim() == "*" || strip(t) == etag);
    }
    match (header(req, "if-modified-since"), resp("last-modified")) {
        (Some(ims), Some(lm)) => match (
            httpdate::parse_http_date(ims),
            httpdate::parse_http_date(lm),
        ) {
            (Ok(ims), Ok(lm)) => lm <= ims,
            _ => false,
        },
        _ => false,
    }
}

impl Resp {
    /// 304 for a cached response: its validators and caching headers, no body.
    fn not_modified(cached: &Fetched, cache_status: &'static str) -> Self {
        const KEEP: &[&str] = &[
            "etag",
            "last-modified",
            "cache-control",
            "expires",
            "vary",
            "date",
        ];
        let mut headers: Vec<(HeaderName, HeaderValue)> = cached
            .headers
            .iter()
            .filter(|(n, _)| KEEP.contains(&n.as_str()))
            .cloned()
            .collect();
        headers.push((
            HeaderName::from_static("cache-status"),
            HeaderValue::from_static(cache_status),
        ));
        Resp {
            status: 304,
            headers,
            body: Bytes::new(),
            content_length: 0,
        }
    }
}

/// Builds the downstream response, applying a single Range to a 200 and dropping the body for
/// HEAD.
fn from_fetched(f: Fetched, range: Option<&str>, head: bool, cache_status: &'static str) -> Resp {
    let mut headers = f.headers;
    headers.retain(|(n, _)| n != "content-length" && n != "cache-status");
    headers.push((
        HeaderName::from_static("cache-status"),
        HeaderValue::from_static(cache_status),
    ));
    let total = f.body.len() as u64;
    let (status, body) = match range.filter(|_| f.status == 200) {
        None => (f.status, f.body),
        Some(r) => match dashpush_proto::range::parse_range_header(r, total) {
            Some((a, b)) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}")) {
                    headers.push((HeaderName::from_static("content-range"), v));
                }
                (206, f.body.slice(a as usize..=b as usize))
            }
            None => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    headers.push((HeaderName::from_static("content-range"), v));
                }
                (416, Bytes::new())
            }
        },
    };
    if !headers.iter().any(|(n, _)| n == "accept-ranges") {
        headers.push((
            HeaderName::from_static("accept-ranges"),
            HeaderValue::from_static("bytes"),
        ));
    }
    let content_length = body.len();
    Resp {
        status,
        headers,
        body: if head { Bytes::new() } else { body },
        content_length,
    }
}

/// A short plain-text answer.
pub(crate) fn short(status: u16, text: &'static str) -> Resp {
    Resp {
        status,
        headers: vec![(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain"),
        )],
        body: Bytes::from_static(text.as_bytes()),
        content_length: text.len(),
    }
}
