//! The model: Periods, AdaptationSets, Representations with their addressing, and the lookups.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dash_mpd_core as dm;
use dashpush_proto::{ContentType, FastStartParams};
use url::Url;

use crate::MpdError;
use crate::limits;
use crate::template::{self, Compiled, Part, Var};
use crate::timeline::Timeline;

/// An MPD turned into addressable segments.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The URL the MPD was fetched from (the root of the BaseURL chain).
    pub url: Url,
    /// Live timing, for a dynamic MPD.
    pub live: Option<Live>,
    /// The Periods, in order.
    pub periods: Vec<Period>,
    /// Parts of the MPD that were left out (e.g. a Representation without an id), one line each.
    pub warnings: Vec<String>,
    /// Init, SegmentList and SegmentBase URLs, for exact lookup.
    exact: HashMap<String, Vec<Exact>>,
}

/// Timing of a dynamic MPD (ISO/IEC 23009-1 §5.3.1.2), in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// `@availabilityStartTime`.
    pub availability_start: DateTime<Utc>,
    /// `@timeShiftBufferDepth`.
    pub time_shift_buffer_depth: Option<f64>,
    /// `@minimumUpdatePeriod`.
    pub minimum_update_period: Option<f64>,
    /// `@suggestedPresentationDelay`.
    pub suggested_presentation_delay: Option<f64>,
}

/// One Period.
#[derive(Clone, Debug)]
pub struct Period {
    /// `@id`.
    pub id: Option<String>,
    /// Start in seconds of presentation time.
    pub start: f64,
    /// End in seconds, when known (from `@duration`, the next Period, or the presentation
    /// duration).
    pub end: Option<f64>,
    /// Its AdaptationSets.
    pub adaptation_sets: Vec<AdaptationSet>,
}

/// One AdaptationSet.
#[derive(Clone, Debug)]
pub struct AdaptationSet {
    /// `@id`.
    pub id: Option<String>,
    /// Video, audio or text, when recognisable.
    pub content_type: Option<ContentType>,
    /// `@segmentAlignment`.
    pub segment_alignment: bool,
    /// `Switching@interval` of type `media`, in the Representations' timescale (Annex H).
    pub switching_interval: Option<u64>,
    /// Its Representations.
    pub representations: Vec<Representation>,
}

/// One Representation with its addressing.
#[derive(Clone, Debug)]
pub struct Representation {
    /// `@id`.
    pub id: String,
    /// `@bandwidth` in bits per second.
    pub bandwidth: u64,
    /// `@mimeType`, own or inherited.
    pub mime_type: Option<String>,
    /// The initialization segment's URL, if it has one of its own.
    pub init: Option<Url>,
    /// `Initialization@range`: the init's bytes within `init`, when it is part of a file.
    pub init_range: Option<(u64, u64)>,
    addressing: Addressing,
}

#[derive(Clone, Debug)]
enum Addressing {
    Template {
        media: Compiled,
        timescale: u64,
        start_number: u64,
        end_number: Option<u64>,
        pto: u64,
        ato: f64,
        timing: Timing,
    },
    List {
        urls: Vec<Url>,
        /// `SegmentURL@mediaRange`, inclusive byte offsets, per entry.
        ranges: Vec<Option<(u64, u64)>>,
        timescale: u64,
        pto: u64,
        timing: Timing,
    },
    /// SegmentBase or a bare BaseURL: the whole file is one segment.
    Single { url: Url },
}

#[derive(Clone, Debug)]
enum Timing {
    Fixed(u64),
    Timeline(Timeline),
}

/// Where a Representation is: indices of Period, AdaptationSet, Representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RepRef {
    /// Period index.
    pub period: usize,
    /// AdaptationSet index within the Period.
    pub adaptation_set: usize,
    /// Representation index within the AdaptationSet.
    pub representation: usize,
}

#[derive(Clone, Copy, Debug)]
enum Exact {
    Init(RepRef),
    Segment(RepRef, u64),
}

/// One media segment's address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentRef {
    /// Its Representation.
    pub rep: RepRef,
    /// Position in the Representation within its Period, from 0.
    pub index: u64,
    /// `$Number$` value (startNumber + index; 1-based position for lists).
    pub number: u64,
    /// Media time in timescale units (`$Time$`).
    pub time: u64,
    /// Duration in timescale units.
    pub duration: u64,
    /// Timescale.
    pub timescale: u64,
    /// Start in seconds of presentation time.
    pub start: f64,
    /// Duration in seconds.
    pub duration_secs: f64,
}

/// What a URL is in the MPD.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resource {
    /// An initialization segment.
    Init(RepRef),
    /// A media segment.
    Segment(SegmentRef),
}

/// The fast-start selection of spec Annex G.
#[derive(Clone, Debug, PartialEq)]
pub struct FastStart {
    /// The parameters with `representations` (and defaults) filled in: the ack's parameter.
    pub params: FastStartParams,
    /// Per selected Representation, its init and first segments, in push order.
    pub items: Vec<FastStartItem>,
}

