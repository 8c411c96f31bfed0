//! Subnets and security groups on the model (spec §14, §15, §19.3–19.4), and the rule
//! that makes CreateLoadBalancer repeatable (§19.2).
//!
//! A subnet is a name for a zone (`--subnet ID=ZONE`; an id with no mapping is its own
//! zone), at most one per zone; attaching one enables its zone, detaching disables it.
//! A security group names source networks (`--security-group`); the groups attached to a
//! load balancer decide, with `--allow`, which clients it accepts (README).

use super::*;
use crate::config::vpc::{valid_label, SecurityGroup};

/// What one CreateLoadBalancer call asks for, as far as a repeat is compared.
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub listeners: &'a [Listener],
    pub zones: &'a [String],
    pub subnets: &'a [String],
    pub scheme: &'a str,
    pub security_groups: &'a [String],
}

impl Model {
    /// The zone each subnet is in; one subnet per zone.
    pub fn subnet_zones(&self, subnets: &[String]) -> Result<Vec<String>, ApiError> {
        let mut zones: Vec<String> = Vec::with_capacity(subnets.len());
        for (i, subnet) in subnets.iter().enumerate() {
            if !valid_label(subnet) {
                return Err(ApiError::subnet_not_found());
            }
            let zone = self.zone_of(subnet);
            if let Some(other) = subnets[..i]
                .iter()
                .find(|s| *s != subnet && self.zone_of(s) == zone)
            {
                return Err(same_zone(other, subnet, &zone));
            }
            zones.push(zone);
        }
        Ok(zones)
    }

    fn zone_of(&self, subnet: &str) -> String {
        self.subnet_map
            .iter()
            .find(|(id, _)| id == subnet)
            .map_or_else(|| subnet.to_string(), |(_, zone)| zone.clone())
    }

    /// True when a load balancer of this name exists and is what the request describes,
    /// so the call succeeds without a change (§19.2); a different one is
    /// `DuplicateLoadBalancerName`. Lists compare as sets.
    pub fn is_repeat(&self, request: &CreateRequest<'_>) -> Result<bool, ApiError> {
        let Ok(lb) = self.lb(request.name) else {
            return Ok(false);
        };
        let mut zones = request.zones.to_vec();
        zones.extend(self.subnet_zones(request.subnets)?);
        let same = same_set(&lb.listeners, request.listeners)
            && same_set(&lb.zones, &zones)
            && same_set(&lb.subnets, request.subnets)
            && same_set(&lb.security_groups, request.security_groups)
            && lb.scheme == request.scheme;
        if same {
            Ok(true)
        } else {
            Err(ApiError::duplicate_load_balancer(request.name))
        }
    }

    pub fn attach_subnets(
        &mut self,
        name: &str,
        subnets: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let zones = self.subnet_zones(subnets)?;
        let mut taken: Vec<(String, String)> = self
            .lb(name)?
            .subnets
            .iter()
            .map(|s| (s.clone(), self.zone_of(s)))
            .collect();
        let lb = self.lb_mut(name)?;
        for (subnet, zone) in subnets.iter().zip(zones) {
            if lb.subnets.contains(subnet) {
                continue;
            }
            if let Some((other, _)) = taken.iter().find(|(_, z)| *z == zone) {
                return Err(same_zone(other, subnet, &zone));
            }
            taken.push((subnet.clone(), zone.clone()));
            lb.subnets.push(subnet.clone());
            if !lb.zones.contains(&zone) {
                lb.zones.push(zone);
            }
        }
        Ok(lb.subnets.clone())
    }

    /// Detaching a subnet disables its zone; the last zone cannot go (spec §14.2).
    pub fn detach_subnets(
        &mut self,
        name: &str,
        subnets: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let lb = self.lb(name)?;
        let leaving: Vec<String> = lb
            .subnets
            .iter()
            .filter(|s| subnets.contains(s))
            .map(|s| self.zone_of(s))
            .collect();
        let lb = self.lb_mut(name)?;
        if !lb.zones.is_empty() && lb.zones.iter().all(|z| leaving.contains(z)) {
            return Err(ApiError::validation(
                "A load balancer needs at least one subnet or enabled Availability Zone",
            ));
        }
        lb.subnets.retain(|s| !subnets.contains(s));
        lb.zones.retain(|z| !leaving.contains(z));
        Ok(lb.subnets.clone())
    }

