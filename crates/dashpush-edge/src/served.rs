//! What a served answer teaches the gateway, one rule each for every transport:
//!
//! - the MPD it carries is parsed (against the URL the client used) and registered for the
//!   planner *before* the answer's last byte leaves, so a client that asks for a segment with a
//!   directive the moment the MPD arrived finds it ([`remember_mpd`]);
//! - after a client pulled a segment without a directive, the segments that follow it are
//!   prefetched ([`after_pull`]).

use std::sync::Arc;

use crate::gateway::{Body, Gateway, Resp};
use crate::target::{Target, is_mpd_path};

/// Registers the MPD `resp` carries for `target`, from the very bytes served (no extra origin
/// fetch, even for an MPD that may not be cached). A streamed body is read to its end from its
/// fill first. Await it before the answer's last byte is sent.
pub(crate) async fn remember_mpd(gw: &Gateway, target: &Target, resp: &Resp) {
    if resp.status != 200 || !target.is_mpd() {
        return;
    }
    match &resp.body {
        Body::Full(b) if !b.is_empty() => {
            gw.manifests()
                .remember(&target.origin, &target.url, b)
                .await;
        }
        Body::Stream(r) => {
            if let Ok(f) = r.fill().complete().await
                && f.status == 200
            {
                gw.manifests()
                    .remember(&target.origin, &target.url, &f.body)
                    .await;
            }
        }
        Body::Full(_) => {}
    }
}

/// True when an answer of `status` to `path` may be an MPD to remember: the cheap check, made
/// before any URL is parsed.
pub(crate) fn may_carry_mpd(status: u16, path: &str) -> bool {
    status == 200 && is_mpd_path(path)
}

/// The pull rule: after a 200 for a segment pulled without a directive, prefetch the next
/// segments of its Representation (`prefetch_next` of them; 0 turns it off). The cheap checks
/// come first, so `target` (a URL parse and a route lookup) is only computed when they pass.
pub(crate) fn after_pull(
    gw: &Arc<Gateway>,
    status: u16,
    path: &str,
    target: impl FnOnce() -> Option<Target>,
) {
    if status != 200
        || is_mpd_path(path)
        || gw.push_settings().prefetch_next == 0
        || gw.manifests().is_empty()
    {
        return;
    }
    if let Some(t) = target() {
        gw.prefetch_following(&t);
    }
}
