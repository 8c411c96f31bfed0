//! The sockets behind `--dns`: one thread on the UDP socket, one accepting TCP, and one
//! short-lived thread per TCP connection (at most [`MAX_TCP`] at once).
//!
//! Blocking std sockets on threads of their own rather than the control thread's mio
//! loop: DNS work never waits behind an API request (a state-file write, later an etcd
//! round trip), the code is a plain read-answer-write loop, and a query costs a lock,
//! an `Arc` clone and one answer, so one UDP thread is far from a bottleneck here.

use super::answer::{answer, Transport};
use super::Published;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// TCP connections served at once; more are closed on accept (the client retries).
pub const MAX_TCP: usize = 64;
/// A TCP client that sends nothing for this long is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered on one TCP connection before it is closed.
const TCP_MAX_QUERIES: usize = 100;

/// Binds UDP and TCP on `addr` (both, or an error naming which failed) and starts the
/// threads. They run for the life of the process.
pub fn start(addr: SocketAddr, zone: Published) -> io::Result<SocketAddr> {
    let udp = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("--dns {addr} (UDP): {e}")))?;
    // Port 0 picks a free UDP port; TCP takes the same one.
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound)
        .map_err(|e| io::Error::new(e.kind(), format!("--dns {bound} (TCP): {e}")))?;
    let udp_zone = zone.clone();
    std::thread::Builder::new()
        .name("clb-dns-udp".into())
        .spawn(move || serve_udp(udp, udp_zone))?;
    std::thread::Builder::new()
        .name("clb-dns-tcp".into())
        .spawn(move || serve_tcp(tcp, zone))?;
    log::info!("DNS: answering on {bound} (UDP and TCP)");
    Ok(bound)
}

fn serve_udp(socket: UdpSocket, zone: Published) {
    let mut buf = [0u8; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; the socket
                // itself is still good.
                log::debug!("DNS: UDP receive: {e}");
                continue;
            }
        };
        let Some(reply) = answer(&buf[..len], &zone.get(), Transport::Udp) else {
            continue;
        };
        if let Err(e) = socket.send_to(&reply, peer) {
            log::debug!("DNS: UDP reply to {peer}: {e}");
        }
    }
}

fn serve_tcp(listener: TcpListener, zone: Published) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("DNS: TCP accept: {e}");
                // Out of descriptors: give connections time to close.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_TCP {
            open.fetch_sub(1, Ordering::AcqRel);
            log::debug!("DNS: {MAX_TCP} TCP connections open: closing a new one");
            continue;
        }
        let (zone, open_count) = (zone.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("clb-dns-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &zone) {
                    log::debug!("DNS: TCP connection: {e}");
                }
                open_count.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            log::warn!("DNS: cannot start a TCP connection thread: {e}");
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Length-prefixed messages (RFC 1035 §4.2.2) until the client closes, idles out or
/// has asked [`TCP_MAX_QUERIES`]; a malformed message closes only this connection.
fn serve_connection(mut stream: TcpStream, zone: &Published) -> io::Result<()> {
    stream.set_read_timeout(Some(TCP_IDLE))?;
    stream.set_write_timeout(Some(TCP_IDLE))?;
    let mut message = vec![0u8; usize::from(u16::MAX)];
    for _ in 0..TCP_MAX_QUERIES {
        let mut prefix = [0u8; 2];
        match stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        let query = &mut message[..len];
        stream.read_exact(query)?;
        let Some(reply) = answer(query, &zone.get(), Transport::Tcp) else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&reply_len.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out)?;
    }
    Ok(())
}
