//! The traffic listeners: bound by the gateway itself before it says where it listens, and
//! accepted by our own loop, run as a pingora background service (pingora still owns the
//! process: runtimes, signals, graceful shutdown).
//!
//! Why not pingora's listening service: its per-connection task keeps the inline state of
//! pingora's own handshake (TLS-capable, whatever the listener) for the connection's whole life,
//! about 8.6 KiB per connection, more than an idle HTTP/1.1 connection needs in all; and it binds
//! late, so a listener on port 0 could only be told by probing a free port first (a race with
//! any other process). Here a connection's task holds the gateway's connection future alone.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::EdgeError;

/// Pending connections the kernel queues per listener (pingora's and nginx's order of size).
const BACKLOG: i32 = 65_535;

/// After a failed accept (out of descriptors: EMFILE/ENFILE) the listener pauses this long, so
/// a full descriptor table is not spun on (nginx and pingora do the same).
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Binds `addr` (port 0 picks a free port) with a large backlog; returns the listener and the
/// address it is bound to.
pub(crate) fn bind(addr: &str) -> Result<(std::net::TcpListener, SocketAddr), EdgeError> {
    let bind_err = |source| EdgeError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(bind_err)?
        .next()
        .ok_or_else(|| bind_err(std::io::Error::other("no address")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(resolved),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.bind(&resolved.into()).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    let listener: std::net::TcpListener = socket.into();
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// A failed accept that more accepts would fail alike: out of descriptors or memory.
fn out_of_resources(e: &std::io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

/// Socket options of an accepted connection: no Nagle delay (answers leave as soon as they are
/// written), and at most `notsent_lowat` unsent bytes in the kernel (0: its default), so what
/// is not yet sent waits in our queues, where priorities apply, not in a send buffer ahead of
/// them (`limits.tcp_notsent_lowat_bytes`).
fn tune(tcp: &tokio::net::TcpStream, notsent_lowat: u32) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    if notsent_lowat > 0
        && let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(notsent_lowat)
    {
        tracing::debug!("TCP_NOTSENT_LOWAT: {e}");
    }
}

/// What serves an accepted connection.
#[async_trait::async_trait]
pub(crate) trait Serve: Send + Sync + 'static {
    /// Serves `stream` until it ends.
    async fn serve(self: std::sync::Arc<Self>, stream: Stream);
}

/// An accept loop over one bound listener: each connection gets a task of its own running
/// `app`, until the server shuts down.
pub(crate) struct Accepting<A> {
    listener: Mutex<Option<std::net::TcpListener>>,
    app: std::sync::Arc<A>,
    /// `TCP_NOTSENT_LOWAT` of each accepted socket (0: left as the kernel has it).
    notsent_lowat: u32,
}

impl<A: Serve> Accepting<A> {
    pub(crate) fn new(listener: std::net::TcpListener, app: A, notsent_lowat: u32) -> Self {
        Self {
            listener: Mutex::new(Some(listener)),
            app: std::sync::Arc::new(app),
            notsent_lowat,
        }
    }
}

#[async_trait::async_trait]
impl<A: Serve> BackgroundService for Accepting<A> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(std_listener) = taken else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("listener: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        tune(&tcp, self.notsent_lowat);
                        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
                        let mut stream = L4Stream::from(tcp);
                        stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
                        let app = std::sync::Arc::clone(&self.app);
                        tokio::spawn(app.serve(Box::new(stream)));
                    }
                    Err(e) if out_of_resources(&e) => {
                        // The wording is what `dashpush_accept_errors_total` counts.
                        tracing::error!("Accept() failed: {e}");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                    // A connection that failed before it was accepted (ECONNABORTED and the
                    // like) costs this listener nothing.
                    Err(e) => tracing::debug!("accept: {e}"),
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_bound_to_a_real_port_at_once() {
        let (l, addr) = bind("127.0.0.1:0").unwrap();
        assert_ne!(addr.port(), 0);
        // Nobody else can take it now: binding it again fails.
        assert!(bind(&addr.to_string()).is_err());
        drop(l);
    }

    #[test]
    fn a_bad_address_is_a_bind_error() {
        assert!(matches!(
            bind("nonsense address"),
            Err(EdgeError::Bind { .. })
        ));
    }
}
