//! The response cache: moka, bounded in bytes, per-entry TTL, one origin fetch per key at a time.
//!
//! Concurrent misses on one key are coalesced by moka's `try_get_with`: the first caller runs
//! the fetch, the others wait for its result. A response that may not be cached is handed to
//! every waiter of that fetch as the "error" side of `try_get_with`, so it is shared but never
//! stored.
//!
//! Not yet: waiters receive the body when the fetch completes, not byte by byte as it arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;

use crate::metrics::Metrics;
use crate::upstream::{Fetched, UpstreamError};

/// A cached (or shared) response.
#[derive(Debug)]
pub struct Entry {
    /// The response.
    pub response: Fetched,
    /// How long it stays fresh.
    pub ttl: Duration,
}

/// How a lookup was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From a fresh entry.
    Hit,
    /// This request fetched from the origin.
    Fetched,
    /// This request waited on another request's fetch.
    Coalesced,
}

/// Default TTLs by kind of resource, used when the origin gives none.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    /// MPDs (short: a live MPD changes).
    pub mpd: Duration,
    /// Segments and everything else.
    pub segment: Duration,
}

/// Why a fetch did not produce a cacheable entry; shared by every waiter.
#[derive(Debug)]
pub enum Miss {
    /// The origin failed.
    Upstream(UpstreamError),
    /// A response that must not be stored (status, `no-store`, …); served to the waiters.
    Uncacheable(Fetched),
}

/// The cache.
#[derive(Clone)]
pub struct Cache {
    inner: Moka<String, Arc<Entry>>,
    ttls: Ttls,
    metrics: Metrics,
}

struct PerEntryTtl;

impl Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Cache {
    /// A cache of at most `max_bytes` (keys, headers and bodies weighed).
    pub fn new(max_bytes: u64, ttls: Ttls, metrics: Metrics) -> Self {
        let evictions = metrics.cache_evictions.clone();
        let inner = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Entry>| {
                let headers: usize = v
                    .response
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len())
                    .sum();
                u32::try_from(k.len() + headers + v.response.body.len() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self {
            inner,
            ttls,
            metrics,
        }
    }

    /// The entry for `key`, fetching it with `fetch` on a miss (once for all concurrent callers).
    pub async fn get_or_fetch<F>(
        &self,
        key: &str,
        fetch: F,
    ) -> (Result<Arc<Entry>, Arc<Miss>>, Lookup)
    where
        F: std::future::Future<Output = Result<Fetched, UpstreamError>>,
    {
        if let Some(e) = self.inner.get(key).await {
            self.metrics.cache_hits.inc();
            self.metrics
                .cache_hit_bytes
                .inc_by(e.response.body.len() as u64);
            return (Ok(e), Lookup::Hit);
        }
        self.metrics.cache_misses.inc();
        let ran = AtomicBool::new(false);
        let ttls = self.ttls;
        let result = self
            .inner
            .try_get_with(key.to_owned(), async {
                ran.store(true, Ordering::Relaxed);
                let fetched = fetch.await.map_err(Miss::Upstream)?;
                match ttl_of(&fetched, key, ttls) {
                    Some(ttl) => Ok(Arc::new(Entry {
                        response: fetched,
                        ttl,
                    })),
                    None => Err(Miss::Uncacheable(fetched)),
                }
            })
            .await;
        let lookup = if ran.load(Ordering::Relaxed) {
            Lookup::Fetched
        } else {
            self.metrics.coalesced_waits.inc();
            Lookup::Coalesced
        };
        self.metrics
            .cache_size_bytes
            .set(i64::try_from(self.inner.weighted_size()).unwrap_or(i64::MAX));
        (result, lookup)
    }
}

/// Freshness lifetime of a response (RFC 9111 §4.2.1, shared-cache view), or `None` if it must
/// not be stored: only 200s; `no-store`, `no-cache` and `private` are not stored; `s-maxage`
/// over `max-age` over `Expires`; otherwise the default for the kind of resource.
pub fn ttl_of(f: &Fetched, key: &str, ttls: Ttls) -> Option<Duration> {
    if f.status != 200 {
        return None;
    }
    fn header<'a>(f: &'a Fetched, name: &'static str) -> impl Iterator<Item = &'a str> {
        f.headers
            .iter()
            .filter(move |(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| v.to_str().ok())
    }
    let mut max_age = None;
    let mut s_maxage = None;
    for directive in header(f, "cache-control").flat_map(|v| v.split(',')) {
        let d = directive.trim().to_ascii_lowercase();
        match d.split_once('=') {
            None if matches!(d.as_str(), "no-store" | "no-cache" | "private") => return None,
            Some(("max-age", v)) => max_age = v.trim_matches('"').parse::<u64>().ok(),
            Some(("s-maxage", v)) => s_maxage = v.trim_matches('"').parse::<u64>().ok(),
            _ => {}
        }
    }
    if let Some(secs) = s_maxage.or(max_age) {
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    if let Some(expires) = header(f, "expires").next() {
        let at = httpdate::parse_http_date(expires).ok()?;
        return at
            .duration_since(SystemTime::now())
            .ok()
            .filter(|d| !d.is_zero());
    }
    let path = key.split('?').next().unwrap_or(key);
    Some(if path.ends_with(".mpd") {
        ttls.mpd
    } else {
        ttls.segment
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderName, HeaderValue};

    fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    }

    fn fetched(status: u16, headers: Vec<(HeaderName, HeaderValue)>) -> Fetched {
        Fetched {
            status,
            headers,
            body: Bytes::new(),
        }
    }

    const TTLS: Ttls = Ttls {
        mpd: Duration::from_secs(2),
        segment: Duration::from_secs(3600),
    };

    #[test]
    fn freshness_rules() {
        assert_eq!(
            ttl_of(&fetched(200, vec![]), "/a/m.mpd", TTLS),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            ttl_of(&fetched(200, vec![]), "/a/s.m4s?x", TTLS),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(ttl_of(&fetched(404, vec![]), "/a", TTLS), None);
        let cc = |v| fetched(200, vec![header("cache-control", v)]);
        assert_eq!(
            ttl_of(&cc("public, max-age=10"), "/a", TTLS),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            ttl_of(&cc("max-age=10, s-maxage=20"), "/a", TTLS),
            Some(Duration::from_secs(20))
        );
        assert_eq!(ttl_of(&cc("no-store"), "/a", TTLS), None);
        assert_eq!(ttl_of(&cc("private, max-age=10"), "/a", TTLS), None);
        assert_eq!(ttl_of(&cc("max-age=0"), "/a", TTLS), None);
        let past = fetched(
            200,
            vec![header("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
        );
        assert_eq!(ttl_of(&past, "/a", TTLS), None);
    }
}
