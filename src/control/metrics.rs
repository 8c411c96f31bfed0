//! `GET /metrics`: ELB's CloudWatch metrics (spec §12.2) in the Prometheus text format,
//! named `clb_` + ELB's own metric name, labelled by `load_balancer` and `zone`.
//!
//! Every worker counts into its own `Stats`; a scrape sums them and reads instance
//! health from the shared board, so scraping costs the data path nothing. Series for
//! answers clb gave before choosing an instance carry no `zone` label.

use crate::backend::health::Health;
use crate::config::Topology;
use crate::http::desync::{Counts, Tier, ALL_REASONS};
use crate::stats::{Counter, Stats, LATENCY_BOUNDS};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a scrape reads.
pub struct Sources<'a> {
    pub topology: &'a Topology,
    pub stats: &'a [Arc<Stats>],
    pub desync: &'a [Arc<Counts>],
}

const COUNTERS: [(&str, Counter, &str); 9] = [
    (
        "RequestCount",
        Counter::RequestCount,
        "HTTP: requests routed to an instance; TCP: connections made to instances",
    ),
    (
        "HTTPCode_Backend_2XX",
        Counter::Backend2xx,
        "2XX responses from instances",
    ),
    (
        "HTTPCode_Backend_3XX",
        Counter::Backend3xx,
        "3XX responses from instances",
    ),
    (
        "HTTPCode_Backend_4XX",
        Counter::Backend4xx,
        "4XX responses from instances",
    ),
    (
        "HTTPCode_Backend_5XX",
        Counter::Backend5xx,
        "5XX responses from instances",
    ),
    (
        "HTTPCode_ELB_4XX",
        Counter::Elb4xx,
        "4XX answers clb generated",
    ),
    (
        "HTTPCode_ELB_5XX",
        Counter::Elb5xx,
        "5XX answers clb generated",
    ),
    (
        "BackendConnectionErrors",
        Counter::BackendConnectionErrors,
        "failed connections to instances, health probes included",
    ),
    (
        "SpilloverCount",
        Counter::SpilloverCount,
        "requests or connections rejected because the surge queue was full",
    ),
];

/// Every (load balancer, zone) series: names and slots.
fn series(topology: &Topology) -> Vec<(String, Option<String>, usize, usize)> {
    let (lbs, zones) = topology.stats_keys.snapshot();
    let mut out = Vec::new();
    for (lb, lb_slot) in &lbs {
        out.push((lb.clone(), None, *lb_slot, 0));
        for (zone, zone_slot) in &zones {
            out.push((lb.clone(), Some(zone.clone()), *lb_slot, *zone_slot));
        }
    }
    out.sort();
    out
}

fn labels(lb: &str, zone: Option<&str>) -> String {
    match zone {
        Some(zone) => format!("load_balancer=\"{}\",zone=\"{}\"", escape(lb), escape(zone)),
        None => format!("load_balancer=\"{}\"", escape(lb)),
    }
}

