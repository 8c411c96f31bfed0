//! One request and its response: choosing an upstream connection, moving the request
//! head and body to it, the response head and body back, and deciding what each
//! connection does afterwards.
//!
//! Failures carry whether a retry is safe. A connect refused or timed out moves to the
//! next instance. A reused pooled connection that fails before any response byte, for
//! an idempotent request whose body has not started, is retried once on a fresh
//! connection (the instance may have closed it while it sat in the pool). Anything else
//! becomes clb's own answer (502/503/504) while the client has seen nothing of the
//! response, and a closed client connection once it has.

use super::buffer::{Buf, BUF_SIZE};
use super::conn::{Deadline, Exchange, Phase, Ready, Response, Upstream};
use super::pipe::{Pipe, PipeError};
use super::session::Step;
use super::splice::{splice_through, take_pipe};
use super::stream::Stream;
use super::token::{self, Kind};
use super::{Worker, CONNECT_TIMEOUT};
use crate::backend::balancer::Tried;
use crate::http::canned::Canned;
use crate::http::request::Parse;
use crate::http::response::{self, MAX_RESPONSE_HEAD};
use crate::stats::Counter;
use mio::net::TcpStream;
use mio::Interest;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Bodies with at least this much left (after what was read with the head) are spliced.
const SPLICE_MIN: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The connect was refused, failed or timed out: nothing reached the instance.
    Connect,
    /// The connection broke before a response byte arrived.
    Reset,
    /// The instance stayed silent past the idle timeout.
    Timeout,
}

enum Outcome {
    Progress,
    Wait,
    Failed(Failure),
    /// clb answers in place of the instance (the client has seen no response byte).
    Answer(Canned),
    Finished {
        reuse: bool,
        close: bool,
    },
    /// Cut both connections: the client already has part of a response, or left.
    Abort,
    /// The instance answered a WebSocket handshake with 101: the pair becomes a tunnel.
    Switch,
}

impl Worker {
    pub(super) fn exchange(&mut self, key: usize) -> Step {
        let Some(mut ex) = self.take_exchange(key) else {
            return Step::Close;
        };
        match self.advance(key, &mut ex) {
            Outcome::Progress => self.resume(key, ex, Step::Progress),
            Outcome::Wait => self.resume(key, ex, Step::Wait),
            Outcome::Failed(failure) => self.upstream_failed(key, ex, failure),
            Outcome::Answer(canned) => self.fail_exchange(key, ex, canned),
            Outcome::Finished { reuse, close } => self.finish(key, ex, reuse, close),
            Outcome::Switch => self.switch_to_tunnel(key, ex),
            Outcome::Abort => {
                self.drop_exchange(ex);
                Step::Close
            }
        }
    }

    fn resume(&mut self, key: usize, ex: Exchange, step: Step) -> Step {
        if !self.clients.contains(key) {
            self.drop_exchange(ex);
            return Step::Close;
        }
        self.put_exchange(key, ex);
        step
    }

