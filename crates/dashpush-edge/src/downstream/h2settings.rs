//! Watches what the client tells an HTTP/2 connection that the `h2` crate keeps to itself:
//! `SETTINGS_ENABLE_PUSH`, and the shape of its flow-control windows.
//!
//! The `h2` crate refuses a push the client disabled but does not say so in advance, and the
//! push acknowledgement (spec §7.2) must be decided before the response head is sent. So every
//! byte the connection reads passes a [`Tracker`] (in `h2park::Resumed`), which follows the
//! client's frame
//! headers (after the 24-byte preface) and records every `SETTINGS_ENABLE_PUSH` value the
//! client sends (RFC 9113 §6.5.2; the default is 1). It also records the client's
//! `SETTINGS_INITIAL_WINDOW_SIZE` (a stream's window) and the largest increment it has given the
//! connection's window in one `WINDOW_UPDATE` (RFC 9113 §6.9), which together tell the push
//! scheduler whether two streams can fill the connection's window ([`ConnWindow`]). It only
//! reads frame headers and the payloads of SETTINGS and of the connection's WINDOW_UPDATEs;
//! everything else is skipped by length, and every byte is handed on unchanged.
//!
//! The same pass keeps what a connection parked again when idle (`h2idle`) must hand a new
//! `h2` to carry on where the old one stopped ([`Inbound`]): every setting's last value, the
//! credit the client has given the connection, the highest stream it opened, whether it has
//! acknowledged our SETTINGS or sent any DATA, and whether its HPACK encoder may have entries
//! in the server's dynamic table (`hpackskim`, over the payloads of HEADERS and CONTINUATION).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::delivery::turns::ConnWindow;
use crate::downstream::h2wire::{
    ACK, CONTINUATION, DATA, DEFAULT_WINDOW, ENABLE_PUSH, END_HEADERS, FRAME_HEADER_LEN, FrameHead,
    HEADER_TABLE_SIZE, HEADERS, INITIAL_WINDOW_SIZE, PADDED, PING, PREFACE, PRIORITY_FLAG,
    SETTINGS, WINDOW_UPDATE,
};
use crate::downstream::hpackskim::Skim;

/// What the client has told the connection, shared with the request handlers.
#[derive(Debug, Clone)]
pub struct Peer(Arc<PeerState>);

#[derive(Debug)]
struct PeerState {
    push: AtomicBool,
    stream_window: AtomicU32,
    widest_grant: AtomicU32,
}

/// What a [`Peer`] holds, as plain values: carried from one `h2` to the next on a connection
/// parked again (`h2idle`) without keeping the old one's allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerSeed {
    push: bool,
    stream_window: u32,
    widest_grant: u32,
}

impl Default for PeerSeed {
    fn default() -> Self {
        Self {
            push: true,
            stream_window: DEFAULT_WINDOW,
            widest_grant: 0,
        }
    }
}

impl Peer {
    fn new(seed: PeerSeed) -> Self {
        Self(Arc::new(PeerState {
            push: AtomicBool::new(seed.push),
            stream_window: AtomicU32::new(seed.stream_window),
            widest_grant: AtomicU32::new(seed.widest_grant),
        }))
    }

    /// Its values now.
    pub(crate) fn seed(&self) -> PeerSeed {
        PeerSeed {
            push: self.0.push.load(Ordering::Acquire),
            stream_window: self.0.stream_window.load(Ordering::Acquire),
            widest_grant: self.0.widest_grant.load(Ordering::Acquire),
        }
    }

    /// Whether the client allows push now.
    pub fn push_enabled(&self) -> bool {
        self.0.push.load(Ordering::Acquire)
    }

    /// The window the client gives each stream it opens or is promised
    /// (SETTINGS_INITIAL_WINDOW_SIZE, 65,535 until it says otherwise).
    pub fn stream_window(&self) -> u32 {
        self.0.stream_window.load(Ordering::Acquire)
    }

