//! The ISO/IEC 23009-6 ("DASH with server push and WebSockets") wire layer.
//!
//! This crate owns the exact textual and binary forms of the standard: push types (§6.1.2),
//! push directives and acknowledgements (§6.1.3, §6.1.4), URL lists (§6.1.5), URL templates
//! (§6.1.6, Annex F), fast-start parameters (§6.1.7, Annex G), their HTTP/2 header bindings
//! (§7) and the WebSocket sub-protocol's messages and codec (§8).
//!
//! It does no I/O and reads no clock: every function takes bytes or `&str` and returns a typed
//! result. Every parser enforces the hard caps in [`limits`]; configuration may lower them, never
//! raise them. It does not decide *what* to push (that is the planner's job) nor resolve MPD
//! addresses.
//!
//! Clause numbers refer to `shared/spec/23009-6.md`, the project's reconstruction of the
//! standard; every interpretation is listed in `docs/spec-decisions.md`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod directive;
pub mod fast_start;
pub mod http2;
pub mod limits;
pub mod push_type;
pub mod range;
pub mod url_list;
pub mod url_template;
pub mod ws;

pub use directive::{DirectiveError, PushAck, PushDirective, PushDuration};
pub use fast_start::{ContentType, FastStartError, FastStartParams};
pub use push_type::PushType;
pub use url_list::{UrlList, UrlListError};
pub use url_template::{TemplateError, UrlTemplate};
