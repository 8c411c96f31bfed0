//! Several clb nodes sharing one model: the etcd client (`etcd`) and what it stands on.
//!
//! Nothing here runs in a worker loop: the client blocks, so it is called from the
//! control thread (one bounded round trip) or from the cluster's helper threads.

mod b64;
pub mod etcd;
pub mod follow;
mod gateway;
mod http;
pub mod start;
pub mod store;