    /// Whether the client lets more than a default window (65,535 bytes) out at once: it set
    /// its streams' windows wider, or widened the connection's by more than a window in one
    /// WINDOW_UPDATE (a client returning credit as it reads gives at most a window back).
    /// h2load, browsers and players do; python-h2 and nghttp2 keep the defaults unless told.
    pub fn wide_windows(&self) -> bool {
        self.0.stream_window.load(Ordering::Acquire) > DEFAULT_WINDOW
            || self.0.widest_grant.load(Ordering::Acquire) > DEFAULT_WINDOW
    }

    /// Whether the connection's window is wider than two streams' windows: its default size
    /// plus the largest increment the client has given it at once (a client that wants a wide
    /// connection says so in one WINDOW_UPDATE, usually its first; one that returns credit as
    /// it reads gives at most a window back) against twice a stream's window as the client
    /// set it.
    pub fn connection_window(&self) -> ConnWindow {
        let connection =
            u64::from(DEFAULT_WINDOW) + u64::from(self.0.widest_grant.load(Ordering::Acquire));
        let streams = 2 * u64::from(self.0.stream_window.load(Ordering::Acquire));
        if connection > streams {
            ConnWindow::WiderThanTwoStreams
        } else {
            ConnWindow::WithinTwoStreams
        }
    }
}

/// Where the parser is in the client's byte stream.
#[derive(Debug)]
enum State {
    Preface(usize),
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Skipping a payload that is not SETTINGS.
    Skip(usize),
    /// Reading a SETTINGS payload: bytes left, the current 6-byte entry.
    Settings {
        left: usize,
        entry: [u8; 6],
        have: usize,
    },
    /// Reading the 4-byte increment of a WINDOW_UPDATE for the connection.
    Grant {
        buf: [u8; 4],
        have: usize,
    },
    /// A HEADERS or CONTINUATION payload with `left` bytes to come: its pad length byte next
    /// (`pad_len`), then `skip` bytes (the priority fields), then a header block fragment, then
    /// `pad` bytes of padding; `end`: the header block ends with it.
    Block {
        left: usize,
        pad_len: bool,
        skip: usize,
        pad: usize,
        end: bool,
    },
}

/// Settings parameters whose last value is kept (RFC 9113 §6.5.2 and RFC 8441 §3 define 1 to
/// 8; any other is ignored, as RFC 9113 §6.5.2 requires).
const KNOWN_SETTINGS: usize = 8;

/// What the client has sent on a connection that a new `h2` must be told to carry on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inbound {
    /// The last value of each setting parameter 1 to 8 the client has sent.
    pub(crate) settings: [Option<u32>; KNOWN_SETTINGS],
    /// The client has acknowledged our SETTINGS.
    pub(crate) acknowledged: bool,
    /// What its WINDOW_UPDATEs have added to the connection's window (saturating).
    pub(crate) granted: u64,
    /// The highest stream it has opened (HEADERS).
    pub(crate) last_stream: u32,
    /// It has sent a DATA frame (a request body, or WebSocket bytes).
    pub(crate) data: bool,
    /// Its header blocks, walked for what they put in the server's HPACK table.
    pub(crate) hpack: Skim,
    /// Within a header block: a HEADERS frame without END_HEADERS came, its CONTINUATION
    /// frames are still to come.
    pub(crate) in_block: bool,
    /// PING ACKs it has sent (answers to ours).
    pub(crate) ping_acks: u64,
    /// The smallest SETTINGS_HEADER_TABLE_SIZE it has sent: below the last one, our HPACK
    /// encoder may not have told its decoder the larger size yet.
    pub(crate) least_table_size: Option<u32>,
    /// Header blocks it has begun since it acknowledged our SETTINGS (`None`: not yet). Our
    /// SETTINGS_HEADER_TABLE_SIZE is 0 while parking again is on, so the first block after that
    /// ACK must begin by emptying its table (RFC 7541 §4.2).
    pub(crate) blocks_since_ack: Option<u64>,
}

