//! The control thread: its own mio loop serving the Query API over HTTP/1.1, and the
//! timer that ends connection draining.
//!
//! API traffic is light and each answer is computed at once, so a connection is just a
//! bounded input buffer and an output buffer: requests are read whole (head ≤ 64 KiB,
//! body ≤ 1 MiB), answered in order, and the connection kept alive as HTTP/1.1 allows.
//! How many connections, and for how long, is `conns`' business.
//!
//! Except a write whose store is a network round trip (etcd): its connection is parked
//! until the committer thread's `Event::Committed`, while the loop answers everything
//! else. The next write waits its turn (its connection parked too, at most `MAX_HELD`
//! of them; more are throttled), and so do changes from other nodes, so that the model
//! a write was made on is the one it replaces. When a write finds the store unreachable,
//! the writes held behind it get its 503 at once rather than a round trip each.

use super::conns::{Conn, Conns};
use super::error::ApiError;
use super::plane::{Plane, Ran};
use super::query;
use super::responses::{html_response, metrics_response, plain, with_header, xml_response};
use super::sigv4::{self, Credentials, SignedRequest};
use super::xml;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// What other threads (the signal thread, the cluster watch) ask of the control thread.
pub enum Event {
    /// SIGHUP: load the certificate files again.
    ReloadCertificates,
    /// SIGTERM or SIGINT: stop accepting, let in-flight requests finish.
    Shutdown,
    /// Membership (crate::cluster::members): the live nodes changed.
    Nodes(Vec<crate::config::node::NodeInfo>),
    /// What the cluster watch saw in etcd: other nodes' changes, or a full resync.
    Cluster(crate::cluster::follow::Remote),
    /// The committer thread: the outcome of a write's store round trip (its ticket).
    Committed(u64, super::store::TripOutcome),
}

/// How to reach the control thread.
#[derive(Clone)]
pub struct ControlHandle {
    sender: Sender<Event>,
    waker: Arc<Waker>,
}

impl ControlHandle {
    pub fn send(&self, event: Event) -> bool {
        self.sender.send(event).is_ok() && self.waker.wake().is_ok()
    }
}

pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 1024 * 1024;
/// Request bytes all API connections may hold at once (64 large bodies); a connection
/// whose request would take more is answered 503 and closed.
pub const MAX_BUFFERED: usize = 64 * MAX_BODY;
/// Writes held behind the one waiting for the store; more are answered `Throttling`.
const MAX_HELD: usize = 64;
/// How often draining is checked while an instance drains, and (with `--cluster`) how
/// often the health board is scanned for transitions to publish.
const DRAIN_TICK: Duration = Duration::from_millis(100);

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Conns,
    plane: Plane,
    credentials: Option<Credentials>,
    events: Receiver<Event>,
    writes: Writes,
}

/// The connections that wait for the plane's writes, and what waits with them.
#[derive(Default)]
struct Writes {
    /// The connection whose write waits for the store.
    waiting: Option<Waiter>,
    /// Connections with a write to run once that one is answered, in arrival order.
    held: VecDeque<(usize, u64)>,
    /// Other nodes' changes that came meanwhile, applied once it is answered.
    deferred: Vec<crate::cluster::follow::Remote>,
    /// While the writes held behind one the store refused (503) are answered: that error.
    refusing: Option<ApiError>,
}

struct Waiter {
    key: usize,
    serial: u64,
    action: String,
    request_id: String,
}

/// What one request at the front of a connection's input comes to.
enum Answer {
    /// Not whole yet.
    Incomplete,
    /// Bytes used, the response, and whether to close after it.
    Respond(usize, Vec<u8>, bool),
    /// A write waiting for the store (`Writes::waiting`): bytes used, close after.
    Wait(usize, bool),
    /// A write that must wait for the one under way: nothing used yet.
    Hold,
}

