//! An HTTP/2 connection before its first request, held without the `h2` crate: parked.
//!
//! The `h2` crate takes its codec's buffers at the handshake (a 16 KiB write buffer, an 8 KiB
//! read buffer, a 4 KiB HPACK buffer) and keeps them for the connection's life, so an idle
//! connection it serves stays at about 18 KiB resident. Clients open HTTP/2 connections before
//! they have a request (a browser's preconnect, a player's or a CDN tier's connection pool, a
//! viewer who waits for a live stream to start), and such a connection may wait a long time.
//! Until its first request it is parked here instead:
//!
//! - the server's SETTINGS (the [`greeting`], the very frame `h2` sends with the same
//!   [`builder`]) is sent at once, as `h2` would (RFC 9113 §3.4);
//! - [`Parker`] reads the client's preface and the frames a client sends before a request (its
//!   first SETTINGS, acknowledged from here; its ACK of ours; WINDOW_UPDATEs of the connection;
//!   PRIORITY) and keeps their bytes, a few dozen, at most [`KEPT_MAX`];
//! - the first other frame (a request, a PING, anything) wakes it: the connection goes to `h2`
//!   as [`Resumed`], which hands `h2` every kept byte before anything more from the socket,
//!   and drops from what `h2` writes the two frames the parked connection has sent already
//!   ([`Unsent`]: its SETTINGS, and its ACK of the client's first SETTINGS). The client sees
//!   each frame once, and `h2` ends in the state it would have reached on its own.
//!
//! The module holds no I/O but [`Resumed`]'s adapter and [`greeting`]'s in-memory capture; the
//! waiting itself (deadlines, eviction, drain) is `downstream::h2`'s.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::downstream::h2settings::{Peer, Tracker};
use crate::downstream::h2wire::{
    ACK, DEFAULT_WINDOW, ENABLE_CONNECT_PROTOCOL, ENABLE_PUSH, FRAME_HEADER_LEN, FrameHead,
    INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_WINDOW, PREFACE, PRIORITY, SETTINGS, WINDOW_UPDATE,
};
use crate::settings::H2Limits;

/// Most bytes a parked connection keeps (the preface and the frames before a request: about
/// 100 from browsers and `nghttp`); a client that sends more is handed to `h2` at once.
pub(crate) const KEPT_MAX: usize = 512;

/// A SETTINGS frame with the ACK flag (RFC 9113 §6.5).
pub(crate) const SETTINGS_ACK: [u8; FRAME_HEADER_LEN] = [0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0];

/// GOAWAY with last stream 0 and NO_ERROR (RFC 9113 §6.8): how a parked connection, which has
/// no stream, is closed (idle, evicted, draining).
pub(crate) const GOAWAY: [u8; 17] = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The `h2` server builder, every limit set from `h2`. The one place the server's SETTINGS
/// come from: the [`greeting`] of a parked connection and the handshake of a woken one use it.
pub(crate) fn builder(h2: &H2Limits) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_header_list_size(h2.max_header_list_size)
        .max_frame_size(h2.max_frame_size)
        .initial_window_size(h2.initial_window_size)
        .initial_connection_window_size(h2.connection_window_size)
        .max_concurrent_reset_streams(h2.max_concurrent_reset_streams)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(h2.max_local_error_reset_streams))
        .max_send_buffer_size(h2.max_send_buffer_size)
        // WebSocket over HTTP/2 (RFC 8441 extended CONNECT) for the sub-protocol.
        .enable_connect_protocol();
    builder
}

