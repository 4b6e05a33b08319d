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
//!   SETTINGS, acknowledged from here; its ACK of ours; WINDOW_UPDATEs of the connection;
//!   PRIORITY) and keeps their bytes, a few dozen, at most [`KEPT_MAX`];
//! - a PING is answered from here, as `h2` would (RFC 9113 §6.7), and the ACK of one dropped;
//! - the first other frame (a request, anything) wakes it: the connection goes to `h2`
//!   as [`Resumed`], which hands `h2` every kept byte before anything more from the socket,
//!   and drops from what `h2` writes the frames the parked connection has sent already
//!   ([`Unsent`]: its SETTINGS, and its ACKs of the client's SETTINGS). The client sees
//!   each frame once, and `h2` ends in the state it would have reached on its own.
//!
//! A connection that has served and fallen idle is parked here again (`h2idle` tells what it
//! carries): [`Parker::again`] reads on from the bytes that will tell its next `h2` the state,
//! drops late frames for streams that closed before (a WINDOW_UPDATE, an RST_STREAM), and
//! ends the connection itself on a frame no stream state allows and on the client's GOAWAY
//! ([`Step::Close`], also past [`KEPT_MAX`]), so that a new `h2` is woken only by a request on
//! a new stream (whose block must empty the client's HPACK table first when it may hold
//! entries) or by a frame `h2` refuses with a connection error.
//!
//! The module holds no I/O but [`Resumed`]'s adapter and [`greeting`]'s in-memory capture; the
//! waiting itself (deadlines, eviction, drain) is `downstream::h2`'s.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::downstream::coalesce::Held;
use crate::downstream::h2idle::{Again, Busy, Outbound};
use crate::downstream::h2settings::{Peer, Tracker};
use crate::downstream::h2wire::{
    ACK, CONTINUATION, DATA, DEFAULT_WINDOW, ENABLE_CONNECT_PROTOCOL, ENABLE_PUSH,
    FRAME_HEADER_LEN, FrameHead, GOAWAY as GOAWAY_FRAME, HEADERS, INITIAL_WINDOW_SIZE,
    MAX_FRAME_SIZE, MAX_WINDOW, NO_ERROR, PADDED, PING, PREFACE, PRIORITY, PRIORITY_FLAG,
    PROTOCOL_ERROR, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};
use crate::settings::H2Limits;

/// Most bytes a parked connection keeps (the preface and the frames before a request: about
/// 100 from browsers and `nghttp`); a client that sends more is handed to `h2` at once, or,
/// on a connection parked again, closed ([`Step::Close`]).
pub(crate) const KEPT_MAX: usize = 512;

/// A SETTINGS frame with the ACK flag (RFC 9113 §6.5).
pub(crate) const SETTINGS_ACK: [u8; FRAME_HEADER_LEN] = [0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0];

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
    if h2.park_when_idle.is_some() {
        // No HPACK dynamic table for the client's requests: a connection parked again hands a
        // new `h2` an empty decoder table (`h2idle`).
        builder.header_table_size(0);
    }
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
    /// A frame of this type, which only `h2` can answer: a request (HEADERS), a GOAWAY, or
    /// anything the parked connection does not keep, answer or drop.
    Frame(u8),
    /// The bytes are not the HTTP/2 preface: `h2` refuses them its own way.
    NotPreface,
    /// The client's first frame is not a SETTINGS frame (RFC 9113 §3.4), or a SETTINGS frame
    /// is not valid (§6.5): `h2` refuses it.
    Settings,
    /// The next frame would take the kept bytes past [`KEPT_MAX`].
    Bound,
}

/// What the bytes read so far call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for more bytes.
    More,
    /// A SETTINGS frame of the client is whole and valid, and kept: acknowledge it (send
    /// [`SETTINGS_ACK`]), then scan again.
    Ack,
    /// Hand the connection to `h2`, with every byte read.
    Wake(Wake),
    /// Remove the `len` bytes at `at` from what was read: a frame that needs no answer and
    /// must not reach `h2` (a PING's ACK; on a connection parked again, a late frame for a
    /// closed stream). Then scan again.
    Drop { at: usize, len: usize },
    /// Answer the PING of `len` bytes at `at` (RFC 9113 §6.7: an ACK with its payload, as
    /// `h2` would), remove it, and scan again.
    Pong {
        at: usize,
        len: usize,
        payload: [u8; 8],
    },
    /// A connection parked again ends here, with GOAWAY naming the last stream it served and
    /// this error code: PROTOCOL_ERROR for a frame no stream state allows (a request on a
    /// closed stream, RFC 9113 §5.1.1; a WINDOW_UPDATE or RST_STREAM on an idle one, §5.1;
    /// DATA, CONTINUATION or PUSH_PROMISE, an ACK of SETTINGS never sent), NO_ERROR for the
    /// client's own GOAWAY (it is leaving: no `h2` is woken for that) and for more kept bytes
    /// than [`KEPT_MAX`].
    Close(u32),
}

/// Reads a parked connection's bytes, frame by frame, from the preface on (or, parked again,
/// from the end of what tells a new `h2` the connection's state).
#[derive(Debug)]
pub(crate) struct Parker {
    /// Bytes known to be kept: the preface, then whole frames.
    scanned: usize,
    /// The client's SETTINGS frames acknowledged from here.
    acked: u32,
    /// The client acknowledged the server's SETTINGS: it reads what it is sent.
    acknowledged: bool,
    /// What the client's kept WINDOW_UPDATEs added to the connection's window.
    granted: u64,
    /// The connection's send window before them: the default one, or a connection parked
    /// again (`h2idle`) had this.
    base: u64,
    /// On a connection parked again: the last stream the client opened.
    again: Option<u32>,
    /// On a connection parked again whose client's HPACK table may hold entries: the request
    /// that wakes it must begin by emptying the table (`h2idle`).
    empty_first: bool,
}

impl Default for Parker {
    fn default() -> Self {
        Self {
            scanned: 0,
            acked: 0,
            acknowledged: false,
            granted: 0,
            base: u64::from(DEFAULT_WINDOW),
            again: None,
            empty_first: false,
        }
    }
}

impl Parker {
    /// For a connection parked again with `again`, whose bytes start with its replay.
    pub(crate) fn again(again: &Again) -> Self {
        Self {
            scanned: again.replay.len(),
            acked: 0,
            acknowledged: true,
            granted: 0,
            base: again.window,
            again: Some(again.last_stream),
            empty_first: again.hpack.holds(),
        }
    }