/// One selected Representation of a fast start.
#[derive(Clone, Debug, PartialEq)]
pub struct FastStartItem {
    /// The Representation.
    pub rep: RepRef,
    /// Its init segment URL, if any.
    pub init: Option<Url>,
    /// Its first segments.
    pub segments: Vec<SegmentRef>,
}

const UNBOUNDED: u64 = u64::MAX / 4;

/// An MPD parsed once (the costly part), from which a model is built for any URL it is
/// served under.
#[derive(Debug)]
pub struct ParsedMpd(dm::MPD);

impl ParsedMpd {
    /// Parses MPD text (bounded first, as [`Manifest::parse`] does).
    pub fn parse(xml: &str) -> Result<Self, MpdError> {
        crate::scan::check(xml)?;
        dm::parse(xml)
            .map(Self)
            .map_err(|e| MpdError::Parse(e.to_string()))
    }
}

fn rebase_url(u: &Url, from: &str, to: &str) -> Url {
    Url::parse(&crate::template::rebase_str(u.as_str(), from, to)).unwrap_or_else(|_| u.clone())
}

impl Manifest {
    /// The model of a parsed MPD served at `url`.
    pub fn from_parsed(mpd: &ParsedMpd, url: &Url) -> Result<Self, MpdError> {
        Self::from_mpd(&mpd.0, url)
    }

    /// The same model as if the MPD had been served from `to`'s origin (scheme, host, port):
    /// every URL under the MPD's own origin moves to `to`'s; URLs on other origins (absolute
    /// BaseURLs elsewhere) stay. Much cheaper than parsing the MPD again: one parse serves any
    /// number of Host names a gateway is reached by.
    pub fn rebased(&self, to: &Url) -> Self {
        let from = self.url.origin().ascii_serialization();
        let to_origin = to.origin().ascii_serialization();
        if from == to_origin {
            return self.clone();
        }
        let r = |u: &Url| rebase_url(u, &from, &to_origin);
        let mut m = self.clone();
        m.url = r(&self.url);
        for p in &mut m.periods {
            for a in &mut p.adaptation_sets {
                for rep in &mut a.representations {
                    rep.init = rep.init.as_ref().map(r);
                    rep.addressing = match &rep.addressing {
                        Addressing::Template {
                            media,
                            timescale,
                            start_number,
                            end_number,
                            pto,
                            ato,
                            timing,
                        } => Addressing::Template {
                            media: media.rebased(&from, &to_origin),
                            timescale: *timescale,
                            start_number: *start_number,
                            end_number: *end_number,
                            pto: *pto,
                            ato: *ato,
                            timing: timing.clone(),
                        },
                        Addressing::List {
                            urls,
                            ranges,
                            timescale,
                            pto,
                            timing,
                        } => Addressing::List {
                            urls: urls.iter().map(r).collect(),
                            ranges: ranges.clone(),
                            timescale: *timescale,
                            pto: *pto,
                            timing: timing.clone(),
                        },
                        Addressing::Single { url } => Addressing::Single { url: r(url) },
                    };
                }
            }
        }
        m.exact = self
            .exact
            .iter()
            .map(|(k, v)| (crate::template::rebase_str(k, &from, &to_origin), v.clone()))
            .collect();
        m
    }

    /// Parses MPD text fetched from `url`.
    pub fn parse(xml: &str, url: &Url) -> Result<Self, MpdError> {
        crate::scan::check(xml)?;
        let mpd = dm::parse(xml).map_err(|e| MpdError::Parse(e.to_string()))?;
        Self::from_mpd(&mpd, url)
    }

    /// Builds the model from a parsed MPD.
    pub fn from_mpd(mpd: &dm::MPD, url: &Url) -> Result<Self, MpdError> {
        if mpd.periods.len() > limits::MAX_PERIODS {
            return Err(MpdError::TooLarge {
                what: "Periods",
                max: limits::MAX_PERIODS,
            });
        }
        let dynamic = mpd.mpdtype.as_deref() == Some("dynamic");
        let live = if dynamic {
            Some(Live {
                availability_start: mpd.availabilityStartTime.ok_or(MpdError::Invalid(
                    "dynamic MPD without @availabilityStartTime",
                ))?,
                time_shift_buffer_depth: mpd.timeShiftBufferDepth.map(|d| d.as_secs_f64()),
                minimum_update_period: mpd.minimumUpdatePeriod.map(|d| d.as_secs_f64()),
                suggested_presentation_delay: mpd
                    .suggestedPresentationDelay
                    .map(|d| d.as_secs_f64()),
            })
        } else {
            None
        };
        let (mpd_base, mpd_ato) = join_base(url, &mpd.base_url)?;
        let mut m = Self {
            url: url.clone(),
            live,
            periods: Vec::new(),
            warnings: Vec::new(),
            exact: HashMap::new(),
        };
        let presentation_end = mpd.mediaPresentationDuration.map(|d| d.as_secs_f64());
        let mut prev_end: Option<f64> = Some(0.0);
        for (pi, p) in mpd.periods.iter().enumerate() {
            let start = match (p.start, prev_end) {
                (Some(s), _) => s.as_secs_f64(),
                (None, Some(e)) => e,
                (None, None) => return Err(MpdError::Invalid("Period start cannot be determined")),
            };
            let next_start = mpd
                .periods
                .get(pi + 1)
                .and_then(|n| n.start)
                .map(|s| s.as_secs_f64());
            let end = p
                .duration
                .map(|d| start + d.as_secs_f64())
                .or(next_start)
                .or(if pi + 1 == mpd.periods.len() {
                    presentation_end
                } else {
                    None
                });
            prev_end = end;
            let (p_base, p_ato) = join_base(&mpd_base, &p.BaseURL)?;
            let period = m.build_period(pi, p, start, end, &p_base, mpd_ato + p_ato)?;
            m.periods.push(period);
        }
        Ok(m)
    }

