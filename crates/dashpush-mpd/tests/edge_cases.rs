//! Hand-written MPDs for the spec's edge cases, with hand-computed expectations.

use chrono::{DateTime, Utc};
use dashpush_mpd::{Manifest, MpdError, RepRef, Resource, limits};
use dashpush_proto::FastStartParams;
use url::Url;

fn parse(xml: &str) -> Result<Manifest, MpdError> {
    Manifest::parse(
        xml,
        &Url::parse("http://origin.test/live/stream.mpd").unwrap(),
    )
}

fn mpd(attrs: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {attrs}>{body}</MPD>"#
    )
}

fn url_of(m: &Manifest, at: RepRef, i: u64) -> String {
    m.segment_url(&m.segment(at, i).unwrap())
        .unwrap()
        .to_string()
}

fn rep(m: &Manifest, id: &str) -> RepRef {
    m.representations()
        .find(|(_, r)| r.id == id)
        .map(|(at, _)| at)
        .unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn base_url_chain_inheritance_and_identifiers() {
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT8S""#,
        r#"<BaseURL>http://cdn.test/root/</BaseURL>
        <Period><BaseURL>p1/</BaseURL>
          <AdaptationSet contentType="video" mimeType="video/mp4">
            <BaseURL>../as/</BaseURL>
            <SegmentTemplate timescale="1000" duration="2000" startNumber="7"
               media="$RepresentationID$/$Bandwidth$/s-$Number%04d$-$$.m4s" initialization="$RepresentationID$/init.mp4"/>
            <Representation id="v1" bandwidth="500000"><BaseURL>rep/</BaseURL>
              <SegmentTemplate startNumber="1"/></Representation>
            <Representation id="v2" bandwidth="900000"/>
          </AdaptationSet></Period>"#,
    ))
    .unwrap();
    let v1 = rep(&m, "v1");
    assert_eq!(
        url_of(&m, v1, 0),
        "http://cdn.test/root/as/rep/v1/500000/s-0001-$.m4s"
    );
    assert_eq!(
        m.representation(v1)
            .unwrap()
            .init
            .as_ref()
            .unwrap()
            .as_str(),
        "http://cdn.test/root/as/rep/v1/init.mp4"
    );
    let v2 = rep(&m, "v2");
    assert_eq!(
        url_of(&m, v2, 3),
        "http://cdn.test/root/as/v2/900000/s-0010-$.m4s"
    );
    assert_eq!(m.segment_count(v2), 4);
    assert_eq!(
        m.representation(v2).unwrap().mime_type.as_deref(),
        Some("video/mp4")
    );
}

#[test]
fn time_with_presentation_time_offset_and_open_repeat() {
    let m = parse(&mpd(
        r#"type="static""#,
        r#"<Period duration="PT10S"><AdaptationSet contentType="audio">
            <SegmentTemplate timescale="10" presentationTimeOffset="1000" media="a-$Time$.m4s">
              <SegmentTimeline><S t="1000" d="30" r="-1"/></SegmentTimeline></SegmentTemplate>
            <Representation id="a" bandwidth="1"/></AdaptationSet></Period>"#,
    ))
    .unwrap();
    let a = rep(&m, "a");
    // 10 s period, 3 s segments, r=-1 to the period end: 0, 3, 6, 9.
    assert_eq!(m.segment_count(a), 4);
    let s = m.segment(a, 2).unwrap();
    assert_eq!((s.time, s.start), (1060, 6.0));
    assert_eq!(url_of(&m, a, 3), "http://origin.test/live/a-1090.m4s");
    let u = Url::parse("http://origin.test/live/a-1030.m4s").unwrap();
    assert!(matches!(m.locate(&u), Some(Resource::Segment(s)) if s.index == 1));
    // Fragment ignored; query counts.
    let u = Url::parse("http://origin.test/live/a-1030.m4s#x").unwrap();
    assert!(m.locate(&u).is_some());
    assert!(
        m.locate(&Url::parse("http://origin.test/live/a-1030.m4s?x").unwrap())
            .is_none()
    );
    assert!(
        m.locate(&Url::parse("http://origin.test/live/a-1120.m4s").unwrap())
            .is_none(),
        "past the period end"
    );
}

