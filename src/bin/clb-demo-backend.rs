//! A tiny HTTP/1.1 server for `make run`: it plays one registered instance behind clb.
//!
//! `clb-demo-backend --listen ADDR --name NAME` answers every request with
//! `200 OK` and the body `Hello from NAME: METHOD PATH`, so a person running
//! `curl` through clb can see which instance answered. It uses only std (one thread
//! per connection) and never trusts the network: a malformed or oversized request
//! gets a 400 and the connection is closed; nothing on the wire can make it panic.
//! Keep-alive follows HTTP: on by default for HTTP/1.1, opt-in for HTTP/1.0, off
//! after `Connection: close`. Request bodies (Content-Length or chunked) are read
//! and discarded.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A request head larger than this is refused; clb's own limit is 64 KiB of headers.
const MAX_HEAD: usize = 80 * 1024;
/// Longer than clb's default idle timeout (60 s), so clb, not the instance, closes
/// idle pooled connections (spec §6.7).
const IDLE: Duration = Duration::from_secs(120);
/// Connections served at once; beyond this new connections are closed at once.
const MAX_CONNECTIONS: usize = 1024;

const USAGE: &str = "usage: clb-demo-backend --listen ADDR --name NAME";

struct Args {
    listen: SocketAddr,
    name: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut listen, mut name) = (None, None);
    while let Some(flag) = args.next() {
        let value = match flag.as_str() {
            "--listen" | "--name" => args
                .next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        };
        if flag == "--listen" {
            let addr = value
                .parse::<SocketAddr>()
                .map_err(|_| format!("--listen {value:?} is not an IP:PORT address"))?;
            listen = Some(addr);
        } else if value.is_empty() {
            return Err(format!("--name must not be empty; {USAGE}"));
        } else {
            name = Some(value);
        }
    }
    match (listen, name) {
        (Some(listen), Some(name)) => Ok(Args { listen, name }),
        _ => Err(format!("--listen and --name are required; {USAGE}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("clb-demo-backend: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(args.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("clb-demo-backend: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let name: Arc<str> = Arc::from(args.name.as_str());
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        // Accept errors (EMFILE, a reset before accept) are transient: keep serving.
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let (conn_name, conn_active) = (Arc::clone(&name), Arc::clone(&active));
        let spawned = thread::Builder::new().spawn(move || {
            // Errors only end this connection: the peer went away or sent nonsense.
            let _ = serve(stream, &conn_name);
            conn_active.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            // The closure (and its stream) was dropped, so the connection is closed.
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
    ExitCode::SUCCESS
}

/// What the server needs from a request head.
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    http10: bool,
    body: Body,
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

fn serve(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_head(&mut reader)? {
            Head::Closed => return Ok(()),
            Head::Malformed => {
                writer.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
            Head::Request(request) => request,
        };
        match request.body {
            Body::None => {}
            Body::Length(n) => discard_exact(&mut reader, n)?,
            Body::Chunked => discard_chunked(&mut reader)?,
        }
        let body = format!("Hello from {name}: {} {}\n", request.method, request.path);
        let connection = match (request.keep_alive, request.http10) {
            (false, _) => "Connection: close\r\n",
            (true, true) => "Connection: keep-alive\r\n",
            (true, false) => "",
        };
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n",
            body.len()
        );
        if request.method != "HEAD" {
            response.push_str(&body);
        }
        writer.write_all(response.as_bytes())?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

enum Head {
    Closed,
    Malformed,
    Request(Request),
}

/// Reads one request head line by line, bounded by `MAX_HEAD`.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Head> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - total) as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if total == 0 {
                Head::Closed
            } else {
                Head::Malformed
            });
        }
        total += n;
        if total > MAX_HEAD || !line.ends_with(b"\n") {
            return Ok(Head::Malformed);
        }
        let text = match String::from_utf8(line) {
            Ok(text) => text.trim_end_matches(['\r', '\n']).to_string(),
            Err(_) => return Ok(Head::Malformed),
        };
        if text.is_empty() {
            if lines.is_empty() {
                continue; // RFC 9112 §2.2: ignore empty lines before the request line.
            }
            return Ok(parse_head(&lines).map_or(Head::Malformed, Head::Request));
        }
        lines.push(text);
    }
}

fn parse_head(lines: &[String]) -> Option<Request> {
    let mut parts = lines.first()?.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || path.is_empty() {
        return None;
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return None,
    };
    let mut keep_alive = !http10;
    let mut body = Body::None;
    for line in &lines[1..] {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = Body::Length(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return None;
            }
            body = Body::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        keep_alive,
        http10,
        body,
    })
}

fn discard_exact(reader: &mut BufReader<TcpStream>, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.by_ref().take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads a chunked body to its end (RFC 9112 §7.1), trailers included.
fn discard_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad chunk framing");
    loop {
        let mut line = Vec::new();
        reader.by_ref().take(1024).read_until(b'\n', &mut line)?;
        let text = std::str::from_utf8(&line).map_err(|_| bad())?;
        let size = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad())?;
        if size == 0 {
            break;
        }
        discard_exact(reader, size + 2)?; // the data and its CRLF
    }
    loop {
        let mut line = Vec::new();
        if reader.by_ref().take(8192).read_until(b'\n', &mut line)? == 0 {
            return Err(bad());
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
    }
}
