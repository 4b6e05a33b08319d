//! The operator's tools: cache purge on the admin listener (with its token).

use std::time::{Duration, Instant};

use crate::harness::*;

const TOKEN: &str = "test-token-0123456789";

/// `curl -X POST` to the admin listener; (status, body).
fn post(admin: std::net::SocketAddr, path: &str, token: Option<&str>) -> (String, String) {
    let url = format!("http://{admin}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-sS", "-X", "POST", "-w", "\n%{http_code}"];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    args.push(&url);
    let (code, out, err) = tool("curl", &args);
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.to_owned(), body.trim_end().to_owned())
}

fn with_token(origin: std::net::SocketAddr, name: &str) -> (Gateway, Scratch) {
    gateway_with_yaml(
        name,
        &format!("origin: http://{origin}\nadmin: {{token: {TOKEN}}}\nprefetch: {{next: 0}}\n"),
    )
}

#[test]
fn purge_removes_one_path_or_a_prefix_and_needs_the_token() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = with_token(origin, "purge");
    let seg = "/vod/chunk-stream0-00001.m4s";
    for _ in 0..2 {
        assert_eq!(get(gw.addr, seg).0, 200);
    }
    assert_eq!(origin_hits(origin, seg), 1, "the second was a hit");

    // Without the token, or with a wrong one: 401, nothing purged.
    assert_eq!(post(gw.admin, &format!("/purge?path={seg}"), None).0, "401");
    assert_eq!(
        post(
            gw.admin,
            &format!("/purge?path={seg}"),
            Some("wrong-token-0123456789")
        )
        .0,
        "401"
    );
    assert_eq!(get(gw.addr, seg).0, 200);
    assert_eq!(origin_hits(origin, seg), 1);
    // Reading routes stay open (Prometheus, probes).
    assert_eq!(get(gw.admin, "/metrics").0, 200);

    // One path: that entry goes, the next request fetches it again.
    let (status, body) = post(gw.admin, &format!("/purge?path={seg}"), Some(TOKEN));
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("200", "{\"purged\":1,\"fills\":0}")
    );
    assert_eq!(get(gw.addr, seg).0, 200);
    assert_eq!(origin_hits(origin, seg), 2);
    assert_eq!(metric(gw.admin, "dashpush_cache_purged_total"), 1.0);

    // A prefix: everything under it, nothing else.
    for p in [
        "/vod/chunk-stream1-00001.m4s",
        "/vod/chunk-stream2-00001.m4s",
        "/vod/init-stream0.m4s",
        "/live/init-stream0.m4s",
    ] {
        assert_eq!(get(gw.addr, p).0, 200);
    }
    let (status, body) = post(gw.admin, "/purge?prefix=/vod/", Some(TOKEN));
    assert_eq!(status, "200");
    assert_eq!(
        body, "{\"purged\":4,\"fills\":0}",
        "three segments, one init, the first segment"
    );
    assert_eq!(get(gw.addr, "/live/init-stream0.m4s").0, 200);
    assert_eq!(
        origin_hits(origin, "/live/init-stream0.m4s"),
        1,
        "outside the prefix: kept"
    );
    assert_eq!(metric(gw.admin, "dashpush_cache_purged_total"), 5.0);

    // Bad requests.
    assert_eq!(post(gw.admin, "/purge", Some(TOKEN)).0, "400");
    assert_eq!(post(gw.admin, "/purge?prefix=vod", Some(TOKEN)).0, "400");
    assert_eq!(get(gw.admin, "/purge?prefix=/").0, 405);
}

#[test]
fn a_fill_in_flight_when_purged_reaches_its_reader_but_is_not_stored() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = with_token(origin, "purge-inflight");
    let gated = "/_origin/gated/200000";
    let addr = gw.addr;
    // A reader of an object whose second half the origin holds back.
    let reader = std::thread::spawn(move || get(addr, gated));
    let start = Instant::now();
    while metric(gw.admin, "dashpush_cache_misses_total") < 1.0 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = post(gw.admin, &format!("/purge?path={gated}"), Some(TOKEN));
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("200", "{\"purged\":0,\"fills\":1}")
    );
    assert_eq!(get(origin, "/_origin/open").0, 200);
    let (status, _) = reader.join().unwrap();
    assert_eq!(status, 200);
    // Not stored: the next request goes to the origin again.
    let next = std::thread::spawn(move || get(addr, gated));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(origin, "/_origin/open").0, 200);
    assert_eq!(next.join().unwrap().0, 200);
    assert_eq!(origin_hits(origin, gated), 2);
}

