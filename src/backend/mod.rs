//! The instance side of a worker: idle keep-alive pools and instance selection.
//!
//! Selection does not know how health is decided; it only skips what it is told to skip
//! (instances out of scope, already tried for this request, or refusing connections a
//! moment ago) and picks among the rest.

pub mod balancer;
pub mod health;
pub mod pool;
