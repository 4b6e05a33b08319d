//! The gateway as a caching reverse proxy (issue: gateway core).

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn http1_and_h2c_serve_the_origin_bytes_and_count_them() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
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
    let (code, _, err) = tool("kill", &["-TERM", &gw.proc.pid().to_string()]);
    assert_eq!(code, 0, "{err}");
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
