//! Instance health across nodes (README "Running several nodes", "Instance health
//! across nodes"): every node probes on its own and routes by its own view, publishes
//! that view's *transitions* to etcd, follows every other node's, and answers
//! DescribeInstanceHealth with the merge of the live nodes' views.
//!
//! Keys: `<prefix>health/<node>/<lb>/<instance-id>`, a small JSON record bound to the
//! node's membership lease, so a dead or partitioned node's view goes with its lease.
//! Node and load balancer names hold no `/`, so a key splits without doubt.
//!
//! Threads: the control thread notices transitions (`FleetHealth::observe`, on its
//! timer, reading the health board the workers write) and hands them to the publisher
//! thread (`health_publish`), which owns every etcd write; the watch thread
//! (`follow`) keeps `Views` current. Neither the workers nor the control loop ever wait
//! for etcd here.

use super::etcd::{Kv, WatchKind};
use super::follow::Remote;
use super::health_publish::Publish;
use crate::backend::health::Health;
use crate::config::node::NodeInfo;
use crate::config::Topology;
use crate::control::model::{LbState, Model};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// `<prefix>health/`: every node's view lives under it.
pub fn health_prefix(prefix: &str) -> Vec<u8> {
    format!("{prefix}health/").into_bytes()
}

pub fn health_key(prefix: &str, node: &str, lb: &str, id: &str) -> Vec<u8> {
    format!("{prefix}health/{node}/{lb}/{id}").into_bytes()
}

fn tag(health: Health) -> &'static str {
    match health {
        Health::Registering => "registering",
        Health::InService => "in-service",
        Health::Unhealthy => "unhealthy",
        Health::Recovering => "recovering",
    }
}

/// The record: the node's state in ELB's words (for an operator reading it with
/// etcdctl) and the tag this module reads back.
pub fn encode(health: Health) -> Vec<u8> {
    json!({
        "health": tag(health),
        "state": health.state(),
        "reason_code": health.reason_code(),
        "description": health.description(),
    })
    .to_string()
    .into_bytes()
}

/// None for a record that is not one (damaged, or written by something else).
pub fn decode(value: &[u8]) -> Option<Health> {
    let v: Value = serde_json::from_slice(value).ok()?;
    match v.get("health")?.as_str()? {
        "registering" => Some(Health::Registering),
        "in-service" => Some(Health::InService),
        "unhealthy" => Some(Health::Unhealthy),
        "recovering" => Some(Health::Recovering),
        _ => None,
    }
}

/// (node, load balancer, instance id) of a key under the health prefix.
fn split_key<'a>(prefix: &[u8], key: &'a [u8]) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix)?).ok()?;
    let (node, rest) = rest.split_once('/')?;
    let (lb, id) = rest.split_once('/')?;
    (!node.is_empty() && !lb.is_empty() && !id.is_empty()).then_some((node, lb, id))
}

/// Every node's published view as etcd last said: node → (lb, instance) → health.
#[derive(Debug, Default)]
pub struct Views {
    prefix: Vec<u8>,
    /// node → lb → instance id → health.
    nodes: HashMap<String, HashMap<String, HashMap<String, Health>>>,
    /// Keys already reported as damaged: each is logged once, then ignored.
    damaged: HashSet<Vec<u8>>,
}

impl Views {
    pub fn new(prefix: &str) -> Views {
        Views {
            prefix: health_prefix(prefix),
            ..Views::default()
        }
    }

    /// A node's view of one instance; None when it published none.
    pub fn get(&self, node: &str, lb: &str, id: &str) -> Option<Health> {
        self.nodes.get(node)?.get(lb)?.get(id).copied()
    }

    /// What the watch thread saw. While etcd is away (`Unreachable`) the last views stay.
    pub fn apply(&mut self, remote: Remote) {
        match remote {
            Remote::Unreachable(_) => {}
            Remote::Events(events) => {
                for event in events {
                    self.apply_kv(event.kind, &event.kv);
                }
            }
            Remote::Resync { kvs, .. } => {
                self.nodes.clear();
                for kv in &kvs {
                    self.apply_kv(WatchKind::Put, kv);
                }
            }
        }
    }

    fn apply_kv(&mut self, kind: WatchKind, kv: &Kv) {
        let Some((node, lb, id)) = split_key(&self.prefix, &kv.key) else {
            self.damaged(kv, "not a health key");
            return;
        };
        match kind {
            WatchKind::Delete => self.remove(node, lb, id),
            WatchKind::Put => match decode(&kv.value) {
                Some(health) => {
                    self.nodes
                        .entry(node.to_string())
                        .or_default()
                        .entry(lb.to_string())
                        .or_default()
                        .insert(id.to_string(), health);
                }
                None => {
                    // A damaged record says nothing: that node's view of it is unknown.
                    let (node, lb, id) = (node.to_string(), lb.to_string(), id.to_string());
                    self.remove(&node, &lb, &id);
                    self.damaged(kv, "not a health record");
                }
            },
        }
    }

