//! URL template parsing and expansion (spec §6.1.6, Annex F): never panics, expansion stays
//! within its caps, and every accepted template round-trips.
#![no_main]

use dashpush_proto::{UrlTemplate, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = UrlTemplate::parse(text) else {
        return;
    };
    let mut n = 0;
    for url in t.expand() {
        assert!(url.len() <= limits::MAX_URL_LEN);
        n += 1;
    }
    assert!(n <= limits::MAX_TEMPLATE_EXPANSION);
    assert_eq!(UrlTemplate::parse(&t.to_string()).as_ref(), Ok(&t));
});
