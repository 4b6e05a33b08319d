//! The pingora server: one plain listener serving HTTP/1.1 and h2c (told apart by the
//! connection preface), the admin listener, graceful shutdown.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::protocols::ALPN;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::{GenBackgroundService, background_service};
use prometheus::Registry;
use url::Url;

use crate::EdgeError;
use crate::admin::Admin;
use crate::cache::Cache;
use crate::downstream::h1::{self, Handler};
use crate::downstream::h2 as h2srv;
use crate::drain::{Drain, DrainingSignal};
use crate::gateway::{Gateway, Req, Resp};
use crate::guard::{Admitted, Closed, Connections};
use crate::listener::{Accepting, Serve};
use crate::metrics::Metrics;
use crate::origin::routing::{Origins, Route};
use crate::origin::upstream::{OriginTlsPeer, Upstream, UpstreamConfig};
use crate::served;
use crate::settings::EdgeConfig;
use crate::settings::{H2Limits, Limits};
use crate::target::Target;
use dashpush_proto::http2::request_policy;

/// Worker threads of the admin listener's runtime, and pingora's default for its own services
/// (the traffic listeners take `threads` from the configuration).
const THREADS: usize = 2;

/// The app on a traffic listener (cleartext, or TLS with `tls`).
#[derive(Clone)]
struct EdgeApp {
    gateway: Arc<Gateway>,
    h2: H2Limits,
    limits: Limits,
    connections: Arc<Connections>,
    drain: Arc<Drain>,
    tls: Option<Arc<Acceptor>>,
    /// The server's SETTINGS frame for parked HTTP/2 connections, captured from `h2` with the
    /// first one (`None` inside: it could not be, and connections go to `h2` at once).
    greeting: Arc<tokio::sync::OnceCell<Option<bytes::Bytes>>>,
}

#[async_trait::async_trait]
impl Handler for Gateway {
    /// HTTP/1.1 cannot push: a request with a directive is answered as usual, with a push-none
    /// ack (spec §6.1.4, Annex E).
    async fn handle(&self, req: &Req) -> Resp {
        let mut resp = Gateway::handle(self, req).await;
        let policy = request_policy(req.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        if let Some(ack) = crate::delivery::none_ack(&policy) {
            resp.headers.push(ack);
        }
        resp
    }

    async fn websocket(
        self: &Arc<Self>,
        session: Box<pingora::protocols::http::v1::server::HttpSession>,
        scheme: &'static str,
        client: Option<String>,
    ) {
        crate::downstream::ws::upgrade(self, session, scheme, client).await;
    }

    async fn before_write(
        self: &Arc<Self>,
        scheme: &'static str,
        host: Option<&str>,
        path: &str,
        resp: &Resp,
    ) {
        if served::may_carry_mpd(resp.status, path)
            && let Some(t) = Target::resolve(&self.origins(), scheme, host, path)
        {
            served::remember_mpd(self, &t, resp).await;
        }
    }

    fn after_response(
        self: &Arc<Self>,
        scheme: &'static str,
        host: Option<&str>,
        path: &str,
        status: u16,
    ) {
        served::after_pull(self, status, path, || {
            Target::resolve(&self.origins(), scheme, host, path)
        });
    }

    fn record(&self, protocol: &'static str, status: u16) {
        Gateway::record(self, protocol, status);
    }

    fn closed(&self, why: Closed) {
        why.count(self.metrics(), "h1");
    }

    fn served(&self, scheme: &'static str, s: &crate::access::Served<'_>) {
        self.log_served(scheme, s);
    }
}

/// The HTTP/2 connection preface starts with these bytes (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

#[async_trait::async_trait]
impl Serve for EdgeApp {
    async fn serve(self: Arc<Self>, stream: Stream) {
        let metrics = self.gateway.metrics();
        // Caps first: a refused connection costs nothing more (it is closed as it is dropped).
        let client = stream.get_socket_digest().and_then(|d| {
            d.peer_addr()
                .and_then(|a| a.as_inet())
                .map(std::net::SocketAddr::ip)
        });
        let admitted = match self.connections.admit(client) {
            Ok(a) => a,
            Err(why) => {
                why.count(metrics, "tcp");
                return;
            }
        };
        let Some((stream, is_h2)) = self.handshake(stream, &admitted).await else {
            return;
        };
        let tls = self.tls.is_some();
        let protocol = if is_h2 { "h2" } else { "h1" };
        // Counted while the connection lives, however its task ends.
        let _open =
            crate::metrics::Held::new(&metrics.open_connections.with_label_values(&[protocol]));
        // Each protocol's connection future is boxed on its own: a connection holds the state
        // of its protocol only, not the larger of the two (memory per idle connection).
        if is_h2 {
            let greeting = self.greeting().await;
            Box::pin(h2srv::serve(
                &self.gateway,
                stream,
                h2srv::Setup {
                    h2: self.h2,
                    greeting,
                },
                self.limits,
                &self.drain,
                &admitted,
                tls,
            ))
            .await;
        } else {
            Box::pin(h1::serve(
                &self.gateway,
                stream,
                self.limits,
                &self.drain,
                &admitted,
                tls,
            ))
            .await;
        }
    }
}

impl EdgeApp {
    /// The server's SETTINGS frame for parked HTTP/2 connections; `None` when parking is off
    /// or the frame could not be captured. The first HTTP/2 connection captures it, boxed: the
    /// capture's state (an `h2` handshake) is not part of every connection's future.
    async fn greeting(&self) -> Option<&bytes::Bytes> {
        if !self.h2.park {
            return None;
        }
        let greeting = match self.greeting.get() {
            Some(greeting) => greeting,
            None => {
                Box::pin(self.greeting.get_or_init(|| async {
                    crate::downstream::h2park::greeting(&self.h2)
                        .await
                        .inspect_err(|e| tracing::warn!("{e}: HTTP/2 connections are not parked"))
                        .ok()
                }))
                .await
            }
        };
        greeting.as_ref()
    }

