//! A client's request head: parsed once, judged, and rewritten for the instance.
//!
//! `forward_head` parses with httparse (borrowing the buffer, no allocation), decides the
//! body framing (RFC 9112 §6.3), and writes the head the instance receives into `out`:
//! the request line with version `HTTP/1.1` (back ends always get 1.1, spec §1.13) and the
//! target in origin form, every header byte-for-byte except the hop-by-hop ones, and the
//! X-Forwarded headers of spec §9.
//!
//! Invariant (DESIGN §3): the head written frames the body exactly as clb reads it. Every
//! framing header the client sent (`Content-Length`, `Transfer-Encoding`) and every
//! look-alike of one is dropped, and clb writes the one framing header it used in place of
//! the first; `Transfer-Encoding` beside `Content-Length` frames by the chunks, and neither
//! connection is reused afterwards. No desync mode changes this: the modes decide what to
//! do with an ambiguous request, never whether its framing reaches the instance unclear.

use super::chunked::is_tchar;
use super::desync::{self, Action, Head, Mode, Verdict};
use super::framing::{self, Body};
use super::lines::LineCopier;
use super::target::{self, Target};
use crate::buffer::Buf;
use std::io::Write;
use std::mem::MaybeUninit;
use std::net::IpAddr;

/// Request line limit (spec §16: ALB's 16 K, used for CLB); beyond it 414.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// All header lines together (spec §16: 64 K); beyond it 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Header count; beyond it 431.
pub const MAX_HEADERS: usize = 100;
/// Longest method ELB accepts (spec §1.18); beyond it 405.
pub const MAX_METHOD: usize = 127;
/// The largest head a buffer may grow to while waiting for its end.
pub const MAX_HEAD: usize = MAX_REQUEST_LINE + MAX_HEADER_BYTES;

/// What clb knows about the client connection, for the headers it adds.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    pub client_ip: IpAddr,
    /// The address the client connected to: the "LB node" IP of spec §1.13.
    pub local_ip: IpAddr,
    pub listener_port: u16,
    pub scheme: &'static str,
    /// The load balancer's desync mitigation mode.
    pub desync: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP, or HTTP we refuse to frame (400).
    Malformed(&'static str),
    /// Method longer than 127 bytes (405).
    MethodTooLong,
    /// Request line over the limit (414).
    UriTooLong,
    /// Header section over the limits (431).
    HeadersTooLarge,
    /// The desync mode blocks this class of request (400, connection closed).
    Desync(Verdict),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub head_len: usize,
    pub http10: bool,
    /// The client wants its connection kept after the response (spec §1.16).
    pub keep_alive: bool,
    pub is_head: bool,
    /// Safe to send again on a fresh connection when a reused one fails before answering.
    pub idempotent: bool,
    pub body: Body,
    pub expect_continue: bool,
    /// Framing was repaired (CL beside TE), or the request is Ambiguous in defensive
    /// mode: neither connection is reused afterwards.
    pub close_after: bool,
    /// The desync classifier's verdict, for the counters.
    pub verdict: Verdict,
    /// A WebSocket handshake (`Upgrade: websocket`, `Connection: upgrade`): its
    /// `Upgrade` header goes to the instance, and a 101 turns the pair into a tunnel.
    pub upgrade: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    Partial,
    Complete(T),
}

/// What each header does on the way to the instance.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Keep,
    Drop,
    /// A `Content-Length` or `Transfer-Encoding`: clb's own framing header goes where the
    /// first one was, and none of the client's is copied.
    Framing,
    Host,
    ForwardedFor,
}

/// The framing clb read the body with, and writes for the instance.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    /// `only_chunked`: `chunked` is the only transfer coding.
    Chunked {
        only_chunked: bool,
    },
}

/// httparse refused the version: `HTTP/1.2` and up are retried as 1.1 (RFC 9110 §2.5).
const UNSUPPORTED_VERSION: &str = "unsupported HTTP version";

/// Connection options beyond this many are ignored for header removal (bounded work).
const MAX_CONNECTION_TOKENS: usize = 16;

