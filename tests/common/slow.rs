//! Many slow clients at once: connections that begin a request and then send one byte
//! of it a second, for ever, as a slowloris attack does, and the descriptors to hold them.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often each slow connection sends its next byte.
pub const TRICKLE_EVERY: Duration = Duration::from_secs(1);

/// Lets this test process (and the clb it starts, which inherits it) hold many sockets:
/// the soft open-file limit raised to the hard one.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Slow connections to one address, in the order they were opened, each trickling a
/// request head that never ends.
pub struct Slow {
    conns: Arc<Mutex<Vec<Option<TcpStream>>>>,
    stop: Arc<AtomicBool>,
    trickler: Option<JoinHandle<()>>,
}

impl Slow {
    /// Opens `count` connections to `addr`, each sending the start of a request head,
    /// and starts trickling. Panics if a connection cannot be opened.
    pub fn open(addr: SocketAddr, count: usize) -> Slow {
        let mut slow = Slow {
            conns: Arc::new(Mutex::new(Vec::with_capacity(count))),
            stop: Arc::new(AtomicBool::new(false)),
            trickler: None,
        };
        slow.add(addr, count);
        let conns = slow.conns.clone();
        let stop = slow.stop.clone();
        slow.trickler = Some(thread::spawn(move || trickle(&conns, &stop)));
        slow
    }

    /// Opens `count` more, after the others.
    pub fn add(&self, addr: SocketAddr, count: usize) {
        for i in 0..count {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("slow connection {i} to {addr}: {e}"));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
            let _ = s.set_nonblocking(true);
            self.lock().push(Some(s));
        }
    }

    /// How many have been opened.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Which of them (by index, in the order opened) the other side has closed.
    pub fn closed(&self) -> Vec<usize> {
        let mut conns = self.lock();
        for c in conns.iter_mut() {
            if c.as_ref().is_some_and(|s| !still_open(s)) {
                *c = None;
            }
        }
        conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<TcpStream>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.trickler.take() {
            let _ = t.join();
        }
    }
}

/// One byte to every connection still open, once per [`TRICKLE_EVERY`].
fn trickle(conns: &Mutex<Vec<Option<TcpStream>>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        {
            let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
            for c in conns.iter_mut() {
                if let Some(s) = c {
                    match s.write(b"a") {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => *c = None,
                    }
                }
            }
        }
        let mut slept = Duration::ZERO;
        while slept < TRICKLE_EVERY && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}

/// A non-blocking look: open while reading would block.
fn still_open(s: &TcpStream) -> bool {
    match s.peek(&mut [0u8; 1]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        _ => false,
    }
}
