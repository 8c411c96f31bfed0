//! The canonical request of SigV4 and the HMAC chain over it, byte for byte as botocore
//! builds them for every service but S3 (`botocore/auth.py`, `SigV4Auth`). Public so a fuzz
//! target can drive each piece; every function is total on any input and bounded by the
//! limits below.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{echo, incomplete, mismatch, AuthError, ALGORITHM};
use crate::control::query::percent_decode;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// Most headers one signature may cover; botocore signs three or four.
const MAX_SIGNED_HEADERS: usize = 64;
/// Most query pairs canonicalised: the query parser's bound plus the presigned `X-Amz-*`.
const MAX_QUERY_PAIRS: usize = crate::control::query::MAX_PARAMS + 16;
/// The hash of an empty body, written out so tests can check `payload_hash`.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The raw parts of a request, as received: `path` and `query` are the request target
/// split at the first `?` (still percent-encoded); `headers` are all header lines with
/// names in any case (duplicates kept, in order).
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    fn header_values(&self, lower_name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(lower_name))
            .map(|(_, v)| *v)
    }

    /// The only value of a header; a repeated one is refused rather than guessed at.
    pub(super) fn single_header(&self, lower_name: &'a str) -> Result<Option<&'a [u8]>, AuthError> {
        let mut values = self.header_values(lower_name);
        match (values.next(), values.next()) {
            (v, None) => Ok(v),
            _ => Err(AuthError::Incomplete(format!(
                "The {lower_name} header is given more than once."
            ))),
        }
    }
}

/// A decoded (name, value) pair of the query string, as bytes: SigV4 signs bytes.
pub(crate) type QueryPair = (Vec<u8>, Vec<u8>);

/// The decoded (name, value) pairs of a raw query string, bounded. Undecodable escapes
/// stay literal: the signature is then simply computed over what was sent, and the query
/// parser reports the bad escape with a clearer error.
pub(crate) fn query_pairs(query: &str) -> Result<Vec<QueryPair>, AuthError> {
    let mut pairs = Vec::new();
    for piece in query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
    {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(AuthError::Incomplete(
                "The query string has too many parameters.".into(),
            ));
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &b""[..]),
        };
        let decode = |raw: &[u8]| percent_decode(raw).unwrap_or_else(|| raw.to_vec());
        pairs.push((decode(name), decode(value)));
    }
    Ok(pairs)
}

/// The canonical request: method, canonical URI, canonical query, canonical headers, the
/// signed header list and the payload hash, one per line. `presigned` leaves
/// `X-Amz-Signature` out of the query, as that form requires.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &str,
    presigned: bool,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(256 + req.query.len());
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.query, presigned)?.as_bytes());
    out.push(b'\n');
    canonical_headers(&mut out, req, signed_headers)?;
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash(req)?.as_bytes());
    Ok(out)
}

/// SigV4's URI encoding: unreserved characters stay, `/` stays when `keep_slash`,
/// every other byte becomes `%XX` (uppercase hex).
fn uri_encode(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The canonical URI as botocore computes it for every service but S3: dot segments and
/// empty segments removed, then the (already encoded) path encoded once more.
pub fn canonical_uri(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut normal = String::from("/");
    normal.push_str(&kept.join("/"));
    if path.ends_with('/') && !kept.is_empty() {
        normal.push('/');
    }
    let mut out = String::with_capacity(normal.len());
    uri_encode(&mut out, normal.as_bytes(), true);
    out
}

/// The canonical query string: every pair decoded, re-encoded per SigV4, sorted by name
/// then value, joined by `&` (an empty value keeps its `=`).
pub fn canonical_query(query: &str, presigned: bool) -> Result<String, AuthError> {
    let mut pairs: Vec<(String, String)> = query_pairs(query)?
        .into_iter()
        .filter(|(n, _)| !(presigned && n == b"X-Amz-Signature"))
        .map(|(n, v)| {
            let (mut name, mut value) = (String::new(), String::new());
            uri_encode(&mut name, &n, false);
            uri_encode(&mut value, &v, false);
            (name, value)
        })
        .collect();
    pairs.sort_unstable();
    Ok(pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
}

/// Appends `name:value\n` for each signed header, in the signed order: values of repeated
/// headers joined by `,`, each trimmed with inner runs of white space made one space.
fn canonical_headers(
    out: &mut Vec<u8>,
    req: &SignedRequest<'_>,
    signed_headers: &str,
) -> Result<(), AuthError> {
    let names: Vec<&str> = signed_headers.split(';').collect();
    let valid = |n: &&str| {
        !n.is_empty()
            && n.len() <= 128
            && n.bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    };
    if names.len() > MAX_SIGNED_HEADERS || !names.iter().all(valid) {
        return Err(incomplete("SignedHeaders"));
    }
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut found = false;
        for value in req.header_values(name) {
            if found {
                out.push(b',');
            }
            found = true;
            let words = value
                .split(|b| b" \t\r\n\x0b\x0c".contains(b))
                .filter(|w| !w.is_empty());
            for (i, word) in words.enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(word);
            }
        }
        if !found {
            return Err(AuthError::Mismatch(format!(
                "The signed header '{}' is not in the request.",
                echo(name)
            )));
        }
        out.push(b'\n');
    }
    Ok(())
}

/// Hex SHA-256 of the body, after checking a `x-amz-content-sha256` header against it.
pub fn payload_hash(req: &SignedRequest<'_>) -> Result<String, AuthError> {
    let hash = hex(&Sha256::digest(req.body));
    match req.single_header("x-amz-content-sha256")? {
        Some(claimed) if claimed != hash.as_bytes() => {
            const WHY: &str = "The x-amz-content-sha256 header does not match the body \
                               (unsigned payloads are refused).";
            Err(AuthError::Mismatch(WHY.into()))
        }
        _ => Ok(hash),
    }
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex sha256 of the canonical request}`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request))
    )
}

/// HMAC-SHA256 keyed with `key`. RustCrypto's HMAC accepts keys of any length, so the
/// error arm cannot happen; it fails closed rather than panicking all the same.
pub(super) fn hmac(key: &[u8]) -> Result<HmacSha256, AuthError> {
    <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|_| mismatch())
}

fn hmac_step(key: &[u8], data: &str) -> Result<[u8; 32], AuthError> {
    let mut mac = hmac(key)?;
    mac.update(data.as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// The derived key: HMAC chain over `AWS4{secret}`, date, region, service, `aws4_request`.
pub fn signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Result<[u8; 32], AuthError> {
    let k = hmac_step(format!("AWS4{secret}").as_bytes(), date)?;
    let k = hmac_step(&k, region)?;
    let k = hmac_step(&k, service)?;
    hmac_step(&k, "aws4_request")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

pub(super) fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}
