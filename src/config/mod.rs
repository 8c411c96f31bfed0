//! Typed configuration: what a load balancer is made of, checked once at the edge.
//!
//! Flags (and later the API and the state file) are parsed into these types with every
//! range from the spec checked; nothing downstream parses strings. A `Topology` is the
//! immutable picture the workers run from: it is shared as an `Arc` and replaced whole.

pub mod address_pool;
pub mod allow;
pub mod cluster;
mod health;
pub mod node;
mod spec;
pub mod topology;
pub mod vpc;

pub use health::{
    parse_health_target, HealthCheck, HealthCheckError, HealthProtocol, HealthTarget,
};
pub use spec::{parse_instance, parse_listener, parse_zones, InstanceSpecError, ListenerSpecError};
pub use topology::{Backend, Topology, TopologyError};

use std::net::IpAddr;
use std::time::Duration;

/// The four listener protocols of ELB Classic (spec §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Ssl,
}

impl Protocol {
    /// ELB's own spelling, as the API and DescribeLoadBalancers print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Ssl => "SSL",
        }
    }

    /// Layer 7 (HTTP/HTTPS) or layer 4 (TCP/SSL); the two never mix (spec §1.2).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Ssl)
    }
}

/// One listener: a front-end port mapped to an instance protocol and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub protocol: Protocol,
    pub port: u16,
    pub instance_protocol: Protocol,
    pub instance_port: u16,
    /// The API's `SSLCertificateId` of an HTTPS or SSL listener, kept and shown; the
    /// certificates served are the `--cert` pairs, chosen by SNI (README).
    pub ssl_certificate_id: Option<String>,
}

/// Where an instance's host part points: an address now, or a name resolved at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// One registered instance from the `--instance` inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub host: Host,
    /// Overrides every listener's instance port (and the health check port) when set.
    pub port: Option<u16>,
    pub zone: String,
}

/// One registration of an instance with a load balancer, as the runtime tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Index on the shared health board.
    pub slot: usize,
    /// Never reused: names this registration across topology changes.
    pub serial: u64,
    /// Deregistered while connection draining lets in-flight requests finish.
    pub draining: bool,
}

/// The zone an instance is in when `@ZONE` is not given.
pub const DEFAULT_ZONE: &str = "zone-a";

/// Idle timeout range (spec §6.3: the user guide's 1–4000 s; README records the choice).
pub const IDLE_TIMEOUT_RANGE: (u64, u64) = (1, 4000);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything one load balancer is, as the flags (or later the API) define it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalancer {
    pub name: String,
    pub listeners: Vec<Listener>,
    pub instances: Vec<Instance>,
    /// Enabled zones; an instance in another zone is registered but gets no traffic.
    pub zones: Vec<String>,
    pub cross_zone: bool,
    pub idle_timeout: Duration,
    pub health_check: HealthCheck,
    /// Instance ports that get a PROXY protocol header first (spec §8), and its version.
    pub proxy_protocol: Vec<(u16, crate::tcp::proxy_protocol::Version)>,
    /// What HTTP listeners do with requests the desync classifier flags (spec §10).
    pub desync_mode: crate::http::desync::Mode,
    /// Sticky sessions on the HTTP/HTTPS listeners (spec §7); `None`: none.
    pub sticky: Option<crate::http::sticky::Policy>,
    /// Listener ports whose policies the API set: their stickiness replaces `sticky`.
    pub listener_sticky: Vec<(u16, Option<crate::http::sticky::Policy>)>,
    /// Instance ports with back-end authentication: the public keys (DER
    /// SubjectPublicKeyInfo) an HTTPS/SSL instance there may present.
    pub backend_pins: Vec<(u16, Vec<Vec<u8>>)>,
}

/// Process-wide settings that are not part of any load balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    pub bind: IpAddr,
    /// `--address-pool`: each load balancer listens on its own address from it, not `bind`.
    pub address_pool: Option<address_pool::AddressPool>,
    pub workers: usize,
    /// Client connections per worker; beyond it the worker stops accepting until one closes.
    pub max_connections: usize,
    /// Where the control API listens; `None` with `--api off`.
    pub api: Option<std::net::SocketAddr>,
    /// The state file API changes are saved to and reloaded from.
    pub state: Option<std::path::PathBuf>,
    /// `--cluster`: the model lives in etcd instead (never with `state`).
    pub cluster: Option<cluster::ClusterStore>,
    /// The SigV4 credentials file the API requires.
    pub api_credentials: Option<std::path::PathBuf>,
    /// Certificate and key files for HTTPS and SSL listeners; the first is the default.
    pub certs: Vec<crate::tls::CertPair>,
    /// The ELB security policy TLS listeners follow.
    pub ssl_policy: String,
    /// How TLS connections to HTTPS and SSL instances are checked.
    pub backend_tls: crate::tls::backend::BackendTls,
    /// How long a request head may take from its first byte to its end.
    pub header_timeout: std::time::Duration,
    /// `--access-log`: where ELB-format access-log lines go.
    pub access_log: Option<crate::access_log::Target>,
    /// `--allow`: which client sources each listener accepts.
    pub allow: allow::AllowList,
    /// Requests or connections per instance and worker; 0: no limit (no surge queue).
    pub max_backend_connections: u32,
    /// Surge queue length for the whole process (spec §11: 1,024 per LB node).
    pub surge_queue: usize,

    /// `--subnet ID=ZONE`: the zone each subnet the API may name is in.
    pub subnets: Vec<(String, String)>,
    /// `--security-group`: the groups the API may attach to a load balancer.
    pub security_groups: Vec<vpc::SecurityGroup>,

    /// `--node`, `--node-zone`, `--node-address`, `--node-ttl`: this process in the fleet.
    pub node: node::NodeFlags,
    /// `--dns`: where the DNS server answers (UDP and TCP); `None`: no DNS server.
    pub dns: Option<std::net::SocketAddr>,
    /// `--dns-domain`: the zone load balancer names live in, lower-case, no final dot.
    pub dns_domain: String,
}

/// The whole configuration the process starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub load_balancer: LoadBalancer,
    /// Connection draining timeout of the flags' load balancer, seconds; `None`: off.
    pub draining: Option<u32>,
    pub runtime: Runtime,
}

/// ELB's load balancer name rule (spec §1.21): ≤ 32 of `[A-Za-z0-9-]`, no leading or trailing `-`.
pub fn valid_load_balancer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancer_names_follow_elb_rules() {
        assert!(valid_load_balancer_name("default"));
        assert!(valid_load_balancer_name("my-lb-01"));
        assert!(!valid_load_balancer_name(""));
        assert!(!valid_load_balancer_name("-lead"));
        assert!(!valid_load_balancer_name("trail-"));
        assert!(!valid_load_balancer_name("under_score"));
        assert!(!valid_load_balancer_name(&"a".repeat(33)));
    }
}
