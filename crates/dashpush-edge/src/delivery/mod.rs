//! The push cycle, once for every transport (spec §4–5, §6.2, §7, §8).
//!
//! For a request with a push directive the cycle runs: directive → plan → prefetch → settle
//! (what can be known before the ack is: the parent's status, the route of every push, whether
//! the transport can carry it, bodies already at hand that are not pushable or over the byte
//! cap) → answer head with the truthful ack → promises → parent body → each push sent (or
//! withdrawn with a reason) → accounting. `cycle.rs` runs it; `conn.rs` holds a connection's
//! push state (its planner session, the pushes in flight with their cancel flags); `account.rs`
//! counts every push exactly once as completed, reset (by the client) or dropped (by us), so
//! `promised = completed + reset + dropped` holds however a push or a connection ends.
//!
//! A transport (HTTP/2 server push, the WebSocket sub-protocol, any later one) implements
//! [`PushTransport`] and nothing else of the cycle.

pub(crate) mod account;
pub(crate) mod conn;
pub(crate) mod cycle;
#[cfg(test)]
mod tests;
pub(crate) mod turns;

use dashpush_plan::Push;
use dashpush_proto::PushAck;
use dashpush_proto::http2::RequestPolicy;
use http::{HeaderName, HeaderValue};

use crate::gateway::Body;
use crate::prefetch::Pushable;

/// A downstream transport that can push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// HTTP/2 server push (spec §7).
    H2,
    /// The WebSocket sub-protocol (spec §8), over HTTP/1.1 or HTTP/2 (RFC 8441).
    Ws,
}

impl Transport {
    /// Every transport, for pre-registering metric series.
    pub(crate) const ALL: [Self; 2] = [Self::H2, Self::Ws];

    /// The `transport` metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::H2 => "h2",
            Self::Ws => "ws",
        }
    }
}

/// Why a planned push was not delivered by the gateway (the client refusing it is not a drop:
/// that is a reset). Before the ack it is *withheld* (never promised, the ack does not count
/// it); after the ack it is *dropped* (promised, then withdrawn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The parent request was answered with an error, or its body broke off.
    ParentError,
    /// The pushed URL is served by another origin route than its parent (spec §6.2 rule 2).
    Route,
    /// The transport could not make the promise (push disabled meanwhile, no stream id left).
    PromiseRefused,
    /// The body does not fit under the bytes-in-flight cap (spec §6.2 rule 4).
    ByteCap,
    /// The origin answered another status than 200 (spec §6.2 rule 5).
    OriginStatus,
    /// The origin's 200 may not be cached (`no-store`, `private`, ...; spec §6.2 rule 5).
    Uncacheable,
    /// The origin could not be reached, timed out, or broke off the body.
    OriginError,
    /// A new directive replaced the cycle (spec §4–5).
    Replaced,
}

impl DropReason {
    /// Every reason, for pre-registering metric series.
    pub(crate) const ALL: [Self; 8] = [
        Self::ParentError,
        Self::Route,
        Self::PromiseRefused,
        Self::ByteCap,
        Self::OriginStatus,
        Self::Uncacheable,
        Self::OriginError,
        Self::Replaced,
    ];

    /// The `reason` metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ParentError => "parent_error",
            Self::Route => "route",
            Self::PromiseRefused => "promise_refused",
            Self::ByteCap => "byte_cap",
            Self::OriginStatus => "origin_status",
            Self::Uncacheable => "uncacheable",
            Self::OriginError => "origin_error",
            Self::Replaced => "replaced",
        }
    }
}

/// Why a body being sent stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The client refused it (HTTP/2 `RST_STREAM`, WebSocket Segment cancel).
    Refused,
    /// We withdrew it (its cycle was replaced).
    Replaced,
    /// The origin broke off the body.
    OriginBroke,
    /// The connection or socket went away (or stopped reading).
    Gone,
}

/// How a promised push ends when it is not sent to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Withdrawal {
    /// The client refused it; the transport has nothing more to say on the wire for HTTP/2
    /// (the stream is reset), and ends the stream `cancelled` on WebSocket.
    Refused,
    /// We drop it for this reason (HTTP/2 `RST_STREAM CANCEL`, WebSocket End of stream).
    Dropped(DropReason),
}

