//! URL templates, spec §6.1.6 and Annex F.
//!
//! A template is a URI reference with exactly one slot `{` [ `%0` width `d:` ] values `}`:
//!
//! ```text
//! values = run *( "," run )
//! run    = number [ "-" number [ ":" step ] ]     ; inclusive; step >= 1, default 1
//! ```
//!
//! `{{` and `}}` stand for literal braces. Expansion ([`UrlTemplate::expand`]) is a lazy
//! iterator in the order the values are written, capped at
//! [`limits::MAX_TEMPLATE_EXPANSION`] URLs. A descending run, a zero step, a width over
//! [`limits::MAX_TEMPLATE_WIDTH`] or a number over `u64` are errors (spec §6.1.6 (ours)).

use std::fmt;

use thiserror::Error;

use crate::limits;
use crate::url_list::{UrlListError, check_uri_chars};

/// A parsed URL template (spec §6.1.6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlTemplate {
    prefix: String,
    suffix: String,
    width: Option<u8>,
    runs: Vec<Run>,
}

/// One arithmetic run of template values: `start`, `start + step`, … up to `end` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Run {
    /// First value.
    pub start: u64,
    /// Last value (inclusive); never below `start`.
    pub end: u64,
    /// Distance between values; at least 1.
    pub step: u64,
}

/// Why a URL template was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// The template is longer than a header may be.
    #[error("template is {len} bytes long (max {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The template has no `{…}` slot.
    #[error("template has no `{{…}}` slot")]
    NoSlot,
    /// The template has more than one slot.
    #[error("template has more than one slot")]
    MultipleSlots,
    /// A `{` slot is never closed.
    #[error("template slot opened at byte {pos} is not closed")]
    UnterminatedSlot {
        /// Byte offset of the `{`.
        pos: usize,
    },
    /// A lone `}` outside a slot (write `}}` for a literal brace).
    #[error("unbalanced `}}` at byte {pos}")]
    UnbalancedBrace {
        /// Byte offset of the `}`.
        pos: usize,
    },
    /// The width spec is not `%0<1-16>d:`.
    #[error("malformed width (expected `%0<width>d:`)")]
    BadWidth,
    /// The width is 0 or over the cap.
    #[error("width {width} out of range 1..={max}")]
    WidthOutOfRange {
        /// The width asked for.
        width: u64,
        /// The cap.
        max: u8,
    },
    /// A number was expected in the values.
    #[error("expected a number at `{found}`")]
    ExpectedNumber {
        /// The text found instead (at most 16 chars).
        found: String,
    },
    /// A number does not fit in `u64`.
    #[error("number does not fit in 64 bits")]
    NumberTooLarge,
    /// A run's end is below its start.
    #[error("descending run {start}-{end}")]
    Descending {
        /// Start of the run.
        start: u64,
        /// End of the run.
        end: u64,
    },
    /// A run's step is zero.
    #[error("step must be at least 1")]
    ZeroStep,
    /// More runs than allowed.
    #[error("more than {max} runs in the slot")]
    TooManyRuns {
        /// The cap.
        max: usize,
    },
    /// A literal part has characters that may not appear in a URI reference, or the longest
    /// expansion would exceed the URL length cap.
    #[error("template literal: {0}")]
    Literal(#[from] UrlListError),
}

