//! Where a pushed or prefetched body comes from: a cache entry or a fill in progress.

use std::sync::Arc;
use std::time::Duration;

use super::Entry;
use super::fill::Fill;

/// Where a pushed or prefetched body comes from.
#[derive(Clone)]
pub(crate) enum Source {
    /// A fresh cache entry.
    Entry(Arc<Entry>),
    /// A fill in progress (or just finished).
    Fill(Arc<Fill>),
}

impl Source {
    /// The status the origin answered, or the status an origin failure maps to (502, 504).
    pub(crate) async fn status(&self) -> u16 {
        match self {
            Self::Entry(e) => e.response.status,
            Self::Fill(f) => match f.head().await {
                Ok(h) => h.status,
                Err(e) => e.status(),
            },
        }
    }

    /// The status, if known without waiting.
    pub(crate) fn status_now(&self) -> Option<u16> {
        match self {
            Self::Entry(e) => Some(e.response.status),
            Self::Fill(f) => f.with_head(|h| h.status),
        }
    }

    /// How long the response may be used fresh by anyone ([`super::ttl_of`] of its head for
    /// `key`: what every push needs, spec §6.2 rule 5), `None` if never. Worked out once per
    /// stored response (when stored) or fill (when first asked), not per push. Ask once the
    /// head is there ([`Self::status_now`] is `Some`): for a fill without it, `None` too.
    pub(crate) fn shared_ttl(&self, key: &str, ttls: super::Ttls) -> Option<Duration> {
        match self {
            // Stored with the freshness `ttl_of` reads.
            Self::Entry(e) => Some(e.freshness.ttl).filter(|t| !t.is_zero()),
            Self::Fill(f) => f
                .shared_ttl(|h| super::ttl_of(h.status, &h.headers, key, ttls))
                .flatten(),
        }
    }

    /// The length, if known without waiting.
    pub(crate) fn length_now(&self) -> Option<u64> {
        match self {
            Self::Entry(e) => Some(e.response.body.len() as u64),
            Self::Fill(f) => f.length(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::{HeaderName, HeaderValue};

    use super::super::fill::{Fill, Head};
    use super::super::{Entry, Ttls, freshness, ttl_of};
    use super::Source;
    use crate::origin::response::Fetched;

    const TTLS: Ttls = Ttls {
        mpd: Duration::from_secs(2),
        segment: Duration::from_secs(3600),
        stale_if_error: Duration::from_secs(60),
    };

    fn cc(value: &'static str) -> Vec<(HeaderName, HeaderValue)> {
        vec![(http::header::CACHE_CONTROL, HeaderValue::from_static(value))]
    }

    fn fill_with(headers: Vec<(HeaderName, HeaderValue)>) -> Arc<Fill> {
        let fill = Fill::new();
        fill.set_head(Head {
            status: 200,
            headers,
        });
        fill
    }

    #[test]
    fn a_fill_s_shared_lifetime_is_ttl_of_its_head_worked_out_once() {
        let key = "/live/s-1.m4s";
        for value in [
            "max-age=10",
            "no-store",
            "private, max-age=5",
            "no-cache",
            "s-maxage=7",
        ] {
            let fill = fill_with(cc(value));
            let want = ttl_of(200, &cc(value), key, TTLS);
            assert_eq!(
                Source::Fill(Arc::clone(&fill)).shared_ttl(key, TTLS),
                want,
                "{value}"
            );
            // Once worked out, it is not worked out again (another key would give another
            // default, but a fill is one resource).
            assert_eq!(
                fill.shared_ttl(|_| Some(Duration::from_secs(99))),
                Some(want),
                "{value}"
            );
        }
        assert_eq!(
            Source::Fill(fill_with(Vec::new())).shared_ttl(key, TTLS),
            Some(TTLS.segment),
            "the default for a segment"
        );
    }

    #[test]
    fn a_fill_without_its_head_has_no_shared_lifetime_yet() {
        let fill = Fill::new();
        assert_eq!(
            Source::Fill(Arc::clone(&fill)).shared_ttl("/a.m4s", TTLS),
            None
        );
        assert_eq!(fill.shared_ttl(|_| Some(Duration::from_secs(1))), None);
        // Nothing was kept: the head, once come, decides.
        fill.set_head(Head {
            status: 200,
            headers: cc("max-age=30"),
        });
        assert_eq!(
            Source::Fill(fill).shared_ttl("/a.m4s", TTLS),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_stored_response_s_shared_lifetime_is_the_one_it_was_stored_with() {
        let key = "/vod/m.mpd";
        for value in ["max-age=10", "no-cache", "max-age=0"] {
            let mut headers = cc(value);
            headers.push((http::header::ETAG, HeaderValue::from_static("\"v1\"")));
            let Some(fresh) = freshness(200, &headers, key, TTLS) else {
                panic!("{value} is stored");
            };
            let entry = Entry::new(
                Fetched {
                    status: 200,
                    headers: headers.clone(),
                    body: bytes::Bytes::from_static(b"x"),
                },
                fresh,
                false,
            );
            assert_eq!(
                Source::Entry(Arc::new(entry)).shared_ttl(key, TTLS),
                ttl_of(200, &headers, key, TTLS),
                "{value}"
            );
        }
    }
}
