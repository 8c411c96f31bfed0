//! The HTTP/1.1 client under the etcd client: one POST per connection (`Connection:
//! close`), its response read with a deadline, the body de-chunked as it arrives.
//!
//! Blocking on purpose: it runs only in the control thread and the cluster helper
//! threads, never in a worker loop. The body is decoded incrementally so that the same
//! reader serves a one-shot answer (read to the end) and a watch stream (read what has
//! come, parse the complete JSON objects, keep the rest). Protocol violations are
//! `InvalidData` errors; every other error is the transport's.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A response head larger than this is not etcd's.
const MAX_HEAD: usize = 16 * 1024;
/// The largest body kept in memory: a full range of a big model, with room to spare.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// `http://host:port` (or `host:port`) → `host:port`; `https` is refused by name.
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.starts_with("https://") {
        return Err(format!(
            "{text}: https endpoints are not supported (use http://)"
        ));
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || authority.contains('/') || authority.contains("://") {
        return Err(format!("{text}: expected http://HOST:PORT"));
    }
    Ok(authority.to_string())
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Connects to `authority` and sends one POST of a JSON `body`. `timeout` bounds the
/// connect and every later read and write.
pub fn post(authority: &str, path: &str, body: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{authority}: no address"));
    let mut stream = None;
    for addr in authority.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    Response::read_head(stream)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    /// Waiting for a `size[;ext]\r\n` line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(usize),
    /// After a chunk's data, waiting for its `\r\n`.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(usize),
    Chunked(Chunk),
    UntilClose,
    Done,
}

pub struct Response {
    stream: TcpStream,
    raw: Vec<u8>,
    framing: Framing,
    pub status: u16,
    /// The body decoded so far; the caller may drain what it has consumed.
    pub body: Vec<u8>,
}

impl Response {
    fn read_head(mut stream: TcpStream) -> io::Result<Response> {
        let mut raw = Vec::with_capacity(4096);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&raw) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let framing = framing_of(parsed.headers)?;
                    raw.drain(..len);
                    let mut response = Response {
                        stream,
                        raw,
                        framing,
                        status,
                        body: Vec::new(),
                    };
                    response.decode()?;
                    return Ok(response);
                }
                Ok(httparse::Status::Partial) if raw.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return Err(invalid("response head too large")),
                Err(e) => return Err(invalid(format!("response head: {e}"))),
            }
            if read_some(&mut stream, &mut raw)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                ));
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Reads until the body is complete.
    pub fn read_to_end(&mut self) -> io::Result<()> {
        while !self.is_done() {
            self.read_more()?;
        }
        Ok(())
    }

    /// One read from the socket, decoded into `body`. A read timeout comes back as the
    /// socket's error (`WouldBlock` or `TimedOut`), with nothing lost.
    pub fn read_more(&mut self) -> io::Result<()> {
        if self.is_done() {
            return Ok(());
        }
        if read_some(&mut self.stream, &mut self.raw)? == 0 {
            if self.framing == Framing::UntilClose {
                self.framing = Framing::Done;
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed mid-body",
            ));
        }
        self.decode()
    }

    /// Moves every complete piece of `raw` into `body`.
    fn decode(&mut self) -> io::Result<()> {
        loop {
            match self.framing {
                Framing::Done => return Ok(()),
                Framing::UntilClose | Framing::Length(_) => {
                    let take = match self.framing {
                        Framing::Length(left) => left.min(self.raw.len()),
                        _ => self.raw.len(),
                    };
                    self.body.extend_from_slice(&self.raw[..take]);
                    self.raw.drain(..take);
                    if let Framing::Length(left) = self.framing {
                        self.framing = if left == take {
                            Framing::Done
                        } else {
                            Framing::Length(left - take)
                        };
                    }
                    return self.check_size();
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let take = left.min(self.raw.len());
                    self.body.extend_from_slice(&self.raw[..take]);
                    self.raw.drain(..take);
                    self.check_size()?;
                    if take < left {
                        self.framing = Framing::Chunked(Chunk::Data(left - take));
                        return Ok(());
                    }
                    self.framing = Framing::Chunked(Chunk::DataEnd);
                }
                Framing::Chunked(state) => {
                    let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                        if self.raw.len() > MAX_HEAD {
                            return Err(invalid("chunk line too long"));
                        }
                        return Ok(());
                    };
                    let line = self.raw[..end].to_vec();
                    self.raw.drain(..end + 2);
                    self.framing = match state {
                        Chunk::Size => match chunk_size(&line)? {
                            0 => Framing::Chunked(Chunk::Trailer),
                            n => Framing::Chunked(Chunk::Data(n)),
                        },
                        Chunk::DataEnd if line.is_empty() => Framing::Chunked(Chunk::Size),
                        Chunk::DataEnd => return Err(invalid("chunk data longer than its size")),
                        Chunk::Trailer if line.is_empty() => Framing::Done,
                        Chunk::Trailer => Framing::Chunked(Chunk::Trailer),
                        Chunk::Data(_) => unreachable_data(),
                    };
                }
            }
        }
    }

    fn check_size(&self) -> io::Result<()> {
        if self.body.len() > MAX_BODY {
            return Err(invalid("response body too large"));
        }
        Ok(())
    }
}

