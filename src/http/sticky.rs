//! Sticky sessions (spec §7): the `AWSELB` cookie, its companion `AWSELBCORS`, and the
//! application-cookie policy's rules.
//!
//! The cookie value is an opaque upper-case hex token naming the instance (its id and
//! the back-end port, so another back-end port loses stickiness, spec §7.3) followed by
//! an HMAC-SHA256 tag under a per-installation key, so a client cannot forge a route to
//! an instance of its choosing: a token that does not verify is ignored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Bytes of the HMAC tag kept in the cookie.
const TAG: usize = 16;
/// Longest instance id a token carries (ELB ids are short; HOST:PORT ids too).
const MAX_ID: usize = 255;

/// A listener's stickiness policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `LBCookieStickinessPolicyType`: the cookie lives `period` seconds, or the browser
    /// session when `None`.
    Duration { period: Option<u64> },
    /// `AppCookieStickinessPolicyType`: follows the application cookie `cookie`.
    Application { cookie: String },
}

/// Parses `--sticky lb[:SECONDS]` or `--sticky app:COOKIE`.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    match text.split_once(':') {
        None if text == "lb" => Ok(Policy::Duration { period: None }),
        Some(("lb", seconds)) => seconds
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .map(|s| Policy::Duration { period: Some(s) })
            .ok_or_else(|| format!("'{seconds}' must be a whole number of seconds above 0")),
        Some(("app", cookie)) if valid_cookie_name(cookie) => Ok(Policy::Application {
            cookie: cookie.to_string(),
        }),
        Some(("app", cookie)) => Err(format!("'{cookie}' is not a cookie name")),
        _ => Err("must be lb, lb:SECONDS or app:COOKIE".to_string()),
    }
}

/// RFC 6265 cookie-name: a token.
fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The key tokens are signed with.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn new(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&full[..TAG]);
        tag
    }

    /// The cookie value naming `instance` behind back-end `port`.
    pub fn token(&self, instance: &str, port: u16) -> String {
        let mut payload = Vec::with_capacity(instance.len() + 3);
        payload.extend_from_slice(&port.to_be_bytes());
        payload.extend_from_slice(instance.as_bytes());
        let tag = self.tag(&payload);
        let mut out = String::with_capacity((payload.len() + TAG) * 2);
        for b in payload.iter().chain(tag.iter()) {
            out.push_str(&format!("{b:02X}"));
        }
        out
    }

    /// The instance and back-end port a genuine token names; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<(String, u16)> {
        let bytes = decode_hex(token)?;
        if bytes.len() < 2 + 1 + TAG || bytes.len() > 2 + MAX_ID + TAG {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG);
        let expected = self.tag(payload);
        // Constant time, so timing says nothing about how much of a forgery was right.
        if expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return None;
        }
        let port = u16::from_be_bytes([payload[0], payload[1]]);
        let id = std::str::from_utf8(&payload[2..]).ok()?;
        Some((id.to_string(), port))
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * (2 + MAX_ID + TAG) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The value of cookie `name` among `Cookie` header values, if present.
pub fn cookie_value<'a>(cookie_headers: &[&'a [u8]], name: &str) -> Option<&'a str> {
    for header in cookie_headers {
        let text = std::str::from_utf8(header).ok()?;
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k.trim() == name {
                    return Some(v.trim().trim_matches('"'));
                }
            }
        }
    }
    None
}

/// `Set-Cookie` lines for the duration policy: `AWSELB`, its CORS companion, and the
/// cache directive ELB sends with them (spec §7.4–7.6).
pub fn duration_cookies(token: &str, period: Option<u64>) -> String {
    let max_age = period.map_or(String::new(), |p| format!(";MAX-AGE={p}"));
    format!(
        "Set-Cookie: AWSELB={token};PATH=/{max_age}\r\n\
         Set-Cookie: AWSELBCORS={token};PATH=/{max_age};SECURE;SAMESITE=None\r\n\
         Cache-control: no-cache=\"set-cookie\"\r\n"
    )
}

