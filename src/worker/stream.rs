//! A connection's byte stream: plain TCP, or TLS (terminated here for clients, started
//! here for instances with an HTTPS or SSL instance protocol).
//!
//! Both read and write like a non-blocking socket, so sessions, exchanges and tunnels do
//! not care which they have. TLS needs two things a socket does not: records rustls has queued
//! (handshake messages, data the socket would not take) are flushed whenever the socket
//! is writable, even with nothing new to write; and a read may consume socket bytes yet
//! return `WouldBlock` (a handshake record carries no application data). Writes into
//! rustls are bounded, so a client that does not read cannot make clb buffer without end.

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

/// Plaintext rustls may hold for a slow reader before writes report `WouldBlock`.
const TLS_SEND_LIMIT: usize = 64 * 1024;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    sock: TcpStream,
    conn: Connection,
    /// The last socket read returned less than rustls asked for: the socket is empty
    /// (edge-triggered readiness: the next arrival raises a new event).
    socket_drained: bool,
}

/// Passes reads through to the socket, noting whether one came back short.
struct ShortRead<'a> {
    sock: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl Stream {
    pub fn tls(
        sock: TcpStream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<Stream> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Ok(Stream::Tls(Box::new(TlsStream {
            sock,
            conn: conn.into(),
            socket_drained: false,
        })))
    }

    /// TLS to an instance. The name is an IP address, so no SNI goes out (spec §13.15);
    /// a PROXY protocol header travels inside the session (README, decision 5).
    pub fn tls_client(
        sock: TcpStream,
        config: std::sync::Arc<rustls::ClientConfig>,
        ip: std::net::IpAddr,
    ) -> io::Result<Stream> {
        let name = ServerName::IpAddress(ip.into());
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        Ok(Stream::Tls(Box::new(TlsStream {
            sock,
            conn: conn.into(),
            socket_drained: false,
        })))
    }

    /// The TCP socket underneath (connect status, peeking, registration).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(sock) => sock,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Moves a TLS handshake as far as the socket allows: `Ok(true)` once it is done
    /// (at once for plain TCP), `Ok(false)` after the socket said `WouldBlock`.
    pub fn handshake(&mut self) -> io::Result<bool> {
        let Stream::Tls(tls) = self else {
            return Ok(true);
        };
        loop {
            if !tls.flush_records()? {
                return Ok(false);
            }
            if !tls.conn.is_handshaking() {
                return Ok(true);
            }
            match tls.conn.read_tls(&mut tls.sock) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    if let Err(e) = tls.conn.process_new_packets() {
                        let _ = tls.flush_records();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The socket, for splicing; `None` for TLS (the kernel cannot see the plaintext).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(sock) => Some(sock),
            Stream::Tls(_) => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether a read that returned less than asked proves there is nothing left: always
    /// for TCP; for TLS when the socket read under it came back short too.
    pub fn short_read_drains(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(tls) => tls.socket_drained,
        }
    }

    /// The negotiated cipher suite and protocol in OpenSSL's words (as ELB's access log
    /// writes them), once a TLS handshake is done.
    pub fn tls_names(&self) -> Option<(&'static str, &'static str)> {
        let Stream::Tls(tls) = self else { return None };
        let suite = tls.conn.negotiated_cipher_suite()?;
        let protocol = match tls.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "-",
        };
        use rustls::CipherSuite as S;
        let cipher = match suite.suite() {
            S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
            S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
            S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
            _ => "-",
        };
        Some((cipher, protocol))
    }

    /// TLS records queued in rustls that the socket has not taken yet.
    pub fn has_queued_records(&self) -> bool {
        matches!(self, Stream::Tls(tls) if tls.conn.wants_write())
    }

    /// Whether a write shutdown now would lose nothing: plaintext written during a TLS
    /// handshake waits in rustls until the handshake ends, then as queued records.
    pub fn ready_to_shut(&self) -> bool {
        match self {
            Stream::Plain(_) => true,
            Stream::Tls(tls) => !tls.conn.is_handshaking() && !tls.conn.wants_write(),
        }
    }

    /// Writes what rustls has queued. True when nothing is left queued.
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(tls) => tls.flush_records(),
        }
    }

    /// TLS: queue close_notify first, so the client can tell a close from a truncation.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(sock) => sock.shutdown(Shutdown::Write),
            Stream::Tls(tls) => {
                tls.conn.send_close_notify();
                let _ = tls.flush_records();
                tls.sock.shutdown(Shutdown::Write)
            }
        }
    }
}

impl TlsStream {
    fn flush_records(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match self {
            Stream::Plain(sock) => return sock.read(buf),
            Stream::Tls(tls) => tls,
        };
        loop {
            match tls.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let mut sock = ShortRead {
                sock: &mut tls.sock,
                short: false,
            };
            let got = tls.conn.read_tls(&mut sock);
            tls.socket_drained = sock.short;
            match got {
                // The peer closed without close_notify: a truncation, reported as EOF.
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = tls.conn.process_new_packets() {
                        // Send the alert rustls prepared, then give up on the connection.
                        let _ = tls.flush_records();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    tls.flush_records()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.write(buf),
            Stream::Tls(tls) => {
                // Whatever rustls still holds goes first; only then is there room.
                if !tls.flush_records()? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = tls.conn.writer().write(buf)?;
                tls.flush_records()?;
                if n == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(sock) => sock.write_vectored(bufs),
            Stream::Tls(tls) => {
                // Every slice into rustls first, then one flush: a response head and its
                // body leave in the same records and the same write, as over plain TCP.
                if !tls.flush_records()? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let mut total = 0;
                for buf in bufs.iter().filter(|b| !b.is_empty()) {
                    let n = tls.conn.writer().write(buf)?;
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                tls.flush_records()?;
                if total == 0 && bufs.iter().any(|b| !b.is_empty()) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(total)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }
}
