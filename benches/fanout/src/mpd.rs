//! The little of a live MPD the load client needs: when segments become available and what
//! their URLs are, for the first Representation of a `$Number$` SegmentTemplate with
//! `@duration` (the built-in live origin's MPD).

use serde::{Deserialize, Serialize};

/// Segment addressing and availability of one Representation of a dynamic MPD.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveStream {
    /// availabilityStartTime, microseconds since the Unix epoch.
    pub ast_us: i64,
    /// Segment duration in microseconds.
    pub seg_us: i64,
    /// `@startNumber` (default 1).
    pub start_number: u64,
    /// URL path of the directory the MPD lives in, ending in `/` (segment URLs are relative).
    pub base_path: String,
    /// The media template's text before `$Number…$`.
    pub prefix: String,
    /// The media template's text after `$Number…$`.
    pub suffix: String,
    /// Zero-padding width of `$Number%0Nd$` (0: none).
    pub width: usize,
}

impl LiveStream {
    /// Parses the MPD served at `mpd_path`. Only what the built-in live origin produces is
    /// supported: Period start 0, no availabilityTimeOffset, `$Number$` with `@duration`.
    pub fn parse(mpd: &str, mpd_path: &str) -> Result<Self, String> {
        if !mpd.contains(r#"type="dynamic""#) {
            return Err("the MPD is not dynamic (type=\"dynamic\")".into());
        }
        if mpd.contains("availabilityTimeOffset") {
            return Err("availabilityTimeOffset is not supported by this client".into());
        }
        let ast =
            attr(mpd, "availabilityStartTime").ok_or("no availabilityStartTime in the MPD")?;
        let ast = chrono::DateTime::parse_from_rfc3339(ast)
            .map_err(|e| format!("availabilityStartTime {ast:?}: {e}"))?;
        let template = element(mpd, "SegmentTemplate").ok_or("no SegmentTemplate in the MPD")?;
        let num = |name: &str, default: Option<u64>| -> Result<u64, String> {
            match attr(template, name) {
                Some(v) => v
                    .parse()
                    .map_err(|e| format!("SegmentTemplate@{name} {v:?}: {e}")),
                None => default.ok_or(format!("SegmentTemplate has no @{name}")),
            }
        };
        let timescale = num("timescale", Some(1))?.max(1);
        let duration = num("duration", None)?;
        let start_number = num("startNumber", Some(1))?;
        let media = attr(template, "media").ok_or("SegmentTemplate has no @media")?;
        let (prefix, rest) = media
            .split_once("$Number")
            .ok_or("@media has no $Number$ (only $Number$ templates are supported)")?;
        let (format, suffix) = rest.split_once('$').ok_or("unterminated $Number…$")?;
        let width = match format.strip_prefix("%0").and_then(|f| f.strip_suffix('d')) {
            Some(w) => w.parse().map_err(|e| format!("$Number{format}$: {e}"))?,
            None if format.is_empty() => 0,
            None => return Err(format!("unsupported $Number{format}$")),
        };
        if prefix.contains('$') || suffix.contains('$') {
            return Err(format!("unsupported identifiers in @media {media:?}"));
        }
        let seg_us = i64::try_from(u128::from(duration) * 1_000_000 / u128::from(timescale))
            .map_err(|_| "segment duration out of range")?;
        if seg_us <= 0 {
            return Err("segment duration is zero".into());
        }
        let base_path = match mpd_path.rfind('/') {
            Some(i) => mpd_path[..=i].to_string(),
            None => "/".to_string(),
        };
        Ok(Self {
            ast_us: ast.timestamp_micros(),
            seg_us,
            start_number,
            base_path,
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            width,
        })
    }

    /// When segment `number` becomes available (its end on the media timeline), Unix µs.
    pub fn available_us(&self, number: u64) -> i64 {
        let index = number.saturating_sub(self.start_number) as i64;
        self.ast_us + (index + 1) * self.seg_us
    }

    /// The newest segment available at `at_us` (`start_number - 1` if none yet).
    pub fn edge_at(&self, at_us: i64) -> u64 {
        let elapsed = (at_us - self.ast_us).max(0);
        (self.start_number + (elapsed / self.seg_us) as u64).saturating_sub(1)
    }

    /// URL path of segment `number`.
    pub fn path(&self, number: u64) -> String {
        format!(
            "{}{}{:0width$}{}",
            self.base_path,
            self.prefix,
            number,
            self.suffix,
            width = self.width
        )
    }

    /// The segment number a URL path names, if it is one of this Representation's segments.
    pub fn number_of(&self, path: &str) -> Option<u64> {
        let rest = path
            .strip_prefix(&self.base_path)?
            .strip_prefix(&self.prefix)?;
        let digits = rest.strip_suffix(&self.suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

/// The first start tag `<name …>` (its attributes).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let start = from + i + open.len();
        let next = xml[start..].chars().next()?;
        if next.is_whitespace() || next == '>' || next == '/' {
            let end = xml[start..].find('>')?;
            return Some(&xml[start..start + end]);
        }
        from = start;
    }
    None
}

/// The value of attribute `name="…"` (first occurrence, preceded by whitespace).
fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&key) {
        let at = from + i;
        let preceded = xml[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let start = at + key.len();
        if preceded {
            let end = xml[start..].find('"')?;
            return Some(&xml[start..start + end]);
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
  availabilityStartTime="2026-01-01T00:00:00.500Z" publishTime="2026-01-01T00:01:00Z">
  <Period id="0" start="PT0S"><AdaptationSet id="0">
  <Representation id="0" bandwidth="60000"><SegmentTemplate timescale="1000000" duration="1000000" initialization="init-stream0.m4s" media="chunk-stream0-$Number%05d$.m4s" startNumber="1"/></Representation>
  </AdaptationSet></Period></MPD>"#;

    #[test]
    fn parses_the_built_in_live_mpd() {
        let s = LiveStream::parse(MPD, "/live/manifest.mpd").expect("parses");
        assert_eq!(s.seg_us, 1_000_000);
        assert_eq!(s.path(42), "/live/chunk-stream0-00042.m4s");
        assert_eq!(s.number_of("/live/chunk-stream0-00042.m4s"), Some(42));
        assert_eq!(s.number_of("/live/chunk-stream1-00042.m4s"), None);
        // Segment 1 is available at its end: AST + 1 s.
        assert_eq!(s.available_us(1) - s.ast_us, 1_000_000);
        assert_eq!(s.edge_at(s.ast_us + 999_999), 0);
        assert_eq!(s.edge_at(s.ast_us + 1_000_000), 1);
        assert_eq!(s.edge_at(s.ast_us + 2_500_000), 2);
    }
}
