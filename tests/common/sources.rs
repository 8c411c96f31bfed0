//! Clients from a chosen loopback source address (127.0.0.x), for what clb admits at
//! accept: `--allow` and security groups.

use super::{get, READ_TIMEOUT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A connection to `to` whose source address is `from`.
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: SocketAddr = format!("{from}:0").parse().expect("source address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    stream
}

/// Sends `GET /who` from `from`; the answer's head, or "" when clb closed the
/// connection without one (a source it does not admit).
pub fn answer_from(from: &str, to: SocketAddr) -> String {
    answer(connect_from(from, to))
}

/// Sends `GET /who` on `conn`; the answer's head, or "" when clb closed the connection
/// without one.
pub fn answer(mut conn: TcpStream) -> String {
    let _ = conn.write_all(get("/who").as_bytes());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when a request from `from` is answered 200.
pub fn served_from(from: &str, to: SocketAddr) -> bool {
    answer_from(from, to).starts_with("HTTP/1.1 200")
}
