//! Desync mitigation end to end (issue 7; spec §10): every case of the classifier's
//! published corpus (the YAML files shipped in the `http_desync_guardian` crate, 159
//! requests) is sent as raw bytes through a running clb in each mode, and the test checks
//! what reached the instance (nothing, or exactly one request with clean framing) and
//! what the client got (400 and a close when blocked; the instance's answer otherwise,
//! then a close when defensive mode saw an Ambiguous request). Then the classic smuggling
//! shapes, none of which may ever put a second request on an instance connection.
//!
//! The instance is a [`Recorder`]: it keeps every byte each connection sent, reads
//! requests with a strict parser that shares no code with clb's, and answers `200 ok`.
//! Every corpus case, in every mode, checks the forwarded bytes' framing with it: the
//! body the instance reads is exactly the body clb read from the client.

mod common;

use clb::buffer::BufPool;
use clb::fuzzing::strict_http::Framing;
use clb::http::desync::{Mode, Tier};
use clb::http::framing::Body;
use clb::http::request::{self, Forwarding, HeadError, Parse};
use common::recorder::{clb_before, strict_requests, Recorder};
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use yaml_rust2::{Yaml, YamlLoader};

const SOON: Duration = Duration::from_secs(5);
const MODES: [Mode; 3] = [Mode::Monitor, Mode::Defensive, Mode::Strictest];

// ---------------------------------------------------------------- the corpus

struct Case {
    file: String,
    name: String,
    raw: Vec<u8>,
    tier: Tier,
}

/// The crate's `tests/` folder in cargo's registry (the crate is a dependency of clb).
fn corpus_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = home.join("registry").join("src");
    let entries =
        std::fs::read_dir(&registry).unwrap_or_else(|e| panic!("{}: {e}", registry.display()));
    for index in entries.flatten() {
        let dir = index
            .path()
            .join("http_desync_guardian-0.1.3")
            .join("tests");
        if dir.is_dir() {
            return dir;
        }
    }
    panic!(
        "http_desync_guardian-0.1.3/tests not found under {}",
        registry.display()
    );
}

/// The library harness's own escape decoding (`\xNN` becomes the char U+00NN).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        out.push(match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                char::from(u8::from_str_radix(&hex, 16).expect("\\x escape"))
            }
            Some('b') => '\x08',
            Some('f') => '\x0c',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some(other) => other,
            None => panic!("escape at the end of {s:?}"),
        });
    }
    out
}

fn text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => unescape(s),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => String::new(),
        other => panic!("unexpected YAML value {other:?}"),
    }
}

fn tier(name: &str) -> Tier {
    match name {
        "Compliant" => Tier::Compliant,
        "Acceptable" => Tier::Acceptable,
        "Ambiguous" => Tier::Ambiguous,
        "Severe" => Tier::Severe,
        other => panic!("unknown tier {other}"),
    }
}

/// Every case, its raw request built as the library's harness builds it.
fn corpus() -> Vec<Case> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let source = std::fs::read_to_string(&path).expect("read corpus file");
        let docs = YamlLoader::load_from_str(&source).expect("corpus YAML");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for case in docs.first().and_then(Yaml::as_vec).into_iter().flatten() {
            let mut raw = format!(
                "{} {} {}\r\n",
                text(&case["method"]),
                text(&case["uri"]),
                text(&case["version"])
            );
            let headers = case["headers"].as_vec().cloned().unwrap_or_default();
            // clb answers an HTTP/1.1 request without Host with 400 (RFC 9112 §3.2); the
            // corpus leaves Host out, and a Host header is Compliant for the classifier.
            if !headers
                .iter()
                .any(|h| text(&h["name"]).eq_ignore_ascii_case("host"))
            {
                raw.push_str("Host: clb.test\r\n");
            }
            for h in &headers {
                raw.push_str(&format!("{}: {}\r\n", text(&h["name"]), text(&h["value"])));
            }
            raw.push_str("\r\n");
            cases.push(Case {
                file: file.clone(),
                name: text(&case["name"]),
                raw: raw.into_bytes(),
                tier: tier(&text(&case["expected"]["tier"])),
            });
        }
    }
    cases
}

// ---------------------------------------------------------------- clb's own reading

fn fwd(mode: Mode) -> Forwarding {
    Forwarding {
        client_ip: [127, 0, 0, 1].into(),
        local_ip: [127, 0, 0, 1].into(),
        listener_port: 80,
        scheme: "http",
        desync: mode,
    }
}

