//! Least outstanding requests, per worker (spec §4.2–4.4).
//!
//! HTTP requests go to the in-scope instance with the fewest requests this worker has in
//! flight to it; among ties the one picked least recently wins, so a lightly loaded
//! balancer spreads requests evenly over whatever subset is in scope.
//! Scope is every instance in an enabled zone when cross-zone balancing is on, and only
//! the instances of the client connection's zone when it is off: each accepted connection
//! is assigned a zone round-robin, which reproduces ELB's even split per zone (§4.3).
//! Only instances the health board says are InService are in scope (no fail-open:
//! with none, the answer is 503). A back end whose connect was refused within `REFUSED_HOLD` is tried only when nothing
//! else in scope is left, so steady traffic does not pay a failed connect per request.

use crate::config::Topology;
use std::time::{Duration, Instant};

/// How long a refused connect keeps a back end at the end of the line.
pub const REFUSED_HOLD: Duration = Duration::from_secs(1);

/// The set of listener positions already tried for one request (position modulo 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    fn has(self, position: usize) -> bool {
        self.0 & (1 << (position % 64)) != 0
    }

    fn add(&mut self, position: usize) {
        self.0 |= 1 << (position % 64);
    }
}

/// Whether an instance in `instance_zone` serves a connection assigned `client_zone`.
fn in_scope(instance_zone: Option<usize>, cross_zone: bool, client_zone: Option<usize>) -> bool {
    match (instance_zone, cross_zone) {
        (None, _) => false,
        (Some(_), true) => true,
        (Some(z), false) => client_zone == Some(z),
    }
}

/// One pick: the listener position, the back end (address) and its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub backend: usize,
    pub instance: usize,
}

#[derive(Default)]
pub struct Balancer {
    outstanding: Vec<u32>,
    /// Pick sequence number of each instance's last pick (the tie-break).
    last_pick: Vec<u64>,
    picks: u64,
    refused_at: Vec<Option<Instant>>,
    zone_rotation: Vec<usize>,
    /// `--max-backend-connections` (per instance, per worker); 0: no limit.
    max_per_instance: u32,
    /// The last pick found no instance with room, though some could have served.
    saturated: bool,
}

impl Balancer {
    pub fn new(topo: &Topology) -> Balancer {
        let mut balancer = Balancer::default();
        balancer.resize(topo);
        balancer
    }

    /// Limits each instance to `max` requests or connections at once (0: no limit).
    pub fn with_limit(mut self, max: u32) -> Balancer {
        self.max_per_instance = max;
        self
    }

    /// Follows a new topology; counts for surviving indices are kept.
    pub fn resize(&mut self, topo: &Topology) {
        self.outstanding.resize(topo.instances.len(), 0);
        self.last_pick.resize(topo.instances.len(), 0);
        self.refused_at.resize(topo.backends.len(), None);
        self.zone_rotation.resize(topo.lbs.len(), 0);
    }

    /// Carries the counts over to a new topology; `instances` and `backends` map old
    /// indices to new ones (`usize::MAX`: gone).
    pub fn remap(&mut self, topo: &Topology, instances: &[usize], backends: &[usize]) {
        let mut outstanding = vec![0; topo.instances.len()];
        let mut last_pick = vec![0; topo.instances.len()];
        for (old, &new) in instances.iter().enumerate() {
            if let (Some(o), Some(l)) = (outstanding.get_mut(new), last_pick.get_mut(new)) {
                *o = self.outstanding.get(old).copied().unwrap_or(0);
                *l = self.last_pick.get(old).copied().unwrap_or(0);
            }
        }
        let mut refused_at = vec![None; topo.backends.len()];
        for (old, &new) in backends.iter().enumerate() {
            if let Some(r) = refused_at.get_mut(new) {
                *r = self.refused_at.get(old).copied().flatten();
            }
        }
        self.outstanding = outstanding;
        self.last_pick = last_pick;
        self.refused_at = refused_at;
        self.zone_rotation.resize(topo.lbs.len(), 0);
    }

    /// The zone a new client connection is served from, when cross-zone is off.
    pub fn assign_zone(&mut self, topo: &Topology, lb: usize) -> Option<usize> {
        let view = topo.lbs.get(lb)?;
        if view.cross_zone || view.zones.is_empty() {
            return None;
        }
        let rotation = self.zone_rotation.get_mut(lb)?;
        let zone = *rotation % view.zones.len();
        *rotation = rotation.wrapping_add(1);
        Some(zone)
    }

    /// Picks a back end for a request on `listener`, skipping positions in `tried`.
    pub fn pick(
        &mut self,
        topo: &Topology,
        listener: usize,
        zone: Option<usize>,
        tried: &mut Tried,
        now: Instant,
    ) -> Option<Pick> {
        self.choose(topo, listener, zone, tried, now, false)
    }

