//! Push types, spec §6.1.2.
//!
//! A push type is a URN `urn:mpeg:dash:fdh:<year>:<token>`. The `urn:mpeg:dash:fdh:` prefix is
//! matched case-insensitively, the year may be `2016` or `2017`, and `2016` is always emitted
//! (spec §6.1.2 (ours)). The token itself is matched exactly. An unknown token is kept as
//! [`PushType::Unknown`] so the gateway can answer it with `push-none` instead of an error.

use std::fmt;

use thiserror::Error;

use crate::limits;

/// The URN prefix every push type shares, up to the year (spec §6.1.2).
pub const URN_PREFIX: &str = "urn:mpeg:dash:fdh:";

/// The year this implementation emits in every URN (spec §6.1.2 (ours)).
pub const EMITTED_YEAR: &str = "2016";

/// Years accepted on input (spec §6.1.2 (ours)).
pub const ACCEPTED_YEARS: [&str; 2] = ["2016", "2017"];

/// One push type of spec §6.1.2, without its parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PushType {
    /// `push-none`: push nothing.
    None,
    /// `push-next`: the next K segments of the Representation.
    Next,
    /// `push-time`: the segments covering the next T seconds of media.
    Time,
    /// `push-list`: an explicit URL list (§6.1.5).
    List,
    /// `push-template`: a URL template (§6.1.6).
    Template,
    /// `push-fast-start`: init and first segments on the MPD request (Annex G).
    FastStart,
    /// A token this implementation does not know; answered as `push-none`.
    Unknown(String),
}

/// Why a push-type URN was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PushTypeError {
    /// The value does not start with `urn:mpeg:dash:fdh:`.
    #[error("not a 23009-6 push type URN (expected prefix `urn:mpeg:dash:fdh:`)")]
    NotAUrn,
    /// The year part is not one of the accepted years.
    #[error("unsupported URN year `{0}` (accepted: 2016, 2017)")]
    UnsupportedYear(String),
    /// The token is empty, too long or has characters outside `[A-Za-z0-9-]`.
    #[error("malformed push type token")]
    MalformedToken,
}

impl PushType {
    /// Every push type this implementation knows, for pre-registering metric series.
    pub const ALL: [PushType; 6] = [
        Self::None,
        Self::Next,
        Self::Time,
        Self::List,
        Self::Template,
        Self::FastStart,
    ];

    /// The push types that push something (all of [`PushType::ALL`] but push-none).
    pub const PUSHING: [PushType; 5] = [
        Self::Next,
        Self::Time,
        Self::List,
        Self::Template,
        Self::FastStart,
    ];

    /// The token after the year, e.g. `push-next`.
    pub fn token(&self) -> &str {
        match self {
            Self::Unknown(token) => token,
            known => known.label(),
        }
    }

    /// A short, bounded label for metrics: the token for known types, `unknown` otherwise.
    pub fn label(&self) -> &'static str {
        match self {
            Self::None => "push-none",
            Self::Next => "push-next",
            Self::Time => "push-time",
            Self::List => "push-list",
            Self::Template => "push-template",
            Self::FastStart => "push-fast-start",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Parses a full URN such as `urn:mpeg:dash:fdh:2016:push-next`.
    pub fn parse_urn(urn: &str) -> Result<Self, PushTypeError> {
        let prefix = urn.get(..URN_PREFIX.len()).ok_or(PushTypeError::NotAUrn)?;
        if !prefix.eq_ignore_ascii_case(URN_PREFIX) {
            return Err(PushTypeError::NotAUrn);
        }
        let rest = urn.get(URN_PREFIX.len()..).ok_or(PushTypeError::NotAUrn)?;
        let (year, token) = rest.split_once(':').ok_or(PushTypeError::MalformedToken)?;
        if !ACCEPTED_YEARS.contains(&year) {
            let shown: String = year.chars().take(8).collect();
            return Err(PushTypeError::UnsupportedYear(shown));
        }
        Self::from_token(token)
    }

    /// Maps a bare token (`push-next`) to its push type.
    pub fn from_token(token: &str) -> Result<Self, PushTypeError> {
        let well_formed = !token.is_empty()
            && token.len() <= limits::MAX_TOKEN_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !well_formed {
            return Err(PushTypeError::MalformedToken);
        }
        Ok(match token {
            "push-none" => Self::None,
            "push-next" => Self::Next,
            "push-time" => Self::Time,
            "push-list" => Self::List,
            "push-template" => Self::Template,
            // `fast-start` is an alias some clients send (spec §6.1.2 (ours)).
            "push-fast-start" | "fast-start" => Self::FastStart,
            other => Self::Unknown(other.to_owned()),
        })
    }
}

impl fmt::Display for PushType {
    /// Writes the full URN with the emitted year.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URN_PREFIX}{EMITTED_YEAR}:{}", self.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_round_trip() {
        for t in PushType::ALL {
            assert_eq!(PushType::parse_urn(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn fast_start_is_an_alias_of_push_fast_start() {
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2016:fast-start"),
            Ok(PushType::FastStart)
        );
        assert_eq!(
            PushType::FastStart.to_string(),
            "urn:mpeg:dash:fdh:2016:push-fast-start"
        );
    }

    #[test]
    fn prefix_is_case_insensitive_and_2017_accepted() {
        assert_eq!(
            PushType::parse_urn("URN:MPEG:DASH:FDH:2017:push-next"),
            Ok(PushType::Next)
        );
        assert_eq!(
            PushType::Next.to_string(),
            "urn:mpeg:dash:fdh:2016:push-next"
        );
    }

    #[test]
    fn token_is_case_sensitive_and_unknown_kept() {
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2016:PUSH-NEXT"),
            Ok(PushType::Unknown("PUSH-NEXT".into()))
        );
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2016:push-later"),
            Ok(PushType::Unknown("push-later".into()))
        );
    }

    #[test]
    fn rejections_are_typed() {
        assert_eq!(
            PushType::parse_urn("push-next"),
            Err(PushTypeError::NotAUrn)
        );
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh"),
            Err(PushTypeError::NotAUrn)
        );
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2018:push-next"),
            Err(PushTypeError::UnsupportedYear("2018".into()))
        );
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2016:"),
            Err(PushTypeError::MalformedToken)
        );
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fdh:2016:push next"),
            Err(PushTypeError::MalformedToken)
        );
        let long = format!("urn:mpeg:dash:fdh:2016:{}", "a".repeat(65));
        assert_eq!(
            PushType::parse_urn(&long),
            Err(PushTypeError::MalformedToken)
        );
    }

    #[test]
    fn non_ascii_prefix_does_not_panic() {
        // A multi-byte char straddling the prefix length must not panic on slicing.
        assert_eq!(
            PushType::parse_urn("urn:mpeg:dash:fd\u{e9}:2016:x"),
            Err(PushTypeError::NotAUrn)
        );
    }
}
