//! The immutable runtime picture the workers route from.
//!
//! A `Topology` flattens load balancers, listeners, instances and their back-end
//! addresses into index-addressed tables so the data path never hashes a string: a
//! listener knows its back-end indices, a back end knows its instance and address, and
//! an instance knows its zone index (or `None` when its zone is not enabled).
//! Host names are resolved here, once, never on the data path.
//!
//! Indices are only valid within one topology. What survives a change is named by
//! `Registration`: an instance's health-board slot and a serial unique to that one
//! registration, so a worker moving to a new topology can carry its connections, pools
//! and probes across by serial, and an instance registered again starts afresh.

use super::{HealthCheck, Host, Instance, Listener, LoadBalancer, Registration};
use crate::backend::health::HealthBoard;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// One routable target: an instance at the port a listener forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub instance: usize,
    pub addr: SocketAddr,
    /// A PROXY protocol header opens every connection to this back end.
    pub proxy_protocol: Option<crate::tcp::proxy_protocol::Version>,
    /// The listener's instance protocol is HTTPS or SSL: connections start TLS.
    pub tls: bool,
    /// Public keys a back-end authentication policy pins for this port (empty: none).
    pub pins: Vec<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct ListenerView {
    pub lb: usize,
    pub listener: Listener,
    /// Indices into `Topology::backends`, one per registered instance.
    pub backends: Vec<usize>,
    /// Sticky sessions (HTTP/HTTPS listeners only, spec §7.2).
    pub sticky: Option<crate::http::sticky::Policy>,
}

#[derive(Clone, Debug)]
pub struct LbView {
    pub name: String,
    pub zones: Vec<String>,
    pub cross_zone: bool,
    pub idle_timeout: Duration,
    pub health_check: HealthCheck,
    pub desync_mode: crate::http::desync::Mode,
    /// Where this load balancer's metrics are counted (`crate::stats`).
    pub stats_slot: usize,
    /// Client sources its security groups admit (`None`: it has none); the control
    /// plane fills it in after `build`.
    pub sources: Option<Vec<super::allow::Network>>,
    /// Its own listen address (`--address-pool`); `None`: the process's `--bind`.
    pub address: Option<IpAddr>,
}

#[derive(Clone, Debug)]
pub struct InstanceView {
    pub lb: usize,
    pub id: String,
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub zone_name: String,
    /// Index into the load balancer's enabled zones; `None`: registered but never routed to.
    pub zone: Option<usize>,
    /// Where requests this instance serves are counted (`crate::stats`).
    pub zone_slot: usize,
    /// Health-board slot, stable while the instance stays registered.
    pub slot: usize,
    /// Unique to this registration; the key that carries worker state across topologies.
    pub serial: u64,
    /// Deregistered with connection draining: no new requests, in-flight ones finish.
    pub draining: bool,
}

