//! An HTTP/2 connection that has served and fallen idle, parked again: its `h2` state (a 16 KiB
//! write buffer, an 8 KiB read buffer, a 4 KiB HPACK buffer, stream slabs: about 26 KiB
//! resident) is dropped, the connection waits as a parked one does (`h2park`), and its next
//! request wakes a new `h2`, told in a few synthetic bytes everything the old one knew that
//! still matters. Sans-IO: what `h2` has written ([`Outbound`]), whether the connection can be
//! parked now, and the bytes that bring a new `h2` to its state ([`Again`]).
//!
//! What a new `h2` must carry on, and how it gets it:
//!
//! - **The client's settings**: replayed as one SETTINGS frame of their last values; `h2`'s ACK
//!   of it is dropped from its output (`h2park::Unsent`), as is its own SETTINGS (the same frame
//!   as the first `h2`'s: same builder) and its first WINDOW_UPDATE of the connection (the
//!   client has that credit already). A synthetic SETTINGS ACK acknowledges `h2`'s SETTINGS.
//! - **The connection's send window** (RFC 9113 §6.9): the default window, plus what the
//!   client granted, less the DATA sent, replayed as a WINDOW_UPDATE. A window below the
//!   default cannot be told (a new `h2` starts at the default), so such a connection is not
//!   parked.
//! - **HPACK** (RFC 7541): the server's decoder table must be empty, since a new `h2` starts
//!   with an empty one. When parking again is on, the server's SETTINGS_HEADER_TABLE_SIZE is 0;
//!   a client's encoder that inserted entries before it read that empties its table with a
//!   size update to 0 at the start of its first block after acknowledging it (§4.2), and one
//!   that never inserts (literals without indexing) never filled it: both are read off its
//!   header blocks (`hpackskim`). A connection whose client has acknowledged and sent no block
//!   since is parked too: the request that wakes it must begin with that update (checked
//!   before a new `h2` reads it; without it the connection is closed with GOAWAY NO_ERROR, and
//!   the client retries the request on a new one). The encoder side needs
//!   nothing: the client's decoder keeps the newest entries, so a new encoder's entries are at
//!   the same indices in it.
//! - **Stream identifiers** (RFC 9113 §5.1.1): a new `h2` accepts any new client stream, so the
//!   parked connection refuses a request on a stream not above the last one
//!   (`h2park::Wake::Reused`) and drops late frames for closed streams. A new `h2` would number
//!   its pushes from 2 again, so a connection that has promised a push is never parked again.
//! - **Frames in flight**: only a connection with no open stream, whose input and output end
//!   on a frame boundary and whose output is flushed, is parked again.

use crate::downstream::h2settings::{Inbound, PeerSeed, Tracker};
use crate::downstream::h2wire::{
    ACK, DATA, DEFAULT_WINDOW, FRAME_HEADER_LEN, FrameHead, MAX_WINDOW, PING, PREFACE,
    PUSH_PROMISE, SETTINGS, WINDOW_UPDATE, head, put_settings, put_window_update,
};
use crate::downstream::hpackskim::Skim;

/// What `h2` has written on a connection, frame by frame.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// Header bytes of the frame being read.
    head: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: usize,
    /// DATA payload bytes written: what the connection's send window has given.
    data: u64,
    /// A PUSH_PROMISE was written.
    promised: bool,
    /// A WINDOW_UPDATE of the connection was written (h2 gives its receive window above the
    /// default at the start, when that is at least half the default more).
    credit: bool,
    /// PINGs written (ours, not ACKs).
    pings: u64,
}

impl Default for Outbound {
    fn default() -> Self {
        Self {
            head: [0; FRAME_HEADER_LEN],
            have: 0,
            skip: 0,
            data: 0,
            promised: false,
            credit: false,
            pings: 0,
        }
    }
}

