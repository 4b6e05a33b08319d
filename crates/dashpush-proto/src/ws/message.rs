//! Message codes and messages, spec §8.3 and §8.4.
//!
//! | code | message | direction | metadata | payload |
//! |---|---|---|---|---|
//! | 0x01 | MPD request | C→S | `url`, `push_directive`? | none |
//! | 0x02 | Segment request | C→S | `url`, `push_directive`?, `range`? | none |
//! | 0x03 | MPD received | S→C | `url`, `status`, `content_type`, `content_length`?, `push_ack`? | MPD bytes |
//! | 0x04 | Segment received | S→C | as 0x03, plus `pushed`/`parent` on pushes | segment bytes |
//! | 0x05 | End of stream | S→C | `reason`, `status`?, `detail`? | none |
//! | 0x06 | Segment cancel | C→S | `streams`? and/or `urls`? | none |
//!
//! Metadata is a JSON object; unknown keys are ignored, known keys are type-checked and bounded.
//! It is written with keys in sorted order, so encodings are byte-stable. Directives and acks
//! travel as their §6.1.3 text: judging them is the gateway's business, not the codec's, so a
//! bad directive never makes a message unreadable.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value};
use thiserror::Error;

use super::frame::Frame;
use super::stream::StreamId;
use crate::limits;

/// Message codes of spec §8.3 (values ours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageCode {
    /// 0x01, §8.4.1.
    MpdRequest = 0x01,
    /// 0x02, §8.4.2.
    SegmentRequest = 0x02,
    /// 0x03, §8.4.3.
    MpdReceived = 0x03,
    /// 0x04, §8.4.4.
    SegmentReceived = 0x04,
    /// 0x05, §8.4.5.
    EndOfStream = 0x05,
    /// 0x06, §8.4.6.
    SegmentCancel = 0x06,
}

impl MessageCode {
    /// The code for a byte, if known.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::MpdRequest,
            0x02 => Self::SegmentRequest,
            0x03 => Self::MpdReceived,
            0x04 => Self::SegmentReceived,
            0x05 => Self::EndOfStream,
            0x06 => Self::SegmentCancel,
            _ => return None,
        })
    }

    /// True for messages a client sends; a server receiving any other code answers 400.
    pub fn is_client_to_server(self) -> bool {
        matches!(
            self,
            Self::MpdRequest | Self::SegmentRequest | Self::SegmentCancel
        )
    }

    /// A fixed label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::MpdRequest => "mpd_request",
            Self::SegmentRequest => "segment_request",
            Self::MpdReceived => "mpd_received",
            Self::SegmentReceived => "segment_received",
            Self::EndOfStream => "end_of_stream",
            Self::SegmentCancel => "segment_cancel",
        }
    }
}

/// One typed message with its envelope (stream id and END flag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Last message of its stream.
    pub end: bool,
    /// The message itself.
    pub body: Body,
}

/// The six messages of spec §8.4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// §8.4.1.
    MpdRequest(MpdRequest),
    /// §8.4.2.
    SegmentRequest(SegmentRequest),
    /// §8.4.3.
    MpdReceived(Received),
    /// §8.4.4.
    SegmentReceived(Received),
    /// §8.4.5.
    EndOfStream(EndOfStream),
    /// §8.4.6.
    SegmentCancel(SegmentCancel),
}

/// MPD request (§8.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpdRequest {
    /// The MPD's URL (absolute path or absolute URL).
    pub url: String,
    /// A push directive in §6.1.3 text form.
    pub push_directive: Option<String>,
}

/// Segment request (§8.4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRequest {
    /// The segment's URL.
    pub url: String,
    /// A push directive in §6.1.3 text form.
    pub push_directive: Option<String>,
    /// A byte range of the segment.
    pub range: Option<ByteRange>,
}

/// MPD received (§8.4.3) and Segment received (§8.4.4): a resource, or a piece of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The resource's URL.
    pub url: String,
    /// HTTP status of the resource.
    pub status: u16,
    /// Its media type.
    pub content_type: String,
    /// Its full length, when known up front.
    pub content_length: Option<u64>,
    /// The push ack (§6.1.4 text) on the answer to a request that carried a directive.
    pub push_ack: Option<String>,
    /// True on the first message of a pushed resource.
    pub pushed: bool,
    /// The request stream a push belongs to.
    pub parent: Option<StreamId>,
    /// The resource bytes (or this piece of them).
    pub payload: Bytes,
}