    /// Everything before the first request, within the handshake deadline: the first bytes
    /// (until they arrive the connection is idle, one of the first closed at the cap), the TLS
    /// handshake on the TLS listener, and the protocol: ALPN under TLS, the first bytes in
    /// cleartext (h2c prior knowledge). `None`: the connection is over (counted).
    async fn handshake(&self, mut stream: Stream, admitted: &Admitted) -> Option<(Stream, bool)> {
        let metrics = self.gateway.metrics();
        let deadline = tokio::time::Instant::now() + self.limits.handshake;
        let mut first = [0u8; 4];
        let peeked = {
            let _idle = admitted.idle();
            tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.try_peek(&mut first)) => r,
                () = admitted.evicted() => {
                    Closed::Evicted.count(metrics, "tcp");
                    return None;
                }
            }
        };
        let peeked = match peeked {
            Ok(Ok(peeked)) => peeked,
            Ok(Err(_)) => return None,
            Err(_) => {
                Closed::Handshake.count(metrics, "tcp");
                return None;
            }
        };
        if let Some(acceptor) = &self.tls {
            // The listener hands over the TCP stream; the handshake is ours, so that it has
            // the same deadline as the rest (pingora's own allows 60 s, uncounted).
            let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
                tracing::warn!("TLS listener: not a TCP stream");
                return None;
            };
            // Boxed: the handshake's state is large, and only TLS connections need it.
            let handshake = Box::pin(acceptor.tls_handshake(*l4));
            stream = match tokio::time::timeout_at(deadline, handshake).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake: {e}");
                    return None;
                }
                Err(_) => {
                    Closed::TlsHandshake.count(metrics, "tls");
                    return None;
                }
            };
            // ALPN decides; a TLS client without ALPN speaks HTTP/1.1 (spec Annex E).
            let is_h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
            return Some((stream, is_h2));
        }
        Some((stream, peeked && &first == H2_PREFACE_START))
    }
}

/// The admin listener (probes, metrics): HTTP/1.1 with the default deadlines and a small
/// connection cap of its own.
struct AdminApp(Arc<Admin>, Arc<Drain>, Arc<Connections>);

/// Open admin connections at most (per client address too).
const ADMIN_CONNECTIONS: usize = 64;

#[async_trait::async_trait]
impl Serve for AdminApp {
    async fn serve(self: Arc<Self>, stream: Stream) {
        let Ok(admitted) = self.2.admit(None) else {
            return;
        };
        h1::serve(
            &self.0,
            stream,
            Limits::default(),
            &self.1,
            &admitted,
            false,
        )
        .await;
    }
}

