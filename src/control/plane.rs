//! The control plane's state and the one way it changes: `apply`.
//!
//! A mutating action runs on a copy of the model; only when the copy yields a topology,
//! its new listeners are bound, and the store (state file or etcd) holds it, does the
//! copy replace the model and go out to every worker. So an answered change is durable
//! and live, and a refused one leaves nothing behind.
//!
//! In a cluster, a write can lose a race with another node (the store says `Conflict`):
//! the plane reloads the store, applies the same action to the fresh model, and tries
//! again, at most `CONFLICT_RETRIES` times before answering ELB's `Throttling`. Changes
//! other nodes made arrive through `follow` and take the same path to the workers,
//! without the store write.

use super::actions;
use super::error::ApiError;
use super::model::registration::own_view;
use super::model::{LbState, Model};
use super::query::Params;
use super::store::{Change, Remote, Store, StoreError};
use crate::backend::health::{Health, InFlight};
use crate::config::Topology;
use crate::worker::{bind_new_listeners, Control, WorkerHandle};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Plane {
    pub model: Model,
    pub topology: Arc<Topology>,
    pub workers: Vec<WorkerHandle>,
    pub in_flight: Vec<Arc<InFlight>>,
    pub bind: IpAddr,
    /// Where changes are kept: the state file, etcd, or nowhere (`--state` not given).
    pub store: Option<Box<dyn Store>>,
    /// Every address and port this process has bound: still ours while workers catch up.
    pub ports: HashSet<SocketAddr>,
    /// Certificate files and policy, loaded again on SIGHUP.
    pub certs: Vec<crate::tls::CertPair>,
    pub ssl_policy: String,
    /// Whether the workers have a TLS server configuration (they get one with the first
    /// HTTPS or SSL listener, from the flags or the API).
    pub tls_ready: bool,
    /// Every worker's metric counters and desync counts, summed at a scrape.
    pub stats: Vec<Arc<crate::stats::Stats>>,
    pub desync: Vec<Arc<crate::http::desync::Counts>>,
    /// `--dns`: the zone is rebuilt from every committed model.
    pub dns: Option<crate::dns::Feed>,
    /// The live nodes (membership's list; this node alone without `--cluster`) and
    /// this node's name, for the status page.
    pub nodes: Vec<crate::config::node::NodeInfo>,
    pub this_node: String,
    /// `--cluster`: this node's membership, left (lease revoked) at SIGTERM so the node
    /// drops out of the fleet and DNS before it drains.
    pub membership: Option<crate::cluster::members::Membership>,
    /// `--cluster`: this node's health transitions out to etcd, the other nodes' views
    /// in, and DescribeInstanceHealth's merge (README "Instance health across nodes").
    pub fleet_health: Option<crate::cluster::health::FleetHealth>,
    /// Runs the store's round trips (etcd) off this thread; None: they run inline.
    pub committer: Option<super::committer::Committer>,
    /// The write waiting for its round trip: one at a time, in order.
    pub pending: Option<writes::Pending>,
}

#[path = "plane_writes.rs"]
pub mod writes;
pub use writes::Ran;

/// Attempts after the first when another node wrote the same load balancer first.
const CONFLICT_RETRIES: u32 = 6;
/// The longest pause before a retry: nodes that conflicted once would otherwise retry
/// in step and conflict again.
const MAX_CONFLICT_PAUSE_MS: u64 = 16;

enum CommitError {
    Api(ApiError),
    Conflict,
}

impl From<ApiError> for CommitError {
    fn from(e: ApiError) -> CommitError {
        CommitError::Api(e)
    }
}

