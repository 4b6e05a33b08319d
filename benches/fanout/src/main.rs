//! Live fan-out load client (on demand, never in CI; driven by `benches/fanout.sh`).
//!
//! `fanout run` starts N live viewers, each one HTTP/2 (h2c) connection to the server under
//! test, in push mode (one `push-next;K` at the live edge, segments arrive as server pushes)
//! or pull mode (each segment GET at its availability time). For the measured segments it
//! checks that every viewer got each exactly once and in order, and measures complete arrival
//! minus availability at the origin (from the MPD: availabilityStartTime + segment end). Over
//! the measuring window it reads the server's CPU time (/proc/PID/stat, with children for
//! nginx), its own (getrusage), the bytes delivered, and, from the origin's control listener,
//! origin fetches per measured segment. `fanout report` prints runs side by side with ratios.

mod mpd;
mod sys;
mod viewer;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::mpd::LiveStream;
use crate::sys::ServerProcs;
use crate::viewer::{Mode, Plan, WorkerResult, now_us};

#[derive(Parser)]
#[command(about = "Live fan-out benchmark load client (HTTP/2 push vs pull)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one measurement against one server and write its summary (JSON).
    Run(Box<RunArgs>),
    /// (internal) Run a share of the viewers of a plan; prints a JSON result on stdout.
    Worker {
        /// The plan, as JSON.
        #[arg(long)]
        plan: String,
        #[arg(long)]
        first: u64,
        #[arg(long)]
        count: u64,
    },
    /// Print summaries side by side, with ratios of the first to the second.
    Report {
        /// Summary files written by `run --out` (the first is compared with the second).
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Name of this run in the report.
    #[arg(long)]
    label: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// host:port of the server under test (h2c, prior knowledge).
    #[arg(long)]
    target: String,
    #[arg(long, default_value = "/live/manifest.mpd")]
    mpd: String,
    #[arg(long, default_value_t = 1000)]
    viewers: u64,
    /// Spread the viewers over this many processes.
    #[arg(long, default_value_t = 1)]
    procs: u64,
    /// Seconds of segments before the measured ones (after the viewers joined).
    #[arg(long, default_value_t = 5.0)]
    warmup_s: f64,
    /// Seconds of measured segments (and the CPU/bytes window).
    #[arg(long, default_value_t = 20.0)]
    window_s: f64,
    /// Connections are opened over this many ms.
    #[arg(long, default_value_t = 2000)]
    ramp_ms: u64,
    /// Viewers join (send their directive) over this many ms (within one segment).
    #[arg(long, default_value_t = 200)]
    join_spread_ms: u64,
    /// K of push-next;K (the gateway's push.max_next and hard limit 64 apply).
    #[arg(long, default_value_t = 64)]
    push_next: u64,
    /// Pull: retry a 404 after this many ms.
    #[arg(long, default_value_t = 10)]
    pull_retry_ms: u64,
    /// Pull: GET this many ms after the availability time.
    #[arg(long, default_value_t = 0)]
    pull_delay_ms: u64,
    /// Server process whose CPU is measured (repeatable).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Also measure the children of each --server-pid (nginx master + workers).
    #[arg(long)]
    with_children: bool,
    /// The origin's control listener (host:port): origin fetches per measured segment.
    #[arg(long)]
    origin_control: Option<String>,
    /// The gateway's admin listener (host:port): live push metrics in the summary.
    #[arg(long)]
    metrics: Option<String>,
    /// Write the summary here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One run's results, as written by `run --out` and read by `report`.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    label: String,
    mode: Mode,
    viewers: u64,
    procs: u64,
    window_s: f64,
    window_segments: u64,
    first_window: u64,
    expected: u64,
    delivered: u64,
    missed: u64,
    duplicates: u64,
    out_of_order: u64,
    errors: u64,
    error_samples: Vec<String>,
    directives: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Per measured segment, the largest latency of any viewer (ms).
    #[serde(default)]
    segment_max_ms: Vec<f64>,
    window_bytes: u64,
    server_cpu_s: Option<f64>,
    /// Write-type system calls of the server in the window (/proc/PID/io syscw).
    server_writes: Option<u64>,
    client_cpu_s: f64,
    origin_fetches_per_segment: Option<f64>,
    metrics: Vec<String>,
}

impl Summary {
    fn gb(&self) -> f64 {
        self.window_bytes as f64 / 1e9
    }

    /// Server CPU µs per measured segment delivered to one viewer.
    fn server_cpu_per_delivery_us(&self) -> Option<f64> {
        let n = self.delivered as f64;
        self.server_cpu_s.filter(|_| n > 0.0).map(|s| s * 1e6 / n)
    }