/// A pingora background service running the accept loop of `listener` for `app` on a runtime
/// of `threads` worker threads.
fn accepting<A: Serve>(
    name: &str,
    listener: std::net::TcpListener,
    app: A,
    threads: usize,
    notsent_lowat: u32,
) -> GenBackgroundService<Accepting<A>> {
    let mut svc = background_service(name, Accepting::new(listener, app, notsent_lowat));
    svc.threads = Some(threads);
    svc
}

/// Starts the reload watcher: `SIGHUP`, and a check of the watched file every 2 s. The signal
/// handler is installed before this returns, so an early `SIGHUP` cannot kill the process.
fn watch_config(gateway: Arc<Gateway>, metrics: Metrics, reload: Reload) -> Result<(), EdgeError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dashpush-reload".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut hup = match signal(SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let fingerprint = |path: &Option<std::path::PathBuf>| {
                    path.as_ref().and_then(|p| std::fs::read(p).ok())
                };
                let mut last = fingerprint(&reload.watch);
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    let why = tokio::select! {
                        _ = hup.recv() => {
                            last = fingerprint(&reload.watch);
                            "SIGHUP"
                        }
                        _ = tick.tick() => {
                            let now = fingerprint(&reload.watch);
                            if now == last {
                                continue;
                            }
                            last = now;
                            "config file changed"
                        }
                    };
                    let result = (reload.load)().map_err(|e| e.to_string()).and_then(|c| {
                        let origins = origins_of(&c, &metrics).map_err(|e| e.to_string())?;
                        gateway.reload(origins, c.push, c.ttls);
                        Ok(())
                    });
                    match result {
                        Ok(()) => {
                            tracing::info!("config reloaded ({why})");
                            metrics.config_reloads.with_label_values(&["ok"]).inc();
                        }
                        Err(e) => {
                            tracing::warn!(
                                "config reload ({why}) rejected, keeping the running one: {e}"
                            );
                            metrics.config_reloads.with_label_values(&["error"]).inc();
                        }
                    }
                }
            });
        })
        .map_err(|e| EdgeError::Config(format!("reload thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(EdgeError::Config(format!("SIGHUP handler: {e}"))),
        Err(_) => Err(EdgeError::Config("reload thread ended".into())),
    }
}

/// The fleet's own thread: every 5 s the health check of peers that are down, and with
/// `dns` (`NAME:PORT`) the peers resolved again every 10 s.
fn watch_fleet(
    fleet: Arc<crate::fleet::Fleet>,
    dns: Option<String>,
    config: EdgeConfig,
    metrics: Metrics,
) -> Result<(), EdgeError> {
    let connect: crate::fleet::Connect = Box::new(move |addr| {
        let url = Url::parse(&format!("http://{addr}")).ok()?;
        let mut upstream = upstream_for(&url, &config, &metrics).ok()?;
        upstream.set_peer();
        Some(Arc::new(upstream))
    });
    std::thread::Builder::new()
        .name("dashpush-fleet".into())
        .spawn(move || {
            let mut tick = 0u64;
            loop {
                if tick.is_multiple_of(2)
                    && let Some(name) = &dns
                {
                    match name.to_socket_addrs() {
                        Ok(found) => {
                            let found: Vec<SocketAddr> = found.collect();
                            fleet.discovered(&found, &connect);
                        }
                        Err(e) => tracing::warn!(%name, "fleet: peers not resolved: {e}"),
                    }
                }
                fleet.check();
                tick += 1;
                std::thread::sleep(Duration::from_secs(5));
            }
        })
        .map_err(|e| EdgeError::Config(format!("fleet thread: {e}")))?;
    Ok(())
}

/// The HTTP/1.1 client of one origin (`http://`, or `https://` with the configured TLS).
fn upstream_for(
    origin: &Url,
    config: &EdgeConfig,
    metrics: &Metrics,
) -> Result<Upstream, EdgeError> {
    let host = origin
        .host_str()
        .ok_or_else(|| EdgeError::Config(format!("origin {origin} has no host")))?;
    let tls = match origin.scheme() {
        "http" => None,
        "https" => {
            let t = &config.origin_tls;
            if !t.verify {
                tracing::warn!(
                    "origin {origin}: certificates are NOT verified (upstream.tls_verify: false)"
                );
            }
            Some(OriginTlsPeer {
                sni: t
                    .sni
                    .clone()
                    .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned()),
                verify: t.verify,
                ca_file: t.ca_file.as_ref().map(|p| p.to_string_lossy().into_owned()),
            })
        }
        other => {
            return Err(EdgeError::Config(format!(
                "origin {origin}: scheme {other} (http:// or https://)"
            )));
        }
    };
    let port = origin
        .port_or_known_default()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|source| EdgeError::Bind {
            addr: format!("{host}:{port}"),
            source,
        })?
        .next()
        .ok_or_else(|| EdgeError::Config(format!("origin {host} does not resolve")))?;
    Ok(Upstream::new(
        UpstreamConfig {
            addr,
            host: origin.authority().to_owned(),
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            total_timeout: config.total_timeout,
            max_body: config.max_body,
            tls,
            peer: false,
        },
        metrics.clone(),
    ))
}

