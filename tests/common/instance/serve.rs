//! How a test instance serves one connection: read a request head and its body as
//! framed, answer probes on the health path, then act out the instance's `Behavior`.

use super::*;

#[derive(PartialEq)]
pub(super) enum Served {
    Done,
    Die,
}

/// A buffered connection whose reads give up when the instance is killed.
struct Wire<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    state: &'a BackendState,
    /// The connection has carried a request that is not a probe: it counts in
    /// `connections`, and its EOF in `eofs`.
    counted: bool,
}

enum Fill {
    Data,
    Eof,
    Stop,
}

impl Wire<'_> {
    /// Reads more bytes into `buf`, waking every tick to check for `kill`.
    fn fill(&mut self) -> Fill {
        let mut chunk = [0u8; 65536];
        loop {
            if self.state.dead.load(Ordering::SeqCst) {
                return Fill::Stop;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    if self.counted {
                        self.state.eofs.fetch_add(1, Ordering::SeqCst);
                    }
                    return Fill::Eof;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Fill::Data;
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Fill::Stop,
            }
        }
    }

    /// Takes `n` bytes from the front of `buf`, reading as needed.
    fn take(&mut self, n: usize, sink: &mut dyn FnMut(&[u8])) -> bool {
        let mut left = n;
        while left > 0 {
            if self.buf.is_empty() && !matches!(self.fill(), Fill::Data) {
                return false;
            }
            let k = left.min(self.buf.len());
            sink(&self.buf[..k]);
            self.buf.drain(..k);
            left -= k;
        }
        true
    }

    /// Takes one line (through `\n`), reading as needed.
    fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=i).collect());
            }
            if !matches!(self.fill(), Fill::Data) {
                return None;
            }
        }
    }
}

/// The parts of a request head an instance needs.
struct ReqInfo {
    method: String,
    close: bool,
    framing: Framing,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn parse_req(head: &[u8]) -> Option<ReqInfo> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let version = request_line.rsplit(' ').next()?;
    let mut close = version == "HTTP/1.0";
    let mut framing = Framing::None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    Some(ReqInfo {
        method,
        close,
        framing,
    })
}

/// Reads the request body, feeding the payload to `payload` and the bytes as they
/// came (chunk framing included) to `wire`.
fn read_body(w: &mut Wire, framing: &Framing, payload: &mut BodyHash, wire: &mut BodyHash) -> bool {
    match framing {
        Framing::None => true,
        Framing::Length(n) => w.take(*n, &mut |b| {
            payload.update(b);
            wire.update(b);
        }),
        Framing::Chunked => loop {
            let Some(size_line) = w.line() else {
                return false;
            };
            wire.update(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(hex, 16) else {
                return false;
            };
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let Some(line) = w.line() else {
                        return false;
                    };
                    wire.update(&line);
                    if line == b"\r\n" {
                        return true;
                    }
                }
            }
            if !w.take(size, &mut |b| {
                payload.update(b);
                wire.update(b);
            }) {
                return false;
            }
            let Some(crlf) = w.line() else {
                return false;
            };
            wire.update(&crlf);
        },
    }
}

pub(super) fn serve_conn(stream: TcpStream, state: &BackendState) -> Served {
    if stream.set_read_timeout(Some(BACKEND_TICK)).is_err()
        || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
    {
        return Served::Done;
    }
    let mut w = Wire {
        stream,
        buf: Vec::new(),
        state,
        counted: false,
    };
    let mut served = 0;
    let mut probed = false;
    loop {
        // The request head, through the empty line.
        let head = loop {
            if let Some(end) = find(&w.buf, b"\r\n\r\n") {
                break w.buf.drain(..end + 4).collect::<Vec<u8>>();
            }
            if !matches!(w.fill(), Fill::Data) {
                return Served::Done;
            }
        };
        if is_probe(&head, state) {
            if !probed {
                probed = true;
                state.probe_connections.fetch_add(1, Ordering::SeqCst);
            }
            if answer_probe(&mut w, head) {
                continue;
            }
            return Served::Done;
        }
        if !w.counted {
            w.counted = true;
            state.connections.fetch_add(1, Ordering::SeqCst);
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        served += 1;
        state.max_per_connection.fetch_max(served, Ordering::SeqCst);
        state.heads.lock().expect("heads lock").push(head.clone());
        let Some(req) = parse_req(&head) else {
            return Served::Done;
        };
        let (mut payload, mut wire) = (BodyHash::default(), BodyHash::default());
        if !read_body(&mut w, &req.framing, &mut payload, &mut wire) {
            return Served::Done;
        }
        let behavior = state.behavior.lock().expect("behavior lock").clone();
        let is_head = req.method == "HEAD";
        let name = &state.name;
        let conn_hdr = if req.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let ok = match behavior {
            Behavior::Echo => w.respond(name, conn_hdr, &head, is_head),
            Behavior::Delay(d) => {
                thread::sleep(d);
                w.respond(name, conn_hdr, &head, is_head)
            }
            Behavior::CountBody => {
                let body = upload_summary(&payload, &wire);
                w.respond(name, conn_hdr, body.as_bytes(), is_head)
            }
            Behavior::Fixed { len, chunk } => w.fixed(name, conn_hdr, len, chunk, is_head),
            Behavior::Silent => {
                // Hold the connection without answering until clb or the test ends it.
                while matches!(w.fill(), Fill::Data) {}
                return Served::Done;
            }
            Behavior::Garbage => {
                let _ = w.stream.write_all(b"THIS IS NOT HTTP\r\n\r\n");
                while matches!(w.fill(), Fill::Data) {}
                return Served::Done;
            }
            Behavior::PartialBody { die } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Instance: {name}\r\nContent-Length: 1000\r\n\r\n"
                );
                let _ = w.stream.write_all(head.as_bytes());
                let _ = w.stream.write_all(&pattern(10));
                let _ = w.stream.shutdown(Shutdown::Both);
                return if die { Served::Die } else { Served::Done };
            }
            Behavior::CloseAfterRequest => return Served::Done,
            Behavior::EchoThenClose => {
                w.respond(name, conn_hdr, &head, is_head);
                return Served::Done;
            }
            Behavior::Raw(bytes) => w.stream.write_all(&bytes).is_ok(),
        };
        if !ok || req.close {
            return Served::Done;
        }
    }
}

