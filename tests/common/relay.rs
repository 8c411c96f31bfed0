//! A TCP relay a test puts between one clb node and etcd, to partition that node: real
//! sockets, nothing mocked. While `cut`, the relay moves no byte in either direction:
//! connections already open stall (as over a network that drops every packet; what was
//! sent is delivered after `heal`, as TCP's retransmissions would), and new connections
//! are accepted by the kernel but reach etcd only after `heal`. Both ends therefore see
//! silence and time out on their own, which is what a partition looks like.
//! `heal_abandoning` ends the partition for new connections only: every connection
//! accepted before stays silent for good, neither delivered nor reset, as when a peer
//! lost the connection's state during the partition. `refuse_from(k)` is etcd going
//! away at a precise step: the k-th connection (0-based) and every later one are
//! closed at once, as by a peer that is gone.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);

pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Connections numbered below this one are silent for good.
    abandoned_below: AtomicU64,
    accepted: AtomicU64,
    /// Connections numbered from this one on are closed at once.
    refused_from: AtomicU64,
}

impl State {
    /// Whether connection `id` may move bytes now.
    fn open(&self, id: u64) -> bool {
        !self.cut.load(Ordering::SeqCst) && id >= self.abandoned_below.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl Relay {
    /// Listens on a free 127.0.0.1 port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener
            .set_nonblocking(true)
            .expect("non-blocking relay listener");
        let addr = listener.local_addr().expect("relay address");
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            abandoned_below: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused_from: AtomicU64::new(u64::MAX),
        });
        let s = state.clone();
        thread::spawn(move || accept(listener, target, s));
        Relay { addr, state }
    }

    /// `http://127.0.0.1:PORT`, as `--cluster` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops moving bytes (the partition starts).
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
    }

    /// Moves bytes again (the partition ends).
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Closes connection `k` (0-based) and every later one as soon as it is accepted.
    pub fn refuse_from(&self, k: u64) {
        self.state.refused_from.store(k, Ordering::SeqCst);
    }

    /// How many connections the relay has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Moves bytes again for connections accepted from now on only.
    pub fn heal_abandoning(&self) {
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.abandoned_below.store(accepted, Ordering::SeqCst);
        self.heal();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    while !state.stopped() {
        match listener.accept() {
            Ok((client, _)) => {
                let id = state.accepted.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                thread::spawn(move || connect(client, target, id, state));
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// One connection: reaches etcd once the relay is not cut, then two pumps.
fn connect(client: TcpStream, target: SocketAddr, id: u64, state: Arc<State>) {
    if id >= state.refused_from.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    while !state.open(id) {
        if state.stopped() {
            return;
        }
        thread::sleep(POLL);
    }
    let Ok(server) = TcpStream::connect(target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nonblocking(false);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let state2 = state.clone();
    thread::spawn(move || pump(c2, s2, id, state2));
    pump(server, client, id, state);
}

/// Copies `from` to `to` while not cut; passes an end of stream on as a half close.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, state: Arc<State>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 16 * 1024];
    while !state.stopped() {
        if !state.open(id) {
            thread::sleep(POLL);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
