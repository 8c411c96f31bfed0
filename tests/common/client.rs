//! The raw HTTP client of the tests: [`Client`] writes bytes as given and reads one
//! [`Response`] at a time exactly as it came off the wire (over TCP, or TLS through
//! [`Transport`]); request builders and checks of what an echoing instance saw.

use super::*;

/// One HTTP response exactly as it came off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status line without CRLF, e.g. `HTTP/1.1 504 GATEWAY_TIMEOUT`.
    pub status_line: String,
    pub status: u16,
    /// Header lines in order, name and value as sent (value trimmed).
    pub headers: Vec<(String, String)>,
    /// The whole head, through the empty line.
    pub head: Vec<u8>,
    /// The payload (de-chunked when chunked).
    pub body: Vec<u8>,
    /// The body bytes as they came, chunk framing included.
    pub wire_body: Vec<u8>,
    /// The body was delimited by the connection closing.
    pub close_delimited: bool,
}

impl Response {
    /// The value of the only (or first) header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Which test instance answered (its `X-Instance` header).
    pub fn instance(&self) -> Option<&str> {
        self.header("x-instance")
    }
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The read timeout passed with the response incomplete.
    Timeout { got: Vec<u8> },
    /// The connection closed (EOF or reset) with the response incomplete.
    Closed { got: Vec<u8> },
    /// The bytes are not an HTTP response.
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Timeout { got } => write!(f, "read timed out; unread: {:?}", preview(got)),
            ReadError::Closed { got } => write!(f, "connection closed; unread: {:?}", preview(got)),
            ReadError::Malformed(what) => write!(f, "not an HTTP response: {what}"),
        }
    }
}

/// What a [`Client`] talks over: a TCP stream, or a TLS session on one
/// ([`tls::TlsStream`]). Reads end with an error at the socket's read timeout.
pub trait Transport: Read + Write {
    /// The TCP socket underneath, for timeouts and shutdowns.
    fn socket(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// A raw HTTP/1.x client with a read timeout on every read: over plain TCP by default,
/// over TLS as a [`tls::TlsClient`].
pub struct Client<S = TcpStream> {
    pub stream: S,
    pub(super) buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::over(tcp_connect(addr))
    }
}

impl<S: Transport> Client<S> {
    /// A client over a connected `stream` (its timeouts already set).
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream
            .socket()
            .set_read_timeout(Some(t))
            .expect("timeout");
    }

