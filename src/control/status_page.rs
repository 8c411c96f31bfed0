//! `GET /` on the API port: one self-contained HTML page (no external assets, no
//! script) showing each load balancer, its listeners, zones, attributes, every
//! registered instance with DescribeInstanceHealth's state, reason and description, and
//! live counters. It refreshes itself every 5 seconds.

use super::model::Model;
use crate::config::Protocol;
use crate::stats::{Counter, Stats};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Escapes text for HTML element content and attribute values.
pub(super) fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

fn protocol(p: Protocol) -> &'static str {
    p.as_str()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0 1em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}\
th{background:#f3f3f3}.InService{color:#16702e;font-weight:600}\
.OutOfService{color:#b3261e;font-weight:600}.muted{color:#666}";

pub fn render(
    model: &Model,
    stats: &[Arc<Stats>],
    nodes: &[crate::config::node::NodeInfo],
    this_node: &str,
    store: Option<&super::status_store::StoreView>,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>clb status</title><style>{STYLE}</style></head><body>\
         <h1>clb {} — load balancers</h1>",
        env!("CARGO_PKG_VERSION")
    );
    let connections: u64 = stats
        .iter()
        .map(|s| s.connections.load(Ordering::Relaxed))
        .sum();
    let _ = write!(
        out,
        "<p class=\"muted\">Client connections open now: <span id=\"connections\">{connections}</span>. \
         This page refreshes every 5 seconds; metrics in Prometheus format are at \
         <a href=\"/metrics\">/metrics</a>.</p>"
    );
    if let Some(store) = store {
        super::status_store::render(&mut out, store, html);
    }
    let last_known = store.is_some_and(|s| s.outage.is_some());
    super::status_nodes::render(&mut out, nodes, this_node, last_known, html);
    if model.lbs.is_empty() {
        out.push_str("<p>No load balancers.</p>");
    }
    for lb in &model.lbs {
        let slot = model.stats_keys.lb(&lb.name);
        let total = |counter: Counter| -> u64 {
            let zones = crate::stats::ZONE_SLOTS;
            stats
                .iter()
                .map(|s| (0..zones).map(|z| s.get(slot, z, counter)).sum::<u64>())
                .sum()
        };
        let _ = write!(
            out,
            "<section class=\"lb\" data-name=\"{name}\"><h2>{name}</h2>\
             <p>Address: <span class=\"address\">{address}</span>. Zones: {zones}. Cross-zone: {cross}. Idle timeout: {idle} s. \
             Connection draining: {draining}. Desync mode: {desync}. \
             Health check: {check} every {interval} s.</p>",
            name = html(&lb.name),
            address = model.listen_address(lb),
            zones = html(&lb.zones.join(", ")),
            cross = if lb.attributes.cross_zone {
                "on"
            } else {
                "off"
            },
            idle = lb.attributes.idle_timeout,
            draining = if lb.attributes.draining {
                format!("{} s", lb.attributes.draining_timeout)
            } else {
                "off".to_string()
            },
            desync = html(&lb.attributes.desync_mode),
            check = html(&lb.health_check.target.to_string()),
            interval = lb.health_check.interval,
        );
        out.push_str("<table class=\"listeners\"><tr><th>Listener</th><th>Instance side</th></tr>");
        for l in &lb.listeners {
            let _ = write!(
                out,
                "<tr><td>{}:{}</td><td>{}:{}</td></tr>",
                protocol(l.protocol),
                l.port,
                protocol(l.instance_protocol),
                l.instance_port
            );
        }
        out.push_str("</table>");
        let _ = write!(
            out,
            "<table class=\"counters\"><tr><th>Requests routed</th><th>Instance 2XX</th>\
             <th>Instance 4XX</th><th>Instance 5XX</th><th>clb 4XX</th><th>clb 5XX</th>\
             <th>Connection errors</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr></table>",
            total(Counter::RequestCount),
            total(Counter::Backend2xx),
            total(Counter::Backend4xx),
            total(Counter::Backend5xx),
            total(Counter::Elb4xx),
            total(Counter::Elb5xx),
            total(Counter::BackendConnectionErrors),
        );
        out.push_str(
            "<table class=\"instances\"><tr><th>Instance</th><th>Address</th><th>Zone</th>\
             <th>State</th><th>Reason</th><th>Description</th></tr>",
        );
        let rows = model.instance_health(&lb.name, &[]).unwrap_or_default();
        for (r, health) in lb.registered.iter().zip(rows) {
            let i = &r.instance;
            let port = i.port.map_or_else(String::new, |p| format!(":{p}"));
            let _ = write!(
                out,
                "<tr><td>{id}</td><td>{host}{port}</td><td>{zone}</td>\
                 <td class=\"{state}\">{state}</td><td>{reason}</td><td>{description}</td></tr>",
                id = html(&health.id),
                host = html(&i.host.to_string()),
                zone = html(&i.zone),
                state = health.state,
                reason = health.reason_code,
                description = html(health.description),
            );
        }
        if lb.registered.is_empty() {
            out.push_str(
                "<tr><td colspan=\"6\" class=\"muted\">No registered instances.</td></tr>",
            );
        }
        out.push_str("</table></section>");
    }
    out.push_str("</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
