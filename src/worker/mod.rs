//! One event loop: a mio `Poll`, its listening sockets, the connections in two slabs,
//! the deadline heap, the buffer pool, the upstream pools and the balancer counts.
//!
//! The loop is: poll, dispatch each event by token kind, run the deadlines that came
//! due, then finish sessions that yielded to be fair to others. Nothing here blocks and
//! nothing here locks; a worker shares nothing writable with other workers.

mod accept;
mod conn;
mod exchange;
mod listen;
mod logging;
mod pipe;
mod probe;
mod session;
mod splice;
mod sticky;
mod stream;
mod surge;
mod swap;
pub mod timers;
pub mod token;
mod tunnel;
mod upstream;

pub use listen::{bind_listeners, bind_new_listeners, listen_address, ListenError};
pub use probe::health_unit_from_env;
pub use splice::splice_from_env;
pub use swap::Control;

use self::conn::{Client, Upstream};
use self::timers::Timers;
use self::token::{Generations, Kind};
use crate::backend::balancer::Balancer;
use crate::backend::health::InFlight;
use crate::backend::pool::Pool;
use crate::buffer::BufPool;
use crate::config::Topology;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events taken from one poll.
const EVENTS_PER_POLL: usize = 1024;
/// Access-log lines go to the log thread at least this often, and in batches of this size.
const LOG_FLUSH: Duration = Duration::from_secs(1);
const LOG_BATCH: usize = 64 * 1024;
/// How long accepting pauses when the process or system is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest a connect to an instance may take before the next instance is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing client connection is read and discarded after clb's last answer.
const LINGER: Duration = Duration::from_secs(2);
/// Buffers kept in a worker's free list.
const POOLED_BUFFERS: usize = 1024;
/// Finished exchanges' boxes kept for reuse.
const SPARE_EXCHANGES: usize = 64;
/// How often buffers the pool did not need are freed (and their pages given back).
const BUF_TRIM: Duration = Duration::from_secs(1);

/// A listening socket this worker accepts on, and which topology listener it serves.
pub struct Listening {
    pub sock: TcpListener,
    pub listener: usize,
    /// The address it is bound to; its IP is every accepted connection's local address
    /// unless it is the wildcard.
    pub addr: SocketAddr,
}

/// How the control side reaches a worker: a message, then a wake-up of its poll.
#[derive(Clone)]
pub struct WorkerHandle {
    pub sender: Sender<Control>,
    pub waker: Arc<Waker>,
}

impl WorkerHandle {
    /// False when the worker has stopped.
    pub fn send(&self, message: Control) -> bool {
        self.sender.send(message).is_ok() && self.waker.wake().is_ok()
    }
}

pub struct Settings {
    pub max_connections: usize,
    /// Worker count, for the share of instances whose probes this worker owns.
    pub workers: usize,
    /// One "second" of health-check interval and timeout (shortened only by tests).
    pub health_unit: Duration,
    /// The TLS configuration of HTTPS and SSL listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The TLS configuration towards HTTPS and SSL instances.
    pub backend_tls: Arc<rustls::ClientConfig>,
    /// What it was built from, for instance ports whose policies pin their own keys.
    pub backend_tls_settings: crate::tls::backend::BackendTls,
    /// Whether bulk bytes between plain sockets move with `splice(2)`
    /// (`CLB_SPLICE=off` turns it off, to measure what it saves).
    pub splice: bool,
    /// How long a request head may take from its first byte (slow-loris defence).
    pub header_timeout: Duration,
    /// Requests counted by desync tier and reason (read by the metrics scrape).
    pub desync_counts: Arc<crate::http::desync::Counts>,
    /// ELB's metrics, counted by this worker (read by the metrics scrape).
    pub stats: Arc<crate::stats::Stats>,
    /// The access-log thread, when `--access-log` is on.
    pub access_log: Option<std::sync::mpsc::Sender<crate::access_log::Message>>,
    /// `--allow`: client sources each listener accepts.
    pub allow: Arc<crate::config::allow::AllowList>,
    /// Signs and checks `AWSELB` cookies.
    pub sticky_key: Arc<crate::http::sticky::Key>,
    /// `--max-backend-connections`: requests or connections per instance (0: no limit).
    pub max_backend_connections: u32,
    /// This worker's share of `--surge-queue`.
    pub surge_queue: usize,
}