/// Why the server's SETTINGS could not be captured (connections are then not parked).
#[derive(Debug, thiserror::Error)]
pub(crate) enum GreetingError {
    /// Reading what the in-memory handshake wrote failed.
    #[error("capturing h2's SETTINGS: {0}")]
    Io(#[from] io::Error),
    /// `h2` wrote nothing within the time allowed.
    #[error("capturing h2's SETTINGS: nothing written")]
    Silent,
    /// `h2`'s first frame was not a SETTINGS frame without flags: its type and flags.
    #[error("capturing h2's SETTINGS: the first frame has type {0} and flags {1}")]
    NotSettings(u8, u8),
}

/// The SETTINGS frame `h2` sends first on every connection, captured from an `h2` handshake
/// with [`builder`] over an in-memory pipe (`h2` writes it before it reads the preface). Done
/// once per process: the limits do not change while it runs.
pub(crate) async fn greeting(h2: &H2Limits) -> Result<Bytes, GreetingError> {
    let (server, mut client) = tokio::io::duplex(4096);
    let handshake = builder(h2).handshake::<_, Bytes>(server);
    let read = async {
        let mut head = [0u8; FRAME_HEADER_LEN];
        client.read_exact(&mut head).await?;
        let h = FrameHead::parse(&head);
        if h.kind != SETTINGS || h.flags != 0 {
            return Err(GreetingError::NotSettings(h.kind, h.flags));
        }
        let mut frame = head.to_vec();
        frame.resize(h.whole(), 0);
        client.read_exact(&mut frame[FRAME_HEADER_LEN..]).await?;
        Ok(Bytes::from(frame))
    };
    // The handshake is polled alongside: it writes the frame, then waits for a preface that
    // never comes, and is dropped with the pipe.
    let captured = async {
        tokio::select! {
            r = read => r,
            _ = handshake => Err(GreetingError::Silent),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), captured)
        .await
        .unwrap_or(Err(GreetingError::Silent))
}

/// Why a parked connection goes to `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A frame of this type, which only `h2` can answer: a request (HEADERS), a PING, a
    /// GOAWAY, or anything the parked connection does not keep.
    Frame(u8),
    /// The bytes are not the HTTP/2 preface: `h2` refuses them its own way.
    NotPreface,
    /// The client's first frame is not a valid SETTINGS frame (RFC 9113 §3.4, §6.5), or a
    /// later SETTINGS frame came: `h2` acknowledges or refuses it.
    Settings,
    /// The next frame would take the kept bytes past [`KEPT_MAX`].
    Bound,
}

/// What the bytes read so far call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for more bytes.
    More,
    /// The client's first SETTINGS frame is whole and valid: acknowledge it (send
    /// [`SETTINGS_ACK`]), then scan again.
    Ack,
    /// Hand the connection to `h2`, with every byte read.
    Wake(Wake),
}

/// Reads a parked connection's bytes, frame by frame, from the preface on.
#[derive(Debug, Default)]
pub(crate) struct Parker {
    /// Bytes known to be kept: the preface, then whole frames.
    scanned: usize,
    /// The client's first SETTINGS was acknowledged from here.
    acked: bool,
    /// The client acknowledged the server's SETTINGS: it reads what it is sent.
    acknowledged: bool,
    /// What the client's kept WINDOW_UPDATEs added to the connection's window.
    granted: u64,
}

impl Parker {
    /// Whether the parked connection acknowledged the client's first SETTINGS (then `h2`'s own
    /// ACK of it is dropped, [`Unsent`]).
    pub(crate) fn acked(&self) -> bool {
        self.acked
    }

