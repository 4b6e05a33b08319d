//! The frame layout, spec §8.2.1.
//!
//! ```text
//! offset size  field
//! 0      1     code         message code (§8.3)
//! 1      1     flags        bit 0 END: last message of this stream; bits 1-7 reserved, must be 0
//! 2      4     stream_id    u32 big-endian, never 0
//! 6      4     meta_len     u32 big-endian, length of the metadata that follows (<= 16 KiB)
//! 10     n     metadata     UTF-8 JSON object
//! 10+n   ...   payload      resource bytes, may be empty
//! ```
//!
//! A frame is one whole WebSocket binary message; the payload runs to the end of it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::close_code;
use super::stream::StreamId;
use crate::limits;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 10;

/// The END flag: last message of its stream.
pub const FLAG_END: u8 = 0x01;

/// One DASH message as carried in one WebSocket binary message, metadata not yet interpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The message code (§8.3); unknown codes are kept for a stream-level error.
    pub code: u8,
    /// The END flag.
    pub end: bool,
    /// The stream this message belongs to.
    pub stream_id: StreamId,
    /// The metadata bytes (JSON), at most [`limits::MAX_WS_METADATA`].
    pub metadata: Bytes,
    /// The payload bytes.
    pub payload: Bytes,
}

/// Why a frame could not be read. Each closes the socket (spec §8.4).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("frame of {len} bytes is shorter than the 10-byte header")]
    TooShort {
        /// The message length.
        len: usize,
    },
    /// Reserved flag bits are set.
    #[error("reserved flag bits set ({flags:#04x})")]
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The stream id is 0.
    #[error("stream id 0")]
    ZeroStreamId,
    /// `meta_len` is over [`limits::MAX_WS_METADATA`].
    #[error("metadata length {len} over the {max}-byte cap")]
    MetadataTooLarge {
        /// The declared length.
        len: u32,
        /// The cap.
        max: usize,
    },
    /// `meta_len` runs past the end of the message.
    #[error("metadata length {len} runs past the end of the message ({available} bytes left)")]
    MetadataPastEnd {
        /// The declared length.
        len: u32,
        /// The bytes that follow the header.
        available: usize,
    },
    /// The message is over the size cap.
    #[error("message over the {max}-byte cap")]
    TooLarge {
        /// The cap.
        max: usize,
    },
}

impl FrameError {
    /// The WebSocket close code this error is answered with.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// The fixed header fields, checked.
struct Head {
    code: u8,
    end: bool,
    stream_id: StreamId,
    meta_len: u32,
}

fn read_head(mut b: &[u8]) -> Result<Head, FrameError> {
    if b.len() < HEADER_LEN {
        return Err(FrameError::TooShort { len: b.len() });
    }
    let code = b.get_u8();
    let flags = b.get_u8();
    if flags & !FLAG_END != 0 {
        return Err(FrameError::ReservedFlags { flags });
    }
    let stream_id = StreamId::new(b.get_u32()).ok_or(FrameError::ZeroStreamId)?;
    let meta_len = b.get_u32();
    if meta_len as usize > limits::MAX_WS_METADATA {
        return Err(FrameError::MetadataTooLarge {
            len: meta_len,
            max: limits::MAX_WS_METADATA,
        });
    }
    Ok(Head {
        code,
        end: flags & FLAG_END != 0,
        stream_id,
        meta_len,
    })
}

impl Frame {
    /// Reads one whole message of at most `max_message` bytes, without copying the payload.
    pub fn decode(mut msg: Bytes, max_message: usize) -> Result<Self, FrameError> {
        if msg.len() > max_message {
            return Err(FrameError::TooLarge { max: max_message });
        }
        let head = read_head(&msg)?;
        msg.advance(HEADER_LEN);
        let meta_len = head.meta_len as usize;
        if meta_len > msg.len() {
            return Err(FrameError::MetadataPastEnd {
                len: head.meta_len,
                available: msg.len(),
            });
        }
        let metadata = msg.split_to(meta_len);
        Ok(Self {
            code: head.code,
            end: head.end,
            stream_id: head.stream_id,
            metadata,
            payload: msg,
        })
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.metadata.len() + self.payload.len()
    }

    /// Appends the encoding to `dst`.
    ///
    /// The metadata must be at most [`limits::MAX_WS_METADATA`] bytes (the message layer
    /// guarantees it); a longer one is a caller bug and is cut off at the cap's length field.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8(self.code);
        dst.put_u8(if self.end { FLAG_END } else { 0 });
        dst.put_u32(self.stream_id.get());
        dst.put_u32(u32::try_from(self.metadata.len()).unwrap_or(u32::MAX));
        dst.put_slice(&self.metadata);
        dst.put_slice(&self.payload);
    }

    /// The encoding as one buffer.
    pub fn encode(&self) -> Bytes {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut dst);
        dst.freeze()
    }
}

/// Incremental decoder for a message that arrives in pieces (WebSocket fragments, or a socket
/// read in chunks).
///
/// [`Decoder::decode`] returns `Ok(None)` while the message is incomplete. The size cap and the
/// header are checked as soon as the bytes are there, so a bad or oversized message costs no
/// more than its first bytes; after an error the decoder is ready for the next message.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    buf: BytesMut,
    head_checked: bool,
}

