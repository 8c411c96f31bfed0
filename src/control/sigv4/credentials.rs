//! The credentials file of `--api-credentials` (both forms are shown in the `sigv4` module
//! comment). Read once at start; the secret never reaches `Debug` output.

use std::fmt;

/// Largest credentials file read; a real one is under 200 bytes.
const MAX_CREDENTIALS_FILE: usize = 64 * 1024;

/// The one key pair the API accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    // The secret must not reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Reads a credentials file in either form the module comment shows.
pub fn load_credentials(text: &str) -> Result<Credentials, String> {
    if text.len() > MAX_CREDENTIALS_FILE {
        return Err(format!(
            "credentials file is larger than {MAX_CREDENTIALS_FILE} bytes"
        ));
    }
    let mut lines = (text.lines().enumerate())
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !(l.is_empty() || l.starts_with('#') || l.starts_with(';')))
        .peekable();
    let Some(&(_, first)) = lines.peek() else {
        return Err("credentials file is empty".into());
    };
    let ini_key = |l: &str| {
        l.split_once('=').is_some_and(|(k, _)| {
            k.trim()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    };
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
        (
            id.ok_or("no aws_access_key_id in [default]")?,
            secret.ok_or("no aws_secret_access_key in [default]")?,
        )
    } else {
        let (_, line) = lines.next().unwrap_or_default();
        if let Some((n, _)) = lines.next() {
            return Err(format!(
                "line {n}: the ACCESS_KEY_ID:SECRET form is one line"
            ));
        }
        line.split_once(':')
            .ok_or("expected ACCESS_KEY_ID:SECRET or aws_access_key_id = ...")?
    };
    let (id, secret) = (id.trim(), secret.trim());
    // Characters that would break the Credential=AKID/... header syntax cannot be in a key id.
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/,=".contains(&b))
    {
        return Err(
            "access key id must be 1-128 printable characters without '/', ',' or '='".into(),
        );
    }
    if secret.is_empty()
        || secret.len() > 1024
        || secret.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("secret must be 1-1024 characters without spaces".into());
    }
    Ok(Credentials {
        access_key_id: id.to_string(),
        secret: secret.to_string(),
    })
}
