//! The WebSocket sub-protocol, spec §8.
//!
//! One DASH message is one WebSocket binary message ([`frame`], §8.2.1) carrying a message code,
//! an END flag, a stream id ([`stream`], §8.2.2), JSON metadata and an optional payload. The six
//! messages of §8.4 are typed in [`message`].
//!
//! Error classes (spec §8.4): a frame that cannot be read at all ([`FrameError`]) closes the
//! socket with [`FrameError::close_code`]; a readable frame with a bad message
//! ([`MessageError`]) is answered with End of stream `error` on its stream and the socket stays
//! open.

pub mod frame;
pub mod message;
pub mod stream;

pub use frame::{Decoder, Frame, FrameError};
pub use message::{
    ByteRange, EndOfStream, EndReason, Message, MessageCode, MessageError, MessageErrorKind,
    MpdRequest, Received, SegmentCancel, SegmentRequest,
};
pub use stream::{StreamError, StreamId, Streams};

/// The sub-protocol name registered with IANA (spec §8.5 (firm)).
pub const SUBPROTOCOL: &str = "2016.serverpush.dash.mpeg.org";

/// Close codes the gateway uses (RFC 6455 §7.4.1), per spec §8.4.
pub mod close_code {
    /// A text message was received (binary only).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame could not be read (short, reserved bits, metadata past the end, stream id 0).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client stopped reading and the send queue stayed full past the timeout.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the size cap.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}