impl Decoder {
    /// A decoder for messages of at most `max_message` bytes (capped by
    /// [`limits::MAX_WS_MESSAGE`] for client messages; a client decoding server messages may
    /// allow more).
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            buf: BytesMut::new(),
            head_checked: false,
        }
    }

    /// Feeds the next piece of the current message; `last` marks its final piece.
    pub fn decode(&mut self, piece: Bytes, last: bool) -> Result<Option<Frame>, FrameError> {
        let result = self.feed(piece, last);
        if !matches!(result, Ok(None)) {
            self.buf.clear();
            self.head_checked = false;
        }
        result
    }

    /// Bytes of the current message received so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn feed(&mut self, piece: Bytes, last: bool) -> Result<Option<Frame>, FrameError> {
        if self.buf.len().saturating_add(piece.len()) > self.max_message {
            return Err(FrameError::TooLarge {
                max: self.max_message,
            });
        }
        if last && self.buf.is_empty() {
            // The whole message in one piece: no copy.
            return Frame::decode(piece, self.max_message).map(Some);
        }
        self.buf.extend_from_slice(&piece);
        if !self.head_checked && self.buf.len() >= HEADER_LEN {
            read_head(&self.buf)?;
            self.head_checked = true;
        }
        if !last {
            return Ok(None);
        }
        let msg = std::mem::take(&mut self.buf).freeze();
        Frame::decode(msg, self.max_message).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(meta: &'static [u8], payload: &'static [u8]) -> Frame {
        Frame {
            code: 4,
            end: true,
            stream_id: StreamId::new(3).unwrap(),
            metadata: Bytes::from_static(meta),
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn layout_is_exact() {
        let f = frame(b"{}", b"xyz");
        assert_eq!(
            f.encode().as_ref(),
            b"\x04\x01\x00\x00\x00\x03\x00\x00\x00\x02{}xyz"
        );
        assert_eq!(Frame::decode(f.encode(), 100).unwrap(), f);
    }

    #[test]
    fn errors_and_close_codes() {
        let dec = |b: &'static [u8]| Frame::decode(Bytes::from_static(b), 64).unwrap_err();
        assert_eq!(dec(b"\x01\x00\x00"), FrameError::TooShort { len: 3 });
        assert_eq!(
            dec(b"\x01\x02\x00\x00\x00\x01\x00\x00\x00\x00"),
            FrameError::ReservedFlags { flags: 2 }
        );
        assert_eq!(
            dec(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
            FrameError::ZeroStreamId
        );
        assert_eq!(
            dec(b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x05{}"),
            FrameError::MetadataPastEnd {
                len: 5,
                available: 2
            }
        );
        assert_eq!(
            dec(b"\x01\x00\x00\x00\x00\x01\x00\x00\x40\x01"),
            FrameError::MetadataTooLarge {
                len: 16385,
                max: 16384
            }
        );
        assert_eq!(dec(&[0u8; 65]), FrameError::TooLarge { max: 64 });
        assert_eq!(FrameError::TooLarge { max: 1 }.close_code(), 1009);
        assert_eq!(FrameError::ZeroStreamId.close_code(), 1002);
    }

    #[test]
    fn incremental_decoding() {
        let f = frame(b"{\"url\":\"a\"}", b"0123456789");
        let bytes = f.encode();
        for split in 0..bytes.len() {
            let mut d = Decoder::new(1024);
            assert_eq!(d.decode(bytes.slice(..split), false), Ok(None));
            assert_eq!(d.decode(bytes.slice(split..), true), Ok(Some(f.clone())));
            assert_eq!(d.buffered(), 0);
        }
        // One byte at a time.
        let mut d = Decoder::new(1024);
        for i in 0..bytes.len() - 1 {
            assert_eq!(d.decode(bytes.slice(i..=i), false), Ok(None));
        }
        assert_eq!(d.decode(bytes.slice(bytes.len() - 1..), true), Ok(Some(f)));
    }

    #[test]
    fn incremental_errors_early_and_recovers() {
        let mut d = Decoder::new(16);
        // Header with reserved bits: rejected as soon as 10 bytes are in, before `last`.
        let bad = Bytes::from_static(b"\x01\x80\x00\x00\x00\x01\x00\x00\x00\x00");
        assert_eq!(
            d.decode(bad, false),
            Err(FrameError::ReservedFlags { flags: 0x80 })
        );
        assert_eq!(d.buffered(), 0);
        // Oversize: rejected on the piece that crosses the cap.
        let head = Bytes::from_static(b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00ab");
        assert_eq!(d.decode(head, false), Ok(None));
        assert_eq!(
            d.decode(Bytes::from_static(&[0; 5]), false),
            Err(FrameError::TooLarge { max: 16 })
        );
        // Truncated message at `last`.
        assert_eq!(
            d.decode(Bytes::from_static(b"\x01\x00"), true),
            Err(FrameError::TooShort { len: 2 })
        );
    }
}
