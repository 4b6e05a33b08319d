//! Hard caps on everything that comes off the network.
//!
//! Every parser in this crate enforces these; the gateway's configuration may lower them, never
//! raise them (spec §6.2 safety rule 4). Each constant names the clause it bounds.

/// Longest push directive or acknowledgement header value accepted, in bytes (§7.1).
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Most entries in a URL list (§6.1.5).
pub const MAX_LIST_ENTRIES: usize = 64;

/// Longest single URL list entry, in bytes (§6.1.5).
pub const MAX_URL_LEN: usize = 2 * 1024;

/// Most URLs a URL template expands to; expansion stops here (§6.1.6).
pub const MAX_TEMPLATE_EXPANSION: usize = 256;

/// Most comma-separated runs in one template slot (§6.1.6).
pub const MAX_TEMPLATE_RUNS: usize = 64;

/// Widest zero-padding a template may ask for (§6.1.6).
pub const MAX_TEMPLATE_WIDTH: u8 = 16;

/// Largest `push-next` K the gateway ever grants; larger requests are clamped (§6.1.2).
pub const MAX_PUSH_NEXT: u32 = 64;

/// Longest `push-time` T the gateway ever grants, in seconds; longer requests are clamped
/// (§6.1.2).
pub const MAX_PUSH_TIME_SECS: u64 = 600;

/// Most media segments per Representation in a fast start (§6.1.7, Annex G).
pub const MAX_FAST_START_SEGMENTS: u32 = 8;

/// Most Representation ids a fast-start parameter may name (§6.1.7).
pub const MAX_FAST_START_REPRESENTATIONS: usize = 32;

/// Longest Representation id in a fast-start parameter, in bytes (§6.1.7).
pub const MAX_REPRESENTATION_ID_LEN: usize = 256;

/// Longest unknown push-type token kept for reporting, in bytes (§6.1.2).
pub const MAX_TOKEN_LEN: usize = 64;

/// Largest WebSocket message a client may send, in bytes (§8.2.1).
pub const MAX_WS_MESSAGE: usize = 1024 * 1024;

/// Largest metadata block of a WebSocket message, in bytes (§8.2.1).
pub const MAX_WS_METADATA: usize = 16 * 1024;

/// Most open streams on one WebSocket (§8.2.2).
pub const MAX_WS_STREAMS: usize = 256;

/// Most stream ids or URLs one Segment cancel message may name (§8.4.6).
pub const MAX_WS_CANCEL_ENTRIES: usize = 256;

/// Longest `detail` text in an End of stream message, in bytes (§8.4.5).
pub const MAX_WS_DETAIL_LEN: usize = 1024;