    /// Whether the client has acknowledged the server's SETTINGS.
    pub(crate) fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// Scans `bytes`, everything the client has sent so far (the same bytes as last time
    /// plus what has come since), from where the last scan stopped.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Step {
        if self.scanned < PREFACE.len() {
            let n = bytes.len().min(PREFACE.len());
            if bytes.get(..n) != PREFACE.get(..n) {
                return Step::Wake(Wake::NotPreface);
            }
            if n < PREFACE.len() {
                return Step::More;
            }
            self.scanned = PREFACE.len();
        }
        loop {
            let rest = bytes.get(self.scanned..).unwrap_or_default();
            let Some(FrameHead {
                len,
                kind,
                flags,
                stream,
            }) = FrameHead::at(rest)
            else {
                return self.more(FRAME_HEADER_LEN);
            };
            // The preface ends with the client's SETTINGS (RFC 9113 §3.4); only that one is
            // acknowledged here.
            let settings = kind == SETTINGS && flags & ACK == 0;
            let first = self.scanned == PREFACE.len();
            if settings != first || (settings && stream != 0) {
                return Step::Wake(Wake::Settings);
            }
            // Whether the frame may be kept is told by its header: anything else (a request
            // among them) wakes the connection without waiting for its payload.
            let keepable = settings
                || match kind {
                    SETTINGS => len == 0 && stream == 0,
                    WINDOW_UPDATE => len == 4 && stream == 0,
                    PRIORITY => len == 5 && stream != 0,
                    _ => false,
                };
            if !keepable {
                return Step::Wake(Wake::Frame(kind));
            }
            let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
                return self.more(FRAME_HEADER_LEN + len);
            };
            let word = |at: usize| {
                payload.get(at..at + 4).map_or(0, |w| {
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]) & 0x7fff_ffff
                })
            };
            match kind {
                _ if settings => {
                    if !valid_settings(payload) {
                        return Step::Wake(Wake::Settings);
                    }
                    self.scanned += FRAME_HEADER_LEN + len;
                    self.acked = true;
                    return Step::Ack;
                }
                SETTINGS => self.acknowledged = true,
                WINDOW_UPDATE => {
                    // A zero increment, or a window past 2^31-1, is h2's to refuse at once
                    // (RFC 9113 §6.9, §6.9.1).
                    self.granted += u64::from(word(0));
                    if word(0) == 0 || u64::from(DEFAULT_WINDOW) + self.granted > MAX_WINDOW {
                        return Step::Wake(Wake::Frame(kind));
                    }
                }
                // A stream that depends on itself is h2's to reset (RFC 9113 §5.3.1).
                PRIORITY if word(0) == stream => return Step::Wake(Wake::Frame(kind)),
                _ => {}
            }
            self.scanned += FRAME_HEADER_LEN + len;
        }
    }

    /// Waits for the next frame's `need` bytes, if they fit in [`KEPT_MAX`].
    fn more(&self, need: usize) -> Step {
        if self.scanned + need > KEPT_MAX {
            Step::Wake(Wake::Bound)
        } else {
            Step::More
        }
    }
}

/// Whether a SETTINGS payload is one `h2` accepts (RFC 9113 §6.5, §6.5.2): whole entries, and
/// every value it bounds within its bounds. Anything else is `h2`'s to refuse.
fn valid_settings(payload: &[u8]) -> bool {
    payload.len().is_multiple_of(6)
        && payload.chunks_exact(6).all(|e| {
            let id = u16::from_be_bytes([e[0], e[1]]);
            let value = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
            match id {
                ENABLE_PUSH | ENABLE_CONNECT_PROTOCOL => value <= 1,
                INITIAL_WINDOW_SIZE => u64::from(value) <= MAX_WINDOW,
                MAX_FRAME_SIZE => (16_384..=16_777_215).contains(&value),
                _ => true,
            }
        })
}

/// What to do with the front of what `h2` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// This many bytes are taken without being written: sent already, or held until their
    /// frame's header is whole.
    Take(usize),
    /// Write this many bytes.
    Send(usize),
}

/// `h2`'s greeting does not match the captured one (a bug: the connection is closed).
#[derive(Debug, thiserror::Error)]
#[error("h2's SETTINGS differ from the ones the parked connection sent")]
pub(crate) struct Mismatch;

