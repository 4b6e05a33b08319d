//! The response cache: moka, bounded in bytes, per-entry TTL, one origin fetch per key at a time.
//!
//! A miss joins the [`Fill`] already running for its key or starts one; every request on that
//! key then reads the same fill as its bytes arrive (see [`fill`]). When the fill ends,
//! a cacheable response is stored in moka *before* the fill is forgotten, so no request falls
//! in a gap between the two and starts a second origin fetch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use http::header::{CACHE_CONTROL, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderName, HeaderValue};
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;

pub mod fill;
pub(crate) mod source;

use crate::metrics::Metrics;
use crate::origin::response::Fetched;
use fill::Fill;

/// A cached (or shared) response.
#[derive(Debug)]
pub struct Entry {
    /// The response.
    pub response: Fetched,
    /// How long it stays fresh, and may be served stale (RFC 9111 §4.2, RFC 5861).
    pub freshness: Freshness,
    /// When it was stored (or last revalidated).
    stored: Instant,
    /// Its age when stored (the origin's `Age`, RFC 9111 §4.2.3), seconds.
    age_at_store: u64,
    /// Stored by a prefetch and not used yet.
    unused_prefetch: AtomicBool,
}

/// How a stored entry may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Fresh: served as is.
    Fresh,
    /// Stale, within `stale-while-revalidate`: served, and refreshed in the background.
    StaleWhileRevalidate,
    /// Stale: revalidated (or fetched) before use; served stale only if the origin fails
    /// within `stale-if-error`.
    Stale,
}

impl Entry {
    /// Its age now, seconds (the `Age` header of an answer from the cache).
    pub fn age(&self) -> u64 {
        self.age_at_store + self.stored.elapsed().as_secs()
    }

    /// How it may be used now.
    pub fn state(&self) -> State {
        let lived = self
            .stored
            .elapsed()
            .saturating_add(Duration::from_secs(self.age_at_store));
        if lived < self.freshness.ttl {
            State::Fresh
        } else if lived < self.freshness.ttl.saturating_add(self.freshness.swr) {
            State::StaleWhileRevalidate
        } else {
            State::Stale
        }
    }

    /// Whether a failed origin may be answered with it now (`stale-if-error`).
    pub fn may_serve_on_error(&self) -> bool {
        let lived = self
            .stored
            .elapsed()
            .saturating_add(Duration::from_secs(self.age_at_store));
        lived
            < self
                .freshness
                .ttl
                .saturating_add(self.freshness.swr.max(self.freshness.sie))
    }

    /// Its validators, as conditional request headers (`If-None-Match`, `If-Modified-Since`).
    pub fn validators(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut v = Vec::new();
        for (n, cond) in [
            ("etag", http::header::IF_NONE_MATCH),
            ("last-modified", http::header::IF_MODIFIED_SINCE),
        ] {
            if let Some((_, value)) = self.response.headers.iter().find(|(h, _)| h == n) {
                v.push((cond, value.clone()));
            }
        }
        v
    }
}

impl Entry {
    /// A new entry, stored now.
    pub(crate) fn new(response: Fetched, freshness: Freshness, prefetched: bool) -> Self {
        let age_at_store = crate::fields::first(&response.headers, "age")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(MAX_DELTA_SECONDS);
        Self {
            response,
            freshness,
            stored: Instant::now(),
            age_at_store,
            unused_prefetch: AtomicBool::new(prefetched),
        }
    }

    /// True once, if a prefetch stored this entry and nobody used it yet.
    pub(crate) fn unused_prefetch_take(&self) -> bool {
        self.unused_prefetch.swap(false, Ordering::Relaxed)
    }
}

/// Who looks an entry up (for the prefetch outcome metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// A client request.
    Client,
    /// A push.
    Push,
    /// The prefetcher itself.
    Prefetch,
    /// Another replica of the fleet, filling from this one (its owner).
    Peer,
}