/// The access log's lines, as JSON values, once `count` are there.
fn access_lines(path: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} lines, wanted {count}: {text}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_access_log_has_a_line_per_request_and_per_push() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("access-log");
    let log = dir.0.join("access.log");
    let gw = gateway(
        &format!("http://{origin}"),
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "--prefetch-next",
            "0",
        ],
    );
    let seg = "/vod/chunk-stream0-00001.m4s";
    let size = demo_file("chunk-stream0-00001.m4s").len() as u64;
    // HTTP/1.1: a miss, then a hit.
    let url = format!("http://{}{seg}", gw.addr);
    for _ in 0..2 {
        assert_eq!(
            tool("curl", &["-sS", "--fail", "-o", "/dev/null", &url]).0,
            0
        );
    }
    let lines = access_lines(&log, 2);
    for (line, cache) in lines.iter().zip(["fwd=miss", "hit"]) {
        assert_eq!(line["protocol"], "h1", "{line}");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], seg);
        assert_eq!(line["status"], 200);
        assert_eq!(line["bytes"], size);
        assert_eq!(line["client"], "127.0.0.1");
        assert_eq!(line["cache"], cache);
        assert_eq!(line["route"], format!("http://{origin}"));
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
    // HTTP/2 with push-next;2 (after the MPD, which the planner needs): the parent's line says
    // what was asked, acked and how the pushes ended; each push has its own line.
    let base = format!("http://{}", gw.addr);
    let (code, _, err) = tool("nghttp", &["-n", &format!("{base}/vod/manifest.mpd")]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tool(
        "nghttp",
        &[
            "-n",
            "-H",
            "accept-push-policy: urn:mpeg:dash:fdh:2016:push-next;2",
            &format!("{base}/vod/chunk-stream1-00001.m4s"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines = access_lines(&log, 6);
    let parent = lines
        .iter()
        .find(|l| l["path"] == "/vod/chunk-stream1-00001.m4s")
        .expect("the parent's line");
    assert_eq!(parent["protocol"], "h2", "{parent}");
    assert_eq!(parent["push"]["directive"], "push-next");
    assert_eq!(parent["push"]["ack"], "urn:mpeg:dash:fdh:2016:push-next;2");
    assert_eq!(parent["push"]["promised"], 2);
    assert_eq!(parent["push"]["completed"], 2);
    let pushed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["pushed"] == true).collect();
    let paths: Vec<&str> = pushed.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/vod/chunk-stream1-00002.m4s",
            "/vod/chunk-stream1-00003.m4s"
        ]
    );
    for p in &pushed {
        assert_eq!(p["outcome"], "completed", "{p}");
        assert_eq!(p["protocol"], "h2");
        assert!(p["bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(metric(gw.admin, "dashpush_access_log_dropped_total"), 0.0);
}

/// The names of the process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim_end().to_owned());
        }
    }
    names
}

/// Without `threads`, one traffic thread per CPU the gateway may use: pinned to one CPU (as a
/// one-CPU container or `taskset` pins it) it runs one, not one per CPU of the machine.
#[test]
fn without_threads_the_traffic_runtime_has_one_thread_per_cpu_it_may_use() {
    let (_o, origin) = origin(&[]);
    let traffic = |gw: &Gateway| {
        thread_names(gw.proc.pid())
            .iter()
            .filter(|n| *n == "BG dashpush")
            .count()
    };
    let origin = format!("http://{origin}");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--origin",
        &origin,
    ];
    let pinned = gateway_run_under(&["taskset", "-c", "0"], &args);
    assert_eq!(traffic(&pinned), 1, "{:?}", thread_names(pinned.proc.pid()));
    assert_eq!(get(pinned.addr, "/vod/manifest.mpd").0, 200);
    let free = gateway_run(&args);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(traffic(&free), cpus, "{:?}", thread_names(free.proc.pid()));
}

#[test]
fn threads_sets_the_traffic_runtime_and_it_serves() {
    let (_o, origin) = origin(&[]);
    for threads in [1, 3] {
        let (gw, _dir) = gateway_with_yaml(
            &format!("threads-{threads}"),
            &format!("origin: http://{origin}\nthreads: {threads}\n"),
        );
        let traffic = thread_names(gw.proc.pid())
            .iter()
            .filter(|n| *n == "BG dashpush")
            .count();
        assert_eq!(traffic, threads, "{:?}", thread_names(gw.proc.pid()));
        assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    }
}
