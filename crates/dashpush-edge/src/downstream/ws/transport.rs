//! The WebSocket sub-protocol as a push transport (spec §8.2.2, §8.4): the answer on the
//! request's stream as Received messages carrying the ack, each push on its own even stream id
//! (first message `pushed`/`parent`), End of stream with the reason a push was not sent, and
//! End of stream `complete` on the request's stream when the cycle is over (Annex C).

use std::sync::Arc;

use bytes::Bytes;
use dashpush_plan::{Push, PushKind};
use dashpush_proto::ws::{EndReason, Message as DashMessage, Received, StreamId};

use super::conn::{Conn, PIECE};
use crate::delivery::{AnswerHead, DropReason, PushTransport, Stop, Transport, Withdrawal};
use crate::gateway::Body;
use crate::prefetch::Pushable;
use crate::target::path_of;

/// The push cycle of one socket request.
pub(crate) struct WsPush {
    conn: Arc<Conn>,
    /// The request's stream.
    id: StreamId,
    /// The request asked for an MPD (its answer is MPD received, 0x03).
    mpd: bool,
    /// The request's path, as answered.
    path: String,
    /// The answer's first message, held until its body is sent; `None` once an error was sent.
    head: Option<Received>,
    /// The request's stream has been ended (an error answer).
    ended: bool,
}

impl WsPush {
    pub(crate) fn new(conn: &Arc<Conn>, id: StreamId, mpd: bool, path: String) -> Self {
        Self {
            conn: Arc::clone(conn),
            id,
            mpd,
            path,
            head: None,
            ended: false,
        }
    }

    /// The error status of the answer, if it was one.
    fn error_status(&self) -> Option<u16> {
        self.head.as_ref().map(|h| h.status).filter(|s| *s >= 400)
    }
}

#[async_trait::async_trait]
impl PushTransport for WsPush {
    type Reserved = StreamId;
    type Promised = StreamId;

    fn transport(&self) -> Transport {
        Transport::Ws
    }

    fn push_allowed(&self) -> bool {
        true
    }

    /// Opens the push's stream id, so a cancel by URL or id reaches it while it waits.
    fn reserve(&mut self, push: &Push) -> Result<Self::Reserved, DropReason> {
        self.conn
            .open_push(&push.url)
            .ok_or(DropReason::PromiseRefused)
    }

    fn release(&mut self, id: Self::Reserved) {
        self.conn.close(id);
    }

    async fn answer_head(&mut self, head: AnswerHead) -> Result<(), Stop> {
        let content_type = crate::fields::first(&head.headers, "content-type")
            .unwrap_or("application/octet-stream")
            .to_owned();
        self.head = Some(Received {
            url: self.path.clone(),
            status: head.status,
            content_type,
            content_length: head.content_length.map(|l| l as u64),
            push_ack: head.ack.as_ref().map(ToString::to_string),
            pushed: false,
            parent: None,
            payload: Bytes::new(),
        });
        Ok(())
    }

    fn promise(&mut self, id: Self::Reserved) -> Result<Self::Promised, DropReason> {
        Ok(id)
    }

    /// An error answer is End of stream `error` with the status (spec §8.4); otherwise the
    /// body goes out as Received messages. The socket carries pushes only after their parent:
    /// a parent that broke off ends the request with an error.
    async fn answer_body(&mut self, body: Body) -> Result<u64, Stop> {
        if let Some(status) = self.error_status() {
            let detail = match &body {
                Body::Full(b) => String::from_utf8_lossy(b).trim().to_owned(),
                Body::Stream(_) => String::new(),
            };
            self.ended = true;
            let detail = Some(detail).filter(|d| !d.is_empty());
            self.conn
                .end(self.id, EndReason::Error, Some(status), detail)
                .await;
            return Ok(0);
        }
        let Some(head) = self.head.take() else {
            return Err(Stop::Gone);
        };
        match send_resource(&self.conn, self.id, head, body, self.mpd, &|| None).await {
            Ok(n) => Ok(n),
            Err((stop, _)) => {
                self.ended = true;
                let detail = Some("origin broke off".to_owned());
                self.conn
                    .end(self.id, EndReason::Error, Some(502), detail)
                    .await;
                Err(stop)
            }
        }
    }

    fn refused(&self, _id: &mut Self::Promised) -> bool {
        // Segment cancels arrive on the socket and set the push's cancel flag.
        false
    }

