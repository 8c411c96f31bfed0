//! AWS Signature Version 4 verification for the control API (`--api-credentials FILE`).
//!
//! Owns: reading the credentials file, parsing the `Authorization: AWS4-HMAC-SHA256 ...`
//! header (or the presigned `X-Amz-Signature` query form), rebuilding the canonical request
//! exactly as botocore and the aws CLI build it, and comparing signatures in constant time.
//! It does no I/O and reads no clock: the caller passes the request's raw parts and `now`.
//!
//! Credentials file, either form (blank lines and `#`/`;` comments ignored):
//!
//! ```text
//! [default]                          # optional; other [sections] are skipped
//! aws_access_key_id = AKIDEXAMPLE
//! aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
//! ```
//!
//! or a single line `AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`. The first is the
//! aws CLI's own `~/.aws/credentials`, so one file can serve the client and clb.
//!
//! The rules, checked in this order: an Authorization header or a presigned query must be
//! there (else MissingAuthenticationToken); it must parse (IncompleteSignature, 400); its
//! access key must be ours (InvalidClientTokenId); its scope must be
//! `DATE/REGION/elasticloadbalancing/aws4_request` with DATE the day of `X-Amz-Date`, any
//! region; `host` must be signed; `X-Amz-Date` must be within 15 minutes of `now`; a
//! `x-amz-content-sha256` header must equal the body's hash (unsigned payloads are refused);
//! then the signature must match. Every failure after parsing is SignatureDoesNotMatch
//! (403), like AWS's query services, including a stale date: AWS's IAM, STS and ELB answer
//! "Signature expired: ..." under that code, and botocore passes the code and message
//! through unchanged, so a skewed clock reads the same as against AWS.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::query::percent_decode;

type HmacSha256 = Hmac<Sha256>;

/// The only service a credential scope may name.
pub const SERVICE: &str = "elasticloadbalancing";
/// The only signing algorithm.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from `now`, either way (AWS's window).
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest presigned validity (`X-Amz-Expires`), AWS's seven days.
const MAX_PRESIGN_SECS: i64 = 7 * 24 * 3600;
/// Bounds on what a request may ask us to canonicalise.
const MAX_SIGNED_HEADERS: usize = 64;
const MAX_QUERY_PAIRS: usize = super::query::MAX_PARAMS + 16;
const MAX_CREDENTIALS_FILE: usize = 64 * 1024;
/// botocore's hash of an empty body, written out so tests can check `payload_hash`.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The one key pair the API accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    // The secret must not reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Reads a credentials file in either form the module comment shows.
pub fn load_credentials(text: &str) -> Result<Credentials, String> {
    if text.len() > MAX_CREDENTIALS_FILE {
        return Err(format!("credentials file is larger than {MAX_CREDENTIALS_FILE} bytes"));
    }
    let lines = text.lines().enumerate().map(|(n, l)| (n + 1, l.trim()));
    let mut lines = lines.filter(|(_, l)| !(l.is_empty() || l.starts_with('#') || l.starts_with(';')));
    let mut lines = lines.by_ref().peekable();
    let Some(&(_, first)) = lines.peek() else {
        return Err("credentials file is empty".into());
    };
    let ini_key = |l: &str| l.split_once('=').is_some_and(|(k, _)| k.trim().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let (id, secret) = if first.starts_with('[') || ini_key(first) {
        let (mut section_ok, mut id, mut secret) = (true, None, None);
        for (n, line) in lines {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section_ok = name.trim() == "default";
            } else if let Some((key, value)) = line.split_once('=') {
                let slot = match key.trim() {
                    "aws_access_key_id" => &mut id,
                    "aws_secret_access_key" => &mut secret,
                    _ => continue, // region, session token, ...: not ours
                };
                if section_ok && slot.replace(value.trim()).is_some() {
                    return Err(format!("line {n}: {} given twice", key.trim()));
                }
            } else {
                return Err(format!("line {n}: expected 'name = value' or '[section]'"));
            }
        }
        (id.ok_or("no aws_access_key_id in [default]")?, secret.ok_or("no aws_secret_access_key in [default]")?)
    } else {
        let (_, line) = lines.next().unwrap_or_default();
        if let Some((n, _)) = lines.next() {
            return Err(format!("line {n}: the ACCESS_KEY_ID:SECRET form is one line"));
        }
        line.split_once(':').ok_or("expected ACCESS_KEY_ID:SECRET or aws_access_key_id = ...")?
    };
    let (id, secret) = (id.trim(), secret.trim());
    // Characters that would break the Credential=AKID/... header syntax cannot be in a key id.
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic() && !b"/,=".contains(&b)) {
        return Err("access key id must be 1-128 printable characters without '/', ',' or '='".into());
    }
    if secret.is_empty() || secret.len() > 1024 || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("secret must be 1-1024 characters without spaces".into());
    }
    Ok(Credentials { access_key_id: id.to_string(), secret: secret.to_string() })
}

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
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(lower_name)).map(|(_, v)| *v)
    }

    /// The only value of a header; a repeated one is refused rather than guessed at.
    fn single_header(&self, lower_name: &'a str) -> Result<Option<&'a [u8]>, AuthError> {
        let mut values = self.header_values(lower_name);
        match (values.next(), values.next()) {
            (v, None) => Ok(v),
            _ => Err(AuthError::Incomplete(format!("The {lower_name} header is given more than once."))),
        }
    }
}

