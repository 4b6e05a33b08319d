//! One origin fetch in progress, shared by every request that wants it.
//!
//! The fetch task writes the response head and then each body chunk as it arrives from the
//! origin; any number of readers follow it, each at its own pace, so a waiting client gets its
//! first byte as soon as the origin sent it, not when the whole body is in. Readers created
//! late replay the chunks already received. When the fetch ends the cache stores the entry
//! (if it may) and forgets the fill; readers still streaming keep it alive until they finish.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

pub use crate::origin::response::Head;
use crate::origin::response::{Fetched, UpstreamError};

#[derive(Debug, Default)]
struct State {
    /// The head, shared with every push and request that reads it (not copied for each).
    head: Option<Arc<Head>>,
    /// Its `content-length`, read once when it arrives.
    length: Option<u64>,
    /// The body as received, in chunks; once whole and joined (see [`Fill::complete`]), one
    /// chunk, shared by every reader, range and the cache entry.
    chunks: Vec<Bytes>,
    /// Where each chunk starts in the body.
    starts: Vec<usize>,
    len: usize,
    end: Option<Result<(), UpstreamError>>,
}

/// A response being received from the origin.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<State>,
    changed: watch::Sender<()>,
    /// Interest held for whoever started the fill until its first reader subscribes (or the
    /// head arrives): before that, no subscriber does not mean nobody wants it.
    starter: Mutex<Option<watch::Receiver<()>>>,
    /// Started by the prefetcher, not by a request.
    pub(crate) prefetched: AtomicBool,
    /// A request or push has used this prefetch (counted once).
    pub(crate) claimed: AtomicBool,
    /// Purged while in flight: its readers get it, the cache does not store it.
    pub(crate) purged: AtomicBool,
    /// What the origin's answer was to the cache (see [`Served`]).
    served_as: AtomicU8,
    /// Counted in the gateway's budget for bytes held only for readers, once registered.
    pins: std::sync::OnceLock<Arc<Pins>>,
    /// Bytes counted in that budget so far.
    pinned: std::sync::atomic::AtomicUsize,
    /// Cut off by that budget: its readers get an error, its bytes are let go.
    cut: AtomicBool,
    /// How long its response may be used fresh by anyone, worked out once from the head
    /// ([`Fill::shared_ttl`]).
    shared_ttl: std::sync::OnceLock<Option<std::time::Duration>>,
}

/// The gateway-wide budget for bytes held only for readers: bodies that will not be cached
/// (credentialed, per-user or uncacheable answers, purged fills) stay in memory while their
/// readers are slow. Beyond the budget the fills holding the most are cut off: their slowest
/// readers are reset, and the memory is let go at once.
#[derive(Debug)]
pub struct Pins {
    max: usize,
    total: std::sync::atomic::AtomicUsize,
    fills: Mutex<Vec<std::sync::Weak<Fill>>>,
    cuts: prometheus::IntCounter,
}

impl Pins {
    /// A budget of `max` bytes, counting cut fills in `cuts`.
    pub fn new(max: usize, cuts: prometheus::IntCounter) -> Arc<Self> {
        Arc::new(Self {
            max,
            total: std::sync::atomic::AtomicUsize::new(0),
            fills: Mutex::default(),
            cuts,
        })
    }

    /// Counts `fill` from now on (its bytes so far and those still to come).
    pub fn hold(self: &Arc<Self>, fill: &Arc<Fill>) {
        if fill.pins.set(Arc::clone(self)).is_err() {
            return;
        }
        {
            let mut fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
            // Fills that are gone leave a dead entry: swept whenever the list has doubled.
            if fills.len() >= 64 && fills.len().is_power_of_two() {
                fills.retain(|w| w.strong_count() > 0);
            }
            fills.push(Arc::downgrade(fill));
        }
        self.grew(fill, fill.received());
    }

    fn grew(&self, fill: &Fill, n: usize) {
        fill.pinned.fetch_add(n, Ordering::AcqRel);
        if self.total.fetch_add(n, Ordering::AcqRel) + n > self.max {
            self.enforce();
        }
    }

    fn shrank(&self, n: usize) {
        self.total.fetch_sub(n, Ordering::AcqRel);
    }

    /// Over the budget: cuts the fills holding the most until under it.
    fn enforce(&self) {
        let mut live: Vec<Arc<Fill>> = {
            let mut fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
            fills.retain(|w| w.strong_count() > 0);
            fills.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        live.retain(|f| !f.cut.load(Ordering::Acquire));
        live.sort_by_key(|f| std::cmp::Reverse(f.pinned.load(Ordering::Acquire)));
        for f in live {
            if self.total.load(Ordering::Acquire) <= self.max {
                break;
            }
            f.cut_off();
            self.cuts.inc();
        }
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if let Some(p) = self.pins.get() {
            p.shrank(self.pinned.swap(0, Ordering::AcqRel));
        }
    }
}

/// What a fill carries, for the cache and the `X-Cache` of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A fresh answer from the origin.
    Fetched,
    /// The stored copy, revalidated by the origin (304): served and stored again as fresh.
    Revalidated,
    /// The stored copy, because the origin failed within `stale-if-error`: not stored again.
    StaleOnError,
}

