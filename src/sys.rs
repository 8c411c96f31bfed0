//! The only `unsafe` in clb: Linux syscalls that std and mio do not wrap.
//!
//! `splice(2)` moves body bytes socket → pipe → socket inside the kernel, so a large
//! body is never copied into or out of user space. Each call is a plain syscall on file
//! descriptors this module owns (the pipe) or borrows for the call (the sockets).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking pipe used as the kernel-side buffer between two sockets.
pub struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    pub buffered: usize,
    capacity: usize,
}

impl KernelPipe {
    /// A pipe of (at least) `size` bytes; the kernel default (64 KiB) if it refuses more.
    pub fn new(size: usize) -> io::Result<KernelPipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let wanted = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; failure only leaves the default size.
        let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
        let capacity = usize::try_from(set).unwrap_or(64 * 1024);
        Ok(KernelPipe {
            read,
            write,
            buffered: 0,
            capacity,
        })
    }

    /// Room left before a splice into the pipe would block.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.buffered)
    }

    /// Moves up to `max` bytes from the socket into the pipe; `Ok(0)` is end of stream.
    pub fn fill_from(&mut self, src: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let n = splice(
            src.as_raw_fd(),
            self.write.as_raw_fd(),
            max.min(self.room()),
        )?;
        self.buffered += n;
        Ok(n)
    }

    /// Moves what the pipe holds into the socket.
    pub fn drain_to(&mut self, dst: &impl AsRawFd) -> io::Result<usize> {
        let n = splice(self.read.as_raw_fd(), dst.as_raw_fd(), self.buffered)?;
        self.buffered -= n.min(self.buffered);
        Ok(n)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: both descriptors are open for the duration of the call (borrowed from
        // live sockets or owned by the pipe); null offsets are valid for pipes and sockets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn moves_bytes_between_sockets_through_the_pipe() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut a = TcpStream::connect(addr).unwrap();
        let (b, _) = listener.accept().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (mut d, _) = listener.accept().unwrap();
        a.write_all(b"hello splice").unwrap();
        let mut pipe = KernelPipe::new(256 * 1024).unwrap();
        assert!(pipe.room() >= 64 * 1024);
        let mut moved = 0;
        while moved < 12 {
            match pipe.fill_from(&b, 100) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pipe.buffered, 12);
        assert_eq!(pipe.drain_to(&c).unwrap(), 12);
        let mut got = [0u8; 12];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello splice");
    }
}

/// Signals clb handles itself, on one thread, instead of with async handlers.
pub mod signals {
    use std::io;

    fn set(signals: &[libc::c_int]) -> libc::sigset_t {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise and fill it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            set
        }
    }

    /// Blocks `signals` in the calling thread and every thread it starts afterwards, so
    /// only `wait` receives them. Call before starting any thread.
    pub fn block(signals: &[libc::c_int]) -> io::Result<()> {
        let set = set(signals);
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    /// Waits for one of `signals` (blocked beforehand) and returns it.
    pub fn wait(signals: &[libc::c_int]) -> io::Result<libc::c_int> {
        let set = set(signals);
        let mut received: libc::c_int = 0;
        // SAFETY: `set` is initialised and `received` is a valid place to write.
        let rc = unsafe { libc::sigwait(&set, &mut received) };
        if rc == 0 {
            Ok(received)
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    pub const HUP: libc::c_int = libc::SIGHUP;
    /// Every signal the signal thread takes: reload, and the two stop signals.
    pub const HANDLED: [libc::c_int; 4] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT, USR1];
    pub const USR1: libc::c_int = libc::SIGUSR1;
}

/// Hands freed heap pages back to the kernel. glibc keeps freed memory in its arenas
/// (only the top of the heap shrinks by itself), so the RSS of a worker that once held
/// a burst of buffers would stay at the burst's size; `malloc_trim` releases every whole
/// free page. Called only after the buffer pool shrank, at most once a second per worker.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}
