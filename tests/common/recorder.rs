//! A raw-socket instance that records every byte clb sends it and reads requests with a
//! strict parser of its own ([`clb::fuzzing::strict_http`], which shares no code with
//! clb's request path). Each request it can read gets `200 ok`; bytes it cannot read
//! end the connection (they stay recorded, and `refused` says why).

use super::ip;
use clb::fuzzing::strict_http::{self, Request};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// One instance connection: its bytes, and why the strict reader gave up on them.
#[derive(Default)]
pub struct ConnLog {
    pub bytes: Vec<u8>,
    pub refused: Option<String>,
}

type Log = Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>;

pub struct Recorder {
    pub addr: SocketAddr,
    log: Log,
}

impl Recorder {
    pub fn start(ip_str: &str) -> Recorder {
        let listener = TcpListener::bind((ip(ip_str), 0)).expect("bind the recorder");
        let addr = listener.local_addr().expect("recorder address");
        let log: Log = Arc::default();
        let shared = log.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let entry = Arc::new(Mutex::new(ConnLog::default()));
                shared.lock().unwrap().push(entry.clone());
                thread::spawn(move || serve(conn, &entry));
            }
        });
        Recorder { addr, log }
    }

    /// Every connection's bytes so far, in accept order (health checks send none).
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().bytes.clone())
            .collect()
    }

    /// What arrived since `before` (a `received()` snapshot), per connection that got any.
    pub fn since(&self, before: &[Vec<u8>]) -> Vec<Vec<u8>> {
        self.received()
            .into_iter()
            .enumerate()
            .map(|(i, now)| now[before.get(i).map_or(0, Vec::len)..].to_vec())
            .filter(|delta| !delta.is_empty())
            .collect()
    }
}

fn serve(mut conn: TcpStream, log: &Mutex<ConnLog>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match strict_http::parse_request(&pending) {
            Ok(request) => {
                pending.drain(..request.len);
                if conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(e) if e == "incomplete" => {}
            Err(e) => {
                log.lock().unwrap().refused = Some(e);
                return;
            }
        }
        let n = conn.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        log.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
    }
}

/// `bytes` (one instance connection's delta) is exactly whole requests, each strictly
/// readable; returns them.
pub fn strict_requests(mut bytes: &[u8]) -> Result<Vec<Request>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let request = strict_http::parse_request(bytes).map_err(|e| {
            format!(
                "the instance cannot read {:?}: {e}",
                String::from_utf8_lossy(bytes)
            )
        })?;
        bytes = &bytes[request.len..];
        out.push(request);
    }
    Ok(out)
}

/// clb with one HTTP listener in desync `mode` in front of `recorder` alone, once the
/// recorder is in service (TCP health check: the recorder answers nothing but requests).
pub fn clb_before(mode: &str, recorder: &Recorder) -> super::Clb {
    let port = super::free_port("127.0.0.1");
    let listener = format!("http:{port}:http:80");
    let spec = format!("i-1={}@zone-a", recorder.addr);
    let check = format!("TCP:{}", recorder.addr.port());
    let mut clb = super::Clb::start(&[
        "--listener",
        &listener,
        "--bind",
        "127.0.0.1",
        "--api",
        "off",
        "--workers",
        "1",
        "--instance",
        &spec,
        "--health-check",
        &check,
        "--desync-mode",
        mode,
    ]);
    let healthy = super::Instance::new("i-1", recorder.addr, "zone-a").expecting_healthy(true);
    clb.wait_in_service(&[&healthy], super::IN_SERVICE_TIMEOUT)
        .expect("recorder in service");
    clb
}