    fn remove(&mut self, node: &str, lb: &str, id: &str) {
        let Some(view) = self.nodes.get_mut(node) else {
            return;
        };
        if let Some(ids) = view.get_mut(lb) {
            ids.remove(id);
            if ids.is_empty() {
                view.remove(lb);
            }
        }
        if view.is_empty() {
            self.nodes.remove(node);
        }
    }

    fn damaged(&mut self, kv: &Kv, why: &str) {
        if self.damaged.insert(kv.key.clone()) {
            log::warn!(
                "cluster: ignoring {}: {why}",
                String::from_utf8_lossy(&kv.key)
            );
        }
    }
}

/// The rule (README "Instance health across nodes", spec 2.2.11): of the views that
/// count, InService only when every one is; otherwise the most serious view that is
/// not (failing now, then recovering). None when no view counts: the caller answers
/// with its own. `Registering` is no view yet (a node that just started or was just
/// given the instance has not probed it) and never counts.
pub fn merge(views: impl IntoIterator<Item = Health>) -> Option<Health> {
    let mut merged = None;
    for view in views {
        merged = Some(match (merged, view) {
            (_, Health::Registering) => continue,
            (None, v) => v,
            (Some(Health::Unhealthy), _) | (_, Health::Unhealthy) => Health::Unhealthy,
            (Some(Health::Recovering), _) | (_, Health::Recovering) => Health::Recovering,
            (Some(m), _) => m,
        });
    }
    merged
}

/// Whether `node` sends this load balancer's clients to its instances: the nodes DNS
/// answers with for it (a node without a zone serves every zone). Each clb node spreads
/// its clients over all of the load balancer's enabled zones, so cross-zone does not
/// narrow this further (README "Instance health across nodes").
fn serves(node_zone: &str, lb: &LbState) -> bool {
    node_zone.is_empty() || lb.zones.iter().any(|z| z == node_zone)
}

/// The control thread's side: what it last saw on the health board, the publisher's
/// channel, and the views the watch thread keeps.
pub struct FleetHealth {
    me: String,
    views: Arc<Mutex<Views>>,
    publisher: Sender<Publish>,
    /// lb → instance id → the board's state at the last scan.
    seen: HashMap<String, HashMap<String, Health>>,
    /// The same by board slot, and the topology it was taken with: while the topology
    /// (so every registration and its slot) is the same, a scan compares slots only.
    by_slot: Vec<Option<Health>>,
    scanned: Option<Arc<Topology>>,
    /// The membership lease the publisher was last told of.
    lease: i64,
    last_scan: Option<Instant>,
}

/// The shortest time between two scans of the board: the control thread wakes for
/// every API request, and a scan reads every registration.
const SCAN_EVERY: Duration = Duration::from_millis(50);