/// Parses the head at the start of `input`; on success writes the instance's head to `out`.
pub fn forward_head(
    input: &[u8],
    fwd: &Forwarding,
    out: &mut Buf,
) -> Result<Parse<RequestInfo>, HeadError> {
    match forward_parsed(input, None, fwd, out) {
        Err(HeadError::Malformed(UNSUPPORTED_VERSION)) => {
            // RFC 9110 §2.5: a higher minor version is answered as the highest one we
            // speak. httparse knows 1.0 and 1.1 only, so it reads a copy that says 1.1
            // (a rare request: the copy is the only allocation on this path).
            let Some(at) = higher_minor_version(input) else {
                return Err(HeadError::Malformed(UNSUPPORTED_VERSION));
            };
            let mut copy = input.to_vec();
            copy[at] = b'1';
            forward_parsed(&copy, Some(&input[at - 7..=at]), fwd, out)
        }
        other => other,
    }
}

/// Where the minor digit of an `HTTP/1.2`..`HTTP/1.9` request line is, if it is one.
fn higher_minor_version(input: &[u8]) -> Option<usize> {
    let end = input.iter().position(|&b| b == b'\n')?;
    let line_end = if end > 0 && input[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    let at = line_end.checked_sub(1)?;
    let version = input.get(line_end.checked_sub(9)?..line_end)?;
    (version.starts_with(b" HTTP/1.") && matches!(input[at], b'2'..=b'9')).then_some(at)
}

/// `forward_head` on `input`; `version`, when set, is the version the client really
/// sent (the classifier judges it, httparse read `HTTP/1.1` in its place).
fn forward_parsed(
    input: &[u8],
    version: Option<&[u8]>,
    fwd: &Forwarding,
    out: &mut Buf,
) -> Result<Parse<RequestInfo>, HeadError> {
    // Uninitialised slots: httparse writes the ones it fills, and initialising all 100
    // cost more instructions than parsing a typical head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(input, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial_verdict(input, req.method),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(httparse::Error::Token) if req.method.is_none() && method_too_long(input) => {
            return Err(HeadError::MethodTooLong)
        }
        Err(httparse::Error::Version) => return Err(HeadError::Malformed(UNSUPPORTED_VERSION)),
        Err(_) => return Err(HeadError::Malformed("unparsable request head")),
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    if method.len() > MAX_METHOD {
        return Err(HeadError::MethodTooLong);
    }
    let line_len = line_length(input);
    if line_len > MAX_REQUEST_LINE {
        return Err(HeadError::UriTooLong);
    }
    if head_len - line_len > MAX_HEADER_BYTES {
        return Err(HeadError::HeadersTooLarge);
    }
    if method == "CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not supported"));
    }
    let http10 = minor == 0;

    // Spec §10: classify, and block what the mode blocks before anything else is judged.
    let mut remove = [false; MAX_HEADERS];
    let head = Head {
        method: method.as_bytes(),
        uri: path.as_bytes(),
        version: match version {
            Some(sent) => sent,
            None if http10 => b"HTTP/1.0",
            None => b"HTTP/1.1",
        },
        headers: req.headers,
        bare_lf: !lines_end_in_crlf(input, line_len, head_len, req.headers)
            && desync::has_bare_lf(&input[..head_len]),
    };
    let (verdict, message) = desync::classify(&head, &mut remove);
    let action = desync::action(fwd.desync, verdict.tier);
    if let Some(message) = message {
        desync::log_non_compliant(fwd.client_ip, verdict, action, &message);
    }
    if action == Action::Block {
        return Err(HeadError::Desync(verdict));
    }
    let target = target::parse(method.as_bytes(), path.as_bytes()).map_err(HeadError::Malformed)?;

    // Pass 1: the role of every header and the message framing.
    let headers = &*req.headers;
    let mut roles = [Role::Keep; MAX_HEADERS];
    let mut conn_tokens: [&[u8]; MAX_CONNECTION_TOKENS] = [b""; MAX_CONNECTION_TOKENS];
    let mut conn_count = 0;
    let (mut close, mut keep_alive_token) = (false, false);
    let (mut content_length, mut chunked, mut has_te) = (None::<u64>, false, false);
    let mut other_codings = false;
    let (mut hosts, mut expect_continue, mut last_xff) = (0, false, None);
    let (mut connection_upgrade, mut websocket) = (false, None::<usize>);
    for (i, h) in headers.iter().enumerate() {
        let name = h.name.as_bytes();
        roles[i] = if name.eq_ignore_ascii_case(b"connection") {
            for token in list_items(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    connection_upgrade = true;
                } else if conn_count < MAX_CONNECTION_TOKENS {
                    conn_tokens[conn_count] = token;
                    conn_count += 1;
                }
            }
            Role::Drop
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)
                .ok_or(HeadError::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(n);
            Role::Framing
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // RFC 9112 §6.3: chunked must be the final coding, and only once. A coding is
            // a bare token: clb writes the list again itself.
            for coding in list_items(h.value) {
                if chunked {
                    return Err(HeadError::Malformed("coding after chunked"));
                }
                if !coding.iter().all(|&b| is_tchar(b)) {
                    return Err(HeadError::Malformed("transfer coding is not a token"));
                }
                chunked = coding.eq_ignore_ascii_case(b"chunked");
                other_codings |= !chunked;
            }
            has_te = true;
            Role::Framing
        } else if framing::looks_like_framing(name) {
            // Never beside a body, in any mode (README, "Request framing").
            Role::Drop
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            // RFC 9112 §3.2: one host, valid, or 400.
            if !target::valid_host(trim(h.value)) {
                return Err(HeadError::Malformed("invalid Host header"));
            }
            Role::Host
        } else if name.eq_ignore_ascii_case(b"expect")
            && trim(h.value).eq_ignore_ascii_case(b"100-continue")
        {
            expect_continue = !http10;
            Role::Drop
        } else if name.eq_ignore_ascii_case(b"upgrade")
            && list_items(h.value).any(|p| p.eq_ignore_ascii_case(b"websocket"))
        {
            websocket = Some(i);
            Role::Drop
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            last_xff = Some(i);
            Role::ForwardedFor
        } else if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"x-forwarded-proto")
            || name.eq_ignore_ascii_case(b"x-forwarded-port")
        {
            Role::Drop
        } else {
            Role::Keep
        };
    }
    for (i, h) in headers.iter().enumerate() {
        let name = h.name.as_bytes();
        // Headers the classifier marks Bad, and those `Connection` names, stay here.
        // Framing and Host are not the client's to remove: clb writes the framing itself.
        let named_by_connection = conn_tokens[..conn_count]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name));
        let removable = matches!(roles[i], Role::Keep | Role::ForwardedFor);
        if removable && (remove[i] || named_by_connection) {
            roles[i] = Role::Drop;
            if last_xff == Some(i) {
                last_xff = None;
            }
        }
    }
    if !http10 && hosts == 0 {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host"));
    }
    if hosts > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    let mut close_after = action == Action::ForwardThenClose;
    // RFC 6455 §4.1: a GET on HTTP/1.1 with both headers, and no body.
    let upgrade = websocket.is_some()
        && connection_upgrade
        && !http10
        && method == "GET"
        && !has_te
        && content_length.unwrap_or(0) == 0;
    if let (true, Some(i)) = (upgrade, websocket) {
        roles[i] = Role::Keep;
    }
    let framing = match (has_te, content_length) {
        (true, _) => Framing::Chunked {
            only_chunked: !other_codings,
        },
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    };
    let body = if has_te {
        if http10 {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !chunked {
            return Err(HeadError::Malformed(
                "Transfer-Encoding without final chunked",
            ));
        }
        if content_length.is_some() {
            close_after = true;
        }
        Body::chunked()
    } else {
        match content_length {
            Some(0) | None => Body::Done,
            Some(n) => Body::Length(n),
        }
    };

    // Pass 2: the head the instance receives.
    out.clear();
    out.extend(method.as_bytes());
    out.extend(b" ");
    match target {
        // RFC 9112 §3.2.1 and §3.2.4: origin form; an empty path is `/` (`*` for OPTIONS).
        Target::Absolute { path: p, .. } => {
            if p.is_empty() && method == "OPTIONS" {
                out.extend(b"*");
            } else if p.first() != Some(&b'/') {
                out.extend(b"/");
            }
            out.extend(p);
        }
        Target::Origin | Target::Asterisk => out.extend(path.as_bytes()),
    }
    let authority = match target {
        Target::Absolute { authority, .. } => Some(authority),
        _ => None,
    };
    out.extend(b" HTTP/1.1\r\n");
    let mut lines = LineCopier::new(input, out);
    let mut framing_written = false;
    for (i, h) in headers.iter().enumerate() {
        match roles[i] {
            Role::Drop => continue,
            Role::Framing => {
                if !framing_written {
                    write_framing(framing, headers, lines.out());
                    framing_written = true;
                }
                continue;
            }
            Role::Host => {
                if let Some(authority) = authority {
                    // RFC 9112 §3.2.2: the target's authority replaces Host.
                    write_host(authority, lines.out());
                    continue;
                }
            }
            Role::Keep | Role::ForwardedFor => {}
        }
        lines.copy(h);
        if Some(i) == last_xff {
            let out = lines.out();
            out.pop_crlf();
            out.extend(b", ");
            push_ip(out, fwd.client_ip);
            out.extend(b"\r\n");
        }
    }
    let out = lines.out();
    if last_xff.is_none() {
        out.extend(b"X-Forwarded-For: ");
        push_ip(out, fwd.client_ip);
        out.extend(b"\r\n");
    }
    if upgrade {
        out.extend(b"Connection: Upgrade\r\n");
    }
    out.extend(b"X-Forwarded-Proto: ");
    out.extend(fwd.scheme.as_bytes());
    out.extend(b"\r\nX-Forwarded-Port: ");
    push_decimal(out, u64::from(fwd.listener_port));
    out.extend(b"\r\n");
    if let (0, Some(authority)) = (hosts, authority) {
        write_host(authority, out);
    } else if hosts == 0 {
        match fwd.local_ip {
            IpAddr::V4(ip) => {
                let _ = write!(out, "Host: {ip}\r\n");
            }
            IpAddr::V6(ip) => {
                let _ = write!(out, "Host: [{ip}]\r\n");
            }
        }
    }
    out.extend(b"\r\n");

    Ok(Parse::Complete(RequestInfo {
        head_len,
        http10,
        keep_alive: if http10 {
            keep_alive_token && !close
        } else {
            !close
        },
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        body,
        expect_continue,
        close_after,
        verdict,
        upgrade,
    }))
}

