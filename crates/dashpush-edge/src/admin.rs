//! The admin listener: `/metrics`, `/live`, `/ready`.

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
}

#[async_trait::async_trait]
impl Handler for Admin {
    async fn handle(&self, req: Req) -> Resp {
        match req.path.split('?').next().unwrap_or_default() {
            "/metrics" => {
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
            _ => short(404, "admin routes: /metrics /live /ready\n"),
        }
    }
}
