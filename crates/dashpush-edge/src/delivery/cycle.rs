//! One push cycle: a request with a directive, its plan, and every push it starts, on any
//! [`PushTransport`].

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use dashpush_plan::{DirectiveInput, Outcome, Plan, Push, Request};
use url::Url;

use super::account::Outstanding;
use super::account::{Account, LiveCycle, LiveEdge};
use super::conn::{CancelFlag, PushConn};
use super::turns::{Turn, Turns};
use super::{AnswerHead, DropReason, PushTransport, Stop, Withdrawal};
use crate::access::{Line, PushSummary};
use crate::gateway::{Body, Gateway, Req, Resp};
use crate::prefetch::{Prefetch, Source};
use crate::served::remember_mpd;
use crate::target::Target;

/// A planned push on its way: its prefetch, and what is already known of it.
struct Job {
    push: Push,
    fetch: Fetch,
    /// Body bytes already admitted under the byte cap (before the ack).
    admitted: bool,
}

/// A push's prefetch: running, or done with its source (or nothing: the origin failed).
enum Fetch {
    Running(Prefetch),
    Done(Option<Source>),
}

impl Fetch {
    /// The source, if the prefetch has finished, without waiting for it.
    async fn ready(&mut self) -> Option<&Option<Source>> {
        if let Self::Running(p) = self {
            if !p.is_finished() {
                return None;
            }
            let src = p.await;
            *self = Self::Done(src);
        }
        match self {
            Self::Done(s) => Some(s),
            Self::Running(_) => None,
        }
    }

    async fn source(self) -> Option<Source> {
        match self {
            Self::Running(p) => p.await,
            Self::Done(s) => s,
        }
    }

    /// Drops a prefetch no push will use; true if it had not finished.
    fn abandon(self) -> bool {
        match self {
            Self::Running(p) => {
                let unfinished = !p.is_finished();
                p.abort();
                unfinished
            }
            Self::Done(_) => false,
        }
    }
}

/// A promised push: its job, its transport handle and its cancel flag.
struct Promised<P> {
    job: Job,
    handle: P,
    flag: Arc<CancelFlag>,
    outstanding: Outstanding,
}

/// Runs the push cycle of one request with a directive on `transport`; returns the status the
/// client was answered.
pub(crate) async fn run<T: PushTransport>(
    gw: &Arc<Gateway>,
    conn: &PushConn,
    transport: &mut T,
    req: &Req,
    target: &Target,
    directive: DirectiveInput,
) -> u16 {
    let requested = match &directive {
        DirectiveInput::Absent => None,
        DirectiveInput::Parsed(d) => Some(d.push_type().label()),
        DirectiveInput::Malformed(_) => Some("malformed"),
    };
    // On an MPD request the plan needs that MPD: answer first and register what is served
    // (one origin fetch, whatever its caching); other requests plan first, so that the pushes'
    // prefetches overlap the parent's own fetch.
    let mut answered = None;
    if target.is_mpd() {
        let resp = answer(gw, transport, req).await;
        remember_mpd(gw, target, &resp).await;
        answered = Some(resp);
    }
    let mut plan = plan(gw, conn, transport, target, directive, requested);
    let (jobs, withheld) = start(gw, target, &plan);
    let _live = LiveCycle::new(&gw.metrics().live, &plan.pushes);
    let resp = match answered {
        Some(r) => r,
        None => answer(gw, transport, req).await,
    };
    let status = resp.status;
    let (jobs, held) = settle(gw, conn, transport, &mut plan, jobs, withheld, status).await;
    let acct = Account::new(
        &gw.metrics().push,
        &gw.metrics().live,
        transport.transport(),
        applied(&plan),
    )
    .for_client(req.client.clone());
    for (reason, n) in held {
        acct.withheld(reason, n);
    }
    let ack = plan.ack.as_ref().map(ToString::to_string);
    let cache = crate::access::cache_of(&resp.headers).map(str::to_owned);
    let (promised, parent_bytes) = announce(gw, conn, transport, &acct, plan, jobs, resp).await;
    // Sent concurrently, each in its turn: in push order, the next using the connection while
    // an earlier one waits for window of its own (see `turns`).
    let turns = Turns::new(promised.len(), transport.connection_window());
    let shared: &T = transport;
    // `join_all` polls a cycle of at most 30 pushes in push order on every wake-up, so when one
    // wake-up finds several pushes granted window, the earlier ones go first (a longer cycle, a
    // push-next of more segments, goes through its `FuturesOrdered`: in wake-up order). A set
    // that polls only the woken pushes, in the order their wake-ups came, polled each waiting
    // push less often in the live fan-out (-4 % instructions per push), but the 64 KiB start-up
    // then fell into a cycle of half-used round trips in 3 of 20 runs (none in 20 with
    // `join_all`; docs/benchmarks.md), so it was taken back.
    let sends = promised
        .into_iter()
        .enumerate()
        .map(|(i, p)| deliver(gw, conn, shared, &acct, p, turns.turn(i)));
    futures_util::future::join_all(sends).await;
    transport.finish().await;
    if let Some(log) = gw.access_log() {
        let [promised, completed, reset, dropped] = acct.tally();
        let push = requested.map(|directive| PushSummary {
            directive,
            ack,
            promised,
            completed,
            reset,
            dropped,
        });
        log.log(&Line {
            time: crate::access::now(),
            client: req.client.as_deref(),
            protocol: acct.transport(),
            method: req.method.as_str(),
            authority: req.host.as_deref(),
            path: &req.path,
            status,
            bytes: parent_bytes,
            duration_ms: acct.started().elapsed().as_secs_f64() * 1000.0,
            cache: cache.as_deref(),
            route: Some(&target.origin),
            push: push.as_ref(),
            pushed: false,
            outcome: None,
        });
    }
    status
}

