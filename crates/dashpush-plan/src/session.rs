//! The per-connection push state machine (spec §4–5, §6.2, §7.3, Annex G, Annex H).

use foldhash::{HashMap, HashMapExt, HashSet};
use std::sync::Arc;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use dashpush_mpd::{Manifest, RepRef, Resource, SegmentRef};
use dashpush_proto::{
    DirectiveError, FastStartParams, PushAck, PushDirective, PushDuration, UrlListError, limits,
};
use url::Url;

use crate::ack::{AckBasis, AckItem, AckRule, reach_ms};
use crate::config::PlanConfig;
use crate::diary::Diary;
use crate::manifests::{Manifests, same_resource};
use crate::plan::{DirectiveInput, Outcome, Plan, Push, PushKind, RejectReason, Request};

/// Most push cycles (one per AdaptationSet or MPD touched) a session remembers; the least
/// recently used is forgotten first.
const MAX_CYCLES: usize = 1024;

/// The push planner of one downstream connection.
///
/// Feed it every request of the connection ([`Session::on_request`], with or without a
/// directive: requests also tell it what the client already has) and every end of a push
/// ([`Session::on_complete`], [`Session::on_refused`], [`Session::on_undelivered`]). It never reads a clock and never fails:
/// whatever it cannot honour it acks as less (spec §4–5 (ours): "the server may always push
/// less than asked").
#[derive(Debug)]
pub struct Session {
    cfg: PlanConfig,
    /// Every URL promised on this connection (spec §6.2 safety rule 3).
    pushed: Diary,
    /// Promised URLs the client refused (spec §7.3): never pushed again on this connection.
    refused: Diary,
    /// Every URL the client requested on this connection.
    requested: Diary,
    /// Promised, not yet completed or reset.
    in_flight: HashMap<Url, Flight>,
    bytes_in_flight: u64,
    /// Estimated body bytes of the pushes in flight (Representation bandwidth × duration).
    estimated_in_flight: u64,
    /// The budget of the request being planned ([`Request::byte_budget`]).
    budget: Option<u64>,
    /// The wall clock of the request being planned, if known.
    now: Option<DateTime<Utc>>,
    next_seq: u64,
    /// Running push cycles (spec §4–5, Annex H).
    cycles: HashMap<CycleKey, Cycle>,
    tick: u64,
}

/// One promise in flight.
#[derive(Clone, Debug)]
struct Flight {
    /// Promise order, so cancels come out in push order.
    seq: u64,
    /// The cycle that owns it.
    cycle: CycleKey,
    /// Body bytes admitted so far.
    bytes: u64,
    /// Estimated body bytes.
    estimated: u64,
    /// For a media segment: the AdaptationSet's cycle and the segment, to track the client's
    /// position once it is delivered.
    segment: Option<(CycleKey, SegmentRef)>,
}

/// What a push cycle belongs to: an AdaptationSet of a Period of one MPD, or the MPD as a whole
/// (fast start, lists on the MPD request).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CycleKey {
    mpd: Url,
    scope: Scope,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Manifest,
    Set {
        period: usize,
        adaptation_set: usize,
    },
}

/// The state of one cycle (spec Annex H).
#[derive(Clone, Debug, Default)]
struct Cycle {
    /// The Representation the running cycle pushes, within its AdaptationSet.
    rep: Option<usize>,
    /// The newest segment of this AdaptationSet the client requested or received.
    position: Option<SegmentRef>,
    /// Last use, for forgetting the least recently used cycle.
    touched: u64,
}

/// What the request URL is.
#[derive(Clone, Copy, Debug)]
enum Target {
    Mpd,
    Init(RepRef),
    Segment(SegmentRef),
    /// Known to a registry, but not addressed by its MPD.
    Other,
}

/// One URL the directive asks for, before the safety rules and caps.
#[derive(Clone, Debug)]
struct Candidate {
    url: Url,
    kind: PushKind,
    not_before: Option<DateTime<Utc>>,
    /// Live: the end of the segment's availability slot (start + duration).
    live_until: Option<DateTime<Utc>>,
    segment: Option<SegmentRef>,
    cycle: CycleKey,
    /// A media segment that counts toward K or T (not an init pushed ahead of a switch).
    counts: bool,
    /// Left out before the caps (outside the MPD, not available in time).
    blocked: bool,
    /// Which fast-start item or list entry it came from.
    group: usize,
    /// Estimated body bytes (`@bandwidth` × duration for a media segment, else 0).
    estimated: u64,
}

impl Candidate {
    /// A URL of `kind` that is not a media segment (an init, the MPD, anything else), from
    /// `group` of `cycle`: available now, counting toward no cap.
    fn plain(url: Url, kind: PushKind, cycle: &CycleKey, group: usize) -> Self {
        Self {
            url,
            kind,
            not_before: None,
            live_until: None,
            segment: None,
            cycle: cycle.clone(),
            counts: false,
            blocked: false,
            group,
            estimated: 0,
        }
    }