pub struct Worker {
    id: usize,
    poll: Poll,
    listening: Slab<Listening>,
    control: Receiver<Control>,
    in_flight: Arc<InFlight>,
    clients: Slab<Client>,
    upstreams: Slab<Upstream>,
    /// Boxed so a step moves a pointer, not the exchange; finished boxes are kept in
    /// `spare_exchanges` for the next request, so a request allocates none.
    exchanges: Slab<Box<conn::Exchange>>,
    #[allow(clippy::vec_box)] // the boxes themselves are what is kept for reuse
    spare_exchanges: Vec<Box<conn::Exchange>>,
    tunnels: Slab<tunnel::Tunnel>,
    /// Empty kernel pipes for splicing large bodies.
    pipes: Vec<crate::sys::KernelPipe>,
    probes: Slab<probe::Probe>,
    bufs: BufPool,
    timers: Timers,
    pool: Pool,
    balancer: Balancer,
    topo: Arc<Topology>,
    generations: Generations,
    now: Instant,
    settings: Settings,
    /// Whether and when accepting stopped, and its warnings.
    accepting: accept::Accepting,
    /// Access-log lines on their way to the log thread.
    log: logging::LogBatch,
    /// When the buffer pool was last trimmed.
    bufs_trimmed: Instant,
    /// Client TLS configurations for pinned instance ports, built on first use.
    pinned_tls: std::collections::HashMap<Vec<Vec<u8>>, Arc<rustls::ClientConfig>>,
    /// Requests and connections waiting for room at an instance (spec §11).
    surge: std::collections::VecDeque<surge::Waiting>,
    /// Set by SIGTERM: no more accepting; the loop ends when no client is left or then.
    shutdown: Option<Instant>,
    /// The zero of `clock_ms` (request-head start times are stored as u32 milliseconds).
    epoch: Instant,
    /// Sessions that used up their turn with work left; driven again after the batch.
    again: Vec<(usize, u32)>,
}