/// Where `h2`'s output is, after its greeting.
#[derive(Debug, Clone, Copy)]
enum At {
    /// At a frame's start, `have` bytes of its header held from earlier writes.
    Start {
        head: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// A held header goes out: `sent` of its bytes written; then `body` more bytes.
    Held {
        head: [u8; FRAME_HEADER_LEN],
        sent: usize,
        body: usize,
    },
    /// This many bytes of a frame that goes out are left.
    Within(usize),
    /// Nothing is left to drop.
    Done,
}

/// The frames `h2` writes that a parked connection sent already, taken out of its output: its
/// SETTINGS (its first bytes, which must equal the greeting) and, when the parked connection
/// acknowledged the client's first SETTINGS, `h2`'s first SETTINGS ACK (the one for that same
/// frame, which `h2` reads first). Every other byte goes out in order.
#[derive(Debug)]
pub(crate) struct Unsent {
    greeting: Bytes,
    /// Greeting bytes matched so far.
    matched: usize,
    /// A SETTINGS ACK is still to drop.
    ack: bool,
    at: At,
}

impl Unsent {
    /// After a parked connection sent `greeting` and, if `ack`, a SETTINGS ACK.
    pub(crate) fn new(greeting: Bytes, ack: bool) -> Self {
        Self {
            greeting,
            matched: 0,
            ack,
            at: At::Start {
                head: [0; FRAME_HEADER_LEN],
                have: 0,
            },
        }
    }

    /// For a connection that was not parked: nothing to drop.
    pub(crate) fn none() -> Self {
        Self {
            greeting: Bytes::new(),
            matched: 0,
            ack: false,
            at: At::Done,
        }
    }

    /// Whether every further byte goes out as it is.
    pub(crate) fn done(&self) -> bool {
        matches!(self.at, At::Done)
    }

    /// Header bytes taken earlier that go out before anything else.
    pub(crate) fn held(&self) -> &[u8] {
        match &self.at {
            At::Held { head, sent, .. } => head.get(*sent..).unwrap_or_default(),
            _ => &[],
        }
    }

    /// `n` of the [`held`](Self::held) bytes were written.
    pub(crate) fn wrote_held(&mut self, n: usize) {
        if let At::Held { head, sent, body } = self.at {
            let sent = sent + n;
            self.at = if sent < FRAME_HEADER_LEN {
                At::Held { head, sent, body }
            } else if body > 0 {
                At::Within(body)
            } else {
                self.start()
            };
        }
    }

    /// What to do with the front of `buf`, the next bytes `h2` writes (call with nothing
    /// [`held`](Self::held)).
    pub(crate) fn front(&mut self, buf: &[u8]) -> Result<Front, Mismatch> {
        if self.matched < self.greeting.len() {
            let n = buf.len().min(self.greeting.len() - self.matched);
            if buf.get(..n) != self.greeting.get(self.matched..self.matched + n) {
                return Err(Mismatch);
            }
            self.matched += n;
            if self.matched == self.greeting.len() {
                self.at = self.start();
            }
            return Ok(Front::Take(n));
        }
        Ok(match self.at {
            At::Done | At::Held { .. } => Front::Send(buf.len()),
            At::Within(left) => Front::Send(left.min(buf.len())),
            At::Start { have: 0, .. } if buf.len() >= FRAME_HEADER_LEN => {
                let mut head = [0; FRAME_HEADER_LEN];
                head.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
                if head == SETTINGS_ACK {
                    self.ack = false;
                    self.at = At::Done;
                    Front::Take(FRAME_HEADER_LEN)
                } else {
                    let whole = FrameHead::parse(&head).whole();
                    self.at = At::Within(whole);
                    Front::Send(whole.min(buf.len()))
                }
            }
            At::Start { mut head, have } => {
                let n = (FRAME_HEADER_LEN - have).min(buf.len());
                head[have..have + n].copy_from_slice(&buf[..n]);
                let have = have + n;
                self.at = if have < FRAME_HEADER_LEN {
                    At::Start { head, have }
                } else if head == SETTINGS_ACK {
                    self.ack = false;
                    At::Done
                } else {
                    At::Held {
                        head,
                        sent: 0,
                        body: FrameHead::parse(&head).len,
                    }
                };
                Front::Take(n)
            }
        })
    }