    /// The socket has no window per stream: a push holds its turn until it ends, so pushes
    /// go out one after the other.
    async fn send(
        &self,
        id: Self::Promised,
        push: &Push,
        resp: Pushable,
        cancelled: &(dyn Fn() -> Option<Stop> + Send + Sync),
        _turn: &crate::delivery::turns::Turn,
    ) -> Result<u64, (Stop, u64)> {
        let head = Received {
            url: path_of(&push.url),
            status: resp.status(),
            content_type: resp
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            content_length: resp.length,
            push_ack: None,
            pushed: true,
            parent: Some(self.id),
            payload: Bytes::new(),
        };
        let mpd = push.kind == PushKind::Mpd;
        let sent = send_resource(&self.conn, id, head, resp.body, mpd, cancelled).await;
        match sent {
            Ok(_) => self.conn.close(id),
            Err((stop, _)) => end_push(&self.conn, id, stop).await,
        }
        sent
    }

    async fn withdraw(&self, id: Self::Promised, push: &Push, why: Withdrawal) {
        let (reason, status, detail) = match why {
            Withdrawal::Refused => (EndReason::Cancelled, None, path_of(&push.url)),
            Withdrawal::Dropped(DropReason::ByteCap) => {
                (EndReason::Cancelled, None, "byte cap".to_owned())
            }
            Withdrawal::Dropped(DropReason::Replaced) => {
                (EndReason::Cancelled, None, "replaced".to_owned())
            }
            Withdrawal::Dropped(r) => (EndReason::Error, Some(502), r.label().to_owned()),
        };
        self.conn.end(id, reason, status, Some(detail)).await;
    }

    async fn finish(&mut self) {
        if !self.ended {
            self.conn
                .end(self.id, EndReason::Complete, None, None)
                .await;
        }
    }
}

/// Ends a push stream whose body stopped: `cancelled` when the client or a new cycle stopped
/// it, `error` when the origin broke off; nothing when the socket is gone.
async fn end_push(conn: &Conn, id: StreamId, stop: Stop) {
    match stop {
        Stop::Refused | Stop::Replaced => conn.end(id, EndReason::Cancelled, None, None).await,
        Stop::OriginBroke => {
            let detail = Some("origin broke off".to_owned());
            conn.end(id, EndReason::Error, Some(502), detail).await;
        }
        Stop::Gone => conn.close(id),
    }
}

/// A body cut into pieces of at most [`PIECE`] bytes.
struct Pieces {
    body: Body,
    rest: Bytes,
}

impl Pieces {
    /// The next piece: `Ok(None)` at the end, `Err` if the origin broke off.
    async fn next(&mut self) -> Result<Option<Bytes>, Stop> {
        if self.rest.is_empty() {
            self.rest = match &mut self.body {
                Body::Full(b) => std::mem::take(b),
                Body::Stream(r) => match r.chunk().await {
                    None => Bytes::new(),
                    Some(Ok(c)) => c,
                    Some(Err(_)) => return Err(Stop::OriginBroke),
                },
            };
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let n = self.rest.len().min(PIECE);
        Ok(Some(self.rest.split_to(n)))
    }
}

/// Sends a resource as Received messages on `id` (MPD received for an MPD, Segment received
/// otherwise): the first carries the head fields and the first piece, each later one a piece of
/// at most [`PIECE`] bytes, END on the last (sent one step late so the last can carry it).
/// Stops, with the bytes sent, when `cancelled` says so, the origin broke off or the socket
/// went away.
async fn send_resource(
    conn: &Conn,
    id: StreamId,
    head: Received,
    body: Body,
    mpd: bool,
    cancelled: &(dyn Fn() -> Option<Stop> + Send + Sync),
) -> Result<u64, (Stop, u64)> {
    use dashpush_proto::ws::message::Body as B;
    let wrap = |r: Received| {
        if mpd {
            B::MpdReceived(r)
        } else {
            B::SegmentReceived(r)
        }
    };
    let mut pieces = Pieces {
        body,
        rest: Bytes::new(),
    };
    let mut sent = 0u64;
    let mut pending = head;
    let mut filled = false;
    loop {
        let piece = pieces.next().await.map_err(|stop| (stop, sent))?;
        if let Some(stop) = cancelled() {
            return Err((stop, sent));
        }
        let piece = match piece {
            Some(p) if !filled => {
                pending.payload = p;
                filled = true;
                continue;
            }
            other => other,
        };
        // Send the pending message; END when there is no next piece.
        let end = piece.is_none();
        let next = piece.map(|p| Received {
            url: pending.url.clone(),
            status: pending.status,
            content_type: pending.content_type.clone(),
            payload: p,
            ..Received::default()
        });
        let n = pending.payload.len() as u64;
        let msg = DashMessage {
            stream_id: id,
            end,
            body: wrap(std::mem::replace(&mut pending, next.unwrap_or_default())),
        };
        if !conn.send(&msg).await {
            return Err((Stop::Gone, sent));
        }
        sent += n;
        if end {
            return Ok(sent);
        }
    }
}