    /// How many of the client's SETTINGS the parked connection acknowledged (then `h2`'s own
    /// ACKs of them are dropped, [`Unsent`]).
    pub(crate) fn acked(&self) -> u32 {
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
            // The preface ends with the client's SETTINGS (RFC 9113 §3.4). Each SETTINGS is
            // acknowledged here and kept: nothing is sent before `h2` applies it.
            let settings = kind == SETTINGS && flags & ACK == 0;
            let first = self.again.is_none() && self.scanned == PREFACE.len();
            if (first && !settings) || (settings && stream != 0) {
                return Step::Wake(Wake::Settings);
            }
            // A closed stream: one the client opened before a connection was parked again.
            let closed = self
                .again
                .is_some_and(|last| stream % 2 == 1 && stream <= last);
            if self.again.is_some()
                && let Some(close) = again_refuses(kind, flags, stream, closed)
            {
                return close;
            }
            if kind == HEADERS && self.empty_first {
                return self.emptying(rest, len, flags);
            }
            // Whether the frame may be kept, answered or dropped is told by its header:
            // anything else (a request among them) wakes the connection without waiting for
            // its payload. An unknown frame type is dropped (RFC 9113 §4.1), as `h2` would.
            let ping = kind == PING && len == 8 && stream == 0;
            let late = (closed && matches!(kind, WINDOW_UPDATE | RST_STREAM) && len == 4)
                || kind > CONTINUATION;
            let keepable = settings
                || match kind {
                    // An ACK of our SETTINGS; a connection parked again has sent none.
                    SETTINGS => len == 0 && stream == 0 && self.again.is_none(),
                    WINDOW_UPDATE => len == 4 && stream == 0,
                    PRIORITY => len == 5 && stream != 0,
                    _ => false,
                };
            if !(keepable || ping || late) {
                return Step::Wake(Wake::Frame(kind));
            }
            let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
                return self.more(FRAME_HEADER_LEN + len);
            };
            let whole = FRAME_HEADER_LEN + len;
            if late || (ping && flags & ACK != 0) {
                return Step::Drop {
                    at: self.scanned,
                    len: whole,
                };
            }
            if ping {
                let mut echo = [0; 8];
                echo.copy_from_slice(payload);
                return Step::Pong {
                    at: self.scanned,
                    len: whole,
                    payload: echo,
                };
            }
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
                    self.scanned += whole;
                    self.acked += 1;
                    return Step::Ack;
                }
                SETTINGS => self.acknowledged = true,
                WINDOW_UPDATE => {
                    // A zero increment, or a window past 2^31-1, is h2's to refuse at once
                    // (RFC 9113 §6.9, §6.9.1).
                    self.granted += u64::from(word(0));
                    if word(0) == 0 || self.base + self.granted > MAX_WINDOW {
                        return Step::Wake(Wake::Frame(kind));
                    }
                }
                // A stream that depends on itself is h2's to reset (RFC 9113 §5.3.1); parked
                // again, a connection error here, so that no h2 is woken but by a request.
                PRIORITY if word(0) == stream && self.again.is_some() => {
                    return Step::Close(PROTOCOL_ERROR);
                }
                PRIORITY if word(0) == stream => return Step::Wake(Wake::Frame(kind)),
                _ => {}
            }
            self.scanned += whole;
        }
    }

    /// Whether the request `rest` starts with (a HEADERS frame of `len` bytes with `flags`)
    /// begins its header block by emptying the client's HPACK table, as the client must after
    /// acknowledging our SETTINGS_HEADER_TABLE_SIZE of 0 (RFC 7541 §4.2): a size update to 0,
    /// byte 0x20. Then it wakes the connection; else (or when the block does not start in this
    /// frame) the connection is closed with GOAWAY NO_ERROR naming the last stream served, and
    /// the client retries the request on a new connection (RFC 9113 §6.8).
    fn emptying(&self, rest: &[u8], len: usize, flags: u8) -> Step {
        let padded = flags & PADDED != 0;
        let skip = usize::from(padded) + if flags & PRIORITY_FLAG != 0 { 5 } else { 0 };
        let at = FRAME_HEADER_LEN + skip;
        if len <= skip {
            return Step::Close(NO_ERROR);
        }
        let Some(&first) = rest.get(at) else {
            return self.more(at + 1);
        };
        let pad = if padded {
            rest.get(FRAME_HEADER_LEN).map_or(0, |&p| usize::from(p))
        } else {
            0
        };
        if first == 0x20 && len > skip + pad {
            Step::Wake(Wake::Frame(HEADERS))
        } else {
            Step::Close(NO_ERROR)
        }
    }

    /// Waits for the next frame's `need` bytes, if they fit in [`KEPT_MAX`]. Past it, a
    /// connection parked before its first request goes to `h2`; one parked again is closed
    /// (GOAWAY NO_ERROR: a new `h2` woken by anything but a request would not yet know the
    /// streams the client opened before).
    fn more(&self, need: usize) -> Step {
        if self.scanned + need <= KEPT_MAX {
            Step::More
        } else if self.again.is_some() {
            Step::Close(NO_ERROR)
        } else {
            Step::Wake(Wake::Bound)
        }
    }
}

/// On a connection parked again: the end of the connection a frame of `kind` on `stream` (one
/// the client opened before, `opened_before`) calls for, if it does (see [`Step::Close`]).
fn again_refuses(kind: u8, flags: u8, stream: u32, opened_before: bool) -> Option<Step> {
    let refused = match kind {
        HEADERS => opened_before,
        WINDOW_UPDATE | RST_STREAM => stream != 0 && !opened_before,
        DATA | CONTINUATION | PUSH_PROMISE => true,
        SETTINGS => flags & ACK != 0,
        GOAWAY_FRAME => return Some(Step::Close(NO_ERROR)),
        _ => false,
    };
    refused.then_some(Step::Close(PROTOCOL_ERROR))
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
    /// This many payload bytes of a dropped frame are left to take.
    Dropping(usize),
    /// Nothing is left to drop.
    Done,
}

