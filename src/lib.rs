//! clb: a self-hosted Classic Load Balancer.
//!
//! The library holds everything; `main.rs` only turns flags into a `Config` and starts
//! the runtime, so integration tests and fuzz targets call the same code the binary runs.
//! Folders follow the picture in DESIGN.md: `worker` (event loops), `http` (parsing,
//! framing, rewriting, canned answers), `backend` (pools and balancing), `config` (typed
//! topology) and `cli` (flags).
#![deny(unsafe_code)]

pub mod access_log;
pub mod backend;
pub mod buffer;
pub mod calendar;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dns;
pub mod fuzzing;
pub mod http;
pub mod runtime;
pub mod stats;
pub mod sys;
pub mod tcp;
pub mod tls;
pub mod worker;