    /// `n` bytes of a [`Front::Send`] were written.
    pub(crate) fn wrote(&mut self, n: usize) {
        if let At::Within(left) = self.at {
            self.at = if left > n {
                At::Within(left - n)
            } else {
                self.start()
            };
        }
    }

    /// A frame's start: the next one, or the end when no ACK is left to drop.
    fn start(&self) -> At {
        if self.ack {
            At::Start {
                head: [0; FRAME_HEADER_LEN],
                have: 0,
            }
        } else {
            At::Done
        }
    }
}

/// The stream `h2` serves a connection on: reads give the bytes a parked connection kept
/// before anything from the socket, and every byte read passes the connection's [`Tracker`]
/// (what the client told that `h2` keeps to itself, `h2settings`); writes pass through
/// [`Unsent`].
pub(crate) struct Resumed<S> {
    inner: S,
    /// Kept bytes not read yet (freed once read).
    kept: Vec<u8>,
    at: usize,
    unsent: Unsent,
    tracker: Tracker,
}

impl<S> Resumed<S> {
    /// A woken parked connection: `kept` is everything it read.
    pub(crate) fn new(inner: S, kept: Vec<u8>, unsent: Unsent) -> Self {
        Self {
            inner,
            kept,
            at: 0,
            unsent,
            tracker: Tracker::new(),
        }
    }

    /// A connection that was never parked.
    pub(crate) fn fresh(inner: S) -> Self {
        Self::new(inner, Vec::new(), Unsent::none())
    }

