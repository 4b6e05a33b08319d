//! Against stock parts: TLS clients, `promtool`, and nginx as the origin.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A gateway with `args` and a TLS listener on a self-signed certificate made in `dir`; its
/// TLS address.
fn tls_gateway(dir: &Scratch, args: &[&str]) -> (Gateway, SocketAddr) {
    let (cert, key) = self_signed(dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut all = args.to_vec();
    all.extend_from_slice(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    let mut gw = gateway_with(&all);
    let tls = gw.proc.addr_after("listening tls (h2, http/1.1) on ");
    (gw, tls)
}

#[test]
fn tls_negotiates_h2_and_http11_by_alpn() {
    let dir = Scratch::new("tls");
    let (_o, origin) = origin(&[]);
    let (_gw, tls) = tls_gateway(&dir, &["--origin", &format!("http://{origin}")]);
    let file = demo_file("chunk-stream0-00002.m4s");
    let url = format!("https://{tls}/vod/chunk-stream0-00002.m4s");
    // nghttp speaks only h2 over TLS: it fails unless ALPN selected h2.
    let (code, body, err) = tool("nghttp", &[&url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, file);
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (code, out, err) = tool(
            "curl",
            &["-sS", "-k", flag, "-w", "\n%{http_version}", &url],
        );
        assert_eq!(code, 0, "{err}");
        let (body, v) = out.split_at(out.len() - version.len() - 1);
        assert_eq!(v, format!("\n{version}").as_bytes());
        assert_eq!(body, file);
    }
    // Push works over TLS too; promised URLs carry the https scheme of the connection.
    let (code, out, err) = tool(
        "nghttp",
        &[
            "-nv",
            "-H",
            "accept-push-policy: urn:mpeg:dash:fdh:2016:push-fast-start",
            &format!("https://{tls}/vod/manifest.mpd"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("recv PUSH_PROMISE frame").count(), 4, "{out}");
    assert!(out.contains(") :scheme: https"), "{out}");
}

#[test]
fn metrics_pass_promtool_and_match_the_traffic() {
    let (_o, origin) = origin(&[]);
    let gw = gateway(&format!("http://{origin}"), &[]);
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/vod/manifest.mpd").0, 200);
    }
    assert_eq!(get(gw.addr, "/vod/nope.m4s").0, 404);
    let (status, text) = get(gw.admin, "/metrics");
    assert_eq!(status, 200);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package prometheus, installed by .ci/run)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h1",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h1",status="404"}"#
        ),
        1.0
    );
    assert_eq!(metric(gw.admin, "dashpush_cache_hits_total"), 2.0);
    // The 404 is fetched, not stored, and counted as an ok fetch (the origin answered).
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        2.0
    );
}

