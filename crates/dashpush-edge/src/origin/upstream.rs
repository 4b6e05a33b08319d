//! The HTTP/1.1 client to the origin, on pingora's connector and connection pool.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorType, protocols::http::client::HttpSession};

use crate::cache::fill::Fill;
use crate::metrics::Metrics;
use crate::origin::response::Head;
pub use crate::origin::response::{Fetched, UpstreamError};

/// Origin client settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Origin address.
    pub addr: SocketAddr,
    /// `Host` header to send.
    pub host: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read of the response.
    pub read_timeout: Duration,
    /// Deadline for the whole exchange, head and body (a trickling origin cannot hold a fill,
    /// its readers and a fetch slot for longer).
    pub total_timeout: Duration,
    /// Largest body accepted.
    pub max_body: usize,
    /// TLS to the origin (`https://`), if any.
    pub tls: Option<OriginTlsPeer>,
    /// A fleet peer, not an origin: the fleet's own headers (`x-dashpush-peer…`) are sent to
    /// it; to an origin they never are.
    pub peer: bool,
}

/// How one HTTPS origin is reached.
#[derive(Debug, Clone)]
pub struct OriginTlsPeer {
    /// Server name sent (SNI) and verified.
    pub sni: String,
    /// Verify the certificate chain and the host name.
    pub verify: bool,
    /// PEM CAs instead of the system roots.
    pub ca_file: Option<String>,
}

/// Informational (1xx) answers read past before the final one, at most.
const MAX_INFORMATIONAL: usize = 8;

/// Idle origin connections kept for reuse, per origin (pingora's default).
const UPSTREAM_POOL: usize = 128;

/// The parts of one origin request.
#[derive(Clone, Copy)]
struct OriginRequest<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(HeaderName, HeaderValue)],
    client: Option<&'a str>,
}

/// The origin client.
pub struct Upstream {
    connector: Connector,
    peer: HttpPeer,
    config: UpstreamConfig,
    metrics: Metrics,
}

/// Request headers never forwarded (RFC 9110 §7.6.1 hop-by-hop, plus ones we set, plus
/// `Expect`, which would change the exchange: the gateway sends no request body).
const HOP_BY_HOP: &[&str] = &[
    "expect",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
];

impl Upstream {
    /// A client for one origin.
    pub fn new(config: UpstreamConfig, metrics: Metrics) -> Self {
        let (tls, sni) = match &config.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(config.addr, tls, sni);
        peer.options.connection_timeout = Some(config.connect_timeout);
        peer.options.read_timeout = Some(config.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        // HTTP/1.1 to the origin, also over TLS (ALPN offers only http/1.1).
        peer.options.alpn = pingora::protocols::ALPN::H1;
        let mut options = None;
        if let Some(t) = &config.tls {
            peer.options.verify_cert = t.verify;
            peer.options.verify_hostname = t.verify;
            options = t.ca_file.clone().map(|ca| {
                let mut o = ConnectorOptions::new(UPSTREAM_POOL);
                o.ca_file = Some(ca);
                o
            });
        }
        Self {
            connector: Connector::new(options),
            peer,
            config,
            metrics,
        }
    }

    /// Makes this the client of a fleet peer (the fleet's headers are sent to it).
    pub(crate) fn set_peer(&mut self) {
        self.config.peer = true;
    }

    /// Fetches `path` (with query) from the origin, forwarding `headers` minus hop-by-hop ones,
    /// and returns the whole response.
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        client: Option<&str>,
    ) -> Result<Fetched, UpstreamError> {
        let fill = Fill::new();
        self.fetch_into(method, path, headers, client, &fill).await;
        fill.complete().await
    }

