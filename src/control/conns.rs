//! The control API's connections: how many it holds, for how long, and which one goes
//! when every place is taken.
//!
//! The API is how a node (and in a cluster, the fleet) is run, so holding connections
//! open must not lock it out (issue 12). A connection has `REQUEST_TIMEOUT` for a whole
//! request, head and body, from its first byte, and for writing the answer; and `IDLE`
//! between requests. Bytes trickling in extend neither. When all `MAX_CONNECTIONS` are
//! taken, a new connection takes the place of the one that has waited longest (idle
//! longest, or slowest with its request) rather than being refused, so a burst of slow
//! connections is pushed out by the clients that do send requests. Closing for either
//! reason is logged as one warning per `WARN_EVERY` at most, with counts (closing an
//! idle keep-alive connection is routine and not logged).

use mio::net::TcpStream;
use slab::Slab;
use std::time::{Duration, Instant};

/// Connections held at once (four times the 256 of before; each costs a descriptor and
/// its buffers).
pub const MAX_CONNECTIONS: usize = 1024;
/// For one whole request (head and body) and its answer, from the request's first byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Between requests on a kept-alive connection.
pub const IDLE: Duration = Duration::from_secs(60);
/// At most one warning about closed connections this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often deadlines are checked (each check walks every connection).
const SWEEP_EVERY: Duration = Duration::from_millis(250);

pub struct Conn {
    pub sock: TcpStream,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub close_after: bool,
    /// Waiting for the control plane (a write's store round trip, or its turn behind
    /// one), not for the client: no deadline runs meanwhile.
    pub parked: bool,
    /// Tells this connection from a later one under the same key.
    pub serial: u64,
    /// When the connection began waiting for what it waits for now: accepted, its
    /// request's first byte, or its last answer written.
    since: Instant,
}

impl Conn {
    /// Whether nothing is under way: no request begun, no answer left to write.
    fn idle(&self) -> bool {
        self.input.is_empty() && self.output.is_empty()
    }

    fn deadline(&self) -> Instant {
        self.since + if self.idle() { IDLE } else { REQUEST_TIMEOUT }
    }

    /// Call before taking bytes in: a request that begins now has its time from now.
    pub fn receiving(&mut self, now: Instant) {
        if self.idle() {
            self.since = now;
        }
    }

    /// Call when an answer has been written out whole: the next request's time starts.
    pub fn answered(&mut self, now: Instant) {
        self.since = now;
    }

    /// Call when the plane answers after the connection was parked: the answer has
    /// `REQUEST_TIMEOUT` to be written from now.
    pub fn unpark(&mut self, now: Instant) {
        self.parked = false;
        self.since = now;
    }
}

/// Closures counted since the last warning.
#[derive(Default)]
struct Closed {
    evicted: usize,
    timed_out: usize,
    /// Answered 503: their request would have taken the API past its memory budget.
    over_budget: usize,
    next_warning: Option<Instant>,
}

/// Every open API connection, bounded, with its deadline.
pub struct Conns {
    slab: Slab<Conn>,
    serials: u64,
    closed: Closed,
    next_sweep: Option<Instant>,
}

impl Default for Conns {
    fn default() -> Self {
        Conns {
            slab: Slab::new(),
            serials: 0,
            closed: Closed::default(),
            next_sweep: None,
        }
    }
}

impl Conns {
    pub fn get_mut(&mut self, key: usize) -> Option<&mut Conn> {
        self.slab.get_mut(key)
    }

    pub fn get(&self, key: usize) -> Option<&Conn> {
        self.slab.get(key)
    }

    /// Request bytes held by every connection together.
    pub fn buffered(&self) -> usize {
        self.slab.iter().map(|(_, c)| c.input.len()).sum()
    }

    /// Counts (and logs, within `warn`'s limit) a connection refused for memory.
    pub fn refused_for_memory(&mut self, now: Instant) {
        self.closed.over_budget += 1;
        self.warn(now);
    }

    /// The connection under `key` if it is still the one numbered `serial`.
    pub fn get_serial(&mut self, key: usize, serial: u64) -> Option<&mut Conn> {
        self.slab.get_mut(key).filter(|c| c.serial == serial)
    }

    pub fn remove(&mut self, key: usize) {
        self.slab.try_remove(key);
    }

