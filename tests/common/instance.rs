//! Test instances: [`Backend`] is one registered instance on 127.0.0.x with a
//! [`Behavior`] and a [`Health`], counting the connections, requests and EOFs it saw
//! (probes counted apart); body patterns and hashes to check what crossed the proxy.
//! How a connection is served is in `serve`.

use super::*;

mod serve;
pub use serve::*;
use serve::{serve_conn, Served};

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