    /// The connection underneath.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// What the client tells the connection, as it is read.
    pub(crate) fn peer(&self) -> Peer {
        self.tracker.peer()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Resumed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if this.at < this.kept.len() && buf.remaining() > 0 {
            let n = buf.remaining().min(this.kept.len() - this.at);
            buf.put_slice(&this.kept[this.at..this.at + n]);
            this.at += n;
            if this.at == this.kept.len() {
                this.kept = Vec::new();
                this.at = 0;
            }
        } else {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        if let Some(new) = buf.filled().get(before..) {
            this.tracker.feed(new);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Resumed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unsent.done() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        ready!(this.poll_held(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.unsent.front(buf) {
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            Ok(Front::Take(n)) => Poll::Ready(Ok(n)),
            Ok(Front::Send(n)) => {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
                this.unsent.wrote(n);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.unsent.done() {
            return Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> Resumed<S> {
    /// Writes the header bytes [`Unsent`] holds (taken from `h2` already, so they go out
    /// before anything else, a flush included).
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.held().is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, self.unsent.held()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent.wrote_held(n);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::h2wire::test_frames::{frame, settings};

    /// Scans `bytes` as they arrive in pieces of `step`; the steps seen (More only once each
    /// time it is the answer to a piece) and the last one.
    fn scan_in(bytes: &[u8], step: usize) -> (Vec<Step>, Parker) {
        let mut p = Parker::default();
        let mut steps = Vec::new();
        let mut end = 0;
        while end < bytes.len() {
            end = (end + step).min(bytes.len());
            loop {
                let s = p.scan(&bytes[..end]);
                if s != Step::More {
                    steps.push(s);
                }
                if s != Step::Ack {
                    break;
                }
            }
            if matches!(steps.last(), Some(Step::Wake(_))) {
                break;
            }
        }
        (steps, p)
    }

    #[test]
    fn keeps_what_a_client_sends_before_its_request_and_wakes_on_the_request() {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[(0x3, 100), (0x4, 65_535), (0x2, 0)]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &(16u32 << 20).to_be_bytes()));
        c.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 200]));
        c.extend(frame(SETTINGS, ACK, 0, &[]));
        let parked = c.len();
        c.extend(frame(0x1, 0x5, 1, &[0x82, 0x86, 0x84]));
        for step in [1, 2, 7, 9, 100, c.len()] {
            let (steps, p) = scan_in(&c, step);
            assert_eq!(
                steps,
                vec![Step::Ack, Step::Wake(Wake::Frame(0x1))],
                "in pieces of {step}"
            );
            assert!(p.acked() && p.acknowledged());
            let (steps, p) = scan_in(&c[..parked], step);
            assert_eq!(steps, vec![Step::Ack], "parked, in pieces of {step}");
            assert!(p.acknowledged());
        }
    }

    #[test]
    fn anything_h2_must_answer_or_refuse_wakes_the_connection() {
        let start = |extra: Vec<u8>| {
            let mut c = PREFACE.to_vec();
            c.extend(settings(&[]));
            c.extend(extra);
            scan_in(&c, c.len()).0
        };
        let woken = |kind| vec![Step::Ack, Step::Wake(Wake::Frame(kind))];
        assert_eq!(start(frame(0x6, 0, 0, &[0; 8])), woken(0x6), "PING");
        assert_eq!(start(frame(0x7, 0, 0, &[0; 8])), woken(0x7), "GOAWAY");
        assert_eq!(start(frame(0x0, 0, 1, b"x")), woken(0x0), "DATA");
        assert_eq!(
            start(frame(WINDOW_UPDATE, 0, 1, &[0, 0, 1, 0])),
            woken(WINDOW_UPDATE),
            "a stream's WINDOW_UPDATE"
        );
        assert_eq!(
            start(frame(WINDOW_UPDATE, 0, 0, &[0; 4])),
            woken(WINDOW_UPDATE),
            "a zero increment"
        );
        assert_eq!(start(frame(PRIORITY, 0, 0, &[0; 5])), woken(PRIORITY));
        assert_eq!(
            start(frame(SETTINGS, ACK, 0, &[0; 6])),
            woken(SETTINGS),
            "an ACK with a payload"
        );
        assert_eq!(
            start(settings(&[(0x2, 0)])),
            vec![Step::Ack, Step::Wake(Wake::Settings)],
            "a second SETTINGS"
        );
        assert_eq!(
            start(frame(0x1, 0x4, 1, &[0; KEPT_MAX])[..FRAME_HEADER_LEN].to_vec()),
            woken(0x1),
            "a request, woken by its frame header alone"
        );
        assert_eq!(
            start(frame(PRIORITY, 0, 3, &[0, 0, 0, 3, 7])),
            woken(PRIORITY),
            "a stream that depends on itself"
        );
        let mut grants = frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes());
        assert_eq!(start(grants.clone()), vec![Step::Ack], "up to 2^31-1");
        grants.extend(frame(WINDOW_UPDATE, 0, 0, &0x1_0000u32.to_be_bytes()));
        assert_eq!(start(grants), woken(WINDOW_UPDATE), "past 2^31-1");
        let mut c = PREFACE.to_vec();
        c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        assert_eq!(scan_in(&c, 1).0, vec![Step::Wake(Wake::Settings)]);
        for bad in [
            (0x2, 2),
            (0x4, 0x8000_0000),
            (0x5, 16_383),
            (0x5, 16_777_216),
        ] {
            let mut c = PREFACE.to_vec();
            c.extend(settings(&[bad]));
            assert_eq!(
                scan_in(&c, 5).0,
                vec![Step::Wake(Wake::Settings)],
                "{bad:?}"
            );
        }
        let mut c = PREFACE.to_vec();
        c.extend(frame(SETTINGS, 0, 0, &[0; 5]));
        assert_eq!(scan_in(&c, 3).0, vec![Step::Wake(Wake::Settings)]);
        assert_eq!(
            scan_in(b"GET / HTTP/1.1\r\n", 4).0,
            vec![Step::Wake(Wake::NotPreface)]
        );
        // Many small frames: handed on once they reach the bound.
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        for _ in 0..40 {
            c.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 7]));
        }
        let (steps, p) = scan_in(&c, 13);
        assert_eq!(steps, vec![Step::Ack, Step::Wake(Wake::Bound)]);
        assert!(p.scanned <= KEPT_MAX);
    }

