//! The DNS server (`--dns ADDR`): authoritative answers for the load balancers' names
//! under `--dns-domain`, so that clients reach a load balancer by its name, as ELB's
//! clients do.
//!
//! `zone` is the snapshot the control thread builds, `answer` the pure function from a
//! query to its reply, `server` the UDP and TCP threads that carry them.

pub mod answer;
pub mod server;
#[cfg(test)]
mod tests;
pub mod zone;

pub use answer::{answer, Transport};
pub use zone::DnsZone;

use std::sync::{Arc, Mutex};

/// The current zone, shared by the control thread (which replaces it) and the server
/// threads (which clone the inner `Arc` per query and never hold the lock while
/// answering).
#[derive(Clone)]
pub struct Published(Arc<Mutex<Arc<DnsZone>>>);

impl Published {
    pub fn new(zone: DnsZone) -> Published {
        Published(Arc::new(Mutex::new(Arc::new(zone))))
    }

    pub fn set(&self, zone: DnsZone) {
        // A poisoned lock only means a thread panicked while holding it: the value
        // itself is a whole Arc, so take it over.
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(zone);
    }

    pub fn get(&self) -> Arc<DnsZone> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the control thread needs to rebuild the zone: the published slot, the live
/// nodes (this node alone, or membership's list with `--cluster`) and this node's identity.
pub struct Feed {
    pub published: Published,
    pub nodes: Vec<crate::config::node::NodeInfo>,
    pub this_node: String,
    /// The glue address of the name server: where `--dns` listens, or this node's
    /// address when it listens on every address.
    pub ns_address: std::net::IpAddr,
}

impl Feed {
    /// The zone for `lbs`, published to the server threads. Called after every change
    /// of the model or of the node list.
    pub fn publish(&self, domain: &str, lbs: &[crate::control::model::LbState]) {
        self.published.set(DnsZone::build(
            domain,
            lbs,
            &self.nodes,
            &self.this_node,
            self.ns_address,
        ));
    }
}
