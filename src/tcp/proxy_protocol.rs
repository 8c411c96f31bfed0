//! The PROXY protocol header clb sends first on a connection to an instance (spec §8),
//! so the instance learns the client's address on a TCP listener.
//!
//! v1 is ELB's: one text line, `PROXY TCP4 <client> <proxy> <client port> <proxy port>\r\n`
//! (`TCP6` for IPv6, `UNKNOWN` when the families differ). v2 is the binary form HAProxy
//! defined, offered for instances that prefer it. `parse` reads either back; the tests and
//! the fuzz target use it to check that what is written is what an instance reads.

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// Longest v1 line (the specification's bound).
pub const MAX_V1: usize = 107;
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Appends the header for a connection from `client` to clb's `local` address.
pub fn encode(version: Version, client: SocketAddr, local: SocketAddr, out: &mut Vec<u8>) {
    let (client, local) = (canonical(client), canonical(local));
    match version {
        Version::V1 => {
            use std::fmt::Write as _;
            let mut line = String::with_capacity(MAX_V1);
            let _ = match (client.ip(), local.ip()) {
                (IpAddr::V4(c), IpAddr::V4(l)) => {
                    write!(
                        line,
                        "PROXY TCP4 {c} {l} {} {}\r\n",
                        client.port(),
                        local.port()
                    )
                }
                (IpAddr::V6(c), IpAddr::V6(l)) => {
                    write!(
                        line,
                        "PROXY TCP6 {c} {l} {} {}\r\n",
                        client.port(),
                        local.port()
                    )
                }
                _ => write!(line, "PROXY UNKNOWN\r\n"),
            };
            out.extend_from_slice(line.as_bytes());
        }
        Version::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            // Version 2, command PROXY.
            out.push(0x21);
            match (client.ip(), local.ip()) {
                (IpAddr::V4(c), IpAddr::V4(l)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&c.octets());
                    out.extend_from_slice(&l.octets());
                }
                (IpAddr::V6(c), IpAddr::V6(l)) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&c.octets());
                    out.extend_from_slice(&l.octets());
                }
                _ => {
                    out.push(0x00);
                    out.extend_from_slice(&0u16.to_be_bytes());
                    return;
                }
            }
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&local.port().to_be_bytes());
        }
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener) are written as IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// What a header says: source and destination, `None` for UNKNOWN / LOCAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    Incomplete,
    Invalid,
}

/// Reads a v1 or v2 header at the start of `input`.
pub fn parse(input: &[u8]) -> Result<Header, ParseError> {
    if input.len() >= V2_SIGNATURE.len() && input.starts_with(&V2_SIGNATURE) {
        return parse_v2(input);
    }
    if V2_SIGNATURE.starts_with(&input[..input.len().min(V2_SIGNATURE.len())]) && input.len() < 16 {
        return Err(ParseError::Incomplete);
    }
    parse_v1(input)
}

fn parse_v1(input: &[u8]) -> Result<Header, ParseError> {
    let end = match input.iter().take(MAX_V1).position(|&b| b == b'\n') {
        Some(n) => n,
        None if input.len() < MAX_V1 => return Err(ParseError::Incomplete),
        None => return Err(ParseError::Invalid),
    };
    let line = input[..end]
        .strip_suffix(b"\r")
        .ok_or(ParseError::Invalid)?;
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Invalid)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let addresses = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| ParseError::Invalid);
            let port = |s: &str| {
                (s.len() <= 5 && !s.starts_with('0') || s == "0")
                    .then(|| s.parse::<u16>().ok())
                    .flatten()
                    .ok_or(ParseError::Invalid)
            };
            let (src, dst) = (ip(src)?, ip(dst)?);
            if (*family == "TCP4") != (src.is_ipv4() && dst.is_ipv4())
                || src.is_ipv4() != dst.is_ipv4()
            {
                return Err(ParseError::Invalid);
            }
            Some((
                SocketAddr::new(src, port(sport)?),
                SocketAddr::new(dst, port(dport)?),
            ))
        }
        _ => return Err(ParseError::Invalid),
    };
    Ok(Header {
        version: Version::V1,
        addresses,
        len: end + 1,
    })
}

fn parse_v2(input: &[u8]) -> Result<Header, ParseError> {
    let fixed = input.get(..16).ok_or(ParseError::Incomplete)?;
    if fixed[12] >> 4 != 2 {
        return Err(ParseError::Invalid);
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    let body = input.get(16..16 + len).ok_or(ParseError::Incomplete)?;
    let addresses = match (fixed[12] & 0x0f, fixed[13]) {
        (0x0, _) => None,
        (0x1, 0x11) if len >= 12 => {
            let ip = |o: usize| IpAddr::from([body[o], body[o + 1], body[o + 2], body[o + 3]]);
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (0x1, 0x21) if len >= 36 => {
            let ip = |o: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[o..o + 16]);
                IpAddr::from(octets)
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        (0x1, 0x00) => None,
        _ => return Err(ParseError::Invalid),
    };
    Ok(Header {
        version: Version::V2,
        addresses,
        len: 16 + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_matches_the_elb_examples() {
        let mut out = Vec::new();
        encode(
            Version::V1,
            addr("198.51.100.22:35646"),
            addr("203.0.113.7:80"),
            &mut out,
        );
        assert_eq!(out, b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n");
        out.clear();
        encode(
            Version::V1,
            addr("[2001:db8::21f:5bff:febf:ce22]:35646"),
            addr("[2001:db8::12f:8baa]:80"),
            &mut out,
        );
        assert_eq!(
            out,
            b"PROXY TCP6 2001:db8::21f:5bff:febf:ce22 2001:db8::12f:8baa 35646 80\r\n"
        );
        out.clear();
        encode(
            Version::V1,
            addr("[::ffff:10.0.0.1]:1"),
            addr("10.0.0.2:2"),
            &mut out,
        );
        assert_eq!(out, b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");
        out.clear();
        encode(Version::V1, addr("10.0.0.1:1"), addr("[::1]:2"), &mut out);
        assert_eq!(out, b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn both_versions_round_trip() {
        for version in [Version::V1, Version::V2] {
            for (client, local) in [
                ("127.0.0.1:5000", "127.0.0.2:80"),
                ("[::1]:5000", "[::1]:443"),
            ] {
                let mut out = Vec::new();
                encode(version, addr(client), addr(local), &mut out);
                out.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let header = parse(&out).unwrap();
                assert_eq!(header.version, version);
                assert_eq!(header.addresses, Some((addr(client), addr(local))));
                assert_eq!(&out[header.len..], b"GET / HTTP/1.1\r\n");
            }
        }
    }

    #[test]
    fn incomplete_and_invalid() {
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Err(ParseError::Incomplete));
        assert_eq!(parse(b"\r\n\r\n\0"), Err(ParseError::Incomplete));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Err(ParseError::Invalid)
        );
        assert_eq!(
            parse(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            Err(ParseError::Invalid)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ParseError::Invalid));
        assert_eq!(parse(&[b'A'; 200]), Err(ParseError::Invalid));
    }
}