impl Outbound {
    /// Reads `bytes`, the next ones `h2` has written.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            if let (Some(dst), Some(src)) =
                (self.head.get_mut(self.have..self.have + n), bytes.get(..n))
            {
                dst.copy_from_slice(src);
            }
            self.have += n;
            bytes = bytes.get(n..).unwrap_or_default();
            if self.have == FRAME_HEADER_LEN {
                let h = FrameHead::parse(&self.head);
                match h.kind {
                    DATA => self.data += h.len as u64,
                    PUSH_PROMISE => self.promised = true,
                    WINDOW_UPDATE if h.stream == 0 => self.credit = true,
                    PING if h.flags & ACK == 0 => self.pings += 1,
                    _ => {}
                }
                self.have = 0;
                self.skip = h.len;
            }
        }
    }

    /// Whether what was written ends with a whole frame.
    pub(crate) fn at_frame_start(&self) -> bool {
        self.have == 0 && self.skip == 0
    }
}

/// Why an idle connection is not parked again (it stays with its `h2`; tried again later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// It has promised a push: a new `h2` would number pushes from 2 again.
    Pushed,
    /// The client has sent DATA: the credit it holds is not known here.
    ClientData,
    /// The client's HPACK encoder may have entries in the server's table.
    Table,
    /// The client has not acknowledged our SETTINGS.
    NotAcknowledged,
    /// A frame is half read or half written, a header block is not whole, written output is
    /// not flushed, or a PING of ours is not answered yet.
    InFlight,
    /// The connection's send window is below the default one a new `h2` would assume.
    Window,
}

/// What a connection parked again carries to its next `h2`.
#[derive(Debug, Clone)]
pub(crate) struct Again {
    /// The bytes a new `h2` reads first: the preface, the client's settings, an ACK of the
    /// server's SETTINGS and the connection's window above the default.
    pub(crate) replay: Vec<u8>,
    /// The highest stream the client has opened.
    pub(crate) last_stream: u32,
    /// The connection's send window.
    pub(crate) window: u64,
    /// The first `h2` gave the connection's receive window credit at its start, so the next
    /// one will too, and the client holds it already (`h2park::Unsent::again`).
    pub(crate) credit: bool,
    /// What the client told the connection (its settings, its widest grant), for the push
    /// ack and scheduler of the next `h2`.
    pub(crate) peer: PeerSeed,
    /// The walk over the client's header blocks, carried on (a table kept at size 0 stays so).
    /// When it may hold entries, the request that wakes the next `h2` must begin by emptying
    /// the table.
    pub(crate) hpack: Skim,
}

impl Again {
    /// The state to carry, or why the connection cannot be parked now: `tracker` has read
    /// everything `h2` read (`in_whole`: and no byte is left unread in between), `out` saw
    /// everything it wrote, `flushed`: all of it has left (no header held back, the last
    /// write followed by a finished flush).
    pub(crate) fn of(
        tracker: &Tracker,
        in_whole: bool,
        out: &Outbound,
        flushed: bool,
    ) -> Result<Self, Busy> {
        let inbound = tracker.inbound();
        if out.promised {
            return Err(Busy::Pushed);
        }
        if inbound.data {
            return Err(Busy::ClientData);
        }
        // Entries the client inserted before it read our SETTINGS_HEADER_TABLE_SIZE of 0 cannot
        // be referred to once it has acknowledged them and begun no block since: its next
        // block must begin by emptying the table (RFC 7541 §4.2), which the parked connection
        // checks before it wakes a new h2 (`Parker::again`).
        let emptied_next = inbound.blocks_since_ack == Some(0);
        let holds = inbound.hpack.holds() && !emptied_next;
        if holds || inbound.hpack.broken() || table_lags(inbound) {
            return Err(Busy::Table);
        }
        if !inbound.acknowledged {
            return Err(Busy::NotAcknowledged);
        }
        let whole = in_whole && tracker.at_frame_start() && !inbound.in_block;
        if !whole || !out.at_frame_start() || !flushed || out.pings > inbound.ping_acks {
            return Err(Busy::InFlight);
        }
        let window = (u64::from(DEFAULT_WINDOW) + inbound.granted)
            .checked_sub(out.data)
            .filter(|w| (u64::from(DEFAULT_WINDOW)..=MAX_WINDOW).contains(w))
            .ok_or(Busy::Window)?;
        let mut replay = Vec::with_capacity(PREFACE.len() + 64);
        replay.extend_from_slice(PREFACE);
        put_settings(&mut replay, inbound.settings().into_iter());
        replay.extend_from_slice(&head(0, SETTINGS, ACK, 0));
        let above = window - u64::from(DEFAULT_WINDOW);
        if above > 0 {
            // Within MAX_WINDOW - DEFAULT_WINDOW, so within u32.
            put_window_update(&mut replay, 0, u32::try_from(above).unwrap_or(u32::MAX));
        }
        Ok(Self {
            replay,
            last_stream: inbound.last_stream,
            window,
            credit: out.credit,
            peer: tracker.peer().seed(),
            hpack: inbound.hpack,
        })
    }
}