impl UrlTemplate {
    /// Parses the textual form.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        if s.len() > limits::MAX_HEADER_LEN {
            return Err(TemplateError::TooLong {
                len: s.len(),
                max: limits::MAX_HEADER_LEN,
            });
        }
        let bytes = s.as_bytes();
        let mut prefix = Vec::new();
        let mut suffix = Vec::new();
        let mut slot: Option<(Option<u8>, Vec<Run>)> = None;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            let literal = if slot.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            match b {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'}' => return Err(TemplateError::UnbalancedBrace { pos: i }),
                b'{' => {
                    if slot.is_some() {
                        return Err(TemplateError::MultipleSlots);
                    }
                    let body_start = i + 1;
                    let close = bytes
                        .get(body_start..)
                        .and_then(|rest| rest.iter().position(|&c| c == b'}'))
                        .ok_or(TemplateError::UnterminatedSlot { pos: i })?;
                    let body = s
                        .get(body_start..body_start + close)
                        .ok_or(TemplateError::UnterminatedSlot { pos: i })?;
                    slot = Some(parse_slot(body)?);
                    i = body_start + close + 1;
                }
                _ => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        let (width, runs) = slot.ok_or(TemplateError::NoSlot)?;
        // Literal bytes came from a &str and only ASCII braces were removed or kept, so they
        // are valid UTF-8; fall back to an error rather than trusting that.
        let prefix = String::from_utf8(prefix).map_err(|_| TemplateError::NoSlot)?;
        let suffix = String::from_utf8(suffix).map_err(|_| TemplateError::NoSlot)?;
        Self::new(prefix, suffix, width, runs)
    }

    /// Builds a template from its parts, validating them exactly as [`UrlTemplate::parse`]
    /// does.
    pub fn new(
        prefix: String,
        suffix: String,
        width: Option<u8>,
        runs: Vec<Run>,
    ) -> Result<Self, TemplateError> {
        if let Some(w) = width
            && !(1..=limits::MAX_TEMPLATE_WIDTH).contains(&w)
        {
            return Err(TemplateError::WidthOutOfRange {
                width: u64::from(w),
                max: limits::MAX_TEMPLATE_WIDTH,
            });
        }
        if runs.is_empty() {
            return Err(TemplateError::ExpectedNumber {
                found: String::new(),
            });
        }
        if runs.len() > limits::MAX_TEMPLATE_RUNS {
            return Err(TemplateError::TooManyRuns {
                max: limits::MAX_TEMPLATE_RUNS,
            });
        }
        for run in &runs {
            if run.step == 0 {
                return Err(TemplateError::ZeroStep);
            }
            if run.end < run.start {
                return Err(TemplateError::Descending {
                    start: run.start,
                    end: run.end,
                });
            }
        }
        check_uri_chars(0, &prefix)?;
        check_uri_chars(0, &suffix)?;
        // u64::MAX has 20 digits; a width pads to at most 16, so 20 bounds every number.
        let longest = prefix.len() + suffix.len() + 20;
        if longest > limits::MAX_URL_LEN {
            return Err(UrlListError::EntryTooLong {
                index: 0,
                len: longest,
                max: limits::MAX_URL_LEN,
            }
            .into());
        }
        Ok(Self {
            prefix,
            suffix,
            width,
            runs,
        })
    }

    /// The literal text before the slot (braces unescaped).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The literal text after the slot (braces unescaped).
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The zero-padding width, if any.
    pub fn width(&self) -> Option<u8> {
        self.width
    }

    /// The value runs, in expansion order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// How many URLs the template describes before the expansion cap (saturating).
    pub fn described_len(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.len()))
    }

    /// Expands lazily, in value order, at most [`limits::MAX_TEMPLATE_EXPANSION`] URLs.
    pub fn expand(&self) -> Expand<'_> {
        Expand {
            template: self,
            run: 0,
            next: self.runs.first().map(|r| r.start),
            emitted: 0,
        }
    }
}

impl Run {
    /// How many values the run yields (saturating at `u64::MAX`).
    pub fn len(&self) -> u64 {
        ((self.end - self.start) / self.step).saturating_add(1)
    }

    /// Always false: a run yields at least its start value.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Lazy expansion of a [`UrlTemplate`]; see [`UrlTemplate::expand`].
#[derive(Clone, Debug)]
pub struct Expand<'a> {
    template: &'a UrlTemplate,
    run: usize,
    next: Option<u64>,
    emitted: usize,
}

