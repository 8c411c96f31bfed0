//! `--address-pool`: the IPv4 addresses load balancers take their listen address from,
//! one address per load balancer, the way each ELB has its own IPs.
//!
//! A pool is a comma-separated list of CIDR blocks and single addresses, kept as sorted,
//! merged ranges so a `/8` costs two numbers, not sixteen million. A CIDR block of
//! prefix /30 or shorter gives its host addresses only (not the network and broadcast
//! addresses); /31 and /32 give every address. IPv6 pools are refused: the listeners and
//! the allocator are IPv4-only for now (README).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Addresses one allocation tries at most, so a large pool of addresses this host does
/// not have cannot stall the control thread.
pub const MAX_SCAN: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPool {
    /// Inclusive ranges of addresses as numbers, sorted, non-overlapping, non-adjacent.
    ranges: Vec<(u32, u32)>,
    /// The flag's text, for messages.
    text: String,
}

impl AddressPool {
    /// Parses `CIDR|ADDR[,CIDR|ADDR...]`; the error says why, without the flag name.
    pub fn parse(text: &str) -> Result<AddressPool, String> {
        let mut ranges = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err("must be CIDR blocks or IPv4 addresses separated by commas, e.g. 127.0.3.0/29 or 10.0.0.5,10.0.0.6".into());
            }
            ranges.push(parse_item(item)?);
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(start) <= u64::from(last.1) + 1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(AddressPool {
            ranges: merged,
            text: text.to_string(),
        })
    }

    /// How many addresses the pool holds.
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(s, e)| u64::from(e) - u64::from(s) + 1)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let n = u32::from(v4);
                self.ranges.iter().any(|&(s, e)| (s..=e).contains(&n))
            }
            IpAddr::V6(_) => false,
        }
    }

    /// The address at position `index` (0-based, in address order), if the pool has one.
    pub fn nth(&self, mut index: u64) -> Option<Ipv4Addr> {
        for &(s, e) in &self.ranges {
            let size = u64::from(e) - u64::from(s) + 1;
            if index < size {
                return u32::try_from(u64::from(s) + index).ok().map(Ipv4Addr::from);
            }
            index -= size;
        }
        None
    }

    /// The pool's position of `ip` (the inverse of [`AddressPool::nth`]).
    pub fn position(&self, ip: IpAddr) -> Option<u64> {
        let IpAddr::V4(v4) = ip else { return None };
        let n = u32::from(v4);
        let mut before = 0u64;
        for &(s, e) in &self.ranges {
            if (s..=e).contains(&n) {
                return Some(before + u64::from(n - s));
            }
            before += u64::from(e) - u64::from(s) + 1;
        }
        None
    }

    /// The first address, in pool order from `start` and wrapping, that is not `taken`
    /// and that `bindable` accepts; at most [`MAX_SCAN`] addresses are tried.
    pub fn first_free(
        &self,
        start: u64,
        taken: impl Fn(IpAddr) -> bool,
        bindable: impl Fn(IpAddr) -> bool,
    ) -> Option<IpAddr> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let mut tried = 0;
        for step in 0..len {
            let ip = IpAddr::V4(self.nth((start % len + step) % len)?);
            if taken(ip) {
                continue;
            }
            if tried == MAX_SCAN {
                return None;
            }
            tried += 1;
            if bindable(ip) {
                return Some(ip);
            }
        }
        None
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether this host can listen on `ip` (binding port 0 asks the kernel, takes nothing).
pub fn bindable(ip: IpAddr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

fn parse_item(item: &str) -> Result<(u32, u32), String> {
    let (addr, prefix) = match item.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (item, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 address"))?;
    let IpAddr::V4(v4) = ip else {
        return Err(format!(
            "'{item}': IPv6 pools are not supported (IPv4 addresses only)"
        ));
    };
    let n = u32::from(v4);
    let (start, end) = match prefix {
        None => (n, n),
        Some(p) => {
            let bits: u32 = p
                .parse()
                .ok()
                .filter(|b| *b <= 32 && p.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("'{item}': the prefix length must be 0 to 32"))?;
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            if n & !mask != 0 {
                return Err(format!(
                    "'{item}' has host bits set: the block is {}/{bits}",
                    Ipv4Addr::from(n & mask)
                ));
            }
            let (network, broadcast) = (n, n | !mask);
            // Network and broadcast addresses are no host's (RFC 1122 §3.2.1.3).
            if bits <= 30 {
                (network + 1, broadcast - 1)
            } else {
                (network, broadcast)
            }
        }
    };
    let (first, last) = (Ipv4Addr::from(start), Ipv4Addr::from(end));
    if first.is_unspecified() || last.is_multicast() || last.is_broadcast() || end >= 0xE000_0000 {
        return Err(format!(
            "'{item}' must hold only unicast addresses (not 0.0.0.0, multicast or broadcast)"
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_give_their_host_addresses() {
        let pool = AddressPool::parse("127.0.3.0/29").unwrap();
        assert_eq!(pool.len(), 6);
        assert_eq!(pool.nth(0), Some("127.0.3.1".parse().unwrap()));
        assert_eq!(pool.nth(5), Some("127.0.3.6".parse().unwrap()));
        assert_eq!(pool.nth(6), None);
        assert!(!pool.contains(ip("127.0.3.0")));
        assert!(!pool.contains(ip("127.0.3.7")));
        assert_eq!(AddressPool::parse("10.0.0.4/31").unwrap().len(), 2);
        assert_eq!(AddressPool::parse("10.0.0.4/32").unwrap().len(), 1);
    }

    #[test]
    fn lists_merge_and_keep_address_order() {
        let pool = AddressPool::parse("127.0.3.9,127.0.3.0/30, 127.0.3.3").unwrap();
        assert_eq!(pool.len(), 4);
        let all: Vec<Ipv4Addr> = (0..4).filter_map(|i| pool.nth(i)).collect();
        assert_eq!(
            all,
            ["127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.9"]
                .map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(pool.position(ip("127.0.3.9")), Some(3));
        assert_eq!(pool.position(ip("127.0.3.4")), None);
        assert_eq!(pool.to_string(), "127.0.3.9,127.0.3.0/30, 127.0.3.3");
    }

    #[test]
    fn bad_pools_are_refused_with_a_reason() {
        for (text, why) in [
            ("", "separated by commas"),
            ("127.0.3.0/29,", "separated by commas"),
            ("fd00::/64", "IPv6 pools are not supported"),
            ("::1", "IPv6 pools are not supported"),
            ("127.0.3.1/29", "host bits set: the block is 127.0.3.0/29"),
            ("127.0.3.0/33", "prefix length"),
            ("127.0.3.0/+8", "prefix length"),
            ("localhost", "not an IPv4 address"),
            ("0.0.0.0", "unicast"),
            ("0.0.0.0/0", "unicast"),
            ("224.0.0.1", "unicast"),
            ("255.255.255.255", "unicast"),
        ] {
            let e = AddressPool::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn allocation_skips_taken_and_unbindable_addresses_and_wraps() {
        let pool = AddressPool::parse("127.0.3.0/29").unwrap();
        let taken = |ip: IpAddr| ip == "127.0.3.2".parse::<IpAddr>().unwrap();
        let no_3 = |ip: IpAddr| ip != "127.0.3.3".parse::<IpAddr>().unwrap();
        assert_eq!(pool.first_free(1, taken, no_3), Some(ip("127.0.3.4")));
        assert_eq!(pool.first_free(5, taken, no_3), Some(ip("127.0.3.6")));
        assert_eq!(pool.first_free(6, taken, no_3), Some(ip("127.0.3.1")));
        assert_eq!(pool.first_free(0, |_| true, |_| true), None);
        assert_eq!(pool.first_free(0, |_| false, |_| false), None);
    }

    #[test]
    fn a_huge_pool_of_foreign_addresses_is_scanned_only_so_far() {
        let pool = AddressPool::parse("10.0.0.0/8").unwrap();
        let tried = std::cell::Cell::new(0u64);
        let none = pool.first_free(
            0,
            |_| false,
            |_| {
                tried.set(tried.get() + 1);
                false
            },
        );
        assert_eq!(none, None);
        assert_eq!(tried.get(), MAX_SCAN);
    }
}
