//! A bounded set of URLs that forgets its oldest entry first (spec §6.2 safety rule 3: the
//! push diary and the set of URLs the client requested).
//!
//! It holds a 128-bit digest of each URL, not the URL: its memory is bounded by its capacity
//! alone (16 bytes an entry, twice), however long the URLs a client sends. Two URLs with the
//! same digest (a chance of about 2^-128 a pair) would count as one: at worst a push not made.

use std::collections::VecDeque;

use foldhash::{HashSet, HashSetExt};
use std::hash::{Hash, Hasher};

use url::Url;

/// Insertion-ordered set of at most `capacity` URLs.
#[derive(Clone, Debug)]
pub(crate) struct Diary {
    order: VecDeque<u128>,
    members: HashSet<u128>,
    capacity: usize,
}

/// A URL's digest: two SipHash runs salted differently (the standard library's fixed-key
/// hasher: the same within a process, which is all a connection's diary needs).
fn digest(url: &Url) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        url.as_str().hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

impl Diary {
    /// An empty diary holding at most `capacity` URLs (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            members: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `url`; if full, forgets the oldest entry. A URL already present keeps its
    /// place.
    pub(crate) fn insert(&mut self, url: &Url) {
        let d = digest(url);
        if self.members.contains(&d) {
            return;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.members.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(d);
        self.members.insert(d);
    }

    /// Forgets `url` (a push that was not delivered may be pushed again).
    pub(crate) fn remove(&mut self, url: &Url) {
        let d = digest(url);
        if self.members.remove(&d) {
            self.order.retain(|u| *u != d);
        }
    }

    /// True if `url` is remembered.
    pub(crate) fn contains(&self, url: &Url) -> bool {
        self.members.contains(&digest(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u32) -> Url {
        Url::parse(&format!("http://o.test/{n}")).unwrap()
    }

    #[test]
    fn forgets_oldest_first_and_keeps_place_of_repeats() {
        let mut d = Diary::new(2);
        d.insert(&u(1));
        d.insert(&u(2));
        d.insert(&u(1)); // no-op: 1 stays oldest
        d.insert(&u(3));
        assert!(!d.contains(&u(1)));
        assert!(d.contains(&u(2)) && d.contains(&u(3)));
        assert_eq!(d.order.len(), d.members.len());
    }

    #[test]
    fn long_urls_cost_no_more_than_short_ones() {
        let long = Url::parse(&format!("http://o.test/{}", "x".repeat(15_000))).unwrap();
        let mut d = Diary::new(4096);
        d.insert(&long);
        assert!(d.contains(&long));
        assert!(!d.contains(&u(1)));
        assert_eq!(std::mem::size_of_val(d.order.front().unwrap()), 16);
        d.remove(&long);
        assert!(!d.contains(&long));
    }
}
