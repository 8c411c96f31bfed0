//! Listening sockets: one per listener per worker, bound with `SO_REUSEPORT`.
//!
//! The kernel spreads incoming connections across the workers' sockets, so no worker
//! hands connections to another. Because `SO_REUSEPORT` would also let a second process
//! silently share a port, each port is first bound once without it: if that fails, the
//! port belongs to someone else and start-up stops with a clear error.

use super::Listening;
use crate::config::Topology;
use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Pending connections the kernel queues per socket before accept.
const BACKLOG: i32 = 4096;

#[derive(Debug)]
pub struct ListenError {
    pub addr: SocketAddr,
    pub error: io::Error,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)
    }
}

impl std::error::Error for ListenError {}

/// Binds every listener of `topo` once per worker; element `w` is worker `w`'s sockets.
pub fn bind_listeners(
    topo: &Topology,
    bind: IpAddr,
    workers: usize,
) -> Result<Vec<Vec<Listening>>, ListenError> {
    bind_each(topo, 0..topo.listeners.len(), bind, workers, |_| true)
}

/// Binds the listeners `new` has and `old` did not (by load balancer and port).
/// Addresses in `ours` were this process's before, possibly still held by a worker that
/// has not yet applied the change that released them, so they skip the exclusivity check.
pub fn bind_new_listeners(
    old: &Topology,
    new: &Topology,
    bind: IpAddr,
    workers: usize,
    ours: &HashSet<SocketAddr>,
) -> Result<Vec<Vec<Listening>>, ListenError> {
    let key = |t: &Topology, l: &crate::config::topology::ListenerView| {
        (
            t.lbs
                .get(l.lb)
                .map(|lb| lb.name.clone())
                .unwrap_or_default(),
            l.listener.port,
        )
    };
    let existing: HashSet<(String, u16)> = old.listeners.iter().map(|l| key(old, l)).collect();
    let fresh: Vec<usize> = (0..new.listeners.len())
        .filter(|&i| !existing.contains(&key(new, &new.listeners[i])))
        .collect();
    bind_each(new, fresh.into_iter(), bind, workers, |addr| {
        !ours.contains(&addr)
    })
}

fn bind_each(
    topo: &Topology,
    listeners: impl Iterator<Item = usize>,
    bind: IpAddr,
    workers: usize,
    exclusive: impl Fn(SocketAddr) -> bool,
) -> Result<Vec<Vec<Listening>>, ListenError> {
    let mut per_worker: Vec<Vec<Listening>> = (0..workers).map(|_| Vec::new()).collect();
    for index in listeners {
        let Some(view) = topo.listeners.get(index) else {
            continue;
        };
        let addr = SocketAddr::new(listen_address(topo, view.lb, bind), view.listener.port);
        let fail = |error| ListenError { addr, error };
        if exclusive(addr) {
            // Bound and released at once: it only proves the port is not someone else's.
            drop(socket(addr, false).map_err(fail)?);
        }
        for sockets in per_worker.iter_mut() {
            let sock = socket(addr, true).map_err(fail)?;
            sockets.push(Listening {
                sock: TcpListener::from_std(sock.into()),
                listener: index,
                addr,
            });
        }
    }
    Ok(per_worker)
}

/// Where load balancer `lb` listens: its own address, or the process's `--bind`.
pub fn listen_address(topo: &Topology, lb: usize, bind: IpAddr) -> IpAddr {
    topo.lbs.get(lb).and_then(|v| v.address).unwrap_or(bind)
}

fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    // Inherited by every accepted connection: no setsockopt per connection.
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    if reuse_port {
        sock.listen(BACKLOG)?;
    }
    Ok(sock)
}