/// What clb should do with `raw` in `mode`: `None` when it answers 400 itself, else the
/// body framing it will use and whether both connections close afterwards.
fn expected(raw: &[u8], mode: Mode) -> Option<(Body, bool)> {
    let mut out = BufPool::new(1).get();
    match request::forward_head(raw, &fwd(mode), &mut out) {
        Ok(Parse::Complete(info)) => Some((info.body, info.close_after)),
        Ok(Parse::Partial) => panic!("incomplete corpus request {raw:?}"),
        Err(HeadError::Desync(_) | HeadError::Malformed(_)) => None,
        Err(other) => panic!("unexpected refusal {other:?} of {raw:?}"),
    }
}

/// A body that matches clb's framing, so clb has a whole request to forward.
fn body_for(body: Body) -> Vec<u8> {
    match body {
        Body::Done => Vec::new(),
        Body::Length(n) => vec![b'b'; n as usize],
        _ => b"3\r\nabc\r\n0\r\n\r\n".to_vec(),
    }
}

// ---------------------------------------------------------------- the instance

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- the client

struct Answer {
    status: u16,
    /// The connection was closed after the answer.
    closed: bool,
}

/// Sends `raw` on a new connection and reads one answer and whether clb then closes.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(SOON)).unwrap();
    conn.write_all(raw).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer: a head and its Content-Length body.
    let (status, total) = loop {
        let n = conn.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&got, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let length = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            // A HEAD answer has no body whatever its Content-Length says.
            let length = if raw.starts_with(b"HEAD ") { 0 } else { length };
            break (status, end + 4 + length);
        }
        assert!(
            n > 0,
            "no answer to {:?}: {:?}",
            String::from_utf8_lossy(raw),
            got
        );
    };
    while got.len() < total {
        let n = conn.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "answer cut short");
        got.extend_from_slice(&buf[..n]);
    }
    // Closed: EOF arrives at once. Kept: nothing comes, the short poll times out.
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let closed = matches!(conn.read(&mut buf), Ok(0)) || got.len() > total;
    let _ = conn.shutdown(Shutdown::Both);
    Answer { status, closed }
}

fn start_clb(mode: Mode, instance: &Recorder) -> Clb {
    clb_before(mode.as_str(), instance)
}

/// Sends `raw` (plus the body clb's framing wants) through `clb` and checks the outcome:
/// `Err` describes a mismatch.
fn check_case(clb: &Clb, instance: &Recorder, mode: Mode, raw: &[u8]) -> Result<(), String> {
    let before = instance.received();
    let plan = expected(raw, mode);
    let mut wire = raw.to_vec();
    if let Some((body, _)) = plan {
        wire.extend(body_for(body));
    }
    let answer = exchange(clb.addr, &wire);
    match plan {
        None => {
            if answer.status != 400 || !answer.closed {
                return Err(format!(
                    "expected 400 and a close, got {} (closed: {})",
                    answer.status, answer.closed
                ));
            }
            let new = instance.since(&before);
            if !new.is_empty() {
                return Err(format!("a refused request reached the instance: {new:?}"));
            }
        }
        Some((body, close_after)) => {
            if answer.status != 200 {
                return Err(format!(
                    "expected the instance's 200, got {}",
                    answer.status
                ));
            }
            if answer.closed != close_after {
                return Err(format!(
                    "client connection closed: {} (expected {close_after})",
                    answer.closed
                ));
            }
            // The instance answered, so the request is recorded: exactly one, on one
            // connection, framed cleanly, nothing after it.
            let new = instance.since(&before);
            let [delta] = new.as_slice() else {
                return Err(format!(
                    "expected one request on one connection, got {new:?}"
                ));
            };
            one_clean_request(delta, body)?;
        }
    }
    Ok(())
}

/// `bytes` is exactly one request, read by a strict parser that shares no code with
/// clb's: the framing it finds is the framing clb read the client's body with, the body
/// it reads is the one the client sent, and nothing follows.
fn one_clean_request(bytes: &[u8], body: Body) -> Result<(), String> {
    let requests = strict_requests(bytes)?;
    let [request] = requests.as_slice() else {
        return Err(format!("the instance read {} requests", requests.len()));
    };
    // The payload of `body_for(body)`.
    let payload = match body {
        Body::Length(_) => body_for(body),
        Body::Chunked(_) => b"abc".to_vec(),
        _ => Vec::new(),
    };
    let framing_matches = match (body, request.framing) {
        (Body::Done, Framing::None | Framing::Length(0)) => true,
        (Body::Length(n), Framing::Length(m)) => n == m,
        (Body::Chunked(_), Framing::Chunked) => true,
        _ => false,
    };
    if !framing_matches {
        return Err(format!(
            "clb read the body as {body:?}, the instance as {:?}",
            request.framing
        ));
    }
    if request.payload != payload {
        return Err(format!(
            "the instance read the body {:?}, not {:?}",
            String::from_utf8_lossy(&request.payload),
            String::from_utf8_lossy(&payload)
        ));
    }
    Ok(())
}

