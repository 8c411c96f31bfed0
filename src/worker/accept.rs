//! Accepting client connections: the `--max-connections` cap, `--allow` and security
//! groups at accept, the pause when the process runs out of descriptors, and a new
//! client's first state.

use super::*;

/// The accept side's state: paused at `--max-connections`, or backing off after a
/// failure (out of descriptors), and the rate limit of its warnings.
pub(super) struct Accepting {
    /// Stopped at `max_connections`; resumed when a client closes.
    pub paused: bool,
    /// Out of descriptors (or kernel memory) at accept: no accepting until then.
    pub backoff: Option<Instant>,
    /// Failures since the last warning, and when the next warning may go out.
    pub failures: u64,
    pub next_warning: Instant,
}

impl Accepting {
    pub fn new() -> Accepting {
        Accepting {
            paused: false,
            backoff: None,
            failures: 0,
            next_warning: Instant::now(),
        }
    }
}

impl Worker {
    pub(super) fn accept(&mut self, index: usize) {
        if self.accepting.backoff.is_some() || self.shutdown.is_some() {
            return;
        }
        loop {
            if self.clients.len() >= self.settings.max_connections {
                self.accepting.paused = true;
                return;
            }
            let Some(listening) = self.listening.get(index) else {
                return;
            };
            let listener = listening.listener;
            let bind = listening.addr;
            let (mut sock, peer) = match listening.sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the kernel's
                    // backlog; accepting pauses briefly (no busy loop on a full table)
                    // and then retries every listener by itself.
                    self.accept_failed(&e);
                    return;
                }
            };
            // TCP_NODELAY comes from the listening socket (Linux copies it on accept).
            let local = if bind.ip().is_unspecified() {
                match sock.local_addr() {
                    Ok(addr) => addr,
                    Err(_) => continue,
                }
            } else {
                bind
            };
            let Some(view) = self.topo.listeners.get(listener) else {
                continue;
            };
            // README: a source must pass both `--allow` and the load balancer's
            // security groups.
            let admitted = self.settings.allow.permits(view.listener.port, peer.ip())
                && crate::config::vpc::admits(
                    self.topo
                        .lbs
                        .get(view.lb)
                        .and_then(|l| l.sources.as_deref()),
                    peer.ip(),
                );
            if !admitted {
                // Closed before a byte is read (dropping the socket closes it).
                self.settings
                    .stats
                    .allow_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::debug!("connection from {peer} refused by --allow or a security group");
                continue;
            }
            let lb = view.lb;
            let tls = view.listener.protocol.is_tls();
            let idle = self
                .topo
                .lbs
                .get(lb)
                .map_or(crate::config::DEFAULT_IDLE_TIMEOUT, |l| l.idle_timeout);
            let zone = self.balancer.assign_zone(&self.topo, lb);
            let generation = self.generations.issue();
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(
                    &mut sock,
                    token::encode(Kind::Client, generation, key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let sock = match (&self.settings.tls, tls) {
                (_, false) => stream::Stream::Plain(sock),
                (Some(config), true) => match stream::Stream::tls(sock, config.clone()) {
                    Ok(stream) => stream,
                    Err(_) => continue,
                },
                (None, true) => continue,
            };
            entry.insert(Client {
                sock,
                generation,
                listener,
                zone,
                peer,
                local,
                ready: Default::default(),
                read_closed: false,
                rbuf: None,
                wbuf: None,
                phase: conn::Phase::IDLE,
                deadline: conn::Deadline::new(self.now + idle),
                idle,
            });
            self.arm_client(key);
            self.settings
                .stats
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if tunnel::is_tcp_listener(self, listener) {
                match self.start_tunnel(key) {
                    session::Step::Close => self.close_client(key),
                    _ => self.drive(key),
                }
            }
        }
    }

    pub(super) fn resume_accepting(&mut self) {
        if self.accepting.paused && self.clients.len() < self.settings.max_connections {
            self.accepting.paused = false;
            self.accept_all();
        }
    }

    pub(super) fn accept_all(&mut self) {
        let keys: Vec<usize> = self.listening.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.accept(key);
        }
    }

    /// Pauses accepting for `ACCEPT_BACKOFF`; warns at most once a second, with a count.
    fn accept_failed(&mut self, e: &io::Error) {
        self.accepting.backoff = Some(self.now + ACCEPT_BACKOFF);
        self.accepting.failures += 1;
        if self.now >= self.accepting.next_warning {
            log::warn!(
                "worker {}: accept failed {} times in the last second ({e}); pausing accepts \
                 for {} ms at a time until it succeeds",
                self.id,
                self.accepting.failures,
                ACCEPT_BACKOFF.as_millis()
            );
            self.accepting.failures = 0;
            self.accepting.next_warning = self.now + Duration::from_secs(1);
        }
    }
}
