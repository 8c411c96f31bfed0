//! The ELB 2012-06-01 actions: Query parameters in, a model change, XML out.
//!
//! Each action reads its parameters (`query.rs`), calls one `Model` operation and
//! writes the result element botocore's output shape expects (`xml.rs`). Whether an
//! action changes state is known before it runs (`mutates`), so the server persists and
//! publishes exactly those.

use super::error::ApiError;
use super::model::registration::HealthView;
use super::model::{
    Attributes, InstanceHealth, LbState, Model, MAX_INSTANCES, MAX_LISTENERS, MAX_LOAD_BALANCERS,
};
use super::policies::PolicyDef;
use super::query::{MemberStruct, Params, QueryError};
use super::xml::Xml;
pub use describe::iso8601;
use describe::{
    describe_attributes, describe_health_check, describe_lb, dns_name, instance_list,
    instance_states, string_list,
};

mod describe;
pub(crate) mod paging;
mod policy_actions;
mod vpc_actions;
use crate::config::{parse_health_target, HealthCheck, Listener, Protocol};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const VERSION: &str = "2012-06-01";

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        ApiError {
            code: e.code(),
            message: e.message(),
            status: e.status(),
        }
    }
}

/// True for actions that change the model (and so are persisted and published).
pub fn mutates(action: &str) -> bool {
    !action.starts_with("Describe")
}

