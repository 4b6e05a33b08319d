//! Push directives and push acknowledgements, spec §6.1.3 and §6.1.4.
//!
//! ```text
//! push-directive = push-type [ OWS ";" OWS push-params ]
//! push-ack       = push-type [ OWS ";" OWS push-params ]
//! push-params    = quoted-string / 1*( any visible char or space up to the end of the field )
//! ```
//!
//! One directive per header field; the parameter runs from the first `;` after the URN to the end
//! of the field, so lists, templates and JSON need no escaping; a parameter that starts with a
//! DQUOTE is an RFC 9110 quoted-string and is unquoted. Surrounding whitespace is trimmed
//! (spec §6.1.3 (ours)). An empty parameter (`type;`) counts as absent.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::fast_start::{FastStartError, FastStartParams};
use crate::limits;
use crate::push_type::{PushType, PushTypeError};
use crate::url_list::{UrlList, UrlListError, is_ows};
use crate::url_template::{TemplateError, UrlTemplate};

/// A push directive: a push type with its parameter (spec §6.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PushDirective {
    /// `push-none`.
    None,
    /// `push-next;K`, K ≥ 1. The planner clamps K to the configured and hard caps.
    Next(u32),
    /// `push-time;T`, T > 0 seconds.
    Time(PushDuration),
    /// `push-list;URLList`.
    List(UrlList),
    /// `push-template;URLTemplate`.
    Template(UrlTemplate),
    /// `push-fast-start[;FastStartParams]`.
    FastStart(FastStartParams),
    /// A well-formed URN whose token this implementation does not know; answered as push-none.
    Unknown {
        /// The token after the year.
        token: String,
        /// The parameter, unquoted, if one was given.
        params: Option<String>,
    },
}

/// A push acknowledgement (spec §6.1.4): the push type actually applied with its effective
/// parameter. Same grammar as a directive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PushAck(pub PushDirective);

/// A positive `push-time` duration with nanosecond precision, written as decimal seconds
/// (`10`, `2.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushDuration(Duration);

/// Why a push directive (or ack) was rejected. Every rejection is answered as push-none.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DirectiveError {
    /// The header value is longer than [`limits::MAX_HEADER_LEN`].
    #[error("directive is {len} bytes long (max {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A byte that is not visible ASCII, space or tab.
    #[error("invalid byte {byte:#04x} at offset {pos}")]
    InvalidChar {
        /// Byte offset.
        pos: usize,
        /// The byte.
        byte: u8,
    },
    /// More than one directive header field on one request (§7.1).
    #[error("more than one push directive on the request")]
    MultipleDirectives,
    /// The push-type URN is malformed.
    #[error(transparent)]
    PushType(#[from] PushTypeError),
    /// The push type needs a parameter and has none.
    #[error("{push_type} needs a parameter")]
    MissingParameter {
        /// The push type's token.
        push_type: &'static str,
    },
    /// The push type takes no parameter but one was given.
    #[error("{push_type} takes no parameter")]
    UnexpectedParameter {
        /// The push type's token.
        push_type: &'static str,
    },
    /// A quoted-string parameter is not closed, or text follows its closing quote.
    #[error("malformed quoted-string parameter")]
    BadQuotedString,
    /// K is not a decimal integer in 1..=u32::MAX.
    #[error("push-next count must be an integer from 1 to 4294967295")]
    InvalidCount,
    /// T is not a positive decimal number of seconds with at most 9 fractional digits.
    #[error("push-time must be positive decimal seconds (at most 9 fractional digits)")]
    InvalidDuration,
    /// The URL list is invalid.
    #[error(transparent)]
    List(#[from] UrlListError),
    /// The URL template is invalid.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The fast-start parameter is invalid.
    #[error(transparent)]
    FastStart(#[from] FastStartError),
}

impl DirectiveError {
    /// A short, fixed label for the `reason` of a rejected-directive metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::InvalidChar { .. } => "invalid_char",
            Self::MultipleDirectives => "multiple",
            Self::PushType(_) => "bad_urn",
            Self::MissingParameter { .. } => "missing_param",
            Self::UnexpectedParameter { .. } => "unexpected_param",
            Self::BadQuotedString => "bad_quoting",
            Self::InvalidCount => "bad_count",
            Self::InvalidDuration => "bad_duration",
            Self::List(_) => "bad_list",
            Self::Template(_) => "bad_template",
            Self::FastStart(_) => "bad_fast_start",
        }
    }
}

