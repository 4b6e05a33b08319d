//! Addressing on a 24 h VOD MPD whose SegmentTimeline has 43,200 `S` entries (2 s segments,
//! none collapsed with `r`): model build time, and locate-by-URL + next 3 at the start, middle
//! and end of the timeline, against a linear scan of the same URLs as the same-run baseline.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dashpush_mpd::{Manifest, Resource};
use url::Url;

const ENTRIES: u64 = 43_200;

fn mpd() -> String {
    // Alternate 1.96 s / 2.04 s so that no two neighbours could be collapsed into one `r`.
    let mut s = String::with_capacity(ENTRIES as usize * 24);
    for i in 0..ENTRIES {
        let d = if i % 2 == 0 { 1960 } else { 2040 };
        s.push_str(&format!(r#"<S d="{d}"/>"#));
    }
    format!(
        r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT24H"><Period>
        <AdaptationSet contentType="video"><SegmentTemplate timescale="1000" media="$RepresentationID$/$Time$.m4s" initialization="$RepresentationID$/init.mp4">
        <SegmentTimeline><S t="0" d="1960"/>{}</SegmentTimeline></SegmentTemplate>
        <Representation id="v1" bandwidth="1000000"/><Representation id="v2" bandwidth="3000000"/></AdaptationSet></Period></MPD>"#,
        s.get(r#"<S d="1960"/>"#.len()..).unwrap_or_default()
    )
}

fn addressing(c: &mut Criterion) {
    let xml = mpd();
    let base = Url::parse("http://origin.test/vod/manifest.mpd").unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("mpd_24h_timeline");
    g.sample_size(10);
    g.bench_function("build", |b| {
        b.iter(|| Manifest::parse(black_box(&xml), &base))
    });
    g.finish();

    let m = Manifest::parse(&xml, &base).unwrap_or_else(|e| panic!("{e}"));
    let (at, _) = m
        .representations()
        .nth(1)
        .unwrap_or_else(|| panic!("no representation"));
    assert_eq!(m.segment_count(at), ENTRIES);
    let url_at = |i: u64| {
        m.segment(at, i)
            .and_then(|s| m.segment_url(&s))
            .unwrap_or_else(|| panic!("{i}"))
    };
    let all: Vec<String> = (0..ENTRIES).map(|i| url_at(i).to_string()).collect();

    let mut g = c.benchmark_group("mpd_locate_next3");
    for (name, i) in [("start", 10), ("middle", ENTRIES / 2), ("end", ENTRIES - 5)] {
        let url = url_at(i);
        g.bench_function(name, |b| {
            b.iter(|| match m.locate(black_box(&url)) {
                Some(Resource::Segment(s)) => m.next(&s, 3).len(),
                _ => 0,
            })
        });
    }
    // Baseline: find the URL by scanning every segment URL (what a linear index would cost).
    let target = url_at(ENTRIES / 2).to_string();
    g.bench_function("baseline_linear_scan_middle", |b| {
        b.iter(|| all.iter().position(|u| u == black_box(&target)))
    });
    g.finish();
}

criterion_group!(benches, addressing);
criterion_main!(benches);