/// Why a request is not authenticated; each kind is one AWS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Neither an Authorization header nor a presigned query.
    MissingToken,
    /// The signature parts are present but unusable.
    Incomplete(String),
    /// The access key id is not the configured one.
    UnknownAccessKey,
    /// Wrong scope, stale date, tampered request or wrong secret.
    Mismatch(String),
}

impl AuthError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownAccessKey => "InvalidClientTokenId",
            AuthError::Mismatch(_) => "SignatureDoesNotMatch",
        }
    }

    /// HTTP status, as AWS answers each code.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Incomplete(_) => 400,
            _ => 403,
        }
    }

    /// The human message for the `<Message>` element.
    pub fn message(&self) -> String {
        match self {
            AuthError::MissingToken => "Missing Authentication Token".into(),
            AuthError::UnknownAccessKey => "The security token included in the request is invalid.".into(),
            AuthError::Incomplete(m) | AuthError::Mismatch(m) => m.clone(),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for AuthError {}

fn mismatch() -> AuthError {
    AuthError::Mismatch(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
            .into(),
    )
}

/// What a request claims about its signature, from either form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    /// `host;x-amz-date`: lowercase names joined by `;`, as signed.
    pub signed_headers: String,
    /// Lowercase hex, 64 characters when well-formed.
    pub signature: String,
}

impl Authorization {
    /// `DATE/REGION/SERVICE/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/{}", self.date, self.region, self.service, self.terminator)
    }
}

fn incomplete(what: &str) -> AuthError {
    AuthError::Incomplete(format!("Authorization requires a valid '{what}' parameter."))
}

fn parse_credential(cred: &str, auth: &mut Authorization) -> Result<(), AuthError> {
    let parts: Vec<&str> = cred.splitn(6, '/').collect();
    let [id, date, region, service, terminator] = parts[..] else {
        return Err(incomplete("Credential"));
    };
    if [id, date, region, service, terminator].iter().any(|p| p.is_empty() || p.len() > 128) {
        return Err(incomplete("Credential"));
    }
    (auth.access_key_id, auth.date, auth.region) = (id.into(), date.into(), region.into());
    (auth.service, auth.terminator) = (service.into(), terminator.into());
    Ok(())
}

fn empty_authorization() -> Authorization {
    let e = String::new;
    Authorization { access_key_id: e(), date: e(), region: e(), service: e(), terminator: e(), signed_headers: e(), signature: e() }
}

/// Parses an `Authorization` header value:
/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &[u8]) -> Result<Authorization, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| incomplete("Authorization"))?;
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!("Unsupported AWS 'algorithm': {:?}.", crate_echo(algorithm))));
    }
    let mut auth = empty_authorization();
    let (mut cred, mut headers, mut sig) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').ok_or_else(|| incomplete("Authorization"))?;
        let slot = match key.trim() {
            "Credential" => &mut cred,
            "SignedHeaders" => &mut headers,
            "Signature" => &mut sig,
            _ => return Err(incomplete("Authorization")),
        };
        if slot.replace(val.trim()).is_some() {
            return Err(incomplete(key.trim()));
        }
    }
    parse_credential(cred.ok_or_else(|| incomplete("Credential"))?, &mut auth)?;
    auth.signed_headers = headers.ok_or_else(|| incomplete("SignedHeaders"))?.into();
    auth.signature = sig.ok_or_else(|| incomplete("Signature"))?.into();
    Ok(auth)
}