    /// Passes `out` (what h2 writes) through `unsent` in pieces of `step`, as a socket that
    /// takes at most `take` bytes per write would; returns what reached the socket.
    fn filtered(mut unsent: Unsent, out: &[u8], step: usize, take: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let end = (at + step).min(out.len());
            let buf = &out[at..end];
            while !unsent.held().is_empty() {
                let h = unsent.held();
                let n = h.len().min(take);
                wire.extend_from_slice(&h[..n]);
                unsent.wrote_held(n);
            }
            match unsent.front(buf).expect("the greeting matches") {
                Front::Take(n) => at += n,
                Front::Send(n) => {
                    let n = n.min(take);
                    wire.extend_from_slice(&buf[..n]);
                    unsent.wrote(n);
                    at += n;
                }
            }
        }
        assert!(unsent.held().is_empty(), "a held header was never written");
        wire
    }

    #[test]
    fn the_frames_sent_while_parked_leave_once_whatever_the_write_sizes() {
        let greeting = Bytes::from(settings(&[(0x3, 100), (0x4, 1 << 20)]));
        let update = frame(WINDOW_UPDATE, 0, 0, &(15u32 << 20).to_be_bytes());
        let headers = frame(0x1, 0x4, 1, &[0x88]);
        let data = frame(0x0, 0x1, 1, &[7; 300]);
        let ack = SETTINGS_ACK.to_vec();
        // The ACK before or after the connection's WINDOW_UPDATE, and a later ACK (for a
        // SETTINGS the client sent after waking) that goes out.
        for order in [
            vec![&update, &ack, &headers, &data, &ack],
            vec![&ack, &update, &headers, &data, &ack],
        ] {
            let mut out = greeting.to_vec();
            for f in &order {
                out.extend_from_slice(f);
            }
            let want: Vec<u8> = [&update, &headers, &data, &ack]
                .iter()
                .flat_map(|f| f.iter().copied())
                .collect();
            for step in [1, 4, 9, 10, 13, 64, out.len()] {
                for take in [1, 5, 9, usize::MAX] {
                    let wire = filtered(Unsent::new(greeting.clone(), true), &out, step, take);
                    assert_eq!(wire, want, "pieces of {step}, socket takes {take}");
                }
            }
        }
        // No ACK was sent while parked: only the greeting is dropped.
        let mut out = greeting.to_vec();
        out.extend(&ack);
        out.extend(&headers);
        let wire = filtered(Unsent::new(greeting.clone(), false), &out, 5, 3);
        assert_eq!(wire, [ack.clone(), headers.clone()].concat());
        // Never parked: everything goes out.
        assert_eq!(filtered(Unsent::none(), &out, 7, 2), out);
        // A greeting that is not the one sent is refused.
        let mut other = Unsent::new(greeting.clone(), true);
        assert!(other.front(&settings(&[(0x3, 99)])).is_err());
    }

    /// A frame header that comes in two writes is held until it is whole, and a flush sends it
    /// even when no further write comes (an empty frame).
    #[tokio::test]
    async fn a_held_header_goes_out_with_a_flush() {
        use tokio::io::AsyncWriteExt;

        let greeting = Bytes::from(settings(&[]));
        let (io, mut client) = tokio::io::duplex(4096);
        let mut resumed = Resumed::new(io, Vec::new(), Unsent::new(greeting.clone(), true));
        resumed.write_all(&greeting).await.unwrap();
        let end = frame(0x0, 0x1, 1, &[]);
        resumed.write_all(&end[..5]).await.unwrap();
        resumed.write_all(&end[5..]).await.unwrap();
        resumed.flush().await.unwrap();
        let mut got = [0u8; FRAME_HEADER_LEN];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the held header was sent")
            .unwrap();
        assert_eq!(
            got[..],
            end[..],
            "only the empty DATA frame, the greeting taken out"
        );
    }

