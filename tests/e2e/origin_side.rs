//! The origin side against an odd origin (`odd_origin.py`): informational answers, a
//! trickling body, per-user answers, the headers forwarded; and request targets that could
//! escape a route.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The odd origin, until dropped.
struct Odd {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Odd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn odd() -> Odd {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/odd_origin.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is required");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    Odd {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

#[test]
fn informational_answers_are_read_past_and_expect_is_not_forwarded() {
    let o = odd();
    let gw = gateway(&format!("http://{}", o.addr), &["--ready-without-origin"]);
    // 103 and 100 before the 200: the client gets the 200, and again from the cache.
    for _ in 0..2 {
        let url = format!("http://{}/informational", gw.addr);
        let (code, body, err) = tool("curl", &["-sS", "--fail", &url]);
        assert_eq!((code, body.as_slice()), (0, b"hello".as_slice()), "{err}");
    }
    // A credentialed request with Expect: 100-continue (forwarded as it came, but for
    // Expect, which would change the exchange).
    let url = format!("http://{}/echo", gw.addr);
    let (code, out, err) = tool(
        "curl",
        &[
            "-sS",
            "-H",
            "Authorization: Bearer x",
            "-H",
            "Expect: 100-continue",
            &url,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let names = String::from_utf8(out).unwrap();
    assert!(names.lines().any(|n| n == "authorization"), "{names}");
    assert!(!names.lines().any(|n| n == "expect"), "{names}");
    // Every connection counted as open is counted as closed again.
    let start = Instant::now();
    while metric(gw.admin, r#"dashpush_open_connections{protocol="h1"}"#) != 0.0 {
        assert!(
            start.elapsed() < DEADLINE,
            "open connections never back to 0"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_trickling_origin_is_cut_off_at_the_total_deadline() {
    let o = odd();
    let dir = Scratch::new("trickle");
    let conf = dir.0.join("dashpush.yaml");
    std::fs::write(
        &conf,
        format!(
            "origin: http://{}\nready_without_origin: true\nupstream: {{total_timeout_ms: 1000}}\n",
            o.addr
        ),
    )
    .unwrap();
    let gw = gateway_with(&["-c", conf.to_str().unwrap()]);
    // Each read makes progress (a byte every 200 ms), so only a total deadline ends it.
    let start = Instant::now();
    let (code, out, _) = tool(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/trickle", gw.addr),
        ],
    );
    let took = start.elapsed();
    assert_ne!(code, 0, "the body is cut short, never passed off as whole");
    assert_eq!(out, b"200");
    assert!(took < Duration::from_secs(5), "held {took:?}");
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_origin_fetches_total{outcome="timeout"}"#
        ),
        1.0
    );
}

#[test]
fn a_per_user_answer_is_never_shared_between_concurrent_requests() {
    let o = odd();
    let gw = gateway(&format!("http://{}", o.addr), &["--ready-without-origin"]);
    let addr = gw.addr;
    // Three clients at once: the origin takes 300 ms, so they meet on one fetch; its answer
    // sets a cookie and is private, so each gets its own.
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let url = format!("http://{addr}/cookie");
                let (code, out, err) = tool("curl", &["-sS", "-D", "-", &url]);
                assert_eq!(code, 0, "{err}");
                let text = String::from_utf8(out).unwrap();
                text.lines()
                    .find_map(|l| {
                        l.strip_prefix("set-cookie: ")
                            .or_else(|| l.strip_prefix("Set-Cookie: "))
                    })
                    .map(|c| c.trim().to_owned())
                    .expect("a cookie")
            })
        })
        .collect();
    let mut cookies: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    cookies.sort();
    cookies.dedup();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    // And it is not stored: a fourth request is a fourth cookie.
    let (code, out, _) = tool("curl", &["-sS", &format!("http://{addr}/cookie")]);
    assert_eq!(code, 0);
    assert_eq!(out, b"you are 4");
}

