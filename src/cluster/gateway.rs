//! What etcd's v3 JSON gateway sends and expects: request bodies built and answers
//! read as `serde_json::Value` (keys and values base64, 64-bit integers as strings,
//! zero values left out as proto3 JSON does), and which error answers are worth
//! another endpoint. No I/O here: the tests run on canned etcd 3.4 answers.

use super::b64;
use super::etcd::{EtcdError, Kv, WatchEvent, WatchKind};
use serde_json::{json, Value};

/// One attempt's outcome on one endpoint: try the next endpoint, or stop here.
pub(super) enum Attempt {
    Next(String),
    Stop(EtcdError),
}

/// A 64-bit integer as the gateway writes it (a string) or as a number; absent is 0
/// (proto3 JSON leaves out zero values).
pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn bytes(v: &Value, what: &str) -> Result<Vec<u8>, EtcdError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            b64::decode(s).ok_or_else(|| EtcdError::Protocol(format!("{what}: not base64")))
        }
        _ => Err(EtcdError::Protocol(format!("{what}: not a string"))),
    }
}

pub(super) fn header_revision(answer: &Value) -> Result<i64, EtcdError> {
    match int(&answer["header"]["revision"]) {
        0 => Err(EtcdError::Protocol(format!(
            "answer without a revision: {answer}"
        ))),
        revision => Ok(revision),
    }
}

pub(super) fn check_error_field(answer: &Value) -> Result<(), EtcdError> {
    match answer["error"].as_str() {
        Some(e) if !e.is_empty() => Err(EtcdError::Protocol(e.to_string())),
        _ => Ok(()),
    }
}

pub(super) fn parse_kv(v: &Value) -> Result<Kv, EtcdError> {
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

pub(super) fn parse_range(answer: &Value) -> Result<(Vec<Kv>, i64), EtcdError> {
    let revision = header_revision(answer)?;
    let kvs = match &answer["kvs"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(parse_kv).collect::<Result<_, _>>()?,
        _ => return Err(EtcdError::Protocol("range: kvs is not a list".into())),
    };
    Ok((kvs, revision))
}

pub(super) fn txn_body(
    guards: &[(Vec<u8>, i64)],
    puts: &[(Vec<u8>, Vec<u8>)],
    deletes: &[Vec<u8>],
) -> Value {
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

pub(super) fn parse_txn(answer: &Value) -> Result<i64, EtcdError> {
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
pub(super) fn parse_watch_message(message: &Value) -> Result<Option<Vec<WatchEvent>>, EtcdError> {
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

pub(super) fn first_object(body: &[u8]) -> Result<Value, EtcdError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match stream.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(EtcdError::Protocol(format!("bad JSON from etcd: {e}"))),
        None => Err(EtcdError::Protocol("empty answer from etcd".into())),
    }
}

/// Takes the first complete JSON value off the front of `buffer`; None until one is whole.
pub(super) fn take_object(buffer: &mut Vec<u8>) -> Result<Option<Value>, EtcdError> {
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
pub(super) fn classify_error(status: u16, body: &[u8]) -> Attempt {
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

pub(super) fn classify_stop(status: u16, body: &[u8]) -> EtcdError {
    match classify_error(status, body) {
        Attempt::Stop(e) => e,
        Attempt::Next(why) => EtcdError::Unreachable(why),
    }
}