/// Label values escape backslash, quote and newline (names are checked, but zones from
/// `--instance` flags or the API could hold anything).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(sources: &Sources<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let all = series(sources.topology);
    let sum = |lb: usize, zone: usize, counter: Counter| -> u64 {
        sources.stats.iter().map(|s| s.get(lb, zone, counter)).sum()
    };

    for (name, counter, help) in COUNTERS {
        family(&mut out, &format!("clb_{name}"), "counter", help);
        for (lb, zone, lb_slot, zone_slot) in &all {
            let n = sum(*lb_slot, *zone_slot, counter);
            if n > 0 || zone.is_none() {
                let _ = writeln!(out, "clb_{name}{{{}}} {n}", labels(lb, zone.as_deref()));
            }
        }
    }

    family(&mut out, "clb_Latency", "histogram", "HTTP: request sent to an instance until its response head; TCP: time to connect, in seconds");
    for (lb, zone, lb_slot, zone_slot) in all.iter().filter(|s| s.1.is_some()) {
        let count = sum(*lb_slot, *zone_slot, Counter::LatencyCount);
        if count == 0 {
            continue;
        }
        let l = labels(lb, zone.as_deref());
        let mut cumulative = 0;
        for (bucket, le) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += sources
                .stats
                .iter()
                .map(|s| s.latency_bucket(*lb_slot, *zone_slot, bucket))
                .sum::<u64>();
            let _ = writeln!(out, "clb_Latency_bucket{{{l},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "clb_Latency_bucket{{{l},le=\"+Inf\"}} {count}");
        let micros = sum(*lb_slot, *zone_slot, Counter::LatencySumMicros);
        let _ = writeln!(out, "clb_Latency_sum{{{l}}} {}", micros as f64 / 1e6);
        let _ = writeln!(out, "clb_Latency_count{{{l}}} {count}");
    }

    // Host counts: the current topology's registered instances, by zone.
    let topo = sources.topology;
    let mut hosts: Vec<(String, String, u64, u64)> = Vec::new();
    for lb in &topo.lbs {
        let mut zones: Vec<&str> = topo
            .instances
            .iter()
            .filter(|i| topo.lbs.get(i.lb).is_some_and(|l| l.name == lb.name))
            .map(|i| i.zone_name.as_str())
            .chain(lb.zones.iter().map(String::as_str))
            .collect();
        zones.sort_unstable();
        zones.dedup();
        for zone in zones {
            let (mut healthy, mut unhealthy) = (0, 0);
            for i in topo.instances.iter().filter(|i| {
                !i.draining
                    && i.zone_name == zone
                    && topo.lbs.get(i.lb).is_some_and(|l| l.name == lb.name)
            }) {
                match topo.health.get(i.slot) {
                    Health::InService => healthy += 1,
                    Health::Unhealthy | Health::Recovering => unhealthy += 1,
                    Health::Registering => {}
                }
            }
            hosts.push((lb.name.clone(), zone.to_string(), healthy, unhealthy));
        }
    }
    for (name, help, pick) in [
        (
            "HealthyHostCount",
            "registered instances in service",
            0usize,
        ),
        (
            "UnHealthyHostCount",
            "registered instances past the unhealthy threshold",
            1,
        ),
    ] {
        family(&mut out, &format!("clb_{name}"), "gauge", help);
        for (lb, zone, healthy, unhealthy) in &hosts {
            let n = if pick == 0 { healthy } else { unhealthy };
            let _ = writeln!(out, "clb_{name}{{{}}} {n}", labels(lb, Some(zone)));
        }
    }
    family(
        &mut out,
        "clb_SurgeQueueLength",
        "gauge",
        "requests (HTTP) or connections (TCP) waiting for room at an instance",
    );
    for lb in &topo.lbs {
        let queued: u64 = sources
            .stats
            .iter()
            .filter_map(|s| s.surge.get(lb.stats_slot))
            .map(|g| g.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "clb_SurgeQueueLength{{{}}} {queued}",
            labels(&lb.name, None)
        );
    }

    // Process-wide figures.
    let connections: u64 = sources
        .stats
        .iter()
        .map(|s| s.connections.load(Ordering::Relaxed))
        .sum();
    family(
        &mut out,
        "clb_EstimatedALBActiveConnectionCount",
        "gauge",
        "client connections open now, every listener",
    );
    let _ = writeln!(out, "clb_EstimatedALBActiveConnectionCount {connections}");

    let process = |read: fn(&Stats) -> u64| -> u64 { sources.stats.iter().map(|s| read(s)).sum() };
    for (name, kind, help, value) in [
        (
            "clb_buffers_in_use",
            "gauge",
            "pooled 32 KiB buffers held by connections now",
            process(|s| s.buffers_in_use.load(Ordering::Relaxed)),
        ),
        (
            "clb_buffer_pool_hits",
            "counter",
            "buffers taken from a worker's free list",
            process(|s| s.buffer_hits.load(Ordering::Relaxed)),
        ),
        (
            "clb_buffer_pool_misses",
            "counter",
            "buffers newly allocated",
            process(|s| s.buffer_misses.load(Ordering::Relaxed)),
        ),
        (
            "clb_connections_refused_by_allow_list",
            "counter",
            "client connections closed at accept by --allow or a security group",
            process(|s| s.allow_refused.load(Ordering::Relaxed)),
        ),
        (
            "clb_backend_pool_hits",
            "counter",
            "requests sent on a pooled keep-alive instance connection",
            process(|s| s.backend_pool_hits.load(Ordering::Relaxed)),
        ),
        (
            "clb_backend_pool_misses",
            "counter",
            "requests that needed a new instance connection",
            process(|s| s.backend_pool_misses.load(Ordering::Relaxed)),
        ),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }

    family(
        &mut out,
        "clb_DesyncMitigationMode_NonCompliant_Request_Count",
        "counter",
        "HTTP requests not compliant with RFC 7230, every mode",
    );
    let mut by_class = Vec::new();
    let mut non_compliant = 0;
    for tier in [
        Tier::Compliant,
        Tier::Acceptable,
        Tier::Ambiguous,
        Tier::Severe,
    ] {
        for reason in ALL_REASONS {
            let n: u64 = sources.desync.iter().map(|c| c.get(tier, reason)).sum();
            if n > 0 {
                if tier != Tier::Compliant {
                    non_compliant += n;
                }
                by_class.push((tier, reason, n));
            }
        }
    }
    let _ = writeln!(
        out,
        "clb_DesyncMitigationMode_NonCompliant_Request_Count {non_compliant}"
    );
    family(
        &mut out,
        "clb_desync_requests",
        "counter",
        "HTTP requests by desync classification tier and reason",
    );
    for (tier, reason, n) in by_class {
        let _ = writeln!(
            out,
            "clb_desync_requests{{tier=\"{tier:?}\",reason=\"{reason:?}\"}} {n}"
        );
    }
    out
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}.");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