    /// Server write system calls per measured segment delivered to one viewer.
    fn server_writes_per_delivery(&self) -> Option<f64> {
        let n = self.delivered as f64;
        self.server_writes.filter(|_| n > 0.0).map(|w| w as f64 / n)
    }

    fn server_cpu_per_gb(&self) -> Option<f64> {
        let gb = self.gb();
        self.server_cpu_s.filter(|_| gb > 0.0).map(|s| s / gb)
    }
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanout: tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Run(args) => run(*args).await,
            Cmd::Worker { plan, first, count } => worker(&plan, first, count).await,
            Cmd::Report { files } => report(&files),
        }
    });
    if let Err(e) = result {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

async fn worker(plan: &str, first: u64, count: u64) -> Result<(), String> {
    let plan: Plan = serde_json::from_str(plan).map_err(|e| format!("--plan: {e}"))?;
    let result = viewer::run_viewers(Arc::new(plan), first, count).await;
    let json = serde_json::to_string(&result).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}

/// GET over one h2c connection (the coordinator's look at the MPD).
async fn h2_get(target: &str, path: &str) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let (client, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::get(format!("http://{target}{path}"))
            .body(())
            .map_err(|e| e.to_string())?;
        let (resp, _) = client.send_request(req, true).map_err(|e| e.to_string())?;
        let resp = resp.await.map_err(|e| e.to_string())?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            body.flow_control()
                .release_capacity(chunk.len())
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).map_err(|_| "body is not UTF-8".to_string())
    }
    .await;
    driver.abort();
    result.map_err(|e| format!("GET http://{target}{path}: {e}"))
}

fn plan(args: &RunArgs, stream: LiveStream) -> Result<Plan, String> {
    let seg = stream.seg_us;
    let segments = |s: f64| ((s * 1e6 / seg as f64).ceil() as u64).max(1);
    let now = now_us();
    let connect_at = now + 200_000;
    let ramp = args.ramp_ms as i64 * 1000;
    let spread = args.join_spread_ms as i64 * 1000;
    if spread >= seg / 2 {
        return Err(format!(
            "--join-spread-ms {} must be under half a segment ({} ms)",
            args.join_spread_ms,
            seg / 2000
        ));
    }
    // Join in the middle of a segment slot, a second after the last connection opened, so
    // every viewer asks for the same live edge.
    let earliest = connect_at + ramp + 1_000_000;
    let slot = (earliest - stream.ast_us).max(0).div_euclid(seg) + 1;
    let join_at = stream.ast_us + slot * seg + seg / 2 - spread / 2;
    let join_edge = stream.edge_at(join_at);
    if join_edge < stream.start_number || stream.edge_at(join_at + spread) != join_edge {
        return Err("the live stream has no segment yet at the join time".into());
    }
    let first_window = join_edge + 1 + segments(args.warmup_s);
    let window_segments = segments(args.window_s);
    let window_start = stream.available_us(first_window) - seg / 2;
    let window_end = window_start + window_segments as i64 * seg;
    Ok(Plan {
        mode: args.mode,
        target: args.target.clone(),
        mpd_path: args.mpd.clone(),
        viewers: args.viewers,
        connect_at_us: connect_at,
        ramp_us: ramp,
        join_at_us: join_at,
        join_spread_us: spread,
        join_edge,
        first_window,
        window_segments,
        window_start_us: window_start,
        window_end_us: window_end,
        end_us: window_end + 3 * seg.max(1_000_000),
        push_next: args.push_next.max(1),
        pull_retry_us: args.pull_retry_ms as i64 * 1000,
        pull_delay_us: args.pull_delay_ms as i64 * 1000,
        stream,
    })
}

/// The viewers, in this process or spread over `procs` worker processes.
async fn run_all(plan: &Arc<Plan>, viewers: u64, procs: u64) -> Result<WorkerResult, String> {
    if procs <= 1 {
        return Ok(viewer::run_viewers(Arc::clone(plan), 0, viewers).await);
    }
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let json = serde_json::to_string(plan.as_ref()).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for p in 0..procs {
        let first = viewers * p / procs;
        let count = viewers * (p + 1) / procs - first;
        let child = tokio::process::Command::new(&exe)
            .args(["worker", "--plan", &json])
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn worker {p}: {e}"))?;
        children.push(child);
    }
    let mut total = WorkerResult::default();
    for (p, child) in children.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("worker {p}: {e}"))?;
        if !out.status.success() {
            return Err(format!("worker {p} failed: {}", out.status));
        }
        let r: WorkerResult =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("worker {p} output: {e}"))?;
        total.merge(r);
    }
    Ok(total)
}

