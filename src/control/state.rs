//! The state file: every load balancer the API defined, so a restart serves the same.
//!
//! A small line format (one record per line, fields separated by spaces, each field
//! percent-encoded outside a safe set) that needs no extra crate and that a person can
//! read. Writes go to a temporary file in the same directory, are fsynced, renamed over
//! the old file, and the directory is fsynced: a crash at any moment leaves either the
//! old file or the new one, never a torn one. Instances being drained are saved as
//! deregistered: after a restart there is nothing in flight to drain.
//!
//! Format 2 ends with `eof N` (N load balancers), so a file cut short anywhere, even
//! right after a whole load balancer, is refused rather than read as fewer load
//! balancers. Format 1 files (no `eof` line, from before issue 12) still load, with a
//! warning, and are written as format 2 at the next change.

use super::model::{Attributes, LbState, Registered};
use super::policies::PolicyDef;
use crate::config::{parse_health_target, HealthCheck, Host, Instance, Listener, Protocol};
use crate::http::sticky::Policy;
use crate::tcp::proxy_protocol::Version;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const MAGIC: &str = "clb-state 2";
/// The format without the `eof` line: read, never written.
const MAGIC_V1: &str = "clb-state 1";

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The load balancers saved, or none when the file does not exist yet.
    pub fn load(&self) -> Result<Vec<LbState>, String> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                let (lbs, format) =
                    decode_format(&text).map_err(|e| format!("{}: {e}", self.path.display()))?;
                if format == 1 {
                    log::warn!(
                        "{}: format 1 ({MAGIC_V1}) has no end line, so a copy cut short after a whole load balancer cannot be told from a whole file; loaded {} load balancers as they are; the file is written in format 2 at the next API change",
                        self.path.display(),
                        lbs.len()
                    );
                }
                Ok(lbs)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Replaces the file atomically with `lbs`.
    pub fn save(&self, lbs: &[LbState]) -> Result<(), String> {
        let text = encode(lbs);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", tmp.display());
        let mut file = File::create(&tmp).map_err(|e| fail("create", e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("fsync", e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| fail("rename", e))?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync {}: {e}", dir.display()))
    }
}

pub fn encode(lbs: &[LbState]) -> String {
    let mut out = String::from(MAGIC);
    out.push('\n');
    for lb in lbs {
        let created = lb
            .created
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        line(
            &mut out,
            &["lb", &lb.name, &created.to_string(), &lb.scheme],
        );
        if let Some(address) = lb.address {
            line(&mut out, &["address", &address.to_string()]);
        }
        for l in &lb.listeners {
            let (port, instance_port) = (l.port.to_string(), l.instance_port.to_string());
            let mut fields = vec![
                "listener",
                l.protocol.as_str(),
                &port,
                l.instance_protocol.as_str(),
                &instance_port,
            ];
            if let Some(id) = &l.ssl_certificate_id {
                fields.push(id);
            }
            line(&mut out, &fields);
        }
        for zone in &lb.zones {
            line(&mut out, &["zone", zone]);
        }
        // Both records are newer than the format: a file without them loads as before.
        for subnet in &lb.subnets {
            line(&mut out, &["subnet", subnet]);
        }
        for group in &lb.security_groups {
            line(&mut out, &["security-group", group]);
        }
        for r in lb.registered.iter().filter(|r| r.draining_until.is_none()) {
            let i = &r.instance;
            let host = match &i.host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(name) => name.clone(),
            };
            let port = i.port.map_or("-".to_string(), |p| p.to_string());
            line(&mut out, &["instance", &i.id, &host, &port, &i.zone]);
        }
        let h = &lb.health_check;
        line(
            &mut out,
            &[
                "health",
                &h.target.to_string(),
                &h.interval.to_string(),
                &h.timeout.to_string(),
                &h.healthy_threshold.to_string(),
                &h.unhealthy_threshold.to_string(),
            ],
        );
        let a = &lb.attributes;
        line(
            &mut out,
            &[
                "attributes",
                bool_text(a.cross_zone),
                &a.idle_timeout.to_string(),
                bool_text(a.draining),
                &a.draining_timeout.to_string(),
                &a.desync_mode,
            ],
        );
        for (key, value) in &lb.tags {
            line(&mut out, &["tag", key, value]);
        }
        for (port, version) in &lb.proxy_protocol {
            let v = match version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            };
            line(&mut out, &["proxy", &port.to_string(), v]);
        }
        match &lb.sticky {
            Some(Policy::Duration { period }) => {
                let period = period.map_or("session".to_string(), |p| p.to_string());
                line(&mut out, &["sticky", "lb", &period]);
            }
            Some(Policy::Application { cookie }) => line(&mut out, &["sticky", "app", cookie]),
            None => {}
        }
        for p in &lb.policies {
            line(&mut out, &["policy", &p.name, &p.type_name]);
            for (key, value) in &p.attributes {
                line(&mut out, &["policy-attribute", &p.name, key, value]);
            }
        }
        for (record, list) in [
            ("listener-policies", &lb.listener_policies),
            ("backend-policies", &lb.backend_policies),
        ] {
            for (port, names) in list {
                let port = port.to_string();
                let mut fields = vec![record, port.as_str()];
                fields.extend(names.iter().map(String::as_str));
                line(&mut out, &fields);
            }
        }
        line(&mut out, &["end"]);
    }
    line(&mut out, &["eof", &lbs.len().to_string()]);
    out
}

