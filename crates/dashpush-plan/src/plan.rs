//! What goes into the planner (a request and its directive) and what comes out (a [`Plan`]).

use chrono::{DateTime, Utc};
use dashpush_proto::http2::RequestPolicy;
use dashpush_proto::{DirectiveError, PushAck, PushDirective, PushType};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};
use url::Url;

use crate::ack::AckBasis;

/// The push directive of one request, as the edge read it (spec §6.1.3, §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectiveInput {
    /// No directive: plain pull, no ack (spec §4–5).
    Absent,
    /// A well-formed directive (possibly of an unknown push type).
    Parsed(PushDirective),
    /// A directive header that does not parse; answered with a push-none ack (spec §6.1.4).
    Malformed(DirectiveError),
}

impl From<Result<PushDirective, DirectiveError>> for DirectiveInput {
    fn from(r: Result<PushDirective, DirectiveError>) -> Self {
        match r {
            Ok(d) => Self::Parsed(d),
            Err(e) => Self::Malformed(e),
        }
    }
}

impl From<&RequestPolicy> for DirectiveInput {
    /// `Absent` and `Ignored` (generic draft tokens, spec §7.1) both mean no directive.
    fn from(p: &RequestPolicy) -> Self {
        match p {
            RequestPolicy::Absent | RequestPolicy::Ignored => Self::Absent,
            RequestPolicy::Directive { directive, .. } => directive.clone().into(),
        }
    }
}

/// One downstream request, as the planner sees it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The absolute URL the client asked for (scheme and authority as the client sent them).
    pub url: &'a Url,
    /// Its push directive.
    pub directive: DirectiveInput,
    /// True when this connection can push: HTTP/2 with the client's `SETTINGS_ENABLE_PUSH` not
    /// 0, or the WebSocket sub-protocol (spec §7, §8). False answers any directive push-none.
    pub push_allowed: bool,
    /// The bytes the connection can take within its push buffer at the rate it has recently
    /// drained (measured by the edge); `None` when not known yet. Pushes in flight, estimated
    /// from each Representation's `@bandwidth` and segment duration, stay within it, except a
    /// first push when nothing is in flight.
    pub byte_budget: Option<u64>,
}

/// What a pushed resource is in the MPD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// The MPD itself.
    Mpd,
    /// An initialization segment.
    Init,
    /// A media segment.
    Media,
    /// A same-origin URL the MPD does not address (only with `allow_outside_mpd`).
    Other,
}

/// One resource to promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Push {
    /// Its URL: same scheme, host and port as the request that carried the directive.
    #[serde(serialize_with = "as_str")]
    pub url: Url,
    /// What it is.
    pub kind: PushKind,
    /// Live: the segment's availability start when that is still in the future at planning
    /// time; the edge sends it then (spec §6.2). `None`: send now.
    pub not_before: Option<DateTime<Utc>>,
    /// Live: the end of the segment's availability slot (its availability start plus its
    /// duration). The edge retries a transient origin failure until then (spec §7.3 (ours));
    /// `None` for a static MPD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_until: Option<DateTime<Utc>>,
}

/// Why a directive was not honoured. Every rejection is acked `push-none` and the request is
/// served normally (spec §6.1.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The directive does not parse.
    Malformed(DirectiveError),
    /// A well-formed push-type URN with a token this implementation does not know.
    UnknownType(String),
    /// The connection cannot push (`SETTINGS_ENABLE_PUSH = 0`, HTTP/1.1 without WebSocket).
    PushDisabled,
    /// No known MPD addresses the request URL.
    NoManifest,
    /// The request URL belongs to a known MPD's origin but is no segment of it, so there is
    /// no "next" to push.
    NotInMpd,
    /// `push-fast-start` on a request that is not for an MPD (spec §6.2 table).
    FastStartOnSegment,
}

impl RejectReason {
    /// Every label [`RejectReason::label`] can return, for pre-registering metric series.
    pub const LABELS: [&'static str; 6] = [
        "malformed",
        "unknown_type",
        "push_disabled",
        "no_manifest",
        "not_in_mpd",
        "fast_start_on_segment",
    ];

    /// A short, fixed label for a metric (the finer parse error is in
    /// [`DirectiveError::reason`]).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownType(_) => "unknown_type",
            Self::PushDisabled => "push_disabled",
            Self::NoManifest => "no_manifest",
            Self::NotInMpd => "not_in_mpd",
            Self::FastStartOnSegment => "fast_start_on_segment",
        }
    }
}

/// How the request's directive was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request carried no directive.
    NoDirective,
    /// The directive was honoured; the push type is the one actually applied, as in the ack
    /// (`PushType::None` when nothing could be granted or push-none was asked for).
    Accepted(PushType),
    /// The directive was not honoured; acked push-none.
    Rejected(RejectReason),
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Outcome", 2)?;
        match self {
            Self::NoDirective => {
                st.serialize_field("result", "no_directive")?;
                st.skip_field("detail")?;
            }
            Self::Accepted(t) => {
                st.serialize_field("result", "accepted")?;
                st.serialize_field("detail", t.token())?;
            }
            Self::Rejected(r) => {
                st.serialize_field("result", "rejected")?;
                st.serialize_field("detail", r.label())?;
            }
        }
        st.end()
    }
}

/// The planner's decision for one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The push acknowledgement (spec §6.1.4): `None` only when the request had no directive.
    #[serde(serialize_with = "ack_as_str")]
    pub ack: Option<PushAck>,
    /// What to promise, in push order.
    pub pushes: Vec<Push>,
    /// Pushes of a replaced or ended cycle that are promised but not finished: the edge resets
    /// them (HTTP/2 `RST_STREAM` `CANCEL`, WebSocket End of stream `cancelled`). They are no
    /// longer in flight for the planner and are never pushed again on this connection.
    #[serde(serialize_with = "urls_as_str")]
    pub cancel: Vec<Url>,
    /// How the directive was handled.
    pub outcome: Outcome,
    /// URLs the directive asked for (or implied) that the safety rules or caps left out.
    pub dropped: usize,
    /// What the ack was computed from, so that promises taken back before the ack is written
    /// give a truthful ack ([`crate::Session::withhold`]).
    #[serde(skip)]
    pub(crate) basis: AckBasis,
}

impl Plan {
    /// The plan for a request without a directive.
    pub(crate) fn no_directive() -> Self {
        Self {
            ack: None,
            pushes: Vec::new(),
            cancel: Vec::new(),
            outcome: Outcome::NoDirective,
            dropped: 0,
            basis: AckBasis::default(),
        }
    }

    /// The plan for a directive that is not honoured.
    pub(crate) fn rejected(reason: RejectReason) -> Self {
        Self {
            ack: Some(PushAck::none()),
            outcome: Outcome::Rejected(reason),
            ..Self::no_directive()
        }
    }
}

fn as_str<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(url.as_str())
}

fn urls_as_str<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(Url::as_str))
}

fn ack_as_str<S: Serializer>(ack: &Option<PushAck>, s: S) -> Result<S::Ok, S::Error> {
    match ack {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}
