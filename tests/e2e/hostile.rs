//! Hostile clients (issue: hold up under hostile clients): reset floods, slow and silent
//! connections, zero windows, connection caps, a saturated origin, a WebSocket that never
//! reads. Each with its deadline configured short, and a normal client served after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use dashpush_proto::ws::SUBPROTOCOL;

use crate::harness::*;
use crate::ws::{open, rt, segment_request, send};

/// A gateway in front of `origin` with the YAML `extra` appended to its configuration file
/// (kept in a scratch directory that lives as long as the returned value).
fn configured(origin: SocketAddr, name: &str, extra: &str) -> (Gateway, Scratch) {
    let dir = Scratch::new(&format!("hostile-{name}"));
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(&file, format!("origin: http://{origin}\n{extra}")).unwrap();
    (gateway_with(&["-c", file.to_str().unwrap()]), dir)
}

fn hostile(gw: SocketAddr, args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/hostile.py");
    let target = gw.to_string();
    let mut all = vec![script, target.as_str()];
    all.extend_from_slice(args);
    let (code, out, err) = tool("/usr/bin/python3", &all);
    assert_eq!(code, 0, "hostile.py failed: {err}");
    serde_json::from_slice(&out).unwrap()
}

/// Waits until the server closes `s` (read returns 0 or fails); the time it took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return start.elapsed(),
        }
        assert!(start.elapsed() < limit, "still open after {limit:?}");
    }
}

fn wait_metric(admin: SocketAddr, series: &str, at_least: f64) {
    let start = Instant::now();
    while metric(admin, series) < at_least {
        assert!(
            start.elapsed() < DEADLINE,
            "{series} never reached {at_least}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// CPU time the process has used (user + system), from `/proc/PID/stat` (USER_HZ = 100).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// The gateway's memory and CPU before an attack, to bound what the attack cost it.
struct Usage {
    pid: u32,
    rss_kib: u64,
    cpu: Duration,
}

impl Usage {
    fn now(gw: &Gateway) -> Self {
        let pid = gw.proc.pid();
        Self {
            pid,
            rss_kib: rss_kib(pid),
            cpu: cpu_time(pid),
        }
    }

    /// Asserts the attack since `self` grew RSS by less than `rss_mib` and took less than
    /// `cpu` of CPU time (bounds for the debug build the suite runs).
    fn bounded(&self, what: &str, rss_mib: u64, cpu: Duration) {
        let grew = rss_kib(self.pid).saturating_sub(self.rss_kib);
        let used = cpu_time(self.pid).saturating_sub(self.cpu);
        eprintln!("{what}: RSS +{grew} KiB, CPU {used:?}");
        assert!(grew < rss_mib * 1024, "{what}: RSS grew by {grew} KiB");
        assert!(used < cpu, "{what}: took {used:?} of CPU");
    }
}

#[test]
fn a_reset_flood_ends_the_connection_and_the_origin_sees_a_bounded_number_of_fetches() {
    // A slow origin: every request the flood starts would hold an origin connection.
    let (_o, origin) = origin(&["--latency-ms", "300"]);
    let (gw, _dir) = configured(
        origin,
        "reset",
        "http2: {max_resets_per_connection: 100}\nupstream: {max_background_fills: 8}\n",
    );
    let usage = Usage::now(&gw);
    // Each batch is reset 50 ms after it was sent: accepted, its handlers running (h2's own
    // limit on streams reset before they are accepted does not see these).
    let out = hostile(gw.addr, &["rapid-reset", "20000", "/vod/flood-", "50"]);
    usage.bounded("rapid reset", 32, Duration::from_secs(3));
    assert_eq!(out["goaway_error"], "ENHANCE_YOUR_CALM", "{out}");
    let sent = out["sent"].as_u64().unwrap();
    assert!(sent <= 400, "the flood went on for {sent} streams");
    let (_, hits) = get(origin, "/_origin/hits");
    let hits: serde_json::Value = serde_json::from_slice(&hits).unwrap();
    let total = hits["total"].as_u64().unwrap();
    assert!(
        total <= 200,
        "{total} origin fetches for one connection's flood"
    );
    // The fetches of reset requests go on only in the 8 background slots; the rest are
    // abandoned (their origin connections closed).
    wait_metric(
        gw.admin,
        r#"dashpush_fills_unread_total{outcome="abandoned"}"#,
        1.0,
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_fills_unread_total{outcome="abandoned"}"#
        ),
        metric(
            gw.admin,
            r#"dashpush_origin_fetches_total{outcome="abandoned"}"#
        ),
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_connections_closed_total{protocol="h2",reason="reset_flood"}"#
        ),
        1.0
    );
    // Everyone else is served.
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
}

#[test]
fn a_connection_that_served_its_request_budget_gets_goaway_no_error() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "budget",
        "http2: {max_requests_per_connection: 5}\n",
    );
    let out = hostile(gw.addr, &["requests", "20", "/vod/manifest.mpd"]);
    // The fifth is served with the GOAWAY; python-h2 stops reading at a GOAWAY, so it may not
    // see the fifth's end. Never more than five on the connection.
    let answered = out["answered"].as_u64().unwrap();
    assert!((4..=5).contains(&answered), "{out}");
    assert!(
        out["goaway_error"] == "NO_ERROR" || out["goaway_error"] == "closed",
        "{out}"
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="request_budget"}"#,
        1.0,
    );
}