    /// Moves every byte that can move now, in both directions.
    fn advance(&mut self, key: usize, ex: &mut Exchange) -> Outcome {
        let now = self.now;
        if ex.queued {
            return Outcome::Wait;
        }
        let Some(uk) = ex.upstream else {
            return Outcome::Failed(Failure::Connect);
        };
        let (Some(c), Some(u)) = (self.clients.get_mut(key), self.upstreams.get_mut(uk)) else {
            return Outcome::Abort;
        };
        let mut progress = false;

        if !u.connected {
            if !u.ready.writable && !u.ready.readable {
                return Outcome::Wait;
            }
            match establish(u) {
                Ok(true) => {
                    u.connected = true;
                    u.deadline.at = now + u.idle;
                    progress = true;
                }
                Ok(false) => {
                    u.ready = Ready::default();
                    return Outcome::Wait;
                }
                Err(e) => {
                    log::debug!(
                        "client {}: instance connect or TLS handshake failed: {e}",
                        c.peer
                    );
                    return Outcome::Failed(Failure::Connect);
                }
            }
        }

        // Request: the rewritten head, then the body straight from the client's buffer,
        // together in one write when both are there.
        let head_left = ex
            .head
            .as_ref()
            .map_or(0, |h| h.len().saturating_sub(ex.head_sent));
        if head_left > 0 || !ex.request.finished() {
            let prefix: &[u8] = match ex.head.as_ref() {
                Some(head) if head_left > 0 => &head.bytes()[ex.head_sent..],
                _ => &[],
            };
            let rbuf = c.rbuf.get_or_insert_with(|| self.bufs.get());
            match ex
                .request
                .pump(prefix, rbuf, &mut u.sock, &mut u.ready.writable)
            {
                Ok(moved) => {
                    ex.head_sent += moved.prefix;
                    if moved.any() {
                        u.deadline.at = now + u.idle;
                        progress = true;
                    }
                }
                Err(PipeError::Framing(e)) => {
                    log::debug!("client {}: bad request body: {e}", c.peer);
                    return Outcome::Answer(Canned::BadRequest);
                }
                Err(PipeError::Write(e)) => {
                    log::debug!("client {}: instance write failed: {e}", c.peer);
                    return Outcome::Failed(Failure::Reset);
                }
            }
        }
        // More of the request body from the client, once the head is out.
        let head_sent = ex.head.as_ref().is_none_or(|h| ex.head_sent >= h.len());
        if head_sent
            && !ex.request.finished()
            && c.ready.readable
            && !c.rbuf.as_ref().is_some_and(Buf::is_full)
        {
            let rbuf = c.rbuf.get_or_insert_with(|| self.bufs.get());
            match read_some(rbuf, &mut c.sock, &mut c.ready) {
                // The client left in the middle of its request.
                Ok(ReadOutcome::Eof) | Err(_) => return Outcome::Abort,
                Ok(ReadOutcome::Blocked) => {}
                Ok(ReadOutcome::Data) => {
                    c.deadline.at = now + c.idle;
                    progress = true;
                }
            }
        }

        // Response: the head (rewritten into the client's buffer), then the body.
        if matches!(ex.response, Response::AwaitHead) {
            if u.ready.readable && !u.rbuf.as_ref().is_some_and(Buf::is_full) {
                let rbuf = u.rbuf.get_or_insert_with(|| self.bufs.get());
                match read_some(rbuf, &mut u.sock, &mut u.ready) {
                    Ok(ReadOutcome::Eof) | Err(_) if ex.response_started => {
                        return Outcome::Answer(Canned::BadGateway)
                    }
                    Ok(ReadOutcome::Eof) | Err(_) => return Outcome::Failed(Failure::Reset),
                    Ok(ReadOutcome::Blocked) => {}
                    Ok(ReadOutcome::Data) => {
                        ex.response_started = true;
                        u.deadline.at = now + u.idle;
                        progress = true;
                    }
                }
            }
            // Informational heads queue in the client's buffer; a client that does not
            // read them holds the next one back instead of growing the buffer.
            let room = c.wbuf.as_ref().is_none_or(|w| w.len() < BUF_SIZE);
            if let Some(rbuf) = u.rbuf.as_mut().filter(|b| room && !b.is_empty()) {
                let wbuf = c.wbuf.get_or_insert_with(|| self.bufs.get());
                match response::forward_head(rbuf.bytes(), &ex.req, wbuf) {
                    Ok(Parse::Complete(info)) => {
                        if let (Some(state), false) = (ex.sticky.as_ref(), info.informational) {
                            let lines = sticky_cookies(
                                state,
                                &rbuf.bytes()[..info.head_len],
                                &self.topo,
                                ex.instance,
                                ex.backend,
                                &self.settings.sticky_key,
                            );
                            if let Some(lines) = lines {
                                wbuf.pop_crlf();
                                wbuf.extend(lines.as_bytes());
                                wbuf.extend(b"\r\n");
                            }
                        }
                        rbuf.consume(info.head_len);
                        progress = true;
                        if !info.informational {
                            let (lb, zone) = stats_slots(&self.topo, ex.instance);
                            let stats = &self.settings.stats;
                            stats.add(lb, zone, Counter::RequestCount, 1);
                            stats.backend_status(lb, zone, info.status);
                            stats.latency(lb, zone, now.saturating_duration_since(ex.dispatched));
                            if let Some(log) = ex.log.as_mut() {
                                log.response_head_at = Some(now);
                                log.backend_status = Some(info.status);
                            }
                            if info.switching {
                                return Outcome::Switch;
                            }
                            ex.response = Response::Body {
                                pipe: Pipe::new(info.body, info.dechunk),
                                reusable: info.reusable,
                                client_close: info.client_close,
                            };
                        }
                    }
                    Ok(Parse::Partial) => {
                        if rbuf.is_full() {
                            rbuf.grow_to(MAX_RESPONSE_HEAD);
                        }
                    }
                    Err(e) => {
                        log::debug!(
                            "instance {}: {}",
                            self.topo
                                .backends
                                .get(u.backend)
                                .map_or("?".into(), |b| b.addr.to_string()),
                            e.0
                        );
                        return Outcome::Answer(Canned::BadGateway);
                    }
                }
                self.bufs.release_if_empty(&mut c.wbuf);
            }
        }
        if let Response::Body { pipe, .. } = &mut ex.response {
            if ex.kernel.is_none() {
                // The response head (and any answer queued before it) leads the body, in
                // the same write.
                let prefix: &[u8] = c.wbuf.as_ref().map_or(&[], |w| w.bytes());
                let rbuf = u.rbuf.get_or_insert_with(|| self.bufs.get());
                match pipe.pump(prefix, rbuf, &mut c.sock, &mut c.ready.writable) {
                    Ok(moved) => {
                        if let Some(wbuf) = c.wbuf.as_mut() {
                            wbuf.consume(moved.prefix);
                        }
                        self.bufs.release_if_empty(&mut c.wbuf);
                        if moved.any() {
                            c.deadline.at = now + c.idle;
                            progress = true;
                        }
                    }
                    Err(PipeError::Framing(e)) => {
                        log::debug!("instance response to {}: {e}", c.peer);
                        return Outcome::Abort;
                    }
                    Err(PipeError::Write(e)) => {
                        log::debug!("client {}: write failed: {e}", c.peer);
                        return Outcome::Abort;
                    }
                }
                // The rest of a large body of known length goes kernel to kernel, once
                // nothing of it is left in user space (ordering: buffered bytes first).
                let drained = c.wbuf.is_none() && u.rbuf.as_ref().is_none_or(Buf::is_empty);
                if drained
                    && self.settings.splice
                    && c.sock.plain().is_some()
                    && u.sock.plain().is_some()
                    && pipe.splice_worthy(SPLICE_MIN)
                {
                    ex.kernel = take_pipe(&mut self.pipes);
                }
            }
            if let (Some(kernel), Some(to_client), Some(from_instance)) =
                (ex.kernel.as_mut(), c.sock.plain(), u.sock.plain())
            {
                let left = pipe.length_left();
                match splice_through(
                    kernel,
                    left,
                    from_instance,
                    &mut u.ready,
                    to_client,
                    &mut c.ready,
                ) {
                    // The instance closed before the whole body came.
                    Ok(spliced) if spliced.eof => return Outcome::Abort,
                    Ok(spliced) => {
                        pipe.spliced(spliced.filled);
                        if spliced.filled > 0 {
                            u.deadline.at = now + u.idle;
                        }
                        if spliced.drained {
                            c.deadline.at = now + c.idle;
                        }
                        progress |= spliced.any();
                    }
                    Err(e) => {
                        log::debug!("client {}: spliced body failed: {e}", c.peer);
                        return Outcome::Abort;
                    }
                }
            } else if !pipe.finished()
                && u.ready.readable
                && !u.rbuf.as_ref().is_some_and(Buf::is_full)
            {
                let rbuf = u.rbuf.get_or_insert_with(|| self.bufs.get());
                match read_some(rbuf, &mut u.sock, &mut u.ready) {
                    Ok(ReadOutcome::Eof) if pipe.source_closed() => progress = true,
                    // Cut short: the client's connection is closed so it sees the truncation.
                    Ok(ReadOutcome::Eof) | Err(_) => return Outcome::Abort,
                    Ok(ReadOutcome::Blocked) => {}
                    Ok(ReadOutcome::Data) => {
                        u.deadline.at = now + u.idle;
                        progress = true;
                    }
                }
            }
            self.bufs.release_if_empty(&mut u.rbuf);
        }

        if let Response::Body {
            pipe,
            reusable,
            client_close,
        } = &ex.response
        {
            let spliced_out = ex.kernel.as_ref().is_none_or(|k| k.buffered == 0);
            if pipe.finished() && c.wbuf.is_none() && spliced_out {
                let request_done = ex.request.finished();
                let clean =
                    u.rbuf.as_ref().is_none_or(Buf::is_empty) && !u.ready.hup && still_idle(u);
                return Outcome::Finished {
                    reuse: *reusable && clean && request_done,
                    // A response that ended before its request did leaves the client
                    // stream mid-message: it cannot carry another request.
                    close: *client_close || !request_done,
                };
            }
        }
        if progress {
            Outcome::Progress
        } else {
            Outcome::Wait
        }
    }

