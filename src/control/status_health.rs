//! The status page's "Instance health per node" table (with `--cluster`): the
//! instances on which the live nodes' views differ, each node's view side by side, so
//! an operator sees why DescribeInstanceHealth merged as it did (README "Instance health
//! across nodes"). Agreement is the common case and is not listed.

use crate::backend::health::Health;
use crate::cluster::health::{FleetHealth, Views};
use crate::config::node::NodeInfo;
use crate::control::model::Model;
use std::fmt::Write;

/// Rows shown at most: disagreement is rare and brief; a page must stay small.
const MAX_ROWS: usize = 100;

/// Appends the table. `html` escapes text.
pub fn render(
    out: &mut String,
    model: &Model,
    fleet: &FleetHealth,
    nodes: &[NodeInfo],
    html: fn(&str) -> String,
) {
    let views = fleet.views();
    let me = fleet.me();
    let _ = write!(
        out,
        "<section class=\"health-views\"><h2>Instance health per node</h2>\
         <table id=\"health-views\"><tr><th>load balancer</th><th>instance</th>"
    );
    for node in nodes {
        let _ = write!(out, "<th>{}</th>", html(&node.name));
    }
    out.push_str("</tr>");
    let mut rows = 0;
    let mut hidden = 0;
    for lb in &model.lbs {
        for r in &lb.registered {
            let id = &r.instance.id;
            let local = model.health.get(r.slot);
            let cells: Vec<Option<Health>> = nodes
                .iter()
                .map(|n| view(&views, me, &n.name, &lb.name, id, local))
                .collect();
            let mut seen = cells.iter().flatten();
            let first = seen.next();
            if !seen.any(|h| Some(h) != first) {
                continue;
            }
            if rows == MAX_ROWS {
                hidden += 1;
                continue;
            }
            rows += 1;
            let _ = write!(
                out,
                "<tr class=\"health-view\"><td>{}</td><td>{}</td>",
                html(&lb.name),
                html(id)
            );
            for cell in cells {
                let text = cell.map_or("no view", |h| match h {
                    Health::InService => "InService",
                    Health::Unhealthy => "OutOfService (failing)",
                    Health::Recovering => "OutOfService (recovering)",
                    Health::Registering => "no view",
                });
                let _ = write!(out, "<td>{text}</td>");
            }
            out.push_str("</tr>");
        }
    }
    out.push_str("</table>");
    if rows == 0 {
        out.push_str("<p class=\"muted\">Every live node that has probed an instance agrees.</p>");
    }
    if hidden > 0 {
        let _ = write!(out, "<p class=\"muted\">{hidden} more not shown.</p>");
    }
    out.push_str("</section>");
}

/// A node's view as the merge takes it: this node's is its board; not probed yet is none.
fn view(views: &Views, me: &str, node: &str, lb: &str, id: &str, local: Health) -> Option<Health> {
    let health = if node == me {
        Some(local)
    } else {
        views.get(node, lb, id)
    };
    health.filter(|h| *h != Health::Registering)
}