impl Iterator for Expand<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.emitted >= limits::MAX_TEMPLATE_EXPANSION {
            return None;
        }
        let value = self.next?;
        let run = self.template.runs.get(self.run)?;
        self.next = match value.checked_add(run.step) {
            Some(v) if v <= run.end => Some(v),
            _ => {
                self.run += 1;
                self.template.runs.get(self.run).map(|r| r.start)
            }
        };
        self.emitted += 1;
        let t = self.template;
        let width = usize::from(t.width.unwrap_or(0));
        Some(format!("{}{value:0width$}{}", t.prefix, t.suffix))
    }
}

impl fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.prefix)?;
        f.write_str("{")?;
        if let Some(w) = self.width {
            write!(f, "%0{w}d:")?;
        }
        for (i, run) in self.runs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{run}")?;
        }
        f.write_str("}")?;
        write_escaped(f, &self.suffix)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.start == self.end, self.step) {
            (true, 1) => write!(f, "{}", self.start),
            (_, 1) => write!(f, "{}-{}", self.start, self.end),
            _ => write!(f, "{}-{}:{}", self.start, self.end, self.step),
        }
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '{' => f.write_str("{{")?,
            '}' => f.write_str("}}")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

/// Parses the inside of a slot: optional width, then runs.
fn parse_slot(body: &str) -> Result<(Option<u8>, Vec<Run>), TemplateError> {
    let (width, values) = match body.strip_prefix("%0") {
        Some(rest) => {
            let (w, values) = rest.split_once("d:").ok_or(TemplateError::BadWidth)?;
            if w.is_empty() || w.len() > 3 || !w.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TemplateError::BadWidth);
            }
            let w: u64 = w.parse().map_err(|_| TemplateError::BadWidth)?;
            let max = limits::MAX_TEMPLATE_WIDTH;
            let w = u8::try_from(w)
                .ok()
                .filter(|w| (1..=max).contains(w))
                .ok_or(TemplateError::WidthOutOfRange { width: w, max })?;
            (Some(w), values)
        }
        None => (None, body),
    };
    let mut runs = Vec::new();
    for part in values.split(',') {
        if runs.len() >= limits::MAX_TEMPLATE_RUNS {
            return Err(TemplateError::TooManyRuns {
                max: limits::MAX_TEMPLATE_RUNS,
            });
        }
        runs.push(parse_run(part)?);
    }
    Ok((width, runs))
}

fn parse_run(part: &str) -> Result<Run, TemplateError> {
    let (range, step) = match part.split_once(':') {
        Some((range, step)) => (range, Some(parse_number(step)?)),
        None => (part, None),
    };
    // Step and order are checked once, for parsed and built templates alike, in `new`.
    Ok(match range.split_once('-') {
        Some((start, end)) => Run {
            start: parse_number(start)?,
            end: parse_number(end)?,
            step: step.unwrap_or(1),
        },
        // A step needs a range: `5:2` is not a run.
        None if step.is_some() => {
            return Err(TemplateError::ExpectedNumber {
                found: part.chars().take(16).collect(),
            });
        }
        None => {
            let v = parse_number(range)?;
            Run {
                start: v,
                end: v,
                step: 1,
            }
        }
    })
}