#[test]
fn the_corpus_has_its_159_cases_and_clb_classifies_them_as_the_library_does() {
    let cases = corpus();
    assert_eq!(cases.len(), 159, "corpus size");
    let mut by_tier: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_by_framing = Vec::new();
    let mut mismatched = Vec::new();
    for case in &cases {
        *by_tier.entry(format!("{:?}", case.tier)).or_default() += 1;
        // Defensive blocks only Severe: anything else refused is clb's own framing rule.
        if expected(&case.raw, Mode::Defensive).is_none() && case.tier != Tier::Severe {
            refused_by_framing.push(format!("{}: {} ({:?})", case.file, case.name, case.tier));
        }
        // A stricter mode never lets through what a laxer one refuses.
        let outcomes: Vec<bool> = MODES
            .iter()
            .map(|m| expected(&case.raw, *m).is_some())
            .collect();
        assert!(
            outcomes[0] >= outcomes[1] && outcomes[1] >= outcomes[2],
            "{}",
            case.name
        );
        // Where clb reads the head, its verdict is the corpus's.
        let mut out = BufPool::new(1).get();
        if let Ok(Parse::Complete(info)) =
            request::forward_head(&case.raw, &fwd(Mode::Monitor), &mut out)
        {
            if info.verdict.tier != case.tier {
                mismatched.push(format!(
                    "{}: {}: clb {:?}/{:?}, corpus {:?}",
                    case.file, case.name, info.verdict.tier, info.verdict.reason, case.tier
                ));
            }
        }
        // Every Severe request is refused in every mode but monitor.
        if case.tier == Tier::Severe {
            assert!(
                !outcomes[1] && !outcomes[2],
                "Severe {} forwarded",
                case.name
            );
        }
    }
    println!("corpus by tier: {by_tier:?}");
    println!(
        "refused by clb's framing rules although the class allows them ({}):\n{}",
        refused_by_framing.len(),
        refused_by_framing.join("\n")
    );
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

#[test]
fn every_corpus_case_through_clb_in_every_mode() {
    let cases = corpus();
    let instance = Recorder::start("127.0.0.2");
    let mut failures = Vec::new();
    for mode in MODES {
        let clb = start_clb(mode, &instance);
        for case in &cases {
            if let Err(why) = check_case(&clb, &instance, mode, &case.raw) {
                failures.push(format!("{mode:?} {}: {}: {why}", case.file, case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn classic_smuggling_shapes_never_reach_a_pooled_connection_twice() {
    let shapes: [&[u8]; 9] = [
        // CL.TE
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
        // TE.CL
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // TE.TE, obfuscated
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd",
        // Duplicate CL
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
        // Chunk size overflow
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabcd\r\n0\r\n\r\n",
        // Bare LF and obs-fold
        b"POST / HTTP/1.1\nHost: a\nContent-Length: 4\n\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\nabcd",
        // TE on HTTP/1.0
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ];
    let instance = Recorder::start("127.0.0.2");
    for mode in MODES {
        let clb = start_clb(mode, &instance);
        for shape in shapes {
            let before = instance.received();
            let mut conn = TcpStream::connect(clb.addr).unwrap();
            conn.set_read_timeout(Some(SOON)).unwrap();
            conn.write_all(shape).unwrap();
            // A follow-up request on the same client connection, in case the first left bytes.
            let _ = conn.write_all(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut got = Vec::new();
            let deadline = Instant::now() + SOON;
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.windows(4).filter(|w| w == b"\r\n\r\n").count() >= 2 {
                    break;
                }
            }
            drop(conn);
            // Let any forwarded bytes land, then check every instance connection holds
            // whole requests with clean framing and nothing smuggled.
            assert!(wait_until(SOON, || instance.received().len() >= before.len()));
            for delta in instance.since(&before) {
                if let Err(why) = only_sent_requests(&delta) {
                    panic!("{mode:?} {:?}: {why}", String::from_utf8_lossy(shape));
                }
            }
        }
    }
}

/// An instance connection's bytes are whole requests the client meant to send (`POST /`
/// or `GET /second`), each read by a strict parser with one clean framing, back to back.
fn only_sent_requests(bytes: &[u8]) -> Result<(), String> {
    for request in strict_requests(bytes)? {
        let line = (request.method.as_slice(), request.target.as_slice());
        if !matches!(line, (b"POST", b"/") | (b"GET", b"/second")) {
            return Err(format!(
                "a request the client never sent: {} {}",
                String::from_utf8_lossy(line.0),
                String::from_utf8_lossy(line.1)
            ));
        }
    }
    Ok(())
}