    /// Media segment `s` of `m` at `url`, from `group` of `cycle`, available from `not_before`
    /// (`None`: now); `blocked` when it never is in time.
    fn media(
        m: &Manifest,
        s: SegmentRef,
        url: &Url,
        cycle: &CycleKey,
        group: usize,
        not_before: Option<DateTime<Utc>>,
        blocked: bool,
    ) -> Self {
        Self {
            url: without_fragment(url),
            kind: PushKind::Media,
            not_before,
            live_until: live_until(m, &s),
            segment: Some(s),
            cycle: cycle.clone(),
            counts: true,
            blocked,
            group,
            estimated: estimate(m, &s),
        }
    }
}

/// How [`Session::admit`] treats a URL that cannot be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// push-next / push-time: a run of consecutive segments; the first media segment that
    /// cannot be granted ends the run.
    Window,
    /// Lists, templates, fast start: each URL on its own.
    Each,
}

/// What the safety rules make of one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Promise it now.
    Push,
    /// The client has it or is receiving it: granted, not promised again.
    Have,
    /// Left out (counted in [`Plan::dropped`]).
    Drop,
}

/// How one directive type is admitted.
#[derive(Clone, Copy, Debug)]
struct Rules {
    mode: Mode,
    /// Most URLs granted (an ack list holds at most `limits::MAX_LIST_ENTRIES`).
    max_granted: usize,
    /// Inits are pushed only together with a media segment of their group.
    init_needs_media: bool,
}

/// The result of the safety rules and caps over a candidate list.
#[derive(Debug, Default)]
struct Admitted {
    pushes: Vec<Push>,
    /// Per candidate: pushed now or already with the client (in flight, delivered, requested).
    granted: Vec<bool>,
    dropped: usize,
    cancel: Vec<Url>,
}

/// Live availability of a segment (spec §6.2 (ours)).
enum Gate {
    Now,
    Later(DateTime<Utc>),
    Never,
}