/// The status of a request the client gave up before its answer (never sent; nginx's 499).
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// The parent's answer, unless the client gives the request up first: then a
/// [`CLIENT_CLOSED`] answer, which withholds every push (the work stops at once).
async fn answer<T: PushTransport>(gw: &Gateway, transport: &mut T, req: &Req) -> Resp {
    tokio::select! {
        r = gw.handle(req) => r,
        () = transport.parent_gone() => crate::gateway::short(CLIENT_CLOSED, "client closed request\n"),
    }
}

/// The applied push type's label (after any promise was taken back).
fn applied(plan: &Plan) -> &'static str {
    plan.ack
        .as_ref()
        .map_or("push-none", |a| a.directive().push_type().label())
}

/// Plans the request, counts its directive and stops the pushes of a replaced cycle.
fn plan<T: PushTransport>(
    gw: &Gateway,
    conn: &PushConn,
    transport: &T,
    target: &Target,
    directive: DirectiveInput,
    requested: Option<&'static str>,
) -> Plan {
    let settings = gw.push_settings();
    let plan = conn.plan(&settings.plan, |s| {
        s.on_request(
            &Request {
                url: &target.url,
                directive,
                push_allowed: transport.push_allowed(),
                byte_budget: conn.byte_budget(settings.drain_buffer),
            },
            &gw.manifests().route(&target.origin),
            Some(Utc::now()),
        )
    });
    let result = match &plan.outcome {
        Outcome::Rejected(r) => r.label(),
        _ => "accepted",
    };
    if let Some(requested) = requested {
        gw.metrics()
            .push
            .directives
            .with_label_values(&[transport.transport().label(), requested, result])
            .inc();
    }
    // A replaced cycle: its unfinished pushes stop (spec §4–5); each is counted where it ends.
    for u in &plan.cancel {
        conn.replace(u);
    }
    plan
}

/// Starts the prefetch of every planned push on the request's route; the others are withheld
/// (spec §6.2 rule 2: never another origin).
fn start(gw: &Arc<Gateway>, target: &Target, plan: &Plan) -> (Vec<Job>, Vec<(Url, DropReason)>) {
    let mut jobs = Vec::with_capacity(plan.pushes.len());
    let mut withheld = Vec::new();
    for p in &plan.pushes {
        if !target.same_route(&p.url) {
            withheld.push((p.url.clone(), DropReason::Route));
            continue;
        }
        jobs.push(Job {
            fetch: Fetch::Running(gw.prefetch_for(target, p)),
            push: p.clone(),
            admitted: false,
        });
    }
    (jobs, withheld)
}