impl Server {
    pub fn new(
        plane: Plane,
        listener: Option<std::net::TcpListener>,
        credentials: Option<Credentials>,
    ) -> io::Result<(Server, ControlHandle)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (sender, events) = mpsc::channel();
        let listener = match listener {
            Some(std) => {
                std.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(std);
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let handle = ControlHandle {
            sender,
            waker: Arc::new(waker),
        };
        let mut plane = plane;
        if plane.store.as_ref().is_some_and(|s| s.round_trips()) {
            plane.committer = Some(super::committer::Committer::spawn(handle.clone())?);
        }
        let server = Server {
            poll,
            listener,
            conns: Conns::default(),
            plane,
            credentials,
            events,
            writes: Writes::default(),
        };
        Ok((server, handle))
    }

    /// The plane, before the thread runs (runtime hands it the cluster membership).
    pub fn plane_mut(&mut self) -> &mut Plane {
        &mut self.plane
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if self.plane.model.draining() || self.plane.fleet_health.is_some() {
                DRAIN_TICK
            } else {
                Duration::from_secs(1)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {
                        while let Ok(event) = self.events.try_recv() {
                            match event {
                                Event::ReloadCertificates => self.plane.reload_tls(),
                                Event::Shutdown => self.plane.shutdown(),
                                Event::Nodes(nodes) => self.plane.set_nodes(nodes),
                                Event::Cluster(remote) if self.plane.busy() => {
                                    self.writes.deferred.push(remote)
                                }
                                Event::Cluster(remote) => self.plane.follow(remote),
                                Event::Committed(ticket, outcome) => {
                                    self.committed(ticket, outcome)
                                }
                            }
                        }
                    }
                    Token(key) => self.serve(key),
                }
            }
            let now = Instant::now();
            self.plane.tick(now);
            self.conns.sweep(now);
        }
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let now = Instant::now();
                    let key = self.conns.make_room(now);
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut sock,
                            Token(key),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        self.conns.insert(key, sock, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("API accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what came, answers whole requests one at a time (the next only once the
    /// previous answer is written: a client that does not read gets no more), writes.
    fn serve(&mut self, key: usize) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let eof = read_available(conn, now);
        // Bodies by the hundred, each up to 1 MiB, would otherwise add up to a GiB. A
        // parked connection is left alone: its answer is still to come, in order.
        if !conn.parked && conn.input.len() > MAX_HEAD && self.conns.buffered() > MAX_BUFFERED {
            if let Some(conn) = self.conns.get_mut(key) {
                // After any answer still being written, in order.
                conn.input = Vec::new();
                conn.output.extend_from_slice(&plain(
                    503,
                    "the API holds too many large requests at once; try again",
                ));
                conn.close_after = true;
                self.conns.refused_for_memory(now);
            }
        }
        let mut failed = false;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match flush(conn, now) {
                Ok(true) => {}
                Ok(false) => break,
                Err(()) => {
                    failed = true;
                    break;
                }
            }
            if conn.close_after || conn.parked {
                break;
            }
            let (input, serial) = (std::mem::take(&mut conn.input), conn.serial);
            let (consumed, response, close) = match self.answer(&input, key, serial) {
                Answer::Respond(consumed, response, close) => (consumed, response, close),
                Answer::Wait(consumed, close) => (consumed, Vec::new(), close),
                Answer::Incomplete | Answer::Hold => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.input = input;
                    }
                    break;
                }
            };
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            conn.input = input[consumed.min(input.len())..].to_vec();
            conn.output = response;
            conn.close_after |= close;
        }
        let parked = self.conns.get(key).is_some_and(|c| c.parked);
        let done = self
            .conns
            .get(key)
            .is_some_and(|c| c.close_after && c.output.is_empty() && !c.parked);
        // A client that stopped sending may still wait for the answer being made: its
        // connection is served again (and reads the end again) once the plane answers.
        if failed || done || (eof && !parked) {
            self.conns.remove(key);
        }
    }

    /// One whole request at the front of `input`, from connection `key` (`serial`).
    fn answer(&mut self, input: &[u8], key: usize, serial: u64) -> Answer {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => return Answer::Incomplete,
            Ok(httparse::Status::Partial) => {
                return Answer::Respond(input.len(), plain(431, "request head too large"), true)
            }
            Err(_) => return Answer::Respond(input.len(), plain(400, "malformed request"), true),
        };
        let method = req.method.unwrap_or("");
        let target = req.path.unwrap_or("/");
        let mut length = 0usize;
        let mut close = req.version == Some(0);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                {
                    Some(n) if n <= MAX_BODY => length = n,
                    _ => {
                        return Answer::Respond(
                            input.len(),
                            plain(413, "body too large or bad Content-Length"),
                            true,
                        )
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Answer::Respond(input.len(), plain(411, "Content-Length required"), true);
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= h.value.eq_ignore_ascii_case(b"close");
            }
        }
        if input.len() < head_len + length {
            return Answer::Incomplete;
        }
        let body = &input[head_len..head_len + length];
        let header_list: Vec<(&str, &[u8])> =
            req.headers.iter().map(|h| (h.name, h.value)).collect();
        let (path, query_string) = target.split_once('?').unwrap_or((target, ""));
        let used = head_len + length;
        match self.handle(method, path, query_string, &header_list, body, key, serial) {
            Handled::Response(response) => Answer::Respond(used, response, close),
            Handled::Waiting => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.parked = true;
                }
                Answer::Wait(used, close)
            }
            Handled::Held => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.parked = true;
                }
                self.writes.held.push_back((key, serial));
                Answer::Hold
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        method: &str,
        path: &str,
        query_string: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        key: usize,
        serial: u64,
    ) -> Handled {
        use Handled::Response;
        if method == "GET" && path == "/metrics" {
            // Outside SigV4: Prometheus cannot sign its scrapes.
            return Response(metrics_response(&self.plane.metrics()));
        }
        if method == "GET" && path == "/" && query_string.is_empty() {
            // A browser's visit: the status page (API calls always carry an Action).
            let waiting = self.writes.held.len() + usize::from(self.plane.busy());
            return Response(html_response(&self.plane.status_page(waiting)));
        }
        let request_id = xml::request_id();
        if method != "GET" && method != "POST" {
            return Response(plain(405, "the API takes GET and POST"));
        }
        if let Some(creds) = &self.credentials {
            let signed = SignedRequest {
                method,
                path,
                query: query_string,
                headers,
                body,
            };
            if let Err(e) = sigv4::verify(&signed, creds, SystemTime::now()) {
                return Response(xml_response(
                    e.status(),
                    &xml::error(e.code(), &e.message(), &request_id, true),
                    &request_id,
                ));
            }
        }
        let form = if method == "POST" { body } else { b"" };
        let params = match query::parse(query_string.as_bytes(), form) {
            Ok(params) => params,
            Err(e) => {
                return Response(xml_response(
                    e.status(),
                    &xml::error(e.code(), &e.message(), &request_id, true),
                    &request_id,
                ))
            }
        };
        if params.is_empty() && method == "GET" {
            return Response(plain(
                200,
                "clb control API: ELB 2012-06-01 Query protocol\n",
            ));
        }
        let action = params.action().unwrap_or("-").to_string();
        let mutates = super::actions::mutates(&action);
        if let (true, Some(e)) = (mutates, &self.writes.refusing) {
            return Response(self.respond(&action, &request_id, Err(e.clone())));
        }
        if self.plane.busy() && mutates {
            if self.writes.held.len() >= MAX_HELD {
                let e = ApiError::throttling(format!(
                    "Rate exceeded: {MAX_HELD} API changes are waiting for the store already; try again"
                ));
                return Response(self.respond(&action, &request_id, Err(e)));
            }
            return Handled::Held;
        }
        match self.plane.run(&params, &request_id, Instant::now()) {
            Ran::Done(result) => Response(self.respond(&action, &request_id, result)),
            Ran::Pending => {
                self.writes.waiting = Some(Waiter {
                    key,
                    serial,
                    action,
                    request_id,
                });
                Handled::Waiting
            }
        }
    }

    /// An action's answer as the client gets it.
    fn respond(&self, action: &str, request_id: &str, result: Result<String, ApiError>) -> Vec<u8> {
        match result {
            Ok(body) => {
                log::debug!("API {action}: ok ({request_id})");
                let response = xml_response(200, &body, request_id);
                match self.plane.stale() {
                    // README "State in etcd": reads say what they serve.
                    Some(why) => with_header(response, "x-clb-stale", &why),
                    None => response,
                }
            }
            Err(e) => {
                log::info!("API {action}: {e} ({request_id})");
                xml_response(
                    e.status,
                    &xml::error(e.code, &e.message, request_id, e.sender()),
                    request_id,
                )
            }
        }
    }

    /// A write's round trip is over: its answer goes out, then what waited behind it.
    fn committed(&mut self, ticket: u64, outcome: super::store::TripOutcome) {
        let Some(result) = self.plane.committed(ticket, outcome) else {
            return;
        };
        let now = Instant::now();
        // The store unreachable: the writes that waited behind this one would each wait
        // out a round trip of their own, and almost surely fail the same way; they are
        // answered with this one's 503 at once (new writes after them try again).
        self.writes.refusing = result.as_ref().err().filter(|e| e.status == 503).cloned();
        if let Some(waiter) = self.writes.waiting.take() {
            let response = self.respond(&waiter.action, &waiter.request_id, result);
            if let Some(conn) = self.conns.get_serial(waiter.key, waiter.serial) {
                conn.output = response;
                conn.unpark(now);
                self.serve(waiter.key);
            }
        }
        // Each of these may start a write again, and the rest wait for that one.
        while !self.plane.busy() && !self.writes.deferred.is_empty() {
            let remote = self.writes.deferred.remove(0);
            self.plane.follow(remote);
        }
        while !self.plane.busy() {
            let Some((key, serial)) = self.writes.held.pop_front() else {
                break;
            };
            if let Some(conn) = self.conns.get_serial(key, serial) {
                conn.unpark(now);
                self.serve(key);
            }
        }
        self.writes.refusing = None;
    }
}

/// What `handle` did with a request.
enum Handled {
    Response(Vec<u8>),
    /// A write waiting for the store (`Writes::waiting`).
    Waiting,
    /// A write behind the one waiting (`Writes::held`).
    Held,
}

/// Takes in what the socket has (up to one request's worth of bytes): true at EOF or
/// on an error.
fn read_available(conn: &mut Conn, now: Instant) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match conn.sock.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                conn.receiving(now);
                conn.input.extend_from_slice(&chunk[..n]);
                if conn.input.len() > MAX_HEAD + MAX_BODY {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Writes what is pending: `Ok(true)` once nothing is, `Ok(false)` while the socket
/// takes no more, `Err` when the peer is gone.
fn flush(conn: &mut Conn, now: Instant) -> Result<bool, ()> {
    if conn.output.is_empty() {
        return Ok(true);
    }
    while !conn.output.is_empty() {
        match conn.sock.write(&conn.output) {
            Ok(0) => return Err(()),
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    conn.answered(now);
    Ok(true)
}