impl Inbound {
    /// The settings the client has sent, by parameter: their last values.
    pub(crate) fn settings(&self) -> Vec<(u16, u32)> {
        (1u16..)
            .zip(self.settings.iter())
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect()
    }
}

/// The parser, separate from I/O so it can be tested byte by byte.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    peer: Peer,
    inbound: Inbound,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// A tracker at the start of a connection, before the preface.
    pub fn new() -> Self {
        Self {
            state: State::Preface(PREFACE.len()),
            peer: Peer::new(PeerSeed::default()),
            inbound: Inbound::default(),
        }
    }

    /// A tracker for a connection parked again (`h2idle`): its client has opened streams up
    /// to `last_stream`, told what `peer` holds, and left its HPACK encoder as `hpack` reads
    /// it; the rest is read again from the bytes that tell a new `h2` the state.
    pub(crate) fn again(last_stream: u32, peer: PeerSeed, hpack: Skim) -> Self {
        let mut t = Self::new();
        t.peer = Peer::new(peer);
        t.inbound.last_stream = last_stream;
        t.inbound.hpack = hpack;
        // The client acknowledged our SETTINGS before, and the request that wakes the new
        // `h2` is a block after that (the replay's ACK is not the client's).
        t.inbound.blocks_since_ack = Some(1);
        t
    }

    /// What the client has sent that a new `h2` must be told.
    pub(crate) fn inbound(&self) -> &Inbound {
        &self.inbound
    }

    /// Whether the bytes read so far end with a whole frame (or the preface).
    pub(crate) fn at_frame_start(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// What the client has told so far, shared.
    pub fn peer(&self) -> Peer {
        self.peer.clone()
    }

    /// [`Peer::wide_windows`] of the client, without a handle.
    pub fn wide_windows(&self) -> bool {
        self.peer.wide_windows()
    }

    /// Feeds bytes the client sent, in order.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Preface(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = data.get(n..).unwrap_or_default();
                    if *left == 0 {
                        self.state = header();
                    }
                }
                State::Skip(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = data.get(n..).unwrap_or_default();
                    if *left == 0 {
                        self.state = header();
                    }
                }
                State::Header { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(data.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(*have..*have + n), data.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    *have += n;
                    data = data.get(n..).unwrap_or_default();
                    if *have == FRAME_HEADER_LEN {
                        let FrameHead {
                            len,
                            kind,
                            flags,
                            stream,
                        } = FrameHead::parse(buf);
                        let stream0 = stream == 0;
                        let end = flags & END_HEADERS != 0;
                        let block = kind == HEADERS || kind == CONTINUATION;
                        match kind {
                            SETTINGS if flags & ACK != 0 => {
                                self.inbound.acknowledged = true;
                                // Our only SETTINGS is the first thing the client acknowledges.
                                self.inbound.blocks_since_ack.get_or_insert(0);
                            }
                            PING if flags & ACK != 0 => self.inbound.ping_acks += 1,
                            DATA => self.inbound.data = true,
                            HEADERS => {
                                self.inbound.last_stream = self.inbound.last_stream.max(stream);
                                if let Some(n) = &mut self.inbound.blocks_since_ack {
                                    *n += 1;
                                }
                            }
                            _ => {}
                        }
                        if block {
                            self.inbound.in_block = !end;
                        }
                        if block && len == 0 && end {
                            self.inbound.hpack.end_block();
                        }
                        self.state = if block && len > 0 {
                            let first = kind == HEADERS;
                            State::Block {
                                left: len,
                                pad_len: first && flags & PADDED != 0,
                                skip: if first && flags & PRIORITY_FLAG != 0 {
                                    5
                                } else {
                                    0
                                },
                                pad: 0,
                                end,
                            }
                        } else if len == 0 {
                            header()
                        } else if kind == SETTINGS && flags & ACK == 0 && stream0 {
                            State::Settings {
                                left: len,
                                entry: [0; 6],
                                have: 0,
                            }
                        } else if kind == WINDOW_UPDATE && len == 4 && stream0 {
                            State::Grant {
                                buf: [0; 4],
                                have: 0,
                            }
                        } else {
                            State::Skip(len)
                        };
                    }
                }
                State::Settings { left, entry, have } => {
                    let n = (6 - *have).min(data.len()).min(*left);
                    if let (Some(dst), Some(src)) = (entry.get_mut(*have..*have + n), data.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                    *have += n;
                    *left -= n;
                    data = data.get(n..).unwrap_or_default();
                    if *have == 6 {
                        let id = u16::from_be_bytes([entry[0], entry[1]]);
                        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                        if let Some(slot) = usize::from(id)
                            .checked_sub(1)
                            .and_then(|i| self.inbound.settings.get_mut(i))
                        {
                            *slot = Some(value);
                        }
                        if id == HEADER_TABLE_SIZE {
                            let least = self.inbound.least_table_size.get_or_insert(value);
                            *least = (*least).min(value);
                        }
                        match id {
                            ENABLE_PUSH => self.peer.0.push.store(value != 0, Ordering::Release),
                            INITIAL_WINDOW_SIZE => {
                                self.peer.0.stream_window.store(value, Ordering::Release);
                            }
                            _ => {}
                        }
                        *have = 0;
                    }
                    if *left == 0 {
                        self.state = header();
                    }
                }
                State::Grant { buf, have } => {
                    let n = (4 - *have).min(data.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(*have..*have + n), data.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    *have += n;
                    data = data.get(n..).unwrap_or_default();
                    if *have == 4 {
                        let increment = u32::from_be_bytes(*buf) & 0x7fff_ffff;
                        self.inbound.granted =
                            self.inbound.granted.saturating_add(u64::from(increment));
                        self.peer
                            .0
                            .widest_grant
                            .fetch_max(increment, Ordering::AcqRel);
                        self.state = header();
                    }
                }
                State::Block {
                    left,
                    pad_len,
                    skip,
                    pad,
                    end,
                } => {
                    if let (true, Some(&b)) = (*pad_len, data.first()) {
                        *pad = usize::from(b);
                        *pad_len = false;
                        *left -= 1;
                        data = data.get(1..).unwrap_or_default();
                    }
                    if *skip + *pad > *left {
                        // No room for the pad length, the priority fields or the padding: a
                        // frame the decoder refuses. Nothing is known of its block.
                        self.inbound.hpack.break_off();
                        self.state = if *left == 0 {
                            header()
                        } else {
                            State::Skip(*left)
                        };
                        continue;
                    }
                    let n = (*skip).min(data.len());
                    *skip -= n;
                    *left -= n;
                    data = data.get(n..).unwrap_or_default();
                    if *skip > 0 {
                        continue;
                    }
                    let n = (*left - *pad).min(data.len());
                    self.inbound.hpack.feed(data.get(..n).unwrap_or_default());
                    *left -= n;
                    data = data.get(n..).unwrap_or_default();
                    if *left == *pad {
                        if *end {
                            self.inbound.hpack.end_block();
                        }
                        self.state = if *left == 0 {
                            header()
                        } else {
                            State::Skip(*left)
                        };
                    }
                }
            }
        }
    }
}

