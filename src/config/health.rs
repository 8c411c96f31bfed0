//! The health check of a load balancer (spec §2.1): target, timing and thresholds.
//!
//! `parse_health_target` reads ELB's target syntax (`TCP:5000`, `HTTP:80/path`) and
//! `HealthCheck::new` checks the ranges and the one cross-field rule (timeout below
//! interval), so every way in (flags now, the API later) gets the same answers.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthProtocol {
    Tcp,
    Http,
    Https,
    Ssl,
}

impl HealthProtocol {
    /// HTTP and HTTPS checks send a request; TCP and SSL ones only connect.
    pub fn is_http(self) -> bool {
        matches!(self, HealthProtocol::Http | HealthProtocol::Https)
    }

    pub fn is_tls(self) -> bool {
        matches!(self, HealthProtocol::Https | HealthProtocol::Ssl)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthProtocol::Tcp => "TCP",
            HealthProtocol::Http => "HTTP",
            HealthProtocol::Https => "HTTPS",
            HealthProtocol::Ssl => "SSL",
        }
    }
}

/// Where probes go: `PROTOCOL:PORT` plus a path for HTTP/HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    pub protocol: HealthProtocol,
    pub port: u16,
    /// Starts with `/`; empty for TCP/SSL.
    pub path: String,
}

impl fmt::Display for HealthTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}{}", self.protocol.as_str(), self.port, self.path)
    }
}

/// Spec §2.1 ranges and defaults.
pub const INTERVAL_RANGE: (u32, u32) = (5, 300);
pub const TIMEOUT_RANGE: (u32, u32) = (2, 60);
pub const THRESHOLD_RANGE: (u8, u8) = (2, 10);
pub const DEFAULT_INTERVAL: u32 = 30;
pub const DEFAULT_TIMEOUT: u32 = 5;
pub const DEFAULT_HEALTHY_THRESHOLD: u8 = 10;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u8 = 2;
/// The whole target string (spec §2.1: ≤ 1024 characters).
pub const MAX_TARGET_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub target: HealthTarget,
    /// Seconds between probes of one instance.
    pub interval: u32,
    /// Seconds a probe may take; always below `interval`.
    pub timeout: u32,
    pub healthy_threshold: u8,
    pub unhealthy_threshold: u8,
}

/// Which setting is wrong and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckError {
    Interval,
    Timeout,
    TimeoutNotBelowInterval,
    HealthyThreshold,
    UnhealthyThreshold,
}

impl fmt::Display for HealthCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheckError::Interval => write!(
                f,
                "must be a whole number of seconds from {} to {}",
                INTERVAL_RANGE.0, INTERVAL_RANGE.1
            ),
            HealthCheckError::Timeout => write!(
                f,
                "must be a whole number of seconds from {} to {}",
                TIMEOUT_RANGE.0, TIMEOUT_RANGE.1
            ),
            HealthCheckError::TimeoutNotBelowInterval => {
                f.write_str("must be less than the health check interval")
            }
            HealthCheckError::HealthyThreshold | HealthCheckError::UnhealthyThreshold => write!(
                f,
                "must be a whole number from {} to {}",
                THRESHOLD_RANGE.0, THRESHOLD_RANGE.1
            ),
        }
    }
}

impl HealthCheck {
    pub fn new(
        target: HealthTarget,
        interval: u32,
        timeout: u32,
        healthy_threshold: u8,
        unhealthy_threshold: u8,
    ) -> Result<HealthCheck, HealthCheckError> {
        let within = |v: u32, (lo, hi): (u32, u32)| (lo..=hi).contains(&v);
        let threshold = |v: u8| (THRESHOLD_RANGE.0..=THRESHOLD_RANGE.1).contains(&v);
        if !within(interval, INTERVAL_RANGE) {
            return Err(HealthCheckError::Interval);
        }
        if !within(timeout, TIMEOUT_RANGE) {
            return Err(HealthCheckError::Timeout);
        }
        if timeout >= interval {
            return Err(HealthCheckError::TimeoutNotBelowInterval);
        }
        if !threshold(healthy_threshold) {
            return Err(HealthCheckError::HealthyThreshold);
        }
        if !threshold(unhealthy_threshold) {
            return Err(HealthCheckError::UnhealthyThreshold);
        }
        Ok(HealthCheck {
            target,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        })
    }