#[test]
fn slow_silent_and_half_open_connections_are_closed_at_their_deadlines() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "deadlines",
        "limits: {handshake_timeout_ms: 800, header_timeout_ms: 800, idle_timeout_ms: 800}\n",
    );
    // A request head trickled one byte every 100 ms: closed after the whole-head deadline,
    // although every read makes progress.
    let mut slow = TcpStream::connect(gw.addr).unwrap();
    slow.write_all(b"GET /vod/manifest.mpd HTTP/1.1\r\n")
        .unwrap();
    let start = Instant::now();
    let trickle = std::thread::spawn(move || {
        for _ in 0..60 {
            if slow.write_all(b"X").is_err() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    });
    // A connection that sends nothing, and one that sends only the start of the HTTP/2
    // preface: closed after the handshake deadline.
    let mut silent = TcpStream::connect(gw.addr).unwrap();
    let mut pri = TcpStream::connect(gw.addr).unwrap();
    pri.write_all(b"PRI ").unwrap();
    // Meanwhile a normal client is served.
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    assert!(closed_within(&mut silent, Duration::from_secs(5)) < Duration::from_secs(4));
    assert!(closed_within(&mut pri, Duration::from_secs(5)) < Duration::from_secs(4));
    let trickled = trickle.join().unwrap();
    assert!(
        trickled < Duration::from_secs(4),
        "a trickled head held {trickled:?}"
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h1",reason="header_timeout"}"#,
        1.0,
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="tcp",reason="handshake_timeout"}"#,
        1.0,
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="handshake_timeout"}"#,
        1.0,
    );
    // A whole preface and SETTINGS, then silence: it never acknowledges our SETTINGS nor
    // answers the PING the gateway sends at once, so it is closed at the handshake deadline
    // too (long before the keep-alive PING interval).
    let mut mute = TcpStream::connect(gw.addr).unwrap();
    mute.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let waited = closed_within(&mut mute, Duration::from_secs(5));
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="handshake_timeout"}"#,
        2.0,
    );

    // Keep-alive: a connection that served a request and then says nothing is closed.
    let mut kept = TcpStream::connect(gw.addr).unwrap();
    kept.write_all(b"GET /vod/manifest.mpd HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let waited = closed_within(&mut kept, Duration::from_secs(5));
    assert!(
        waited > Duration::from_millis(500),
        "closed before the idle time: {waited:?}"
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h1",reason="idle"}"#,
        1.0,
    );

    // HTTP/2: an idle connection gets GOAWAY (NO_ERROR) and is closed.
    let out = hostile(gw.addr, &["idle"]);
    // GOAWAY NO_ERROR, or (when h2's shutdown PING arrived in the same read and python-h2
    // refused it) the close that follows it.
    assert!(
        out["goaway_error"] == "NO_ERROR" || out["closed"] == true,
        "{out}"
    );
    assert!(out["seconds"].as_f64().unwrap() < 5.0, "{out}");
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="idle"}"#,
        1.0,
    );
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
}

#[test]
fn a_stream_the_client_never_opens_a_window_for_is_reset_after_the_send_timeout() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(origin, "window", "limits: {send_timeout_ms: 700}\n");
    let usage = Usage::now(&gw);
    let out = hostile(gw.addr, &["zero-window", "/_origin/blob/1048576"]);
    usage.bounded("zero window", 16, Duration::from_secs(1));
    assert_eq!(out["status"], "200", "{out}");
    assert_eq!(out["reset_error"], "CANCEL", "{out}");
    let secs = out["seconds"].as_f64().unwrap();
    assert!((0.5..5.0).contains(&secs), "reset after {secs} s");
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
}