impl Session {
    /// A session with `cfg` lowered to the hard limits ([`PlanConfig::clamped`]).
    pub fn new(cfg: PlanConfig) -> Self {
        let cfg = cfg.clamped();
        Self {
            pushed: Diary::new(cfg.diary_capacity),
            refused: Diary::new(cfg.diary_capacity),
            requested: Diary::new(cfg.diary_capacity),
            cfg,
            in_flight: HashMap::new(),
            bytes_in_flight: 0,
            estimated_in_flight: 0,
            budget: None,
            now: None,
            next_seq: 0,
            cycles: HashMap::new(),
            tick: 0,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &PlanConfig {
        &self.cfg
    }

    /// Plans the pushes for one request (spec §6.2). Every request of the connection should
    /// come through here, with or without a directive, so the session knows what the client
    /// fetched itself (safety rule 3) and where it is (Annex H).
    ///
    /// - No directive: nothing, no ack.
    /// - Malformed, unknown type, push not possible, no MPD for the URL: ack push-none,
    ///   [`Outcome::Rejected`]; a running cycle is left alone.
    /// - push-none: ends the cycle of the request's AdaptationSet (of the whole MPD on the MPD
    ///   request) and cancels its unfinished pushes.
    /// - Otherwise the ack names the push type applied and its effective parameter, the pushes
    ///   are in order, and the unfinished pushes of the replaced cycle that the new one does not
    ///   include are in [`Plan::cancel`].
    pub fn on_request(
        &mut self,
        req: &Request<'_>,
        manifests: &dyn Manifests,
        now: Option<DateTime<Utc>>,
    ) -> Plan {
        let url = without_fragment(req.url);
        self.requested.insert(&url);
        self.budget = req.byte_budget;
        self.now = now;
        let target = resolve(&url, manifests);
        if let Some((m, Target::Segment(s))) = &target {
            let key = set_key(m, s.rep);
            self.cycle_mut(&key).position = Some(*s);
        }
        let directive = match &req.directive {
            DirectiveInput::Absent => return Plan::no_directive(),
            DirectiveInput::Malformed(e) => {
                return Plan::rejected(RejectReason::Malformed(e.clone()));
            }
            DirectiveInput::Parsed(d) => d.clone().clamped(self.cfg.max_next, self.cfg.max_time),
        };
        let ask = match directive {
            PushDirective::Unknown { token, .. } => {
                return Plan::rejected(RejectReason::UnknownType(token));
            }
            PushDirective::None => return self.end_cycle(target.as_ref()),
            PushDirective::Next(k) => Ask::Next(k),
            PushDirective::Time(t) => Ask::Time(t),
            PushDirective::FastStart(p) => Ask::FastStart(p),
            d @ (PushDirective::List(_) | PushDirective::Template(_)) => Ask::List(d),
        };
        if !req.push_allowed {
            return Plan::rejected(RejectReason::PushDisabled);
        }
        let Some((m, target)) = target else {
            return Plan::rejected(RejectReason::NoManifest);
        };
        match (ask, target) {
            (Ask::List(d), t) => self.plan_list(&m, &url, t, d, now),
            (Ask::FastStart(p), Target::Mpd) => {
                self.plan_fast_start(&m, &url, Start::Params(p), now)
            }
            (Ask::Next(k), Target::Mpd) => self.plan_fast_start(&m, &url, Start::Next(k), now),
            (Ask::Time(t), Target::Mpd) => self.plan_fast_start(&m, &url, Start::Time(t), now),
            (Ask::FastStart(_), _) => Plan::rejected(RejectReason::FastStartOnSegment),
            (Ask::Next(_) | Ask::Time(_), Target::Other) => Plan::rejected(RejectReason::NotInMpd),
            (a @ (Ask::Next(_) | Ask::Time(_)), Target::Segment(s)) => {
                self.plan_window(&m, &url, WindowFrom::After(s), &a, now)
            }
            (a @ (Ask::Next(_) | Ask::Time(_)), Target::Init(rep)) => {
                self.plan_window(&m, &url, WindowFrom::Init(rep), &a, now)
            }
        }
    }

    /// The client refused a promised push (spec §7.3: HTTP/2 `RST_STREAM` `CANCEL` or
    /// `REFUSED_STREAM`; WebSocket Segment cancel): its slot and bytes are freed and it is never
    /// pushed again on this connection. Unknown or finished URLs are ignored.
    pub fn on_refused(&mut self, url: &Url) {
        let url: &Url = &fragmentless(url);
        if let Some(f) = self.in_flight.remove(url) {
            self.forget_flight(&f);
            self.refused.insert(url);
        }
    }

    /// The edge could not deliver a promised push this time (origin error or status, byte cap,
    /// failed parent, lost transport): its slot and bytes are freed and it is forgotten by the
    /// push diary, so a later directive may push it again (spec §7.3 (ours)). Unknown or
    /// finished URLs are ignored.
    pub fn on_undelivered(&mut self, url: &Url) {
        let url: &Url = &fragmentless(url);
        if let Some(f) = self.in_flight.remove(url) {
            self.forget_flight(&f);
            self.pushed.remove(url);
        }
    }

    /// Takes back, before the ack is written, the promises of `plan` for `urls` (the edge
    /// cannot make them: a route check, a transport that cannot carry them, a body known to be
    /// over the byte cap). They count as undelivered ([`Session::on_undelivered`]); under
    /// push-next / push-time a segment taken back ends the run, so the pushes after it are
    /// taken back too. `plan.pushes` keeps the rest in order, and `plan.ack` becomes the ack of
    /// what is left (spec §6.1.4: the ack says what was really promised).
    pub fn withhold(&mut self, plan: &mut Plan, urls: &[Url]) {
        let urls: Vec<Url> = urls.iter().map(without_fragment).collect();
        let gone = plan.basis.take_back(&urls);
        self.drop_pushes(plan, |u| gone.contains(u) || urls.contains(u));
        if plan.basis.rule != AckRule::Fixed
            && let Some(fixed) = &plan.ack
        {
            let ack = plan.basis.ack(fixed);
            plan.outcome = Outcome::Accepted(ack.directive().push_type());
            plan.ack = Some(ack);
        }
    }

    /// Takes back every promise of `plan` before the ack is written and acks push-none: the
    /// parent request failed (spec §7.2 (ours): nothing is pushed from an error answer).
    pub fn withhold_all(&mut self, plan: &mut Plan) {
        self.drop_pushes(plan, |_| true);
        for item in &mut plan.basis.items {
            item.granted = false;
        }
        if plan.ack.is_some() {
            plan.ack = Some(PushAck::none());
        }
    }

    /// Removes the pushes of `plan` matching `pred`, as undelivered.
    fn drop_pushes(&mut self, plan: &mut Plan, pred: impl Fn(&Url) -> bool) {
        let (gone, kept): (Vec<Push>, Vec<Push>) = std::mem::take(&mut plan.pushes)
            .into_iter()
            .partition(|p| pred(&p.url));
        plan.pushes = kept;
        for p in gone {
            self.on_undelivered(&p.url);
        }
    }

    /// A push was sent in full: its slot and bytes are freed, and for a media segment the
    /// client's position in its AdaptationSet advances (Annex H). Unknown URLs are ignored.
    pub fn on_complete(&mut self, url: &Url) {
        let url: &Url = &fragmentless(url);
        let Some(f) = self.in_flight.remove(url) else {
            return;
        };
        self.forget_flight(&f);
        if let Some((key, seg)) = f.segment
            && let Some(c) = self.cycles.get_mut(&key)
            && c.position.is_none_or(|p| p.start < seg.start)
        {
            c.position = Some(seg);
        }
    }

    /// Asks to send `len` more body bytes of the push of `url` (spec §6.2 safety rule 4). True
    /// if they fit under `max_bytes_in_flight`; they are then counted until the push completes
    /// or is reset. False for a URL not in flight or bytes that do not fit: the edge then resets
    /// that promise and reports it with [`Session::on_undelivered`].
    pub fn admit_bytes(&mut self, url: &Url, len: u64) -> bool {
        let url: &Url = &fragmentless(url);
        let Some(f) = self.in_flight.get_mut(url) else {
            return false;
        };
        match self.bytes_in_flight.checked_add(len) {
            Some(total) if total <= self.cfg.max_bytes_in_flight => {
                f.bytes = f.bytes.saturating_add(len);
                self.bytes_in_flight = total;
                true
            }
            _ => false,
        }
    }

    /// A flight that ended: its bytes no longer count.
    fn forget_flight(&mut self, f: &Flight) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(f.bytes);
        self.estimated_in_flight = self.estimated_in_flight.saturating_sub(f.estimated);
    }

    /// Estimated body bytes of the pushes in flight (see [`Request::byte_budget`]).
    pub fn estimated_in_flight(&self) -> u64 {
        self.estimated_in_flight
    }

    /// Promises made and not yet completed, reset or cancelled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Body bytes admitted for the pushes in flight.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// push-none (spec §6.2, §7.3): ends the running cycle of the request's AdaptationSet, or
    /// every cycle of the MPD on the MPD request, cancelling their unfinished pushes.
    fn end_cycle(&mut self, target: Option<&(Arc<Manifest>, Target)>) -> Plan {
        let mut plan = Plan {
            ack: Some(PushAck::none()),
            outcome: Outcome::Accepted(dashpush_proto::PushType::None),
            ..Plan::no_directive()
        };
        let Some((m, target)) = target else {
            return plan;
        };
        let ended: Vec<CycleKey> = match target {
            Target::Segment(s) => vec![set_key(m, s.rep)],
            Target::Init(rep) => vec![set_key(m, *rep)],
            Target::Other => vec![manifest_key(m)],
            Target::Mpd => self
                .cycles
                .keys()
                .chain(self.in_flight.values().map(|f| &f.cycle))
                .filter(|k| k.mpd == m.url)
                .cloned()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect(),
        };
        for key in &ended {
            if let Some(c) = self.cycles.get_mut(key) {
                c.rep = None;
            }
        }
        plan.cancel = self.cancel_where(|f| ended.contains(&f.cycle));
        plan
    }

    /// push-next / push-time on a segment (or init) request (spec §6.2 table, Annex H).
    fn plan_window(
        &mut self,
        m: &Manifest,
        url: &Url,
        from: WindowFrom,
        d: &Ask,
        now: Option<DateTime<Utc>>,
    ) -> Plan {
        let rep = from.rep();
        let key = set_key(m, rep);
        let cycle = self.cycle_mut(&key).clone();
        let switching = cycle.rep.is_some_and(|r| r != rep.representation);
        // The segments asked for, before availability, safety rules and caps.
        let (segments, base) = match from {
            WindowFrom::After(s) => {
                let segs = match d {
                    Ask::Next(k) => m.next(&s, *k as usize),
                    Ask::Time(t) => m.within(&s, t.duration().as_secs_f64()),
                    _ => Vec::new(),
                };
                (segs, s.start + s.duration_secs)
            }
            WindowFrom::Init(rep) => match self.init_start(m, rep, cycle.position, now) {
                Some(start) => {
                    let rest = match d {
                        Ask::Next(k) => m.next(&start, k.saturating_sub(1) as usize),
                        Ask::Time(t) => {
                            m.within(&start, t.duration().as_secs_f64() - start.duration_secs)
                        }
                        _ => Vec::new(),
                    };
                    (std::iter::once(start).chain(rest).collect(), start.start)
                }
                None => (Vec::new(), 0.0),
            },
        };
        let mut cands = Vec::new();
        // Annex H: the target's init first when the cycle switches Representation.
        if switching
            && matches!(from, WindowFrom::After(_))
            && let Some(init) = m.representation(rep).and_then(|r| r.init.clone())
        {
            cands.push(Candidate::plain(
                without_fragment(&init),
                PushKind::Init,
                &key,
                0,
            ));
        }
        let ahead = self.cfg.max_ahead.as_secs_f64();
        for s in segments {
            // Never further ahead of the player's request than `max_ahead`.
            if s.start - base >= ahead - 1e-9 {
                break;
            }
            let not_before = match self.gate(m, &s, now) {
                Gate::Now => None,
                Gate::Later(at) => Some(at),
                // Live: the cycle stops at the first segment not available within the horizon.
                Gate::Never => break,
            };
            let Some(seg_url) = m.segment_url(&s) else {
                break;
            };
            cands.push(Candidate::media(m, s, &seg_url, &key, 0, not_before, false));
        }
        let rules = Rules {
            mode: Mode::Window,
            max_granted: usize::MAX,
            init_needs_media: true,
        };
        let adm = self.admit(url, &cands, rules, std::slice::from_ref(&key));
        self.cycle_mut(&key).rep = Some(rep.representation);
        let rule = match d {
            Ask::Time(t) => AckRule::Time(*t),
            _ => AckRule::Next,
        };
        let items = cands
            .iter()
            .zip(&adm.granted)
            .map(|(c, g)| ack_item(c, *g, base))
            .collect();
        finish(AckBasis { rule, items }, adm)
    }

    /// Where push-next / push-time on an init request start: after the client's position in
    /// the AdaptationSet, moved to the first switch point of the requested Representation
    /// (Annex H); without a known position, the first segment (static) or the live edge.
    fn init_start(
        &self,
        m: &Manifest,
        rep: RepRef,
        position: Option<SegmentRef>,
        now: Option<DateTime<Utc>>,
    ) -> Option<SegmentRef> {
        match position {
            Some(p) => {
                let next = m.next(&p, 1).into_iter().next()?;
                if p.rep == rep {
                    Some(next)
                } else {
                    m.switch_to(&next, rep.representation)
                }
            }
            None if m.is_dynamic() => m.live_edge(rep, now?),
            None => m.segment(rep, 0),
        }
    }

    /// Fast start on the MPD request, and push-next / push-time on it (spec §6.2 table,
    /// Annex G).
    fn plan_fast_start(
        &mut self,
        m: &Manifest,
        url: &Url,
        start: Start,
        now: Option<DateTime<Utc>>,
    ) -> Plan {
        let params = match &start {
            Start::Params(p) => p.clone(),
            Start::Next(k) => FastStartParams {
                segments: Some((*k).min(limits::MAX_FAST_START_SEGMENTS)),
                ..FastStartParams::default()
            },
            Start::Time(_) => FastStartParams {
                segments: Some(limits::MAX_FAST_START_SEGMENTS),
                ..FastStartParams::default()
            },
        };
        let fs = m.fast_start(&params, now);
        let mut cands = Vec::new();
        let mut replaced = vec![manifest_key(m)];
        for (group, item) in fs.items.iter().enumerate() {
            let key = set_key(m, item.rep);
            if !replaced.contains(&key) {
                replaced.push(key.clone());
            }
            if let Some(init) = &item.init {
                cands.push(Candidate::plain(
                    without_fragment(init),
                    PushKind::Init,
                    &key,
                    group,
                ));
            }
            let first = item.segments.first().map_or(0.0, |s| s.start);
            for s in &item.segments {
                if let Start::Time(t) = &start
                    && s.start >= first + t.duration().as_secs_f64() - 1e-9
                {
                    break;
                }
                let (blocked, not_before) = match self.gate(m, s, now) {
                    Gate::Now => (false, None),
                    Gate::Later(at) => (false, Some(at)),
                    Gate::Never => (true, None),
                };
                let Some(seg_url) = m.segment_url(s) else {
                    continue;
                };
                cands.push(Candidate::media(
                    m, *s, &seg_url, &key, group, not_before, blocked,
                ));
            }
        }
        // First needed first (spec §7 "Order", Annex G (ours)): every init, then the first
        // segment of each selected Representation, then the second of each, and so on, so a
        // player can start as soon as one segment of each media type is in, however slow the
        // link; the caps cut the far end of every Representation rather than a whole one.
        cands.sort_by_key(|c| {
            let rank = match c.segment {
                Some(s) if c.counts => 1 + s.index,
                _ => 0,
            };
            (rank, c.group)
        });
        let rules = Rules {
            mode: Mode::Each,
            max_granted: usize::MAX,
            init_needs_media: !matches!(start, Start::Params(_)),
        };
        let adm = self.admit(url, &cands, rules, &replaced);
        for item in &fs.items {
            self.cycle_mut(&set_key(m, item.rep)).rep = Some(item.rep.representation);
        }
        let rule = match start {
            Start::Params(_) => AckRule::FastStart {
                params: fs.params.clone(),
                reps: fs
                    .items
                    .iter()
                    .map(|i| m.representation(i.rep).map(|r| r.id.clone()))
                    .collect(),
            },
            Start::Next(_) => AckRule::StartNext,
            Start::Time(t) => AckRule::StartTime(t),
        };
        // Reach is measured per item, from its first segment.
        let items = cands
            .iter()
            .zip(&adm.granted)
            .map(|(c, g)| {
                let first = fs
                    .items
                    .get(c.group)
                    .and_then(|i| i.segments.first())
                    .map_or(0.0, |f| f.start);
                ack_item(c, *g, first)
            })
            .collect();
        finish(AckBasis { rule, items }, adm)
    }

    /// push-list / push-template (spec §6.1.5, §6.1.6, §6.2): entries resolved against the
    /// request URL, each checked on its own.
    fn plan_list(
        &mut self,
        m: &Manifest,
        url: &Url,
        target: Target,
        d: PushDirective,
        now: Option<DateTime<Utc>>,
    ) -> Plan {
        let texts: Vec<String> = match &d {
            PushDirective::List(l) => l.entries().to_vec(),
            PushDirective::Template(t) => t.expand().collect(),
            _ => Vec::new(),
        };
        let mut entries: Vec<(String, Url)> = Vec::with_capacity(texts.len());
        for (index, text) in texts.into_iter().enumerate() {
            let resolved = match url.join(&text) {
                Ok(u) => without_fragment(&u),
                Err(e) => {
                    let err = UrlListError::Unresolvable {
                        index,
                        reason: e.to_string(),
                    };
                    let err = match d {
                        PushDirective::Template(_) => DirectiveError::Template(err.into()),
                        _ => DirectiveError::List(err),
                    };
                    return Plan::rejected(RejectReason::Malformed(err));
                }
            };
            if !entries.iter().any(|(_, u)| *u == resolved) {
                entries.push((text, resolved));
            }
        }
        let key = match target {
            Target::Segment(s) => set_key(m, s.rep),
            Target::Init(rep) => set_key(m, rep),
            Target::Mpd | Target::Other => manifest_key(m),
        };
        let cands: Vec<Candidate> = entries
            .iter()
            .enumerate()
            .map(|(group, (_, u))| self.list_candidate(m, u, &key, group, now))
            .collect();
        let rules = Rules {
            mode: Mode::Each,
            max_granted: limits::MAX_LIST_ENTRIES,
            init_needs_media: false,
        };
        let adm = self.admit(url, &cands, rules, std::slice::from_ref(&key));
        if let Target::Segment(SegmentRef { rep, .. }) | Target::Init(rep) = target {
            self.cycle_mut(&key).rep = Some(rep.representation);
        }
        let rule = AckRule::List {
            directive: d,
            texts: entries.into_iter().map(|(text, _)| text).collect(),
        };
        let items = cands
            .iter()
            .zip(&adm.granted)
            .map(|(c, g)| ack_item(c, *g, 0.0))
            .collect();
        finish(AckBasis { rule, items }, adm)
    }

    /// A list or template entry: what it is in the MPD and whether it may be pushed at all
    /// (spec §6.2 safety rule 2: only URLs the MPD addresses, plus the MPD, unless configured).
    fn list_candidate(
        &self,
        m: &Manifest,
        u: &Url,
        key: &CycleKey,
        group: usize,
        now: Option<DateTime<Utc>>,
    ) -> Candidate {
        let mut c = Candidate::plain(u.clone(), PushKind::Other, key, group);
        if same_resource(u, &m.url) {
            c.kind = PushKind::Mpd;
            return c;
        }
        match m.locate(u) {
            Some(Resource::Init(_)) => c.kind = PushKind::Init,
            Some(Resource::Segment(s)) => {
                c.kind = PushKind::Media;
                c.segment = Some(s);
                c.live_until = live_until(m, &s);
                c.estimated = estimate(m, &s);
                match self.gate(m, &s, now) {
                    Gate::Now => {}
                    Gate::Later(at) => c.not_before = Some(at),
                    Gate::Never => c.blocked = true,
                }
            }
            None => c.blocked = !self.cfg.allow_outside_mpd,
        }
        c
    }

    /// Applies the safety rules and caps of spec §6.2 to `cands` (in push order) for a request
    /// to `url`, and replaces the cycles in `replaced`: their unfinished pushes that are not
    /// granted again are cancelled; those granted again move to the new cycle.
    fn admit(
        &mut self,
        url: &Url,
        cands: &[Candidate],
        rules: Rules,
        replaced: &[CycleKey],
    ) -> Admitted {
        let wanted: HashSet<&Url> = cands.iter().map(|c| &c.url).collect();
        // Free the slots of pushes the new cycle will not have before counting them.
        let mut cancel =
            self.cancel_where_seq(|u, f| replaced.contains(&f.cycle) && !wanted.contains(u));
        // Decide first, commit after: a decision may still be taken back.
        let mut decisions = Vec::with_capacity(cands.len());
        let mut stopped = false;
        let (mut granted, mut new, mut new_estimated) = (0usize, 0usize, 0u64);
        for c in cands {
            let d = if stopped || granted >= rules.max_granted {
                Decision::Drop
            } else {
                self.decide(url, c, new, new_estimated)
            };
            match d {
                Decision::Push => {
                    new += 1;
                    new_estimated = new_estimated.saturating_add(c.estimated);
                    granted += 1;
                }
                Decision::Have => granted += 1,
                Decision::Drop => stopped |= rules.mode == Mode::Window && c.counts,
            }
            decisions.push(d);
        }
        // An init goes only with a media segment of its group when the ack counts segments:
        // the ack could not name it otherwise.
        if rules.init_needs_media {
            let with_media: HashSet<usize> = cands
                .iter()
                .zip(&decisions)
                .filter(|(c, d)| c.counts && **d != Decision::Drop)
                .map(|(c, _)| c.group)
                .collect();
            for (c, d) in cands.iter().zip(decisions.iter_mut()) {
                if !c.counts && !with_media.contains(&c.group) {
                    *d = Decision::Drop;
                }
            }
        }
        let mut adm = Admitted {
            granted: decisions.iter().map(|d| *d != Decision::Drop).collect(),
            dropped: decisions.iter().filter(|d| **d == Decision::Drop).count(),
            ..Admitted::default()
        };
        for (c, d) in cands.iter().zip(&decisions) {
            match d {
                Decision::Push => adm.pushes.push(self.promise(c)),
                Decision::Have => {
                    if let Some(f) = self.in_flight.get_mut(&c.url) {
                        f.cycle = c.cycle.clone();
                    }
                }
                Decision::Drop => {}
            }
        }
        let granted: HashSet<&Url> = cands
            .iter()
            .zip(&adm.granted)
            .filter(|(_, g)| **g)
            .map(|(c, _)| &c.url)
            .collect();
        cancel.extend(
            self.cancel_where_seq(|u, f| replaced.contains(&f.cycle) && !granted.contains(u)),
        );
        cancel.sort_by_key(|(seq, _)| *seq);
        adm.cancel = cancel.into_iter().map(|(_, u)| u).collect();
        adm
    }

    /// The safety rules for one candidate, `new` promises (of `new_estimated` bytes) into this
    /// request.
    fn decide(&self, url: &Url, c: &Candidate, new: usize, new_estimated: u64) -> Decision {
        // Rule 2: same scheme, host and port as the request; inside the MPD unless allowed.
        if c.blocked || !same_origin(&c.url, url) {
            return Decision::Drop;
        }
        // Rule 3: at most once per connection, never what the client fetched itself. What the
        // client has or is receiving counts as granted; what it refused does not.
        if self.in_flight.contains_key(&c.url) || self.requested.contains(&c.url) {
            return Decision::Have;
        }
        if self.pushed.contains(&c.url) {
            return if self.refused.contains(&c.url) {
                Decision::Drop
            } else {
                Decision::Have
            };
        }
        // Rule 4: promises per request and in flight.
        if new >= self.cfg.max_promises_per_request
            || self.in_flight.len().saturating_add(new) >= self.cfg.max_in_flight
        {
            return Decision::Drop;
        }
        // No faster than the connection drains (spec §6.2 rule 4 (ours)): the estimated bytes
        // in flight stay within the budget, but a first push always goes. A live segment not yet
        // available is paced by the clock: it leaves when it becomes available, one segment
        // duration after the one before it, at the stream's own rate (a connection that cannot
        // drain that cannot play the stream live at all), so the budget does not hold it back;
        // the count and byte caps still do.
        let paced = matches!((c.not_before, self.now), (Some(at), Some(now)) if at > now);
        if let Some(budget) = self.budget.filter(|_| !paced) {
            let ahead = self.estimated_in_flight.saturating_add(new_estimated);
            let first = self.in_flight.is_empty() && new == 0;
            if !first && ahead.saturating_add(c.estimated) > budget {
                return Decision::Drop;
            }
        }
        Decision::Push
    }

    /// Records a promise: in flight, in the diary.
    fn promise(&mut self, c: &Candidate) -> Push {
        let seq = self.next_seq;
        self.next_seq += 1;
        let segment = c
            .segment
            .filter(|_| c.kind == PushKind::Media)
            .map(|s| (CycleKey::set(&c.cycle.mpd, s.rep), s));
        self.in_flight.insert(
            c.url.clone(),
            Flight {
                seq,
                cycle: c.cycle.clone(),
                bytes: 0,
                estimated: c.estimated,
                segment,
            },
        );
        self.estimated_in_flight = self.estimated_in_flight.saturating_add(c.estimated);
        self.pushed.insert(&c.url);
        Push {
            url: c.url.clone(),
            kind: c.kind,
            not_before: c.not_before,
            live_until: c.live_until,
        }
    }

    /// Removes the in-flight pushes matching `pred`, in promise order.
    fn cancel_where(&mut self, pred: impl Fn(&Flight) -> bool) -> Vec<Url> {
        let mut out = self.cancel_where_seq(|_, f| pred(f));
        out.sort_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, u)| u).collect()
    }

    /// Removes the in-flight pushes matching `pred` (a replaced or ended cycle); they count as
    /// undelivered, not refused: a later directive may push them again (spec §7.3 (ours)).
    fn cancel_where_seq(&mut self, pred: impl Fn(&Url, &Flight) -> bool) -> Vec<(u64, Url)> {
        let gone: Vec<Url> = self
            .in_flight
            .iter()
            .filter(|(u, f)| pred(u, f))
            .map(|(u, _)| u.clone())
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for u in gone {
            if let Some(f) = self.in_flight.remove(&u) {
                self.forget_flight(&f);
                self.pushed.remove(&u);
                out.push((f.seq, u));
            }
        }
        out
    }

    /// Live availability of `s` at `now` (spec §6.2 (ours)): available now, within the
    /// horizon (sent at its availability start), or not in time. A static MPD is always
    /// available; a dynamic one without a clock never is.
    fn gate(&self, m: &Manifest, s: &SegmentRef, now: Option<DateTime<Utc>>) -> Gate {
        let Some(at) = m.availability_start(s) else {
            return Gate::Now;
        };
        let Some(now) = now else {
            return Gate::Never;
        };
        if at <= now {
            return if m.is_available(s, now) {
                Gate::Now
            } else {
                Gate::Never
            };
        }
        let horizon = TimeDelta::from_std(self.cfg.live_horizon).unwrap_or(TimeDelta::MAX);
        if at - now <= horizon {
            Gate::Later(at)
        } else {
            Gate::Never
        }
    }

    /// The cycle for `key`, created if new; forgets the least recently used over the cap.
    fn cycle_mut(&mut self, key: &CycleKey) -> &mut Cycle {
        self.tick += 1;
        if !self.cycles.contains_key(key) && self.cycles.len() >= MAX_CYCLES {
            let oldest = self
                .cycles
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.cycles.remove(&k);
            }
        }
        let c = self.cycles.entry(key.clone()).or_default();
        c.touched = self.tick;
        c
    }
}

