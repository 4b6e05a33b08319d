//! SegmentTemplate identifiers (ISO/IEC 23009-1 §5.3.9.4.4): `$RepresentationID$`, `$Number$`,
//! `$Time$`, `$Bandwidth$`, format tags `%0<width>d`, and `$$` for a literal dollar.
//!
//! A media template is *compiled* per Representation: the constant identifiers are filled in,
//! the result is resolved against the BaseURL chain, and what remains is a literal prefix, one
//! variable (`$Number$` or `$Time$`) and a literal suffix. That form both builds a segment URL
//! and, read backwards, recovers the number or time from a requested URL in O(length).

use url::Url;

use crate::MpdError;
use crate::limits;

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    RepresentationId,
    Number(usize),
    Time(usize),
    Bandwidth(usize),
}

/// The variable of a compiled media template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$Number$`.
    Number,
    /// `$Time$`.
    Time,
}

/// A media template with constants filled in and resolved to an absolute URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Compiled {
    prefix: String,
    pub(crate) var: Var,
    width: usize,
    suffix: String,
}

impl Compiled {
    /// The same template under another origin (see `Manifest::rebased`).
    pub(crate) fn rebased(&self, from: &str, to: &str) -> Self {
        Self {
            prefix: rebase_str(&self.prefix, from, to),
            ..self.clone()
        }
    }
}

/// `s` with a leading origin `from` (`scheme://host[:port]`, followed by `/` or nothing)
/// replaced by `to`; any other string unchanged.
pub(crate) fn rebase_str(s: &str, from: &str, to: &str) -> String {
    match s.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{to}{rest}"),
        _ => s.to_owned(),
    }
}

/// The marker that stands for the variable while the template is resolved as a URL; `$` and
/// letters pass through URL resolution unchanged.
const MARKER: &str = "$DASHPUSHVAR$";

/// Parses a template string.
pub(crate) fn parse(s: &str) -> Result<Vec<Part>, MpdError> {
    if s.len() > limits::MAX_ATTRIBUTE_LEN {
        return Err(MpdError::TooLarge {
            what: "template attribute",
            max: limits::MAX_ATTRIBUTE_LEN,
        });
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        lit.push_str(rest.get(..pos).unwrap_or_default());
        let after = rest.get(pos + 1..).unwrap_or_default();
        let end = after
            .find('$')
            .ok_or_else(|| bad(s, "unterminated `$` identifier"))?;
        let ident = after.get(..end).unwrap_or_default();
        rest = after.get(end + 1..).unwrap_or_default();
        if ident.is_empty() {
            lit.push('$');
            continue;
        }
        let (name, width) = match ident.split_once('%') {
            Some((name, fmt)) => (name, parse_format(s, fmt)?),
            None => (ident, 0),
        };
        let part = match name {
            "RepresentationID" if width == 0 => Part::RepresentationId,
            "Number" => Part::Number(width),
            "Time" => Part::Time(width),
            "Bandwidth" => Part::Bandwidth(width),
            _ => return Err(bad(s, "unsupported identifier")),
        };
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit)));
        }
        parts.push(part);
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

fn parse_format(template: &str, fmt: &str) -> Result<usize, MpdError> {
    let digits = fmt
        .strip_prefix('0')
        .and_then(|f| f.strip_suffix('d'))
        .ok_or_else(|| bad(template, "format tag must be %0<width>d"))?;
    let width: usize = digits
        .parse()
        .map_err(|_| bad(template, "bad format width"))?;
    if width > limits::MAX_FORMAT_WIDTH {
        return Err(bad(template, "format width too large"));
    }
    Ok(width)
}

fn bad(template: &str, why: &'static str) -> MpdError {
    MpdError::BadTemplate {
        template: template.chars().take(120).collect(),
        why,
    }
}

/// Fills every identifier; `number`/`time` may be absent when the template has none.
pub(crate) fn fill(
    parts: &[Part],
    rep_id: &str,
    bandwidth: u64,
    number: Option<u64>,
    time: Option<u64>,
) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::RepresentationId => out.push_str(rep_id),
            Part::Bandwidth(w) => out.push_str(&format!("{bandwidth:0w$}")),
            Part::Number(w) => out.push_str(&format!("{:0w$}", number.unwrap_or(0))),
            Part::Time(w) => out.push_str(&format!("{:0w$}", time.unwrap_or(0))),
        }
    }
    out
}

