//! HTTP/2 on the wire, as far as the modules that read frames the `h2` crate keeps to itself
//! need it (`h2settings`, `h2park`): RFC 9113's constants and a frame header's fields. Sans-IO.

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header's length (RFC 9113 §4.1).
pub(crate) const FRAME_HEADER_LEN: usize = 9;
/// Frame types (RFC 9113 §6).
pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;
/// The ACK flag of SETTINGS and PING.
pub(crate) const ACK: u8 = 0x1;
/// HEADERS flags (RFC 9113 §6.2).
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;
/// Error codes (RFC 9113 §7).
pub(crate) const NO_ERROR: u32 = 0x0;
pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
/// Every flow-control window's size before SETTINGS or WINDOW_UPDATE change it (RFC 9113
/// §6.9.2).
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: u64 = 0x7fff_ffff;
/// SETTINGS parameters read here (RFC 9113 §6.5.2, RFC 8441 §3).
pub(crate) const HEADER_TABLE_SIZE: u16 = 0x1;
pub(crate) const ENABLE_PUSH: u16 = 0x2;
pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
pub(crate) const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// A frame header's fields (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    /// The payload's length.
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    /// The stream, its reserved bit cleared.
    pub(crate) stream: u32,
}

impl FrameHead {
    /// The fields of the header `b`.
    pub(crate) fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// The fields of the header at the start of `bytes`, if it is there whole.
    pub(crate) fn at(bytes: &[u8]) -> Option<Self> {
        bytes.first_chunk::<FRAME_HEADER_LEN>().map(Self::parse)
    }

    /// The whole frame's length, header included.
    pub(crate) fn whole(&self) -> usize {
        FRAME_HEADER_LEN + self.len
    }
}

/// A frame header of `kind` with `flags` on `stream`, for a payload of `len` bytes.
pub(crate) fn head(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; FRAME_HEADER_LEN] {
    let [_, a, b, c] = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    let [s0, s1, s2, s3] = (stream & 0x7fff_ffff).to_be_bytes();
    [a, b, c, kind, flags, s0, s1, s2, s3]
}

/// A GOAWAY frame (RFC 9113 §6.8) with `last` (the last stream processed) and `code`.
pub(crate) fn goaway(last: u32, code: u32) -> [u8; FRAME_HEADER_LEN + 8] {
    let mut f = [0; FRAME_HEADER_LEN + 8];
    f[..FRAME_HEADER_LEN].copy_from_slice(&head(8, GOAWAY, 0, 0));
    f[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4].copy_from_slice(&(last & 0x7fff_ffff).to_be_bytes());
    f[FRAME_HEADER_LEN + 4..].copy_from_slice(&code.to_be_bytes());
    f
}

/// Appends a SETTINGS frame (RFC 9113 §6.5) with `entries` to `out`.
pub(crate) fn put_settings(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (u16, u32)>) {
    out.extend_from_slice(&head(6 * entries.len(), SETTINGS, 0, 0));
    for (id, value) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a WINDOW_UPDATE frame (RFC 9113 §6.9) for `stream` to `out`.
pub(crate) fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    out.extend_from_slice(&head(4, WINDOW_UPDATE, 0, stream));
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

/// Frames as a client writes them, for the tests.
#[cfg(test)]
pub(crate) mod test_frames {
    /// A frame of `kind` with `flags` on `stream`.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A SETTINGS frame with `entries`.
    pub(crate) fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in entries {
            p.extend(id.to_be_bytes());
            p.extend(v.to_be_bytes());
        }
        frame(super::SETTINGS, 0, 0, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_its_fields_and_clears_the_reserved_bit() {
        let h = FrameHead::at(&[0x01, 0x02, 0x03, 0x1, 0x25, 0x80, 0, 0, 0x0d, 0xff]).unwrap();
        assert_eq!(
            h,
            FrameHead {
                len: 0x010203,
                kind: 0x1,
                flags: 0x25,
                stream: 13
            }
        );
        assert_eq!(h.whole(), 9 + 0x010203);
        assert_eq!(FrameHead::at(&[0; 8]), None, "not whole");
    }

    #[test]
    fn frames_built_here_read_back() {
        let g = goaway(7, PROTOCOL_ERROR);
        assert_eq!(
            FrameHead::at(&g).unwrap(),
            FrameHead {
                len: 8,
                kind: GOAWAY,
                flags: 0,
                stream: 0
            }
        );
        assert_eq!(&g[9..], &[0, 0, 0, 7, 0, 0, 0, 1]);
        let mut out = Vec::new();
        put_settings(
            &mut out,
            [(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 1 << 20)].into_iter(),
        );
        put_window_update(&mut out, 0, 1000);
        assert_eq!(
            out[..21],
            test_frames::settings(&[(ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, 1 << 20)])[..]
        );
        assert_eq!(
            out[21..],
            test_frames::frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes())[..]
        );
    }
}
