//! Fuzz entry points. The cargo-fuzz targets in `fuzz/` are one-line wrappers around
//! these, and `tests/fuzz_corpus.rs` replays every corpus file through them on stable,
//! so the invariants are checked in ordinary CI too.

use crate::http::request::{self, Forwarding, Parse};
use crate::worker::buffer::BufPool;

/// Request head parse + classify + rewrite, in every desync mode. Invariants: no panic;
/// a head that is accepted is rewritten into a head that parses again, completely, as
/// HTTP/1.1, with the client address in X-Forwarded-For and no hop-by-hop header left;
/// a stricter mode never accepts what a laxer one refuses; every mode frames an accepted
/// request the same way; and nothing but a blocked class differs between modes.
pub fn request_head(data: &[u8]) {
    use crate::http::desync::Mode;
    let mut outcomes = Vec::with_capacity(3);
    for mode in [Mode::Monitor, Mode::Defensive, Mode::Strictest] {
        let fwd = Forwarding {
            client_ip: [192, 0, 2, 1].into(),
            local_ip: [127, 0, 0, 1].into(),
            listener_port: 8080,
            scheme: "http",
            desync: mode,
        };
        let mut out = BufPool::new(1).get();
        let result = request::forward_head(data, &fwd, &mut out);
        if let Ok(Parse::Complete(info)) = result {
            check_rewritten(data, &info, out.bytes());
        }
        outcomes.push(result);
    }
    let accepted = |r: &Result<Parse<request::RequestInfo>, request::HeadError>| {
        matches!(r, Ok(Parse::Complete(_)))
    };
    // Monitor ⊇ defensive ⊇ strictest.
    assert!(accepted(&outcomes[0]) || !accepted(&outcomes[1]));
    assert!(accepted(&outcomes[1]) || !accepted(&outcomes[2]));
    let framed: Vec<_> = outcomes
        .iter()
        .filter_map(|r| match r {
            Ok(Parse::Complete(info)) => Some((info.head_len, info.body, info.verdict)),
            _ => None,
        })
        .collect();
    assert!(
        framed.windows(2).all(|w| w[0] == w[1]),
        "modes frame differently"
    );
}

fn check_rewritten(data: &[u8], info: &request::RequestInfo, out: &[u8]) {
    assert!(info.head_len <= data.len());
    let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS + 4];
    let mut again = httparse::Request::new(&mut headers);
    match again.parse(out) {
        Ok(httparse::Status::Complete(n)) => {
            assert_eq!(n, out.len(), "rewritten head has trailing bytes")
        }
        other => panic!("rewritten head does not parse: {other:?}"),
    }
    assert_eq!(again.version, Some(1));
    let names = || again.headers.iter().map(|h| h.name.to_ascii_lowercase());
    assert!(names().any(|n| n == "x-forwarded-for"));
    assert!(names().all(|n| n != "connection" && n != "keep-alive" && n != "upgrade"));
    assert_eq!(names().filter(|n| n == "host").count(), 1);
}

/// Query/form parameters of the API. Invariants: no panic; an accepted request has at
/// most the documented number of parameters, and every list accessor stays in bounds.
pub fn api_query(data: &[u8]) {
    use crate::control::query;
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (q, body) = data.split_at(split);
    let Ok(params) = query::parse(q, body.get(1..).unwrap_or(&[])) else {
        return;
    };
    assert!(params.len() <= query::MAX_PARAMS);
    let _ = (params.action(), params.version());
    for prefix in [
        "Listeners",
        "Instances",
        "LoadBalancerNames",
        "Tags",
        "LoadBalancerAttributes.AdditionalAttributes",
    ] {
        assert!(params.members(prefix).len() <= query::MAX_PARAMS);
        for m in params.member_structs(prefix) {
            let _ = (
                m.get("Key"),
                m.bool("Enabled"),
                m.u32("InstancePort"),
                m.members("PolicyNames"),
            );
        }
    }
}

