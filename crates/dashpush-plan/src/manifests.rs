//! Where the planner finds the MPD that addresses a request (spec §6.2: "the requested URL is
//! resolved through the MPD").

use std::sync::Arc;

use dashpush_mpd::Manifest;
use url::Url;

/// The MPDs the edge knows. The edge supplies a registry of the MPDs it has seen;
/// [`SingleManifest`] serves one MPD (tests, the CLI dry run).
pub trait Manifests {
    /// The MPD that addresses `url` as an init or media segment, if any.
    fn for_segment(&self, url: &Url) -> Option<Arc<Manifest>>;
    /// The MPD fetched from `mpd_url`, if `mpd_url` is the URL of a known MPD.
    fn manifest(&self, mpd_url: &Url) -> Option<Arc<Manifest>>;
}

/// A registry of exactly one MPD.
#[derive(Clone, Debug)]
pub struct SingleManifest(pub Arc<Manifest>);

impl SingleManifest {
    /// Wraps a parsed MPD.
    pub fn new(manifest: Manifest) -> Self {
        Self(Arc::new(manifest))
    }
}

impl Manifests for SingleManifest {
    fn for_segment(&self, url: &Url) -> Option<Arc<Manifest>> {
        self.0.locate(url).map(|_| Arc::clone(&self.0))
    }

    fn manifest(&self, mpd_url: &Url) -> Option<Arc<Manifest>> {
        same_resource(mpd_url, &self.0.url).then(|| Arc::clone(&self.0))
    }
}

/// True if two URLs name the same resource (fragments do not count).
pub(crate) fn same_resource(a: &Url, b: &Url) -> bool {
    a.as_str().split('#').next() == b.as_str().split('#').next()
}
