//! End-to-end harness: the real `clb` binary between a raw HTTP client and
//! thread-based test instances, all on loopback.
//!
//! - [`Clb`] runs the binary on a free port of 127.0.0.1 and kills it on drop; its
//!   stderr goes to a log file that is printed when the test panics.
//! - [`Backend`] is one registered instance on 127.0.0.x, with a [`Behavior`] (echo the
//!   request head, a fixed body, count an upload, stay silent, send garbage, ...)
//!   and counters of connections, requests and EOFs it saw.
//! - [`Client`] writes raw bytes and reads one response at a time, so tests see the
//!   exact status line, headers and body framing.
//!
//! Every wait is a poll with a deadline and every socket read has a timeout: a broken
//! proxy fails the test, it never hangs it. Every test picks its own ports, so tests
//! run in parallel.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
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
fn bind_unique(ip_str: &str) -> TcpListener {
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
    log: PathBuf,
}

impl Clb {
    /// Starts `clb` with exactly `args` and waits until the listener named by
    /// `--listener` (on `--bind`, default 127.0.0.1) accepts connections.
    pub fn start(args: &[&str]) -> Clb {
        match Clb::try_start(args) {
            Ok(clb) => clb,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Clb::start`], but a process that exits before it listens is an `Err`
    /// carrying its log, so callers can retry (a free port taken in between).
    pub fn try_start(args: &[&str]) -> Result<Clb, String> {
        let port = flag_value(args, &["--listener", "-l"])
            .and_then(|spec| spec.split(':').nth(1))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or("Clb::start needs --listener PROTO:PORT...")?;
        let bind: IpAddr = match flag_value(args, &["--bind"]) {
            Some("0.0.0.0") | None => ip("127.0.0.1"),
            Some(other) => other.parse().map_err(|e| format!("--bind {other}: {e}"))?,
        };
        let addr = SocketAddr::new(bind, port);
        let log = std::env::temp_dir().join(format!(
            "clb-test-{}-{}-{port}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = File::create(&log).map_err(|e| format!("create {log:?}: {e}"))?;
        let stdout = stderr.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(clb_binary())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn clb: {e}"))?;
        let mut clb = Clb { child, addr, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = clb.child.try_wait() {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} exited ({status}) before listening on {addr}; log:\n{log}"
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(clb);
            }
            if Instant::now() >= deadline {
                let log = clb.log_text();
                return Err(format!(
                    "clb {args:?} did not listen on {addr} within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// An HTTP listener on a free port of 127.0.0.1 in front of `instances`, with
    /// the control API off; `extra` is appended (`--workers`, `--idle-timeout`, ...).
    /// Retries with another port if the one picked was taken before clb bound it.
    pub fn http(instances: &[Instance], extra: &[&str]) -> Clb {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port("127.0.0.1");
            let listener = format!("http:{port}:http:80");
            let specs: Vec<String> = instances.iter().map(Instance::spec).collect();
            let mut args = vec![
                "--listener",
                &listener,
                "--bind",
                "127.0.0.1",
                "--api",
                "off",
            ];
            for spec in &specs {
                args.push("--instance");
                args.push(spec);
            }
            args.extend_from_slice(extra);
            match Clb::try_start(&args) {
                Ok(clb) => return clb,
                Err(e) => last = e,
            }
        }
        panic!("clb did not start in 3 tries: {last}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
}

impl Drop for Clb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- clb log ({:?}) -----\n{}\n----- end of clb log -----",
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
}

impl Instance {
    pub fn new(id: &str, addr: SocketAddr, zone: &str) -> Instance {
        Instance {
            id: id.to_string(),
            addr,
            zone: zone.to_string(),
        }
    }

    fn spec(&self) -> String {
        format!("{}={}@{}", self.id, self.addr, self.zone)
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

/// The deterministic body byte at `offset`: a period (251) that no power of two
/// divides, so a lost, duplicated or shifted block shows up.
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
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
    connections: AtomicUsize,
    open: AtomicUsize,
    requests: AtomicUsize,
    eofs: AtomicUsize,
    max_per_connection: AtomicUsize,
    heads: Mutex<Vec<Vec<u8>>>,
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
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            eofs: AtomicUsize::new(0),
            max_per_connection: AtomicUsize::new(0),
            heads: Mutex::new(Vec::new()),
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

    /// The `--instance` flag for this backend.
    pub fn instance(&self, zone: &str) -> Instance {
        Instance::new(&self.state.name, self.addr, zone)
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *self.state.behavior.lock().expect("behavior lock") = behavior;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections the peer (clb) closed: reads that returned EOF.
    pub fn eofs(&self) -> usize {
        self.state.eofs.load(Ordering::SeqCst)
    }

    /// The most requests any one connection carried (1: no connection was reused).
    pub fn max_requests_per_connection(&self) -> usize {
        self.state.max_per_connection.load(Ordering::SeqCst)
    }

    /// Every request head received, in arrival order, byte for byte.
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
        state.connections.fetch_add(1, Ordering::SeqCst);
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
                    self.state.eofs.fetch_add(1, Ordering::SeqCst);
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
    };
    let mut served = 0;
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

/// A raw HTTP/1.x client with a read timeout on every read.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("timeout");
    }

    /// Writes all of `bytes`; panics if the peer refuses them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to clb: {e}"));
    }

    /// Writes as much of `bytes` as the peer takes (it may answer and close early).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Sends `request` and reads one final response; panics on any failure.
    pub fn request(&mut self, request: &str) -> Response {
        self.send(request.as_bytes());
        self.response()
    }

    /// Reads one response, panicking with the reason if it cannot.
    pub fn response(&mut self) -> Response {
        self.read_response(false)
            .unwrap_or_else(|e| panic!("no complete response: {e:?}"))
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
        let deadline = Instant::now() + within;
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected bytes before close: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("connection still open after {within:?}"));
            }
            self.set_read_timeout(left);
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    return Err(format!(
                        "unexpected bytes instead of close: {:?}",
                        String::from_utf8_lossy(&chunk[..n])
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Ok(()), // reset: closed too
            }
        }
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
pub fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
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