    /// Attaches a pooled or new upstream connection to `ex`; false when no instance is left.
    pub(super) fn attach_upstream(&mut self, key: usize, ex: &mut Exchange, fresh: bool) -> bool {
        let now = self.now;
        let Some((listener, zone, idle)) =
            self.clients.get(key).map(|c| (c.listener, c.zone, c.idle))
        else {
            return false;
        };
        // Sticky sessions: the instance the cookie names, while it is healthy (spec §7.8:
        // otherwise the usual pick, as if there were no cookie, and a new cookie).
        let named = ex.sticky.as_ref().and_then(|s| s.target.clone());
        let sticky_pick = named.and_then(|(id, port)| {
            self.balancer
                .pick_named(&self.topo, listener, zone, &mut ex.tried, &id, port)
        });
        if let Some(state) = ex.sticky.as_mut() {
            state.set_cookie = sticky_pick.is_none();
        }
        let mut sticky_pick = sticky_pick;
        while let Some(pick) = sticky_pick.take().or_else(|| {
            self.balancer
                .pick(&self.topo, listener, zone, &mut ex.tried, now)
        }) {
            if !fresh {
                while let Some(uk) = self.pool.pop(pick.backend) {
                    let Some(u) = self.upstreams.get_mut(uk) else {
                        continue;
                    };
                    if u.ready.readable || u.ready.hup {
                        self.close_upstream(uk);
                        continue;
                    }
                    u.owner = Some(key);
                    u.deadline.at = now + u.idle;
                    self.bind(ex, uk, pick.backend, pick.instance, true);
                    return true;
                }
            }
            let Some(addr) = self.topo.backends.get(pick.backend).map(|b| b.addr) else {
                continue;
            };
            match self.connect(addr, key, pick.backend, idle) {
                Ok(uk) => {
                    self.bind(ex, uk, pick.backend, pick.instance, false);
                    return true;
                }
                Err(e) => {
                    log::debug!("connect to {addr} failed: {e}");
                    self.balancer.refused(pick.backend, now);
                }
            }
        }
        false
    }