/// Before the ack: takes back what cannot be promised (an error parent: everything; a push
/// whose body is at hand and not pushable; one the transport has no room for) and makes the
/// ack say what is left (the planner may take back more: the rest of a push-next run). Returns
/// the jobs left, each with its reservation, and the withheld counts by reason.
async fn settle<T: PushTransport>(
    gw: &Gateway,
    conn: &PushConn,
    transport: &mut T,
    plan: &mut Plan,
    jobs: Vec<Job>,
    mut withheld: Vec<(Url, DropReason)>,
    status: u16,
) -> (Vec<(Job, T::Reserved)>, Vec<(DropReason, usize)>) {
    let cfg = gw.push_settings().plan.clone();
    if status >= 400 {
        for j in jobs {
            j.fetch.abandon();
            withheld.push((j.push.url, DropReason::ParentError));
        }
        conn.plan(&cfg, |s| s.withhold_all(plan));
        return (Vec::new(), tally(&withheld));
    }
    let mut kept = Vec::with_capacity(jobs.len());
    for mut j in jobs {
        let reason = match known_unpushable(gw, conn, &cfg, &mut j).await {
            Some(r) => Err(r),
            None => transport.reserve(&j.push),
        };
        match reason {
            Ok(r) => kept.push((j, r)),
            Err(reason) => {
                j.fetch.abandon();
                withheld.push((j.push.url, reason));
            }
        }
    }
    let urls: Vec<Url> = withheld.iter().map(|(u, _)| u.clone()).collect();
    conn.plan(&cfg, |s| s.withhold(plan, &urls));
    // What the planner took back after a withheld segment counts under that segment's reason.
    let cut = withheld.first().map_or(DropReason::Route, |(_, r)| *r);
    let mut left = Vec::with_capacity(kept.len());
    for (j, r) in kept {
        if plan.pushes.iter().any(|p| p.url == j.push.url) {
            left.push((j, r));
        } else {
            transport.release(r);
            j.fetch.abandon();
            withheld.push((j.push.url, cut));
        }
    }
    (left, tally(&withheld))
}

/// Withheld counts by reason.
fn tally(withheld: &[(Url, DropReason)]) -> Vec<(DropReason, usize)> {
    let mut out: Vec<(DropReason, usize)> = Vec::new();
    for (_, r) in withheld {
        match out.iter_mut().find(|(x, _)| x == r) {
            Some((_, n)) => *n += 1,
            None => out.push((*r, 1)),
        }
    }
    out
}

/// Why a push whose prefetch already finished cannot be pushed, if it cannot (spec §6.2
/// rules 4 and 5); admits its bytes under the cap if it can.
async fn known_unpushable(
    gw: &Gateway,
    conn: &PushConn,
    cfg: &dashpush_plan::PlanConfig,
    job: &mut Job,
) -> Option<DropReason> {
    let src = match job.fetch.ready().await? {
        None => return Some(DropReason::OriginError),
        Some(src) => src,
    };
    let status = src.status_now()?;
    let shared_ttl = src.shared_ttl(job.push.url.path(), gw.cache().ttls());
    if let Some(reason) = unshareable(status, shared_ttl) {
        return Some(reason);
    }
    let len = src.length_now()?;
    if !conn.plan(cfg, |s| s.admit_bytes(&job.push.url, len)) {
        return Some(DropReason::ByteCap);
    }
    job.admitted = true;
    None
}

