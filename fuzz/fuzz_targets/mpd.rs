//! MPD parsing and addressing (dashpush-mpd): no input panics, and every segment the model
//! addresses locates back from its URL.
#![no_main]

use dashpush_mpd::{Manifest, Resource};
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(base) = Url::parse("http://origin.test/a/manifest.mpd") else {
        return;
    };
    let Ok(m) = Manifest::parse(xml, &base) else {
        return;
    };
    for (at, _) in m.representations().take(8) {
        for s in m.first(at, 4) {
            let Some(url) = m.segment_url(&s) else { continue };
            match m.locate(&url) {
                Some(Resource::Segment(found)) => {
                    assert_eq!(m.segment_url(&found).as_ref(), Some(&url));
                }
                other => panic!("{url} located as {other:?}"),
            }
            let _ = m.next(&s, 3);
            let _ = m.within(&s, 10.0);
        }
    }
});