/// A short, printable prefix of client text for messages.
fn crate_echo(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
}

/// The decoded (name, value) pairs of a raw query string, bounded. Undecodable escapes
/// stay literal: the signature is then simply computed over what was sent, and the query
/// parser reports the bad escape with a clearer error.
fn query_pairs(query: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, AuthError> {
    let mut pairs = Vec::new();
    for piece in query.as_bytes().split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(AuthError::Incomplete("The query string has too many parameters.".into()));
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

/// Reads the presigned form: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` in the query string.
fn parse_presigned(query: &str) -> Result<(Authorization, String, i64), AuthError> {
    let pairs = query_pairs(query)?;
    let get = |name: &str| {
        let mut found = pairs.iter().filter(|(n, _)| n == name.as_bytes());
        match (found.next(), found.next()) {
            (Some((_, v)), None) => std::str::from_utf8(v).map_err(|_| incomplete(name)),
            _ => Err(incomplete(name)),
        }
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(incomplete("X-Amz-Algorithm"));
    }
    let mut auth = empty_authorization();
    parse_credential(get("X-Amz-Credential")?, &mut auth)?;
    auth.signed_headers = get("X-Amz-SignedHeaders")?.into();
    auth.signature = get("X-Amz-Signature")?.into();
    let expires = get("X-Amz-Expires")?;
    let expires = expires.parse::<i64>().ok().filter(|e| (1..=MAX_PRESIGN_SECS).contains(e) && expires.bytes().all(|b| b.is_ascii_digit()));
    Ok((auth, get("X-Amz-Date")?.into(), expires.ok_or_else(|| incomplete("X-Amz-Expires"))?))
}

/// Checks `req` against `creds` at time `now` (see the module comment for the rules).
pub fn verify(req: &SignedRequest<'_>, creds: &Credentials, now: SystemTime) -> Result<(), AuthError> {
    let header = req.single_header("authorization")?;
    let presigned = query_pairs(req.query)?.iter().any(|(n, _)| n == b"X-Amz-Signature");
    let (auth, amz_date, expires) = match (header, presigned) {
        (None, false) => return Err(AuthError::MissingToken),
        (Some(_), true) => return Err(AuthError::Incomplete("Only one auth mechanism allowed; use the Authorization header or the X-Amz-Signature query parameter, not both.".into())),
        (Some(value), false) => {
            let date = req.single_header("x-amz-date")?.ok_or_else(|| AuthError::Incomplete("Authorization header requires existence of a 'X-Amz-Date' header.".into()))?;
            let date = std::str::from_utf8(date).map_err(|_| incomplete("X-Amz-Date"))?;
            (parse_authorization(value)?, date.trim().to_string(), None)
        }
        (None, true) => {
            let (auth, date, expires) = parse_presigned(req.query)?;
            (auth, date, Some(expires))
        }
    };
    if auth.access_key_id != creds.access_key_id {
        return Err(AuthError::UnknownAccessKey);
    }
    if auth.service != SERVICE {
        return Err(AuthError::Mismatch(format!("Credential should be scoped to correct service: '{SERVICE}'.")));
    }
    if auth.terminator != "aws4_request" {
        return Err(AuthError::Mismatch("Credential should be scoped with a valid terminator: 'aws4_request'.".into()));
    }
    let signed_at = parse_amz_date(&amz_date).ok_or_else(|| incomplete("X-Amz-Date"))?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(AuthError::Mismatch(format!("Date in Credential scope does not match YYYYMMDD from X-Amz-Date: '{}' != '{}'.", crate_echo(&auth.date), &amz_date[..8])));
    }
    check_time(signed_at, expires, now)?;
    if !auth.signed_headers.split(';').any(|h| h == "host") {
        return Err(AuthError::Mismatch("The host header must be signed.".into()));
    }
    let canonical = canonical_request(req, &auth.signed_headers, expires.is_some())?;
    let to_sign = string_to_sign(&amz_date, &auth.scope(), &canonical);
    let key = signing_key(&creds.secret, &auth.date, &auth.region, &auth.service)?;
    let provided = decode_hex32(&auth.signature).ok_or_else(mismatch)?;
    let mut mac = hmac(&key)?;
    mac.update(to_sign.as_bytes());
    // `verify_slice` compares in constant time, so timing does not leak how many
    // leading bytes of a forged signature were right.
    mac.verify_slice(&provided).map_err(|_| mismatch())
}

fn check_time(signed_at: i64, expires: Option<i64>, now: SystemTime) -> Result<(), AuthError> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if signed_at > now.saturating_add(MAX_SKEW_SECS) {
        let (s, n, limit) = (format_amz_date(signed_at), format_amz_date(now), format_amz_date(now + MAX_SKEW_SECS));
        return Err(AuthError::Mismatch(format!("Signature not yet current: {s} is still later than {limit} ({n} + 15 min.)")));
    }
    let oldest = match expires {
        Some(secs) => now - secs,
        None => now - MAX_SKEW_SECS,
    };
    if signed_at < oldest {
        let (s, n, o) = (format_amz_date(signed_at), format_amz_date(now), format_amz_date(oldest));
        let window = expires.map_or_else(|| "15 min.".to_string(), |e| format!("{e} s"));
        return Err(AuthError::Mismatch(format!("Signature expired: {s} is now earlier than {o} ({n} - {window})")));
    }
    Ok(())
}

