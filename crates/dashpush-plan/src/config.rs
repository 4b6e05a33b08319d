//! Planner configuration: the caps of spec §6.2 safety rule 4 and the live horizon.

use std::time::Duration;

use dashpush_proto::limits;

/// Caps and switches of one planner. Configuration may lower the hard limits of
/// `dashpush_proto::limits`, never raise them (spec §6.2 safety rule 4): [`PlanConfig::clamped`]
/// applies that, and [`crate::Session::new`] calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanConfig {
    /// Largest `push-next` K granted (1..=[`limits::MAX_PUSH_NEXT`]).
    pub max_next: u32,
    /// Longest `push-time` T granted (up to [`limits::MAX_PUSH_TIME_SECS`]).
    pub max_time: Duration,
    /// Most promises one request may start.
    pub max_promises_per_request: usize,
    /// Most promised-but-not-finished pushes on one connection.
    pub max_in_flight: usize,
    /// Most bytes of push bodies in flight on one connection.
    pub max_bytes_in_flight: u64,
    /// Capacity of the push diary and of the set of requested URLs; the oldest entry is
    /// forgotten first.
    pub diary_capacity: usize,
    /// Allow list and template entries the MPD does not address (still same origin only).
    pub allow_outside_mpd: bool,
    /// Live: a segment that is not available yet is promised only if it becomes available
    /// within this long (spec §6.2).
    pub live_horizon: Duration,
    /// push-next / push-time: the run stops at the first segment starting this far or more
    /// beyond the end of the requested segment (the player's buffer is not pushed further
    /// ahead than this, whatever K or T asks).
    pub max_ahead: Duration,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            max_next: 16,
            max_time: Duration::from_secs(60),
            max_promises_per_request: 32,
            max_in_flight: 64,
            max_bytes_in_flight: 64 * 1024 * 1024,
            diary_capacity: 4096,
            allow_outside_mpd: false,
            live_horizon: Duration::from_secs(10),
            max_ahead: Duration::from_secs(60),
        }
    }
}

/// Shortest `push-time` cap; a zero cap would make every ack an invalid `push-time;0`.
const MIN_TIME: Duration = Duration::from_millis(1);

impl PlanConfig {
    /// The configuration with `max_next` in 1..=[`limits::MAX_PUSH_NEXT`], `max_time` in
    /// 1 ms..=[`limits::MAX_PUSH_TIME_SECS`] and a diary of at least one entry. The other caps
    /// have no hard limit beyond their type; zero disables pushing.
    pub fn clamped(self) -> Self {
        Self {
            max_next: self.max_next.clamp(1, limits::MAX_PUSH_NEXT),
            max_time: self
                .max_time
                .clamp(MIN_TIME, Duration::from_secs(limits::MAX_PUSH_TIME_SECS)),
            diary_capacity: self.diary_capacity.max(1),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamped_lowers_to_hard_limits_and_never_raises() {
        let c = PlanConfig {
            max_next: 1000,
            max_time: Duration::from_secs(10_000),
            diary_capacity: 0,
            ..PlanConfig::default()
        }
        .clamped();
        assert_eq!(c.max_next, limits::MAX_PUSH_NEXT);
        assert_eq!(c.max_time, Duration::from_secs(limits::MAX_PUSH_TIME_SECS));
        assert_eq!(c.diary_capacity, 1);
        let d = PlanConfig::default();
        assert_eq!(d.clone().clamped(), d);
        let z = PlanConfig {
            max_next: 0,
            max_time: Duration::ZERO,
            ..d
        }
        .clamped();
        assert_eq!((z.max_next, z.max_time), (1, MIN_TIME));
    }
}
