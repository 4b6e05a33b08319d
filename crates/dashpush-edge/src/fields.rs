//! Fields of a header list as the gateway keeps one (`(HeaderName, HeaderValue)` pairs, in the
//! order received): the one place that looks a field up by name. Names compare as names
//! (case-insensitively); values that are not text are skipped.

use http::{HeaderName, HeaderValue};

/// The first text value of the field `name` (a `str`, or a `HeaderName`, which compares
/// fastest: a known name is one tag).
pub(crate) fn first<'a, N>(headers: &'a [(HeaderName, HeaderValue)], name: &N) -> Option<&'a str>
where
    N: ?Sized,
    HeaderName: PartialEq<N>,
{
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .find_map(|(_, v)| v.to_str().ok())
}

/// The `content-length` of a header list, if it has a valid one: digits only (RFC 9110 §8.6),
/// not a sign, a list or spaces, and within `u64`.
pub(crate) fn content_length(headers: &[(HeaderName, HeaderValue)]) -> Option<u64> {
    first(headers, &http::header::CONTENT_LENGTH)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
}

/// Every text value of the field `name`, in order.
pub(crate) fn all<'a, N>(
    headers: &'a [(HeaderName, HeaderValue)],
    name: &'a N,
) -> impl Iterator<Item = &'a str> + 'a
where
    N: ?Sized,
    HeaderName: PartialEq<N>,
{
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .filter_map(|(_, v)| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    fn list() -> Vec<(HeaderName, HeaderValue)> {
        vec![
            (
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=1"),
            ),
            (
                http::header::VARY,
                HeaderValue::from_bytes(b"\xff").unwrap(),
            ),
            (
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("public"),
            ),
            (
                http::header::VARY,
                HeaderValue::from_static("accept-encoding"),
            ),
        ]
    }

    #[test]
    fn values_are_found_by_name_in_order_and_text_only() {
        let h = list();
        assert_eq!(super::first(&h, "cache-control"), Some("max-age=1"));
        assert_eq!(super::first(&h, "Cache-Control"), Some("max-age=1"));
        assert_eq!(
            super::all(&h, "cache-control").collect::<Vec<_>>(),
            ["max-age=1", "public"]
        );
        // A value that is not text is passed over, not taken for the field's absence.
        assert_eq!(super::first(&h, "vary"), Some("accept-encoding"));
        assert_eq!(super::first(&h, "etag"), None);
        assert_eq!(
            super::all(&h, &http::header::CACHE_CONTROL).collect::<Vec<_>>(),
            ["max-age=1", "public"]
        );
    }

    #[test]
    fn a_content_length_is_its_first_valid_number() {
        let with =
            |v: &'static str| vec![(http::header::CONTENT_LENGTH, HeaderValue::from_static(v))];
        assert_eq!(super::content_length(&with("15456")), Some(15456));
        assert_eq!(super::content_length(&with("-1")), None);
        assert_eq!(super::content_length(&with("+12")), None);
        assert_eq!(super::content_length(&with("")), None);
        assert_eq!(
            super::content_length(&with("99999999999999999999999")),
            None
        );
        assert_eq!(super::content_length(&with("12, 12")), None);
        assert_eq!(super::content_length(&list()), None);
    }
}
