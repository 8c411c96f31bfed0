//! HTTP/1.x for the proxy path: heads parsed and rewritten, bodies framed, clb's own answers.
//!
//! Everything here is pure: bytes in, verdicts and rewritten bytes out, no sockets. The
//! worker owns the I/O; these functions are what the tests and fuzz targets exercise.

pub mod canned;
pub mod chunked;
pub mod desync;
pub mod framing;
mod lines;
pub mod request;
pub mod response;
pub mod sticky;
pub mod target;
