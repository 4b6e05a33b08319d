//! Watches the client's `SETTINGS_ENABLE_PUSH` on an HTTP/2 connection.
//!
//! The `h2` crate refuses a push the client disabled but does not say so in advance, and the
//! push acknowledgement (spec §7.2) must be decided before the response head is sent. So the
//! connection's read side passes through [`PushSetting`], which follows the client's frame
//! headers (after the 24-byte preface) and records every `SETTINGS_ENABLE_PUSH` value the
//! client sends (RFC 9113 §6.5.2; the default is 1). It only reads frame headers and SETTINGS
//! payloads; everything else is skipped by length, and every byte is handed on unchanged.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const ENABLE_PUSH: u16 = 0x2;

/// The client's current `SETTINGS_ENABLE_PUSH`, shared with the request handlers.
#[derive(Debug, Clone)]
pub struct PushEnabled(Arc<AtomicBool>);

impl PushEnabled {
    /// Whether the client allows push now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
}

/// The parser, separate from I/O so it can be tested byte by byte.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    enabled: PushEnabled,
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
            state: State::Preface(PREFACE_LEN),
            enabled: PushEnabled(Arc::new(AtomicBool::new(true))),
        }
    }

    /// The shared flag.
    pub fn enabled(&self) -> PushEnabled {
        self.enabled.clone()
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
                        let len = usize::from(buf[0]) << 16
                            | usize::from(buf[1]) << 8
                            | usize::from(buf[2]);
                        let (kind, flags) = (buf[3], buf[4]);
                        let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                        let stream0 = stream & 0x7fff_ffff == 0;
                        self.state = if len == 0 {
                            header()
                        } else if kind == SETTINGS && flags & ACK == 0 && stream0 {
                            State::Settings {
                                left: len,
                                entry: [0; 6],
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
                        if id == ENABLE_PUSH {
                            self.enabled.0.store(value != 0, Ordering::Release);
                        }
                        *have = 0;
                    }
                    if *left == 0 {
                        self.state = header();
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

/// An I/O stream whose read side feeds a [`Tracker`].
pub struct PushSetting<S> {
    inner: S,
    tracker: Tracker,
}

impl<S> PushSetting<S> {
    /// Wraps a connection from its first byte (the preface).
    pub fn new(inner: S) -> (Self, PushEnabled) {
        let tracker = Tracker::new();
        let enabled = tracker.enabled();
        (Self { inner, tracker }, enabled)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PushSetting<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && let Some(new) = buf.filled().get(before..)
        {
            this.tracker.feed(new);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PushSetting<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut s = id.to_be_bytes().to_vec();
        s.extend_from_slice(&value.to_be_bytes());
        s
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
            assert_eq!(t.enabled().get(), push == 1);
            let mut t = Tracker::new();
            for b in &bytes {
                t.feed(std::slice::from_ref(b));
            }
            assert_eq!(t.enabled().get(), push == 1, "byte by byte");
        }
    }

    #[test]
    fn default_is_enabled_and_later_settings_change_it() {
        let mut t = Tracker::new();
        let mut c = PREFACE.to_vec();
        c.extend(frame(SETTINGS, 0, 0, &[]));
        t.feed(&c);
        assert!(t.enabled().get());
        t.feed(&frame(SETTINGS, 0, 0, &setting(ENABLE_PUSH, 0)));
        assert!(!t.enabled().get());
        // A SETTINGS ack carries no entries and changes nothing.
        t.feed(&frame(SETTINGS, ACK, 0, &[]));
        assert!(!t.enabled().get());
        t.feed(&frame(SETTINGS, 0, 0, &setting(ENABLE_PUSH, 1)));
        assert!(t.enabled().get());
    }
}
