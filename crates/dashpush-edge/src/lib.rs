//! dashpush's I/O layer: the pingora server with HTTP/1.1 and HTTP/2 (h2c) on one port, the
//! cached and coalescing HTTP/1.1 client to the origin, and the admin listener with metrics and
//! health.
//!
//! HTTP/1.1 is served by pingora's own session; HTTP/2 by the `h2` crate on the raw stream that
//! pingora hands to our `ServerApp` (pingora's HTTP/2 session cannot push, and push is what this
//! gateway is for). The protocol logic lives in the no-I/O crates; this crate only moves bytes.

mod access;
mod admin;
mod cache;
pub mod config;
mod delivery;
mod downstream;
mod drain;
mod fields;
mod fleet;
mod gateway;
mod guard;
mod listener;
mod live_asks;
mod manifests;
pub mod metrics;
mod origin;
mod prefetch;
mod served;
mod server;
pub mod settings;
mod slots;
mod target;

pub use access::Sink as AccessLogSink;
pub use config::{ConfigError, RawConfig};
pub use gateway::{Body, Gateway, Req, Resp};
pub use metrics::Metrics;
pub use server::{Reload, run, run_with_reload};
pub use settings::{EdgeConfig, TlsListener};

use thiserror::Error;

/// Why the edge could not start.
#[derive(Debug, Error)]
pub enum EdgeError {
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener address could not be bound or resolved.
    #[error("address {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
}
