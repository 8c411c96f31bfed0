//! The command line (DESIGN §4): getopts flags turned into a checked `Config`, or one
//! error line naming the flag, the value and what is allowed.
//!
//! Every range is checked here, once, so nothing downstream parses a string. The help
//! text lives in `help.rs`.

mod help;
pub use help::usage;
mod node;
pub use node::valid_node_name;
mod fleet;
mod vpc;
use fleet::{address_pool, cluster_store, dns};

use crate::config::{
    parse_health_target, parse_instance, parse_listener, parse_zones, valid_load_balancer_name,
    Config, HealthCheck, HealthCheckError, Instance, Listener, LoadBalancer, Runtime,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_ZONE, IDLE_TIMEOUT_RANGE,
};
use crate::tcp::proxy_protocol::Version as ProxyVersion;
use getopts::{Fail, Matches, Options};
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What the process should do, as the command line asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Boxed: a configuration is large and this enum is built once.
    Run(Box<Config>),
    /// Print this text (the `--help` page) and exit 0.
    Help(String),
    /// Print this line and exit 0.
    Version(String),
}

/// One line, without the `clb: ` prefix, saying which flag and value were refused and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

const DEFAULT_NAME: &str = "default";
const WORKERS_RANGE: (u64, u64) = (1, 256);
const MAX_CONNECTIONS_RANGE: (u64, u64) = (1, 1_000_000);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_API_PORT: u16 = 9900;
/// DESIGN §4: draining on for the flags' load balancer, 300 s (spec §5.2 range 1–3600).
const DEFAULT_DRAINING: u32 = 300;
const DRAINING_RANGE: (u64, u64) = (1, 3600);
/// `--header-timeout`: the same range as the idle timeout, default 60 s like it.
const HEADER_TIMEOUT_RANGE: (u64, u64) = (1, 4000);
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

fn options() -> Options {
    let mut opts = Options::new();
    opts.optopt("n", "name", "", "NAME")
        .optmulti("l", "listener", "", "SPEC")
        .optmulti("i", "instance", "", "SPEC")
        .optopt("", "zones", "", "LIST")
        .optopt("", "cross-zone", "", "on|off")
        .optopt("", "idle-timeout", "", "S")
        .optopt("", "bind", "", "ADDR")
        .optopt("", "address-pool", "", "CIDR|ADDR,...")
        .optopt("", "workers", "", "N")
        .optopt("", "max-connections", "", "N")
        .optopt("", "api", "", "ADDR|off")
        .optopt("", "api-credentials", "", "FILE")
        .optopt("", "state", "", "FILE")
        .optopt("", "cluster", "", "ENDPOINTS")
        .optopt("", "cluster-prefix", "", "PREFIX")
        .optopt("", "draining", "", "S|off")
        .optmulti("", "proxy-protocol", "", "[v2:]PORT")
        .optmulti("", "cert", "", "FILE")
        .optmulti("", "key", "", "FILE")
        .optopt("", "ssl-policy", "", "NAME")
        .optopt("", "desync-mode", "", "MODE")
        .optopt("", "sticky", "", "lb[:S]|app:COOKIE")
        .optopt("", "header-timeout", "", "S")
        .optopt("", "access-log", "", "FILE|-")
        .optmulti("", "allow", "", "[PORT=]CIDR")
        .optmulti("", "subnet", "", "ID=ZONE")
        .optmulti("", "security-group", "", "sg-ID=CIDR[,CIDR...]")
        .optopt("", "max-backend-connections", "", "N")
        .optopt("", "surge-queue", "", "N")
        .optopt("", "backend-ca", "", "FILE")
        .optmulti("", "backend-public-key", "", "FILE")
        .optopt("", "health-check", "", "TARGET")
        .optopt("", "health-interval", "", "S")
        .optopt("", "health-timeout", "", "S")
        .optopt("", "healthy-threshold", "", "N")
        .optopt("", "unhealthy-threshold", "", "N")
        .optopt("", "node", "", "NAME")
        .optopt("", "node-zone", "", "ZONE")
        .optopt("", "node-address", "", "ADDR")
        .optopt("", "node-ttl", "", "S")
        // DNS server (src/dns).
        .optopt("", "dns", "", "ADDR:PORT")
        .optopt("", "dns-domain", "", "DOMAIN")
        .optflag("h", "help", "")
        .optflag("V", "version", "");
    opts
}

