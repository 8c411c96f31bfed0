//! A strict, independent HTTP/1.1 request reader: what the instance behind clb is assumed
//! to be, at its most suspicious. It shares no code with clb's request path (no httparse,
//! no `crate::http`), so a fuzz target or a test can read the bytes clb forwards with it
//! and compare the framing it finds with the framing clb used.
//!
//! Stricter than RFC 9112 where laxness elsewhere could frame differently: exactly one
//! `Host`; at most one framing header, where any name with the letters of
//! `Transfer-Encoding` or `Content-Length` counts as one (a server may fold `_` into `-`);
//! CRLF line ends only; no obs-fold; origin-form or `*` targets; version `HTTP/1.1` only
//! (clb always sends 1.1).

/// One request read from the front of a byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub host: Vec<u8>,
    /// Bytes of the head, through its empty line.
    pub head_len: usize,
    pub framing: Framing,
    /// The body's payload (chunks decoded).
    pub payload: Vec<u8>,
    /// Bytes of the whole request, head and body with its framing.
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Reads the request at the front of `bytes`. `Err` says what a strict server would
/// refuse, or `"incomplete"` when the bytes end first.
pub fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    let (head_len, lines) = head_lines(bytes)?;
    let mut lines = lines.into_iter();
    let request_line = lines.next().ok_or("no request line")?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "request line is not three parts: {:?}",
            String::from_utf8_lossy(request_line)
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| tchar(b)) {
        return Err("bad method".into());
    }
    let target_ok = (target.first() == Some(&b'/') || target == b"*")
        && target.iter().all(|&b| b > b' ' && b != 0x7f);
    if !target_ok {
        return Err(format!(
            "target not in origin form: {:?}",
            String::from_utf8_lossy(target)
        ));
    }
    if version != b"HTTP/1.1" {
        return Err(format!("version {:?}", String::from_utf8_lossy(version)));
    }
    let mut host = None;
    let mut framing = Framing::None;
    let mut framing_headers = 0;
    for line in lines {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("field line without a colon")?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
            return Err(format!(
                "bad field name {:?}",
                String::from_utf8_lossy(name)
            ));
        }
        if !value.iter().all(|&b| field_byte(b)) {
            return Err(format!(
                "bad byte in the value of {:?}",
                String::from_utf8_lossy(name)
            ));
        }
        let letters: Vec<u8> = name
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(u8::to_ascii_lowercase)
            .collect();
        if letters == b"transferencoding" || letters == b"contentlength" {
            framing_headers += 1;
            if framing_headers > 1 {
                return Err("more than one framing header".into());
            }
            framing = if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let codings: Vec<&[u8]> = value.split(|&b| b == b',').map(trim).collect();
                let ok = codings
                    .last()
                    .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
                let all_tokens = codings
                    .iter()
                    .all(|c| !c.is_empty() && c.iter().all(|&b| tchar(b)));
                let chunked_once = codings
                    .iter()
                    .filter(|c| c.eq_ignore_ascii_case(b"chunked"))
                    .count()
                    == 1;
                if !(ok && all_tokens && chunked_once) {
                    return Err("Transfer-Encoding does not end in chunked".into());
                }
                Framing::Chunked
            } else if name.eq_ignore_ascii_case(b"content-length") {
                if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                    return Err("Content-Length is not 1*DIGIT".into());
                }
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or("Content-Length")?;
                Framing::Length(n)
            } else {
                return Err(format!(
                    "a framing look-alike: {:?}",
                    String::from_utf8_lossy(name)
                ));
            };
        } else if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err("two Host headers".into());
            }
            let ok = !value.is_empty()
                && !value
                    .iter()
                    .any(|&b| matches!(b, b',' | b'/' | b'@' | b' ' | b'\t' | b'?' | b'#'));
            if !ok {
                return Err(format!("bad Host {:?}", String::from_utf8_lossy(value)));
            }
            host = Some(value.to_vec());
        }
    }
    let host = host.ok_or("no Host")?;
    let body = &bytes[head_len..];
    let (payload, body_len) = match framing {
        Framing::None => (Vec::new(), 0),
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| "huge")?;
            (body.get(..n).ok_or("incomplete")?.to_vec(), n)
        }
        Framing::Chunked => chunked(body)?,
    };
    Ok(Request {
        method: method.to_vec(),
        target: target.to_vec(),
        host,
        head_len,
        framing,
        payload,
        len: head_len + body_len,
    })
}

