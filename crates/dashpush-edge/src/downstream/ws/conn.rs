//! One socket's state, shared by its request tasks: the bounded send queue, the stream table,
//! the push state and the push stream ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use dashpush_proto::limits;
use dashpush_proto::ws::{EndOfStream, EndReason, Message as DashMessage, StreamId, Streams};
use http::HeaderValue;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use url::Url;

use crate::delivery::conn::PushConn;
use crate::gateway::Gateway;

/// Largest payload piece per Received message.
pub const PIECE: usize = 64 * 1024;
/// Messages of answers queued for one socket before senders wait.
pub const QUEUE: usize = 32;
/// Messages of pushes queued for one socket before their senders wait: a few, so pushes follow
/// the link's pace instead of queueing ahead of it (and answers, sent first, never wait behind
/// them).
pub const PUSH_QUEUE: usize = 4;

/// Bytes of messages one socket holds for sending (queued, or being written), whatever their
/// number: a sender takes its share before it encodes a message and the writer gives it back
/// once the message is written (`docs/websocket.md`: at most 2 MiB per socket).
pub const SEND_BUDGET: u32 = 2 * 1024 * 1024;
/// The most one outgoing message can take: a payload piece and its metadata, framed.
const MESSAGE_BOUND: u32 = (PIECE + limits::MAX_WS_METADATA + 64) as u32;

/// What goes to the socket.
pub(crate) enum Out {
    /// A message and its share of the send budget (released when it is written).
    Msg(Bytes, OwnedSemaphorePermit),
    Ping,
    Close(u16, &'static str),
}

/// One socket's state.
pub(crate) struct Conn {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) out: mpsc::Sender<Out>,
    /// Messages on push streams (even ids): sent after every queued answer.
    push_out: mpsc::Sender<Out>,
    /// Set when the queue stayed full past the stall time: the socket is closed (1008).
    pub(crate) stalled: Notify,
    /// The send budget ([`SEND_BUDGET`] bytes).
    budget: Arc<Semaphore>,
    streams: Mutex<Streams>,
    /// The push state (planner, pushes in flight).
    pub(crate) push: PushConn,
    /// The URL of each push stream id in flight, for a Segment cancel by id.
    push_ids: Mutex<HashMap<u32, Url>>,
    /// The URL the upgrade was made on: requests are resolved against it.
    pub(crate) base: Url,
    pub(crate) host: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) user_agent: Option<HeaderValue>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    pub(crate) fn new(
        gw: &Arc<Gateway>,
        out: mpsc::Sender<Out>,
        push_out: mpsc::Sender<Out>,
        base: Url,
        host: Option<String>,
        client: Option<String>,
        user_agent: Option<HeaderValue>,
    ) -> Self {
        Self {
            gw: Arc::clone(gw),
            out,
            push_out,
            stalled: Notify::new(),
            budget: Arc::new(Semaphore::new(SEND_BUDGET as usize)),
            streams: Mutex::new(Streams::default()),
            push: PushConn::default(),
            push_ids: Mutex::new(HashMap::new()),
            base,
            host,
            client,
            user_agent,
        }
    }

    /// Queues a message; false if the socket is gone or stalled. The message's share of the
    /// send budget is taken before it is encoded, so senders waiting on a client that does not
    /// read hold no encoded bytes.
    pub(crate) async fn send(&self, m: &DashMessage) -> bool {
        let stall = self.gw.push_settings().ws_stall;
        let budget = Arc::clone(&self.budget);
        let mut permit =
            match tokio::time::timeout(stall, budget.acquire_many_owned(MESSAGE_BOUND)).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return false,
                Err(_) => {
                    self.stalled.notify_one();
                    return false;
                }
            };
        let bytes = match m.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("ws encode: {e}");
                return false;
            }
        };
        // Keep only what the message takes.
        let used = u32::try_from(bytes.len())
            .unwrap_or(MESSAGE_BOUND)
            .clamp(1, MESSAGE_BOUND);
        drop(permit.split((MESSAGE_BOUND - used) as usize));
        self.gw
            .metrics()
            .ws_messages
            .with_label_values(&["out", m.body.code().label()])
            .inc();
        // Push messages, and the End of stream `complete` that follows a request's pushes
        // (Annex C), take the push queue; everything else of a request goes first.
        let cycle_end = matches!(
            &m.body,
            dashpush_proto::ws::message::Body::EndOfStream(e) if e.reason == EndReason::Complete
        );
        let queue = if m.stream_id.get().is_multiple_of(2) || cycle_end {
            &self.push_out
        } else {
            &self.out
        };
        match queue.send_timeout(Out::Msg(bytes, permit), stall).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.stalled.notify_one();
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }

    /// End of stream on a stream this request owns (it is closed in the stream table).
    pub(crate) async fn end(
        &self,
        id: StreamId,
        reason: EndReason,
        status: Option<u16>,
        detail: Option<String>,
    ) {
        self.end_message(id, reason, status, detail).await;
        self.close(id);
    }

    /// End of stream answering a message that does not own `id` (a reused or bad id, or a
    /// malformed message on a running request's id): the stream table is left alone, so a
    /// running request keeps its slot.
    pub(crate) async fn end_message(
        &self,
        id: StreamId,
        reason: EndReason,
        status: Option<u16>,
        detail: Option<String>,
    ) {
        let m = DashMessage {
            stream_id: id,
            end: true,
            body: dashpush_proto::ws::message::Body::EndOfStream(EndOfStream {
                reason,
                status,
                detail: detail.map(|d| d.chars().take(limits::MAX_WS_DETAIL_LEN).collect()),
            }),
        };
        self.send(&m).await;
    }

    /// The stream table.
    pub(crate) fn streams(&self) -> MutexGuard<'_, Streams> {
        lock(&self.streams)
    }

    /// Opens a push stream for `url` (spec §8.2.2: even ids, increasing).
    pub(crate) fn open_push(&self, url: &Url) -> Option<StreamId> {
        let id = self.streams().open_server().ok()?;
        lock(&self.push_ids).insert(id.get(), url.clone());
        Some(id)
    }

    /// Closes a stream (a request's or a push's).
    pub(crate) fn close(&self, id: StreamId) {
        lock(&self.push_ids).remove(&id.get());
        self.streams().close(id);
    }

    /// The URL of a push stream in flight.
    pub(crate) fn push_url(&self, id: u32) -> Option<Url> {
        lock(&self.push_ids).get(&id).cloned()
    }
}
