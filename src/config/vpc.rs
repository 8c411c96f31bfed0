//! Security groups (`--security-group sg-ID=CIDR[,CIDR...]`) and subnets
//! (`--subnet ID=ZONE`): the VPC vocabulary the API speaks, defined by the operator.
//!
//! A security group is a named list of source networks. The API attaches groups to a
//! load balancer (CreateLoadBalancer, ApplySecurityGroupsToLoadBalancer); a load
//! balancer with groups admits a client only from a network of one of them, checked at
//! accept like `--allow` (README: a source must pass both). A subnet is a name for a
//! zone, so that `Subnets` and `AvailabilityZones` can both be answered.

use super::allow::{parse_allow, Network};
use std::net::IpAddr;

/// Longest security group or subnet id accepted (AWS ids are ~24 characters).
pub const MAX_ID_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub networks: Vec<Network>,
}

/// `sg-ID=CIDR[,CIDR...]`: an id starting `sg-` and at least one network.
pub fn parse_security_group(text: &str) -> Result<SecurityGroup, String> {
    let (id, list) = text.split_once('=').ok_or("must be sg-ID=CIDR[,CIDR...]")?;
    if !valid_security_group_id(id) {
        return Err(format!(
            "'{id}' must be sg- then 1 to {} of A-Z, a-z, 0-9 and '-'",
            MAX_ID_LEN - 3
        ));
    }
    let mut networks = Vec::new();
    for cidr in list.split(',') {
        let rule = parse_allow(cidr)?;
        if rule.port.is_some() {
            return Err(format!(
                "'{cidr}': a security group applies to every listener; give a CIDR without PORT="
            ));
        }
        networks.push(rule.network);
    }
    Ok(SecurityGroup {
        id: id.to_string(),
        networks,
    })
}

pub fn valid_security_group_id(id: &str) -> bool {
    id.strip_prefix("sg-").is_some_and(|rest| {
        !rest.is_empty()
            && id.len() <= MAX_ID_LEN
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// `ID=ZONE`: the subnet id and the zone it is in.
pub fn parse_subnet(text: &str) -> Result<(String, String), String> {
    let (id, zone) = text.split_once('=').ok_or("must be ID=ZONE")?;
    for (what, value) in [("subnet id", id), ("zone", zone)] {
        if !valid_label(value) {
            return Err(format!(
                "{what} '{value}' must be 1 to {MAX_ID_LEN} of A-Z, a-z, 0-9 and '-'"
            ));
        }
    }
    Ok((id.to_string(), zone.to_string()))
}

/// Subnet ids and zone names share one alphabet (a subnet with no `--subnet` mapping is
/// its own zone, so an id must be usable as a zone name).
pub fn valid_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The sources a load balancer admits: `None` when it has no security group (every
/// source), else the networks of all its groups together. Checked at accept.
pub fn admits(sources: Option<&[Network]>, ip: IpAddr) -> bool {
    sources.is_none_or(|networks| networks.iter().any(|n| n.contains(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_and_refuse_nonsense() {
        let g = parse_security_group("sg-web=127.0.0.2,10.0.0.0/8").unwrap();
        assert_eq!(g.id, "sg-web");
        let nets: Vec<String> = g.networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.2/32", "10.0.0.0/8"]);
        for bad in [
            "sg-web",
            "web=10.0.0.0/8",
            "sg-=10.0.0.0/8",
            "sg-a b=10.0.0.0/8",
            "sg-a=",
            "sg-a=10.0.0.0/33",
            "sg-a=80=10.0.0.0/8",
            "sg-a=10.0.0.1,",
        ] {
            assert!(parse_security_group(bad).is_err(), "{bad} accepted");
        }
        let long = format!("sg-{}=10.0.0.1", "a".repeat(MAX_ID_LEN));
        assert!(parse_security_group(&long).is_err());
    }

    #[test]
    fn subnets_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_subnet("subnet-1=zone-a").unwrap(),
            ("subnet-1".to_string(), "zone-a".to_string())
        );
        for bad in [
            "subnet-1",
            "=zone-a",
            "subnet-1=",
            "sub net=zone-a",
            "s=z/a",
        ] {
            assert!(parse_subnet(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn no_group_admits_everyone_and_groups_admit_their_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(admits(None, ip("192.0.2.1")));
        let g = parse_security_group("sg-1=127.0.0.2,10.1.0.0/16").unwrap();
        assert!(admits(Some(&g.networks), ip("127.0.0.2")));
        assert!(admits(Some(&g.networks), ip("10.1.200.3")));
        assert!(!admits(Some(&g.networks), ip("127.0.0.3")));
        assert!(!admits(Some(&[]), ip("127.0.0.2")));
    }
}
