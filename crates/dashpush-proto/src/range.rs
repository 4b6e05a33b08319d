//! Byte ranges: the HTTP `Range` header (RFC 9110 §14.2) reduced to the single range a
//! segment player sends, applied to a body of known length. Used by the gateway to answer
//! ranged requests from cached bodies, and by the WebSocket path for `range` metadata.

/// Resolves one `bytes=a-b`, `bytes=a-` or `bytes=-n` range against a body of `total` bytes,
/// as inclusive offsets. `None` for anything unsatisfiable, malformed, or with several ranges
/// (the caller answers 416).
pub fn parse_range_header(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (a, b) = match (a.trim(), b.trim()) {
        ("", n) => (total.saturating_sub(num(n)?), total - 1),
        (a, "") => (num(a)?, total - 1),
        (a, b) => (num(a)?, num(b)?.min(total - 1)),
    };
    (a <= b && a < total).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range_header("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range_header("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range_header("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range_header("bytes=-1000", 100), Some((0, 99)));
        assert_eq!(parse_range_header("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range_header("bytes=100-", 100), None);
        assert_eq!(parse_range_header("bytes=5-1", 100), None);
        assert_eq!(parse_range_header("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range_header("bytes=+1-2", 100), None);
        assert_eq!(parse_range_header("items=0-1", 100), None);
        assert_eq!(parse_range_header("bytes=0-0", 0), None);
    }
}
