//! Write coalescing without a standing write buffer.
//!
//! [`Held`] keeps small writes back from the socket until the next write that does not fit
//! beside them, or a flush, and then sends what it holds and that write in one vectored write.
//! Its buffer exists only while it holds something: an idle connection holds none. Two users:
//!
//! - HTTP/1.1 ([`Coalesce`], up to [`HOLD`]): pingora's session writes a response head and then
//!   its body as two writes. Through an unbuffered socket that is two `send` calls (two TCP
//!   segment trains, two wake-ups of the client); through a buffered one every connection
//!   holds its buffer while idle, and every body is copied into it. Holding only the small
//!   head, a cache hit leaves in one `writev` whatever the body's size, the body uncopied.
//! - HTTP/2 (`h2park::Resumed`, up to [`BEHIND`](super::h2park::BEHIND)): the `h2` library
//!   writes every DATA frame whose payload it does not copy as a write of its own, and flushes
//!   after each, so the frames of eight 15 KB responses made ready together left in eight
//!   `writev` calls, and a 600 KB segment in forty. Holding up to 64 KiB of frames, copied,
//!   they leave in a few (docs/benchmarks.md, "one write for many frames").

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use pingora::protocols::TimingDigest;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, UniqueID,
    UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// HTTP/1.1: writes up to this many bytes (in total with what is held) are held for the next
/// write instead of being sent at once.
const HOLD: usize = 4 * 1024;

/// Most slices handed to one vectored write (the held bytes and the caller's).
const SLICES: usize = 8;

/// Bytes written but not sent yet, up to a limit (see the module docs). The buffer, sent
/// part included, never grows past the limit.
#[derive(Debug)]
pub(crate) struct Held {
    bytes: Vec<u8>,
    /// How many of `bytes` were sent already.
    sent: usize,
    limit: usize,
    /// When the oldest byte held was written (`None` while nothing is).
    since: Option<Instant>,
}

/// First size of a buffer that starts with a small write (a head, a control frame), grown up
/// to the limit as it fills: those do not take a whole 64 KiB. One that starts with a larger
/// write (a DATA frame) takes the limit at once, without growing copies while a batch fills.
const FIRST: usize = 16 * 1024;

/// What counts as a small first write ([`FIRST`]).
const SMALL: usize = 4 * 1024;

impl Held {
    /// Holds up to `limit` bytes.
    pub(crate) const fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            sent: 0,
            limit,
            since: None,
        }
    }

    /// How long the oldest byte held has waited (zero when nothing is held).
    pub(crate) fn waited(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// True when nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// The buffer's size (0 when nothing is held).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    fn unsent(&self) -> &[u8] {
        self.bytes.get(self.sent..).unwrap_or_default()
    }

    /// `n` more held bytes were sent; all of them sent, the buffer goes.
    fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.is_empty() {
            *self = Self::new(self.limit);
        }
    }

    /// Writes `bufs` to `inner` after what is held, or holds them too while all fits within
    /// the limit; how many bytes of `bufs` were taken.
    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        // The sent part counts: it leaves the buffer only once everything is sent.
        if self.bytes.len() + total <= self.limit {
            if self.bytes.capacity() == 0 {
                let first = if total < SMALL { FIRST } else { self.limit };
                self.bytes.reserve_exact(first.min(self.limit));
                self.since = Some(Instant::now());
            }
            for b in bufs {
                self.bytes.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        loop {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut n = 0;
            let held = self.unsent();
            if !held.is_empty() {
                slices[0] = IoSlice::new(held);
                n = 1;
            }
            let held = held.len();
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                if n == SLICES {
                    break;
                }
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            let written = ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &slices[..n]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written <= held {
                // Only held bytes went out (all of them, maybe): none of the caller's yet, and
                // `Ok(0)` would read as a closed socket to the caller.
                self.advance(written);
                continue;
            }
            self.advance(held);
            return Poll::Ready(Ok(written - held));
        }
    }

    /// Sends every held byte (a vectored write, as every other write here).
    pub(crate) fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let slice = [IoSlice::new(self.unsent())];
            let written = ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &slice))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