#[test]
fn connections_over_the_per_client_cap_are_refused_and_the_held_ones_still_count() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "caps",
        "limits: {max_connections_per_client: 4, handshake_timeout_ms: 20000}\n",
    );
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(gw.addr).unwrap();
    assert!(closed_within(&mut over, Duration::from_secs(3)) < Duration::from_secs(2));
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="tcp",reason="max_per_client"}"#,
        1.0,
    );
    // The cap frees up as connections end.
    drop(held);
    let start = Instant::now();
    while get(gw.addr, "/vod/manifest.mpd").0 != 200 {
        assert!(
            start.elapsed() < DEADLINE,
            "never served after the held connections left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_saturated_origin_gets_no_more_fetches_than_its_slots_and_the_rest_get_503() {
    let (_o, origin) = origin(&["--latency-ms", "1500"]);
    let (gw, _dir) = configured(
        origin,
        "slots",
        "upstream: {max_connections: 1, queue_timeout_ms: 300}\n",
    );
    let addr = gw.addr;
    let first = std::thread::spawn(move || get(addr, "/vod/chunk-stream0-00001.m4s").0);
    std::thread::sleep(Duration::from_millis(200));
    // A second object while the only slot is taken: it waits 300 ms, then 503.
    assert_eq!(get(gw.addr, "/vod/chunk-stream1-00001.m4s").0, 503);
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="busy"}"#),
        1.0
    );
}

#[test]
fn a_socket_that_never_reads_holds_no_more_than_its_send_budget() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(origin, "wsbudget", "websocket: {stall_timeout_ms: 30000}\n");
    // One 1 MiB object, fetched once and cached: the answers share its bytes.
    assert_eq!(get(gw.addr, "/_origin/blob/1048576").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(gw.proc.pid());
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        // 250 requests for it, and the socket is never read.
        for i in 0..250u32 {
            send(
                &mut ws,
                segment_request(2 * i + 1, "/_origin/blob/1048576", None),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(gw.proc.pid());
        // 250 answers' first pieces alone are 16 MiB; the budget is 2 MiB, plus the writer's
        // buffers.
        assert!(
            after.saturating_sub(before) < 8 * 1024,
            "RSS grew by {} KiB",
            after.saturating_sub(before)
        );
        drop(ws);
    });
}

#[test]
fn hundreds_of_slow_silent_and_half_open_connections_cost_little_and_all_close_in_time() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "mass",
        "limits: {handshake_timeout_ms: 1000, header_timeout_ms: 1000}\n",
    );
    let usage = Usage::now(&gw);
    // 100 silent, 100 that send only `PRI `, 100 that trickle a request head with 1 KiB
    // lines (a byte every 20 ms would never end it).
    let mut conns: Vec<TcpStream> = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(b"PRI ").unwrap(),
            _ => s
                .write_all(format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(1024)).as_bytes())
                .unwrap(),
        }
        conns.push(s);
    }
    let start = Instant::now();
    // A normal client is served while they are held.
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    for s in &mut conns {
        let left = Duration::from_secs(6).saturating_sub(start.elapsed());
        closed_within(s, left.max(Duration::from_millis(100)));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the last closed after {took:?}"
    );
    usage.bounded("300 slow connections", 32, Duration::from_secs(2));
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
}