/// Where a push-next / push-time window starts.
#[derive(Clone, Copy, Debug)]
enum WindowFrom {
    /// After this segment (a segment request).
    After(SegmentRef),
    /// At a start point of this Representation (an init request).
    Init(RepRef),
}

impl WindowFrom {
    fn rep(self) -> RepRef {
        match self {
            Self::After(s) => s.rep,
            Self::Init(r) => r,
        }
    }
}

/// A directive that asks for pushes, after clamping.
enum Ask {
    Next(u32),
    Time(PushDuration),
    List(PushDirective),
    FastStart(FastStartParams),
}

/// What the MPD request asked for.
enum Start {
    Params(FastStartParams),
    Next(u32),
    Time(PushDuration),
}

impl CycleKey {
    fn set(mpd: &Url, rep: RepRef) -> Self {
        Self {
            mpd: mpd.clone(),
            scope: Scope::Set {
                period: rep.period,
                adaptation_set: rep.adaptation_set,
            },
        }
    }
}

fn set_key(m: &Manifest, rep: RepRef) -> CycleKey {
    CycleKey::set(&m.url, rep)
}

fn manifest_key(m: &Manifest) -> CycleKey {
    CycleKey {
        mpd: m.url.clone(),
        scope: Scope::Manifest,
    }
}

