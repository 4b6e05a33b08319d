//! Prefetching: fetching into the cache what a client will ask for next, through the same
//! coalescing fills as client requests, within a gateway-wide cap.
//!
//! Two users: the push cycle prefetches every URL it plans as soon as the plan is made (so the
//! origin fetches overlap the parent's), and the pull rule prefetches the segments after one a
//! client pulled without a directive ([`Gateway::prefetch_following`]). Live pushes are
//! prefetched at their segment's availability and retried on a grid shared by every client
//! until the end of the segment's availability slot ([`Gateway::prefetch_for`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashpush_plan::Push;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use tokio::task::JoinHandle;

use crate::cache::User;
use crate::gateway::{Body, Gateway, cache_key};
use crate::live_asks::{AbortOnDrop, LiveAsk, LiveKey};
use crate::origin::routing::Origins;
use crate::slots::PrefetchPermit;
use crate::target::{Target, path_of};

use crate::cache::fill::Head;
pub(crate) use crate::cache::source::Source;

/// The prefetch of one planned push. Dropping it (the push's request ended, or its client went
/// away) stops the prefetch if it has not reached the origin yet (a fill already started goes
/// on for everyone else; a live segment's asks go on while another push shares them).
pub(crate) struct Prefetch(Fetching);

enum Fetching {
    /// A static resource: its own task.
    Task(JoinHandle<Option<Source>>),
    /// A live segment: the asks every push of it shares ([`LiveAsks`]).
    Live(LiveAsk),
}

impl Prefetch {
    /// Stops the prefetch if it has not reached the origin yet (a shared live ask stops when its
    /// last push lets go of it).
    pub(crate) fn abort(&self) {
        if let Fetching::Task(t) = &self.0 {
            t.abort();
        }
    }

    /// True once the source is known (or the prefetch gave up).
    pub(crate) fn is_finished(&self) -> bool {
        match &self.0 {
            Fetching::Task(t) => t.is_finished(),
            Fetching::Live(ask) => ask.peek().is_some(),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.abort();
    }
}

impl std::future::Future for Prefetch {
    type Output = Option<Source>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        match &mut self.0 {
            Fetching::Task(t) => std::pin::Pin::new(t).poll(cx).map(|r| r.ok().flatten()),
            Fetching::Live(ask) => std::pin::Pin::new(ask).poll(cx),
        }
    }
}

/// A response about to be pushed: the origin's answer as the cache or a fill has it.
pub(crate) struct Pushable {
    /// The origin's status and headers: a fill's own head, shared by every push of it (a
    /// live segment's thousand pushes copy nothing), or a stored entry's with its age.
    pub(crate) head: Arc<Head>,
    /// The body, whole or streaming from the fill.
    pub(crate) body: Body,
    /// Its length when known (a cached body, or the origin's `content-length`).
    pub(crate) length: Option<u64>,
    /// How long it may be used fresh by anyone ([`Source::shared_ttl`]); `None` if never.
    pub(crate) shared_ttl: Option<Duration>,
}

impl Pushable {
    /// The origin's status.
    pub(crate) fn status(&self) -> u16 {
        self.head.status
    }

    /// The origin's headers.
    pub(crate) fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.head.headers
    }

    /// A header's value.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        crate::fields::first(self.headers(), name)
    }
}

impl Source {
    /// The response to push (streamed from a fill in progress), counting the prefetch as used
    /// by a push.
    pub(crate) async fn pushable(self, gw: &Gateway, key: &str) -> Pushable {
        let ttls = gw.cache().ttls();
        match &self {
            Source::Entry(e) => {
                if e.unused_prefetch_take() {
                    gw.metrics()
                        .push
                        .prefetches
                        .with_label_values(&["used_by_push"])
                        .inc();
                }
                // From the cache: its age, as on every answer from the cache (RFC 9111 §5.1).
                let mut headers = e.response.headers.clone();
                headers.retain(|(n, _)| n != "age");
                headers.push((HeaderName::from_static("age"), HeaderValue::from(e.age())));
                Pushable {
                    head: Arc::new(Head {
                        status: e.response.status,
                        headers,
                    }),
                    length: Some(e.response.body.len() as u64),
                    body: Body::Full(e.response.body.clone()),
                    shared_ttl: self.shared_ttl(key, ttls),
                }
            }
            Source::Fill(f) => {
                gw.cache().claim(f, User::Push);
                match f.head().await {
                    Ok(head) => Pushable {
                        head,
                        length: f.length(),
                        body: Body::Stream(f.reader()),
                        // The head is there now.
                        shared_ttl: self.shared_ttl(key, ttls),
                    },
                    Err(e) => Pushable {
                        head: Arc::new(Head {
                            status: e.status(),
                            headers: Vec::new(),
                        }),
                        body: Body::Full(bytes::Bytes::new()),
                        length: Some(0),
                        shared_ttl: None,
                    },
                }
            }
        }
    }
}

