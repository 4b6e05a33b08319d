//! The viewers: each one HTTP/2 (h2c, prior knowledge) connection. A push viewer asks for the
//! live edge with `push-next;K` and takes the pushed segments as they come (a new directive
//! when a cycle ends before the run does); a pull viewer GETs each segment when the MPD says
//! it becomes available.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use http::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::mpd::LiveStream;

/// The push policy URN prefix (ISO/IEC 23009-6).
const URN: &str = "urn:mpeg:dash:fdh:2016:";

/// How viewers get their segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Mode {
    /// One `push-next;K` request at the live edge; segments arrive as HTTP/2 pushes.
    Push,
    /// GET each segment at its availability time (retrying a 404).
    Pull,
}

/// Everything a viewer (in this process or a worker process) needs; all times are Unix µs on
/// the wall clock the origin uses (same machine).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub mode: Mode,
    /// host:port of the server under test.
    pub target: String,
    pub mpd_path: String,
    pub stream: LiveStream,
    /// Total viewers over all processes (paces the connection ramp).
    pub viewers: u64,
    /// Connections are opened from here over `ramp_us`.
    pub connect_at_us: i64,
    pub ramp_us: i64,
    /// Viewers join (push: send the directive) from here over `join_spread_us`.
    pub join_at_us: i64,
    pub join_spread_us: i64,
    /// The live edge at `join_at_us`: the segment a push viewer requests; pull viewers GET
    /// from the next one.
    pub join_edge: u64,
    /// The measured segments: `first_window .. first_window + window_segments`.
    pub first_window: u64,
    pub window_segments: u64,
    /// The measuring window (CPU and bytes): `window_start_us .. window_end_us`.
    pub window_start_us: i64,
    pub window_end_us: i64,
    /// Viewers give up and leave at this time.
    pub end_us: i64,
    /// K of `push-next;K` (at most; the last directive asks for what the run still needs).
    pub push_next: u64,
    /// Pull: a GET answered 404 is repeated after this long.
    pub pull_retry_us: i64,
    /// Pull: GET this long after the availability time.
    pub pull_delay_us: i64,
}

impl Plan {
    /// The last segment any viewer needs.
    pub fn last_segment(&self) -> u64 {
        self.first_window + self.window_segments - 1
    }

    fn in_window(&self, n: u64) -> bool {
        n >= self.first_window && n <= self.last_segment()
    }
}

/// The current wall-clock time, Unix µs.
pub fn now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The monotonic instant corresponding to wall-clock time `us`.
pub fn instant_at(us: i64) -> Instant {
    let (now, wall) = (Instant::now(), now_us());
    let delta = Duration::from_micros(us.abs_diff(wall));
    if us >= wall {
        now + delta
    } else {
        now.checked_sub(delta).unwrap_or(now)
    }
}

async fn sleep_until_us(us: i64) {
    tokio::time::sleep_until(instant_at(us).into()).await;
}

/// State shared by the viewers of one process.
pub struct Shared {
    /// Body bytes received inside the measuring window.
    pub window_bytes: AtomicU64,
    window: (Instant, Instant),
}

impl Shared {
    pub fn new(plan: &Plan) -> Self {
        Self {
            window_bytes: AtomicU64::new(0),
            window: (
                instant_at(plan.window_start_us),
                instant_at(plan.window_end_us),
            ),
        }
    }