    /// Replaces the load balancer's security groups; every id must be a
    /// `--security-group`. Answers the groups now in force.
    pub fn apply_security_groups(
        &mut self,
        name: &str,
        ids: &[String],
    ) -> Result<Vec<String>, ApiError> {
        self.lb(name)?;
        let ids = self.known_security_groups(ids)?;
        let lb = self.lb_mut(name)?;
        lb.security_groups = ids;
        Ok(lb.security_groups.clone())
    }

    /// `ids` without repeats, or `InvalidSecurityGroup` when one is not defined.
    pub fn known_security_groups(&self, ids: &[String]) -> Result<Vec<String>, ApiError> {
        if ids
            .iter()
            .any(|id| !self.security_groups.iter().any(|g| g.id == *id))
        {
            return Err(ApiError::invalid_security_group());
        }
        Ok(dedup(ids.to_vec()))
    }

    /// The client sources a load balancer admits at accept: `None` without security
    /// groups. A group the flags no longer define (after a restart) admits nobody: a
    /// missing definition must not open a load balancer up.
    pub(super) fn sources(&self, lb: &LbState) -> Option<Vec<crate::config::allow::Network>> {
        if lb.security_groups.is_empty() {
            return None;
        }
        let groups: Vec<&SecurityGroup> = lb
            .security_groups
            .iter()
            .filter_map(|id| self.security_groups.iter().find(|g| g.id == *id))
            .collect();
        Some(
            groups
                .iter()
                .flat_map(|g| g.networks.iter().copied())
                .collect(),
        )
    }

    /// Security group ids the state file names but no `--security-group` defines.
    pub fn undefined_security_groups(&self) -> Vec<(String, String)> {
        self.lbs
            .iter()
            .flat_map(|lb| {
                lb.security_groups
                    .iter()
                    .filter(|id| !self.security_groups.iter().any(|g| g.id == **id))
                    .map(|id| (lb.name.clone(), id.clone()))
            })
            .collect()
    }
}

impl LbState {
    /// DisableAvailabilityZones also detaches the subnets in the zones it disables.
    pub(super) fn keep_subnets_of_enabled_zones(&mut self, subnet_zones: &[(String, String)]) {
        let zones = &self.zones;
        self.subnets.retain(|s| {
            let zone = subnet_zones
                .iter()
                .find(|(id, _)| id == s)
                .map_or(s.as_str(), |(_, z)| z.as_str());
            zones.iter().any(|z| z == zone)
        });
    }
}

fn same_zone(first: &str, second: &str, zone: &str) -> ApiError {
    ApiError::invalid_configuration(format!(
        "Subnets {first} and {second} are both in Availability Zone {zone}: a load balancer takes one subnet per Availability Zone"
    ))
}