    /// Fetches like [`Upstream::fetch`], writing the head and each body chunk into `fill` as
    /// they arrive, and finishing it.
    pub async fn fetch_into(
        &self,
        method: &str,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        client: Option<&str>,
        fill: &Fill,
    ) {
        let started = Instant::now();
        // The exchange proper runs in one block so that timing and outcome are recorded once.
        let result: Result<u16, UpstreamError> = async {
            let (mut session, _reused) = self
                .connector
                .get_http_session(&self.peer)
                .await
                .map_err(map_err)?;
            let request = OriginRequest {
                method,
                path,
                headers,
                client,
            };
            let status = tokio::time::timeout(
                self.config.total_timeout,
                self.exchange(&mut session, &request, fill),
            )
            .await
            .map_err(|_| {
                UpstreamError::Timeout(format!(
                    "whole response not in within {:?}",
                    self.config.total_timeout
                ))
            })??;
            release(&self.connector, session, &self.peer).await;
            Ok(status)
        }
        .await;
        let outcome = match &result {
            Ok(status) if *status < 500 => "ok",
            Ok(_) => "status_error",
            Err(e) => e.outcome(),
        };
        self.metrics
            .origin_fetches
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .origin_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::warn!(path, "origin fetch failed: {e}");
        }
        fill.finish(result.map(|_| ()));
    }

    /// One request/response on an origin session, streamed into `fill`; returns the status.
    async fn exchange(
        &self,
        session: &mut HttpSession,
        request: &OriginRequest<'_>,
        fill: &Fill,
    ) -> Result<u16, UpstreamError> {
        let OriginRequest {
            method,
            path,
            headers,
            client,
        } = *request;
        let mut req = RequestHeader::build(method, path.as_bytes(), None).map_err(map_err)?;
        req.insert_header("host", &self.config.host)
            .map_err(map_err)?;
        for (name, value) in headers {
            let fleet_header = name.as_str().starts_with("x-dashpush-peer");
            if !HOP_BY_HOP.contains(&name.as_str())
                && name != "via"
                && name != "x-forwarded-for"
                && (self.config.peer || !fleet_header)
            {
                req.append_header(name.clone(), value.clone())
                    .map_err(map_err)?;
            }
        }
        let forwarded = crate::fields::all(headers, "x-forwarded-for")
            .chain(client)
            .collect::<Vec<_>>()
            .join(", ");
        if !forwarded.is_empty() {
            req.insert_header("x-forwarded-for", forwarded)
                .map_err(map_err)?;
        }
        req.insert_header("via", "1.1 dashpush").map_err(map_err)?;
        session.set_read_timeout(Some(self.config.read_timeout));
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(map_err)?;
        session.read_response_header().await.map_err(map_err)?;
        // Informational answers (100 Continue, 103 Early Hints) come before the final one: read
        // past them (a bounded number). 101 is refused: the gateway never asks to switch.
        let mut informational = 0;
        while let Some(code) = session
            .response_header()
            .map(|h| h.status.as_u16())
            .filter(|c| (100..200).contains(c))
        {
            informational += 1;
            if code == 101 || informational > MAX_INFORMATIONAL {
                return Err(UpstreamError::Unreachable(format!(
                    "origin answered {code} (informational) instead of a response"
                )));
            }
            session.read_response_header().await.map_err(map_err)?;
        }
        let (status, headers): (u16, Vec<(HeaderName, HeaderValue)>) = match session
            .response_header()
        {
            Some(h) => (
                h.status.as_u16(),
                h.headers
                    .iter()
                    // `content-length` is kept: it is the length a streamed body will have.
                    .filter(|(n, _)| *n == "content-length" || !HOP_BY_HOP.contains(&n.as_str()))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect(),
            ),
            None => return Err(UpstreamError::Unreachable("no response header".into())),
        };
        fill.set_head(Head { status, headers });
        if method != "HEAD" {
            let mut received = 0usize;
            while let Some(chunk) = session.read_response_body().await.map_err(map_err)? {
                received += chunk.len();
                if received > self.config.max_body {
                    return Err(UpstreamError::TooLarge(self.config.max_body));
                }
                fill.push(chunk);
            }
        }
        Ok(status)
    }
}

async fn release(connector: &Connector, session: HttpSession, peer: &HttpPeer) {
    connector
        .release_http_session(session, peer, Some(Duration::from_secs(60)))
        .await;
}

fn map_err(e: Box<pingora::Error>) -> UpstreamError {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            UpstreamError::Timeout(e.to_string())
        }
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::TLSWantX509Lookup => UpstreamError::Tls(e.to_string()),
        _ => UpstreamError::Unreachable(e.to_string()),
    }
}
