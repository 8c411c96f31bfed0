//! Instance health: ELB's states (spec §3) and the hysteresis that moves between them
//! (spec §2.2.7–2.2.8), kept apart from how probes are sent.
//!
//! `Hysteresis` is pure: it takes probe results and says when the state changes. The
//! `HealthBoard` publishes each instance's state as one atomic byte, written only by
//! the worker that owns the instance's probes and read by every worker's balancer.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// What DescribeInstanceHealth says about an instance, in ELB's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Registered, no successful probe yet.
    Registering,
    InService,
    /// Failed at least UnhealthyThreshold probes in a row.
    Unhealthy,
    /// Was unhealthy; passing now, but fewer than HealthyThreshold times in a row.
    Recovering,
}

impl Health {
    pub fn in_service(self) -> bool {
        self == Health::InService
    }

    pub fn state(self) -> &'static str {
        if self.in_service() {
            "InService"
        } else {
            "OutOfService"
        }
    }

    /// ReasonCode (spec §3; `ELB` for registration, as README settles §18.2).
    pub fn reason_code(self) -> &'static str {
        match self {
            Health::InService => "N/A",
            Health::Registering => "ELB",
            Health::Unhealthy | Health::Recovering => "Instance",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Health::InService => "N/A",
            Health::Registering => "Instance registration is still in progress.",
            Health::Unhealthy => {
                "Instance has failed at least the UnhealthyThreshold number of health checks consecutively."
            }
            Health::Recovering => {
                "Instance has not passed the configured HealthyThreshold number of health checks consecutively."
            }
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Health::Registering => 0,
            Health::InService => 1,
            Health::Unhealthy => 2,
            Health::Recovering => 3,
        }
    }

    fn from_byte(b: u8) -> Health {
        match b {
            1 => Health::InService,
            2 => Health::Unhealthy,
            3 => Health::Recovering,
            _ => Health::Registering,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state())
    }
}

/// Consecutive-result counting for one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    health: Health,
    /// Successes in a row (towards HealthyThreshold) or failures in a row.
    streak: u8,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            health: Health::Registering,
            streak: 0,
        }
    }
}

impl Hysteresis {
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one probe result; returns the new health when it changed.
    pub fn record(
        &mut self,
        ok: bool,
        healthy_threshold: u8,
        unhealthy_threshold: u8,
    ) -> Option<Health> {
        let before = self.health;
        let (health, streak) = match (self.health, ok) {
            // Spec §2.2.8: one success is enough for a new instance.
            (Health::Registering, true) => (Health::InService, 0),
            (Health::InService, true) => (Health::InService, 0),
            (Health::Unhealthy | Health::Recovering, true) => {
                let passes = self.passes() + 1;
                if passes >= healthy_threshold {
                    (Health::InService, 0)
                } else {
                    (Health::Recovering, passes)
                }
            }
            (Health::Registering | Health::InService, false) => {
                let fails = self.fails() + 1;
                if fails >= unhealthy_threshold {
                    (Health::Unhealthy, 0)
                } else {
                    (self.health, fails)
                }
            }
            (Health::Unhealthy | Health::Recovering, false) => (Health::Unhealthy, 0),
        };
        self.health = health;
        self.streak = streak;
        (health != before).then_some(health)
    }

    fn passes(&self) -> u8 {
        if self.health == Health::Recovering {
            self.streak
        } else {
            0
        }
    }

    fn fails(&self) -> u8 {
        if matches!(self.health, Health::Registering | Health::InService) {
            self.streak
        } else {
            0
        }
    }
}

/// Health-board capacity: registrations alive at once, across every load balancer.
pub const MAX_SLOTS: usize = 65_536;

/// Requests in flight per slot, one table per worker: only that worker writes it (no
/// contention), the control thread sums the tables to see when draining is done.
///
/// A zero means "done" only from a worker that already routes by a topology in which
/// the slot drains: before that, the worker may still send the slot a new request. So
/// the table also holds the epoch of the topology the worker routes by, stored
/// (Release) after the worker has switched to it; the control thread loads it (Acquire)
/// before the counts, so every `begin` made on an older topology is visible to it, and
/// after that a draining slot's count only goes down.
#[derive(Debug)]
pub struct InFlight {
    counts: Vec<std::sync::atomic::AtomicU32>,
    epoch: std::sync::atomic::AtomicU64,
}

impl InFlight {
    pub fn new(slots: usize) -> InFlight {
        InFlight {
            counts: (0..slots)
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The worker routes by the topology of `epoch` from now on.
    pub fn routing_by(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// The epoch of the topology the worker routes by.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn begin(&self, slot: usize) {
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn end(&self, slot: usize) {
        if let Some(c) = self.counts.get(slot) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub fn get(&self, slot: usize) -> u32 {
        self.counts
            .get(slot)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Every registration's published health, indexed by slot.
#[derive(Debug, Default)]
pub struct HealthBoard {
    states: Vec<AtomicU8>,
}

impl HealthBoard {
    pub fn new(instances: usize) -> HealthBoard {
        HealthBoard {
            states: (0..instances)
                .map(|_| AtomicU8::new(Health::Registering.to_byte()))
                .collect(),
        }
    }

    pub fn get(&self, instance: usize) -> Health {
        self.states.get(instance).map_or(Health::Registering, |s| {
            Health::from_byte(s.load(Ordering::Relaxed))
        })
    }

    pub fn set(&self, instance: usize, health: Health) {
        if let Some(s) = self.states.get(instance) {
            s.store(health.to_byte(), Ordering::Relaxed);
        }
    }

    pub fn in_service(&self, instance: usize) -> bool {
        self.get(instance).in_service()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &mut Hysteresis, results: &[bool]) -> Vec<Option<Health>> {
        results.iter().map(|&ok| h.record(ok, 3, 2)).collect()
    }

    #[test]
    fn a_new_instance_needs_one_success() {
        let mut h = Hysteresis::default();
        assert_eq!(run(&mut h, &[true]), [Some(Health::InService)]);
    }

    #[test]
    fn unhealthy_after_the_threshold_and_back_after_the_other() {
        let mut h = Hysteresis::default();
        run(&mut h, &[true]);
        assert_eq!(run(&mut h, &[false, true, false]), [None, None, None]);
        assert_eq!(h.health(), Health::InService);
        assert_eq!(run(&mut h, &[false]), [Some(Health::Unhealthy)]);
        assert_eq!(run(&mut h, &[true, true]), [Some(Health::Recovering), None]);
        assert_eq!(run(&mut h, &[false]), [Some(Health::Unhealthy)]);
        assert_eq!(
            run(&mut h, &[true, true, true]),
            [Some(Health::Recovering), None, Some(Health::InService)]
        );
    }

    #[test]
    fn a_new_instance_that_keeps_failing_is_unhealthy() {
        let mut h = Hysteresis::default();
        assert_eq!(
            run(&mut h, &[false, false]),
            [None, Some(Health::Unhealthy)]
        );
        assert_eq!(h.health().reason_code(), "Instance");
    }

    #[test]
    fn the_board_round_trips_every_state() {
        let board = HealthBoard::new(2);
        for health in [
            Health::Registering,
            Health::InService,
            Health::Unhealthy,
            Health::Recovering,
        ] {
            board.set(1, health);
            assert_eq!(board.get(1), health);
        }
        assert!(!board.in_service(0));
        assert!(!board.in_service(9));
    }
}
