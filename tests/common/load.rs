//! Steady keep-alive traffic and raw control-API calls, for tests that change the
//! configuration while requests flow (draining under churn) or hold the API under abuse.
//!
//! [`Load`] runs one thread per keep-alive connection, each sending `GET` after `GET`
//! until stopped, and tallies every answer that is not a 200 and every connection that
//! failed, with when it happened, so a test can say exactly which request was lost.

use super::{get, Client};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Keep-alive clients sending back-to-back requests until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
    started: Instant,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: usize,
    /// Each request that did not get a 200: time since the load started, and why.
    pub failures: Vec<(Duration, String)>,
}

impl Load {
    /// `connections` clients of `addr`, each on its own thread and connection.
    pub fn start(addr: SocketAddr, connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = (0..connections)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || client_loop(addr, &stop, started))
            })
            .collect();
        Load {
            stop,
            threads,
            started,
        }
    }

    /// Time since the load started, on the clock failures are stamped with.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops every client after its current request and sums what they saw.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for t in self.threads {
            match t.join() {
                Ok(tally) => {
                    total.ok += tally.ok;
                    total.failures.extend(tally.failures);
                }
                Err(_) => total
                    .failures
                    .push((Duration::ZERO, "a client thread panicked".to_string())),
            }
        }
        total.failures.sort_by_key(|f| f.0);
        total
    }
}

fn client_loop(addr: SocketAddr, stop: &AtomicBool, started: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut client: Option<Client> = None;
    let request = get("/load");
    while !stop.load(Ordering::Relaxed) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(super::READ_TIMEOUT));
                    let _ = s.set_nodelay(true);
                    client.insert(Client::over(s))
                }
                Err(e) => {
                    tally
                        .failures
                        .push((started.elapsed(), format!("connect: {e}")));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let sent = started.elapsed();
        match c.try_request(&request) {
            Ok(r) if r.status == 200 => {
                tally.ok += 1;
                if r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    client = None;
                }
            }
            Ok(r) => {
                tally.failures.push((sent, r.status_line.clone()));
                client = None;
            }
            Err(e) => {
                tally.failures.push((sent, e));
                client = None;
            }
        }
    }
    tally
}

/// One unsigned Query API call (`GET /?QUERY`) on its own connection, as the loopback
/// rule allows without `--api-credentials`: the status and the body.
pub fn api_call(api: SocketAddr, query: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut conn = TcpStream::connect_timeout(&api, timeout)
        .map_err(|e| format!("connect to the API: {e}"))?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET /?{query}&Version=2012-06-01 HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .map_err(|e| format!("send to the API: {e}"))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .map_err(|e| format!("read the API's answer: {e} (so far {text:?})"))?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}