fn header() -> State {
    State::Header {
        buf: [0; FRAME_HEADER_LEN],
        have: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::downstream::h2wire::test_frames::frame;

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend_from_slice(&value.to_be_bytes());
        s
    }

    /// A tracker that has read the preface and an empty SETTINGS (every default).
    fn settled() -> Tracker {
        let mut t = Tracker::new();
        let mut c = PREFACE.to_vec();
        c.extend(frame(SETTINGS, 0, 0, &[]));
        t.feed(&c);
        t
    }

    fn connection(push: u32) -> Vec<u8> {
        let mut c = PREFACE.to_vec();
        let mut p = setting(0x3, 100);
        p.extend(setting(ENABLE_PUSH, push));
        p.extend(setting(0x4, 65535));
        c.extend(frame(SETTINGS, 0, 0, &p));
        // WINDOW_UPDATE, then a HEADERS frame whose payload looks like a SETTINGS entry.
        c.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0]));
        c.extend(frame(0x1, 0x5, 1, &setting(ENABLE_PUSH, 1)));
        c
    }

    #[test]
    fn reads_enable_push_whole_or_one_byte_at_a_time() {
        for push in [0, 1] {
            let bytes = connection(push);
            let mut t = Tracker::new();
            t.feed(&bytes);
            assert_eq!(t.peer().push_enabled(), push == 1);
            let mut t = Tracker::new();
            for b in &bytes {
                t.feed(std::slice::from_ref(b));
            }
            assert_eq!(t.peer().push_enabled(), push == 1, "byte by byte");
        }
    }

    #[test]
    fn the_connection_is_wider_than_two_streams_when_the_client_says_so() {
        let mut t = settled();
        assert_eq!(
            t.peer().connection_window(),
            ConnWindow::WithinTwoStreams,
            "defaults"
        );
        // Credit given back as a client reads: at most a window at a time.
        t.feed(&frame(WINDOW_UPDATE, 0, 0, &65_535u32.to_be_bytes()));
        // A stream's WINDOW_UPDATE is not the connection's.
        t.feed(&frame(WINDOW_UPDATE, 0, 1, &(16u32 << 20).to_be_bytes()));
        assert_eq!(t.peer().connection_window(), ConnWindow::WithinTwoStreams);
        // 64 KiB streams, a 16 MiB connection, byte by byte.
        for b in frame(WINDOW_UPDATE, 0, 0, &(16u32 << 20).to_be_bytes()) {
            t.feed(&[b]);
        }
        assert_eq!(
            t.peer().connection_window(),
            ConnWindow::WiderThanTwoStreams
        );
        // Streams as wide as the connection.
        t.feed(&frame(
            SETTINGS,
            0,
            0,
            &setting(INITIAL_WINDOW_SIZE, 16 << 20),
        ));
        assert_eq!(t.peer().connection_window(), ConnWindow::WithinTwoStreams);
        assert!(t.peer().push_enabled(), "nothing else changed");
    }

    #[test]
    fn windows_are_wide_once_the_client_lets_more_than_a_default_window_out() {
        let mut t = settled();
        assert!(!t.wide_windows(), "defaults");
        // Credit returned as it reads, a whole window at most; a stream's grant is not the
        // connection's.
        t.feed(&frame(WINDOW_UPDATE, 0, 0, &65_535u32.to_be_bytes()));
        t.feed(&frame(WINDOW_UPDATE, 0, 1, &(16u32 << 20).to_be_bytes()));
        assert!(!t.wide_windows());
        let mut wide_conn = t;
        wide_conn.feed(&frame(WINDOW_UPDATE, 0, 0, &65_536u32.to_be_bytes()));
        assert!(
            wide_conn.wide_windows(),
            "a connection widened past a window"
        );
        let mut wide_streams = settled();
        wide_streams.feed(&frame(
            SETTINGS,
            0,
            0,
            &setting(INITIAL_WINDOW_SIZE, 65_536),
        ));
        assert!(wide_streams.wide_windows(), "streams set wider");
    }

    #[test]
    fn default_is_enabled_and_later_settings_change_it() {
        let mut t = settled();
        assert!(t.peer().push_enabled());
        t.feed(&frame(SETTINGS, 0, 0, &setting(ENABLE_PUSH, 0)));
        assert!(!t.peer().push_enabled());
        // A SETTINGS ack carries no entries and changes nothing.
        t.feed(&frame(SETTINGS, ACK, 0, &[]));
        assert!(!t.peer().push_enabled());
        t.feed(&frame(SETTINGS, 0, 0, &setting(ENABLE_PUSH, 1)));
        assert!(t.peer().push_enabled());
    }
}