    fn build_period(
        &mut self,
        pi: usize,
        p: &dm::Period,
        start: f64,
        end: Option<f64>,
        base: &Url,
        ato: f64,
    ) -> Result<Period, MpdError> {
        if p.adaptations.len() > limits::MAX_ADAPTATION_SETS {
            return Err(MpdError::TooLarge {
                what: "AdaptationSets in a Period",
                max: limits::MAX_ADAPTATION_SETS,
            });
        }
        let mut sets = Vec::new();
        for (ai, a) in p.adaptations.iter().enumerate() {
            if a.representations.len() > limits::MAX_REPRESENTATIONS {
                return Err(MpdError::TooLarge {
                    what: "Representations in an AdaptationSet",
                    max: limits::MAX_REPRESENTATIONS,
                });
            }
            let (a_base, a_ato) = join_base(base, &a.BaseURL)?;
            let mut reps = Vec::new();
            for r in &a.representations {
                let rep_ref = RepRef {
                    period: pi,
                    adaptation_set: ai,
                    representation: reps.len(),
                };
                match self.build_rep(rep_ref, p, a, r, &a_base, ato + a_ato) {
                    Ok(rep) => reps.push(rep),
                    Err(e) => self.warnings.push(format!(
                        "period {pi} adaptation set {ai} representation {}: {e}",
                        r.id.as_deref().unwrap_or("?")
                    )),
                }
            }
            sets.push(AdaptationSet {
                id: a.id.clone(),
                content_type: content_type(a),
                segment_alignment: a.segmentAlignment.unwrap_or(false),
                switching_interval: a
                    .Switching
                    .iter()
                    .find(|s| s.stype.as_deref().unwrap_or("media") == "media")
                    .and_then(|s| s.interval)
                    .filter(|&i| i > 0),
                representations: reps,
            });
        }
        Ok(Period {
            id: p.id.clone(),
            start,
            end,
            adaptation_sets: sets,
        })
    }

