//! The request target and the `Host` header (RFC 9112 §3.2): which of the four forms a
//! target has, and whether a host is one host.
//!
//! clb forwards origin form only. An absolute-form target (`GET http://h/p`) goes out as
//! `GET /p` with `Host: h` written from the target, so the instance never sees a target
//! and a `Host` that disagree (RFC 9112 §3.2.2: the target's authority wins). The asterisk
//! form belongs to `OPTIONS` alone; the authority form to `CONNECT`, which clb refuses.
//! A `Host` is one `uri-host [":" port]`: no userinfo, no path, no list, not empty.

/// A request target clb accepts, borrowed from the request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`, forwarded as is.
    Origin,
    /// `*` on `OPTIONS`.
    Asterisk,
    /// `http://authority/path?query`: forwarded as `path` with `Host: authority`.
    Absolute {
        authority: &'a [u8],
        /// Path and query; empty when the target had no path.
        path: &'a [u8],
    },
}

/// Classifies `uri`; `Err` says why the target is refused (400).
pub fn parse<'a>(method: &[u8], uri: &'a [u8]) -> Result<Target<'a>, &'static str> {
    match uri.first() {
        Some(b'/') => Ok(Target::Origin),
        Some(b'*') if uri.len() == 1 => {
            if method == b"OPTIONS" {
                Ok(Target::Asterisk)
            } else {
                Err("asterisk-form target on a method other than OPTIONS")
            }
        }
        _ => absolute(uri),
    }
}

fn absolute(uri: &[u8]) -> Result<Target<'_>, &'static str> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or("request target in no known form")?;
    let scheme = &uri[..colon];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err("absolute-form target with a scheme other than http or https");
    }
    let rest = uri[colon + 1..]
        .strip_prefix(b"//")
        .ok_or("absolute-form target without an authority")?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.first() == Some(&b'#') {
        return Err("fragment in the request target");
    }
    if !valid_host(authority) {
        return Err("absolute-form target with an invalid authority");
    }
    Ok(Target::Absolute { authority, path })
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2), not empty. Commas are refused although
/// `reg-name` allows them: `a,b` is how two Host values look once joined.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(close) => {
                let literal = &value[1..close];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                (&value[..=close], &value[close + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let name_ok = host.first() == Some(&b'[') || (!host.is_empty() && reg_name(host));
    port_ok && name_ok
}

/// The bytes a reg-name may hold as themselves: unreserved and sub-delims but `,`.
/// A table, because this runs on every Host header.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
            )
            || matches!(c, b'*' | b'+' | b';' | b'=');
        b += 1;
    }
    table
};

/// `*( unreserved / pct-encoded / sub-delims )` without `,`.
fn reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        let b = host[i];
        if b == b'%' {
            let hex = host.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME[usize::from(b)] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in [
            &b"example.com"[..],
            b"localhost:8080",
            b"127.0.0.1",
            b"[::1]:80",
            b"a-b.c_d~",
            b"h:",
            b"xn--d1acufc.xn--p1ai",
            b"a%20b",
        ] {
            assert!(valid_host(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b""[..],
            b"localhost:8080/path",
            b"user@host",
            b"user:pw@host",
            b"a, b",
            b"a,b",
            b"a b",
            b":80",
            b"h:80x",
            b"h:123456",
            b"[::1",
            b"[]",
            b"[zz]",
            b"h\0",
            b"h/",
            b"h?q",
            b"%zz",
        ] {
            assert!(!valid_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn targets() {
        assert_eq!(parse(b"GET", b"/a?b"), Ok(Target::Origin));
        assert_eq!(parse(b"OPTIONS", b"*"), Ok(Target::Asterisk));
        assert!(parse(b"GET", b"*").is_err());
        assert!(parse(b"OPTIONS", b"*x").is_err());
        assert_eq!(
            parse(b"GET", b"http://other.example/p?q"),
            Ok(Target::Absolute {
                authority: b"other.example",
                path: b"/p?q"
            })
        );
        assert_eq!(
            parse(b"GET", b"HTTPS://h:8443"),
            Ok(Target::Absolute {
                authority: b"h:8443",
                path: b""
            })
        );
        assert_eq!(
            parse(b"GET", b"http://h?q"),
            Ok(Target::Absolute {
                authority: b"h",
                path: b"?q"
            })
        );
        for bad in [
            &b"http://user@h/"[..],
            b"http:///p",
            b"http:/h/p",
            b"ftp://h/",
            b"h:80",
            b"foo",
            b"http://h#f",
            b"http://a,b/",
        ] {
            assert!(
                parse(b"GET", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