#[derive(Debug, Default)]
pub struct Topology {
    pub lbs: Vec<LbView>,
    pub listeners: Vec<ListenerView>,
    pub instances: Vec<InstanceView>,
    pub backends: Vec<Backend>,
    /// Published health by slot, shared by every worker and kept across topologies.
    pub health: Arc<HealthBoard>,
    /// Metric slots of load balancer and zone names, kept across topologies.
    pub stats_keys: Arc<crate::stats::StatsKeys>,
    /// Which publication this is (the control plane counts them): workers report the
    /// epoch they route by, so a drain ends only once every worker has seen it.
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopologyError {
    /// A host name that did not resolve to any address.
    Unresolvable {
        instance: String,
        host: String,
        reason: String,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::Unresolvable {
                instance,
                host,
                reason,
            } => {
                write!(
                    f,
                    "instance {instance}: cannot resolve host {host:?}: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for TopologyError {}

impl Topology {
    /// Builds the routing tables for load balancers whose instances are registered as
    /// `registrations` says (one list per load balancer, parallel to its instances).
    pub fn build(
        lbs: &[(&LoadBalancer, &[Registration])],
        health: Arc<HealthBoard>,
        stats_keys: Arc<crate::stats::StatsKeys>,
    ) -> Result<Topology, TopologyError> {
        let mut topo = Topology {
            health,
            stats_keys,
            ..Topology::default()
        };
        let mut backend_index: HashMap<(usize, SocketAddr, bool), usize> = HashMap::new();
        for (lb_index, (lb, registrations)) in lbs.iter().enumerate() {
            topo.lbs.push(LbView {
                name: lb.name.clone(),
                zones: lb.zones.clone(),
                cross_zone: lb.cross_zone,
                idle_timeout: lb.idle_timeout,
                health_check: lb.health_check.clone(),
                desync_mode: lb.desync_mode,
                stats_slot: topo.stats_keys.lb(&lb.name),
                sources: None,
                address: None,
            });
            let first_instance = topo.instances.len();
            for (instance, registration) in lb.instances.iter().zip(registrations.iter()) {
                topo.instances.push(InstanceView {
                    lb: lb_index,
                    id: instance.id.clone(),
                    ip: resolve(instance)?,
                    port: instance.port,
                    zone_name: instance.zone.clone(),
                    zone: lb.zones.iter().position(|z| *z == instance.zone),
                    zone_slot: topo.stats_keys.zone(&instance.zone),
                    slot: registration.slot,
                    serial: registration.serial,
                    draining: registration.draining,
                });
            }
            for listener in &lb.listeners {
                let mut backends = Vec::with_capacity(lb.instances.len());
                for instance in first_instance..topo.instances.len() {
                    let view = &topo.instances[instance];
                    let addr =
                        SocketAddr::new(view.ip, view.port.unwrap_or(listener.instance_port));
                    let proxy_protocol = lb
                        .proxy_protocol
                        .iter()
                        .find(|(port, _)| *port == addr.port())
                        .map(|(_, v)| *v);
                    let tls = listener.instance_protocol.is_tls();
                    let key = (instance, addr, tls);
                    let index = *backend_index.entry(key).or_insert_with(|| {
                        topo.backends.push(Backend {
                            instance,
                            addr,
                            proxy_protocol,
                            tls,
                            pins: lb
                                .backend_pins
                                .iter()
                                .find(|(port, _)| *port == addr.port())
                                .map(|(_, keys)| keys.clone())
                                .unwrap_or_default(),
                        });
                        topo.backends.len() - 1
                    });
                    backends.push(index);
                }
                topo.listeners.push(ListenerView {
                    lb: lb_index,
                    listener: listener.clone(),
                    backends,
                    sticky: lb
                        .listener_sticky
                        .iter()
                        .find(|(port, _)| *port == listener.port)
                        .map_or_else(|| lb.sticky.clone(), |(_, policy)| policy.clone())
                        .filter(|_| listener.protocol.is_http()),
                });
            }
        }
        Ok(topo)
    }

    /// A topology for load balancers fresh from the flags: slots and serials in order.
    /// The name of the load balancer listener `listener` belongs to (`-` if none).
    pub fn lb_name_of(&self, listener: usize) -> &str {
        self.listeners
            .get(listener)
            .and_then(|l| self.lbs.get(l.lb))
            .map_or("-", |lb| lb.name.as_str())
    }

    pub fn from_load_balancers(lbs: &[LoadBalancer]) -> Result<Topology, TopologyError> {
        let mut next = 0;
        let registrations: Vec<Vec<Registration>> = lbs
            .iter()
            .map(|lb| {
                lb.instances
                    .iter()
                    .map(|_| {
                        next += 1;
                        Registration {
                            slot: next - 1,
                            serial: next as u64,
                            draining: false,
                        }
                    })
                    .collect()
            })
            .collect();
        let pairs: Vec<(&LoadBalancer, &[Registration])> = lbs
            .iter()
            .zip(registrations.iter())
            .map(|(lb, r)| (lb, r.as_slice()))
            .collect();
        Topology::build(&pairs, Arc::new(HealthBoard::new(next)), Arc::default())
    }

    /// Whether new requests may go to this instance: InService, not draining.
    pub fn routable(&self, instance: usize) -> bool {
        self.instances
            .get(instance)
            .is_some_and(|v| !v.draining && self.health.in_service(v.slot))
    }

    /// Where an instance's probes go: its own port when it has one (spec §2.2.5).
    pub fn probe_addr(&self, instance: usize) -> Option<SocketAddr> {
        let view = self.instances.get(instance)?;
        let check = &self.lbs.get(view.lb)?.health_check;
        Some(SocketAddr::new(
            view.ip,
            view.port.unwrap_or(check.target.port),
        ))
    }
}

/// Back ends are reached over IPv4 when a name has both families (spec §14.7).
fn resolve(instance: &Instance) -> Result<IpAddr, TopologyError> {
    let name = match &instance.host {
        Host::Ip(ip) => return Ok(*ip),
        Host::Name(name) => name,
    };
    let unresolvable = |reason: String| TopologyError::Unresolvable {
        instance: instance.id.clone(),
        host: name.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (name.as_str(), 0)
        .to_socket_addrs()
        .map_err(|e| unresolvable(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| unresolvable("no addresses".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn lb() -> LoadBalancer {
        let instance = |id: &str, ip: &str, port: Option<u16>, zone: &str| Instance {
            id: id.to_string(),
            host: Host::Ip(ip.parse().unwrap()),
            port,
            zone: zone.to_string(),
        };
        LoadBalancer {
            name: "t".into(),
            listeners: vec![
                Listener {
                    protocol: Protocol::Http,
                    port: 80,
                    instance_protocol: Protocol::Http,
                    instance_port: 8080,
                    ssl_certificate_id: None,
                },
                Listener {
                    protocol: Protocol::Http,
                    port: 81,
                    instance_protocol: Protocol::Http,
                    instance_port: 8080,
                    ssl_certificate_id: None,
                },
            ],
            instances: vec![
                instance("i-1", "127.0.0.2", None, "a"),
                instance("i-2", "127.0.0.3", Some(9000), "b"),
                instance("i-3", "127.0.0.4", None, "c"),
            ],
            zones: vec!["a".into(), "b".into()],
            cross_zone: true,
            idle_timeout: Duration::from_secs(60),
            health_check: HealthCheck::default_for(8080),
            proxy_protocol: Vec::new(),
            desync_mode: Default::default(),
            sticky: None,
            listener_sticky: Vec::new(),
            backend_pins: Vec::new(),
        }
    }

    #[test]
    fn listeners_share_backends_with_the_same_address() {
        let topo = Topology::from_load_balancers(&[lb()]).unwrap();
        assert_eq!(topo.backends.len(), 3);
        assert_eq!(topo.listeners[0].backends, topo.listeners[1].backends);
        assert_eq!(topo.backends[1].addr, "127.0.0.3:9000".parse().unwrap());
        assert_eq!(topo.backends[0].addr, "127.0.0.2:8080".parse().unwrap());
    }

    #[test]
    fn instances_outside_enabled_zones_have_no_zone_index() {
        let topo = Topology::from_load_balancers(&[lb()]).unwrap();
        assert_eq!(topo.instances[0].zone, Some(0));
        assert_eq!(topo.instances[1].zone, Some(1));
        assert_eq!(topo.instances[2].zone, None);
    }

    #[test]
    fn localhost_resolves() {
        let mut lb = lb();
        lb.instances[0].host = Host::Name("localhost".into());
        let topo = Topology::from_load_balancers(&[lb]).unwrap();
        assert!(topo.instances[0].ip.is_loopback());
    }
}
