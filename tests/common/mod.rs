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
//! Every wait is a poll with a deadline and every socket read has a timeout: a broken
//! proxy fails the test, it never hangs it. Every test picks its own ports, so tests
//! run in parallel.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod address_pool;
pub mod cluster;
pub mod dns;
pub mod etcd;
pub mod load;
pub mod recorder;
pub mod relay;
pub mod slow;
pub mod sources;
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

// ---------------------------------------------------------------------------------
// clb
// ---------------------------------------------------------------------------------

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `clb`; dropping it kills the process.
pub struct Clb {
    child: Child,
    /// The HTTP listener clients connect to.
    pub addr: SocketAddr,
    /// The control API, when `--api` named an address (not `off`).
    pub api: Option<SocketAddr>,
    log: PathBuf,
    /// What clb was started with, so [`Clb::restart`] can start it again.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The logs of the runs before the last [`Clb::restart`], printed on a panic too.
    earlier_logs: String,
}

impl Clb {
    /// Starts `clb` with exactly `args` and waits until the listener named by
    /// `--listener` (on `--bind`, default 127.0.0.1) accepts connections.
    pub fn start(args: &[&str]) -> Clb {
        Clb::start_env(args, &[])
    }

    /// [`Clb::start`] with extra environment variables (e.g. [`HEALTH_TIME_UNIT_VAR`]).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Clb {
        match Clb::try_start_env(args, env) {
            Ok(clb) => clb,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Clb::start`], but a process that exits before it listens is an `Err`
    /// carrying its log, so callers can retry (a free port taken in between).
    pub fn try_start(args: &[&str]) -> Result<Clb, String> {
        Clb::try_start_env(args, &[])
    }

    /// [`Clb::try_start`] with extra environment variables. The health time unit is
    /// never inherited from the test's own environment, only set from `env`.
    pub fn try_start_env(args: &[&str], env: &[(&str, &str)]) -> Result<Clb, String> {
        let port = flag_value(args, &["--listener", "-l"])
            .and_then(|spec| spec.split(':').nth(1))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or("Clb::start needs --listener PROTO:PORT...")?;
        let bind: IpAddr = match flag_value(args, &["--bind"]) {
            // The flags' load balancer takes the pool's first address at a fresh start.
            _ if flag_value(args, &["--address-pool"]).is_some() => {
                address_pool::first_address(flag_value(args, &["--address-pool"]))?
            }
            Some("0.0.0.0") | None => ip("127.0.0.1"),
            Some(other) => other.parse().map_err(|e| format!("--bind {other}: {e}"))?,
        };
        let addr = SocketAddr::new(bind, port);
        let api = flag_value(args, &["--api"]).and_then(|a| a.parse::<SocketAddr>().ok());
        let log = std::env::temp_dir().join(format!(
            "clb-test-{}-{}-{port}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).map_err(|e| format!("create {log:?}: {e}"))?;
        let stdout = stderr.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(clb_binary());
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove(HEALTH_TIME_UNIT_VAR);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn clb: {e}"))?;
        let mut clb = Clb {
            child,
            addr,
            api,
            log,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            earlier_logs: String::new(),
        };
        let listening = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = clb.child.try_wait() {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} exited ({status}) before listening on {addr}; log:\n{log}"
                ));
            }
            if listening(&addr).is_ok() && api.as_ref().is_none_or(|a| listening(a).is_ok()) {
                return Ok(clb);
            }
            if Instant::now() >= deadline {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} did not listen on {addr} (and --api {api:?}) within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// An HTTP listener on a free port of 127.0.0.1 in front of `instances`, with
    /// the control API off and `--health-check HTTP:80/clb-health` (what every
    /// [`Backend`] answers by default); `extra` is appended (`--workers`,
    /// `--idle-timeout`, its own `--health-check`, ...). Returns once every instance
    /// expected healthy ([`Instance::expect_healthy`]) has been logged InService, so
    /// no test races the first probe. Retries with another port if the one picked
    /// was taken before clb bound it.
    pub fn http(instances: &[Instance], extra: &[&str]) -> Clb {
        Clb::http_env(instances, extra, &[])
    }

    /// [`Clb::http`] with extra environment variables for clb.
    pub fn http_env(instances: &[Instance], extra: &[&str], env: &[(&str, &str)]) -> Clb {
        Clb::http_with(instances, extra, env, false)
    }

    /// [`Clb::http_env`] with the control API on a free port of 127.0.0.1
    /// ([`Clb::api`]) instead of `--api off`; returns once the API accepts connections
    /// too.
    pub fn http_api(instances: &[Instance], extra: &[&str], env: &[(&str, &str)]) -> Clb {
        Clb::http_with(instances, extra, env, true)
    }

    fn http_with(instances: &[Instance], extra: &[&str], env: &[(&str, &str)], api: bool) -> Clb {
        Clb::start_listener(
            &|port| format!("http:{port}:http:80"),
            "127.0.0.1",
            instances,
            extra,
            env,
            DEFAULT_HEALTH_CHECK,
            api,
        )
    }

    /// What [`Clb::http_with`] and [`Clb::listening`] share: the listener `listener(port)`
    /// on a free port of `bind`, the control API on a free port of `bind` when `api`
    /// (else `--api off`), each of `instances`, `default_check` unless `extra` has a
    /// `--health-check`, then `extra`. Returns once every instance expected healthy is
    /// logged InService; retries with other ports if one picked was taken before clb
    /// bound it.
    fn start_listener(
        listener: &dyn Fn(u16) -> String,
        bind: &str,
        instances: &[Instance],
        extra: &[&str],
        env: &[(&str, &str)],
        default_check: &str,
        api: bool,
    ) -> Clb {
        let mut last = String::new();
        for _ in 0..3 {
            let spec = listener(free_port(bind));
            let api_addr = if api {
                SocketAddr::new(ip(bind), free_port(bind)).to_string()
            } else {
                "off".to_string()
            };
            let specs: Vec<String> = instances.iter().map(Instance::spec).collect();
            let mut args = vec!["--listener", &spec, "--bind", bind, "--api", &api_addr];
            for s in &specs {
                args.push("--instance");
                args.push(s);
            }
            if !extra.contains(&"--health-check") {
                args.extend_from_slice(&["--health-check", default_check]);
            }
            args.extend_from_slice(extra);
            match Clb::try_start_env(&args, env) {
                Ok(mut clb) => {
                    let expected: Vec<&Instance> =
                        instances.iter().filter(|i| i.expect_healthy).collect();
                    if let Err(e) = clb.wait_in_service(&expected, IN_SERVICE_TIMEOUT) {
                        panic!("clb {args:?}: {e}");
                    }
                    return clb;
                }
                Err(e) => last = e,
            }
        }
        panic!("clb did not start in 3 tries: {last}");
    }

    /// Waits until every one of `instances` has been logged `-> InService` at least
    /// once; `Err` names the ones that were not (with the log) if clb exits or
    /// `within` passes first.
    pub fn wait_in_service(
        &mut self,
        instances: &[&Instance],
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log_text();
            let missing: Vec<String> = instances
                .iter()
                .filter(|i| !log.lines().any(|l| i.is_transition(l, IN_SERVICE)))
                .map(|i| i.spec())
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "clb exited ({status}) before {missing:?} were InService; log:\n{log}"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{missing:?} not logged InService within {within:?}; log:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lines of clb's log that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `count` lines of clb's log contain `needle`.
    pub fn wait_for_log(&self, needle: &str, count: usize, within: Duration) -> bool {
        wait_until(within, || self.log_lines_with(needle).len() >= count)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGHUP to clb (it reloads its certificate files). Through kill(1) rather
    /// than libc, so the tests need no `unsafe`.
    pub fn hup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// The control API's address; panics if clb was started with `--api off`.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.expect("clb was started without an --api address")
    }

    /// Kills clb with SIGKILL (no chance to clean up) and waits for it to be gone.
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills clb with SIGKILL and starts it again with the same flags and environment;
    /// returns once it listens again (the previous log is kept for a panic report).
    pub fn restart(&mut self) {
        self.kill_now();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut next = Clb::start_env(&args, &env);
        next.earlier_logs = format!(
            "{}----- clb log before restart ({:?}) -----\n{}\n",
            self.earlier_logs,
            self.log,
            self.log_text()
        );
        std::mem::swap(self, &mut next);
        // `next` now holds the dead process: its drop removes its log file.
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Everything clb wrote to stderr and stdout so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident set size (`VmHWM`) of the clb process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of clb");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM line in /proc/PID/status")
    }

    /// Whether clb is still running (it must survive whatever a test sent it).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to clb.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for clb to exit by itself; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Clb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "{}----- clb log ({:?}) -----\n{}\n----- end of clb log -----",
                self.earlier_logs,
                self.log,
                self.log_text()
            );
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// The binary under test: cargo's `clb`, or `$CLB_BIN` (e.g. a release build).
pub fn clb_binary() -> PathBuf {
    std::env::var_os("CLB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_clb")))
}

/// How a clb run that was expected to end by itself ended.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs clb with `args` (and no `RUST_LOG`); it must exit by itself within 10 s.
pub fn run_clb(args: &[&str]) -> Run {
    let mut child = Command::new(clb_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove(HEALTH_TIME_UNIT_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clb");
    // Drain both pipes while waiting, so a chatty clb cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let out_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for clb") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("clb {args:?} was still running after 10 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// clb exits 2 and prints exactly one line on stderr, `clb: ...`, naming every
/// string in `mentions`; returns that line.
pub fn assert_refused(args: &[&str], mentions: &[&str]) -> String {
    let r = run_clb(args);
    assert_eq!(
        r.status.code(),
        Some(2),
        "clb {args:?}: {} stderr {:?}",
        r.status,
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "clb {args:?} stderr: {:?}", r.stderr);
    assert!(lines[0].starts_with("clb: "), "stderr: {:?}", lines[0]);
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{:?} does not mention {m:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

fn flag_value<'a>(args: &[&'a str], names: &[&str]) -> Option<&'a str> {
    args.windows(2)
        .find(|w| names.contains(&w[0]))
        .map(|w| w[1])
}

/// One `--instance ID=HOST:PORT@ZONE` flag.
pub struct Instance {
    pub id: String,
    pub addr: SocketAddr,
    pub zone: String,
    /// Whether [`Clb::http`] waits for this instance to be logged InService: true
    /// from [`Backend::instance`], false from [`Instance::new`] (refused or dead
    /// addresses).
    pub expect_healthy: bool,
}

impl Instance {
    /// An instance at an address no [`Backend`] serves: not expected healthy.
    pub fn new(id: &str, addr: SocketAddr, zone: &str) -> Instance {
        Instance {
            id: id.to_string(),
            addr,
            zone: zone.to_string(),
            expect_healthy: false,
        }
    }

    /// The same instance, with [`Instance::expect_healthy`] set to `healthy`.
    pub fn expecting_healthy(mut self, healthy: bool) -> Instance {
        self.expect_healthy = healthy;
        self
    }

    pub fn spec(&self) -> String {
        format!("{}={}@{}", self.id, self.addr, self.zone)
    }

    /// What clb's log says about this instance's transitions start with:
    /// `instance ID (IP:PORT) of `.
    pub fn log_prefix(&self) -> String {
        format!("instance {} ({}) of ", self.id, self.addr)
    }

    /// The exact text clb logs for a transition of this instance in load balancer
    /// `lb`: `instance ID (IP:PORT) of LB: OLD -> NEW: DESCRIPTION`.
    pub fn transition(&self, lb: &str, old: &str, new: &str, description: &str) -> String {
        format!("{}{lb}: {old} -> {new}: {description}", self.log_prefix())
    }

    /// Whether `line` logs a transition of this instance to `new` (any balancer).
    fn is_transition(&self, line: &str, new: &str) -> bool {
        line.split_once(&self.log_prefix())
            .is_some_and(|(_, rest)| rest.contains(&format!(" -> {new}: ")))
    }
}

// ---------------------------------------------------------------------------------
// Test instances
// ---------------------------------------------------------------------------------

/// What a [`Backend`] does with each request (after reading its whole body).
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 with the request head, byte for byte, as the body and `X-Instance: NAME`.
    Echo,
    /// 200 with `len` bytes of [`pattern`]: Content-Length, or chunked in chunks of
    /// `chunk` bytes.
    Fixed { len: usize, chunk: Option<usize> },
    /// 200 with the body [`upload_summary`] of what the request body was.
    CountBody,
    /// Waits `delay`, then echoes.
    Delay(Duration),
    /// Reads requests and never answers.
    Silent,
    /// Writes bytes that are not an HTTP response and keeps the connection open.
    Garbage,
    /// Headers with `Content-Length: 1000`, 10 body bytes, then closes; with `die`
    /// the whole instance goes away too (listener and every connection closed).
    PartialBody { die: bool },
    /// Closes the connection right after reading the request.
    CloseAfterRequest,
    /// Echoes, then closes the connection without saying so (no `Connection: close`),
    /// as an instance whose keep-alive timeout is shorter than clb's does.
    EchoThenClose,
    /// Writes these bytes as the response, verbatim, and keeps the connection open.
    Raw(Vec<u8>),
}

/// How a [`Backend`] answers a health probe: a request for its health path, which it
/// answers before and regardless of its [`Behavior`]. (A refused probe needs an
/// address nothing listens on: [`free_port`] and [`Instance::new`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// `200 OK` with `Content-Length: 0`.
    Ok,
    /// This status with `Content-Length: 0` (no framing for 1xx, 204 and 304).
    Status(u16),
    /// Reads the probe and never answers; holds the connection until clb closes it.
    Hang,
}

/// One health probe as a [`Backend`] received it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// When its head had arrived.
    pub at: Instant,
    /// The request head, byte for byte, through the empty line.
    pub head: Vec<u8>,
    /// The status it was answered with (decided on arrival); `None` for [`Health::Hang`].
    pub answer: Option<u16>,
}

/// The deterministic body byte at `offset`: a period (251) that no power of two
/// divides, so a lost, duplicated or shifted block shows up.
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

/// `len` pattern bytes starting at pattern offset `offset`.
pub fn pattern_at(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(pattern_byte).collect()
}

/// A fast, stable hash of bytes fed in pieces, for comparing large bodies.
#[derive(Default)]
pub struct BodyHash(DefaultHasher, usize);

impl BodyHash {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1 += bytes.len();
    }
    pub fn len(&self) -> usize {
        self.1
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0.finish())
    }
}

/// What [`Behavior::CountBody`] answers: the payload (de-chunked) length and hash,
/// and the length and hash of the body bytes exactly as they arrived (chunk framing
/// included).
pub fn upload_summary(payload: &BodyHash, wire: &BodyHash) -> String {
    format!(
        "payload={} payload_hash={} wire={} wire_hash={}",
        payload.len(),
        payload.hex(),
        wire.len(),
        wire.hex()
    )
}

pub fn hash_of(pieces: &[&[u8]]) -> BodyHash {
    let mut h = BodyHash::default();
    for p in pieces {
        h.update(p);
    }
    h
}

struct BackendState {
    name: String,
    behavior: Mutex<Behavior>,
    health: Mutex<Health>,
    health_path: Mutex<String>,
    /// Every connection accepted, whatever it carried (a TCP probe carries nothing).
    accepted: AtomicUsize,
    /// Connections that carried a request that is not a probe.
    connections: AtomicUsize,
    /// Connections that carried a probe.
    probe_connections: AtomicUsize,
    open: AtomicUsize,
    requests: AtomicUsize,
    eofs: AtomicUsize,
    max_per_connection: AtomicUsize,
    heads: Mutex<Vec<Vec<u8>>>,
    probes: Mutex<Vec<Probe>>,
    dead: AtomicBool,
}

/// A test instance: a thread-based HTTP/1.1 server on `IP:free port`.
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(ip_str: &str, name: &str, behavior: Behavior) -> Backend {
        let listener = bind_unique(ip_str);
        let addr = listener.local_addr().expect("instance addr");
        let state = Arc::new(BackendState {
            name: name.to_string(),
            behavior: Mutex::new(behavior),
            health: Mutex::new(Health::Ok),
            health_path: Mutex::new(DEFAULT_HEALTH_PATH.to_string()),
            accepted: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            probe_connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            eofs: AtomicUsize::new(0),
            max_per_connection: AtomicUsize::new(0),
            heads: Mutex::new(Vec::new()),
            probes: Mutex::new(Vec::new()),
            dead: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        let acceptor = thread::spawn(move || accept_loop(listener, st));
        Backend {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn echo(ip_str: &str, name: &str) -> Backend {
        Backend::start(ip_str, name, Behavior::Echo)
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The `--instance` flag for this backend, expected healthy.
    pub fn instance(&self, zone: &str) -> Instance {
        Instance::new(&self.state.name, self.addr, zone).expecting_healthy(true)
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *self.state.behavior.lock().expect("behavior lock") = behavior;
    }

    /// How health probes are answered from now on.
    pub fn set_health(&self, health: Health) {
        *self.state.health.lock().expect("health lock") = health;
    }

    /// The request target treated as a health probe (default [`DEFAULT_HEALTH_PATH`]).
    pub fn set_health_path(&self, path: &str) {
        *self.state.health_path.lock().expect("health path lock") = path.to_string();
    }

    /// Connections that carried at least one request that is not a probe.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every connection accepted so far, probes and empty ones (TCP probes) included.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now, probe connections included.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Request heads received so far, probes not included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Health probes received so far.
    pub fn probes(&self) -> usize {
        self.state.probes.lock().expect("probes lock").len()
    }

    /// Connections that carried a health probe.
    pub fn probe_connections(&self) -> usize {
        self.state.probe_connections.load(Ordering::SeqCst)
    }

    /// Every health probe received, in arrival order.
    pub fn probe_log(&self) -> Vec<Probe> {
        self.state.probes.lock().expect("probes lock").clone()
    }

    /// Every health probe's head, in arrival order, byte for byte.
    pub fn probe_heads(&self) -> Vec<Vec<u8>> {
        self.probe_log().into_iter().map(|p| p.head).collect()
    }

    /// Connections the peer (clb) closed: reads that returned EOF, on connections
    /// that carried a request that is not a probe.
    pub fn eofs(&self) -> usize {
        self.state.eofs.load(Ordering::SeqCst)
    }

    /// The most requests any one connection carried (1: no connection was reused).
    pub fn max_requests_per_connection(&self) -> usize {
        self.state.max_per_connection.load(Ordering::SeqCst)
    }

    /// Every request head received (probes not included), in arrival order, byte for byte.
    pub fn heads(&self) -> Vec<Vec<u8>> {
        self.state.heads.lock().expect("heads lock").clone()
    }

    /// The instance dies: its listener closes (connects are refused from now on)
    /// and every open connection is closed.
    pub fn kill(&mut self) {
        kill_state(&self.state, self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        wait_until(Duration::from_secs(5), || self.open_connections() == 0);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_state(state: &BackendState, addr: SocketAddr) {
    if !state.dead.swap(true, Ordering::SeqCst) {
        // Wake the accept loop so it sees `dead` and drops the listener.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    }
}

fn accept_loop(listener: TcpListener, state: Arc<BackendState>) {
    let addr = listener.local_addr().ok();
    for stream in listener.incoming() {
        if state.dead.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let st = Arc::clone(&state);
        thread::spawn(move || {
            let killed = serve_conn(stream, &st) == Served::Die;
            st.open.fetch_sub(1, Ordering::SeqCst);
            if let (true, Some(addr)) = (killed, addr) {
                kill_state(&st, addr);
            }
        });
    }
}

#[derive(PartialEq)]
enum Served {
    Done,
    Die,
}

/// A buffered connection whose reads give up when the instance is killed.
struct Wire<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    state: &'a BackendState,
    /// The connection has carried a request that is not a probe: it counts in
    /// `connections`, and its EOF in `eofs`.
    counted: bool,
}

enum Fill {
    Data,
    Eof,
    Stop,
}

impl Wire<'_> {
    /// Reads more bytes into `buf`, waking every tick to check for `kill`.
    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 65536];
        loop {
            if self.state.dead.load(Ordering::SeqCst) {
                return Fill::Stop;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if self.counted {
                        self.state.eofs.fetch_add(1, Ordering::SeqCst);
                    }
                    return Fill::Eof;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Fill::Data;
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Fill::Stop,
            }
        }
    }

    /// Takes `n` bytes from the front of `buf`, reading as needed.
    fn take(&mut self, n: usize, sink: &mut dyn FnMut(&[u8])) -> bool {
        let mut left = n;
        while left > 0 {
            if self.buf.is_empty() && !matches!(self.fill(), Fill::Data) {
                return false;
            }
            let k = left.min(self.buf.len());
            sink(&self.buf[..k]);
            self.buf.drain(..k);
            left -= k;
        }
        true
    }

    /// Takes one line (through `\n`), reading as needed.
    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=i).collect());
            }
            if !matches!(self.fill(), Fill::Data) {
                return None;
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The parts of a request head an instance needs.
struct ReqInfo {
    method: String,
    close: bool,
    framing: Framing,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn parse_req(head: &[u8]) -> Option<ReqInfo> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let version = request_line.rsplit(' ').next()?;
    let mut close = version == "HTTP/1.0";
    let mut framing = Framing::None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    Some(ReqInfo {
        method,
        close,
        framing,
    })
}

/// Reads the request body, feeding the payload to `payload` and the bytes as they
/// came (chunk framing included) to `wire`.
fn read_body(w: &mut Wire, framing: &Framing, payload: &mut BodyHash, wire: &mut BodyHash) -> bool {
    match framing {
        Framing::None => true,
        Framing::Length(n) => w.take(*n, &mut |b| {
            payload.update(b);
            wire.update(b);
        }),
        Framing::Chunked => loop {
            let Some(size_line) = w.line() else {
                return false;
            };
            wire.update(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(hex, 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let Some(line) = w.line() else {
                        return false;
                    };
                    wire.update(&line);
                    if line == b"\r\n" {
                        return true;
                    }
                }
            }
            if !w.take(size, &mut |b| {
                payload.update(b);
                wire.update(b);
            }) {
                return false;
            }
            let Some(crlf) = w.line() else {
                return false;
            };
            wire.update(&crlf);
        },
    }
}

fn serve_conn(stream: TcpStream, state: &BackendState) -> Served {
    if stream.set_read_timeout(Some(BACKEND_TICK)).is_err()
        || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
    {
        return Served::Done;
    }
    let mut w = Wire {
        stream,
        buf: Vec::new(),
        state,
        counted: false,
    };
    let mut served = 0;
    let mut probed = false;
    loop {
        // The request head, through the empty line.
        let head = loop {
            if let Some(end) = find(&w.buf, b"\r\n\r\n") {
                break w.buf.drain(..end + 4).collect::<Vec<u8>>();
            }
            if !matches!(w.fill(), Fill::Data) {
                return Served::Done;
            }
        };
        if is_probe(&head, state) {
            if !probed {
                probed = true;
                state.probe_connections.fetch_add(1, Ordering::SeqCst);
            }
            if answer_probe(&mut w, head) {
                continue;
            }
            return Served::Done;
        }
        if !w.counted {
            w.counted = true;
            state.connections.fetch_add(1, Ordering::SeqCst);
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        served += 1;
        state.max_per_connection.fetch_max(served, Ordering::SeqCst);
        state.heads.lock().expect("heads lock").push(head.clone());
        let Some(req) = parse_req(&head) else {
            return Served::Done;
        };
        let (mut payload, mut wire) = (BodyHash::default(), BodyHash::default());
        if !read_body(&mut w, &req.framing, &mut payload, &mut wire) {
            return Served::Done;
        }
        let behavior = state.behavior.lock().expect("behavior lock").clone();
        let is_head = req.method == "HEAD";
        let name = &state.name;
        let conn_hdr = if req.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let ok = match behavior {
            Behavior::Echo => w.respond(name, conn_hdr, &head, is_head),
            Behavior::Delay(d) => {
                thread::sleep(d);
                w.respond(name, conn_hdr, &head, is_head)
            }
            Behavior::CountBody => {
                let body = upload_summary(&payload, &wire);
                w.respond(name, conn_hdr, body.as_bytes(), is_head)
            }
            Behavior::Fixed { len, chunk } => w.fixed(name, conn_hdr, len, chunk, is_head),
            Behavior::Silent => {
                // Hold the connection without answering until clb or the test ends it.
                while matches!(w.fill(), Fill::Data) {}
                return Served::Done;
            }
            Behavior::Garbage => {
                let _ = w.stream.write_all(b"THIS IS NOT HTTP\r\n\r\n");
                while matches!(w.fill(), Fill::Data) {}
                return Served::Done;
            }
            Behavior::PartialBody { die } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Instance: {name}\r\nContent-Length: 1000\r\n\r\n"
                );
                let _ = w.stream.write_all(head.as_bytes());
                let _ = w.stream.write_all(&pattern(10));
                let _ = w.stream.shutdown(Shutdown::Both);
                return if die { Served::Die } else { Served::Done };
            }
            Behavior::CloseAfterRequest => return Served::Done,
            Behavior::EchoThenClose => {
                w.respond(name, conn_hdr, &head, is_head);
                return Served::Done;
            }
            Behavior::Raw(bytes) => w.stream.write_all(&bytes).is_ok(),
        };
        if !ok || req.close {
            return Served::Done;
        }
    }
}

/// Whether `head` asks for the backend's health path (the request target, exactly).
fn is_probe(head: &[u8], state: &BackendState) -> bool {
    let text = String::from_utf8_lossy(head);
    let target = text.split("\r\n").next().and_then(|l| l.split(' ').nth(1));
    target == Some(state.health_path.lock().expect("health path lock").as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Answers one health probe as the backend's [`Health`] says, reading its body first
/// if it has one. True if the connection may carry another request.
fn answer_probe(w: &mut Wire, head: Vec<u8>) -> bool {
    let state = w.state;
    let health = *state.health.lock().expect("health lock");
    let answer = match health {
        Health::Ok => Some(200),
        Health::Status(code) => Some(code),
        Health::Hang => None,
    };
    let req = parse_req(&head);
    state.probes.lock().expect("probes lock").push(Probe {
        at: Instant::now(),
        head,
        answer,
    });
    let Some(req) = req else {
        return false;
    };
    let (mut payload, mut wire) = (BodyHash::default(), BodyHash::default());
    if !read_body(w, &req.framing, &mut payload, &mut wire) {
        return false;
    }
    let Some(code) = answer else {
        // Hold the probe unanswered until clb (or the test) ends it.
        while matches!(w.fill(), Fill::Data) {}
        return false;
    };
    let framing = if code / 100 == 1 || code == 204 || code == 304 {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    let conn_hdr = if req.close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {code} {}\r\nX-Instance: {}\r\n{framing}{conn_hdr}\r\n",
        reason(code),
        state.name
    );
    w.stream.write_all(response.as_bytes()).is_ok() && !req.close
}

impl Wire<'_> {
    fn respond(&mut self, name: &str, conn_hdr: &str, body: &[u8], is_head: bool) -> bool {
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Instance: {name}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn_hdr}\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        if !is_head {
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out).is_ok()
    }

    fn fixed(
        &mut self,
        name: &str,
        conn_hdr: &str,
        len: usize,
        chunk: Option<usize>,
        is_head: bool,
    ) -> bool {
        let framing = match chunk {
            Some(_) => "Transfer-Encoding: chunked".to_string(),
            None => format!("Content-Length: {len}"),
        };
        let head = format!("HTTP/1.1 200 OK\r\nX-Instance: {name}\r\n{framing}\r\n{conn_hdr}\r\n");
        if self.stream.write_all(head.as_bytes()).is_err() {
            return false;
        }
        if is_head {
            return true;
        }
        match chunk {
            None => write_pattern(&mut self.stream, 0, len),
            Some(size) => {
                let mut offset = 0;
                while offset < len {
                    let n = size.min(len - offset);
                    if self
                        .stream
                        .write_all(format!("{n:x}\r\n").as_bytes())
                        .is_err()
                        || !write_pattern(&mut self.stream, offset, n)
                        || self.stream.write_all(b"\r\n").is_err()
                    {
                        return false;
                    }
                    offset += n;
                }
                self.stream.write_all(b"0\r\n\r\n").is_ok()
            }
        }
    }
}

/// Writes `len` pattern bytes starting at body offset `offset`, without building
/// the whole body in memory.
pub fn write_pattern(out: &mut impl Write, offset: usize, len: usize) -> bool {
    const BLOCK: usize = 251 * 256;
    let block = pattern(BLOCK + 251);
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let start = pos % 251;
        let n = BLOCK.min(end - pos);
        if out.write_all(&block[start..start + n]).is_err() {
            return false;
        }
        pos += n;
    }
    true
}

/// The chunked body [`Behavior::Fixed`] sends, framing included.
pub fn chunked_wire(len: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < len {
        let n = chunk.min(len - offset);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend((offset..offset + n).map(pattern_byte));
        out.extend_from_slice(b"\r\n");
        offset += n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------------

/// One HTTP response exactly as it came off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status line without CRLF, e.g. `HTTP/1.1 504 GATEWAY_TIMEOUT`.
    pub status_line: String,
    pub status: u16,
    /// Header lines in order, name and value as sent (value trimmed).
    pub headers: Vec<(String, String)>,
    /// The whole head, through the empty line.
    pub head: Vec<u8>,
    /// The payload (de-chunked when chunked).
    pub body: Vec<u8>,
    /// The body bytes as they came, chunk framing included.
    pub wire_body: Vec<u8>,
    /// The body was delimited by the connection closing.
    pub close_delimited: bool,
}

impl Response {
    /// The value of the only (or first) header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Which test instance answered (its `X-Instance` header).
    pub fn instance(&self) -> Option<&str> {
        self.header("x-instance")
    }
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The read timeout passed with the response incomplete.
    Timeout { got: Vec<u8> },
    /// The connection closed (EOF or reset) with the response incomplete.
    Closed { got: Vec<u8> },
    /// The bytes are not an HTTP response.
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout { got } => write!(f, "read timed out; unread: {:?}", preview(got)),
            ReadError::Closed { got } => write!(f, "connection closed; unread: {:?}", preview(got)),
            ReadError::Malformed(what) => write!(f, "not an HTTP response: {what}"),
        }
    }
}

/// What a [`Client`] talks over: a TCP stream, or a TLS session on one
/// ([`tls::TlsStream`]). Reads end with an error at the socket's read timeout.
pub trait Transport: Read + Write {
    /// The TCP socket underneath, for timeouts and shutdowns.
    fn socket(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// A raw HTTP/1.x client with a read timeout on every read: over plain TCP by default,
/// over TLS as a [`tls::TlsClient`].
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::over(tcp_connect(addr))
    }
}

impl<S: Transport> Client<S> {
    /// A client over a connected `stream` (its timeouts already set).
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .socket()
            .set_read_timeout(Some(t))
            .expect("timeout");
    }

    /// Writes all of `bytes`; `Err` says why the peer did not take them.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("write to clb: {e}"))
    }

    /// Writes all of `bytes`; panics if the peer refuses them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Writes as much of `bytes` as the peer takes (it may answer and close early).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.try_send(bytes);
    }

    /// Sends `request` and reads one final response; panics on any failure.
    pub fn request(&mut self, request: &str) -> Response {
        self.send(request.as_bytes());
        self.response()
    }

    /// Sends `request` and reads one response; `Err` says what went wrong (for client
    /// threads, which report failures instead of panicking).
    pub fn try_request(&mut self, request: &str) -> Result<Response, String> {
        self.try_send(request.as_bytes())?;
        self.read_response(false)
            .map_err(|e| format!("no complete response: {e}"))
    }

    /// Reads one response, panicking with the reason if it cannot.
    pub fn response(&mut self) -> Response {
        self.read_response(false)
            .unwrap_or_else(|e| panic!("no complete response: {e}"))
    }

    /// Reads one response (a 1xx counts as one). `to_head` says the request was
    /// HEAD, so the response has no body whatever its headers say.
    pub fn read_response(&mut self, to_head: bool) -> Result<Response, ReadError> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8(head.clone())
            .map_err(|_| ReadError::Malformed("head is not UTF-8".into()))?;
        let mut lines = text[..text.len() - 4].split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Malformed(format!("status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Malformed(format!("header line {line:?}")))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut response = Response {
            status_line,
            status,
            headers,
            head,
            body: Vec::new(),
            wire_body: Vec::new(),
            close_delimited: false,
        };
        let no_body = to_head || status / 100 == 1 || status == 204 || status == 304;
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if no_body {
        } else if chunked {
            self.read_chunked(&mut response)?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| ReadError::Malformed(format!("Content-Length {len:?}")))?;
            let body = self.take(len)?;
            response.wire_body = body.clone();
            response.body = body;
        } else {
            // No framing: the body runs to the end of the connection.
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(ReadError::Closed { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            response.body = std::mem::take(&mut self.buf);
            response.wire_body = response.body.clone();
            response.close_delimited = true;
        }
        Ok(response)
    }

    fn read_chunked(&mut self, response: &mut Response) -> Result<(), ReadError> {
        loop {
            let line = self.line()?;
            response.wire_body.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| ReadError::Malformed(format!("chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let line = self.line()?;
                    response.wire_body.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            let data = self.take(size)?;
            response.wire_body.extend_from_slice(&data);
            response.body.extend_from_slice(&data);
            let crlf = self.take(2)?;
            if crlf != b"\r\n" {
                return Err(ReadError::Malformed(
                    "chunk data not followed by CRLF".into(),
                ));
            }
            response.wire_body.extend_from_slice(&crlf);
        }
    }

    fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ReadError::Closed {
                        got: self.buf.clone(),
                    })
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(ReadError::Timeout {
                        got: self.buf.clone(),
                    })
                }
                Err(_) => {
                    return Err(ReadError::Closed {
                        got: self.buf.clone(),
                    })
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads exactly `n` bytes (for streams that are not HTTP: SSL listeners); `Err`
    /// says what arrived instead.
    pub fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>, String> {
        self.take(n)
            .map_err(|e| format!("{n} bytes wanted: {e} ({} bytes)", self.buf.len()))
    }

    fn line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            self.fill()?;
        }
    }

    /// Waits up to `within` for the peer to close the connection (EOF or reset),
    /// with no unread bytes before the close. `Err` says what happened instead.
    pub fn expect_closed(&mut self, within: Duration) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected bytes before close: {:?}",
                preview(&self.buf)
            ));
        }
        expect_eof(&mut self.stream, within)
    }

    /// Whether the connection is still open and silent after `during` (nothing
    /// arrives, no EOF).
    pub fn stays_open(&mut self, during: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.set_read_timeout(during);
        let mut byte = [0u8; 1];
        let open = matches!(self.stream.read(&mut byte), Err(e) if is_timeout(&e));
        self.set_read_timeout(READ_TIMEOUT);
        open
    }
}

// ---------------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------------

/// `GET path HTTP/1.1` with a Host header.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test.example\r\n\r\n")
}

/// `GET path HTTP/1.1` with `Connection: close`.
/// `GET /metrics` on clb's API port: the body (Prometheus text), checked to be a 200.
pub fn scrape_metrics(api: SocketAddr) -> String {
    let mut conn = TcpStream::connect(api).expect("connect to the API");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("read the scrape");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

pub fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
}

/// `METHOD path HTTP/1.1` with a Host header and `body`, framed by Content-Length.
pub fn with_body(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test.example\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The request head an echo instance sent back, as text.
pub fn echoed(response: &Response) -> String {
    assert_eq!(
        response.status, 200,
        "expected an echo, got {:?}",
        response.status_line
    );
    response.body_text()
}

/// The header lines of an echoed head (request line and final CRLF removed).
pub fn echoed_header_lines(response: &Response) -> Vec<String> {
    echoed(response)
        .trim_end_matches("\r\n")
        .split("\r\n")
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The values of every header called `name` (any case) in an echoed head, in order.
pub fn echoed_values(response: &Response, name: &str) -> Vec<String> {
    echoed_header_lines(response)
        .iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// Asserts clb's own canned answer: the exact status line, `Content-Length: 0`
/// and a `Connection` header.
pub fn assert_canned(response: &Response, status_line: &str) {
    assert_eq!(
        response.status_line,
        status_line,
        "head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
    assert_eq!(
        response.header("content-length"),
        Some("0"),
        "canned answers carry Content-Length: 0; head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
    assert!(
        response.header("connection").is_some(),
        "canned answers carry a Connection header; head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
}

// ---------------------------------------------------------------------------------
// TCP listeners
// ---------------------------------------------------------------------------------

/// The health check [`Clb::tcp`] gives clb unless the test gives its own: a connect to
/// each instance's own port (every [`TcpBackend`] accepts it and sees no byte).
pub const DEFAULT_TCP_HEALTH_CHECK: &str = "TCP:80";

impl Clb {
    /// A TCP listener (`tcp:PORT:tcp:80`) on a free port of 127.0.0.1 in front of
    /// `instances`, with the control API off and `--health-check TCP:80` unless `extra`
    /// gives one; returns once every instance expected healthy is logged InService.
    pub fn tcp(instances: &[Instance], extra: &[&str]) -> Clb {
        Clb::tcp_on("127.0.0.1", instances, extra)
    }

    /// [`Clb::tcp`] with the listener bound to `bind` (e.g. `::1`).
    pub fn tcp_on(bind: &str, instances: &[Instance], extra: &[&str]) -> Clb {
        Clb::listening(
            &|port| format!("tcp:{port}:tcp:80"),
            bind,
            instances,
            extra,
            &[],
            DEFAULT_TCP_HEALTH_CHECK,
        )
    }

    /// The general form of [`Clb::http`] and [`Clb::tcp`]: the listener `listener(port)`
    /// on a free port of `bind`, `--api off`, each of `instances`, `default_check` unless
    /// `extra` has a `--health-check`, then `extra`. Returns once every instance expected
    /// healthy is logged InService; retries with another port if the one picked was
    /// taken before clb bound it.
    pub fn listening(
        listener: &dyn Fn(u16) -> String,
        bind: &str,
        instances: &[Instance],
        extra: &[&str],
        env: &[(&str, &str)],
        default_check: &str,
    ) -> Clb {
        Clb::start_listener(listener, bind, instances, extra, env, default_check, false)
    }
}

/// What a [`TcpBackend`] does on each connection.
#[derive(Clone, Debug)]
pub enum TcpBehavior {
    /// Writes back every byte it reads, as it reads it; on EOF it half-closes its own
    /// write side (everything read has been written back by then) and closes.
    Echo,
    /// Writes `len` bytes of [`pattern`] at once, half-closes its write side, then
    /// reads (and records) until EOF.
    SendThenHalfClose(usize),
    /// Speaks first, as SMTP or MySQL servers do: writes `len` bytes of [`pattern`] at
    /// once, then behaves as [`TcpBehavior::Echo`].
    BannerThenEcho(usize),
    /// Reads (and records) until a line has arrived (through `\n`), then writes `len`
    /// bytes of [`pattern`] and half-closes its write side; reads on until EOF.
    HalfCloseAfterLine(usize),
}

/// The most bytes a [`TcpBackend`] keeps of one connection (it counts them all).
pub const TCP_RECORD_CAP: usize = 4 << 20;

/// One connection as a [`TcpBackend`] saw it.
#[derive(Clone, Debug, Default)]
pub struct TcpConnLog {
    /// Every byte received, in order (the first [`TCP_RECORD_CAP`]).
    pub received: Vec<u8>,
    /// How many bytes were received.
    pub total: usize,
    /// A read returned EOF: the peer (clb) shut down its write side or closed.
    pub eof: bool,
    /// The connection was reset (a read failed) instead.
    pub reset: bool,
    /// The instance is done with the connection and has closed it.
    pub done: bool,
}

struct TcpBackendState {
    name: String,
    behavior: Mutex<TcpBehavior>,
    conns: Mutex<Vec<TcpConnLog>>,
    open: AtomicUsize,
    dead: AtomicBool,
}

/// A test instance for TCP listeners: a thread per connection on `IP:free port`,
/// which logs every connection (a TCP health probe is one that carries no byte).
pub struct TcpBackend {
    pub addr: SocketAddr,
    state: Arc<TcpBackendState>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpBackend {
    pub fn start(ip_str: &str, name: &str, behavior: TcpBehavior) -> TcpBackend {
        let listener = bind_unique(ip_str);
        let addr = listener.local_addr().expect("instance addr");
        let state = Arc::new(TcpBackendState {
            name: name.to_string(),
            behavior: Mutex::new(behavior),
            conns: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        let acceptor = thread::spawn(move || tcp_accept_loop(listener, st));
        TcpBackend {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn echo(ip_str: &str, name: &str) -> TcpBackend {
        TcpBackend::start(ip_str, name, TcpBehavior::Echo)
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The `--instance` flag for this backend, expected healthy.
    pub fn instance(&self, zone: &str) -> Instance {
        Instance::new(&self.state.name, self.addr, zone).expecting_healthy(true)
    }

    pub fn set_behavior(&self, behavior: TcpBehavior) {
        *self.state.behavior.lock().expect("behavior lock") = behavior;
    }

    /// Every connection accepted so far, in order of arrival (probes included).
    pub fn conns(&self) -> Vec<TcpConnLog> {
        self.state.conns.lock().expect("conns lock").clone()
    }

    /// The connections that carried at least one byte, in order of arrival.
    pub fn data_conns(&self) -> Vec<TcpConnLog> {
        self.conns().into_iter().filter(|c| c.total > 0).collect()
    }

    /// How many connections were accepted (probes included).
    pub fn accepted(&self) -> usize {
        self.state.conns.lock().expect("conns lock").len()
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// The first connection whose bytes start with `prefix`, if any.
    pub fn conn_starting_with(&self, prefix: &[u8]) -> Option<TcpConnLog> {
        self.conns()
            .into_iter()
            .find(|c| c.received.starts_with(prefix))
    }

    /// The instance dies: its listener closes (connects are refused from now on) and
    /// every open connection is closed.
    pub fn kill(&mut self) {
        if !self.state.dead.swap(true, Ordering::SeqCst) {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        wait_until(Duration::from_secs(5), || self.open_connections() == 0);
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tcp_accept_loop(listener: TcpListener, state: Arc<TcpBackendState>) {
    for stream in listener.incoming() {
        if state.dead.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let index = {
            let mut conns = state.conns.lock().expect("conns lock");
            conns.push(TcpConnLog::default());
            conns.len() - 1
        };
        state.open.fetch_add(1, Ordering::SeqCst);
        let st = Arc::clone(&state);
        thread::spawn(move || {
            serve_tcp(stream, index, &st);
            st.conns.lock().expect("conns lock")[index].done = true;
            st.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn serve_tcp(mut stream: TcpStream, index: usize, state: &TcpBackendState) {
    if stream.set_read_timeout(Some(BACKEND_TICK)).is_err()
        || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
    {
        return;
    }
    let behavior = state.behavior.lock().expect("behavior lock").clone();
    // A probe connection may be gone already: writes to it fail, reading still sees
    // its end.
    let (echo, mut after_line) = match behavior {
        TcpBehavior::Echo => (true, None),
        TcpBehavior::SendThenHalfClose(len) => {
            if write_pattern(&mut stream, 0, len) {
                let _ = stream.shutdown(Shutdown::Write);
            }
            (false, None)
        }
        TcpBehavior::BannerThenEcho(len) => (write_pattern(&mut stream, 0, len), None),
        TcpBehavior::HalfCloseAfterLine(len) => (false, Some(len)),
    };
    let mut chunk = vec![0u8; 65536];
    loop {
        if state.dead.load(Ordering::SeqCst) {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                state.conns.lock().expect("conns lock")[index].eof = true;
                if echo {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => {
                {
                    let mut conns = state.conns.lock().expect("conns lock");
                    let log = &mut conns[index];
                    log.total += n;
                    let keep = n.min(TCP_RECORD_CAP.saturating_sub(log.received.len()));
                    log.received.extend_from_slice(&chunk[..keep]);
                }
                if echo && stream.write_all(&chunk[..n]).is_err() {
                    return;
                }
                if let Some(len) = after_line.filter(|_| chunk[..n].contains(&b'\n')) {
                    after_line = None;
                    if !write_pattern(&mut stream, 0, len) {
                        return;
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                state.conns.lock().expect("conns lock")[index].reset = true;
                return;
            }
        }
    }
}

/// Waits until `backend` has a connection that starts with `prefix` and has seen EOF
/// (or a reset); returns it.
pub fn finished_conn(backend: &TcpBackend, prefix: &[u8], within: Duration) -> TcpConnLog {
    let mut found = None;
    let ok = wait_until(within, || {
        found = backend.conn_starting_with(prefix);
        found.as_ref().is_some_and(|c| c.eof || c.reset)
    });
    assert!(
        ok,
        "{} has no finished connection starting with {:?}; it has {:?}",
        backend.name(),
        preview(prefix),
        backend
            .conns()
            .iter()
            .map(|c| (preview(&c.received), c.eof, c.reset))
            .collect::<Vec<_>>()
    );
    found.expect("found")
}

/// A raw TCP connection to `addr` with [`READ_TIMEOUT`] on every read and write.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads exactly `n` bytes; `Err` says what arrived instead (EOF, reset or timeout
/// after so many bytes).
pub fn read_exactly(stream: &mut TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut out[got..]) {
            Ok(0) => {
                return Err(format!(
                    "EOF after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!(
                    "read timed out after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
            Err(e) => {
                return Err(format!(
                    "{e} after {got} of {n} bytes: {:?}",
                    preview(&out[..got])
                ))
            }
        }
    }
    Ok(out)
}

/// How [`read_until_end`] stopped.
enum End {
    /// EOF (after a TLS peer's close_notify, on a TLS stream).
    Eof,
    /// A read failed: a reset (or, on a TLS stream, a close without close_notify).
    Failed(io::Error),
    /// `within` passed with the stream still open.
    Open,
    /// More than the most bytes wanted arrived.
    TooMuch,
}

/// Reads into `out` until the stream ends (EOF or a failed read), more than `max`
/// bytes have arrived, or `within` passes.
fn read_until_end(
    stream: &mut impl Transport,
    out: &mut Vec<u8>,
    max: usize,
    within: Duration,
) -> End {
    let deadline = Instant::now() + within;
    let mut chunk = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return End::Open;
        }
        stream
            .socket()
            .set_read_timeout(Some(left))
            .expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return End::Eof,
            Ok(k) => {
                out.extend_from_slice(&chunk[..k]);
                if out.len() > max {
                    return End::TooMuch;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
            Err(e) => return End::Failed(e),
        }
    }
}

/// Reads until EOF, at most `max` bytes and for at most `within`; `Err` says what
/// happened instead (a reset, a timeout, too many bytes).
pub fn read_to_eof(
    stream: &mut impl Transport,
    max: usize,
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, max, within) {
        End::Eof => Ok(out),
        End::Failed(e) => Err(format!("{e} after {} bytes instead of EOF", out.len())),
        End::Open => Err(format!(
            "no EOF within {within:?}; {} bytes so far",
            out.len()
        )),
        End::TooMuch => Err(format!("more than {max} bytes before EOF")),
    }
}

/// Whether `stream` ends (EOF or reset) within `within` with nothing unread before the
/// end; `Err` says what arrived instead.
pub fn expect_eof(stream: &mut impl Transport, within: Duration) -> Result<(), String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, 0, within) {
        End::Eof | End::Failed(_) => Ok(()),
        End::Open => Err(format!("connection still open after {within:?}")),
        End::TooMuch => Err(format!(
            "unexpected bytes instead of the end: {:?}",
            preview(&out)
        )),
    }
}

/// Reads whatever comes until the peer ends the connection (EOF or reset); `Err` if it
/// is still open after `within`.
pub fn read_until_closed(stream: &mut impl Transport, within: Duration) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match read_until_end(stream, &mut out, usize::MAX, within) {
        End::Eof | End::Failed(_) => Ok(out),
        End::Open | End::TooMuch => Err(format!(
            "still open after {within:?}, having sent {:?}",
            preview(&out)
        )),
    }
}

/// The first bytes of `bytes`, escaped, for failure messages.
pub fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(120)];
    let mut s: String = head.escape_ascii().to_string();
    if bytes.len() > head.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// Where `got` first differs from `want`, for failure messages about large payloads.
pub fn first_difference(got: &[u8], want: &[u8]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!(
            "byte {i} differs: got {:?}, want {:?} (lengths {} and {})",
            preview(&got[i..]),
            preview(&want[i..]),
            got.len(),
            want.len()
        ),
        None if got.len() == want.len() => "equal".to_string(),
        None => format!("lengths differ: got {}, want {}", got.len(), want.len()),
    }
}