impl User {
    fn label(self) -> Option<&'static str> {
        match self {
            Self::Client => Some("used_by_client"),
            Self::Push => Some("used_by_push"),
            Self::Prefetch | Self::Peer => None,
        }
    }
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

/// The largest delta-seconds value honoured (RFC 9111 §1.2.2).
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// What a purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Cached entries removed.
    pub entries: usize,
    /// Fills in flight that will not be stored.
    pub fills: usize,
}

/// The path (and query) of a cache key: what follows its origin (`scheme://host[:port]`).
fn path_of(key: &str) -> &str {
    let after_scheme = key.find("://").map_or(0, |i| i + 3);
    key[after_scheme..]
        .find('/')
        .map_or("", |i| &key[after_scheme + i..])
}

/// Default TTLs by kind of resource, used when the origin gives none.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    /// MPDs (short: a live MPD changes).
    pub mpd: Duration,
    /// Segments and everything else.
    pub segment: Duration,
    /// How long past its freshness an entry may answer when the origin fails, unless the
    /// origin says (`stale-if-error`).
    pub stale_if_error: Duration,
}

/// The cache.
#[derive(Clone)]
pub struct Cache {
    inner: Moka<String, Arc<Entry>>,
    filling: Arc<Mutex<HashMap<String, Arc<Fill>>>>,
    ttls: Arc<RwLock<Ttls>>,
    metrics: Metrics,
}

struct PerEntryTtl;

impl Expiry<String, Arc<Entry>> for PerEntryTtl {
    /// Kept while it may still be served: fresh, stale-while-revalidate or stale-if-error
    /// (and, with a validator, revalidated instead of fetched again).
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.freshness.keep())
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.freshness.keep())
    }
}

