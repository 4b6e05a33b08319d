//! MPDs made by ffmpeg's dash muxer (see `fixtures/ffmpeg/generate.sh`): every URL the model
//! produces names a file ffmpeg wrote, every file ffmpeg wrote is addressed, and every URL
//! locates back to its address.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dashpush_mpd::{Manifest, Resource};
use url::Url;

const BASE: &str = "http://origin.test/ffmpeg/";

fn dir(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ffmpeg")
        .join(variant)
}

fn load(variant: &str) -> Manifest {
    let xml = std::fs::read_to_string(dir(variant).join("manifest.mpd")).unwrap();
    let url = Url::parse(&format!("{BASE}{variant}/manifest.mpd")).unwrap();
    let m = Manifest::parse(&xml, &url).unwrap();
    assert!(m.warnings.is_empty(), "{variant}: {:?}", m.warnings);
    m
}

fn file_of(variant: &str, url: &Url) -> String {
    let prefix = format!("{BASE}{variant}/");
    url.as_str()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} outside {prefix}"))
        .to_owned()
}

/// `beyond_end`: files ffmpeg wrote past the MPD's presentation end, which a player never
/// requests (AAC priming leaves a few milliseconds of audio after 6.0 s with `@duration`
/// addressing; the timeline variants describe that sliver in their last `S`).
fn check_variant(variant: &str, reps: usize, beyond_end: &[&str]) {
    let m = load(variant);
    assert!(!m.is_dynamic());
    assert_eq!(m.representations().count(), reps, "{variant}");
    let mut addressed = BTreeSet::new();
    for (at, rep) in m.representations() {
        let init = rep.init.as_ref().unwrap();
        assert_eq!(m.locate(init), Some(Resource::Init(at)));
        addressed.insert(file_of(variant, init));
        // 6 s of media in 2 s segments.
        assert_eq!(m.segment_count(at), 3, "{variant} rep {}", rep.id);
        for s in m.first(at, 10) {
            let url = m.segment_url(&s).unwrap();
            assert_eq!(m.locate(&url), Some(Resource::Segment(s)), "{url}");
            assert!(
                (s.start - 2.0 * s.index as f64).abs() < 0.1,
                "{url} starts at {}",
                s.start
            );
            addressed.insert(file_of(variant, &url));
        }
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir(variant))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".m4s") && !beyond_end.contains(&n.as_str()))
        .collect();
    assert_eq!(
        addressed, on_disk,
        "{variant}: addressed URLs and written files differ"
    );
}

#[test]
fn number_with_duration() {
    check_variant("number", 3, &["chunk-stream2-00004.m4s"]);
}

#[test]
fn number_with_timeline() {
    check_variant("timeline", 3, &[]);
}

#[test]
fn time_with_timeline() {
    check_variant("time", 2, &[]);
    let m = load("time");
    let url = Url::parse(&format!("{BASE}time/seg-0-20480.m4s")).unwrap();
    let Some(Resource::Segment(s)) = m.locate(&url) else {
        panic!()
    };
    assert_eq!(
        (s.index, s.time, s.duration, s.timescale),
        (1, 20480, 20480, 10240)
    );
    // A time between segment starts is not a segment.
    assert_eq!(
        m.locate(&Url::parse(&format!("{BASE}time/seg-0-20481.m4s")).unwrap()),
        None
    );
}

#[test]
fn segment_list() {
    check_variant("list", 3, &["chunk-stream2-00004.m4s"]);
}

#[test]
fn next_within_and_period_end() {
    let m = load("number");
    let (at, _) = m.representations().next().unwrap();
    let first = m.segment(at, 0).unwrap();
    let next: Vec<u64> = m.next(&first, 5).iter().map(|s| s.number).collect();
    assert_eq!(next, [2, 3], "push-next stops at the end of the Period");
    // push-time 2 s after segment 1 (0-2 s): segments starting before 4 s.
    let within: Vec<u64> = m.within(&first, 2.0).iter().map(|s| s.number).collect();
    assert_eq!(within, [2]);
    let within: Vec<u64> = m.within(&first, 2.5).iter().map(|s| s.number).collect();
    assert_eq!(within, [2, 3]);
}

#[test]
fn fast_start_and_switching() {
    use dashpush_proto::FastStartParams;
    let m = load("number");
    let fs = m.fast_start(&FastStartParams::parse(r#"{"segments":2}"#).unwrap(), None);
    let urls: Vec<String> = fs
        .items
        .iter()
        .flat_map(|i| {
            let segs = i.segments.iter().map(|s| m.segment_url(s).unwrap());
            i.init
                .clone()
                .into_iter()
                .chain(segs)
                .map(|u| file_of("number", &u))
                .collect::<Vec<_>>()
        })
        .collect();
    // No bandwidth: the lowest video (id 1, 30 kb/s) and the audio.
    assert_eq!(
        urls,
        [
            "init-stream1.m4s",
            "chunk-stream1-00001.m4s",
            "chunk-stream1-00002.m4s",
            "init-stream2.m4s",
            "chunk-stream2-00001.m4s",
            "chunk-stream2-00002.m4s"
        ]
    );
    assert_eq!(fs.params.representations.as_deref().unwrap(), ["1", "2"]);
    // With 80 kb/s: audio 16k first, then the best video within 64k is id 0 (60k).
    let fs = m.fast_start(
        &FastStartParams::parse(r#"{"bandwidth":80000}"#).unwrap(),
        None,
    );
    assert_eq!(fs.params.representations.as_deref().unwrap(), ["0", "2"]);
    // Switching from rep 0 segment 2 to rep 1 (segment-aligned set): segment 2 of rep 1.
    let (at0, _) = m.representations().next().unwrap();
    let s = m.segment(at0, 1).unwrap();
    let to = m.switch_to(&s, 1).unwrap();
    assert_eq!((to.rep.representation, to.number), (1, 2));
}