    /// Writes all of `bytes`; `Err` says why the peer did not take them.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("write to clb: {e}"))
    }

    /// Writes all of `bytes`; panics if the peer refuses them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Writes as much of `bytes` as the peer takes (it may answer and close early).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.try_send(bytes);
    }

    /// Sends `request` and reads one final response; panics on any failure.
    pub fn request(&mut self, request: &str) -> Response {
        self.send(request.as_bytes());
        self.response()
    }

    /// Sends `request` and reads one response; `Err` says what went wrong (for client
    /// threads, which report failures instead of panicking).
    pub fn try_request(&mut self, request: &str) -> Result<Response, String> {
        self.try_send(request.as_bytes())?;
        self.read_response(false)
            .map_err(|e| format!("no complete response: {e}"))
    }

    /// Reads one response, panicking with the reason if it cannot.
    pub fn response(&mut self) -> Response {
        self.read_response(false)
            .unwrap_or_else(|e| panic!("no complete response: {e}"))
    }

    /// Reads one response (a 1xx counts as one). `to_head` says the request was
    /// HEAD, so the response has no body whatever its headers say.
    pub fn read_response(&mut self, to_head: bool) -> Result<Response, ReadError> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        let text = String::from_utf8(head.clone())
            .map_err(|_| ReadError::Malformed("head is not UTF-8".into()))?;
        let mut lines = text[..text.len() - 4].split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ReadError::Malformed(format!("status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Malformed(format!("header line {line:?}")))?;
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut response = Response {
            status_line,
            status,
            headers,
            head,
            body: Vec::new(),
            wire_body: Vec::new(),
            close_delimited: false,
        };
        let no_body = to_head || status / 100 == 1 || status == 204 || status == 304;
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if no_body {
        } else if chunked {
            self.read_chunked(&mut response)?;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| ReadError::Malformed(format!("Content-Length {len:?}")))?;
            let body = self.take(len)?;
            response.wire_body = body.clone();
            response.body = body;
        } else {
            // No framing: the body runs to the end of the connection.
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(ReadError::Closed { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            response.body = std::mem::take(&mut self.buf);
            response.wire_body = response.body.clone();
            response.close_delimited = true;
        }
        Ok(response)
    }

    fn read_chunked(&mut self, response: &mut Response) -> Result<(), ReadError> {
        loop {
            let line = self.line()?;
            response.wire_body.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| ReadError::Malformed(format!("chunk size line {text:?}")))?;
            if size == 0 {
                loop {
                    let line = self.line()?;
                    response.wire_body.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            let data = self.take(size)?;
            response.wire_body.extend_from_slice(&data);
            response.body.extend_from_slice(&data);
            let crlf = self.take(2)?;
            if crlf != b"\r\n" {
                return Err(ReadError::Malformed(
                    "chunk data not followed by CRLF".into(),
                ));
            }
            response.wire_body.extend_from_slice(&crlf);
        }
    }

    fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ReadError::Closed {
                        got: self.buf.clone(),
                    })
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(ReadError::Timeout {
                        got: self.buf.clone(),
                    })
                }
                Err(_) => {
                    return Err(ReadError::Closed {
                        got: self.buf.clone(),
                    })
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads exactly `n` bytes (for streams that are not HTTP: SSL listeners); `Err`
    /// says what arrived instead.
    pub fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>, String> {
        self.take(n)
            .map_err(|e| format!("{n} bytes wanted: {e} ({} bytes)", self.buf.len()))
    }

    fn line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            self.fill()?;
        }
    }

    /// Waits up to `within` for the peer to close the connection (EOF or reset),
    /// with no unread bytes before the close. `Err` says what happened instead.
    pub fn expect_closed(&mut self, within: Duration) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected bytes before close: {:?}",
                preview(&self.buf)
            ));
        }
        expect_eof(&mut self.stream, within)
    }

    /// Whether the connection is still open and silent after `during` (nothing
    /// arrives, no EOF).
    pub fn stays_open(&mut self, during: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.set_read_timeout(during);
        let mut byte = [0u8; 1];
        let open = matches!(self.stream.read(&mut byte), Err(e) if is_timeout(&e));
        self.set_read_timeout(READ_TIMEOUT);
        open
    }
}

// Request builders

/// `GET path HTTP/1.1` with a Host header.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test.example\r\n\r\n")
}

/// `GET /metrics` on clb's API port: the body (Prometheus text), checked to be a 200.
pub fn scrape_metrics(api: SocketAddr) -> String {
    let mut conn = TcpStream::connect(api).expect("connect to the API");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("read the scrape");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// `GET path HTTP/1.1` with `Connection: close`.
pub fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
}

/// `METHOD path HTTP/1.1` with a Host header and `body`, framed by Content-Length.
pub fn with_body(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test.example\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The request head an echo instance sent back, as text.
pub fn echoed(response: &Response) -> String {
    assert_eq!(
        response.status, 200,
        "expected an echo, got {:?}",
        response.status_line
    );
    response.body_text()
}

/// The header lines of an echoed head (request line and final CRLF removed).
pub fn echoed_header_lines(response: &Response) -> Vec<String> {
    echoed(response)
        .trim_end_matches("\r\n")
        .split("\r\n")
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The values of every header called `name` (any case) in an echoed head, in order.
pub fn echoed_values(response: &Response, name: &str) -> Vec<String> {
    echoed_header_lines(response)
        .iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// Asserts clb's own canned answer: the exact status line, `Content-Length: 0`
/// and a `Connection` header.
pub fn assert_canned(response: &Response, status_line: &str) {
    assert_eq!(
        response.status_line,
        status_line,
        "head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
    assert_eq!(
        response.header("content-length"),
        Some("0"),
        "canned answers carry Content-Length: 0; head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
    assert!(
        response.header("connection").is_some(),
        "canned answers carry a Connection header; head: {:?}",
        String::from_utf8_lossy(&response.head)
    );
}
