//! A fleet of gateways that asks the origin once per object: each cache key has one owner among
//! the peers (this replica included), chosen by rendezvous hashing; a replica that does not own
//! a key fills it from its owner, which alone asks the origin.
//!
//! Rendezvous (highest random weight) hashing, not a Ketama ring: every key scores each peer by
//! a hash of (peer, key) and goes to the highest. It needs no virtual nodes to spread evenly,
//! and when a peer leaves (or is marked down) only its keys move, each to its next-highest
//! peer; the scores use FNV-1a with a SplitMix64 finish, fixed algorithms, so replicas of
//! different builds agree.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use prometheus::IntGauge;

use crate::origin::upstream::Upstream;

/// The request header that marks a fill from a peer; its value is the fleet token.
pub(crate) const PEER_HEADER: &str = "x-dashpush-peer";
/// The Host the client used, carried on a peer fill (the owner routes by it).
pub(crate) const PEER_HOST_HEADER: &str = "x-dashpush-peer-host";

/// How long a peer that failed is left out before it is asked again.
const DOWN_FOR: Duration = Duration::from_secs(10);

/// One other replica.
pub(crate) struct Peer {
    /// Its identity on the ring (`host:port`).
    pub(crate) id: String,
    /// The HTTP/1.1 client to it.
    pub(crate) upstream: Arc<Upstream>,
    /// Its address, for the health check.
    addr: Option<SocketAddr>,
    down_until: Mutex<Option<Instant>>,
}

impl Peer {
    fn up(&self) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|t| Instant::now() >= t)
    }
}

/// Makes the client of a peer found by discovery.
pub(crate) type Connect = Box<dyn Fn(SocketAddr) -> Option<Arc<Upstream>> + Send + Sync>;

/// The fleet as this replica sees it.
pub(crate) struct Fleet {
    me: String,
    peers: RwLock<Vec<Arc<Peer>>>,
    token: HeaderValue,
    up: IntGauge,
    down: IntGauge,
}

impl Fleet {
    /// This replica (`me`, `host:port`) and the others, with the shared token.
    pub(crate) fn new(
        me: String,
        peers: Vec<(String, Arc<Upstream>)>,
        token: HeaderValue,
        up: IntGauge,
        down: IntGauge,
    ) -> Self {
        let fleet = Self {
            me,
            peers: RwLock::new(Vec::new()),
            token,
            up,
            down,
        };
        let peers = peers
            .into_iter()
            .map(|(id, upstream)| Arc::new(Peer::new(id, upstream, None)))
            .collect();
        fleet.replace(peers);
        fleet
    }

    fn replace(&self, peers: Vec<Arc<Peer>>) {
        let peers: Vec<Arc<Peer>> = peers.into_iter().filter(|p| p.id != self.me).collect();
        *self.peers.write().unwrap_or_else(PoisonError::into_inner) = peers;
        self.count();
    }

    fn peers(&self) -> Vec<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self) {
        let peers = self.peers();
        let down = peers.iter().filter(|p| !p.up()).count();
        self.down.set(i64::try_from(down).unwrap_or(i64::MAX));
        self.up
            .set(i64::try_from(peers.len() - down).unwrap_or(i64::MAX));
    }

    /// The membership found by discovery (`host:port` addresses): peers already known keep
    /// their client and health, new ones get a client from `connect`, the others leave. Only
    /// the keys of peers that came or went change owner.
    pub(crate) fn discovered(&self, found: &[SocketAddr], connect: &Connect) {
        let known = self.peers();
        let mut next = Vec::with_capacity(found.len());
        for addr in found {
            let id = addr.to_string();
            if let Some(p) = known.iter().find(|p| p.id == id) {
                next.push(Arc::clone(p));
            } else if id != self.me
                && let Some(upstream) = connect(*addr)
            {
                tracing::info!(peer = %id, "fleet: peer joined");
                next.push(Arc::new(Peer::new(id, upstream, Some(*addr))));
            }
        }
        for gone in known.iter().filter(|p| !next.iter().any(|n| n.id == p.id)) {
            tracing::info!(peer = %gone.id, "fleet: peer left");
        }
        self.replace(next);
    }

    /// The health check: a peer that is down comes back as soon as it accepts a connection.
    pub(crate) fn check(&self) {
        for p in self.peers().iter().filter(|p| !p.up()) {
            if let Some(addr) = p.addr
                && std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                *p.down_until.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(peer = %p.id, "fleet: peer answers again");
            }
        }
        self.count();
    }

    /// The peer that owns `key`, or `None` when this replica does (or no peer is up).
    pub(crate) fn owner(&self, key: &str) -> Option<Arc<Peer>> {
        let mine = score(&self.me, key);
        self.peers()
            .into_iter()
            .filter(|p| p.up())
            .map(|p| (score(&p.id, key), p))
            .filter(|(s, _)| *s > mine)
            .max_by_key(|(s, _)| *s)
            .map(|(_, p)| p)
    }

    /// Leaves `peer` out for a while (it did not answer, or answered 5xx): its keys go to
    /// their next owner meanwhile.
    pub(crate) fn mark_down(&self, peer: &Peer) {
        tracing::warn!(peer = %peer.id, "peer not answering: its keys go to the next owner");
        *peer
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + DOWN_FOR);
        self.count();
    }

    /// Whether a request's peer header carries the fleet token.
    pub(crate) fn is_peer_fill(&self, headers: &[(HeaderName, HeaderValue)]) -> bool {
        headers.iter().any(|(n, v)| {
            n == PEER_HEADER
                && v.len() == self.token.len()
                && v.as_bytes()
                    .iter()
                    .zip(self.token.as_bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }

    /// The header a fill from a peer carries: the token.
    pub(crate) fn token_header(&self) -> (HeaderName, HeaderValue) {
        (HeaderName::from_static(PEER_HEADER), self.token.clone())
    }
}

impl Peer {
    fn new(id: String, upstream: Arc<Upstream>, addr: Option<SocketAddr>) -> Self {
        let addr = addr.or_else(|| id.parse().ok());
        Self {
            id,
            upstream,
            addr,
            down_until: Mutex::new(None),
        }
    }
}

/// The rendezvous score of `peer` for `key`.
fn score(peer: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // SplitMix64 finish: FNV alone spreads similar keys poorly in the high bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::score;

    /// The owner among `ids` by rendezvous hashing.
    fn owner<'a>(ids: &[&'a str], key: &str) -> &'a str {
        ids.iter().copied().max_by_key(|id| score(id, key)).unwrap()
    }

    #[test]
    fn keys_spread_evenly_and_only_a_leaving_peers_keys_move() {
        let three = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
        let keys: Vec<String> = (0..3000)
            .map(|i| format!("http://o/vod/seg-{i}.m4s"))
            .collect();
        let mut counts = [0usize; 3];
        for k in &keys {
            let o = owner(&three, k);
            counts[three.iter().position(|p| *p == o).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // Without the third peer, only its keys move.
        let two = &three[..2];
        for k in &keys {
            let before = owner(&three, k);
            if before != three[2] {
                assert_eq!(owner(two, k), before, "{k} moved");
            }
        }
    }
}