/// Runs one action; `Ok` holds the XML body of the answer. `view` is how
/// DescribeInstanceHealth reads probed states (`registration::own_view` on one node).
pub fn run(
    model: &mut Model,
    params: &Params,
    request_id: &str,
    now: Instant,
    view: HealthView,
) -> Result<String, ApiError> {
    let action = params
        .action()
        .ok_or_else(|| ApiError::missing_parameter("Action"))?;
    match params.version() {
        Some(VERSION) => {}
        Some(other) => {
            return Err(ApiError::validation(format!(
                "Version {other} is not supported; use {VERSION}"
            )))
        }
        None => return Err(ApiError::missing_parameter("Version")),
    }
    let ok = |body: &dyn Fn(&mut Xml)| super::xml::success(action, request_id, |x| body(x));
    match action {
        "CreateLoadBalancer" => {
            let name = params.required("LoadBalancerName")?;
            let mut zones: Vec<String> = params
                .members("AvailabilityZones")
                .into_iter()
                .map(String::from)
                .collect();
            let scheme = params.get("Scheme").unwrap_or("internet-facing");
            let listeners = listeners(params)?;
            let vpc = vpc_actions::CreateVpc::read(params);
            let dns = dns_name(&model.dns_domain, name);
            if vpc.is_repeat(model, name, &listeners, &zones, scheme)? {
                return Ok(ok(&|x| {
                    x.leaf("DNSName", &dns);
                }));
            }
            zones.extend(model.subnet_zones(&vpc.subnets)?);
            model.create(name, listeners, zones, scheme, tags(params, true)?)?;
            vpc.attach(model, name)?;
            Ok(ok(&|x| {
                x.leaf("DNSName", &dns);
            }))
        }
        "DeleteLoadBalancer" => {
            model.delete(params.required("LoadBalancerName")?);
            Ok(ok(&|_| {}))
        }
        "DescribeLoadBalancers" => {
            let names = params.members("LoadBalancerNames");
            let lbs: Vec<&LbState> = if names.is_empty() {
                model.lbs.iter().collect()
            } else {
                names
                    .iter()
                    .map(|n| model.lb(n))
                    .collect::<Result<_, _>>()?
            };
            let (lbs, next_marker) = paging::page(lbs, params)?;
            Ok(ok(&|x| {
                x.open("LoadBalancerDescriptions");
                for lb in &lbs {
                    x.open("member");
                    describe_lb(x, lb, &model.dns_domain);
                    x.close("member");
                }
                x.close("LoadBalancerDescriptions");
                if let Some(marker) = &next_marker {
                    x.leaf("NextMarker", marker);
                }
            }))
        }
        "CreateLoadBalancerListeners" => {
            model.create_listeners(params.required("LoadBalancerName")?, listeners(params)?)?;
            Ok(ok(&|_| {}))
        }
        "DeleteLoadBalancerListeners" => {
            let ports = params
                .members("LoadBalancerPorts")
                .into_iter()
                .map(|p| port("LoadBalancerPorts.member.N", p))
                .collect::<Result<Vec<u16>, _>>()?;
            model.delete_listeners(params.required("LoadBalancerName")?, &ports)?;
            Ok(ok(&|_| {}))
        }
        "CreateLoadBalancerPolicy"
        | "CreateLBCookieStickinessPolicy"
        | "CreateAppCookieStickinessPolicy"
        | "DeleteLoadBalancerPolicy"
        | "SetLoadBalancerPoliciesOfListener"
        | "SetLoadBalancerPoliciesForBackendServer"
        | "DescribeLoadBalancerPolicies"
        | "DescribeLoadBalancerPolicyTypes" => policy_actions::run(model, params, action, &ok),
        "SetLoadBalancerListenerSSLCertificate" => {
            let name = params.required("LoadBalancerName")?;
            let lb_port = port("LoadBalancerPort", params.required("LoadBalancerPort")?)?;
            let id = params.required("SSLCertificateId")?;
            model.set_listener_certificate(name, lb_port, id)?;
            Ok(ok(&|_| {}))
        }
        "RegisterInstancesWithLoadBalancer" | "DeregisterInstancesFromLoadBalancer" => {
            let name = params.required("LoadBalancerName")?;
            let ids = instance_ids(params)?;
            if ids.is_empty() {
                return Err(ApiError::missing_parameter("Instances"));
            }
            let registered = if action.starts_with("Register") {
                model.register(name, &ids)?
            } else {
                model.deregister(name, &ids, now)?
            };
            Ok(ok(&|x| instance_list(x, &registered)))
        }
        "DescribeInstanceHealth" => {
            let name = params.required("LoadBalancerName")?;
            let rows = model.instance_health_seen(name, &instance_ids(params)?, view)?;
            Ok(ok(&|x| instance_states(x, &rows)))
        }
        "ConfigureHealthCheck" => {
            let name = params.required("LoadBalancerName")?;
            let check = health_check(params)?;
            model.configure_health_check(name, check.clone())?;
            Ok(ok(&|x| describe_health_check(x, &check)))
        }
        "DescribeLoadBalancerAttributes" => {
            let lb = model.lb(params.required("LoadBalancerName")?)?;
            Ok(ok(&|x| describe_attributes(x, &lb.attributes)))
        }
        "ModifyLoadBalancerAttributes" => {
            let name = params.required("LoadBalancerName")?;
            let attributes = modified_attributes(params, model.lb(name)?.attributes.clone())?;
            model.set_attributes(name, attributes.clone())?;
            Ok(ok(&|x| {
                x.leaf("LoadBalancerName", name);
                describe_attributes(x, &attributes);
            }))
        }
        "EnableAvailabilityZonesForLoadBalancer" | "DisableAvailabilityZonesForLoadBalancer" => {
            let name = params.required("LoadBalancerName")?;
            let zones: Vec<String> = params
                .members("AvailabilityZones")
                .into_iter()
                .map(String::from)
                .collect();
            if zones.is_empty() {
                return Err(ApiError::missing_parameter("AvailabilityZones"));
            }
            let now_enabled = if action.starts_with("Enable") {
                model.enable_zones(name, zones)?
            } else {
                model.disable_zones(name, &zones)?
            };
            Ok(ok(&|x| string_list(x, "AvailabilityZones", &now_enabled)))
        }
        "AttachLoadBalancerToSubnets"
        | "DetachLoadBalancerFromSubnets"
        | "ApplySecurityGroupsToLoadBalancer" => vpc_actions::run(model, params, action, &ok),
        "AddTags" => {
            model.add_tags(&names(params)?, tags(params, false)?)?;
            Ok(ok(&|_| {}))
        }
        "RemoveTags" => {
            let keys: Vec<String> = params
                .member_structs("Tags")
                .iter()
                .map(|t| t.required("Key").map(String::from))
                .collect::<Result<_, _>>()?;
            model.remove_tags(&names(params)?, &keys)?;
            Ok(ok(&|_| {}))
        }
        "DescribeTags" => {
            let names = names(params)?;
            let lbs: Vec<&LbState> = names
                .iter()
                .map(|n| model.lb(n))
                .collect::<Result<_, _>>()?;
            Ok(ok(&|x| {
                x.open("TagDescriptions");
                for lb in &lbs {
                    x.open("member");
                    x.leaf("LoadBalancerName", &lb.name);
                    x.open("Tags");
                    for (key, value) in &lb.tags {
                        x.open("member");
                        x.leaf("Key", key);
                        x.leaf("Value", value);
                        x.close("member");
                    }
                    x.close("Tags");
                    x.close("member");
                }
                x.close("TagDescriptions");
            }))
        }
        "DescribeAccountLimits" => Ok(ok(&|x| {
            x.open("Limits");
            for (name, max) in [
                ("classic-load-balancers", MAX_LOAD_BALANCERS),
                ("classic-listeners", MAX_LISTENERS),
                ("classic-registered-instances", MAX_INSTANCES),
            ] {
                x.open("member");
                x.leaf("Name", name);
                x.leaf("Max", &max.to_string());
                x.close("member");
            }
            x.close("Limits");
        })),
        other => Err(ApiError::invalid_action(format!(
            "The action {other} is not valid for this web service"
        ))),
    }
}

fn listeners(params: &Params) -> Result<Vec<Listener>, ApiError> {
    let members = params.member_structs("Listeners");
    if members.is_empty() {
        return Err(ApiError::missing_parameter("Listeners"));
    }
    members.iter().map(listener).collect()
}