/// nginx serving the demo files from disk on a free port, until dropped.
struct Nginx {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: Scratch,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx() -> Nginx {
    nginx_with("")
}

/// nginx with extra `location` blocks in its server.
fn nginx_with(locations: &str) -> Nginx {
    nginx_serving(locations, None)
}

/// nginx with extra `location` blocks, over TLS with `(certificate, key)` if given.
fn nginx_serving(locations: &str, tls: Option<(&std::path::Path, &std::path::Path)>) -> Nginx {
    let dir = Scratch::new(if tls.is_some() { "nginx-tls" } else { "nginx" });
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let root = format!("{}/crates/dashpush-origin/demo", env!("CARGO_MANIFEST_DIR"));
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ application/dash+xml mpd; video/mp4 m4s mp4; }}
    server {{
        listen {addr}{ssl};
        root {root};
        {locations}
        location / {{ add_header Cache-Control "max-age=60"; }}
    }}
}}
"#,
        d = dir.0.display(),
        ssl = match tls {
            Some((cert, key)) => format!(
                " ssl;\n        ssl_certificate {};\n        ssl_certificate_key {}",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        }
    );
    let path = dir.0.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", dir.0.to_str().unwrap(), "-c", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is required (Debian package nginx-light, installed by .ci/run)");
    let start = Instant::now();
    let up = || match tls {
        None => get(addr, "/vod/manifest.mpd").0 == 200,
        Some(_) => {
            let url = format!("https://{addr}/vod/manifest.mpd");
            tool(
                "curl",
                &["-sSk", "-o", "/dev/null", "-w", "%{http_code}", &url],
            )
            .1 == b"200"
        }
    };
    while !up() {
        assert!(start.elapsed() < DEADLINE, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

#[test]
fn nginx_as_the_origin_works_like_the_builtin_one() {
    let n = nginx();
    // Prefetching off: this test counts hits request by request.
    let gw = gateway(&format!("http://{}", n.addr), &["--prefetch-next", "0"]);
    for name in DEMO_FILES {
        for _ in 0..2 {
            let url = format!("http://{}/vod/{name}", gw.addr);
            let (code, body, err) = tool("curl", &["-sS", "--fail", &url]);
            assert_eq!(code, 0, "{err}");
            assert_eq!(body, demo_file(name), "{name}");
        }
    }
    let n_files = DEMO_FILES.len() as f64;
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        n_files
    );
    assert_eq!(metric(gw.admin, "dashpush_cache_hits_total"), n_files);
    let url = format!("http://{}/vod/chunk-stream0-00001.m4s", gw.addr);
    let (_, body, _) = tool("curl", &["-sS", "-r", "10-19", &url]);
    assert_eq!(body, demo_file("chunk-stream0-00001.m4s")[10..20]);
}

#[test]
fn config_file_with_flags_overriding_it() {
    let (_o, origin) = origin(&[]);
    let dir = Scratch::new("config");
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(
        &file,
        format!("listen: 127.0.0.1:1\nadmin: 127.0.0.1:1\norigin: http://{origin}\ncache:\n  segment_ttl_ms: 60000\nlog_format: json\n"),
    )
    .unwrap();
    // The file's listen/admin (port 1, unusable) are overridden by the flags.
    let mut p = Proc::spawn(&[
        "run",
        "-c",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    let addr = p.addr_after("listening http/1.1+h2c on ");
    let start = Instant::now();
    while get(addr, "/vod/manifest.mpd").0 != 200 {
        assert!(start.elapsed() < DEADLINE);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn conditional_requests_are_answered_from_the_cache() {
    let n = nginx();
    let gw = gateway(&format!("http://{}", n.addr), &[]);
    let url = format!("http://{}/vod/chunk-stream1-00001.m4s", gw.addr);
    let (code, head, _) = tool("curl", &["-sS", "-D", "-", "-o", "/dev/null", &url]);
    assert_eq!(code, 0);
    let head = String::from_utf8_lossy(&head).to_string();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let (etag, last_modified) = (field("etag"), field("last-modified"));
    for header in [
        format!("If-None-Match: {etag}"),
        format!("If-Modified-Since: {last_modified}"),
    ] {
        let (_, out, _) = tool(
            "curl",
            &[
                "-sS",
                "-H",
                &header,
                "-w",
                "%{http_code} %{size_download}",
                &url,
            ],
        );
        assert_eq!(String::from_utf8_lossy(&out), "304 0", "{header}");
    }
    let (_, out, _) = tool(
        "curl",
        &[
            "-sS",
            "-H",
            "If-None-Match: \"other\"",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    assert_eq!(out, b"200");
    // One origin fetch; the rest were answered by the gateway.
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        metric(
            gw.admin,
            r#"dashpush_requests_total{protocol="h1",status="304"}"#
        ),
        2.0
    );
}

#[test]
fn several_origins_by_path_prefix_and_host_each_with_its_own_cache_entries() {
    let (_a, a) = origin(&[]);
    let (_b, b) = origin(&[]);
    let (_c, c) = origin(&[]);
    let dir = Scratch::new("routes");
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(
        &file,
        format!("origin: http://{a}\nroutes:\n  - {{hosts: [b.test], origin: 'http://{b}'}}\n"),
    )
    .unwrap();
    let gw = gateway_with(&[
        "-c",
        file.to_str().unwrap(),
        "--route",
        &format!("/vod/chunk-stream2-=http://{c}"),
    ]);
    let seg = "/vod/chunk-stream0-00001.m4s";
    let audio = "/vod/chunk-stream2-00001.m4s";
    let fetch = |host: &str, path: &str| {
        let (code, body, err) = tool(
            "curl",
            &[
                "-sS",
                "--fail",
                "-H",
                &format!("Host: {host}"),
                &format!("http://{}{path}", gw.addr),
            ],
        );
        assert_eq!(code, 0, "{err}");
        body
    };
    // The same path under two hosts: two origins, two cache entries.
    assert_eq!(
        fetch("plain.test", seg),
        demo_file("chunk-stream0-00001.m4s")
    );
    assert_eq!(
        fetch("B.test:8080", seg),
        demo_file("chunk-stream0-00001.m4s")
    );
    assert_eq!(
        fetch("plain.test", seg),
        demo_file("chunk-stream0-00001.m4s")
    );
    assert_eq!(
        (
            origin_hits(a, seg),
            origin_hits(b, seg),
            origin_hits(c, seg)
        ),
        (1, 1, 0)
    );
    // The longer prefix from the flag wins for every host.
    assert_eq!(fetch("b.test", audio), demo_file("chunk-stream2-00001.m4s"));
    assert_eq!(
        (
            origin_hits(a, audio),
            origin_hits(b, audio),
            origin_hits(c, audio)
        ),
        (0, 0, 1)
    );
    // /ready waited for all three origins.
    assert_eq!(get(gw.admin, "/ready").0, 200);
}

#[test]
fn sighup_and_a_changed_file_reload_the_origins_and_a_bad_config_is_refused() {
    let (_a, a) = origin(&[]);
    let (_b, b) = origin(&[]);
    let dir = Scratch::new("reload");
    let file = dir.0.join("dashpush.yaml");
    let write = |origin: SocketAddr| {
        std::fs::write(
            &file,
            format!("origin: http://{origin}\nprefetch: {{next: 0}}\n"),
        )
        .unwrap()
    };
    write(a);
    let gw = gateway_with(&["-c", file.to_str().unwrap()]);
    let reloads = |result: &str| {
        metric(
            gw.admin,
            &format!(r#"dashpush_config_reloads_total{{result="{result}"}}"#),
        )
    };
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < DEADLINE, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let seg = |n: u32| format!("/vod/chunk-stream0-{n:05}.m4s");
    assert_eq!(get(gw.addr, &seg(1)).0, 200);
    assert_eq!((origin_hits(a, &seg(1)), origin_hits(b, &seg(1))), (1, 0));
    // SIGHUP after pointing the file at origin B.
    write(b);
    let hup = |pid: u32| {
        let (code, _, err) = tool("kill", &["-HUP", &pid.to_string()]);
        assert_eq!(code, 0, "{err}");
    };
    hup(gw.proc.pid());
    wait_for("reload after SIGHUP", &|| reloads("ok") >= 1.0);
    assert_eq!(get(gw.addr, &seg(2)).0, 200);
    assert_eq!((origin_hits(a, &seg(2)), origin_hits(b, &seg(2))), (0, 1));
    // A bad file is refused and origin B stays.
    std::fs::write(&file, "origin: http://127.0.0.1:1\nprefetch: {nxet: 0}\n").unwrap();
    hup(gw.proc.pid());
    wait_for("rejected reload", &|| reloads("error") >= 1.0);
    assert_eq!(get(gw.addr, &seg(3)).0, 200);
    assert_eq!((origin_hits(a, &seg(3)), origin_hits(b, &seg(3))), (0, 1));
    // A changed file alone (a ConfigMap update, no signal) is picked up too.
    let ok_before = reloads("ok");
    write(a);
    wait_for("reload on file change", &|| reloads("ok") > ok_before);
    let seg1 = "/vod/chunk-stream1-00001.m4s";
    assert_eq!(get(gw.addr, seg1).0, 200);
    assert_eq!((origin_hits(a, seg1), origin_hits(b, seg1)), (1, 0));
}

#[test]
fn a_304_answer_keeps_its_stream_open_until_its_pushes_are_promised() {
    // nginx sends validators, so a conditional segment request is answered 304 from the cache;
    // its push-next pushes must still arrive, on a connection that stays usable.
    let n = nginx();
    let gw = gateway(&format!("http://{}", n.addr), &[]);
    let seg = "/vod/chunk-stream0-00001.m4s";
    let (code, head, _) = tool(
        "curl",
        &[
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{}{seg}", gw.addr),
        ],
    );
    assert_eq!(code, 0);
    let head = String::from_utf8_lossy(&head).to_string();
    let etag = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("etag"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .expect("etag from nginx");
    let out = h2push(
        gw.addr,
        &[
            "--header",
            &format!("if-none-match:{etag}"),
            "/vod/manifest.mpd",
            &format!("{seg}|urn:mpeg:dash:fdh:2016:push-next;2"),
            "/vod/chunk-stream0-00003.m4s",
        ],
    );
    assert_eq!(out[1]["status"], 304);
    let pushes: Vec<(&str, &serde_json::Value)> = out[1]["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), &p["status"]))
        .collect();
    assert_eq!(
        pushes,
        [
            ("/vod/chunk-stream0-00002.m4s", &serde_json::json!(200)),
            ("/vod/chunk-stream0-00003.m4s", &serde_json::json!(200))
        ]
    );
    // The connection survived: a request after it is answered (its segment was pushed, so it
    // is a cache hit; the If-None-Match of the other segment does not match it).
    assert_eq!(out[2]["status"], 200);
}

/// Spec §6.2 rule 5: a segment the origin marks `no-store` is never pushed over HTTP/2 (the
/// push is withheld before the ack or withdrawn after it), and every promise is accounted.
#[test]
fn a_no_store_segment_is_never_pushed_over_http2() {
    let n = nginx_with(
        r#"location = /vod/chunk-stream0-00003.m4s { add_header Cache-Control "private, no-store"; }"#,
    );
    let gw = gateway(&format!("http://{}", n.addr), &["--prefetch-next", "0"]);
    let urn = "urn:mpeg:dash:fdh:2016:";
    let out = h2push(
        gw.addr,
        &[
            "/vod/manifest.mpd",
            &format!(
                "/vod/chunk-stream0-00001.m4s|{urn}push-list;chunk-stream0-00002.m4s,chunk-stream0-00003.m4s"
            ),
        ],
    );
    let pushes = out[1]["pushes"].as_array().unwrap();
    let delivered: Vec<&str> = pushes
        .iter()
        .filter(|p| p["status"] == 200 && !p["reset_by_server"].as_bool().unwrap())
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(delivered, ["/vod/chunk-stream0-00002.m4s"], "{pushes:?}");
    let uncacheable = metric(
        gw.admin,
        r#"dashpush_push_dropped_total{reason="uncacheable",transport="h2"}"#,
    ) + metric(
        gw.admin,
        r#"dashpush_push_withheld_total{reason="uncacheable",transport="h2"}"#,
    );
    assert_eq!(uncacheable, 1.0);
    // A push withheld before the ack is not in it.
    let ack = out[1]["headers"]["push-policy"].as_str().unwrap();
    if metric(
        gw.admin,
        r#"dashpush_push_withheld_total{reason="uncacheable",transport="h2"}"#,
    ) == 1.0
    {
        assert_eq!(ack, format!("{urn}push-list;chunk-stream0-00002.m4s"));
    }
    assert_counter_rule(gw.admin, "h2");
}

/// A test CA in `dir` and a server certificate it signed for 127.0.0.1 and localhost:
/// `(ca, server certificate, server key)`.
fn test_ca(
    dir: &Scratch,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |f: &str| dir.0.join(format!("{name}-{f}"));
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.pem"),
        p("server.key"),
        p("server.csr"),
        p("ext.cnf"),
    );
    let s = |path: &std::path::PathBuf| path.to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = tool("openssl", &args);
        assert_eq!(code, 0, "openssl {args:?}: {err}");
    };
    let mut a: Vec<String> = vec!["req".into(), "-x509".into()];
    a.extend(ec.iter().map(|x| (*x).to_owned()));
    a.extend(
        [
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "1",
            "-subj",
            &format!("/CN=dashpush test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]
        .map(str::to_owned),
    );
    run(a);
    let mut a: Vec<String> = vec!["req".into()];
    a.extend(ec.iter().map(|x| (*x).to_owned()));
    a.extend(
        [
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            "/CN=localhost",
        ]
        .map(str::to_owned),
    );
    run(a);
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run([
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "1",
        "-extfile",
        &s(&ext),
    ]
    .map(str::to_owned)
    .to_vec());
    (ca, cert, key)
}

#[test]
fn an_https_origin_is_verified_against_the_configured_ca_and_a_wrong_one_is_a_502() {
    let dir = Scratch::new("https-origin");
    let (ca, cert, key) = test_ca(&dir, "right");
    let (other_ca, _, _) = test_ca(&dir, "other");
    let n = nginx_serving("", Some((&cert, &key)));
    let origin = format!("https://{}", n.addr);
    let segment = "chunk-stream0-00002.m4s";

    // The right CA: served, byte for byte, and cached (a second request is a hit).
    let gw = gateway(&origin, &["--origin-ca", ca.to_str().unwrap()]);
    for _ in 0..2 {
        let (code, body, err) = tool(
            "curl",
            &[
                "-sS",
                "--fail",
                &format!("http://{}/vod/{segment}", gw.addr),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(body, demo_file(segment));
    }
    assert_eq!(
        metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(metric(gw.admin, "dashpush_cache_hits_total"), 1.0);

    // Another CA, or the system roots: the certificate does not verify, 502, counted.
    for ca_args in [vec!["--origin-ca", other_ca.to_str().unwrap()], vec![]] {
        let gw = gateway(&origin, &ca_args);
        assert_eq!(get(gw.addr, &format!("/vod/{segment}")).0, 502);
        assert_eq!(
            metric(
                gw.admin,
                r#"dashpush_origin_fetches_total{outcome="tls_error"}"#
            ),
            1.0
        );
    }

    // Verification off (an explicit key, warned about at start): served.
    let conf = dir.0.join("insecure.yaml");
    std::fs::write(
        &conf,
        format!("origin: {origin}\nupstream: {{tls_verify: false}}\n"),
    )
    .unwrap();
    let gw = gateway_with(&["-c", conf.to_str().unwrap()]);
    assert_eq!(get(gw.addr, &format!("/vod/{segment}")).0, 200);
}

/// A GET through curl: (status, lower-cased headers, body).
fn get_with_headers(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (code, out, err) = tool("curl", &["-sS", "-i", url]);
    assert_eq!(code, 0, "{err}");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, out[split + 4..].to_vec())
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// nginx serving the demo VOD files under `/PREFIX/` with `Cache-Control: CC`, for each pair.
fn nginx_caching(paths: &[(&str, &str)]) -> Nginx {
    let root = format!(
        "{}/crates/dashpush-origin/demo/vod/",
        env!("CARGO_MANIFEST_DIR")
    );
    let locations: String = paths
        .iter()
        .map(|(prefix, cc)| {
            format!("location /{prefix}/ {{ alias {root}; add_header Cache-Control \"{cc}\"; }}\n")
        })
        .collect();
    nginx_with(&locations)
}

#[test]
fn stale_entries_are_revalidated_with_validators_and_refreshed_by_a_304() {
    let n = nginx_caching(&[
        ("short", "max-age=1"),
        ("swr", "max-age=1, stale-while-revalidate=30"),
        ("nocache", "no-cache"),
    ]);
    let gw = gateway(&format!("http://{}", n.addr), &["--prefetch-next", "0"]);
    let file = demo_file("chunk-stream0-00002.m4s");
    let url = |p: &str| format!("http://{}/{p}/chunk-stream0-00002.m4s", gw.addr);
    let x_cache = |p: &str| {
        let (status, headers, body) = get_with_headers(&url(p));
        assert_eq!(status, 200, "{p}: {headers:?}");
        assert_eq!(body, file, "{p}");
        (
            header_of(&headers, "x-cache").unwrap_or("-").to_owned(),
            header_of(&headers, "age").map(|a| a.parse::<u64>().unwrap()),
        )
    };
    // Fresh for a second: a miss, then a hit that says its age.
    assert_eq!(x_cache("short").0, "MISS");
    let (x, age) = x_cache("short");
    assert_eq!((x.as_str(), age.is_some()), ("HIT", true));
    std::thread::sleep(Duration::from_millis(1100));
    // Stale: revalidated with its ETag; nginx answers 304 and the stored body is served.
    let (x, age) = x_cache("short");
    assert_eq!(x, "REVALIDATED");
    assert_eq!(age, None);
    // Refreshed: fresh again.
    assert_eq!(x_cache("short").0, "HIT");
    let fetches = metric(gw.admin, r#"dashpush_origin_fetches_total{outcome="ok"}"#);
    assert_eq!(fetches, 2.0, "one fetch and one revalidation");

    // stale-while-revalidate: the stale copy at once, refreshed in the background.
    assert_eq!(x_cache("swr").0, "MISS");
    std::thread::sleep(Duration::from_millis(1100));
    let (x, age) = x_cache("swr");
    assert_eq!(x, "STALE");
    assert!(age.unwrap() >= 1);
    let start = Instant::now();
    while x_cache("swr").0 != "HIT" {
        assert!(start.elapsed() < DEADLINE, "never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }

    // no-cache: stored, but revalidated before every use.
    assert_eq!(x_cache("nocache").0, "MISS");
    for _ in 0..2 {
        assert_eq!(x_cache("nocache").0, "REVALIDATED");
    }
}

#[test]
fn a_stale_entry_answers_while_the_origin_is_down_within_stale_if_error() {
    let n = nginx_caching(&[("short", "max-age=1")]);
    let origin = format!("http://{}", n.addr);
    let gw = gateway(&origin, &["--prefetch-next", "0"]);
    let dir = Scratch::new("no-stale");
    let conf = dir.0.join("dashpush.yaml");
    std::fs::write(
        &conf,
        format!("origin: {origin}\nupstream: {{stale_if_error_ms: 0}}\n"),
    )
    .unwrap();
    let strict = gateway_with(&["-c", conf.to_str().unwrap()]);
    let path = "/short/chunk-stream0-00001.m4s";
    for g in [&gw, &strict] {
        assert_eq!(get(g.addr, path).0, 200);
    }
    // The origin goes away; the entries go stale.
    drop(n);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, headers, body) = get_with_headers(&format!("http://{}{path}", gw.addr));
    assert_eq!(
        status, 200,
        "the default stale-if-error (60 s) serves the stale copy"
    );
    assert_eq!(header_of(&headers, "x-cache"), Some("STALE"));
    assert!(header_of(&headers, "age").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(body, demo_file("chunk-stream0-00001.m4s"));
    // Without stale-if-error: the origin's failure shows.
    assert_eq!(get(strict.addr, path).0, 502);
}

/// Headless Chromium over TLS (ALPN h2) keeps its connection while it idles: the gateway parks
/// it again (its h2 state dropped), and Chromium's next requests on it wake a new h2 and are
/// answered whole.
#[test]
fn chromium_over_tls_is_served_across_its_connection_being_parked_again() {
    let dir = Scratch::new("tls-again");
    let (_o, origin) = origin(&[]);
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(
        &file,
        format!("origin: http://{origin}\nhttp2: {{park_when_idle_ms: 300}}\n"),
    )
    .unwrap();
    let (gw, tls) = tls_gateway(&dir, &["-c", file.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/chromium_idle.cjs");
    let (code, out, err) = tool("node", &[script, &format!("https://{tls}"), "1500"]);
    assert_eq!(code, 0, "{err}");
    let fetched: Vec<(String, u16, usize, String)> = serde_json::from_slice(&out).unwrap();
    assert_eq!(fetched.len(), 4);
    for (path, status, len, protocol) in &fetched {
        assert_eq!((*status, protocol.as_str()), (200, "h2"), "{path}");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(*len, demo_file(name).len(), "{path} whole");
    }
    // Parked again while it idles (its first requests went before it read our SETTINGS and
    // indexed their headers; having acknowledged them, it empties its table with its next
    // block), and woken by its next request.
    assert!(metric(gw.admin, "dashpush_h2_parked_again_total") >= 1.0);
    assert!(metric(gw.admin, "dashpush_h2_woken_total") >= 1.0);
    // The browser's close reaches the parked connection too.
    let start = Instant::now();
    while metric(gw.admin, r#"dashpush_open_connections{protocol="h2"}"#) > 0.0 {
        assert!(
            start.elapsed() < DEADLINE,
            "the connection outlived the browser"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
