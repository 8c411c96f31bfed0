//! A TCP relay a test puts between one clb node and etcd, to partition that node: real
//! sockets, nothing mocked. While `cut`, the relay moves no byte in either direction:
//! connections already open stall (as over a network that drops every packet; what was
//! sent is delivered after `heal`, as TCP's retransmissions would), and new connections
//! are accepted by the kernel but reach etcd only after `heal`. Both ends therefore see
//! silence and time out on their own, which is what a partition looks like.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);

pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on a free 127.0.0.1 port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener
            .set_nonblocking(true)
            .expect("non-blocking relay listener");
        let addr = listener.local_addr().expect("relay address");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        thread::spawn(move || accept(listener, target, c, s));
        Relay { addr, cut, stop }
    }

    /// `http://127.0.0.1:PORT`, as `--cluster` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops moving bytes (the partition starts).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Moves bytes again (the partition ends).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, target: SocketAddr, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let (cut, stop) = (cut.clone(), stop.clone());
                thread::spawn(move || connect(client, target, cut, stop));
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// One connection: reaches etcd once the relay is not cut, then two pumps.
fn connect(client: TcpStream, target: SocketAddr, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    while cut.load(Ordering::SeqCst) {
        if stop.load(Ordering::SeqCst) {
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
    let (cut2, stop2) = (cut.clone(), stop.clone());
    thread::spawn(move || pump(c2, s2, cut2, stop2));
    pump(server, client, cut, stop);
}

/// Copies `from` to `to` while not cut; passes an end of stream on as a half close.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if cut.load(Ordering::SeqCst) {
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
