//! HTTP/2 server push (issue: push engine), with independent clients: Python's `h2`
//! (`tests/e2e/h2push.py`, Debian python3-h2) and `nghttp`.

use serde_json::Value;

use crate::harness::*;

const URN: &str = "urn:mpeg:dash:fdh:2016:";
const MPD: &str = "/vod/manifest.mpd";

fn req(path: &str, directive: &str) -> String {
    format!("{path}|{URN}{directive}")
}

fn paths(r: &Value) -> Vec<String> {
    r["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect()
}

fn ack(r: &Value) -> Option<&str> {
    r["headers"]["push-policy"].as_str()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every push of `r` is a complete 200 whose body is the demo file of that name.
fn assert_bodies(r: &Value) {
    for p in r["pushes"].as_array().unwrap() {
        let path = p["path"].as_str().unwrap();
        assert_eq!(p["status"], 200, "{path}");
        let name = path.rsplit('/').next().unwrap();
        assert!(
            hex(p["body_hex"].as_str().unwrap()) == demo_file(name),
            "{path} differs"
        );
    }
}

fn seg(r: u32, n: u32) -> String {
    format!("/vod/chunk-stream{r}-{n:05}.m4s")
}

#[test]
fn each_push_type_promises_exactly_the_planned_resources_with_the_origin_bytes() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    let s1 = seg(0, 1);
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            req(&s1, "push-next;2"),
            vec![seg(0, 2), seg(0, 3)],
            "push-next;2",
        ),
        (
            req(&s1, "push-next;999"),
            vec![seg(0, 2), seg(0, 3)],
            "push-next;2",
        ),
        (req(&s1, "push-time;1"), vec![seg(0, 2)], "push-time;"),
        (
            req(&s1, "push-template;chunk-stream0-{%05d:2-3}.m4s"),
            vec![seg(0, 2), seg(0, 3)],
            "push-template;",
        ),
        (
            req(
                &s1,
                "push-list;chunk-stream1-00002.m4s, http://other.test/vod/chunk-stream1-00003.m4s, chunk-stream2-00001.m4s",
            ),
            vec![seg(1, 2), seg(2, 1)],
            "push-list;",
        ),
        (
            req(MPD, r#"push-fast-start;{"segments":2}"#),
            vec![
                "/vod/init-stream1.m4s".into(),
                "/vod/init-stream2.m4s".into(),
                seg(1, 1),
                seg(2, 1),
                seg(1, 2),
                seg(2, 2),
            ],
            "push-fast-start;",
        ),
    ];
    let mut promised = 0usize;
    let mut bytes = 0u64;
    for (request, expected, ack_prefix) in &cases {
        // A fresh connection per case (no push is repeated on one connection); the MPD first,
        // so the gateway knows the segment space.
        let out = h2push(gw.addr, &[MPD, request]);
        let r = &out[1];
        assert_eq!(r["status"], 200, "{request}");
        assert_eq!(&paths(r), expected, "{request}");
        let a = ack(r).unwrap_or_default();
        assert!(
            a.starts_with(&format!("{URN}{ack_prefix}")),
            "{request}: ack {a}"
        );
        assert_bodies(r);
        for p in r["pushes"].as_array().unwrap() {
            // Promised requests carry the parent's authority and client headers, nothing else.
            assert_eq!(p["authority"], gw.addr.to_string());
            assert_eq!(p["request_headers"]["user-agent"], "h2push-test");
            assert!(p["request_headers"].get("accept-push-policy").is_none());
            promised += 1;
            bytes += p["len"].as_u64().unwrap();
        }
    }
    // The metrics say what the client saw.
    let sum = |name: &str| -> f64 {
        [
            "push-next",
            "push-time",
            "push-template",
            "push-list",
            "push-fast-start",
        ]
        .iter()
        .map(|t| {
            metric(
                gw.admin,
                &format!(r#"{name}{{push_type="{t}",transport="h2"}}"#),
            )
        })
        .sum()
    };
    assert_eq!(sum("dashpush_push_promises_total"), promised as f64);
    assert_eq!(sum("dashpush_push_completed_total"), promised as f64);
    assert_eq!(sum("dashpush_push_claimed_total"), promised as f64);
    assert_eq!(sum("dashpush_push_bytes_total"), bytes as f64);
    assert_eq!(sum("dashpush_push_reset_total"), 0.0);
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_push_directives_total{push_type="push-next",result="accepted",transport="h2"}"#
        ),
        2.0
    );
}

