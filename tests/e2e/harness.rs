//! Child-process harness: the real `dashpush` binary, ports picked by the OS (port 0), bound
//! addresses read from its log, readiness polled with a deadline, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running `dashpush` process.
pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_under(&[], args)
    }

    /// `dashpush args` run by `wrapper` (a command that execs its arguments, e.g. `taskset -c
    /// 0`); straight when `wrapper` is empty.
    pub fn spawn_under(wrapper: &[&str], args: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_dashpush");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args(args)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("DASHPUSH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dashpush");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The address logged after `needle` (e.g. "listening origin on ").
    pub fn addr_after(&mut self, needle: &str) -> SocketAddr {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                let rest = &l[l.find(needle).unwrap() + needle.len()..];
                // Text or JSON logs: the address is the run of address characters.
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                return addr.parse().unwrap_or_else(|e| panic!("{e}: {l}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dashpush exited ({status}) before logging {needle:?}: {:?}",
                    self.lines.lock().unwrap()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {needle:?} in log: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Proc {
    /// Kills the process now and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the process logged (the last lines).
        if std::thread::panicking()
            && let Ok(lines) = self.lines.lock()
        {
            for l in lines.iter().rev().take(40).rev() {
                eprintln!("  [dashpush] {l}");
            }
        }
    }
}

/// A demo origin on free ports, with extra flags; the address of its control listener, which
/// serves the content and the test switches (`/_origin/`: hits, faults, blobs, the gate).
pub fn origin(extra: &[&str]) -> (Proc, SocketAddr) {
    let (p, _, control) = origin_ports(extra);
    (p, control)
}

/// A demo origin's content listener alone (no control routes) and its control listener.
pub fn origin_ports(extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    demo_origin("vod", extra)
}

/// The built-in origin serving `demo` (`vod` or `live` first) on free ports: (process, content
/// listener, control listener).
pub fn demo_origin(demo: &str, extra: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let mut args = vec![
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--control-listen",
        "127.0.0.1:0",
        "--demo",
        demo,
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(&args);
    let control = p.addr_after("listening origin control on ");
    let content = p.addr_after("listening origin on ");
    (p, content, control)
}

/// A gateway in front of `origin`, ready (its `/live` answers).
pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

pub fn gateway(origin: &str, extra: &[&str]) -> Gateway {
    let mut args = vec!["--origin", origin];
    args.extend_from_slice(extra);
    gateway_with(&args)
}

/// A gateway on ports 0 with `args` (which name the origin), ready (its `/live` answers).
pub fn gateway_with(extra: &[&str]) -> Gateway {
    let mut args = vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    gateway_run(&args)
}

/// `dashpush run` with `args` (which must name the listeners, by flag or file), ready (its
/// `/live` answers).
pub fn gateway_run(args: &[&str]) -> Gateway {
    gateway_run_under(&[], args)
}

/// [`gateway_run`] by `wrapper` (see [`Proc::spawn_under`]).
pub fn gateway_run_under(wrapper: &[&str], args: &[&str]) -> Gateway {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let mut proc = Proc::spawn_under(wrapper, &all);
    let addr = proc.addr_after("listening http/1.1+h2c on ");
    let admin = proc.addr_after("listening admin on ");
    let start = Instant::now();
    while get(admin, "/live").0 != 200 {
        assert!(start.elapsed() < DEADLINE, "gateway never became live");
        std::thread::sleep(Duration::from_millis(20));
    }
    Gateway { proc, addr, admin }
}

/// A minimal HTTP/1.1 GET (Connection: close) for the harness's own checks; `(0, _)` when the
/// connection fails.
pub fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, Vec::new());
    };
    let _ = s.set_read_timeout(Some(DEADLINE));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    let mut buf = Vec::new();
    if s.read_to_end(&mut buf).is_err() && buf.is_empty() {
        return (0, Vec::new());
    }
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, buf[split + 4..].to_vec())
}