async fn run(args: RunArgs) -> Result<(), String> {
    let text = h2_get(&args.target, &args.mpd).await?;
    let stream = LiveStream::parse(&text, &args.mpd)?;
    let plan = Arc::new(plan(&args, stream)?);
    let seg_ms = plan.stream.seg_us as f64 / 1000.0;
    eprintln!(
        "{}: {} {} viewers on {}; join at edge {} ({}), measure segments {}..={} ({} x {seg_ms} ms)",
        args.label,
        args.viewers,
        mode_name(args.mode),
        args.target,
        plan.join_edge,
        in_secs(plan.join_at_us - now_us()),
        plan.first_window,
        plan.last_segment(),
        plan.window_segments,
    );
    let procs = ServerProcs {
        pids: args.server_pids.clone(),
        with_children: args.with_children,
    };
    let sampler = {
        let plan = Arc::clone(&plan);
        tokio::spawn(async move {
            if procs.pids.is_empty() {
                return Ok(None);
            }
            tokio::time::sleep_until(viewer::instant_at(plan.window_start_us).into()).await;
            let before = procs.sample()?;
            tokio::time::sleep_until(viewer::instant_at(plan.window_end_us).into()).await;
            let after = procs.sample()?;
            Ok::<_, String>(Some(sys::delta(&before, &after)))
        })
    };
    let mut r = run_all(&plan, args.viewers, args.procs).await?;
    let server = sampler
        .await
        .map_err(|e| format!("CPU sampler: {e}"))?
        .map_err(|e| format!("server CPU: {e}"))?;
    let origin_fetches_per_segment = match &args.origin_control {
        Some(addr) => Some(origin_fetches(addr, &plan).await?),
        None => None,
    };
    let metrics = match &args.metrics {
        Some(addr) => live_metrics(addr).await?,
        None => Vec::new(),
    };
    r.latencies_ms.sort_by(f64::total_cmp);
    let summary = Summary {
        label: args.label,
        mode: args.mode,
        viewers: r.viewers,
        procs: args.procs,
        window_s: plan.window_segments as f64 * seg_ms / 1000.0,
        window_segments: plan.window_segments,
        first_window: plan.first_window,
        expected: r.expected,
        delivered: r.delivered,
        missed: r.missed,
        duplicates: r.duplicates,
        out_of_order: r.out_of_order,
        errors: r.errors,
        error_samples: r.error_samples,
        directives: r.directives,
        p50_ms: percentile(&r.latencies_ms, 0.50),
        p99_ms: percentile(&r.latencies_ms, 0.99),
        max_ms: r.latencies_ms.last().copied().unwrap_or(f64::NAN),
        segment_max_ms: r.segment_max_ms,
        window_bytes: r.window_bytes,
        server_cpu_s: server.map(|(cpu, _)| cpu),
        server_writes: server.map(|(_, w)| w),
        client_cpu_s: r.cpu_window_s,
        origin_fetches_per_segment,
        metrics,
    };
    print_table(std::slice::from_ref(&summary));
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Push => "push",
        Mode::Pull => "pull",
    }
}

fn in_secs(us: i64) -> String {
    format!("in {:.1} s", us as f64 / 1e6)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Origin requests per measured segment (the one Representation viewers take), from the
/// origin's hit counters.
async fn origin_fetches(addr: &str, plan: &Plan) -> Result<f64, String> {
    let (status, body) = sys::http1_get(addr, "/_origin/hits").await?;
    if status != 200 {
        return Err(format!("origin hits: status {status}"));
    }
    let hits: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("origin hits: {e}"))?;
    let paths = hits
        .get("paths")
        .and_then(|p| p.as_object())
        .ok_or("origin hits: no \"paths\"")?;
    let total: u64 = (plan.first_window..=plan.last_segment())
        .map(|n| {
            paths
                .get(&plan.stream.path(n))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        })
        .sum();
    Ok(total as f64 / plan.window_segments as f64)
}

/// The gateway's live push and origin fetch counters (for the record).
async fn live_metrics(addr: &str) -> Result<Vec<String>, String> {
    let (status, body) = sys::http1_get(addr, "/metrics").await?;
    if status != 200 {
        return Err(format!("metrics: status {status}"));
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| {
            let nonzero = l
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v != 0.0);
            let wanted = [
                "dashpush_live_segments_total",
                "dashpush_origin_fetches_total",
                "dashpush_push_directives_total",
                "dashpush_push_promises_total",
                "dashpush_push_completed_total",
                "dashpush_push_reset_total",
                "dashpush_push_withheld_total",
                "dashpush_live_push_delay_seconds_sum",
                "dashpush_live_push_delay_seconds_count",
            ]
            .iter()
            .any(|m| l.starts_with(m));
            nonzero && wanted
        })
        .map(str::to_string)
        .collect())
}

