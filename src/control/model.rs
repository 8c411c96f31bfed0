//! The authoritative state of every load balancer: what the API changes, what the state
//! file keeps, and what each published `Topology` is built from.
//!
//! Operations check their input the way ELB does and either change the model or return
//! an `ApiError` leaving it untouched. Each registration gets a health-board slot and a
//! serial that is never reused, so workers can tell a continuing registration from a
//! new one of the same instance.

use super::error::ApiError;
use super::policies::PolicyDef;
use crate::backend::health::{Health, HealthBoard, MAX_SLOTS};
use crate::config::{
    valid_load_balancer_name, HealthCheck, Host, Instance, Listener, LoadBalancer, Registration,
    Topology, TopologyError,
};
use crate::http::desync::Mode;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Spec §16 (DescribeAccountLimits): load balancers, listeners per LB, instances per LB.
pub const MAX_LOAD_BALANCERS: usize = 20;
pub const MAX_LISTENERS: usize = 100;
/// Policies per load balancer (clb's own bound; ELB documents none for Classic).
pub const MAX_POLICIES: usize = 100;
pub const MAX_INSTANCES: usize = 1000;
/// Tags per load balancer (ELB's limit).
pub const MAX_TAGS: usize = 10;
pub const DRAINING_RANGE: (u32, u32) = (1, 3600);

/// ModifyLoadBalancerAttributes' settings (spec §17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub cross_zone: bool,
    pub idle_timeout: u32,
    pub draining: bool,
    pub draining_timeout: u32,
    pub desync_mode: String,
}

impl Default for Attributes {
    /// API defaults (spec §17): cross-zone and draining off.
    fn default() -> Attributes {
        Attributes {
            cross_zone: false,
            idle_timeout: 60,
            draining: false,
            draining_timeout: 300,
            desync_mode: "defensive".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub instance: Instance,
    pub slot: usize,
    pub serial: u64,
    /// Deregistered with draining: when the drain ends at the latest.
    pub draining_until: Option<Instant>,
    /// The epoch of the first topology published with this drain (`UNPUBLISHED` until
    /// then): its requests are done only once every worker routes by that topology.
    pub drain_epoch: u64,
}

/// A drain no topology has carried to the workers yet.
pub const UNPUBLISHED: u64 = u64::MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbState {
    pub name: String,
    pub created: SystemTime,
    pub scheme: String,
    /// Its own listen address from `--address-pool`; `None`: `--bind` (no pool).
    pub address: Option<IpAddr>,
    pub listeners: Vec<Listener>,
    pub zones: Vec<String>,
    /// Attached subnets (each names one of `zones`) and security group ids.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub registered: Vec<Registered>,
    pub health_check: HealthCheck,
    pub attributes: Attributes,
    pub tags: Vec<(String, String)>,
    /// Instance ports with a PROXY protocol header (flags now; the policy API later).
    pub proxy_protocol: Vec<(u16, crate::tcp::proxy_protocol::Version)>,
    /// Sticky sessions on the HTTP/HTTPS listeners from `--sticky` (API policies on a
    /// listener replace it there).
    pub sticky: Option<crate::http::sticky::Policy>,
    /// Policies created through the API, and where they are attached.
    pub policies: Vec<PolicyDef>,
    pub listener_policies: Vec<(u16, Vec<String>)>,
    pub backend_policies: Vec<(u16, Vec<String>)>,
}

/// One row of DescribeInstanceHealth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceHealth {
    pub id: String,
    pub state: &'static str,
    pub reason_code: &'static str,
    pub description: &'static str,
}

#[derive(Clone)]
pub struct Model {
    pub lbs: Vec<LbState>,
    /// `--instance` flags: how ids resolve to addresses and zones.
    pub inventory: Vec<Instance>,
    /// `--subnet` and `--security-group`: what Subnets and SecurityGroups may name.
    pub subnet_map: Vec<(String, String)>,
    pub security_groups: Vec<crate::config::vpc::SecurityGroup>,
    pub health: Arc<HealthBoard>,
    /// Metric slots by name, kept for the life of the process.
    pub stats_keys: Arc<crate::stats::StatsKeys>,
    /// How listen addresses are chosen and which ports are taken (`addresses.rs`).
    pub placement: addresses::Placement,
    /// `--dns-domain`: load balancers' DNS names are `name.<dns_domain>`.
    pub dns_domain: String,
    next_serial: u64,
    next_slot: usize,
    used_slots: Vec<bool>,
    /// How many topologies have been published: the epoch of the newest.
    epoch: u64,
}

impl Model {
    pub fn new(inventory: Vec<Instance>) -> Model {
        Model {
            lbs: Vec::new(),
            inventory,
            subnet_map: Vec::new(),
            security_groups: Vec::new(),
            health: Arc::new(HealthBoard::new(MAX_SLOTS)),
            stats_keys: Arc::default(),
            placement: Default::default(),
            dns_domain: crate::dns::zone::DEFAULT_DOMAIN.to_string(),
            next_serial: 1,
            next_slot: 0,
            used_slots: vec![false; MAX_SLOTS],
            epoch: 0,
        }
    }

