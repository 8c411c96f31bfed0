//! The control plane: the ELB 2012-06-01 Query API, the authoritative model of every
//! load balancer, the state file, and publishing each change to the workers.
//!
//! One thread owns all of it with its own mio loop; workers only ever see immutable
//! `Topology` snapshots and the shared health board.

pub mod actions;
pub mod committer;
pub mod conns;
pub mod error;
pub mod metrics;
pub mod model;
pub mod plane;
pub mod policies;
pub mod query;
pub mod responses;
pub mod server;
pub mod sigv4;
pub mod state;
pub mod status_health;
pub mod status_nodes;
pub mod status_page;
pub mod status_store;
pub mod store;
pub mod xml;
