//! An instance's response head: parsed, framed, and rewritten for the client.
//!
//! The body length follows RFC 9112 §6.3 in its order: HEAD, 1xx, 204 and 304 have none;
//! a final `chunked` coding frames it; otherwise `Content-Length`; otherwise the body runs
//! until the instance closes, which clb accepts only when the response says so (HTTP/1.0,
//! or `Connection: close`). A keep-alive response with no framing is unparsable (502, spec
//! §11). Hop-by-hop headers are dropped and clb states its own `Connection` for the client.
//! An HTTP/1.0 client cannot read chunked coding, so it gets the payload alone, delimited
//! by clb closing the connection.

use super::framing::{self, Body};
use super::lines::LineCopier;
use super::request::{is_hop_by_hop, list_items, parse_content_length, Parse, RequestInfo};
use crate::buffer::Buf;
use std::mem::MaybeUninit;

/// Largest response head accepted (ALB's 32 K, spec §16); beyond it 502.
pub const MAX_RESPONSE_HEAD: usize = 32 * 1024;
const MAX_RESPONSE_HEADERS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError(pub &'static str);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    pub head_len: usize,
    pub status: u16,
    /// A 1xx: another head follows. `out` holds it only when it is to be forwarded.
    pub informational: bool,
    pub forwarded: bool,
    /// What to walk on the instance side.
    pub body: Body,
    /// Only payload bytes go to the client (chunked response, HTTP/1.0 client).
    pub dechunk: bool,
    /// The instance connection may be pooled after this response.
    pub reusable: bool,
    /// The client connection closes after this response.
    pub client_close: bool,
    /// A 101 to a WebSocket handshake: from now on bytes flow both ways untouched.
    pub switching: bool,
}