/// Writes the answer head with the ack, promises every push left, then sends the parent body.
/// Returns the pushes promised, in push order.
async fn announce<T: PushTransport>(
    gw: &Gateway,
    conn: &PushConn,
    transport: &mut T,
    acct: &Account<'_>,
    plan: Plan,
    jobs: Vec<(Job, T::Reserved)>,
    resp: Resp,
) -> (Vec<Promised<T::Promised>>, u64) {
    let Resp {
        status,
        headers,
        body,
        content_length,
    } = resp;
    let head = AnswerHead {
        status,
        headers,
        content_length,
        body_empty: matches!(&body, Body::Full(b) if b.is_empty()),
        ack: plan.ack,
        promises_follow: !jobs.is_empty(),
    };
    let cfg = gw.push_settings().plan.clone();
    if transport.answer_head(head).await.is_err() {
        // The client is gone before anything was promised.
        for (j, r) in jobs {
            transport.release(r);
            j.fetch.abandon();
            conn.plan(&cfg, |s| s.on_undelivered(&j.push.url));
            acct.withheld(DropReason::ParentError, 1);
        }
        return (Vec::new(), 0);
    }
    let mut promised = Vec::with_capacity(jobs.len());
    for (job, r) in jobs {
        match transport.promise(r) {
            Ok(handle) => promised.push(Promised {
                flag: conn.track(&job.push.url),
                outstanding: acct.promised(),
                job,
                handle,
            }),
            Err(reason) => {
                // The client disabled push meanwhile: a rare race the ack could not know.
                job.fetch.abandon();
                conn.plan(&cfg, |s| s.on_undelivered(&job.push.url));
                acct.withheld(reason, 1);
            }
        }
    }
    let mut sent = 0;
    let started = Instant::now();
    match transport.answer_body(body).await {
        Ok(n) => {
            conn.drained(n, started);
            sent = n;
        }
        Err(_) => {
            // The parent broke off, or its transport cannot go on: its promises are withdrawn.
            for p in promised.drain(..) {
                let ending = Ending::Drop(DropReason::ParentError, 0);
                end(gw, conn, transport, acct, p, ending).await;
            }
        }
    }
    (promised, sent)
}

/// How a promised push ends.
enum Ending {
    Complete(u64),
    /// Refused by the client (or its connection left) after `sent` of `total` bytes.
    Reset {
        sent: u64,
        total: Option<u64>,
    },
    /// Dropped by us after `sent` bytes.
    Drop(DropReason, u64),
}

/// Sends one promised push in its `turn`, or withdraws it with the reason it cannot be sent.
/// Its body is awaited before its turn (a live segment waits for its availability without
/// holding up anything); the checks that decide whether it may still be sent run in its turn,
/// in push order.
async fn deliver<T: PushTransport>(
    gw: &Gateway,
    conn: &PushConn,
    transport: &T,
    acct: &Account<'_>,
    mut p: Promised<T::Promised>,
    turn: Turn,
) {
    if let Some(stop) = stopped(transport, &mut p) {
        // Stopped before anything was sent: count what was saved if the body is at hand.
        let total = match p.job.fetch.ready().await {
            Some(Some(src)) => src.length_now(),
            _ => None,
        };
        let fetch = std::mem::replace(&mut p.job.fetch, Fetch::Done(None));
        if fetch.abandon() {
            acct.prefetch_dropped();
        }
        let ending = ending_of(stop, 0, total);
        // Its end is told in its turn too: a transport that sends one push after the other
        // (WebSocket) tells the ends in push order.
        turn.mine().await;
        return end(gw, conn, transport, acct, p, ending).await;
    }
    let fetch = std::mem::replace(&mut p.job.fetch, Fetch::Done(None));
    let Some(src) = fetch.source().await else {
        acct.prefetch_dropped();
        turn.mine().await;
        return end(
            gw,
            conn,
            transport,
            acct,
            p,
            Ending::Drop(DropReason::OriginError, 0),
        )
        .await;
    };
    let resp = src.pushable(gw, p.job.push.url.path()).await;
    turn.mine().await;
    if let Some(stop) = stopped(transport, &mut p) {
        let ending = ending_of(stop, 0, resp.length);
        return end(gw, conn, transport, acct, p, ending).await;
    }
    if let Some(reason) = unpushable(gw, conn, &p.job, &resp) {
        return end(gw, conn, transport, acct, p, Ending::Drop(reason, 0)).await;
    }
    let total = resp.length;
    acct.observe_live(&p.job.push, LiveEdge::FirstByte);
    let flag = Arc::clone(&p.flag);
    let cancelled = move || flag.get();
    let Promised {
        job,
        handle,
        flag,
        outstanding,
    } = p;
    let started = Instant::now();
    let sent = transport
        .send(handle, &job.push, resp, &cancelled, &turn)
        .await;
    drop(turn);
    let bytes = match &sent {
        Ok(n) | Err((_, n)) => *n,
    };
    conn.drained(bytes, started);
    let ending = match sent {
        Ok(n) => {
            acct.observe_live(&job.push, LiveEdge::LastByte);
            Ending::Complete(n)
        }
        Err((stop, n)) => ending_of(stop, n, total),
    };
    drop(flag);
    account(gw, conn, acct, &job.push, outstanding, ending);
}

