//! The gateway as a caching reverse proxy (issue: gateway core).

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn http1_and_h2c_serve_the_origin_bytes_and_count_them() {
    let (_o, origin) = origin(&[]);
    // Prefetching off: this test counts the cache's hits and misses request by request.
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    for name in DEMO_FILES {
        let url = format!("http://{}/vod/{name}", gw.addr);
        let (code, body, err) = tool("curl", &["-sS", "--fail", &url]);
        assert_eq!(code, 0, "curl {url}: {err}");
        assert_eq!(body, demo_file(name), "HTTP/1.1 {name}");
        // nghttp prints the response body on stdout (h2c, prior knowledge).
        let (code, body, err) = tool("nghttp", &[&url]);
        assert_eq!(code, 0, "nghttp {url}: {err}");
        assert_eq!(body, demo_file(name), "h2c {name}");
        // Each file came from the origin once; the second request was a cache hit.
        assert_eq!(origin_hits(origin, &format!("/vod/{name}")), 1, "{name}");
    }
    let n = DEMO_FILES.len() as f64;
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h1",status="200"}"#
        ),
        n
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h2",status="200"}"#
        ),
        n
    );
    assert_eq!(metric(gw.admin, "dashpush_cache_misses_total"), n);
    assert_eq!(metric(gw.admin, "dashpush_cache_hits_total"), n);
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        n
    );
}

#[test]
fn hundred_concurrent_requests_for_one_uncached_segment_make_one_origin_fetch() {
    let (_o, origin) = origin(&["--latency-ms", "300"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let url = format!("http://{}/vod/chunk-stream0-00003.m4s", gw.addr);
    let (code, out, err) = tool("h2load", &["-n", "100", "-c", "100", "-m", "1", &url]);
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("100 succeeded"), "{out}");
    assert_eq!(origin_hits(origin, "/vod/chunk-stream0-00003.m4s"), 1);
    assert_eq!(
        metric(gw.admin, "dashpush_cache_coalesced_waits_total"),
        99.0
    );
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        1.0
    );
}

#[test]
fn range_and_head_are_served_from_the_cached_body() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let file = demo_file("chunk-stream1-00002.m4s");
    let url = format!("http://{}/vod/chunk-stream1-00002.m4s", gw.addr);
    let (code, body, err) = tool(
        "curl",
        &["-sS", "-r", "100-1099", "-w", "\n%{http_code}", &url],
    );
    assert_eq!(code, 0, "{err}");
    let (body, status) = body.split_at(body.len() - 4);
    assert_eq!(status, b"\n206");
    assert_eq!(body, &file[100..1100]);
    let (code, head, _) = tool("curl", &["-sS", "-I", &url]);
    assert_eq!(code, 0);
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {}", file.len())),
        "{head}"
    );
    assert!(head.contains("cache-status: dashpush; hit"), "{head}");
    // The origin saw one full GET: Range and HEAD were answered from the cache.
    assert_eq!(origin_hits(origin, "/vod/chunk-stream1-00002.m4s"), 1);
    let (_, body, _) = tool(
        "curl",
        &["-sS", "-r", "999999-", "-w", "%{http_code}", &url],
    );
    assert_eq!(body, b"416");
}

#[test]
fn origin_down_is_502_and_origin_stall_is_504() {
    // A port with nothing listening: bind, note, close.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(&format!("http://{free}"), &[]);
    assert_eq!(
        curl_status(&format!("http://{}/vod/manifest.mpd", gw.addr)),
        "502"
    );
    assert_eq!(
        get(gw.admin, "/ready").0,
        503,
        "not ready while the origin never answered"
    );

    let (_o, origin) = origin(&["--latency-ms", "3000"]);
    let gw = gateway(
        &format!("http://{origin}"),
        &["--origin-timeout-ms", "300", "--ready-without-origin"],
    );
    assert_eq!(
        curl_status(&format!("http://{}/vod/manifest.mpd", gw.addr)),
        "504"
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_origin_fetches_total{outcome="timeout"}"#
        ),
        1.0
    );
}

