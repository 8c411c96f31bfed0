//! Membership: this node's key under `<prefix>nodes/<name>`, bound to an etcd lease it
//! keeps alive, and the live node list the fleet's answers are built from (DNS records,
//! the status page).
//!
//! Two helper threads, no async runtime: the lease thread renews the lease every TTL/3
//! and re-registers when the lease was lost (etcd was down longer than the TTL); the
//! watch thread (`crate::cluster::follow`, as for the model) reads `<prefix>nodes/`
//! once, then follows it with a watch, and hands every new list to the caller's
//! `notify` (the control thread's channel + waker). A node killed stops renewing and
//! etcd drops its key when the lease expires; a node that leaves (`Membership::leave`,
//! on SIGTERM) revokes the lease and is gone at once.
//!
//! While etcd is unreachable both threads keep trying with a capped backoff, logging the
//! transition once, and the last list stays in force: traffic is never stopped because
//! the fleet's bookkeeping is.

use super::etcd::{Etcd, EtcdError, Kv, WatchKind};
use super::follow::Remote;
pub use super::node_record::{decode, encode, node_key, nodes_prefix};
use super::outage::Outage;
use crate::config::node::NodeInfo;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Called with the whole live list, sorted by name, each time it changes.
pub type Notify = Box<dyn FnMut(Vec<NodeInfo>) + Send>;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Retries are cheap (one request, logged once per outage); a short cap makes a node
/// follow again within ~2 s of etcd's return.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// Another live node holds this name (its lease outlived a wait of one TTL).
    NameTaken {
        name: String,
        holder: String,
    },
    Etcd(EtcdError),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::NameTaken { name, holder } => write!(
                f,
                "node name {name:?} is taken by a live node ({holder}): give each node its own --node"
            ),
            JoinError::Etcd(e) => write!(f, "cannot join the cluster: {e}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// This node in the fleet: dropping it without `leave` stops the threads and leaves
/// the lease to expire, as a crash would.
pub struct Membership {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    etcd: Etcd,
    prefix: String,
    me: NodeInfo,
    /// The pool addresses as the control thread last set them (`me.addresses` is the
    /// value at join); `dirty` until the lease thread has written them to etcd.
    addresses: Mutex<Option<BTreeMap<String, IpAddr>>>,
    dirty: AtomicBool,
    ttl: Duration,
    lease: AtomicI64,
    stop: AtomicBool,
}

/// A node registered (its key written on a fresh lease) whose threads have not started:
/// runtime registers before the node serves, so that a start etcd cannot complete is
/// refused before any client is served. Dropped unstarted (start failed later), it
/// revokes the lease: a node that never came up is listed nowhere.
pub struct Registered {
    shared: Arc<Shared>,
    started: bool,
}

impl Registered {
    /// Starts renewing the lease and following the node list (`notify`).
    pub fn start(mut self, notify: Notify) -> Membership {
        self.started = true;
        let shared = self.shared.clone();
        let lease = {
            let shared = shared.clone();
            spawn("clb-lease", move || shared.keep_alive())
        };
        let watch = follow_nodes(&shared, notify);
        Membership {
            shared,
            threads: vec![lease, watch],
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        let shared = &self.shared;
        let lease = shared.lease.swap(0, Ordering::SeqCst);
        if lease != 0 && shared.etcd.lease_revoke(lease).is_err() {
            log::warn!(
                "cluster: could not revoke node {}'s lease; it expires within {}s",
                shared.me.name,
                shared.ttl.as_secs()
            );
        }
    }
}

impl Membership {
    /// Registers `me` and starts the threads (`register`, then `Registered::start`).
    pub fn join(
        etcd: Etcd,
        prefix: &str,
        me: NodeInfo,
        ttl: Duration,
        notify: Notify,
    ) -> Result<Membership, JoinError> {
        Ok(Membership::register(etcd, prefix, me, ttl)?.start(notify))
    }

    /// Registers `me`. A key with this name and this address is this node's own from
    /// before a restart: taken over. With another address it is waited out (up to one
    /// TTL plus slack: a node killed just before), then refused. etcd failing is tried
    /// again for as long, then refused. `etcd` should have a timeout well under `ttl / 3`.
    pub fn register(
        etcd: Etcd,
        prefix: &str,
        me: NodeInfo,
        ttl: Duration,
    ) -> Result<Registered, JoinError> {
        let shared = Arc::new(Shared {
            etcd,
            prefix: prefix.to_string(),
            addresses: Mutex::new(me.addresses.clone()),
            // The persisted copy (`<prefix>addresses/<node>`) is written by the lease
            // thread's first round.
            dirty: AtomicBool::new(me.addresses.is_some()),
            me,
            ttl,
            lease: AtomicI64::new(0),
            stop: AtomicBool::new(false),
        });
        let deadline = Instant::now() + ttl + Duration::from_secs(2);
        loop {
            match shared.register() {
                Ok(()) => break,
                Err(JoinError::NameTaken { .. }) if shared.take_over_own_key() => {}
                // A slow etcd (a round trip is bounded by TTL/4) is tried again too.
                Err(JoinError::NameTaken { .. } | JoinError::Etcd(_))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(BACKOFF_MIN * 2);
                }
                Err(e) => return Err(e),
            }
        }
        log::info!(
            "cluster: joined as node {} (zone {}, address {}, lease TTL {}s)",
            shared.me.name,
            shared.me.zone,
            shared.me.address,
            ttl.as_secs()
        );
        Ok(Registered {
            shared,
            started: false,
        })
    }

    /// Leaves the fleet at once: revokes the lease (which deletes the key) and stops.
    pub fn leave(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The lease thread first (it wakes every 50 ms), so it cannot register again
        // after the revoke. The watch thread may sit in a read for up to the client's
        // timeout: it ends by itself, unwaited, so SIGTERM is not held up by it.
        let mut threads = self.threads.drain(..);
        if let Some(lease_thread) = threads.next() {
            let _ = lease_thread.join();
        }
        drop(threads);
        let lease = self.shared.lease.swap(0, Ordering::SeqCst);
        if lease != 0 {
            match self.shared.etcd.lease_revoke(lease) {
                Ok(()) => log::info!("cluster: node {} left", self.shared.me.name),
                Err(e) => log::warn!(
                    "cluster: could not revoke node {}'s lease ({e}); it expires within {}s",
                    self.shared.me.name,
                    self.shared.ttl.as_secs()
                ),
            }
        }
    }

    /// This node's load balancer → pool address map changed (the control thread, after
    /// every change of its model): the lease thread republishes the node's record and
    /// the persisted copy soon after. Never blocks on etcd.
    pub fn set_addresses(&self, addresses: BTreeMap<String, IpAddr>) {
        let mut slot = self
            .shared
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.as_ref() != Some(&addresses) {
            *slot = Some(addresses);
            self.shared.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    // Without its thread membership cannot work at all; the OS refusing a thread at start
    // is not an input error.
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a cluster membership thread")
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, waking early when asked to stop (false) or, with `on_dirty`, when
    /// the record is to be republished.
    fn pause(&self, d: Duration, on_dirty: bool) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopped() {
                return false;
            }
            if on_dirty && self.dirty.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
        !self.stopped()
    }

    /// This node's record as it is now (the pool addresses as last set).
    fn record(&self) -> NodeInfo {
        let mut me = self.me.clone();
        me.addresses = self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        me
    }

    /// When the pool addresses changed: the node's key again (same lease) and the
    /// persisted copy that outlives the lease, so a restarted node takes the same
    /// addresses again (`super::node_addresses`).
    fn republish(&self) -> Result<(), EtcdError> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let record = self.record();
        let written = self
            .etcd
            .put(
                &node_key(&self.prefix, &self.me.name),
                &encode(&record),
                self.lease.load(Ordering::SeqCst),
            )
            .and_then(|_| match &record.addresses {
                Some(addresses) => {
                    super::node_addresses::save(&self.etcd, &self.prefix, &self.me.name, addresses)
                }
                None => Ok(()),
            });
        if written.is_err() {
            self.dirty.store(true, Ordering::SeqCst);
        }
        written
    }

    /// The key holds this node's own name *and address*: this node restarted before its
    /// old lease expired (a second process cannot serve the same address). Deletes that
    /// key, guarded by its revision, so registering can go on at once; true if it did.
    fn take_over_own_key(&self) -> bool {
        let key = node_key(&self.prefix, &self.me.name);
        let Ok((Some(kv), _)) = self.etcd.get(&key) else {
            return false;
        };
        let own = decode(&self.me.name, &kv.value).is_some_and(|n| n.address == self.me.address);
        if own
            && self
                .etcd
                .txn(&[(key.clone(), kv.mod_revision)], &[], &[key])
                .is_ok()
        {
            log::info!(
                "cluster: node {} took over its key left by an earlier run",
                self.me.name
            );
            return true;
        }
        false
    }

    /// A new lease and this node's key bound to it, if no other node holds the name.
    fn register(&self) -> Result<(), JoinError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(10);
        let lease = self.etcd.lease_grant(ttl).map_err(JoinError::Etcd)?;
        let key = node_key(&self.prefix, &self.me.name);
        match self
            .etcd
            .create_leased(&key, &encode(&self.record()), lease)
        {
            Ok(_) => {
                self.lease.store(lease, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                let _ = self.etcd.lease_revoke(lease);
                Err(match e {
                    EtcdError::Conflict => {
                        let holder = match self.etcd.get(&key) {
                            Ok((Some(kv), _)) => decode(&self.me.name, &kv.value).map_or_else(
                                || "unreadable record".to_string(),
                                |n| format!("zone {}, address {}", n.zone, n.address),
                            ),
                            _ => "unknown".to_string(),
                        };
                        JoinError::NameTaken {
                            name: self.me.name.clone(),
                            holder,
                        }
                    }
                    other => JoinError::Etcd(other),
                })
            }
        }
    }

    /// The lease thread: renew every TTL/3; lease lost → register again; etcd away →
    /// back off, logging the outage and the recovery once each.
    fn keep_alive(&self) {
        let period = self.ttl / 3;
        // Never wait longer than a renewal period: etcd coming back restores leases with
        // a fresh TTL, and a renewal must land within it.
        let mut outage = Outage::new(BACKOFF_MIN, BACKOFF_MAX.min(period));
        // A republish wakes the loop early only while etcd answers: during an outage the
        // backoff paces every request.
        while self.pause(
            if outage.is_on() {
                outage.backoff()
            } else {
                period
            },
            !outage.is_on(),
        ) {
            let lease = self.lease.load(Ordering::SeqCst);
            let outcome = match self.etcd.lease_keepalive(lease) {
                Ok(Some(_)) => self.republish().map_err(JoinError::Etcd),
                Ok(None) => {
                    log::warn!(
                        "cluster: node {}'s lease expired; registering again",
                        self.me.name
                    );
                    self.register()
                }
                Err(e) => Err(JoinError::Etcd(e)),
            };
            match outcome {
                Ok(()) => {
                    if let Some(lasted) = outage.ended() {
                        log::info!(
                            "cluster: node {} renewed its membership after {:.1}s",
                            self.me.name,
                            lasted.as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    if outage.failed() {
                        let e = match e {
                            JoinError::Etcd(e) => e.to_string(),
                            other => other.to_string(),
                        };
                        log::warn!("cluster: membership renewal failing, retrying: {e}");
                    }
                }
            }
        }
    }
}

/// The watch thread of the node list (`crate::cluster::follow`): the whole list, then
/// every change, each new list handed to `notify`; it ends when the membership stops.
fn follow_nodes(shared: &Arc<Shared>, mut notify: Notify) -> JoinHandle<()> {
    let prefix = nodes_prefix(&shared.prefix);
    let stopping = shared.clone();
    let mut nodes: BTreeMap<String, NodeInfo> = BTreeMap::new();
    let mut last: Option<Vec<NodeInfo>> = None;
    let deliver = {
        let (shared, prefix) = (shared.clone(), prefix.clone());
        move |remote: Remote| {
            match remote {
                Remote::Events(events) => {
                    for event in &events {
                        apply(&mut nodes, &prefix, event.kind, &event.kv);
                    }
                }
                Remote::Resync { kvs, .. } => {
                    nodes.clear();
                    for kv in &kvs {
                        apply(&mut nodes, &prefix, WatchKind::Put, kv);
                    }
                }
                // The last list stays in force.
                Remote::Unreachable(_) => {}
            }
            if shared.stopped() {
                return false;
            }
            publish(&nodes, &mut notify, &mut last);
            true
        }
    };
    let watch = super::follow::spawn(
        shared.etcd.clone(),
        prefix,
        None,
        "the node list",
        move || stopping.stopped(),
        deliver,
    );
    // As `spawn`: the OS refusing a thread at start is not an input error.
    watch.expect("spawn the node list's watch thread")
}

fn apply(nodes: &mut BTreeMap<String, NodeInfo>, prefix: &[u8], kind: WatchKind, kv: &Kv) {
    let Some(name) = kv
        .key
        .strip_prefix(prefix)
        .and_then(|n| std::str::from_utf8(n).ok())
    else {
        return;
    };
    match kind {
        WatchKind::Delete => {
            nodes.remove(name);
        }
        WatchKind::Put => match decode(name, &kv.value) {
            Some(info) => {
                nodes.insert(name.to_string(), info);
            }
            None => log::warn!("cluster: ignoring node key {name:?}: not a node record"),
        },
    }
}

/// Hands the list over when it differs from the last one handed.
fn publish(
    nodes: &BTreeMap<String, NodeInfo>,
    notify: &mut Notify,
    last: &mut Option<Vec<NodeInfo>>,
) {
    let list: Vec<NodeInfo> = nodes.values().cloned().collect();
    if last.as_ref() != Some(&list) {
        *last = Some(list.clone());
        notify(list);
    }
}

/// Registers with `--node*` flags over `--cluster` endpoints: the call runtime makes
/// before the node serves. The etcd round trip is bounded by a quarter of the TTL so
/// that a slow endpoint cannot eat a renewal period. `me` is `node.info()` with what the
/// node serves besides (`dns`, `addresses`).
pub fn register(
    endpoints: &[String],
    prefix: &str,
    node: &crate::config::node::NodeFlags,
    me: NodeInfo,
) -> Result<Registered, String> {
    let timeout = (node.ttl / 4).min(Duration::from_secs(2));
    let etcd = Etcd::new(endpoints, timeout).map_err(|e| e.to_string())?;
    Membership::register(etcd, prefix, me, node.ttl).map_err(|e| e.to_string())
}

impl Registered {
    /// `start` with the list delivered to the control thread (`Event::Nodes`, which
    /// updates the status page and the DNS answers). runtime keeps the `Membership` to
    /// `leave()` on SIGTERM.
    pub fn follow_fleet(self, control: &crate::control::server::ControlHandle) -> Membership {
        let control = control.clone();
        self.start(Box::new(move |nodes| {
            control.send(crate::control::server::Event::Nodes(nodes));
        }))
    }
}

impl Membership {
    /// The lease this node's keys are bound to now (0 before the first grant); another
    /// one after the node registered again. Its health records (`crate::cluster::health`)
    /// are bound to it too, so they go with the node.
    pub fn lease(&self) -> i64 {
        self.shared.lease.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