    /// TCP listeners (spec §4.1): the next in-scope instance after the last one picked,
    /// per connection, whatever its load.
    pub fn pick_round_robin(
        &mut self,
        topo: &Topology,
        listener: usize,
        zone: Option<usize>,
        tried: &mut Tried,
        now: Instant,
    ) -> Option<Pick> {
        self.choose(topo, listener, zone, tried, now, true)
    }

    fn choose(
        &mut self,
        topo: &Topology,
        listener: usize,
        zone: Option<usize>,
        tried: &mut Tried,
        now: Instant,
        round_robin: bool,
    ) -> Option<Pick> {
        let view = topo.listeners.get(listener)?;
        let lb = topo.lbs.get(view.lb)?;
        let n = view.backends.len();
        if n == 0 {
            return None;
        }
        let mut best: Option<((bool, u32, u64), usize, Pick)> = None;
        self.saturated = false;
        for position in 0..n {
            if tried.has(position) {
                continue;
            }
            let backend = view.backends[position];
            let Some(target) = topo.backends.get(backend) else {
                continue;
            };
            let Some(instance) = topo.instances.get(target.instance) else {
                continue;
            };
            if !in_scope(instance.zone, lb.cross_zone, zone) || !topo.routable(target.instance) {
                continue;
            }
            let busy = self.outstanding.get(target.instance).copied().unwrap_or(0);
            if self.max_per_instance > 0 && busy >= self.max_per_instance {
                // Spec §11: the request waits in the surge queue for room.
                self.saturated = true;
                continue;
            }
            let refused = self
                .refused_at
                .get(backend)
                .copied()
                .flatten()
                .is_some_and(|at| now.saturating_duration_since(at) < REFUSED_HOLD);
            // Round robin ranks everyone alike, so the least recently picked wins.
            let load = if round_robin {
                0
            } else {
                self.outstanding.get(target.instance).copied().unwrap_or(0)
            };
            let last = self.last_pick.get(target.instance).copied().unwrap_or(0);
            let rank = (refused, load, last);
            if best.is_none_or(|(best_rank, _, _)| rank < best_rank) {
                let pick = Pick {
                    backend,
                    instance: target.instance,
                };
                best = Some((rank, position, pick));
            }
        }
        let (_, position, pick) = best?;
        self.saturated = false;
        tried.add(position);
        self.picks += 1;
        if let Some(last) = self.last_pick.get_mut(pick.instance) {
            *last = self.picks;
        }
        Some(pick)
    }

    /// Sticky sessions (spec §7): the listener's back end of instance `id` at back-end
    /// `port`, if it is in scope, routable and not tried yet for this request.
    #[allow(clippy::too_many_arguments)]
    pub fn pick_named(
        &mut self,
        topo: &Topology,
        listener: usize,
        zone: Option<usize>,
        tried: &mut Tried,
        id: &str,
        port: u16,
    ) -> Option<Pick> {
        let view = topo.listeners.get(listener)?;
        let lb = topo.lbs.get(view.lb)?;
        let (position, backend, target) =
            view.backends
                .iter()
                .enumerate()
                .find_map(|(position, &backend)| {
                    let target = topo.backends.get(backend)?;
                    let instance = topo.instances.get(target.instance)?;
                    (instance.id == id && target.addr.port() == port)
                        .then_some((position, backend, target))
                })?;
        let instance = topo.instances.get(target.instance)?;
        let busy = self.outstanding.get(target.instance).copied().unwrap_or(0);
        let full = self.max_per_instance > 0 && busy >= self.max_per_instance;
        if full
            || tried.has(position)
            || !in_scope(instance.zone, lb.cross_zone, zone)
            || !topo.routable(target.instance)
        {
            return None;
        }
        tried.add(position);
        Some(Pick {
            backend,
            instance: target.instance,
        })
    }

    /// Whether the last pick failed only because every eligible instance was at
    /// `--max-backend-connections`: the request can wait in the surge queue.
    pub fn saturated(&self) -> bool {
        self.saturated
    }

    pub fn begin(&mut self, instance: usize) {
        if let Some(n) = self.outstanding.get_mut(instance) {
            *n += 1;
        }
    }

