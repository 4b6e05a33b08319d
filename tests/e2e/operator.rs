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
    let dir = Scratch::new(name);
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(
        &file,
        format!("origin: http://{origin}\nadmin: {{token: {TOKEN}}}\nprefetch: {{next: 0}}\n"),
    )
    .unwrap();
    (gateway_with(&["-c", file.to_str().unwrap()]), dir)
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
