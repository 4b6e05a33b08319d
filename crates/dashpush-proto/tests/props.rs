//! Property tests: every valid value round-trips through its textual or binary form, and no
//! input makes a parser panic or exceed a cap.
//!
//! proptest rather than quickcheck: its strategies compose per field (so generated values are
//! valid by construction, not filtered), and it shrinks failures automatically.

use std::time::Duration;

use bytes::Bytes;
use dashpush_proto::fast_start::ContentType;
use dashpush_proto::limits;
use dashpush_proto::url_template::Run;
use dashpush_proto::ws::message::{
    Body, ByteRange, EndOfStream, EndReason, MpdRequest, Received, SegmentCancel, SegmentRequest,
};
use dashpush_proto::ws::{Decoder, Frame, Message, StreamId};
use dashpush_proto::{
    FastStartParams, PushAck, PushDirective, PushDuration, UrlList, UrlTemplate, http2,
};
use proptest::prelude::*;

/// A URI-reference-ish entry made of characters the list grammar allows.
fn entry() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~/?#@!$&'()*+;=:-]{1,40}(%[0-9A-F]{2})?"
}

fn url_list() -> impl Strategy<Value = UrlList> {
    prop::collection::vec(entry(), 1..=limits::MAX_LIST_ENTRIES)
        .prop_map(|e| UrlList::new(e).unwrap())
}

fn run() -> impl Strategy<Value = Run> {
    (any::<u64>(), 0u64..1_000_000, 1u64..1000).prop_map(|(start, span, step)| Run {
        start,
        end: start.saturating_add(span),
        step,
    })
}

fn literal() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._/{}-]{0,30}"
}

fn url_template() -> impl Strategy<Value = UrlTemplate> {
    (
        literal(),
        literal(),
        prop::option::of(1u8..=limits::MAX_TEMPLATE_WIDTH),
        prop::collection::vec(run(), 1..=limits::MAX_TEMPLATE_RUNS),
    )
        .prop_map(|(p, s, w, r)| UrlTemplate::new(p, s, w, r).unwrap())
}

fn fast_start() -> impl Strategy<Value = FastStartParams> {
    let ty = prop_oneof![
        Just(ContentType::Video),
        Just(ContentType::Audio),
        Just(ContentType::Text)
    ];
    (
        prop::option::of(1u32..100),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::collection::vec(ty, 0..4)),
        prop::option::of(prop::collection::vec(".{1,20}", 0..8)),
    )
        .prop_map(
            |(segments, bandwidth, types, representations)| FastStartParams {
                segments,
                bandwidth,
                types,
                representations,
            },
        )
}

fn directive() -> impl Strategy<Value = PushDirective> {
    prop_oneof![
        Just(PushDirective::None),
        (1u32..).prop_map(PushDirective::Next),
        (0u64..1_000_000, 0u32..1_000_000_000).prop_filter_map("zero", |(s, n)| {
            PushDuration::new(Duration::new(s, n)).map(PushDirective::Time)
        }),
        url_list().prop_map(PushDirective::List),
        url_template().prop_map(PushDirective::Template),
        fast_start().prop_map(PushDirective::FastStart),
        ("x-[a-z0-9-]{0,20}", prop::option::of("[ -~]{1,40}")).prop_map(|(token, params)| {
            // A parameter that is only whitespace reads back as absent; skip it.
            let params = params.filter(|p| !p.trim().is_empty());
            PushDirective::Unknown { token, params }
        }),
    ]
}

fn sid() -> impl Strategy<Value = StreamId> {
    (1u32..).prop_map(|n| StreamId::new(n).unwrap())
}

fn short_text() -> impl Strategy<Value = String> {
    ".{1,60}"
}

