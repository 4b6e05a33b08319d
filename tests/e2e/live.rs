//! Live push cycles (issue: live), against the built-in live origin with 1 s segments.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const URN: &str = "urn:mpeg:dash:fdh:2016:";
const MPD: &str = "/live/manifest.mpd";
const SEG_MS: u64 = 1000;

fn live_origin(extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--live-segment-ms", "1000"];
    args.extend_from_slice(extra);
    // The control listener: the content and the hit counters.
    let (p, _, control) = demo_origin("live", &args);
    (p, control)
}

/// The newest segment number available now, from the MPD's availabilityStartTime, once at
/// least `min` segments exist.
fn live_edge(gw: SocketAddr, min: u64) -> u64 {
    let ast = availability_start(gw, MPD);
    loop {
        let elapsed = chrono::Utc::now().signed_duration_since(ast);
        let n = elapsed.num_milliseconds().max(0) as u64 / SEG_MS;
        if n >= min {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seg(rep: u32, n: u64) -> String {
    format!("/live/chunk-stream{rep}-{n:05}.m4s")
}

/// Live segment n as the origin serves it (asked directly, after the gateway is done).
fn live_file(origin: SocketAddr, rep: u32, n: u64) -> Vec<u8> {
    let (status, body) = get(origin, &seg(rep, n));
    assert_eq!(status, 200);
    body
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn push_next_5_delivers_the_next_five_live_segments_unasked_in_order_and_once() {
    let (_o, origin) = live_origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 1);
    let out = h2push(gw.addr, &[MPD, &format!("{}|{URN}push-next;5", seg(0, n))]);
    let r = &out[1];
    assert_eq!(r["status"], 200);
    assert_eq!(r["headers"]["push-policy"], format!("{URN}push-next;5"));
    let pushes = r["pushes"].as_array().unwrap();
    let paths: Vec<&str> = pushes.iter().map(|p| p["path"].as_str().unwrap()).collect();
    let want: Vec<String> = (n + 1..=n + 5).map(|k| seg(0, k)).collect();
    assert_eq!(paths, want);
    let mut last_end = 0;
    for (k, p) in (n + 1..).zip(pushes) {
        assert_eq!(p["status"], 200);
        // Each fetched once from the origin (asked before the test reads it directly).
        assert_eq!(origin_hits(origin, &seg(0, k)), 1);
        assert!(
            hex(p["body_hex"].as_str().unwrap()) == live_file(origin, 0, k),
            "segment {k} bytes"
        );
        // Completed in push order.
        let end = p["end_seq"].as_u64().unwrap();
        assert!(end > last_end, "segment {k} ended out of order");
        last_end = end;
    }
    let live = |o: &str| {
        metric(
            gw.admin,
            &format!(r#"dashpush_live_segments_total{{outcome="{o}"}}"#),
        )
    };
    assert!(
        live("on_time") + live("late") >= 4.0,
        "segments pushed on their availability"
    );
    assert_eq!(live("missed"), 0.0);
    assert_eq!(metric(gw.admin, "dashpush_live_cycles"), 0.0);
}

#[test]
fn fifty_concurrent_live_push_clients_cause_one_origin_fetch_per_segment() {
    let (_o, origin) = live_origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 1);
    let req = format!("{}|{URN}push-next;2", seg(0, n));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/h2push.py");
    let children: Vec<std::process::Child> = (0..50)
        .map(|_| {
            std::process::Command::new("/usr/bin/python3")
                .args([script, &gw.addr.to_string(), MPD, &req])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python3 (installed by .ci/run)")
        })
        .collect();
    let mut got = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let pushes = v[1]["pushes"].as_array().unwrap();
        assert_eq!(pushes.len(), 2);
        for (k, p) in (n + 1..).zip(pushes) {
            assert_eq!(p["status"], 200);
            got.push((k, hex(p["body_hex"].as_str().unwrap())));
        }
    }
    // One origin request per segment for all fifty (checked before the test asks the origin
    // itself for the expected bytes).
    assert_eq!(origin_hits(origin, &seg(0, n + 1)), 1);
    assert_eq!(origin_hits(origin, &seg(0, n + 2)), 1);
    let want = [live_file(origin, 0, n + 1), live_file(origin, 0, n + 2)];
    for (k, body) in got {
        assert!(body == want[(k - n - 1) as usize], "segment {k}");
    }
}

#[test]
fn a_client_that_leaves_mid_cycle_leaves_no_cycle_running() {
    let (_o, origin) = live_origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 1);
    // push-next 20 is granted up to the 10 s live horizon, so the cycle would run ~10 s; the
    // client leaves after the first push.
    let out = h2push(
        gw.addr,
        &[
            "--quit-after-first-push",
            MPD,
            &format!("{}|{URN}push-next;20", seg(0, n)),
        ],
    );
    assert_eq!(
        out[1]["pushes"].as_array().unwrap().len(),
        10,
        "promised up front, within the horizon"
    );
    let start = Instant::now();
    while metric(gw.admin, "dashpush_live_cycles") != 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the cycle outlived its client"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing more is fetched for it.
    let hits_after: u64 = (n + 3..=n + 10)
        .map(|k| origin_hits(origin, &seg(0, k)))
        .sum();
    std::thread::sleep(Duration::from_millis(2 * SEG_MS));
    let hits_later: u64 = (n + 3..=n + 10)
        .map(|k| origin_hits(origin, &seg(0, k)))
        .sum();
    assert_eq!(hits_after, hits_later);
}

#[test]
fn a_late_origin_is_asked_again_until_the_segment_is_there() {
    // Segments appear 300 ms after the MPD says: the gateway sees 404 first and retries.
    let (_o, origin) = live_origin(&["--live-late-ms", "300"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 2) - 1;
    let out = h2push(gw.addr, &[MPD, &format!("{}|{URN}push-next;2", seg(0, n))]);
    let pushes = out[1]["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 2);
    for (k, p) in (n + 1..).zip(pushes) {
        assert_eq!(p["status"], 200, "segment {k}");
        assert!(hex(p["body_hex"].as_str().unwrap()) == live_file(origin, 0, k));
    }
    assert!(metric(gw.admin, r#"dashpush_live_segments_total{outcome="late"}"#) >= 1.0);
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_live_segments_total{outcome="missed"}"#
        ),
        0.0
    );
}

#[test]
fn a_refreshed_timeline_mpd_is_used_for_the_segments_it_appends() {
    let (_o, origin) = live_origin(&["--live-timeline"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let seg_t = |n: u64| format!("/live/chunk-stream0-t{}.m4s", (n - 1) * SEG_MS * 1000);
    let first = live_edge(gw.addr, 1);
    assert_eq!(get(gw.addr, MPD).0, 200);
    // Wait for two more segments: only a refreshed MPD lists them.
    let now = live_edge(gw.addr, first + 2);
    let out = h2push(
        gw.addr,
        &[MPD, &format!("{}|{URN}push-next;2", seg_t(now - 2))],
    );
    let paths: Vec<&str> = out[1]["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [seg_t(now - 1), seg_t(now)]);
}

#[test]
fn chunked_low_latency_segments_reach_the_client_chunk_by_chunk() {
    let (_o, origin) = live_origin(&["--live-chunked"]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 1);
    // Segment n+1 is in production now (available from its start): it arrives in pieces.
    let out = h2push(gw.addr, &[MPD, &format!("{}|{URN}push-next;2", seg(0, n))]);
    let pushes = out[1]["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 2);
    let last = &pushes[1];
    assert_eq!(last["status"], 200);
    assert!(hex(last["body_hex"].as_str().unwrap()) == live_file(origin, 0, n + 2));
    assert!(
        last["data_events"].as_u64().unwrap() >= 3,
        "a segment produced in quarters arrives in several reads: {}",
        last["data_events"]
    );
}

#[test]
fn over_websocket_each_new_live_segment_arrives_on_its_own_stream_then_the_cycle_ends() {
    use crate::ws::{answer, name, open, rt, segment_request, send};
    use dashpush_proto::ws::{EndReason, SUBPROTOCOL};
    let (_o, origin) = live_origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let n = live_edge(gw.addr, 1);
    rt().block_on(async {
        let mut ws = open(gw.addr, Some(SUBPROTOCOL)).await.unwrap();
        send(&mut ws, crate::ws::mpd_request(1, MPD, None)).await;
        answer(&mut ws, 1).await;
        send(&mut ws, segment_request(3, &seg(0, n), Some("push-next;3"))).await;
        let a = answer(&mut ws, 3).await;
        assert_eq!(a.end, Some((EndReason::Complete, None)));
        let got: Vec<String> = a.pushes.iter().map(|p| name(&p.1.url).to_owned()).collect();
        let want: Vec<String> = (n + 1..=n + 3)
            .map(|k| format!("chunk-stream0-{k:05}.m4s"))
            .collect();
        assert_eq!(got, want);
        for (k, p) in (n + 1..).zip(&a.pushes) {
            assert!(p.2 == live_file(origin, 0, k), "segment {k}");
        }
    });
    assert!(
        metric(
            gw.admin,
            r#"dashpush_live_push_delay_seconds_count{edge="last_byte",transport="ws"}"#
        ) >= 2.0
    );
}

#[test]
fn a_live_cycle_straddling_a_reload_finishes_on_the_origin_it_started_with() {
    let (_a, a) = live_origin(&[]);
    let (_b, b) = live_origin(&[]);
    let (gw, dir) = gateway_with_yaml(
        "reload-straddle",
        &format!("origin: http://{a}\nprefetch: {{next: 0}}\n"),
    );
    let file = dir.0.join("dashpush.yaml");
    let n = live_edge(gw.addr, 1);
    // A cycle that runs about five seconds (push-next;5 of 1 s live segments)...
    let addr = gw.addr;
    let cycle = std::thread::spawn(move || {
        h2push(addr, &[MPD, &format!("{}|{URN}push-next;5", seg(0, n))])
    });
    std::thread::sleep(Duration::from_millis(1500));
    // ...while the configuration moves the route to another origin.
    std::fs::write(
        &file,
        format!("origin: http://{b}\nprefetch: {{next: 0}}\n"),
    )
    .unwrap();
    let (code, _, err) = tool("kill", &["-HUP", &gw.proc.pid().to_string()]);
    assert_eq!(code, 0, "{err}");
    let start = Instant::now();
    while metric(gw.admin, r#"dashpush_config_reloads_total{result="ok"}"#) < 1.0 {
        assert!(start.elapsed() < DEADLINE, "no reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cycle.join().unwrap();
    let pushes = out[1]["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 5, "{out:?}");
    // Every segment of the cycle came from the origin it started on.
    for k in n + 1..=n + 5 {
        assert_eq!(
            (origin_hits(a, &seg(0, k)), origin_hits(b, &seg(0, k))),
            (1, 0),
            "segment {k}"
        );
    }
    // New requests go to the new origin.
    assert_eq!(get(gw.addr, &seg(1, n)).0, 200);
    assert_eq!(
        (origin_hits(a, &seg(1, n)), origin_hits(b, &seg(1, n))),
        (0, 1)
    );
}

#[test]
fn a_fleet_asks_the_origin_once_per_live_segment_for_every_replica_s_pushes() {
    let (_o, origin) = live_origin(&[]);
    let dir = Scratch::new("fleet-live");
    let ports = [
        crate::fleet::free_port(),
        crate::fleet::free_port(),
        crate::fleet::free_port(),
    ];
    let fleet: Vec<Gateway> = ports
        .iter()
        .map(|&p| crate::fleet::member(origin, p, &ports, &dir))
        .collect();
    let n = live_edge(fleet[0].addr, 1);
    // One push-next;3 client on each replica, at the same live edge.
    let cycles: Vec<_> = fleet
        .iter()
        .map(|g| {
            let addr = g.addr;
            std::thread::spawn(move || {
                h2push(addr, &[MPD, &format!("{}|{URN}push-next;3", seg(0, n))])
            })
        })
        .collect();
    for c in cycles {
        let out = c.join().unwrap();
        let pushes = out[1]["pushes"].as_array().unwrap();
        assert_eq!(pushes.len(), 3, "{out:?}");
        assert!(pushes.iter().all(|p| p["status"] == 200), "{out:?}");
    }
    // Each live segment pushed by the three was asked of the origin once, by its owner.
    for k in n + 1..=n + 3 {
        assert_eq!(origin_hits(origin, &seg(0, k)), 1, "segment {k}");
    }
}