fn same_set<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vpc::parse_security_group;
    use crate::config::Protocol;
    use crate::control::state::{decode, encode};

    fn http(port: u16) -> Listener {
        Listener {
            protocol: Protocol::Http,
            port,
            instance_protocol: Protocol::Http,
            instance_port: 8080,
            ssl_certificate_id: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn model() -> Model {
        let mut m = Model::new(vec![]);
        m.subnet_map = vec![
            ("subnet-a".into(), "zone-a".into()),
            ("subnet-a2".into(), "zone-a".into()),
            ("subnet-b".into(), "zone-b".into()),
        ];
        m.security_groups = vec![
            parse_security_group("sg-1=127.0.0.2").unwrap(),
            parse_security_group("sg-2=10.0.0.0/8,127.0.0.3").unwrap(),
        ];
        let zones = m.subnet_zones(&strings(&["subnet-a"])).unwrap();
        m.create("web", vec![http(80)], zones, "internet-facing", vec![])
            .unwrap();
        m.attach_subnets("web", &strings(&["subnet-a"])).unwrap();
        m
    }

    #[test]
    fn subnets_map_to_zones_one_per_zone() {
        let mut m = model();
        assert_eq!(m.lbs[0].zones, ["zone-a"]);
        let now = m
            .attach_subnets("web", &strings(&["subnet-b", "subnet-own"]))
            .unwrap();
        assert_eq!(now, ["subnet-a", "subnet-b", "subnet-own"]);
        assert_eq!(m.lbs[0].zones, ["zone-a", "zone-b", "subnet-own"]);
        let e = m
            .attach_subnets("web", &strings(&["subnet-a2"]))
            .unwrap_err();
        assert_eq!(e.code, "InvalidConfigurationRequest");
        let e = m
            .subnet_zones(&strings(&["subnet-a", "subnet-a2"]))
            .unwrap_err();
        assert_eq!(e.code, "InvalidConfigurationRequest");
        assert_eq!(
            m.subnet_zones(&strings(&["bad id"])).unwrap_err().code,
            "SubnetNotFound"
        );
        let now = m
            .detach_subnets("web", &strings(&["subnet-b", "subnet-own"]))
            .unwrap();
        assert_eq!(now, ["subnet-a"]);
        assert_eq!(m.lbs[0].zones, ["zone-a"]);
        let e = m
            .detach_subnets("web", &strings(&["subnet-a"]))
            .unwrap_err();
        assert_eq!(e.code, "ValidationError");
        // Disabling a zone detaches its subnet.
        m.attach_subnets("web", &strings(&["subnet-b"])).unwrap();
        m.disable_zones("web", &strings(&["zone-b"])).unwrap();
        assert_eq!(m.lbs[0].subnets, ["subnet-a"]);
    }

    #[test]
    fn security_groups_must_be_defined_and_decide_the_sources() {
        let mut m = model();
        assert_eq!(m.sources(&m.lbs[0]), None);
        let e = m
            .apply_security_groups("web", &strings(&["sg-9"]))
            .unwrap_err();
        assert_eq!(e.code, "InvalidSecurityGroup");
        let now = m
            .apply_security_groups("web", &strings(&["sg-1", "sg-2", "sg-1"]))
            .unwrap();
        assert_eq!(now, ["sg-1", "sg-2"]);
        let sources = m.sources(&m.lbs[0]).unwrap();
        assert_eq!(sources.len(), 3);
        // A group the flags stopped defining admits nobody.
        m.security_groups.clear();
        assert_eq!(m.sources(&m.lbs[0]), Some(vec![]));
        assert_eq!(m.undefined_security_groups().len(), 2);
    }

    #[test]
    fn a_repeated_create_matches_or_is_a_duplicate() {
        let m = model();
        let listeners = [http(80)];
        let subnets = strings(&["subnet-a"]);
        let same = CreateRequest {
            name: "web",
            listeners: &listeners,
            zones: &[],
            subnets: &subnets,
            scheme: "internet-facing",
            security_groups: &[],
        };
        assert_eq!(m.is_repeat(&same), Ok(true));
        let new = CreateRequest {
            name: "other",
            ..same
        };
        assert_eq!(m.is_repeat(&new), Ok(false));
        let other_port = [http(81)];
        let different = [
            CreateRequest {
                listeners: &other_port,
                ..same
            },
            CreateRequest {
                scheme: "internal",
                ..same
            },
            CreateRequest {
                subnets: &[],
                ..same
            },
        ];
        for request in different {
            assert_eq!(
                m.is_repeat(&request).unwrap_err().code,
                "DuplicateLoadBalancerName"
            );
        }
    }

    #[test]
    fn state_file_keeps_subnets_and_groups_and_loads_old_files() {
        let mut m = model();
        m.apply_security_groups("web", &strings(&["sg-2"])).unwrap();
        let back = decode(&encode(&m.lbs)).unwrap();
        assert_eq!(back[0].subnets, ["subnet-a"]);
        assert_eq!(back[0].security_groups, ["sg-2"]);
        assert_eq!(back[0].zones, ["zone-a"]);
        // A file written before these records existed.
        let old =
            "clb-state 1\nlb web 0 internet-facing\nlistener HTTP 80 HTTP 8080\nzone zone-a\nend\n";
        let lbs = decode(old).unwrap();
        assert!(lbs[0].subnets.is_empty() && lbs[0].security_groups.is_empty());
        assert_eq!(lbs[0].zones, ["zone-a"]);
    }
}
