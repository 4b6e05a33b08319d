//! The push cycle in-process: a recording transport (a scripted peer, in the manner of h2's
//! own test peer) drives [`cycle::run`] against a real gateway whose origin is a scripted
//! HTTP/1.1 server on a loopback socket in this process. No child processes: what is checked
//! is the cycle itself — the order of what it asks the transport, the ack, every drop and its
//! reason, and the counter rule `promised = completed + reset + dropped`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashpush_plan::{DirectiveInput, PlanConfig, Push};
use dashpush_proto::PushDirective;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::conn::PushConn;
use super::{AnswerHead, DropReason, PushTransport, Stop, Transport, Withdrawal, cycle};
use crate::cache::{Cache, Ttls};
use crate::gateway::{Body, Gateway, Req};
use crate::metrics::Metrics;
use crate::origin::routing::{Origins, Route};
use crate::origin::upstream::{Upstream, UpstreamConfig};
use crate::prefetch::Pushable;
use crate::settings::PushSettings;
use crate::target::Target;

// ---------------------------------------------------------------------------------------------
// A scripted origin: per path, a queue of answers (the last one repeats).

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Held back this long before it is sent.
    delay: Duration,
}

fn slow(a: Answer, ms: u64) -> Answer {
    Answer {
        delay: Duration::from_millis(ms),
        ..a
    }
}

fn ok(body: &str) -> Answer {
    Answer {
        status: 200,
        headers: vec![("cache-control", "max-age=60".into())],
        body: body.as_bytes().to_vec(),
        delay: Duration::ZERO,
    }
}

fn status(code: u16) -> Answer {
    Answer {
        status: code,
        headers: Vec::new(),
        body: b"no\n".to_vec(),
        delay: Duration::ZERO,
    }
}

type Script = Arc<Mutex<HashMap<String, VecDeque<Answer>>>>;

/// Starts the origin; returns its address, its script and its hit log.
async fn origin() -> (std::net::SocketAddr, Script, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script: Script = Arc::default();
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s, h) = (Arc::clone(&script), Arc::clone(&hits));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (s, h) = (Arc::clone(&s), Arc::clone(&h));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        h.lock().unwrap().push(path.clone());
                        let a = {
                            let mut s = s.lock().unwrap();
                            match s.get_mut(&path) {
                                Some(q) if q.len() > 1 => q.pop_front().unwrap(),
                                Some(q) => q.front().cloned().unwrap(),
                                None => status(404),
                            }
                        };
                        tokio::time::sleep(a.delay).await;
                        let mut out = format!(
                            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
                            a.status,
                            a.body.len()
                        );
                        for (n, v) in &a.headers {
                            out.push_str(&format!("{n}: {v}\r\n"));
                        }
                        out.push_str("\r\n");
                        let mut bytes = out.into_bytes();
                        bytes.extend_from_slice(&a.body);
                        if sock.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, script, hits)
}

fn script(s: &Script, path: &str, answers: Vec<Answer>) {
    s.lock().unwrap().insert(path.to_owned(), answers.into());
}

// ---------------------------------------------------------------------------------------------
// The recording transport.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Reserve(String),
    Release(String),
    Head { status: u16, ack: Option<String> },
    Promise(String),
    Body,
    Send(String, Result<u64, Stop>),
    Withdraw(String, Withdrawal),
    Finish,
}

/// Records every call; refuses what the test says the client refused.
#[derive(Default)]
struct Recorder {
    events: std::sync::Mutex<Vec<Ev>>,
    /// Paths the client resets right after their promise (before any byte).
    client_refuses: Vec<String>,
    /// Most reservations the transport has room for.
    room: Option<usize>,
}

impl Recorder {
    fn log(&self, e: Ev) {
        self.events.lock().unwrap().push(e);
    }

    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
}

fn path(u: &url::Url) -> String {
    u.path().to_owned()
}

#[async_trait::async_trait]
impl PushTransport for Recorder {
    type Reserved = String;
    type Promised = String;

    fn transport(&self) -> Transport {
        Transport::H2
    }

    fn push_allowed(&self) -> bool {
        true
    }

    fn reserve(&mut self, push: &Push) -> Result<String, DropReason> {
        if let Some(room) = self.room.as_mut() {
            if *room == 0 {
                return Err(DropReason::PromiseRefused);
            }
            *room -= 1;
        }
        self.log(Ev::Reserve(path(&push.url)));
        Ok(path(&push.url))
    }

