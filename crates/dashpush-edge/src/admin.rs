//! The admin listener: `/metrics`, `/live`, `/ready`, and `POST /purge` (guarded by the admin
//! token when one is set).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::downstream::h1::Handler;
use crate::gateway::{Body, Gateway, Req, Resp, short};

/// Admin routes over the gateway's metrics and origin.
pub(crate) struct Admin {
    pub(crate) gateway: Arc<Gateway>,
    /// Ready without waiting for the origin (config `ready_without_origin`).
    pub(crate) ready: AtomicBool,
    /// Draining: `/ready` answers 503 so load balancers stop sending new clients.
    pub(crate) drain: Arc<crate::drain::Drain>,
    /// Bearer token every non-GET route requires, if set.
    pub(crate) token: Option<String>,
}

impl Admin {
    /// Whether a request that changes something carries the token (or none is set).
    fn authorized(&self, req: &Req) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        crate::fields::all(&req.headers, "authorization")
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
    }

    /// `POST /purge?path=P` (that path, with any query, on every origin and host) or
    /// `?prefix=P` (every key under it).
    async fn purge(&self, query: &str) -> Resp {
        let mut path = None;
        let mut prefix = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "path" => path = Some(v.into_owned()),
                "prefix" => prefix = Some(v.into_owned()),
                _ => {}
            }
        }
        let cache = self.gateway.cache();
        let purged = match (path, prefix) {
            (Some(p), None) if p.starts_with('/') => {
                cache
                    .purge(|k| {
                        k == p
                            || k.strip_prefix(p.as_str())
                                .is_some_and(|q| q.starts_with('?'))
                    })
                    .await
            }
            (None, Some(p)) if p.starts_with('/') => {
                cache.purge(|k| k.starts_with(p.as_str())).await
            }
            _ => {
                return short(
                    400,
                    "POST /purge?path=/a/b.m4s or /purge?prefix=/a/ (one of them, starting with /)\n",
                );
            }
        };
        tracing::info!(
            query,
            entries = purged.entries,
            fills = purged.fills,
            "cache purged"
        );
        json(
            200,
            &format!(
                "{{\"purged\":{},\"fills\":{}}}\n",
                purged.entries, purged.fills
            ),
        )
    }
}

/// Compares without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(status: u16, body: &str) -> Resp {
    let body = Bytes::from(body.to_owned());
    Resp {
        status,
        headers: vec![(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        )],
        content_length: Some(body.len()),
        body: Body::Full(body),
    }
}

#[async_trait::async_trait]
impl Handler for Admin {
    async fn handle(&self, req: &Req) -> Resp {
        let (route, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
        let reading = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if !reading && !self.authorized(req) {
            let mut resp = short(401, "admin token required (Authorization: Bearer ...)\n");
            resp.headers.push((
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            ));
            return resp;
        }
        if route == "/purge" {
            return if req.method == http::Method::POST {
                self.purge(query).await
            } else {
                let mut resp = short(405, "POST /purge\n");
                resp.headers
                    .push((http::header::ALLOW, HeaderValue::from_static("POST")));
                resp
            };
        }
        match route {
            "/metrics" => {
                self.gateway.cache().refresh_size().await;
                let body = Bytes::from(self.gateway.metrics().encode());
                Resp {
                    status: 200,
                    headers: vec![(
                        HeaderName::from_static("content-type"),
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    )],
                    content_length: Some(body.len()),
                    body: Body::Full(body),
                }
            }
            "/live" => short(200, "live\n"),
            "/ready" => {
                if !self.ready.load(Ordering::Relaxed) {
                    // Listeners are bound (this answer proves it); every origin must answer once.
                    let mut all = true;
                    for origin in self.gateway.origins().all() {
                        all &= origin.fetch("HEAD", "/", &[], None).await.is_ok();
                    }
                    if all {
                        self.ready.store(true, Ordering::Relaxed);
                    }
                }
                let gauge = &self.gateway.metrics().ready;
                if self.drain.is_draining() {
                    gauge.set(0);
                    short(503, "draining\n")
                } else if self.ready.load(Ordering::Relaxed) {
                    gauge.set(1);
                    short(200, "ready\n")
                } else {
                    gauge.set(0);
                    short(503, "origin has not answered yet\n")
                }
            }
            _ => short(404, "admin routes: /metrics /live /ready, POST /purge\n"),
        }
    }
}
