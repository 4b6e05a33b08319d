//! Static MPDs: every push type, the safety rules, caps, cycles and switching.

use std::path::PathBuf;
use std::time::Duration;

use dashpush_plan::{Outcome, PlanConfig, PushKind, RejectReason, prefetch_after};
use dashpush_proto::{FastStartParams, PushType};

use crate::{Conn, DEMO_URL, ack, cancelled, demo, long_vod, parse, pushed, u, urn};

const V: &str = "http://edge.test/vod/";

fn v(name: &str) -> String {
    format!("{V}{name}")
}

fn chunk(rep: u32, n: u32) -> String {
    v(&format!("chunk-stream{rep}-{n:05}.m4s"))
}

const L: &str = "http://edge.test/long/";

fn l(name: &str) -> String {
    format!("{L}{name}")
}

#[test]
fn no_directive_pushes_nothing_and_sends_no_ack() {
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), None);
    assert_eq!(p.ack, None);
    assert!(p.pushes.is_empty() && p.cancel.is_empty());
    assert_eq!(p.outcome, Outcome::NoDirective);
}

#[test]
fn push_none_is_acked_and_pushes_nothing() {
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), Some(&urn("push-none")));
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert!(p.pushes.is_empty());
    assert_eq!(p.outcome, Outcome::Accepted(PushType::None));
}

#[test]
fn push_next_pushes_the_next_segments_of_the_representation() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-3.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("v0-4.m4s"), l("v0-5.m4s"), l("v0-6.m4s")]);
    assert!(p.pushes.iter().all(|p| p.kind == PushKind::Media));
    assert!(p.pushes.iter().all(|p| p.not_before.is_none()));
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
    assert_eq!(p.outcome, Outcome::Accepted(PushType::Next));
    assert_eq!(p.dropped, 0);
}