/// The outcome of a live push's origin asks (`dashpush_live_segments_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiveOutcome {
    /// The first ask succeeded.
    OnTime,
    /// A later ask succeeded (the origin was late or failed transiently).
    Late,
    /// No ask succeeded before the deadline.
    Missed,
}

impl LiveOutcome {
    /// Every outcome, for pre-registering series.
    pub(crate) const ALL: [Self; 3] = [Self::OnTime, Self::Late, Self::Missed];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::OnTime => "on_time",
            Self::Late => "late",
            Self::Missed => "missed",
        }
    }
}

/// The instants a live segment is asked for: the first at its availability start plus the
/// guard (or at once when it is already available), then on a grid of fixed instants shared by
/// every client of the segment, so concurrent cycles coalesce each ask into one origin request;
/// never after the end of the segment's availability slot.
struct LiveAsks {
    anchor: DateTime<Utc>,
    step: chrono::Duration,
    until: DateTime<Utc>,
}

impl LiveAsks {
    /// The first grid instant (`anchor` + k × `step`, k any integer) strictly after `now`.
    fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.step.num_microseconds().unwrap_or(1).max(1);
        let since = (now - self.anchor).num_microseconds().unwrap_or(i64::MAX);
        let k = since.div_euclid(step).saturating_add(1);
        self.anchor + chrono::Duration::microseconds(k.saturating_mul(step))
    }
}

/// Sleeps until `at` (wall clock), in steps of at most ten minutes.
async fn sleep_until(at: DateTime<Utc>) {
    while let Ok(wait) = (at - Utc::now()).to_std() {
        if wait.is_zero() {
            break;
        }
        tokio::time::sleep(wait.min(Duration::from_secs(600))).await;
    }
}

impl Gateway {
    /// The cached body or the fill of `path` on `route` of `origins`, starting an origin fetch
    /// if needed.
    pub(crate) async fn source_of(
        &self,
        origins: &Origins,
        route: usize,
        path: &str,
        by: User,
    ) -> Option<Source> {
        let upstream = Arc::clone(origins.get(route)?);
        let key = cache_key(origins.origin_key(route)?, path);
        Some(
            match self
                .source(&upstream, &key, path, Vec::new(), None, by)
                .await
            {
                Ok(hit) => Source::Entry(hit.entry),
                Err((fill, _)) => Source::Fill(fill),
            },
        )
    }

    /// Starts fetching `path` into the cache, within the gateway-wide prefetch cap (`permit`:
    /// a slot already held, or `None` to wait for one). The handle resolves to the source once
    /// the body is in (or the entry was already cached); aborting it before the fetch started
    /// drops the prefetch.
    fn prefetch(
        self: &Arc<Self>,
        origins: Arc<Origins>,
        route: usize,
        path: String,
        permit: Option<PrefetchPermit>,
    ) -> JoinHandle<Option<Source>> {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let origin = origins.origin_key(route)?.to_owned();
            let key = cache_key(&origin, &path);
            if let Some(e) = gw.cache().get(&key, User::Prefetch).await {
                return Some(Source::Entry(e));
            }
            let _permit = match permit {
                Some(p) => p,
                None => {
                    gw.prefetch_slots()
                        .acquire(&origin, origins.origin_count())
                        .await?
                }
            };
            let src = gw.source_of(&origins, route, &path, User::Prefetch).await?;
            if let Source::Fill(f) = &src {
                let m = &gw.metrics().push.prefetches;
                if f.prefetched.load(Ordering::Relaxed) {
                    m.with_label_values(&["started"]).inc();
                }
                // Hold the slot until the body is in, so the cap bounds origin fetches.
                if f.complete().await.is_err() {
                    m.with_label_values(&["error"]).inc();
                }
            }
            Some(src)
        })
    }

    /// The prefetch for a planned push. A static one starts at once. A live one (spec §6.2,
    /// §7.3 (ours)) is asked for at its availability start plus the guard, and asked again on
    /// the shared grid while the origin answers 404 (a late packager), 5xx or not at all (a
    /// transient failure), until the end of the segment's availability slot or the configured
    /// number of asks; the handle then resolves to the last answer (not necessarily the whole
    /// body: a live segment streams to the client as it arrives).
    pub(crate) fn prefetch_for(self: &Arc<Self>, target: &Target, push: &Push) -> Prefetch {
        let (origins, route) = (Arc::clone(&target.origins), target.route);
        let Some(until) = push.live_until else {
            return Prefetch(Fetching::Task(self.prefetch(
                origins,
                route,
                path_of(&push.url),
                None,
            )));
        };
        let path = path_of(&push.url);
        let not_before = push.not_before;
        let key = LiveKey {
            origins: Arc::as_ptr(&origins) as usize,
            route,
            path: path.clone(),
            not_before,
            until,
        };
        let gw = Arc::clone(self);
        let ask = self.live_asks().join(key, move || {
            live_asks(gw, origins, route, path, not_before, until)
        });
        Prefetch(Fetching::Live(ask))
    }

    /// After a client pulled a segment without a directive: fetch the next segments of its
    /// Representation into the cache, if its MPD is known. Best effort: when every prefetch
    /// slot is busy a prefetch is skipped (counted `dropped`), never queued.
    pub(crate) fn prefetch_following(self: &Arc<Self>, target: &Target) {
        let k = self.push_settings().prefetch_next;
        let next = {
            use dashpush_plan::Manifests;
            let view = self.manifests().route(&target.origin);
            match view.for_segment(&target.url) {
                Some(m) => dashpush_plan::prefetch_after(&m, &target.url, k, Some(Utc::now())),
                None => return,
            }
        };
        let origins = &target.origins;
        for u in next {
            // Same origin route only (spec §6.2 safety rule 2).
            if !target.same_route(&u) {
                continue;
            }
            match self
                .prefetch_slots()
                .try_acquire(&target.origin, origins.origin_count())
            {
                Some(permit) => drop(self.prefetch(
                    Arc::clone(origins),
                    target.route,
                    path_of(&u),
                    Some(permit),
                )),
                None => self
                    .metrics()
                    .push
                    .prefetches
                    .with_label_values(&["dropped"])
                    .inc(),
            }
        }
    }
}