impl Fill {
    /// An empty fill, before the origin answered.
    pub fn new() -> Arc<Self> {
        let (changed, starter) = watch::channel(());
        Arc::new(Self {
            state: Mutex::new(State::default()),
            changed,
            starter: Mutex::new(Some(starter)),
            prefetched: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
            purged: AtomicBool::new(false),
            served_as: AtomicU8::new(0),
            pins: std::sync::OnceLock::new(),
            pinned: std::sync::atomic::AtomicUsize::new(0),
            cut: AtomicBool::new(false),
            shared_ttl: std::sync::OnceLock::new(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    fn wake(&self) {
        self.changed.send_replace(());
    }

    /// A subscription to changes; the starter's placeholder interest is no longer needed.
    fn subscribe(&self) -> watch::Receiver<()> {
        let rx = self.changed.subscribe();
        self.drop_starter();
        rx
    }

    fn drop_starter(&self) {
        self.starter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Resolves once nobody follows the fill any more: every reader (and waiter for the head
    /// or the whole body) is gone, and the head has arrived or a reader came and went.
    pub(crate) async fn unread(&self) {
        self.changed.closed().await;
    }

    /// Cuts the fill off (the budget for bytes held for readers is spent): its bytes are let
    /// go and its readers get an error.
    fn cut_off(&self) {
        self.cut.store(true, Ordering::Release);
        self.with(|s| {
            s.chunks.clear();
            s.starts.clear();
            s.len = 0;
            s.end = Some(Err(UpstreamError::Cut));
        });
        if let Some(p) = self.pins.get() {
            p.shrank(self.pinned.swap(0, Ordering::AcqRel));
        }
        self.wake();
    }

    /// Records what the fill carries (before its head).
    pub fn set_served_as(&self, s: Served) {
        let v = match s {
            Served::Fetched => 0,
            Served::Revalidated => 1,
            Served::StaleOnError => 2,
        };
        self.served_as.store(v, Ordering::Release);
    }

    /// What the fill carries.
    pub fn served_as(&self) -> Served {
        match self.served_as.load(Ordering::Acquire) {
            1 => Served::Revalidated,
            2 => Served::StaleOnError,
            _ => Served::Fetched,
        }
    }

    /// Records the response head.
    pub fn set_head(&self, head: impl Into<Arc<Head>>) {
        let head = head.into();
        let length = crate::fields::content_length(&head.headers);
        self.with(|s| {
            s.head = Some(head);
            s.length = length;
        });
        self.wake();
        // Whoever started the fill has had a round trip to start following it.
        self.drop_starter();
    }

    /// Appends a body chunk.
    pub fn push(&self, chunk: Bytes) {
        if chunk.is_empty() || self.cut.load(Ordering::Acquire) {
            return;
        }
        if let Some(p) = self.pins.get() {
            p.grew(self, chunk.len());
            // The budget may have cut this very fill.
            if self.cut.load(Ordering::Acquire) {
                return;
            }
        }
        self.with(|s| {
            s.starts.push(s.len);
            s.len += chunk.len();
            s.chunks.push(chunk);
        });
        self.wake();
    }

    /// Body bytes received so far.
    pub fn received(&self) -> usize {
        self.with(|s| s.len)
    }

    /// Ends the fill, well or badly. Only the first call counts.
    pub fn finish(&self, result: Result<(), UpstreamError>) {
        self.with(|s| {
            if s.end.is_none() {
                s.end = Some(result);
            }
        });
        self.wake();
    }

    /// The memo behind `Source::shared_ttl`, the one caller (which passes `ttl_of`: the cache
    /// module's rules stay out of this one): how long the response may be used fresh by anyone,
    /// as `of` says from its head, worked out on the first call and kept (not for every push of
    /// a live segment to a thousand viewers); `None` if the origin has not answered yet.
    pub(crate) fn shared_ttl(
        &self,
        of: impl FnOnce(&Head) -> Option<std::time::Duration>,
    ) -> Option<Option<std::time::Duration>> {
        if let Some(ttl) = self.shared_ttl.get() {
            return Some(*ttl);
        }
        let ttl = self.with_head(of)?;
        Some(*self.shared_ttl.get_or_init(|| ttl))
    }

    /// What `read` reads off the head, if the origin has answered (the head is not copied).
    pub fn with_head<R>(&self, read: impl FnOnce(&Head) -> R) -> Option<R> {
        self.with(|s| s.head.as_deref().map(read))
    }

    /// The head's `content-length`, if the origin has answered with a valid one.
    pub fn length(&self) -> Option<u64> {
        self.with(|s| s.length)
    }

    /// Waits for the head (shared, not copied); an error if the fetch failed before it.
    pub async fn head(&self) -> Result<Arc<Head>, UpstreamError> {
        let mut rx = self.subscribe();
        loop {
            let seen = self.with(|s| match (&s.head, &s.end) {
                (Some(h), _) => Some(Ok(Arc::clone(h))),
                (None, Some(Err(e))) => Some(Err(e.clone())),
                (None, Some(Ok(()))) => {
                    Some(Err(UpstreamError::Unreachable("no response header".into())))
                }
                (None, None) => None,
            });
            if let Some(r) = seen {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err(UpstreamError::Unreachable("fetch abandoned".into()));
            }
        }
    }

    /// Waits for the end and returns the whole response. Its body is one copy, made once and
    /// shared: every caller (a range, a HEAD, a conditional, the cache entry) and every reader
    /// from then on get views of it, and the received chunks are let go.
    pub async fn complete(&self) -> Result<Fetched, UpstreamError> {
        let mut rx = self.subscribe();
        loop {
            let done = self.with(|s| match &s.end {
                Some(Ok(())) => Some(match &s.head {
                    Some(h) => {
                        let body = join(&s.chunks, s.len);
                        if s.chunks.len() > 1 {
                            s.chunks = vec![body.clone()];
                            s.starts = vec![0];
                        }
                        Ok(Fetched {
                            status: h.status,
                            headers: h.headers.clone(),
                            body,
                        })
                    }
                    None => Err(UpstreamError::Unreachable("no response header".into())),
                }),
                Some(Err(e)) => Some(Err(e.clone())),
                None => None,
            });
            if let Some(r) = done {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err(UpstreamError::Unreachable("fetch abandoned".into()));
            }
        }
    }

    /// A reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        FillReader {
            rx: self.subscribe(),
            fill: Arc::clone(self),
            offset: 0,
        }
    }
}

fn join(chunks: &[Bytes], len: usize) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut all = BytesMut::with_capacity(len);
            for c in many {
                all.extend_from_slice(c);
            }
            all.freeze()
        }
    }
}

/// Follows a [`Fill`] chunk by chunk (by byte offset: the chunks may be joined meanwhile).
pub struct FillReader {
    fill: Arc<Fill>,
    offset: usize,
    rx: watch::Receiver<()>,
}

impl std::fmt::Debug for FillReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillReader")
            .field("offset", &self.offset)
            .finish()
    }
}

