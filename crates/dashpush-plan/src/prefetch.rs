//! Prefetch hints for clients that cannot be pushed to (spec §4–5: everything degrades to
//! pull).

use chrono::{DateTime, Utc};
use dashpush_mpd::{Manifest, Resource};
use url::Url;

use crate::session::same_origin;

/// The next `k` media segment URLs after `url` in its Representation, in order, stopping at the
/// end of the Period, keeping only those with the scheme, host and port of `url`. For an init
/// segment of a static MPD, the first `k` segments; for a dynamic MPD nothing (without a clock
/// the live edge is unknown). Of a dynamic MPD's segments only those available at `now` are
/// given: one that is not out yet would only be a 404 from the origin (a live pull client is
/// usually at the edge, where nothing follows yet). A URL the MPD does not address gives
/// nothing.
pub fn prefetch_after(
    manifest: &Manifest,
    url: &Url,
    k: usize,
    now: Option<DateTime<Utc>>,
) -> Vec<Url> {
    let segments = match manifest.locate(url) {
        Some(Resource::Segment(s)) => manifest.next(&s, k),
        Some(Resource::Init(rep)) if !manifest.is_dynamic() => manifest.first(rep, k),
        _ => Vec::new(),
    };
    segments
        .iter()
        .filter(|s| {
            !manifest.is_dynamic()
                || now.is_some_and(|now| {
                    manifest
                        .availability_start(s)
                        .is_some_and(|start| start <= now)
                })
        })
        .filter_map(|s| manifest.segment_url(s))
        .filter(|u| same_origin(u, url))
        .collect()
}
