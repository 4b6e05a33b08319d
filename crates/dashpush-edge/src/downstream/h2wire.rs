//! HTTP/2 on the wire, as far as the modules that read frames the `h2` crate keeps to itself
//! need it (`h2settings`, `h2park`): RFC 9113's constants and a frame header's fields. Sans-IO.

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header's length (RFC 9113 §4.1).
pub(crate) const FRAME_HEADER_LEN: usize = 9;
/// Frame types (RFC 9113 §6).
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
/// The ACK flag of SETTINGS and PING.
pub(crate) const ACK: u8 = 0x1;
/// Every flow-control window's size before SETTINGS or WINDOW_UPDATE change it (RFC 9113
/// §6.9.2).
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: u64 = 0x7fff_ffff;
/// SETTINGS parameters read here (RFC 9113 §6.5.2, RFC 8441 §3).
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
}
