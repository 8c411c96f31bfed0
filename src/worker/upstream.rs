//! Connections to instances: picking one (sticky target first, then the balancer),
//! taking a pooled connection or opening a new one (TLS when the instance protocol says
//! so), completing the connect and handshake, and handing it back to the pool.

use super::conn::{Deadline, Exchange, Ready, Upstream};
use super::stream::Stream;
use super::token::{self, Kind};
use super::{Worker, CONNECT_TIMEOUT};
use mio::net::TcpStream;
use mio::Interest;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

impl Worker {
    /// The client TLS configuration for back end `backend`: the shared one, or one with
    /// the keys its port's back-end authentication policy pins.
    pub(super) fn backend_tls_for(&mut self, backend: usize) -> Arc<rustls::ClientConfig> {
        let pins = match self.topo.backends.get(backend) {
            Some(b) if !b.pins.is_empty() => b.pins.clone(),
            _ => return self.settings.backend_tls.clone(),
        };
        if let Some(config) = self.pinned_tls.get(&pins) {
            return config.clone();
        }
        match crate::tls::backend::client_config_pinned(
            &self.settings.backend_tls_settings,
            Some(&pins),
        ) {
            Ok(config) => {
                self.pinned_tls.insert(pins, config.clone());
                config
            }
            Err(e) => {
                log::error!("back-end authentication policy: {e}");
                self.settings.backend_tls.clone()
            }
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
            // A failed connect is counted and logged by `connect`; the next one is tried.
            if let Ok(uk) = self.connect(addr, key, pick.backend, idle) {
                self.bind(ex, uk, pick.backend, pick.instance, false);
                return true;
            }
        }
        false
    }

    pub(super) fn bind(
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

    /// Opens a connection to back end `backend` for client `owner`: TLS when its
    /// instance protocol says so. A failure is counted (BackendConnectionErrors) and
    /// the back end is tried last for a while.
    pub(super) fn connect(
        &mut self,
        addr: SocketAddr,
        owner: usize,
        backend: usize,
        idle: Duration,
    ) -> io::Result<usize> {
        let opened = self.open_upstream(addr, owner, backend, idle);
        if let Err(e) = &opened {
            log::debug!("connect to {addr} failed: {e}");
            let instance = self
                .topo
                .backends
                .get(backend)
                .map_or(usize::MAX, |b| b.instance);
            let (lb, zone) = super::exchange::stats_slots(&self.topo, instance);
            self.settings
                .stats
                .add(lb, zone, crate::stats::Counter::BackendConnectionErrors, 1);
            self.balancer.refused(backend, self.now);
        }
        opened
    }

    fn open_upstream(
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
    pub(super) fn detach(&mut self, ex: &mut Exchange, reuse: bool) {
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

/// A finished upstream connection may still hold an unread EOF or stray bytes; only
/// one with nothing pending goes back to the pool.
pub(super) fn still_idle(u: &mut Upstream) -> bool {
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