#[test]
fn no_directive_disabled_push_and_malformed_directives_push_nothing() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let s1 = seg(0, 1);
    // No directive: no promise, no ack.
    let out = h2push(gw.addr, &[MPD, &s1]);
    assert!(paths(&out[1]).is_empty());
    assert_eq!(ack(&out[1]), None);
    // SETTINGS_ENABLE_PUSH = 0: push-none ack, no promise (Annex E fallback).
    let out = h2push(gw.addr, &["--no-push", MPD, &req(&s1, "push-next;2")]);
    assert_eq!(out[1]["status"], 200);
    assert!(paths(&out[1]).is_empty());
    assert_eq!(ack(&out[1]), Some(&*format!("{URN}push-none")));
    // Malformed: 200 and push-none.
    for bad in ["push-next;abc", "push-next;0", "push-sideways;1"] {
        let out = h2push(gw.addr, &[MPD, &req(&s1, bad)]);
        assert_eq!(out[1]["status"], 200, "{bad}");
        assert!(paths(&out[1]).is_empty(), "{bad}");
        assert_eq!(ack(&out[1]), Some(&*format!("{URN}push-none")), "{bad}");
    }
    // HTTP/1.1 carries no push: the directive changes nothing.
    let (code, _, err) = tool(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-H",
            &format!("accept-push-policy: {URN}push-next;2"),
            &format!("http://{}{s1}", gw.addr),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_push_promises_total{push_type="push-next",transport="h2"}"#
        ),
        0.0
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_push_directives_total{push_type="push-next",result="push_disabled",transport="h2"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_push_directives_total{push_type="malformed",result="malformed",transport="h2"}"#
        ),
        2.0
    );
}

#[test]
fn the_same_request_twice_on_one_connection_pushes_once() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let r = req(&seg(0, 1), "push-next;2");
    let out = h2push(gw.addr, &[MPD, &r, &r]);
    assert_eq!(paths(&out[1]), [seg(0, 2), seg(0, 3)]);
    assert!(paths(&out[2]).is_empty());
    // A segment the client fetched itself is not pushed to it either.
    let out = h2push(gw.addr, &[MPD, &seg(0, 2), &r]);
    assert_eq!(paths(&out[2]), [seg(0, 3)]);
}