impl Cache {
    /// A cache of at most `max_bytes` (keys, headers and bodies weighed).
    pub fn new(max_bytes: u64, ttls: Ttls, metrics: Metrics) -> Self {
        let evictions = metrics.cache_evictions.clone();
        let prefetches = metrics.push.prefetches.clone();
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
            .eviction_listener(move |_k, v: Arc<Entry>, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
                if cause != RemovalCause::Replaced
                    && v.unused_prefetch.swap(false, Ordering::Relaxed)
                {
                    prefetches.with_label_values(&["evicted_unused"]).inc();
                }
            })
            .build();
        Self {
            inner,
            filling: Arc::default(),
            ttls: Arc::new(RwLock::new(ttls)),
            metrics,
        }
    }

    /// The fresh entry for `key`, counting a hit.
    pub async fn get(&self, key: &str, by: User) -> Option<Arc<Entry>> {
        let e = self.inner.get(key).await?;
        if e.state() != State::Fresh {
            return None;
        }
        self.hit(e, by)
    }

    /// The stored entry for `key` and how it may be used now; a use is counted as a hit
    /// unless it must be revalidated first.
    pub async fn find(&self, key: &str, by: User) -> Option<(Arc<Entry>, State)> {
        let e = self.inner.get(key).await?;
        let state = e.state();
        if state == State::Stale {
            return Some((e, state));
        }
        self.hit(e, by).map(|e| (e, state))
    }

    fn hit(&self, e: Arc<Entry>, by: User) -> Option<Arc<Entry>> {
        if by == User::Prefetch {
            return Some(e);
        }
        self.metrics.cache_hits.inc();
        self.metrics
            .cache_hit_bytes
            .inc_by(e.response.body.len() as u64);
        if let Some(label) = by.label()
            && e.unused_prefetch.swap(false, Ordering::Relaxed)
        {
            self.metrics
                .push
                .prefetches
                .with_label_values(&[label])
                .inc();
        }
        Some(e)
    }

    /// Counts a use of a fill the prefetcher started (once per fill).
    pub fn claim(&self, fill: &Fill, by: User) {
        if let Some(label) = by.label()
            && fill.prefetched.load(Ordering::Relaxed)
            && !fill.claimed.swap(true, Ordering::Relaxed)
        {
            self.metrics
                .push
                .prefetches
                .with_label_values(&[label])
                .inc();
        }
    }

    /// Joins the fill running for `key`, or creates one and hands it to `start` (which must
    /// spawn the origin fetch and then call [`Cache::finish`]). `None` when an entry was
    /// stored meanwhile: look it up again.
    /// Hit, miss and coalesced counts are of requests (clients and pushes); the prefetcher's
    /// own lookups are counted under `dashpush_prefetch_total`.
    /// With `revalidating`, a stored entry (stale, or in `stale-while-revalidate`) does not
    /// stop the fill from starting.
    pub fn join_or_start(
        &self,
        key: &str,
        by: User,
        revalidating: bool,
        start: impl FnOnce(Arc<Fill>),
    ) -> Option<(Arc<Fill>, Lookup)> {
        let mut filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = filling.get(key) {
            if f.with_head(|h| per_user(&h.headers)) != Some(true) {
                if by != User::Prefetch {
                    self.metrics.coalesced_waits.inc();
                }
                return Some((Arc::clone(f), Lookup::Coalesced));
            }
            // The answer in flight is for its requester alone: this request gets its own
            // fetch, shared with nobody (and not registered, so nobody joins it).
            drop(filling);
            if by != User::Prefetch {
                self.metrics.cache_misses.inc();
            }
            let fill = Fill::new();
            start(Arc::clone(&fill));
            return Some((fill, Lookup::Fetched));
        }
        if !revalidating && self.inner.contains_key(key) {
            return None;
        }
        if by != User::Prefetch {
            self.metrics.cache_misses.inc();
        }
        let fill = Fill::new();
        filling.insert(key.to_owned(), Arc::clone(&fill));
        drop(filling);
        start(Arc::clone(&fill));
        Some((fill, Lookup::Fetched))
    }

    /// Ends the fill of `key`: stores its response if it may be cached (and was not purged
    /// meanwhile), then forgets the fill.
    /// Returns whether it was stored.
    pub async fn finish(&self, key: &str, fill: &Arc<Fill>) -> bool {
        let mut stored = false;
        if let Ok(response) = fill.complete().await
            && !fill.purged.load(Ordering::Acquire)
            && fill.served_as() != fill::Served::StaleOnError
            && let Some(freshness) = freshness(response.status, &response.headers, key, self.ttls())
        {
            let unused =
                fill.prefetched.load(Ordering::Relaxed) && !fill.claimed.load(Ordering::Relaxed);
            self.inner
                .insert(
                    key.to_owned(),
                    Arc::new(Entry::new(response, freshness, unused)),
                )
                .await;
            // A purge that came while it was being stored wins.
            if fill.purged.load(Ordering::Acquire) {
                self.inner.invalidate(key).await;
            } else {
                stored = true;
            }
            self.update_size();
        }
        self.forget(key, fill);
        stored
    }

    /// Forgets `fill` as the fill of `key` (not a newer one that replaced it after a purge).
    pub fn forget(&self, key: &str, fill: &Arc<Fill>) {
        let mut filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
        if filling.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            filling.remove(key);
        }
    }

    /// Brings `dashpush_cache_size_bytes` up to date: moka counts inserts and evictions in
    /// its housekeeping, so a scrape settles that first (the size read right after an insert
    /// does not include it yet).
    pub async fn refresh_size(&self) {
        self.inner.run_pending_tasks().await;
        self.update_size();
    }

    fn update_size(&self) {
        self.metrics
            .cache_size_bytes
            .set(i64::try_from(self.inner.weighted_size()).unwrap_or(i64::MAX));
    }

    /// Removes every entry whose path (its key after the origin: path and query) `matches`,
    /// whatever its origin, and keeps fills in flight for such keys from being stored (their
    /// readers still get them; new requests fetch afresh). Returns how many entries and fills.
    pub async fn purge(&self, matches: impl Fn(&str) -> bool) -> Purged {
        let keys: Vec<Arc<String>> = self
            .inner
            .iter()
            .filter(|(k, _)| matches(path_of(k)))
            .map(|(k, _)| k)
            .collect();
        for k in &keys {
            self.inner.invalidate(k.as_str()).await;
        }
        let fills = {
            let mut filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
            let doomed: Vec<String> = filling
                .keys()
                .filter(|k| matches(path_of(k)))
                .cloned()
                .collect();
            for k in &doomed {
                if let Some(f) = filling.remove(k) {
                    f.purged.store(true, Ordering::Release);
                }
            }
            doomed.len()
        };
        self.inner.run_pending_tasks().await;
        self.update_size();
        self.metrics.cache_purged.inc_by(keys.len() as u64);
        Purged {
            entries: keys.len(),
            fills,
        }
    }

    /// The default TTLs.
    pub fn ttls(&self) -> Ttls {
        *self.ttls.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the default TTLs (config reload); stored entries keep theirs.
    pub fn set_ttls(&self, ttls: Ttls) {
        *self.ttls.write().unwrap_or_else(PoisonError::into_inner) = ttls;
    }

    /// Fills in progress.
    pub fn filling(&self) -> usize {
        self.filling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// How long a stored response is fresh and may be served stale (RFC 9111 §4.2, RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime (0: revalidate before every use, `no-cache`).
    pub ttl: Duration,
    /// `stale-while-revalidate`: served stale while refreshed in the background.
    pub swr: Duration,
    /// `stale-if-error`: served stale when the origin fails.
    pub sie: Duration,
    /// It has a validator (`ETag`, `Last-Modified`): a stale copy is revalidated, not fetched.
    pub validated: bool,
}

impl Freshness {
    /// How long the cache keeps it: while it may be served, and with a validator as long
    /// again for a cheap revalidation (at least a minute).
    fn keep(&self) -> Duration {
        let serve = self.ttl.saturating_add(self.swr.max(self.sie));
        if self.validated {
            serve
                .max(self.ttl.saturating_mul(2))
                .max(self.ttl.saturating_add(Duration::from_secs(60)))
        } else {
            serve
        }
    }
}

/// Freshness of a response (RFC 9111 §4.2.1, shared-cache view), or `None` if it must not be
/// stored: only 200s; `no-store`, `private`, a cookie or a `Vary` on anything but the encoding
/// are not stored; `no-cache` is stored only with a validator, and revalidated before every
/// use; `s-maxage` over `max-age` over `Expires`, otherwise the default for the kind of
/// resource; `stale-while-revalidate` and `stale-if-error` from `Cache-Control` (RFC 5861),
/// the latter defaulting to `ttls.stale_if_error`.
pub fn freshness(
    status: u16,
    headers: &[(HeaderName, HeaderValue)],
    key: &str,
    ttls: Ttls,
) -> Option<Freshness> {
    // Names compared as names and directives without case-folded copies: this runs for every
    // fill and store, and for every request that may share a fill.
    if status != 200 || per_user(headers) {
        return None;
    }
    let validated = crate::fields::all(headers, &ETAG).next().is_some()
        || crate::fields::all(headers, &LAST_MODIFIED).next().is_some();
    // Delta-seconds beyond 2^31 mean 2^31 (RFC 9111 §1.2.2).
    let secs = |v: &str| {
        v.trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(|n| Duration::from_secs(n.min(MAX_DELTA_SECONDS)))
    };
    let (mut max_age, mut s_maxage, mut no_cache, mut revalidate) = (None, None, false, false);
    let (mut swr, mut sie) = (Duration::ZERO, ttls.stale_if_error);
    for directive in crate::fields::all(headers, &CACHE_CONTROL).flat_map(|v| v.split(',')) {
        let d = directive.trim();
        match d.split_once('=') {
            None if d.eq_ignore_ascii_case("no-store") => return None,
            None if d.eq_ignore_ascii_case("no-cache") => no_cache = true,
            None if d.eq_ignore_ascii_case("must-revalidate")
                || d.eq_ignore_ascii_case("proxy-revalidate") =>
            {
                revalidate = true;
            }
            Some((k, v)) if k.eq_ignore_ascii_case("max-age") => max_age = secs(v),
            Some((k, v)) if k.eq_ignore_ascii_case("s-maxage") => s_maxage = secs(v),
            Some((k, v)) if k.eq_ignore_ascii_case("stale-while-revalidate") => {
                swr = secs(v).unwrap_or(swr);
            }
            Some((k, v)) if k.eq_ignore_ascii_case("stale-if-error") => {
                sie = secs(v).unwrap_or(sie);
            }
            _ => {}
        }
    }
    // `must-revalidate`/`proxy-revalidate` (and `s-maxage`, which implies the latter, and
    // `no-cache`, revalidated before every use): never served stale.
    if no_cache || s_maxage.is_some() || revalidate {
        swr = Duration::ZERO;
        sie = Duration::ZERO;
    }
    let ttl = if no_cache {
        if !validated {
            return None;
        }
        Duration::ZERO
    } else if let Some(t) = s_maxage.or(max_age) {
        t
    } else if let Some(expires) = crate::fields::all(headers, &EXPIRES).next() {
        let at = httpdate::parse_http_date(expires).ok()?;
        at.duration_since(SystemTime::now()).unwrap_or_default()
    } else {
        let path = key.split('?').next().unwrap_or(key);
        if path.ends_with(".mpd") {
            ttls.mpd
        } else {
            ttls.segment
        }
    };
    if ttl.is_zero() && !validated && swr.is_zero() && sie.is_zero() {
        return None;
    }
    Some(Freshness {
        ttl,
        swr,
        sie,
        validated,
    })
}

/// True for an answer meant for one user only, which is neither stored nor shared with other
/// requests waiting on the same fetch (RFC 9111 §3.5, §5.2.2.7): `Set-Cookie`, `private`
/// (also `private="…"`) and `no-cache="…"` naming fields, a `Vary` on anything but the
/// encoding (the gateway does not forward it, so it always gets the identity encoding).
pub fn per_user(headers: &[(HeaderName, HeaderValue)]) -> bool {
    // Case-insensitive prefix, without a lower-cased copy.
    let starts = |d: &str, prefix: &str| {
        d.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    crate::fields::all(headers, &SET_COOKIE).next().is_some()
        || crate::fields::all(headers, &VARY)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|v| !v.is_empty() && !v.eq_ignore_ascii_case("accept-encoding"))
        || crate::fields::all(headers, &CACHE_CONTROL)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|d| {
                d.eq_ignore_ascii_case("private") || starts(d, "private=") || starts(d, "no-cache=")
            })
}