    pub fn lb(&self, name: &str) -> Result<&LbState, ApiError> {
        self.lbs
            .iter()
            .find(|lb| lb.name == name)
            .ok_or_else(|| ApiError::load_balancer_not_found(name))
    }

    fn lb_mut(&mut self, name: &str) -> Result<&mut LbState, ApiError> {
        self.lbs
            .iter_mut()
            .find(|lb| lb.name == name)
            .ok_or_else(|| ApiError::load_balancer_not_found(name))
    }

    /// Adds a load balancer as it stands (from the flags or the state file), registering its instances.
    pub fn insert(&mut self, mut lb: LbState) -> Result<(), ApiError> {
        if self.lbs.iter().any(|l| l.name == lb.name) {
            return Err(ApiError::duplicate_load_balancer(&lb.name));
        }
        self.place(&mut lb)?;
        for r in &mut lb.registered {
            let (slot, serial) = self.allocate()?;
            r.slot = slot;
            r.serial = serial;
        }
        self.lbs.push(lb);
        Ok(())
    }

    pub fn create(
        &mut self,
        name: &str,
        listeners: Vec<Listener>,
        zones: Vec<String>,
        scheme: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), ApiError> {
        if !valid_load_balancer_name(name) {
            return Err(ApiError::validation(format!(
                "LoadBalancerName '{name}' must be 1 to 32 of A-Z, a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
        if self.lbs.iter().any(|l| l.name == name) {
            return Err(ApiError::duplicate_load_balancer(name));
        }
        if self.lbs.len() >= MAX_LOAD_BALANCERS {
            return Err(ApiError::too_many_load_balancers(MAX_LOAD_BALANCERS));
        }
        let first = listeners
            .first()
            .ok_or_else(|| ApiError::validation("At least one listener is required"))?;
        let health_check = HealthCheck::default_for(first.instance_port);
        let zones = dedup(zones);
        if zones.is_empty() {
            return Err(ApiError::validation(
                "Either AvailabilityZones or Subnets must be specified",
            ));
        }
        if !matches!(scheme, "internet-facing" | "internal") {
            return Err(ApiError::validation(format!(
                "Scheme '{scheme}' must be internet-facing or internal"
            )));
        }
        let mut lb = LbState {
            name: name.to_string(),
            created: SystemTime::now(),
            scheme: scheme.to_string(),
            address: None,
            listeners: Vec::new(),
            zones,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            registered: Vec::new(),
            health_check,
            attributes: Attributes::default(),
            tags: Vec::new(),
            proxy_protocol: Vec::new(),
            sticky: None,
            policies: Vec::new(),
            listener_policies: Vec::new(),
            backend_policies: Vec::new(),
        };
        listeners::add_listeners(&mut lb, listeners)?;
        tags::add_tags(&mut lb, tags)?;
        self.place(&mut lb)?;
        self.lbs.push(lb);
        Ok(())
    }

    /// Deleting a load balancer that does not exist succeeds, as in ELB.
    pub fn delete(&mut self, name: &str) {
        if let Some(at) = self.lbs.iter().position(|l| l.name == name) {
            let lb = self.lbs.remove(at);
            for r in lb.registered {
                self.release(r.slot);
            }
        }
    }

    pub fn configure_health_check(
        &mut self,
        name: &str,
        check: HealthCheck,
    ) -> Result<(), ApiError> {
        self.lb_mut(name)?.health_check = check;
        Ok(())
    }

    pub fn set_attributes(&mut self, name: &str, attributes: Attributes) -> Result<(), ApiError> {
        if !(1..=4000).contains(&attributes.idle_timeout) {
            return Err(ApiError::validation(
                "ConnectionSettings.IdleTimeout must be from 1 to 4000",
            ));
        }
        if !(DRAINING_RANGE.0..=DRAINING_RANGE.1).contains(&attributes.draining_timeout) {
            return Err(ApiError::validation(
                "ConnectionDraining.Timeout must be from 1 to 3600",
            ));
        }
        if !matches!(
            attributes.desync_mode.as_str(),
            "monitor" | "defensive" | "strictest"
        ) {
            return Err(ApiError::validation(
                "elb.http.desyncmitigationmode must be monitor, defensive or strictest",
            ));
        }
        self.lb_mut(name)?.attributes = attributes;
        Ok(())
    }

    pub fn enable_zones(
        &mut self,
        name: &str,
        zones: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let lb = self.lb_mut(name)?;
        for zone in zones {
            if !valid_zone(&zone) {
                return Err(ApiError::validation(format!(
                    "Invalid Availability Zone '{zone}'"
                )));
            }
            if !lb.zones.contains(&zone) {
                lb.zones.push(zone);
            }
        }
        Ok(lb.zones.clone())
    }

    pub fn disable_zones(&mut self, name: &str, zones: &[String]) -> Result<Vec<String>, ApiError> {
        let lb = self.lb_mut(name)?;
        if lb.zones.iter().all(|z| zones.contains(z)) {
            return Err(ApiError::validation(
                "A load balancer needs at least one enabled Availability Zone",
            ));
        }
        lb.zones.retain(|z| !zones.contains(z));
        let subnet_map = self.subnet_map.clone();
        let lb = self.lb_mut(name)?;
        lb.keep_subnets_of_enabled_zones(&subnet_map);
        Ok(lb.zones.clone())
    }

    /// An instance id the API accepts: one from the inventory, or `HOST:PORT`.
    fn resolve(&self, id: &str, default_zone: &str) -> Result<Instance, ApiError> {
        let invalid =
            || ApiError::invalid_instance(format!("The requested instance {id} is not valid"));
        if let Some(known) = self.inventory.iter().find(|i| i.id == id) {
            let ip = resolve_host(&known.host).ok_or_else(invalid)?;
            return Ok(Instance {
                host: Host::Ip(ip),
                ..known.clone()
            });
        }
        let addr = address_id(id).ok_or_else(invalid)?;
        Ok(Instance {
            id: id.to_string(),
            host: Host::Ip(addr.ip()),
            port: Some(addr.port()),
            zone: default_zone.to_string(),
        })
    }

    fn known(&self, id: &str) -> bool {
        self.inventory.iter().any(|i| i.id == id) || address_id(id).is_some()
    }

    fn allocate(&mut self) -> Result<(usize, u64), ApiError> {
        for step in 0..MAX_SLOTS {
            let slot = (self.next_slot + step) % MAX_SLOTS;
            if !self.used_slots[slot] {
                self.used_slots[slot] = true;
                self.next_slot = (slot + 1) % MAX_SLOTS;
                let serial = self.next_serial;
                self.next_serial += 1;
                return Ok((slot, serial));
            }
        }
        Err(ApiError::invalid_configuration(
            "Too many registered instances in this process",
        ))
    }

    fn release(&mut self, slot: usize) {
        if let Some(used) = self.used_slots.get_mut(slot) {
            *used = false;
        }
    }
}

impl LbState {
    /// A load balancer as the flags define it (spec defaults, draining per `--draining`).
    pub fn from_flags(lb: &LoadBalancer, draining: Option<u32>) -> LbState {
        LbState {
            name: lb.name.clone(),
            created: SystemTime::now(),
            scheme: "internet-facing".to_string(),
            address: None,
            listeners: lb.listeners.clone(),
            zones: lb.zones.clone(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            registered: lb
                .instances
                .iter()
                .map(|i| Registered {
                    instance: i.clone(),
                    slot: 0,
                    serial: 0,
                    draining_until: None,
                    drain_epoch: 0,
                })
                .collect(),
            health_check: lb.health_check.clone(),
            attributes: Attributes {
                cross_zone: lb.cross_zone,
                idle_timeout: u32::try_from(lb.idle_timeout.as_secs()).unwrap_or(60),
                draining: draining.is_some(),
                draining_timeout: draining.unwrap_or(300),
                desync_mode: lb.desync_mode.as_str().to_string(),
            },
            tags: Vec::new(),
            proxy_protocol: lb.proxy_protocol.clone(),
            sticky: lb.sticky.clone(),
            policies: Vec::new(),
            listener_policies: Vec::new(),
            backend_policies: Vec::new(),
        }
    }

    pub fn is_registered(&self, id: &str) -> bool {
        self.registered
            .iter()
            .any(|r| r.instance.id == id && r.draining_until.is_none())
    }

    /// Registered instances, without those being drained.
    pub fn registered_ids(&self) -> Vec<String> {
        self.registered
            .iter()
            .filter(|r| r.draining_until.is_none())
            .map(|r| r.instance.id.clone())
            .collect()
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

pub fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An instance id that is itself an address: `IP:PORT` or `[IPv6]:PORT`.
fn address_id(id: &str) -> Option<SocketAddr> {
    id.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

fn resolve_host(host: &Host) -> Option<IpAddr> {
    match host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(name) => {
            let addrs: Vec<SocketAddr> = (name.as_str(), 0).to_socket_addrs().ok()?.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .map(|a| a.ip())
        }
    }
}

pub mod addresses;
mod adopt;
mod listeners;
mod policy_ops;
pub mod registration;
mod routing;
mod tags;
pub mod vpc;

#[cfg(test)]
mod tests;