    fn build_rep(
        &mut self,
        at: RepRef,
        p: &dm::Period,
        a: &dm::AdaptationSet,
        r: &dm::Representation,
        base: &Url,
        ato: f64,
    ) -> Result<Representation, MpdError> {
        let id =
            r.id.clone()
                .ok_or(MpdError::Invalid("Representation without @id"))?;
        if id.len() > limits::MAX_ATTRIBUTE_LEN {
            return Err(MpdError::TooLarge {
                what: "Representation id",
                max: limits::MAX_ATTRIBUTE_LEN,
            });
        }
        let bandwidth = r.bandwidth.unwrap_or(0);
        let (base, r_ato) = join_base(base, &r.BaseURL)?;
        let ato = ato + r_ato;
        let mime_type = r.mimeType.clone().or_else(|| a.mimeType.clone());
        let init_range = [
            r.SegmentList
                .as_ref()
                .and_then(|l| l.Initialization.as_ref()),
            r.SegmentTemplate
                .as_ref()
                .and_then(|t| t.Initialization.as_ref()),
            a.SegmentList
                .as_ref()
                .and_then(|l| l.Initialization.as_ref()),
            a.SegmentTemplate
                .as_ref()
                .and_then(|t| t.Initialization.as_ref()),
        ]
        .into_iter()
        .flatten()
        .find_map(|i| i.range.as_deref())
        .map(parse_range)
        .transpose()?;
        let levels = [
            p.SegmentTemplate.as_ref(),
            a.SegmentTemplate.as_ref(),
            r.SegmentTemplate.as_ref(),
        ];
        let lists = [
            p.SegmentList.as_ref(),
            a.SegmentList.as_ref(),
            r.SegmentList.as_ref(),
        ];
        let (init, addressing) = if levels.iter().any(Option::is_some) {
            let st = merge_templates(&levels);
            let timescale = st.timescale.unwrap_or(1).max(1);
            let pto = st.presentationTimeOffset.unwrap_or(0);
            let media = st
                .media
                .as_deref()
                .ok_or(MpdError::Invalid("SegmentTemplate without @media"))?;
            let media = template::compile(&template::parse(media)?, &id, bandwidth, &base)?;
            let init_t = st
                .initialization
                .clone()
                .or_else(|| st.Initialization.as_ref().and_then(|i| i.sourceURL.clone()));
            let init = init_t
                .map(|t| resolve_filled(&t, &id, bandwidth, &base))
                .transpose()?;
            let timing = timing(
                st.SegmentTimeline.as_ref(),
                st.duration.map(|d| d.round() as u64),
                pto,
            )?;
            if media.var == Var::Time && matches!(timing, Timing::Fixed(_)) && st.duration.is_none()
            {
                return Err(MpdError::Invalid("$Time$ template without timing"));
            }
            let ato = ato + st.availabilityTimeOffset.unwrap_or(0.0);
            let addressing = Addressing::Template {
                media,
                timescale,
                start_number: st.startNumber.unwrap_or(1),
                end_number: st.endNumber,
                pto,
                ato,
                timing,
            };
            (init, addressing)
        } else if lists.iter().any(Option::is_some) {
            let sl = merge_lists(&lists);
            if sl.segment_urls.len() > limits::MAX_SEGMENT_LIST {
                return Err(MpdError::TooLarge {
                    what: "SegmentList entries",
                    max: limits::MAX_SEGMENT_LIST,
                });
            }
            let timescale = sl.timescale.unwrap_or(1).max(1);
            let urls = sl
                .segment_urls
                .iter()
                .map(|u| match u.media.as_deref() {
                    Some(m) => join(&base, m),
                    None => Ok(base.clone()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if urls.is_empty() {
                return Err(MpdError::Invalid("SegmentList without SegmentURL"));
            }
            let ranges = sl
                .segment_urls
                .iter()
                .map(|u| u.mediaRange.as_deref().map(parse_range).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            for (i, u) in urls.iter().enumerate() {
                self.exact
                    .entry(u.as_str().to_owned())
                    .or_default()
                    .push(Exact::Segment(at, i as u64));
            }
            let init = sl
                .Initialization
                .as_ref()
                .and_then(|i| i.sourceURL.as_deref())
                .map(|s| join(&base, s))
                .transpose()?;
            let timing = timing(sl.SegmentTimeline.as_ref(), sl.duration, 0)?;
            (
                init,
                Addressing::List {
                    urls,
                    ranges,
                    timescale,
                    pto: 0,
                    timing,
                },
            )
        } else {
            // SegmentBase or bare BaseURL: the whole file is one resource.
            self.exact
                .entry(base.as_str().to_owned())
                .or_default()
                .push(Exact::Segment(at, 0));
            (None, Addressing::Single { url: base.clone() })
        };
        if let Some(init) = &init {
            self.exact
                .entry(init.as_str().to_owned())
                .or_default()
                .push(Exact::Init(at));
        }
        Ok(Representation {
            id,
            bandwidth,
            mime_type,
            init,
            init_range,
            addressing,
        })
    }

    /// The Representation at `at`.
    pub fn representation(&self, at: RepRef) -> Option<&Representation> {
        self.periods
            .get(at.period)?
            .adaptation_sets
            .get(at.adaptation_set)?
            .representations
            .get(at.representation)
    }

    /// Every Representation, in document order.
    pub fn representations(&self) -> impl Iterator<Item = (RepRef, &Representation)> {
        self.periods.iter().enumerate().flat_map(|(pi, p)| {
            p.adaptation_sets
                .iter()
                .enumerate()
                .flat_map(move |(ai, a)| {
                    a.representations.iter().enumerate().map(move |(ri, r)| {
                        (
                            RepRef {
                                period: pi,
                                adaptation_set: ai,
                                representation: ri,
                            },
                            r,
                        )
                    })
                })
        })
    }

    /// True for a dynamic MPD.
    pub fn is_dynamic(&self) -> bool {
        self.live.is_some()
    }

    /// What `url` is in this MPD: an init segment, a media segment, or nothing. Query strings
    /// count; fragments do not. Cost: a hash lookup, then one prefix/suffix match per
    /// template-addressed Representation and a binary search in its timeline.
    pub fn locate(&self, url: &Url) -> Option<Resource> {
        self.locate_range(url, None)
    }

    /// Like [`Manifest::locate`], for a request with a byte range: a SegmentList whose entries
    /// are `mediaRange`s of one file is told apart by the range (first-last, inclusive). Without
    /// a range, the first entry of such a file is found.
    pub fn locate_range(&self, url: &Url, range: Option<(u64, u64)>) -> Option<Resource> {
        let mut url = url.clone();
        url.set_fragment(None);
        let key = url.as_str();
        if let Some(hits) = self.exact.get(key) {
            for hit in hits {
                match *hit {
                    Exact::Init(r) => {
                        let own = self.representation(r).and_then(|rep| rep.init_range);
                        if range.is_none() || range == own {
                            return Some(Resource::Init(r));
                        }
                    }
                    Exact::Segment(r, i) => {
                        let Some(s) = self.segment(r, i) else {
                            continue;
                        };
                        if range.is_none() || range == self.segment_range(&s) {
                            return Some(Resource::Segment(s));
                        }
                    }
                }
            }
        }
        for (at, rep) in self.representations() {
            let Addressing::Template {
                media,
                start_number,
                pto,
                timing,
                ..
            } = &rep.addressing
            else {
                continue;
            };
            let Some(value) = media.match_url(key) else {
                continue;
            };
            let index = match (media.var, timing) {
                (Var::Number, _) => value.checked_sub(*start_number),
                (Var::Time, Timing::Fixed(d)) => value
                    .checked_sub(*pto)
                    .filter(|o| o.is_multiple_of(*d))
                    .map(|o| o / d),
                (Var::Time, Timing::Timeline(tl)) => {
                    tl.index_starting_at(value, self.end_ticks(at))
                }
            };
            if let Some(s) = index.and_then(|i| self.segment(at, i)) {
                return Some(Resource::Segment(s));
            }
        }
        None
    }

    /// The segment at `index` of a Representation, if it exists (within the Period, and for an
    /// open live timeline, without a bound: availability is a separate question).
    pub fn segment(&self, at: RepRef, index: u64) -> Option<SegmentRef> {
        let period = self.periods.get(at.period)?;
        let rep = self.representation(at)?;
        if index >= self.segment_count(at) {
            return None;
        }
        let (number, time, duration, timescale, pto) = match &rep.addressing {
            Addressing::Template {
                timescale,
                start_number,
                pto,
                timing,
                ..
            } => {
                let (t, d) = self.timing_at(timing, index, *pto, at)?;
                (start_number.checked_add(index)?, t, d, *timescale, *pto)
            }
            Addressing::List {
                timescale,
                pto,
                timing,
                ..
            } => {
                let (t, d) = self.timing_at(timing, index, *pto, at)?;
                (index + 1, t, d, *timescale, *pto)
            }
            Addressing::Single { .. } => {
                let secs = period.end.map_or(0.0, |e| e - period.start);
                (1, 0, (secs * 1000.0).round() as u64, 1000, 0)
            }
        };
        let ts = timescale as f64;
        Some(SegmentRef {
            rep: at,
            index,
            number,
            time,
            duration,
            timescale,
            start: period.start + (time as f64 - pto as f64) / ts,
            duration_secs: duration as f64 / ts,
        })
    }

    fn timing_at(&self, timing: &Timing, index: u64, pto: u64, at: RepRef) -> Option<(u64, u64)> {
        match timing {
            Timing::Fixed(d) => Some((pto.checked_add(index.checked_mul(*d)?)?, *d)),
            Timing::Timeline(tl) => tl.at(index, self.end_ticks(at)),
        }
    }

    /// The Period end in a Representation's media time, when the Period has an end.
    fn end_ticks(&self, at: RepRef) -> Option<u64> {
        let period = self.periods.get(at.period)?;
        let end = period.end?;
        let (timescale, pto) = match &self.representation(at)?.addressing {
            Addressing::Template { timescale, pto, .. }
            | Addressing::List { timescale, pto, .. } => (*timescale, *pto),
            Addressing::Single { .. } => return None,
        };
        Some(pto + ((end - period.start).max(0.0) * timescale as f64).round() as u64)
    }

    /// How many segments the Representation has in its Period; effectively unbounded for an
    /// open-ended live Period.
    pub fn segment_count(&self, at: RepRef) -> u64 {
        let Some(rep) = self.representation(at) else {
            return 0;
        };
        let Some(period) = self.periods.get(at.period) else {
            return 0;
        };
        match &rep.addressing {
            Addressing::Template {
                timescale,
                start_number,
                end_number,
                timing,
                ..
            } => {
                let n = match timing {
                    Timing::Fixed(d) => match period.end {
                        Some(end) => {
                            (((end - period.start).max(0.0) * *timescale as f64) / *d as f64 - 1e-9)
                                .ceil()
                                .max(0.0) as u64
                        }
                        None => UNBOUNDED,
                    },
                    Timing::Timeline(tl) => {
                        let end = self.end_ticks(at);
                        let n = tl.len(end);
                        end.map_or(n, |e| n.min(tl.starting_before(e)))
                    }
                };
                match end_number {
                    Some(e) => n.min(e.saturating_add(1).saturating_sub(*start_number)),
                    None => n,
                }
            }
            Addressing::List { urls, .. } => urls.len() as u64,
            Addressing::Single { .. } => 1,
        }
    }

    /// The segment of a Representation that contains presentation time `secs`, or the first
    /// one after it (a timeline gap). Logarithmic for timelines, constant for fixed durations.
    pub fn segment_at(&self, at: RepRef, secs: f64) -> Option<SegmentRef> {
        let period = self.periods.get(at.period)?;
        let (ts, pto, timing) = match &self.representation(at)?.addressing {
            Addressing::Template {
                timescale,
                pto,
                timing,
                ..
            }
            | Addressing::List {
                timescale,
                pto,
                timing,
                ..
            } => (*timescale, *pto, timing),
            Addressing::Single { .. } => return self.segment(at, 0),
        };
        let offset = ((secs - period.start).max(0.0) * ts as f64).floor() as u64;
        let index = match timing {
            Timing::Fixed(d) => offset / d,
            Timing::Timeline(tl) => {
                tl.index_at_or_after(pto.saturating_add(offset), self.end_ticks(at))?
            }
        };
        self.segment(at, index)
    }

    /// The byte range of a media segment within its URL (`SegmentURL@mediaRange`), if any.
    pub fn segment_range(&self, s: &SegmentRef) -> Option<(u64, u64)> {
        match &self.representation(s.rep)?.addressing {
            Addressing::List { ranges, .. } => *ranges.get(usize::try_from(s.index).ok()?)?,
            _ => None,
        }
    }

    /// The segments of a Representation that overlap the presentation-time window
    /// `[from, from + secs)`, at most [`limits::MAX_LOOKUP`].
    pub fn window(&self, at: RepRef, from: f64, secs: f64) -> Vec<SegmentRef> {
        let end = from + secs;
        let Some(first) = self.segment_at(at, from) else {
            return Vec::new();
        };
        (first.index..first.index.saturating_add(limits::MAX_LOOKUP as u64))
            .map_while(|i| self.segment(at, i))
            .take_while(|s| s.start < end - 1e-9)
            .filter(|s| s.start + s.duration_secs > from + 1e-9)
            .collect()
    }

    /// The URL of a media segment.
    pub fn segment_url(&self, s: &SegmentRef) -> Option<Url> {
        match &self.representation(s.rep)?.addressing {
            Addressing::Template { media, .. } => media
                .url(match media.var {
                    Var::Number => s.number,
                    Var::Time => s.time,
                })
                .ok(),
            Addressing::List { urls, .. } => urls.get(usize::try_from(s.index).ok()?).cloned(),
            Addressing::Single { url } => Some(url.clone()),
        }
    }

    /// Segments n+1 … n+k of the same Representation, stopping at the end of the Period.
    pub fn next(&self, s: &SegmentRef, k: usize) -> Vec<SegmentRef> {
        (1..=k.min(limits::MAX_LOOKUP) as u64)
            .map_while(|i| self.segment(s.rep, s.index.checked_add(i)?))
            .collect()
    }

    /// The segments after `s` whose start is before the end of `s` plus `secs` (spec §6.2
    /// push-time), at most [`limits::MAX_LOOKUP`].
    pub fn within(&self, s: &SegmentRef, secs: f64) -> Vec<SegmentRef> {
        let horizon = s.start + s.duration_secs + secs;
        let mut out = Vec::new();
        let mut index = s.index;
        while out.len() < limits::MAX_LOOKUP {
            index += 1;
            match self.segment(s.rep, index) {
                Some(n) if n.start < horizon - 1e-9 => out.push(n),
                _ => break,
            }
        }
        out
    }

    /// The first `n` segments of a Representation.
    pub fn first(&self, at: RepRef, n: usize) -> Vec<SegmentRef> {
        (0..n.min(limits::MAX_LOOKUP) as u64)
            .map_while(|i| self.segment(at, i))
            .collect()
    }

    /// When a segment becomes available (dynamic MPDs; `None` for static ones): Period start +
    /// segment end − availabilityTimeOffset after availabilityStartTime (ISO/IEC 23009-1
    /// §5.3.9.5.3). An infinite availabilityTimeOffset makes a segment available at its start.
    pub fn availability_start(&self, s: &SegmentRef) -> Option<DateTime<Utc>> {
        let live = self.live.as_ref()?;
        let ato = match &self.representation(s.rep)?.addressing {
            Addressing::Template { ato, .. } => *ato,
            _ => 0.0,
        };
        let ato = if ato.is_finite() {
            ato.max(0.0)
        } else {
            s.duration_secs
        };
        let secs = s.start + s.duration_secs - ato;
        live.availability_start.checked_add_signed(micros(secs))
    }

    /// True if `s` can be fetched at `now`: always for a static MPD; for a dynamic one, once
    /// its availability start has passed and while it is inside the time-shift buffer.
    pub fn is_available(&self, s: &SegmentRef, now: DateTime<Utc>) -> bool {
        let Some(start) = self.availability_start(s) else {
            return true;
        };
        if start > now {
            return false;
        }
        match self.live.as_ref().and_then(|l| l.time_shift_buffer_depth) {
            Some(tsbd) => start
                .checked_add_signed(micros(tsbd + s.duration_secs))
                .is_none_or(|end| now <= end),
            None => true,
        }
    }

    /// The live edge at `now`: the newest segment whose availability start has passed at
    /// `now` − suggestedPresentationDelay. For a static MPD, the first segment.
    pub fn live_edge(&self, at: RepRef, now: DateTime<Utc>) -> Option<SegmentRef> {
        let Some(live) = &self.live else {
            return self.segment(at, 0);
        };
        let spd = live.suggested_presentation_delay.unwrap_or(0.0);
        let target = now.checked_sub_signed(micros(spd))?;
        self.newest_available_by(at, target)
    }

    /// The newest segment whose availability start is at or before `t` (dynamic MPDs).
    /// Availability grows with the index, so this is a binary search.
    fn newest_available_by(&self, at: RepRef, t: DateTime<Utc>) -> Option<SegmentRef> {
        let first = self.segment(at, 0)?;
        if self.availability_start(&first).is_some_and(|a| a > t) {
            return None;
        }
        let (mut lo, mut hi) = (0u64, self.segment_count(at).min(UNBOUNDED));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.segment(at, mid) {
                Some(s) if self.availability_start(&s).is_none_or(|a| a <= t) => lo = mid,
                _ => hi = mid,
            }
        }
        self.segment(at, lo)
    }

    /// The `n` newest segments available at `now`, oldest first (for a static MPD, the first
    /// `n`).
    pub fn available(&self, at: RepRef, now: DateTime<Utc>, n: usize) -> Vec<SegmentRef> {
        if self.live.is_none() {
            return self.first(at, n);
        }
        let Some(newest) = self.newest_available_by(at, now) else {
            return Vec::new();
        };
        let n = n.min(limits::MAX_LOOKUP) as u64;
        let from = newest.index.saturating_add(1).saturating_sub(n);
        (from..=newest.index)
            .filter_map(|i| self.segment(at, i))
            .filter(|s| self.is_available(s, now))
            .collect()
    }

    /// The Period a player starts in: the first for a static MPD; for a dynamic one, the last
    /// Period that has started at `now`.
    pub fn start_period(&self, now: Option<DateTime<Utc>>) -> usize {
        match (&self.live, now) {
            (Some(live), Some(now)) => {
                let elapsed = (now - live.availability_start)
                    .num_microseconds()
                    .unwrap_or(i64::MAX) as f64
                    / 1e6;
                self.periods
                    .iter()
                    .rposition(|p| p.start <= elapsed)
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The fast-start selection (spec §6.1.7, Annex G) in the start Period: explicit
    /// `representations` if given; otherwise per AdaptationSet of each requested type, the
    /// highest `@bandwidth` that fits the budget (audio first, video gets what audio leaves,
    /// text the lowest), or the lowest if none fits or no budget is given. VOD: the first
    /// segments; live: from the live edge at `now`.
    pub fn fast_start(&self, params: &FastStartParams, now: Option<DateTime<Utc>>) -> FastStart {
        let pi = self.start_period(now);
        let n = params.effective_segments() as usize;
        let types = params.effective_types();
        let mut chosen: Vec<RepRef> = Vec::new();
        if let Some(ids) = &params.representations {
            for id in ids {
                let found = self
                    .representations()
                    .find(|(at, r)| at.period == pi && &r.id == id);
                if let Some((at, _)) = found
                    && !chosen.contains(&at)
                {
                    chosen.push(at);
                }
            }
        } else if let Some(period) = self.periods.get(pi) {
            let mut budget = params.bandwidth;
            // Audio first so that video gets what audio leaves; then the order asked for.
            let mut order = types.clone();
            order.sort_by_key(|t| *t != ContentType::Audio);
            let mut picks: Vec<(ContentType, RepRef)> = Vec::new();
            for ty in order {
                for (ai, a) in period.adaptation_sets.iter().enumerate() {
                    if a.content_type != Some(ty) || a.representations.is_empty() {
                        continue;
                    }
                    let ri = pick(
                        &a.representations,
                        if ty == ContentType::Text {
                            None
                        } else {
                            budget
                        },
                    );
                    if let Some(b) = budget.as_mut() {
                        *b = b.saturating_sub(a.representations.get(ri).map_or(0, |r| r.bandwidth));
                    }
                    picks.push((
                        ty,
                        RepRef {
                            period: pi,
                            adaptation_set: ai,
                            representation: ri,
                        },
                    ));
                }
            }
            // Push in the order of `types`.
            for ty in &types {
                chosen.extend(picks.iter().filter(|(t, _)| t == ty).map(|(_, r)| *r));
            }
        }
        let items = chosen
            .iter()
            .filter_map(|&at| {
                let rep = self.representation(at)?;
                let first = match now {
                    Some(now) if self.is_dynamic() => self.live_edge(at, now)?.index,
                    _ => 0,
                };
                let segments = (first..first + n as u64)
                    .map_while(|i| self.segment(at, i))
                    .filter(|s| now.is_none_or(|now| self.is_available(s, now)))
                    .collect();
                Some(FastStartItem {
                    rep: at,
                    init: rep.init.clone(),
                    segments,
                })
            })
            .collect::<Vec<_>>();
        let mut resolved = params.clone();
        resolved.segments = Some(n as u32);
        if params.representations.is_none() {
            resolved.types = Some(types);
        }
        resolved.representations = Some(
            items
                .iter()
                .filter_map(|i| self.representation(i.rep))
                .map(|r| r.id.clone())
                .collect(),
        );
        FastStart {
            params: resolved,
            items,
        }
    }

    /// The segment of another Representation of the same AdaptationSet that continues from
    /// `s` (spec Annex H): the first switch point at or after `s`'s start. With
    /// `Switching@interval` that is the first segment starting on the interval grid; otherwise
    /// any segment, but only if the AdaptationSet is segment-aligned.
    pub fn switch_to(&self, s: &SegmentRef, target: usize) -> Option<SegmentRef> {
        let to = RepRef {
            representation: target,
            ..s.rep
        };
        let set = self
            .periods
            .get(s.rep.period)?
            .adaptation_sets
            .get(s.rep.adaptation_set)?;
        self.representation(to)?;
        if set.switching_interval.is_none() && !set.segment_alignment {
            return None;
        }
        let c = self.segment_at(to, s.start)?;
        let from = if c.start + 1e-6 < s.start {
            c.index + 1
        } else {
            c.index
        };
        for i in from..from.saturating_add(limits::MAX_LOOKUP as u64) {
            let c = self.segment(to, i)?;
            let on_grid = match set.switching_interval {
                Some(iv) => c
                    .time
                    .checked_sub(self.pto(to))
                    .is_some_and(|t| t.is_multiple_of(iv)),
                None => true,
            };
            if c.start + 1e-6 >= s.start && on_grid {
                return Some(c);
            }
        }
        None
    }

    fn pto(&self, at: RepRef) -> u64 {
        match self.representation(at).map(|r| &r.addressing) {
            Some(Addressing::Template { pto, .. } | Addressing::List { pto, .. }) => *pto,
            _ => 0,
        }
    }
}

/// Seconds as a chrono duration, saturating far outside any real MPD's range.
fn micros(secs: f64) -> chrono::Duration {
    chrono::Duration::microseconds((secs * 1e6).clamp(-1e17, 1e17) as i64)
}

/// The highest bandwidth that fits `budget`, or the lowest if none does or there is no budget.
fn pick(reps: &[Representation], budget: Option<u64>) -> usize {
    let lowest = reps
        .iter()
        .enumerate()
        .min_by_key(|(_, r)| r.bandwidth)
        .map_or(0, |(i, _)| i);
    let Some(budget) = budget else { return lowest };
    reps.iter()
        .enumerate()
        .filter(|(_, r)| r.bandwidth <= budget)
        .max_by_key(|(_, r)| r.bandwidth)
        .map_or(lowest, |(i, _)| i)
}

fn content_type(a: &dm::AdaptationSet) -> Option<ContentType> {
    if dm::is_video_adaptation(&a) {
        Some(ContentType::Video)
    } else if dm::is_audio_adaptation(&a) {
        Some(ContentType::Audio)
    } else if dm::is_subtitle_adaptation(&a) {
        Some(ContentType::Text)
    } else {
        None
    }
}

/// `first-last` byte offsets (inclusive).
fn parse_range(s: &str) -> Result<(u64, u64), MpdError> {
    let bad = MpdError::Invalid("mediaRange is not first-last");
    let (a, b) = s.trim().split_once('-').ok_or(bad.clone())?;
    let a: u64 = a.parse().map_err(|_| bad.clone())?;
    let b: u64 = b.parse().map_err(|_| bad.clone())?;
    if b < a {
        return Err(bad);
    }
    Ok((a, b))
}

fn join(base: &Url, s: &str) -> Result<Url, MpdError> {
    if s.len() > limits::MAX_ATTRIBUTE_LEN {
        return Err(MpdError::TooLarge {
            what: "URL attribute",
            max: limits::MAX_ATTRIBUTE_LEN,
        });
    }
    let mut url = base
        .join(s.trim())
        .map_err(|e| MpdError::BadUrl(e.to_string()))?;
    url.set_fragment(None);
    Ok(url)
}

/// Resolves the first BaseURL of a level against `base`; returns it with its
/// availabilityTimeOffset (additive along the chain).
fn join_base(base: &Url, urls: &[dm::BaseURL]) -> Result<(Url, f64), MpdError> {
    match urls.first() {
        Some(b) => Ok((
            join(base, &b.base)?,
            b.availability_time_offset.unwrap_or(0.0),
        )),
        None => Ok((base.clone(), 0.0)),
    }
}

fn resolve_filled(t: &str, id: &str, bandwidth: u64, base: &Url) -> Result<Url, MpdError> {
    let parts: Vec<Part> = template::parse(t)?;
    join(base, &template::fill(&parts, id, bandwidth, None, None))
}

fn timing(
    tl: Option<&dm::SegmentTimeline>,
    duration: Option<u64>,
    pto: u64,
) -> Result<Timing, MpdError> {
    match (tl, duration) {
        (Some(tl), _) => Ok(Timing::Timeline(Timeline::build(&tl.segments, pto)?)),
        (None, Some(d)) if d > 0 => Ok(Timing::Fixed(d)),
        _ => Err(MpdError::Invalid(
            "segment addressing without @duration or SegmentTimeline",
        )),
    }
}

/// Multiple-level inheritance (ISO/IEC 23009-1 §5.3.9.1): each attribute from the innermost
/// level that has it.
fn merge_templates(levels: &[Option<&dm::SegmentTemplate>]) -> dm::SegmentTemplate {
    let mut out = dm::SegmentTemplate::default();
    for t in levels.iter().flatten() {
        macro_rules! take {
            ($($f:ident),*) => { $( if t.$f.is_some() { out.$f = t.$f.clone(); } )* };
        }
        take!(
            media,
            initialization,
            startNumber,
            endNumber,
            duration,
            timescale,
            presentationTimeOffset,
            availabilityTimeOffset,
            Initialization,
            SegmentTimeline
        );
    }
    out
}

fn merge_lists(levels: &[Option<&dm::SegmentList>]) -> dm::SegmentList {
    let mut out = dm::SegmentList::default();
    for l in levels.iter().flatten() {
        macro_rules! take {
            ($($f:ident),*) => { $( if l.$f.is_some() { out.$f = l.$f.clone(); } )* };
        }
        take!(duration, timescale, Initialization, SegmentTimeline);
        if !l.segment_urls.is_empty() {
            out.segment_urls = l.segment_urls.clone();
        }
    }
    out
}