/// What a new model needs before it can replace the old: its topology and the sockets
/// of its new listeners, bound, and the TLS configuration when it is the first to need one.
struct Prepared {
    topology: Arc<Topology>,
    sockets: Vec<Vec<crate::worker::Listening>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Plane {
    /// Runs one API action; mutating ones are persisted and published before the answer,
    /// which comes later (`committed`) when the store's write is a round trip.
    pub fn run(&mut self, params: &Params, request_id: &str, now: Instant) -> Ran {
        let action = params.action().unwrap_or("");
        if !actions::mutates(action) {
            return Ran::Done(match &self.fleet_health {
                Some(fleet) => {
                    let nodes = &self.nodes;
                    let merged =
                        |lb: &LbState, id: &str, local: Health| fleet.merged(lb, id, local, nodes);
                    actions::run(&mut self.model, params, request_id, now, &merged)
                }
                None => actions::run(&mut self.model, params, request_id, now, &own_view),
            });
        }
        self.write(params, request_id, now, 0)
    }

    /// Changes other nodes made (the cluster watch): applied to the model and sent to
    /// the workers as an API change is, without writing them back. The batch goes in
    /// one swap; if it cannot run here (a port taken on this host, say), each change is
    /// tried alone, and the store forgets the ones that fail, so this node never writes
    /// its stale copy over them and takes the next version that comes.
    pub fn follow(&mut self, remote: Remote) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let changes = store.follow(remote);
        if changes.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut next = self.model.clone();
        let mut refused = Vec::new();
        for change in &changes {
            if let Err(e) = apply_change(&mut next, change, now) {
                refused.push((change, e));
            }
        }
        match self.prepare(&mut next) {
            Ok(prepared) => {
                self.install(next, prepared);
                for (change, e) in refused {
                    self.cannot_follow(change, &e);
                }
            }
            Err(e) if changes.len() == 1 => self.cannot_follow(&changes[0], &e),
            Err(_) => {
                for change in &changes {
                    let mut next = self.model.clone();
                    let applied =
                        apply_change(&mut next, change, now).and_then(|()| self.prepare(&mut next));
                    match applied {
                        Ok(prepared) => self.install(next, prepared),
                        Err(e) => self.cannot_follow(change, &e),
                    }
                }
            }
        }
    }

    fn cannot_follow(&mut self, change: &Change, e: &ApiError) {
        let name = match change {
            Change::Put(lb) => lb.name.as_str(),
            Change::Delete(name) => name.as_str(),
        };
        log::error!("cluster: load balancer {name} as another node changed it cannot run here, this node keeps its copy: {e}");
        let ours = self.model.lb(name).ok();
        if let Some(store) = self.store.as_mut() {
            store.forget(name, ours);
        }
    }

    /// Some(why) while the store is known unreachable: answers come from this node's
    /// last state.
    pub fn stale(&self) -> Option<String> {
        self.store.as_ref().and_then(|s| s.stale())
    }

