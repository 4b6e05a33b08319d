//! Caps that keep a huge or hostile MPD from costing more than a bounded amount of work and
//! memory. Exceeding one fails the build of the model with [`crate::MpdError::TooLarge`].

/// Largest MPD document accepted, in bytes.
pub const MAX_MPD_BYTES: usize = 16 * 1024 * 1024;
/// Deepest element nesting accepted (the MPD schema needs fewer than 10 levels).
pub const MAX_DEPTH: usize = 48;
/// Most Periods.
pub const MAX_PERIODS: usize = 1024;
/// Most AdaptationSets in one Period.
pub const MAX_ADAPTATION_SETS: usize = 256;
/// Most Representations in one AdaptationSet.
pub const MAX_REPRESENTATIONS: usize = 256;
/// Most `S` elements in one SegmentTimeline (a 24 h timeline of 2 s segments has 43,200 if
/// none is collapsed with `r`).
pub const MAX_TIMELINE_ENTRIES: usize = 200_000;
/// Most SegmentURL elements in one SegmentList.
pub const MAX_SEGMENT_LIST: usize = 200_000;
/// Longest template or URL attribute, in bytes.
pub const MAX_ATTRIBUTE_LEN: usize = 4096;
/// Widest `%0<width>d` format tag.
pub const MAX_FORMAT_WIDTH: usize = 20;
/// Most segments any one lookup returns.
pub const MAX_LOOKUP: usize = 4096;
