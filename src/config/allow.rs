//! Source allow lists (`--allow [PORT=]CIDR`), the operator's process-wide filter
//! (spec §15): a connection from an address no applicable rule covers is closed at
//! accept, before a byte of it is read. A load balancer's security groups (`vpc.rs`)
//! can narrow it further, never widen it.
//!
//! Rules without a port apply to every listener; rules with one only to that listener
//! port. A listener with no applicable rule accepts every source.

use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// The listener port it applies to; `None`: every listener.
    pub port: Option<u16>,
    pub network: Network,
}

/// Parses `[PORT=]CIDR` (an address alone is a /32 or /128).
pub fn parse_allow(text: &str) -> Result<AllowRule, String> {
    let (port, cidr) = match text.split_once('=') {
        Some((port, cidr)) => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("listener port '{port}' must be 1-65535"))?;
            (Some(port), cidr)
        }
        None => (None, text),
    };
    let (addr, prefix) = match cidr.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (cidr, None),
    };
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("prefix length '{p}' must be 0-{max}"))?,
    };
    Ok(AllowRule {
        port,
        network: Network { addr, prefix },
    })
}

/// Every rule, checked at accept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    pub rules: Vec<AllowRule>,
}

impl AllowList {
    pub fn permits(&self, listener_port: u16, source: IpAddr) -> bool {
        let mut applicable = self
            .rules
            .iter()
            .filter(|r| r.port.is_none_or(|p| p == listener_port))
            .peekable();
        if applicable.peek().is_none() {
            return true;
        }
        applicable.any(|r| r.network.contains(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_refuse_nonsense() {
        let r = parse_allow("10.0.0.0/8").unwrap();
        assert_eq!((r.port, r.network.to_string()), (None, "10.0.0.0/8".into()));
        let r = parse_allow("8080=127.0.0.1").unwrap();
        assert_eq!(
            (r.port, r.network.to_string()),
            (Some(8080), "127.0.0.1/32".into())
        );
        assert_eq!(parse_allow("::1").unwrap().network.to_string(), "::1/128");
        assert!(parse_allow("10.0.0.0/33").is_err());
        assert!(parse_allow("0=10.0.0.1").is_err());
        assert!(parse_allow("ten.0.0.1").is_err());
        assert!(parse_allow("").is_err());
    }

    #[test]
    fn listeners_with_rules_admit_only_their_sources() {
        let list = AllowList {
            rules: vec![
                parse_allow("127.0.0.1").unwrap(),
                parse_allow("9000=10.1.0.0/16").unwrap(),
            ],
        };
        assert!(list.permits(80, ip("127.0.0.1")));
        assert!(!list.permits(80, ip("127.0.0.2")));
        assert!(list.permits(9000, ip("10.1.2.3")));
        assert!(!list.permits(9000, ip("10.2.0.1")));
        // IPv4-mapped IPv6 sources are their IPv4 address.
        assert!(list.permits(80, ip("::ffff:127.0.0.1")));
        assert!(AllowList::default().permits(80, ip("192.0.2.1")));
        let all = AllowList {
            rules: vec![parse_allow("0.0.0.0/0").unwrap()],
        };
        assert!(all.permits(1, ip("203.0.113.9")));
        assert!(!all.permits(1, ip("2001:db8::1")));
    }
}