#[test]
fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_refuse_newcomers() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "evict",
        "limits: {max_connections: 4, handshake_timeout_ms: 20000, header_timeout_ms: 20000, \
         idle_timeout_ms: 20000}\n",
    );
    // The cap is full of idle connections: one that served a request and waits (keep-alive),
    // and three that said nothing yet.
    let mut kept = TcpStream::connect(gw.addr).unwrap();
    kept.write_all(b"GET /vod/manifest.mpd HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    kept.set_read_timeout(Some(DEADLINE)).unwrap();
    assert!(kept.read(&mut buf).unwrap() > 0);
    let mut idle = vec![kept];
    idle.extend((0..3).map(|_| TcpStream::connect(gw.addr).unwrap()));
    std::thread::sleep(Duration::from_millis(200));
    let evicted = |admin| {
        metric(
            admin,
            r#"dashpush_connections_closed_total{protocol="h1",reason="evicted_idle"}"#,
        ) + metric(
            admin,
            r#"dashpush_connections_closed_total{protocol="tcp",reason="evicted_idle"}"#,
        )
    };
    // Twice: a newcomer is served, and one idle connection was closed to make room (the
    // longest idle; which one that is depends on when the gateway saw each go idle).
    for round in 1..=2 {
        assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
        let gone = one_closed(&mut idle, Duration::from_secs(3));
        idle.remove(gone);
        let start = Instant::now();
        while evicted(gw.admin) < f64::from(round) {
            assert!(start.elapsed() < DEADLINE, "eviction {round} not counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Full again.
        idle.push(TcpStream::connect(gw.addr).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        evicted(gw.admin),
        2.0,
        "only one connection makes room per newcomer"
    );
    let silent = idle;
    drop(silent);
    // Four connections in the middle of a request head are not idle: a fifth is refused.
    std::thread::sleep(Duration::from_millis(300));
    let busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(gw.addr).unwrap();
            s.write_all(b"GET /vod/manifest.mpd HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut over = TcpStream::connect(gw.addr).unwrap();
    assert!(closed_within(&mut over, Duration::from_secs(3)) < Duration::from_secs(2));
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="tcp",reason="max_connections"}"#,
        1.0,
    );
    // The busy ones are still served.
    for mut s in busy {
        s.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn a_tls_handshake_that_stalls_is_closed_at_the_handshake_deadline() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("hostile-tls-cert");
    let (cert, key) = self_signed(&dir);
    let (mut gw, _dir) = configured(
        origin,
        "tls",
        &format!(
            "limits: {{handshake_timeout_ms: 800}}\ntls: {{listen: \"127.0.0.1:0\", cert: {}, \
             key: {}}}\n",
            cert.display(),
            key.display()
        ),
    );
    let tls = gw.proc.addr_after("listening tls (h2, http/1.1) on ");
    // A TLS record header announcing a 512-byte ClientHello, and then nothing.
    let mut stalled = TcpStream::connect(tls).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let waited = closed_within(&mut stalled, Duration::from_secs(5));
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(3)).contains(&waited),
        "closed after {waited:?}"
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="tls",reason="tls_handshake_timeout"}"#,
        1.0,
    );
    // A silent TLS connection: closed at the same deadline (before any handshake).
    let mut silent = TcpStream::connect(tls).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)) < Duration::from_secs(3));
    // A real TLS client is served.
    let url = format!("https://{tls}/vod/manifest.mpd");
    let (code, _, err) = tool("curl", &["-sS", "-k", "--http2", "-o", "/dev/null", &url]);
    assert_eq!(code, 0, "{err}");
}