/// The frames `h2` writes that a parked connection sent already, taken out of its output: its
/// SETTINGS (its first bytes, which must equal the greeting) and, for each SETTINGS of the
/// client the parked connection acknowledged, `h2`'s ACK of it (its first ones: `h2` reads
/// those frames first and acknowledges in order); on a connection parked again (`h2idle`),
/// `h2`'s ACK of the replayed SETTINGS too, and its first
/// WINDOW_UPDATE of the connection (the credit it gives at the start, which the client holds
/// already). Every other byte goes out in order.
#[derive(Debug)]
pub(crate) struct Unsent {
    greeting: Bytes,
    /// Greeting bytes matched so far.
    matched: usize,
    /// SETTINGS ACKs still to drop.
    acks: u32,
    /// A WINDOW_UPDATE of the connection is still to drop.
    window: bool,
    at: At,
}

impl Unsent {
    /// After a parked connection sent `greeting` and `acks` SETTINGS ACKs.
    pub(crate) fn new(greeting: Bytes, acks: u32) -> Self {
        Self {
            greeting,
            matched: 0,
            acks,
            window: false,
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
            acks: 0,
            window: false,
            at: At::Done,
        }
    }

    /// For a connection parked again that acknowledged `acks` SETTINGS of the client while
    /// parked (besides the replayed one), whose client holds the credit a new `h2` gives the
    /// connection at its start when `window` (the first `h2` gave it: `h2idle::Again::credit`).
    pub(crate) fn again(greeting: Bytes, acks: u32, window: bool) -> Self {
        Self {
            window,
            ..Self::new(greeting, acks + 1)
        }
    }

    /// Whether the frame with header `head` is dropped; if so, it is no longer looked for.
    fn drops(&mut self, head: &[u8; FRAME_HEADER_LEN]) -> bool {
        if self.acks > 0 && *head == SETTINGS_ACK {
            self.acks -= 1;
            return true;
        }
        let h = FrameHead::parse(head);
        if self.window && h.kind == WINDOW_UPDATE && h.stream == 0 && h.len == 4 {
            self.window = false;
            return true;
        }
        false
    }

