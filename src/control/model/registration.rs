//! Registration on the model (spec §3, §5): resolving instance ids, registering and
//! deregistering (with connection draining), and DescribeInstanceHealth's rows.

use super::*;

/// How DescribeInstanceHealth reads a registration's probed state: (load balancer,
/// instance id, this node's state) → the state to answer with.
pub type HealthView<'a> = &'a dyn Fn(&LbState, &str, Health) -> Health;

/// This node's own view: the answer of a node alone.
pub fn own_view(_: &LbState, _: &str, local: Health) -> Health {
    local
}

impl Model {
    /// Resolves ids (inventory, or `HOST:PORT`), registers the new ones; returns the registered ids.
    pub fn register(&mut self, name: &str, ids: &[String]) -> Result<Vec<String>, ApiError> {
        let default_zone = self.lb(name)?.zones.first().cloned().unwrap_or_default();
        let mut resolved = Vec::with_capacity(ids.len());
        for id in ids {
            resolved.push(self.resolve(id, &default_zone)?);
        }
        let count = self
            .lb(name)?
            .registered
            .iter()
            .filter(|r| r.draining_until.is_none())
            .count();
        let fresh = resolved
            .iter()
            .filter(|i| !self.lb(name).is_ok_and(|lb| lb.is_registered(&i.id)))
            .count();
        if count + fresh > MAX_INSTANCES {
            return Err(ApiError::invalid_configuration(format!(
                "Exceeded the limit of {MAX_INSTANCES} registered instances"
            )));
        }
        for instance in resolved {
            let lb = self.lb_mut(name)?;
            if let Some(r) = lb
                .registered
                .iter_mut()
                .find(|r| r.instance.id == instance.id)
            {
                // Registering a draining instance again cancels its deregistration.
                r.draining_until = None;
                continue;
            }
            let (slot, serial) = self.allocate()?;
            self.health.set(slot, Health::Registering);
            self.lb_mut(name)?.registered.push(Registered {
                instance,
                slot,
                serial,
                draining_until: None,
                drain_epoch: 0,
            });
        }
        Ok(self.lb(name)?.registered_ids())
    }

    /// Takes instances out of service: draining (spec §5.4) or at once (§5.5).
    pub fn deregister(
        &mut self,
        name: &str,
        ids: &[String],
        now: Instant,
    ) -> Result<Vec<String>, ApiError> {
        let lb = self.lb(name)?;
        if let Some(id) = ids.iter().find(|id| !lb.is_registered(id)) {
            return Err(ApiError::invalid_instance(format!(
                "The requested instance {id} is not registered with the load balancer {name}"
            )));
        }
        let drain = lb
            .attributes
            .draining
            .then(|| Duration::from_secs(lb.attributes.draining_timeout.into()));
        let mut released = Vec::new();
        let lb = self.lb_mut(name)?;
        lb.registered.retain_mut(|r| {
            if !ids.contains(&r.instance.id) {
                return true;
            }
            match drain {
                Some(timeout) => {
                    r.draining_until = Some(now + timeout);
                    r.drain_epoch = UNPUBLISHED;
                    true
                }
                None => {
                    released.push(r.slot);
                    false
                }
            }
        });
        for slot in released {
            self.release(slot);
        }
        Ok(self.lb(name)?.registered_ids())
    }

    /// Ends drains whose time is up, and those whose requests are done: every worker
    /// routes by a topology of epoch `seen` or later, which carried the drain (so none
    /// sends it new requests), and `in_flight(slot) == 0` (read after `seen`).
    pub fn finish_draining(
        &mut self,
        now: Instant,
        seen: u64,
        in_flight: impl Fn(usize) -> u32,
    ) -> bool {
        let mut released = Vec::new();
        for lb in &mut self.lbs {
            lb.registered.retain(|r| match r.draining_until {
                Some(until)
                    if now >= until || (seen >= r.drain_epoch && in_flight(r.slot) == 0) =>
                {
                    released.push(r.slot);
                    false
                }
                _ => true,
            });
        }
        let changed = !released.is_empty();
        for slot in released {
            self.release(slot);
        }
        changed
    }

    /// Numbers the topology about to be published from this model, and stamps the drains
    /// it is the first to carry with its epoch.
    pub fn publish(&mut self) -> u64 {
        self.epoch += 1;
        for lb in &mut self.lbs {
            for r in &mut lb.registered {
                if r.draining_until.is_some() && r.drain_epoch == UNPUBLISHED {
                    r.drain_epoch = self.epoch;
                }
            }
        }
        self.epoch
    }

    pub fn draining(&self) -> bool {
        self.lbs
            .iter()
            .any(|lb| lb.registered.iter().any(|r| r.draining_until.is_some()))
    }

    /// DescribeInstanceHealth (spec §3): every registered instance, or the ids asked for.
    pub fn instance_health(
        &self,
        name: &str,
        ids: &[String],
    ) -> Result<Vec<InstanceHealth>, ApiError> {
        self.instance_health_seen(name, ids, &own_view)
    }

    /// `instance_health` with the probed state read through `view` (with `--cluster`,
    /// the merge of the live nodes' views: `crate::cluster::health`).
    pub fn instance_health_seen(
        &self,
        name: &str,
        ids: &[String],
        view: HealthView,
    ) -> Result<Vec<InstanceHealth>, ApiError> {
        let lb = self.lb(name)?;
        if ids.is_empty() {
            return Ok(lb
                .registered
                .iter()
                .map(|r| self.health_of(lb, r, view))
                .collect());
        }
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            match lb.registered.iter().find(|r| r.instance.id == *id) {
                Some(r) => rows.push(self.health_of(lb, r, view)),
                None if self.known(id) => rows.push(InstanceHealth {
                    id: id.clone(),
                    state: "OutOfService",
                    reason_code: "Instance",
                    description: "Instance is not currently registered with the LoadBalancer.",
                }),
                None => {
                    return Err(ApiError::invalid_instance(format!(
                        "The requested instance {id} is not valid"
                    )))
                }
            }
        }
        Ok(rows)
    }

    fn health_of(&self, lb: &LbState, r: &Registered, view: HealthView) -> InstanceHealth {
        let id = r.instance.id.clone();
        if r.draining_until.is_some() {
            return InstanceHealth {
                id,
                state: "InService",
                reason_code: "ELB",
                description: "Instance deregistration currently in progress.",
            };
        }
        if !lb.zones.contains(&r.instance.zone) {
            return InstanceHealth {
                id,
                state: "OutOfService",
                reason_code: "ELB",
                description: "Instance is in the EC2 Availability Zone for which LoadBalancer is not configured to route traffic to.",
            };
        }
        let health = view(lb, &r.instance.id, self.health.get(r.slot));
        InstanceHealth {
            id,
            state: health.state(),
            reason_code: health.reason_code(),
            description: health.description(),
        }
    }
}