/// Parses the arguments after argv[0]. `--help` and `--version` win over every other
/// flag, so that they work even on a command line that would be refused.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let m = options().parse(args).map_err(getopts_error)?;
    if m.opt_present("help") {
        return Ok(Command::Help(usage()));
    }
    if m.opt_present("version") {
        return Ok(Command::Version(version()));
    }
    if let Some(arg) = m.free.first() {
        return Err(CliError(format!(
            "unexpected argument {}: every setting is a flag (see --help)",
            Quoted(arg)
        )));
    }

    let name = m.opt_str("name").unwrap_or_else(|| DEFAULT_NAME.to_owned());
    if !valid_load_balancer_name(&name) {
        return Err(flag_error(
            "name",
            &name,
            "must be 1 to 32 of A-Z, a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    let listeners = listeners(&m.opt_strs("listener"))?;
    let instances = instances(&m.opt_strs("instance"))?;
    let zones = match m.opt_str("zones") {
        Some(list) => parse_zones(&list).map_err(|why| flag_error("zones", &list, &why))?,
        None => zones_named_by(&instances),
    };
    let cross_zone = match m.opt_str("cross-zone").as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(flag_error("cross-zone", other, "must be on or off")),
    };
    let idle_timeout = number(
        &m,
        "idle-timeout",
        IDLE_TIMEOUT_RANGE,
        "a whole number of seconds",
    )?
    .map_or(DEFAULT_IDLE_TIMEOUT, Duration::from_secs);
    let header_timeout = number(
        &m,
        "header-timeout",
        HEADER_TIMEOUT_RANGE,
        "a whole number of seconds",
    )?
    .map_or(DEFAULT_HEADER_TIMEOUT, Duration::from_secs);
    let access_log = match m.opt_str("access-log").as_deref() {
        None => None,
        Some("-") => Some(crate::access_log::Target::Stdout),
        Some("") => {
            return Err(flag_error(
                "access-log",
                "",
                "give a file path, or - for stdout",
            ))
        }
        Some(path) => Some(crate::access_log::Target::File(path.into())),
    };
    let max_backend_connections = number(
        &m,
        "max-backend-connections",
        (1, 1_000_000),
        "a whole number",
    )?
    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let surge_queue = number(&m, "surge-queue", (0, 1_000_000), "a whole number")?
        .map_or(1024, |n| usize::try_from(n).unwrap_or(1024));
    let mut allow = crate::config::allow::AllowList::default();
    for text in m.opt_strs("allow") {
        let rule = crate::config::allow::parse_allow(&text)
            .map_err(|why| flag_error("allow", &text, &why))?;
        allow.rules.push(rule);
    }
    let subnets = vpc::subnets(&m)?;
    let security_groups = vpc::security_groups(&m)?;
    let bind = match m.opt_str("bind") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(addr) => addr.parse().map_err(|_| {
            flag_error(
                "bind",
                &addr,
                "must be an IP address, e.g. 0.0.0.0, 127.0.0.1 or ::",
            )
        })?,
    };
    let address_pool = address_pool(&m)?;
    let node = node::node(&m, bind)?;
    let (dns, dns_domain) = dns(&m)?;
    let workers = number(&m, "workers", WORKERS_RANGE, "a whole number")?
        .map_or_else(default_workers, to_usize);
    let max_connections = number(
        &m,
        "max-connections",
        MAX_CONNECTIONS_RANGE,
        "a whole number",
    )?
    .map_or(DEFAULT_MAX_CONNECTIONS, to_usize);
    let api_credentials = m.opt_str("api-credentials").map(std::path::PathBuf::from);
    let api = match m.opt_str("api").as_deref() {
        Some("off") => None,
        None => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT))),
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            flag_error("api", text, "must be IP:PORT (e.g. 127.0.0.1:9900) or off")
        })?),
    };
    if let Some(addr) = api {
        // Unauthenticated changes to a load balancer must not be reachable off the host.
        if api_credentials.is_none() && !addr.ip().is_loopback() {
            return Err(flag_error(
                "api",
                &addr.to_string(),
                "binds only a loopback address unless --api-credentials is given",
            ));
        }
    }
    let state = m.opt_str("state").map(std::path::PathBuf::from);
    let cluster = cluster_store(&m, state.is_some())?;
    let draining = match m.opt_str("draining").as_deref() {
        None => Some(DEFAULT_DRAINING),
        Some("off") => None,
        Some(_) => Some(
            number(&m, "draining", DRAINING_RANGE, "a whole number of seconds")?
                .map_or(DEFAULT_DRAINING, |n| {
                    u32::try_from(n).unwrap_or(DEFAULT_DRAINING)
                }),
        ),
    };

    let health_check = health_check(&m, &listeners)?;
    let (cert_files, key_files) = (m.opt_strs("cert"), m.opt_strs("key"));
    if cert_files.len() != key_files.len() {
        return Err(CliError(format!(
            "--cert and --key come in pairs: {} --cert and {} --key given",
            cert_files.len(),
            key_files.len()
        )));
    }
    let certs: Vec<crate::tls::CertPair> = cert_files
        .into_iter()
        .zip(key_files)
        .map(|(cert, key)| crate::tls::CertPair {
            cert: cert.into(),
            key: key.into(),
        })
        .collect();
    let ssl_policy = m
        .opt_str("ssl-policy")
        .unwrap_or_else(|| crate::tls::DEFAULT_POLICY.to_owned());
    crate::tls::check_policy(&ssl_policy)
        .map_err(|why| flag_error("ssl-policy", &ssl_policy, &why))?;
    let backend_tls = crate::tls::backend::BackendTls {
        ca: m.opt_str("backend-ca").map(Into::into),
        public_keys: m
            .opt_strs("backend-public-key")
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    let desync_mode = match m.opt_str("desync-mode") {
        None => crate::http::desync::Mode::default(),
        Some(text) => crate::http::desync::Mode::parse(&text).ok_or_else(|| {
            flag_error(
                "desync-mode",
                &text,
                "must be monitor, defensive or strictest",
            )
        })?,
    };
    let sticky = match m.opt_str("sticky") {
        None => None,
        Some(text) => Some(
            crate::http::sticky::parse_policy(&text)
                .map_err(|why| flag_error("sticky", &text, &why))?,
        ),
    };
    let mut proxy_protocol: Vec<(u16, ProxyVersion)> = Vec::new();
    for text in m.opt_strs("proxy-protocol") {
        let (version, port) = match text.strip_prefix("v2:") {
            Some(port) => (ProxyVersion::V2, port),
            None => (ProxyVersion::V1, text.strip_prefix("v1:").unwrap_or(&text)),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                flag_error(
                    "proxy-protocol",
                    &text,
                    "must be an instance port 1-65535, or v2:PORT",
                )
            })?;
        if proxy_protocol.iter().any(|(p, _)| *p == port) {
            return Err(flag_error("proxy-protocol", &text, "port given twice"));
        }
        proxy_protocol.push((port, version));
    }

    Ok(Command::Run(Box::new(Config {
        load_balancer: LoadBalancer {
            name,
            listeners,
            instances,
            zones,
            cross_zone,
            idle_timeout,
            health_check,
            proxy_protocol,
            desync_mode,
            sticky,
            listener_sticky: Vec::new(),
            backend_pins: Vec::new(),
        },
        draining,
        runtime: Runtime {
            bind,
            address_pool,
            workers,
            max_connections,
            api,
            state,
            cluster,
            api_credentials,
            certs,
            ssl_policy,
            backend_tls,
            header_timeout,
            access_log,
            allow,
            max_backend_connections,
            surge_queue,
            subnets,
            security_groups,
            node,
            dns,
            dns_domain,
        },
    })))
}

