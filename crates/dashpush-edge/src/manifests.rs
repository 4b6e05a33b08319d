//! The MPDs the gateway has served, parsed, for the planner and the prefetcher.
//!
//! An MPD is known by its origin and path (not by the Host or the query a client used), and
//! parsed once per body, off the async threads, a few at a time: a client that varies its
//! `Host:` cannot make the gateway parse one MPD again and again, nor push other MPDs out.
//! Planning needs the model in the client's own URLs (every URL the planner derives must be on
//! the gateway as that client reached it, spec §6.2 rule 2), so each entry keeps copies rebased
//! to the few client origins (scheme, host, port) that use it, made on demand from the parsed
//! model (cheap: no parse). Bounded in entries and in body bytes; the least recently used entry
//! (stored or looked up for a segment) goes first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dashpush_mpd::{Manifest, ParsedMpd};
use tokio::sync::Semaphore;
use url::Url;

/// Most MPDs remembered.
pub const MAX_MANIFESTS: usize = 64;

/// Most bytes of MPD bodies remembered.
pub const MAX_BYTES: usize = 64 << 20;

/// Client origins (scheme, host, port) an MPD keeps a model for, at most; the least recently
/// used goes first (it is made again from the parsed model when needed).
const MAX_VARIANTS: usize = 8;

/// MPD parses at once, on blocking threads.
const PARSES: usize = 2;

struct Known {
    origin: String,
    /// The MPD's path (no query).
    path: String,
    body: Bytes,
    /// The model as first parsed, and its copies for other client origins, most recent last.
    variants: VecDeque<Arc<Manifest>>,
}

impl Known {
    /// The model in `url`'s origin (made from the first one if needed); used: moved last.
    fn variant(&mut self, url: &Url) -> Option<Arc<Manifest>> {
        let origin = url.origin();
        if let Some(i) = self.variants.iter().position(|m| m.url.origin() == origin) {
            let m = self.variants.remove(i)?;
            self.variants.push_back(Arc::clone(&m));
            return Some(m);
        }
        let base = self.variants.front()?;
        let m = Arc::new(base.rebased(url));
        if self.variants.len() >= MAX_VARIANTS {
            // Keep the first (parsed) one: the others are made from it.
            self.variants.remove(1);
        }
        self.variants.push_back(Arc::clone(&m));
        Some(m)
    }
}

/// The registry.
pub struct Registry {
    entries: Mutex<VecDeque<Known>>,
    parses: Semaphore,
    /// MPD bodies parsed (`dashpush_mpd_parses_total`).
    parsed: prometheus::IntCounter,
}

impl Registry {
    /// An empty registry counting its parses in `parsed`.
    pub fn new(parsed: prometheus::IntCounter) -> Self {
        Self {
            entries: Mutex::default(),
            parses: Semaphore::new(PARSES),
            parsed,
        }
    }
}

impl Registry {
    /// The model of `body` served for `url` on `origin`, parsing it unless this exact body is
    /// already known for that MPD. `None` if it does not parse (logged; the stream is served
    /// all the same).
    pub async fn remember(&self, origin: &str, url: &Url, body: &Bytes) -> Option<Arc<Manifest>> {
        if let Some(m) = self.known(origin, url, body) {
            return Some(m);
        }
        let _turn = self.parses.acquire().await.ok()?;
        // Parsed by another request while this one waited?
        if let Some(m) = self.known(origin, url, body) {
            return Some(m);
        }
        let (text, at) = (body.clone(), url.clone());
        self.parsed.inc();
        let parsed = tokio::task::spawn_blocking(move || {
            let text = std::str::from_utf8(&text).map_err(|e| e.to_string())?;
            let mpd = ParsedMpd::parse(text).map_err(|e| e.to_string())?;
            Manifest::from_parsed(&mpd, &at).map_err(|e| e.to_string())
        })
        .await;
        let manifest = match parsed {
            Ok(Ok(m)) => Arc::new(m),
            Ok(Err(e)) => {
                tracing::debug!(%url, "MPD not usable for push: {e}");
                return None;
            }
            Err(e) => {
                tracing::warn!(%url, "MPD parse task failed: {e}");
                return None;
            }
        };
        let path = url.path().to_owned();
        let mut entries = self.lock();
        entries.retain(|k| !(k.origin == origin && k.path == path));
        while !entries.is_empty()
            && (entries.len() >= MAX_MANIFESTS
                || entries.iter().map(|k| k.body.len()).sum::<usize>() + body.len() > MAX_BYTES)
        {
            entries.pop_front();
        }
        entries.push_back(Known {
            origin: origin.to_owned(),
            path,
            body: body.clone(),
            variants: VecDeque::from([Arc::clone(&manifest)]),
        });
        Some(manifest)
    }

