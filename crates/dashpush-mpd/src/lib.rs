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