/// Parses the head at the start of `input`; appends the client's head to `out` when complete
/// (and only then: `out` may already hold bytes for the client, such as a `100 Continue`).
pub fn forward_head(
    input: &[u8],
    req: &RequestInfo,
    out: &mut Buf,
) -> Result<Parse<ResponseInfo>, ResponseError> {
    // Uninitialised slots, as for requests: httparse writes only those it fills.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let head_len = match config.parse_response_with_uninit_headers(&mut resp, input, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() >= MAX_RESPONSE_HEAD => {
            return Err(ResponseError("response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parse::Partial),
        Err(_) => return Err(ResponseError("unparsable response head")),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(ResponseError("incomplete status line"));
    };
    let reason = resp.reason.unwrap_or("");
    let headers = &*resp.headers;

    let (mut close, mut keep_alive) = (false, false);
    let (mut content_length, mut chunked, mut has_te) = (None::<u64>, false, false);
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in list_items(h.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value).ok_or(ResponseError("invalid Content-Length"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(ResponseError("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            for coding in list_items(h.value) {
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }

    if (100..200).contains(&status) {
        if status == 101 {
            if !req.upgrade {
                return Err(ResponseError("protocol upgrade without an upgrade request"));
            }
            // The handshake answer goes to the client as the instance wrote it: its
            // Upgrade, Connection and Sec-WebSocket-* headers are the protocol switch.
            out.extend(&input[..head_len]);
            return Ok(Parse::Complete(ResponseInfo {
                head_len,
                status,
                informational: false,
                forwarded: true,
                body: Body::UntilClose,
                dechunk: false,
                reusable: false,
                client_close: false,
                switching: true,
            }));
        }
        // clb answered any 100-continue itself; 1.0 clients must never see a 1xx.
        let forwarded = status != 100 && !req.http10;
        if forwarded {
            write_status_line(out, status, reason.as_bytes());
            write_headers(input, headers, out, false);
            out.extend(b"\r\n");
        }
        return Ok(Parse::Complete(ResponseInfo {
            head_len,
            status,
            informational: true,
            forwarded,
            body: Body::Done,
            dechunk: false,
            reusable: true,
            client_close: false,
            switching: false,
        }));
    }

    let persistent = if version == 0 {
        keep_alive && !close
    } else {
        !close
    };
    let body = if req.is_head || status == 204 || status == 304 {
        Body::Done
    } else if has_te && chunked {
        Body::chunked()
    } else if has_te {
        Body::UntilClose
    } else if let Some(n) = content_length {
        if n == 0 {
            Body::Done
        } else {
            Body::Length(n)
        }
    } else if !persistent {
        Body::UntilClose
    } else {
        return Err(ResponseError(
            "response without Content-Length or chunked framing",
        ));
    };
    let dechunk = req.http10 && matches!(body, Body::Chunked(_));
    let reusable = persistent && body != Body::UntilClose && !req.close_after;
    let client_close = !req.keep_alive || req.close_after || body == Body::UntilClose || dechunk;

    write_status_line(out, status, reason.as_bytes());
    write_headers(input, headers, out, dechunk);
    if client_close {
        out.extend(b"Connection: close\r\n");
    } else if req.http10 {
        out.extend(b"Connection: keep-alive\r\n");
    }
    out.extend(b"\r\n");
    Ok(Parse::Complete(ResponseInfo {
        head_len,
        status,
        informational: false,
        forwarded: true,
        body,
        dechunk,
        reusable,
        client_close,
        switching: false,
    }))
}

fn write_status_line(out: &mut Buf, status: u16, reason: &[u8]) {
    out.extend(b"HTTP/1.1 ");
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.extend(&digits);
    out.extend(b" ");
    out.extend(reason);
    out.extend(b"\r\n");
}

/// Connection options beyond this many are ignored for header removal (bounded work per
/// response, as for requests).
const MAX_CONNECTION_TOKENS: usize = 16;

/// Copies end-to-end headers byte-for-byte; drops hop-by-hop ones and those `Connection` names.
fn write_headers(input: &[u8], headers: &[httparse::Header<'_>], out: &mut Buf, dechunk: bool) {
    let mut named: [&[u8]; MAX_CONNECTION_TOKENS] = [b""; MAX_CONNECTION_TOKENS];
    let mut count = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in list_items(h.value).take(MAX_CONNECTION_TOKENS - count) {
                named[count] = token;
                count += 1;
            }
        }
    }
    let mut lines = LineCopier::new(input, out);
    for h in headers {
        let name = h.name.as_bytes();
        let te = name.eq_ignore_ascii_case(b"transfer-encoding");
        // A look-alike of a framing header (`Transfer_Encoding`, `Content.Length`) is
        // dropped as in requests: a client or cache before it might frame by it.
        if name.eq_ignore_ascii_case(b"connection")
            || is_hop_by_hop(name)
            || (te && dechunk)
            || framing::looks_like_framing(name)
            || named[..count].iter().any(|t| t.eq_ignore_ascii_case(name))
        {
            continue;
        }
        lines.copy(h);
    }
    lines.out();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufPool;

    fn req(http10: bool, keep_alive: bool, is_head: bool) -> RequestInfo {
        RequestInfo {
            head_len: 0,
            http10,
            keep_alive,
            is_head,
            idempotent: true,
            body: Body::Done,
            expect_continue: false,
            close_after: false,
            verdict: crate::http::desync::Verdict::COMPLIANT,
            upgrade: false,
        }
    }

    fn run(input: &[u8], req: &RequestInfo) -> (ResponseInfo, String) {
        let mut out = BufPool::new(1).get();
        match forward_head(input, req, &mut out).unwrap() {
            Parse::Complete(info) => (info, String::from_utf8_lossy(out.bytes()).into_owned()),
            Parse::Partial => panic!("partial"),
        }
    }

    #[test]
    fn keeps_headers_and_drops_hop_by_hop() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Other:  spaced\r\n\r\nhi";
        let (info, head) = run(input, &req(false, true, false));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Other:  spaced\r\n\r\n"
        );
        assert_eq!(info.body, Body::Length(2));
        assert!(info.reusable && !info.client_close);
        assert_eq!(info.head_len, input.len() - 2);
    }

    #[test]
    fn chunked_to_http10_client_is_dechunked_and_closed() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (info, head) = run(input, &req(true, true, false));
        assert!(info.dechunk && info.client_close);
        assert_eq!(head, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    }

    #[test]
    fn http10_keep_alive_client_is_told_so() {
        let (info, head) = run(b"HTTP/1.1 204 No Content\r\n\r\n", &req(true, true, false));
        assert!(!info.client_close);
        assert!(head.ends_with("Connection: keep-alive\r\n\r\n"));
        assert_eq!(info.body, Body::Done);
    }

    #[test]
    fn head_and_304_have_no_body() {
        let (info, _) = run(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            &req(false, true, true),
        );
        assert_eq!(info.body, Body::Done);
        let (info, _) = run(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            &req(false, true, false),
        );
        assert_eq!(info.body, Body::Done);
    }

    #[test]
    fn unframed_bodies_need_a_close() {
        let mut out = BufPool::new(1).get();
        let r = req(false, true, false);
        assert!(forward_head(b"HTTP/1.1 200 OK\r\n\r\nabc", &r, &mut out).is_err());
        let (info, head) = run(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &r);
        assert_eq!(info.body, Body::UntilClose);
        assert!(!info.reusable && info.client_close);
        assert!(head.contains("Connection: close"));
        let (info, _) = run(b"HTTP/1.0 200 OK\r\n\r\n", &r);
        assert_eq!(info.body, Body::UntilClose);
    }

    #[test]
    fn bad_heads_are_errors() {
        let mut out = BufPool::new(1).get();
        let r = req(false, true, false);
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 101 Switching\r\n\r\n",
        ] {
            assert!(
                forward_head(bad, &r, &mut out).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            forward_head(b"HTTP/1.1 200 OK\r\n", &r, &mut out),
            Ok(Parse::Partial)
        );
    }

    #[test]
    fn continue_is_swallowed_other_informational_forwarded() {
        let r = req(false, true, false);
        let mut out = BufPool::new(1).get();
        let Ok(Parse::Complete(info)) =
            forward_head(b"HTTP/1.1 100 Continue\r\n\r\n", &r, &mut out)
        else {
            panic!()
        };
        assert!(info.informational && !info.forwarded);
        let (info, head) = run(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", &r);
        assert!(info.informational && info.forwarded);
        assert_eq!(head, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    }
}