#[test]
fn multi_period_next_stops_at_period_boundary() {
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT10S""#,
        r#"<Period id="p1" duration="PT4S"><AdaptationSet contentType="video">
             <SegmentTemplate duration="2" media="p1-$Number$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet></Period>
           <Period id="p2"><AdaptationSet contentType="video">
             <SegmentTemplate duration="2" media="p2-$Number$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet></Period>"#,
    ))
    .unwrap();
    assert_eq!((m.periods[1].start, m.periods[1].end), (4.0, Some(10.0)));
    let p1 = RepRef {
        period: 0,
        adaptation_set: 0,
        representation: 0,
    };
    let p2 = RepRef { period: 1, ..p1 };
    let s = m.segment(p1, 0).unwrap();
    assert_eq!(m.next(&s, 5).len(), 1);
    assert_eq!(m.segment_count(p2), 3);
    let Some(Resource::Segment(s)) =
        m.locate(&Url::parse("http://origin.test/live/p2-2.m4s").unwrap())
    else {
        panic!()
    };
    assert_eq!((s.rep.period, s.start), (1, 6.0));
}

#[test]
fn segment_base_is_one_resource() {
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT30S""#,
        r#"<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1">
             <BaseURL>video.mp4</BaseURL><SegmentBase indexRange="800-1200"><Initialization range="0-799"/></SegmentBase>
           </Representation></AdaptationSet></Period>"#,
    ))
    .unwrap();
    let v = rep(&m, "v");
    assert_eq!(m.segment_count(v), 1);
    let s = m.segment(v, 0).unwrap();
    assert_eq!((s.start, s.duration_secs), (0.0, 30.0));
    assert_eq!(url_of(&m, v, 0), "http://origin.test/live/video.mp4");
    assert!(m.next(&s, 3).is_empty());
}

const LIVE: &str = r#"type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z" timeShiftBufferDepth="PT10S" suggestedPresentationDelay="PT4S" minimumUpdatePeriod="PT2S""#;

fn live_body(switching: &str) -> String {
    format!(
        r#"<Period start="PT0S">
          <AdaptationSet contentType="video" segmentAlignment="true">{switching}
            <SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.mp4"/>
            <Representation id="lo" bandwidth="300000"/><Representation id="hi" bandwidth="3000000"/></AdaptationSet>
          <AdaptationSet contentType="audio"><SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s"/>
            <Representation id="aud" bandwidth="64000"/></AdaptationSet></Period>"#
    )
}

#[test]
fn dynamic_availability_window_and_live_edge() {
    let m = parse(&mpd(LIVE, &live_body(""))).unwrap();
    let live = m.live.as_ref().unwrap();
    assert_eq!(
        (live.time_shift_buffer_depth, live.minimum_update_period),
        (Some(10.0), Some(2.0))
    );
    let lo = rep(&m, "lo");
    let now = t("2026-01-01T00:00:21Z");
    // Segment k (0-based) covers [2k, 2k+2) and is available from 2k+2 until 2k+2+10+2.
    let avail: Vec<u64> = m.available(lo, now, 100).iter().map(|s| s.index).collect();
    assert_eq!(avail, [4, 5, 6, 7, 8, 9]);
    // Live edge honours the 4 s presentation delay: newest available at 17 s is k=7.
    assert_eq!(m.live_edge(lo, now).unwrap().index, 7);
    assert_eq!(
        m.availability_start(&m.segment(lo, 7).unwrap()).unwrap(),
        t("2026-01-01T00:00:16Z")
    );
    assert!(
        m.live_edge(lo, t("2026-01-01T00:00:05Z")).is_none(),
        "nothing available at 1 s"
    );
}