impl FleetHealth {
    pub fn new(me: &str, views: Arc<Mutex<Views>>, publisher: Sender<Publish>) -> FleetHealth {
        FleetHealth {
            me: me.to_string(),
            views,
            publisher,
            seen: HashMap::new(),
            by_slot: Vec::new(),
            scanned: None,
            lease: 0,
            last_scan: None,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Every node's view as last followed (held for as long as the guard lives).
    pub fn views(&self) -> MutexGuard<'_, Views> {
        // The watch thread only inserts and removes; a panic there leaves a usable map.
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One scan of the board (the control thread's timer): each registration whose
    /// state changed since the last scan is handed to the publisher, as is each one
    /// deregistered or deleted (its key is removed), and a new membership lease (the
    /// node registered again: the publisher writes the whole view again under it).
    /// `topology` is the one built from `model`.
    pub fn observe(&mut self, model: &Model, topology: &Arc<Topology>, lease: i64, now: Instant) {
        if self.last_scan.is_some_and(|at| now < at + SCAN_EVERY) {
            return;
        }
        self.last_scan = Some(now);
        if lease != self.lease {
            self.lease = lease;
            self.send(Publish::Lease(lease));
        }
        let same = self
            .scanned
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, topology));
        self.scanned = Some(topology.clone());
        let mut present = 0usize;
        for lb in &model.lbs {
            for r in &lb.registered {
                present += 1;
                let health = model.health.get(r.slot);
                if same && self.by_slot.get(r.slot) == Some(&Some(health)) {
                    continue;
                }
                if self.by_slot.len() <= r.slot {
                    self.by_slot.resize(r.slot + 1, None);
                }
                self.by_slot[r.slot] = Some(health);
                let before = self
                    .seen
                    .get(lb.name.as_str())
                    .and_then(|m| m.get(r.instance.id.as_str()))
                    .copied();
                if before == Some(health) {
                    continue;
                }
                self.seen
                    .entry(lb.name.clone())
                    .or_default()
                    .insert(r.instance.id.clone(), health);
                // A registration not probed yet has nothing to say (and had no key).
                if before.is_some() || health != Health::Registering {
                    self.send(Publish::Set {
                        lb: lb.name.clone(),
                        id: r.instance.id.clone(),
                        health: (health != Health::Registering).then_some(health),
                    });
                }
            }
        }
        if same {
            return;
        }
        let tracked: usize = self.seen.values().map(HashMap::len).sum();
        if tracked != present {
            self.forget_gone(model);
        }
    }

    /// Drops what the model no longer registers, removing its keys.
    fn forget_gone(&mut self, model: &Model) {
        let mut gone = Vec::new();
        for (lb_name, ids) in &mut self.seen {
            let lb = model.lbs.iter().find(|lb| &lb.name == lb_name);
            ids.retain(|id, _| {
                let keep = lb.is_some_and(|lb| lb.registered.iter().any(|r| &r.instance.id == id));
                if !keep {
                    gone.push((lb_name.clone(), id.clone()));
                }
                keep
            });
        }
        self.seen.retain(|_, ids| !ids.is_empty());
        for (lb, id) in gone {
            self.send(Publish::Set {
                lb,
                id,
                health: None,
            });
        }
    }

    fn send(&self, message: Publish) {
        if self.publisher.send(message).is_err() {
            log::error!("cluster: the health publisher thread has stopped; other nodes do not see this node's health changes");
        }
    }

    /// What DescribeInstanceHealth says of `id` on `lb`: `local` (this node's board)
    /// merged with the views of the live nodes in `nodes` that serve the load balancer
    /// (`merge`); this node's own view is `local`, fresher than its echo from etcd.
    pub fn merged(&self, lb: &LbState, id: &str, local: Health, nodes: &[NodeInfo]) -> Health {
        let views = self.views();
        let mine_counts = nodes
            .iter()
            .find(|n| n.name == self.me)
            .is_none_or(|n| serves(&n.zone, lb));
        let others = nodes
            .iter()
            .filter(|n| n.name != self.me && serves(&n.zone, lb))
            .filter_map(|n| views.get(&n.name, &lb.name, id));
        let mine = mine_counts.then_some(local);
        merge(mine.into_iter().chain(others)).unwrap_or(local)
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;

/// With `--cluster`: reads every node's view, starts the watch that follows them and
/// the publisher thread, and returns the control thread's side. Other nodes' views are
/// not needed to serve: if etcd fails this first read (it may go away while the node
/// starts), the watch thread reads them once etcd answers.
pub fn start(
    cluster: &crate::config::cluster::ClusterStore,
    me: &str,
) -> Result<FleetHealth, String> {
    let etcd = super::start::client(cluster)?;
    let prefix = health_prefix(&cluster.prefix);
    let mut views = Views::new(&cluster.prefix);
    let watch_from = match etcd.range_prefix(&prefix) {
        Ok((kvs, revision)) => {
            views.apply(Remote::Resync { kvs, revision });
            Some(revision + 1)
        }
        Err(e) => {
            log::warn!("cluster: reading the nodes' health views: {e}; answering from this node's own until etcd answers");
            None
        }
    };
    let views = Arc::new(Mutex::new(views));
    let followed = Arc::downgrade(&views);
    let gone = followed.clone();
    let stop = move || gone.strong_count() == 0;
    super::follow::spawn(
        etcd,
        prefix,
        watch_from,
        "the nodes' health views",
        stop,
        move |remote| {
            let Some(views) = followed.upgrade() else {
                return false;
            };
            views
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(remote);
            true
        },
    )
    .map_err(|e| format!("cannot start the health watch thread: {e}"))?;
    let (publisher, messages) = std::sync::mpsc::channel();
    super::health_publish::spawn(
        super::start::client(cluster)?,
        &cluster.prefix,
        me,
        messages,
    )
    .map_err(|e| format!("cannot start the health publisher thread: {e}"))?;
    Ok(FleetHealth::new(me, views, publisher))
}
