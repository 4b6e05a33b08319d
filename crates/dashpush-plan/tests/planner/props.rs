//! Property tests: for arbitrary event sequences (requests with arbitrary directives over URLs
//! of the MPD and foreign or garbage ones, resets, completions, byte admissions) the safety
//! rules of spec §6.2 hold.

use std::collections::HashSet;
use std::time::Duration;

use dashpush_plan::{Outcome, Plan, PlanConfig, Request, Session, SingleManifest};
use dashpush_proto::{PushDirective, PushType};
use proptest::prelude::*;
use url::Url;

use crate::live::live;
use crate::{directive, long_vod, u, urn};

/// Names relative to the MPD's directory, for both test MPDs (`long_vod`: v0, v1, a;
/// live: lo, hi, aud), plus URLs that must never be pushed for a request to edge.test.
fn names(is_live: bool) -> Vec<String> {
    let reps: [&str; 3] = if is_live {
        ["lo", "hi", "aud"]
    } else {
        ["v0", "v1", "a"]
    };
    let mut out = Vec::new();
    for r in reps {
        out.push(format!("{r}-init.mp4"));
        for n in 1..=12 {
            out.push(format!("{r}-{n}.m4s"));
        }
    }
    out.push("secret.txt".into());
    out.push("v0-99.m4s".into());
    out.push("http://evil.test/long/v0-1.m4s".into());
    out.push("https://edge.test/long/v0-2.m4s".into());
    out.push("http://edge.test:81/long/v0-3.m4s".into());
    out.push("//evil.test/live/lo-3.m4s".into());
    out
}

#[derive(Clone, Debug)]
enum Gen {
    Absent,
    Text(String),
}

#[derive(Clone, Debug)]
enum Event {
    /// A request for name `url` (or the MPD when out of range) with a directive.
    Request {
        url: usize,
        directive: Gen,
        allowed: bool,
        fragment: bool,
        /// The edge's byte budget (bytes the connection drains within its push buffer).
        budget: Option<u64>,
    },
    /// The client refused the push of this name (RST_STREAM, Segment cancel).
    Refused(usize),
    /// The edge could not deliver the push of this name (origin error, byte cap, ...).
    Undelivered(usize),
    /// Before the ack of the last plan is written, the edge takes back the push of this name.
    Withhold(usize),
    /// Before the ack of the last plan is written, the parent fails: everything is taken back.
    ParentFailed,
    Complete(usize),
    Admit(usize, u64),
    /// Live only: time passes.
    Tick(u8),
}

