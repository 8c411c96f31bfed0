//! Writing the instance's head: the headers clb writes itself (framing, `Host` from an
//! absolute-form target, addresses and ports without the formatting machinery) and the
//! client's header lines copied as they came.

use super::{list_items, Framing};
use crate::buffer::Buf;
use std::io::Write;
use std::net::IpAddr;

/// Writes `ip` without the formatting machinery: this runs once per request, and
/// `Display` for an address costs about a thousand instructions.
pub(super) fn push_ip(out: &mut Buf, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                len += put_decimal(&mut text[len..], octet);
            }
            out.extend(&text[..len]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// clb's own framing header, standing for every framing header the client sent.
pub(super) fn write_framing(framing: Framing, headers: &[httparse::Header<'_>], out: &mut Buf) {
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend(b"Content-Length: ");
            push_decimal(out, n);
            out.extend(b"\r\n");
        }
        Framing::Chunked { only_chunked: true } => out.extend(b"Transfer-Encoding: chunked\r\n"),
        Framing::Chunked {
            only_chunked: false,
        } => {
            // Every coding the client listed, as bare tokens (checked in pass 1).
            out.extend(b"Transfer-Encoding: ");
            let codings = headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
                .flat_map(|h| list_items(h.value));
            for (n, coding) in codings.enumerate() {
                if n > 0 {
                    out.extend(b", ");
                }
                out.extend(coding);
            }
            out.extend(b"\r\n");
        }
    }
}

pub(super) fn write_host(authority: &[u8], out: &mut Buf) {
    out.extend(b"Host: ");
    out.extend(authority);
    out.extend(b"\r\n");
}

pub(super) fn push_decimal(out: &mut Buf, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(&digits[at..]);
}

/// Writes `n` at the start of `to` (which has room for three digits); returns the length.
fn put_decimal(to: &mut [u8], n: u8) -> usize {
    if n >= 100 {
        to[0] = b'0' + n / 100;
        to[1] = b'0' + n / 10 % 10;
        to[2] = b'0' + n % 10;
        3
    } else if n >= 10 {
        to[0] = b'0' + n / 10;
        to[1] = b'0' + n % 10;
        2
    } else {
        to[0] = b'0' + n;
        1
    }
}