/// Waits until the server closes one of `conns`; its index.
fn one_closed(conns: &mut [TcpStream], limit: Duration) -> usize {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    for c in conns.iter() {
        c.set_nonblocking(true).unwrap();
    }
    loop {
        for (i, c) in conns.iter_mut().enumerate() {
            match c.read(&mut buf) {
                Ok(0) => return i,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                Err(_) => return i,
            }
        }
        assert!(start.elapsed() < limit, "none closed in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a GET for `path` on a new connection and closes it after `after`, before the answer.
fn ask_and_leave(gw: SocketAddr, path: &str, after: Duration) {
    let mut s = TcpStream::connect(gw).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(after);
    drop(s);
}

#[test]
fn a_fetch_whose_client_left_goes_on_in_a_background_slot_or_is_abandoned() {
    // An origin that takes 600 ms to answer.
    let (_o, origin) = origin(&["--latency-ms", "600"]);
    let (gw, _dir) = configured(
        origin,
        "background",
        "upstream: {max_background_fills: 1}\n",
    );
    let (a, b) = (
        "/vod/chunk-stream0-00001.m4s",
        "/vod/chunk-stream0-00002.m4s",
    );
    // Two HTTP/1.1 clients ask for two objects and close their connections at 150 ms.
    let addr = gw.addr;
    let first = std::thread::spawn(move || ask_and_leave(addr, a, Duration::from_millis(150)));
    ask_and_leave(gw.addr, b, Duration::from_millis(150));
    first.join().unwrap();
    // Their handlers stop at once (499); one fetch goes on in the only background slot, the
    // other is abandoned.
    wait_metric(
        gw.admin,
        r#"dashpush_requests_total{protocol="h1",status="499"}"#,
        2.0,
    );
    wait_metric(
        gw.admin,
        r#"dashpush_fills_unread_total{outcome="abandoned"}"#,
        1.0,
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_fills_unread_total{outcome="background"}"#
        ),
        1.0
    );
    std::thread::sleep(Duration::from_millis(900));
    // The continued one is cached; the abandoned one is fetched again.
    for path in [a, b] {
        assert_eq!(get(gw.addr, path).0, 200);
    }
    assert_eq!(origin_hits(origin, a) + origin_hits(origin, b), 3);
}

/// One GET on a kept-alive connection; the status, once the whole (Content-Length) body is in.
fn keepalive_get(s: &mut TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a cached answer has a Content-Length");
        if buf.len() >= end + 4 + length {
            return head.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
}

#[test]
fn out_of_descriptors_accept_backs_off_and_established_connections_are_still_served() {
    let (_o, origin) = origin(&[]);
    // A descriptor limit far below a (misconfigured) connection cap: accept meets EMFILE.
    let (gw, _dir) = configured(
        origin,
        "emfile",
        "limits: {max_open_files: 64, max_connections: 1000, handshake_timeout_ms: 30000}\n",
    );
    let segment = "/vod/chunk-stream0-00003.m4s";
    assert_eq!(get(gw.addr, segment).0, 200);
    let mut kept = TcpStream::connect(gw.addr).unwrap();
    assert_eq!(keepalive_get(&mut kept, segment), 200);
    // Silent connections until the descriptors run out (the kernel queues the rest).
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(gw.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let open = std::fs::read_dir(format!("/proc/{}/fd", gw.proc.pid()))
        .unwrap()
        .count();
    assert!(
        open >= 62,
        "{open} descriptors open: the limit was not reached"
    );
    let usage = Usage::now(&gw);
    std::thread::sleep(Duration::from_secs(3));
    // No busy loop on EMFILE: pingora's listener waits a second between attempts.
    usage.bounded("out of descriptors", 16, Duration::from_millis(500));
    // The established connection is served all along (from the cache: no descriptor needed).
    assert_eq!(keepalive_get(&mut kept, segment), 200);
    // Descriptors back: new connections are accepted again.
    drop(held);
    let start = Instant::now();
    while get(gw.addr, segment).0 != 200 {
        assert!(start.elapsed() < DEADLINE, "never accepted again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(keepalive_get(&mut kept, segment), 200);
    // The failed accepts were counted.
    assert!(metric(gw.admin, "dashpush_accept_errors_total") >= 1.0);
}

#[test]
fn many_range_readers_of_one_large_object_share_one_copy_of_its_body() {
    // A slow origin, so the readers meet on one fetch; the object is 16 MiB.
    let (_o, origin) = origin(&["--latency-ms", "300"]);
    let (gw, _dir) = configured(origin, "onecopy", "");
    let usage = Usage::now(&gw);
    let addr = gw.addr;
    let readers: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(
                    b"GET /_origin/blob/16777216 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\n\r\n",
                )
                .unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap();
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(head.starts_with("HTTP/1.1 206"), "{head}");
                // Kept open (not read further) while the others come.
                std::thread::sleep(Duration::from_secs(1));
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(
        origin_hits(origin, "/_origin/blob/16777216"),
        0,
        "control paths are not counted"
    );
    // One copy for the fill and the cache entry (16 MiB), not one per reader (1 GiB).
    usage.bounded("64 range readers of 16 MiB", 48, Duration::from_secs(3));
}

#[test]
fn bodies_held_only_for_slow_readers_stay_within_their_budget() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(origin, "pins", "upstream: {max_pinned_bytes: 33554432}\n");
    let usage = Usage::now(&gw);
    // Six clients with credentials (never cached) ask for 16 MiB each and never read.
    let held: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut s = TcpStream::connect(gw.addr).unwrap();
            let req = format!(
                "GET /_origin/blob/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
                16_777_216 + i
            );
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    // 96 MiB asked for, 32 MiB allowed: the fills holding the most are cut off.
    wait_metric(gw.admin, "dashpush_fills_cut_total", 4.0);
    std::thread::sleep(Duration::from_millis(500));
    usage.bounded(
        "6 slow readers of uncached 16 MiB bodies",
        64,
        Duration::from_secs(3),
    );
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    drop(held);
}

/// The next frame on `s`: its type and flags.
fn next_frame(s: &mut TcpStream) -> (u8, u8) {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (head[3], head[4])
}

/// An HTTP/2 connection opened: the preface and an empty SETTINGS sent, the server's SETTINGS
/// read (its first frame).
fn h2_opened(gw: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(gw).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(next_frame(&mut s), (4, 0), "the server's SETTINGS first");
    s
}

/// An HTTP/2 connection that has exchanged SETTINGS and not asked for anything yet: the
/// preface and an empty SETTINGS sent, the server's SETTINGS (its first frame) and its ACK of
/// ours read, and the server's SETTINGS acknowledged.
fn h2_before_its_request(gw: SocketAddr) -> TcpStream {
    let mut s = h2_opened(gw);
    // h2 may send its WINDOW_UPDATE or PING before the ACK.
    while next_frame(&mut s) != (4, 1) {}
    s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).unwrap();
    s
}

/// What `s` receives until the server closes it.
fn rest_of(s: &mut TcpStream) -> Vec<u8> {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// GOAWAY, last stream 0, NO_ERROR.
const GOAWAY_NONE: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn an_http2_connection_waits_for_its_first_request_cheaply_and_is_served_closed_or_evicted() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "parked",
        "limits: {max_connections: 3, handshake_timeout_ms: 800, idle_timeout_ms: 2500}\n",
    );
    // What a browser sends before a request, then a wait past the handshake deadline (the
    // client has acknowledged our SETTINGS: it is idle, not stalled), then a PING and a GET:
    // one SETTINGS and one ACK on the wire in all, the PING answered, the answer whole.
    let out = hostile(gw.addr, &["parked", "1.5", "/vod/manifest.mpd"]);
    let (status, body) = get(gw.addr, "/vod/manifest.mpd");
    assert_eq!(status, 200);
    assert_eq!(out["status"], "200", "{out}");
    assert_eq!(out["body_bytes"], body.len(), "{out}");
    assert_eq!(out["settings"], 1, "{out}");
    assert_eq!(out["settings_acks"], 1, "{out}");
    assert_eq!(out["settings_acks_before_wait"], 1, "{out}");
    assert_eq!(out["ping_acks"], 1, "{out}");
    assert_eq!(out["goaway_error"], serde_json::Value::Null, "{out}");

    // At the cap, such a connection is idle: a newcomer is served and one of them is closed
    // with GOAWAY (no stream, NO_ERROR) to make room.
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| h2_before_its_request(gw.addr)).collect();
    wait_metric(gw.admin, "dashpush_h2_parked_connections", 3.0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    let gone = one_closed(&mut waiting, Duration::from_secs(2));
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="evicted_idle"}"#,
        1.0,
    );
    drop(waiting.remove(gone));
    // The others are closed at the idle time, counted from their start, with GOAWAY.
    let started = Instant::now();
    for s in &mut waiting {
        let rest = rest_of(s);
        assert_eq!(rest, GOAWAY_NONE, "GOAWAY, then closed");
    }
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="idle"}"#,
        2.0,
    );
    assert_eq!(metric(gw.admin, "dashpush_h2_parked_connections"), 0.0);
    // Whoever was waiting, a new HTTP/2 client is served.
    let again = hostile(gw.addr, &["parked", "0", "/vod/manifest.mpd"]);
    assert_eq!(again["status"], "200", "{again}");
}

