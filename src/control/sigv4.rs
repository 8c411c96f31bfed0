//! AWS Signature Version 4 verification for the control API (`--api-credentials FILE`).
//!
//! Owns: reading the credentials file, parsing the `Authorization: AWS4-HMAC-SHA256 ...`
//! header (or the presigned `X-Amz-Signature` query form), rebuilding the canonical request
//! exactly as botocore and the aws CLI build it, and comparing signatures in constant time.
//! It does no I/O and reads no clock: the caller passes the request's raw parts and `now`.
//! Files: `credentials` (the key file), `canonical` (the canonical request and the HMAC
//! chain, public so fuzz targets reach them), `time` (`X-Amz-Date` and the window).
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
use std::time::SystemTime;

use hmac::Mac;

mod canonical;
mod credentials;
mod time;

pub use canonical::{
    canonical_query, canonical_request, canonical_uri, payload_hash, signing_key, string_to_sign,
    SignedRequest, EMPTY_SHA256,
};
pub use credentials::{load_credentials, Credentials};
pub use time::{format_amz_date, parse_amz_date};

pub(crate) use canonical::query_pairs;
use canonical::{decode_hex32, hex, hmac};
use time::check_time;

/// The only service a credential scope may name.
pub const SERVICE: &str = "elasticloadbalancing";
/// The only signing algorithm.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from `now`, either way (AWS's window).
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest presigned validity (`X-Amz-Expires`), AWS's seven days.
const MAX_PRESIGN_SECS: i64 = 7 * 24 * 3600;

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
            AuthError::UnknownAccessKey => {
                "The security token included in the request is invalid.".into()
            }
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
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

fn incomplete(what: &str) -> AuthError {
    AuthError::Incomplete(format!(
        "Authorization requires a valid '{what}' parameter."
    ))
}

fn parse_credential(cred: &str, auth: &mut Authorization) -> Result<(), AuthError> {
    let parts: Vec<&str> = cred.splitn(6, '/').collect();
    let [id, date, region, service, terminator] = parts[..] else {
        return Err(incomplete("Credential"));
    };
    if [id, date, region, service, terminator]
        .iter()
        .any(|p| p.is_empty() || p.len() > 128)
    {
        return Err(incomplete("Credential"));
    }
    (auth.access_key_id, auth.date, auth.region) = (id.into(), date.into(), region.into());
    (auth.service, auth.terminator) = (service.into(), terminator.into());
    Ok(())
}

fn empty_authorization() -> Authorization {
    let e = String::new;
    Authorization {
        access_key_id: e(),
        date: e(),
        region: e(),
        service: e(),
        terminator: e(),
        signed_headers: e(),
        signature: e(),
    }
}

/// Parses an `Authorization` header value: `AWS4-HMAC-SHA256
/// Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &[u8]) -> Result<Authorization, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| incomplete("Authorization"))?;
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported AWS 'algorithm': {:?}.",
            echo(algorithm)
        )));
    }
    let mut auth = empty_authorization();
    let (mut cred, mut headers, mut sig) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part
            .split_once('=')
            .ok_or_else(|| incomplete("Authorization"))?;
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
fn echo(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
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
    let expires = expires.parse::<i64>().ok().filter(|e| {
        (1..=MAX_PRESIGN_SECS).contains(e) && expires.bytes().all(|b| b.is_ascii_digit())
    });
    Ok((
        auth,
        get("X-Amz-Date")?.into(),
        expires.ok_or_else(|| incomplete("X-Amz-Expires"))?,
    ))
}

const BOTH_FORMS: &str = "Only one auth mechanism allowed; use the Authorization header \
                          or the X-Amz-Signature query parameter, not both.";

/// The `X-Amz-Date` header that the header form requires.
fn header_date(req: &SignedRequest<'_>) -> Result<String, AuthError> {
    let date = req.single_header("x-amz-date")?.ok_or_else(|| {
        AuthError::Incomplete(
            "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
        )
    })?;
    let date = std::str::from_utf8(date).map_err(|_| incomplete("X-Amz-Date"))?;
    Ok(date.trim().to_string())
}

/// Checks `req` against `creds` at time `now` (see the module comment for the rules).
pub fn verify(
    req: &SignedRequest<'_>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<(), AuthError> {
    let header = req.single_header("authorization")?;
    let presigned = query_pairs(req.query)?
        .iter()
        .any(|(n, _)| n == b"X-Amz-Signature");
    let (auth, amz_date, expires) = match (header, presigned) {
        (None, false) => return Err(AuthError::MissingToken),
        (Some(_), true) => return Err(AuthError::Incomplete(BOTH_FORMS.into())),
        (Some(value), false) => (parse_authorization(value)?, header_date(req)?, None),
        (None, true) => {
            let (auth, date, expires) = parse_presigned(req.query)?;
            (auth, date, Some(expires))
        }
    };
    if auth.access_key_id != creds.access_key_id {
        return Err(AuthError::UnknownAccessKey);
    }
    if auth.service != SERVICE {
        return Err(AuthError::Mismatch(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(AuthError::Mismatch(
            "Credential should be scoped with a valid terminator: 'aws4_request'.".into(),
        ));
    }
    let signed_at = parse_amz_date(&amz_date).ok_or_else(|| incomplete("X-Amz-Date"))?;
    let day = amz_date.get(..8).unwrap_or_default();
    if day != auth.date {
        return Err(AuthError::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from X-Amz-Date: '{}' != '{day}'.",
            echo(&auth.date)
        )));
    }
    check_time(signed_at, expires, now)?;
    if !auth.signed_headers.split(';').any(|h| h == "host") {
        return Err(AuthError::Mismatch(
            "The host header must be signed.".into(),
        ));
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

/// Builds the Authorization header value for `req`, signing the listed headers (which must
/// include `X-Amz-Date` with `amz_date`). For tests and fuzz round trips: clb itself never
/// signs.
pub fn sign(
    req: &SignedRequest<'_>,
    creds: &Credentials,
    region: &str,
    amz_date: &str,
    signed_headers: &str,
) -> Result<String, AuthError> {
    let date = amz_date.get(..8).ok_or_else(|| incomplete("X-Amz-Date"))?;
    let scope = format!("{date}/{region}/{SERVICE}/aws4_request");
    let canonical = canonical_request(req, signed_headers, false)?;
    let mut mac = hmac(&signing_key(&creds.secret, date, region, SERVICE)?)?;
    mac.update(string_to_sign(amz_date, &scope, &canonical).as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    Ok(format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    ))
}

#[cfg(test)]
mod tests;