/// An incomplete head is fine until it passes a limit.
fn partial_verdict(input: &[u8], method: Option<&str>) -> Result<Parse<RequestInfo>, HeadError> {
    if method.is_some_and(|m| m.len() > MAX_METHOD) || (method.is_none() && method_too_long(input))
    {
        return Err(HeadError::MethodTooLong);
    }
    let line_end = input.iter().position(|&b| b == b'\n');
    match line_end {
        None if input.len() > MAX_REQUEST_LINE => Err(HeadError::UriTooLong),
        Some(n) if n + 1 > MAX_REQUEST_LINE => Err(HeadError::UriTooLong),
        _ if input.len() > MAX_HEAD => Err(HeadError::HeadersTooLarge),
        _ => Ok(Parse::Partial),
    }
}

/// True when the input starts with a token longer than ELB's method limit.
fn method_too_long(input: &[u8]) -> bool {
    let token = input
        .iter()
        .take_while(|&&b| b != b' ' && b != b'\r' && b != b'\n')
        .count();
    token > MAX_METHOD
}

/// Length of the request line including its line end (leading empty lines count too).
fn line_length(input: &[u8]) -> usize {
    let mut from = 0;
    while input[from..].starts_with(b"\r\n") {
        from += 2;
    }
    while input[from..].starts_with(b"\n") {
        from += 1;
    }
    input[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |n| from + n + 1)
}