    /// After a dropped frame of `len` payload bytes.
    fn dropped(&self, len: usize) -> At {
        if len > 0 {
            At::Dropping(len)
        } else {
            self.start()
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
            At::Dropping(left) => {
                let n = left.min(buf.len());
                self.at = if n < left {
                    At::Dropping(left - n)
                } else {
                    self.start()
                };
                Front::Take(n)
            }
            At::Start { have: 0, .. } if buf.len() >= FRAME_HEADER_LEN => {
                let mut head = [0; FRAME_HEADER_LEN];
                head.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
                if self.drops(&head) {
                    self.at = self.dropped(FrameHead::parse(&head).len);
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
                } else if self.drops(&head) {
                    self.dropped(FrameHead::parse(&head).len)
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

    /// A frame's start: the next one, or the end when no frame is left to drop.
    fn start(&self) -> At {
        if self.acks > 0 || self.window {
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
/// [`Unsent`], and every byte `h2` writes through an [`Outbound`] (`h2idle`). The state is
/// shared with the connection's task ([`Resumed::link`]), which reads it and, once `h2` is
/// dropped, takes the socket back to park the connection again.
pub(crate) struct Resumed<S>(Arc<Mutex<Link<S>>>);

/// What [`Resumed`] holds.
struct Link<S> {
    inner: S,
    /// Kept bytes not read yet (freed once read).
    kept: Vec<u8>,
    at: usize,
    unsent: Unsent,
    tracker: Tracker,
    outbound: Outbound,
    /// The last thing `h2` asked of the socket was a flush, and it was done: `h2` flushes
    /// once its output is empty, and any write it tries after that (done or not) clears this.
    flushed: bool,
    /// What `h2` wrote that is not on the socket yet (up to [`BEHIND`]; `coalesce`).
    behind: Held,
    /// `h2` wrote since it last asked for a flush: the flush is put off once (see
    /// [`Resumed::poll_flush`](AsyncWrite::poll_flush)).
    fresh: bool,
    /// More than one request is in play on the connection ([`Resumed::batch`]): frames of
    /// several streams may be made ready together, and are worth holding to leave together.
    batching: bool,
}

/// Most bytes of `h2`'s frames held back from the socket, to leave together: 64 KiB, what the
/// kernel sends as one segment train on loopback and about what a client's default stream
/// window lets one response have in flight.
pub(crate) const BEHIND: usize = 64 * 1024;

/// Longest a byte is held behind by put-off flushes: a connection whose every poll finds
/// something new to write (a trickle of small frames on a busy runtime) still sends within it.
const PUT_OFF_MAX: Duration = Duration::from_millis(1);

impl<S> Resumed<S> {
    /// A woken parked connection: `kept` is everything it read, `tracker` what reads it.
    pub(crate) fn new(inner: S, kept: Vec<u8>, unsent: Unsent, tracker: Tracker) -> Self {
        Self(Arc::new(Mutex::new(Link {
            inner,
            kept,
            at: 0,
            unsent,
            tracker,
            outbound: Outbound::default(),
            flushed: true,
            behind: Held::new(BEHIND),
            fresh: false,
            batching: false,
        })))
    }

    /// Whether more than one request is in play on the connection: only then are `h2`'s
    /// writes held behind (with wide windows). One request's frames — a pull, or a live
    /// viewer's push of its next segment — leave as `h2` writes them: its own buffer and one
    /// DATA payload in one vectored write, neither copied nor put off (holding them copied
    /// each pushed segment and polled the connection once more, for nothing to join them:
    /// 8–10 % of a live fan-out's CPU per delivery).
    pub(crate) fn batch(&self, on: bool) {
        self.lock().batching = on;
    }

    /// A connection that was never parked.
    pub(crate) fn fresh(inner: S) -> Self {
        Self::new(inner, Vec::new(), Unsent::none(), Tracker::new())
    }

    /// A second handle on the same connection, for its task (not for `h2`).
    pub(crate) fn link(&self) -> Self {
        Self(Arc::clone(&self.0))
    }

    fn lock(&self) -> MutexGuard<'_, Link<S>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` of the connection underneath.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.lock().inner)
    }

    /// What the client tells the connection, as it is read.
    pub(crate) fn peer(&self) -> Peer {
        self.lock().tracker.peer()
    }

    /// What a new `h2` needs to carry the connection on, if it can be parked now (`h2idle`).
    pub(crate) fn again(&self) -> Result<Again, Busy> {
        let link = self.lock();
        let flushed = link.flushed && link.unsent.held().is_empty() && link.behind.is_empty();
        Again::of(
            &link.tracker,
            link.at == link.kept.len(),
            &link.outbound,
            flushed,
        )
    }

    /// The socket back, once `h2` has dropped its handle (`None` while it holds it).
    pub(crate) fn take(self) -> Option<S> {
        Arc::try_unwrap(self.0)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner).inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Resumed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut link = self.lock();
        let this = &mut *link;
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
        let mut link = self.lock();
        link.flushed &= buf.is_empty();
        let n = ready!(link.poll_write(cx, buf))?;
        link.wrote(buf.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut link = self.lock();
        let this = &mut *link;
        this.flushed &= bufs.iter().all(|b| b.is_empty());
        if this.unsent.done() {
            let n = ready!(this.poll_write_out(cx, bufs))?;
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                this.wrote(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
            return Poll::Ready(Ok(n));
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        let n = ready!(this.poll_write(cx, first))?;
        this.wrote(first.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().inner.is_write_vectored()
    }

    /// `h2` flushes after every DATA frame it does not copy and again once it has nothing
    /// left to write, and cannot tell the two apart. So a flush after new writes is put off:
    /// the connection's task is woken and the flush answered at once, and its next poll (which
    /// buffers whatever other streams made ready meanwhile, and flushes again) finds nothing
    /// new and sends what is held, or what no longer fits goes out with the next write. No
    /// byte is held this way longer than [`PUT_OFF_MAX`].
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut link = self.lock();
        let this = &mut *link;
        ready!(this.poll_held(cx))?;
        if std::mem::take(&mut this.fresh)
            && !this.behind.is_empty()
            && this.behind.waited() < PUT_OFF_MAX
        {
            // `flushed` is false already: the write that made this fresh cleared it.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.behind.poll_drain(&mut this.inner, cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut link = self.lock();
        let this = &mut *link;
        ready!(this.poll_held(cx))?;
        ready!(this.behind.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> Link<S> {
    /// Writes the front of `buf` through [`Unsent`].
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.unsent.done() {
            return self.poll_write_out(cx, &[io::IoSlice::new(buf)]);
        }
        ready!(self.poll_held(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.unsent.front(buf) {
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            Ok(Front::Take(n)) => Poll::Ready(Ok(n)),
            Ok(Front::Send(n)) => {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..n]))?;
                self.unsent.wrote(n);
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Writes `bufs` once [`Unsent`] is done: held behind (up to [`BEHIND`], `coalesce`) while
    /// more than one request is in play ([`Resumed::batch`]) and the client lets more than a
    /// default window out at once (`Tracker::wide_windows`), else straight to the socket. Under the default windows a round trip carries at most 64 KiB,
    /// which leaves in as many writes as the client's credit comes back in pieces: holding
    /// them saves little, and a write put off behind the connection's other tasks changes
    /// which stream's frames go first in the round trip, and with it what credit a client
    /// returning it by half windows gives back (docs/benchmarks.md, start-up matrix).
    fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.batching && self.tracker.wide_windows() {
            let n = ready!(self.behind.poll_write(&mut self.inner, cx, bufs))?;
            self.fresh |= n > 0;
            return Poll::Ready(Ok(n));
        }
        ready!(self.behind.poll_drain(&mut self.inner, cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    /// `h2` wrote `bytes` (taken by [`Unsent`] or sent).
    fn wrote(&mut self, bytes: &[u8]) {
        self.outbound.feed(bytes);
    }

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
        let (steps, p, _) = scan_from(Parker::default(), Vec::new(), bytes, step);
        (steps, p)
    }

    /// Scans `bytes` after `kept` (a connection parked again starts with its replay) as they
    /// arrive in pieces of `step`, removing what is dropped or answered as the connection
    /// does; the steps seen, the parker, and the bytes kept.
    fn scan_from(
        mut p: Parker,
        mut kept: Vec<u8>,
        bytes: &[u8],
        step: usize,
    ) -> (Vec<Step>, Parker, Vec<u8>) {
        let mut steps = Vec::new();
        for piece in bytes.chunks(step) {
            kept.extend_from_slice(piece);
            loop {
                let s = p.scan(&kept);
                if s != Step::More {
                    steps.push(s);
                }
                match s {
                    Step::Ack => {}
                    Step::Drop { at, len } | Step::Pong { at, len, .. } => {
                        kept.drain(at..at + len);
                    }
                    _ => break,
                }
            }
            if matches!(steps.last(), Some(Step::Wake(_) | Step::Close(_))) {
                break;
            }
        }
        (steps, p, kept)
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
            assert!(p.acked() == 1 && p.acknowledged());
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
        assert_eq!(
            start(frame(0x6, 0, 0, &[0; 7])),
            woken(0x6),
            "a PING of 7 bytes"
        );
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
            vec![Step::Ack, Step::Ack],
            "a second SETTINGS, acknowledged and kept"
        );
        assert_eq!(
            start(frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 9])),
            vec![Step::Ack, Step::Wake(Wake::Settings)],
            "a second SETTINGS h2 refuses"
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

    #[test]
    fn a_ping_is_answered_while_parked_and_an_ack_of_one_dropped() {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        let kept_at = c.len();
        c.extend(frame(PING, 0, 0, b"12345678"));
        c.extend(frame(PING, ACK, 0, b"abcdefgh"));
        c.extend(frame(SETTINGS, ACK, 0, &[]));
        for step in [1, 5, 100] {
            let (steps, p, kept) = scan_from(Parker::default(), Vec::new(), &c, step);
            assert_eq!(
                steps,
                vec![
                    Step::Ack,
                    Step::Pong {
                        at: kept_at,
                        len: 17,
                        payload: *b"12345678"
                    },
                    Step::Drop {
                        at: kept_at,
                        len: 17
                    },
                ],
                "in pieces of {step}"
            );
            assert!(p.acknowledged());
            let mut want = c[..kept_at].to_vec();
            want.extend(frame(SETTINGS, ACK, 0, &[]));
            assert_eq!(kept, want, "neither PING is kept");
        }
    }

    /// A connection parked again after its client opened streams 1 to 7 and granted the
    /// connection `window`.
    fn again(window: u64) -> (Parker, Vec<u8>) {
        let a = Again {
            replay: PREFACE.to_vec(),
            last_stream: 7,
            window,
            credit: true,
            peer: crate::downstream::h2settings::PeerSeed::default(),
            hpack: crate::downstream::hpackskim::Skim::default(),
        };
        (Parker::again(&a), a.replay)
    }

    #[test]
    fn parked_again_late_frames_of_closed_streams_are_dropped_and_old_streams_refused() {
        let mut c = frame(WINDOW_UPDATE, 0, 7, &[0, 0, 1, 0]);
        c.extend(frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        c.extend(frame(PRIORITY, 0, 9, &[0, 0, 0, 0, 9]));
        c.extend(frame(PING, 0, 0, &[1; 8]));
        let kept_len = PREFACE.len() + 13 + 14;
        for step in [1, 4, 100] {
            let (p, replay) = again(100_000);
            let mut request = c.clone();
            request.extend(frame(HEADERS, 0x5, 9, &[0x82]));
            let (steps, _, kept) = scan_from(p, replay, &request, step);
            let at = PREFACE.len();
            assert_eq!(
                steps,
                vec![
                    Step::Drop { at, len: 13 },
                    Step::Drop { at, len: 13 },
                    Step::Pong {
                        at: kept_len,
                        len: 17,
                        payload: [1; 8]
                    },
                    Step::Wake(Wake::Frame(HEADERS)),
                ],
                "in pieces of {step}"
            );
            let mut want = PREFACE.to_vec();
            want.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
            want.extend(frame(PRIORITY, 0, 9, &[0, 0, 0, 0, 9]));
            want.extend(&frame(HEADERS, 0x5, 9, &[0x82])[..FRAME_HEADER_LEN]);
            assert_eq!(
                kept[..want.len()],
                want[..],
                "the replay, the grant, PRIORITY, the request"
            );

            let (p, replay) = again(100_000);
            let mut old = c.clone();
            old.extend(frame(HEADERS, 0x5, 7, &[0x82]));
            let (steps, ..) = scan_from(p, replay, &old, step);
            assert_eq!(
                steps.last(),
                Some(&Step::Close(PROTOCOL_ERROR)),
                "stream 7 again"
            );
        }
        let one = |f: Vec<u8>| {
            let (p, replay) = again(100_000);
            scan_from(p, replay, &f, 100).0
        };
        assert_eq!(
            one(settings(&[])),
            vec![Step::Ack],
            "new SETTINGS, acknowledged and kept"
        );
        let refused = vec![Step::Close(PROTOCOL_ERROR)];
        assert_eq!(
            one(frame(SETTINGS, ACK, 0, &[])),
            refused,
            "an ACK of SETTINGS never sent"
        );
        for (kind, stream, payload) in [
            (WINDOW_UPDATE, 9, &[0, 0, 1, 0][..]),
            (RST_STREAM, 2, &[0, 0, 0, 8][..]),
            (DATA, 7, &[1][..]),
            (CONTINUATION, 7, &[0x82][..]),
            (PUSH_PROMISE, 7, &[0, 0, 0, 2, 0x82][..]),
        ] {
            assert_eq!(
                one(frame(kind, 0, stream, payload)),
                refused,
                "type {kind} on stream {stream}: no stream state allows it"
            );
        }
        assert_eq!(
            one(frame(GOAWAY_FRAME, 0, 0, &[0; 8])),
            vec![Step::Close(NO_ERROR)],
            "the client leaves"
        );
        assert_eq!(
            one(frame(PRIORITY, 0, 9, &[0, 0, 0, 9, 7])),
            refused,
            "a stream that depends on itself"
        );
        // A client whose table may hold entries must begin its next block by emptying it.
        let holding = |f: Vec<u8>| {
            let mut hpack = crate::downstream::hpackskim::Skim::default();
            hpack.feed(&[0x41, 0x01, b'a']);
            hpack.end_block();
            let a = Again {
                replay: PREFACE.to_vec(),
                last_stream: 7,
                window: 100_000,
                credit: true,
                peer: crate::downstream::h2settings::PeerSeed::default(),
                hpack,
            };
            (1..=f.len())
                .map(|end| Parker::again(&a).scan(&[&a.replay[..], &f[..end]].concat()))
                .find(|s| *s != Step::More)
        };
        let woken = Some(Step::Wake(Wake::Frame(HEADERS)));
        assert_eq!(holding(frame(HEADERS, 0x5, 9, &[0x20, 0x82])), woken);
        assert_eq!(
            holding(frame(
                HEADERS,
                0x5 | 0x8 | 0x20,
                9,
                &[1, 0, 0, 0, 0, 9, 0x20, 0x82, 0]
            )),
            woken
        );
        assert_eq!(
            holding(frame(HEADERS, 0x5, 9, &[0x82, 0xbe])),
            Some(Step::Close(NO_ERROR))
        );
        assert_eq!(
            holding(frame(HEADERS, 0x1 | 0x8, 9, &[1, 0])),
            Some(Step::Close(NO_ERROR))
        );
        // More kept bytes than the bound: a connection parked again is closed, not woken.
        let spam: Vec<u8> = (0..40)
            .flat_map(|i| frame(PRIORITY, 0, 101 + 2 * i, &[0, 0, 0, 0, 9]))
            .collect();
        let (p, replay) = again(100_000);
        let (steps, ..) = scan_from(p, replay, &spam, 50);
        assert_eq!(
            steps,
            vec![Step::Close(NO_ERROR)],
            "PRIORITY frames past the bound"
        );
        // An unknown frame type is dropped, parked or parked again.
        let unknown = frame(0xfa, 0, 3, b"ext");
        let (p, replay) = again(100_000);
        let (steps, _, kept) = scan_from(p, replay, &unknown, 2);
        assert_eq!(
            steps,
            vec![Step::Drop {
                at: PREFACE.len(),
                len: 12
            }]
        );
        assert_eq!(kept, PREFACE);
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[]));
        let first = c.len();
        c.extend(&unknown);
        let (steps, ..) = scan_from(Parker::default(), Vec::new(), &c, 100);
        assert_eq!(steps, vec![Step::Ack, Step::Drop { at: first, len: 12 }]);
        // The connection's window counts from what it had when parked again.
        let (p, replay) = again(MAX_WINDOW - 10);
        let (steps, ..) = scan_from(p, replay, &frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 11]), 100);
        assert_eq!(
            steps,
            vec![Step::Wake(Wake::Frame(WINDOW_UPDATE))],
            "past 2^31-1"
        );
        let (p, replay) = again(MAX_WINDOW - 10);
        let (steps, ..) = scan_from(p, replay, &frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 10]), 100);
        assert_eq!(steps, vec![], "up to 2^31-1 kept");
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
                    let wire = filtered(Unsent::new(greeting.clone(), 1), &out, step, take);
                    assert_eq!(wire, want, "pieces of {step}, socket takes {take}");
                }
            }
        }
        // No ACK was sent while parked: only the greeting is dropped.
        let mut out = greeting.to_vec();
        out.extend(&ack);
        out.extend(&headers);
        let wire = filtered(Unsent::new(greeting.clone(), 0), &out, 5, 3);
        assert_eq!(wire, [ack.clone(), headers.clone()].concat());
        // Never parked: everything goes out.
        assert_eq!(filtered(Unsent::none(), &out, 7, 2), out);
        // A greeting that is not the one sent is refused.
        let mut other = Unsent::new(greeting.clone(), 1);
        assert!(other.front(&settings(&[(0x3, 99)])).is_err());
    }

    /// A frame header that comes in two writes is held until it is whole, and a flush sends it
    /// even when no further write comes (an empty frame).
    #[tokio::test]
    async fn a_held_header_goes_out_with_a_flush() {
        use tokio::io::AsyncWriteExt;

        let greeting = Bytes::from(settings(&[]));
        let (io, mut client) = tokio::io::duplex(4096);
        let mut resumed = Resumed::new(
            io,
            Vec::new(),
            Unsent::new(greeting.clone(), 1),
            Tracker::new(),
        );
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

    /// A pipe: the client's end, and the server's end recording what it writes (in the third).
    fn recorded_pipe() -> (tokio::io::DuplexStream, Recorded, Arc<Mutex<Vec<u8>>>) {
        let (client_io, io) = pipe(1 << 20);
        let wire = Arc::clone(&io.wire);
        (client_io, io, wire)
    }

    /// A pipe of `size` bytes: the client's end and the server's [`Recorded`] end.
    fn pipe(size: usize) -> (tokio::io::DuplexStream, Recorded) {
        let (client_io, server_io) = tokio::io::duplex(size);
        let io = Recorded {
            io: server_io,
            wire: Arc::default(),
            writes: Arc::default(),
        };
        (client_io, io)
    }

    /// The server's end of a pipe, recording every byte written to the client and counting
    /// the write calls; vectored, as a socket is (one call, all of it: the pipe is wide
    /// enough for every test here).
    struct Recorded {
        io: tokio::io::DuplexStream,
        wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
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
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &all))?;
            assert_eq!(n, all.len(), "the pipe took the whole write");
            this.wire.lock().unwrap().extend_from_slice(&all);
            this.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
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

    /// The client's connection task ends without an error once it has nothing open, then the
    /// server's; the server sent its SETTINGS once and `acks` ACKs (one per client SETTINGS).
    async fn ends_cleanly(
        conn: tokio::task::JoinHandle<Result<(), h2::Error>>,
        server: tokio::task::JoinHandle<()>,
        wire: &Mutex<Vec<u8>>,
        acks: usize,
    ) {
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
            (1, acks),
            "our SETTINGS once, one ACK of each of the client's"
        );
    }

    /// A real `h2` client against a parked, then woken, `h2` server: the client gets its
    /// response, and sees the server's SETTINGS once and one ACK of its own SETTINGS.
    #[tokio::test]
    async fn an_h2_client_is_served_by_a_woken_connection() {
        use tokio::io::AsyncWriteExt;

        let limits = crate::settings::H2Limits::default();
        let g = greeting(&limits).await.expect("captured");
        let (client_io, mut io, wire) = recorded_pipe();
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
                            break 'parked Resumed::new(
                                io,
                                kept,
                                Unsent::new(g, p.acked()),
                                Tracker::new(),
                            );
                        }
                        other => panic!("unexpected {other:?}"),
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
        ends_cleanly(conn, server, &wire, 1).await;
    }

    /// A real `h2` client sends eight GETs at once; the server answers them together, 15 KB
    /// each. The write calls the answers take, with the server's `h2` on `io` as given.
    async fn writes_for_eight_answers(behind: bool) -> usize {
        let (client_io, io) = pipe(4 << 20);
        let writes = Arc::clone(&io.writes);
        let limits = crate::settings::H2Limits::default();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&answered);
        let count = Arc::clone(&writes);
        async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
            mut conn: h2::server::Connection<T, Bytes>,
            count: Arc<std::sync::atomic::AtomicUsize>,
            seen: Arc<std::sync::atomic::AtomicUsize>,
        ) {
            let mut pending = Vec::new();
            while pending.len() < 8 {
                let (_req, respond) = conn.accept().await.unwrap().unwrap();
                pending.push(respond);
            }
            // Every request is in: count from here.
            seen.store(
                count.load(std::sync::atomic::Ordering::Relaxed),
                std::sync::atomic::Ordering::Relaxed,
            );
            for mut respond in pending {
                let mut send = respond
                    .send_response(http::Response::new(()), false)
                    .unwrap();
                send.send_data(Bytes::from(vec![5u8; 15_456]), true)
                    .unwrap();
            }
            while conn.accept().await.is_some() {}
        }
        let server = tokio::spawn(async move {
            if behind {
                let io = Resumed::fresh(io);
                io.batch(true);
                let conn = builder(&limits).handshake(io).await.unwrap();
                serve(conn, count, seen).await;
            } else {
                let conn = builder(&limits).handshake(io).await.unwrap();
                serve(conn, count, seen).await;
            }
        });
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake::<_, Bytes>(client_io)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let mut answers = Vec::new();
        for i in 0..8 {
            let req = http::Request::get(format!("http://x/{i}"))
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            answers.push(resp);
        }
        for resp in answers {
            assert_eq!(body_of(resp).await, 15_456);
        }
        let total = writes.load(std::sync::atomic::Ordering::Relaxed);
        let before = answered.load(std::sync::atomic::Ordering::Relaxed);
        drop(client);
        let _ = conn.await;
        server.await.unwrap();
        total - before
    }

