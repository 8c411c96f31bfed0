//! Fuzz entry points. The cargo-fuzz targets in `fuzz/` are one-line wrappers around
//! these, and `tests/fuzz_corpus.rs` replays every corpus file through them on stable,
//! so the invariants are checked in ordinary CI too.

use crate::buffer::BufPool;
use crate::http::request::{self, Forwarding, Parse};

mod dns;
pub mod strict_http;
pub use dns::dns_query;

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

/// Differential framing, on both sides of clb. In: clb's reading of a request (head
/// length, body framing, where a chunked body ends) against a reference built from
/// httparse alone and RFC 9112's rules, written independently here; whatever clb
/// forwards, the reference frames identically, and whatever the reference finds
/// ambiguous, clb refuses. Out: the bytes clb forwards (its rewritten head, then the body
/// as the worker passes it on) read by [`strict_http`], a strict parser sharing no code
/// with clb's; they must be one clean request whose body is exactly the body clb read,
/// in every desync mode.
pub fn request_framing(data: &[u8]) {
    use crate::http::desync::Mode;
    for mode in [Mode::Monitor, Mode::Defensive, Mode::Strictest] {
        request_framing_in(data, mode);
    }
}

fn request_framing_in(data: &[u8], mode: crate::http::desync::Mode) {
    use crate::http::framing::Body;
    let fwd = Forwarding {
        client_ip: [192, 0, 2, 1].into(),
        local_ip: [127, 0, 0, 1].into(),
        listener_port: 8080,
        scheme: "http",
        desync: mode,
    };
    let mut out = BufPool::new(1).get();
    let Ok(Parse::Complete(info)) = request::forward_head(data, &fwd, &mut out) else {
        return;
    };
    check_forwarded(data, &info, out.bytes());
    let reference = reference_framing(data)
        .unwrap_or_else(|why| panic!("clb forwarded a request the reference refuses: {why}"));
    assert_eq!(info.head_len, reference.0, "head length");
    match (info.body, reference.1) {
        (Body::Done, RefBody::None) => {}
        (Body::Length(n), RefBody::Length(m)) => assert_eq!(n, m, "Content-Length"),
        (Body::Chunked(mut decoder), RefBody::Chunked) => {
            let body = &data[info.head_len..];
            let mut at = 0;
            while at < body.len() && !decoder.is_done() {
                match decoder.next_run(&body[at..]) {
                    Ok(run) if run.len == 0 => break,
                    Ok(run) => at += run.len,
                    Err(_) => return,
                }
            }
            if decoder.is_done() {
                assert_eq!(
                    reference_chunked_end(body),
                    Ok(at),
                    "where the chunked body ends"
                );
            }
        }
        (clb, reference) => panic!("clb frames {clb:?}, the reference {reference:?}"),
    }
}

/// The instance's side: what clb forwards for this request parses strictly, with the
/// framing clb used and the body clb read, and nothing after it.
fn check_forwarded(data: &[u8], info: &request::RequestInfo, head: &[u8]) {
    use crate::http::framing::Body;
    use strict_http::Framing;
    let body = &data[info.head_len..];
    let Ok(Some(body_len)) = info.body.forwarded_len(body) else {
        // The body is cut short here, or its chunks are refused (400) before any of
        // them could pass: the head alone must still say how long the body is.
        match strict_http::parse_request(head) {
            Ok(r) => assert_eq!(r.len, head.len(), "forwarded head reads as complete"),
            Err(e) => assert!(
                e == "incomplete",
                "the forwarded head is refused by a strict parser: {e}
{}",
                String::from_utf8_lossy(head)
            ),
        }
        return;
    };
    let mut forwarded = head.to_vec();
    forwarded.extend_from_slice(&body[..body_len]);
    let read = strict_http::parse_request(&forwarded).unwrap_or_else(|e| {
        panic!(
            "a strict parser refuses what clb forwards: {e}
{:?}",
            String::from_utf8_lossy(&forwarded)
        )
    });
    assert_eq!(read.head_len, head.len(), "forwarded head length");
    assert_eq!(read.len, forwarded.len(), "forwarded body length");
    match (info.body, read.framing) {
        (Body::Done, Framing::None | Framing::Length(0)) => {}
        (Body::Length(n), Framing::Length(m)) => assert_eq!(n, m),
        (Body::Chunked(_), Framing::Chunked) => {}
        (clb, strict) => panic!("clb read {clb:?}, the instance reads {strict:?}"),
    }
}

#[derive(Debug)]
enum RefBody {
    None,
    Length(u64),
    Chunked,
}

/// RFC 9112 §6.3 over httparse's head: `Err` where a request's length is ambiguous.
fn reference_framing(data: &[u8]) -> Result<(usize, RefBody), String> {
    // RFC 9110 §2.5: HTTP/1.2 and up read as 1.1 (httparse knows 1.0 and 1.1 only).
    let line = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() >= 9 && line.len() < data.len() {
        let (rest, version) = line.split_at(line.len() - 9);
        if version.starts_with(b" HTTP/1.") && (b'2'..=b'9').contains(&version[8]) {
            let mut copy = data.to_vec();
            copy[rest.len() + 8] = b'1';
            return reference_framing_11(&copy);
        }
    }
    reference_framing_11(data)
}