/// A live segment's asks (see [`Gateway::prefetch_for`]): the first at its availability start
/// plus the guard, again on the shared grid while the origin answers 404, 5xx or not at all.
/// Its outcome is counted once, however many pushes share it. The asks run in a task of their
/// own, so the pushes sharing them are woken once, when the source is known (not at every
/// step of the asks); the task stops when the last of them lets go.
fn live_asks(
    gw: Arc<Gateway>,
    origins: Arc<Origins>,
    route: usize,
    path: String,
    not_before: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> LiveAsk {
    let asks = tokio::spawn(async move {
        let settings = gw.push_settings();
        let guard = chrono::Duration::from_std(settings.live_guard).unwrap_or_default();
        let asks = LiveAsks {
            anchor: not_before.map_or(until, |at| at + guard),
            step: chrono::Duration::from_std(settings.live_retry_interval).unwrap_or_default(),
            until,
        };
        // Never early, however far ahead the horizon lets a segment be promised.
        if let Some(at) = not_before {
            sleep_until(at + guard).await;
        }
        let mut attempt = 0u32;
        loop {
            let src = gw.source_of(&origins, route, &path, User::Prefetch).await?;
            let status = src.status().await;
            let transient = status == 404 || status >= 500;
            let next = asks.next_after(Utc::now());
            let outcome = match (transient, attempt) {
                (false, 0) => Some(LiveOutcome::OnTime),
                (false, _) => Some(LiveOutcome::Late),
                (true, _) if next > asks.until || attempt >= settings.live_retries => {
                    Some(LiveOutcome::Missed)
                }
                (true, _) => None,
            };
            if let Some(o) = outcome {
                gw.metrics()
                    .live
                    .segments
                    .with_label_values(&[o.label()])
                    .inc();
                return Some(src);
            }
            drop(src);
            attempt += 1;
            sleep_until(next).await;
        }
    });
    AbortOnDrop(asks).boxed().shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_asks_fall_on_one_grid_whoever_asks() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let ms = chrono::Duration::milliseconds;
        let asks = LiveAsks {
            anchor: t0,
            step: ms(25),
            until: t0 + ms(2000),
        };
        // Before, on and after the anchor: the next instant of the same grid, strictly later.
        assert_eq!(asks.next_after(t0 - ms(30)), t0 - ms(25));
        assert_eq!(asks.next_after(t0 - ms(1)), t0);
        assert_eq!(asks.next_after(t0), t0 + ms(25));
        assert_eq!(asks.next_after(t0 + ms(26)), t0 + ms(50));
        assert_eq!(asks.next_after(t0 + ms(1990)), asks.until);
        assert!(asks.next_after(asks.until) > asks.until);
    }
}