/// Freshness lifetime of a response that may be shared and used without revalidation (what a
/// push needs, spec §6.2 rule 5), or `None`.
pub fn ttl_of(
    status: u16,
    headers: &[(HeaderName, HeaderValue)],
    key: &str,
    ttls: Ttls,
) -> Option<Duration> {
    freshness(status, headers, key, ttls)
        .map(|f| f.ttl)
        .filter(|t| !t.is_zero())
}

#[cfg(test)]
mod tests {
    use super::{Duration, Ttls};
    use http::{HeaderName, HeaderValue};

    fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
        (
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    }

    struct Fetched {
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
    }

    fn fetched(status: u16, headers: Vec<(HeaderName, HeaderValue)>) -> Fetched {
        Fetched { status, headers }
    }

    fn ttl_of(f: &Fetched, key: &str, ttls: Ttls) -> Option<Duration> {
        super::ttl_of(f.status, &f.headers, key, ttls)
    }

    const TTLS: Ttls = Ttls {
        mpd: Duration::from_secs(2),
        segment: Duration::from_secs(3600),
        stale_if_error: Duration::from_secs(60),
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
        assert_eq!(
            ttl_of(&cc(r#"no-cache="Set-Cookie", max-age=60"#), "/a", TTLS),
            None
        );
        assert_eq!(ttl_of(&cc(r#"private="x", max-age=60"#), "/a", TTLS), None);
        let with = |n, v| {
            fetched(
                200,
                vec![header("cache-control", "max-age=60"), header(n, v)],
            )
        };
        assert_eq!(ttl_of(&with("set-cookie", "a=b"), "/a", TTLS), None);
        assert_eq!(ttl_of(&with("vary", "User-Agent"), "/a", TTLS), None);
        assert_eq!(
            ttl_of(&with("vary", "Accept-Encoding"), "/a", TTLS),
            Some(Duration::from_secs(60))
        );
        let past = fetched(
            200,
            vec![header("expires", "Thu, 01 Jan 1970 00:00:00 GMT")],
        );
        assert_eq!(ttl_of(&past, "/a", TTLS), None);
    }

    #[test]
    fn stale_serving_and_revalidation_rules() {
        let f = |cc: &'static str, etag: bool| {
            let mut h = vec![header("cache-control", cc)];
            if etag {
                h.push(header("etag", "\"v1\""));
            }
            super::freshness(200, &h, "/a", TTLS)
        };
        let s = Duration::from_secs;
        let d = f(
            "max-age=10, stale-while-revalidate=30, stale-if-error=300",
            false,
        )
        .unwrap();
        assert_eq!(
            (d.ttl, d.swr, d.sie, d.validated),
            (s(10), s(30), s(300), false)
        );
        assert_eq!(d.keep(), s(310));
        // The default stale-if-error when the origin says nothing.
        assert_eq!(f("max-age=10", false).unwrap().sie, s(60));
        // must-revalidate: never stale.
        let d = f(
            "max-age=10, stale-while-revalidate=30, must-revalidate",
            false,
        )
        .unwrap();
        assert_eq!((d.swr, d.sie), (s(0), s(0)));
        // no-cache: stored with a validator (revalidated before every use), not without.
        let d = f("no-cache", true).unwrap();
        assert_eq!((d.ttl, d.validated), (s(0), true));
        assert_eq!(d.keep(), s(60));
        assert_eq!(
            f("no-cache, must-revalidate", false),
            None,
            "nothing to revalidate with"
        );
        assert_eq!(
            ttl_of(
                &fetched(
                    200,
                    vec![header("cache-control", "no-cache"), header("etag", "\"x\"")]
                ),
                "/a",
                TTLS
            ),
            None,
            "not pushable"
        );
        // no-cache and s-maxage: never served stale.
        let d = f(
            "no-cache, stale-while-revalidate=30, stale-if-error=60",
            true,
        )
        .unwrap();
        assert_eq!((d.swr, d.sie), (s(0), s(0)));
        let d = f("s-maxage=10, stale-if-error=60", false).unwrap();
        assert_eq!(d.sie, s(0));
        // Numbers an origin can make huge neither overflow nor panic.
        let huge = f(
            "max-age=18446744073709551615, stale-while-revalidate=18446744073709551615",
            true,
        )
        .unwrap();
        let _ = huge.keep();
        let old = super::Entry::new(
            crate::origin::response::Fetched {
                status: 200,
                headers: vec![
                    header("cache-control", "max-age=60"),
                    header("age", "18446744073709551615"),
                ],
                body: bytes::Bytes::new(),
            },
            huge,
            false,
        );
        assert_ne!(
            old.state(),
            super::State::Fresh,
            "an Age of 2^31 s is past any max-age"
        );
        assert!(old.age() >= 1 << 31);
    }
}