/// Why a stream ended (§8.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The request and every push it started are done.
    Complete,
    /// The stream was cancelled.
    Cancelled,
    /// The request failed; see `status` and `detail`.
    Error,
}

/// End of stream (§8.4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndOfStream {
    /// Why the stream ended.
    pub reason: EndReason,
    /// An HTTP status describing an error.
    pub status: Option<u16>,
    /// A short human-readable explanation.
    pub detail: Option<String>,
}

/// Segment cancel (§8.4.6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentCancel {
    /// Streams to cancel.
    pub streams: Vec<StreamId>,
    /// URLs whose pushes to cancel.
    pub urls: Vec<String>,
}

/// An inclusive byte range `first-last`, or `first-` to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte, inclusive; `None` for "to the end".
    pub last: Option<u64>,
}

/// A readable frame with an unusable message. Answered with End of stream `error` and
/// [`MessageError::status`] on `stream_id`; the socket stays open (spec §8.4).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("stream {stream_id}: {kind}")]
pub struct MessageError {
    /// The stream the bad message came on.
    pub stream_id: StreamId,
    /// What is wrong with it.
    pub kind: MessageErrorKind,
}

/// What is wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MessageErrorKind {
    /// The message code is not one of §8.3.
    #[error("unknown message code {0:#04x}")]
    UnknownCode(u8),
    /// The metadata is not a UTF-8 JSON object.
    #[error("metadata is not a JSON object: {0}")]
    InvalidMetadata(String),
    /// A required key is missing.
    #[error("metadata lacks `{0}`")]
    MissingField(&'static str),
    /// A key has the wrong type or is out of bounds.
    #[error("metadata key `{field}` is invalid: {why}")]
    InvalidField {
        /// The key.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// A message that carries no payload has one.
    #[error("message carries an unexpected payload")]
    UnexpectedPayload,
    /// The encoded metadata would exceed [`limits::MAX_WS_METADATA`] (encoding only).
    #[error("metadata of {len} bytes over the {max}-byte cap")]
    MetadataTooLarge {
        /// The encoded length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

impl MessageError {
    /// The status of the End of stream that answers it.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Longest `content_type`.
const MAX_CONTENT_TYPE_LEN: usize = 256;

impl Body {
    /// The message code.
    pub fn code(&self) -> MessageCode {
        match self {
            Self::MpdRequest(_) => MessageCode::MpdRequest,
            Self::SegmentRequest(_) => MessageCode::SegmentRequest,
            Self::MpdReceived(_) => MessageCode::MpdReceived,
            Self::SegmentReceived(_) => MessageCode::SegmentReceived,
            Self::EndOfStream(_) => MessageCode::EndOfStream,
            Self::SegmentCancel(_) => MessageCode::SegmentCancel,
        }
    }
}

impl Message {
    /// Interprets a frame.
    pub fn from_frame(frame: Frame) -> Result<Self, MessageError> {
        let stream_id = frame.stream_id;
        let err = |kind| MessageError { stream_id, kind };
        let code = MessageCode::from_u8(frame.code)
            .ok_or_else(|| err(MessageErrorKind::UnknownCode(frame.code)))?;
        let mut meta = Meta::parse(&frame.metadata).map_err(err)?;
        let carries_payload = matches!(
            code,
            MessageCode::MpdReceived | MessageCode::SegmentReceived
        );
        if !carries_payload && !frame.payload.is_empty() {
            return Err(err(MessageErrorKind::UnexpectedPayload));
        }
        let body = match code {
            MessageCode::MpdRequest => Body::MpdRequest(MpdRequest {
                url: meta.url().map_err(err)?,
                push_directive: meta
                    .opt_str("push_directive", limits::MAX_HEADER_LEN)
                    .map_err(err)?,
            }),
            MessageCode::SegmentRequest => Body::SegmentRequest(SegmentRequest {
                url: meta.url().map_err(err)?,
                push_directive: meta
                    .opt_str("push_directive", limits::MAX_HEADER_LEN)
                    .map_err(err)?,
                range: meta
                    .opt_str("range", 64)
                    .map_err(err)?
                    .map(|r| ByteRange::parse(&r))
                    .transpose()
                    .map_err(err)?,
            }),
            MessageCode::MpdReceived => {
                Body::MpdReceived(meta.received(frame.payload).map_err(err)?)
            }
            MessageCode::SegmentReceived => {
                Body::SegmentReceived(meta.received(frame.payload).map_err(err)?)
            }
            MessageCode::EndOfStream => Body::EndOfStream(meta.end_of_stream().map_err(err)?),
            MessageCode::SegmentCancel => Body::SegmentCancel(meta.cancel().map_err(err)?),
        };
        Ok(Self {
            stream_id,
            end: frame.end,
            body,
        })
    }

    /// Builds the frame; fails only if the metadata would exceed its cap.
    pub fn to_frame(&self) -> Result<Frame, MessageError> {
        let mut m = Map::new();
        let mut payload = Bytes::new();
        // Keys are inserted in sorted order, so the encoding is the same whether or not
        // serde_json's `preserve_order` feature is enabled somewhere in the build.
        match &self.body {
            Body::MpdRequest(r) => {
                put_opt(&mut m, "push_directive", r.push_directive.clone());
                m.insert("url".into(), r.url.clone().into());
            }
            Body::SegmentRequest(r) => {
                put_opt(&mut m, "push_directive", r.push_directive.clone());
                put_opt(&mut m, "range", r.range.map(|r| r.to_string()));
                m.insert("url".into(), r.url.clone().into());
            }
            Body::MpdReceived(r) | Body::SegmentReceived(r) => {
                put_opt(&mut m, "content_length", r.content_length);
                m.insert("content_type".into(), r.content_type.clone().into());
                put_opt(&mut m, "parent", r.parent.map(StreamId::get));
                put_opt(&mut m, "push_ack", r.push_ack.clone());
                if r.pushed {
                    m.insert("pushed".into(), true.into());
                }
                m.insert("status".into(), r.status.into());
                m.insert("url".into(), r.url.clone().into());
                payload = r.payload.clone();
            }
            Body::EndOfStream(e) => {
                put_opt(&mut m, "detail", e.detail.clone());
                m.insert("reason".into(), e.reason.as_str().into());
                put_opt(&mut m, "status", e.status);
            }
            Body::SegmentCancel(c) => {
                if !c.streams.is_empty() {
                    let ids: Vec<Value> = c.streams.iter().map(|s| s.get().into()).collect();
                    m.insert("streams".into(), ids.into());
                }
                if !c.urls.is_empty() {
                    m.insert("urls".into(), c.urls.clone().into());
                }
            }
        }
        let metadata = Value::Object(m).to_string();
        if metadata.len() > limits::MAX_WS_METADATA {
            return Err(MessageError {
                stream_id: self.stream_id,
                kind: MessageErrorKind::MetadataTooLarge {
                    len: metadata.len(),
                    max: limits::MAX_WS_METADATA,
                },
            });
        }
        Ok(Frame {
            code: self.body.code() as u8,
            end: self.end,
            stream_id: self.stream_id,
            metadata: Bytes::from(metadata),
            payload,
        })
    }

    /// Encodes to the bytes of one WebSocket binary message.
    pub fn encode(&self) -> Result<Bytes, MessageError> {
        self.to_frame().map(|f| f.encode())
    }
}

fn put_opt<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

impl EndReason {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }
}

impl ByteRange {
    /// Parses `first-last` or `first-`.
    pub fn parse(s: &str) -> Result<Self, MessageErrorKind> {
        let bad = MessageErrorKind::InvalidField {
            field: "range",
            why: "expected `first-last` or `first-` with last >= first",
        };
        let (first, last) = s.split_once('-').ok_or(bad.clone())?;
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse::<u64>().ok()
        };
        let first = num(first).ok_or(bad.clone())?;
        let last = match last {
            "" => None,
            l => Some(num(l).filter(|&l| l >= first).ok_or(bad)?),
        };
        Ok(Self { first, last })
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(last) => write!(f, "{}-{last}", self.first),
            None => write!(f, "{}-", self.first),
        }
    }
}

/// Metadata being read, key by key.
struct Meta(Map<String, Value>);

impl Meta {
    fn parse(bytes: &[u8]) -> Result<Self, MessageErrorKind> {
        if bytes.is_empty() {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Ok(Self(m)),
            Ok(_) => Err(MessageErrorKind::InvalidMetadata("not an object".into())),
            Err(e) => Err(MessageErrorKind::InvalidMetadata(e.to_string())),
        }
    }

    fn opt_str(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<String>, MessageErrorKind> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
            Some(Value::String(_)) => Err(MessageErrorKind::InvalidField {
                field,
                why: "too long",
            }),
            Some(_) => Err(MessageErrorKind::InvalidField {
                field,
                why: "not a string",
            }),
        }
    }

    fn req_str(&mut self, field: &'static str, max: usize) -> Result<String, MessageErrorKind> {
        self.opt_str(field, max)?
            .ok_or(MessageErrorKind::MissingField(field))
    }

    fn url(&mut self) -> Result<String, MessageErrorKind> {
        let url = self.req_str("url", limits::MAX_URL_LEN)?;
        if url.is_empty() {
            return Err(MessageErrorKind::InvalidField {
                field: "url",
                why: "empty",
            });
        }
        Ok(url)
    }

    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, MessageErrorKind> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(MessageErrorKind::InvalidField {
                field,
                why: "not an unsigned integer",
            }),
        }
    }

    fn opt_status(&mut self) -> Result<Option<u16>, MessageErrorKind> {
        let bad = MessageErrorKind::InvalidField {
            field: "status",
            why: "not an HTTP status 100-599",
        };
        match self.opt_u64("status") {
            Ok(None) => Ok(None),
            Ok(Some(s)) if (100..=599).contains(&s) => Ok(u16::try_from(s).ok()),
            _ => Err(bad),
        }
    }

    fn received(&mut self, payload: Bytes) -> Result<Received, MessageErrorKind> {
        let url = self.url()?;
        let status = self
            .opt_status()?
            .ok_or(MessageErrorKind::MissingField("status"))?;
        let content_type = self.req_str("content_type", MAX_CONTENT_TYPE_LEN)?;
        let content_length = self.opt_u64("content_length")?;
        let push_ack = self.opt_str("push_ack", limits::MAX_HEADER_LEN)?;
        let pushed = match self.0.remove("pushed") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                return Err(MessageErrorKind::InvalidField {
                    field: "pushed",
                    why: "not a boolean",
                });
            }
        };
        let parent = match self.opt_u64("parent")? {
            None => None,
            Some(p) => Some(u32::try_from(p).ok().and_then(StreamId::new).ok_or(
                MessageErrorKind::InvalidField {
                    field: "parent",
                    why: "not a stream id",
                },
            )?),
        };
        Ok(Received {
            url,
            status,
            content_type,
            content_length,
            push_ack,
            pushed,
            parent,
            payload,
        })
    }

    fn end_of_stream(&mut self) -> Result<EndOfStream, MessageErrorKind> {
        let reason = match self.req_str("reason", 16)?.as_str() {
            "complete" => EndReason::Complete,
            "cancelled" => EndReason::Cancelled,
            "error" => EndReason::Error,
            _ => {
                return Err(MessageErrorKind::InvalidField {
                    field: "reason",
                    why: "not complete, cancelled or error",
                });
            }
        };
        Ok(EndOfStream {
            reason,
            status: self.opt_status()?,
            detail: self.opt_str("detail", limits::MAX_WS_DETAIL_LEN)?,
        })
    }

    fn cancel(&mut self) -> Result<SegmentCancel, MessageErrorKind> {
        let list =
            |v: Option<Value>, field: &'static str| -> Result<Vec<Value>, MessageErrorKind> {
                match v {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(a)) if a.len() <= limits::MAX_WS_CANCEL_ENTRIES => Ok(a),
                    Some(Value::Array(_)) => Err(MessageErrorKind::InvalidField {
                        field,
                        why: "too many entries",
                    }),
                    Some(_) => Err(MessageErrorKind::InvalidField {
                        field,
                        why: "not an array",
                    }),
                }
            };
        let streams = list(self.0.remove("streams"), "streams")?
            .into_iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .and_then(StreamId::new)
                    .ok_or(MessageErrorKind::InvalidField {
                        field: "streams",
                        why: "not a stream id",
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let urls = list(self.0.remove("urls"), "urls")?
            .into_iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() && s.len() <= limits::MAX_URL_LEN => Ok(s),
                _ => Err(MessageErrorKind::InvalidField {
                    field: "urls",
                    why: "not a URL string",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SegmentCancel { streams, urls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    fn raw(code: u8, meta: &str, payload: &[u8]) -> Frame {
        Frame {
            code,
            end: true,
            stream_id: sid(1),
            metadata: Bytes::copy_from_slice(meta.as_bytes()),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn kind(code: u8, meta: &str, payload: &[u8]) -> MessageErrorKind {
        Message::from_frame(raw(code, meta, payload))
            .unwrap_err()
            .kind
    }

    #[test]
    fn annex_d_mpd_request() {
        let m = Message::from_frame(raw(
            1,
            r#"{"url":"/vod/manifest.mpd","push_directive":"urn:mpeg:dash:fdh:2016:push-fast-start"}"#,
            b"",
        ))
        .unwrap();
        assert_eq!(
            m.body,
            Body::MpdRequest(MpdRequest {
                url: "/vod/manifest.mpd".into(),
                push_directive: Some("urn:mpeg:dash:fdh:2016:push-fast-start".into()),
            })
        );
        assert!(m.body.code().is_client_to_server());
    }

    #[test]
    fn unknown_keys_ignored_and_nulls_absent() {
        let m = Message::from_frame(raw(
            2,
            r#"{"url":"s.m4s","range":null,"x":[1,{"y":2}]}"#,
            b"",
        ))
        .unwrap();
        assert_eq!(
            m.body,
            Body::SegmentRequest(SegmentRequest {
                url: "s.m4s".into(),
                push_directive: None,
                range: None
            })
        );
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(
            ByteRange::parse("0-1023"),
            Ok(ByteRange {
                first: 0,
                last: Some(1023)
            })
        );
        assert_eq!(
            ByteRange::parse("500-"),
            Ok(ByteRange {
                first: 500,
                last: None
            })
        );
        for bad in ["", "-5", "5", "9-3", "a-b", "1-2-3", " 1-2"] {
            assert!(ByteRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_level_errors_are_typed() {
        use MessageErrorKind as K;
        assert_eq!(kind(0x07, "{}", b""), K::UnknownCode(7));
        assert_eq!(kind(0x00, "{}", b""), K::UnknownCode(0));
        assert!(matches!(kind(1, "{", b""), K::InvalidMetadata(_)));
        assert!(matches!(kind(1, "[1]", b""), K::InvalidMetadata(_)));
        assert!(matches!(kind(1, "\u{0}", b""), K::InvalidMetadata(_)));
        assert_eq!(kind(1, "", b""), K::MissingField("url"));
        assert_eq!(kind(1, "{}", b""), K::MissingField("url"));
        assert_eq!(
            kind(1, r#"{"url":""}"#, b""),
            K::InvalidField {
                field: "url",
                why: "empty"
            }
        );
        assert_eq!(
            kind(1, r#"{"url":7}"#, b""),
            K::InvalidField {
                field: "url",
                why: "not a string"
            }
        );
        assert_eq!(kind(1, r#"{"url":"a"}"#, b"x"), K::UnexpectedPayload);
        assert!(matches!(
            kind(2, r#"{"url":"a","range":"x"}"#, b""),
            K::InvalidField { field: "range", .. }
        ));
        assert_eq!(
            kind(4, r#"{"url":"a","content_type":"v"}"#, b""),
            K::MissingField("status")
        );
        assert!(matches!(
            kind(4, r#"{"url":"a","status":99,"content_type":"v"}"#, b""),
            K::InvalidField {
                field: "status",
                ..
            }
        ));
        assert!(matches!(
            kind(
                4,
                r#"{"url":"a","status":200,"content_type":"v","parent":0}"#,
                b""
            ),
            K::InvalidField {
                field: "parent",
                ..
            }
        ));
        assert!(matches!(
            kind(
                4,
                r#"{"url":"a","status":200,"content_type":"v","pushed":1}"#,
                b""
            ),
            K::InvalidField {
                field: "pushed",
                ..
            }
        ));
        assert!(matches!(
            kind(5, r#"{"reason":"bored"}"#, b""),
            K::InvalidField {
                field: "reason",
                ..
            }
        ));
        assert_eq!(kind(5, "{}", b""), K::MissingField("reason"));
        assert!(matches!(
            kind(6, r#"{"streams":[0]}"#, b""),
            K::InvalidField {
                field: "streams",
                ..
            }
        ));
        assert!(matches!(
            kind(6, r#"{"urls":"a"}"#, b""),
            K::InvalidField { field: "urls", .. }
        ));
        let many: Vec<String> = (0..257).map(|i| (2 * i + 1).to_string()).collect();
        assert!(matches!(
            kind(6, &format!(r#"{{"streams":[{}]}}"#, many.join(",")), b""),
            K::InvalidField {
                field: "streams",
                why: "too many entries"
            }
        ));
        let err = Message::from_frame(raw(9, "{}", b"")).unwrap_err();
        assert_eq!((err.stream_id, err.status()), (sid(1), 400));
    }

    #[test]
    fn oversize_metadata_refused_on_encode() {
        let m = Message {
            stream_id: sid(1),
            end: true,
            body: Body::SegmentCancel(SegmentCancel {
                streams: vec![],
                urls: vec!["u".repeat(2000); 10],
            }),
        };
        assert!(matches!(
            m.encode().unwrap_err().kind,
            MessageErrorKind::MetadataTooLarge { max: 16384, .. }
        ));
    }
}
