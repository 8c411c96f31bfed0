//! Several clb nodes sharing one model: the etcd client (`etcd`), what it stands on, and
//! membership (`members`: who is in the fleet).
//!
//! Nothing here runs in a worker loop: the client blocks, so it is called from the
//! cluster's helper threads, the committer thread (API writes, control/committer.rs),
//! and at start; the control thread calls it only to reload after a write conflicted.

mod b64;
pub mod etcd;
pub mod follow;
mod gateway;
pub mod health;
pub mod health_publish;
mod http;
pub mod members;
pub mod node_addresses;
pub mod node_record;
mod outage;
pub mod start;
pub mod store;
