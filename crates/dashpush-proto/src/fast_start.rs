//! Fast-start parameters, spec §6.1.7 and Annex G.
//!
//! The parameter is a JSON object (RFC 7158), all keys optional, unknown keys ignored:
//! `{"segments": 2, "bandwidth": 1500000, "types": ["video","audio"], "representations": ["v1"]}`.
//! An empty parameter means all defaults. The acknowledgement echoes the resolved object with
//! `representations` filled in (spec §6.1.7 (ours)). Choosing Representations needs the MPD
//! and is the planner's job; this module only owns the wire form and its bounds.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits;

/// The content types a fast start may select (spec §6.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// Video AdaptationSets.
    Video,
    /// Audio AdaptationSets.
    Audio,
    /// Text (subtitle) AdaptationSets.
    Text,
}

/// Default content types when `types` is absent (spec §6.1.7 (ours)).
pub const DEFAULT_TYPES: [ContentType; 2] = [ContentType::Video, ContentType::Audio];

/// Default media segments per Representation when `segments` is absent.
pub const DEFAULT_SEGMENTS: u32 = 1;

/// Most entries in `types` (each type at most once, so three; a little slack for repeats).
const MAX_TYPES: usize = 8;

/// Parameters of `push-fast-start` (spec §6.1.7). Absent keys are `None`, so the value that was
/// sent round-trips exactly; the accessors apply defaults and caps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FastStartParams {
    /// Media segments per selected Representation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// Bandwidth budget in bits per second for the initial selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
    /// Content types to include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<ContentType>>,
    /// Explicit Representation ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representations: Option<Vec<String>>,
}

/// Why a fast-start parameter was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FastStartError {
    /// The parameter is not a JSON object.
    #[error("fast-start parameter must be a JSON object")]
    NotAnObject,
    /// The JSON is malformed or a known key has the wrong type.
    #[error("fast-start parameter: {0}")]
    Json(String),
    /// `segments` is zero.
    #[error("`segments` must be at least 1")]
    ZeroSegments,
    /// `types` has too many entries.
    #[error("`types` has more than {max} entries")]
    TooManyTypes {
        /// The cap.
        max: usize,
    },
    /// `representations` has too many entries.
    #[error("`representations` has more than {max} entries")]
    TooManyRepresentations {
        /// The cap.
        max: usize,
    },
    /// A Representation id is empty or too long.
    #[error("representation id {index} is empty or longer than {max} bytes")]
    BadRepresentationId {
        /// Zero-based position.
        index: usize,
        /// The length cap.
        max: usize,
    },
}

impl FastStartParams {
    /// Parses the parameter text; empty (or all whitespace) means all defaults.
    pub fn parse(s: &str) -> Result<Self, FastStartError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(Self::default());
        }
        // serde would also accept a JSON array for a struct; the spec says object.
        if !trimmed.starts_with('{') {
            return Err(FastStartError::NotAnObject);
        }
        let params: Self =
            serde_json::from_str(trimmed).map_err(|e| FastStartError::Json(e.to_string()))?;
        params.validate()?;
        Ok(params)
    }

    /// Checks the bounds of every present key.
    pub fn validate(&self) -> Result<(), FastStartError> {
        if self.segments == Some(0) {
            return Err(FastStartError::ZeroSegments);
        }
        if self.types.as_ref().is_some_and(|t| t.len() > MAX_TYPES) {
            return Err(FastStartError::TooManyTypes { max: MAX_TYPES });
        }
        if let Some(reps) = &self.representations {
            let max = limits::MAX_FAST_START_REPRESENTATIONS;
            if reps.len() > max {
                return Err(FastStartError::TooManyRepresentations { max });
            }
            let max = limits::MAX_REPRESENTATION_ID_LEN;
            if let Some(index) = reps.iter().position(|r| r.is_empty() || r.len() > max) {
                return Err(FastStartError::BadRepresentationId { index, max });
            }
        }
        Ok(())
    }

    /// True when no key is present (the parameter can be omitted on the wire).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Segments per Representation after the default and the hard cap.
    pub fn effective_segments(&self) -> u32 {
        self.segments
            .unwrap_or(DEFAULT_SEGMENTS)
            .clamp(1, limits::MAX_FAST_START_SEGMENTS)
    }

    /// Content types after the default, each once, in the order given.
    pub fn effective_types(&self) -> Vec<ContentType> {
        let mut out = Vec::new();
        for t in self.types.as_deref().unwrap_or(&DEFAULT_TYPES) {
            if !out.contains(t) {
                out.push(*t);
            }
        }
        out
    }
}