/// Builds the Authorization header value for `req`, signing the listed headers (which must
/// include `X-Amz-Date` with `amz_date`). For tests and fuzz round trips: clb itself never
/// signs.
pub fn sign(req: &SignedRequest<'_>, creds: &Credentials, region: &str, amz_date: &str, signed_headers: &str) -> Result<String, AuthError> {
    let date = amz_date.get(..8).ok_or_else(|| incomplete("X-Amz-Date"))?;
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let canonical = canonical_request(req, signed_headers, false)?;
    let mut mac = hmac(&signing_key(&creds.secret, date, region, SERVICE)?)?;
    mac.update(string_to_sign(amz_date, &scope, &canonical).as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    Ok(format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", creds.access_key_id))
}

/// The canonical request: method, canonical URI, canonical query, canonical headers, the
/// signed header list and the payload hash, one per line. `presigned` leaves
/// `X-Amz-Signature` out of the query, as that form requires.
pub fn canonical_request(req: &SignedRequest<'_>, signed_headers: &str, presigned: bool) -> Result<Vec<u8>, AuthError> {
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
    Ok(pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&"))
}

/// Appends `name:value\n` for each signed header, in the signed order: values of repeated
/// headers joined by `,`, each trimmed with inner runs of white space made one space.
fn canonical_headers(out: &mut Vec<u8>, req: &SignedRequest<'_>, signed_headers: &str) -> Result<(), AuthError> {
    let names: Vec<&str> = signed_headers.split(';').collect();
    let valid = |n: &&str| !n.is_empty() && n.len() <= 128 && n.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase());
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
            let words = value.split(|b| b" \t\r\n\x0b\x0c".contains(b)).filter(|w| !w.is_empty());
            for (i, word) in words.enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(word);
            }
        }
        if !found {
            return Err(AuthError::Mismatch(format!("The signed header '{}' is not in the request.", crate_echo(name))));
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
            Err(AuthError::Mismatch("The x-amz-content-sha256 header does not match the body (unsigned payloads are refused).".into()))
        }
        _ => Ok(hash),
    }
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex sha256 of the canonical request}`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request)))
}

/// HMAC-SHA256 keyed with `key`. RustCrypto's HMAC accepts keys of any length, so the
/// error arm cannot happen; it fails closed rather than panicking all the same.
fn hmac(key: &[u8]) -> Result<HmacSha256, AuthError> {
    <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|_| mismatch())
}

fn hmac_step(key: &[u8], data: &str) -> Result<[u8; 32], AuthError> {
    let mut mac = hmac(key)?;
    mac.update(data.as_bytes());
    Ok(mac.finalize().into_bytes().into())
}

/// The derived key: HMAC chain over `AWS4{secret}`, date, region, service, `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Result<[u8; 32], AuthError> {
    let k = hmac_step(format!("AWS4{secret}").as_bytes(), date)?;
    let k = hmac_step(&k, region)?;
    let k = hmac_step(&k, service)?;
    hmac_step(&k, "aws4_request")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]).map(char::from).collect()
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// `YYYYMMDDTHHMMSSZ` to seconds since the epoch; `None` unless exactly that shape with
/// real calendar values.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r.clone()].iter().all(u8::is_ascii_digit).then(|| b[r].iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let max_day = *month_days.get(usize::try_from(mo).ok()?.checked_sub(1)?)?;
    if !(1..=max_day).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Seconds since the epoch to `YYYYMMDDTHHMMSSZ`, for messages.
pub fn format_amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Inverse of `days_from_civil` (same source).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