#[test]
fn an_idle_http2_connection_is_parked_again_and_woken_by_its_next_request() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(origin, "again", "http2: {park_when_idle_ms: 300}\n");
    let segment = "/vod/chunk-stream0-00001.m4s";
    // A client GETs the MPD and falls idle: its h2 is dropped and it is parked (the gauge
    // counts it); a PING and a late WINDOW_UPDATE for its closed stream leave it so. Its next
    // request, with push-next, wakes a new h2, which pushes (the connection's first pushes,
    // numbered from 2); after pushes it is not parked again, and is served on.
    let addr = gw.addr;
    let client = std::thread::spawn(move || {
        hostile(
            addr,
            &[
                "again",
                "1.5",
                "/vod/manifest.mpd",
                segment,
                "urn:mpeg:dash:fdh:2016:push-next;2",
            ],
        )
    });
    wait_metric(gw.admin, "dashpush_h2_parked_again_total", 1.0);
    assert_eq!(metric(gw.admin, "dashpush_h2_parked_connections"), 1.0);
    let out = client.join().unwrap();
    let (_, mpd) = get(gw.addr, "/vod/manifest.mpd");
    let (_, seg) = get(gw.addr, segment);
    assert_eq!(
        out["statuses"],
        serde_json::json!(["200", "200", "200"]),
        "{out}"
    );
    assert_eq!(
        out["bodies"],
        serde_json::json!([mpd.len(), seg.len(), seg.len()]),
        "{out}"
    );
    assert_eq!(out["pushes"], 2, "{out}");
    assert_eq!(out["ping_acks"], 1, "{out}");
    assert_eq!(out["settings"], 1, "{out}");
    assert_eq!(out["settings_acks"], 1, "{out}");
    assert_eq!(out["goaway_error"], serde_json::Value::Null, "{out}");
    assert_eq!(out["closed"], false, "{out}");
    assert_eq!(
        metric(gw.admin, "dashpush_h2_parked_again_total"),
        1.0,
        "not after pushes"
    );
    assert_eq!(metric(gw.admin, "dashpush_h2_woken_total"), 1.0);

    // A request on a stream that closed before the connection was parked again: GOAWAY
    // PROTOCOL_ERROR naming the last stream served (RFC 9113 §5.1.1).
    let out = hostile(gw.addr, &["again", "1.0", "/vod/manifest.mpd", "reuse"]);
    assert_eq!(out["goaway_error"], "PROTOCOL_ERROR", "{out}");
    assert_eq!(out["goaway_last_stream"], 1, "{out}");
    assert_eq!(out["closed"], true, "{out}");
    assert_eq!(metric(gw.admin, "dashpush_h2_parked_again_total"), 2.0);
    assert_eq!(metric(gw.admin, "dashpush_h2_woken_total"), 1.0);
}