    /// Spec §18.3 as settled in README: TCP on the first listener's instance port.
    pub fn default_for(instance_port: u16) -> HealthCheck {
        HealthCheck {
            target: HealthTarget {
                protocol: HealthProtocol::Tcp,
                port: instance_port,
                path: String::new(),
            },
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        }
    }
}

/// `PROTOCOL:PORT` for TCP and SSL, `PROTOCOL:PORT/PATH` for HTTP and HTTPS (spec §2.1).
pub fn parse_health_target(s: &str) -> Result<HealthTarget, String> {
    if s.len() > MAX_TARGET_LEN {
        return Err(format!("must be at most {MAX_TARGET_LEN} characters"));
    }
    let shape = "must be TCP:PORT, SSL:PORT, HTTP:PORT/PATH or HTTPS:PORT/PATH";
    let (protocol, rest) = s.split_once(':').ok_or_else(|| shape.to_string())?;
    let protocol = match protocol.to_ascii_uppercase().as_str() {
        "TCP" => HealthProtocol::Tcp,
        "SSL" => HealthProtocol::Ssl,
        "HTTP" => HealthProtocol::Http,
        "HTTPS" => HealthProtocol::Https,
        _ => return Err(shape.to_string()),
    };
    let (port, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let port = (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .filter(|&p| p != 0)
        .ok_or_else(|| {
            format!(
                "port '{}' must be a whole number from 1 to 65535",
                port.escape_debug()
            )
        })?;
    match protocol {
        HealthProtocol::Http | HealthProtocol::Https if path.is_empty() => Err(format!(
            "{} targets need a path, e.g. {}:{port}/index.html",
            protocol.as_str(),
            protocol.as_str()
        )),
        HealthProtocol::Tcp | HealthProtocol::Ssl if !path.is_empty() => {
            Err(format!("{} targets take no path", protocol.as_str()))
        }
        // The path goes on a request line as is: visible ASCII only.
        _ if !path.bytes().all(|b| b.is_ascii_graphic()) => Err(
            "the path must be visible ASCII without spaces (percent-encode the rest)".to_string(),
        ),
        _ => Ok(HealthTarget {
            protocol,
            port,
            path: path.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_elb_writes_them() {
        let t = parse_health_target("HTTP:80/weather/us/wa/seattle").unwrap();
        assert_eq!(
            (t.protocol, t.port, t.path.as_str()),
            (HealthProtocol::Http, 80, "/weather/us/wa/seattle")
        );
        let t = parse_health_target("tcp:5000").unwrap();
        assert_eq!(
            (t.protocol, t.port, t.path.as_str()),
            (HealthProtocol::Tcp, 5000, "")
        );
        assert_eq!(t.to_string(), "TCP:5000");
        assert!(parse_health_target("SSL:443").is_ok());
        assert!(parse_health_target("HTTPS:443/").is_ok());
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in [
            "",
            "HTTP:80",
            "HTTP:/x",
            "TCP:80/x",
            "FTP:21",
            "HTTP:0/x",
            "HTTP:65536/x",
            "HTTP:+80/x",
            "HTTP:80/a b",
            "TCP",
            "HTTP:80/\u{e9}",
        ] {
            assert!(parse_health_target(bad).is_err(), "{bad}");
        }
        let long = format!("HTTP:80/{}", "a".repeat(MAX_TARGET_LEN));
        assert!(parse_health_target(&long).is_err());
    }

    #[test]
    fn ranges_and_the_timeout_rule_are_checked() {
        let t = || parse_health_target("TCP:80").unwrap();
        assert!(HealthCheck::new(t(), 5, 2, 2, 2).is_ok());
        assert_eq!(
            HealthCheck::new(t(), 4, 2, 2, 2),
            Err(HealthCheckError::Interval)
        );
        assert_eq!(
            HealthCheck::new(t(), 301, 2, 2, 2),
            Err(HealthCheckError::Interval)
        );
        assert_eq!(
            HealthCheck::new(t(), 30, 61, 2, 2),
            Err(HealthCheckError::Timeout)
        );
        assert_eq!(
            HealthCheck::new(t(), 5, 5, 2, 2),
            Err(HealthCheckError::TimeoutNotBelowInterval)
        );
        assert_eq!(
            HealthCheck::new(t(), 30, 5, 11, 2),
            Err(HealthCheckError::HealthyThreshold)
        );
        assert_eq!(
            HealthCheck::new(t(), 30, 5, 2, 1),
            Err(HealthCheckError::UnhealthyThreshold)
        );
    }
}
