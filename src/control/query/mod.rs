//! The parameters of one ELB Query API request (`Action=...&Version=2012-06-01&...`).
//!
//! Owns decoding the URL query string (GET) and the `application/x-www-form-urlencoded`
//! body (POST) into one set of (name, value) pairs, and reading AWS's flattened lists and
//! structures back out of it (`Listeners.member.1.Protocol`, ...). Nothing here knows any
//! action: the actions ask for names and get strings, or a [`QueryError`] that already
//! carries the AWS error code and a message naming the parameter.
//!
//! Invariants: every name and value is valid UTF-8 after percent-decoding; a name occurs
//! once; the counts and sizes below hold. The parser is total: any bytes give `Ok` or an
//! error, never a panic, in time linear in the input (plus a sort of at most
//! [`MAX_PARAMS`] names), so it can face the network and the fuzzer as is.

use std::collections::BTreeMap;
use std::fmt;

/// Most parameters in one request. ELB's largest requests (100 instances, tags) stay
/// far below; the bound keeps the map small whatever a client sends.
pub const MAX_PARAMS: usize = 1_000;
/// Longest parameter name, after decoding. The deepest ELB names are ~60 bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest parameter value, after decoding (policy documents are the big ones).
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Most bytes of query string and body together, before decoding.
pub const MAX_TOTAL_LEN: usize = 1024 * 1024;
/// Highest list index read from `Prefix.member.N`; AWS sends 1..=n with n far below.
pub const MAX_MEMBER_INDEX: u32 = 1_000;

/// Longest piece of client input echoed back in an error message.
const ECHO_LEN: usize = 64;

/// Why a request's parameters cannot be used; each kind maps to one AWS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Bad percent escape, invalid UTF-8, empty name, or a size/count limit passed.
    Malformed { param: String, reason: String },
    /// The same name given twice (in the query string, the body, or across both).
    Duplicate { param: String },
    /// A parameter the action needs is absent.
    Missing { param: String },
    /// A value that is present but does not fit its type or range.
    Invalid {
        param: String,
        value: String,
        constraint: &'static str,
    },
}

impl QueryError {
    /// The AWS error code, as botocore raises it to the caller.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Malformed { .. } => "MalformedQueryString",
            QueryError::Duplicate { .. } => "InvalidParameterValue",
            QueryError::Missing { .. } => "MissingParameter",
            // ELB's own answer for a value that fails its type or constraint.
            QueryError::Invalid { .. } => "ValidationError",
        }
    }

    /// HTTP status of the error answer. AWS documents 404 for MalformedQueryString; we
    /// answer 400 for all, as the request (not a resource) is at fault and botocore
    /// reads the code from the body either way.
    pub fn status(&self) -> u16 {
        400
    }

    /// The human message for the `<Message>` element.
    pub fn message(&self) -> String {
        self.to_string()
    }

    fn invalid(param: &str, value: &str, constraint: &'static str) -> QueryError {
        QueryError::Invalid {
            param: echo(param.as_bytes()),
            value: echo(value.as_bytes()),
            constraint,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Malformed { param, reason } => {
                if param.is_empty() {
                    write!(f, "The query string is malformed: {reason}.")
                } else {
                    let at = "The query string is malformed at parameter";
                    write!(f, "{at} '{param}': {reason}.")
                }
            }
            QueryError::Duplicate { param } => {
                write!(f, "The parameter {param} is given more than once.")
            }
            QueryError::Missing { param } => {
                write!(f, "The request must contain the parameter {param}.")
            }
            // ELB's ValidationError wording, so scripts written against AWS read the same.
            QueryError::Invalid {
                param,
                value,
                constraint,
            } => write!(
                f,
                "1 validation error detected: Value '{value}' at '{param}' \
                 failed to satisfy constraint: {constraint}"
            ),
        }
    }
}

impl std::error::Error for QueryError {}

/// A prefix of client bytes, lossily decoded, for error messages: bounded so an error
/// answer never repeats a 64 KiB value.
fn echo(raw: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&raw[..raw.len().min(ECHO_LEN)]).into_owned();
    if raw.len() > ECHO_LEN {
        s.push_str("...");
    }
    s
}