impl Worker {
    /// A worker and the handle the control side uses to send it topology changes.
    pub fn new(
        id: usize,
        topo: Arc<Topology>,
        listening: Vec<Listening>,
        settings: Settings,
        in_flight: Arc<InFlight>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        in_flight.routing_by(topo.epoch);
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token::WAKER)?);
        let (sender, control) = mpsc::channel();
        let mut pool = Pool::default();
        pool.resize(topo.backends.len());
        let mut worker = Worker {
            id,
            poll,
            listening: Slab::new(),
            control,
            in_flight,
            clients: Slab::new(),
            upstreams: Slab::new(),
            exchanges: Slab::new(),
            spare_exchanges: Vec::new(),
            tunnels: Slab::new(),
            pipes: Vec::new(),
            probes: Slab::new(),
            bufs: BufPool::new(POOLED_BUFFERS),
            timers: Timers::default(),
            pool,
            balancer: Balancer::new(&topo).with_limit(settings.max_backend_connections),
            topo,
            generations: Generations::default(),
            now: Instant::now(),
            settings,
            accepting: accept::Accepting::new(),
            epoch: Instant::now(),
            shutdown: None,
            surge: std::collections::VecDeque::new(),
            pinned_tls: std::collections::HashMap::new(),
            log: logging::LogBatch::new(),
            bufs_trimmed: Instant::now(),
            again: Vec::new(),
        };
        for l in listening {
            worker.add_listening(l)?;
        }
        Ok((worker, WorkerHandle { sender, waker }))
    }

    fn add_listening(&mut self, mut l: Listening) -> io::Result<()> {
        let entry = self.listening.vacant_entry();
        let token = token::encode(Kind::Listener, 0, entry.key());
        self.poll
            .registry()
            .register(&mut l.sock, token, Interest::READABLE)?;
        entry.insert(l);
        Ok(())
    }

    /// Runs the loop until the poll itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.now = Instant::now();
        self.start_probes();
        log::debug!(
            "worker {} running with {} listeners and {} health probes",
            self.id,
            self.listening.len(),
            self.probes.len()
        );
        loop {
            let timeout = if self.again.is_empty() {
                let mut timers = self.timers.next_timeout(Instant::now());
                if let Some(deadline) = self.shutdown {
                    let left = deadline.saturating_duration_since(Instant::now());
                    timers = Some(timers.map_or(left, |t| t.min(left)));
                }
                if !self.log.lines.is_empty() {
                    let left =
                        (self.log.flushed + LOG_FLUSH).saturating_duration_since(Instant::now());
                    timers = Some(timers.map_or(left, |t| t.min(left)));
                }
                if self.bufs.over_keep() {
                    let left =
                        (self.bufs_trimmed + BUF_TRIM).saturating_duration_since(Instant::now());
                    timers = Some(timers.map_or(left, |t| t.min(left)));
                }
                match self.accepting.backoff {
                    Some(until) => {
                        let left = until.saturating_duration_since(Instant::now());
                        Some(timers.map_or(left, |t| t.min(left)))
                    }
                    None => timers,
                }
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.run_deadlines();
            self.publish_buffer_stats();
            if !self.surge.is_empty() {
                self.serve_surge_queue();
            }
            if self
                .accepting
                .backoff
                .is_some_and(|until| until <= self.now)
            {
                self.accepting.backoff = None;
                self.accept_all();
            }
            self.run_again();
            if !self.log.lines.is_empty() && self.now >= self.log.flushed + LOG_FLUSH {
                self.flush_log();
            }
            if self.now >= self.bufs_trimmed + BUF_TRIM {
                self.bufs_trimmed = self.now;
                if self.bufs.trim() > 0 {
                    crate::sys::release_free_memory();
                }
            }
            if let Some(deadline) = self.shutdown {
                if self.clients.is_empty() || self.now >= deadline {
                    self.flush_log();
                    log::info!(
                        "worker {}: stopped ({} connections cut)",
                        self.id,
                        self.clients.len()
                    );
                    return Ok(());
                }
            }
        }
    }

    /// SIGTERM: listening sockets close (new connections are refused), idle keep-alive
    /// clients are closed, and every other client is closed once its answer is out.
    fn begin_shutdown(&mut self, deadline: Instant) {
        self.shutdown = Some(deadline);
        // Answers still to come say `Connection: close`.
        for (_, ex) in self.exchanges.iter_mut() {
            ex.req.keep_alive = false;
        }
        for (_, mut l) in std::mem::take(&mut self.listening) {
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        let idle: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                matches!(c.phase, conn::Phase::ReadHead { .. })
                    && c.wbuf.is_none()
                    && c.rbuf.as_ref().is_none_or(|b| b.is_empty())
            })
            .map(|(key, _)| key)
            .collect();
        for key in idle {
            self.close_client(key);
        }
    }

    /// Buffer figures for the metrics scrape: three relaxed stores per loop turn.
    fn publish_buffer_stats(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.settings.stats;
        stats
            .buffers_in_use
            .store(self.bufs.in_use() as u64, Relaxed);
        stats.buffer_hits.store(self.bufs.hits, Relaxed);
        stats.buffer_misses.store(self.bufs.misses, Relaxed);
    }

    /// Whether the worker is stopping (then no client connection is kept alive).
    pub(super) fn stopping(&self) -> bool {
        self.shutdown.is_some()
    }

    fn dispatch(&mut self, event: &mio::event::Event) {
        let (kind, generation, key) = token::decode(event.token());
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        match kind {
            Kind::Listener => self.accept(key),
            Kind::Client => {
                let Some(client) = self.clients.get_mut(key) else {
                    return;
                };
                if client.generation != generation {
                    return;
                }
                client.ready.readable |= readable;
                client.ready.writable |= writable;
                client.ready.hup |= event.is_read_closed() || event.is_error();
                self.drive(key);
            }
            Kind::Backend => {
                let Some(upstream) = self.upstreams.get_mut(key) else {
                    return;
                };
                if upstream.generation != generation {
                    return;
                }
                upstream.ready.readable |= readable;
                upstream.ready.writable |= writable;
                upstream.ready.hup |= event.is_read_closed() || event.is_error();
                match upstream.owner {
                    Some(owner) => self.drive(owner),
                    // An idle pooled connection has nothing to say: readable means the
                    // instance closed it (or broke protocol), so it must never be reused.
                    None if readable => self.close_upstream(key),
                    None => {}
                }
            }
            Kind::Probe => {
                let Some(probe) = self.probes.get_mut(key) else {
                    return;
                };
                if probe.generation != generation {
                    return;
                }
                probe.ready.readable |= readable;
                probe.ready.writable |= writable;
                probe.ready.hup |= event.is_read_closed() || event.is_error();
                self.drive_probe(key);
            }
            Kind::Waker => self.apply_control(),
        }
    }

    /// The client's exchange, moved out of the slab (the phase becomes `ReadHead`).
    fn take_exchange(&mut self, key: usize) -> Option<Box<conn::Exchange>> {
        let c = self.clients.get_mut(key)?;
        match std::mem::replace(&mut c.phase, conn::Phase::IDLE) {
            conn::Phase::Exchange(xk) => self.exchanges.try_remove(xk),
            other => {
                c.phase = other;
                None
            }
        }
    }

    /// `ex` in a box: a spare one when there is one.
    fn boxed_exchange(&mut self, ex: conn::Exchange) -> Box<conn::Exchange> {
        match self.spare_exchanges.pop() {
            Some(mut spare) => {
                *spare = ex;
                spare
            }
            None => Box::new(ex),
        }
    }

    /// Keeps a finished exchange's box for the next request (its contents are dropped
    /// when the box is reused).
    fn recycle_exchange(&mut self, ex: Box<conn::Exchange>) {
        if self.spare_exchanges.len() < SPARE_EXCHANGES {
            self.spare_exchanges.push(ex);
        }
    }

    /// Parks `ex` in the slab as the client's exchange.
    fn put_exchange(&mut self, key: usize, ex: Box<conn::Exchange>) -> bool {
        if !self.clients.contains(key) {
            return false;
        }
        let xk = self.exchanges.insert(ex);
        if let Some(c) = self.clients.get_mut(key) {
            c.phase = conn::Phase::Exchange(xk);
        }
        true
    }

    fn exchange_of(&self, key: usize) -> Option<&conn::Exchange> {
        match self.clients.get(key)?.phase {
            conn::Phase::Exchange(xk) => self.exchanges.get(xk).map(|ex| &**ex),
            _ => None,
        }
    }

    /// The wall-clock time of a loop instant (access-log timestamps).
    pub(super) fn wall_clock(&self, at: Instant) -> std::time::SystemTime {
        std::time::SystemTime::now() - self.now.saturating_duration_since(at)
    }

    fn run_deadlines(&mut self) {
        while let Some(token) = self.timers.pop_due(self.now) {
            let (kind, generation, key) = token::decode(token);
            match kind {
                Kind::Client => {
                    let now = self.now;
                    let Some(client) = self.clients.get_mut(key) else {
                        continue;
                    };
                    if client.generation != generation {
                        continue;
                    }
                    if client.deadline.armed_at.is_some_and(|at| at <= now) {
                        client.deadline.armed_at = None;
                    }
                    if client.deadline.at <= now {
                        self.client_timed_out(key);
                    } else {
                        self.arm_client(key);
                    }
                }
                Kind::Backend => {
                    let now = self.now;
                    let Some(upstream) = self.upstreams.get_mut(key) else {
                        continue;
                    };
                    if upstream.generation != generation {
                        continue;
                    }
                    if upstream.deadline.armed_at.is_some_and(|at| at <= now) {
                        upstream.deadline.armed_at = None;
                    }
                    if upstream.deadline.at <= now {
                        self.upstream_timed_out(key);
                    } else {
                        self.arm_upstream(key);
                    }
                }
                Kind::Probe => {
                    if self
                        .probes
                        .get(key)
                        .is_some_and(|p| p.generation == generation)
                    {
                        self.probe_due(key);
                    }
                }
                Kind::Listener | Kind::Waker => {}
            }
        }
    }

    fn run_again(&mut self) {
        for (key, generation) in std::mem::take(&mut self.again) {
            if self
                .clients
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.drive(key);
            }
        }
    }

    fn arm_client(&mut self, key: usize) {
        if let Some(client) = self.clients.get_mut(key) {
            if client.deadline.needs_arming() {
                self.timers.arm(
                    client.deadline.at,
                    token::encode(Kind::Client, client.generation, key),
                );
                client.deadline.armed_at = Some(client.deadline.at);
            }
        }
    }

    fn arm_upstream(&mut self, key: usize) {
        if let Some(upstream) = self.upstreams.get_mut(key) {
            if upstream.deadline.needs_arming() {
                self.timers.arm(
                    upstream.deadline.at,
                    token::encode(Kind::Backend, upstream.generation, key),
                );
                upstream.deadline.armed_at = Some(upstream.deadline.at);
            }
        }
    }

    /// Closes an upstream connection wherever it is (pool or exchange bookkeeping is the caller's).
    fn close_upstream(&mut self, key: usize) {
        if let Some(mut upstream) = self.upstreams.try_remove(key) {
            if upstream.owner.is_none() {
                self.pool.remove(upstream.backend, key);
            }
            self.bufs.release(&mut upstream.rbuf);
        }
    }
}

/// Milliseconds from `epoch` to `now`, never 0 (0 marks "no head started").
fn clock_ms(now: Instant, epoch: Instant) -> u32 {
    let ms = now.saturating_duration_since(epoch).as_millis();
    (ms as u32).max(1)
}
