//! Driving a client session through its phases: read a head, serve the exchange,
//! answer and close.
//!
//! `drive` calls `step` until nothing moves. Every step first flushes bytes owed to the
//! client (clb's answers and response heads come before any body byte), then advances
//! the phase. A step that reports `Progress` moved bytes or changed state; the loop is
//! bounded and a session with work left is queued to run again after the other events
//! of this batch, so one fast transfer cannot starve the rest.

use super::conn::{Exchange, Phase, RequestLog, Response, StickyState};
use super::exchange::{read_some, ReadOutcome};
use super::pipe::Pipe;
use super::sticky::sticky_target;
use super::{Worker, LINGER};
use crate::backend::balancer::Tried;
use crate::buffer::Buf;
use crate::http::canned::Canned;
use crate::http::desync::{self, Mode};
use crate::http::request::{self, Forwarding, HeadError, Parse, RequestInfo, MAX_HEAD};
use std::io::{self, Write};
use std::time::Duration;

/// Steps one `drive` may take before the session yields to others.
const MAX_STEPS: usize = 64;

pub(super) enum Step {
    Progress,
    Wait,
    Close,
}

impl Worker {
    pub(super) fn drive(&mut self, key: usize) {
        let Some(generation) = self.clients.get(key).map(|c| c.generation) else {
            return;
        };
        for _ in 0..MAX_STEPS {
            match self.step(key) {
                Step::Progress => continue,
                Step::Wait => return self.after_drive(key),
                Step::Close => return self.close_client(key),
            }
        }
        self.again.push((key, generation));
        self.after_drive(key);
    }

    fn after_drive(&mut self, key: usize) {
        self.arm_client(key);
        let upstream = match self.clients.get(key).map(|c| &c.phase) {
            Some(Phase::Tunnel(tk)) => self.tunnels.get(*tk).and_then(|t| t.upstream),
            _ => self.exchange_of(key).and_then(|ex| ex.upstream),
        };
        if let Some(upstream) = upstream {
            self.arm_upstream(upstream);
        }
    }

    fn step(&mut self, key: usize) -> Step {
        // TLS records rustls queued (handshake, or data the socket did not take) go out
        // whenever the socket can take them, whatever the phase.
        if let Some(c) = self.clients.get_mut(key) {
            if c.sock.is_tls() && c.ready.writable {
                match c.sock.flush_tls() {
                    Ok(true) => {}
                    Ok(false) => c.ready.writable = false,
                    Err(_) => return Step::Close,
                }
            }
        }
        // While a response body streams, the exchange writes the client's pending bytes
        // itself, in one write with the body.
        let streaming = self
            .exchange_of(key)
            .is_some_and(|ex| matches!(ex.response, Response::Body { .. }));
        let flushed = match if streaming {
            Ok(false)
        } else {
            self.flush_client(key)
        } {
            Ok(flushed) => flushed,
            Err(()) => return Step::Close,
        };
        let Some(client) = self.clients.get(key) else {
            return Step::Close;
        };
        let step = match client.phase {
            Phase::ReadHead { .. } => self.read_head(key),
            Phase::Exchange(_) => self.exchange(key),
            Phase::Tunnel(tk) => self.tunnel(key, tk),
            Phase::Closing { linger } => self.closing(key, linger),
            Phase::Linger => self.linger(key),
        };
        match step {
            Step::Wait if flushed => Step::Progress,
            step => step,
        }
    }

