//! Where each load balancer listens, and the rule that keeps two of them off one port.
//!
//! Listening sockets are bound with `SO_REUSEPORT` (one per worker), so a second load
//! balancer binding the same address and port would not fail: the kernel would split
//! connections between the two. The model therefore refuses a listener whose port
//! another load balancer already listens on at an overlapping address (the unspecified
//! address overlaps every address), and a listener on the control API's own port.
//!
//! Without `--address-pool` every load balancer listens on `--bind`, so ports must not
//! overlap. With a pool each load balancer takes its own address: the next free one
//! after the last address handed out (wrapping), so an address just released by a
//! deleted load balancer is the last to be handed out again. The address is part of the
//! load balancer's state and comes back with it from the state file.

use super::*;
use crate::config::address_pool::AddressPool;

/// What decides listen addresses: the process's flags.
#[derive(Clone, Debug)]
pub struct Placement {
    /// `--bind`: where every load balancer listens without a pool.
    pub bind: IpAddr,
    pub pool: Option<AddressPool>,
    /// `--api`: its port is not a listener's to take.
    pub api: Option<SocketAddr>,
    /// Whether this host can listen on an address (a bind to port 0; a fake in tests).
    pub bindable: fn(IpAddr) -> bool,
    /// Pool position the next search starts from.
    cursor: u64,
    /// `--cluster`: the addresses this node had before it restarted (the shared model
    /// holds none; `crate::cluster::node_addresses`), taken again while they are free.
    /// Set for start-up only, then cleared.
    pub preferred: std::collections::HashMap<String, IpAddr>,
}

impl Default for Placement {
    fn default() -> Placement {
        Placement {
            bind: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            pool: None,
            api: None,
            bindable: crate::config::address_pool::bindable,
            cursor: 0,
            preferred: Default::default(),
        }
    }
}

impl Placement {
    pub fn new(bind: IpAddr, pool: Option<AddressPool>, api: Option<SocketAddr>) -> Placement {
        Placement {
            bind,
            pool,
            api,
            ..Placement::default()
        }
    }
}

/// Whether sockets bound to `a` and `b` on one port would meet.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

impl Model {
    /// Each load balancer's own address (with a pool): what this node publishes for DNS.
    pub fn own_addresses(&self) -> std::collections::BTreeMap<String, IpAddr> {
        self.lbs
            .iter()
            .filter_map(|lb| Some((lb.name.clone(), lb.address?)))
            .collect()
    }

    /// The address load balancer `lb` listens on.
    pub fn listen_address(&self, lb: &LbState) -> IpAddr {
        lb.address.unwrap_or(self.placement.bind)
    }

    /// Gives a load balancer about to join the model its address (keeping the one it has
    /// when it is the pool's and free) and checks its ports against the others'.
    pub(super) fn place(&mut self, lb: &mut LbState) -> Result<(), ApiError> {
        match (self.placement.pool.clone(), lb.address) {
            (None, Some(old)) => {
                log::info!(
                    "load balancer {}: no --address-pool, so it listens on {} instead of its saved address {old}",
                    lb.name, self.placement.bind
                );
                lb.address = None;
            }
            (None, None) => {}
            (Some(pool), Some(address)) => {
                if !pool.contains(address) {
                    return Err(ApiError::invalid_configuration(format!(
                        "Load balancer {} has address {address}, which is not in --address-pool {pool}; \
                         add {address} to the pool (e.g. --address-pool {pool},{address}) to keep it",
                        lb.name
                    )));
                }
                if let Some(holder) = self.lbs.iter().find(|l| l.address == Some(address)) {
                    return Err(ApiError::invalid_configuration(format!(
                        "Load balancers {} and {} both have address {address}",
                        holder.name, lb.name
                    )));
                }
            }
            (Some(pool), None) => {
                let taken = |ip: IpAddr| self.lbs.iter().any(|l| l.address == Some(ip));
                let before = self
                    .placement
                    .preferred
                    .get(&lb.name)
                    .copied()
                    .filter(|&ip| pool.contains(ip) && !taken(ip) && (self.placement.bindable)(ip));
                let address = before
                    .or_else(|| {
                        pool.first_free(self.placement.cursor, taken, self.placement.bindable)
                    })
                    .ok_or_else(|| {
                        let used = self.lbs.iter().filter(|l| l.address.is_some()).count();
                        // ELB's answer when a subnet has no free address for a new load
                        // balancer: the pool plays the subnet's part.
                        ApiError {
                            code: "InvalidSubnet",
                            status: 400,
                            message: format!(
                                "Not enough IP space available in --address-pool {pool}: \
                                 {used} of its {} addresses are in use by load balancers and \
                                 no other one can be bound on this host. clb requires one \
                                 free address per load balancer.",
                                pool.len()
                            ),
                        }
                    })?;
                self.placement.cursor = pool.position(address).map_or(0, |p| p + 1);
                lb.address = Some(address);
            }
        }
        let ports: Vec<u16> = lb.listeners.iter().map(|l| l.port).collect();
        self.check_ports(&lb.name, self.listen_address(lb), &ports)
    }

