//! The two kinds of connection a worker holds in its slabs, and their states.
//!
//! A `Client` is one accepted connection; while it has a request in flight its `Phase`
//! is `Exchange`, which names the `Upstream` connection serving it. An `Upstream` is a
//! connection to an instance: attached to one exchange, or idle in the pool (no owner).

use super::pipe::Pipe;
use crate::backend::balancer::Tried;
use crate::buffer::Buf;
use crate::http::request::RequestInfo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Edge-triggered readiness remembered until an operation returns `WouldBlock`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer closed or the socket errored (from the event, before any read sees it).
    pub hup: bool,
}

/// One pending timer entry per connection at most (see `timers.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub armed_at: Option<Instant>,
}

impl Deadline {
    pub fn new(at: Instant) -> Deadline {
        Deadline { at, armed_at: None }
    }

    /// True when a new heap entry is needed for `self.at`.
    pub fn needs_arming(&self) -> bool {
        self.armed_at.is_none_or(|armed| self.at < armed)
    }
}

pub struct Client {
    pub sock: super::stream::Stream,
    pub generation: u32,
    pub listener: usize,
    /// Zone this connection is served from when cross-zone balancing is off.
    pub zone: Option<usize>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub ready: Ready,
    /// The client sent EOF; no more requests will come.
    pub read_closed: bool,
    /// Bytes from the client not yet forwarded (request heads, bodies, pipelined requests).
    pub rbuf: Option<Buf>,
    /// Bytes for the client that are not body bytes: response heads and clb's own answers.
    pub wbuf: Option<Buf>,
    pub phase: Phase,
    pub deadline: Deadline,
    /// The load balancer's idle timeout, refreshed by every byte in or out.
    pub idle: Duration,
}

impl Phase {
    /// Waiting for the next request, none of it seen yet.
    pub const IDLE: Phase = Phase::ReadHead { started_ms: 0 };
}

pub enum Phase {
    /// Waiting for a request head; `started_ms` is when its first byte was seen
    /// (`Worker::clock_ms`), 0 before that. A u32 keeps `Phase` (and `Client`) small.
    ReadHead { started_ms: u32 },
    /// A request in flight: the key of its `Exchange` in the worker's exchange slab,
    /// so an idle client's slab entry stays small (an exchange is most of the state).
    Exchange(usize),
    /// A TCP listener's connection: the key of its `Tunnel` in the worker's slab.
    Tunnel(usize),
    /// Writing a last answer; then the write side is shut down. `linger`: the client may
    /// still be sending (clb answered before reading its whole request), so its bytes
    /// are read and dropped before the close, or the close would reset the connection
    /// and destroy the answer in flight.
    Closing { linger: bool },
    /// Write side shut; reading and discarding until EOF so the answer is not lost to a reset.
    Linger,
}

/// One request and its response, between a client and an upstream connection.
pub struct Exchange {
    pub req: RequestInfo,
    /// The instance's request head; kept until the response starts, for one retry.
    pub head: Option<Buf>,
    pub head_sent: usize,
    pub request: Pipe,
    pub upstream: Option<usize>,
    pub backend: usize,
    pub instance: usize,
    /// The instance's health-board slot (stable across topologies), for in-flight counts.
    pub slot: usize,
    pub tried: Tried,
    /// The upstream connection came from the pool.
    pub reused: bool,
    pub retried: bool,
    /// Any response byte arrived from the instance.
    pub response_started: bool,
    pub response: Response,
    /// The kernel pipe a large response body is spliced through, once splicing started.
    pub kernel: Option<crate::sys::KernelPipe>,
    /// When the request was handed to its current upstream connection (Latency's start).
    pub dispatched: std::time::Instant,
    /// What the access log needs, when it is on.
    pub log: Option<Box<RequestLog>>,
    /// Sticky sessions, on a listener with a policy.
    pub sticky: Option<Box<StickyState>>,
    /// Waiting in the surge queue for room at an instance.
    pub queued: bool,
}

/// One request's stickiness: where its cookie says to go, and whether a new cookie is due.
pub struct StickyState {
    pub policy: crate::http::sticky::Policy,
    /// The instance id and back-end port a genuine `AWSELB` cookie named.
    pub target: Option<(String, u16)>,
    /// The request went where no valid cookie pointed: the answer carries a new one.
    pub set_cookie: bool,
}

/// One request's access-log fields gathered along the way.
pub struct RequestLog {
    pub time: std::time::SystemTime,
    pub received: std::time::Instant,
    pub request: String,
    pub user_agent: String,
    pub backend: Option<SocketAddr>,
    pub response_head_at: Option<std::time::Instant>,
    pub backend_status: Option<u16>,
}

pub enum Response {
    AwaitHead,
    Body {
        pipe: Pipe,
        reusable: bool,
        client_close: bool,
    },
}

pub struct Upstream {
    /// Plain TCP, or TLS to an HTTPS or SSL instance.
    pub sock: super::stream::Stream,
    pub generation: u32,
    pub backend: usize,
    pub ready: Ready,
    pub connected: bool,
    pub rbuf: Option<Buf>,
    /// The client whose exchange this serves; `None` while idle in the pool.
    pub owner: Option<usize>,
    pub deadline: Deadline,
    pub idle: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idle-connection budget is 400 B of RSS (issue 14); the slab entry is most
    /// of it, and the timer entry most of the rest.
    #[test]
    fn an_idle_client_fits_the_memory_budget() {
        let size = std::mem::size_of::<Client>();
        println!(
            "Client: {size} bytes, Upstream: {} bytes",
            std::mem::size_of::<Upstream>()
        );
        assert!(size <= 224, "Client is {size} bytes");
        assert_eq!(std::mem::size_of::<Option<crate::buffer::Buf>>(), 24);
    }
}
