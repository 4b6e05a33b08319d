//! The plain HTTP/1.1 exchange, without pingora's session: a `GET` or `HEAD` whose whole head
//! came in one read and asks for nothing but an answer (no body, no upgrade, no `Expect`, no
//! absolute-form target, one `Host`). Such a head is parsed here once into the gateway's
//! [`Req`], and the answer's head is written here straight from the gateway's [`Resp`]; every
//! other head goes to pingora's session, which reads bodies, upgrades and odd framing.
//!
//! Why: a cached HTTP/1.1 answer through pingora's session built a request header map, a case
//! map, a response header map and a session per request (about 19,000 of 31,000 instructions,
//! callgrind). The bytes on the wire are the same either way: the head fields in the order the
//! gateway gave them, the names pingora title-cases title-cased, `Date`, the framing, then
//! `Connection`.
//!
//! No I/O here: the parser takes bytes, the writers append to a buffer.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
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

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body follows (a `HEAD` answer, a 304).
    None,
    /// This many bytes follow.
    Length(usize),
    /// Chunks follow ([`chunk_start`], [`CHUNK_END`], [`LAST_CHUNK`]).
    Chunked,
}

/// The status is not a three-digit HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("status {0} is not an HTTP status")]
pub(crate) struct BadStatus(pub(crate) u16);

/// Appends the head of `resp` to `out` and says how its body is framed. As pingora's session
/// writes it: `Date` now (in place of the gateway's), the framing (`Content-Length`, or
/// chunked for a streamed body; none for a 304), and `Connection` last. A `HEAD` answer keeps
/// the length it would have and sends no body (RFC 9110 §9.3.2).
pub(crate) fn write_head(
    resp: &Resp,
    head_only: bool,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> Result<Framing, BadStatus> {
    let status = http::StatusCode::from_u16(resp.status).map_err(|_| BadStatus(resp.status))?;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in &resp.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        if name == header::DATE {
            if dated {
                continue;
            }
            dated = true;
            field(out, "Date", &now_date());
            continue;
        }
        field(out, wire_name(name), value.as_bytes());
    }
    if !dated {
        field(out, "Date", &now_date());
    }
    // A 304 carries no body and no length of its own (RFC 9110 §8.6); a streamed body goes
    // chunked even when its length is known, so each chunk leaves as it comes.
    let framing = match (&resp.body, resp.status) {
        (_, 304) => None,
        (Body::Stream(_), _) => {
            field(out, "Transfer-Encoding", b"chunked");
            Some(Framing::Chunked)
        }
        (Body::Full(b), _) => {
            let len = resp.content_length.unwrap_or(b.len());
            let mut digits = itoa_buf();
            field(out, "Content-Length", itoa(len, &mut digits));
            Some(Framing::Length(len))
        }
    };
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    field(out, "Connection", connection);
    out.extend_from_slice(b"\r\n");
    let no_body = head_only || matches!(resp.status, 204 | 304);
    Ok(match framing {
        Some(f) if !no_body => f,
        _ => Framing::None,
    })
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

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, written at the end of `buf`.
fn itoa(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

thread_local! {
    /// The `Date` value of the current second, made once per second per thread.
    static DATE: RefCell<(u64, Bytes)> = const { RefCell::new((u64::MAX, Bytes::new())) };
}

/// The current time as an HTTP date (RFC 9110 §5.6.7), such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn now_date() -> Bytes {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != second {
            *d = (second, Bytes::from(httpdate::fmt_http_date(now)));
        }
        d.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn head_text(r: &Resp, head_only: bool, keep: bool) -> (String, Framing) {
        let mut out = Vec::new();
        let framing = write_head(r, head_only, keep, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn the_head_reads_as_pingora_writes_it() {
        let r = resp(200, Body::Full(Bytes::from_static(b"abcd")), Some(4));
        let (text, framing) = head_text(&r, false, true);
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
    fn head_304_and_close_frame_no_body() {
        let full = resp(200, Body::Full(Bytes::new()), Some(15456));
        let (text, framing) = head_text(&full, true, false);
        assert_eq!(framing, Framing::None, "HEAD: no body");
        assert!(text.contains("Content-Length: 15456\r\n"), "{text}");
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");

        let nm = resp(304, Body::Full(Bytes::new()), None);
        let (text, framing) = head_text(&nm, false, true);
        assert_eq!(framing, Framing::None);
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
        assert!(!text.contains("Content-Length") && !text.contains("Transfer-Encoding"));

        let odd = resp(599, Body::Full(Bytes::from_static(b"x")), Some(1));
        assert!(
            head_text(&odd, false, true)
                .0
                .starts_with("HTTP/1.1 599 \r\n")
        );
        let mut out = Vec::new();
        assert_eq!(
            write_head(
                &resp(1000, Body::Full(Bytes::new()), None),
                false,
                true,
                &mut out
            ),
            Err(BadStatus(1000))
        );
    }

    #[test]
    fn numbers_and_chunk_lines() {
        let mut b = itoa_buf();
        assert_eq!(itoa(0, &mut b), b"0");
        let mut b = itoa_buf();
        assert_eq!(itoa(usize::MAX, &mut b), usize::MAX.to_string().as_bytes());
        assert_eq!(chunk_start(16384), b"4000\r\n");
        assert_eq!(chunk_start(1), b"1\r\n");
    }
}
