//! The access log: one line per request answered, and one per push, written by a thread of its
//! own so that a slow disk or pipe never holds a request up. Lines go through a bounded queue;
//! when it is full a line is dropped and counted (`dashpush_access_log_dropped_total`).
//!
//! A line says who got what, how, and from where: time, client, protocol (`h1`, `h2`, `ws`),
//! method, authority, path, status, body bytes sent, duration, the cache's verdict (the
//! `Cache-Status` the answer carries), the origin route, and for a request with a push
//! directive the directive's type, the ack and how its pushes ended; each push has its own line
//! with `pushed: true`. JSON with `log_format: json`, else `key=value` text.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use prometheus::IntCounter;
use serde::Serialize;

/// Lines waiting for the writer, at most.
const QUEUE: usize = 16 * 1024;

/// Where lines go (`--access-log -|PATH`, `access_log:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(std::path::PathBuf),
}

/// How the pushes of one request ended, on its line.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PushSummary {
    /// The directive's push type as asked (`push-next`, …, `malformed`).
    pub(crate) directive: &'static str,
    /// The ack sent (the header's value), if any.
    pub(crate) ack: Option<String>,
    /// Pushes promised, and how they ended.
    pub(crate) promised: u32,
    pub(crate) completed: u32,
    pub(crate) reset: u32,
    pub(crate) dropped: u32,
}

/// One access-log line.
#[derive(Debug, Serialize)]
pub(crate) struct Line<'a> {
    pub(crate) time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<&'a str>,
    pub(crate) protocol: &'static str,
    pub(crate) method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) authority: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cache: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) push: Option<&'a PushSummary>,
    /// A push (its `path` is the pushed URL's; `outcome` how it ended).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) pushed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) outcome: Option<&'a str>,
}

impl Line<'_> {
    fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!("time={} protocol={}", self.time, self.protocol);
        let mut kv = |k: &str, v: &str| {
            let _ = write!(s, " {k}={}", quote(v));
        };
        if let Some(c) = self.client {
            kv("client", c);
        }
        kv("method", self.method);
        if let Some(a) = self.authority {
            kv("authority", a);
        }
        kv("path", self.path);
        let _ = write!(
            s,
            " status={} bytes={} duration_ms={:.3}",
            self.status, self.bytes, self.duration_ms
        );
        if let Some(c) = self.cache {
            let _ = write!(s, " cache={}", quote(c));
        }
        if let Some(r) = self.route {
            let _ = write!(s, " route={}", quote(r));
        }
        if let Some(p) = self.push {
            let _ = write!(
                s,
                " push.directive={} push.ack={} push.promised={} push.completed={} push.reset={} push.dropped={}",
                p.directive,
                quote(p.ack.as_deref().unwrap_or("-")),
                p.promised,
                p.completed,
                p.reset,
                p.dropped
            );
        }
        if self.pushed {
            s.push_str(" pushed=true");
        }
        if let Some(o) = self.outcome {
            let _ = write!(s, " outcome={o}");
        }
        s
    }
}

/// A text value, quoted when it holds spaces, quotes or `=` (control characters escaped).
fn quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\')
    {
        return v.to_owned();
    }
    format!("{v:?}")
}

/// A request answered outside the push cycle, as the downstream side saw it.
pub(crate) struct Served<'a> {
    pub(crate) protocol: &'static str,
    pub(crate) client: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) authority: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) started: std::time::Instant,
    pub(crate) cache: Option<&'a str>,
}

/// The log: a queue to its writer thread, or nothing when it is off.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    tx: Option<SyncSender<String>>,
    json: bool,
    dropped: IntCounter,
}

impl AccessLog {
    /// Writing to `sink` from a thread of its own.
    pub(crate) fn start(sink: &Sink, json: bool, dropped: IntCounter) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("dashpush-access-log".into())
            .spawn(move || write_lines(&rx, out))?;
        Ok(Self {
            tx: Some(tx),
            json,
            dropped,
        })
    }

    /// Whether lines are written (callers skip building them otherwise).
    pub(crate) fn on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a line; never waits (a full queue drops it, counted).
    pub(crate) fn log(&self, line: &Line<'_>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let text = if self.json {
            serde_json::to_string(line).unwrap_or_default()
        } else {
            line.text()
        };
        match tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// The writer: lines as they come, flushed whenever the queue runs empty.
fn write_lines(rx: &Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let _ = out.write_all(line.as_bytes());
                let _ = out.write_all(b"\n");
                while let Ok(line) = rx.try_recv() {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// Now, as an RFC 3339 time with milliseconds (UTC).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The cache's verdict from an answer's `Cache-Status` (`hit`, `fwd=miss`, …).
pub(crate) fn cache_of(headers: &[(http::HeaderName, http::HeaderValue)]) -> Option<&str> {
    crate::fields::first(headers, "cache-status").map(|v| v.strip_prefix("dashpush; ").unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_quote_what_needs_it() {
        let push = PushSummary {
            directive: "push-next",
            ack: Some("urn:mpeg:dash:fdh:2016:push-next;2".into()),
            promised: 2,
            completed: 1,
            reset: 1,
            dropped: 0,
        };
        let line = Line {
            time: "t".into(),
            client: Some("10.0.0.1"),
            protocol: "h2",
            method: "GET",
            authority: Some("edge"),
            path: "/a b",
            status: 200,
            bytes: 10,
            duration_ms: 1.5,
            cache: Some("hit"),
            route: Some("http://o:1"),
            push: Some(&push),
            pushed: false,
            outcome: None,
        };
        assert_eq!(
            line.text(),
            "time=t protocol=h2 client=10.0.0.1 method=GET authority=edge path=\"/a b\" \
             status=200 bytes=10 duration_ms=1.500 cache=hit route=http://o:1 \
             push.directive=push-next push.ack=urn:mpeg:dash:fdh:2016:push-next;2 \
             push.promised=2 push.completed=1 push.reset=1 push.dropped=0"
        );
        let v: serde_json::Value = serde_json::to_value(&line).unwrap();
        assert_eq!(v["push"]["completed"], 1);
        assert!(v.get("pushed").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let log = AccessLog {
            tx: Some(tx),
            json: true,
            dropped: dropped.clone(),
        };
        let line = Line {
            time: now(),
            client: None,
            protocol: "h1",
            method: "GET",
            authority: None,
            path: "/",
            status: 200,
            bytes: 0,
            duration_ms: 0.0,
            cache: None,
            route: None,
            push: None,
            pushed: false,
            outcome: None,
        };
        log.log(&line);
        log.log(&line);
        assert_eq!(dropped.get(), 1);
    }
}
