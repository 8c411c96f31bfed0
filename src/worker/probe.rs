//! Health probes as timers and sockets of the worker loop (spec §2.2).
//!
//! Each instance is probed by exactly one worker (a hash of its load balancer and id,
//! modulo the worker count), so N workers never multiply probe traffic. The first probe
//! goes out as soon as the worker starts; later ones follow a fixed schedule, `interval`
//! after the previous scheduled start, whatever the last answer took. A probe in flight
//! fails at `timeout`, which is always shorter than the interval, so at most one probe
//! per instance is ever in flight. Results go through `Hysteresis`; a change of state is
//! published on the topology's `HealthBoard` and logged.

use super::conn::{Deadline, Ready};
use super::exchange::{read_some, ReadOutcome};
use super::stream::Stream;
use super::token::{self, Kind};
use super::upstream::connect_status;
use super::Worker;
use crate::backend::health::Hysteresis;
use crate::buffer::Buf;
use crate::config::Topology;
use crate::http::request::{list_items, parse_content_length};
use mio::net::TcpStream;
use mio::Interest;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// A probe starting later than this after its scheduled time is logged: the loop is overloaded.
const LATE_PROBE: Duration = Duration::from_millis(100);
/// Largest probe response head read; a longer one fails the probe.
const MAX_PROBE_HEAD: usize = 8 * 1024;

pub(super) enum Stage {
    Idle,
    Connecting,
    /// HTTPS and SSL checks: the TLS handshake (an SSL check succeeds when it completes).
    Handshaking,
    /// Sending the request held in `buf`, `sent` bytes so far.
    Sending {
        sent: usize,
    },
    Reading,
    /// A 200 without framing headers: healthy only if the instance closes without a body.
    AwaitingClose,
}

pub(super) struct Probe {
    pub instance: usize,
    pub generation: u32,
    pub sock: Option<Stream>,
    pub stage: Stage,
    pub ready: Ready,
    pub buf: Option<Buf>,
    /// When the current (or next) scheduled probe starts.
    pub next_at: Instant,
    pub deadline: Deadline,
    pub hysteresis: Hysteresis,
}