    /// `h2` flushes after every DATA frame it does not copy: straight on the socket, eight
    /// answers made ready together are eight writes or more; through [`Resumed`] they are held
    /// and leave in two (123 KB at up to [`BEHIND`] a write).
    #[tokio::test]
    async fn answers_made_ready_together_leave_in_few_writes() {
        let straight = writes_for_eight_answers(false).await;
        assert!(straight >= 8, "straight on the socket: {straight} writes");
        let behind = writes_for_eight_answers(true).await;
        assert!(
            (2..=3).contains(&behind),
            "held behind: {behind} writes for 8 x 15,456 bytes (straight: {straight})"
        );
    }

    /// A [`Resumed`] over a pipe that counts its writes, having read from the client the
    /// preface and a SETTINGS with `initial_window`; the client's end, the write count, and
    /// a waker that counts its wakes (with the count).
    fn counted_after_settings(
        initial_window: u32,
    ) -> (
        Resumed<Recorded>,
        tokio::io::DuplexStream,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<Wakes>,
        std::task::Waker,
    ) {
        let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
        let (mut peer, server_io) = pipe(1 << 16);
        let writes = Arc::clone(&server_io.writes);
        let mut io = Resumed::fresh(server_io);
        io.batch(true);
        let mut client = PREFACE.to_vec();
        client.extend(settings(&[(INITIAL_WINDOW_SIZE, initial_window)]));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        client_says(&mut peer, &mut io, &mut cx, &client);
        (io, peer, writes, wakes, waker)
    }