    fn release(&mut self, r: String) {
        self.log(Ev::Release(r));
    }

    async fn answer_head(&mut self, head: AnswerHead) -> Result<(), Stop> {
        self.log(Ev::Head {
            status: head.status,
            ack: head.ack.map(|a| a.directive().to_string()),
        });
        Ok(())
    }

    fn promise(&mut self, r: String) -> Result<String, DropReason> {
        self.log(Ev::Promise(r.clone()));
        Ok(r)
    }

    async fn answer_body(&mut self, body: Body) -> Result<u64, Stop> {
        let mut n = 0;
        match body {
            Body::Full(b) => n = b.len() as u64,
            Body::Stream(mut r) => {
                while let Some(c) = r.chunk().await {
                    n += c.map_err(|_| Stop::OriginBroke)?.len() as u64;
                }
            }
        }
        self.log(Ev::Body);
        Ok(n)
    }

    fn refused(&self, p: &mut String) -> bool {
        self.client_refuses.contains(p)
    }

    async fn send(
        &self,
        p: String,
        _push: &Push,
        resp: Pushable,
        cancelled: &(dyn Fn() -> Option<Stop> + Send + Sync),
        _turn: &super::turns::Turn,
    ) -> Result<u64, (Stop, u64)> {
        let r = match cancelled() {
            Some(stop) => Err((stop, 0)),
            None => match resp.body {
                Body::Full(b) => Ok(b.len() as u64),
                Body::Stream(mut r) => {
                    let mut n = 0;
                    loop {
                        match r.chunk().await {
                            None => break Ok(n),
                            Some(Ok(c)) => n += c.len() as u64,
                            Some(Err(_)) => break Err((Stop::OriginBroke, n)),
                        }
                    }
                }
            },
        };
        self.log(Ev::Send(p, r.as_ref().map(|n| *n).map_err(|(s, _)| *s)));
        r
    }

    async fn withdraw(&self, p: String, _push: &Push, why: Withdrawal) {
        self.log(Ev::Withdraw(p, why));
    }