    /// The key the next connection gets, making room first when every place is taken.
    pub fn make_room(&mut self, now: Instant) -> usize {
        if self.slab.len() >= MAX_CONNECTIONS {
            let oldest = self
                .slab
                .iter()
                .min_by_key(|(_, c)| c.since)
                .map(|(key, _)| key);
            if let Some(key) = oldest {
                self.slab.remove(key);
                self.closed.evicted += 1;
                self.warn(now);
            }
        }
        self.slab.vacant_key()
    }

    /// Holds `sock` under `key` (from `make_room`, with the socket registered by it).
    pub fn insert(&mut self, key: usize, sock: TcpStream, now: Instant) {
        self.serials += 1;
        let conn = Conn {
            sock,
            input: Vec::new(),
            output: Vec::new(),
            close_after: false,
            parked: false,
            serial: self.serials,
            since: now,
        };
        debug_assert_eq!(self.slab.vacant_key(), key);
        self.slab.insert(conn);
    }

    /// Closes the connections past their deadline (at most every `SWEEP_EVERY`).
    pub fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let mut timed_out = 0;
        self.slab.retain(|_, c| {
            let keep = c.parked || now < c.deadline();
            // An idle keep-alive connection closing is routine, not worth a warning.
            timed_out += usize::from(!keep && !c.idle());
            keep
        });
        self.closed.timed_out += timed_out;
        self.warn(now);
    }

    /// Logs what was closed, once per `WARN_EVERY` at most: a flood shows as one line
    /// every few seconds, not one per connection.
    fn warn(&mut self, now: Instant) {
        let c = &mut self.closed;
        if c.evicted + c.timed_out + c.over_budget == 0 || c.next_warning.is_some_and(|at| now < at)
        {
            return;
        }
        log::warn!(
            "control API: closed {} connections to make room (all {MAX_CONNECTIONS} taken: the one waiting longest goes), {} that sent no whole request within {} s and {} whose request would have taken the API past {} MiB of buffered requests; next such warning in {} s at the earliest",
            c.evicted,
            c.timed_out,
            REQUEST_TIMEOUT.as_secs(),
            c.over_budget,
            super::server::MAX_BUFFERED >> 20,
            WARN_EVERY.as_secs(),
        );
        c.evicted = 0;
        c.timed_out = 0;
        c.over_budget = 0;
        c.next_warning = Some(now + WARN_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a listener of our own (the peer end is dropped: only the
    /// bookkeeping is under test).
    fn sock() -> TcpStream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        TcpStream::from_std(stream)
    }

    #[test]
    fn a_parked_connection_outlives_its_deadline_and_a_late_one_is_told_apart() {
        let mut conns = Conns::default();
        let start = Instant::now();
        let a = conns.make_room(start);
        conns.insert(a, sock(), start);
        let waiting = conns.get_mut(a).expect("inserted");
        waiting.input.extend_from_slice(b"POST / HTTP/1.1\r\n");
        waiting.parked = true;
        let serial = waiting.serial;
        let key = conns.make_room(start);
        conns.insert(key, sock(), start);
        conns.get_mut(key).expect("inserted").input.push(b'G');
        // Past the request deadline: the one waiting for the plane stays.
        conns.sweep(start + REQUEST_TIMEOUT + Duration::from_secs(1));
        assert!(
            conns.get(key).is_none(),
            "the client's own slowness is closed"
        );
        assert!(
            conns.get_serial(a, serial).is_some(),
            "the parked one stays"
        );
        // Unparked, its answer has a deadline again, from then.
        let now = start + REQUEST_TIMEOUT * 2;
        conns.get_mut(a).expect("kept").unpark(now);
        conns.next_sweep = None;
        conns.sweep(now + REQUEST_TIMEOUT + Duration::from_secs(1));
        assert!(conns.get(a).is_none());
        // A later connection under the same key is not the one an answer was for.
        let again = conns.make_room(now);
        conns.insert(again, sock(), now);
        assert_eq!(again, a, "the key is handed out again");
        assert!(conns.get_serial(again, serial).is_none());
    }

    #[test]
    fn buffered_counts_every_connections_input() {
        let mut conns = Conns::default();
        let now = Instant::now();
        for n in [10usize, 20, 30] {
            let key = conns.make_room(now);
            conns.insert(key, sock(), now);
            conns.get_mut(key).expect("inserted").input = vec![0; n];
        }
        assert_eq!(conns.buffered(), 60);
    }
}