/// The MPD that knows `url`, and what `url` is in it.
fn resolve(url: &Url, manifests: &dyn Manifests) -> Option<(Arc<Manifest>, Target)> {
    if let Some(m) = manifests.manifest(url) {
        return Some((m, Target::Mpd));
    }
    let m = manifests.for_segment(url)?;
    let target = match m.locate(url) {
        Some(Resource::Init(rep)) => Target::Init(rep),
        Some(Resource::Segment(s)) => Target::Segment(s),
        None => Target::Other,
    };
    Some((m, target))
}

/// Live: when the availability slot of `s` ends (its availability start plus its duration);
/// `None` for a static MPD.
fn live_until(m: &Manifest, s: &SegmentRef) -> Option<DateTime<Utc>> {
    let start = m.availability_start(s)?;
    let slot = TimeDelta::from_std(Duration::from_secs_f64(s.duration_secs.max(0.0))).ok()?;
    start.checked_add_signed(slot)
}

/// The estimated body size of a media segment: its Representation's `@bandwidth` over its
/// duration.
fn estimate(m: &Manifest, s: &SegmentRef) -> u64 {
    let bps = m.representation(s.rep).map_or(0, |r| r.bandwidth);
    let bytes = bps as f64 * s.duration_secs.max(0.0) / 8.0;
    if bytes.is_finite() {
        bytes.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A judged candidate as the ack sees it; `start` is where its reach is measured from.
fn ack_item(c: &Candidate, granted: bool, start: f64) -> AckItem {
    let reach = match (c.counts, c.segment) {
        (true, Some(s)) => reach_ms(s.start + s.duration_secs - start),
        _ => 0,
    };
    AckItem {
        url: c.url.clone(),
        counts: c.counts,
        group: c.group,
        reach_ms: reach,
        granted,
    }
}

/// The plan for an accepted directive: the ack computed from what was granted.
fn finish(basis: AckBasis, adm: Admitted) -> Plan {
    let ack = basis.ack(&PushAck::none());
    Plan {
        outcome: Outcome::Accepted(ack.directive().push_type()),
        ack: Some(ack),
        pushes: adm.pushes,
        cancel: adm.cancel,
        dropped: adm.dropped,
        basis,
    }
}

/// `url` without its fragment: fragments never reach a server and do not tell resources apart.
fn without_fragment(url: &Url) -> Url {
    fragmentless(url).into_owned()
}

/// `url` without its fragment, copied only if it has one: the lookups of every push's progress
/// (admitted bytes, completion) take the URL as it is.
fn fragmentless(url: &Url) -> std::borrow::Cow<'_, Url> {
    if url.fragment().is_none() {
        return std::borrow::Cow::Borrowed(url);
    }
    let mut u = url.clone();
    u.set_fragment(None);
    std::borrow::Cow::Owned(u)
}

/// Same scheme, host and port (spec §6.2 safety rule 2).
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}
