//! The plain HTTP/1.1 exchange, without pingora's session: a `GET` or `HEAD` whose whole head
//! came in one read and asks for nothing but an answer (no body, no upgrade, no `Expect`, no
//! absolute-form target, one `Host`). Such a head is parsed here once into the gateway's
//! [`Req`], and the answer's head is written here straight from the gateway's [`Resp`]; every
//! other head goes to pingora's session, which reads bodies, upgrades and odd framing.
//!
//! Why: a cached HTTP/1.1 answer through pingora's session built a request header map, a case
//! map, a response header map and a session per request (about 19,000 of 31,000 instructions,
//! callgrind). The head on the wire is the one pingora's session writes ([`write_head`]; a
//! unit test in `h1` compares the two), but for repeated fields whose names are not adjacent,
//! which stay where the gateway put them. The framing rule ([`Framing::of`]) is the one both
//! writers use.
//!
//! No I/O here: the parser takes bytes, the writers append to a buffer.

use bytes::BytesMut;
use http::{HeaderName, HeaderValue, Method, header};

use crate::gateway::{Body, Resp};

/// At most this many fields in a plain head; a head with more goes to pingora's session
/// (which allows 256).
const FIELDS: usize = 32;

/// A request head the plain exchange answers.
#[derive(Debug)]
pub(crate) struct Plain {
    /// `GET` or `HEAD`.
    pub(crate) method: Method,
    /// The origin-form target (path and query).
    pub(crate) path: String,
    /// The fields, in the order they came.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The one `Host` field, if sent.
    pub(crate) host: Option<String>,
    /// The client asked to close after this answer (`Connection: close`).
    pub(crate) close: bool,
}

impl Plain {
    /// The answer carries no body (`HEAD`).
    pub(crate) fn head_only(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Why a head is left to pingora's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotPlain {
    /// The head has not arrived whole in this read.
    Partial,
    /// httparse refused it (pingora decides: escape the target, or answer 400).
    Malformed,
    /// More than [`FIELDS`] fields.
    ManyFields,
    /// Bytes after the head (a body or a pipelined request).
    Trailing,
    /// Not `GET` or `HEAD`.
    Method,
    /// Not HTTP/1.1.
    Version,
    /// Not an origin-form target of plain characters.
    Target,
    /// `Content-Length` or `Transfer-Encoding`: a body to read.
    Framing,
    /// `Upgrade`, `Expect`, or a `Connection` other than `close` or `keep-alive`.
    Negotiation,
    /// No single plain `Host` (two, or userinfo in it, or not text).
    Host,
    /// A field name or value the `http` crate refuses.
    Field,
}

/// Where one field of the head lies in the buffer.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// The plain request in `buf`, which must hold exactly one whole head; otherwise the reason
/// and the buffer, untouched, for pingora's session.
pub(crate) fn parse(buf: BytesMut) -> Result<Plain, (NotPlain, BytesMut)> {
    let Scan {
        method,
        target,
        spans,
        count,
    } = match scan(&buf) {
        Ok(s) => s,
        Err(why) => return Err((why, buf)),
    };
    let bytes = buf.freeze();
    let mut headers = Vec::with_capacity(count);
    let mut host = None;
    let mut close = false;
    for span in &spans[..count] {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&bytes[span.name.0..span.name.1]),
            HeaderValue::from_maybe_shared(bytes.slice(span.value.0..span.value.1)),
        ) else {
            return Err((NotPlain::Field, BytesMut::from(&bytes[..])));
        };
        if name == header::HOST {
            match value.to_str() {
                Ok(h) if host.is_none() && !h.contains('@') => host = Some(h.to_owned()),
                _ => return Err((NotPlain::Host, BytesMut::from(&bytes[..]))),
            }
        } else if name == header::CONNECTION {
            close |= value.as_bytes().eq_ignore_ascii_case(b"close");
        }
        headers.push((name, value));
    }
    let path = match std::str::from_utf8(&bytes[target.0..target.1]) {
        Ok(p) => p.to_owned(),
        Err(_) => return Err((NotPlain::Target, BytesMut::from(&bytes[..]))),
    };
    Ok(Plain {
        method,
        path,
        headers,
        host,
        close,
    })
}

