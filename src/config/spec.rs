//! Parsers for the text forms of a listener, an instance and a zone list (the values of
//! `--listener`, `--instance` and `--zones`).
//!
//! They are pure and total: any input, however hostile (they are fuzzed), gives `Ok` with
//! every range of the spec checked, or an error that says what is allowed; never a panic.
//! An error echoes only the offending piece, escaped, because the caller already prints
//! the whole value next to the flag name.

use super::{Host, Instance, Listener, Protocol, DEFAULT_ZONE};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAX_INSTANCE_ID_CHARS: usize = 255;
/// RFC 1035 §2.3.4: 253 characters of name (255 octets on the wire), 63 per label.
const MAX_HOST_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
const MAX_ZONE_LEN: usize = 64;

const LISTENER_FORM: &str =
    "must be PROTO:PORT or PROTO:PORT:INSTANCE_PROTO:INSTANCE_PORT, e.g. http:8080:http:80";
const INSTANCE_FORM: &str = "must be ID=HOST[:PORT][@ZONE], e.g. i-1=10.0.0.1:8080@zone-a";
const PORT_RANGE: &str = "must be a whole number from 1 to 65535";
const ZONE_RULE: &str = "must be 1 to 64 of A-Z, a-z, 0-9 and '-'";

/// Why a listener spec was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerSpecError {
    /// Not two or four `:`-separated fields.
    Shape,
    /// A protocol field that is not http, https, tcp or ssl.
    Protocol(String),
    /// A port field that is not a whole number from 1 to 65535 (spec §1.4, §1.5).
    Port(String),
    /// Layer 7 on one side and layer 4 on the other (spec §1.2).
    MixedLayers {
        protocol: Protocol,
        instance_protocol: Protocol,
    },
}

impl fmt::Display for ListenerSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerSpecError::Shape => f.write_str(LISTENER_FORM),
            ListenerSpecError::Protocol(p) => {
                write!(f, "protocol {} must be http, https, tcp or ssl", Quoted(p))
            }
            ListenerSpecError::Port(p) => write!(f, "port {} {PORT_RANGE}", Quoted(p)),
            ListenerSpecError::MixedLayers {
                protocol,
                instance_protocol,
            } => write!(
                f,
                "{} cannot forward to {}: http and https forward to http or https, \
                 tcp and ssl to tcp or ssl",
                protocol.as_str(),
                instance_protocol.as_str()
            ),
        }
    }
}

impl std::error::Error for ListenerSpecError {}

/// Why an instance spec was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceSpecError {
    /// No `=` between the id and the host.
    Shape,
    /// An id that is empty, too long, or holds whitespace or control characters.
    Id(String),
    /// A host that is neither an IPv4 address, a bracketed IPv6 address nor a DNS name.
    Host(String),
    /// An IPv6 address without brackets: its colons cannot be told from the port's.
    UnbracketedIpv6(String),
    Port(String),
    Zone(String),
}

impl fmt::Display for InstanceSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceSpecError::Shape => f.write_str(INSTANCE_FORM),
            InstanceSpecError::Id(id) => write!(
                f,
                "instance id {} must be 1 to {MAX_INSTANCE_ID_CHARS} characters \
                 without whitespace, control characters or '='",
                Quoted(id)
            ),
            InstanceSpecError::Host(h) => write!(
                f,
                "host {} must be an IPv4 address, a bracketed IPv6 address such as [::1], \
                 or a DNS name of letters, digits, '-' and '.' (at most {MAX_HOST_NAME_LEN} characters)",
                Quoted(h)
            ),
            InstanceSpecError::UnbracketedIpv6(h) => write!(
                f,
                "IPv6 address {} must be in brackets, e.g. [::1]:8080",
                Quoted(h)
            ),
            InstanceSpecError::Port(p) => write!(f, "port {} {PORT_RANGE}", Quoted(p)),
            InstanceSpecError::Zone(z) => write!(f, "zone {} {ZONE_RULE}", Quoted(z)),
        }
    }
}