/// Runs the gateway until SIGTERM/SIGINT, then drains and returns.
/// How to reload the configuration: `load` re-reads it (the file with the command-line flags
/// applied); `watch` is the file whose content changes trigger a reload (a Kubernetes ConfigMap
/// update), besides `SIGHUP`.
pub struct Reload {
    /// The file to watch, if any.
    pub watch: Option<std::path::PathBuf>,
    /// Produces the new configuration.
    pub load: Box<dyn Fn() -> Result<EdgeConfig, crate::ConfigError> + Send + Sync>,
}

/// The origin routes of a configuration, with their clients.
fn origins_of(config: &EdgeConfig, metrics: &Metrics) -> Result<Origins, EdgeError> {
    let default = Route {
        path_prefix: "/".into(),
        hosts: Vec::new(),
        origin: config.origin.clone(),
    };
    let mut origins = Vec::new();
    for route in std::iter::once(default).chain(config.routes.iter().cloned()) {
        let upstream = upstream_for(&route.origin, config, metrics)?;
        origins.push((route, Arc::new(upstream)));
    }
    Ok(Origins::new(origins))
}

/// Runs the gateway until SIGTERM/SIGINT, then drains and returns.
pub fn run(config: EdgeConfig, registry: Registry) -> Result<(), EdgeError> {
    run_with_reload(config, registry, None)
}