impl PushDirective {
    /// Parses one header field value.
    pub fn parse(value: &str) -> Result<Self, DirectiveError> {
        check_field(value)?;
        let value = value.trim_matches(is_ows);
        let (urn, params) = match value.split_once(';') {
            Some((urn, params)) => (urn.trim_end_matches(is_ows), Some(params)),
            None => (value, None),
        };
        let push_type = PushType::parse_urn(urn)?;
        let params = params.map(unquote).transpose()?.filter(|p| !p.is_empty());
        Self::from_parts(push_type, params)
    }

    /// Builds a directive from a push type and its (already unquoted) parameter.
    pub fn from_parts(push_type: PushType, params: Option<String>) -> Result<Self, DirectiveError> {
        let label = push_type.label();
        let need =
            |p: Option<String>| p.ok_or(DirectiveError::MissingParameter { push_type: label });
        Ok(match push_type {
            PushType::None => match params {
                None => Self::None,
                Some(_) => return Err(DirectiveError::UnexpectedParameter { push_type: label }),
            },
            PushType::Next => Self::Next(parse_count(&need(params)?)?),
            PushType::Time => Self::Time(need(params)?.parse()?),
            PushType::List => Self::List(UrlList::parse(&need(params)?)?),
            PushType::Template => Self::Template(UrlTemplate::parse(&need(params)?)?),
            PushType::FastStart => Self::FastStart(match params {
                Some(p) => FastStartParams::parse(&p)?,
                None => FastStartParams::default(),
            }),
            PushType::Unknown(token) => Self::Unknown { token, params },
        })
    }

    /// The push type of this directive.
    pub fn push_type(&self) -> PushType {
        match self {
            Self::None => PushType::None,
            Self::Next(_) => PushType::Next,
            Self::Time(_) => PushType::Time,
            Self::List(_) => PushType::List,
            Self::Template(_) => PushType::Template,
            Self::FastStart(_) => PushType::FastStart,
            Self::Unknown { token, .. } => PushType::Unknown(token.clone()),
        }
    }

    /// The directive with K and T lowered to the given caps, themselves never above the hard
    /// limits [`limits::MAX_PUSH_NEXT`] and [`limits::MAX_PUSH_TIME_SECS`]. Other types are
    /// returned unchanged (their sizes are bounded by parsing).
    pub fn clamped(self, max_next: u32, max_time: Duration) -> Self {
        match self {
            Self::Next(k) => Self::Next(k.min(max_next.min(limits::MAX_PUSH_NEXT)).max(1)),
            Self::Time(t) => {
                let hard = Duration::from_secs(limits::MAX_PUSH_TIME_SECS);
                Self::Time(PushDuration(t.0.min(max_time.min(hard))))
            }
            other => other,
        }
    }
}

impl FromStr for PushDirective {
    type Err = DirectiveError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PushDirective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.push_type())?;
        match self {
            Self::None => Ok(()),
            Self::Next(k) => write!(f, ";{k}"),
            Self::Time(t) => write!(f, ";{t}"),
            Self::List(list) => write!(f, ";{list}"),
            Self::Template(t) => write!(f, ";{t}"),
            Self::FastStart(p) if p.is_default() => Ok(()),
            Self::FastStart(p) => write!(f, ";{p}"),
            Self::Unknown { params: None, .. } => Ok(()),
            Self::Unknown {
                params: Some(p), ..
            } => {
                f.write_str(";")?;
                write_param(f, p)
            }
        }
    }
}

impl PushAck {
    /// The `push-none` acknowledgement.
    pub fn none() -> Self {
        Self(PushDirective::None)
    }

    /// Parses an acknowledgement header value (a client-side operation).
    pub fn parse(value: &str) -> Result<Self, DirectiveError> {
        PushDirective::parse(value).map(Self)
    }

    /// The directive that was applied.
    pub fn directive(&self) -> &PushDirective {
        &self.0
    }
}

impl fmt::Display for PushAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PushAck {
    type Err = DirectiveError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PushDuration {
    /// A duration, if it is positive.
    pub fn new(d: Duration) -> Option<Self> {
        (!d.is_zero()).then_some(Self(d))
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.0
    }
}

impl FromStr for PushDuration {
    type Err = DirectiveError;

    /// Parses `digits [ "." digits ]` seconds, at most 9 fractional digits, and positive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 9 {
            return Err(DirectiveError::InvalidDuration);
        }
        if s.ends_with('.') {
            return Err(DirectiveError::InvalidDuration);
        }
        let secs: u64 = int.parse().map_err(|_| DirectiveError::InvalidDuration)?;
        // Right-pad to nine digits: "5" is 500_000_000 ns.
        let nanos: u32 = format!("{frac:0<9}")
            .parse()
            .map_err(|_| DirectiveError::InvalidDuration)?;
        Self::new(Duration::new(secs, nanos)).ok_or(DirectiveError::InvalidDuration)
    }
}