#[test]
fn push_next_stops_at_the_period_end_and_acks_what_was_granted() {
    // Spec example: K=5 on the last-but-two segment grants 2.
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), Some(&urn("push-next;5")));
    assert_eq!(pushed(&p), [chunk(0, 2), chunk(0, 3)]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    // Nothing after the last segment: acked push-none, still an accepted directive.
    let p = c.get(&chunk(2, 3), Some(&urn("push-next;1")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(p.outcome, Outcome::Accepted(PushType::None));
}

#[test]
fn push_next_stops_at_a_period_boundary() {
    let xml = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10S">
        <Period id="p1" duration="PT4S"><AdaptationSet contentType="video"><SegmentTemplate duration="2" media="p1-$Number$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet></Period>
        <Period id="p2"><AdaptationSet contentType="video"><SegmentTemplate duration="2" media="p2-$Number$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet></Period></MPD>"#;
    let mut c = Conn::new(parse(xml, "http://edge.test/mp/manifest.mpd"));
    let p = c.get("http://edge.test/mp/p1-1.m4s", Some(&urn("push-next;5")));
    assert_eq!(pushed(&p), ["http://edge.test/mp/p1-2.m4s"]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
}

#[test]
fn push_next_is_clamped_by_config_and_by_the_hard_limit() {
    let mut c = Conn::new(long_vod(600));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;999")));
    assert_eq!(p.pushes.len(), 16);
    assert_eq!(pushed(&p).last().unwrap(), &l("v0-17.m4s"));
    assert_eq!(ack(&p).unwrap(), urn("push-next;16"));
    // Config cannot raise K above limits::MAX_PUSH_NEXT (64).
    let cfg = PlanConfig {
        max_next: 1000,
        max_promises_per_request: 1000,
        max_in_flight: 1000,
        max_ahead: Duration::from_secs(600),
        ..PlanConfig::default()
    };
    let mut c = Conn::with(long_vod(600), cfg);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;999")));
    assert_eq!(p.pushes.len(), 64);
    assert_eq!(ack(&p).unwrap(), urn("push-next;64"));
}

#[test]
fn push_time_pushes_segments_starting_before_end_plus_t() {
    let mut c = Conn::new(long_vod(60));
    // Segment 1 is [0, 2): T=5 covers starts < 7, i.e. segments 2, 3, 4 (starts 2, 4, 6).
    let p = c.get(&l("v1-1.m4s"), Some(&urn("push-time;5")));
    assert_eq!(pushed(&p), [l("v1-2.m4s"), l("v1-3.m4s"), l("v1-4.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;5"));
    // T is clamped to 60 s by config; 58 s of media remain after segment 1 of audio, within the
    // per-request cap of 32 promises: the ack says how far the pushes reach.
    let p = c.get(&l("a-1.m4s"), Some(&urn("push-time;600")));
    assert_eq!(p.pushes.len(), 29);
    assert_eq!(ack(&p).unwrap(), urn("push-time;58"));
    // Period end on the demo MPD: 4 s after segment 1.
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(1, 1), Some(&urn("push-time;10")));
    assert_eq!(pushed(&p), [chunk(1, 2), chunk(1, 3)]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;4"));
}

#[test]
fn push_list_resolves_entries_against_the_request_in_order() {
    let mut c = Conn::new(demo());
    let list =
        "chunk-stream2-00002.m4s, init-stream1.m4s , ../vod/chunk-stream0-00003.m4s,manifest.mpd";
    let p = c.get(&chunk(0, 1), Some(&urn(&format!("push-list;{list}"))));
    assert_eq!(
        pushed(&p),
        [
            chunk(2, 2),
            v("init-stream1.m4s"),
            chunk(0, 3),
            v("manifest.mpd")
        ]
    );
    let kinds: Vec<PushKind> = p.pushes.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PushKind::Media,
            PushKind::Init,
            PushKind::Media,
            PushKind::Mpd
        ]
    );
    // All granted: the ack echoes the list.
    assert_eq!(
        ack(&p).unwrap(),
        urn(
            "push-list;chunk-stream2-00002.m4s, init-stream1.m4s, ../vod/chunk-stream0-00003.m4s, manifest.mpd"
        )
    );
}

#[test]
fn list_entries_of_another_origin_are_dropped() {
    // Also with entries outside the MPD allowed: the origin rule stands on its own.
    for allow_outside_mpd in [false, true] {
        let cfg = PlanConfig {
            allow_outside_mpd,
            ..PlanConfig::default()
        };
        let mut c = Conn::with(demo(), cfg);
        let list = "http://evil.test/vod/chunk-stream0-00002.m4s, https://edge.test/vod/chunk-stream0-00002.m4s, http://edge.test:8080/vod/chunk-stream0-00002.m4s, //evil.test/x.m4s, chunk-stream0-00003.m4s";
        let p = c.get(&chunk(0, 1), Some(&urn(&format!("push-list;{list}"))));
        assert_eq!(pushed(&p), [chunk(0, 3)]);
        assert_eq!(p.dropped, 4);
        assert_eq!(ack(&p).unwrap(), urn("push-list;chunk-stream0-00003.m4s"));
        // An explicit default port is the same origin.
        let p = c.get(
            &chunk(0, 1),
            Some(&urn(
                "push-list;http://edge.test:80/vod/chunk-stream1-00002.m4s",
            )),
        );
        assert_eq!(pushed(&p), [chunk(1, 2)]);
    }
}

#[test]
fn list_entries_outside_the_mpd_are_dropped_unless_allowed() {
    let list = "push-list;secret.txt, chunk-stream0-00009.m4s, chunk-stream0-00002.m4s";
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), Some(&urn(list)));
    assert_eq!(pushed(&p), [chunk(0, 2)]);
    assert_eq!(p.dropped, 2);
    let cfg = PlanConfig {
        allow_outside_mpd: true,
        ..PlanConfig::default()
    };
    let mut c = Conn::with(demo(), cfg);
    let p = c.get(&chunk(0, 1), Some(&urn(list)));
    assert_eq!(pushed(&p), [v("secret.txt"), chunk(0, 9), chunk(0, 2)]);
    assert_eq!(p.pushes[0].kind, PushKind::Other);
    assert_eq!(ack(&p).unwrap(), urn(list));
}

#[test]
fn push_template_expands_and_acks_what_was_pushed() {
    let mut c = Conn::new(demo());
    let t = "push-template;chunk-stream1-{%05d:1-3}.m4s";
    let p = c.get(&chunk(0, 1), Some(&urn(t)));
    assert_eq!(pushed(&p), [chunk(1, 1), chunk(1, 2), chunk(1, 3)]);
    assert_eq!(ack(&p).unwrap(), urn(t));
    assert_eq!(p.outcome, Outcome::Accepted(PushType::Template));
    // Values past the MPD are dropped; the ack turns into the list actually pushed.
    let p = c.get(
        &chunk(0, 1),
        Some(&urn("push-template;chunk-stream2-{%05d:2-5}.m4s")),
    );
    assert_eq!(pushed(&p), [chunk(2, 2), chunk(2, 3)]);
    assert_eq!(p.dropped, 2);
    assert_eq!(
        ack(&p).unwrap(),
        urn("push-list;chunk-stream2-00002.m4s, chunk-stream2-00003.m4s")
    );
    assert_eq!(p.outcome, Outcome::Accepted(PushType::List));
}

