//! Several origins: a request goes to the route whose hosts match its `Host` (or
//! `:authority`) and whose path prefix is the longest that starts its path; the default origin
//! takes everything else. The route index is part of the cache key, so two origins never share
//! an entry, and the push engine uses it to keep every pushed or prefetched URL on the origin
//! its parent request went to.

use std::sync::Arc;

use url::Url;

use crate::origin::upstream::Upstream;

/// One configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Path prefix (`/live/`); `/` matches everything.
    pub path_prefix: String,
    /// Host names (no port, compared case-insensitively); empty matches every host.
    pub hosts: Vec<String>,
    /// The origin, `http://host[:port]`.
    pub origin: Url,
}

/// The routes with their origin clients; index 0 is the default origin.
pub struct Origins {
    routes: Vec<(Route, Arc<Upstream>)>,
    /// Each route's origin as `http://host:port`, serialized once.
    keys: Vec<String>,
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origins")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Origins {
    /// Routes in configuration order, after the default (index 0, prefix `/`, any host).
    pub fn new(routes: Vec<(Route, Arc<Upstream>)>) -> Self {
        let keys = routes
            .iter()
            .map(|(r, _)| r.origin.origin().ascii_serialization())
            .collect();
        Self { routes, keys }
    }

    /// The route for a request: `(index, origin client)`.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<(usize, &Arc<Upstream>)> {
        let i = choose(self.routes.iter().map(|(r, _)| r), host, path)?;
        self.routes.get(i).map(|(_, u)| (i, u))
    }

    /// How many distinct origins the routes lead to.
    pub fn origin_count(&self) -> usize {
        let mut origins: Vec<&str> = (0..self.routes.len())
            .filter_map(|i| self.origin_key(i))
            .collect();
        origins.sort();
        origins.dedup();
        origins.len()
    }

    /// The origin client of route `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<Upstream>> {
        self.routes.get(i).map(|(_, u)| u)
    }

    /// The origin of route `i` as `http://host:port`: the identity cache entries and parsed
    /// MPDs are keyed by, so they stay right when a reload reorders or changes routes.
    pub fn origin_key(&self, i: usize) -> Option<&str> {
        self.keys.get(i).map(String::as_str)
    }

    /// Every origin client, default first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.routes.iter().map(|(_, u)| u)
    }
}

/// The index of the route for `host` and `path`: the longest matching prefix; at equal length a
/// host-specific route beats a generic one; then configuration order.
fn choose<'a>(
    routes: impl Iterator<Item = &'a Route>,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let host = host.map(strip_port);
    let mut best: Option<(usize, usize, bool)> = None;
    for (i, r) in routes.enumerate() {
        if !path.starts_with(&r.path_prefix) {
            continue;
        }
        let by_host = !r.hosts.is_empty();
        if by_host && !host.is_some_and(|h| r.hosts.iter().any(|x| x.eq_ignore_ascii_case(h))) {
            continue;
        }
        let len = r.path_prefix.len();
        let better = match best {
            None => true,
            Some((_, blen, bhost)) => len > blen || (len == blen && by_host && !bhost),
        };
        if better {
            best = Some((i, len, by_host));
        }
    }
    best.map(|(i, _, _)| i)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, hosts: &[&str]) -> Route {
        Route {
            path_prefix: prefix.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            origin: Url::parse("http://o.test").unwrap(),
        }
    }

    fn pick(routes: &[Route], host: Option<&str>, path: &str) -> Option<usize> {
        choose(routes.iter(), host, path)
    }

    #[test]
    fn longest_prefix_then_host_then_order() {
        let routes = [
            route("/", &[]),
            route("/live/", &[]),
            route("/live/", &["Cdn.Example"]),
            route("/live/sports/", &[]),
        ];
        assert_eq!(pick(&routes, None, "/vod/a.mpd"), Some(0));
        assert_eq!(pick(&routes, None, "/live/a.mpd"), Some(1));
        assert_eq!(
            pick(&routes, Some("cdn.example:8080"), "/live/a.mpd"),
            Some(2)
        );
        assert_eq!(
            pick(&routes, Some("cdn.example"), "/live/sports/x"),
            Some(3)
        );
        assert_eq!(pick(&routes, Some("other"), "/live"), Some(0));
    }

    #[test]
    fn ports_and_ipv6_literals_are_stripped() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
