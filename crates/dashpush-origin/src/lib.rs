//! A plain HTTP/1.1 DASH origin, real enough to demo and test the gateway against.
//!
//! It serves either a directory (`--dir`) or built-in content (`--demo`): a VOD stream with two
//! video Representations and one audio Representation (small fMP4 segments made by ffmpeg,
//! committed under `demo/`), and a live stream whose MPD is dynamic and whose segments become
//! available on the wall clock, one per segment duration after the stream starts. It counts hits
//! per path (`GET /_origin/hits`), and has switches for added latency, an error rate and
//! connection resets (`GET /_origin/faults?latency_ms=&error_rate=&reset_rate=`), so tests can
//! make it slow or failing on demand. `GET /_origin/blob/<n>` answers `n` deterministic bytes;
//! `GET /_origin/gated/<n>` the same bytes, but only the first half until `GET /_origin/open`.
//! These `/_origin/` routes are served only on the control listener ([`Listener::Control`]),
//! which is off unless asked for: nothing that reaches the content port (a gateway in front
//! of it included) can switch faults. Dotfiles are never served from a directory.
//!
//! It does not do TLS, HTTP/2 or caching: it stands for the unchanged HTTP/1.1 origins the
//! gateway sits in front of.

mod content;
mod server;

pub use content::{Content, DemoOptions};
pub use server::{Faults, Listener, Origin, serve};

use thiserror::Error;

/// Why the origin could not start.
#[derive(Debug, Error)]
pub enum OriginError {
    /// The directory to serve is not a readable directory.
    #[error("cannot serve {path}: {source}")]
    Dir {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listener could not be bound or failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