    fn count(&self, n: usize) {
        let now = Instant::now();
        if now >= self.window.0 && now < self.window.1 {
            self.window_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// What one viewer saw.
#[derive(Debug, Default)]
pub struct ViewerLog {
    /// (segment number, complete arrival in Unix µs), as they completed.
    pub arrivals: Vec<(u64, i64)>,
    pub errors: Vec<String>,
    /// Push directives sent (push mode).
    pub directives: u64,
}

/// Where a viewer is, for the report of one that did not finish.
#[derive(Default)]
struct Phase(std::sync::Mutex<String>);

impl Phase {
    fn set(&self, what: impl Into<String>) {
        let mut p = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *p = what.into();
    }

    fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Aborts the connection task when the viewer is done, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One viewer, start to finish; never fails as a whole (errors are in the log). A viewer still
/// busy two segments after the end of the run is stopped and reported with where it was.
pub async fn viewer(plan: Arc<Plan>, index: u64, shared: Arc<Shared>) -> ViewerLog {
    let mut log = ViewerLog::default();
    let phase = Phase::default();
    let offset = |span: i64| span * index as i64 / plan.viewers.max(1) as i64;
    sleep_until_us(plan.connect_at_us + offset(plan.ramp_us)).await;
    let run = async {
        phase.set("connecting");
        let (client, conn) = connect(&plan.target).await?;
        let _conn = AbortOnDrop(conn);
        phase.set("getting the MPD");
        let (status, _) = get(&client, &plan, &plan.mpd_path, None, &shared).await?;
        if status != StatusCode::OK {
            return Err(format!("MPD: status {status}"));
        }
        let join = plan.join_at_us + offset(plan.join_spread_us);
        if now_us() > join {
            log.errors.push(format!(
                "joined {} ms late (connection ramp too slow)",
                (now_us() - join) / 1000
            ));
        }
        sleep_until_us(join).await;
        match plan.mode {
            Mode::Push => push_session(&plan, &client, &shared, &mut log, &phase).await?,
            Mode::Pull => pull_session(&plan, &client, &shared, &mut log, &phase).await?,
        }
        // Every viewer keeps its connection until the run ends: the first to be done closing
        // theirs while others still receive the last segment would put the server's teardown
        // of hundreds of connections into that segment's latency.
        phase.set("done, holding the connection");
        sleep_until_us(plan.end_us).await;
        Ok(())
    };
    let stop = instant_at(plan.end_us + 2 * plan.stream.seg_us);
    match tokio::time::timeout_at(stop.into(), run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log.errors.push(e),
        Err(_) => log.errors.push(format!(
            "viewer {index} stopped at the end of the run while {}",
            phase.get()
        )),
    }
    log
}

/// A new h2c connection with push enabled and windows large enough for a run's pushes.
async fn connect(
    target: &str,
) -> Result<(SendRequest<Bytes>, tokio::task::JoinHandle<()>), String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (client, conn) = h2::client::Builder::new()
        .enable_push(true)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .max_concurrent_streams(1024)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))?;
    let driver = tokio::spawn(async move {
        // A connection error surfaces on the streams that were open; nothing else to do here.
        let _ = conn.await;
    });
    Ok((client, driver))
}

fn request(plan: &Plan, path: &str, directive: Option<&str>) -> Result<Request<()>, String> {
    let mut b = Request::get(format!("http://{}{path}", plan.target))
        .header("user-agent", "dashpush-fanout");
    if let Some(d) = directive {
        b = b.header("accept-push-policy", d);
    }
    b.body(()).map_err(|e| format!("request {path}: {e}"))
}

/// Reads a body to its end, returning its length; flow-control capacity is given back as the
/// bytes arrive.
async fn read_body(mut body: RecvStream, shared: &Shared) -> Result<u64, h2::Error> {
    let mut total = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        shared.count(chunk.len());
        total += chunk.len() as u64;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(total)
}

/// A GET on the connection: status and the `push-policy` response header; the body is read
/// and dropped.
async fn get(
    client: &SendRequest<Bytes>,
    plan: &Plan,
    path: &str,
    directive: Option<&str>,
    shared: &Shared,
) -> Result<(StatusCode, Option<String>), String> {
    let mut client = client
        .clone()
        .ready()
        .await
        .map_err(|e| format!("GET {path}: connection not ready: {e}"))?;
    let (resp, _) = client
        .send_request(request(plan, path, directive)?, true)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let resp = resp.await.map_err(|e| format!("GET {path}: {e}"))?;
    finish(resp, path, shared).await
}

async fn finish(
    resp: Response<RecvStream>,
    path: &str,
    shared: &Shared,
) -> Result<(StatusCode, Option<String>), String> {
    let status = resp.status();
    let ack = resp
        .headers()
        .get("push-policy")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    read_body(resp.into_body(), shared)
        .await
        .map_err(|e| format!("GET {path} body: {e}"))?;
    Ok((status, ack))
}

/// Push: ask at the live edge with `push-next;K`; every promise is read to its end. When a
/// cycle has delivered all it promised and the run needs more, ask again on the last segment
/// pushed (as a player whose push cycle ended would).
async fn push_session(
    plan: &Plan,
    client: &SendRequest<Bytes>,
    shared: &Arc<Shared>,
    log: &mut ViewerLog,
    phase: &Phase,
) -> Result<(), String> {
    let deadline = instant_at(plan.end_us);
    let mut at = plan.join_edge;
    while at < plan.last_segment() && Instant::now() < deadline {
        let k = (plan.last_segment() - at).min(plan.push_next);
        let directive = format!("{URN}push-next;{k}");
        let path = plan.stream.path(at);
        phase.set(format!("sending {path} with {directive}"));
        let mut sender = client
            .clone()
            .ready()
            .await
            .map_err(|e| format!("GET {path}: connection not ready: {e}"))?;
        let (mut resp, _) = sender
            .send_request(request(plan, &path, Some(&directive))?, true)
            .map_err(|e| format!("GET {path}: {e}"))?;
        log.directives += 1;
        let mut promises = resp.push_promises();
        let mut parent = {
            let (path, shared) = (path.clone(), Arc::clone(shared));
            tokio::spawn(async move {
                let resp = resp.await.map_err(|e| format!("GET {path}: {e}"))?;
                finish(resp, &path, &shared).await
            })
        };
        let mut pushes = JoinSet::new();
        let mut last_promised = at;
        phase.set(format!("reading the promises on {path}"));
        // h2 does not wake a pending `push_promise()` when the parent stream ends with a DATA
        // frame (hyperium/h2#811), so the promises are read alongside the parent response, and
        // once that has ended, polled afresh: the rest are queued, then the stream says None.
        let mut parent_done = None;
        loop {
            let promise = tokio::select! {
                p = promises.push_promise() => p,
                r = &mut parent, if parent_done.is_none() => {
                    parent_done = Some(r);
                    continue;
                }
            };
            let promise = match promise {
                None => break,
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    log.errors.push(format!("PUSH_PROMISE on {path}: {e}"));
                    break;
                }
            };
            let (req, response) = promise.into_parts();
            let pushed = req.uri().path().to_string();
            let Some(n) = plan.stream.number_of(&pushed) else {
                log.errors.push(format!("unexpected push {pushed}"));
                continue;
            };
            last_promised = last_promised.max(n);
            let shared = Arc::clone(shared);
            pushes.spawn(async move {
                let resp = response.await.map_err(|e| format!("push {pushed}: {e}"))?;
                if resp.status() != StatusCode::OK {
                    return Err(format!("push {pushed}: status {}", resp.status()));
                }
                read_body(resp.into_body(), &shared)
                    .await
                    .map_err(|e| format!("push {pushed} body: {e}"))?;
                Ok((n, now_us()))
            });
        }
        phase.set(format!("reading the response to {path}"));
        let parent = match parent_done {
            Some(r) => r,
            None => parent.await,
        };
        let (status, ack) = match parent {
            Ok(r) => r?,
            Err(e) => return Err(format!("GET {path}: task failed: {e}")),
        };
        if status != StatusCode::OK {
            return Err(format!("GET {path}: status {status}"));
        }
        if pushes.is_empty() {
            log.errors.push(format!(
                "GET {path} with {directive}: nothing promised (push-policy: {})",
                ack.as_deref().unwrap_or("none")
            ));
            // Try again a little later, at the then live edge, as a player would.
            tokio::time::sleep(Duration::from_micros(plan.stream.seg_us as u64 / 2)).await;
            at = at.max(plan.stream.edge_at(now_us()));
            continue;
        }
        phase.set(format!("waiting for the pushes promised on {path}"));
        loop {
            match tokio::time::timeout_at(deadline.into(), pushes.join_next()).await {
                Ok(Some(Ok(Ok(arrival)))) => log.arrivals.push(arrival),
                Ok(Some(Ok(Err(e)))) => log.errors.push(e),
                Ok(Some(Err(e))) => log.errors.push(format!("push task failed: {e}")),
                Ok(None) => break,
                Err(_) => {
                    log.errors.push(format!(
                        "{} pushes promised on {path} not complete at the end of the run",
                        pushes.len()
                    ));
                    return Ok(());
                }
            }
        }
        at = last_promised;
    }
    Ok(())
}

