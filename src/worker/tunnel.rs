//! TCP listeners: a client connection tied to one instance connection, bytes forwarded
//! both ways untouched (spec §1.9), round robin per connection (§4.1).
//!
//! Each direction is a close-delimited pipe through the reading side's buffer. End of
//! stream is passed on as a half-close (`shutdown(Write)` towards the other side) once
//! everything before it is written, so protocols that half-close keep working; the
//! tunnel ends when both directions have. A PROXY protocol header, when the instance
//! port asks for one, is the first thing the instance receives.
//!
//! A direction whose read fills a whole buffer carries bulk data: between two plain
//! sockets it then moves kernel to kernel (`splice`) through a pooled pipe, held until
//! the tunnel ends. Short exchanges never take a pipe.

use super::conn::{Phase, Ready};
use super::exchange::stats_slots;
use super::exchange::{read_some, ReadOutcome};
use super::pipe::Pipe;
use super::session::Step;
use super::splice::{splice_through, take_pipe};
use super::Worker;
use crate::backend::balancer::Tried;
use crate::http::framing::Body;
use crate::stats::Counter;
use crate::sys::KernelPipe;
use crate::tcp::proxy_protocol;

pub struct Tunnel {
    pub upstream: Option<usize>,
    pub backend: usize,
    pub instance: usize,
    pub slot: usize,
    pub tried: Tried,
    /// Waiting in the surge queue for room at an instance.
    pub queued: bool,
    /// When the current connect to the instance started (Latency, for TCP).
    pub(super) connecting_since: std::time::Instant,
    /// Client → instance: the PROXY header first, then the client's bytes.
    header: Vec<u8>,
    header_sent: usize,
    pub(super) up: Pipe,
    up_eof: bool,
    up_shut: bool,
    up_bulk: bool,
    up_kernel: Option<KernelPipe>,
    /// Instance → client.
    pub(super) down: Pipe,
    down_eof: bool,
    down_shut: bool,
    down_bulk: bool,
    down_kernel: Option<KernelPipe>,
}

impl Tunnel {
    /// A tunnel with no instance yet, both directions open.
    fn new(now: std::time::Instant) -> Tunnel {
        Tunnel {
            upstream: None,
            backend: 0,
            instance: 0,
            slot: usize::MAX,
            tried: Tried::default(),
            queued: false,
            connecting_since: now,
            header: Vec::new(),
            header_sent: 0,
            up: Pipe::new(Body::UntilClose, false),
            up_eof: false,
            up_shut: false,
            up_bulk: false,
            up_kernel: None,
            down: Pipe::new(Body::UntilClose, false),
            down_eof: false,
            down_shut: false,
            down_bulk: false,
            down_kernel: None,
        }
    }
}

enum Flow {
    Progress,
    Wait,
    /// The connect failed: try the next instance.
    Refused,
    Close,
}

impl Worker {
    /// A new connection on a TCP listener: pick an instance and connect to it.
    pub(super) fn start_tunnel(&mut self, key: usize) -> Step {
        let mut tunnel = Tunnel::new(self.now);
        if !self.connect_tunnel(key, &mut tunnel) {
            // At --max-backend-connections everywhere: wait in the surge queue; with
            // no instance, or the queue full (spillover), the connection closes.
            if !self.balancer.saturated() || !self.enqueue_surge(key) {
                return Step::Close;
            }
            tunnel.queued = true;
        }
        self.park_tunnel(key, tunnel)
    }

