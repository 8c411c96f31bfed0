//! A blocking etcd v3 client over etcd's documented JSON gateway (`POST /v3/kv/range`
//! and friends, keys and values in base64, 64-bit integers as JSON strings).
//!
//! Why not gRPC: the gRPC crates need an async runtime (tokio) that clb does not have
//! and a build that takes minutes on two cores; the gateway is the same API over plain
//! HTTP/1.1. The client is blocking and meant for the control thread (one round trip,
//! bounded by the timeout) and for helper threads (watch, lease keep-alive); nothing
//! here may run in a worker loop.
//!
//! Endpoints are tried in turn, starting with the last one that answered; an endpoint
//! that refuses, times out, or says it has no leader is skipped, and only when every
//! one failed is the error `Unreachable`. A write retried on a second endpoint after a
//! timeout may have been applied by the first: `put` and `delete` are idempotent, and a
//! `txn` guarded by mod revisions then answers `Conflict`, which the caller re-reads.

use super::gateway::{
    check_error_field, classify_error, first_object, header_revision, int, parse_range, parse_txn,
    parse_watch_message, take_object, txn_body, Attempt,
};
use super::{b64, http};
use serde_json::{json, Value};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Etcd {
    /// `host:port` of each endpoint, in the order given.
    endpoints: Vec<String>,
    timeout: Duration,
    /// The endpoint that answered last: tried first next time.
    preferred: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub lease: i64,
}

/// Another client on the same endpoints, for another thread, starting from the endpoint
/// that answered last.
impl Clone for Etcd {
    fn clone(&self) -> Etcd {
        Etcd {
            endpoints: self.endpoints.clone(),
            timeout: self.timeout,
            preferred: AtomicUsize::new(self.preferred.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No endpoint answered (refused, timed out, no leader, no quorum); says why, per endpoint.
    Unreachable(String),
    /// The revision asked for is older than etcd's compaction (0 when etcd did not say which).
    Compacted { compact_revision: i64 },
    /// A `txn` guard no longer held: someone else wrote first.
    Conflict,
    /// etcd (or whatever answered) said something this client does not understand or
    /// refused the request; retrying it elsewhere would not help.
    Protocol(String),
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable(why) => write!(f, "etcd unreachable: {why}"),
            EtcdError::Compacted { compact_revision } => {
                write!(
                    f,
                    "etcd revision compacted (compact revision {compact_revision})"
                )
            }
            EtcdError::Conflict => f.write_str("etcd transaction conflict"),
            EtcdError::Protocol(why) => write!(f, "etcd protocol error: {why}"),
        }
    }
}

impl std::error::Error for EtcdError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchKind,
    /// For a delete: the key and the revision of the deletion; value empty.
    pub kv: Kv,
}

