//! The status page's "Nodes" table: the fleet as this node sees it (README "Running
//! several nodes"). ELB's DescribeLoadBalancers has no place for nodes, so this page is
//! where an operator sees them; `/metrics` stays per node.

use crate::config::node::NodeInfo;
use std::fmt::Write;
use std::time::SystemTime;

/// Appends the table: name, zone, address, version and uptime of every live node, this
/// node marked; `last_known` while the store is unreachable (the list may be out of
/// date). `html` escapes text.
pub fn render(
    out: &mut String,
    nodes: &[NodeInfo],
    this_node: &str,
    last_known: bool,
    html: fn(&str) -> String,
) {
    let heading = if last_known {
        "Nodes <span id=\"nodes-last-known\" class=\"muted\">(last known: the store is unreachable)</span>"
    } else {
        "Nodes"
    };
    let _ = write!(
        out,
        "<section class=\"nodes\"><h2>{heading}</h2><table id=\"nodes\"><tr><th>node</th><th>zone</th>\
         <th>address</th><th>version</th><th>up</th></tr>"
    );
    let now = SystemTime::now();
    for node in nodes {
        let up = now
            .duration_since(node.started)
            .unwrap_or_default()
            .as_secs();
        let marker = if node.name == this_node {
            " (this node)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr class=\"node\"><td>{name}{marker}</td><td>{zone}</td><td>{address}</td>\
             <td>{version}</td><td>{up}</td></tr>",
            name = html(&node.name),
            zone = html(&node.zone),
            address = node.address,
            version = html(&node.version),
            up = uptime(up),
        );
    }
    out.push_str("</table></section>");
}

/// `3d 4h`, `2h 5m`, `7m 3s` or `12s`.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_nodes_escaped_with_uptime() {
        let mut a = NodeInfo::this_node("n1", "zone-a", "127.0.1.1".parse().unwrap());
        a.started = SystemTime::now() - std::time::Duration::from_secs(3 * 3600 + 120);
        let b = NodeInfo::this_node("n<2>", "zone-b", "127.0.2.1".parse().unwrap());
        let mut out = String::new();
        render(&mut out, &[a, b], "n1", false, |t| {
            t.replace('<', "&lt;").replace('>', "&gt;")
        });
        assert!(
            out.contains("<td>n1 (this node)</td><td>zone-a</td><td>127.0.1.1</td>"),
            "{out}"
        );
        assert!(out.contains("<td>3h 2m</td>"), "{out}");
        assert!(out.contains("n&lt;2&gt;") && !out.contains("n<2>"), "{out}");
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m 5s");
        assert_eq!(uptime(2 * 86_400 + 3600), "2d 1h");
    }
}
