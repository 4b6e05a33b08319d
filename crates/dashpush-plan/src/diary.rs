//! A bounded set of URLs that forgets its oldest entry first (spec §6.2 safety rule 3: the
//! push diary and the set of URLs the client requested).

use std::collections::{HashSet, VecDeque};

use url::Url;

/// Insertion-ordered set of at most `capacity` URLs.
#[derive(Clone, Debug)]
pub(crate) struct Diary {
    order: VecDeque<Url>,
    members: HashSet<Url>,
    capacity: usize,
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
        if self.members.contains(url) {
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
        self.order.push_back(url.clone());
        self.members.insert(url.clone());
    }

    /// Forgets `url` (a push that was not delivered may be pushed again).
    pub(crate) fn remove(&mut self, url: &Url) {
        if self.members.remove(url) {
            self.order.retain(|u| u != url);
        }
    }

    /// True if `url` is remembered.
    pub(crate) fn contains(&self, url: &Url) -> bool {
        self.members.contains(url)
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
}