pub fn decode(text: &str) -> Result<Vec<LbState>, String> {
    decode_format(text).map(|(lbs, _)| lbs)
}

/// The load balancers and the format (1 or 2) they were written in.
pub fn decode_format(text: &str) -> Result<(Vec<LbState>, u8), String> {
    let mut lines = text.lines().enumerate();
    let format = match lines.next() {
        Some((_, MAGIC)) => 2,
        Some((_, MAGIC_V1)) => 1,
        _ => {
            return Err(format!(
                "not a clb state file (the first line must be '{MAGIC}', or '{MAGIC_V1}')"
            ))
        }
    };
    let mut lbs = Vec::new();
    let mut current: Option<LbState> = None;
    let mut ended = false;
    for (n, raw) in lines {
        let at = |why: String| format!("line {}: {why}", n + 1);
        if ended && !raw.is_empty() {
            return Err(at("data after the 'eof' line".to_string()));
        }
        let fields: Vec<String> = raw
            .split(' ')
            .map(unescape)
            .collect::<Result<_, _>>()
            .map_err(at)?;
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        match (f.as_slice(), current.as_mut()) {
            ([""], _) => {}
            (["lb", name, created, scheme], None) => {
                let millis: u64 = created
                    .parse()
                    .map_err(|_| at("bad creation time".into()))?;
                current = Some(LbState {
                    name: name.to_string(),
                    created: UNIX_EPOCH + Duration::from_millis(millis),
                    scheme: scheme.to_string(),
                    address: None,
                    listeners: Vec::new(),
                    zones: Vec::new(),
                    subnets: Vec::new(),
                    security_groups: Vec::new(),
                    registered: Vec::new(),
                    health_check: HealthCheck::default_for(80),
                    attributes: Attributes::default(),
                    tags: Vec::new(),
                    proxy_protocol: Vec::new(),
                    sticky: None,
                    policies: Vec::new(),
                    listener_policies: Vec::new(),
                    backend_policies: Vec::new(),
                });
            }
            (["listener", p, port, ip, iport, certificate @ ..], Some(lb))
                if certificate.len() <= 1 =>
            {
                lb.listeners.push(Listener {
                    protocol: protocol(p).ok_or_else(|| at(format!("bad protocol {p}")))?,
                    port: port.parse().map_err(|_| at(format!("bad port {port}")))?,
                    instance_protocol: protocol(ip)
                        .ok_or_else(|| at(format!("bad protocol {ip}")))?,
                    instance_port: iport.parse().map_err(|_| at(format!("bad port {iport}")))?,
                    ssl_certificate_id: certificate.first().map(|c| c.to_string()),
                })
            }
            (["zone", zone], Some(lb)) => lb.zones.push(zone.to_string()),
            (["subnet", subnet], Some(lb)) => lb.subnets.push(subnet.to_string()),
            (["security-group", id], Some(lb)) => lb.security_groups.push(id.to_string()),
            (["address", address], Some(lb)) => {
                lb.address = Some(
                    address
                        .parse()
                        .map_err(|_| at(format!("bad address {address}")))?,
                )
            }
            (["instance", id, host, port, zone], Some(lb)) => {
                let host = match host.parse() {
                    Ok(ip) => Host::Ip(ip),
                    Err(_) => Host::Name(host.to_string()),
                };
                let port = match *port {
                    "-" => None,
                    p => Some(p.parse().map_err(|_| at(format!("bad port {p}")))?),
                };
                let instance = Instance {
                    id: id.to_string(),
                    host,
                    port,
                    zone: zone.to_string(),
                };
                lb.registered.push(Registered {
                    instance,
                    slot: 0,
                    serial: 0,
                    draining_until: None,
                    drain_epoch: 0,
                });
            }
            (["health", target, interval, timeout, healthy, unhealthy], Some(lb)) => {
                let target = parse_health_target(target).map_err(at)?;
                let num = |s: &str| s.parse::<u32>().map_err(|_| at(format!("bad number {s}")));
                let small = |s: &str| s.parse::<u8>().map_err(|_| at(format!("bad number {s}")));
                lb.health_check = HealthCheck::new(
                    target,
                    num(interval)?,
                    num(timeout)?,
                    small(healthy)?,
                    small(unhealthy)?,
                )
                .map_err(|e| at(e.to_string()))?;
            }
            (["attributes", cross, idle, draining, timeout, desync], Some(lb)) => {
                let num = |s: &str| s.parse::<u32>().map_err(|_| at(format!("bad number {s}")));
                lb.attributes = Attributes {
                    cross_zone: *cross == "true",
                    idle_timeout: num(idle)?,
                    draining: *draining == "true",
                    draining_timeout: num(timeout)?,
                    desync_mode: desync.to_string(),
                };
            }
            (["tag", key, value], Some(lb)) => lb.tags.push((key.to_string(), value.to_string())),
            (["proxy", port, version], Some(lb)) => {
                let port = port.parse().map_err(|_| at(format!("bad port {port}")))?;
                let version = match *version {
                    "v1" => Version::V1,
                    "v2" => Version::V2,
                    other => return Err(at(format!("bad proxy protocol version {other}"))),
                };
                lb.proxy_protocol.push((port, version));
            }
            (["sticky", "lb", period], Some(lb)) => {
                let period = match *period {
                    "session" => None,
                    p => Some(
                        p.parse()
                            .map_err(|_| at(format!("bad cookie period {p}")))?,
                    ),
                };
                lb.sticky = Some(Policy::Duration { period });
            }
            (["sticky", "app", cookie], Some(lb)) => {
                lb.sticky = Some(Policy::Application {
                    cookie: cookie.to_string(),
                });
            }
            (["policy", name, type_name], Some(lb)) => lb.policies.push(PolicyDef {
                name: name.to_string(),
                type_name: type_name.to_string(),
                attributes: Vec::new(),
            }),
            (["policy-attribute", name, key, value], Some(lb)) => {
                let policy = lb
                    .policies
                    .iter_mut()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| at(format!("attribute of unknown policy {name}")))?;
                policy.attributes.push((key.to_string(), value.to_string()));
            }
            ([record @ ("listener-policies" | "backend-policies"), port, names @ ..], Some(lb)) => {
                let port: u16 = port.parse().map_err(|_| at(format!("bad port {port}")))?;
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                if *record == "listener-policies" {
                    lb.listener_policies.push((port, names));
                } else {
                    lb.backend_policies.push((port, names));
                }
            }
            (["end"], Some(_)) => lbs.extend(current.take()),
            (["eof", count], None) if format == 2 => {
                if count.parse::<usize>().ok() != Some(lbs.len()) {
                    return Err(at(format!(
                        "'eof {count}' but {} load balancers precede it",
                        lbs.len()
                    )));
                }
                ended = true;
            }
            _ => return Err(at(format!("unexpected record '{raw}'"))),
        }
    }
    if current.is_some() {
        return Err("the last load balancer is not terminated by 'end'".to_string());
    }
    if format == 2 && !ended {
        return Err(format!(
            "the file ends before its 'eof' line: it was cut short (after {} whole load balancer(s)); refusing to start with part of the configuration",
            lbs.len()
        ));
    }
    Ok((lbs, format))
}

fn protocol(text: &str) -> Option<Protocol> {
    [
        Protocol::Http,
        Protocol::Https,
        Protocol::Tcp,
        Protocol::Ssl,
    ]
    .into_iter()
    .find(|p| p.as_str() == text)
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn line(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        escape(out, field);
    }
    out.push('\n');
}

/// Bytes outside a safe set become `%XX`, so no field holds a space or a line break.
fn escape(out: &mut String, field: &str) {
    if field.is_empty() {
        out.push_str("%00");
        return;
    }
    for b in field.bytes() {
        if b.is_ascii_alphanumeric() || b".-_:/@=[]".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn unescape(field: &str) -> Result<String, String> {
    if field == "%00" {
        return Ok(String::new());
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "field is not UTF-8".to_string())
}

#[cfg(test)]
mod tests;