/// Whether `head` asks for the backend's health path (the request target, exactly).
fn is_probe(head: &[u8], state: &BackendState) -> bool {
    let text = String::from_utf8_lossy(head);
    let target = text.split("\r\n").next().and_then(|l| l.split(' ').nth(1));
    target == Some(state.health_path.lock().expect("health path lock").as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Answers one health probe as the backend's [`Health`] says, reading its body first
/// if it has one. True if the connection may carry another request.
fn answer_probe(w: &mut Wire, head: Vec<u8>) -> bool {
    let state = w.state;
    let health = *state.health.lock().expect("health lock");
    let answer = match health {
        Health::Ok => Some(200),
        Health::Status(code) => Some(code),
        Health::Hang => None,
    };
    let req = parse_req(&head);
    state.probes.lock().expect("probes lock").push(Probe {
        at: Instant::now(),
        head,
        answer,
    });
    let Some(req) = req else {
        return false;
    };
    let (mut payload, mut wire) = (BodyHash::default(), BodyHash::default());
    if !read_body(w, &req.framing, &mut payload, &mut wire) {
        return false;
    }
    let Some(code) = answer else {
        // Hold the probe unanswered until clb (or the test) ends it.
        while matches!(w.fill(), Fill::Data) {}
        return false;
    };
    let framing = if code / 100 == 1 || code == 204 || code == 304 {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    let conn_hdr = if req.close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {code} {}\r\nX-Instance: {}\r\n{framing}{conn_hdr}\r\n",
        reason(code),
        state.name
    );
    w.stream.write_all(response.as_bytes()).is_ok() && !req.close
}

impl Wire<'_> {
    fn respond(&mut self, name: &str, conn_hdr: &str, body: &[u8], is_head: bool) -> bool {
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Instance: {name}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn_hdr}\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        if !is_head {
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out).is_ok()
    }

    fn fixed(
        &mut self,
        name: &str,
        conn_hdr: &str,
        len: usize,
        chunk: Option<usize>,
        is_head: bool,
    ) -> bool {
        let framing = match chunk {
            Some(_) => "Transfer-Encoding: chunked".to_string(),
            None => format!("Content-Length: {len}"),
        };
        let head = format!("HTTP/1.1 200 OK\r\nX-Instance: {name}\r\n{framing}\r\n{conn_hdr}\r\n");
        if self.stream.write_all(head.as_bytes()).is_err() {
            return false;
        }
        if is_head {
            return true;
        }
        match chunk {
            None => write_pattern(&mut self.stream, 0, len),
            Some(size) => {
                let mut offset = 0;
                while offset < len {
                    let n = size.min(len - offset);
                    if self
                        .stream
                        .write_all(format!("{n:x}\r\n").as_bytes())
                        .is_err()
                        || !write_pattern(&mut self.stream, offset, n)
                        || self.stream.write_all(b"\r\n").is_err()
                    {
                        return false;
                    }
                    offset += n;
                }
                self.stream.write_all(b"0\r\n\r\n").is_ok()
            }
        }
    }
}

/// Writes `len` pattern bytes starting at body offset `offset`, without building
/// the whole body in memory.
pub fn write_pattern(out: &mut impl Write, offset: usize, len: usize) -> bool {
    const BLOCK: usize = 251 * 256;
    let block = pattern(BLOCK + 251);
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let start = pos % 251;
        let n = BLOCK.min(end - pos);
        if out.write_all(&block[start..start + n]).is_err() {
            return false;
        }
        pos += n;
    }
    true
}

/// The chunked body [`Behavior::Fixed`] sends, framing included.
pub fn chunked_wire(len: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < len {
        let n = chunk.min(len - offset);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend((offset..offset + n).map(pattern_byte));
        out.extend_from_slice(b"\r\n");
        offset += n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