    /// After a conflict: the model becomes what the store holds now.
    fn reload(&mut self) -> Result<(), ApiError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let lbs = store.load().map_err(store_error)?;
        let mut next = self.model.clone();
        let now = Instant::now();
        let names: Vec<String> = next.lbs.iter().map(|lb| lb.name.clone()).collect();
        for name in names
            .iter()
            .filter(|n| !lbs.iter().any(|lb| &&lb.name == n))
        {
            next.delete(name);
        }
        for lb in lbs {
            next.adopt(lb, now)?;
        }
        let prepared = self.prepare(&mut next)?;
        self.install(next, prepared);
        Ok(())
    }

    /// Ends drains that are done, and hands this node's health transitions to the
    /// publisher; called on a timer while either has work.
    pub fn tick(&mut self, now: Instant) {
        if let Some(fleet) = &mut self.fleet_health {
            let lease = self.membership.as_ref().map_or(0, |m| m.lease());
            fleet.observe(&self.model, &self.topology, lease, now);
        }
        // A write waiting for the store was made on this model: nothing replaces it first.
        if !self.model.draining() || self.pending.is_some() {
            return;
        }
        let mut next = self.model.clone();
        let in_flight = &self.in_flight;
        // The epochs first (Acquire), then the counts: see `InFlight`.
        let seen = in_flight
            .iter()
            .map(|w| w.epoch())
            .min()
            .unwrap_or(u64::MAX);
        let changed = next.finish_draining(now, seen, |slot| {
            in_flight.iter().map(|w| w.get(slot)).sum()
        });
        if changed {
            match self.commit(next) {
                Ok(()) => {}
                Err(CommitError::Api(e)) => log::error!("ending connection draining: {e}"),
                Err(CommitError::Conflict) => {
                    log::info!("ending connection draining: changed elsewhere meanwhile; next tick")
                }
            }
        }
    }

    /// The status page (`GET /`); `writes_waiting`: API writes waiting for the store.
    pub fn status_page(&self, writes_waiting: usize) -> String {
        let store = self.store.as_ref().map(|s| super::status_store::StoreView {
            describe: s.describe(),
            outage: s.outage(),
            writes_waiting,
        });
        let page = super::status_page::render(
            &self.model,
            &self.stats,
            &self.nodes,
            &self.this_node,
            store.as_ref(),
        );
        let Some(fleet) = &self.fleet_health else {
            return page;
        };
        let mut table = String::new();
        let html = super::status_page::html;
        super::status_health::render(&mut table, &self.model, fleet, &self.nodes, html);
        match page.rfind("</body>") {
            Some(at) => format!("{}{table}{}", &page[..at], &page[at..]),
            None => page + &table,
        }
    }

    /// Membership's new list of live nodes: shown on the status page and, with `--dns`,
    /// answered with from now on.
    pub fn set_nodes(&mut self, nodes: Vec<crate::config::node::NodeInfo>) {
        if let Some(dns) = &mut self.dns {
            dns.nodes = nodes.clone();
            dns.publish(&self.model.dns_domain, &self.model.lbs);
        }
        self.nodes = nodes;
    }

    /// `--address-pool` with `--cluster`: this node's load balancer → address map goes
    /// into its membership record, for the other nodes' DNS answers (README "Running
    /// several nodes"). Only hands the map over; the membership thread writes it.
    fn publish_addresses(&self) {
        if let (Some(membership), Some(_)) = (&self.membership, &self.model.placement.pool) {
            membership.set_addresses(self.model.own_addresses());
        }
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        super::metrics::render(&super::metrics::Sources {
            topology: &self.topology,
            stats: &self.stats,
            desync: &self.desync,
        })
    }

    /// SIGTERM: every worker stops accepting and finishes its requests, for at most the
    /// longest connection-draining timeout among the load balancers that drain (none:
    /// in-flight requests are cut at once, as deregistration without draining does).
    pub fn shutdown(&mut self) {
        if let Some(membership) = self.membership.take() {
            // One etcd round trip at most; the node leaves DNS before it drains.
            membership.leave();
        }
        let grace = self
            .model
            .lbs
            .iter()
            .filter(|lb| lb.attributes.draining)
            .map(|lb| Duration::from_secs(lb.attributes.draining_timeout.into()))
            .max()
            .unwrap_or(Duration::ZERO);
        log::info!(
            "stopping: no new connections; in-flight requests get up to {} s",
            grace.as_secs()
        );
        let deadline = Instant::now() + grace;
        for worker in &self.workers {
            worker.send(Control::Shutdown { deadline });
        }
    }

    /// SIGHUP: new TLS handshakes use the certificate files as they are now; a file that
    /// does not load keeps the old certificates (and says why).
    pub fn reload_tls(&mut self) {
        if self.certs.is_empty() {
            log::info!("no --cert files to reload: the self-signed certificate stays in use");
            return;
        }
        match crate::tls::server_config(&self.certs, &self.ssl_policy) {
            Ok(config) => {
                for worker in &self.workers {
                    worker.send(Control::Tls(config.clone()));
                }
                log::info!("certificates reloaded ({} pairs)", self.certs.len());
            }
            Err(e) => log::error!("certificates not reloaded, the old ones stay in use: {e}"),
        }
    }

    fn commit(&mut self, mut next: Model) -> Result<(), CommitError> {
        let prepared = self.prepare(&mut next)?;
        if let Some(store) = self.store.as_mut() {
            match store.commit(&next.lbs) {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Err(CommitError::Conflict),
                Err(e) => return Err(store_error(e).into()),
            }
        }
        self.install(next, prepared);
        Ok(())
    }

    /// Numbers the topology (`Model::publish`: the drain epochs) and builds it.
    fn prepare(&self, next: &mut Model) -> Result<Prepared, ApiError> {
        next.publish();
        let topology = Arc::new(
            next.topology()
                .map_err(|e| ApiError::invalid_instance(e.to_string()))?,
        );
        let sockets = bind_new_listeners(
            &self.topology,
            &topology,
            self.bind,
            self.workers.len(),
            &self.ports,
        )
        .map_err(|e| ApiError::invalid_configuration(format!("{e}")))?;
        let needs_tls = topology
            .listeners
            .iter()
            .any(|l| l.listener.protocol.is_tls());
        let tls = if needs_tls && !self.tls_ready {
            let config = crate::tls::server_config(&self.certs, &self.ssl_policy).map_err(|e| {
                ApiError::invalid_configuration(format!("TLS listeners cannot start: {e}"))
            })?;
            Some(config)
        } else {
            None
        };
        Ok(Prepared {
            topology,
            sockets,
            tls,
        })
    }

    fn install(&mut self, next: Model, prepared: Prepared) {
        let Prepared {
            topology,
            sockets,
            tls,
        } = prepared;
        self.ports.extend(listen_addrs(&topology, self.bind));
        self.model = next;
        if let Some(dns) = &self.dns {
            dns.publish(&self.model.dns_domain, &self.model.lbs);
        }
        self.publish_addresses();
        self.topology = topology.clone();
        if let Some(config) = tls {
            // Before the topology: a worker has it when the new listener's first client comes.
            for worker in &self.workers {
                worker.send(Control::Tls(config.clone()));
            }
            self.tls_ready = true;
        }
        for (worker, listening) in self.workers.iter().zip(sockets) {
            if !worker.send(Control::Topology {
                topology: topology.clone(),
                listening,
            }) {
                log::error!("a worker has stopped; it did not take the new configuration");
            }
        }
    }
}

