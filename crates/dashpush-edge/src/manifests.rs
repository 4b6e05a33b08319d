//! The MPDs the gateway has served, parsed, for the planner and the prefetcher.
//!
//! An MPD is parsed against the URL the *client* used (its scheme and authority), so every
//! segment URL the model yields is a URL on the gateway, on the same origin route. Entries are
//! keyed by route and client URL, re-parsed only when the cached body changes (a live MPD), and
//! bounded: the least recently used entry (stored or looked up for a segment) goes first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dashpush_mpd::Manifest;
use url::Url;

/// Most MPDs remembered.
pub const MAX_MANIFESTS: usize = 64;

struct Known {
    origin: String,
    url: Url,
    body: Bytes,
    manifest: Arc<Manifest>,
}

/// The registry.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<VecDeque<Known>>,
}

impl Registry {
    /// The model of `body` served for `url` on `route`, parsing it unless this exact body is
    /// already known. `None` if it does not parse (logged; the stream is served all the same).
    pub fn remember(&self, origin: &str, url: &Url, body: &Bytes) -> Option<Arc<Manifest>> {
        {
            let entries = self.lock();
            if let Some(k) = entries
                .iter()
                .find(|k| k.origin == origin && k.url == *url && same_bytes(&k.body, body))
            {
                return Some(Arc::clone(&k.manifest));
            }
        }
        let text = std::str::from_utf8(body).ok()?;
        let manifest = match Manifest::parse(text, url) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::debug!(%url, "MPD not usable for push: {e}");
                return None;
            }
        };
        let mut entries = self.lock();
        entries.retain(|k| !(k.origin == origin && k.url == *url));
        if entries.len() >= MAX_MANIFESTS {
            entries.pop_front();
        }
        entries.push_back(Known {
            origin: origin.to_owned(),
            url: url.clone(),
            body: body.clone(),
            manifest: Arc::clone(&manifest),
        });
        Some(manifest)
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

fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// The MPDs of one route ([`dashpush_plan::Manifests`]).
pub struct RouteManifests<'a> {
    registry: &'a Registry,
    origin: &'a str,
}

impl dashpush_plan::Manifests for RouteManifests<'_> {
    fn for_segment(&self, url: &Url) -> Option<Arc<Manifest>> {
        let mut entries = self.registry.lock();
        // Newest first: a live MPD's latest version, or the stream the client opened last.
        let at = entries.iter().rposition(|k| {
            k.origin == self.origin
                && k.url.origin() == url.origin()
                && k.manifest.locate(url).is_some()
        })?;
        // Used: it moves to the back, so eviction takes the least recently used.
        let hit = entries.remove(at)?;
        let manifest = Arc::clone(&hit.manifest);
        entries.push_back(hit);
        Some(manifest)
    }

    fn manifest(&self, mpd_url: &Url) -> Option<Arc<Manifest>> {
        let entries = self.registry.lock();
        entries
            .iter()
            .rev()
            .find(|k| k.origin == self.origin && k.url == *mpd_url)
            .map(|k| Arc::clone(&k.manifest))
    }
}