#[test]
fn two_mib_through_a_tiny_http2_window() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let url = format!("http://{}/_origin/blob/2097152", gw.addr);
    // 2^10-byte stream and connection windows: 2048 WINDOW_UPDATE round trips at least.
    let (code, body, err) = tool("nghttp", &["-w", "10", "-W", "10", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body.len(), 2 * 1024 * 1024);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

#[test]
fn ready_waits_for_the_origin() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let start = Instant::now();
    while get(gw.admin, "/ready").0 != 200 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(gw.admin, "/nope").0, 404);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let (_o, origin) = origin(&["--latency-ms", "1500"]);
    let mut gw = gateway(&format!("http://{origin}"), &["--ready-without-origin"]);
    let url = format!("http://{}/vod/chunk-stream2-00002.m4s", gw.addr);
    let inflight = std::thread::spawn(move || tool("curl", &["-sS", "-w", "\n%{http_code}", &url]));
    // Let the request reach the (slow) origin, then ask the gateway to stop.
    let start = Instant::now();
    while origin_hits(origin, "/vod/chunk-stream2-00002.m4s") == 0 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(gw.admin, "/ready").0, 200);
    let (code, _, err) = tool("kill", &["-TERM", &gw.proc.pid().to_string()]);
    assert_eq!(code, 0, "{err}");
    // While it drains, /ready says so (load balancers stop sending new clients).
    let start = Instant::now();
    while get(gw.admin, "/ready").0 != 503 {
        assert!(
            start.elapsed() < DEADLINE,
            "/ready never reported the drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, body, err) = inflight.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let (body, status) = body.split_at(body.len() - 4);
    assert_eq!(status, b"\n200", "the in-flight request completed");
    assert_eq!(body, demo_file("chunk-stream2-00002.m4s"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = gw.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    // New connections are refused once it has stopped.
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 0);
}

/// Sends a GET and reads until the head and at least `want` body bytes are in (or the
/// deadline passes); returns the stream and the bytes read so far.
fn open_get(addr: std::net::SocketAddr, path: &str, want: usize) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.len() - (at + 4) >= want
        {
            return (s, buf);
        }
        let n = s.read(&mut chunk).expect("bytes before the deadline");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes a complete chunked body (no trailers).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        assert_eq!(&b[size..size + 2], b"\r\n");
        b = &b[size + 2..];
    }
}

#[test]
fn waiting_clients_receive_bytes_before_the_origin_has_sent_them_all() {
    use std::io::Read;
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = 300_000;
    let path = format!("/_origin/gated/{n}");
    // The origin sends the first half and holds the rest until /_origin/open. Both clients
    // (the one whose miss started the fetch, and one that joined it) get the first half now.
    let (mut a, head_a) = open_get(gw.addr, &path, n / 2);
    let (mut b, head_b) = open_get(gw.addr, &path, n / 2);
    assert_eq!(origin_hits(origin, &path), 1);
    assert_eq!(
        metric(gw.admin, "dashpush_cache_coalesced_waits_total"),
        1.0
    );
    assert_eq!(get(origin, "/_origin/open").0, 200);
    let expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    for (mut buf, s) in [(head_a, &mut a), (head_b, &mut b)] {
        s.read_to_end(&mut buf).unwrap();
        let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        // Streamed responses are chunked (each chunk flushed as it arrives).
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(dechunk(&buf[at + 4..]) == expected, "body differs");
    }
    // Stored once complete: a third request is a hit and the origin saw one request.
    assert_eq!(get(gw.addr, &path).1, expected);
    assert_eq!(origin_hits(origin, &path), 1);
    assert_eq!(metric(gw.admin, "dashpush_cache_hits_total"), 1.0);
}

