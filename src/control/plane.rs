//! The control plane's state and the one way it changes: `apply`.
//!
//! A mutating action runs on a copy of the model; only when the copy yields a topology,
//! its new listeners are bound, and the state file holds it, does the copy replace the
//! model and go out to every worker. So an answered change is durable and live, and a
//! refused one leaves nothing behind.

use super::actions;
use super::error::ApiError;
use super::model::Model;
use super::query::Params;
use super::state::StateFile;
use crate::backend::health::InFlight;
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
    pub state: Option<StateFile>,
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
}

impl Plane {
    /// Runs one API action; mutating ones are persisted and published before the answer.
    pub fn run(
        &mut self,
        params: &Params,
        request_id: &str,
        now: Instant,
    ) -> Result<String, ApiError> {
        let action = params.action().unwrap_or("");
        if !actions::mutates(action) {
            return actions::run(&mut self.model, params, request_id, now);
        }
        let mut next = self.model.clone();
        let answer = actions::run(&mut next, params, request_id, now)?;
        self.commit(next)?;
        if action == "SetLoadBalancerListenerSSLCertificate" {
            self.reload_tls();
        }
        Ok(answer)
    }

    /// Ends drains that are done; called on a timer while any drain is running.
    pub fn tick(&mut self, now: Instant) {
        if !self.model.draining() {
            return;
        }
        let mut next = self.model.clone();
        let in_flight = &self.in_flight;
        let changed = next.finish_draining(now, |slot| in_flight.iter().map(|w| w.get(slot)).sum());
        if changed {
            if let Err(e) = self.commit(next) {
                log::error!("ending connection draining: {e}");
            }
        }
    }

    /// The status page (`GET /`).
    pub fn status_page(&self) -> String {
        super::status_page::render(&self.model, &self.stats, &self.nodes, &self.this_node)
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

    fn commit(&mut self, next: Model) -> Result<(), ApiError> {
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
        self.ports.extend(listen_addrs(&topology, self.bind));
        if let Some(state) = &self.state {
            state.save(&next.lbs).map_err(|e| {
                log::error!("state file: {e}");
                ApiError::internal(format!("The change could not be saved: {e}"))
            })?;
        }
        self.model = next;
        if let Some(dns) = &self.dns {
            dns.publish(&self.model.dns_domain, &self.model.lbs);
        }
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
        Ok(())
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