impl fmt::Display for PushDuration {
    /// Decimal seconds without trailing zeros: `10`, `2.5`, `0.000000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs())?;
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            return Ok(());
        }
        let frac = format!("{nanos:09}");
        write!(f, ".{}", frac.trim_end_matches('0'))
    }
}

/// Checks length and characters of a whole field value.
fn check_field(value: &str) -> Result<(), DirectiveError> {
    if value.len() > limits::MAX_HEADER_LEN {
        return Err(DirectiveError::TooLong {
            len: value.len(),
            max: limits::MAX_HEADER_LEN,
        });
    }
    match value
        .bytes()
        .position(|b| !(b == b' ' || b == b'\t' || b.is_ascii_graphic()))
    {
        Some(pos) => Err(DirectiveError::InvalidChar {
            pos,
            byte: value.as_bytes().get(pos).copied().unwrap_or(0),
        }),
        None => Ok(()),
    }
}

fn parse_count(s: &str) -> Result<u32, DirectiveError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DirectiveError::InvalidCount);
    }
    match s.parse::<u32>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err(DirectiveError::InvalidCount),
    }
}

/// Trims the parameter; a leading DQUOTE makes it an RFC 9110 quoted-string.
fn unquote(raw: &str) -> Result<String, DirectiveError> {
    let p = raw.trim_matches(is_ows);
    let Some(body) = p.strip_prefix('"') else {
        return Ok(p.to_owned());
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(DirectiveError::BadQuotedString)?),
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err(DirectiveError::BadQuotedString)
                };
            }
            c => out.push(c),
        }
    }
    Err(DirectiveError::BadQuotedString)
}