    /// Refuses `ports` for load balancer `name` (listening on `address`) when another
    /// load balancer, or the control API, already listens there.
    pub(super) fn check_ports(
        &self,
        name: &str,
        address: IpAddr,
        ports: &[u16],
    ) -> Result<(), ApiError> {
        for &port in ports {
            if let Some(api) = self.placement.api {
                if api.port() == port && overlap(api.ip(), address) {
                    return Err(ApiError::invalid_configuration(format!(
                        "LoadBalancerPort {port} of {name} on {address} is the control API's (--api {api})"
                    )));
                }
            }
            let holder = self.lbs.iter().find(|other| {
                other.name != name
                    && overlap(self.listen_address(other), address)
                    && other.listeners.iter().any(|l| l.port == port)
            });
            if let Some(other) = holder {
                let hint = if self.placement.pool.is_some() {
                    ""
                } else {
                    "; load balancers share --bind unless --address-pool gives each its own address"
                };
                return Err(ApiError::invalid_configuration(format!(
                    "LoadBalancerPort {port} is already used by load balancer {} on {}{hint}",
                    other.name,
                    self.listen_address(other)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn http(port: u16) -> Listener {
        Listener {
            protocol: Protocol::Http,
            port,
            instance_protocol: Protocol::Http,
            instance_port: 80,
            ssl_certificate_id: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn model(pool: Option<&str>, api: Option<&str>) -> Model {
        let mut m = Model::new(Vec::new());
        m.placement = Placement::new(
            ip("0.0.0.0"),
            pool.map(|p| AddressPool::parse(p).unwrap()),
            api.map(|a| a.parse().unwrap()),
        );
        m.placement.bindable = |_| true;
        m
    }

    fn create(m: &mut Model, name: &str, ports: &[u16]) -> Result<(), ApiError> {
        let listeners = ports.iter().map(|&p| http(p)).collect();
        m.create(name, listeners, vec!["zone-a".into()], "internal", vec![])
    }

    fn address(m: &Model, name: &str) -> Option<IpAddr> {
        m.lb(name).unwrap().address
    }

    #[test]
    fn without_a_pool_a_port_belongs_to_one_load_balancer() {
        let mut m = model(None, None);
        create(&mut m, "a", &[80]).unwrap();
        let e = create(&mut m, "b", &[81, 80]).unwrap_err();
        assert_eq!(e.code, "InvalidConfigurationRequest");
        assert!(
            e.message
                .contains("LoadBalancerPort 80 is already used by load balancer a on 0.0.0.0"),
            "{e:?}"
        );
        assert!(m.lb("b").is_err());
        create(&mut m, "b", &[81]).unwrap();
        let e = m.create_listeners("b", vec![http(80)]).unwrap_err();
        assert!(e.message.contains("load balancer a"), "{e:?}");
        // Its own ports are no conflict: an identical listener is accepted again.
        m.create_listeners("b", vec![http(81), http(82)]).unwrap();
        assert_eq!(address(&m, "b"), None);
    }

    #[test]
    fn the_control_api_port_is_not_a_listeners() {
        let mut m = model(None, Some("127.0.0.1:9900"));
        let e = create(&mut m, "a", &[9900]).unwrap_err();
        assert_eq!(e.code, "InvalidConfigurationRequest");
        assert!(
            e.message.contains("control API's (--api 127.0.0.1:9900)"),
            "{e:?}"
        );
        // An address of its own that the API does not use is fine.
        let mut m = model(Some("127.0.3.0/29"), Some("127.0.0.1:9900"));
        create(&mut m, "a", &[9900]).unwrap();
        let mut m = model(Some("127.0.0.0/29"), Some("127.0.0.1:9900"));
        assert!(create(&mut m, "a", &[9900]).is_err());
    }

    #[test]
    fn with_a_pool_each_load_balancer_has_its_own_address() {
        let mut m = model(Some("127.0.3.0/30"), None);
        create(&mut m, "a", &[80]).unwrap();
        create(&mut m, "b", &[80]).unwrap();
        assert_eq!(address(&m, "a"), Some(ip("127.0.3.1")));
        assert_eq!(address(&m, "b"), Some(ip("127.0.3.2")));
        let e = create(&mut m, "c", &[80]).unwrap_err();
        assert_eq!((e.code, e.status), ("InvalidSubnet", 400));
        assert!(
            e.message.contains(
                "Not enough IP space available in --address-pool 127.0.3.0/30: 2 of its 2"
            ),
            "{e:?}"
        );
        m.delete("a");
        create(&mut m, "c", &[80]).unwrap();
        assert_eq!(address(&m, "c"), Some(ip("127.0.3.1")));
    }

    #[test]
    fn a_released_address_is_handed_out_last() {
        let mut m = model(Some("127.0.3.0/29"), None);
        create(&mut m, "a", &[80]).unwrap();
        create(&mut m, "b", &[80]).unwrap();
        m.delete("b");
        create(&mut m, "c", &[80]).unwrap();
        assert_eq!(address(&m, "c"), Some(ip("127.0.3.3")));
    }

    #[test]
    fn a_restarted_node_takes_its_previous_addresses_while_free() {
        let mut m = model(Some("127.0.3.0/29"), None);
        m.placement.preferred.insert("b".into(), ip("127.0.3.4"));
        m.placement.preferred.insert("c".into(), ip("127.0.9.9"));
        m.placement.preferred.insert("d".into(), ip("127.0.3.4"));
        create(&mut m, "a", &[80]).unwrap();
        create(&mut m, "b", &[80]).unwrap();
        create(&mut m, "c", &[80]).unwrap();
        create(&mut m, "d", &[80]).unwrap();
        let got: Vec<_> = ["a", "b", "c", "d"].map(|n| address(&m, n).unwrap()).into();
        // c's is outside the pool and d's is b's: both take the next free one.
        let want: Vec<IpAddr> = ["127.0.3.1", "127.0.3.4", "127.0.3.5", "127.0.3.6"]
            .map(ip)
            .into();
        assert_eq!(got, want);
        assert_eq!(m.own_addresses().get("b"), Some(&ip("127.0.3.4")));
    }

    #[test]
    fn unbindable_addresses_are_skipped() {
        let mut m = model(Some("127.0.3.0/29"), None);
        m.placement.bindable = |ip| ip != "127.0.3.1".parse::<IpAddr>().unwrap();
        create(&mut m, "a", &[80]).unwrap();
        assert_eq!(address(&m, "a"), Some(ip("127.0.3.2")));
    }

    fn saved(name: &str, address: Option<&str>, port: u16) -> LbState {
        let mut m = model(None, None);
        create(&mut m, name, &[port]).unwrap();
        let mut lb = m.lb(name).unwrap().clone();
        lb.address = address.map(ip);
        lb
    }

    #[test]
    fn saved_addresses_are_kept_checked_or_dropped() {
        let mut m = model(Some("127.0.3.0/29"), None);
        m.insert(saved("a", Some("127.0.3.5"), 80)).unwrap();
        m.insert(saved("b", None, 80)).unwrap();
        assert_eq!(address(&m, "a"), Some(ip("127.0.3.5")));
        assert_eq!(address(&m, "b"), Some(ip("127.0.3.1")));
        let e = m.insert(saved("c", Some("127.0.3.5"), 81)).unwrap_err();
        assert!(
            e.message.contains("a and c both have address 127.0.3.5"),
            "{e:?}"
        );
        let e = m.insert(saved("d", Some("127.0.4.1"), 81)).unwrap_err();
        assert!(
            e.message
                .contains("d has address 127.0.4.1, which is not in --address-pool 127.0.3.0/29"),
            "{e:?}"
        );

        let mut m = model(None, None);
        m.insert(saved("a", Some("127.0.3.5"), 80)).unwrap();
        assert_eq!(address(&m, "a"), None);
        let e = m.insert(saved("b", None, 80)).unwrap_err();
        assert!(
            e.message.contains("already used by load balancer a"),
            "{e:?}"
        );
    }

    #[test]
    fn the_state_file_keeps_the_address_and_the_topology_carries_it() {
        let mut m = model(Some("127.0.3.0/29"), None);
        create(&mut m, "a", &[80]).unwrap();
        let text = crate::control::state::encode(&m.lbs);
        assert!(text.contains("\naddress 127.0.3.1\n"), "{text}");
        let back = crate::control::state::decode(&text).unwrap();
        assert_eq!(back[0].address, Some(ip("127.0.3.1")));
        let topo = m.topology().unwrap();
        assert_eq!(topo.lbs[0].address, Some(ip("127.0.3.1")));
    }
}