#[test]
fn fast_start_live_and_vod_selection() {
    let m = parse(&mpd(LIVE, &live_body(""))).unwrap();
    let now = t("2026-01-01T00:00:21Z");
    let fs = m.fast_start(
        &FastStartParams::parse(r#"{"segments":2,"bandwidth":1000000}"#).unwrap(),
        Some(now),
    );
    // Audio (64k) first from the budget; 936k left: the best video that fits is "lo".
    assert_eq!(fs.params.representations.as_deref().unwrap(), ["lo", "aud"]);
    let urls: Vec<String> = fs
        .items
        .iter()
        .flat_map(|i| {
            i.segments
                .iter()
                .map(|s| m.segment_url(s).unwrap().to_string())
        })
        .collect();
    assert_eq!(
        urls,
        [
            "http://origin.test/live/lo-8.m4s",
            "http://origin.test/live/lo-9.m4s",
            "http://origin.test/live/aud-8.m4s",
            "http://origin.test/live/aud-9.m4s"
        ]
    );
    assert_eq!(
        fs.items[0].init.as_ref().unwrap().as_str(),
        "http://origin.test/live/lo-init.mp4"
    );
    // Explicit ids win over types and budget.
    let fs = m.fast_start(
        &FastStartParams::parse(r#"{"representations":["hi","nope"]}"#).unwrap(),
        Some(now),
    );
    assert_eq!(fs.params.representations.as_deref().unwrap(), ["hi"]);
    let fs = m.fast_start(
        &FastStartParams::parse(r#"{"types":["video"],"bandwidth":5000000}"#).unwrap(),
        Some(now),
    );
    assert_eq!(fs.params.representations.as_deref().unwrap(), ["hi"]);
}

#[test]
fn switching_interval_and_alignment() {
    let m = parse(&mpd(
        LIVE,
        &live_body(r#"<Switching interval="4" type="media"/>"#),
    ))
    .unwrap();
    let lo = rep(&m, "lo");
    let s = m.segment(lo, 1).unwrap(); // [2, 4)
    let to = m.switch_to(&s, 1).unwrap();
    assert_eq!((to.rep.representation, to.index, to.start), (1, 2, 4.0));
    let s = m.segment(lo, 2).unwrap(); // [4, 6): on the grid
    assert_eq!(m.switch_to(&s, 1).unwrap().index, 2);
    // Not aligned and no Switching: no switch point is known.
    let body = live_body("").replace(r#" segmentAlignment="true""#, "");
    let m = parse(&mpd(LIVE, &body)).unwrap();
    assert!(
        m.switch_to(&m.segment(rep(&m, "lo"), 1).unwrap(), 1)
            .is_none()
    );
}

#[test]
fn hostile_inputs_fail_fast_or_stay_bounded() {
    // Deep nesting.
    let deep = mpd(r#"type="static""#, &"<X>".repeat(limits::MAX_DEPTH + 5));
    assert!(matches!(
        parse(&deep),
        Err(MpdError::TooLarge {
            what: "element nesting depth",
            ..
        })
    ));
    // Too many Periods.
    let periods = r#"<Period duration="PT1S"/>"#.repeat(limits::MAX_PERIODS + 1);
    assert!(matches!(
        parse(&mpd(r#"type="static""#, &periods)),
        Err(MpdError::TooLarge {
            what: "Periods",
            ..
        })
    ));
    // A giant template attribute: that Representation is left out with a warning.
    let media = format!("{}$Number$.m4s", "a".repeat(limits::MAX_ATTRIBUTE_LEN));
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT4S""#,
        &format!(r#"<Period><AdaptationSet><SegmentTemplate duration="2" media="{media}"/><Representation id="x" bandwidth="1"/></AdaptationSet></Period>"#),
    ))
    .unwrap();
    assert_eq!((m.representations().count(), m.warnings.len()), (0, 1));
    // A huge repeat count costs nothing: no expansion.
    let m = parse(&mpd(
        r#"type="static""#,
        r#"<Period><AdaptationSet><SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="0" d="1" r="1000000000000000"/></SegmentTimeline></SegmentTemplate><Representation id="x" bandwidth="1"/></AdaptationSet></Period>"#,
    ))
    .unwrap();
    let x = rep(&m, "x");
    assert_eq!(m.segment_count(x), 1_000_000_000_000_001);
    let Some(Resource::Segment(s)) =
        m.locate(&Url::parse("http://origin.test/live/999999999999999.m4s").unwrap())
    else {
        panic!()
    };
    assert_eq!(s.time, 999_999_999_999_998);
    assert_eq!(m.next(&s, 10_000).len(), 2, "stops at the last segment");
    assert_eq!(
        m.next(&m.segment(x, 0).unwrap(), usize::MAX).len(),
        limits::MAX_LOOKUP
    );
}

#[test]
fn too_many_timeline_entries_is_rejected_per_representation() {
    let s = r#"<S d="1"/>"#.repeat(limits::MAX_TIMELINE_ENTRIES + 1);
    let m = parse(&mpd(
        r#"type="static""#,
        &format!(r#"<Period><AdaptationSet><SegmentTemplate media="$Number$.m4s"><SegmentTimeline>{s}</SegmentTimeline></SegmentTemplate><Representation id="x" bandwidth="1"/></AdaptationSet></Period>"#),
    ))
    .unwrap();
    assert_eq!(m.representations().count(), 0);
    assert!(
        m.warnings[0].contains("SegmentTimeline entries over the cap"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn missing_pieces_are_typed_errors() {
    assert!(matches!(parse("<MPD"), Err(MpdError::Parse(_))));
    assert!(matches!(
        parse(&mpd(r#"type="dynamic""#, "<Period/>")),
        Err(MpdError::Invalid(
            "dynamic MPD without @availabilityStartTime"
        ))
    ));
    let m = parse(&mpd(
        r#"type="static""#,
        r#"<Period><AdaptationSet><SegmentTemplate media="$Number$.m4s"/><Representation id="x"/><Representation bandwidth="2"/></AdaptationSet></Period>"#,
    ))
    .unwrap();
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
}

#[test]
fn segment_list_media_ranges_in_one_file() {
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT6S""#,
        r#"<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1"><BaseURL>all.mp4</BaseURL>
             <SegmentList timescale="1" duration="2"><Initialization sourceURL="all.mp4" range="0-99"/>
               <SegmentURL mediaRange="100-199"/><SegmentURL mediaRange="200-349"/><SegmentURL mediaRange="350-400"/>
             </SegmentList></Representation></AdaptationSet></Period>"#,
    ))
    .unwrap();
    let v = rep(&m, "v");
    let u = Url::parse("http://origin.test/live/all.mp4").unwrap();
    let Some(Resource::Segment(s)) = m.locate_range(&u, Some((200, 349))) else {
        panic!()
    };
    assert_eq!((s.index, s.start), (1, 2.0));
    assert_eq!(m.segment_range(&s), Some((200, 349)));
    assert_eq!(m.segment_url(&s).unwrap(), u);
    assert!(m.locate_range(&u, Some((0, 5))).is_none());
    // The init shares the URL and is found by its own range; without a range the first
    // media entry of the file is found.
    assert_eq!(m.locate_range(&u, Some((0, 99))), Some(Resource::Init(v)));
    assert!(matches!(m.locate(&u), Some(Resource::Segment(s)) if s.index == 0));
    let bad = mpd(
        r#"type="static" mediaPresentationDuration="PT6S""#,
        r#"<Period><AdaptationSet><Representation id="v" bandwidth="1"><SegmentList duration="2"><SegmentURL media="a" mediaRange="9-1"/></SegmentList></Representation></AdaptationSet></Period>"#,
    );
    assert_eq!(parse(&bad).unwrap().warnings.len(), 1);
}

#[test]
fn time_window_covers_overlapping_segments() {
    let m = parse(&mpd(
        r#"type="static" mediaPresentationDuration="PT20S""#,
        r#"<Period><AdaptationSet><SegmentTemplate duration="4" media="$Number$.m4s"/><Representation id="v" bandwidth="1"/></AdaptationSet></Period>"#,
    ))
    .unwrap();
    let v = rep(&m, "v");
    // [5, 13) overlaps [4,8), [8,12), [12,16).
    let n: Vec<u64> = m.window(v, 5.0, 8.0).iter().map(|s| s.number).collect();
    assert_eq!(n, [2, 3, 4]);
    // [4, 8) is exactly one segment; the window past the end is empty.
    let n: Vec<u64> = m.window(v, 4.0, 4.0).iter().map(|s| s.number).collect();
    assert_eq!(n, [2]);
    assert!(m.window(v, 25.0, 4.0).is_empty());
}

#[test]
fn a_model_rebased_to_another_host_addresses_that_host_alone() {
    let xml = mpd(
        r#"type="static" mediaPresentationDuration="PT8S""#,
        r#"<Period><AdaptationSet mimeType="video/mp4">
             <Representation id="v" bandwidth="1000">
               <SegmentTemplate media="seg-$Number$.m4s" initialization="init.mp4" duration="2" startNumber="1"/>
             </Representation>
           </AdaptationSet>
           <AdaptationSet mimeType="audio/mp4"><BaseURL>http://cdn.elsewhere.test/a/</BaseURL>
             <Representation id="a" bandwidth="100">
               <SegmentTemplate media="a-$Number$.m4s" duration="2" startNumber="1"/>
             </Representation>
           </AdaptationSet></Period>"#,
    );
    let parsed = dashpush_mpd::ParsedMpd::parse(&xml).unwrap();
    let here = Url::parse("http://origin.test/live/stream.mpd").unwrap();
    let m = Manifest::from_parsed(&parsed, &here).unwrap();
    let there = Url::parse("https://edge.example:8443/live/stream.mpd?token=1").unwrap();
    let r = m.rebased(&there);
    let v = rep(&r, "v");
    assert_eq!(url_of(&r, v, 1), "https://edge.example:8443/live/seg-2.m4s");
    assert_eq!(
        r.representation(v).unwrap().init.as_ref().unwrap().as_str(),
        "https://edge.example:8443/live/init.mp4"
    );
    // Lookups answer for the new host only.
    let seg = Url::parse("https://edge.example:8443/live/seg-3.m4s").unwrap();
    assert!(matches!(r.locate(&seg), Some(Resource::Segment(_))));
    assert!(
        r.locate(&Url::parse("http://origin.test/live/seg-3.m4s").unwrap())
            .is_none()
    );
    assert!(
        m.locate(&Url::parse("http://origin.test/live/seg-3.m4s").unwrap())
            .is_some()
    );
    // A BaseURL on another origin is not moved.
    assert_eq!(
        url_of(&r, rep(&r, "a"), 0),
        "http://cdn.elsewhere.test/a/a-1.m4s"
    );
}