/// The head of a parent answer, as the cycle hands it to a transport.
pub(crate) struct AnswerHead {
    /// Status.
    pub(crate) status: u16,
    /// Headers (no `content-length`).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Body length when known.
    pub(crate) content_length: Option<usize>,
    /// The ack (spec §6.1.4); `None` without a directive.
    pub(crate) ack: Option<PushAck>,
    /// True when the body is empty (a HEAD, a 304).
    pub(crate) body_empty: bool,
    /// True when promises follow the head (the parent stays open for them).
    pub(crate) promises_follow: bool,
}

/// The ack of a request whose directive no push cycle can honour (HTTP/1.1, which cannot
/// push; a method other than GET; a request no origin route takes): push-none under the ack
/// header the directive's header calls for (spec §6.1.4, §7.2, Annex E). `None` without a
/// directive.
pub(crate) fn none_ack(policy: &RequestPolicy) -> Option<(HeaderName, HeaderValue)> {
    let RequestPolicy::Directive { header, .. } = policy else {
        return None;
    };
    let value = HeaderValue::from_str(&PushAck::none().to_string()).ok()?;
    Some((HeaderName::from_static(header.ack_name()), value))
}

/// A downstream transport as the push cycle sees it, for one request. HTTP/2 and WebSocket
/// implement it; the cycle calls it in this order: `reserve` per push (before the ack), then
/// `answer_head`, `promise` per reserved push, `answer_body`, and per promised push `send` or
/// `withdraw`; `finish` last. The promised pushes are sent concurrently, in the order their
/// [`turns::Turn`]s give (`send` and `withdraw` take `&self`).
#[async_trait::async_trait]
pub(crate) trait PushTransport: Send + Sync {
    /// A push the transport has room for, not yet announced to the client.
    type Reserved: Send;
    /// A push promised to the client.
    type Promised: Send;

    /// Which transport this is (metric label).
    fn transport(&self) -> Transport;

    /// True when the client lets this connection push at all (HTTP/2 `SETTINGS_ENABLE_PUSH`).
    fn push_allowed(&self) -> bool;

    /// The client's flow-control window for the whole connection against two streams'
    /// windows, which decides whether pushes beyond the two in play may use what is left of
    /// it ([`turns::Play::Spare`]). The default suits a transport without per-stream windows,
    /// whose pushes never block.
    fn connection_window(&self) -> turns::ConnWindow {
        turns::ConnWindow::WithinTwoStreams
    }

    /// Makes room for `push` before the ack is written; an `Err` withholds it.
    fn reserve(&mut self, push: &Push) -> Result<Self::Reserved, DropReason>;

    /// Gives back a reservation that will not be promised.
    fn release(&mut self, reserved: Self::Reserved);

    /// Resolves if the client gives up the request before its answer (HTTP/2 `RST_STREAM`):
    /// the cycle then stops its work at once. The default never resolves.
    async fn parent_gone(&mut self) {
        std::future::pending::<()>().await;
    }

    /// Sends the parent's answer head with the ack (an error status the transport's own way).
    /// `Err` when the client is gone.
    async fn answer_head(&mut self, head: AnswerHead) -> Result<(), Stop>;

    /// Announces a reserved push to the client.
    fn promise(&mut self, reserved: Self::Reserved) -> Result<Self::Promised, DropReason>;

    /// Sends the parent's body; `Ok(bytes)` sent. `Err` when it could not be sent to the end
    /// (the promises made are then dropped if the transport cannot carry them without their
    /// parent).
    async fn answer_body(&mut self, body: Body) -> Result<u64, Stop>;

    /// True when the client already refused this promise.
    fn refused(&self, promised: &mut Self::Promised) -> bool;

    /// Sends a pushed response; `Ok(bytes)` when sent to the end, else why it stopped and the
    /// body bytes sent. `cancelled` is polled between pieces (a replaced cycle, a cancel).
    /// Called when the push has its `turn`; a transport with per-stream flow control reports
    /// the push [`turns::Turn::blocked`] while it waits for its own window, and asks for its
    /// turn again ([`turns::Turn::mine`]) before asking for more.
    async fn send(
        &self,
        promised: Self::Promised,
        push: &Push,
        resp: Pushable,
        cancelled: &(dyn Fn() -> Option<Stop> + Send + Sync),
        turn: &turns::Turn,
    ) -> Result<u64, (Stop, u64)>;

    /// Ends a promised push that will not be sent (further).
    async fn withdraw(&self, promised: Self::Promised, push: &Push, why: Withdrawal);

    /// The cycle is over (WebSocket: End of stream `complete` on the request's stream).
    async fn finish(&mut self);
}
