//! Kernel-to-kernel forwarding: socket → pipe → socket with `splice(2)`, so bulk bytes
//! between two plain sockets never enter user space. Used for large HTTP response
//! bodies of known length and for TCP tunnels once a direction carries bulk data.
//!
//! Pipes are pooled per worker: a pipe costs two descriptors and a kernel buffer, so a
//! connection only holds one while it moves bulk data, and an empty one goes back.

use super::conn::Ready;
use super::Worker;
use crate::sys::KernelPipe;
use mio::net::TcpStream;
use std::io;

/// Kernel pipe size asked for: fewer, larger splices.
const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes a worker keeps for the next bulk transfer.
const MAX_POOLED_PIPES: usize = 64;

/// What one round of splicing moved.
#[derive(Default)]
pub(super) struct Spliced {
    /// Bytes taken from the source socket.
    pub filled: usize,
    /// Whether bytes went out to the destination socket.
    pub drained: bool,
    /// The source socket reached end of stream.
    pub eof: bool,
}

impl Spliced {
    pub fn any(&self) -> bool {
        self.filled > 0 || self.drained || self.eof
    }
}

/// `CLB_SPLICE=off` copies through user space instead (for `make bench`'s comparison).
pub fn splice_from_env() -> bool {
    std::env::var("CLB_SPLICE").map_or(true, |v| v != "off")
}

/// A pipe from the worker's pool, or a new one (`None` when the process is out of
/// descriptors: the caller copies through user space instead).
pub(super) fn take_pipe(pool: &mut Vec<KernelPipe>) -> Option<KernelPipe> {
    pool.pop().or_else(|| KernelPipe::new(PIPE_SIZE).ok())
}

impl Worker {
    /// An empty pipe is kept for the next transfer; one still holding bytes is closed.
    pub(super) fn return_kernel_pipe(&mut self, kernel: Option<KernelPipe>) {
        if let Some(kernel) = kernel {
            if kernel.buffered == 0 && self.pipes.len() < MAX_POOLED_PIPES {
                self.pipes.push(kernel);
            }
        }
    }
}

/// Moves bytes `from` → pipe → `to` as far as both sides allow, taking at most `limit`
/// bytes from `from`. Readiness flags drop when a side says `WouldBlock`.
pub(super) fn splice_through(
    kernel: &mut KernelPipe,
    mut limit: u64,
    from: &TcpStream,
    from_ready: &mut Ready,
    to: &TcpStream,
    to_ready: &mut Ready,
) -> io::Result<Spliced> {
    let mut done = Spliced::default();
    loop {
        let mut moved = false;
        if limit > 0 && !done.eof && kernel.room() > 0 && from_ready.readable {
            match kernel.fill_from(from, usize::try_from(limit).unwrap_or(usize::MAX)) {
                Ok(0) => {
                    done.eof = true;
                    moved = true;
                }
                Ok(n) => {
                    done.filled += n;
                    limit = limit.saturating_sub(n as u64);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => from_ready.readable = false,
                Err(e) => return Err(e),
            }
        }
        if kernel.buffered > 0 && to_ready.writable {
            match kernel.drain_to(to) {
                Ok(n) => {
                    done.drained |= n > 0;
                    moved |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to_ready.writable = false,
                Err(e) => return Err(e),
            }
        }
        if !moved {
            return Ok(done);
        }
    }
}