/// The head's lines (without CRLF) and its length; every line must end in CRLF.
fn head_lines(bytes: &[u8]) -> Result<(usize, Vec<&[u8]>), String> {
    let mut lines = Vec::new();
    let mut at = 0;
    loop {
        let (line, next) = crlf_line(bytes, at)?;
        if line.is_empty() {
            if lines.is_empty() {
                return Err("empty line before the request line".into());
            }
            return Ok((next, lines));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("obs-fold or leading whitespace".into());
        }
        lines.push(line);
        at = next;
        if lines.len() > 256 {
            return Err("too many lines".into());
        }
    }
}

/// The line starting at `at` and where the next one starts; a CR or LF anywhere but in
/// the final CRLF is an error.
fn crlf_line(bytes: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let rest = bytes.get(at..).ok_or("incomplete")?;
    let end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .ok_or("incomplete")?;
    match (rest[end], rest.get(end + 1)) {
        (b'\r', Some(b'\n')) => Ok((&rest[..end], at + end + 2)),
        (b'\r', None) => Err("incomplete".into()),
        _ => Err("bare LF or lone CR".into()),
    }
}

/// A chunked body: its payload and its length on the wire, framing included.
fn chunked(body: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut payload = Vec::new();
    let mut at = 0;
    loop {
        let (line, next) = crlf_line(body, at)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 {
            return Err(format!("chunk size {:?}", String::from_utf8_lossy(line)));
        }
        chunk_extensions(&line[digits..])?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&line[..digits]).map_err(|e| e.to_string())?,
            16,
        )
        .map_err(|e| e.to_string())?;
        at = next;
        if size == 0 {
            loop {
                let (line, next) = crlf_line(body, at)?;
                at = next;
                if line.is_empty() {
                    return Ok((payload, at));
                }
                let colon = line.iter().position(|&b| b == b':').ok_or("trailer line")?;
                let name_ok = colon > 0 && line[..colon].iter().all(|&b| tchar(b));
                if !name_ok || !line[colon + 1..].iter().all(|&b| field_byte(b)) {
                    return Err("bad trailer line".into());
                }
            }
        }
        let end = at.checked_add(size).ok_or("huge")?;
        payload.extend_from_slice(body.get(at..end).ok_or("incomplete")?);
        match body.get(end..end + 2) {
            Some(b"\r\n") => at = end + 2,
            Some(_) => return Err("chunk data not followed by CRLF".into()),
            None => return Err("incomplete".into()),
        }
    }
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, checked by
/// splitting rather than by a state machine (to differ from clb's decoder).
fn chunk_extensions(mut rest: &[u8]) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "chunk extension {:?}",
            String::from_utf8_lossy(rest)
        ))
    };
    while !rest.is_empty() {
        let after_bws = trim_start(rest);
        let Some(after_semi) = after_bws.strip_prefix(b";") else {
            return bad();
        };
        let after = trim_start(after_semi);
        let name_len = after.iter().take_while(|&&b| tchar(b)).count();
        if name_len == 0 {
            return bad();
        }
        let after_name = &after[name_len..];
        let maybe_eq = trim_start(after_name);
        let Some(value) = maybe_eq.strip_prefix(b"=") else {
            // No value: what follows is the next `;` (after BWS) or nothing at all.
            if after_name.is_empty() || maybe_eq.first() == Some(&b';') {
                rest = maybe_eq;
                continue;
            }
            return bad();
        };
        let value = trim_start(value);
        let value_len = if value.first() == Some(&b'"') {
            let mut i = 1;
            loop {
                match value.get(i) {
                    Some(b'"') => break i + 1,
                    Some(b'\\') if value.get(i + 1).is_some_and(|&b| field_byte(b)) => i += 2,
                    Some(&b) if field_byte(b) && b != b'\\' => i += 1,
                    _ => return bad(),
                }
            }
        } else {
            value.iter().take_while(|&&b| tchar(b)).count()
        };
        if value_len == 0 {
            return bad();
        }
        rest = &value[value_len..];
        // After a value: the end, or BWS and `;`.
        if !rest.is_empty() && trim_start(rest).first() != Some(&b';') {
            return bad();
        }
    }
    Ok(())
}

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR, obs-text.
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn trim(v: &[u8]) -> &[u8] {
    let v = trim_start(v);
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    &v[..end]
}

fn trim_start(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    &v[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clean_requests() {
        let r = parse_request(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcNEXT")
            .unwrap();
        assert_eq!(
            (r.framing, r.payload.as_slice(), r.len),
            (Framing::Length(3), &b"abc"[..], 51)
        );
        let r = parse_request(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"b\"\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.framing, r.payload.as_slice()),
            (Framing::Chunked, &b"abc"[..])
        );
        assert_eq!(r.len, r.head_len + 25);
    }

    #[test]
    fn refuses_what_a_strict_server_refuses() {
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;\r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;bad[=x\r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(parse_request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
