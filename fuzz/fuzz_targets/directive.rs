//! Push directive parsing (spec §6.1.3, §7.1): never panics, and every accepted directive
//! round-trips through its canonical text.
#![no_main]

use dashpush_proto::{PushDirective, http2, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = http2::request_policy([("accept-push-policy", data)]);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = PushDirective::parse(text) {
        let canonical = d.to_string();
        assert!(canonical.len() <= 4 * limits::MAX_HEADER_LEN, "canonical form blew up");
        assert_eq!(PushDirective::parse(&canonical).as_ref(), Ok(&d), "{canonical}");
    }
});