#[test]
fn request_targets_that_could_escape_a_route_are_refused() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    for bad in [
        "/vod%2F..%2Fmanifest.mpd",
        "/vod/..;/vod/manifest.mpd",
        "/vod%5Cmanifest.mpd",
        "/vod/%2e%2e/vod/manifest.mpd",
    ] {
        let url = format!("http://{}{bad}", gw.addr);
        let (_, out, _) = tool(
            "curl",
            &[
                "-sS",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ],
        );
        assert_eq!(out, b"400", "{bad}");
    }
}

#[test]
fn the_builtin_origin_keeps_its_switches_off_the_content_port_and_no_dotfiles() {
    let (_o, content, control) = origin_ports(&[]);
    // Through a gateway in front of the content port, nobody can switch the faults.
    let gw = gateway(&format!("http://{content}"), &[]);
    assert_eq!(get(gw.addr, "/_origin/faults?error_rate=1").0, 404);
    assert_eq!(get(content, "/_origin/hits").0, 404);
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    // The control port has them (the demo and the tests turn it on).
    assert_eq!(get(control, "/_origin/hits").0, 200);
    // A directory's dotfiles are never served.
    let dir = Scratch::new("dotfiles");
    std::fs::create_dir_all(dir.0.join("vod/.git")).unwrap();
    std::fs::write(dir.0.join("vod/.git/config"), "secret").unwrap();
    std::fs::write(dir.0.join(".htpasswd"), "secret").unwrap();
    std::fs::write(dir.0.join("vod/a.mpd"), "<MPD/>").unwrap();
    let mut p = Proc::spawn(&[
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--dir",
        dir.0.to_str().unwrap(),
    ]);
    let addr = p.addr_after("listening origin on ");
    assert_eq!(get(addr, "/vod/a.mpd").0, 200);
    for hidden in ["/.htpasswd", "/vod/.git/config", "/_origin/hits"] {
        assert_eq!(get(addr, hidden).0, 404, "{hidden}");
    }
}

#[test]
fn eighty_host_names_on_one_mpd_parse_it_once() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    let url = format!("http://{}/vod/manifest.mpd", gw.addr);
    for i in 0..80 {
        let host = format!("Host: viewer-{i}.example");
        let (code, _, err) = tool(
            "curl",
            &["-sS", "--fail", "-o", "/dev/null", "-H", &host, &url],
        );
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(metric(gw.admin, "dashpush_mpd_parses_total"), 1.0);
    // Push still works for any of them (its URLs in that client's own host).
    let (code, out, err) = tool(
        "nghttp",
        &[
            "-nv",
            "-H",
            ":authority: viewer-7.example",
            "-H",
            "accept-push-policy: urn:mpeg:dash:fdh:2016:push-next;1",
            &format!("http://{}/vod/chunk-stream0-00001.m4s", gw.addr),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains(":authority: viewer-7.example") && out.contains("recv PUSH_PROMISE"),
        "{out}"
    );
}

#[test]
fn credentialed_requests_stream_through_and_are_capped() {
    let (_o, origin) = origin(&[]);
    let (gw, _dir) = gateway_with_yaml(
        "bypass",
        &format!("origin: http://{origin}\nupstream: {{max_bypass_requests: 1}}\n"),
    );
    // The origin sends the first half of this body and holds the rest until /_origin/open.
    let mut first = std::net::TcpStream::connect(gw.addr).unwrap();
    first
        .write_all(
            b"GET /_origin/gated/200000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n\r\n",
        )
        .unwrap();
    first.set_read_timeout(Some(DEADLINE)).unwrap();
    // Streamed: the first half arrives while the origin holds the rest.
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < 100_000 {
        let n = first.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    // The only slot is taken: a second credentialed request gets 503 at once.
    let url = format!("http://{}/vod/manifest.mpd", gw.addr);
    let (_, status, _) = tool(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Authorization: Bearer b",
            &url,
        ],
    );
    assert_eq!(status, b"503");
    // Anonymous requests are not held up by it.
    assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    assert_eq!(get(origin, "/_origin/open").0, 200);
}