fn body() -> impl Strategy<Value = Body> {
    let received = || {
        (
            short_text(),
            100u16..600,
            "[a-z]{1,10}/[a-z0-9.+-]{1,20}",
            prop::option::of(any::<u64>()),
            prop::option::of(short_text()),
            any::<bool>(),
            prop::option::of(sid()),
            prop::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(
                |(url, status, content_type, content_length, push_ack, pushed, parent, p)| {
                    Received {
                        url,
                        status,
                        content_type,
                        content_length,
                        push_ack,
                        pushed,
                        parent,
                        payload: Bytes::from(p),
                    }
                },
            )
    };
    let range = (any::<u32>(), prop::option::of(0u32..1000)).prop_map(|(f, span)| ByteRange {
        first: u64::from(f),
        last: span.map(|s| u64::from(f) + u64::from(s)),
    });
    let reason = prop_oneof![
        Just(EndReason::Complete),
        Just(EndReason::Cancelled),
        Just(EndReason::Error)
    ];
    prop_oneof![
        (short_text(), prop::option::of(short_text())).prop_map(|(url, push_directive)| {
            Body::MpdRequest(MpdRequest {
                url,
                push_directive,
            })
        }),
        (
            short_text(),
            prop::option::of(short_text()),
            prop::option::of(range)
        )
            .prop_map(|(url, push_directive, range)| Body::SegmentRequest(
                SegmentRequest {
                    url,
                    push_directive,
                    range
                }
            )),
        received().prop_map(Body::MpdReceived),
        received().prop_map(Body::SegmentReceived),
        (
            reason,
            prop::option::of(100u16..600),
            prop::option::of(short_text())
        )
            .prop_map(|(reason, status, detail)| Body::EndOfStream(EndOfStream {
                reason,
                status,
                detail
            })),
        (
            prop::collection::vec(sid(), 0..20),
            prop::collection::vec(short_text(), 0..20)
        )
            .prop_map(|(streams, urls)| Body::SegmentCancel(SegmentCancel { streams, urls })),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (sid(), any::<bool>(), body()).prop_map(|(stream_id, end, body)| Message {
        stream_id,
        end,
        body,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn directive_round_trips(d in directive()) {
        let text = d.to_string();
        prop_assert_eq!(PushDirective::parse(&text), Ok(d.clone()));
        prop_assert_eq!(PushAck::parse(&text), Ok(PushAck(d)));
    }

    #[test]
    fn list_round_trips(l in url_list()) {
        prop_assert_eq!(UrlList::parse(&l.to_string()), Ok(l));
    }

    #[test]
    fn template_round_trips_and_expansion_is_capped(t in url_template()) {
        prop_assert_eq!(UrlTemplate::parse(&t.to_string()), Ok(t.clone()));
        let n = t.expand().count() as u64;
        prop_assert_eq!(n, t.described_len().min(limits::MAX_TEMPLATE_EXPANSION as u64));
        for url in t.expand() {
            prop_assert!(url.len() <= limits::MAX_URL_LEN);
        }
    }

    #[test]
    fn fast_start_round_trips(p in fast_start()) {
        let text = p.to_string();
        prop_assert_eq!(FastStartParams::parse(&text), Ok(p.clone()));
        prop_assert!(p.effective_segments() <= limits::MAX_FAST_START_SEGMENTS);
    }

    #[test]
    fn message_round_trips(m in message()) {
        // Everything generated fits the metadata cap, so encoding must succeed.
        let wire = m.encode().unwrap();
        let frame = Frame::decode(wire.clone(), usize::MAX).unwrap();
        prop_assert_eq!(Message::from_frame(frame), Ok(m.clone()));
        // Any split into two pieces decodes to the same message.
        let cut = wire.len() / 2;
        let mut d = Decoder::new(usize::MAX);
        prop_assert_eq!(d.decode(wire.slice(..cut), false), Ok(None));
        let frame = d.decode(wire.slice(cut..), true).unwrap().unwrap();
        prop_assert_eq!(Message::from_frame(frame), Ok(m));
    }

    #[test]
    fn directive_parser_never_panics(s in "\\PC{0,300}") {
        let _ = PushDirective::parse(&s);
        let _ = PushDirective::parse(&format!("urn:mpeg:dash:fdh:2016:push-list;{s}"));
        let _ = PushDirective::parse(&format!("urn:mpeg:dash:fdh:2016:push-fast-start;{s}"));
    }

    #[test]
    fn template_parser_never_panics_nor_exceeds_caps(s in "[0-9a-z{}%d:,.-]{0,80}") {
        if let Ok(t) = UrlTemplate::parse(&s) {
            prop_assert!(t.expand().count() <= limits::MAX_TEMPLATE_EXPANSION);
            prop_assert!(t.runs().len() <= limits::MAX_TEMPLATE_RUNS);
        }
    }

    #[test]
    fn list_parser_respects_caps(s in "[a-z,% ]{0,400}") {
        if let Ok(l) = UrlList::parse(&s) {
            prop_assert!(l.entries().len() <= limits::MAX_LIST_ENTRIES);
            prop_assert!(!l.entries().is_empty());
        }
    }

    #[test]
    fn header_binding_never_panics(v in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = http2::request_policy([("accept-push-policy", v.as_slice())]);
    }

    #[test]
    fn ws_decoder_never_panics_nor_exceeds_cap(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
        max in 0usize..256,
    ) {
        let mut d = Decoder::new(max);
        let n = pieces.len();
        for (i, p) in pieces.into_iter().enumerate() {
            match d.decode(Bytes::from(p), i + 1 == n) {
                Ok(Some(frame)) => {
                    prop_assert!(frame.encoded_len() <= max);
                    let _ = Message::from_frame(frame);
                }
                Ok(None) => prop_assert!(d.buffered() <= max),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn ws_message_decoder_never_panics(
        code in 0u8..8,
        flags in 0u8..2,
        meta in "\\PC{0,200}",
        payload in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut wire = vec![code, flags, 0, 0, 0, 1];
        wire.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        wire.extend_from_slice(meta.as_bytes());
        wire.extend_from_slice(&payload);
        if let Ok(frame) = Frame::decode(Bytes::from(wire), limits::MAX_WS_MESSAGE) {
            let _ = Message::from_frame(frame);
        }
    }
}