    /// The client sends `bytes`, and the server's `io` reads them (through its tracker).
    fn client_says(
        peer: &mut tokio::io::DuplexStream,
        io: &mut Resumed<Recorded>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) {
        assert!(matches!(
            Pin::new(&mut *peer).poll_write(cx, bytes),
            Poll::Ready(Ok(n)) if n == bytes.len()
        ));
        let mut got = vec![0u8; bytes.len()];
        let mut buf = ReadBuf::new(&mut got);
        assert!(Pin::new(io).poll_read(cx, &mut buf).is_ready());
        assert_eq!(buf.filled().len(), bytes.len(), "read through the tracker");
    }

    /// Counts the wakes of a task.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// With wide windows, a flush right after new writes is put off (the task is woken
    /// instead); the next flush, with nothing new, sends what is held in one write; nothing
    /// is parked again while bytes are held.
    #[test]
    fn with_wide_windows_the_first_flush_after_writes_is_put_off_once() {
        use std::sync::atomic::Ordering;
        let (mut io, mut peer, writes, wakes, waker) = counted_after_settings(1 << 20);
        let mut cx = Context::from_waker(&waker);
        let link = io.link();
        for piece in [&b"abc"[..], b"defg"] {
            assert!(matches!(
                Pin::new(&mut io).poll_write_vectored(&mut cx, &[io::IoSlice::new(piece)]),
                Poll::Ready(Ok(_))
            ));
        }
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(
            writes.load(Ordering::Relaxed),
            0,
            "put off: nothing written"
        );
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "the task is woken to flush again"
        );
        assert!(link.again().is_err(), "not parked while bytes are held");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 1, "then sent, in one write");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert_eq!(link.lock().behind.capacity(), 0, "no buffer kept once sent");
        let mut got = [0u8; 7];
        let mut buf = ReadBuf::new(&mut got);
        assert!(Pin::new(&mut peer).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abcdefg");
        // A flush with nothing held is not put off.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    }

    /// With one request in play, wide windows or not, a write goes straight to the socket
    /// and its flush is not put off.
    #[test]
    fn with_one_request_in_play_writes_go_straight() {
        use std::sync::atomic::Ordering;
        let (mut io, mut peer, writes, wakes, waker) = counted_after_settings(1 << 20);
        let mut cx = Context::from_waker(&waker);
        io.batch(false);
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(
                &mut cx,
                &[io::IoSlice::new(b"abc"), io::IoSlice::new(b"defg")]
            ),
            Poll::Ready(Ok(7))
        ));
        assert_eq!(writes.load(Ordering::Relaxed), 1, "straight, one write");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "not put off");
        assert_eq!(io.link().lock().behind.capacity(), 0, "nothing held");
        let mut got = [0u8; 7];
        let mut buf = ReadBuf::new(&mut got);
        assert!(Pin::new(&mut peer).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abcdefg");
    }

    /// A byte held longer than [`PUT_OFF_MAX`] is sent by the next flush, new writes or not.
    #[test]
    fn a_put_off_flush_holds_no_byte_past_its_limit() {
        use std::sync::atomic::Ordering;
        let (mut io, _peer, writes, wakes, waker) = counted_after_settings(1 << 20);
        let mut cx = Context::from_waker(&waker);
        let mut write = |io: &mut Resumed<Recorded>, piece: &[u8]| {
            assert!(matches!(
                Pin::new(io).poll_write_vectored(&mut cx, &[io::IoSlice::new(piece)]),
                Poll::Ready(Ok(_))
            ));
        };
        write(&mut io, b"abc");
        std::thread::sleep(PUT_OFF_MAX * 2);
        write(&mut io, b"d");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(writes.load(Ordering::Relaxed), 1, "sent at once");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "not put off");
    }

    /// Windows that turn default while bytes are held: the held bytes go first, then the
    /// write, straight.
    #[test]
    fn held_bytes_go_first_when_the_windows_turn_default() {
        use std::sync::atomic::Ordering;
        let (mut io, mut peer, writes, _wakes, waker) = counted_after_settings(1 << 20);
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &[io::IoSlice::new(b"abc")]),
            Poll::Ready(Ok(3))
        ));
        assert_eq!(writes.load(Ordering::Relaxed), 0, "held");
        // The client sets its streams' windows back to the default.
        let back = settings(&[(INITIAL_WINDOW_SIZE, 65_535)]);
        client_says(&mut peer, &mut io, &mut cx, &back);
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &[io::IoSlice::new(b"def")]),
            Poll::Ready(Ok(3))
        ));
        assert_eq!(
            writes.load(Ordering::Relaxed),
            2,
            "the held bytes, then the write"
        );
        let mut wire = [0u8; 6];
        let mut buf = ReadBuf::new(&mut wire);
        while buf.filled().len() < 6 {
            assert!(Pin::new(&mut peer).poll_read(&mut cx, &mut buf).is_ready());
        }
        assert_eq!(buf.filled(), b"abcdef");
    }

    /// Under the default windows every write goes straight to the socket.
    #[test]
    fn under_default_windows_writes_go_straight_out() {
        use std::sync::atomic::Ordering;
        let (mut io, _peer, writes, wakes, waker) = counted_after_settings(65_535);
        let mut cx = Context::from_waker(&waker);
        for (i, piece) in [&b"abc"[..], b"defg"].into_iter().enumerate() {
            assert!(matches!(
                Pin::new(&mut io).poll_write_vectored(&mut cx, &[io::IoSlice::new(piece)]),
                Poll::Ready(Ok(_))
            ));
            assert_eq!(writes.load(Ordering::Relaxed), i + 1, "written at once");
        }
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "nothing put off");
    }

    /// Parks `io` by hand as `downstream::h2` does, from `kept` with `p`, until a frame wakes
    /// it; answers what the parker says to.
    async fn park_by_hand(
        mut io: Recorded,
        mut kept: Vec<u8>,
        mut p: Parker,
    ) -> (Recorded, Vec<u8>, Parker, Wake) {
        use tokio::io::AsyncWriteExt;
        loop {
            loop {
                match p.scan(&kept) {
                    Step::More => break,
                    Step::Ack => io.write_all(&SETTINGS_ACK).await.unwrap(),
                    Step::Drop { at, len } => {
                        kept.drain(at..at + len);
                    }
                    Step::Pong { at, len, payload } => {
                        kept.drain(at..at + len);
                        io.write_all(&crate::downstream::h2wire::head(8, PING, ACK, 0))
                            .await
                            .unwrap();
                        io.write_all(&payload).await.unwrap();
                    }
                    Step::Wake(w) => return (io, kept, p, w),
                    Step::Close(code) => panic!("closed with {code}"),
                }
            }
            let n = io.read_buf(&mut kept).await.unwrap();
            assert!(n > 0, "the client left");
        }
    }

    /// Serves one GET on `conn` with `len` bytes.
    async fn serve_one(conn: &mut h2::server::Connection<Resumed<Recorded>, Bytes>, len: usize) {
        let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
        let mut send = respond
            .send_response(http::Response::new(()), false)
            .unwrap();
        send.send_data(Bytes::from(vec![7u8; len]), true).unwrap();
    }

    /// Drives `conn` until it has nothing open and can be parked again.
    async fn until_idle(
        conn: &mut h2::server::Connection<Resumed<Recorded>, Bytes>,
        link: &Resumed<Recorded>,
    ) -> Again {
        loop {
            tokio::select! {
                next = conn.accept() => panic!("unexpected: {:?}", next.map(|r| r.map(|_| ()))),
                () = tokio::time::sleep(Duration::from_millis(5)) => {
                    if let (false, Ok(again)) = (conn.has_streams(), link.again()) {
                        return again;
                    }
                }
            }
        }
    }

    /// Reads a response's body whole, returning the credit as it goes.
    async fn body_of(resp: h2::client::ResponseFuture) -> usize {
        let mut body = resp.await.unwrap().into_body();
        let mut got = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            got += chunk.len();
            body.flow_control().release_capacity(chunk.len()).unwrap();
        }
        got
    }

    /// A real `h2` client with a wide connection window gets a response larger than the
    /// default window, the connection falls idle and is parked again (its `h2` dropped), a
    /// new SETTINGS of the client and a PING are answered while it is, and its next request is
    /// served by a new `h2` that sends within the window the client gave the first one. The
    /// client sees the server's SETTINGS once and one ACK of each of its own, and no error.
    #[tokio::test]
    async fn an_idle_connection_parked_again_is_served_by_a_new_h2() {
        use tokio::io::AsyncWriteExt;

        let limits = crate::settings::H2Limits::default();
        assert!(limits.park_when_idle.is_some());
        let g = greeting(&limits).await.expect("captured");
        let (client_io, mut io, wire) = recorded_pipe();
        let (parked_tx, parked_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            io.write_all(&g).await.unwrap();
            let (io, kept, p, w) = park_by_hand(io, Vec::new(), Parker::default()).await;
            assert_eq!(w, Wake::Frame(HEADERS));
            let woken = Resumed::new(io, kept, Unsent::new(g.clone(), p.acked()), Tracker::new());
            let link = woken.link();
            let mut conn = builder(&limits).handshake::<_, Bytes>(woken).await.unwrap();
            serve_one(&mut conn, 200_000).await;
            let again = until_idle(&mut conn, &link).await;
            assert_eq!(again.last_stream, 1);
            drop(conn);
            let io = link.take().expect("h2 let go of the socket");
            parked_tx.send(again.window).unwrap();

            let kept = again.replay.clone();
            let (io, kept, p, w) = park_by_hand(io, kept, Parker::again(&again)).await;
            assert_eq!(w, Wake::Frame(HEADERS));
            assert_eq!(
                p.acked(),
                1,
                "the client's new SETTINGS acknowledged while parked"
            );
            assert!(again.credit, "h2 gave its connection window at the start");
            let woken = Resumed::new(
                io,
                kept,
                Unsent::again(g, p.acked(), again.credit),
                Tracker::again(again.last_stream, again.peer, again.hpack),
            );
            let mut conn = builder(&limits).handshake::<_, Bytes>(woken).await.unwrap();
            serve_one(&mut conn, 300_000).await;
            while conn.accept().await.is_some() {}
        });
        let (mut client, conn) = h2::client::Builder::new()
            .initial_connection_window_size(1 << 20)
            .handshake::<_, Bytes>(client_io)
            .await
            .unwrap();
        let mut conn = conn;
        let mut pings = conn.ping_pong().expect("ping_pong");
        // The client changes a setting while the connection is parked again.
        let (change_tx, change_rx) = tokio::sync::oneshot::channel::<()>();
        let conn = tokio::spawn(async move {
            tokio::select! {
                done = &mut conn => return done,
                _ = change_rx => {}
            }
            conn.set_initial_window_size(2 << 20)?;
            conn.await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let get = || http::Request::get("http://x/a").body(()).unwrap();
        let (resp, _) = client.send_request(get(), true).unwrap();
        assert_eq!(body_of(resp).await, 200_000);
        let window = tokio::time::timeout(Duration::from_secs(5), parked_rx)
            .await
            .expect("parked again")
            .unwrap();
        // The client's window less what was sent (it returns credit at half its window).
        assert_eq!(window, (1 << 20) - 200_000);
        change_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), pings.ping(h2::Ping::opaque()))
            .await
            .expect("the parked connection answers a PING")
            .unwrap();
        let (resp, _) = client.send_request(get(), true).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), body_of(resp))
            .await
            .expect("sent within the window the client gave (not stalled at the default one)");
        assert_eq!(got, 300_000);
        drop(client);
        ends_cleanly(conn, server, &wire, 2).await;
    }
}