fn directive_gen() -> impl Strategy<Value = Gen> {
    let name = 0usize..50;
    prop_oneof![
        2 => Just(Gen::Absent),
        1 => Just(Gen::Text(urn("push-none"))),
        3 => (0u32..100).prop_map(|k| Gen::Text(urn(&format!("push-next;{k}")))),
        2 => (0u32..200, 0u32..10).prop_map(|(s, f)| Gen::Text(urn(&format!("push-time;{s}.{f}")))),
        3 => prop::collection::vec(name, 1..8).prop_map(|ix| Gen::Text(format!("LIST{}", ix.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")))),
        2 => (0usize..6, 0u64..14, 0u64..8).prop_map(|(r, a, n)| {
            let rep = ["v0", "v1", "a", "lo", "hi", "aud"][r];
            Gen::Text(urn(&format!("push-template;{rep}-{{{a}-{}}}.m4s", a + n)))
        }),
        2 => (prop::option::of(1u32..12), prop::option::of(0u64..4_000_000)).prop_map(|(s, b)| {
            let mut parts = Vec::new();
            if let Some(s) = s { parts.push(format!("\"segments\":{s}")); }
            if let Some(b) = b { parts.push(format!("\"bandwidth\":{b}")); }
            Gen::Text(urn(&format!("push-fast-start;{{{}}}", parts.join(","))))
        }),
        1 => Just(Gen::Text(urn("push-later;3"))),
        1 => "[ -~]{0,40}".prop_map(Gen::Text),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0usize..52, directive_gen(), prop::bool::weighted(0.9), any::<bool>(), prop::option::of(0u64..3_000_000)).prop_map(
            |(url, directive, allowed, fragment, budget)| Event::Request { url, directive, allowed, fragment, budget }
        ),
        2 => (0usize..50).prop_map(Event::Refused),
        1 => (0usize..50).prop_map(Event::Undelivered),
        2 => (0usize..50).prop_map(Event::Withhold),
        1 => Just(Event::ParentFailed),
        2 => (0usize..50).prop_map(Event::Complete),
        1 => (0usize..50, 0u64..400).prop_map(|(i, n)| Event::Admit(i, n)),
        1 => any::<u8>().prop_map(Event::Tick),
    ]
}

fn config() -> impl Strategy<Value = PlanConfig> {
    (
        1u32..20,
        0usize..10,
        0usize..12,
        0u64..1000,
        any::<bool>(),
        0u64..20,
        1u64..40,
    )
        .prop_map(
            |(max_next, per_request, in_flight, bytes, outside, horizon, ahead)| PlanConfig {
                max_next,
                max_time: Duration::from_secs(30),
                max_promises_per_request: per_request,
                max_in_flight: in_flight,
                max_bytes_in_flight: bytes,
                diary_capacity: 4096,
                allow_outside_mpd: outside,
                live_horizon: Duration::from_secs(horizon),
                max_ahead: Duration::from_secs(ahead),
            },
        )
}

/// What the test knows independently of the session.
struct Model {
    /// Promised and not taken back: delivered, in flight or refused.
    pushed: HashSet<Url>,
    /// Refused by the client: never pushed again.
    refused: HashSet<Url>,
    requested: HashSet<Url>,
    in_flight: HashSet<Url>,
}

fn check_plan(
    cfg: &PlanConfig,
    model: &mut Model,
    req_url: &Url,
    dgen: &Gen,
    allowed: bool,
    plan: &Plan,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), TestCaseError> {
    let parsed = match dgen {
        Gen::Absent => None,
        Gen::Text(t) => Some(PushDirective::parse(t)),
    };
    // Rule 1: no directive, no push and no ack; a directive always gets an ack.
    prop_assert_eq!(plan.ack.is_some(), parsed.is_some());
    let honourable = matches!(
        &parsed,
        Some(Ok(d)) if allowed && !matches!(d, PushDirective::None | PushDirective::Unknown { .. })
    );
    if !honourable {
        prop_assert!(
            plan.pushes.is_empty(),
            "pushed without an honourable directive"
        );
    }
    if !matches!(&parsed, Some(Ok(PushDirective::None))) && !honourable {
        prop_assert!(
            plan.cancel.is_empty(),
            "a rejected directive cancelled a cycle"
        );
    }
    if matches!(plan.outcome, Outcome::Rejected(_) | Outcome::NoDirective) {
        prop_assert!(plan.pushes.is_empty());
    }
    if !plan.pushes.is_empty() {
        let ack = plan.ack.as_ref().unwrap();
        prop_assert_ne!(ack.directive().push_type(), PushType::None);
    }
    if let Some(PushDirective::Next(k)) = plan.ack.as_ref().map(|a| a.directive()) {
        prop_assert!(*k >= 1 && *k <= cfg.max_next);
    }
    // Rule 4: per-request cap.
    prop_assert!(plan.pushes.len() <= cfg.max_promises_per_request);
    // Cancels name only pushes in flight.
    // A cancel (a replaced cycle) is not a refusal: the URL may be pushed again.
    for c in &plan.cancel {
        prop_assert!(model.in_flight.remove(c), "cancelled {} not in flight", c);
        model.pushed.remove(c);
    }
    for p in &plan.pushes {
        let url = &p.url;
        // Rule 2: same scheme, host, port.
        prop_assert_eq!(url.scheme(), req_url.scheme());
        prop_assert_eq!(url.host_str(), req_url.host_str());
        prop_assert_eq!(url.port_or_known_default(), req_url.port_or_known_default());
        // Rule 3: once per connection, never what the client asked for.
        prop_assert!(model.pushed.insert(url.clone()), "{} pushed twice", url);
        prop_assert!(
            !model.refused.contains(url),
            "{} pushed after a refusal",
            url
        );
        prop_assert!(!model.requested.contains(url), "{} was requested", url);
        prop_assert!(url.fragment().is_none());
        // Live: promised only within the horizon, and only for the future.
        if let (Some(nb), Some(now)) = (p.not_before, now) {
            prop_assert!(nb > now);
            prop_assert!(nb - now <= chrono::TimeDelta::from_std(cfg.live_horizon).unwrap());
        }
        model.in_flight.insert(url.clone());
    }
    Ok(())
}

/// The segment number of a test URL `REP-N.m4s`.
fn segment_number(u: &Url) -> Option<u64> {
    let name = u.path().rsplit('/').next()?;
    name.strip_suffix(".m4s")?.rsplit('-').next()?.parse().ok()
}

/// After the edge took `url` back from `before`: what is left is a subsequence of what was
/// promised, without `url`; the ack never claims more than before; what was taken back may be
/// pushed again later (the model forgets it).
fn check_withheld(
    model: &mut Model,
    before: &Plan,
    after: &Plan,
    url: &Url,
) -> Result<(), TestCaseError> {
    prop_assert!(after.pushes.iter().all(|p| &p.url != url));
    let mut rest = before.pushes.iter();
    for p in &after.pushes {
        prop_assert!(rest.any(|b| b == p), "{} not kept in order", p.url);
    }
    for p in &before.pushes {
        if !after.pushes.contains(p) && model.in_flight.remove(&p.url) {
            model.pushed.remove(&p.url);
        }
    }
    match (
        before.ack.as_ref().map(|a| a.directive()),
        after.ack.as_ref().map(|a| a.directive()),
    ) {
        (None, a) => prop_assert!(a.is_none()),
        (Some(PushDirective::Next(k0)), Some(PushDirective::Next(k1))) => {
            prop_assert!(k1 <= k0);
        }
        (Some(PushDirective::Time(t0)), Some(PushDirective::Time(t1))) => {
            prop_assert!(t1 <= t0);
        }
        (Some(_), Some(a)) => {
            if !after.pushes.is_empty() {
                prop_assert_ne!(a.push_type(), PushType::None);
            }
        }
        (Some(_), None) => prop_assert!(false, "the ack disappeared"),
    }
    Ok(())
}

fn run(is_live: bool, cfg: PlanConfig, events: Vec<Event>) -> Result<(), TestCaseError> {
    let (manifests, mpd_url, dir): (SingleManifest, Url, Url) = if is_live {
        (
            live(),
            u(crate::live::LIVE_URL),
            u("http://edge.test/live/"),
        )
    } else {
        (
            long_vod(20),
            u("http://edge.test/long/manifest.mpd"),
            u("http://edge.test/long/"),
        )
    };
    let names = names(is_live);
    let resolve = |i: usize| -> Url {
        names
            .get(i)
            .map_or_else(|| mpd_url.clone(), |n| dir.join(n).unwrap())
    };
    let mut session = Session::new(cfg.clone());
    let mut now = if is_live {
        Some(crate::live::at(21))
    } else {
        None
    };
    let mut last: Option<(Url, Plan)> = None;
    let mut model = Model {
        refused: HashSet::new(),
        pushed: HashSet::new(),
        requested: HashSet::new(),
        in_flight: HashSet::new(),
    };
    for ev in events {
        match ev {
            Event::Request {
                url,
                directive: dgen,
                allowed,
                fragment,
                budget,
            } => {
                let mut req_url = resolve(url);
                let dgen = match dgen {
                    // Lists of pool names, written relative where possible.
                    Gen::Text(t) if t.starts_with("LIST") => {
                        let entries: Vec<&str> = t[4..]
                            .split(',')
                            .filter_map(|i| names.get(i.parse::<usize>().unwrap()))
                            .map(String::as_str)
                            .collect();
                        if entries.is_empty() {
                            Gen::Absent
                        } else {
                            Gen::Text(urn(&format!("push-list;{}", entries.join(", "))))
                        }
                    }
                    g => g,
                };
                let d = match &dgen {
                    Gen::Absent => directive(None),
                    Gen::Text(t) => directive(Some(t)),
                };
                let mut plain = req_url.clone();
                plain.set_fragment(None);
                if fragment {
                    req_url.set_fragment(Some("t=1"));
                }
                model.requested.insert(plain.clone());
                let req = Request {
                    url: &req_url,
                    directive: d,
                    push_allowed: allowed,
                    byte_budget: budget,
                };
                let before = session.estimated_in_flight();
                let plan = session.on_request(&req, &manifests, now);
                // No faster than the connection drains: the estimated bytes in flight stay within
                // the budget, unless a single push went out on a connection with nothing else in
                // flight (after the cycle it replaced was cancelled).
                // push-next / push-time never run further than max_ahead beyond the requested
                // segment (2 s segments: N covers [2N-2, 2N)).
                if let (Some(n), Gen::Text(t)) = (segment_number(&plain), &dgen)
                    && (t.contains("push-next") || t.contains("push-time"))
                {
                    for p in &plan.pushes {
                        if let Some(m) = segment_number(&p.url) {
                            let ahead = (2 * m) as f64 - 2.0 - (2 * n) as f64;
                            prop_assert!(
                                ahead < cfg.max_ahead.as_secs_f64(),
                                "{} is {} s ahead of {}",
                                p.url,
                                ahead,
                                plain
                            );
                        }
                    }
                }
                // Live segments not yet out are paced by the clock, not held to the budget.
                let paced = plan
                    .pushes
                    .iter()
                    .any(|p| matches!((p.not_before, now), (Some(at), Some(now)) if at > now));
                if let Some(b) = budget.filter(|_| !paced) {
                    let after = session.estimated_in_flight();
                    let single_first = plan.pushes.len() == 1 && session.in_flight() == 1;
                    prop_assert!(
                        after <= b.max(before) || single_first,
                        "estimated in flight {} over the budget {} (was {})",
                        after,
                        b,
                        before
                    );
                }
                check_plan(&cfg, &mut model, &plain, &dgen, allowed, &plan, now)?;
                last = Some((plain, plan));
            }
            Event::Refused(i) => {
                let url = resolve(i);
                session.on_refused(&url);
                if model.in_flight.remove(&url) {
                    model.refused.insert(url);
                }
            }
            Event::Undelivered(i) => {
                let url = resolve(i);
                session.on_undelivered(&url);
                if model.in_flight.remove(&url) {
                    model.pushed.remove(&url);
                }
            }
            Event::Withhold(i) => {
                if let Some((_, plan)) = last.as_mut() {
                    let url = resolve(i);
                    let before = plan.clone();
                    session.withhold(plan, std::slice::from_ref(&url));
                    check_withheld(&mut model, &before, plan, &url)?;
                }
            }
            Event::ParentFailed => {
                if let Some((_, plan)) = last.as_mut() {
                    let before = plan.clone();
                    session.withhold_all(plan);
                    prop_assert!(plan.pushes.is_empty());
                    if before.ack.is_some() {
                        prop_assert_eq!(
                            plan.ack.as_ref().map(|a| a.directive().push_type()),
                            Some(PushType::None)
                        );
                    }
                    for p in &before.pushes {
                        if model.in_flight.remove(&p.url) {
                            model.pushed.remove(&p.url);
                        }
                    }
                }
            }
            Event::Complete(i) => {
                let url = resolve(i);
                session.on_complete(&url);
                model.in_flight.remove(&url);
            }
            Event::Admit(i, n) => {
                let url = resolve(i);
                let before = session.bytes_in_flight();
                let ok = session.admit_bytes(&url, n);
                prop_assert!(!ok || model.in_flight.contains(&url));
                prop_assert_eq!(
                    session.bytes_in_flight(),
                    if ok { before + n } else { before }
                );
            }
            Event::Tick(s) => {
                if let Some(t) = now.as_mut() {
                    *t += chrono::TimeDelta::milliseconds(i64::from(s) * 50);
                }
            }
        }
        prop_assert_eq!(session.in_flight(), model.in_flight.len());
        prop_assert!(session.in_flight() <= cfg.max_in_flight);
        prop_assert!(session.bytes_in_flight() <= cfg.max_bytes_in_flight);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn safety_rules_hold_on_static_mpds(cfg in config(), events in prop::collection::vec(event(), 1..60)) {
        run(false, cfg, events)?;
    }

    #[test]
    fn safety_rules_hold_on_live_mpds(cfg in config(), events in prop::collection::vec(event(), 1..60)) {
        run(true, cfg, events)?;
    }
}