fn listener(m: &MemberStruct<'_>) -> Result<Listener, ApiError> {
    let protocol = protocol(&m.name("Protocol"), m.required("Protocol")?)?;
    let instance_protocol = match m.get("InstanceProtocol") {
        Some(p) => protocol_of(&m.name("InstanceProtocol"), p)?,
        // ELB's rule: a secure front end defaults to a secure back end of the same layer.
        None => protocol,
    };
    let port_number = port(&m.name("LoadBalancerPort"), m.required("LoadBalancerPort")?)?;
    // ELB needs a certificate for a secure front end; clb keeps the id and serves its
    // --cert pairs (README).
    let ssl_certificate_id = match (protocol.is_tls(), m.get("SSLCertificateId")) {
        (true, Some(id)) if !id.is_empty() => Some(id.to_string()),
        (true, _) => {
            return Err(ApiError::validation(format!(
                "{}: an {} listener needs an SSLCertificateId",
                m.name("SSLCertificateId"),
                protocol.as_str()
            )))
        }
        (false, _) => None,
    };
    Ok(Listener {
        protocol,
        port: port_number,
        instance_protocol,
        instance_port: port(&m.name("InstancePort"), m.required("InstancePort")?)?,
        ssl_certificate_id,
    })
}

fn protocol(param: &str, value: &str) -> Result<Protocol, ApiError> {
    protocol_of(param, value)
}

fn protocol_of(param: &str, value: &str) -> Result<Protocol, ApiError> {
    match value.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(Protocol::Http),
        "HTTPS" => Ok(Protocol::Https),
        "TCP" => Ok(Protocol::Tcp),
        "SSL" => Ok(Protocol::Ssl),
        _ => Err(ApiError::validation(format!(
            "{param} '{value}' must be HTTP, HTTPS, TCP or SSL"
        ))),
    }
}

fn port(param: &str, value: &str) -> Result<u16, ApiError> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0 && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::validation(format!("{param} '{value}' must be a port from 1 to 65535"))
        })
}

fn instance_ids(params: &Params) -> Result<Vec<String>, ApiError> {
    params
        .member_structs("Instances")
        .iter()
        .map(|m| {
            m.required("InstanceId")
                .map(String::from)
                .map_err(ApiError::from)
        })
        .collect()
}

fn names(params: &Params) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = params
        .members("LoadBalancerNames")
        .into_iter()
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(ApiError::missing_parameter("LoadBalancerNames"));
    }
    Ok(names)
}

fn tags(params: &Params, optional: bool) -> Result<Vec<(String, String)>, ApiError> {
    let members = params.member_structs("Tags");
    if members.is_empty() && !optional {
        return Err(ApiError::missing_parameter("Tags"));
    }
    members
        .iter()
        .map(|m| {
            Ok((
                m.required("Key")?.to_string(),
                m.get("Value").unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn health_check(params: &Params) -> Result<HealthCheck, ApiError> {
    let target_text = params.required("HealthCheck.Target")?;
    let target = parse_health_target(target_text).map_err(|why| {
        ApiError::validation(format!("HealthCheck.Target '{target_text}': {why}"))
    })?;
    let number = |name: &str| -> Result<u32, ApiError> {
        params
            .u32(name)?
            .ok_or_else(|| ApiError::missing_parameter(name))
    };
    let small = |n: u32| u8::try_from(n).unwrap_or(u8::MAX);
    HealthCheck::new(
        target,
        number("HealthCheck.Interval")?,
        number("HealthCheck.Timeout")?,
        small(number("HealthCheck.HealthyThreshold")?),
        small(number("HealthCheck.UnhealthyThreshold")?),
    )
    .map_err(|e| ApiError::validation(format!("HealthCheck: {e:?}: {e}")))
}

fn modified_attributes(params: &Params, mut a: Attributes) -> Result<Attributes, ApiError> {
    const P: &str = "LoadBalancerAttributes.";
    if let Some(on) = params.bool(&format!("{P}CrossZoneLoadBalancing.Enabled"))? {
        a.cross_zone = on;
    }
    if let Some(on) = params.bool(&format!("{P}ConnectionDraining.Enabled"))? {
        a.draining = on;
    }
    if let Some(timeout) = params.u32(&format!("{P}ConnectionDraining.Timeout"))? {
        a.draining_timeout = timeout;
    }
    if let Some(idle) = params.u32(&format!("{P}ConnectionSettings.IdleTimeout"))? {
        a.idle_timeout = idle;
    }
    if params.bool(&format!("{P}AccessLog.Enabled"))? == Some(true) {
        return Err(ApiError::invalid_configuration(
            "S3 access logs are not supported by clb; use the --access-log flag when it lands",
        ));
    }
    for m in params.member_structs(&format!("{P}AdditionalAttributes")) {
        let key = m.required("Key")?;
        let value = m.required("Value")?;
        match key {
            "elb.http.desyncmitigationmode" => a.desync_mode = value.to_string(),
            _ => {
                return Err(ApiError::validation(format!(
                    "Unknown additional attribute '{key}'"
                )))
            }
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_369_430_131_280);
        assert_eq!(iso8601(t), "2013-05-24T21:15:31.280Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn only_describe_actions_are_read_only() {
        assert!(!mutates("DescribeInstanceHealth"));
        assert!(mutates("RegisterInstancesWithLoadBalancer"));
    }
}
