//! A node joining the cluster at start: the model read from etcd, the flags' load
//! balancer published if no node did it first, the shared sticky-session key, and the
//! watch thread that follows every later change.

use super::etcd::Etcd;
use super::follow::{self, Remote};
use super::store::{shared_sticky_key, EtcdStore};
use crate::config::cluster::ClusterStore;
use crate::control::model::LbState;
use crate::control::store::{Store, StoreError};
use std::time::Duration;

/// How long one etcd round trip may take (per endpoint). An API write waits for it in
/// the control thread, so it is short; the data plane never waits for etcd.
pub const ROUND_TRIP: Duration = Duration::from_secs(2);

pub fn client(cluster: &ClusterStore) -> Result<Etcd, String> {
    Etcd::new(&cluster.endpoints, ROUND_TRIP).map_err(|e| e.to_string())
}

/// The store and every load balancer it holds now. etcd must answer at start: a node
/// that cannot read the model has nothing it may serve.
pub fn open(cluster: &ClusterStore) -> Result<(EtcdStore, Vec<LbState>), String> {
    let mut store = EtcdStore::new(client(cluster)?, &cluster.prefix, &cluster.endpoints);
    let lbs = store
        .load()
        .map_err(|e| format!("{}: {e}", store.describe()))?;
    log::info!(
        "cluster: {} load balancers from {} at revision {}",
        lbs.len(),
        store.describe(),
        store.loaded_at()
    );
    Ok((store, lbs))
}

/// Writes the flags' load balancer, absent from etcd, for every node. Another node
/// doing the same at the same moment wins the guard; its definition arrives by the watch.
pub fn publish_flags_lb(store: &mut dyn Store, lbs: &[LbState]) -> Result<(), String> {
    match store.commit(lbs) {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(format!("{}: {e}", store.describe())),
    }
}

/// This node's load balancer addresses from before it restarted (`--address-pool`).
pub fn saved_addresses(
    cluster: &ClusterStore,
    node: &str,
) -> Result<std::collections::HashMap<String, std::net::IpAddr>, String> {
    super::node_addresses::load(&client(cluster)?, &cluster.prefix, node).map_err(|e| e.to_string())
}

pub fn sticky_key(cluster: &ClusterStore, fresh: [u8; 32]) -> Result<[u8; 32], String> {
    shared_sticky_key(&client(cluster)?, &cluster.prefix, fresh)
}

/// Starts the watch thread on `prefix` from revision `from`.
pub fn follow(
    cluster: &ClusterStore,
    prefix: Vec<u8>,
    from: i64,
    deliver: impl FnMut(Remote) -> bool + Send + 'static,
) -> Result<(), String> {
    follow::spawn(
        client(cluster)?,
        prefix,
        Some(from),
        "the load balancers",
        || false,
        deliver,
    )
    .map(drop)
    .map_err(|e| format!("cannot start the watch thread: {e}"))
}