/// A plain head found in a buffer: where its parts lie.
struct Scan {
    method: Method,
    target: (usize, usize),
    spans: [Span; FIELDS],
    /// How many of `spans` are fields.
    count: usize,
}

/// The one plain head in `buf`.
fn scan(buf: &[u8]) -> Result<Scan, NotPlain> {
    let mut fields = [httparse::EMPTY_HEADER; FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(NotPlain::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(NotPlain::ManyFields),
        Err(_) => return Err(NotPlain::Malformed),
    };
    if end != buf.len() {
        return Err(NotPlain::Trailing);
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Err(NotPlain::Method),
    };
    if req.version != Some(1) {
        return Err(NotPlain::Version);
    }
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') || !target.bytes().all(plain_target_byte) {
        return Err(NotPlain::Target);
    }
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let mut spans = [Span::default(); FIELDS];
    for (span, f) in spans.iter_mut().zip(req.headers.iter()) {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            return Err(NotPlain::Framing);
        }
        let negotiates = name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || (name.eq_ignore_ascii_case(b"connection")
                && !f.value.eq_ignore_ascii_case(b"close")
                && !f.value.eq_ignore_ascii_case(b"keep-alive"));
        if negotiates {
            return Err(NotPlain::Negotiation);
        }
        *span = Span {
            name: at(name),
            value: at(f.value),
        };
    }
    Ok(Scan {
        method,
        target: at(target.as_bytes()),
        spans,
        count: req.headers.len(),
    })
}

/// A byte an origin-form target may carry as it is (RFC 3986 unreserved, sub-delims, `:`,
/// `@`, `/`, `?` and `%`); a target with any other goes to pingora's session, which escapes or
/// refuses it.
fn plain_target_byte(b: u8) -> bool {
    PLAIN_TARGET[usize::from(b)]
}

/// [`plain_target_byte`] as a table (one load per byte of a target).
const PLAIN_TARGET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// How an HTTP/1.1 answer's body is framed: the one rule for both writers (this module's, and
/// the head handed to pingora's session, `h1::response_head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No framing field and no body: a 1xx, 204 or 304 (RFC 9110 §8.6, RFC 9112 §6.1).
    None,
    /// `Content-Length`: this many bytes follow (none for a `HEAD`, which keeps the length a
    /// `GET` would have, RFC 9110 §9.3.2).
    Length(usize),
    /// `Transfer-Encoding: chunked`: a streamed body, which leaves chunk by chunk as the origin
    /// sends it even when its length is known, or a body whose length is not known (a `HEAD`
    /// answered from an origin that sent none).
    Chunked,
}

impl Framing {
    /// How `resp` is framed.
    pub(crate) fn of(resp: &Resp) -> Self {
        match (resp.status, &resp.body) {
            (100..=199 | 204 | 304, _) => Self::None,
            (_, Body::Stream(_)) => Self::Chunked,
            (_, Body::Full(_)) => resp.content_length.map_or(Self::Chunked, Self::Length),
        }
    }

    /// The field that says so, if any.
    pub(crate) fn field(self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Self::None => None,
            Self::Length(n) => Some((header::CONTENT_LENGTH, HeaderValue::from(n))),
            Self::Chunked => Some((
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            )),
        }
    }
}

/// The status is not a three-digit HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("status {0} is not an HTTP status")]
pub(crate) struct BadStatus(pub(crate) u16);

