//! Where a pushed or prefetched body comes from: a cache entry or a fill in progress.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::Entry;
use super::fill::{Fill, Head};

/// Where a pushed or prefetched body comes from.
#[derive(Clone)]
pub(crate) enum Source {
    /// A fresh cache entry.
    Entry(Arc<Entry>),
    /// A fill in progress (or just finished).
    Fill(Arc<Fill>),
}

impl Source {
    /// The status the origin answered, or the status an origin failure maps to (502, 504).
    pub(crate) async fn status(&self) -> u16 {
        match self {
            Self::Entry(e) => e.response.status,
            Self::Fill(f) => match f.head().await {
                Ok(h) => h.status,
                Err(e) => e.status(),
            },
        }
    }

    /// The status and headers, if known without waiting.
    pub(crate) fn head_now(&self) -> Option<Head> {
        match self {
            Self::Entry(e) => Some(Head {
                status: e.response.status,
                headers: e.response.headers.clone(),
            }),
            Self::Fill(f) => f.head_now(),
        }
    }

    /// The length, if known without waiting.
    pub(crate) fn length_now(&self) -> Option<u64> {
        match self {
            Self::Entry(e) => Some(e.response.body.len() as u64),
            Self::Fill(f) => f.head_now().and_then(|h| content_length(&h.headers)),
        }
    }
}

/// The `content-length` of a header list, if it has a valid one.
pub(crate) fn content_length(headers: &[(HeaderName, HeaderValue)]) -> Option<u64> {
    headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.to_str().ok()?.parse().ok())
}
