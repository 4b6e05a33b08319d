//! Dynamic MPDs: availability, the live horizon and `not_before` (spec §6.2 (ours)).

use std::time::Duration;

use chrono::{DateTime, Utc};
use dashpush_plan::{Outcome, PlanConfig, PushKind};
use dashpush_proto::PushType;

use crate::{Conn, SingleManifest, ack, parse, pushed, urn};

pub(crate) const LIVE_URL: &str = "http://edge.test/live/stream.mpd";

/// Segment N (from 1) covers [2N-2, 2N) s and is available from 2N s after the availability
/// start until 10 s (time-shift buffer) plus 2 s later.
pub(crate) fn live() -> SingleManifest {
    let xml = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" timeShiftBufferDepth="PT10S" suggestedPresentationDelay="PT4S" minimumUpdatePeriod="PT2S" minBufferTime="PT2S">
        <Period id="p" start="PT0S">
          <AdaptationSet contentType="video" segmentAlignment="true">
            <SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.mp4"/>
            <Representation id="lo" bandwidth="300000"/><Representation id="hi" bandwidth="3000000"/></AdaptationSet>
          <AdaptationSet contentType="audio" segmentAlignment="true">
            <SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.mp4"/>
            <Representation id="aud" bandwidth="64000"/></AdaptationSet></Period></MPD>"#;
    parse(xml, LIVE_URL)
}

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::TimeDelta::seconds(secs)
}

fn s(name: &str) -> String {
    format!("http://edge.test/live/{name}")
}

fn conn(now: Option<i64>, horizon_secs: u64) -> Conn {
    let cfg = PlanConfig {
        live_horizon: Duration::from_secs(horizon_secs),
        ..PlanConfig::default()
    };
    let mut c = Conn::with(live(), cfg);
    c.now = now.map(at);
    c
}

#[test]
fn future_segments_are_promised_within_the_horizon_with_not_before() {
    let mut c = conn(Some(21), 10);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-next;8")));
    // 11..15 become available at 22..30 s, within 21 + 10; 16 (32 s) is beyond: the cycle stops.
    assert_eq!(
        pushed(&p),
        (11..=15)
            .map(|n| s(&format!("lo-{n}.m4s")))
            .collect::<Vec<_>>()
    );
    let nb: Vec<_> = p.pushes.iter().map(|p| p.not_before.unwrap()).collect();
    assert_eq!(nb, [at(22), at(24), at(26), at(28), at(30)]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;5"));
    assert_eq!(p.dropped, 0, "the horizon ends the run; it does not drop");
    // Already available segments are sent at once.
    let p = c.get(&s("aud-8.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [s("aud-9.m4s"), s("aud-10.m4s")]);
    assert!(p.pushes.iter().all(|p| p.not_before.is_none()));
}

#[test]
fn a_zero_horizon_promises_only_what_is_available() {
    let mut c = conn(Some(21), 0);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-next;3")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
    assert_eq!(p.outcome, Outcome::Accepted(PushType::None));
    // Exactly at the availability start counts as available.
    let mut c = conn(Some(22), 0);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-next;3")));
    assert_eq!(pushed(&p), [s("lo-11.m4s")]);
    assert_eq!(p.pushes[0].not_before, None);
}

#[test]
fn push_time_on_live_acks_how_far_the_horizon_lets_it_reach() {
    let mut c = conn(Some(21), 10);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-time;6")));
    assert_eq!(pushed(&p), [s("lo-11.m4s"), s("lo-12.m4s"), s("lo-13.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;6"));
    let mut c = conn(Some(21), 3);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-time;6")));
    assert_eq!(pushed(&p), [s("lo-11.m4s"), s("lo-12.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-time;4"));
}

#[test]
fn without_a_clock_no_live_segment_is_promised() {
    let mut c = conn(None, 10);
    let p = c.get(&s("lo-10.m4s"), Some(&urn("push-next;3")));
    assert!(p.pushes.is_empty());
    assert_eq!(ack(&p).unwrap(), urn("push-none"));
}

#[test]
fn list_entries_are_gated_by_availability() {
    let mut c = conn(Some(21), 10);
    let p = c.get(
        &s("lo-10.m4s"),
        Some(&urn(
            "push-list;lo-11.m4s, lo-20.m4s, lo-1.m4s, lo-10.m4s, hi-init.mp4",
        )),
    );
    // lo-20 is 19 s away, lo-1 left the time-shift buffer, lo-10 is the request itself.
    assert_eq!(pushed(&p), [s("lo-11.m4s"), s("hi-init.mp4")]);
    assert_eq!(p.pushes[0].not_before, Some(at(22)));
    assert_eq!(p.pushes[1].kind, PushKind::Init);
    assert_eq!(p.dropped, 2);
    assert_eq!(
        ack(&p).unwrap(),
        urn("push-list;lo-11.m4s, lo-10.m4s, hi-init.mp4")
    );
}

#[test]
fn live_fast_start_and_init_requests_start_at_the_live_edge() {
    let mut c = conn(Some(21), 10);
    let p = c.get(LIVE_URL, Some(&urn(r#"push-fast-start;{"segments":2}"#)));
    // Live edge at 21 - 4 s of presentation delay: segment 8 (available at 16 s).
    assert_eq!(
        pushed(&p),
        [
            s("lo-init.mp4"),
            s("aud-init.mp4"),
            s("lo-8.m4s"),
            s("aud-8.m4s"),
            s("lo-9.m4s"),
            s("aud-9.m4s")
        ]
    );
    assert!(p.pushes.iter().all(|p| p.not_before.is_none()));
    let mut c = conn(Some(21), 10);
    let p = c.get(&s("hi-init.mp4"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [s("hi-8.m4s"), s("hi-9.m4s")]);
}

#[test]
fn a_live_pull_prefetches_only_segments_already_out() {
    let m = live();
    let url = url::Url::parse(&s("lo-5.m4s")).unwrap();
    // Segment N is out from 2N s: at 14 s, 6 and 7 are out, 8 is not.
    let got: Vec<String> = dashpush_plan::prefetch_after(&m.0, &url, 5, Some(at(14)))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, [s("lo-6.m4s"), s("lo-7.m4s")]);
    // At the edge nothing follows yet; without a clock nothing is guessed.
    let edge = url::Url::parse(&s("lo-7.m4s")).unwrap();
    assert!(dashpush_plan::prefetch_after(&m.0, &edge, 5, Some(at(14))).is_empty());
    assert!(dashpush_plan::prefetch_after(&m.0, &url, 5, None).is_empty());
}

#[test]
fn live_segments_not_yet_out_are_paced_by_the_clock_not_held_to_the_drain_budget() {
    // A connection that has drained little so far (a fresh one): 100 bytes of budget.
    let mut c = conn(Some(21), 10);
    c.budget = Some(100);
    // 11 and 12 come out at 22 and 24 s, one segment duration apart: both promised.
    let p = c.get(&s("hi-10.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [s("hi-11.m4s"), s("hi-12.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;2"));
    // Segments already out (at 25 s: 11 and 12) would all leave at once: the budget holds
    // them to the first.
    let mut c = conn(Some(25), 10);
    c.budget = Some(100);
    let p = c.get(&s("hi-10.m4s"), Some(&urn("push-next;2")));
    assert_eq!(pushed(&p), [s("hi-11.m4s")]);
    assert_eq!(ack(&p).unwrap(), urn("push-next;1"));
}