/// The `availabilityStartTime` of the dynamic MPD at `path` behind `addr`.
pub fn availability_start(addr: SocketAddr, path: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let ast = text
        .split("availabilityStartTime=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    chrono::DateTime::parse_from_rfc3339(ast).unwrap()
}

/// The value of a metric line (exact name with labels) in a Prometheus text exposition.
pub fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Origin hits on a path, from its `/_origin/hits`.
pub fn origin_hits(origin: SocketAddr, path: &str) -> u64 {
    let (_, body) = get(origin, "/_origin/hits");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["paths"][path].as_u64().unwrap_or(0)
}

/// Runs a command, failing the test if the tool is missing; returns (status code, stdout, stderr).
pub fn tool(program: &str, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required for this test (installed by .ci/run): {e}")
        });
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status code `curl` reports for a GET of `url` (body discarded).
pub fn curl_status(url: &str) -> String {
    let (_, out, _) = tool(
        "curl",
        &["-sS", "-o", "/dev/null", "-w", "%{http_code}", url],
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The demo VOD files, as the origin embeds them.
pub fn demo_file(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/crates/dashpush-origin/demo/vod/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub const DEMO_FILES: &[&str] = &[
    "manifest.mpd",
    "init-stream0.m4s",
    "init-stream1.m4s",
    "init-stream2.m4s",
    "chunk-stream0-00001.m4s",
    "chunk-stream0-00002.m4s",
    "chunk-stream0-00003.m4s",
    "chunk-stream1-00001.m4s",
    "chunk-stream1-00002.m4s",
    "chunk-stream1-00003.m4s",
    "chunk-stream2-00001.m4s",
    "chunk-stream2-00002.m4s",
    "chunk-stream2-00003.m4s",
];

/// Runs the independent HTTP/2 client (`tests/e2e/h2push.py`, python3-h2) against `gw`; one
/// JSON record per request.
pub fn h2push(gw: SocketAddr, args: &[&str]) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/h2push.py");
    let target = gw.to_string();
    let mut all = vec![script, target.as_str()];
    all.extend_from_slice(args);
    let (code, out, err) = tool("/usr/bin/python3", &all);
    assert_eq!(code, 0, "h2push.py failed: {err}");
    serde_json::from_slice(&out).unwrap()
}

/// The sum of a push counter over one transport's series.
fn push_sum(admin: SocketAddr, name: &str, transport: &str) -> f64 {
    let (_, body) = get(admin, "/metrics");
    let text = String::from_utf8(body).unwrap();
    let label = format!("transport=\"{transport}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `promised = completed + reset + dropped` on `transport` (docs/metrics.md), waited for a
/// moment (the last pushes may still be ending); at least one push was promised.
pub fn assert_counter_rule(admin: SocketAddr, transport: &str) {
    let sums = || {
        let p = push_sum(admin, "dashpush_push_promises_total", transport);
        let ended = push_sum(admin, "dashpush_push_completed_total", transport)
            + push_sum(admin, "dashpush_push_reset_total", transport)
            + push_sum(admin, "dashpush_push_dropped_total", transport);
        (p, ended)
    };
    let start = Instant::now();
    let mut last = sums();
    while last.0 != last.1 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
        last = sums();
    }
    assert!(last.0 > 0.0, "nothing was promised on {transport}");
    assert_eq!(
        last.0, last.1,
        "promised = completed + reset + dropped on {transport}"
    );
}

/// A scratch directory removed on drop.
pub struct Scratch(pub std::path::PathBuf);

/// A gateway started with a configuration file holding `yaml` (which names the origin), in a
/// scratch directory named after `name`, kept as long as the returned [`Scratch`] (the file is
/// `dashpush.yaml` in it: a reload test rewrites it there).
pub fn gateway_with_yaml(name: &str, yaml: &str) -> (Gateway, Scratch) {
    let dir = Scratch::new(name);
    let file = dir.0.join("dashpush.yaml");
    std::fs::write(&file, yaml).unwrap();
    (gateway_with(&["-c", file.to_str().unwrap()]), dir)
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        // Unique per call: tests running at once may ask for the same name.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("dashpush-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 in `dir` (openssl); `(cert, key)`.
pub fn self_signed(dir: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let (code, _, err) = tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    (cert, key)
}
