//! Moving a worker to a new topology without dropping what still belongs to it.
//!
//! The control thread sends each change as a whole new `Topology` plus the listening
//! sockets it bound for new listeners. Indices change between topologies, so the worker
//! maps everything it holds by what survives: listeners by (load balancer, port),
//! instances by registration serial, back ends by (serial, address). Connections,
//! pooled upstreams, balancer counts and probes follow their instance; what lost its
//! listener or instance is closed, and a request in flight to an instance that is gone
//! (deregistered without draining, or drained past the timeout) gets ELB's 504. Once
//! switched, the worker reports the topology's epoch (see `InFlight`): the control
//! plane ends no drain before every worker routes by the draining topology.

use super::conn::Phase;
use super::probe::owner;
use super::session::Step;
use super::{Listening, Worker};
use crate::config::Topology;
use crate::http::canned::Canned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the control thread tells a worker.
pub enum Control {
    /// Route by this topology from now on; `listening` are sockets for its new listeners.
    Topology {
        topology: Arc<Topology>,
        listening: Vec<Listening>,
    },
    /// New TLS handshakes use this configuration (SIGHUP); sessions already open keep theirs.
    Tls(Arc<rustls::ServerConfig>),
    /// SIGTERM: stop accepting, finish what is in flight until `deadline`, then stop.
    Shutdown { deadline: std::time::Instant },
}

/// Marks an index that has no counterpart in the new topology.
const GONE: usize = usize::MAX;

impl Worker {
    pub(super) fn apply_control(&mut self) {
        while let Ok(message) = self.control.try_recv() {
            match message {
                Control::Topology {
                    topology,
                    listening,
                } => self.apply_topology(topology, listening),
                Control::Tls(config) => self.settings.tls = Some(config),
                Control::Shutdown { deadline } => self.begin_shutdown(deadline),
            }
        }
    }

