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

/// One attempt's outcome on one endpoint: try the next endpoint, or stop here.
enum Attempt {
    Next(String),
    Stop(EtcdError),
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

/// A 64-bit integer as the gateway writes it (a string) or as a number; absent is 0
/// (proto3 JSON leaves out zero values).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: &Value, what: &str) -> Result<Vec<u8>, EtcdError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            b64::decode(s).ok_or_else(|| EtcdError::Protocol(format!("{what}: not base64")))
        }
        _ => Err(EtcdError::Protocol(format!("{what}: not a string"))),
    }
}

fn header_revision(answer: &Value) -> Result<i64, EtcdError> {
    match int(&answer["header"]["revision"]) {
        0 => Err(EtcdError::Protocol(format!(
            "answer without a revision: {answer}"
        ))),
        revision => Ok(revision),
    }
}

fn check_error_field(answer: &Value) -> Result<(), EtcdError> {
    match answer["error"].as_str() {
        Some(e) if !e.is_empty() => Err(EtcdError::Protocol(e.to_string())),
        _ => Ok(()),
    }
}

fn parse_kv(v: &Value) -> Result<Kv, EtcdError> {
    let key = bytes(&v["key"], "key")?;
    if key.is_empty() {
        return Err(EtcdError::Protocol("key-value without a key".into()));
    }
    Ok(Kv {
        key,
        value: bytes(&v["value"], "value")?,
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

fn parse_range(answer: &Value) -> Result<(Vec<Kv>, i64), EtcdError> {
    let revision = header_revision(answer)?;
    let kvs = match &answer["kvs"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(parse_kv).collect::<Result<_, _>>()?,
        _ => return Err(EtcdError::Protocol("range: kvs is not a list".into())),
    };
    Ok((kvs, revision))
}

fn txn_body(guards: &[(Vec<u8>, i64)], puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Value {
    let compare: Vec<Value> = guards
        .iter()
        .map(|(key, rev)| {
            json!({"key": b64::encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
        })
        .collect();
    let mut success: Vec<Value> = puts
        .iter()
        .map(|(k, v)| json!({"request_put": {"key": b64::encode(k), "value": b64::encode(v)}}))
        .collect();
    success.extend(
        deletes
            .iter()
            .map(|k| json!({"request_delete_range": {"key": b64::encode(k)}})),
    );
    json!({"compare": compare, "success": success})
}

fn parse_txn(answer: &Value) -> Result<i64, EtcdError> {
    let revision = header_revision(answer)?;
    // proto3 JSON leaves `succeeded: false` out.
    if answer["succeeded"].as_bool() == Some(true) {
        Ok(revision)
    } else {
        Err(EtcdError::Conflict)
    }
}

/// Some(events) for a message that carries events; None for one to skip (the
/// "created" confirmation, a progress notification); an error for a cancelled watch.
fn parse_watch_message(message: &Value) -> Result<Option<Vec<WatchEvent>>, EtcdError> {
    if let Some(error) = message.get("error").filter(|e| !e.is_null()) {
        return Err(classify_stop(500, error.to_string().as_bytes()));
    }
    let result = message.get("result").unwrap_or(message);
    let compact_revision = int(&result["compact_revision"]);
    if compact_revision > 0 {
        return Err(EtcdError::Compacted { compact_revision });
    }
    if result["canceled"].as_bool() == Some(true) {
        let reason = result["cancel_reason"]
            .as_str()
            .unwrap_or("no reason given");
        return Err(EtcdError::Unreachable(format!(
            "watch cancelled by etcd: {reason}"
        )));
    }
    let events = match &result["events"] {
        Value::Array(items) if !items.is_empty() => items,
        _ => return Ok(None),
    };
    let events = events
        .iter()
        .map(|e| {
            let kind = match e["type"].as_str() {
                None | Some("PUT") => WatchKind::Put,
                Some("DELETE") => WatchKind::Delete,
                Some(other) => {
                    return Err(EtcdError::Protocol(format!("watch event type {other}")))
                }
            };
            Ok(WatchEvent {
                kind,
                kv: parse_kv(&e["kv"])?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(events))
}

fn first_object(body: &[u8]) -> Result<Value, EtcdError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match stream.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(EtcdError::Protocol(format!("bad JSON from etcd: {e}"))),
        None => Err(EtcdError::Protocol("empty answer from etcd".into())),
    }
}

/// Takes the first complete JSON value off the front of `buffer`; None until one is whole.
fn take_object(buffer: &mut Vec<u8>) -> Result<Option<Value>, EtcdError> {
    let mut stream = serde_json::Deserializer::from_slice(buffer).into_iter::<Value>();
    match stream.next() {
        Some(Ok(v)) => {
            let used = stream.byte_offset();
            buffer.drain(..used);
            Ok(Some(v))
        }
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(EtcdError::Protocol(format!(
            "bad JSON in watch stream: {e}"
        ))),
        None => {
            buffer.clear(); // only whitespace
            Ok(None)
        }
    }
}

/// What an error answer means: gRPC's Unavailable and DeadlineExceeded (no leader, no
/// quorum, request timed out) are worth another endpoint; the rest are final.
fn classify_error(status: u16, body: &[u8]) -> Attempt {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = parsed
        .get("code")
        .or_else(|| parsed.get("grpc_code"))
        .map(int)
        .unwrap_or(0);
    let message = parsed["message"]
        .as_str()
        .or_else(|| parsed["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    if message.contains("compacted") {
        return Attempt::Stop(EtcdError::Compacted {
            compact_revision: 0,
        });
    }
    let transient = [
        "no leader",
        "timed out",
        "leader changed",
        "not capable",
        "unavailable",
    ];
    if matches!(code, 4 | 14)
        || matches!(status, 502..=504)
        || transient.iter().any(|t| message.contains(t))
    {
        return Attempt::Next(message);
    }
    Attempt::Stop(EtcdError::Protocol(format!("HTTP {status}: {message}")))
}

fn classify_stop(status: u16, body: &[u8]) -> EtcdError {
    match classify_error(status, body) {
        Attempt::Stop(e) => e,
        Attempt::Next(why) => EtcdError::Unreachable(why),
    }
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
