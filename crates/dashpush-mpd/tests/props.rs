//! Property tests: for generated SegmentTemplate MPDs (any startNumber, timescale, duration,
//! format width, `$Number$` or `$Time$`, fixed durations or timelines), every segment's URL
//! locates back to the same address, and lookups stay within the Period.

use dashpush_mpd::{Manifest, Resource};
use proptest::prelude::*;
use url::Url;

#[derive(Debug, Clone)]
struct Case {
    start_number: u64,
    timescale: u64,
    width: usize,
    use_time: bool,
    timeline: Vec<(u64, i64)>,
    duration: u64,
    pto: u64,
    period_secs: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u64..1_000_000,
        prop_oneof![Just(1u64), Just(1000), Just(90_000), 1u64..100_000],
        0usize..8,
        any::<bool>(),
        prop::collection::vec((1u64..500_000, 0i64..20), 0..6),
        1u64..1_000_000,
        0u64..1_000_000_000,
        1u64..4000,
    )
        .prop_map(
            |(start_number, timescale, width, use_time, timeline, duration, pto, period_secs)| {
                Case {
                    start_number,
                    timescale,
                    width,
                    use_time,
                    timeline,
                    duration,
                    pto,
                    period_secs,
                }
            },
        )
}

fn xml(c: &Case) -> String {
    let var = if c.use_time { "Time" } else { "Number" };
    let fmt = if c.width > 0 {
        format!("%0{}d", c.width)
    } else {
        String::new()
    };
    let timing = if c.timeline.is_empty() {
        format!(r#" duration="{}""#, c.duration)
    } else {
        String::new()
    };
    let tl = if c.timeline.is_empty() {
        String::new()
    } else {
        let s: String = c
            .timeline
            .iter()
            .map(|(d, r)| format!(r#"<S d="{d}" r="{r}"/>"#))
            .collect();
        format!("<SegmentTimeline>{s}</SegmentTimeline>")
    };
    format!(
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT{}S"><Period>
        <AdaptationSet><SegmentTemplate timescale="{}" startNumber="{}" presentationTimeOffset="{}"{timing}
        media="v/$RepresentationID$/s-${var}{fmt}$.m4s">{tl}</SegmentTemplate>
        <Representation id="r" bandwidth="1"/></AdaptationSet></Period></MPD>"#,
        c.period_secs, c.timescale, c.start_number, c.pto
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn url_address_url_round_trip(c in case()) {
        let base = Url::parse("http://origin.test/m/manifest.mpd").unwrap();
        let m = Manifest::parse(&xml(&c), &base).unwrap();
        prop_assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let (at, _) = m.representations().next().unwrap();
        let count = m.segment_count(at);
        prop_assert!(count >= 1);
        let mut probe: Vec<u64> = (0..count.min(50)).collect();
        probe.push(count - 1);
        probe.push(count / 2);
        for i in probe {
            let s = m.segment(at, i).unwrap();
            let url = m.segment_url(&s).unwrap();
            prop_assert_eq!(m.locate(&url), Some(Resource::Segment(s)), "{}", url);
            // Segments start inside the Period (a timeline may run past its end: the last
            // segment still starts before it).
            prop_assert!(s.start < c.period_secs as f64 + 1e-6);
        }
        prop_assert!(m.segment(at, count).is_none());
        let last = m.segment(at, count - 1).unwrap();
        prop_assert!(m.next(&last, 3).is_empty());
    }
}