/// SigV4: Authorization parsing and canonicalisation of arbitrary requests. Invariant: a
/// request signed by `sign` verifies, whatever its path, query, headers and body.
pub fn sigv4(data: &[u8]) {
    use crate::control::sigv4::{self, Credentials, SignedRequest};
    let _ = sigv4::parse_authorization(data);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (path, query, body) = (
        parts.next().unwrap_or("/"),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let creds = Credentials {
        access_key_id: "AKIDFUZZ".into(),
        secret: "secret".into(),
    };
    let amz_date = "20260101T000000Z";
    let base = [
        ("Host", &b"127.0.0.1:9900"[..]),
        ("X-Amz-Date", amz_date.as_bytes()),
    ];
    let unsigned = SignedRequest {
        method: "POST",
        path,
        query,
        headers: &base,
        body: body.as_bytes(),
    };
    let _ = sigv4::canonical_request(&unsigned, "host;x-amz-date", false);
    let Ok(authorization) =
        sigv4::sign(&unsigned, &creds, "us-east-1", amz_date, "host;x-amz-date")
    else {
        return;
    };
    let headers = [
        base[0],
        base[1],
        ("Authorization", authorization.as_bytes()),
    ];
    let signed = SignedRequest {
        headers: &headers,
        ..unsigned
    };
    let secs = sigv4::parse_amz_date(amz_date).unwrap_or(0);
    let now =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    assert_eq!(
        sigv4::verify(&signed, &creds, now),
        Ok(()),
        "a signed request must verify"
    );
}

/// The state file. Invariant: whatever decodes encodes to text that decodes the same.
pub fn state_file(data: &[u8]) {
    use crate::control::state::{decode, encode};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lbs) = decode(text) else { return };
    let again = decode(&encode(&lbs)).unwrap_or_else(|e| panic!("re-decoding failed: {e}"));
    assert_eq!(encode(&again), encode(&lbs));
}

/// Flag value parsers: listener, instance and health-check target specs, and the
/// command line as a whole. Invariant: no panic, and accepted values print back parseably.
pub fn flag_specs(data: &[u8]) {
    use crate::config::{parse_health_target, parse_instance, parse_listener, parse_zones};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_listener(text);
    let _ = parse_instance(text);
    let _ = parse_zones(text);
    if let Ok(target) = parse_health_target(text) {
        assert_eq!(parse_health_target(&target.to_string()), Ok(target));
    }
    let args: Vec<String> = text.split(' ').map(String::from).collect();
    let _ = crate::cli::parse(&args);
}

/// Chunked decoding and response heads. Invariant: the decoder accounts for every byte
/// exactly once and never claims more than it was given, in any split.
pub fn chunked_and_response(data: &[u8]) {
    use crate::http::chunked::ChunkedDecoder;
    let split = data.first().map_or(1, |&b| b as usize % 7 + 1);
    let mut decoder = ChunkedDecoder::new();
    let mut used = 0;
    'outer: for piece in data.chunks(split) {
        let mut rest = piece;
        while !rest.is_empty() && !decoder.is_done() {
            match decoder.next_run(rest) {
                Ok(run) if run.len == 0 => break 'outer,
                Ok(run) => {
                    assert!(run.len <= rest.len());
                    used += run.len;
                    rest = &rest[run.len..];
                }
                Err(_) => break 'outer,
            }
        }
    }
    assert!(used <= data.len());
    let req = crate::http::request::RequestInfo {
        head_len: 0,
        http10: data.len().is_multiple_of(2),
        keep_alive: true,
        is_head: data.len().is_multiple_of(3),
        idempotent: true,
        body: crate::http::framing::Body::Done,
        expect_continue: false,
        close_after: false,
        verdict: crate::http::desync::Verdict::COMPLIANT,
    };
    let mut out = BufPool::new(1).get();
    if let Ok(Parse::Complete(info)) = crate::http::response::forward_head(data, &req, &mut out) {
        assert!(info.head_len <= data.len());
        assert!(out.bytes().ends_with(b"\r\n\r\n") || (info.informational && !info.forwarded));
    }
}

/// PROXY protocol: parse arbitrary bytes; encode what parsed and read it back the same.
pub fn proxy_protocol(data: &[u8]) {
    use crate::tcp::proxy_protocol::{canonical, encode, parse};
    let Ok(header) = parse(data) else { return };
    assert!(header.len <= data.len());
    if let Some((source, destination)) = header.addresses {
        let mut out = Vec::new();
        encode(header.version, source, destination, &mut out);
        let again = parse(&out).unwrap_or_else(|e| panic!("re-parse failed: {e:?}"));
        assert_eq!(again.len, out.len());
        // The encoder writes IPv4-mapped IPv6 addresses as IPv4.
        let (source, destination) = (canonical(source), canonical(destination));
        if source.is_ipv4() == destination.is_ipv4() {
            assert_eq!(again.addresses, Some((source, destination)));
        }
    }
}
