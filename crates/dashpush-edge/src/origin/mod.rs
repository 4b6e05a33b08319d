//! The origin side: the response types, the HTTP/1.1 client on pingora's pool, and routing by
//! host and path prefix.

pub mod response;
pub mod routing;
pub mod upstream;