// `Chunk::Data` is handled by its own arm above; this keeps the match total without a panic.
fn unreachable_data() -> Framing {
    Framing::Chunked(Chunk::Size)
}

fn read_some(stream: &mut TcpStream, into: &mut Vec<u8>) -> io::Result<usize> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn framing_of(headers: &[httparse::Header]) -> io::Result<Framing> {
    let mut framing = Framing::UntilClose;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !String::from_utf8_lossy(h.value)
                .trim()
                .eq_ignore_ascii_case("chunked")
            {
                return Err(invalid("unsupported transfer-encoding"));
            }
            return Ok(Framing::Chunked(Chunk::Size));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
            framing = if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            };
        }
    }
    Ok(framing)
}

fn chunk_size(line: &[u8]) -> io::Result<usize> {
    let text = std::str::from_utf8(line).map_err(|_| invalid("chunk size not ASCII"))?;
    let hex = text.split(';').next().unwrap_or("").trim();
    let n = usize::from_str_radix(hex, 16).map_err(|_| invalid(format!("chunk size {hex:?}")))?;
    if n > MAX_BODY {
        return Err(invalid("chunk too large"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server that answers `reply` in pieces, then closes.
    fn serve(pieces: Vec<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            for p in pieces {
                s.write_all(p).unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        addr
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").unwrap(),
            "127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("http://localhost:2379/").unwrap(),
            "localhost:2379"
        );
        assert_eq!(parse_endpoint("10.0.0.1:2379").unwrap(), "10.0.0.1:2379");
        assert!(parse_endpoint("https://h:2379")
            .unwrap_err()
            .contains("https"));
        for bad in [
            "http://h",
            "http://:2379",
            "http://h:0",
            "http://h:2379/x",
            "ftp://h:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_body_split_anywhere() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6;x=y\r\n world\r",
            b"\n0\r\nTrailer: t\r\n\r\n",
        ]);
        let mut r = post(&addr, "/v3/x", b"{}", Duration::from_secs(5)).unwrap();
        r.read_to_end().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
    }

    #[test]
    fn content_length_and_close_delimited() {
        let addr = serve(vec![
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
        ]);
        let mut r = post(&addr, "/", b"", Duration::from_secs(5)).unwrap();
        r.read_to_end().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nall", b" of it"]);
        let mut r = post(&addr, "/", b"", Duration::from_secs(5)).unwrap();
        r.read_to_end().unwrap();
        assert_eq!(r.body, b"all of it");
    }

    #[test]
    fn malformed_answers_are_invalid_data() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ]);
        let got = post(&addr, "/", b"", Duration::from_secs(5)).and_then(|mut r| r.read_to_end());
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"]);
        let got = post(&addr, "/", b"", Duration::from_secs(5)).and_then(|mut r| r.read_to_end());
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
