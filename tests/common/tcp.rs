//! TCP listeners under test: clb with a `tcp:` listener, and [`TcpBackend`], an
//! instance that records every byte it received per connection.

use super::*;

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

    /// The general form of [`Clb::http`] and [`Clb::tcp`]: [`Clb::start_listener`] with
    /// `--api off`.
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