fn version() -> String {
    format!("clb {}", env!("CARGO_PKG_VERSION"))
}

/// Rewords getopts' failures to name the flag as the user typed it.
fn getopts_error(fail: Fail) -> CliError {
    let line = match fail {
        Fail::ArgumentMissing(name) => format!("{} needs a value", dashed(&name)),
        Fail::UnrecognizedOption(name) => format!("unknown option {}", dashed(&name)),
        Fail::OptionDuplicated(name) => format!("{} may be given only once", dashed(&name)),
        Fail::UnexpectedArgument(name) => format!("{} takes no value", dashed(&name)),
        Fail::OptionMissing(name) => format!("{} is required", dashed(&name)),
    };
    CliError(format!("{line} (see --help)"))
}

/// getopts reports a name without its dashes; one character means the short form.
fn dashed(name: &str) -> String {
    let dashes = if name.chars().count() == 1 { "-" } else { "--" };
    format!("{dashes}{}", name.escape_debug())
}

fn listeners(specs: &[String]) -> Result<Vec<Listener>, CliError> {
    if specs.is_empty() {
        return Err(CliError(
            "at least one --listener is required, e.g. --listener http:8080:http:80".to_owned(),
        ));
    }
    let mut listeners: Vec<Listener> = Vec::with_capacity(specs.len());
    for spec in specs {
        let listener =
            parse_listener(spec).map_err(|e| flag_error("listener", spec, &e.to_string()))?;
        // Spec §1.6: one listener per load balancer port.
        if listeners.iter().any(|l| l.port == listener.port) {
            return Err(flag_error(
                "listener",
                spec,
                &format!(
                    "port {} already has a listener (one listener per port)",
                    listener.port
                ),
            ));
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

fn instances(specs: &[String]) -> Result<Vec<Instance>, CliError> {
    let mut instances = Vec::with_capacity(specs.len());
    let mut ids = HashSet::new();
    for spec in specs {
        let instance =
            parse_instance(spec).map_err(|e| flag_error("instance", spec, &e.to_string()))?;
        if !ids.insert(instance.id.clone()) {
            return Err(flag_error(
                "instance",
                spec,
                &format!("instance id {} is already registered", Quoted(&instance.id)),
            ));
        }
        instances.push(instance);
    }
    Ok(instances)
}

/// The health check flags, defaulting as spec §2.1 and §18.3 (README) settle them.
fn health_check(m: &Matches, listeners: &[Listener]) -> Result<HealthCheck, CliError> {
    let first_port = listeners.first().map_or(80, |l| l.instance_port);
    let defaults = HealthCheck::default_for(first_port);
    let target = match m.opt_str("health-check") {
        None => defaults.target,
        Some(text) => {
            parse_health_target(&text).map_err(|why| flag_error("health-check", &text, &why))?
        }
    };
    let interval = opt_u32(m, "health-interval")?.unwrap_or(defaults.interval);
    let timeout = opt_u32(m, "health-timeout")?.unwrap_or(defaults.timeout);
    let healthy = opt_u8(m, "healthy-threshold")?.unwrap_or(defaults.healthy_threshold);
    let unhealthy = opt_u8(m, "unhealthy-threshold")?.unwrap_or(defaults.unhealthy_threshold);
    HealthCheck::new(target, interval, timeout, healthy, unhealthy).map_err(|e| {
        let flag = match e {
            HealthCheckError::Interval => "health-interval",
            HealthCheckError::Timeout | HealthCheckError::TimeoutNotBelowInterval => {
                "health-timeout"
            }
            HealthCheckError::HealthyThreshold => "healthy-threshold",
            HealthCheckError::UnhealthyThreshold => "unhealthy-threshold",
        };
        let value = m.opt_str(flag).unwrap_or_else(|| match e {
            HealthCheckError::TimeoutNotBelowInterval => timeout.to_string(),
            _ => String::new(),
        });
        let why = match e {
            HealthCheckError::TimeoutNotBelowInterval => {
                format!("must be less than the health check interval ({interval})")
            }
            other => other.to_string(),
        };
        flag_error(flag, &value, &why)
    })
}

/// A whole-number flag that the health check range check judges; out-of-type values
/// (not digits, too big for the type) get the same range message from `HealthCheck`.
fn opt_u32(m: &Matches, flag: &str) -> Result<Option<u32>, CliError> {
    Ok(number(m, flag, (0, u64::from(u32::MAX)), "a whole number")
        .map_err(|_| health_range_error(m, flag))?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
}

fn opt_u8(m: &Matches, flag: &str) -> Result<Option<u8>, CliError> {
    Ok(opt_u32(m, flag)?.map(|n| u8::try_from(n).unwrap_or(u8::MAX)))
}

fn health_range_error(m: &Matches, flag: &str) -> CliError {
    let why = match flag {
        "health-interval" => HealthCheckError::Interval,
        "health-timeout" => HealthCheckError::Timeout,
        "healthy-threshold" => HealthCheckError::HealthyThreshold,
        _ => HealthCheckError::UnhealthyThreshold,
    };
    flag_error(flag, &m.opt_str(flag).unwrap_or_default(), &why.to_string())
}

/// Without `--zones` every zone an instance names is enabled, in first-seen order, so
/// that the simplest command line routes to every instance.
fn zones_named_by(instances: &[Instance]) -> Vec<String> {
    let mut zones: Vec<String> = Vec::new();
    for instance in instances {
        if !zones.contains(&instance.zone) {
            zones.push(instance.zone.clone());
        }
    }
    if zones.is_empty() {
        zones.push(DEFAULT_ZONE.to_owned());
    }
    zones
}

/// A flag holding a whole number in `range`; `None` when the flag is absent.
/// Plain ASCII digits only: `str::parse` would also take a leading `+`.
fn number(m: &Matches, flag: &str, range: (u64, u64), kind: &str) -> Result<Option<u64>, CliError> {
    let Some(text) = m.opt_str(flag) else {
        return Ok(None);
    };
    let (min, max) = range;
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if digits && (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(flag_error(
            flag,
            &text,
            &format!("must be {kind} from {min} to {max}"),
        )),
    }
}

/// Ranges above stay far below `usize::MAX` on every target we build for.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// One event loop per core, within the allowed range.
fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.clamp(to_usize(WORKERS_RANGE.0), to_usize(WORKERS_RANGE.1))
}

fn flag_error(flag: &str, value: &str, why: &str) -> CliError {
    CliError(format!("--{flag} {}: {why}", Quoted(value)))
}

/// User text in single quotes with control characters escaped, so an error line stays
/// one line whatever the value holds.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.0.escape_debug())
    }
}

#[cfg(test)]
mod tests;
