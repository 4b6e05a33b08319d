//! SegmentTimeline (ISO/IEC 23009-1 §5.3.9.6) as run-length runs with prefix indices.
//!
//! Each `S` becomes one run (`t`, `d`, count = `r + 1`) with the index of its first segment, so
//! finding the segment at an index or containing a time is a binary search: logarithmic in the
//! number of `S` elements, never linear in the number of segments. An `S` without `t` continues
//! from the previous one; a `t` past the previous end leaves a gap. `r="-1"` repeats until the
//! next `S`, or, on the last `S`, until an end supplied at query time (the Period end, or the
//! live edge).

use crate::MpdError;
use crate::limits;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Run {
    t: u64,
    d: u64,
    /// Segments in the run; `None` only for a last run with `r="-1"`.
    count: Option<u64>,
    /// Index of the run's first segment in the timeline.
    first: u64,
}

/// A parsed timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timeline {
    runs: Vec<Run>,
}

impl Timeline {
    /// Builds from `S` elements; `start` is the time of the first segment when its `t` is absent
    /// (the presentationTimeOffset). The first `S` may start before `start`.
    pub(crate) fn build(s: &[dash_mpd_core::S], start: u64) -> Result<Self, MpdError> {
        if s.len() > limits::MAX_TIMELINE_ENTRIES {
            return Err(MpdError::TooLarge {
                what: "SegmentTimeline entries",
                max: limits::MAX_TIMELINE_ENTRIES,
            });
        }
        let mut runs: Vec<Run> = Vec::with_capacity(s.len());
        let mut next_t = s.first().and_then(|e| e.t).map_or(start, |t| t.min(start));
        let mut next_index = 0u64;
        for (i, e) in s.iter().enumerate() {
            if e.d == 0 {
                return Err(MpdError::Invalid("SegmentTimeline S@d is 0"));
            }
            let t = e.t.unwrap_or(next_t);
            if t < next_t {
                // An explicit @t inside the previous run (packagers emit these around ad
                // splices): the previous run ends where the new one starts, as players do.
                let prev = runs
                    .last_mut()
                    .ok_or(MpdError::Invalid("SegmentTimeline S@t goes backwards"))?;
                if t <= prev.t {
                    return Err(MpdError::Invalid("SegmentTimeline S@t goes backwards"));
                }
                let kept = (t - prev.t).div_ceil(prev.d);
                prev.count = Some(kept);
                next_index = prev.first + kept;
            }
            let count = match e.r.unwrap_or(0) {
                r if r >= 0 => Some(u64::try_from(r).unwrap_or(0) + 1),
                -1 => match s.get(i + 1).and_then(|n| n.t) {
                    Some(nt) if nt > t => Some((nt - t).div_ceil(e.d)),
                    Some(_) => return Err(MpdError::Invalid("S@r=-1 followed by an earlier S@t")),
                    None if i + 1 == s.len() => None,
                    None => {
                        return Err(MpdError::Invalid("S@r=-1 must be followed by an S with @t"));
                    }
                },
                _ => return Err(MpdError::Invalid("S@r below -1")),
            };
            runs.push(Run {
                t,
                d: e.d,
                count,
                first: next_index,
            });
            if let Some(c) = count {
                let span = c
                    .checked_mul(e.d)
                    .ok_or(MpdError::Invalid("SegmentTimeline overflows"))?;
                next_t = t
                    .checked_add(span)
                    .ok_or(MpdError::Invalid("SegmentTimeline overflows"))?;
                next_index = next_index
                    .checked_add(c)
                    .ok_or(MpdError::Invalid("SegmentTimeline overflows"))?;
            }
        }
        Ok(Self { runs })
    }

    /// Number of segments, with an open last run counted up to (excluding) `end` ticks.
    pub(crate) fn len(&self, end: Option<u64>) -> u64 {
        let Some(last) = self.runs.last() else {
            return 0;
        };
        last.first + self.run_count(last, end)
    }

    /// Number of segments that start before `end` (a Period end cuts the timeline there).
    pub(crate) fn starting_before(&self, end: u64) -> u64 {
        let pos = self.runs.partition_point(|r| r.t < end);
        let Some(run) = pos.checked_sub(1).and_then(|p| self.runs.get(p)) else {
            return 0;
        };
        run.first
            + (end - run.t)
                .div_ceil(run.d)
                .min(self.run_count(run, Some(end)))
    }

    fn run_count(&self, run: &Run, end: Option<u64>) -> u64 {
        match (run.count, end) {
            (Some(c), _) => c,
            (None, Some(end)) if end > run.t => (end - run.t).div_ceil(run.d),
            (None, Some(_)) => 0,
            (None, None) => u64::MAX / 4,
        }
    }

