//! Counters for ELB's CloudWatch metrics (spec §12.2), kept per worker as relaxed atomics
//! the worker alone writes, and summed by the control thread when `/metrics` is scraped,
//! so the data path never shares a cache line with another core.
//!
//! Counters are addressed by a load balancer slot and a zone slot, both stable for the
//! life of the process (names get slots from `StatsKeys`), so a topology change never
//! moves counts between load balancers. Zone slot 0 is "no zone": answers clb gave
//! before any instance was chosen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Load balancers counted separately; ELB's default limit is 20 per region.
pub const LB_SLOTS: usize = 32;
/// Zones counted separately (slot 0 is "no zone").
pub const ZONE_SLOTS: usize = 17;

/// Upper bounds of the latency histogram, in seconds (Prometheus `le`).
pub const LATENCY_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One counter per load balancer and zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// HTTP: requests routed to an instance; TCP: connections made to instances.
    RequestCount,
    Backend2xx,
    Backend3xx,
    Backend4xx,
    Backend5xx,
    Elb4xx,
    Elb5xx,
    /// Failed connections to instances, retries and health probes included.
    BackendConnectionErrors,
    SpilloverCount,
    /// Latency observations (the histogram's count) and their sum in microseconds.
    LatencyCount,
    LatencySumMicros,
}

const COUNTERS: usize = Counter::LatencySumMicros as usize + 1;
const CELL: usize = COUNTERS + LATENCY_BOUNDS.len();

/// One worker's counters.
pub struct Stats {
    cells: Vec<AtomicU64>,
    /// Client connections open in this worker.
    pub connections: AtomicU64,
    /// Pooled buffers in use, and buffers taken from the pool or newly allocated.
    pub buffers_in_use: AtomicU64,
    pub buffer_hits: AtomicU64,
    pub buffer_misses: AtomicU64,
    /// Requests sent on a pooled instance connection, and on a new one.
    pub backend_pool_hits: AtomicU64,
    pub backend_pool_misses: AtomicU64,
    /// Client connections closed at accept by `--allow` or a security group.
    pub allow_refused: AtomicU64,
    /// Requests and connections in the surge queue now, per load balancer slot.
    pub surge: Vec<AtomicU64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            cells: (0..LB_SLOTS * ZONE_SLOTS * CELL)
                .map(|_| AtomicU64::new(0))
                .collect(),
            connections: AtomicU64::new(0),
            buffers_in_use: AtomicU64::new(0),
            buffer_hits: AtomicU64::new(0),
            buffer_misses: AtomicU64::new(0),
            backend_pool_hits: AtomicU64::new(0),
            backend_pool_misses: AtomicU64::new(0),
            allow_refused: AtomicU64::new(0),
            surge: (0..LB_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Stats {
    fn cell(&self, lb: usize, zone: usize, index: usize) -> Option<&AtomicU64> {
        if lb >= LB_SLOTS || zone >= ZONE_SLOTS {
            return None;
        }
        self.cells.get((lb * ZONE_SLOTS + zone) * CELL + index)
    }

    pub fn add(&self, lb: usize, zone: usize, counter: Counter, n: u64) {
        if let Some(cell) = self.cell(lb, zone, counter as usize) {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, lb: usize, zone: usize, counter: Counter) -> u64 {
        self.cell(lb, zone, counter as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The instance's response status class (spec §12.2: HTTPCode_Backend_*).
    pub fn backend_status(&self, lb: usize, zone: usize, status: u16) {
        let counter = match status {
            200..=299 => Counter::Backend2xx,
            300..=399 => Counter::Backend3xx,
            400..=499 => Counter::Backend4xx,
            500..=599 => Counter::Backend5xx,
            _ => return,
        };
        self.add(lb, zone, counter, 1);
    }

    /// An answer clb generated itself (HTTPCode_ELB_4XX/5XX).
    pub fn elb_status(&self, lb: usize, zone: usize, status: u16) {
        match status {
            400..=499 => self.add(lb, zone, Counter::Elb4xx, 1),
            500..=599 => self.add(lb, zone, Counter::Elb5xx, 1),
            _ => {}
        }
    }

    /// One Latency observation: request sent to response head received (HTTP), or
    /// connection established (TCP).
    pub fn latency(&self, lb: usize, zone: usize, took: Duration) {
        self.add(lb, zone, Counter::LatencyCount, 1);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.add(lb, zone, Counter::LatencySumMicros, micros);
        let seconds = took.as_secs_f64();
        if let Some(bucket) = LATENCY_BOUNDS.iter().position(|&le| seconds <= le) {
            if let Some(cell) = self.cell(lb, zone, COUNTERS + bucket) {
                cell.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Observations in the histogram bucket `bucket` (not cumulative).
    pub fn latency_bucket(&self, lb: usize, zone: usize, bucket: usize) -> u64 {
        self.cell(lb, zone, COUNTERS + bucket)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Names and their slots.
pub type Slots = Vec<(String, usize)>;

/// Stable slots for load balancer and zone names.
#[derive(Debug, Default)]
pub struct StatsKeys {
    names: Mutex<Names>,
}

#[derive(Debug, Default)]
struct Names {
    lbs: HashMap<String, usize>,
    zones: HashMap<String, usize>,
}

/// Past the slots, names share the last one rather than go uncounted.
fn slot_for(map: &mut HashMap<String, usize>, name: &str, first: usize, limit: usize) -> usize {
    if let Some(&slot) = map.get(name) {
        return slot;
    }
    let slot = (first + map.len()).min(limit - 1);
    map.insert(name.to_string(), slot);
    slot
}

impl StatsKeys {
    pub fn lb(&self, name: &str) -> usize {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        slot_for(&mut names.lbs, name, 0, LB_SLOTS)
    }

    pub fn zone(&self, name: &str) -> usize {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        slot_for(&mut names.zones, name, 1, ZONE_SLOTS)
    }

    /// Every (name, slot) of load balancers and of zones.
    pub fn snapshot(&self) -> (Slots, Slots) {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let list = |m: &HashMap<String, usize>| m.iter().map(|(k, &v)| (k.clone(), v)).collect();
        (list(&names.lbs), list(&names.zones))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_bounded() {
        let keys = StatsKeys::default();
        assert_eq!(keys.lb("a"), 0);
        assert_eq!(keys.lb("b"), 1);
        assert_eq!(keys.lb("a"), 0);
        assert_eq!(keys.zone("zone-a"), 1);
        for i in 0..100 {
            assert!(keys.lb(&format!("lb-{i}")) < LB_SLOTS);
            assert!(keys.zone(&format!("z-{i}")) < ZONE_SLOTS);
        }
    }

    #[test]
    fn counts_and_latency_buckets() {
        let stats = Stats::default();
        stats.backend_status(1, 2, 204);
        stats.backend_status(1, 2, 503);
        stats.elb_status(1, 0, 503);
        stats.latency(1, 2, Duration::from_micros(1500));
        stats.add(LB_SLOTS, 0, Counter::RequestCount, 1);
        assert_eq!(stats.get(1, 2, Counter::Backend2xx), 1);
        assert_eq!(stats.get(1, 2, Counter::Backend5xx), 1);
        assert_eq!(stats.get(1, 0, Counter::Elb5xx), 1);
        assert_eq!(stats.get(1, 2, Counter::LatencySumMicros), 1500);
        assert_eq!(stats.latency_bucket(1, 2, 1), 1);
    }
}