    async fn finish(&mut self) {
        self.log(Ev::Finish);
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway under test.

const VOD: &str = r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT20S" minBufferTime="PT2S"><Period id="p" start="PT0S"><AdaptationSet contentType="video" segmentAlignment="true"><SegmentTemplate duration="2" startNumber="1" media="v-$Number$.m4s" initialization="v-init.mp4"/><Representation id="v" bandwidth="300000"/></AdaptationSet></Period></MPD>"#;

struct Bench {
    gw: Arc<Gateway>,
    conn: PushConn,
    script: Script,
    hits: Arc<Mutex<Vec<String>>>,
}

async fn bench(plan: PlanConfig) -> Bench {
    let (addr, scripted, hits) = origin().await;
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    super::account::register_series(&metrics);
    let origin_url = url::Url::parse(&format!("http://{addr}")).unwrap();
    let upstream = Upstream::new(
        UpstreamConfig {
            addr,
            host: addr.to_string(),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            tls: None,
            peer: false,
        },
        metrics.clone(),
    );
    let route = Route {
        path_prefix: "/".into(),
        hosts: Vec::new(),
        origin: origin_url,
    };
    let ttls = Ttls {
        mpd: Duration::from_secs(2),
        segment: Duration::from_secs(60),
        stale_if_error: Duration::from_secs(60),
    };
    let cache = Cache::new(16 << 20, ttls, metrics.clone());
    let settings = PushSettings {
        plan,
        prefetch_next: 0,
        live_retry_interval: Duration::from_millis(20),
        ..PushSettings::default()
    };
    let gw = Gateway::new(
        Origins::new(vec![(route, Arc::new(upstream))]),
        cache,
        metrics,
        settings,
        crate::settings::FetchSlots::default(),
    );
    let b = Bench {
        gw,
        conn: PushConn::default(),
        script: scripted,
        hits,
    };
    script(&b.script, "/s/manifest.mpd", vec![ok(VOD)]);
    b
}

impl Bench {
    fn target(&self, p: &str) -> Target {
        Target::resolve(&self.gw.origins(), "http", Some("edge.test"), p).unwrap()
    }

    async fn request(&self, t: &mut Recorder, p: &str, directive: Option<&str>) -> u16 {
        self.request_on(&self.conn, t, p, directive).await
    }

    /// How many times the origin was asked for `path`.
    fn hits_of(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    /// A request on another connection of the same gateway.
    async fn request_on(
        &self,
        conn: &PushConn,
        t: &mut Recorder,
        p: &str,
        directive: Option<&str>,
    ) -> u16 {
        let req = Req {
            method: Method::GET,
            path: p.to_owned(),
            headers: Vec::new(),
            client: None,
            host: Some("edge.test".into()),
        };
        let input = match directive {
            Some(d) => PushDirective::parse(&format!("urn:mpeg:dash:fdh:2016:{d}")).into(),
            None => DirectiveInput::Absent,
        };
        let target = self.target(p);
        cycle::run(&self.gw, conn, t, &req, &target, input).await
    }

    /// Registers the MPD (a plain request for it) and scripts segments 1..=10.
    async fn with_vod(&self) {
        for n in 1..=10 {
            script(
                &self.script,
                &format!("/s/v-{n}.m4s"),
                vec![ok(&format!("seg{n:02}"))],
            );
        }
        script(&self.script, "/s/v-init.mp4", vec![ok("init")]);
        let mut t = Recorder::default();
        assert_eq!(self.request(&mut t, "/s/manifest.mpd", None).await, 200);
    }

    fn vec(&self, name: &str) -> &prometheus::IntCounterVec {
        let m = &self.gw.metrics().push;
        match name {
            "promises" => &m.promises,
            "completed" => &m.completed,
            "reset" => &m.reset,
            "dropped" => &m.dropped,
            "withheld" => &m.withheld,
            _ => unreachable!(),
        }
    }

    fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        self.vec(name).with_label_values(labels).get()
    }

    /// A counter summed over all its series.
    fn sum(&self, name: &str) -> u64 {
        use prometheus::core::Collector;
        self.vec(name)
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// promised = completed + reset + dropped.
    fn assert_counter_rule(&self) {
        assert_eq!(
            self.sum("promises"),
            self.sum("completed") + self.sum("reset") + self.sum("dropped"),
            "promised = completed + reset + dropped"
        );
    }
}

fn ack(events: &[Ev]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Ev::Head { ack, .. } => ack.clone(),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promises_follow_the_head_and_pushes_complete_in_order() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    let mut t = Recorder::default();
    assert_eq!(
        b.request(&mut t, "/s/v-1.m4s", Some("push-next;2")).await,
        200
    );
    let s = |n: u32| format!("/s/v-{n}.m4s");
    assert_eq!(
        t.events(),
        vec![
            Ev::Reserve(s(2)),
            Ev::Reserve(s(3)),
            Ev::Head {
                status: 200,
                ack: Some("urn:mpeg:dash:fdh:2016:push-next;2".into())
            },
            Ev::Promise(s(2)),
            Ev::Promise(s(3)),
            Ev::Body,
            Ev::Send(s(2), Ok(5)),
            Ev::Send(s(3), Ok(5)),
            Ev::Finish,
        ]
    );
    assert_eq!(b.counter("completed", &["h2", "push-next"]), 2);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_push_is_reset_and_never_pushed_again_while_a_dropped_one_may_be() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    // The client refuses 2; 3's origin fails (500) this time, after the ack is out.
    script(
        &b.script,
        "/s/v-3.m4s",
        vec![slow(status(500), 150), ok("seg03")],
    );
    let mut t = Recorder {
        client_refuses: vec!["/s/v-2.m4s".into()],
        ..Recorder::default()
    };
    b.request(&mut t, "/s/v-1.m4s", Some("push-next;2")).await;
    assert!(
        t.events()
            .contains(&Ev::Withdraw("/s/v-2.m4s".into(), Withdrawal::Refused))
    );
    assert!(t.events().contains(&Ev::Withdraw(
        "/s/v-3.m4s".into(),
        Withdrawal::Dropped(DropReason::OriginStatus)
    )));
    assert_eq!(b.counter("reset", &["h2", "push-next"]), 1);
    assert_eq!(b.counter("dropped", &["h2", "origin_status"]), 1);
    b.assert_counter_rule();
    // A later directive: 2 (refused) is not pushed again, 3 (undelivered) is.
    let mut t = Recorder::default();
    b.request(&mut t, "/s/v-1.m4s", Some("push-list;v-2.m4s,v-3.m4s"))
        .await;
    assert_eq!(
        ack(&t.events()).as_deref(),
        Some("urn:mpeg:dash:fdh:2016:push-list;v-3.m4s")
    );
    assert!(t.events().contains(&Ev::Send("/s/v-3.m4s".into(), Ok(5))));
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_arrives_before_its_push_stops_it() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    let base = url::Url::parse("http://edge.test/s/").unwrap();
    b.conn.refuse(&base.join("v-3.m4s").unwrap());
    let mut t = Recorder::default();
    b.request(&mut t, "/s/v-1.m4s", Some("push-next;2")).await;
    assert!(t.events().contains(&Ev::Send("/s/v-2.m4s".into(), Ok(5))));
    assert!(
        t.events()
            .contains(&Ev::Withdraw("/s/v-3.m4s".into(), Withdrawal::Refused))
    );
    assert_eq!(b.counter("reset", &["h2", "push-next"]), 1);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_parent_is_acked_push_none_and_promises_nothing() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    script(&b.script, "/s/v-1.m4s", vec![status(503)]);
    let mut t = Recorder::default();
    assert_eq!(
        b.request(&mut t, "/s/v-1.m4s", Some("push-next;3")).await,
        503
    );
    assert_eq!(
        t.events(),
        vec![
            Ev::Head {
                status: 503,
                ack: Some("urn:mpeg:dash:fdh:2016:push-none".into())
            },
            Ev::Body,
            Ev::Finish,
        ]
    );
    assert_eq!(b.sum("promises"), 0);
    assert_eq!(b.counter("withheld", &["h2", "parent_error"]), 3);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_known_over_the_byte_cap_is_withheld_and_the_ack_says_less() {
    let b = bench(PlanConfig {
        max_bytes_in_flight: 7,
        ..PlanConfig::default()
    })
    .await;
    b.with_vod().await;
    // Warm the cache: the pushes' bodies are at hand before the ack.
    for n in 2..=3 {
        let mut t = Recorder::default();
        b.request(&mut t, &format!("/s/v-{n}.m4s"), None).await;
    }
    let other = PushConn::default();
    let b = Bench { conn: other, ..b };
    // The parent is slow: the pushes' cached bodies are known before its head.
    script(&b.script, "/s/v-1.m4s", vec![slow(ok("seg01"), 100)]);
    let mut t = Recorder::default();
    b.request(&mut t, "/s/v-1.m4s", Some("push-next;2")).await;
    // 5 bytes fit under 7; the second 5 do not: the run stops at 1 and only 2 is promised.
    assert_eq!(
        ack(&t.events()).as_deref(),
        Some("urn:mpeg:dash:fdh:2016:push-next;1")
    );
    assert!(!t.events().contains(&Ev::Promise("/s/v-3.m4s".into())));
    assert!(
        t.events().contains(&Ev::Release("/s/v-3.m4s".into()))
            || !t.events().contains(&Ev::Reserve("/s/v-3.m4s".into()))
    );
    assert_eq!(b.counter("withheld", &["h2", "byte_cap"]), 1);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_transport_has_no_room_for_is_withheld_before_the_ack() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    let mut t = Recorder {
        room: Some(1),
        ..Recorder::default()
    };
    b.request(&mut t, "/s/v-1.m4s", Some("push-list;v-2.m4s,v-4.m4s"))
        .await;
    assert_eq!(
        ack(&t.events()).as_deref(),
        Some("urn:mpeg:dash:fdh:2016:push-list;v-2.m4s")
    );
    assert_eq!(b.counter("withheld", &["h2", "promise_refused"]), 1);
    assert_eq!(b.sum("promises"), 1);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_segment_is_never_pushed() {
    let b = bench(PlanConfig::default()).await;
    b.with_vod().await;
    let private = Answer {
        headers: vec![("cache-control", "private, no-store".into())],
        ..ok("seg02")
    };
    script(&b.script, "/s/v-2.m4s", vec![private]);
    let mut t = Recorder::default();
    b.request(&mut t, "/s/v-1.m4s", Some("push-next;1")).await;
    assert!(
        !t.events()
            .iter()
            .any(|e| matches!(e, Ev::Send(p, Ok(_)) if p == "/s/v-2.m4s"))
    );
    assert_eq!(
        b.counter("dropped", &["h2", "uncacheable"])
            + b.counter("withheld", &["h2", "uncacheable"]),
        1
    );
    b.assert_counter_rule();
}

/// Live: segment N covers [2N-2, 2N) s after the availability start and is available from 2N s.
fn live_mpd(start: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="{}" timeShiftBufferDepth="PT30S" minimumUpdatePeriod="PT2S" minBufferTime="PT2S"><Period id="p" start="PT0S"><AdaptationSet contentType="video" segmentAlignment="true"><SegmentTemplate duration="2" startNumber="1" media="l-$Number$.m4s" initialization="l-init.mp4"/><Representation id="l" bandwidth="300000"/></AdaptationSet></Period></MPD>"#,
        start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_push_survives_transient_origin_errors_and_counts_late() {
    let b = bench(PlanConfig::default()).await;
    // Segment 5 became available a moment ago.
    let start = chrono::Utc::now() - chrono::TimeDelta::milliseconds(10_100);
    script(&b.script, "/l/live.mpd", vec![ok(&live_mpd(start))]);
    script(&b.script, "/l/l-4.m4s", vec![ok("seg04")]);
    script(
        &b.script,
        "/l/l-5.m4s",
        vec![status(503), status(502), ok("seg05")],
    );
    let mut t = Recorder::default();
    b.request(&mut t, "/l/live.mpd", None).await;
    let mut t = Recorder::default();
    b.request(&mut t, "/l/l-4.m4s", Some("push-next;1")).await;
    assert!(
        t.events().contains(&Ev::Send("/l/l-5.m4s".into(), Ok(5))),
        "{:?}",
        t.events()
    );
    let hits = b.hits_of("/l/l-5.m4s");
    assert_eq!(hits, 3, "asked until it answered");
    let live = &b.gw.metrics().live.segments;
    assert_eq!(live.with_label_values(&["late"]).get(), 1);
    assert_eq!(live.with_label_values(&["on_time"]).get(), 0);
    b.assert_counter_rule();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_push_that_never_comes_is_missed_after_its_slot() {
    let b = bench(PlanConfig::default()).await;
    // Segment 5's slot ends 400 ms from now.
    let start = chrono::Utc::now() - chrono::TimeDelta::milliseconds(11_600);
    script(&b.script, "/l/live.mpd", vec![ok(&live_mpd(start))]);
    script(&b.script, "/l/l-4.m4s", vec![ok("seg04")]);
    script(&b.script, "/l/l-5.m4s", vec![status(503)]);
    let mut t = Recorder::default();
    b.request(&mut t, "/l/live.mpd", None).await;
    let mut t = Recorder::default();
    b.request(&mut t, "/l/l-4.m4s", Some("push-next;1")).await;
    let live = &b.gw.metrics().live.segments;
    assert_eq!(live.with_label_values(&["missed"]).get(), 1);
    assert_eq!(live.with_label_values(&["on_time"]).get(), 0);
    assert!(
        t.events().iter().any(|e| matches!(e, Ev::Withdraw(p, Withdrawal::Dropped(DropReason::OriginStatus)) if p == "/l/l-5.m4s")),
        "{:?}",
        t.events()
    );
    b.assert_counter_rule();
}

/// Two viewers' pushes of one live segment share its asks: one wait for its availability and
/// one sequence of origin asks, whose outcome is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_of_one_live_segment_share_its_asks() {
    let b = bench(PlanConfig::default()).await;
    // Segment 5 becomes available 400 ms from now; the origin is late with it once.
    let start = chrono::Utc::now() - chrono::TimeDelta::milliseconds(9_600);
    script(&b.script, "/l/live.mpd", vec![ok(&live_mpd(start))]);
    script(&b.script, "/l/l-4.m4s", vec![ok("seg04")]);
    script(&b.script, "/l/l-5.m4s", vec![status(404), ok("seg05")]);
    b.request(&mut Recorder::default(), "/l/live.mpd", None)
        .await;
    let other = PushConn::default();
    let (mut t1, mut t2) = (Recorder::default(), Recorder::default());
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.gw.live_asks().running()
    };
    let (_, _, running) = tokio::join!(
        b.request(&mut t1, "/l/l-4.m4s", Some("push-next;1")),
        b.request_on(&other, &mut t2, "/l/l-4.m4s", Some("push-next;1")),
        waiting,
    );
    assert_eq!(running, 1, "one ask for both pushes while they wait");
    for t in [&t1, &t2] {
        assert!(
            t.events().contains(&Ev::Send("/l/l-5.m4s".into(), Ok(5))),
            "{:?}",
            t.events()
        );
    }
    let hits = b.hits_of("/l/l-5.m4s");
    assert_eq!(hits, 2, "one 404, then the segment, for both viewers");
    let live = &b.gw.metrics().live.segments;
    assert_eq!(live.with_label_values(&["late"]).get(), 1, "counted once");
    assert_eq!(live.with_label_values(&["on_time"]).get(), 0);
    assert_eq!(b.gw.live_asks().running(), 0, "gone with its last push");
}