impl std::error::Error for InstanceSpecError {}

/// Parses `PROTO:PORT[:INSTANCE_PROTO:INSTANCE_PORT]`; PROTO is case-insensitive.
///
/// Without the instance part the back end is unencrypted (HTTP behind http/https, TCP
/// behind tcp/ssl) on the same port, as ELB's console proposes. Whether a protocol is
/// built yet is the caller's business: all four parse.
pub fn parse_listener(s: &str) -> Result<Listener, ListenerSpecError> {
    let mut fields = s.split(':');
    let front = (fields.next(), fields.next());
    let back = (fields.next(), fields.next());
    if fields.next().is_some() {
        return Err(ListenerSpecError::Shape);
    }
    let (Some(protocol), Some(port)) = front else {
        return Err(ListenerSpecError::Shape);
    };
    let protocol = parse_protocol(protocol)?;
    let port = parse_port(port).ok_or_else(|| ListenerSpecError::Port(port.to_owned()))?;
    let (instance_protocol, instance_port) = match back {
        (None, None) => {
            let unencrypted = if protocol.is_http() {
                Protocol::Http
            } else {
                Protocol::Tcp
            };
            (unencrypted, port)
        }
        (Some(p), Some(ip)) => (
            parse_protocol(p)?,
            parse_port(ip).ok_or_else(|| ListenerSpecError::Port(ip.to_owned()))?,
        ),
        _ => return Err(ListenerSpecError::Shape),
    };
    if protocol.is_http() != instance_protocol.is_http() {
        return Err(ListenerSpecError::MixedLayers {
            protocol,
            instance_protocol,
        });
    }
    Ok(Listener {
        protocol,
        port,
        instance_protocol,
        instance_port,
        ssl_certificate_id: None,
    })
}

fn parse_protocol(s: &str) -> Result<Protocol, ListenerSpecError> {
    [
        Protocol::Http,
        Protocol::Https,
        Protocol::Tcp,
        Protocol::Ssl,
    ]
    .into_iter()
    .find(|p| p.as_str().eq_ignore_ascii_case(s))
    .ok_or_else(|| ListenerSpecError::Protocol(s.to_owned()))
}

/// 1–65535 in plain ASCII digits; `str::parse` alone would also take a leading `+`.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&port| port != 0)
}

/// Parses `ID=HOST[:PORT][@ZONE]`.
///
/// The id ends at the first `=`, so an id may itself look like `10.0.0.1:80` (the API
/// accepts such ids as addresses); the zone starts at the first `@` after it, which no
/// host form contains.
pub fn parse_instance(s: &str) -> Result<Instance, InstanceSpecError> {
    let (id, rest) = s.split_once('=').ok_or(InstanceSpecError::Shape)?;
    if !valid_instance_id(id) {
        return Err(InstanceSpecError::Id(id.to_owned()));
    }
    let (address, zone) = match rest.split_once('@') {
        Some((address, zone)) => (address, zone),
        None => (rest, DEFAULT_ZONE),
    };
    if !valid_zone(zone) {
        return Err(InstanceSpecError::Zone(zone.to_owned()));
    }
    let (host, port) = parse_address(address)?;
    Ok(Instance {
        id: id.to_owned(),
        host,
        port,
        zone: zone.to_owned(),
    })
}

fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_INSTANCE_ID_CHARS
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=')
}