#[test]
fn fast_start_on_the_mpd_pushes_init_and_first_segments_of_the_selection() {
    let mut c = Conn::new(demo());
    let p = c.get(DEMO_URL, Some(&urn(r#"push-fast-start;{"segments":2}"#)));
    // No budget: the lowest video (id 1, 30 kb/s) and the audio; first needed first: the inits,
    // then the first segment of each, then the second of each.
    assert_eq!(
        pushed(&p),
        [
            v("init-stream1.m4s"),
            v("init-stream2.m4s"),
            chunk(1, 1),
            chunk(2, 1),
            chunk(1, 2),
            chunk(2, 2)
        ]
    );
    let expected = FastStartParams::parse(
        r#"{"segments":2,"types":["video","audio"],"representations":["1","2"]}"#,
    )
    .unwrap();
    assert_eq!(
        ack(&p).unwrap(),
        urn(&format!("push-fast-start;{expected}"))
    );
    assert_eq!(p.outcome, Outcome::Accepted(PushType::FastStart));
    // A budget that fits the better video.
    let mut c = Conn::new(demo());
    let p = c.get(
        DEMO_URL,
        Some(&urn(
            r#"push-fast-start;{"bandwidth":80000,"types":["video"]}"#,
        )),
    );
    assert_eq!(pushed(&p), [v("init-stream0.m4s"), chunk(0, 1)]);
}

#[test]
fn push_next_and_push_time_on_the_mpd_are_fast_starts() {
    let mut c = Conn::new(demo());
    let p = c.get(DEMO_URL, Some(&urn("push-next;2")));
    assert_eq!(
        pushed(&p),
        [
            v("init-stream1.m4s"),
            v("init-stream2.m4s"),
            chunk(1, 1),
            chunk(2, 1),
            chunk(1, 2),
            chunk(2, 2)
        ]
    );
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    // K beyond the 3 segments there are: the ack says 3.
    let mut c = Conn::new(demo());
    let p = c.get(DEMO_URL, Some(&urn("push-next;20")));
    assert_eq!(p.pushes.len(), 8);
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
    // T=3: segments starting before 3 s, i.e. the first two of each.
    let mut c = Conn::new(demo());
    let p = c.get(DEMO_URL, Some(&urn("push-time;3")));
    assert_eq!(p.pushes.len(), 6);
    assert_eq!(pushed(&p)[4], chunk(1, 2));
    assert_eq!(ack(&p).unwrap(), urn("push-time;3"));
}

#[test]
fn fast_start_on_a_segment_is_push_none() {
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), Some(&urn("push-fast-start")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(
        p.outcome,
        Outcome::Rejected(RejectReason::FastStartOnSegment)
    );
    assert_eq!(
        RejectReason::FastStartOnSegment.label(),
        "fast_start_on_segment"
    );
}

#[test]
fn rejections_ack_push_none_with_a_fixed_reason() {
    let mut c = Conn::new(demo());
    let cases: [(&str, String, bool, &str); 5] = [
        (V, urn("push-next;abc"), true, "malformed"),
        (V, "push-next;3".into(), true, "malformed"),
        (V, urn("push-later;3"), true, "unknown_type"),
        (V, urn("push-next;3"), false, "push_disabled"),
        (
            "http://edge.test/elsewhere/x.m4s",
            urn("push-next;3"),
            true,
            "no_manifest",
        ),
    ];
    for (url, d, allowed, label) in cases {
        let url = if url == V {
            chunk(0, 1)
        } else {
            url.to_owned()
        };
        let p = c.request(&url, Some(&d), allowed);
        assert!(p.pushes.is_empty(), "{d}");
        assert_eq!(ack(&p).unwrap(), urn("push-none"), "{d}");
        match &p.outcome {
            Outcome::Rejected(r) => {
                assert_eq!(r.label(), label, "{d}");
                assert!(RejectReason::LABELS.contains(&r.label()));
            }
            other => panic!("{d}: {other:?}"),
        }
    }
    let p = c.get(&chunk(0, 1), Some(&urn("push-next;0")));
    match p.outcome {
        Outcome::Rejected(RejectReason::Malformed(e)) => assert_eq!(e.reason(), "bad_count"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.session.in_flight(), 0);
}

#[test]
fn a_repeated_request_pushes_nothing_twice() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s")]);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert!(p.pushes.is_empty());
    assert!(p.cancel.is_empty(), "the same cycle goes on");
    // Both are on their way to the client: still granted.
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    assert_eq!(c.session.in_flight(), 2);
    for n in [2, 3] {
        c.session.on_complete(&u(&l(&format!("v0-{n}.m4s"))));
    }
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("v0-4.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
}

#[test]
fn urls_the_client_requested_are_never_pushed() {
    let mut c = Conn::new(long_vod(60));
    c.get(&l("v0-2.m4s"), None);
    c.get(&format!("{L}a-init.mp4#frag"), None);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-3.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    let p = c.get(
        &l("v0-1.m4s"),
        Some(&urn("push-list;a-init.mp4, v0-1.m4s, a-1.m4s")),
    );
    assert_eq!(pushed(&p), [l("a-1.m4s")]);
}

#[test]
fn a_reset_push_is_never_pushed_again() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    assert_eq!(p.pushes.len(), 3);
    c.session.on_complete(&u(&l("v0-2.m4s")));
    c.session.on_refused(&u(&l("v0-3.m4s")));
    assert_eq!(c.session.in_flight(), 1);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    // 2 was delivered, 3 was refused: the run stops there; 4 (in flight) is cancelled.
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
    assert_eq!(cancelled(&p), [l("v0-4.m4s")]);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-list;v0-3.m4s, v0-5.m4s")));
    assert_eq!(pushed(&p), [l("v0-5.m4s")]);
    assert_eq!(c.session.in_flight(), 1);
}

#[test]
fn a_new_directive_on_the_same_representation_replaces_the_cycle() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;4")));
    assert_eq!(p.pushes.len(), 4);
    // The client asks for 2 itself and wants two after it: 3 and 4 carry on, 2 (now requested)
    // and 5 are cancelled, in push order.
    let p = c.get(&l("v0-2.m4s"), Some(&urn("push-next;2")));
    assert!(p.pushes.is_empty());
    assert_eq!(cancelled(&p), [l("v0-2.m4s"), l("v0-5.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    assert_eq!(c.session.in_flight(), 2);
    // A push cancelled by the server (a replaced cycle) was not delivered, and the client did
    // not refuse it: a later directive may push it again (spec §7.3 (ours)). 4 is still in
    // flight (granted, not promised twice); 5 and 6 are promised.
    let p = c.get(&l("v0-3.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("v0-5.m4s"), l("v0-6.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
}

#[test]
fn push_none_ends_the_cycle_of_the_adaptation_set() {
    let mut c = Conn::new(long_vod(60));
    c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    c.get(&l("a-1.m4s"), Some(&urn("push-next;2")));
    c.session.on_complete(&u(&l("v0-2.m4s")));
    let p = c.get(&l("v1-2.m4s"), Some(&urn("push-none")));
    assert_eq!(cancelled(&p), [l("v0-3.m4s"), l("v0-4.m4s")]);
    assert_eq!(c.session.in_flight(), 2, "audio goes on");
    // On the MPD it ends every cycle of the presentation.
    let p = c.get(&l("manifest.mpd"), Some(&urn("push-none")));
    assert_eq!(cancelled(&p), [l("a-2.m4s"), l("a-3.m4s")]);
    assert_eq!(c.session.in_flight(), 0);
}

#[test]
fn switching_by_a_segment_request_pushes_the_new_init_first_and_cancels_the_old_cycle() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s"), l("v0-4.m4s")]);
    c.session.on_complete(&u(&l("v0-2.m4s")));
    let p = c.get(&l("v1-3.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v1-init.mp4"), l("v1-4.m4s"), l("v1-5.m4s")]);
    assert_eq!(p.pushes[0].kind, PushKind::Init);
    assert_eq!(cancelled(&p), [l("v0-3.m4s"), l("v0-4.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    c.session.on_complete(&u(&l("v1-init.mp4")));
    // Switching back: v0's init was never fetched on this connection, so it comes first.
    let p = c.get(&l("v0-6.m4s"), Some(&urn("push-next;1")));
    assert_eq!(pushed(&p), [l("v0-init.mp4"), l("v0-7.m4s")]);
    // And to v1 again: its init was delivered already.
    let p = c.get(&l("v1-8.m4s"), Some(&urn("push-next;1")));
    assert_eq!(pushed(&p), [l("v1-9.m4s")]);
}

#[test]
fn switching_by_an_init_request_starts_at_the_switch_point_after_the_clients_position() {
    let mut c = Conn::new(long_vod(60));
    c.get(&l("v0-init.mp4"), None);
    c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    c.session.on_complete(&u(&l("v0-2.m4s")));
    // The client holds segments 1-2 of v0 and asks for v1's init: v1 from segment 3.
    let p = c.get(&l("v1-init.mp4"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v1-3.m4s"), l("v1-4.m4s")]);
    assert_eq!(cancelled(&p), [l("v0-3.m4s"), l("v0-4.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    // Without any position: from the first segment; push-time counts from its start.
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("a-init.mp4"), Some(&urn("push-time;4")));
    assert_eq!(pushed(&p), [l("a-1.m4s"), l("a-2.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;4"));
}

#[test]
fn switching_needs_a_known_switch_point() {
    // Not segment-aligned and no Switching element: no switch point, nothing pushed.
    let xml = crate::DEMO.replace(r#"segmentAlignment="true""#, "");
    let mut c = Conn::new(parse(&xml, DEMO_URL));
    c.get(&chunk(0, 1), Some(&urn("push-next;1")));
    let p = c.get(&v("init-stream1.m4s"), Some(&urn("push-next;1")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(cancelled(&p), [chunk(0, 2)]);
}

#[test]
fn per_request_and_in_flight_caps_drop_without_error() {
    let cfg = PlanConfig {
        max_promises_per_request: 3,
        max_in_flight: 4,
        ..PlanConfig::default()
    };
    let mut c = Conn::with(long_vod(60), cfg);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;10")));
    assert_eq!(p.pushes.len(), 3);
    assert_eq!(p.dropped, 7);
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
    let p = c.get(&l("a-1.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("a-2.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
    assert_eq!(c.session.in_flight(), 4);
    // The list replaces the audio cycle: a-2 is cancelled first, which frees one slot.
    let p = c.get(&l("a-1.m4s"), Some(&urn("push-list;a-5.m4s, a-6.m4s")));
    assert_eq!(cancelled(&p), [l("a-2.m4s")]);
    assert_eq!(pushed(&p), [l("a-5.m4s")]);
    assert_eq!(p.dropped, 1);
    assert_eq!(ack(&p).unwrap(), urn("push-list;a-5.m4s"));
    // The video cycle is another one and goes on; a completed push frees a slot.
    c.session.on_complete(&u(&l("v0-2.m4s")));
    let p = c.get(&l("a-1.m4s"), Some(&urn("push-list;a-5.m4s, a-6.m4s")));
    assert_eq!(pushed(&p), [l("a-6.m4s")]);
    assert!(p.cancel.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-list;a-5.m4s, a-6.m4s"));
    assert_eq!(c.session.in_flight(), 4);
}

#[test]
fn bytes_in_flight_are_admitted_up_to_the_cap_and_freed() {
    let cfg = PlanConfig {
        max_bytes_in_flight: 100,
        ..PlanConfig::default()
    };
    let mut c = Conn::with(demo(), cfg);
    c.get(&chunk(0, 1), Some(&urn("push-next;2")));
    let (a, b) = (u(&chunk(0, 2)), u(&chunk(0, 3)));
    assert!(c.session.admit_bytes(&a, 60));
    assert!(!c.session.admit_bytes(&b, 50));
    assert!(c.session.admit_bytes(&b, 40));
    assert_eq!(c.session.bytes_in_flight(), 100);
    c.session.on_complete(&a);
    assert_eq!(c.session.bytes_in_flight(), 40);
    assert!(c.session.admit_bytes(&b, 60));
    assert!(!c.session.admit_bytes(&a, 1), "not in flight any more");
    c.session.on_refused(&b);
    assert_eq!(c.session.bytes_in_flight(), 0);
    assert!(
        !c.session.admit_bytes(&u(&chunk(1, 1)), 1),
        "never promised"
    );
}

fn ffmpeg(variant: &str) -> crate::SingleManifest {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dashpush-mpd/tests/fixtures/ffmpeg")
        .join(variant);
    let xml = std::fs::read_to_string(dir.join("manifest.mpd")).unwrap();
    parse(&xml, &format!("http://edge.test/ff/{variant}/manifest.mpd"))
}

#[test]
fn ffmpeg_mpds_push_next_and_fast_start() {
    let cases = [
        (
            "number",
            "chunk-stream0-00001.m4s",
            ["chunk-stream0-00002.m4s", "chunk-stream0-00003.m4s"],
        ),
        (
            "timeline",
            "chunk-stream0-00001.m4s",
            ["chunk-stream0-00002.m4s", "chunk-stream0-00003.m4s"],
        ),
        (
            "list",
            "chunk-stream0-00001.m4s",
            ["chunk-stream0-00002.m4s", "chunk-stream0-00003.m4s"],
        ),
        (
            "time",
            "seg-0-0.m4s",
            ["seg-0-20480.m4s", "seg-0-40960.m4s"],
        ),
    ];
    for (variant, first, next) in cases {
        let base = format!("http://edge.test/ff/{variant}/");
        let mut c = Conn::new(ffmpeg(variant));
        let p = c.get(&format!("{base}{first}"), Some(&urn("push-next;4")));
        let want: Vec<String> = next.iter().map(|n| format!("{base}{n}")).collect();
        assert_eq!(pushed(&p), want, "{variant}");
        assert_eq!(ack(&p).unwrap(), urn("push-next;2"), "{variant}");
        let p = c.get(&format!("{base}{first}"), Some(&urn("push-time;2")));
        assert!(p.pushes.is_empty(), "{variant}: already pushed");
        assert_eq!(ack(&p).unwrap(), urn("push-time;2"), "{variant}");
        // Fast start: lowest video (id 1) then audio (id 2) where there is audio.
        let mut c = Conn::new(ffmpeg(variant));
        let p = c.get(
            &format!("{base}manifest.mpd"),
            Some(&urn("push-fast-start")),
        );
        let want: Vec<String> = match variant {
            "time" => vec![format!("{base}init-1.m4s"), format!("{base}seg-1-0.m4s")],
            _ => vec![
                format!("{base}init-stream1.m4s"),
                format!("{base}init-stream2.m4s"),
                format!("{base}chunk-stream1-00001.m4s"),
                format!("{base}chunk-stream2-00001.m4s"),
            ],
        };
        assert_eq!(pushed(&p), want, "{variant}");
    }
}

#[test]
fn prefetch_follows_the_representation_and_stays_same_origin() {
    let m = demo();
    assert_eq!(
        prefetch_after(&m.0, &u(&chunk(0, 1)), 5, None)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [chunk(0, 2), chunk(0, 3)]
    );
    assert_eq!(
        prefetch_after(&m.0, &u(&v("init-stream2.m4s")), 1, None),
        [u(&chunk(2, 1))]
    );
    assert!(prefetch_after(&m.0, &u(&chunk(0, 3)), 5, None).is_empty());
    assert!(prefetch_after(&m.0, &u("http://edge.test/vod/other.m4s"), 5, None).is_empty());
    // Segments the MPD puts on another host are not prefetched for this one.
    let xml = crate::DEMO.replace(
        "<Period id=\"0\" start=\"PT0.0S\">",
        "<BaseURL>http://cdn.test/vod/</BaseURL><Period id=\"0\" start=\"PT0.0S\">",
    );
    let m = parse(&xml, DEMO_URL);
    assert!(
        prefetch_after(
            &m.0,
            &u("http://cdn.test/vod/chunk-stream0-00001.m4s"),
            2,
            None
        )
        .len()
            == 2
    );
    let mut c = Conn::new(m);
    // The request came to the edge host; the MPD's segments live on the CDN: pushing them
    // would cross origins.
    let p = c.get(DEMO_URL, Some(&urn("push-fast-start")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(p.dropped, 4);
}

#[test]
fn the_plan_serializes_for_the_dry_run() {
    let mut c = Conn::new(demo());
    let p = c.get(&chunk(0, 1), Some(&urn("push-next;1")));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "ack": urn("push-next;1"),
            "pushes": [{"url": chunk(0, 2), "kind": "media", "not_before": null}],
            "cancel": [],
            "outcome": {"result": "accepted", "detail": "push-next"},
            "dropped": 0
        })
    );
    let p = c.get(&chunk(0, 1), None);
    assert_eq!(
        serde_json::to_value(&p).unwrap()["outcome"],
        serde_json::json!({"result": "no_directive"})
    );
}

#[test]
fn config_never_raises_hard_limits() {
    let s = dashpush_plan::Session::new(PlanConfig {
        max_time: Duration::from_secs(100_000),
        ..PlanConfig::default()
    });
    assert_eq!(s.config().max_time, Duration::from_secs(600));
}

#[test]
fn a_refused_push_is_never_pushed_again_but_an_undelivered_one_may_be() {
    let mut c = Conn::new(long_vod(60));
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s")]);
    // 2: the client refused it (RST_STREAM / Segment cancel). 3: the origin failed it.
    c.session.on_refused(&u(&l("v0-2.m4s")));
    c.session.on_undelivered(&u(&l("v0-3.m4s")));
    assert_eq!(c.session.in_flight(), 0);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-list;v0-2.m4s, v0-3.m4s")));
    assert_eq!(pushed(&p), [l("v0-3.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-list;v0-3.m4s"));
}

#[test]
fn promises_taken_back_before_the_ack_make_the_ack_say_less() {
    let mut c = Conn::new(long_vod(60));
    let mut p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;3")));
    assert_eq!(p.pushes.len(), 3);
    // The second segment cannot be promised: the run ends before it.
    c.session.withhold(&mut p, &[u(&l("v0-3.m4s"))]);
    assert_eq!(pushed(&p), [l("v0-2.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
    assert_eq!(c.session.in_flight(), 1);
    // Taken back means not delivered: a later directive may push them.
    let p = c.get(&l("v0-2.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-3.m4s"), l("v0-4.m4s")]);

    let mut p = c.get(
        &l("v0-2.m4s"),
        Some(&urn("push-list;v0-7.m4s, v0-8.m4s, v0-9.m4s")),
    );
    c.session.withhold(&mut p, &[u(&l("v0-8.m4s"))]);
    assert_eq!(pushed(&p), [l("v0-7.m4s"), l("v0-9.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-list;v0-7.m4s, v0-9.m4s"));

    let mut p = c.get(&l("v0-9.m4s"), Some(&urn("push-time;4")));
    assert_eq!(ack(&p).unwrap(), urn("push-time;4"));
    c.session.withhold(&mut p, &[u(&l("v0-11.m4s"))]);
    assert_eq!(pushed(&p), [l("v0-10.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;2"));
}

#[test]
fn a_failed_parent_takes_every_promise_back_and_acks_push_none() {
    let mut c = Conn::new(long_vod(60));
    let mut p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    c.session.withhold_all(&mut p);
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(c.session.in_flight(), 0);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s")]);
}

#[test]
fn a_run_never_goes_further_ahead_than_max_ahead() {
    let cfg = PlanConfig {
        max_ahead: std::time::Duration::from_secs(5),
        ..PlanConfig::default()
    };
    let mut c = Conn::with(long_vod(60), cfg);
    // After segment 1 (ends at 2 s): 2, 3 and 4 start within 5 s of it; 5 (at 8 s) does not.
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;10")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s"), l("v0-4.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;3"));
}

#[test]
fn pushes_in_flight_stay_within_what_the_connection_drains() {
    // v0 is 3 Mbit/s: 750,000 bytes per 2 s segment.
    let mut c = Conn::new(long_vod(60));
    c.budget = Some(1_600_000);
    let p = c.get(&l("v0-1.m4s"), Some(&urn("push-next;4")));
    assert_eq!(pushed(&p), [l("v0-2.m4s"), l("v0-3.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    assert_eq!(c.session.estimated_in_flight(), 1_500_000);
    // Nothing more while those are in flight; one completes, room for one more.
    let p = c.get(&l("a-1.m4s"), Some(&urn("push-list;v1-9.m4s")));
    assert!(p.pushes.is_empty(), "200,000 more bytes do not fit");
    c.session.on_complete(&u(&l("v0-2.m4s")));
    let p = c.get(&l("v0-2.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [l("v0-4.m4s")]);
    // A connection too slow for one segment still gets one push when nothing is in flight.
    let mut slow = Conn::new(long_vod(60));
    slow.budget = Some(100);
    let p = slow.get(&l("v0-1.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [l("v0-2.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
}
