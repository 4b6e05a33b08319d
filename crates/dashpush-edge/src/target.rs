//! The target of a request: the absolute URL the client used and the origin route that serves
//! it, computed once per request and handed to everything that plans, prefetches or pushes.

use url::Url;

use crate::origin::routing::Origins;

/// A request's target on the gateway.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The URL as the client addressed it: its scheme, its authority, the request's path and
    /// query. Every URL the planner derives from it is on the gateway (spec §6.2 rule 2).
    pub(crate) url: Url,
    /// Path and query, as forwarded to the origin.
    pub(crate) path: String,
    /// The origin route that serves it.
    pub(crate) route: usize,
    /// That route's origin (`http://host:port`): the registry's and the cache's key prefix.
    pub(crate) origin: String,
    /// The routes it was resolved against: whatever it starts (prefetches, pushes) uses them,
    /// so a request straddling a config reload finishes on the configuration it started with.
    pub(crate) origins: std::sync::Arc<Origins>,
}

impl Target {
    /// The target of `path` on `host` reached over `scheme`, if it is a clean absolute URL and
    /// an origin route takes it.
    pub(crate) fn resolve(
        origins: &std::sync::Arc<Origins>,
        scheme: &str,
        host: Option<&str>,
        path: &str,
    ) -> Option<Self> {
        let url = client_url(scheme, host, path)?;
        Self::of_url(origins, url)
    }

    /// The target of an absolute URL on the gateway, if an origin route takes it.
    pub(crate) fn of_url(origins: &std::sync::Arc<Origins>, url: Url) -> Option<Self> {
        let path = path_of(&url);
        let (route, _) = origins.select(url.host_str(), &path)?;
        let origin = origins.origin_key(route)?.to_owned();
        Some(Self {
            url,
            path,
            route,
            origin,
            origins: std::sync::Arc::clone(origins),
        })
    }

    /// True if the target is an MPD (by its path's extension).
    pub(crate) fn is_mpd(&self) -> bool {
        is_mpd_path(&self.path)
    }

    /// True if `url` is served by the same origin route (spec §6.2 safety rule 2: a pushed or
    /// prefetched URL never leaves its parent's origin).
    pub(crate) fn same_route(&self, url: &Url) -> bool {
        self.origins
            .select(url.host_str(), url.path())
            .is_some_and(|(route, _)| route == self.route)
    }
}

/// The absolute URL a client used: its scheme, its authority, the request's path and query.
pub(crate) fn client_url(scheme: &str, host: Option<&str>, path: &str) -> Option<Url> {
    let host = host?;
    if host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return None;
    }
    let mut s = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    for piece in [scheme, "://", host, path] {
        s.push_str(piece);
    }
    let url = Url::parse(&s).ok()?;
    // The URL must say exactly what was asked: a host or path the parser rewrites (dot
    // segments, backslashes) would plan pushes for another resource than the one routed.
    (path_of(&url) == path).then_some(url)
}

/// Path and query of a URL, as forwarded to the origin.
pub(crate) fn path_of(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// True for a path (with or without query) that names an MPD.
pub(crate) fn is_mpd_path(path: &str) -> bool {
    path.split('?').next().unwrap_or(path).ends_with(".mpd")
}