impl fmt::Display for FastStartParams {
    /// Compact JSON with keys in a fixed order, visible ASCII only (other characters as `\uXXXX`
    /// escapes) so that it is a valid header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        // serde_json escapes control characters already; anything else outside visible ASCII
        // occurs only inside JSON strings, where a \u escape means the same.
        for c in json.chars() {
            if c == ' ' || c.is_ascii_graphic() {
                fmt::Write::write_char(f, c)?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(f, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_and_defaults() {
        let p = FastStartParams::parse(
            r#"{"segments": 2, "bandwidth": 1500000, "types": ["video","audio"], "representations": ["v1","a1"]}"#,
        )
        .unwrap();
        assert_eq!(p.segments, Some(2));
        assert_eq!(p.bandwidth, Some(1_500_000));
        assert_eq!(
            p.effective_types(),
            [ContentType::Video, ContentType::Audio]
        );
        assert_eq!(p.representations.as_deref().unwrap(), ["v1", "a1"]);
        let d = FastStartParams::parse("").unwrap();
        assert!(d.is_default());
        assert_eq!(d.effective_segments(), 1);
        assert_eq!(d.effective_types(), DEFAULT_TYPES);
        assert_eq!(d.to_string(), "{}");
    }

    #[test]
    fn unknown_keys_ignored_caps_applied() {
        let p = FastStartParams::parse(r#"{"segments": 50, "future": {"x": [1]}}"#).unwrap();
        assert_eq!(p.effective_segments(), limits::MAX_FAST_START_SEGMENTS);
        assert_eq!(p.to_string(), r#"{"segments":50}"#);
    }

    #[test]
    fn ack_form_from_annex_c() {
        let p = FastStartParams {
            segments: Some(2),
            types: Some(vec![ContentType::Video, ContentType::Audio]),
            representations: Some(vec!["v0".into(), "a0".into()]),
            ..Default::default()
        };
        assert_eq!(
            p.to_string(),
            r#"{"segments":2,"types":["video","audio"],"representations":["v0","a0"]}"#
        );
    }

    #[test]
    fn non_ascii_ids_are_escaped() {
        let p = FastStartParams {
            representations: Some(vec!["vidéo-\u{1f600}".into()]),
            ..Default::default()
        };
        let text = p.to_string();
        assert_eq!(text, r#"{"representations":["vid\u00e9o-\ud83d\ude00"]}"#);
        assert_eq!(FastStartParams::parse(&text), Ok(p));
    }

    #[test]
    fn errors_are_typed() {
        let err = |s: &str| FastStartParams::parse(s).unwrap_err();
        assert_eq!(err("[2]"), FastStartError::NotAnObject);
        assert_eq!(err("2"), FastStartError::NotAnObject);
        assert!(matches!(err("{"), FastStartError::Json(_)));
        assert!(matches!(
            err(r#"{"segments":"2"}"#),
            FastStartError::Json(_)
        ));
        assert!(matches!(err(r#"{"segments":-1}"#), FastStartError::Json(_)));
        assert!(matches!(
            err(r#"{"types":["smell"]}"#),
            FastStartError::Json(_)
        ));
        assert_eq!(err(r#"{"segments":0}"#), FastStartError::ZeroSegments);
        let reps: Vec<String> = (0..33).map(|i| format!("\"r{i}\"")).collect();
        assert_eq!(
            err(&format!(r#"{{"representations":[{}]}}"#, reps.join(","))),
            FastStartError::TooManyRepresentations { max: 32 }
        );
        assert_eq!(
            err(r#"{"representations":["a",""]}"#),
            FastStartError::BadRepresentationId { index: 1, max: 256 }
        );
        let types = ["\"video\""; 9].join(",");
        assert_eq!(
            err(&format!(r#"{{"types":[{types}]}}"#)),
            FastStartError::TooManyTypes { max: 8 }
        );
    }
}