/// On an error `model` keeps its copy of that load balancer (adopt puts it back).
fn apply_change(model: &mut Model, change: &Change, now: Instant) -> Result<(), ApiError> {
    match change {
        Change::Put(lb) => model.adopt(lb.as_ref().clone(), now),
        Change::Delete(name) => {
            model.delete(name);
            Ok(())
        }
    }
}

/// A pause of 0 to 2^attempt ms (at most MAX_CONFLICT_PAUSE_MS); the clock's
/// nanoseconds are random enough to put two nodes out of step.
fn jitter(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let ceiling = (1u64 << attempt.min(10)).min(MAX_CONFLICT_PAUSE_MS);
    Duration::from_micros(nanos % (ceiling * 1000 + 1))
}

/// A store failure as the API answers it: etcd away is ELB's 503, the rest are ours.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(why) => {
            log::warn!("API change refused, nothing changed: {why}");
            ApiError::service_unavailable(format!("The change was not made: {why}"))
        }
        other => {
            log::error!("store: {other}");
            ApiError::internal(format!("The change could not be saved: {other}"))
        }
    }
}

/// Every address and port `topology`'s listeners listen on.
pub fn listen_addrs(topology: &Topology, bind: IpAddr) -> impl Iterator<Item = SocketAddr> + '_ {
    topology.listeners.iter().map(move |l| {
        SocketAddr::new(
            crate::worker::listen_address(topology, l.lb, bind),
            l.listener.port,
        )
    })
}
