//! Golden byte fixtures for every WebSocket message of spec §8.4.
//!
//! The `.bin` files are written by `tests/fixtures/ws/make.py`, an implementation of the §8.2.1
//! layout independent of this crate's codec. Each typed message must encode to exactly those
//! bytes and decode back from them.

use bytes::Bytes;
use dashpush_proto::limits;
use dashpush_proto::ws::message::{
    Body, ByteRange, EndOfStream, EndReason, MpdRequest, Received, SegmentCancel, SegmentRequest,
};
use dashpush_proto::ws::{Decoder, Frame, Message, MessageCode, StreamId};

fn sid(n: u32) -> StreamId {
    StreamId::new(n).unwrap()
}

fn fixture(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/fixtures/ws/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn cases() -> Vec<(&'static str, Message)> {
    vec![
        (
            "mpd_request",
            Message {
                stream_id: sid(1),
                end: true,
                body: Body::MpdRequest(MpdRequest {
                    url: "/vod/manifest.mpd".into(),
                    push_directive: Some("urn:mpeg:dash:fdh:2016:push-fast-start".into()),
                }),
            },
        ),
        (
            "segment_request",
            Message {
                stream_id: sid(3),
                end: true,
                body: Body::SegmentRequest(SegmentRequest {
                    url: "/vod/video/seg-00005.m4s".into(),
                    push_directive: Some("urn:mpeg:dash:fdh:2016:push-next;3".into()),
                    range: Some(ByteRange {
                        first: 0,
                        last: Some(1023),
                    }),
                }),
            },
        ),
        (
            "mpd_received",
            Message {
                stream_id: sid(1),
                end: false,
                body: Body::MpdReceived(Received {
                    url: "/vod/manifest.mpd".into(),
                    status: 200,
                    content_type: "application/dash+xml".into(),
                    content_length: Some(9),
                    push_ack: Some(
                        r#"urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":1}"#.into(),
                    ),
                    payload: Bytes::from_static(b"<MPD/>\r\n\x00"),
                    ..Default::default()
                }),
            },
        ),
        (
            "segment_received_pushed",
            Message {
                stream_id: sid(2),
                end: true,
                body: Body::SegmentReceived(Received {
                    url: "/vod/video/init.mp4".into(),
                    status: 200,
                    content_type: "video/mp4".into(),
                    pushed: true,
                    parent: Some(sid(1)),
                    payload: Bytes::from_static(b"\x00\x00\x00\x08ftyp"),
                    ..Default::default()
                }),
            },
        ),
        (
            "end_of_stream_complete",
            Message {
                stream_id: sid(1),
                end: true,
                body: Body::EndOfStream(EndOfStream {
                    reason: EndReason::Complete,
                    status: None,
                    detail: None,
                }),
            },
        ),
        (
            "end_of_stream_error",
            Message {
                stream_id: sid(5),
                end: true,
                body: Body::EndOfStream(EndOfStream {
                    reason: EndReason::Error,
                    status: Some(404),
                    detail: Some("origin answered 404".into()),
                }),
            },
        ),
        (
            "segment_cancel",
            Message {
                stream_id: sid(7),
                end: true,
                body: Body::SegmentCancel(SegmentCancel {
                    streams: vec![sid(2), sid(4)],
                    urls: vec!["/vod/video/seg-00007.m4s".into()],
                }),
            },
        ),
    ]
}

#[test]
fn every_message_matches_its_golden_bytes() {
    let cases = cases();
    // One fixture per message code of §8.3.
    for code in 1..=6u8 {
        let code = MessageCode::from_u8(code).unwrap();
        assert!(
            cases.iter().any(|(_, m)| m.body.code() == code),
            "{code:?} lacks a fixture"
        );
    }
    for (name, message) in cases {
        let golden = fixture(name);
        assert_eq!(
            message.encode().unwrap(),
            golden,
            "{name}: encoding differs"
        );
        let frame = Frame::decode(golden.clone(), limits::MAX_WS_MESSAGE).unwrap();
        assert_eq!(
            Message::from_frame(frame).unwrap(),
            message,
            "{name}: decoding differs"
        );
        // The incremental decoder agrees when the bytes arrive one at a time.
        let mut d = Decoder::new(limits::MAX_WS_MESSAGE);
        let last = golden.len() - 1;
        for i in 0..last {
            assert_eq!(d.decode(golden.slice(i..=i), false), Ok(None), "{name}");
        }
        let frame = d.decode(golden.slice(last..), true).unwrap().unwrap();
        assert_eq!(
            Message::from_frame(frame).unwrap(),
            message,
            "{name}: incremental"
        );
    }
}

#[test]
fn message_directions() {
    for (name, m) in cases() {
        let client = name.ends_with("request") || name == "segment_cancel";
        assert_eq!(m.body.code().is_client_to_server(), client, "{name}");
    }
}
