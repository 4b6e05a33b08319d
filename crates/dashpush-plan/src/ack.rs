//! The push acknowledgement as a function of what is granted (spec §6.1.4).
//!
//! The ack names the push type applied and its *effective* parameter: K after caps, T reached,
//! the list of URLs actually pushed, the fast-start selection with `representations` filled in.
//! The planner computes it from the candidates it granted; the edge may still have to take some
//! promises back before the ack is written (an error parent, a push its transport cannot carry,
//! a body over the byte cap), and then the same function, fed with what is left, gives the ack
//! that is true for what is really promised ([`crate::Session::withhold`]). One rule, computed
//! in one place, whichever moment it is asked.

use std::time::Duration;

use dashpush_proto::{FastStartParams, PushAck, PushDirective, PushDuration, UrlList};
use url::Url;

/// What an ack is computed from: the rule of the directive and every candidate it judged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AckBasis {
    pub(crate) rule: AckRule,
    pub(crate) items: Vec<AckItem>,
}

/// One candidate of a directive, in push order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AckItem {
    pub(crate) url: Url,
    /// A media segment that counts toward K or T.
    pub(crate) counts: bool,
    /// Fast-start item or list entry it came from.
    pub(crate) group: usize,
    /// How far (in milliseconds from the start of the window or of its group) this segment
    /// reaches; 0 for what is not a counted segment.
    pub(crate) reach_ms: u64,
    /// Granted: promised now, or already with the client.
    pub(crate) granted: bool,
}

/// How the ack is built from the granted items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum AckRule {
    /// The ack does not depend on what is granted (push-none, rejections, no directive).
    #[default]
    Fixed,
    /// push-next on a segment or init: K = the run of segments granted. The run ends at the
    /// first segment that is not granted.
    Next,
    /// push-time on a segment or init: T = how far the run of segments reaches, at most T.
    Time(PushDuration),
    /// push-next on the MPD: K = the most segments granted in one group.
    StartNext,
    /// push-time on the MPD: T = the farthest reach of a group, at most T.
    StartTime(PushDuration),
    /// push-fast-start: the resolved parameters, `representations` = groups with anything
    /// granted (ids by group), `segments` = the most segments granted in one group.
    FastStart {
        params: FastStartParams,
        reps: Vec<Option<String>>,
    },
    /// push-list / push-template: the directive when every entry is granted, else the list of
    /// the entries granted (their texts, by group).
    List {
        directive: PushDirective,
        texts: Vec<String>,
    },
}

impl AckRule {
    /// True for the rules where a segment that is not granted ends the run.
    pub(crate) fn is_window(&self) -> bool {
        matches!(self, Self::Next | Self::Time(_))
    }

    /// True for the rules whose ack counts segments: an init is granted only with a media
    /// segment of its group.
    pub(crate) fn init_needs_media(&self) -> bool {
        matches!(
            self,
            Self::Next | Self::Time(_) | Self::StartNext | Self::StartTime(_)
        )
    }
}

impl AckBasis {
    /// The ack for the items granted now.
    pub(crate) fn ack(&self, fixed: &PushAck) -> PushAck {
        let granted = || self.items.iter().filter(|i| i.granted);
        let media = || granted().filter(|i| i.counts);
        match &self.rule {
            AckRule::Fixed => fixed.clone(),
            AckRule::Next => match media().count() {
                0 => PushAck::none(),
                k => PushAck(PushDirective::Next(u32::try_from(k).unwrap_or(u32::MAX))),
            },
            AckRule::Time(t) => match media().map(|i| i.reach_ms).max() {
                None => PushAck::none(),
                Some(ms) => PushAck(PushDirective::Time(effective_time(*t, ms))),
            },
            AckRule::StartNext => match self.most_per_group() {
                0 => PushAck::none(),
                k => PushAck(PushDirective::Next(u32::try_from(k).unwrap_or(u32::MAX))),
            },
            AckRule::StartTime(t) => match media().map(|i| i.reach_ms).max() {
                None => PushAck::none(),
                Some(ms) => PushAck(PushDirective::Time(effective_time(*t, ms))),
            },
            AckRule::FastStart { params, reps } => {
                if granted().next().is_none() {
                    return PushAck::none();
                }
                let mut p = params.clone();
                p.representations = Some(
                    reps.iter()
                        .enumerate()
                        .filter(|(g, _)| granted().any(|i| i.group == *g))
                        .filter_map(|(_, id)| id.clone())
                        .collect(),
                );
                let most = self.most_per_group();
                if most > 0 {
                    p.segments = Some(u32::try_from(most).unwrap_or(u32::MAX));
                }
                PushAck(PushDirective::FastStart(p))
            }
            AckRule::List { directive, texts } => {
                let kept: Vec<&str> = texts
                    .iter()
                    .enumerate()
                    .filter(|(g, _)| granted().any(|i| i.group == *g))
                    .map(|(_, t)| t.as_str())
                    .collect();
                if kept.is_empty() {
                    PushAck::none()
                } else if kept.len() == texts.len() {
                    PushAck(directive.clone())
                } else {
                    UrlList::new(&kept).map_or_else(
                        |_| PushAck(directive.clone()),
                        |l| PushAck(PushDirective::List(l)),
                    )
                }
            }
        }
    }

    /// The most counted segments granted in one group.
    fn most_per_group(&self) -> usize {
        let mut counts: Vec<usize> = Vec::new();
        for i in self.items.iter().filter(|i| i.granted && i.counts) {
            if counts.len() <= i.group {
                counts.resize(i.group + 1, 0);
            }
            if let Some(n) = counts.get_mut(i.group) {
                *n += 1;
            }
        }
        counts.into_iter().max().unwrap_or(0)
    }

    /// Takes back the items for `urls`; under a window rule, a counted segment taken back ends
    /// the run, so every item after it is taken back too. Returns the URLs no longer granted
    /// (those given, and those after them in a window), in push order.
    pub(crate) fn take_back(&mut self, urls: &[Url]) -> Vec<Url> {
        let window = self.rule.is_window();
        let mut cut = false;
        let mut out = Vec::new();
        for item in &mut self.items {
            let named = urls.contains(&item.url);
            if item.granted && (named || cut) {
                item.granted = false;
                out.push(item.url.clone());
            }
            if named && item.counts && window {
                cut = true;
            }
        }
        // An init goes only with a media segment of its group when the ack counts segments
        // (the ack could not name it otherwise), as when the plan was made.
        if self.rule.init_needs_media() {
            let with_media: Vec<usize> = self
                .items
                .iter()
                .filter(|i| i.granted && i.counts)
                .map(|i| i.group)
                .collect();
            for item in &mut self.items {
                if item.granted && !item.counts && !with_media.contains(&item.group) {
                    item.granted = false;
                    out.push(item.url.clone());
                }
            }
        }
        out
    }
}

/// The ack's T (spec §6.1.4): the asked (clamped) T, or less when the granted segments reach
/// less far (end of Period, live horizon, caps), to the millisecond.
pub(crate) fn effective_time(asked: PushDuration, reached_ms: u64) -> PushDuration {
    if reached_ms == 0 {
        return asked;
    }
    let reached = Duration::from_millis(reached_ms);
    PushDuration::new(reached.min(asked.duration())).unwrap_or(asked)
}

/// Seconds (from a window's or group's start to a segment's end) as whole milliseconds.
pub(crate) fn reach_ms(secs: f64) -> u64 {
    if !(secs.is_finite() && secs > 0.0) {
        return 0;
    }
    (secs * 1000.0).round().min(u64::MAX as f64) as u64
}