/// Compiles a media template for one Representation against its base URL.
pub(crate) fn compile(
    parts: &[Part],
    rep_id: &str,
    bandwidth: u64,
    base: &Url,
) -> Result<Compiled, MpdError> {
    let mut text = String::new();
    let mut var = None;
    for p in parts {
        match p {
            Part::Lit(s) => text.push_str(s),
            Part::RepresentationId => text.push_str(rep_id),
            Part::Bandwidth(w) => text.push_str(&format!("{bandwidth:0w$}")),
            Part::Number(w) | Part::Time(w) => {
                if var.is_some() {
                    return Err(MpdError::Unsupported(
                        "media template with both $Number$ and $Time$",
                    ));
                }
                let v = if matches!(p, Part::Number(_)) {
                    Var::Number
                } else {
                    Var::Time
                };
                var = Some((v, *w));
                text.push_str(MARKER);
            }
        }
    }
    let (var, width) = var.ok_or(MpdError::Unsupported(
        "media template without $Number$ or $Time$",
    ))?;
    let mut resolved = base
        .join(&text)
        .map_err(|e| MpdError::BadUrl(e.to_string()))?;
    // A fragment is never sent to the server, so it is no part of a segment's address.
    if resolved.fragment().is_some_and(|f| f.contains(MARKER)) {
        return Err(MpdError::Unsupported(
            "template variable in the URL fragment",
        ));
    }
    resolved.set_fragment(None);
    let resolved = resolved.as_str();
    let (prefix, suffix) = resolved.split_once(MARKER).ok_or(MpdError::Unsupported(
        "template variable lost in URL resolution",
    ))?;
    Ok(Compiled {
        prefix: prefix.to_owned(),
        var,
        width,
        suffix: suffix.to_owned(),
    })
}

impl Compiled {
    /// The segment URL for a variable value.
    pub(crate) fn url(&self, value: u64) -> Result<Url, MpdError> {
        let w = self.width;
        Url::parse(&format!("{}{value:0w$}{}", self.prefix, self.suffix))
            .map_err(|e| MpdError::BadUrl(e.to_string()))
    }

    /// The variable value if `url` matches this template.
    pub(crate) fn match_url(&self, url: &str) -> Option<u64> {
        let middle = url.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        if middle.is_empty() || middle.len() > 20 || !middle.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A padded value is printed with at least `width` digits; more digits only without
        // leading zeros.
        if middle.len() < self.width
            || (middle.len() > self.width.max(1) && middle.starts_with('0'))
        {
            return None;
        }
        middle.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_formats() {
        let p = parse("$RepresentationID$/seg-$Number%05d$-$Bandwidth$-$$.m4s").unwrap();
        assert_eq!(
            fill(&p, "v1", 500, Some(42), None),
            "v1/seg-00042-500-$.m4s"
        );
        let p = parse("t-$Time$.m4s").unwrap();
        assert_eq!(fill(&p, "a", 1, None, Some(123)), "t-123.m4s");
        assert!(parse("x$Number").is_err());
        assert!(parse("x$SubNumber$").is_err());
        assert!(parse("x$Number%5d$").is_err());
        assert!(parse("x$RepresentationID%02d$").is_err());
    }

    #[test]
    fn compile_and_match_round_trip() {
        let base = Url::parse("http://h/vod/manifest.mpd").unwrap();
        let c = compile(
            &parse("video/$RepresentationID$/seg-$Number%05d$.m4s?x=1").unwrap(),
            "v 1",
            9,
            &base,
        )
        .unwrap();
        let u = c.url(7).unwrap();
        assert_eq!(u.as_str(), "http://h/vod/video/v%201/seg-00007.m4s?x=1");
        assert_eq!(c.match_url(u.as_str()), Some(7));
        assert_eq!(c.match_url(c.url(1234567).unwrap().as_str()), Some(1234567));
        assert_eq!(c.match_url("http://h/vod/video/v%201/seg-7.m4s?x=1"), None);
        assert_eq!(
            c.match_url("http://h/vod/video/v%201/seg-012345.m4s?x=1"),
            None
        );
        assert_eq!(c.match_url("http://h/vod/video/v%201/seg-00007.m4s"), None);
        // Fragments are dropped; a variable inside one cannot be addressed.
        let c = compile(&parse("s-$Number$.m4s#t=1").unwrap(), "r", 1, &base).unwrap();
        assert_eq!(c.url(3).unwrap().as_str(), "http://h/vod/s-3.m4s");
        assert!(compile(&parse("s.m4s#$Number$").unwrap(), "r", 1, &base).is_err());
    }
}