    /// Writes what clb owes the client outside body streaming; `Err` when the client is gone.
    fn flush_client(&mut self, key: usize) -> Result<bool, ()> {
        let now = self.now;
        let Some(c) = self.clients.get_mut(key) else {
            return Err(());
        };
        let Some(wbuf) = c.wbuf.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        while !wbuf.is_empty() && c.ready.writable {
            match c.sock.write(wbuf.bytes()) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    wbuf.consume(n);
                    progress = true;
                    c.deadline.at = now + c.idle;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.ready.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        self.bufs.release_if_empty(&mut c.wbuf);
        Ok(progress)
    }

    fn read_head(&mut self, key: usize) -> Step {
        let (now, epoch) = (self.now, self.epoch);
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        if c.wbuf.is_some() {
            // The previous answer drains before the next request is looked at.
            return Step::Wait;
        }
        if let Some(rbuf) = c.rbuf.as_mut().filter(|b| !b.is_empty()) {
            let desync = self
                .topo
                .listeners
                .get(c.listener)
                .and_then(|l| self.topo.lbs.get(l.lb))
                .map_or(Mode::default(), |lb| lb.desync_mode);
            let fwd = Forwarding {
                client_ip: c.peer.ip(),
                local_ip: c.local.ip(),
                listener_port: c.local.port(),
                scheme: if c.sock.is_tls() { "https" } else { "http" },
                desync,
            };
            let mut head = self.bufs.get();
            match request::forward_head(rbuf.bytes(), &fwd, &mut head) {
                Ok(Parse::Complete(req)) => {
                    self.settings.desync_counts.record(req.verdict);
                    let log = self.settings.access_log.is_some().then(|| {
                        let (request, user_agent) = crate::access_log::request_fields(
                            &rbuf.bytes()[..req.head_len],
                            fwd.scheme,
                            fwd.listener_port,
                        );
                        Box::new(RequestLog {
                            time: std::time::SystemTime::now(),
                            received: now,
                            request,
                            user_agent,
                            backend: None,
                            response_head_at: None,
                            backend_status: None,
                        })
                    });
                    let sticky = self
                        .topo
                        .listeners
                        .get(c.listener)
                        .and_then(|l| l.sticky.clone())
                        .map(|policy| {
                            let target = sticky_target(
                                &rbuf.bytes()[..req.head_len],
                                &policy,
                                &self.settings.sticky_key,
                            );
                            Box::new(StickyState {
                                policy,
                                target,
                                set_cookie: false,
                            })
                        });
                    rbuf.consume(req.head_len);
                    return self.start_exchange(key, req, head, log, sticky);
                }
                Ok(Parse::Partial) => {
                    self.bufs.put(head);
                    if rbuf.is_full() && rbuf.capacity() <= MAX_HEAD {
                        // Past MAX_HEAD the parser answers 431 itself.
                        rbuf.grow_to(MAX_HEAD + 1);
                    }
                    // Slow loris: a head must end within the header timeout of its
                    // first byte, however often bytes trickle in to refresh the idle one.
                    if let Phase::ReadHead { started_ms } = &mut c.phase {
                        let clock = super::clock_ms(now, epoch);
                        if *started_ms == 0 {
                            *started_ms = clock;
                        }
                        let spent = Duration::from_millis(clock.wrapping_sub(*started_ms).into());
                        let limit = now + self.settings.header_timeout.saturating_sub(spent);
                        c.deadline.at = c.deadline.at.min(limit);
                    }
                }
                Err(e) => {
                    self.bufs.put(head);
                    let verdict = match e {
                        HeadError::Desync(verdict) => verdict,
                        _ => {
                            let (verdict, message) = desync::classify_unparsable(rbuf.bytes());
                            if let Some(message) = message {
                                desync::log_non_compliant(
                                    c.peer.ip(),
                                    verdict,
                                    desync::Action::Block,
                                    &message,
                                );
                            }
                            verdict
                        }
                    };
                    self.settings.desync_counts.record(verdict);
                    log::debug!("client {}: refused request: {e:?}", c.peer);
                    if self.settings.access_log.is_some() {
                        let (peer, listener) = (c.peer, c.listener);
                        self.log_refused(peer, listener, canned_for(e).status());
                    }
                    return self.answer(key, canned_for(e), false);
                }
            }
        }
        if c.read_closed {
            return Step::Close;
        }
        if !c.ready.readable {
            self.bufs.release_if_empty(&mut c.rbuf);
            return Step::Wait;
        }
        let rbuf = c.rbuf.get_or_insert_with(|| self.bufs.get());
        match read_some(rbuf, &mut c.sock, &mut c.ready) {
            // End of stream before a whole head: nobody is left to answer.
            Ok(ReadOutcome::Eof) | Err(_) => Step::Close,
            Ok(ReadOutcome::Data) => {
                c.deadline.at = now + c.idle;
                Step::Progress
            }
            Ok(ReadOutcome::Blocked) => {
                self.bufs.release_if_empty(&mut c.rbuf);
                Step::Wait
            }
        }
    }

    fn start_exchange(
        &mut self,
        key: usize,
        req: RequestInfo,
        head: Buf,
        log: Option<Box<RequestLog>>,
        sticky: Option<Box<StickyState>>,
    ) -> Step {
        let Some(c) = self.clients.get_mut(key) else {
            self.bufs.put(head);
            return Step::Close;
        };
        // Spec §1.17: answered at once, whatever the instance will say; but not when the
        // whole body came with the head, or there is none (RFC 9110 §10.1.1: the client
        // is not waiting for it then, and would read it as the answer).
        let buffered = c.rbuf.as_ref().map_or(&[][..], |b| b.bytes());
        let body_here = !matches!(req.body.forwarded_len(buffered), Ok(None));
        if req.expect_continue && !body_here {
            c.wbuf
                .get_or_insert_with(|| self.bufs.get())
                .extend(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut ex = self.boxed_exchange(Exchange {
            req,
            head: Some(head),
            head_sent: 0,
            request: Pipe::new(req.body, false),
            upstream: None,
            backend: 0,
            instance: 0,
            slot: usize::MAX,
            tried: Tried::default(),
            reused: false,
            retried: false,
            response_started: false,
            response: Response::AwaitHead,
            kernel: None,
            dispatched: self.now,
            log,
            sticky,
            queued: false,
        });
        if self.attach_upstream(key, &mut ex, false) {
            if !self.put_exchange(key, ex) {
                return Step::Close;
            }
            Step::Progress
        } else if self.balancer.saturated() && self.enqueue_surge(key) {
            // Every instance that could serve it is at --max-backend-connections.
            ex.queued = true;
            if !self.put_exchange(key, ex) {
                return Step::Close;
            }
            Step::Wait
        } else {
            // No instance, or the surge queue is full (spillover).
            self.fail_exchange(key, ex, Canned::ServiceUnavailable)
        }
    }

    /// Queues one of clb's answers; the connection is kept only when `keep` says so.
    pub(super) fn answer(&mut self, key: usize, canned: Canned, keep: bool) -> Step {
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        let lb = self
            .topo
            .listeners
            .get(c.listener)
            .and_then(|l| self.topo.lbs.get(l.lb))
            .map_or(usize::MAX, |lb| lb.stats_slot);
        self.settings.stats.elb_status(lb, 0, canned.status());
        c.wbuf
            .get_or_insert_with(|| self.bufs.get())
            .extend(canned.bytes(keep));
        c.phase = if keep {
            Phase::IDLE
        } else {
            Phase::Closing { linger: true }
        };
        Step::Progress
    }

    fn closing(&mut self, key: usize, linger: bool) -> Step {
        let now = self.now;
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        // The answer's tail may still sit in rustls as records the socket did not take.
        if c.wbuf.is_some() || c.sock.has_queued_records() {
            return Step::Wait;
        }
        // Nothing unread and nothing more expected: a plain close sends FIN, not RST.
        let unread = c.rbuf.as_ref().is_some_and(|b| !b.is_empty()) || c.ready.readable;
        if !linger && !unread {
            // TLS says goodbye with close_notify, so the client can tell a close from a
            // truncation.
            if c.sock.is_tls() {
                let _ = c.sock.shutdown_write();
            }
            return Step::Close;
        }
        if c.sock.shutdown_write().is_err() || c.read_closed {
            return Step::Close;
        }
        c.phase = Phase::Linger;
        c.deadline.at = now + LINGER;
        Step::Progress
    }

    /// Reads and drops what the client still sends, so closing does not reset the
    /// connection before the client has read clb's last answer.
    fn linger(&mut self, key: usize) -> Step {
        let Some(c) = self.clients.get_mut(key) else {
            return Step::Close;
        };
        if !c.ready.readable {
            return Step::Wait;
        }
        let rbuf = c.rbuf.get_or_insert_with(|| self.bufs.get());
        rbuf.clear();
        match rbuf.read_from(&mut c.sock) {
            Ok(0) => Step::Close,
            Ok(_) => Step::Progress,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.ready.readable = false;
                Step::Wait
            }
            Err(_) => Step::Close,
        }
    }

    pub(super) fn close_client(&mut self, key: usize) {
        if let Some(ex) = self.take_exchange(key) {
            self.drop_exchange(ex);
        }
        let Some(mut c) = self.clients.try_remove(key) else {
            return;
        };
        if let Phase::Tunnel(tk) = c.phase {
            if let Some(mut tunnel) = self.tunnels.try_remove(tk) {
                self.log_tunnel(&c, &tunnel);
                self.release_tunnel(&mut tunnel);
            }
        }
        self.bufs.release(&mut c.rbuf);
        self.bufs.release(&mut c.wbuf);
        drop(c);
        self.settings
            .stats
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.resume_accepting();
    }

    /// The client's idle timeout passed.
    pub(super) fn client_timed_out(&mut self, key: usize) {
        enum Action {
            Answer(Canned),
            FailExchange(Canned),
            Rearm,
            Close,
        }
        let now = self.now;
        let Some(c) = self.clients.get_mut(key) else {
            return;
        };
        let partial_head = c.rbuf.as_ref().is_some_and(|b| !b.is_empty());
        let exchange = match c.phase {
            Phase::Exchange(xk) => self.exchanges.get(xk),
            _ => None,
        };
        let action = match (&c.phase, exchange) {
            (Phase::ReadHead { .. }, _) if partial_head => Action::Answer(Canned::RequestTimeout),
            // Spec §11: a request still in the surge queue at the idle timeout.
            (Phase::Exchange(_), Some(ex)) if ex.queued => {
                Action::FailExchange(Canned::ServiceUnavailable)
            }
            (Phase::Exchange(_), Some(ex)) => match ex.response {
                // A request body the client stopped sending (spec §11: 408).
                Response::AwaitHead if !ex.request.finished() => {
                    Action::FailExchange(Canned::RequestTimeout)
                }
                // Waiting on the instance is the instance's idle timeout to judge.
                Response::AwaitHead => Action::Rearm,
                // A client that stopped reading the response.
                Response::Body { .. } => Action::Close,
            },
            _ => Action::Close,
        };
        match action {
            Action::Answer(canned) => {
                self.answer(key, canned, false);
                self.drive(key);
            }
            Action::FailExchange(canned) => {
                if let Some(ex) = self.take_exchange(key) {
                    self.fail_exchange(key, ex, canned);
                }
                self.drive(key);
            }
            Action::Rearm => {
                c.deadline.at = now + c.idle;
                self.arm_client(key);
            }
            Action::Close => self.close_client(key),
        }
    }
}

fn canned_for(e: HeadError) -> Canned {
    match e {
        HeadError::Malformed(_) | HeadError::Desync(_) => Canned::BadRequest,
        HeadError::MethodTooLong => Canned::MethodNotAllowed,
        HeadError::UriTooLong => Canned::UriTooLong,
        HeadError::HeadersTooLarge => Canned::HeadersTooLarge,
    }
}