/// `HOST[:PORT]`, where an IPv6 HOST is bracketed.
fn parse_address(s: &str) -> Result<(Host, Option<u16>), InstanceSpecError> {
    let port_of = |p: &str| parse_port(p).ok_or_else(|| InstanceSpecError::Port(p.to_owned()));
    if let Some(bracketed) = s.strip_prefix('[') {
        let bad_host = || InstanceSpecError::Host(s.to_owned());
        let (inside, after) = bracketed.split_once(']').ok_or_else(bad_host)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| bad_host())?;
        let port = match after {
            "" => None,
            _ => Some(port_of(after.strip_prefix(':').ok_or_else(bad_host)?)?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Err(InstanceSpecError::UnbracketedIpv6(s.to_owned()));
    }
    match s.split_once(':') {
        None => Ok((parse_host(s)?, None)),
        Some((host, port)) => Ok((parse_host(host)?, Some(port_of(port)?))),
    }
}

/// An IPv4 address or a DNS name. Anything made only of digits and dots is taken for an
/// address, so `10.0.0.256` is refused rather than looked up as a name.
fn parse_host(s: &str) -> Result<Host, InstanceSpecError> {
    let bad_host = || InstanceSpecError::Host(s.to_owned());
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let ip: Ipv4Addr = s.parse().map_err(|_| bad_host())?;
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if valid_host_name(s) {
        Ok(Host::Name(s.to_owned()))
    } else {
        Err(bad_host())
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. One
/// trailing dot (the root) is allowed, as resolvers accept it.
fn valid_host_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    !name.is_empty()
        && name.len() <= MAX_HOST_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= MAX_ZONE_LEN
        && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Parses a comma-separated zone list. Blanks around a name are ignored (`a, b` is a
/// natural way to write a list); empty names are refused; repeats are dropped, keeping
/// the order in which zones were first named.
pub fn parse_zones(s: &str) -> Result<Vec<String>, String> {
    let mut zones = Vec::new();
    let mut seen = HashSet::new();
    for zone in s.split(',').map(str::trim) {
        if zone.is_empty() {
            return Err(format!(
                "empty zone name: give zone names separated by commas, e.g. {DEFAULT_ZONE},zone-b"
            ));
        }
        if !valid_zone(zone) {
            return Err(format!("zone {} {ZONE_RULE}", Quoted(zone)));
        }
        if seen.insert(zone) {
            zones.push(zone.to_owned());
        }
    }
    Ok(zones)
}

/// Shows user text in single quotes with control characters escaped, so a hostile value
/// cannot move the cursor or forge a second line on the user's terminal.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(
        protocol: Protocol,
        port: u16,
        instance_protocol: Protocol,
        instance_port: u16,
    ) -> Listener {
        Listener {
            protocol,
            port,
            instance_protocol,
            instance_port,
            ssl_certificate_id: None,
        }
    }

    #[test]
    fn listeners_in_full_and_short_form() {
        use Protocol::*;
        let cases = [
            ("http:8080:http:80", listener(Http, 8080, Http, 80)),
            ("HTTP:80", listener(Http, 80, Http, 80)),
            ("https:443", listener(Https, 443, Http, 443)),
            ("https:8443:http:80", listener(Https, 8443, Http, 80)),
            ("HttpS:8443:HTTPS:8443", listener(Https, 8443, Https, 8443)),
            ("tcp:5432", listener(Tcp, 5432, Tcp, 5432)),
            ("ssl:443", listener(Ssl, 443, Tcp, 443)),
            ("ssl:443:ssl:8443", listener(Ssl, 443, Ssl, 8443)),
            ("tcp:1:tcp:65535", listener(Tcp, 1, Tcp, 65535)),
            ("http:0080", listener(Http, 80, Http, 80)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_listener(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn listeners_refused() {
        use ListenerSpecError::*;
        let port = |p: &str| Port(p.to_owned());
        let proto = |p: &str| Protocol(p.to_owned());
        let cases = [
            ("", Shape),
            (":", proto("")),
            ("http", Shape),
            ("http:80:http", Shape),
            ("http:80:http:80:x", Shape),
            ("http:80:", Shape),
            ("ftp:21", proto("ftp")),
            ("htt\u{0440}:80", proto("htt\u{0440}")),
            ("http:0", port("0")),
            ("http:65536", port("65536")),
            ("http:+80", port("+80")),
            ("http:-1", port("-1")),
            ("http: 80", port(" 80")),
            ("http:\u{0668}\u{0660}", port("\u{0668}\u{0660}")),
            (
                "http:99999999999999999999999999",
                port("99999999999999999999999999"),
            ),
            ("http:80:http:0", port("0")),
            ("http::http:80", port("")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_listener(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn layers_never_mix() {
        for text in [
            "http:80:tcp:80",
            "https:443:ssl:443",
            "tcp:80:http:80",
            "ssl:1:https:1",
        ] {
            assert!(
                matches!(
                    parse_listener(text),
                    Err(ListenerSpecError::MixedLayers { .. })
                ),
                "{text}"
            );
        }
        let e = parse_listener("http:80:tcp:80").unwrap_err().to_string();
        assert!(e.starts_with("HTTP cannot forward to TCP"), "{e}");
    }

    fn instance(id: &str, host: Host, port: Option<u16>, zone: &str) -> Instance {
        Instance {
            id: id.into(),
            host,
            port,
            zone: zone.into(),
        }
    }

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn instances_accepted() {
        let name = |s: &str| Host::Name(s.into());
        let cases = [
            (
                "i-1=10.0.0.1",
                instance("i-1", ip("10.0.0.1"), None, DEFAULT_ZONE),
            ),
            (
                "i-1=10.0.0.1:8080",
                instance("i-1", ip("10.0.0.1"), Some(8080), DEFAULT_ZONE),
            ),
            (
                "i-1=10.0.0.1:8080@us-east-1a",
                instance("i-1", ip("10.0.0.1"), Some(8080), "us-east-1a"),
            ),
            ("i-1=10.0.0.1@b", instance("i-1", ip("10.0.0.1"), None, "b")),
            ("v6=[::1]", instance("v6", ip("::1"), None, DEFAULT_ZONE)),
            (
                "v6=[fe80::1:2]:81@z",
                instance("v6", ip("fe80::1:2"), Some(81), "z"),
            ),
            (
                "10.0.0.1:80=10.0.0.1:80",
                instance("10.0.0.1:80", ip("10.0.0.1"), Some(80), DEFAULT_ZONE),
            ),
            (
                "web=localhost:3000",
                instance("web", name("localhost"), Some(3000), DEFAULT_ZONE),
            ),
            (
                "web=app-1.internal.example.",
                instance("web", name("app-1.internal.example."), None, DEFAULT_ZONE),
            ),
            (
                "\u{e9}t\u{e9}=1e100.net",
                instance("\u{e9}t\u{e9}", name("1e100.net"), None, DEFAULT_ZONE),
            ),
            ("a@b=h", instance("a@b", name("h"), None, DEFAULT_ZONE)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_instance(text), Ok(want), "{text}");
        }
        let longest_id = "i".repeat(MAX_INSTANCE_ID_CHARS);
        assert!(parse_instance(&format!("{longest_id}=h")).is_ok());
        let label = "a".repeat(MAX_LABEL_LEN);
        let longest_name = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(longest_name.len(), MAX_HOST_NAME_LEN);
        assert!(parse_instance(&format!("i={longest_name}")).is_ok());
    }

    #[test]
    fn instances_refused() {
        use InstanceSpecError::*;
        let s = |v: &str| v.to_owned();
        let cases = [
            ("", Shape),
            ("10.0.0.1:80", Shape),
            ("=10.0.0.1", Id(s(""))),
            ("i 1=10.0.0.1", Id(s("i 1"))),
            ("i\u{7}=10.0.0.1", Id(s("i\u{7}"))),
            ("i\u{a0}=h", Id(s("i\u{a0}"))),
            ("i=", Host(s(""))),
            ("i=@z", Host(s(""))),
            ("i=:80", Host(s(""))),
            ("i=10.0.0.256", Host(s("10.0.0.256"))),
            ("i=1.2.3", Host(s("1.2.3"))),
            ("i=under_score", Host(s("under_score"))),
            ("i=a..b", Host(s("a..b"))),
            ("i=-a.b", Host(s("-a.b"))),
            ("i=a-.b", Host(s("a-.b"))),
            ("i=h\u{f6}st", Host(s("h\u{f6}st"))),
            ("i=.", Host(s("."))),
            ("i=[::1", Host(s("[::1"))),
            ("i=[1.2.3.4]", Host(s("[1.2.3.4]"))),
            ("i=[::1]80", Host(s("[::1]80"))),
            ("i=[::1]:", Port(s(""))),
            ("i=::1", UnbracketedIpv6(s("::1"))),
            ("i=fe80::1:80", UnbracketedIpv6(s("fe80::1:80"))),
            ("i=h:0", Port(s("0"))),
            ("i=h:65536", Port(s("65536"))),
            ("i=h:1:2", Port(s("1:2"))),
            ("i=h:80:", Port(s("80:"))),
            ("i=h:18446744073709551617", Port(s("18446744073709551617"))),
            ("i=h@", Zone(s(""))),
            ("i=h@a_b", Zone(s("a_b"))),
            ("i=h@a@b", Zone(s("a@b"))),
            ("i=h@z\u{f6}ne", Zone(s("z\u{f6}ne"))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_instance(text), Err(want), "{text:?}");
        }
        let too_long_id = "i".repeat(MAX_INSTANCE_ID_CHARS + 1);
        assert!(matches!(
            parse_instance(&format!("{too_long_id}=h")),
            Err(Id(_))
        ));
        let too_long_label = "a".repeat(MAX_LABEL_LEN + 1);
        assert!(matches!(
            parse_instance(&format!("i={too_long_label}")),
            Err(Host(_))
        ));
        let label = "a".repeat(MAX_LABEL_LEN);
        let too_long_name = format!("{label}.{label}.{label}.{}", "b".repeat(62));
        assert!(matches!(
            parse_instance(&format!("i={too_long_name}")),
            Err(Host(_))
        ));
        let too_long_zone = "z".repeat(MAX_ZONE_LEN + 1);
        assert!(matches!(
            parse_instance(&format!("i=h@{too_long_zone}")),
            Err(Zone(_))
        ));
    }

    #[test]
    fn zone_lists() {
        let v = |z: &[&str]| Ok(z.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(parse_zones("zone-a"), v(&["zone-a"]));
        assert_eq!(parse_zones("b,a,b,c,a"), v(&["b", "a", "c"]));
        assert_eq!(parse_zones("a, b"), v(&["a", "b"]));
        assert_eq!(
            parse_zones(&"z".repeat(MAX_ZONE_LEN)),
            v(&[&"z".repeat(MAX_ZONE_LEN)])
        );
        for bad in [
            "",
            ",",
            "a,",
            ",a",
            "a,,b",
            " ",
            "a_b",
            "z\u{f6}ne",
            &"z".repeat(65),
        ] {
            assert!(parse_zones(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_escape_what_they_echo() {
        let e = parse_listener("ht\ntp:80").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("'ht\\ntp'"), "{e}");
        let e = parse_zones("a\u{1b}[2J").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e}");
        let e = parse_instance("i=h:\u{7f}").unwrap_err().to_string();
        assert!(e.starts_with("port '\\u{7f}'"), "{e}");
    }

    #[test]
    fn every_error_says_what_is_allowed() {
        let listener_errors = ["x", "ftp:1", "http:0", "http:80:tcp:80"];
        for text in listener_errors {
            let e = parse_listener(text).unwrap_err().to_string();
            assert!(e.contains("must") || e.contains("forward to"), "{e}");
        }
        for text in ["x", "=h", "i=_", "i=::1", "i=h:0", "i=h@_"] {
            let e = parse_instance(text).unwrap_err().to_string();
            assert!(e.contains("must"), "{e}");
        }
    }
}
