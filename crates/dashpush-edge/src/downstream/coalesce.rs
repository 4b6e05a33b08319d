//! Write coalescing for HTTP/1.1 without a standing write buffer.
//!
//! pingora's session writes a response head and then its body as two writes. Through an
//! unbuffered socket that is two `send` calls (two TCP segment trains, two wake-ups of the
//! client); through a buffered one every connection holds its buffer while idle, and every
//! body is copied into it. [`Coalesce`] keeps a small write (a head, a chunk-size line) until
//! the next write or flush and sends both in one vectored write, copying only the small part:
//! a cache hit leaves in one `writev` whatever the body's size, and an idle connection holds
//! no buffer at all (the pending bytes are released on flush).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pingora::protocols::Stream;
use pingora::protocols::TimingDigest;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, UniqueID,
    UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes up to this many bytes (in total with what is pending) are held for the next write
/// instead of being sent at once.
const HOLD: usize = 4 * 1024;

/// Most slices handed to one vectored write (the pending bytes and the caller's).
const SLICES: usize = 8;

/// A stream whose small writes wait for the next write or flush (see the module docs).
#[derive(Debug)]
pub(crate) struct Coalesce {
    inner: Stream,
    pending: Vec<u8>,
}

impl Coalesce {
    /// Wraps `inner`; boxed, as pingora's sessions take streams.
    pub(crate) fn wrap(inner: Stream) -> Stream {
        Box::new(Self {
            inner,
            pending: Vec::new(),
        })
    }

    /// Writes the pending bytes followed by `bufs`; returns how many bytes of `bufs` were
    /// taken. Small totals are only appended to the pending bytes.
    fn poll_write_all_of(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending.len() + total <= HOLD {
            for b in bufs {
                self.pending.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        loop {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut n = 0;
            if !self.pending.is_empty() {
                slices[0] = IoSlice::new(&self.pending);
                n = 1;
            }
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                if n == SLICES {
                    break;
                }
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..n]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let held = self.pending.len();
            if written <= held {
                // Only held bytes went out (all of them, maybe): none of the caller's yet, and
                // `Ok(0)` would read as a closed socket to the caller.
                self.pending.drain(..written);
                continue;
            }
            self.pending = Vec::new();
            return Poll::Ready(Ok(written - held));
        }
    }

    /// Sends every pending byte.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        // Nothing is held while idle.
        self.pending = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Coalesce {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalesce {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_all_of(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_all_of(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for Coalesce {
    async fn shutdown(&mut self) {
        if tokio::io::AsyncWriteExt::flush(self).await.is_ok() {
            Shutdown::shutdown(self.inner.as_mut()).await;
        }
    }
}

impl UniqueID for Coalesce {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Coalesce {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Coalesce {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Coalesce {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Coalesce {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait::async_trait]
impl Peek for Coalesce {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair: the wrapped server side and the peer's raw socket.
    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let l4: pingora::protocols::l4::stream::Stream = server.into();
        (Coalesce::wrap(Box::new(l4)), client)
    }

    #[tokio::test]
    async fn a_head_waits_for_its_body_and_both_arrive_in_order() {
        let (mut s, mut peer) = pair().await;
        let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n";
        s.write_all(head).await.unwrap();
        // Held: nothing has reached the peer yet.
        let mut probe = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(50), peer.read(&mut probe)).await;
        assert!(early.is_err(), "a small write must wait for the next one");
        let body = vec![b'x'; 10_000];
        s.write_all(&body).await.unwrap();
        s.flush().await.unwrap();
        let mut got = vec![0u8; head.len() + body.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..head.len()], head);
        assert!(got[head.len()..].iter().all(|b| *b == b'x'));
    }

    #[tokio::test]
    async fn flush_sends_what_is_held_and_keeps_nothing() {
        let (mut s, mut peer) = pair().await;
        s.write_all(b"small").await.unwrap();
        s.flush().await.unwrap();
        let mut buf = [0u8; 5];
        peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"small");
        let c = s.as_any().downcast_ref::<Coalesce>().unwrap();
        assert_eq!(c.pending.capacity(), 0, "no buffer is kept after a flush");
    }

    #[tokio::test]
    async fn large_vectored_writes_pass_through_whole() {
        let (mut s, mut peer) = pair().await;
        let a = vec![1u8; 3000];
        let b = vec![2u8; 300_000];
        s.write_all(&a).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        s.write_all(&b).await.unwrap();
        AsyncWriteExt::shutdown(&mut s).await.unwrap();
        drop(s);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), a.len() + b.len());
        assert!(got[..3000].iter().all(|x| *x == 1));
        assert!(got[3000..].iter().all(|x| *x == 2));
    }
}