/// A client that sends its first request before it reads our SETTINGS (as browsers and nghttp2
/// do) indexes its headers into the HPACK table our SETTINGS then set to size 0; once it has
/// acknowledged them its connection is parked again after that one request, and its next
/// request, which begins by emptying the table, wakes a new h2.
#[test]
fn a_client_that_indexed_its_first_request_is_parked_again_after_it() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(origin, "again-eager", "http2: {park_when_idle_ms: 300}\n");
    let out = hostile(
        gw.addr,
        &[
            "again-eager",
            "1.5",
            "/vod/manifest.mpd",
            "/vod/manifest.mpd",
        ],
    );
    assert_eq!(
        out["statuses"],
        serde_json::json!(["200", "200", "200"]),
        "{out}"
    );
    assert_eq!(out["goaway_error"], serde_json::Value::Null, "{out}");
    assert_eq!(out["settings_acks"], 1, "{out}");
    assert_eq!(
        metric(gw.admin, "dashpush_h2_parked_again_total"),
        2.0,
        "after each wait"
    );
    assert_eq!(metric(gw.admin, "dashpush_h2_woken_total"), 2.0);
}

#[test]
fn a_connection_parked_again_is_closed_at_its_idle_time_with_goaway_naming_its_last_stream() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "again-idle",
        "http2: {park_when_idle_ms: 200}\nlimits: {idle_timeout_ms: 2500}\n",
    );
    let out = hostile(
        gw.addr,
        &["again", "4.0", "/vod/manifest.mpd", "/vod/manifest.mpd"],
    );
    assert_eq!(out["statuses"], serde_json::json!(["200"]), "{out}");
    assert_eq!(out["goaway_error"], "NO_ERROR", "{out}");
    assert_eq!(out["goaway_last_stream"], 1, "{out}");
    assert_eq!(out["closed"], true, "{out}");
    assert_eq!(metric(gw.admin, "dashpush_h2_parked_again_total"), 1.0);
    wait_metric(
        gw.admin,
        r#"dashpush_connections_closed_total{protocol="h2",reason="idle"}"#,
        1.0,
    );
}

#[test]
fn with_parking_off_an_http2_connection_goes_to_h2_at_once() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = configured(
        origin,
        "unparked",
        "http2: {park_until_first_request: false}
",
    );
    // h2 sends its keep-alive PING at once (a parked connection sends nothing after its
    // SETTINGS and ACK).
    let _waiting = h2_served_at_once(gw.addr);
    assert_eq!(metric(gw.admin, "dashpush_h2_parked_connections"), 0.0);
    wait_metric(gw.admin, r#"dashpush_open_connections{protocol="h2"}"#, 1.0);
    let out = hostile(gw.addr, &["parked", "0.3", "/vod/manifest.mpd"]);
    assert_eq!(out["status"], "200", "{out}");
    assert_eq!(out["settings"], 1, "{out}");
    assert_eq!(out["settings_acks"], 1, "{out}");
}