#[test]
fn a_client_that_resets_every_promise_gets_no_push_bytes() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let out = h2push(
        gw.addr,
        &[
            "--reset-pushes",
            MPD,
            &req(MPD, r#"push-fast-start;{"segments":2}"#),
        ],
    );
    let pushes = out[1]["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 6);
    for p in pushes {
        assert_eq!(p["len"], 0, "no DATA after the reset: {p}");
    }
    let m = |name: &str| {
        metric(
            gw.admin,
            &format!(r#"{name}{{push_type="push-fast-start",transport="h2"}}"#),
        )
    };
    assert_eq!(m("dashpush_push_promises_total"), 6.0);
    // The gateway may still be going through the resets when the client leaves; every promise
    // ends up counted as reset, none as completed.
    let start = std::time::Instant::now();
    while m("dashpush_push_reset_total") < 6.0 {
        assert!(start.elapsed() < DEADLINE, "resets never counted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(m("dashpush_push_reset_total"), 6.0);
    assert_eq!(m("dashpush_push_completed_total"), 0.0);
    assert_eq!(m("dashpush_push_bytes_total"), 0.0);
    // The parent itself was served in full.
    assert_eq!(
        out[1]["len"].as_u64().unwrap() as usize,
        demo_file("manifest.mpd").len()
    );
}

#[test]
fn nghttp_sees_fast_start_promises_on_the_mpd_request() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let (code, out, err) = tool(
        "nghttp",
        &[
            "-nv",
            "-H",
            &format!("accept-push-policy: {URN}push-fast-start"),
            &format!("http://{}{MPD}", gw.addr),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    // nghttp prints each promised request's fields as `recv (stream_id=N) :path: /x` before
    // the PUSH_PROMISE frame (the request it sent is printed without `recv`).
    let promised: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("recv (stream_id=")?.1.split_once(") :path: "))
        .map(|(_, p)| p.trim())
        .collect();
    assert_eq!(out.matches("recv PUSH_PROMISE frame").count(), 4, "{out}");
    assert_eq!(
        promised,
        [
            "/vod/init-stream1.m4s",
            "/vod/init-stream2.m4s",
            "/vod/chunk-stream1-00001.m4s",
            "/vod/chunk-stream2-00001.m4s"
        ],
        "{out}"
    );
    assert!(
        out.contains(&format!("push-policy: {URN}push-fast-start;")),
        "{out}"
    );
}

#[test]
fn pull_clients_get_the_next_segments_prefetched_into_the_cache() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "2"]);
    let curl = |path: &str| {
        let (code, out, err) = tool(
            "curl",
            &[
                "-sS",
                "--fail",
                "-D",
                "-",
                "-o",
                "/dev/null",
                &format!("http://{}{path}", gw.addr),
            ],
        );
        assert_eq!(code, 0, "{err}");
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    };
    curl(MPD);
    curl(&seg(1, 1));
    // Segments 2 and 3 of the same Representation reach the cache without being asked for.
    let start = std::time::Instant::now();
    while origin_hits(origin, &seg(1, 2)) + origin_hits(origin, &seg(1, 3)) < 2 {
        assert!(
            start.elapsed() < DEADLINE,
            "prefetch never reached the origin"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    while metric(gw.admin, r#"dashpush_prefetch_total{outcome="started"}"#) < 2.0 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Nothing of the other Representations.
    assert_eq!(origin_hits(origin, &seg(0, 2)), 0);
    assert_eq!(origin_hits(origin, &seg(2, 2)), 0);
    let head = curl(&seg(1, 2));
    assert!(
        head.contains("cache-status: dashpush; hit") || head.contains("collapsed"),
        "{head}"
    );
    assert_eq!(origin_hits(origin, &seg(1, 2)), 1);
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_prefetch_total{outcome="used_by_client"}"#
        ),
        1.0
    );
}

/// Issue "one push engine", item 5: a client that asks for a segment with push-next the moment
/// the MPD's last byte arrived, on the same connection of a freshly started gateway, always
/// finds the MPD (never `no_manifest`).
#[test]
fn the_first_directive_after_the_mpd_finds_it_on_fresh_gateways() {
    let (_o, origin) = origin(&[]);
    let s1 = seg(0, 1);
    let directive = req(&s1, "push-next;2");
    for round in 0..50 {
        let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
        let out = h2push(gw.addr, &["--no-linger", MPD, &directive]);
        assert_eq!(
            ack(&out[1]),
            Some("urn:mpeg:dash:fdh:2016:push-next;2"),
            "round {round}: {:?}",
            out[1]["headers"]
        );
        assert_eq!(paths(&out[1]), [seg(0, 2), seg(0, 3)], "round {round}");
        assert_eq!(
            metric(
                gw.admin,
                r#"dashpush_push_directives_total{push_type="push-next",result="no_manifest",transport="h2"}"#
            ),
            0.0
        );
    }
}

/// `PushDirective` is answered in `PushAck` (spec §7.1–7.2), `fast-start` is an alias of
/// `push-fast-start`, and a directive that cannot be pushed on (HTTP/1.1, HEAD) is acked
/// push-none.
#[test]
fn push_directive_and_push_ack_are_first_class() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    let out = h2push(
        gw.addr,
        &[
            "--directive-header",
            "PushDirective",
            &req(MPD, "fast-start;{\"segments\":1}"),
            &req(&seg(0, 1), "push-next;2"),
        ],
    );
    let fast = out[0]["headers"]["pushack"].as_str().unwrap();
    assert!(
        fast.starts_with("urn:mpeg:dash:fdh:2016:push-fast-start;"),
        "{fast}"
    );
    assert!(out[0]["headers"].get("push-policy").is_none());
    assert!(!paths(&out[0]).is_empty());
    assert_bodies(&out[0]);
    assert_eq!(
        out[1]["headers"]["pushack"],
        "urn:mpeg:dash:fdh:2016:push-next;2"
    );
    // The segments after 1, none pushed twice on the connection.
    assert!(paths(&out[1]).contains(&seg(0, 3)));
    assert_bodies(&out[1]);

    // HTTP/1.1 cannot push: the directive is acked push-none, under the header it asks for.
    for (name, ack_name) in [
        ("PushDirective", "pushack"),
        ("Accept-Push-Policy", "push-policy"),
    ] {
        let (code, head, _) = tool(
            "curl",
            &[
                "-sS",
                "--http1.1",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                &format!("{name}: {URN}push-next;2"),
                &format!("http://{}{}", gw.addr, seg(0, 4)),
            ],
        );
        assert_eq!(code, 0);
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(
            head.contains(&format!("{ack_name}: urn:mpeg:dash:fdh:2016:push-none")),
            "{head}"
        );
    }
}

/// The `h2window.py` client: pushes of `directive` on `segment` under the given window mode.
fn window_run(gw: std::net::SocketAddr, segment: &str, directive: &str, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/h2window.py");
    let target = gw.to_string();
    let directive = format!("{URN}{directive}");
    let (code, out, err) = tool(
        "/usr/bin/python3",
        &[script, &target, MPD, segment, &directive, mode],
    );
    assert_eq!(code, 0, "h2window.py failed: {err}");
    serde_json::from_slice(&out).unwrap()
}

/// `push-next;3` on the first video init segment through `h2window.py` in `mode`, on a fresh
/// gateway; checks that the three pushes are the next segments, each whole, and returns the
/// client's report.
fn three_pushes_under(mode: &str) -> Value {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &["--prefetch-next", "0"]);
    let r = window_run(gw.addr, "/vod/init-stream0.m4s", "push-next;3", mode);
    let pushes = r["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 3, "{r}");
    for (p, n) in pushes.iter().zip(1..) {
        let path = seg(0, n);
        assert_eq!(p["path"], path.as_str());
        let want = demo_file(path.rsplit('/').next().unwrap()).len();
        assert!(want > 4096, "each push is larger than a held 4 KiB window");
        assert_eq!(p["len"], want, "{r}");
    }
    r
}

#[test]
fn a_push_blocked_on_its_own_window_lets_the_next_pushes_use_the_connection() {
    let r = three_pushes_under("--hold-first");
    // The first push waits for a window the client holds back; the other two are sent in the
    // meantime, over the connection window it left open.
    assert_eq!(r["others_ended_while_first_held"], true, "{r}");
    assert_eq!(
        r["pushes"][0]["end_order"], 2,
        "the held push ends last: {r}"
    );
}

#[test]
fn pushes_blocked_on_their_own_windows_leave_no_connection_window_idle() {
    let r = three_pushes_under("--hold-all");
    // Every stream's window is 4 KiB and the client opens none until each push has had its
    // 4 KiB, while the connection's window is 16 MiB: the first two pushes block on their own
    // windows, and the third must still get its share of the connection meanwhile (it is
    // beyond the two in play, a spare).
    assert_eq!(r["all_filled_while_held"], true, "{r}");
    // Their first bytes in push order.
    let pushes = r["pushes"].as_array().unwrap();
    let order: Vec<_> = pushes.iter().map(|p| p["start_order"].clone()).collect();
    assert_eq!(order, vec![0, 1, 2], "{r}");
    assert_eq!(r["resets"], serde_json::json!({}), "{r}");
}

#[test]
fn with_open_windows_pushes_go_out_in_push_order() {
    let r = three_pushes_under("--open");
    let pushes = r["pushes"].as_array().unwrap();
    // Each push starts once the one before it has queued its whole body: their first bytes
    // arrive in push order (the h2 library then writes queued frames of several streams
    // round-robin, so the ends may interleave by a frame).
    let order: Vec<_> = pushes.iter().map(|p| p["start_order"].clone()).collect();
    assert_eq!(order, vec![0, 1, 2], "{r}");
    assert!(pushes.iter().all(|p| p["end_order"].is_number()), "{r}");
    assert_eq!(r["others_ended_while_first_held"], Value::Null);
}

/// The `h2drain.py` client on the live channel behind `gw`: `push-next;1` on a segment, every
/// body taken at `rate` bytes per second (0: as fast as it comes), then `directive` on the
/// segment two later; what that second request promised.
fn drain_run(gw: std::net::SocketAddr, directive: &str, rate: u32) -> Value {
    const LIVE_MPD: &str = "/live/manifest.mpd";
    const SEG_MS: i64 = 2000;
    let ast = availability_start(gw, LIVE_MPD);
    // A minute of history: segments well inside the 30 s time-shift buffer, all available.
    let edge = chrono::Utc::now()
        .signed_duration_since(ast)
        .num_milliseconds()
        / SEG_MS;
    assert!(edge > 20, "the channel has a history: {edge}");
    let live_seg = |n: i64| format!("/live/chunk-stream0-{n:05}.m4s");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/h2drain.py");
    let (code, out, err) = tool(
        "/usr/bin/python3",
        &[
            script,
            &gw.to_string(),
            LIVE_MPD,
            &live_seg(edge - 12),
            &live_seg(edge - 10),
            &format!("{URN}{directive}"),
            &rate.to_string(),
        ],
    );
    assert_eq!(code, 0, "h2drain.py failed: {err}");
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn pushes_in_flight_stay_within_what_the_connection_drains() {
    // Live segments of the 60 kbit/s Representation: about 15 kB each, by its @bandwidth.
    let (_o, _, origin) = demo_origin("live", &["--live-history-ms", "60000"]);
    let (gw, _dir) = gateway_with_yaml(
        "drain",
        &format!("origin: http://{origin}\npush:\n  drain_buffer_ms: 1000\n"),
    );
    // A connection that takes 10 kB/s has room for one such segment in a 1 s buffer: of the
    // eight asked for, the first (nothing else in flight) and no more; the ack says so.
    let slow = drain_run(gw.addr, "push-next;8", 10_000);
    let promised = slow["second_promised"].as_array().unwrap();
    assert_eq!(promised.len(), 1, "{slow}");
    assert_eq!(slow["second_ack"], format!("{URN}push-next;1"), "{slow}");
    assert!(
        slow["first_took_s"].as_f64().unwrap() > 2.0,
        "the client took its first 30 kB slowly: {slow}"
    );
    // Another connection of the same gateway that takes what it is sent at once gets all
    // eight: the bound is each connection's own.
    let fast = drain_run(gw.addr, "push-next;8", 0);
    assert_eq!(
        fast["second_promised"].as_array().unwrap().len(),
        8,
        "{fast}"
    );
    assert_eq!(fast["second_ack"], format!("{URN}push-next;8"), "{fast}");
}