/// The worker that probes `instance` out of `workers`.
pub(super) fn owner(topo: &Topology, instance: usize, workers: usize) -> usize {
    let Some(view) = topo.instances.get(instance) else {
        return 0;
    };
    let lb = topo.lbs.get(view.lb).map_or("", |lb| lb.name.as_str());
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in lb.as_bytes().iter().chain(b"/").chain(view.id.as_bytes()) {
        hash = (hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (hash % workers.max(1) as u64) as usize
}

impl Worker {
    /// Creates the probes this worker owns, each due at once.
    pub(super) fn start_probes(&mut self) {
        for instance in 0..self.topo.instances.len() {
            if owner(&self.topo, instance, self.settings.workers) == self.id {
                self.add_probe(instance);
            }
        }
    }

    /// A probe for a newly seen instance: the first one goes out at once (spec §2.2.8).
    pub(super) fn add_probe(&mut self, instance: usize) {
        let generation = self.generations.issue();
        let key = self.probes.insert(Probe {
            instance,
            generation,
            sock: None,
            stage: Stage::Idle,
            ready: Ready::default(),
            buf: None,
            next_at: self.now,
            deadline: Deadline::new(self.now),
            hysteresis: Hysteresis::default(),
        });
        self.arm_probe(key);
    }

    pub(super) fn arm_probe(&mut self, key: usize) {
        if let Some(p) = self.probes.get_mut(key) {
            if p.deadline.needs_arming() {
                self.timers
                    .arm(p.deadline.at, token::encode(Kind::Probe, p.generation, key));
                p.deadline.armed_at = Some(p.deadline.at);
            }
        }
    }

    /// A probe's deadline came: its timeout, or the next scheduled start.
    pub(super) fn probe_due(&mut self, key: usize) {
        let now = self.now;
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        if p.deadline.armed_at.is_some_and(|at| at <= now) {
            p.deadline.armed_at = None;
        }
        if p.deadline.at > now {
            return self.arm_probe(key);
        }
        if !matches!(p.stage, Stage::Idle) {
            self.probe_result(key, false, "timed out");
        }
        if self.probes.get(key).is_some_and(|p| p.next_at <= now) {
            self.start_probe(key);
        }
        self.arm_probe(key);
    }

    fn start_probe(&mut self, key: usize) {
        let now = self.now;
        let unit = self.settings.health_unit;
        let topo = self.topo.clone();
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        let Some(view) = topo.instances.get(p.instance) else {
            return;
        };
        let Some(lb) = topo.lbs.get(view.lb) else {
            return;
        };
        let check = &lb.health_check;
        let interval = unit * check.interval;
        let late = now.saturating_duration_since(p.next_at);
        if late > LATE_PROBE {
            log::warn!(
                "health probe of {} started {} ms late",
                view.id,
                late.as_millis()
            );
        }
        // A fixed schedule; a worker that fell behind skips the missed starts rather than bursting.
        p.next_at += interval;
        while p.next_at <= now {
            p.next_at += interval;
        }
        p.deadline.at = now + unit * check.timeout;
        let Some(addr) = topo.probe_addr(p.instance) else {
            return;
        };
        let probed = p.instance;
        let mut sock = match TcpStream::connect(addr) {
            Ok(sock) => sock,
            Err(e) => {
                log::debug!("health probe of {} ({addr}): connect failed: {e}", view.id);
                return self.probe_result(key, false, "connect failed");
            }
        };
        let registered = self.poll.registry().register(
            &mut sock,
            token::encode(Kind::Probe, p.generation, key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            return self.probe_result(key, false, "register failed");
        }
        let sock = if check.target.protocol.is_tls() {
            // The probe trusts what requests to this instance port trust.
            let backend = topo
                .backends
                .iter()
                .position(|b| b.instance == probed && b.addr == addr);
            let config = match backend {
                Some(backend) => self.backend_tls_for(backend),
                None => self.settings.backend_tls.clone(),
            };
            match Stream::tls_client(sock, config, addr.ip()) {
                Ok(sock) => sock,
                Err(_) => return self.probe_result(key, false, "TLS setup failed"),
            }
        } else {
            Stream::Plain(sock)
        };
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        if check.target.protocol.is_http() {
            let buf = p.buf.get_or_insert_with(|| self.bufs.get());
            buf.clear();
            let _ = write!(
                buf,
                "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ELB-HealthChecker/1.0\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n",
                check.target.path
            );
        }
        p.sock = Some(sock);
        p.stage = Stage::Connecting;
        p.ready = Ready::default();
    }

    /// Readiness on a probe's socket: move it as far as it goes.
    pub(super) fn drive_probe(&mut self, key: usize) {
        let http = {
            let Some(p) = self.probes.get(key) else {
                return;
            };
            let lb = self
                .topo
                .instances
                .get(p.instance)
                .and_then(|v| self.topo.lbs.get(v.lb));
            lb.is_some_and(|lb| lb.health_check.target.protocol.is_http())
        };
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        let Some(sock) = p.sock.as_mut() else { return };
        loop {
            match p.stage {
                Stage::Idle => return,
                Stage::Connecting => {
                    if !p.ready.writable && !p.ready.readable {
                        return;
                    }
                    match connect_status(sock.tcp()) {
                        Ok(true) if sock.is_tls() => p.stage = Stage::Handshaking,
                        Ok(true) if http => p.stage = Stage::Sending { sent: 0 },
                        Ok(true) => return self.probe_result(key, true, "connected"),
                        Ok(false) => {
                            p.ready = Ready::default();
                            return;
                        }
                        Err(_) => return self.probe_result(key, false, "connect failed"),
                    }
                }
                Stage::Handshaking => match sock.handshake() {
                    Ok(true) if http => {
                        // Readiness spent on the handshake is not signalled again.
                        p.ready.readable = true;
                        p.ready.writable = true;
                        p.stage = Stage::Sending { sent: 0 };
                    }
                    Ok(true) => return self.probe_result(key, true, "handshake done"),
                    Ok(false) => {
                        p.ready = Ready::default();
                        return;
                    }
                    Err(e) => {
                        log::debug!("health probe TLS handshake: {e}");
                        return self.probe_result(key, false, "TLS handshake failed");
                    }
                },
                Stage::Sending { sent } => {
                    let Some(request) = p.buf.as_ref() else {
                        return;
                    };
                    if sent == request.len() {
                        p.stage = Stage::Reading;
                        if let Some(buf) = p.buf.as_mut() {
                            buf.clear();
                        }
                        continue;
                    }
                    if !p.ready.writable {
                        return;
                    }
                    match sock.write(&request.bytes()[sent..]) {
                        Ok(n) if n > 0 => p.stage = Stage::Sending { sent: sent + n },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            p.ready.writable = false;
                            return;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        _ => return self.probe_result(key, false, "request write failed"),
                    }
                }
                Stage::Reading | Stage::AwaitingClose => {
                    if !p.ready.readable {
                        return;
                    }
                    let buf = p.buf.get_or_insert_with(|| self.bufs.get());
                    let eof = match read_some(buf, sock, &mut p.ready) {
                        Ok(ReadOutcome::Data) => false,
                        Ok(ReadOutcome::Blocked) => return,
                        Ok(ReadOutcome::Eof) => true,
                        Err(_) => return self.probe_result(key, false, "read failed"),
                    };
                    if matches!(p.stage, Stage::AwaitingClose) {
                        return match (eof, buf.is_empty()) {
                            (true, true) => self.probe_result(key, true, "200"),
                            (_, false) => self.probe_result(key, false, "body without framing"),
                            (false, true) => {}
                        };
                    }
                    match judge(buf.bytes()) {
                        Verdict::Healthy => return self.probe_result(key, true, "200"),
                        Verdict::Unhealthy(why) => return self.probe_result(key, false, why),
                        Verdict::NeedClose(head_len) => {
                            buf.consume(head_len);
                            p.stage = Stage::AwaitingClose;
                            if eof {
                                let ok = buf.is_empty();
                                return self.probe_result(key, ok, "no framing");
                            }
                        }
                        Verdict::Partial if eof => {
                            return self.probe_result(key, false, "closed early")
                        }
                        Verdict::Partial if buf.len() >= MAX_PROBE_HEAD => {
                            return self.probe_result(key, false, "response head too large")
                        }
                        Verdict::Partial => {}
                    }
                }
            }
        }
    }

    /// Ends the probe in flight and records its result.
    fn probe_result(&mut self, key: usize, ok: bool, detail: &str) {
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        // Spec §12.2: BackendConnectionErrors counts health-check connection errors too.
        let connecting = matches!(p.stage, Stage::Connecting | Stage::Handshaking);
        if !ok && (connecting || detail == "connect failed") {
            let (lb, zone) = super::exchange::stats_slots(&self.topo, p.instance);
            self.settings
                .stats
                .add(lb, zone, crate::stats::Counter::BackendConnectionErrors, 1);
        }
        let Some(p) = self.probes.get_mut(key) else {
            return;
        };
        p.sock = None;
        p.stage = Stage::Idle;
        self.bufs.release(&mut p.buf);
        p.deadline.at = p.next_at;
        let topo = &self.topo;
        let Some(view) = topo.instances.get(p.instance) else {
            return;
        };
        let Some(lb) = topo.lbs.get(view.lb) else {
            return;
        };
        let check = &lb.health_check;
        let before = p.hysteresis.health();
        log::debug!(
            "health probe of {}: {}",
            view.id,
            if ok { "ok" } else { detail }
        );
        if let Some(after) =
            p.hysteresis
                .record(ok, check.healthy_threshold, check.unhealthy_threshold)
        {
            topo.health.set(view.slot, after);
            let addr = topo
                .probe_addr(p.instance)
                .map_or_else(|| "?".to_string(), |a| a.to_string());
            log::info!(
                "instance {} ({addr}) of {}: {} -> {}: {}",
                view.id,
                lb.name,
                before.state(),
                after.state(),
                after.description()
            );
        }
        self.arm_probe(key);
    }
}

enum Verdict {
    Healthy,
    Unhealthy(&'static str),
    /// A 200 whose length is unknown: wait for the close; the number is the head length.
    NeedClose(usize),
    Partial,
}

/// Spec §2.2.2: status 200, and a body only with Content-Length or chunked coding.
fn judge(bytes: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Verdict::Partial,
        Err(_) => return Verdict::Unhealthy("unparsable response"),
    };
    if response.code != Some(200) {
        return Verdict::Unhealthy("status other than 200");
    }
    let mut framed = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if parse_content_length(h.value).is_none() {
                return Verdict::Unhealthy("invalid Content-Length");
            }
            framed = true;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framed |= list_items(h.value)
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        }
    }
    if framed {
        Verdict::Healthy
    } else {
        Verdict::NeedClose(head_len)
    }
}

/// The length of one health-check "second" (tests shorten it; see README).
pub fn health_unit_from_env() -> Duration {
    std::env::var("CLB_HEALTH_TIME_UNIT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_framed_200_is_healthy() {
        assert!(matches!(
            judge(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Verdict::Healthy
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Verdict::Healthy
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 200 OK\r\n\r\n"),
            Verdict::NeedClose(19)
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n"),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            judge(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(judge(b"garbage\r\n\r\n"), Verdict::Unhealthy(_)));
        assert!(matches!(judge(b"HTTP/1.1 200 OK\r\n"), Verdict::Partial));
    }

    #[test]
    fn ownership_spreads_and_is_stable() {
        use crate::config::{HealthCheck, Host, Instance, Listener, LoadBalancer, Protocol};
        let lb = LoadBalancer {
            name: "lb".into(),
            listeners: vec![Listener {
                protocol: Protocol::Http,
                port: 80,
                instance_protocol: Protocol::Http,
                instance_port: 80,
                ssl_certificate_id: None,
            }],
            instances: (0..100)
                .map(|i| Instance {
                    id: format!("i-{i}"),
                    host: Host::Ip([127, 0, 0, 2].into()),
                    port: None,
                    zone: "a".into(),
                })
                .collect(),
            zones: vec!["a".into()],
            cross_zone: true,
            idle_timeout: Duration::from_secs(60),
            health_check: HealthCheck::default_for(80),
            proxy_protocol: Vec::new(),
            desync_mode: Default::default(),
            sticky: None,
            listener_sticky: Vec::new(),
            backend_pins: Vec::new(),
        };
        let topo = Topology::from_load_balancers(&[lb]).unwrap();
        let owners: Vec<usize> = (0..100).map(|i| owner(&topo, i, 2)).collect();
        let zeros = owners.iter().filter(|&&o| o == 0).count();
        assert!((30..=70).contains(&zeros), "{zeros} of 100 on worker 0");
        assert_eq!(
            owners,
            (0..100).map(|i| owner(&topo, i, 2)).collect::<Vec<_>>()
        );
        assert!((0..100).all(|i| owner(&topo, i, 1) == 0));
    }
}