    /// Connects to the next instance in round-robin order; false when none is left.
    fn connect_tunnel(&mut self, key: usize, tunnel: &mut Tunnel) -> bool {
        let now = self.now;
        let Some((listener, zone, idle, peer, local)) = self
            .clients
            .get(key)
            .map(|c| (c.listener, c.zone, c.idle, c.peer, c.local))
        else {
            return false;
        };
        while let Some(pick) =
            self.balancer
                .pick_round_robin(&self.topo, listener, zone, &mut tunnel.tried, now)
        {
            let Some(backend) = self.topo.backends.get(pick.backend) else {
                continue;
            };
            let (addr, proxy) = (backend.addr, backend.proxy_protocol);
            let Ok(uk) = self.connect(addr, key, pick.backend, idle) else {
                continue;
            };
            tunnel.header.clear();
            if let Some(version) = proxy {
                proxy_protocol::encode(version, peer, local, &mut tunnel.header);
            }
            tunnel.header_sent = 0;
            tunnel.connecting_since = now;
            tunnel.upstream = Some(uk);
            tunnel.backend = pick.backend;
            tunnel.instance = pick.instance;
            tunnel.slot = self
                .topo
                .instances
                .get(pick.instance)
                .map_or(usize::MAX, |v| v.slot);
            self.in_flight.begin(tunnel.slot);
            self.balancer.begin(tunnel.instance);
            return true;
        }
        false
    }

    /// A WebSocket handshake was answered 101: the exchange's instance connection now
    /// carries bytes both ways untouched, like a TCP listener's (beyond ELB Classic,
    /// which needs a TCP listener for WebSocket).
    pub(super) fn switch_to_tunnel(
        &mut self,
        key: usize,
        mut ex: Box<super::conn::Exchange>,
    ) -> Step {
        let status = ex.log.as_ref().and_then(|l| l.backend_status);
        self.log_exchange(key, &mut ex, status);
        // The request's counts (least outstanding, in flight) become the tunnel's, and
        // end with it.
        self.bufs.release(&mut ex.head);
        let kernel = ex.kernel.take();
        self.return_kernel_pipe(kernel);
        let tunnel = Tunnel {
            upstream: ex.upstream.take(),
            backend: ex.backend,
            instance: ex.instance,
            slot: ex.slot,
            tried: ex.tried,
            ..Tunnel::new(self.now)
        };
        self.park_tunnel(key, tunnel)
    }

    /// Makes `tunnel` client `key`'s phase (or lets it go if the client is gone).
    fn park_tunnel(&mut self, key: usize, tunnel: Tunnel) -> Step {
        let tk = self.tunnels.insert(tunnel);
        match self.clients.get_mut(key) {
            Some(c) => {
                c.phase = Phase::Tunnel(tk);
                Step::Progress
            }
            None => {
                let mut tunnel = self.tunnels.remove(tk);
                self.release_tunnel(&mut tunnel);
                Step::Close
            }
        }
    }