fn report(files: &[PathBuf]) -> Result<(), String> {
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let s: Summary =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        runs.push(s);
    }
    print_table(&runs);
    if let [a, b, ..] = runs.as_slice() {
        print_ratios(a, b);
    }
    Ok(())
}

fn opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

fn print_table(runs: &[Summary]) {
    println!();
    println!(
        "{:<16} {:>4} {:>7} {:>11} {:>6} {:>5} {:>5} {:>6} {:>5} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>9} {:>9} {:>7} {:>9}",
        "run",
        "mode",
        "viewers",
        "segs ok",
        "missed",
        "dup",
        "ooo",
        "errors",
        "dir/v",
        "p50 ms",
        "p99 ms",
        "max ms",
        "GB",
        "srv CPU",
        "cli CPU",
        "CPU s/GB",
        "CPU us/d",
        "wr/d",
        "fetch/seg"
    );
    for s in runs {
        println!(
            "{:<16} {:>4} {:>7} {:>11} {:>6} {:>5} {:>5} {:>6} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>7.3} {:>8} {:>8.2} {:>9} {:>9} {:>7} {:>9}",
            s.label,
            mode_name(s.mode),
            s.viewers,
            format!("{}/{}", s.delivered, s.expected),
            s.missed,
            s.duplicates,
            s.out_of_order,
            s.errors,
            match s.mode {
                Mode::Push => format!("{:.1}", s.directives as f64 / s.viewers.max(1) as f64),
                Mode::Pull => "-".into(),
            },
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.gb(),
            opt(s.server_cpu_s, 2),
            s.client_cpu_s,
            opt(s.server_cpu_per_gb(), 1),
            opt(s.server_cpu_per_delivery_us(), 1),
            opt(s.server_writes_per_delivery(), 2),
            opt(s.origin_fetches_per_segment, 2),
        );
    }
    for s in runs {
        if !s.segment_max_ms.is_empty() {
            let all: Vec<String> = s.segment_max_ms.iter().map(|m| format!("{m:.0}")).collect();
            println!(
                "{}: slowest viewer per measured segment (ms): {}",
                s.label,
                all.join(" ")
            );
        }
        if !s.error_samples.is_empty() {
            println!("{} errors (first {}):", s.label, s.error_samples.len());
            for e in &s.error_samples {
                println!("  {e}");
            }
        }
        if !s.metrics.is_empty() {
            println!("{} gateway metrics after the run:", s.label);
            for m in &s.metrics {
                println!("  {m}");
            }
        }
    }
    if let Some(s) = runs.first() {
        println!(
            "(window {:.0} s = segments {}..={}; latency = complete arrival - availability at the origin; \
             CPU = utime+stime over the window; GB = body bytes received in the window; \
             per d = per measured segment delivered to one viewer; wr = write system calls; \
             dir/v = push directives per viewer)",
            s.window_s,
            s.first_window,
            s.first_window + s.window_segments.saturating_sub(1)
        );
    }
}

fn print_ratios(a: &Summary, b: &Summary) {
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 && x.is_finite() && y.is_finite() => format!("{:.2}x", x / y),
        _ => "-".into(),
    };
    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("{} / {}:", a.label, b.label);
    println!(
        "  p50 {}   p99 {}   CPU per GB {}   origin fetches per segment {}",
        ratio(Some(a.p50_ms), Some(b.p50_ms)),
        ratio(Some(a.p99_ms), Some(b.p99_ms)),
        ratio(a.server_cpu_per_gb(), b.server_cpu_per_gb()),
        ratio(a.origin_fetches_per_segment, b.origin_fetches_per_segment),
    );
    let complete = a.missed == 0 && a.duplicates == 0 && a.out_of_order == 0;
    println!("targets for {}:", a.label);
    println!(
        "  every segment to every viewer once, in order: {} (missed {}, dup {}, out of order {})",
        check(complete),
        a.missed,
        a.duplicates,
        a.out_of_order
    );
    println!(
        "  p99 <= 50 ms at {} viewers: {} ({:.1} ms)",
        a.viewers,
        check(a.p99_ms <= 50.0),
        a.p99_ms
    );
    println!(
        "  one origin fetch per segment: {} ({})",
        check(a.origin_fetches_per_segment.is_some_and(|f| f <= 1.0)),
        opt(a.origin_fetches_per_segment, 2)
    );
    println!(
        "  CPU per GB <= {}'s: {} ({} vs {} s/GB)",
        b.label,
        check(matches!(
            (a.server_cpu_per_gb(), b.server_cpu_per_gb()),
            (Some(x), Some(y)) if x <= y
        )),
        opt(a.server_cpu_per_gb(), 1),
        opt(b.server_cpu_per_gb(), 1)
    );
}