fn malformed(param: &[u8], reason: impl Into<String>) -> QueryError {
    QueryError::Malformed {
        param: echo(param),
        reason: reason.into(),
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form component: `%XX` to its byte and `+` to a space (browsers and
/// `curl --data-urlencode` send `+`; botocore sends `%20`, so both must work). `None`
/// for a `%` not followed by two hex digits.
pub(crate) fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => {
                let hi = hex_digit(*raw.get(i + 1)?)?;
                let lo = hex_digit(*raw.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The decoded parameters of one request, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    // Ordered by name so `members` can find a prefix with one range scan.
    map: BTreeMap<String, String>,
}

/// Parses the raw query string (without the `?`) and the raw form body together.
/// A body that is not form-encoded must not be passed here (the caller checks
/// `Content-Type`), since any bytes without `=` would read as names.
pub fn parse(query: &[u8], body: &[u8]) -> Result<Params, QueryError> {
    if query.len().saturating_add(body.len()) > MAX_TOTAL_LEN {
        return Err(malformed(
            b"",
            format!("query string and body exceed {MAX_TOTAL_LEN} bytes"),
        ));
    }
    let mut params = Params::default();
    for source in [query, body] {
        // Empty pieces (`a=1&&b=2`, a trailing `&`) carry nothing; AWS skips them too.
        for piece in source.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            params.insert(piece)?;
        }
    }
    Ok(params)
}

impl Params {
    fn insert(&mut self, piece: &[u8]) -> Result<(), QueryError> {
        if self.map.len() >= MAX_PARAMS {
            return Err(malformed(b"", format!("more than {MAX_PARAMS} parameters")));
        }
        // A piece without `=` is a name with an empty value, as in every form decoder.
        let (raw_name, raw_value) = match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &b""[..]),
        };
        let name = percent_decode(raw_name)
            .ok_or_else(|| malformed(raw_name, "invalid percent escape in the name"))?;
        let name =
            String::from_utf8(name).map_err(|_| malformed(raw_name, "the name is not UTF-8"))?;
        if name.is_empty() {
            return Err(malformed(raw_value, "a value without a parameter name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(malformed(
                name.as_bytes(),
                format!("the name is longer than {MAX_NAME_LEN} bytes"),
            ));
        }
        let value = percent_decode(raw_value)
            .ok_or_else(|| malformed(name.as_bytes(), "invalid percent escape in the value"))?;
        if value.len() > MAX_VALUE_LEN {
            return Err(malformed(
                name.as_bytes(),
                format!("the value is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
        let value = String::from_utf8(value)
            .map_err(|_| malformed(name.as_bytes(), "the value is not UTF-8"))?;
        if self.map.contains_key(&name) {
            return Err(QueryError::Duplicate {
                param: echo(name.as_bytes()),
            });
        }
        self.map.insert(name, value);
        Ok(())
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the request carried no parameter at all.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All (name, value) pairs, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`, if given (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of `name`, or MissingParameter.
    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name).ok_or_else(|| QueryError::Missing {
            param: name.to_string(),
        })
    }

    /// The `Action` parameter; the caller decides between MissingAction and InvalidAction.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The `Version` parameter (`2012-06-01` for every client of this API).
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// `name` as a boolean, if given; `true`/`false` in any case, as AWS's Java
    /// frontends accept.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, QueryError> {
        self.get(name).map(|v| parse_bool(name, v)).transpose()
    }

    /// `name` as an unsigned 32-bit integer, if given.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, QueryError> {
        self.get(name).map(|v| parse_u32(name, v)).transpose()
    }

    /// Pairs `(index, rest, value)` for every name `{prefix}.member.{index}{rest}`,
    /// ordered by index then rest. Names whose index is not a decimal in
    /// 1..=[`MAX_MEMBER_INDEX`] are not members (AWS ignores unknown names too).
    fn indexed<'p>(&'p self, prefix: &str) -> Vec<(u32, &'p str, &'p str)> {
        let head = format!("{prefix}.member.");
        let mut out: Vec<_> = self
            .map
            .range::<str, _>((
                std::ops::Bound::Included(head.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&head))
            .filter_map(|(k, v)| {
                let tail = &k[head.len()..];
                let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
                let index = parse_index(&tail[..digits])?;
                Some((index, &tail[digits..], v.as_str()))
            })
            .collect();
        // Names sort as text (`member.10` before `member.2`); lists go by number.
        out.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }

    /// A list of strings: the values of `{prefix}.member.1`, `.member.2`, ... in
    /// numeric order. Gaps are allowed (the values close up).
    pub fn members(&self, prefix: &str) -> Vec<&str> {
        self.indexed(prefix)
            .into_iter()
            .filter(|(_, rest, _)| rest.is_empty())
            .map(|(_, _, v)| v)
            .collect()
    }

    /// A list of structures: for `Listeners.member.1.Protocol=HTTP&Listeners.member.1.
    /// LoadBalancerPort=80`, one [`MemberStruct`] per index in numeric order, whose
    /// fields are the name parts after `{index}.` (`Protocol`, `LoadBalancerPort`; nested
    /// names such as `PolicyNames.member.1` stay whole and are read with
    /// [`MemberStruct::members`]).
    pub fn member_structs(&self, prefix: &str) -> Vec<MemberStruct<'_>> {
        let mut out: Vec<MemberStruct<'_>> = Vec::new();
        for (index, rest, value) in self.indexed(prefix) {
            let Some(field) = rest.strip_prefix('.').filter(|f| !f.is_empty()) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.index == index => {
                    last.fields.insert(field, value);
                }
                _ => out.push(MemberStruct {
                    prefix: prefix.to_string(),
                    index,
                    fields: BTreeMap::from([(field, value)]),
                }),
            }
        }
        out
    }
}

/// `1..=MAX_MEMBER_INDEX` written in decimal without a sign or leading zero.
fn parse_index(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.starts_with('0') || digits.len() > 4 {
        return None;
    }
    digits
        .parse()
        .ok()
        .filter(|i| (1..=MAX_MEMBER_INDEX).contains(i))
}

/// One element of a list of structures: its fields by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStruct<'a> {
    prefix: String,
    /// The N of `.member.N`, kept for error messages and for callers that echo it.
    pub index: u32,
    fields: BTreeMap<&'a str, &'a str>,
}

impl<'a> MemberStruct<'a> {
    /// The full parameter name of `field`, as errors must name it.
    pub fn name(&self, field: &str) -> String {
        format!("{}.member.{}.{}", self.prefix, self.index, field)
    }

    /// The value of `field` (`Key`, `LoadBalancerPort`, or a dotted nested name).
    pub fn get(&self, field: &str) -> Option<&'a str> {
        self.fields.get(field).copied()
    }

    /// The value of `field`, or MissingParameter naming the full parameter.
    pub fn required(&self, field: &str) -> Result<&'a str, QueryError> {
        self.get(field).ok_or_else(|| QueryError::Missing {
            param: self.name(field),
        })
    }

    /// `field` as a boolean, if given.
    pub fn bool(&self, field: &str) -> Result<Option<bool>, QueryError> {
        self.get(field)
            .map(|v| parse_bool(&self.name(field), v))
            .transpose()
    }

    /// `field` as an unsigned 32-bit integer, if given.
    pub fn u32(&self, field: &str) -> Result<Option<u32>, QueryError> {
        self.get(field)
            .map(|v| parse_u32(&self.name(field), v))
            .transpose()
    }

    /// A list nested in this structure: `{field}.member.1`, `.member.2`, ... in order.
    pub fn members(&self, field: &str) -> Vec<&'a str> {
        let head = format!("{field}.member.");
        let mut out: Vec<(u32, &'a str)> = self
            .fields
            .iter()
            .filter_map(|(k, v)| Some((parse_index(k.strip_prefix(head.as_str())?)?, *v)))
            .collect();
        out.sort_unstable_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, v)| v).collect()
    }
}

/// A Query boolean. `param` is the full name, for the error.
pub fn parse_bool(param: &str, value: &str) -> Result<bool, QueryError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(QueryError::invalid(
            param,
            value,
            "Member must be true or false",
        ))
    }
}

/// A Query integer that must fit in u32: decimal digits only, no sign or space.
pub fn parse_u32(param: &str, value: &str) -> Result<u32, QueryError> {
    // `str::parse` alone would accept a leading `+`; AWS's serialisers never send one.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::invalid(
            param,
            value,
            "Member must be a non-negative integer",
        ));
    }
    value
        .parse()
        .map_err(|_| QueryError::invalid(param, value, "Member must be at most 4294967295"))
}

#[cfg(test)]
mod tests;
