//! WebSocket message decoding (spec §8.2.1, §8.4): whole and in pieces, never panics, never
//! accepts more than the cap, and every decoded message re-encodes to a message that decodes
//! to the same value.
#![no_main]

use bytes::Bytes;
use dashpush_proto::limits;
use dashpush_proto::ws::{Decoder, Frame, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks where the message is split for the incremental decoder.
    let Some((&split, msg)) = data.split_first() else {
        return;
    };
    let msg = Bytes::copy_from_slice(msg);
    let whole = Frame::decode(msg.clone(), limits::MAX_WS_MESSAGE);
    let cut = usize::from(split).min(msg.len());
    let mut d = Decoder::new(limits::MAX_WS_MESSAGE);
    let first = d.decode(msg.slice(..cut), false);
    let pieces = match first {
        Ok(None) => d.decode(msg.slice(cut..), true),
        Ok(Some(_)) => panic!("a non-final piece produced a frame"),
        Err(e) => Err(e),
    };
    assert_eq!(whole.is_ok(), pieces.is_ok(), "whole and incremental decoding disagree");
    let Ok(frame) = whole else {
        return;
    };
    assert!(frame.encoded_len() <= limits::MAX_WS_MESSAGE);
    if let Ok(m) = Message::from_frame(frame) {
        if let Ok(wire) = m.encode() {
            let again = Frame::decode(wire, usize::MAX).map(Message::from_frame);
            assert_eq!(again, Ok(Ok(m)));
        }
    }
});