    fn apply_topology(&mut self, new: Arc<Topology>, listening: Vec<Listening>) {
        let old = std::mem::replace(&mut self.topo, new.clone());
        let maps = Maps::new(&old, &new);

        // Listening sockets: keep the surviving ones, close the others, add the new ones.
        let mut closed = Vec::new();
        for (key, l) in self.listening.iter_mut() {
            l.listener = maps.listener(l.listener);
            if l.listener == GONE {
                closed.push(key);
            }
        }
        for key in closed {
            let mut l = self.listening.remove(key);
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
        for l in listening {
            if let Err(e) = self.add_listening(l) {
                log::error!(
                    "worker {}: cannot watch a new listening socket: {e}",
                    self.id
                );
            }
        }

        // Upstream connections follow their back end; idle ones without one close.
        let mut stale = Vec::new();
        for (key, u) in self.upstreams.iter_mut() {
            u.backend = maps.backend(u.backend);
            if u.backend == GONE && u.owner.is_none() {
                stale.push(key);
            }
        }
        let stacks = self.pool.take();
        self.pool.resize(new.backends.len());
        for (backend, stack) in stacks.into_iter().enumerate() {
            match maps.backend(backend) {
                GONE => stale.extend(stack),
                moved => stack.into_iter().for_each(|key| {
                    self.pool.push(moved, key);
                }),
            }
        }
        for key in stale {
            if let Some(mut u) = self.upstreams.try_remove(key) {
                self.bufs.release(&mut u.rbuf);
            }
        }
        self.balancer.remap(&new, &maps.instances, &maps.backends);

        // Clients follow their listener; exchanges follow their instance.
        let mut orphans = Vec::new();
        let mut cut = Vec::new();
        for (key, c) in self.clients.iter_mut() {
            let old_lb = old
                .listeners
                .get(c.listener)
                .and_then(|l| old.lbs.get(l.lb));
            let zone_name = c.zone.and_then(|z| old_lb.and_then(|lb| lb.zones.get(z)));
            c.listener = maps.listener(c.listener);
            let Some(view) = new.listeners.get(c.listener) else {
                orphans.push(key);
                continue;
            };
            if let Some(lb) = new.lbs.get(view.lb) {
                c.idle = lb.idle_timeout;
                c.zone = match zone_name {
                    Some(name) if !lb.cross_zone => lb.zones.iter().position(|z| z == name),
                    _ => None,
                };
                if !lb.cross_zone && c.zone.is_none() {
                    c.zone = self.balancer.assign_zone(&new, view.lb);
                }
            }
            if let Phase::Tunnel(tk) = c.phase {
                if let Some(t) = self.tunnels.get_mut(tk) {
                    t.instance = maps.instance(t.instance);
                    t.backend = maps.backend(t.backend);
                    // A TCP connection to an instance that left cannot be answered: it closes.
                    if t.instance == GONE {
                        orphans.push(key);
                    }
                }
            }
            if let Some(ex) = match c.phase {
                Phase::Exchange(xk) => self.exchanges.get_mut(xk),
                _ => None,
            } {
                ex.instance = maps.instance(ex.instance);
                ex.backend = maps.backend(ex.backend);
                if ex.instance == GONE {
                    cut.push(key);
                }
            }
        }
        for key in orphans {
            self.close_client(key);
        }
        for key in cut {
            self.cut_exchange(key);
        }

        self.remap_probes(&new, &maps);
        self.resume_accepting();
        // Last: from here on no new request goes to an instance this topology drains,
        // which is what lets the control plane end a drain on a zero count.
        self.in_flight.routing_by(new.epoch);
    }

    /// Spec §5.5: an in-flight request to an instance that left without draining.
    fn cut_exchange(&mut self, key: usize) {
        let Some(ex) = self.take_exchange(key) else {
            return;
        };
        match self.fail_exchange(key, ex, Canned::GatewayTimeout) {
            Step::Close => self.close_client(key),
            _ => self.drive(key),
        }
    }

    fn remap_probes(&mut self, new: &Topology, maps: &Maps) {
        let mut probed = vec![false; new.instances.len()];
        let mut gone = Vec::new();
        for (key, p) in self.probes.iter_mut() {
            match maps.instance(p.instance) {
                GONE => gone.push(key),
                moved => {
                    p.instance = moved;
                    probed[moved] = true;
                }
            }
        }
        for key in gone {
            if let Some(mut p) = self.probes.try_remove(key) {
                self.bufs.release(&mut p.buf);
            }
        }
        for (instance, done) in probed.into_iter().enumerate() {
            if !done && owner(new, instance, self.settings.workers) == self.id {
                self.add_probe(instance);
            }
        }
    }
}

/// Old index → new index, for every table the worker keeps indices into.
struct Maps {
    listeners: Vec<usize>,
    instances: Vec<usize>,
    backends: Vec<usize>,
}

impl Maps {
    fn new(old: &Topology, new: &Topology) -> Maps {
        let listener_keys: HashMap<(&str, u16), usize> = new
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some(((new.lbs.get(l.lb)?.name.as_str(), l.listener.port), i)))
            .collect();
        let listeners = old
            .listeners
            .iter()
            .map(|l| {
                let name = old.lbs.get(l.lb).map_or("", |lb| lb.name.as_str());
                listener_keys
                    .get(&(name, l.listener.port))
                    .copied()
                    .unwrap_or(GONE)
            })
            .collect();
        let serials: HashMap<u64, usize> = new
            .instances
            .iter()
            .enumerate()
            .map(|(i, v)| (v.serial, i))
            .collect();
        let instances: Vec<usize> = old
            .instances
            .iter()
            .map(|v| serials.get(&v.serial).copied().unwrap_or(GONE))
            .collect();
        // TLS is part of a back end's identity: a pooled plain connection never serves TLS.
        let backend_keys: HashMap<(usize, SocketAddr, bool), usize> = new
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| ((b.instance, b.addr, b.tls), i))
            .collect();
        let backends = old
            .backends
            .iter()
            .map(|b| match instances.get(b.instance) {
                Some(&i) if i != GONE => backend_keys
                    .get(&(i, b.addr, b.tls))
                    .copied()
                    .unwrap_or(GONE),
                _ => GONE,
            })
            .collect();
        Maps {
            listeners,
            instances,
            backends,
        }
    }

    fn listener(&self, old: usize) -> usize {
        self.listeners.get(old).copied().unwrap_or(GONE)
    }

    fn instance(&self, old: usize) -> usize {
        self.instances.get(old).copied().unwrap_or(GONE)
    }

    fn backend(&self, old: usize) -> usize {
        self.backends.get(old).copied().unwrap_or(GONE)
    }
}
