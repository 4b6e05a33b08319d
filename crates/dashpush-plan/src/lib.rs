//! The per-connection push planner of dashpush (spec §4–5, §6.2, §7.3, Annex G, Annex H).
//!
//! One [`Session`] lives as long as one downstream connection. The edge feeds it events — a
//! request with its push directive ([`Session::on_request`]), promises the edge takes back
//! before the ack is written ([`Session::withhold`]), a promise the client refused
//! ([`Session::on_refused`]), a push the edge could not deliver this time
//! ([`Session::on_undelivered`]), a push fully sent ([`Session::on_complete`]), a push body
//! about to be sent ([`Session::admit_bytes`]) — and gets decisions back: the push acknowledgement, the
//! ordered list of URLs to promise, and the unsent pushes of a replaced cycle to cancel
//! ([`Plan`]).
//!
//! The session enforces the safety rules of spec §6.2 in one place: nothing is pushed without
//! a directive on that request; every pushed URL has the scheme, host and port of the request
//! that carried the directive; list and template entries must be addressed by the MPD (unless
//! configured otherwise); a URL is pushed at most once per connection and never when the client
//! asked for it itself; promises per request, promises in flight and bytes in flight are capped.
//! A drop never is an error: it is counted in [`Plan::dropped`] and the ack says what was
//! granted.
//!
//! This crate does no I/O and reads no clock: MPDs come in through [`Manifests`], time through
//! a `now` argument, so every decision is deterministic and property-tested. It does not parse
//! header text (that is `dashpush-proto`) nor resolve MPD addresses (that is `dashpush-mpd`),
//! and it does not fetch, send or time anything (that is the edge).
//!
//! Clause numbers refer to `shared/spec/23009-6.md`; every interpretation made here is listed in
//! `docs/spec-decisions.md` under "Push planner".
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod ack;
mod config;
mod diary;
mod manifests;
mod plan;
mod prefetch;
mod session;

pub use config::PlanConfig;
pub use manifests::{Manifests, SingleManifest};
pub use plan::{DirectiveInput, Outcome, Plan, Push, PushKind, RejectReason, Request};
pub use prefetch::prefetch_after;
pub use session::Session;
