//! A cheap pre-scan of the XML before it reaches the deserializer: size and nesting depth.

use crate::MpdError;
use crate::limits;

/// Rejects documents over [`limits::MAX_MPD_BYTES`] or nested deeper than
/// [`limits::MAX_DEPTH`]. Linear in the input, no allocation.
pub(crate) fn check(xml: &str) -> Result<(), MpdError> {
    if xml.len() > limits::MAX_MPD_BYTES {
        return Err(MpdError::TooLarge {
            what: "MPD bytes",
            max: limits::MAX_MPD_BYTES,
        });
    }
    let b = xml.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(off) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b'<'))
    {
        i += off;
        let rest = b.get(i..).unwrap_or_default();
        if rest.starts_with(b"<!--") {
            i = skip_past(b, i, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_past(b, i, b"]]>");
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            i = skip_past(b, i, b">");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = skip_past(b, i, b">");
        } else {
            let end = skip_past(b, i, b">");
            let self_closing = end >= 2 && b.get(end - 2) == Some(&b'/');
            if !self_closing {
                depth += 1;
                if depth > limits::MAX_DEPTH {
                    return Err(MpdError::TooLarge {
                        what: "element nesting depth",
                        max: limits::MAX_DEPTH,
                    });
                }
            }
            i = end;
        }
    }
    Ok(())
}

/// Index just past the next `pat` at or after `from`, or the end of input.
fn skip_past(b: &[u8], from: usize, pat: &[u8]) -> usize {
    b.get(from..)
        .and_then(|rest| rest.windows(pat.len()).position(|w| w == pat))
        .map_or(b.len(), |p| from + p + pat.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_size() {
        assert!(check("<a><b/><!-- <x><y> --><c>t</c></a>").is_ok());
        let deep = "<a>".repeat(limits::MAX_DEPTH + 1);
        assert!(matches!(check(&deep), Err(MpdError::TooLarge { .. })));
        let ok = format!(
            "{}{}",
            "<a>".repeat(limits::MAX_DEPTH),
            "</a>".repeat(limits::MAX_DEPTH)
        );
        assert!(check(&ok).is_ok());
    }
}