#[test]
fn an_origin_that_breaks_off_mid_body_gives_a_truncated_response_not_a_short_one() {
    use std::io::Read;
    let (mut o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = 300_000;
    let path = format!("/_origin/gated/{n}");
    let (mut a, mut buf) = open_get(gw.addr, &path, n / 2);
    // Kill the origin while it holds back the second half.
    o.kill();
    let _ = a.read_to_end(&mut buf);
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        buf.len() - (at + 4) < n,
        "a broken fetch must not look complete"
    );
    // Nothing was stored: the next request goes to the (dead) origin and fails cleanly.
    assert_eq!(curl_status(&format!("http://{}{path}", gw.addr)), "502");
}

/// Reads one response from `s`: its head (status line and fields) and its body (by
/// Content-Length, dechunked, or none for a HEAD).
fn one_response(s: &mut std::net::TcpStream, head_only: bool) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("a response head"),
            1,
            "closed mid-head"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    if head_only || head.starts_with("HTTP/1.1 304") {
        return (head, Vec::new());
    }
    if let Some(len) = field("Content-Length") {
        let mut body = vec![0u8; len.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        return (head, body);
    }
    assert_eq!(
        field("Transfer-Encoding").as_deref(),
        Some("chunked"),
        "{head}"
    );
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n0\r\n\r\n") && raw != b"0\r\n\r\n" {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed mid-body");
        raw.push(byte[0]);
    }
    (head, dechunk(&raw))
}

/// The head's lines with the clock's fields (`Date`, `Age`) blanked.
fn timeless(head: &str) -> Vec<String> {
    head.lines()
        .map(|l| match l.split_once(": ") {
            Some(("Date" | "Age", _)) => l.split(": ").next().unwrap().to_owned(),
            _ => l.to_owned(),
        })
        .collect()
}

#[test]
fn plain_heads_and_heads_read_by_pingoras_session_are_answered_alike() {
    use std::io::{Read, Write};
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    let path = "/vod/chunk-stream0-00001.m4s";
    let want = demo_file("chunk-stream0-00001.m4s");
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // The first answer is a miss (streamed, chunked), the next ones hits; one connection.
    let plain = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);
    write!(s, "{plain}").unwrap();
    let (head, body) = one_response(&mut s, false);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert_eq!(body, want);
    write!(s, "{plain}").unwrap();
    let (plain_head, body) = one_response(&mut s, false);
    assert_eq!(body, want);
    // `Content-Length: 0` sends the head to pingora's session; the answer reads the same.
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        gw.addr
    )
    .unwrap();
    let (session_head, body) = one_response(&mut s, false);
    assert_eq!(body, want);
    assert_eq!(timeless(&plain_head), timeless(&session_head));
    assert!(
        plain_head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{plain_head}"
    );
    for line in [
        "Content-Type: video/mp4",
        "cache-status: dashpush; hit",
        "x-cache: HIT",
        &format!("Content-Length: {}", want.len()),
        "Connection: keep-alive",
    ] {
        assert!(
            plain_head.contains(&format!("{line}\r\n")),
            "{line}: {plain_head}"
        );
    }
    // HEAD: the length, no body; the connection goes on with the next request.
    write!(s, "HEAD {path} HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr).unwrap();
    let (head, _) = one_response(&mut s, true);
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", want.len())),
        "{head}"
    );
    // A head that arrives in two reads is read on by the session.
    let (a, b) = plain.split_at(20);
    s.write_all(a.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b.as_bytes()).unwrap();
    assert_eq!(
        one_response(&mut s, false).1,
        want,
        "after HEAD and a split head"
    );
    // `Connection: close`: said in the answer, and the gateway closes after it.
    write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let (head, body) = one_response(&mut s, false);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, want);
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the answer"
    );

    // Other methods and HTTP/1.0 are the session's: 405, and an HTTP/1.0 answer then close.
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    assert!(one_response(&mut s, false).0.starts_with("HTTP/1.1 405"));
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(
        all.ends_with(&want),
        "an HTTP/1.0 answer carries the body, then closes"
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h1",status="200"}"#
        ),
        7.0
    );
}
