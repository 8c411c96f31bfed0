//! The ELB 2012-06-01 actions: Query parameters in, a model change, XML out.
//!
//! Each action reads its parameters (`query.rs`), calls one `Model` operation and
//! writes the result element botocore's output shape expects (`xml.rs`). Whether an
//! action changes state is known before it runs (`mutates`), so the server persists and
//! publishes exactly those.

use super::error::ApiError;
use super::model::{
    Attributes, InstanceHealth, LbState, Model, MAX_INSTANCES, MAX_LISTENERS, MAX_LOAD_BALANCERS,
};
use super::policies::{self, PolicyDef};
use super::query::{MemberStruct, Params, QueryError};
use super::xml::Xml;
use crate::config::{parse_health_target, HealthCheck, Listener, Protocol};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const VERSION: &str = "2012-06-01";

/// Actions that belong to features not built yet: answered with a clear error.
const NOT_BUILT: &[(&str, &str)] = &[(
    "ApplySecurityGroupsToLoadBalancer",
    "security groups are (restrict client sources with --allow [PORT=]CIDR instead; see README)",
)];

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

/// Runs one action; `Ok` holds the XML body of the answer.
pub fn run(
    model: &mut Model,
    params: &Params,
    request_id: &str,
    now: Instant,
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
            zones.extend(params.members("Subnets").into_iter().map(String::from));
            let scheme = params.get("Scheme").unwrap_or("internet-facing");
            model.create(name, listeners(params)?, zones, scheme, tags(params, true)?)?;
            Ok(ok(&|x| {
                x.leaf("DNSName", &dns_name(name));
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
            Ok(ok(&|x| {
                x.open("LoadBalancerDescriptions");
                for lb in &lbs {
                    x.open("member");
                    describe_lb(x, lb);
                    x.close("member");
                }
                x.close("LoadBalancerDescriptions");
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
        "CreateLoadBalancerPolicy" => {
            let attributes = params
                .member_structs("PolicyAttributes")
                .iter()
                .map(|m| {
                    Ok((
                        m.required("AttributeName")?.to_string(),
                        m.get("AttributeValue").unwrap_or("").to_string(),
                    ))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let def = PolicyDef {
                name: params.required("PolicyName")?.to_string(),
                type_name: params.required("PolicyTypeName")?.to_string(),
                attributes,
            };
            model.create_policy(params.required("LoadBalancerName")?, def)?;
            Ok(ok(&|_| {}))
        }
        "CreateLBCookieStickinessPolicy" | "CreateAppCookieStickinessPolicy" => {
            let (type_name, attributes) = if action == "CreateLBCookieStickinessPolicy" {
                let period = params
                    .get("CookieExpirationPeriod")
                    .map(|p| vec![("CookieExpirationPeriod".to_string(), p.to_string())]);
                (policies::LB_COOKIE, period.unwrap_or_default())
            } else {
                let cookie = params.required("CookieName")?;
                (
                    policies::APP_COOKIE,
                    vec![("CookieName".to_string(), cookie.to_string())],
                )
            };
            let def = PolicyDef {
                name: params.required("PolicyName")?.to_string(),
                type_name: type_name.to_string(),
                attributes,
            };
            model.create_policy(params.required("LoadBalancerName")?, def)?;
            Ok(ok(&|_| {}))
        }
        "DeleteLoadBalancerPolicy" => {
            model.delete_policy(
                params.required("LoadBalancerName")?,
                params.required("PolicyName")?,
            )?;
            Ok(ok(&|_| {}))
        }
        "SetLoadBalancerPoliciesOfListener" => {
            let port = port("LoadBalancerPort", params.required("LoadBalancerPort")?)?;
            let names = policy_names(params);
            model.set_listener_policies(params.required("LoadBalancerName")?, port, &names)?;
            Ok(ok(&|_| {}))
        }
        "SetLoadBalancerPoliciesForBackendServer" => {
            let port = port("InstancePort", params.required("InstancePort")?)?;
            let names = policy_names(params);
            model.set_backend_policies(params.required("LoadBalancerName")?, port, &names)?;
            Ok(ok(&|_| {}))
        }
        "DescribeLoadBalancerPolicies" => {
            let wanted = policy_names(params);
            let defs: Vec<PolicyDef> = match params.get("LoadBalancerName") {
                Some(name) => model.lb(name)?.policies.clone(),
                None => vec![predefined_ssl_policy()],
            };
            for name in &wanted {
                if !defs.iter().any(|p| p.name == *name) {
                    return Err(ApiError::policy_not_found(format!(
                        "There is no policy named {name}"
                    )));
                }
            }
            Ok(ok(&|x| {
                x.open("PolicyDescriptions");
                for def in defs
                    .iter()
                    .filter(|p| wanted.is_empty() || wanted.contains(&p.name))
                {
                    x.open("member");
                    x.leaf("PolicyName", &def.name);
                    x.leaf("PolicyTypeName", &def.type_name);
                    x.open("PolicyAttributeDescriptions");
                    for (name, value) in &def.attributes {
                        x.open("member");
                        x.leaf("AttributeName", name);
                        x.leaf("AttributeValue", value);
                        x.close("member");
                    }
                    x.close("PolicyAttributeDescriptions");
                    x.close("member");
                }
                x.close("PolicyDescriptions");
            }))
        }
        "DescribeLoadBalancerPolicyTypes" => {
            let wanted: Vec<&str> = params.members("PolicyTypeNames");
            for name in &wanted {
                if !policies::TYPES.iter().any(|t| t.name == *name) {
                    return Err(ApiError::policy_type_not_found(format!(
                        "There is no policy type named {name}"
                    )));
                }
            }
            Ok(ok(&|x| {
                x.open("PolicyTypeDescriptions");
                for t in policies::TYPES
                    .iter()
                    .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
                {
                    x.open("member");
                    x.leaf("PolicyTypeName", t.name);
                    x.leaf("Description", t.description);
                    x.open("PolicyAttributeTypeDescriptions");
                    for a in t.attributes {
                        x.open("member");
                        x.leaf("AttributeName", a.name);
                        x.leaf("AttributeType", a.type_name);
                        x.leaf("Cardinality", a.cardinality);
                        x.leaf("Description", a.description);
                        x.close("member");
                    }
                    x.close("PolicyAttributeTypeDescriptions");
                    x.close("member");
                }
                x.close("PolicyTypeDescriptions");
            }))
        }
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
            let rows = model
                .instance_health(params.required("LoadBalancerName")?, &instance_ids(params)?)?;
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
        "AttachLoadBalancerToSubnets" | "DetachLoadBalancerFromSubnets" => {
            // Self-hosted, a subnet is a zone label (spec §14.10).
            let name = params.required("LoadBalancerName")?;
            let subnets: Vec<String> = params
                .members("Subnets")
                .into_iter()
                .map(String::from)
                .collect();
            if subnets.is_empty() {
                return Err(ApiError::missing_parameter("Subnets"));
            }
            let now_enabled = if action.starts_with("Attach") {
                model.enable_zones(name, subnets)?
            } else {
                model.disable_zones(name, &subnets)?
            };
            Ok(ok(&|x| string_list(x, "Subnets", &now_enabled)))
        }
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
        other => match NOT_BUILT.iter().find(|(a, _)| *a == other) {
            Some((_, feature)) => Err(ApiError::invalid_action(format!(
                "{other}: {feature} not supported yet by clb"
            ))),
            None => Err(ApiError::invalid_action(format!(
                "The action {other} is not valid for this web service"
            ))),
        },
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

fn policy_names(params: &Params) -> Vec<String> {
    params
        .members("PolicyNames")
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// What DescribeLoadBalancerPolicies lists without a load balancer: the predefined
/// security policy clb honours, as ELB describes it.
fn predefined_ssl_policy() -> PolicyDef {
    let on = |name: &str| (name.to_string(), "true".to_string());
    PolicyDef {
        name: crate::tls::DEFAULT_POLICY.to_string(),
        type_name: policies::SSL_NEGOTIATION.to_string(),
        attributes: vec![
            on("Protocol-TLSv1.2"),
            on("Server-Defined-Cipher-Order"),
            on("ECDHE-ECDSA-AES128-GCM-SHA256"),
            on("ECDHE-RSA-AES128-GCM-SHA256"),
            on("ECDHE-ECDSA-AES256-GCM-SHA384"),
            on("ECDHE-RSA-AES256-GCM-SHA384"),
        ],
    }
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

fn describe_lb(x: &mut Xml, lb: &LbState) {
    x.leaf("LoadBalancerName", &lb.name);
    x.leaf("DNSName", &dns_name(&lb.name));
    x.leaf("CanonicalHostedZoneName", &dns_name(&lb.name));
    x.leaf("CanonicalHostedZoneNameID", "CLB0SELFHOSTED");
    x.open("ListenerDescriptions");
    for l in &lb.listeners {
        x.open("member");
        x.open("Listener");
        x.leaf("Protocol", l.protocol.as_str());
        x.leaf("LoadBalancerPort", &l.port.to_string());
        x.leaf("InstanceProtocol", l.instance_protocol.as_str());
        x.leaf("InstancePort", &l.instance_port.to_string());
        if let Some(id) = &l.ssl_certificate_id {
            x.leaf("SSLCertificateId", id);
        }
        x.close("Listener");
        let attached = lb
            .listener_policies
            .iter()
            .find(|(port, _)| *port == l.port)
            .map(|(_, names)| names.clone())
            .unwrap_or_default();
        string_list(x, "PolicyNames", &attached);
        x.close("member");
    }
    x.close("ListenerDescriptions");
    x.open("Policies");
    x.open("AppCookieStickinessPolicies");
    for p in lb
        .policies
        .iter()
        .filter(|p| p.type_name == policies::APP_COOKIE)
    {
        x.open("member");
        x.leaf("PolicyName", &p.name);
        x.leaf("CookieName", p.attribute("CookieName").unwrap_or(""));
        x.close("member");
    }
    x.close("AppCookieStickinessPolicies");
    x.open("LBCookieStickinessPolicies");
    for p in lb
        .policies
        .iter()
        .filter(|p| p.type_name == policies::LB_COOKIE)
    {
        x.open("member");
        x.leaf("PolicyName", &p.name);
        if let Some(period) = p.attribute("CookieExpirationPeriod") {
            x.leaf("CookieExpirationPeriod", period);
        }
        x.close("member");
    }
    x.close("LBCookieStickinessPolicies");
    let others: Vec<String> = lb
        .policies
        .iter()
        .filter(|p| p.sticky().is_none())
        .map(|p| p.name.clone())
        .collect();
    string_list(x, "OtherPolicies", &others);
    x.close("Policies");
    x.open("BackendServerDescriptions");
    for (port, names) in &lb.backend_policies {
        x.open("member");
        x.leaf("InstancePort", &port.to_string());
        string_list(x, "PolicyNames", names);
        x.close("member");
    }
    x.close("BackendServerDescriptions");
    string_list(x, "AvailabilityZones", &lb.zones);
    string_list(x, "Subnets", &[]);
    instance_list(x, &lb.registered_ids());
    describe_health_check(x, &lb.health_check);
    x.open("SourceSecurityGroup");
    x.leaf("OwnerAlias", "clb");
    x.leaf("GroupName", "default");
    x.close("SourceSecurityGroup");
    string_list(x, "SecurityGroups", &[]);
    x.leaf("CreatedTime", &iso8601(lb.created));
    x.leaf("Scheme", &lb.scheme);
}

fn describe_health_check(x: &mut Xml, check: &HealthCheck) {
    x.open("HealthCheck");
    x.leaf("Target", &check.target.to_string());
    x.leaf("Interval", &check.interval.to_string());
    x.leaf("Timeout", &check.timeout.to_string());
    x.leaf("UnhealthyThreshold", &check.unhealthy_threshold.to_string());
    x.leaf("HealthyThreshold", &check.healthy_threshold.to_string());
    x.close("HealthCheck");
}

fn describe_attributes(x: &mut Xml, a: &Attributes) {
    let flag = |on: bool| if on { "true" } else { "false" };
    x.open("LoadBalancerAttributes");
    x.open("CrossZoneLoadBalancing");
    x.leaf("Enabled", flag(a.cross_zone));
    x.close("CrossZoneLoadBalancing");
    x.open("AccessLog");
    x.leaf("Enabled", "false");
    x.close("AccessLog");
    x.open("ConnectionDraining");
    x.leaf("Enabled", flag(a.draining));
    x.leaf("Timeout", &a.draining_timeout.to_string());
    x.close("ConnectionDraining");
    x.open("ConnectionSettings");
    x.leaf("IdleTimeout", &a.idle_timeout.to_string());
    x.close("ConnectionSettings");
    x.open("AdditionalAttributes");
    x.open("member");
    x.leaf("Key", "elb.http.desyncmitigationmode");
    x.leaf("Value", &a.desync_mode);
    x.close("member");
    x.close("AdditionalAttributes");
    x.close("LoadBalancerAttributes");
}

fn instance_list(x: &mut Xml, ids: &[String]) {
    x.open("Instances");
    for id in ids {
        x.open("member");
        x.leaf("InstanceId", id);
        x.close("member");
    }
    x.close("Instances");
}

fn instance_states(x: &mut Xml, rows: &[InstanceHealth]) {
    x.open("InstanceStates");
    for row in rows {
        x.open("member");
        x.leaf("InstanceId", &row.id);
        x.leaf("State", row.state);
        x.leaf("ReasonCode", row.reason_code);
        x.leaf("Description", row.description);
        x.close("member");
    }
    x.close("InstanceStates");
}

fn string_list(x: &mut Xml, tag: &str, items: &[String]) {
    x.open(tag);
    for item in items {
        x.leaf("member", item);
    }
    x.close(tag);
}

/// A name that resolves to loopback on most systems (RFC 6761 `.localhost`); the real
/// address is wherever the listeners bind.
fn dns_name(name: &str) -> String {
    format!("{}.elb.localhost", name.to_ascii_lowercase())
}

/// `2013-05-24T21:15:31.280Z`, as ELB writes CreatedTime.
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
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
