//! The planner driven through its public API: every push type on real (ffmpeg-made and demo
//! origin) MPDs and hand-written ones, the safety rules, switching, live timing, and property
//! tests of the invariants.

mod live;
mod props;
mod vod;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashpush_mpd::Manifest;
use dashpush_plan::{
    DirectiveInput, Manifests, Plan, PlanConfig, Request, Session, SingleManifest,
};
use dashpush_proto::PushDirective;
use url::Url;

/// The demo origin's MPD: video Representations `0` (60 kb/s) and `1` (30 kb/s), audio `2`,
/// three 2 s segments each.
pub(crate) const DEMO: &str = include_str!("../../../dashpush-origin/demo/vod/manifest.mpd");

/// Where tests pretend the demo MPD was fetched from.
pub(crate) const DEMO_URL: &str = "http://edge.test/vod/manifest.mpd";

pub(crate) fn u(s: &str) -> Url {
    Url::parse(s).unwrap()
}

pub(crate) fn parse(xml: &str, url: &str) -> SingleManifest {
    let m = Manifest::parse(xml, &u(url)).unwrap();
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    SingleManifest(Arc::new(m))
}

pub(crate) fn demo() -> SingleManifest {
    parse(DEMO, DEMO_URL)
}

/// A static MPD of `secs` seconds in 2 s segments: aligned video `v0`, `v1` and audio `a`,
/// media `$RepresentationID$-$Number$.m4s`, init `$RepresentationID$-init.mp4`.
pub(crate) fn long_vod(secs: u32) -> SingleManifest {
    let xml = format!(
        r#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT{secs}S" minBufferTime="PT2S"><Period id="p">
          <AdaptationSet contentType="video" segmentAlignment="true">
            <SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.mp4"/>
            <Representation id="v0" bandwidth="3000000"/><Representation id="v1" bandwidth="800000"/></AdaptationSet>
          <AdaptationSet contentType="audio" segmentAlignment="true">
            <SegmentTemplate duration="2" startNumber="1" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.mp4"/>
            <Representation id="a" bandwidth="64000"/></AdaptationSet></Period></MPD>"#
    );
    parse(&xml, "http://edge.test/long/manifest.mpd")
}

/// The directive as the edge would hand it over: `None` for no header.
pub(crate) fn directive(text: Option<&str>) -> DirectiveInput {
    match text {
        None => DirectiveInput::Absent,
        Some(t) => PushDirective::parse(t).into(),
    }
}

/// One connection: a session, its MPDs, and a fixed "now".
pub(crate) struct Conn<M: Manifests = SingleManifest> {
    pub(crate) session: Session,
    pub(crate) manifests: M,
    pub(crate) now: Option<DateTime<Utc>>,
    /// The edge's byte budget for the next requests.
    pub(crate) budget: Option<u64>,
}

impl<M: Manifests> Conn<M> {
    pub(crate) fn new(manifests: M) -> Self {
        Self::with(manifests, PlanConfig::default())
    }

    pub(crate) fn with(manifests: M, cfg: PlanConfig) -> Self {
        Self {
            session: Session::new(cfg),
            manifests,
            now: None,
            budget: None,
        }
    }

    /// A request for `url` with directive text `d` (`None`: no directive).
    pub(crate) fn get(&mut self, url: &str, d: Option<&str>) -> Plan {
        self.request(url, d, true)
    }

    pub(crate) fn request(&mut self, url: &str, d: Option<&str>, push_allowed: bool) -> Plan {
        let url = u(url);
        let req = Request {
            url: &url,
            directive: directive(d),
            push_allowed,
            byte_budget: self.budget,
        };
        self.session.on_request(&req, &self.manifests, self.now)
    }
}

/// Full `push-*` URN for a token and parameter.
pub(crate) fn urn(rest: &str) -> String {
    format!("urn:mpeg:dash:fdh:2016:{rest}")
}

/// The pushed URLs of a plan, as strings.
pub(crate) fn pushed(plan: &Plan) -> Vec<String> {
    plan.pushes.iter().map(|p| p.url.to_string()).collect()
}

/// The cancelled URLs of a plan, as strings.
pub(crate) fn cancelled(plan: &Plan) -> Vec<String> {
    plan.cancel.iter().map(Url::to_string).collect()
}

/// The ack as header text.
pub(crate) fn ack(plan: &Plan) -> Option<String> {
    plan.ack.as_ref().map(ToString::to_string)
}