/// Like [`run`], reloading the configuration on `SIGHUP` and when the watched file changes:
/// origins and routes, push and prefetch caps and default TTLs take effect for new requests;
/// listeners, TLS, worker threads, HTTP/2 limits and the cache budget need a restart. A configuration that
/// does not load is logged and counted, and the running one stays.
pub fn run_with_reload(
    config: EdgeConfig,
    registry: Registry,
    reload: Option<Reload>,
) -> Result<(), EdgeError> {
    let metrics = Metrics::new(registry)?;
    // What the MPD parser builds on first use is built now, not for the first viewer.
    dashpush_mpd::warm_up();
    crate::delivery::account::register_series(&metrics);
    crate::guard::register_series(&metrics);
    let origins = origins_of(&config, &metrics)?;
    let cache = Cache::new(config.cache_bytes, config.ttls, metrics.clone());
    let gateway = Gateway::new(
        origins,
        cache,
        metrics.clone(),
        config.push.clone(),
        config.fetch_slots,
    );
    if let Some(sink) = &config.access_log {
        let log = crate::access::AccessLog::start(
            sink,
            config.access_log_json,
            metrics.access_log_dropped.clone(),
        )
        .map_err(|e| EdgeError::Config(format!("access log {sink:?}: {e}")))?;
        gateway.set_access_log(log);
    }
    if let Some(f) = &config.fleet {
        let mut peers = Vec::new();
        for (id, url) in &f.peers {
            let mut upstream = upstream_for(url, &config, &metrics)?;
            upstream.set_peer();
            peers.push((id.clone(), Arc::new(upstream)));
        }
        let token = http::HeaderValue::from_str(&f.token)
            .map_err(|e| EdgeError::Config(format!("fleet.token: {e}")))?;
        tracing::info!(me = %f.me, peers = peers.len(), dns = ?f.dns, "fleet: fills go to each key's owner");
        let fleet = gateway.set_fleet(crate::fleet::Fleet::new(
            f.me.clone(),
            peers,
            token,
            metrics.fleet_peers.with_label_values(&["up"]),
            metrics.fleet_peers.with_label_values(&["down"]),
        ));
        if let Some(fleet) = fleet {
            watch_fleet(fleet, f.dns.clone(), config.clone(), metrics.clone())?;
        }
    }
    if let Some(reload) = reload {
        watch_config(Arc::clone(&gateway), metrics, reload)?;
    }

    // Bound here, before anything says where the gateway listens (port 0 included).
    let (listener, listen) = crate::listener::bind(&config.listen)?;
    let (admin_listener, admin) = crate::listener::bind(&config.admin)?;

    let conf = ServerConf {
        // Draining happens before pingora sees the signal (see `drain`), so no fixed sleep.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        threads: THREADS,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let drain = Drain::new();
    let nofile = crate::guard::set_open_files(config.limits.max_open_files);
    let connections = Connections::new(
        config.limits.max_connections,
        config.limits.max_connections_per_client,
        config.fetch_slots.max,
    );
    tracing::info!(
        max = connections.max(),
        per_client = config.limits.max_connections_per_client,
        open_files = nofile,
        "downstream connection caps"
    );
    if !crate::guard::fits(nofile, connections.max(), config.fetch_slots.max) {
        tracing::warn!(
            "limits.max_connections ({}) and upstream.max_connections ({}) do not fit the \
             open-files limit ({nofile:?}): accepting may fail with EMFILE under load; raise \
             limits.max_open_files or the hard limit, or lower the caps",
            connections.max(),
            config.fetch_slots.max
        );
    }
    let app = EdgeApp {
        gateway: gateway.clone(),
        h2: config.h2,
        limits: config.limits,
        connections: connections.clone(),
        drain: drain.clone(),
        tls: None,
        greeting: Arc::default(),
    };
    // Our own accept loops (see `listener`), on a runtime of the configured threads. The
    // streams carry no buffers of pingora's: an idle connection holds none (h2 has its own
    // codec buffers, HTTP/1.1 coalesces a head with its body in `Coalesce`), and HTTP/2 DATA
    // leaves by vectored writes without being copied.
    let lowat = config.limits.notsent_lowat;
    let threads = config.threads;
    let traffic = accepting("dashpush", listener, app.clone(), threads, lowat);
    let mut tls_svc = None;
    let tls_addr = match &config.tls {
        Some(tls) => {
            for path in [&tls.cert, &tls.key] {
                std::fs::File::open(path)
                    .map_err(|e| EdgeError::Config(format!("{}: {e}", path.display())))?;
            }
            let (Some(cert), Some(key)) = (tls.cert.to_str(), tls.key.to_str()) else {
                return Err(EdgeError::Config("TLS paths must be UTF-8".into()));
            };
            let mut settings = TlsSettings::intermediate(cert, key)
                .map_err(|e| EdgeError::Config(format!("TLS: {e}")))?;
            settings.enable_h2();
            let (listener, addr) = crate::listener::bind(&tls.listen)?;
            // A TCP listener: the app does the handshake (see `EdgeApp::handshake`).
            let app = EdgeApp {
                tls: Some(Arc::new(settings.build())),
                ..app
            };
            tls_svc = Some(accepting("dashpush-tls", listener, app, threads, lowat));
            Some(addr)
        }
        None => None,
    };
    let admin_svc = accepting(
        "dashpush-admin",
        admin_listener,
        AdminApp(
            Arc::new(Admin {
                gateway,
                ready: AtomicBool::new(config.ready_without_origin),
                drain: drain.clone(),
                token: config.admin_token.clone(),
            }),
            drain.clone(),
            Connections::new(ADMIN_CONNECTIONS, ADMIN_CONNECTIONS, 0),
        ),
        1,
        0,
    );
    server.add_service(traffic);
    if let Some(svc) = tls_svc {
        server.add_service(svc);
    }
    server.add_service(admin_svc);
    tracing::info!(threads, "listening http/1.1+h2c on {listen}");
    if let Some(addr) = tls_addr {
        tracing::info!("listening tls (h2, http/1.1) on {addr}");
    }
    tracing::info!("listening admin on {admin}");
    tracing::info!("origin {}", config.origin);
    for r in &config.routes {
        tracing::info!(
            "origin {} for {}{}",
            r.origin,
            if r.hosts.is_empty() {
                "*".to_owned()
            } else {
                r.hosts.join(",")
            },
            r.path_prefix
        );
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignal {
            drain,
            grace: config.grace,
        }),
    });
    Ok(())
}
