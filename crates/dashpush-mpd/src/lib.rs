//! The MPD model and segment addressing of dashpush.
//!
//! This crate turns an MPD (parsed by `dash-mpd-core`) into segment addresses and back, for
//! every addressing scheme real packagers emit: SegmentTemplate with `$Number$` or `$Time$`
//! (with or without SegmentTimeline), SegmentList, SegmentBase, multi-period, static and
//! dynamic. It answers the questions the push planner asks: which segment is this URL, what
//! comes next, what covers the next T seconds, what does a player need to start (spec Annex G),
//! and which segment of another Representation continues this one (Annex H).
//!
//! No I/O and no clock: the MPD text and its URL come in, and "now" is an argument wherever
//! availability matters. Everything is bounded by [`limits`]; a hostile MPD fails fast with
//! [`MpdError::TooLarge`] instead of exhausting memory.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod limits;
mod manifest;
mod scan;
mod template;
mod timeline;

pub use manifest::{
    AdaptationSet, FastStart, FastStartItem, Live, Manifest, ParsedMpd, Period, RepRef,
    Representation, Resource, SegmentRef,
};
pub use template::Var;

use thiserror::Error;

/// A small MPD of each kind the parser knows (a static SegmentTemplate and a dynamic
/// SegmentTimeline), with durations, for [`warm_up`].
const WARM_UP: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4.0S"
  minBufferTime="PT2.0S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <Period id="0" start="PT0S">
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="1000" duration="2000" startNumber="1"
        initialization="i-$RepresentationID$.mp4" media="s-$RepresentationID$-$Number%05d$.m4s"/>
      <Representation id="v" bandwidth="100000" width="64" height="36"/>
    </AdaptationSet>
    <AdaptationSet contentType="audio" mimeType="audio/mp4">
      <SegmentTemplate timescale="1000" initialization="i-$RepresentationID$.mp4"
        media="t-$RepresentationID$-$Time$.m4s">
        <SegmentTimeline><S t="0" d="2000" r="1"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a" bandwidth="16000"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

/// Builds what the parser builds on its first use (`dash-mpd-core` compiles its `xs:duration`
/// regex lazily) and runs the model's code once, so that the first viewer after a start does
/// not wait for it: the first parse of an MPD in a fresh process took 620 µs where the next
/// took 40–50 µs. Errors here are not the caller's concern (the MPD is ours).
pub fn warm_up() {
    if let (Ok(parsed), Ok(url)) = (
        ParsedMpd::parse(WARM_UP),
        url::Url::parse("http://warm.up/m.mpd"),
    ) {
        let _ = Manifest::from_parsed(&parsed, &url);
    }
}

/// Why an MPD could not be turned into a model (or a part of it was left out).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MpdError {
    /// Over a cap in [`limits`].
    #[error("{what} over the cap of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// The XML could not be parsed as an MPD.
    #[error("MPD does not parse: {0}")]
    Parse(String),
    /// A URL could not be resolved.
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// A SegmentTemplate attribute is malformed.
    #[error("bad template `{template}`: {why}")]
    BadTemplate {
        /// The template (first 120 chars).
        template: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The MPD is inconsistent.
    #[error("invalid MPD: {0}")]
    Invalid(&'static str),
    /// A valid construct this crate does not address.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

#[cfg(test)]
mod warm_up_tests {
    use super::*;

    /// The warm-up MPD goes the whole way (a warm-up that failed early would warm nothing).
    #[test]
    fn the_warm_up_mpd_parses_and_models() {
        let parsed = ParsedMpd::parse(WARM_UP).expect("parses");
        let url = url::Url::parse("http://warm.up/m.mpd").expect("url");
        let m = Manifest::from_parsed(&parsed, &url).expect("models");
        let reps: Vec<_> = m
            .periods
            .iter()
            .flat_map(|p| p.adaptation_sets.iter())
            .flat_map(|a| a.representations.iter())
            .collect();
        assert_eq!(reps.len(), 2, "{m:?}");
        warm_up();
    }
}