/// Pull: GET every segment from the one after the join edge at its availability time; a 404
/// is asked again every `pull_retry_us` until the segment's slot has passed.
async fn pull_session(
    plan: &Plan,
    client: &SendRequest<Bytes>,
    shared: &Arc<Shared>,
    log: &mut ViewerLog,
    phase: &Phase,
) -> Result<(), String> {
    phase.set("pulling");
    let mut gets = JoinSet::new();
    for n in plan.join_edge + 1..=plan.last_segment() {
        let (client, shared) = (client.clone(), Arc::clone(shared));
        let plan = plan.clone();
        gets.spawn(async move {
            let available = plan.stream.available_us(n);
            let give_up = available + plan.stream.seg_us;
            let path = plan.stream.path(n);
            sleep_until_us(available + plan.pull_delay_us).await;
            loop {
                let (status, _) = get(&client, &plan, &path, None, &shared).await?;
                if status == StatusCode::OK {
                    return Ok((n, now_us()));
                }
                if status != StatusCode::NOT_FOUND || now_us() >= give_up {
                    return Err(format!("GET {path}: status {status}"));
                }
                tokio::time::sleep(Duration::from_micros(plan.pull_retry_us as u64)).await;
            }
        });
    }
    let deadline = instant_at(plan.end_us);
    loop {
        match tokio::time::timeout_at(deadline.into(), gets.join_next()).await {
            Ok(Some(Ok(Ok(arrival)))) => log.arrivals.push(arrival),
            Ok(Some(Ok(Err(e)))) => log.errors.push(e),
            Ok(Some(Err(e))) => log.errors.push(format!("GET task failed: {e}")),
            Ok(None) => return Ok(()),
            Err(_) => {
                log.errors.push(format!(
                    "{} GETs not complete at the end of the run",
                    gets.len()
                ));
                return Ok(());
            }
        }
    }
}

