//! A fleet of gateways that asks the origin once per object: each cache key has one owner among
//! the peers (this replica included), chosen by rendezvous hashing; a replica that does not own
//! a key fills it from its owner, which alone asks the origin.
//!
//! Rendezvous (highest random weight) hashing, not a Ketama ring: every key scores each peer by
//! a hash of (peer, key) and goes to the highest. It needs no virtual nodes to spread evenly,
//! and when a peer leaves (or is marked down) only its keys move, each to its next-highest
//! peer; the scores use FNV-1a with a SplitMix64 finish, fixed algorithms, so replicas of
//! different builds agree.

use std::sync::{Arc, Mutex, PoisonError};
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

/// The fleet as this replica sees it.
pub(crate) struct Fleet {
    me: String,
    peers: Vec<Peer>,
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
        let peers: Vec<Peer> = peers
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, upstream)| Peer {
                id,
                upstream,
                down_until: Mutex::new(None),
            })
            .collect();
        up.set(i64::try_from(peers.len()).unwrap_or(i64::MAX));
        down.set(0);
        Self {
            me,
            peers,
            token,
            up,
            down,
        }
    }

    /// The peer that owns `key`, or `None` when this replica does (or no peer is up).
    pub(crate) fn owner(&self, key: &str) -> Option<&Peer> {
        let mine = score(&self.me, key);
        self.peers
            .iter()
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
        let down = self.peers.iter().filter(|p| !p.up()).count();
        self.down.set(i64::try_from(down).unwrap_or(i64::MAX));
        self.up
            .set(i64::try_from(self.peers.len() - down).unwrap_or(i64::MAX));
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

    /// The headers a fill from a peer carries: the token, and the Host the client used.
    pub(crate) fn fill_headers(&self, host: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = vec![(HeaderName::from_static(PEER_HEADER), self.token.clone())];
        if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            h.push((HeaderName::from_static(PEER_HOST_HEADER), v));
        }
        h
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