    /// The model for `url`, if this body is the one known for its MPD.
    fn known(&self, origin: &str, url: &Url, body: &Bytes) -> Option<Arc<Manifest>> {
        let mut entries = self.lock();
        entries
            .iter_mut()
            .find(|k| k.origin == origin && k.path == url.path() && same_bytes(&k.body, body))?
            .variant(url)
    }

    /// True when no MPD is known (nothing to prefetch from).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A view of one origin's MPDs for the planner.
    pub fn route<'a>(&'a self, origin: &'a str) -> RouteManifests<'a> {
        RouteManifests {
            registry: self,
            origin,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Known>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `url` with `of`'s scheme, host and port.
fn in_origin_of(url: &Url, of: &Url) -> Url {
    let rest = &url[url::Position::BeforePath..];
    Url::parse(&format!("{}{rest}", of.origin().ascii_serialization()))
        .unwrap_or_else(|_| url.clone())
}

fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// The MPDs of one route ([`dashpush_plan::Manifests`]), in the client's URLs.
pub struct RouteManifests<'a> {
    registry: &'a Registry,
    origin: &'a str,
}

impl dashpush_plan::Manifests for RouteManifests<'_> {
    fn for_segment(&self, url: &Url) -> Option<Arc<Manifest>> {
        let mut entries = self.registry.lock();
        // Newest first: a live MPD's latest version, or the stream the client opened last.
        let mut found = None;
        for (i, k) in entries.iter_mut().enumerate().rev() {
            if k.origin != self.origin {
                continue;
            }
            // Asked of the parsed model first (in its own origin): a copy for the client's
            // origin is made only for the MPD that has the segment.
            let Some(base) = k.variants.front() else {
                continue;
            };
            if base.locate(&in_origin_of(url, &base.url)).is_some()
                && let Some(m) = k.variant(url)
            {
                found = Some((i, m));
                break;
            }
        }
        let (at, manifest) = found?;
        // Used: it moves to the back, so eviction takes the least recently used.
        let hit = entries.remove(at)?;
        entries.push_back(hit);
        Some(manifest)
    }

    fn manifest(&self, mpd_url: &Url) -> Option<Arc<Manifest>> {
        let mut entries = self.registry.lock();
        entries
            .iter_mut()
            .rev()
            .find(|k| k.origin == self.origin && k.path == mpd_url.path())?
            .variant(mpd_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dashpush_plan::Manifests;

    const MPD: &str = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8S"><Period><AdaptationSet mimeType="video/mp4"><Representation id="v" bandwidth="1000"><SegmentTemplate media="seg-$Number$.m4s" duration="2" startNumber="1"/></Representation></AdaptationSet></Period></MPD>"#;

    #[tokio::test]
    async fn many_hosts_share_one_parse_and_evict_nothing_else() {
        let r = Registry::new(prometheus::IntCounter::new("p", "p").unwrap());
        let body = Bytes::from_static(MPD.as_bytes());
        let other = Url::parse("http://keep.test/other/m.mpd").unwrap();
        r.remember("o", &other, &body).await.unwrap();
        let first = r
            .remember("o", &Url::parse("http://h0.test/v/m.mpd").unwrap(), &body)
            .await
            .unwrap();
        for i in 1..80 {
            let url = Url::parse(&format!("http://h{i}.test/v/m.mpd?q={i}")).unwrap();
            let m = r.remember("o", &url, &body).await.unwrap();
            assert_eq!(m.url.host_str(), url.host_str(), "the client's own URLs");
        }
        {
            let entries = r.lock();
            assert_eq!(
                entries.len(),
                2,
                "one entry per MPD, whatever the Host or query"
            );
            let v = entries.iter().find(|k| k.path == "/v/m.mpd").unwrap();
            assert!(v.variants.len() <= MAX_VARIANTS);
            assert!(
                Arc::ptr_eq(&v.variants[0], &first),
                "the parsed model stays"
            );
        }
        assert_eq!(r.parsed.get(), 2, "one parse per MPD body");
        // The other MPD is still known, and any host finds its segments.
        let view = r.route("o");
        assert!(view.manifest(&other).is_some());
        let seg = Url::parse("http://h3.test/v/seg-2.m4s").unwrap();
        let m = view.for_segment(&seg).unwrap();
        assert_eq!(m.url.host_str(), Some("h3.test"));
    }
}
