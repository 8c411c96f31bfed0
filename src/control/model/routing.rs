//! What the workers route from: the model turned into `LoadBalancer`s and a `Topology`,
//! with the API's policies folded in.

use super::*;

impl Model {
    /// The routing picture of every load balancer as it stands.
    pub fn topology(&self) -> Result<Topology, TopologyError> {
        let lbs: Vec<(LoadBalancer, Vec<Registration>)> =
            self.lbs.iter().map(LbState::routing).collect();
        let pairs: Vec<(&LoadBalancer, &[Registration])> =
            lbs.iter().map(|(lb, r)| (lb, r.as_slice())).collect();
        let mut topology = Topology::build(&pairs, self.health.clone(), self.stats_keys.clone())?;
        for (view, lb) in topology.lbs.iter_mut().zip(&self.lbs) {
            view.sources = self.sources(lb);
            view.address = Some(self.listen_address(lb));
        }
        topology.epoch = self.epoch;
        Ok(topology)
    }
}

impl LbState {
    pub(super) fn routing(&self) -> (LoadBalancer, Vec<Registration>) {
        let lb = LoadBalancer {
            name: self.name.clone(),
            listeners: self.listeners.clone(),
            instances: self.registered.iter().map(|r| r.instance.clone()).collect(),
            zones: self.zones.clone(),
            cross_zone: self.attributes.cross_zone,
            idle_timeout: Duration::from_secs(self.attributes.idle_timeout.into()),
            health_check: self.health_check.clone(),
            proxy_protocol: self.proxy_protocol_with_policies(),
            sticky: self.sticky.clone(),
            listener_sticky: self
                .listener_policies
                .iter()
                .map(|(port, names)| {
                    let sticky = names
                        .iter()
                        .filter_map(|n| self.policies.iter().find(|p| p.name == *n))
                        .find_map(PolicyDef::sticky);
                    (*port, sticky)
                })
                .collect(),
            backend_pins: self.backend_pins(),
            desync_mode: Mode::parse(&self.attributes.desync_mode).unwrap_or_default(),
        };
        let registrations = self
            .registered
            .iter()
            .map(|r| Registration {
                slot: r.slot,
                serial: r.serial,
                draining: r.draining_until.is_some(),
            })
            .collect();
        (lb, registrations)
    }
}