/// Whether the client has raised its SETTINGS_HEADER_TABLE_SIZE after lowering it: our HPACK
/// encoder may not have told its decoder the larger size yet (it does so with its next header
/// block, RFC 7541 §4.2), and a new encoder would take the larger size as known.
fn table_lags(inbound: &Inbound) -> bool {
    let current = inbound.settings.first().copied().flatten();
    matches!((inbound.least_table_size, current), (Some(least), Some(now)) if least < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downstream::h2wire::test_frames::{frame, settings};
    use crate::downstream::h2wire::{
        CONTINUATION, ENABLE_PUSH, HEADER_TABLE_SIZE, HEADERS, INITIAL_WINDOW_SIZE,
    };

    /// A client's bytes: preface, SETTINGS, ACK, a connection grant, and GETs on streams 1 and
    /// 3, the second's block starting with a table size update to 0.
    fn client(grant: u32) -> Vec<u8> {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[
            (ENABLE_PUSH, 0),
            (INITIAL_WINDOW_SIZE, 1 << 20),
            (HEADER_TABLE_SIZE, 8192),
        ]));
        c.extend(frame(SETTINGS, ACK, 0, &[]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &grant.to_be_bytes()));
        c.extend(frame(
            HEADERS,
            0x5,
            1,
            &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'],
        ));
        c.extend(frame(
            HEADERS,
            0x5,
            3,
            &[0x20, 0x82, 0x86, 0x84, 0x41, 0x01, b'a'],
        ));
        c
    }

    /// Why the connection cannot be parked now, if it cannot.
    fn why(t: &Tracker, in_whole: bool, out: &Outbound, flushed: bool) -> Option<Busy> {
        Again::of(t, in_whole, out, flushed).err()
    }

    fn tracked(bytes: &[u8], step: usize) -> Tracker {
        let mut t = Tracker::new();
        for piece in bytes.chunks(step) {
            t.feed(piece);
        }
        t
    }

    /// `h2`'s output: its SETTINGS, then a response of `body` bytes on stream `stream`.
    fn server(body: usize, push: bool) -> Vec<u8> {
        let mut s = settings(&[(HEADER_TABLE_SIZE, 0)]);
        if push {
            s.extend(frame(PUSH_PROMISE, 0x4, 1, &[0, 0, 0, 2, 0x82]));
        }
        s.extend(frame(HEADERS, 0x4, 1, &[0x88]));
        s.extend(frame(DATA, 0x1, 1, &vec![7; body]));
        s
    }

    #[test]
    fn a_served_connection_tells_a_new_h2_its_settings_and_window() {
        for step in [1, 5, 1000] {
            let t = tracked(&client(1_000_000), step);
            let mut out = Outbound::default();
            for piece in server(30_000, false).chunks(step) {
                out.feed(piece);
            }
            let again = Again::of(&t, true, &out, true).unwrap();
            assert_eq!(again.last_stream, 3);
            assert_eq!(again.window, 65_535 + 1_000_000 - 30_000);
            let mut want = PREFACE.to_vec();
            want.extend(settings(&[
                (HEADER_TABLE_SIZE, 8192),
                (ENABLE_PUSH, 0),
                (INITIAL_WINDOW_SIZE, 1 << 20),
            ]));
            want.extend(frame(SETTINGS, ACK, 0, &[]));
            want.extend(frame(
                WINDOW_UPDATE,
                0,
                0,
                &(1_000_000u32 - 30_000).to_be_bytes(),
            ));
            assert_eq!(again.replay, want, "step {step}");
            // A new tracker reads the replay to the same facts.
            let replayed = tracked(&again.replay, 3);
            assert_eq!(replayed.inbound().settings(), t.inbound().settings());
            assert_eq!(65_535 + replayed.inbound().granted, again.window);
        }
    }

    #[test]
    fn what_a_new_h2_could_not_carry_keeps_the_connection_with_its_h2() {
        let c = client(1_000_000);
        let t = tracked(&c, 7);
        let written = |body, push| {
            let mut out = Outbound::default();
            out.feed(&server(body, push));
            out
        };
        let ok = written(100, false);
        assert!(why(&t, true, &ok, true).is_none());
        assert_eq!(why(&t, true, &written(100, true), true), Some(Busy::Pushed));
        assert_eq!(why(&t, true, &ok, false), Some(Busy::InFlight));
        assert_eq!(why(&t, false, &ok, true), Some(Busy::InFlight));
        let mut half = written(100, false);
        half.feed(&frame(DATA, 0, 1, &[1, 2, 3])[..5]);
        assert_eq!(why(&t, true, &half, true), Some(Busy::InFlight));
        // More DATA sent than the client granted beyond the default window.
        assert_eq!(
            why(&t, true, &written(1_000_001, false), true),
            Some(Busy::Window)
        );

        // Without the size update to 0 the client's table holds what the first GET inserted.
        let cut = c.len() - 16;
        let t2 = tracked(&c[..cut], 4);
        assert_eq!(why(&t2, true, &ok, true), Some(Busy::Table));
        // An update back to 4096, then an insertion, fills it again.
        let mut grown = c.clone();
        grown.extend(frame(
            HEADERS,
            0x5,
            5,
            &[0x3f, 0xe1, 0x1f, 0x41, 0x01, b'b'],
        ));
        assert_eq!(why(&tracked(&grown, 9), true, &ok, true), Some(Busy::Table));
        // A client that never inserts (literals without indexing) never fills it, but an
        // insertion in a CONTINUATION frame does.
        let mut plain = c[..PREFACE.len() + 36 + 13].to_vec();
        plain.extend(frame(
            HEADERS,
            0x5,
            1,
            &[0x82, 0x86, 0x04, 0x02, b'/', b'a'],
        ));
        plain.extend(frame(HEADERS, 0x1, 3, &[0x82, 0x86]));
        plain.extend(frame(CONTINUATION, 0x4, 3, &[0x04, 0x02, b'/', b'b']));
        assert!(why(&tracked(&plain, 1), true, &ok, true).is_none());
        let mut split = plain.clone();
        split.extend(frame(HEADERS, 0x1, 5, &[0x82, 0x86]));
        split.extend(frame(CONTINUATION, 0x4, 5, &[0x41, 0x01, b'c']));
        assert_eq!(why(&tracked(&split, 2), true, &ok, true), Some(Busy::Table));
        // A padded block with priority: its first bytes are read past both fields.
        let mut padded = c[..cut].to_vec();
        padded.extend(frame(
            HEADERS,
            0x5 | 0x8 | 0x20,
            3,
            &[2, 0, 0, 0, 1, 16, 0x20, 0x82, 0, 0],
        ));
        assert!(why(&tracked(&padded, 1), true, &ok, true).is_none());
        // DATA from the client.
        let mut data = c.clone();
        data.extend(frame(DATA, 0, 3, &[1]));
        assert_eq!(
            why(&tracked(&data, 9), true, &ok, true),
            Some(Busy::ClientData)
        );
        // Our SETTINGS not acknowledged.
        let unacked: Vec<u8> = [&c[..PREFACE.len() + 27], &c[PREFACE.len() + 36..]].concat();
        assert_eq!(
            why(&tracked(&unacked, 9), true, &ok, true),
            Some(Busy::NotAcknowledged)
        );
    }

    #[test]
    fn frames_in_flight_keep_the_connection_with_its_h2() {
        let c = client(1_000_000);
        let mut ok = Outbound::default();
        ok.feed(&server(100, false));
        // A header block not whole yet.
        let mut open = c.clone();
        open.extend(frame(HEADERS, 0x1, 5, &[0x82]));
        assert_eq!(
            why(&tracked(&open, 3), true, &ok, true),
            Some(Busy::InFlight)
        );
        open.extend(frame(CONTINUATION, 0x4, 5, &[0x86]));
        assert_eq!(why(&tracked(&open, 3), true, &ok, true), None);
        // A PING of ours not answered yet.
        let mut pinged = ok.clone();
        pinged.feed(&frame(PING, 0, 0, &[0; 8]));
        assert_eq!(
            why(&tracked(&c, 5), true, &pinged, true),
            Some(Busy::InFlight)
        );
        let mut answered = c.clone();
        answered.extend(frame(PING, ACK, 0, &[0; 8]));
        assert_eq!(why(&tracked(&answered, 5), true, &pinged, true), None);
        // The connection's first WINDOW_UPDATE is carried as a fact about h2's start.
        assert!(!Again::of(&tracked(&c, 5), true, &ok, true).unwrap().credit);
        let mut credited = ok.clone();
        credited.feed(&frame(WINDOW_UPDATE, 0, 0, &[0, 0x3f, 0, 1]));
        assert!(
            Again::of(&tracked(&c, 5), true, &credited, true)
                .unwrap()
                .credit
        );
    }

    #[test]
    fn a_table_size_raised_after_being_lowered_may_not_be_known_to_the_client_decoder() {
        let mut c = client(1_000_000);
        let mut ok = Outbound::default();
        ok.feed(&server(100, false));
        c.extend(settings(&[(HEADER_TABLE_SIZE, 1024)]));
        assert_eq!(why(&tracked(&c, 4), true, &ok, true), None);
        c.extend(settings(&[(HEADER_TABLE_SIZE, 4096)]));
        assert_eq!(why(&tracked(&c, 4), true, &ok, true), Some(Busy::Table));
    }

    #[test]
    fn a_headers_frame_too_short_for_its_fields_is_read_past_and_leaves_nothing_known() {
        let mut ok = Outbound::default();
        ok.feed(&server(100, false));
        for (flags, payload) in [
            (0x24u8, &[0u8, 0, 1][..]),
            (0x0c, &[5, 0x82][..]),
            (0x2c, &[0][..]),
        ] {
            let mut c = client(1_000_000);
            c.extend(frame(HEADERS, flags, 5, payload));
            c.extend(frame(PING, ACK, 0, &[0; 8]));
            for step in [1, 2, 100] {
                let t = tracked(&c, step);
                assert!(t.at_frame_start(), "flags {flags:#x}, pieces of {step}");
                assert_eq!(t.inbound().ping_acks, 1, "the frame after it read");
                assert_eq!(why(&t, true, &ok, true), Some(Busy::Table));
            }
        }
    }

    #[test]
    fn a_client_that_indexed_before_reading_our_settings_is_parked_once_it_has_acknowledged() {
        let mut ok = Outbound::default();
        ok.feed(&server(100, false));
        // Its first request goes with the preface, before our SETTINGS reach it.
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[(ENABLE_PUSH, 0)]));
        c.extend(frame(
            HEADERS,
            0x5,
            1,
            &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'],
        ));
        c.extend(frame(SETTINGS, ACK, 0, &[]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes()));
        let again = Again::of(&tracked(&c, 3), true, &ok, true).expect("parked");
        assert!(
            again.hpack.holds(),
            "its next request must empty the table first"
        );
        // A block after the ACK that does not begin by emptying the table breaks RFC 7541.
        let mut lazy = c.clone();
        lazy.extend(frame(HEADERS, 0x5, 3, &[0x82, 0xbe]));
        assert_eq!(why(&tracked(&lazy, 3), true, &ok, true), Some(Busy::Table));
        let mut emptied = c.clone();
        emptied.extend(frame(HEADERS, 0x5, 3, &[0x20, 0x82]));
        let again = Again::of(&tracked(&emptied, 3), true, &ok, true).expect("parked");
        assert!(!again.hpack.holds());
    }
}