/// True when every line of a parsed head provably ends with CRLF, from what httparse
/// already found (a few comparisons per line instead of a scan of every byte). The LFs of
/// a request head httparse accepted are only line ends: leading empty lines, the request
/// line's, one after each header's value (httparse admits no LF inside a line, and no
/// folded lines in requests), and the blank line's. False means "could not tell".
fn lines_end_in_crlf(
    input: &[u8],
    line_len: usize,
    head_len: usize,
    headers: &[httparse::Header<'_>],
) -> bool {
    let no_leading_empty_line = !matches!(input.first(), Some(b'\r' | b'\n'));
    let request_line = line_len >= 2 && input.get(line_len - 2) == Some(&b'\r');
    let blank_line = head_len >= 2 && input.get(head_len - 2..head_len) == Some(b"\r\n");
    no_leading_empty_line
        && request_line
        && blank_line
        && headers.iter().all(|h| {
            !h.value.is_empty()
                && offset_in(input, h.value).is_some_and(|at| {
                    let end = at + h.value.len();
                    input.get(end..end + 2) == Some(b"\r\n")
                })
        })
}

/// Where `part` starts inside `whole`, when it is a sub-slice of it.
pub(crate) fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    [&b"keep-alive"[..], b"proxy-connection", b"te", b"upgrade"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// `Content-Length`: ASCII digits only, fitting u64 (a list such as `5, 5` is refused).
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

/// Items of a comma-separated header list, trimmed, empty items skipped.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
}

pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &value[start..end.max(start)]
}

mod write;
use write::{push_decimal, push_ip, write_framing, write_host};

#[cfg(test)]
mod tests;
