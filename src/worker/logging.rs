//! Access-log lines (`--access-log`, spec §12.1) from the worker's side: one per HTTP
//! request, refused request and TCP/SSL connection, formatted into the worker's own
//! buffer and handed to the log thread in batches (`crate::access_log`).

use super::conn::{Exchange, Response};
use super::tunnel::Tunnel;
use super::{Worker, LOG_BATCH};
use std::time::{Duration, Instant};

/// Access-log lines not yet handed to the log thread, and when they last were.
pub(super) struct LogBatch {
    pub lines: Vec<u8>,
    pub flushed: Instant,
}

impl LogBatch {
    pub fn new() -> LogBatch {
        LogBatch {
            lines: Vec::new(),
            flushed: Instant::now(),
        }
    }
}

impl Worker {
    /// Appends one access-log line (when the log is on); hands the buffer over when full.
    pub(super) fn access_log(&mut self, entry: &crate::access_log::Entry<'_>) {
        if self.settings.access_log.is_none() {
            return;
        }
        crate::access_log::format(entry, &mut self.log.lines);
        if self.log.lines.len() >= LOG_BATCH {
            self.flush_log();
        }
    }

    pub(super) fn flush_log(&mut self) {
        self.log.flushed = self.now;
        if self.log.lines.is_empty() {
            return;
        }
        let lines = std::mem::replace(&mut self.log.lines, Vec::with_capacity(LOG_BATCH));
        if let Some(sender) = &self.settings.access_log {
            let _ = sender.send(crate::access_log::Message::Lines(lines));
        }
    }

    /// The access-log line of a finished (or failed) exchange.
    pub(super) fn log_exchange(&mut self, key: usize, ex: &mut Exchange, elb_status: Option<u16>) {
        let Some(log) = ex.log.take() else { return };
        let Some(c) = self.clients.get(key) else {
            return;
        };
        let topo = self.topo.clone();
        let lb = topo.lb_name_of(c.listener);
        let dispatched = log.backend.map(|_| ex.dispatched);
        let response_bytes = match &ex.response {
            Response::Body { pipe, .. } => pipe.moved,
            Response::AwaitHead => 0,
        };
        let entry = crate::access_log::Entry {
            time: log.time,
            lb,
            client: c.peer,
            backend: log.backend,
            request_processing: dispatched.map(|at| at.saturating_duration_since(log.received)),
            backend_processing: dispatched
                .zip(log.response_head_at)
                .map(|(sent, head)| head.saturating_duration_since(sent)),
            response_processing: log.response_head_at.map(|_| Duration::ZERO),
            elb_status,
            backend_status: log.backend_status,
            received_bytes: ex.request.moved,
            sent_bytes: response_bytes,
            request: Some(&log.request),
            user_agent: Some(&log.user_agent),
            tls: c.sock.tls_names(),
        };
        self.access_log(&entry);
    }

    /// The access-log line of a request clb refused before reading it whole.
    pub(super) fn log_refused(
        &mut self,
        client: std::net::SocketAddr,
        listener: usize,
        status: u16,
    ) {
        let topo = self.topo.clone();
        let lb = topo.lb_name_of(listener);
        self.access_log(&crate::access_log::Entry {
            time: std::time::SystemTime::now(),
            lb,
            client,
            backend: None,
            request_processing: None,
            backend_processing: None,
            response_processing: None,
            elb_status: Some(status),
            backend_status: None,
            received_bytes: 0,
            sent_bytes: 0,
            request: None,
            user_agent: Some("-"),
            tls: None,
        });
    }

    /// The access-log line of a TCP/SSL connection, when it ends (spec §12.1).
    pub(super) fn log_tunnel(&mut self, c: &super::conn::Client, t: &Tunnel) {
        if self.settings.access_log.is_none() {
            return;
        }
        let topo = self.topo.clone();
        let lb = topo.lb_name_of(c.listener);
        let backend = t
            .upstream
            .and_then(|_| topo.backends.get(t.backend))
            .map(|b| b.addr);
        let connected = t
            .upstream
            .and_then(|uk| self.upstreams.get(uk))
            .is_some_and(|u| u.connected);
        let entry = crate::access_log::Entry {
            time: self.wall_clock(t.connecting_since),
            lb,
            client: c.peer,
            backend: backend.filter(|_| connected),
            request_processing: None,
            backend_processing: None,
            response_processing: None,
            elb_status: None,
            backend_status: None,
            received_bytes: t.up.moved,
            sent_bytes: t.down.moved,
            request: None,
            user_agent: None,
            tls: c.sock.tls_names(),
        };
        self.access_log(&entry);
    }
}