#[test]
fn a_parked_http2_connection_gets_goaway_when_the_gateway_drains_and_holds_nothing_up() {
    let (_o, origin) = origin(&[]);
    let (mut gw, _dir) = configured(origin, "parked-drain", "");
    let mut waiting = h2_before_its_request(gw.addr);
    wait_metric(gw.admin, "dashpush_h2_parked_connections", 1.0);
    terminate(&gw);
    assert_eq!(rest_of(&mut waiting), GOAWAY_NONE, "GOAWAY, then closed");
    exits_cleanly(&mut gw);
}

#[test]
fn a_parked_client_that_floods_pings_and_reads_nothing_or_slowly_holds_the_drain_a_second_at_most()
{
    for slowly in [false, true] {
        let (_o, origin) = origin(&[]);
        let (mut gw, _dir) = configured(origin, "parked-ping-drain", "");
        let mut flood = h2_before_its_request(gw.addr);
        wait_metric(gw.admin, "dashpush_h2_parked_connections", 1.0);
        // PINGs, their ACKs unread, until the gateway stops taking them: its answer to one
        // waits for room the client does not make (the send deadline is 30 s).
        let ping = [0u8, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let batch: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 4096)
            .collect();
        flood
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut sent = 0usize;
        let stalled = loop {
            match flood.write(&batch) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break true,
                Err(e) => panic!("flood: {e}"),
            }
            if sent > 256 << 20 {
                break false;
            }
        };
        assert!(
            stalled,
            "the gateway took {sent} bytes of PINGs without stalling"
        );
        terminate(&gw);
        // Slowly: 256 KiB of ACKs taken every half second, room enough for each answer to
        // finish within a second, while thousands of PINGs wait to be answered.
        let reader = slowly.then(|| {
            let mut r = flood.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 << 10];
                r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    match r.read(&mut buf) {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                }
            })
        });
        let took = exits_cleanly(&mut gw);
        // Parked and blocked on a PING's ACK: the drain waits for it `GOODBYE` (1 s), then the
        // connection answers nothing more; not the send deadline (30 s) or the grace (10 s).
        assert!(
            took < Duration::from_secs(4),
            "slowly {slowly}: exit took {took:?}"
        );
        drop(flood);
        if let Some(r) = reader {
            let _ = r.join();
        }
    }
}

/// Sends the gateway SIGTERM.
fn terminate(gw: &Gateway) {
    let (code, _, err) = tool("kill", &["-TERM", &gw.proc.pid().to_string()]);
    assert_eq!(code, 0, "{err}");
}

/// Waits for the gateway to exit (within the deadline), successfully; how long it took.
fn exits_cleanly(gw: &mut Gateway) -> Duration {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = gw.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    start.elapsed()
}

/// An HTTP/2 connection that went to h2 at its preface (parking off): the preface and an
/// empty SETTINGS sent, the server's SETTINGS read first, then h2's keep-alive PING (sent
/// once its handshake is done) within the next frames. Nothing is answered.
fn h2_served_at_once(gw: SocketAddr) -> TcpStream {
    let mut s = h2_opened(gw);
    assert!(
        (0..4).any(|_| next_frame(&mut s) == (6, 0)),
        "a PING from h2"
    );
    s
}

/// The frame types in `wire` (a run of whole frames).
fn frame_types(wire: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= wire.len() {
        let len = usize::from(wire[at]) << 16
            | usize::from(wire[at + 1]) << 8
            | usize::from(wire[at + 2]);
        types.push(wire[at + 3]);
        at += 9 + len;
    }
    types
}

#[test]
fn a_served_http2_connection_gets_goaway_on_drain_and_a_silent_client_holds_the_exit_a_second_at_most()
 {
    let (_o, origin) = origin(&[]);
    let (mut gw, _dir) = configured(
        origin,
        "served-drain",
        "http2: {park_until_first_request: false}
",
    );
    // In h2 from its preface on; the client then reads nothing and answers nothing (not the
    // GOAWAY's PING either).
    let mut silent = h2_served_at_once(gw.addr);
    terminate(&gw);
    let took = exits_cleanly(&mut gw);
    // Nothing in flight: the drain waits for the GOAWAY (GOODBYE, 1 s), not its grace (10 s).
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    let types = frame_types(&rest_of(&mut silent));
    assert!(
        types.contains(&7),
        "a GOAWAY before the close: frame types {types:?}"
    );
}