/// `Set-Cookie` lines for the application policy, when the instance's response head
/// sets a new `app_cookie` (spec §7.9–7.10): the AWSELB cookie copies its attributes
/// (an underscore in `path` becomes `%5F`); a `Set-Cookie` ending with `;` is ignored
/// (spec §7.12). `None` when the response sets no such cookie.
pub fn application_cookies(
    set_cookie_headers: &[&[u8]],
    app_cookie: &str,
    token: &str,
) -> Option<String> {
    let header = set_cookie_headers.iter().find_map(|h| {
        let text = std::str::from_utf8(h).ok()?.trim();
        let (name, _) = text.split_once('=')?;
        (name.trim() == app_cookie && !text.ends_with(';')).then_some(text)
    })?;
    let mut attributes = String::new();
    for attribute in header.split(';').skip(1) {
        let attribute = attribute.trim();
        let (name, value) = attribute.split_once('=').unwrap_or((attribute, ""));
        let lower = name.trim().to_ascii_lowercase();
        let copied = [
            "path",
            "port",
            "domain",
            "secure",
            "httponly",
            "discard",
            "max-age",
            "expires",
            "version",
            "comment",
            "commenturl",
            "samesite",
        ];
        if !copied.contains(&lower.as_str()) {
            continue;
        }
        attributes.push(';');
        attributes.push_str(name.trim());
        if attribute.contains('=') {
            attributes.push('=');
            if lower == "path" {
                attributes.push_str(&value.trim().replace('_', "%5F"));
            } else {
                attributes.push_str(value.trim());
            }
        }
    }
    Some(format!(
        "Set-Cookie: AWSELB={token}{attributes}\r\n\
         Set-Cookie: AWSELBCORS={token}{attributes};SECURE;SAMESITE=None\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let key = Key::new([7; 32]);
        let token = key.token("i-0abc", 8080);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        assert_eq!(key.verify(&token), Some(("i-0abc".to_string(), 8080)));
        // Another key, a flipped digit, a truncation, garbage: all ignored.
        assert_eq!(Key::new([8; 32]).verify(&token), None);
        let mut flipped = token.clone().into_bytes();
        flipped[3] = if flipped[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.verify(std::str::from_utf8(&flipped).unwrap()), None);
        assert_eq!(key.verify(&token[..token.len() - 2]), None);
        assert_eq!(key.verify("zz"), None);
        assert_eq!(key.verify(""), None);
    }

    #[test]
    fn policies_parse() {
        assert_eq!(parse_policy("lb"), Ok(Policy::Duration { period: None }));
        assert_eq!(
            parse_policy("lb:60"),
            Ok(Policy::Duration { period: Some(60) })
        );
        assert_eq!(
            parse_policy("app:JSESSIONID"),
            Ok(Policy::Application {
                cookie: "JSESSIONID".into()
            })
        );
        assert!(parse_policy("lb:0").is_err());
        assert!(parse_policy("app:").is_err());
        assert!(parse_policy("app:a b").is_err());
        assert!(parse_policy("other").is_err());
    }

    #[test]
    fn cookies_are_found_and_written_as_elb_does() {
        let headers: [&[u8]; 2] = [b"a=1; AWSELB=ABC", b"JSESSIONID=\"x\""];
        assert_eq!(cookie_value(&headers, "AWSELB"), Some("ABC"));
        assert_eq!(cookie_value(&headers, "JSESSIONID"), Some("x"));
        assert_eq!(cookie_value(&headers, "missing"), None);
        assert_eq!(
            duration_cookies("T", Some(60)),
            "Set-Cookie: AWSELB=T;PATH=/;MAX-AGE=60\r\n\
             Set-Cookie: AWSELBCORS=T;PATH=/;MAX-AGE=60;SECURE;SAMESITE=None\r\n\
             Cache-control: no-cache=\"set-cookie\"\r\n"
        );
        let set: [&[u8]; 1] = [b"JSESSIONID=abc; Path=/my_path; HttpOnly; Foo=bar"];
        assert_eq!(
            application_cookies(&set, "JSESSIONID", "T").unwrap(),
            "Set-Cookie: AWSELB=T;Path=/my%5Fpath;HttpOnly\r\n\
             Set-Cookie: AWSELBCORS=T;Path=/my%5Fpath;HttpOnly;SECURE;SAMESITE=None\r\n"
        );
        let trailing: [&[u8]; 1] = [b"JSESSIONID=abc; Path=/;"];
        assert_eq!(application_cookies(&trailing, "JSESSIONID", "T"), None);
    }
}