impl FillReader {
    /// The fill it follows.
    pub(crate) fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }

    /// The next chunk; `None` at a clean end, an error if the origin broke off.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            if self.fill.cut.load(Ordering::Acquire) {
                return Some(Err(UpstreamError::Cut));
            }
            let offset = self.offset;
            let seen = self.fill.with(|s| {
                if offset < s.len {
                    // The chunk holding `offset`, from there on (a view, not a copy).
                    let i = s.starts.partition_point(|&start| start <= offset) - 1;
                    return Some(Some(Ok(s.chunks[i].slice(offset - s.starts[i]..))));
                }
                match &s.end {
                    Some(Ok(())) => Some(None),
                    Some(Err(e)) => Some(Some(Err(e.clone()))),
                    None => None,
                }
            });
            match seen {
                Some(Some(Ok(c))) => {
                    self.offset += c.len();
                    return Some(Ok(c));
                }
                Some(other) => return other,
                None => {
                    if self.rx.changed().await.is_err() {
                        return Some(Err(UpstreamError::Unreachable("fetch abandoned".into())));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_is_joined_once_and_readers_follow_by_offset() {
        let fill = Fill::new();
        let mut early = fill.reader();
        fill.set_head(Head {
            status: 200,
            headers: Vec::new(),
        });
        fill.push(Bytes::from_static(b"abc"));
        assert_eq!(early.chunk().await.unwrap().unwrap(), "abc");
        fill.push(Bytes::from_static(b"def"));
        fill.finish(Ok(()));
        let a = fill.complete().await.unwrap().body;
        let b = fill.complete().await.unwrap().body;
        assert_eq!(a, "abcdef");
        assert_eq!(a.as_ptr(), b.as_ptr(), "one copy, shared");
        // A reader in the middle goes on from its offset in the joined body.
        assert_eq!(early.chunk().await.unwrap().unwrap(), "def");
        assert!(early.chunk().await.is_none());
        let mut late = fill.reader();
        let whole = late.chunk().await.unwrap().unwrap();
        assert_eq!(whole.as_ptr(), a.as_ptr(), "a view of the same bytes");
    }

    #[tokio::test]
    async fn the_head_is_shared_and_its_length_read_once() {
        let fill = Fill::new();
        assert_eq!(fill.length(), None, "no head yet");
        fill.set_head(Head {
            status: 200,
            headers: vec![(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from_static("6"),
            )],
        });
        assert_eq!(fill.length(), Some(6));
        let (a, b) = (fill.head().await.unwrap(), fill.head().await.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "every reader gets the one head");
        assert_eq!(fill.with_head(|h| h.status), Some(200));
    }
}