    fn bind(
        &mut self,
        ex: &mut Exchange,
        upstream: usize,
        backend: usize,
        instance: usize,
        reused: bool,
    ) {
        ex.upstream = Some(upstream);
        ex.dispatched = self.now;
        if let Some(log) = ex.log.as_mut() {
            log.backend = self.topo.backends.get(backend).map(|b| b.addr);
        }
        ex.backend = backend;
        ex.instance = instance;
        ex.reused = reused;
        let pool = if reused {
            &self.settings.stats.backend_pool_hits
        } else {
            &self.settings.stats.backend_pool_misses
        };
        pool.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ex.slot = self
            .topo
            .instances
            .get(instance)
            .map_or(usize::MAX, |v| v.slot);
        self.balancer.begin(instance);
        self.in_flight.begin(ex.slot);
    }

    fn connect(
        &mut self,
        addr: SocketAddr,
        owner: usize,
        backend: usize,
        idle: Duration,
    ) -> io::Result<usize> {
        let mut sock = TcpStream::connect(addr)?;
        let _ = sock.set_nodelay(true);
        let tls = self.topo.backends.get(backend).is_some_and(|b| b.tls);
        let tls_config = tls.then(|| self.backend_tls_for(backend));
        let generation = self.generations.issue();
        let entry = self.upstreams.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut sock,
            token::encode(Kind::Backend, generation, key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let sock = if let Some(config) = tls_config {
            Stream::tls_client(sock, config, addr.ip())?
        } else {
            Stream::Plain(sock)
        };
        entry.insert(Upstream {
            sock,
            generation,
            backend,
            ready: Ready::default(),
            connected: false,
            rbuf: None,
            owner: Some(owner),
            deadline: Deadline::new(self.now + CONNECT_TIMEOUT.min(idle)),
            idle,
        });
        Ok(key)
    }

    /// Lets go of the exchange's upstream connection: back to the pool, or closed.
    fn detach(&mut self, ex: &mut Exchange, reuse: bool) {
        let Some(uk) = ex.upstream.take() else { return };
        self.balancer.end(ex.instance);
        self.in_flight.end(ex.slot);
        if reuse {
            if let Some(u) = self.upstreams.get_mut(uk) {
                u.owner = None;
                self.bufs.release(&mut u.rbuf);
                u.deadline.at = self.now + u.idle;
                if self.pool.push(u.backend, uk) {
                    self.arm_upstream(uk);
                    return;
                }
            }
        }
        self.close_upstream(uk);
    }

    pub(super) fn drop_exchange(&mut self, mut ex: Exchange) {
        self.release_exchange(&mut ex);
    }

    fn release_exchange(&mut self, ex: &mut Exchange) {
        self.bufs.release(&mut ex.head);
        let kernel = ex.kernel.take();
        self.return_kernel_pipe(kernel);
        self.detach(ex, false);
    }

    fn finish(&mut self, key: usize, mut ex: Exchange, reuse: bool, close: bool) -> Step {
        let status = ex.log.as_ref().and_then(|l| l.backend_status);
        self.log_exchange(key, &mut ex, status);
        self.bufs.release(&mut ex.head);
        let kernel = ex.kernel.take();
        self.return_kernel_pipe(kernel);
        self.detach(&mut ex, reuse);
        let stopping = self.stopping();
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        c.phase = if close || c.read_closed || stopping {
            Phase::Closing {
                linger: !ex.request.finished(),
            }
        } else {
            Phase::IDLE
        };
        self.bufs.release_if_empty(&mut c.rbuf);
        Step::Progress
    }

    /// clb answers instead of the instance; the upstream connection is never reused.
    pub(super) fn fail_exchange(&mut self, key: usize, mut ex: Exchange, canned: Canned) -> Step {
        if matches!(ex.response, Response::AwaitHead) {
            // ELB: no instance in the line when none answered.
            if let Some(log) = ex.log.as_mut() {
                log.backend = None;
            }
            self.log_exchange(key, &mut ex, Some(canned.status()));
        } else {
            let status = ex.log.as_ref().and_then(|l| l.backend_status);
            self.log_exchange(key, &mut ex, status);
        }
        let request_done = ex.request.finished();
        let answered = !matches!(ex.response, Response::AwaitHead);
        self.release_exchange(&mut ex);
        let Some(c) = self.clients.get(key) else {
            return Step::Close;
        };
        if answered {
            return Step::Close;
        }
        let keep = canned.keeps_connection()
            && ex.req.keep_alive
            && !ex.req.close_after
            && request_done
            && !c.read_closed;
        log::debug!("client {}: answering {canned}", c.peer);
        self.answer(key, canned, keep)
    }

    pub(super) fn upstream_failed(
        &mut self,
        key: usize,
        mut ex: Exchange,
        failure: Failure,
    ) -> Step {
        let retry_fresh = failure == Failure::Reset
            && ex.reused
            && ex.req.idempotent
            && !ex.request.started
            && !ex.retried
            && !ex.response_started;
        match failure {
            Failure::Connect => {
                let (lb, zone) = stats_slots(&self.topo, ex.instance);
                self.settings
                    .stats
                    .add(lb, zone, Counter::BackendConnectionErrors, 1);
                self.balancer.refused(ex.backend, self.now);
                self.detach(&mut ex, false);
                if self.attach_upstream(key, &mut ex, false) {
                    return self.resume(key, ex, Step::Progress);
                }
                self.fail_exchange(key, ex, Canned::ServiceUnavailable)
            }
            Failure::Reset if retry_fresh => {
                self.detach(&mut ex, false);
                ex.retried = true;
                ex.head_sent = 0;
                ex.tried = Tried::default();
                if self.attach_upstream(key, &mut ex, true) {
                    return self.resume(key, ex, Step::Progress);
                }
                self.fail_exchange(key, ex, Canned::ServiceUnavailable)
            }
            Failure::Reset | Failure::Timeout => {
                self.fail_exchange(key, ex, Canned::GatewayTimeout)
            }
        }
    }

    /// An upstream connection's deadline passed: connect, response wait, or pool idle.
    pub(super) fn upstream_timed_out(&mut self, uk: usize) {
        let Some(u) = self.upstreams.get(uk) else {
            return;
        };
        let connected = u.connected;
        let Some(key) = u.owner else {
            self.close_upstream(uk);
            return;
        };
        if !self.clients.contains(key) {
            self.close_upstream(uk);
            return;
        }
        if matches!(
            self.clients.get(key).map(|c| &c.phase),
            Some(Phase::Tunnel(_))
        ) {
            let step = if connected {
                Step::Close
            } else {
                self.tunnel_connect_timed_out(key)
            };
            match step {
                Step::Close => self.close_client(key),
                _ => self.drive(key),
            }
            return;
        }
        let awaiting = self
            .exchange_of(key)
            .is_some_and(|ex| matches!(ex.response, Response::AwaitHead));
        if !awaiting {
            // The instance stalled mid-response: nothing can be said to the client any more.
            self.close_client(key);
            return;
        }
        let Some(ex) = self.take_exchange(key) else {
            return;
        };
        let failure = if connected {
            Failure::Timeout
        } else {
            Failure::Connect
        };
        match self.upstream_failed(key, ex, failure) {
            Step::Close => self.close_client(key),
            _ => self.drive(key),
        }
    }
}

impl Worker {
    /// The access-log line of a finished (or failed) exchange.
    pub(super) fn log_exchange(&mut self, key: usize, ex: &mut Exchange, elb_status: Option<u16>) {
        let Some(log) = ex.log.take() else { return };
        let Some(c) = self.clients.get(key) else {
            return;
        };
        let topo = self.topo.clone();
        let lb = topo.lb_name_of(c.listener);
        let dispatched = log.backend.map(|_| ex.dispatched);
        let response_bytes = match &ex.response {
            Response::Body { pipe, .. } => pipe.moved,
            Response::AwaitHead => 0,
        };
        let entry = crate::access_log::Entry {
            time: log.time,
            lb,
            client: c.peer,
            backend: log.backend,
            request_processing: dispatched.map(|at| at.saturating_duration_since(log.received)),
            backend_processing: dispatched
                .zip(log.response_head_at)
                .map(|(sent, head)| head.saturating_duration_since(sent)),
            response_processing: log.response_head_at.map(|_| Duration::ZERO),
            elb_status,
            backend_status: log.backend_status,
            received_bytes: ex.request.moved,
            sent_bytes: response_bytes,
            request: Some(&log.request),
            user_agent: Some(&log.user_agent),
            tls: c.sock.tls_names(),
        };
        self.access_log(&entry);
    }
}

/// The `Set-Cookie` lines a response gets for stickiness (spec §7.4–7.10), if any.
fn sticky_cookies(
    state: &super::conn::StickyState,
    response_head: &[u8],
    topo: &crate::config::Topology,
    instance: usize,
    backend: usize,
    key: &crate::http::sticky::Key,
) -> Option<String> {
    use crate::http::sticky::{application_cookies, duration_cookies, Policy};
    let id = &topo.instances.get(instance)?.id;
    let port = topo.backends.get(backend)?.addr.port();
    match &state.policy {
        Policy::Duration { period } => state
            .set_cookie
            .then(|| duration_cookies(&key.token(id, port), *period)),
        Policy::Application { cookie } => {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            resp.parse(response_head).ok()?;
            let set_cookies: Vec<&[u8]> = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
                .map(|h| h.value)
                .collect();
            application_cookies(&set_cookies, cookie, &key.token(id, port))
        }
    }
}

/// The metric slots (load balancer, zone) of requests served by `instance`.
pub(super) fn stats_slots(topo: &crate::config::Topology, instance: usize) -> (usize, usize) {
    topo.instances.get(instance).map_or((usize::MAX, 0), |v| {
        let lb = topo.lbs.get(v.lb).map_or(usize::MAX, |l| l.stats_slot);
        (lb, v.zone_slot)
    })
}

/// Completes the connect and, to a TLS instance, the handshake: `Ok(false)` while
/// either is still in progress.
pub(super) fn establish(u: &mut Upstream) -> io::Result<bool> {
    if !connect_status(u.sock.tcp())? {
        return Ok(false);
    }
    if !u.sock.is_tls() {
        return Ok(true);
    }
    if u.sock.handshake()? {
        // Edge-triggered readiness spent on the handshake is not signalled again.
        u.ready.readable = true;
        u.ready.writable = true;
        return Ok(true);
    }
    Ok(false)
}

/// Completes a non-blocking connect: `Ok(false)` while still in progress.
pub(super) fn connect_status(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// A readable source, and whether a read shorter than asked proves it is drained: true
/// for a socket; for TLS only when the socket read under it was short as well.
pub(super) trait Drained: io::Read {
    fn short_read_drains(&self) -> bool;
}

impl Drained for TcpStream {
    fn short_read_drains(&self) -> bool {
        true
    }
}

impl Drained for super::stream::Stream {
    fn short_read_drains(&self) -> bool {
        super::stream::Stream::short_read_drains(self)
    }
}

pub(super) enum ReadOutcome {
    Data,
    Eof,
    Blocked,
}

/// One read into `buf`. A read shorter than the free space drained the socket, so the
/// readiness flag drops without spending a `WouldBlock` read on it (edge-triggered: the
/// next arrival raises a new event).
pub(super) fn read_some(
    buf: &mut Buf,
    sock: &mut impl Drained,
    ready: &mut Ready,
) -> io::Result<ReadOutcome> {
    let free = buf.free();
    match buf.read_from(sock) {
        Ok(0) => Ok(ReadOutcome::Eof),
        Ok(n) => {
            // After a hang-up the next read returns the EOF, and no new event will say so.
            if n < free && !ready.hup && sock.short_read_drains() {
                ready.readable = false;
            }
            Ok(ReadOutcome::Data)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            ready.readable = false;
            Ok(ReadOutcome::Blocked)
        }
        Err(e) => Err(e),
    }
}

/// A finished upstream connection may still hold an unread EOF or stray bytes; only
/// one with nothing pending goes back to the pool.
fn still_idle(u: &mut Upstream) -> bool {
    if !u.ready.readable {
        return true;
    }
    if u.sock.is_tls() {
        // Through rustls, so a late session ticket is taken in; any plaintext or a
        // close_notify means the connection is not clean.
        return match io::Read::read(&mut u.sock, &mut [0u8; 1]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                u.ready.readable = false;
                true
            }
            _ => false,
        };
    }
    match u.sock.tcp().peek(&mut [0u8; 1]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            u.ready.readable = false;
            true
        }
        _ => false,
    }
}