fn reference_framing_11(data: &[u8]) -> Result<(usize, RefBody), String> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        other => return Err(format!("httparse: {other:?}")),
    };
    let is = |h: &httparse::Header<'_>, name: &str| h.name.eq_ignore_ascii_case(name);
    let codings: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| is(h, "transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty())
        .collect();
    let te_headers = req.headers.iter().any(|h| is(h, "transfer-encoding"));
    if te_headers {
        if req.version != Some(1) {
            return Err("Transfer-Encoding in HTTP/1.0".into());
        }
        let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
        return match codings.split_last() {
            Some((last, rest)) if chunked(last) && !rest.iter().any(chunked) => {
                Ok((head_len, RefBody::Chunked))
            }
            _ => Err("chunked is not the final coding, once".into()),
        };
    }
    let mut length = None;
    for h in req.headers.iter().filter(|h| is(h, "content-length")) {
        let value = h.value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err("Content-Length is not 1*DIGIT".into());
        }
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or("Content-Length overflows")?;
        if length.is_some_and(|m| m != n) {
            return Err("Content-Length headers differ".into());
        }
        length = Some(n);
    }
    Ok((
        head_len,
        match length {
            None | Some(0) => RefBody::None,
            Some(n) => RefBody::Length(n),
        },
    ))
}

/// Where a chunked body ends (RFC 9112 §7.1), or why it does not.
fn reference_chunked_end(body: &[u8]) -> Result<usize, &'static str> {
    let line = |from: usize| -> Result<(usize, usize), &'static str> {
        let rest = body.get(from..).ok_or("short")?;
        let cr = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .ok_or("short")?;
        if rest[cr] != b'\r' || rest.get(cr + 1) != Some(&b'\n') {
            return Err("bare LF or lone CR");
        }
        Ok((from + cr, from + cr + 2))
    };
    let mut at = 0;
    loop {
        let (end, next) = line(at)?;
        let size_line = &body[at..end];
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            return Err("no chunk size");
        }
        let size = u64::from_str_radix(
            std::str::from_utf8(&size_line[..digits]).map_err(|_| "utf8")?,
            16,
        )
        .map_err(|_| "chunk size overflows")?;
        at = next;
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let (end, next) = line(at)?;
                let empty = end == at;
                at = next;
                if empty {
                    return Ok(at);
                }
            }
        }
        let data_end = usize::try_from(size)
            .ok()
            .and_then(|s| at.checked_add(s))
            .ok_or("huge")?;
        if body.get(data_end..data_end + 2) != Some(b"\r\n") {
            return Err("chunk data not followed by CRLF");
        }
        at = data_end + 2;
    }
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
    // DescribeLoadBalancers' Marker: what clb accepts is exactly what it writes.
    if let Some(marker) = params.get("Marker") {
        use crate::control::actions::paging::{marker_of, name_of};
        if let Some(name) = name_of(marker) {
            assert!(marker_of(&name).eq_ignore_ascii_case(marker), "{marker}");
        }
    }
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
    // A query that carries its own X-Amz-Signature is a second auth mechanism, which
    // verify refuses by design; every other signed request verifies.
    let presigned = sigv4::query_pairs(query)
        .map(|pairs| pairs.iter().any(|(n, _)| n == b"X-Amz-Signature"))
        .unwrap_or(false);
    let verdict = sigv4::verify(&signed, &creds, now);
    if presigned {
        assert!(
            matches!(verdict, Err(sigv4::AuthError::Incomplete(_))),
            "{verdict:?}"
        );
    } else {
        assert_eq!(verdict, Ok(()), "a signed request must verify");
    }
}

/// The state file. Invariants: whatever decodes encodes to text that decodes the same;
/// and that text cut short at any line (issue 12: even right after a whole load
/// balancer) is refused, never read as fewer load balancers.
pub fn state_file(data: &[u8]) {
    use crate::control::state::{decode, encode};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lbs) = decode(text) else { return };
    let encoded = encode(&lbs);
    let again = decode(&encoded).unwrap_or_else(|e| panic!("re-decoding failed: {e}"));
    assert_eq!(encode(&again), encoded);
    let whole = encoded.trim_end_matches('\n').len();
    for (at, _) in encoded.match_indices('\n') {
        for cut in [at, at + 1] {
            if cut < whole {
                assert!(
                    decode(&encoded[..cut]).is_err(),
                    "a file cut at byte {cut} of {} decoded",
                    encoded.len()
                );
            }
        }
    }
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
    // --security-group and --subnet: an accepted group prints back to itself.
    if let Ok(group) = crate::config::vpc::parse_security_group(text) {
        let networks: Vec<String> = group.networks.iter().map(|n| n.to_string()).collect();
        let again = format!("{}={}", group.id, networks.join(","));
        assert_eq!(crate::config::vpc::parse_security_group(&again), Ok(group));
    }
    let _ = crate::config::vpc::parse_subnet(text);
    if let Ok(target) = parse_health_target(text) {
        assert_eq!(parse_health_target(&target.to_string()), Ok(target));
    }
    address_pool(text);
    let args: Vec<String> = text.split(' ').map(String::from).collect();
    let _ = crate::cli::parse(&args);
}

/// `--address-pool`: an accepted pool is non-empty, holds only unicast IPv4 addresses,
/// and `nth` and `position` agree on every address looked at.
fn address_pool(text: &str) {
    use crate::config::address_pool::AddressPool;
    let Ok(pool) = AddressPool::parse(text) else {
        return;
    };
    assert!(!pool.is_empty(), "{text:?} accepted as an empty pool");
    let len = pool.len();
    for index in [0, 1, len / 2, len.saturating_sub(2), len - 1]
        .into_iter()
        .filter(|i| *i < len)
    {
        let ip = pool
            .nth(index)
            .unwrap_or_else(|| panic!("{text:?}: no address {index} of {len}"));
        let addr = std::net::IpAddr::V4(ip);
        assert!(
            !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast(),
            "{text:?}: {ip}"
        );
        assert!(pool.contains(addr), "{text:?}: {ip} not contained");
        assert_eq!(pool.position(addr), Some(index), "{text:?}: {ip}");
    }
    assert_eq!(pool.nth(len), None, "{text:?}: an address past the end");
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
        upgrade: false,
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