/// Writes a parameter raw when that parses back to the same text, quoted otherwise.
fn write_param(f: &mut fmt::Formatter<'_>, p: &str) -> fmt::Result {
    let raw_ok = !p.is_empty() && !p.starts_with('"') && p.trim_matches(is_ows) == p;
    if raw_ok {
        return f.write_str(p);
    }
    f.write_str("\"")?;
    for c in p.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        fmt::Write::write_char(f, c)?;
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PushDirective {
        PushDirective::parse(s).unwrap()
    }

    #[test]
    fn attested_form_and_annex_c_examples() {
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-next;4"),
            PushDirective::Next(4)
        );
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-next;3").to_string(),
            "urn:mpeg:dash:fdh:2016:push-next;3"
        );
        // Annex C: 999 is parsed, then clamped by config to 16.
        let d = parse("urn:mpeg:dash:fdh:2016:push-next;999");
        assert_eq!(
            d.clone().clamped(16, Duration::from_secs(10)),
            PushDirective::Next(16)
        );
        assert_eq!(
            d.clamped(1000, Duration::from_secs(10)),
            PushDirective::Next(limits::MAX_PUSH_NEXT)
        );
        assert_eq!(
            PushDirective::parse("urn:mpeg:dash:fdh:2016:push-next;abc"),
            Err(DirectiveError::InvalidCount)
        );
        let fs = parse(r#"urn:mpeg:dash:fdh:2016:push-fast-start;{"segments":2}"#);
        let PushDirective::FastStart(p) = &fs else {
            panic!("{fs:?}")
        };
        assert_eq!(p.segments, Some(2));
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-fast-start"),
            PushDirective::FastStart(FastStartParams::default())
        );
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-none"),
            PushDirective::None
        );
    }

    #[test]
    fn whitespace_quoting_and_empty_params() {
        assert_eq!(
            parse("  urn:mpeg:dash:fdh:2016:push-next \t;  5 "),
            PushDirective::Next(5)
        );
        assert_eq!(
            parse(r#"urn:mpeg:dash:fdh:2016:push-next;"7""#),
            PushDirective::Next(7)
        );
        assert_eq!(
            parse(r#"urn:mpeg:dash:fdh:2016:push-list; "a.m4s, b.m4s""#),
            PushDirective::List(UrlList::parse("a.m4s,b.m4s").unwrap())
        );
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-fast-start;"),
            PushDirective::FastStart(FastStartParams::default())
        );
        assert_eq!(
            PushDirective::parse("urn:mpeg:dash:fdh:2016:push-next;"),
            Err(DirectiveError::MissingParameter {
                push_type: "push-next"
            })
        );
    }

    #[test]
    fn list_and_template_parameters_need_no_escaping() {
        let d = parse("urn:mpeg:dash:fdh:2016:push-template;seg-{%05d:10-20:5}.m4s;x=1");
        let PushDirective::Template(t) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(t.expand().next().unwrap(), "seg-00010.m4s;x=1");
        assert_eq!(
            d.to_string(),
            "urn:mpeg:dash:fdh:2016:push-template;seg-{%05d:10-20:5}.m4s;x=1"
        );
    }

    #[test]
    fn push_time_decimal() {
        let d = parse("urn:mpeg:dash:fdh:2016:push-time;2.5");
        assert_eq!(
            d,
            PushDirective::Time(PushDuration::new(Duration::from_millis(2500)).unwrap())
        );
        assert_eq!(d.to_string(), "urn:mpeg:dash:fdh:2016:push-time;2.5");
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-time;10").to_string(),
            "urn:mpeg:dash:fdh:2016:push-time;10"
        );
        assert_eq!(
            parse("urn:mpeg:dash:fdh:2016:push-time;100000").clamped(64, Duration::from_secs(30)),
            PushDirective::Time(PushDuration::new(Duration::from_secs(30)).unwrap())
        );
        for bad in [
            "0",
            "0.0",
            "-1",
            "1.",
            ".5",
            "1.2.3",
            "1e3",
            "0.0000000001",
            "99999999999999999999",
        ] {
            assert_eq!(
                PushDirective::parse(&format!("urn:mpeg:dash:fdh:2016:push-time;{bad}")),
                Err(DirectiveError::InvalidDuration),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_types_are_kept_for_a_push_none_answer() {
        let d = parse("urn:mpeg:dash:fdh:2017:push-later; \"a;b\\\"\" ");
        assert_eq!(
            d,
            PushDirective::Unknown {
                token: "push-later".into(),
                params: Some("a;b\"".into())
            }
        );
        // Written raw: it parses back to the same parameter.
        assert_eq!(d.to_string(), r#"urn:mpeg:dash:fdh:2016:push-later;a;b""#);
        let padded = PushDirective::Unknown {
            token: "x".into(),
            params: Some(" \"q".into()),
        };
        assert_eq!(padded.to_string(), r#"urn:mpeg:dash:fdh:2016:x;" \"q""#);
        assert_eq!(parse(&padded.to_string()), padded);
        assert_eq!(d.push_type().label(), "unknown");
    }

    #[test]
    fn errors_are_typed() {
        use DirectiveError as E;
        let err = |s: &str| PushDirective::parse(s).unwrap_err();
        assert_eq!(err("push-next;3"), E::PushType(PushTypeError::NotAUrn));
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-none;1"),
            E::UnexpectedParameter {
                push_type: "push-none"
            }
        );
        assert_eq!(err("urn:mpeg:dash:fdh:2016:push-next;0"), E::InvalidCount);
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next;4294967296"),
            E::InvalidCount
        );
        assert_eq!(err("urn:mpeg:dash:fdh:2016:push-next;+3"), E::InvalidCount);
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next;\"3"),
            E::BadQuotedString
        );
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next;\"3\"x"),
            E::BadQuotedString
        );
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next;3\u{e9}"),
            E::InvalidChar {
                pos: 34,
                byte: 0xc3
            }
        );
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next;\n3"),
            E::InvalidChar {
                pos: 33,
                byte: b'\n'
            }
        );
        assert!(matches!(
            err("urn:mpeg:dash:fdh:2016:push-list;a,,b"),
            E::List(_)
        ));
        assert!(matches!(
            err("urn:mpeg:dash:fdh:2016:push-template;seg.m4s"),
            E::Template(_)
        ));
        assert!(matches!(
            err("urn:mpeg:dash:fdh:2016:push-fast-start;[1]"),
            E::FastStart(_)
        ));
        let long = format!(
            "urn:mpeg:dash:fdh:2016:push-list;{}",
            "a".repeat(limits::MAX_HEADER_LEN)
        );
        assert!(matches!(err(&long), E::TooLong { .. }));
        assert_eq!(
            err("urn:mpeg:dash:fdh:2016:push-next").reason(),
            "missing_param"
        );
    }

    #[test]
    fn ack_none() {
        assert_eq!(
            PushAck::none().to_string(),
            "urn:mpeg:dash:fdh:2016:push-none"
        );
        assert_eq!(
            PushAck::parse("urn:mpeg:dash:fdh:2016:push-next;16")
                .unwrap()
                .directive(),
            &PushDirective::Next(16)
        );
    }
}
