//! Command line: one subcommand per operator task.

use std::process::ExitCode;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use dashpush_mpd::{Manifest, Resource};
use dashpush_proto::{PushAck, PushDirective, UrlTemplate};
use serde_json::{Value, json};
use url::Url;

/// dashpush: ISO/IEC 23009-6 server push and WebSocket delivery in front of DASH origins.
#[derive(Debug, Parser)]
#[command(name = "dashpush", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in front of an HTTP/1.1 origin.
    Run(Box<RunArgs>),
    /// Validate a configuration file exactly as `run -c` would, without starting anything.
    CheckConfig {
        /// The YAML file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Run the built-in HTTP/1.1 DASH origin (a directory, or the demo streams).
    Origin(OriginArgs),
    /// Start the demo origin and the gateway on local ports and print how to watch them.
    Demo {
        /// Gateway listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
        /// Demo origin listener.
        #[arg(long, default_value = "127.0.0.1:8081")]
        origin_listen: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Parse a push directive (spec §6.1.3) and print, as JSON, how the gateway reads it and the
    /// ack it would answer with if the directive cannot be honoured. Exits 1 if it is invalid.
    Directive {
        /// The header value, e.g. 'urn:mpeg:dash:fdh:2016:push-next;3'.
        value: String,
    },
    /// Expand a URL template (spec §6.1.6) and print one URL per line, as the gateway would
    /// (capped at 256). Exits 1 if the template is invalid.
    Expand {
        /// The template, e.g. 'seg-{%05d:10-20:5}.m4s'.
        template: String,
    },
    /// Dry run of the push planner: print, as JSON, the ack and the URLs the gateway would
    /// push for one request carrying a directive, computed by the same planner code.
    Plan {
        /// The MPD file.
        #[arg(long)]
        mpd: PathBuf,
        /// The URL the MPD is served at (as the client sees it).
        #[arg(long)]
        base: Url,
        /// The requested URL (the MPD's URL for fast start, or a segment's).
        #[arg(long)]
        request: Url,
        /// The directive header value, e.g. 'urn:mpeg:dash:fdh:2016:push-next;3'.
        #[arg(long)]
        directive: String,
        /// The client disabled push (SETTINGS_ENABLE_PUSH = 0): the ack becomes push-none.
        #[arg(long)]
        no_push: bool,
        /// For a dynamic MPD, the time to plan at (RFC 3339); default now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Show what the gateway would address in an MPD, as JSON: per Period, AdaptationSet and
    /// Representation its id, bandwidth, mime type, init URL and segment URLs (the first N, or
    /// for a dynamic MPD those available at `--at`), and with `--after` the segment after a URL.
    Mpd {
        /// The MPD file (`-` for standard input).
        file: PathBuf,
        /// The URL the MPD is served at (the root of the BaseURL chain).
        #[arg(long)]
        base: Url,
        /// For a dynamic MPD, the time to evaluate availability at (RFC 3339); default now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Segments listed per Representation.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Print what this URL is and the segment that follows it.
        #[arg(long)]
        after: Option<Url>,
    },
}

/// Flags of `dashpush run`; each overrides the same key of the `-c` file.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// YAML configuration file (see deploy/dashpush.example.yaml).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Plain listener: HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one port; port 0 picks one.
    /// Default 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
    /// The default origin, e.g. `http://127.0.0.1:8081` or `https://origin.example`.
    #[arg(long)]
    origin: Option<String>,
    /// A replica of the fleet (repeatable): each cache key is fetched from the origin by its
    /// owner only; the others fill from it. Needs --self and a fleet token.
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<String>,
    /// This replica's URL as the other peers reach it.
    #[arg(long = "self", value_name = "URL")]
    me: Option<String>,
    /// Discover the peers by resolving NAME:PORT every 10 s (a Kubernetes headless Service).
    #[arg(long, value_name = "NAME:PORT")]
    fleet_dns: Option<String>,
    /// A file holding the token peer fills carry (shared by the fleet).
    #[arg(long, value_name = "FILE")]
    fleet_token_file: Option<PathBuf>,
    /// PEM file of the CAs that sign HTTPS origins' certificates (default: the system roots).
    #[arg(long, value_name = "FILE")]
    origin_ca: Option<PathBuf>,
    /// A further origin for a path prefix, `PREFIX=URL` (e.g. `/live/=http://10.0.0.2:8081`);
    /// repeatable, added after the file's `routes`.
    #[arg(long = "route", value_name = "PREFIX=URL")]
    routes: Vec<String>,
    /// Admin listener: /metrics, /live, /ready, POST /purge. Default 127.0.0.1:9090.
    #[arg(long)]
    admin: Option<String>,
    /// A file holding the bearer token that POST /purge (every non-GET admin route) requires.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Segments prefetched after each segment a client pulls without a push directive
    /// (0 = off). Default 2.
    #[arg(long)]
    prefetch_next: Option<usize>,
    /// A directory served under /player/ (the demo player: `npm --prefix clients/js run
    /// build:player` makes clients/js/dist/player).
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Cache budget in bytes. Default 256 MiB.
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// Origin read timeout in milliseconds (a stalled origin gets a 504 after this).
    #[arg(long)]
    origin_timeout_ms: Option<u64>,
    /// Report ready without waiting for the origin to answer once.
    #[arg(long)]
    ready_without_origin: bool,
    /// TLS listener (ALPN h2 and http/1.1); needs --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<String>,
    /// PEM certificate chain for the TLS listener.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Access log: `-` for standard output, or a file (appended to); one line per request and
    /// per push (JSON with --log-format json).
    #[arg(long, value_name = "-|PATH")]
    access_log: Option<String>,
    /// Log format: text or json (default text).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl RunArgs {
    /// The file (if any) with the flags applied, validated.
    fn config(&self) -> Result<(dashpush_edge::EdgeConfig, LogArgs), dashpush_edge::ConfigError> {
        let mut raw = match &self.config {
            Some(path) => dashpush_edge::RawConfig::read(path)?,
            None => dashpush_edge::RawConfig::default(),
        };
        raw.listen = self.listen.clone().or(raw.listen);
        if let Some(admin) = self.admin.clone() {
            raw.set_admin_listen(admin);
        }
        if let Some(file) = self.admin_token_file.clone() {
            raw.set_admin_token_file(file);
        }
        raw.origin = self.origin.clone().or(raw.origin);
        for r in &self.routes {
            let (prefix, origin) = r.split_once('=').unwrap_or(("", r.as_str()));
            raw.routes.push(dashpush_edge::config::RawRoute {
                path_prefix: Some(prefix.to_owned()),
                hosts: Vec::new(),
                origin: origin.to_owned(),
            });
        }
        raw.cache.max_bytes = self.cache_bytes.or(raw.cache.max_bytes);
        raw.prefetch.next = self.prefetch_next.or(raw.prefetch.next);
        raw.static_dir = self.static_dir.clone().or(raw.static_dir);
        raw.upstream.read_timeout_ms = self.origin_timeout_ms.or(raw.upstream.read_timeout_ms);
        raw.upstream.ca_file = self.origin_ca.clone().or(raw.upstream.ca_file.take());
        if self.ready_without_origin {
            raw.ready_without_origin = Some(true);
        }
        if let (Some(listen), Some(cert), Some(key)) = (
            self.tls_listen.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
        ) {
            raw.tls = Some(dashpush_edge::config::RawTls { listen, cert, key });
        }
        raw.log_format = self.log_format.clone().or(raw.log_format);
        raw.access_log = self.access_log.clone().or(raw.access_log.take());
        raw.fleet.peers.extend(self.peers.iter().cloned());
        raw.fleet.me = self.me.clone().or(raw.fleet.me.take());
        raw.fleet.dns = self.fleet_dns.clone().or(raw.fleet.dns.take());
        if let Some(f) = &self.fleet_token_file {
            raw.fleet.token_file = Some(f.clone());
            raw.fleet.token = None;
        }
        let log = LogArgs {
            log_format: raw.log_format().unwrap_or("text").to_owned(),
        };
        Ok((dashpush_edge::EdgeConfig::try_from(raw)?, log))
    }
}

/// Flags of `dashpush origin`.
#[derive(Debug, clap::Args)]
struct OriginArgs {
    /// Listener; port 0 picks one (the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// A second listener that also serves the control routes (`/_origin/`: faults, hits,
    /// blobs, the gate); off unless given. The content listener never serves them.
    #[arg(long, value_name = "ADDR")]
    control_listen: Option<String>,
    /// Serve this directory.
    #[arg(long, conflicts_with = "demo")]
    dir: Option<PathBuf>,
    /// Serve the built-in streams (`/vod/manifest.mpd` and `/live/manifest.mpd`; the value
    /// names the one printed first).
    #[arg(long, value_parser = ["vod", "live"])]
    demo: Option<String>,
    /// Live segment duration in milliseconds (compress time for tests).
    #[arg(long, default_value_t = 2000)]
    live_segment_ms: u64,
    /// Live segments become available this many milliseconds after the MPD says (a late
    /// packager: the gateway sees 404 first).
    #[arg(long, default_value_t = 0)]
    live_late_ms: u64,
    /// The live stream started this many milliseconds before the origin did (a stream with a
    /// history, as a real live channel has; 0 starts it now).
    #[arg(long, default_value_t = 0)]
    live_history_ms: u64,
    /// The live MPD lists its segments in a growing SegmentTimeline ($Time$).
    #[arg(long)]
    live_timeline: bool,
    /// Low-latency live: segments available from their start, sent chunked as produced.
    #[arg(long)]
    live_chunked: bool,
    /// Added latency per request, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of requests whose connection is closed unanswered.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    #[command(flatten)]
    log: LogArgs,
}

/// Logging flags.
#[derive(Debug, Clone, clap::Args)]
struct LogArgs {
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_logs(log: &LogArgs) {
    init_logs_counting(log, None);
}

/// Logs to stderr; with `accept_errors`, also counts the traffic listeners' failed accepts.
fn init_logs_counting(log: &LogArgs, accept_errors: Option<prometheus::IntCounter>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,pingora=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let base = tracing_subscriber::registry()
        .with(accept_errors.map(AcceptErrors))
        .with(filter);
    let _ = if log.log_format == "json" {
        base.with(fmt.json()).try_init()
    } else {
        base.with(fmt).try_init()
    };
}

/// Counts pingora's failed accepts (`Accept() failed …`, logged at error level by its
/// listener loop, which then waits a second: EMFILE/ENFILE when descriptors run out) into
/// `dashpush_accept_errors_total`. pingora owns that loop and only logs; this turns the log
/// line into the count operators alert on.
struct AcceptErrors(prometheus::IntCounter);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AcceptErrors {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").starts_with("Accept() failed")
                {
                    self.0 = true;
                }
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if m.0 {
            self.0.inc();
        }
    }
}

fn run_gateway(args: RunArgs) -> ExitCode {
    let (config, log) = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dashpush: config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let registry = prometheus::Registry::new();
    let accept_errors = prometheus::IntCounter::new(
        "dashpush_accept_errors_total",
        "Failed accepts on the listeners (EMFILE/ENFILE: out of descriptors); each is followed \
         by a one-second pause of that listener.",
    )
    .ok()
    .filter(|c| registry.register(Box::new(c.clone())).is_ok());
    init_logs_counting(&log, accept_errors);
    // SIGHUP, or a change of the config file (a ConfigMap update), reloads it with the same
    // flags on top.
    let watch = args.config.clone();
    let reload = dashpush_edge::Reload {
        watch,
        load: Box::new(move || args.config().map(|(c, _)| c)),
    };
    match dashpush_edge::run_with_reload(config, registry, Some(reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("dashpush: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let checked =
        dashpush_edge::RawConfig::read(path).and_then(dashpush_edge::EdgeConfig::try_from);
    match checked {
        Ok(c) => {
            println!(
                "{}: ok (listen {}, admin {}, origin {}, cache {} bytes{})",
                path.display(),
                c.listen,
                c.admin,
                c.origin,
                c.cache_bytes,
                c.tls
                    .as_ref()
                    .map(|t| format!(", tls {}", t.listen))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn origin_content(args: &OriginArgs) -> Result<dashpush_origin::Content, String> {
    match (&args.dir, &args.demo) {
        (Some(dir), None) => dashpush_origin::Content::dir(dir).map_err(|e| e.to_string()),
        (None, Some(_)) => Ok(dashpush_origin::Content::Demo(
            dashpush_origin::DemoOptions {
                live_start: dashpush_origin::DemoOptions::default()
                    .live_start
                    .checked_sub(std::time::Duration::from_millis(args.live_history_ms))
                    .unwrap_or(std::time::UNIX_EPOCH),
                live_segment: std::time::Duration::from_millis(args.live_segment_ms.max(1)),
                live_late: std::time::Duration::from_millis(args.live_late_ms),
                live_timeline: args.live_timeline,
                live_chunked: args.live_chunked,
            },
        )),
        _ => Err("give --dir DIR or --demo vod|live".into()),
    }
}

/// Binds the origin and serves it on a runtime of its own thread; returns the bound address.
fn spawn_origin(
    listen: &str,
    origin: std::sync::Arc<dashpush_origin::Origin>,
    role: dashpush_origin::Listener,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    if let Err(e) = dashpush_origin::serve(l, origin, role).await {
                        tracing::error!("origin stopped: {e}");
                    }
                }
                Err(e) => tracing::error!("origin listener: {e}"),
            }
        });
    });
    Ok(addr)
}

fn run_origin(args: OriginArgs) -> ExitCode {
    init_logs(&args.log);
    let content = match origin_content(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dashpush origin: {e}");
            return ExitCode::FAILURE;
        }
    };
    let faults = dashpush_origin::Faults {
        latency: std::time::Duration::from_millis(args.latency_ms),
        error_rate: args.error_rate.clamp(0.0, 1.0),
        reset_rate: args.reset_rate.clamp(0.0, 1.0),
    };
    let origin = dashpush_origin::Origin::new(content, faults);
    if let Some(control) = &args.control_listen {
        match spawn_origin(control, origin.clone(), dashpush_origin::Listener::Control) {
            Ok(addr) => tracing::info!("listening origin control on {addr}"),
            Err(e) => {
                eprintln!("dashpush origin: {control}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match spawn_origin(&args.listen, origin, dashpush_origin::Listener::Content) {
        Ok(addr) => {
            tracing::info!("listening origin on {addr}");
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("dashpush origin: {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}

fn run_demo(listen: String, admin: String, origin_listen: String, log: LogArgs) -> ExitCode {
    init_logs(&log);
    let origin = dashpush_origin::Origin::new(
        dashpush_origin::Content::Demo(dashpush_origin::DemoOptions::default()),
        dashpush_origin::Faults::default(),
    );
    // The demo's origin has a control port too (a free one): its faults switch makes the
    // origin slow or failing, to watch the gateway cope.
    let control_addr = match spawn_origin(
        "127.0.0.1:0",
        origin.clone(),
        dashpush_origin::Listener::Control,
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dashpush demo: origin control: {e}");
            return ExitCode::FAILURE;
        }
    };
    let origin_addr = match spawn_origin(&origin_listen, origin, dashpush_origin::Listener::Content)
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dashpush demo: origin {origin_listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(origin_url) = Url::parse(&format!("http://{origin_addr}")) else {
        return ExitCode::FAILURE;
    };
    println!("dashpush demo");
    println!(
        "  origin control:      http://{control_addr}/_origin/faults?error_rate=0.5  (hits: /_origin/hits)"
    );
    println!(
        "  origin (HTTP/1.1):   http://{origin_addr}/vod/manifest.mpd  http://{origin_addr}/live/manifest.mpd"
    );
    println!("  gateway (h1 + h2c):  http://{listen}/vod/manifest.mpd");
    println!("  metrics:             http://{admin}/metrics");
    println!("  watch it over HTTP/2: nghttp -nv http://{listen}/vod/manifest.mpd");
    println!(
        "  watch it push:        nghttp -nv -H 'accept-push-policy: urn:mpeg:dash:fdh:2016:push-fast-start;{{\"segments\":2}}' http://{listen}/vod/manifest.mpd"
    );
    println!(
        "  push the next two:    nghttp -nv -H 'accept-push-policy: urn:mpeg:dash:fdh:2016:push-next;2' http://{listen}/vod/chunk-stream0-00001.m4s"
    );
    println!(
        "  fetch a segment:      curl -sv -o /dev/null http://{listen}/vod/chunk-stream0-00001.m4s"
    );
    let player = std::path::Path::new("clients/js/dist/player");
    if player.join("index.html").is_file() {
        println!("  browser player (WebSocket + dash.js): http://{listen}/player/");
    } else {
        println!(
            "  browser player: build it first with `npm --prefix clients/js ci && npm --prefix clients/js run build:player`"
        );
    }
    let mut config = dashpush_edge::EdgeConfig::new(listen, admin, origin_url);
    config.ready_without_origin = true;
    if player.join("index.html").is_file() {
        config.push.static_dir = Some(player.to_path_buf());
    }
    match dashpush_edge::run(config, prometheus::Registry::new()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashpush demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments and runs the chosen command.
pub fn run() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run_gateway(*args),
        Command::CheckConfig { config } => check_config(&config),
        Command::Origin(args) => run_origin(args),
        Command::Demo {
            listen,
            admin,
            origin_listen,
            log,
        } => run_demo(listen, admin, origin_listen, log),
        Command::Directive { value } => directive(&value),
        Command::Expand { template } => expand(&template),
        Command::Plan {
            mpd,
            base,
            request,
            directive,
            no_push,
            at,
        } => plan(&mpd, &base, &request, &directive, !no_push, at),
        Command::Mpd {
            file,
            base,
            at,
            count,
            after,
        } => mpd(&file, &base, at, count, after.as_ref()),
    }
}

fn plan(
    file: &PathBuf,
    base: &Url,
    request: &Url,
    directive: &str,
    push_allowed: bool,
    at: Option<DateTime<Utc>>,
) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dashpush: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let manifest = match Manifest::parse(&text, base) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dashpush: {e}");
            return ExitCode::FAILURE;
        }
    };
    let manifests = dashpush_plan::SingleManifest::new(manifest);
    let mut session = dashpush_plan::Session::new(dashpush_plan::PlanConfig::default());
    let plan = session.on_request(
        &dashpush_plan::Request {
            url: request,
            directive: PushDirective::parse(directive).into(),
            push_allowed,
            byte_budget: None,
        },
        &manifests,
        Some(at.unwrap_or_else(Utc::now)),
    );
    match serde_json::to_string_pretty(&plan) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dashpush: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mpd(
    file: &PathBuf,
    base: &Url,
    at: Option<DateTime<Utc>>,
    count: usize,
    after: Option<&Url>,
) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dashpush: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let m = match Manifest::parse(&text, base) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dashpush: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = at.unwrap_or_else(Utc::now);
    let url = |s: &dashpush_mpd::SegmentRef| m.segment_url(s).map(String::from);
    let periods: Vec<Value> = m
        .periods
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let sets: Vec<Value> = p
                .adaptation_sets
                .iter()
                .enumerate()
                .map(|(ai, a)| {
                    let reps: Vec<Value> = a
                        .representations
                        .iter()
                        .enumerate()
                        .map(|(ri, r)| {
                            let at = dashpush_mpd::RepRef {
                                period: pi,
                                adaptation_set: ai,
                                representation: ri,
                            };
                            let n = m.segment_count(at);
                            let segments: Vec<Value> = m
                                .available(at, now, count)
                                .iter()
                                .map(|s| json!(url(s)))
                                .collect();
                            json!({
                                "id": r.id,
                                "bandwidth": r.bandwidth,
                                "mime_type": r.mime_type,
                                "init": r.init.as_ref().map(Url::as_str),
                                "segment_count": (n < u64::MAX / 4).then_some(n),
                                "segments": segments,
                            })
                        })
                        .collect();
                    json!({
                        "id": a.id,
                        "content_type": a.content_type,
                        "segment_alignment": a.segment_alignment,
                        "representations": reps,
                    })
                })
                .collect();
            json!({ "id": p.id, "start": p.start, "end": p.end, "adaptation_sets": sets })
        })
        .collect();
    let mut out = json!({
        "url": base.as_str(),
        "type": if m.is_dynamic() { "dynamic" } else { "static" },
        "periods": periods,
        "warnings": m.warnings,
    });
    if m.is_dynamic() {
        out["at"] = json!(now.to_rfc3339());
    }
    if let Some(u) = after {
        out["after"] = match m.locate(u) {
            Some(Resource::Segment(s)) => json!({
                "url": u.as_str(),
                "resource": "segment",
                "representation": m.representation(s.rep).map(|r| r.id.clone()),
                "number": s.number,
                "time": s.time,
                "start": s.start,
                "duration": s.duration_secs,
                "next": m.next(&s, 1).first().and_then(url),
            }),
            Some(Resource::Init(r)) => json!({
                "url": u.as_str(),
                "resource": "init",
                "representation": m.representation(r).map(|r| r.id.clone()),
                "next": m.segment(r, 0).as_ref().and_then(url),
            }),
            None => json!({ "url": u.as_str(), "resource": null }),
        };
    }
    println!("{out:#}");
    ExitCode::SUCCESS
}

fn directive(value: &str) -> ExitCode {
    let (out, code) = match PushDirective::parse(value) {
        Ok(d) => {
            let honoured = !matches!(d, PushDirective::Unknown { .. });
            let out = json!({
                "valid": true,
                "push_type": d.push_type().label(),
                "canonical": d.to_string(),
                "ack_if_unsupported": PushAck::none().to_string(),
                "known_type": honoured,
            });
            (out, ExitCode::SUCCESS)
        }
        Err(e) => {
            let out = json!({
                "valid": false,
                "error": e.to_string(),
                "reason": e.reason(),
                "ack": PushAck::none().to_string(),
            });
            (out, ExitCode::FAILURE)
        }
    };
    println!("{out:#}");
    code
}

fn expand(template: &str) -> ExitCode {
    match UrlTemplate::parse(template) {
        Ok(t) => {
            for url in t.expand() {
                println!("{url}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dashpush: invalid template: {e}");
            ExitCode::FAILURE
        }
    }
}