/// Per-process results: counts over the measured segments of every viewer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub viewers: u64,
    /// viewers × measured segments.
    pub expected: u64,
    /// Measured segments that arrived (first copies).
    pub delivered: u64,
    pub missed: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub directives: u64,
    /// Per delivered measured segment: complete arrival − availability at the origin, ms.
    pub latencies_ms: Vec<f64>,
    /// Per measured segment (in order), the largest latency of any viewer, ms.
    pub segment_max_ms: Vec<f64>,
    /// Body bytes received inside the measuring window.
    pub window_bytes: u64,
    /// This process's CPU seconds inside the measuring window.
    pub cpu_window_s: f64,
}

impl WorkerResult {
    fn add_viewer(&mut self, plan: &Plan, mut log: ViewerLog) {
        self.viewers += 1;
        self.expected += plan.window_segments;
        self.directives += log.directives;
        self.errors += log.errors.len() as u64;
        for e in log.errors {
            if self.error_samples.len() < 10 {
                self.error_samples.push(e);
            }
        }
        // In the order they completed (the stamp taken when each body ended).
        log.arrivals.sort_by_key(|&(_, t)| t);
        let mut seen = vec![0u32; plan.window_segments as usize];
        let mut newest = 0u64;
        for (n, t) in log.arrivals {
            if plan.in_window(n) {
                let slot = &mut seen[(n - plan.first_window) as usize];
                *slot += 1;
                if *slot == 1 {
                    self.delivered += 1;
                    let ms = (t - plan.stream.available_us(n)) as f64 / 1000.0;
                    self.latencies_ms.push(ms);
                    let i = (n - plan.first_window) as usize;
                    if self.segment_max_ms.len() <= i {
                        self.segment_max_ms.resize(i + 1, 0.0);
                    }
                    self.segment_max_ms[i] = self.segment_max_ms[i].max(ms);
                } else {
                    self.duplicates += 1;
                }
                if n < newest {
                    self.out_of_order += 1;
                }
            }
            newest = newest.max(n);
        }
        self.missed += seen.iter().filter(|&&c| c == 0).count() as u64;
    }

    /// Adds another process's results.
    pub fn merge(&mut self, other: WorkerResult) {
        self.viewers += other.viewers;
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.missed += other.missed;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < 10 {
                self.error_samples.push(e);
            }
        }
        self.directives += other.directives;
        self.latencies_ms.extend(other.latencies_ms);
        if self.segment_max_ms.len() < other.segment_max_ms.len() {
            self.segment_max_ms.resize(other.segment_max_ms.len(), 0.0);
        }
        for (mine, theirs) in self.segment_max_ms.iter_mut().zip(other.segment_max_ms) {
            *mine = mine.max(theirs);
        }
        self.window_bytes += other.window_bytes;
        self.cpu_window_s += other.cpu_window_s;
    }
}

/// Runs viewers `first .. first + count` of the plan in this process.
pub async fn run_viewers(plan: Arc<Plan>, first: u64, count: u64) -> WorkerResult {
    let shared = Arc::new(Shared::new(&plan));
    let cpu = {
        let plan = Arc::clone(&plan);
        tokio::spawn(async move {
            sleep_until_us(plan.window_start_us).await;
            let before = crate::sys::own_cpu_s();
            sleep_until_us(plan.window_end_us).await;
            let after = crate::sys::own_cpu_s();
            Ok::<f64, String>(after? - before?)
        })
    };
    let mut viewers = JoinSet::new();
    for i in first..first + count {
        viewers.spawn(viewer(Arc::clone(&plan), i, Arc::clone(&shared)));
    }
    let mut result = WorkerResult::default();
    while let Some(log) = viewers.join_next().await {
        match log {
            Ok(log) => result.add_viewer(&plan, log),
            Err(e) => {
                result.viewers += 1;
                result.expected += plan.window_segments;
                result.missed += plan.window_segments;
                result.errors += 1;
                result
                    .error_samples
                    .push(format!("viewer task failed: {e}"));
            }
        }
    }
    result.window_bytes = shared.window_bytes.load(Ordering::Relaxed);
    match cpu.await {
        Ok(Ok(s)) => result.cpu_window_s = s,
        Ok(Err(e)) => result.error_samples.push(format!("own CPU: {e}")),
        Err(e) => result.error_samples.push(format!("own CPU task: {e}")),
    }
    result
}