/// A stream whose small writes wait for the next write or flush (HTTP/1.1; module docs).
#[derive(Debug)]
pub(crate) struct Coalesce {
    inner: Stream,
    held: Held,
}

impl Coalesce {
    /// Wraps `inner`; boxed, as pingora's sessions take streams.
    pub(crate) fn wrap(inner: Stream) -> Stream {
        Box::new(Self {
            inner,
            held: Held::new(HOLD),
        })
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
        let this = &mut *self;
        this.held
            .poll_write(&mut this.inner, cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.held.poll_write(&mut this.inner, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.held.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.held.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
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
        assert_eq!(c.held.capacity(), 0, "no buffer is kept after a flush");
    }

    /// A writer that takes at most `most` bytes per call and records each call's bytes;
    /// with `stall`, every other call is not ready (a socket whose buffer is full).
    struct Calls {
        most: usize,
        calls: Vec<Vec<u8>>,
        stall: bool,
        stalled: bool,
    }

    impl AsyncWrite for Calls {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.stall {
                this.stalled = !this.stalled;
                if this.stalled {
                    return Poll::Pending;
                }
            }
            let mut call: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            call.truncate(this.most);
            let n = call.len();
            this.calls.push(call);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes `pieces` through a [`Held`] of `limit` to a writer taking `most` bytes per
    /// call (not ready every other call with `stall`), then drains it: the calls made. The
    /// buffer never grows past the limit.
    fn through(limit: usize, most: usize, stall: bool, pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut held = Held::new(limit);
        let mut w = Calls {
            most,
            calls: Vec::new(),
            stall,
            stalled: false,
        };
        for piece in pieces {
            let mut left: &[u8] = piece;
            while !left.is_empty() {
                match held.poll_write(&mut w, &mut cx, &[IoSlice::new(left)]) {
                    Poll::Ready(Ok(n)) => {
                        assert!(n > 0, "never Ok(0) for bytes given");
                        left = &left[n..];
                    }
                    Poll::Ready(Err(e)) => panic!("{e}"),
                    // Tried again, as the caller does once woken.
                    Poll::Pending => {}
                }
                assert!(
                    held.bytes.len() <= limit,
                    "held {} of {limit}",
                    held.bytes.len()
                );
            }
        }
        while held.poll_drain(&mut w, &mut cx).is_pending() {}
        assert!(held.is_empty());
        assert_eq!(held.capacity(), 0, "nothing is kept once drained");
        w.calls
    }

    #[test]
    fn writes_within_the_limit_leave_together_and_one_past_it_takes_them_along() {
        let (a, b, c) = (vec![1u8; 300], vec![2u8; 500], vec![3u8; 5000]);
        let calls = through(1024, usize::MAX, false, &[&a, &b]);
        assert_eq!(
            calls,
            vec![[a.clone(), b.clone()].concat()],
            "held, then drained once"
        );
        let calls = through(1024, usize::MAX, false, &[&a, &b, &c]);
        assert_eq!(
            calls,
            vec![[a, b, c].concat()],
            "the write that does not fit goes out with what was held, in one call"
        );
    }

    #[test]
    fn short_writes_keep_every_byte_in_order() {
        let pieces: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; 37 * usize::from(i) + 1])
            .collect();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let want = pieces.concat();
        for stall in [false, true] {
            for (limit, most) in [(64, 7), (1024, 100), (4096, 4096), (65_536, 1_000)] {
                let got = through(limit, most, stall, &refs).concat();
                assert_eq!(
                    got, want,
                    "limit {limit}, at most {most} per call, stall {stall}"
                );
            }
        }
    }

    #[test]
    fn an_empty_write_holds_nothing() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut held = Held::new(1024);
        let mut w = Calls {
            most: usize::MAX,
            calls: Vec::new(),
            stall: false,
            stalled: false,
        };
        assert!(matches!(
            held.poll_write(&mut w, &mut cx, &[IoSlice::new(&[])]),
            Poll::Ready(Ok(0))
        ));
        assert_eq!(held.capacity(), 0);
        assert_eq!(held.waited(), Duration::ZERO);
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
