//! End-to-end harness: the real `clb` binary between a raw HTTP client and
//! thread-based test instances, all on loopback.
//!
//! - [`Clb`] runs the binary on a free port of 127.0.0.1 and kills it on drop; its
//!   stderr goes to a log file that is printed when the test panics. [`Clb::http`]
//!   health-checks `HTTP:80/clb-health` unless told otherwise and returns once every
//!   instance expected healthy has been logged InService.
//! - [`Backend`] is one registered instance on 127.0.0.x, with a [`Behavior`] (echo the
//!   request head, a fixed body, count an upload, stay silent, send garbage, ...)
//!   and counters of connections, requests and EOFs it saw. It answers clb's health
//!   probes on its health path itself, as its [`Health`] says, whatever its
//!   `Behavior`, and counts them apart: a probe is never a request, and a connection
//!   only counts once it has carried a request that is not a probe.
//! - [`Client`] writes raw bytes and reads one response at a time, so tests see the
//!   exact status line, headers and body framing; over TCP, or over TLS as a
//!   [`tls::TlsClient`].
//! - [`tls`]: test certificates and their files, rustls clients, clb with an HTTPS or
//!   SSL listener.
//!
//! Files: `process` (the binary), `instance` and `instance/serve` (test instances),
//! `client` (raw client, request builders), `reading` (socket reads with deadlines),
//! `tcp` (TCP listeners and a recording instance), `tls`, and one file a topic for the
//! rest (etcd, DNS, relay, recorder, slow clients, address pools, load). This file
//! keeps what all of them share: ports, waits, constants.
//!
//! Every wait is a poll with a deadline and every socket read has a timeout: a broken
//! proxy fails the test, it never hangs it. Every test picks its own ports, so tests
//! run in parallel.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod address_pool;
mod client;
pub mod cluster;
pub mod dns;
pub mod etcd;
mod instance;
pub mod load;
mod process;
mod reading;
pub mod recorder;
pub mod relay;
pub mod slow;
pub mod sources;
mod tcp;
pub mod tls;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any single socket read may block before the test gives up on it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long clb may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Clb::http`] waits for the instances expected healthy to be InService.
pub const IN_SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// The path a [`Backend`] answers health probes on unless told otherwise, and the
/// health check [`Clb::http`] gives clb unless the test gives its own.
pub const DEFAULT_HEALTH_PATH: &str = "/clb-health";
pub const DEFAULT_HEALTH_CHECK: &str = "HTTP:80/clb-health";
/// The environment variable that sets, in milliseconds, how long one "second" of
/// `--health-interval` and `--health-timeout` lasts (test-only; default 1000).
pub const HEALTH_TIME_UNIT_VAR: &str = "CLB_HEALTH_TIME_UNIT_MS";

/// Instance states and descriptions as clb logs them (spec §3).
pub const IN_SERVICE: &str = "InService";
pub const OUT_OF_SERVICE: &str = "OutOfService";
pub const DESC_NA: &str = "N/A";
pub const DESC_UNHEALTHY: &str =
    "Instance has failed at least the UnhealthyThreshold number of health checks consecutively.";
/// Instance-side poll granularity: how quickly a connection thread notices `kill`.
const BACKEND_TICK: Duration = Duration::from_millis(50);

/// The instance addresses tests use, one per instance, as the brief fixes them.
pub const IP1: &str = "127.0.0.2";
pub const IP2: &str = "127.0.0.3";
pub const IP3: &str = "127.0.0.4";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP literal")
}

/// Ports this test process has handed out (for clb, or as a "refused" instance) or
/// bound (test instances). A port picked by [`free_port`] is free until clb binds it;
/// never handing one out twice keeps parallel tests from racing for it (clb's
/// `SO_REUSEPORT` would even let two of them share it).
static PORTS_TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Records `port` as taken; false if it was already.
fn take_port(port: u16) -> bool {
    let mut taken = PORTS_TAKEN.lock().expect("port set lock");
    taken.get_or_insert_with(HashSet::new).insert(port)
}

/// A port on `ip` that nothing listens on right now (bind to 0, read it, drop), and
/// that no other test of this process got.
pub fn free_port(ip_str: &str) -> u16 {
    loop {
        let listener = TcpListener::bind((ip(ip_str), 0)).expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if take_port(port) {
            return port;
        }
    }
}

/// A listener on `ip` at a port no other test of this process got.
pub fn bind_unique(ip_str: &str) -> TcpListener {
    loop {
        let listener = TcpListener::bind((ip(ip_str), 0)).expect("bind test instance");
        if take_port(listener.local_addr().expect("local addr").port()) {
            return listener;
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

pub use client::*;
pub use instance::*;
pub use process::*;
pub use reading::*;
pub use tcp::*;

/// A read that gave up at its timeout (the two ways the platform reports it).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