impl Etcd {
    /// `endpoints` as given to `--cluster`: `http://host:port` each. Nothing is contacted yet.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Etcd, EtcdError> {
        let parsed = endpoints
            .iter()
            .map(|e| http::parse_endpoint(e).map_err(EtcdError::Protocol))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(EtcdError::Protocol("no etcd endpoint given".into()));
        }
        Ok(Etcd {
            endpoints: parsed,
            timeout,
            preferred: AtomicUsize::new(0),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Every key under `prefix`, in key order, and the store's revision they are read at.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), EtcdError> {
        let body =
            json!({"key": b64::encode(prefix), "range_end": b64::encode(&prefix_end(prefix))});
        parse_range(&self.call("/v3/kv/range", &body)?)
    }

    /// One key (None when absent) and the store's revision.
    pub fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), EtcdError> {
        let (mut kvs, revision) =
            parse_range(&self.call("/v3/kv/range", &json!({"key": b64::encode(key)}))?)?;
        Ok((kvs.pop(), revision))
    }

    /// Returns the revision of the write.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let body = json!({"key": b64::encode(key), "value": b64::encode(value), "lease": lease.to_string()});
        header_revision(&self.call("/v3/kv/put", &body)?)
    }

    /// Returns the revision after the delete (deleting an absent key is not an error).
    pub fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        header_revision(&self.call("/v3/kv/deleterange", &json!({"key": b64::encode(key)}))?)
    }

    /// Puts and deletes applied only if every `(key, mod_revision)` guard still holds
    /// (mod_revision 0: key absent); Err(Conflict) otherwise. Returns the new revision.
    pub fn txn(
        &self,
        guards: &[(Vec<u8>, i64)],
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<i64, EtcdError> {
        parse_txn(&self.call("/v3/kv/txn", &txn_body(guards, puts, deletes))?)
    }

    pub fn lease_grant(&self, ttl_seconds: i64) -> Result<i64, EtcdError> {
        let answer = self.call(
            "/v3/lease/grant",
            &json!({"TTL": ttl_seconds.to_string(), "ID": "0"}),
        )?;
        check_error_field(&answer)?;
        match int(&answer["ID"]) {
            0 => Err(EtcdError::Protocol("lease grant without an ID".into())),
            id => Ok(id),
        }
    }

    /// Ok(Some(ttl left)) or Ok(None) when the lease is gone.
    pub fn lease_keepalive(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        let result = answer.get("result").unwrap_or(&answer);
        Ok(Some(int(&result["TTL"])).filter(|&ttl| ttl > 0))
    }

    /// Revoking a lease that is already gone is not an error.
    pub fn lease_revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()})) {
            Err(EtcdError::Protocol(why)) if why.contains("lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// A blocking stream of changes under `prefix` from `start_revision`; each call to
    /// `next()` returns the next batch.
    pub fn watch(&self, prefix: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({"create_request": {
            "key": b64::encode(prefix),
            "range_end": b64::encode(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }})
        .to_string();
        self.each_endpoint(|endpoint| {
            let mut response = http::post(endpoint, "/v3/watch", body.as_bytes(), self.timeout)
                .map_err(io_attempt)?;
            if response.status != 200 {
                response.read_to_end().map_err(io_attempt)?;
                return Err(classify_error(response.status, &response.body));
            }
            Ok(Watch { response })
        })
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = body.to_string();
        self.each_endpoint(|endpoint| {
            let mut response =
                http::post(endpoint, path, body.as_bytes(), self.timeout).map_err(io_attempt)?;
            response.read_to_end().map_err(io_attempt)?;
            if response.status != 200 {
                return Err(classify_error(response.status, &response.body));
            }
            let answer = first_object(&response.body).map_err(Attempt::Stop)?;
            if let Some(error) = answer.get("error").filter(|e| e.is_object()) {
                // A streaming endpoint reports its error inside a 200 answer.
                return Err(classify_error(500, error.to_string().as_bytes()));
            }
            Ok(answer)
        })
    }

    fn each_endpoint<T>(
        &self,
        mut attempt: impl FnMut(&str) -> Result<T, Attempt>,
    ) -> Result<T, EtcdError> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.endpoints[index];
            match attempt(endpoint) {
                Ok(value) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(Attempt::Next(why)) => failures.push(format!("{endpoint}: {why}")),
                Err(Attempt::Stop(e)) => return Err(e),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

pub struct Watch {
    response: http::Response,
}

impl Watch {
    /// The next batch of events. Ok(empty) when nothing arrived within the client's
    /// timeout: the caller may check whether to stop, then call again. Err(Compacted)
    /// when the start revision is older than etcd's compaction (reload and watch again);
    /// Err(Unreachable) when the stream broke.
    // Not an Iterator: a batch can be empty (idle) and errors end nothing by themselves;
    // the name is the one the shared plan gave the other branches.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Vec<WatchEvent>, EtcdError> {
        loop {
            while let Some(message) = take_object(&mut self.response.body)? {
                if let Some(events) = parse_watch_message(&message)? {
                    return Ok(events);
                }
            }
            if self.response.is_done() {
                return Err(EtcdError::Unreachable("watch stream ended".into()));
            }
            match self.response.read_more() {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(EtcdError::Protocol(e.to_string()))
                }
                Err(e) => return Err(EtcdError::Unreachable(format!("watch: {e}"))),
            }
        }
    }
}

fn io_attempt(e: io::Error) -> Attempt {
    if e.kind() == io::ErrorKind::InvalidData {
        Attempt::Stop(EtcdError::Protocol(e.to_string()))
    } else {
        Attempt::Next(e.to_string())
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range_end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

#[cfg(test)]
#[path = "etcd_tests.rs"]
mod tests;

impl Etcd {
    /// Creates `key` bound to `lease` only if it is absent; Err(Conflict) when it exists.
    /// Membership's "one live node per name" (`crate::cluster::members`).
    pub fn create_leased(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let body = json!({
            "compare": [{"key": b64::encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64::encode(key), "value": b64::encode(value), "lease": lease.to_string()}}],
        });
        parse_txn(&self.call("/v3/kv/txn", &body)?)
    }
}