    #[tokio::test]
    async fn the_greeting_is_h2s_settings_frame_with_our_limits() {
        let limits = crate::settings::H2Limits::default();
        let g = greeting(&limits).await.expect("captured");
        assert_eq!(g[3], SETTINGS);
        assert_eq!(g[4], 0, "not an ACK");
        let entries: Vec<(u16, u32)> = g[FRAME_HEADER_LEN..]
            .chunks_exact(6)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                )
            })
            .collect();
        assert!(
            entries.contains(&(0x3, limits.max_concurrent_streams)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&(0x4, limits.initial_window_size)),
            "{entries:?}"
        );
    }

    /// The server's end of a pipe, recording every byte written to the client.
    struct Recorded {
        io: tokio::io::DuplexStream,
        wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl AsyncRead for Recorded {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recorded {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
            this.wire.lock().unwrap().extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
        }
    }

    /// The SETTINGS frames and SETTINGS ACKs in `wire`.
    fn settings_frames(wire: &[u8]) -> (usize, usize) {
        let (mut settings, mut acks, mut at) = (0, 0, 0);
        while let Some(head) = FrameHead::at(&wire[at..]) {
            if head.kind == SETTINGS {
                if head.flags & ACK == 0 {
                    settings += 1;
                } else {
                    acks += 1;
                }
            }
            at += head.whole();
        }
        (settings, acks)
    }

    /// A real `h2` client against a parked, then woken, `h2` server: the client gets its
    /// response, and sees the server's SETTINGS once and one ACK of its own SETTINGS.
    #[tokio::test]
    async fn an_h2_client_is_served_by_a_woken_connection() {
        use tokio::io::AsyncWriteExt;

        let limits = crate::settings::H2Limits::default();
        let g = greeting(&limits).await.expect("captured");
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let wire = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut io = Recorded {
            io: server_io,
            wire: wire.clone(),
        };
        let server = tokio::spawn(async move {
            io.write_all(&g).await.unwrap();
            let mut kept = Vec::new();
            let mut p = Parker::default();
            let woken = 'parked: loop {
                let n = io.read_buf(&mut kept).await.unwrap();
                assert!(n > 0, "the client left");
                loop {
                    match p.scan(&kept) {
                        Step::More => break,
                        Step::Ack => io.write_all(&SETTINGS_ACK).await.unwrap(),
                        Step::Wake(w) => {
                            assert_eq!(w, Wake::Frame(0x1), "woken by the request");
                            break 'parked Resumed::new(io, kept, Unsent::new(g, p.acked()));
                        }
                    }
                }
            };
            assert!(p.acknowledged(), "the client acknowledged while parked");
            let mut conn = builder(&limits).handshake::<_, Bytes>(woken).await.unwrap();
            let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
            let mut send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            send.send_data(Bytes::from_static(b"hello"), true).unwrap();
            while conn.accept().await.is_some() {}
        });
        let (mut client, conn) = h2::client::handshake(client_io).await.unwrap();
        let conn = tokio::spawn(conn);
        // The connection sits parked (the client reads the greeting and acknowledges it)
        // before the request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(settings_frames(&wire.lock().unwrap()), (1, 1), "parked");
        let req = http::Request::get("http://x/a").body(()).unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"hello");
        drop((body, client));
        // The client's connection ends once it has nothing open; then the server's does.
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the connection ends")
            .expect("not aborted")
            .expect("without an error");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server ends")
            .expect("without a panic");
        assert_eq!(
            settings_frames(&wire.lock().unwrap()),
            (1, 1),
            "each sent once"
        );
    }
}