    /// A queued connection's turn: `Some(true)` connected, `Some(false)` still no room,
    /// `None` no instance left (the caller closes it).
    pub(super) fn connect_queued_tunnel(&mut self, key: usize, tk: usize) -> Option<bool> {
        let mut tunnel = self.tunnels.try_remove(tk)?;
        let connected = self.connect_tunnel(key, &mut tunnel);
        let saturated = self.balancer.saturated();
        tunnel.queued = !connected;
        let new_key = self.tunnels.insert(tunnel);
        if let Some(c) = self.clients.get_mut(key) {
            c.phase = Phase::Tunnel(new_key);
        }
        match (connected, saturated) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        }
    }

    pub(super) fn release_tunnel(&mut self, tunnel: &mut Tunnel) {
        let (up, down) = (tunnel.up_kernel.take(), tunnel.down_kernel.take());
        self.return_kernel_pipe(up);
        self.return_kernel_pipe(down);
        if let Some(uk) = tunnel.upstream.take() {
            self.in_flight.end(tunnel.slot);
            self.balancer.end(tunnel.instance);
            self.close_upstream(uk);
        }
    }

    /// The connect to the instance timed out: same as refused.
    pub(super) fn tunnel_connect_timed_out(&mut self, key: usize) -> Step {
        let Some(Phase::Tunnel(tk)) = self.clients.get(key).map(|c| &c.phase) else {
            return Step::Close;
        };
        let tk = *tk;
        let Some(mut tunnel) = self.tunnels.try_remove(tk) else {
            return Step::Close;
        };
        self.balancer.refused(tunnel.backend, self.now);
        self.release_tunnel(&mut tunnel);
        let connected = self.connect_tunnel(key, &mut tunnel);
        let new_key = self.tunnels.insert(tunnel);
        if let Some(c) = self.clients.get_mut(key) {
            c.phase = Phase::Tunnel(new_key);
        }
        if connected {
            Step::Progress
        } else {
            Step::Close
        }
    }

    pub(super) fn tunnel(&mut self, key: usize, tk: usize) -> Step {
        let Some(mut tunnel) = self.tunnels.try_remove(tk) else {
            return Step::Close;
        };
        let flow = self.flow(key, &mut tunnel);
        let step = match flow {
            Flow::Progress => Step::Progress,
            Flow::Wait => Step::Wait,
            Flow::Refused => {
                if let Some(backend) = self.topo.backends.get(tunnel.backend) {
                    log::debug!("connect to {} refused", backend.addr);
                }
                let (lb, zone) = stats_slots(&self.topo, tunnel.instance);
                self.settings
                    .stats
                    .add(lb, zone, Counter::BackendConnectionErrors, 1);
                self.balancer.refused(tunnel.backend, self.now);
                self.release_tunnel(&mut tunnel);
                if self.connect_tunnel(key, &mut tunnel) {
                    Step::Progress
                } else {
                    Step::Close
                }
            }
            Flow::Close => Step::Close,
        };
        let new_key = self.tunnels.insert(tunnel);
        if let Some(c) = self.clients.get_mut(key) {
            c.phase = Phase::Tunnel(new_key);
        }
        step
    }

    fn flow(&mut self, key: usize, t: &mut Tunnel) -> Flow {
        let now = self.now;
        if t.queued {
            return Flow::Wait;
        }
        let Some(uk) = t.upstream else {
            return Flow::Refused;
        };
        let (Some(c), Some(u)) = (self.clients.get_mut(key), self.upstreams.get_mut(uk)) else {
            return Flow::Close;
        };
        let mut progress = false;
        if !u.connected {
            if !u.ready.writable && !u.ready.readable {
                return Flow::Wait;
            }
            match super::upstream::establish(u) {
                Ok(true) => {
                    u.connected = true;
                    progress = true;
                    let (lb, zone) = stats_slots(&self.topo, t.instance);
                    let stats = &self.settings.stats;
                    stats.add(lb, zone, Counter::RequestCount, 1);
                    stats.latency(lb, zone, now.saturating_duration_since(t.connecting_since));
                }
                Ok(false) => {
                    u.ready = Ready::default();
                    return Flow::Wait;
                }
                Err(_) => return Flow::Refused,
            }
        }

        // Client → instance.
        let rbuf = c.rbuf.get_or_insert_with(|| self.bufs.get());
        match t.up.pump(
            &t.header[t.header_sent..],
            rbuf,
            &mut u.sock,
            &mut u.ready.writable,
        ) {
            Ok(moved) => {
                t.header_sent += moved.prefix;
                progress |= moved.any();
            }
            Err(_) => return Flow::Close,
        }
        let header_done = t.header_sent == t.header.len();
        if t.up_bulk && t.up_kernel.is_none() && rbuf.is_empty() && header_done && !t.up_eof {
            if let (Some(_), Some(_)) = (c.sock.plain(), u.sock.plain()) {
                t.up_kernel = take_pipe(&mut self.pipes);
            }
        }
        if let (Some(kernel), Some(from), Some(to)) =
            (t.up_kernel.as_mut(), c.sock.plain(), u.sock.plain())
        {
            match splice_through(kernel, u64::MAX, from, &mut c.ready, to, &mut u.ready) {
                Ok(spliced) => {
                    t.up.spliced(spliced.filled);
                    t.up_eof |= spliced.eof;
                    progress |= spliced.any();
                }
                Err(_) => return Flow::Close,
            }
        } else if !t.up_eof && c.ready.readable && !rbuf.is_full() {
            match read_some(rbuf, &mut c.sock, &mut c.ready) {
                Ok(ReadOutcome::Data) => {
                    t.up_bulk |= self.settings.splice && rbuf.is_full();
                    progress = true;
                }
                Ok(ReadOutcome::Eof) => {
                    t.up_eof = true;
                    progress = true;
                }
                Ok(ReadOutcome::Blocked) => {}
                Err(_) => return Flow::Close,
            }
        }
        let up_done =
            rbuf.is_empty() && header_done && t.up_kernel.as_ref().is_none_or(|k| k.buffered == 0);
        if t.up_eof && !t.up_shut && up_done && u.sock.ready_to_shut() {
            let _ = u.sock.shutdown_write();
            t.up_shut = true;
            progress = true;
        }
        self.bufs.release_if_empty(&mut c.rbuf);

        // Instance → client; after a WebSocket 101, only once its head is out.
        let rbuf = u.rbuf.get_or_insert_with(|| self.bufs.get());
        if c.wbuf.is_none() {
            match t.down.pump(&[], rbuf, &mut c.sock, &mut c.ready.writable) {
                Ok(moved) => progress |= moved.any(),
                Err(_) => return Flow::Close,
            }
        }
        let head_out = c.wbuf.is_none();
        if t.down_bulk && t.down_kernel.is_none() && rbuf.is_empty() && !t.down_eof && head_out {
            if let (Some(_), Some(_)) = (u.sock.plain(), c.sock.plain()) {
                t.down_kernel = take_pipe(&mut self.pipes);
            }
        }
        if let (Some(kernel), Some(from), Some(to), true) = (
            t.down_kernel.as_mut(),
            u.sock.plain(),
            c.sock.plain(),
            head_out,
        ) {
            match splice_through(kernel, u64::MAX, from, &mut u.ready, to, &mut c.ready) {
                Ok(spliced) => {
                    t.down.spliced(spliced.filled);
                    t.down_eof |= spliced.eof;
                    progress |= spliced.any();
                }
                Err(_) => return Flow::Close,
            }
        } else if !t.down_eof && u.ready.readable && !rbuf.is_full() {
            match read_some(rbuf, &mut u.sock, &mut u.ready) {
                Ok(ReadOutcome::Data) => {
                    t.down_bulk |= self.settings.splice && rbuf.is_full();
                    progress = true;
                }
                Ok(ReadOutcome::Eof) => {
                    t.down_eof = true;
                    progress = true;
                }
                Ok(ReadOutcome::Blocked) => {}
                Err(_) => return Flow::Close,
            }
        }
        let down_done = rbuf.is_empty() && t.down_kernel.as_ref().is_none_or(|k| k.buffered == 0);
        if t.down_eof && !t.down_shut && down_done && c.sock.ready_to_shut() {
            let _ = c.sock.shutdown_write();
            t.down_shut = true;
            progress = true;
        }
        self.bufs.release_if_empty(&mut u.rbuf);

        if t.up_shut && t.down_shut {
            return Flow::Close;
        }
        if progress {
            // Idle means no byte either way (spec §6.4): activity keeps both sides alive.
            c.deadline.at = now + c.idle;
            u.deadline.at = now + u.idle;
            Flow::Progress
        } else {
            Flow::Wait
        }
    }
}

/// An accepted connection on a TCP listener starts a tunnel at once.
pub(super) fn is_tcp_listener(worker: &Worker, listener: usize) -> bool {
    worker
        .topo
        .listeners
        .get(listener)
        .is_some_and(|l| !l.listener.protocol.is_http())
}