/// Appends the head of `resp` to `out` and says how its body is framed ([`Framing::of`]).
/// As pingora's session writes the head it is handed: the status line, the fields in the
/// order given with `Date` set to now where the gateway's was, the framing field, `Date` now
/// if the gateway gave none, `Connection` last. One difference: repeated fields whose names
/// are not adjacent stay where the gateway put them (pingora's header map groups them).
pub(crate) fn write_head(
    resp: &Resp,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> Result<Framing, BadStatus> {
    let status = http::StatusCode::from_u16(resp.status).map_err(|_| BadStatus(resp.status))?;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let date = pingora::protocols::http::date::get_cached_date();
    let mut dated = false;
    for (name, value) in &resp.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        if name == header::DATE {
            if !dated {
                field(out, "Date", date.as_bytes());
                dated = true;
            }
            continue;
        }
        field(out, wire_name(name), value.as_bytes());
    }
    let framing = Framing::of(resp);
    match framing {
        Framing::None => {}
        Framing::Length(n) => field(
            out,
            "Content-Length",
            itoa::Buffer::new().format(n).as_bytes(),
        ),
        Framing::Chunked => field(out, "Transfer-Encoding", b"chunked"),
    }
    if !dated {
        field(out, "Date", date.as_bytes());
    }
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    field(out, "Connection", connection);
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

/// The line that opens a chunk of `len` bytes.
pub(crate) fn chunk_start(len: usize) -> Vec<u8> {
    format!("{len:X}\r\n").into_bytes()
}

/// What closes a chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk, with no trailers: the end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A field's name as it goes on the wire: the names pingora's session title-cases
/// (`titled_header_name_str` in pingora-http, private to it: keep this list the same)
/// title-cased, so an answer reads the same whichever path wrote it; others as they are.
fn wire_name(name: &HeaderName) -> &str {
    match *name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        _ => name.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn plain(head: &str) -> Result<Plain, NotPlain> {
        parse(BytesMut::from(head)).map_err(|(why, back)| {
            assert_eq!(
                &back[..],
                head.as_bytes(),
                "the buffer comes back untouched"
            );
            why
        })
    }

    #[test]
    fn a_plain_get_is_read_whole() {
        let p = plain(
            "GET /vod/seg-1.m4s?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\
             Connection: keep-alive\r\nX-Two: a\r\nX-Two: b\r\n\r\n",
        )
        .unwrap();
        assert_eq!(p.method, Method::GET);
        assert_eq!(p.path, "/vod/seg-1.m4s?x=1");
        assert_eq!(p.host.as_deref(), Some("example.com:8080"));
        assert!(!p.close);
        assert!(!p.head_only());
        let names: Vec<_> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "accept", "connection", "x-two", "x-two"]);
        assert_eq!(p.headers[4].1, "b");
    }

    #[test]
    fn any_close_among_connection_fields_closes() {
        let p =
            plain("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").unwrap();
        assert!(p.close);
    }

    #[test]
    fn bare_line_feeds_are_read_as_pingora_reads_them() {
        let p = plain("GET /a HTTP/1.1\nHost: h\n\n").unwrap();
        assert_eq!((p.path.as_str(), p.host.as_deref()), ("/a", Some("h")));
    }

    #[test]
    fn head_and_close_are_noted() {
        let p = plain("HEAD / HTTP/1.1\r\nconnection: Close\r\n\r\n").unwrap();
        assert!(p.head_only());
        assert!(p.close);
        assert_eq!(p.host, None);
    }

    #[test]
    fn anything_else_goes_to_the_session() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\n", NotPlain::Partial),
            (
                "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                NotPlain::Trailing,
            ),
            ("GE T / HTTP/1.1\r\n\r\n", NotPlain::Malformed),
            ("POST / HTTP/1.1\r\nHost: a\r\n\r\n", NotPlain::Method),
            ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", NotPlain::Version),
            (
                "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
                NotPlain::Target,
            ),
            ("GET * HTTP/1.1\r\n\r\n", NotPlain::Target),
            ("GET /a\"b HTTP/1.1\r\n\r\n", NotPlain::Target),
            (
                "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                NotPlain::Framing,
            ),
            (
                "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                NotPlain::Framing,
            ),
            (
                "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                NotPlain::Negotiation,
            ),
            (
                "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
                NotPlain::Negotiation,
            ),
            (
                "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
                NotPlain::Negotiation,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                NotPlain::Host,
            ),
            ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", NotPlain::Host),
            ("GET / HTTP/1.1\r\nHost: é\r\n\r\n", NotPlain::Host),
            (
                "GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n",
                NotPlain::Negotiation,
            ),
            // obs-fold and a space before the colon: refused by httparse, as by pingora.
            (
                "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
                NotPlain::Malformed,
            ),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", NotPlain::Malformed),
        ];
        for (head, why) in cases {
            assert_eq!(plain(head).unwrap_err(), why, "{head:?}");
        }
        let many: String = (0..=FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            plain(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            NotPlain::ManyFields
        );
        let enough: String = (0..FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            plain(&format!("GET / HTTP/1.1\r\n{enough}\r\n"))
                .unwrap()
                .headers
                .len(),
            FIELDS
        );
    }

    fn resp(status: u16, body: Body, len: Option<usize>) -> Resp {
        let f = |n: &'static str, v: &'static str| {
            (HeaderName::from_static(n), HeaderValue::from_static(v))
        };
        Resp {
            status,
            headers: vec![
                f("content-type", "video/mp4"),
                f("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                f("cache-status", "dashpush; hit"),
                f("link", "<a>"),
                f("link", "<b>"),
                f("connection", "upgrade"),
            ],
            body,
            content_length: len,
        }
    }

    fn head_text(r: &Resp, keep: bool) -> (String, Framing) {
        let mut out = Vec::new();
        let framing = write_head(r, keep, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn the_head_has_the_fields_in_order_with_date_now_and_the_framing() {
        let r = resp(200, Body::Full(Bytes::from_static(b"abcd")), Some(4));
        let (text, framing) = head_text(&r, true);
        assert_eq!(framing, Framing::Length(4));
        let lines: Vec<_> = text.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        assert_eq!(lines[1], "Content-Type: video/mp4");
        assert!(
            lines[2].starts_with("Date: ") && !lines[2].contains("1970"),
            "{text}"
        );
        assert!(httpdate::parse_http_date(&lines[2][6..]).is_ok(), "{text}");
        assert_eq!(
            &lines[3..],
            [
                "cache-status: dashpush; hit",
                "link: <a>",
                "link: <b>",
                "Content-Length: 4",
                "Connection: keep-alive",
                "",
                ""
            ]
        );
    }

    #[test]
    fn framing_follows_status_body_and_length() {
        let full = |status, len| resp(status, Body::Full(Bytes::new()), len);
        let cases = [
            (
                full(200, Some(15456)),
                Framing::Length(15456),
                "Content-Length: 15456\r\n",
            ),
            (
                full(200, None),
                Framing::Chunked,
                "Transfer-Encoding: chunked\r\n",
            ),
            (full(304, Some(10)), Framing::None, ""),
            (full(204, Some(0)), Framing::None, ""),
        ];
        for (r, want, line) in cases {
            let (text, framing) = head_text(&r, false);
            assert_eq!(framing, want, "{text}");
            assert!(text.contains(line), "{text}");
            if want == Framing::None {
                assert!(!text.contains("Content-Length") && !text.contains("Transfer-Encoding"));
            }
            assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        }
        let odd = resp(599, Body::Full(Bytes::from_static(b"x")), Some(1));
        assert!(head_text(&odd, true).0.starts_with("HTTP/1.1 599 \r\n"));
        let mut out = Vec::new();
        assert_eq!(
            write_head(&full(1000, None), true, &mut out),
            Err(BadStatus(1000))
        );
    }

    #[test]
    fn without_a_date_of_its_own_the_date_follows_the_framing() {
        let mut r = resp(404, Body::Full(Bytes::from_static(b"gone")), Some(4));
        r.headers.retain(|(n, _)| n != header::DATE);
        let (text, _) = head_text(&r, true);
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {text}"))
        };
        assert!(at("Content-Length: 4") < at("Date: "));
        assert!(at("Date: ") < at("Connection: keep-alive"));
    }

    #[test]
    fn chunk_lines() {
        assert_eq!(chunk_start(16384), b"4000\r\n");
        assert_eq!(chunk_start(1), b"1\r\n");
    }
}
