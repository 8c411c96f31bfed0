//! The status page's "Store" line: where the model is kept and, while etcd is
//! unreachable, since when (README "State in etcd"): the load balancers shown are then
//! this node's last state and the nodes table the last list it knew.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the page says about the store.
pub struct StoreView {
    /// `Store::describe`: "etcd http://... under /clb/", "state file ...".
    pub describe: String,
    /// Since when (wall clock) and why the store is unreachable; None: it answers.
    pub outage: Option<(SystemTime, String)>,
    /// API writes waiting for the store now (the one under way and those behind it).
    pub writes_waiting: usize,
}

/// Appends the line. `html` escapes text.
pub fn render(out: &mut String, store: &StoreView, html: fn(&str) -> String) {
    match &store.outage {
        None => {
            let _ = write!(
                out,
                "<p id=\"store\" class=\"store-ok\">Store: {}.</p>",
                html(&store.describe)
            );
        }
        Some((since, why)) => {
            let secs = SystemTime::now()
                .duration_since(*since)
                .unwrap_or_default()
                .as_secs();
            let _ = write!(
                out,
                "<p id=\"store\" class=\"store-down OutOfService\">Store: {} is unreachable \
                 since <span id=\"store-down-since\">{}</span> ({secs} s): {}. Traffic is served \
                 with this node's configuration; the load balancers below are this node's last \
                 state and the nodes table is the last list it knew; changes through the API \
                 are refused until the store answers.</p>",
                html(&store.describe),
                utc(*since),
                html(why)
            );
        }
    }
    if store.writes_waiting > 0 {
        let _ = write!(
            out,
            "<p id=\"writes-waiting\">API changes waiting for the store: {}.</p>",
            store.writes_waiting
        );
    }
}

/// `2026-12-03 22:40:12 UTC`
fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = crate::calendar::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_line_says_since_when_and_why() {
        let mut out = String::new();
        let view = StoreView {
            describe: "etcd http://127.0.0.1:2379 under /clb/".into(),
            outage: Some((
                UNIX_EPOCH + Duration::from_secs(1_796_400_012),
                "connection <refused>".into(),
            )),
            writes_waiting: 3,
        };
        render(&mut out, &view, |t| t.replace('<', "&lt;"));
        assert!(
            out.contains(
                "is unreachable since <span id=\"store-down-since\">2026-12-04 16:00:12 UTC</span>"
            ),
            "{out}"
        );
        assert!(out.contains("connection &lt;refused>"), "{out}");
        assert!(
            out.contains("API changes waiting for the store: 3."),
            "{out}"
        );
        let mut out = String::new();
        render(
            &mut out,
            &StoreView {
                describe: "state file /x".into(),
                outage: None,
                writes_waiting: 0,
            },
            |t| t.to_string(),
        );
        assert_eq!(
            out,
            "<p id=\"store\" class=\"store-ok\">Store: state file /x.</p>"
        );
    }
}
