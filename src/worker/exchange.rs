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

use super::conn::{Exchange, Phase, Ready, Response};
use super::pipe::{Pipe, PipeError};
use super::session::Step;
use super::splice::{splice_through, take_pipe};
use super::sticky::sticky_cookies;
use super::upstream::{establish, still_idle};
use super::Worker;
use crate::backend::balancer::Tried;
use crate::buffer::{Buf, BUF_SIZE};
use crate::http::canned::Canned;
use crate::http::request::Parse;
use crate::http::response::{self, MAX_RESPONSE_HEAD};
use crate::stats::Counter;
use mio::net::TcpStream;
use std::io;

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

    fn resume(&mut self, key: usize, ex: Box<Exchange>, step: Step) -> Step {
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

    pub(super) fn drop_exchange(&mut self, mut ex: Box<Exchange>) {
        self.release_exchange(&mut ex);
    }

    fn release_exchange(&mut self, ex: &mut Exchange) {
        self.bufs.release(&mut ex.head);
        let kernel = ex.kernel.take();
        self.return_kernel_pipe(kernel);
        self.detach(ex, false);
    }

    fn finish(&mut self, key: usize, mut ex: Box<Exchange>, reuse: bool, close: bool) -> Step {
        let status = ex.log.as_ref().and_then(|l| l.backend_status);
        self.log_exchange(key, &mut ex, status);
        self.bufs.release(&mut ex.head);
        let kernel = ex.kernel.take();
        self.return_kernel_pipe(kernel);
        self.detach(&mut ex, reuse);
        let stopping = self.stopping();
        let linger = !ex.request.finished();
        self.recycle_exchange(ex);
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        c.phase = if close || c.read_closed || stopping {
            Phase::Closing { linger }
        } else {
            Phase::IDLE
        };
        self.bufs.release_if_empty(&mut c.rbuf);
        Step::Progress
    }

    /// clb answers instead of the instance; the upstream connection is never reused.
    pub(super) fn fail_exchange(
        &mut self,
        key: usize,
        mut ex: Box<Exchange>,
        canned: Canned,
    ) -> Step {
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
        mut ex: Box<Exchange>,
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

/// The metric slots (load balancer, zone) of requests served by `instance`.
pub(super) fn stats_slots(topo: &crate::config::Topology, instance: usize) -> (usize, usize) {
    topo.instances.get(instance).map_or((usize::MAX, 0), |v| {
        let lb = topo.lbs.get(v.lb).map_or(usize::MAX, |l| l.stats_slot);
        (lb, v.zone_slot)
    })
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