fn parse_number(s: &str) -> Result<u64, TemplateError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TemplateError::ExpectedNumber {
            found: s.chars().take(16).collect(),
        });
    }
    s.parse().map_err(|_| TemplateError::NumberTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(s: &str) -> Vec<String> {
        UrlTemplate::parse(s).unwrap().expand().collect()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(
            expand("seg-{5-8}.m4s"),
            ["seg-5.m4s", "seg-6.m4s", "seg-7.m4s", "seg-8.m4s"]
        );
        assert_eq!(
            expand("seg-{%05d:10-20:5}.m4s"),
            ["seg-00010.m4s", "seg-00015.m4s", "seg-00020.m4s"]
        );
        assert_eq!(expand("s{1,3,9}.m4s"), ["s1.m4s", "s3.m4s", "s9.m4s"]);
    }

    #[test]
    fn literal_braces() {
        let t = UrlTemplate::parse("a{{b}}/{1-2}/c}}").unwrap();
        assert_eq!(t.prefix(), "a{b}/");
        assert_eq!(t.suffix(), "/c}");
        assert_eq!(t.expand().collect::<Vec<_>>(), ["a{b}/1/c}", "a{b}/2/c}"]);
        assert_eq!(t.to_string(), "a{{b}}/{1-2}/c}}");
    }

    #[test]
    fn step_not_landing_on_end_and_width_not_truncating() {
        assert_eq!(expand("{1-10:4}"), ["1", "5", "9"]);
        assert_eq!(expand("{%02d:123}"), ["123"]);
    }

    #[test]
    fn expansion_is_capped_and_lazy() {
        let t = UrlTemplate::parse("s{0-18446744073709551615}").unwrap();
        assert_eq!(t.described_len(), u64::MAX);
        assert_eq!(t.expand().count(), limits::MAX_TEMPLATE_EXPANSION);
        let t = UrlTemplate::parse("s{18446744073709551614-18446744073709551615}").unwrap();
        assert_eq!(t.expand().count(), 2);
    }

    #[test]
    fn round_trip_canonicalises() {
        let t = UrlTemplate::parse("x{5-5,7-9:1,1-9:3}y").unwrap();
        assert_eq!(t.to_string(), "x{5,7-9,1-9:3}y");
        assert_eq!(UrlTemplate::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn errors_are_typed() {
        use TemplateError as E;
        let err = |s: &str| UrlTemplate::parse(s).unwrap_err();
        assert_eq!(err("seg.m4s"), E::NoSlot);
        assert_eq!(err("{1}{2}"), E::MultipleSlots);
        assert_eq!(err("a{1-2"), E::UnterminatedSlot { pos: 1 });
        assert_eq!(err("a}{1}"), E::UnbalancedBrace { pos: 1 });
        assert_eq!(err("{8-5}"), E::Descending { start: 8, end: 5 });
        assert_eq!(err("{1-5:0}"), E::ZeroStep);
        assert_eq!(err("{%017d:1}"), E::WidthOutOfRange { width: 17, max: 16 });
        assert_eq!(err("{%00d:1}"), E::WidthOutOfRange { width: 0, max: 16 });
        assert_eq!(
            err("{%5d:1}"),
            E::ExpectedNumber {
                found: "%5d:1".into()
            }
        );
        assert_eq!(err("{%05:1}"), E::BadWidth);
        assert_eq!(err("{18446744073709551616}"), E::NumberTooLarge);
        assert_eq!(
            err("{}"),
            E::ExpectedNumber {
                found: String::new()
            }
        );
        assert_eq!(
            err("{1,,2}"),
            E::ExpectedNumber {
                found: String::new()
            }
        );
        assert_eq!(
            err("{-3}"),
            E::ExpectedNumber {
                found: String::new()
            }
        );
        assert_eq!(
            err("{5:2}"),
            E::ExpectedNumber {
                found: "5:2".into()
            }
        );
        assert_eq!(
            err("a b{1}"),
            E::Literal(UrlListError::InvalidChar {
                index: 0,
                byte: b' '
            })
        );
        let runs = vec!["1"; limits::MAX_TEMPLATE_RUNS + 1].join(",");
        assert_eq!(err(&format!("{{{runs}}}")), E::TooManyRuns { max: 64 });
        let long = format!("{}{{1}}", "a".repeat(limits::MAX_URL_LEN));
        assert!(matches!(
            err(&long),
            E::Literal(UrlListError::EntryTooLong { .. })
        ));
        let huge = "a".repeat(limits::MAX_HEADER_LEN + 1);
        assert!(matches!(err(&huge), E::TooLong { .. }));
    }
}