/// Whether a promised push was cancelled (a cancel, a replacing cycle) or refused by the client.
fn stopped<T: PushTransport>(transport: &T, p: &mut Promised<T::Promised>) -> Option<Stop> {
    p.flag
        .get()
        .or_else(|| transport.refused(&mut p.handle).then_some(Stop::Refused))
}

/// What a stop means for the counters.
fn ending_of(stop: Stop, sent: u64, total: Option<u64>) -> Ending {
    match stop {
        Stop::Refused | Stop::Gone => Ending::Reset { sent, total },
        Stop::Replaced => Ending::Drop(DropReason::Replaced, sent),
        Stop::OriginBroke => Ending::Drop(DropReason::OriginError, sent),
    }
}

/// Why a response about to be pushed may not be (spec §6.2 rules 4 and 5).
fn unpushable(
    gw: &Gateway,
    conn: &PushConn,
    job: &Job,
    resp: &crate::prefetch::Pushable,
) -> Option<DropReason> {
    if let Some(reason) = unshareable(resp.status(), resp.shared_ttl) {
        return Some(reason);
    }
    let cfg = &gw.push_settings().plan;
    let fits = job.admitted
        || conn.plan(cfg, |s| {
            s.admit_bytes(&job.push.url, resp.length.unwrap_or(0))
        });
    (!fits).then_some(DropReason::ByteCap)
}

/// Why a response with `status`, fresh for anyone for `shared_ttl`, may not be pushed (spec
/// §6.2 rule 5: only what may be cached is pushed; only a 200 is), if it may not. The one rule
/// behind both the early check of a finished prefetch and the check in the push's turn.
fn unshareable(status: u16, shared_ttl: Option<std::time::Duration>) -> Option<DropReason> {
    if status != 200 {
        Some(DropReason::OriginStatus)
    } else if shared_ttl.is_none() {
        Some(DropReason::Uncacheable)
    } else {
        None
    }
}

/// Ends a promised push that was not sent: tells the transport, then counts it.
async fn end<T: PushTransport>(
    gw: &Gateway,
    conn: &PushConn,
    transport: &T,
    acct: &Account<'_>,
    p: Promised<T::Promised>,
    ending: Ending,
) {
    let why = match ending {
        Ending::Drop(reason, _) => Withdrawal::Dropped(reason),
        _ => Withdrawal::Refused,
    };
    transport.withdraw(p.handle, &p.job.push, why).await;
    account(gw, conn, acct, &p.job.push, p.outstanding, ending);
}

/// Counts how a promised push ended and tells the planner (spec §7.3 (ours): only the
/// client's refusal is a refusal).
fn account(
    gw: &Gateway,
    conn: &PushConn,
    acct: &Account<'_>,
    push: &Push,
    outstanding: Outstanding,
    ending: Ending,
) {
    let cfg = &gw.push_settings().plan;
    conn.untrack(&push.url);
    if let Some(log) = gw.access_log() {
        let (outcome, bytes) = match &ending {
            Ending::Complete(n) => ("completed", *n),
            Ending::Reset { sent, .. } => ("reset", *sent),
            Ending::Drop(reason, sent) => (reason.label(), *sent),
        };
        let path = match push.url.query() {
            Some(q) => format!("{}?{q}", push.url.path()),
            None => push.url.path().to_owned(),
        };
        log.log(&Line {
            time: crate::access::now(),
            client: acct.client(),
            protocol: acct.transport(),
            method: "GET",
            authority: Some(push.url.authority()),
            path: &path,
            status: 200,
            bytes,
            duration_ms: acct.started().elapsed().as_secs_f64() * 1000.0,
            cache: None,
            route: None,
            push: None,
            pushed: true,
            outcome: Some(outcome),
        });
    }
    match ending {
        Ending::Complete(n) => {
            conn.plan(cfg, |s| s.on_complete(&push.url));
            acct.completed(outstanding, n);
        }
        Ending::Reset { sent, total } => {
            conn.plan(cfg, |s| s.on_refused(&push.url));
            acct.reset(outstanding, sent, total);
        }
        Ending::Drop(reason, sent) => {
            conn.plan(cfg, |s| s.on_undelivered(&push.url));
            acct.dropped(outstanding, reason, sent);
        }
    }
}