    pub fn end(&mut self, instance: usize) {
        if let Some(n) = self.outstanding.get_mut(instance) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn refused(&mut self, backend: usize, now: Instant) {
        if let Some(at) = self.refused_at.get_mut(backend) {
            *at = Some(now);
        }
    }

    pub fn outstanding(&self, instance: usize) -> u32 {
        self.outstanding.get(instance).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Host, Instance, Listener, LoadBalancer, Protocol};

    fn topo(cross_zone: bool, zones: &[(&str, &str)]) -> Topology {
        let lb = LoadBalancer {
            name: "t".into(),
            listeners: vec![Listener {
                protocol: Protocol::Http,
                port: 80,
                instance_protocol: Protocol::Http,
                instance_port: 80,
                ssl_certificate_id: None,
            }],
            instances: zones
                .iter()
                .enumerate()
                .map(|(i, (id, zone))| Instance {
                    id: id.to_string(),
                    host: Host::Ip(format!("127.0.0.{}", i + 2).parse().unwrap()),
                    port: None,
                    zone: zone.to_string(),
                })
                .collect(),
            zones: vec!["a".into(), "b".into()],
            cross_zone,
            idle_timeout: Duration::from_secs(60),
            health_check: crate::config::HealthCheck::default_for(80),
            proxy_protocol: Vec::new(),
            desync_mode: Default::default(),
            sticky: None,
            listener_sticky: Vec::new(),
            backend_pins: Vec::new(),
        };
        let topo = Topology::from_load_balancers(&[lb]).unwrap();
        for i in 0..topo.instances.len() {
            topo.health
                .set(i, crate::backend::health::Health::InService);
        }
        topo
    }

    fn pick(b: &mut Balancer, t: &Topology, zone: Option<usize>) -> Option<usize> {
        b.pick(t, 0, zone, &mut Tried::default(), Instant::now())
            .map(|p| p.instance)
    }

    #[test]
    fn ties_rotate_evenly() {
        let t = topo(true, &[("i-1", "a"), ("i-2", "a"), ("i-3", "b")]);
        let mut b = Balancer::new(&t);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[pick(&mut b, &t, None).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn ties_rotate_evenly_within_a_zone_too() {
        let t = topo(false, &[("i-1", "a"), ("i-2", "a"), ("i-3", "b")]);
        let mut b = Balancer::new(&t);
        let mut counts = [0; 3];
        for i in 0..300 {
            counts[pick(&mut b, &t, Some(i % 2)).unwrap()] += 1;
        }
        assert_eq!(counts, [75, 75, 150]);
    }

    #[test]
    fn round_robin_ignores_load() {
        let t = topo(true, &[("i-1", "a"), ("i-2", "a"), ("i-3", "b")]);
        let mut b = Balancer::new(&t);
        b.begin(0);
        b.begin(0);
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                b.pick_round_robin(&t, 0, None, &mut Tried::default(), Instant::now())
                    .unwrap()
                    .instance
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_outstanding_wins() {
        let t = topo(true, &[("i-1", "a"), ("i-2", "a"), ("i-3", "b")]);
        let mut b = Balancer::new(&t);
        b.begin(0);
        b.begin(1);
        for _ in 0..10 {
            assert_eq!(pick(&mut b, &t, None), Some(2));
        }
    }

    #[test]
    fn without_cross_zone_only_the_connection_zone_is_in_scope() {
        let t = topo(false, &[("i-1", "a"), ("i-2", "a"), ("i-3", "b")]);
        let mut b = Balancer::new(&t);
        assert_eq!(b.assign_zone(&t, 0), Some(0));
        assert_eq!(b.assign_zone(&t, 0), Some(1));
        for _ in 0..10 {
            assert_eq!(pick(&mut b, &t, Some(1)), Some(2));
            assert!(pick(&mut b, &t, Some(0)).is_some_and(|i| i < 2));
        }
    }

    #[test]
    fn disabled_zones_and_tried_positions_are_skipped() {
        let t = topo(true, &[("i-1", "a"), ("i-2", "c")]);
        let mut b = Balancer::new(&t);
        let mut tried = Tried::default();
        assert_eq!(
            b.pick(&t, 0, None, &mut tried, Instant::now())
                .map(|p| p.instance),
            Some(0)
        );
        assert_eq!(b.pick(&t, 0, None, &mut tried, Instant::now()), None);
    }

    #[test]
    fn refused_backends_go_last() {
        let t = topo(true, &[("i-1", "a"), ("i-2", "a")]);
        let mut b = Balancer::new(&t);
        let now = Instant::now();
        b.refused(0, now);
        for _ in 0..5 {
            assert_eq!(
                b.pick(&t, 0, None, &mut Tried::default(), now)
                    .map(|p| p.instance),
                Some(1)
            );
        }
        let mut tried = Tried::default();
        tried.add(1);
        assert_eq!(
            b.pick(&t, 0, None, &mut tried, now).map(|p| p.instance),
            Some(0)
        );
    }
}
