//! Layer 4: what TCP (and later SSL) listeners need beyond the worker's sockets.

pub mod proxy_protocol;