    /// `(time, duration)` of the segment at `index`.
    pub(crate) fn at(&self, index: u64, end: Option<u64>) -> Option<(u64, u64)> {
        let pos = self
            .runs
            .partition_point(|r| r.first <= index)
            .checked_sub(1)?;
        let run = self.runs.get(pos)?;
        let k = index - run.first;
        if k >= self.run_count(run, end) {
            return None;
        }
        Some((run.t.checked_add(k.checked_mul(run.d)?)?, run.d))
    }

    /// Index of the segment that starts exactly at `t`.
    pub(crate) fn index_starting_at(&self, t: u64, end: Option<u64>) -> Option<u64> {
        let pos = self.runs.partition_point(|r| r.t <= t).checked_sub(1)?;
        let run = self.runs.get(pos)?;
        let off = t - run.t;
        if !off.is_multiple_of(run.d) || off / run.d >= self.run_count(run, end) {
            return None;
        }
        Some(run.first + off / run.d)
    }

    /// Index of the first segment that ends after `t` (the one containing `t`, or the first
    /// after a gap).
    pub(crate) fn index_at_or_after(&self, t: u64, end: Option<u64>) -> Option<u64> {
        let pos = self.runs.partition_point(|r| r.t <= t);
        if let Some(run) = pos.checked_sub(1).and_then(|p| self.runs.get(p)) {
            let k = (t - run.t) / run.d;
            if k < self.run_count(run, end) {
                return Some(run.first + k);
            }
        }
        let next = self.runs.get(pos)?;
        (self.run_count(next, end) > 0).then_some(next.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dash_mpd_core::S;

    fn s(t: Option<u64>, d: u64, r: Option<i64>) -> S {
        S {
            t,
            d,
            r,
            ..Default::default()
        }
    }

    #[test]
    fn runs_gaps_and_open_end() {
        // 0,2,4 (r=2) then gap, 10,12 then r=-1 to the end.
        let tl = Timeline::build(
            &[
                s(Some(0), 2, Some(2)),
                s(Some(10), 2, Some(1)),
                s(None, 3, Some(-1)),
            ],
            0,
        )
        .unwrap();
        assert_eq!(tl.at(0, None), Some((0, 2)));
        assert_eq!(tl.at(2, None), Some((4, 2)));
        assert_eq!(tl.at(3, None), Some((10, 2)));
        assert_eq!(tl.at(5, Some(20)), Some((14, 3)));
        assert_eq!(tl.len(Some(20)), 7); // 14, 17 (17+3 > 20 still starts before 20)
        assert_eq!(tl.at(7, Some(20)), None);
        assert_eq!(tl.index_starting_at(12, None), Some(4));
        assert_eq!(tl.index_starting_at(13, None), None);
        assert_eq!(tl.index_at_or_after(7, None), Some(3)); // in the gap
        assert_eq!(tl.index_at_or_after(5, None), Some(2));
        assert_eq!(tl.starting_before(5), 3);
        assert_eq!(tl.starting_before(4), 2);
        assert_eq!(tl.starting_before(11), 4);
        assert_eq!(tl.starting_before(0), 0);
    }

    #[test]
    fn r_minus_one_before_explicit_t() {
        let tl = Timeline::build(&[s(Some(0), 4, Some(-1)), s(Some(10), 5, None)], 0).unwrap();
        assert_eq!(tl.len(None), 4); // 0,4,8 then 10
        assert_eq!(tl.at(3, None), Some((10, 5)));
    }

    #[test]
    fn overlapping_run_is_cut_at_the_next_t() {
        // 0..: 5 segments of 4 claimed, but the next S starts at 10: keep 0, 4, 8.
        let tl = Timeline::build(&[s(Some(0), 4, Some(4)), s(Some(10), 5, Some(1))], 0).unwrap();
        assert_eq!(tl.len(None), 5);
        assert_eq!(tl.at(2, None), Some((8, 4)));
        assert_eq!(tl.at(3, None), Some((10, 5)));
        // First S before the presentationTimeOffset is fine.
        let tl = Timeline::build(&[s(Some(90), 10, Some(2))], 100).unwrap();
        assert_eq!(tl.at(0, None), Some((90, 10)));
    }

    #[test]
    fn invalid_timelines_are_errors() {
        assert!(Timeline::build(&[s(Some(0), 0, None)], 0).is_err());
        assert!(Timeline::build(&[s(Some(10), 2, None), s(Some(5), 2, None)], 0).is_err());
        assert!(Timeline::build(&[s(Some(10), 2, None), s(Some(10), 2, None)], 0).is_err());
        assert!(Timeline::build(&[s(Some(0), 2, Some(-1)), s(None, 2, None)], 0).is_err());
        assert!(Timeline::build(&[s(Some(0), u64::MAX, Some(5))], 0).is_err());
    }
}
